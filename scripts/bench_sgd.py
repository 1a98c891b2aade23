"""Benchmark Monte Carlo SGD of power-law random features (seed 004) through the engine against
per-student loops, measured in the same run on jax.devices()[0].

Students: the linear predictor (standard, 1 layer, init zeros) on ``power_law_features`` with N
features, online batches of B fresh samples per step, one learning rate, one student per seed
(Monte Carlo over the data stream). Three timings of the same students and steps, compile excluded:

  - engine: ``engine.make_chunk_fn`` / ``run_chunk`` over all chunks of the group (the runner's
    memory plan), instances built before the clock starts;
  - step loop: ONE jitted one-student step (the engine's own batch, gradient and optimizer
    pieces), called from Python for every student and step (what a careful hand-written loop does);
  - scan loop: the engine's one-student whole run (``engine.make_train_one``, a ``lax.scan``), jitted
    once and called per student.

Both loops run on a subset of the students (``--loop-students``) and are scaled to student-steps/s;
the step loop's final test loss is checked against the engine's for the same students.

    python scripts/bench_sgd.py            # N = 500, B = 8, 4096 students x 64 steps
    python scripts/bench_sgd.py --quick    # < 1 min on a small CPU (1024 students x 16 steps)
    python scripts/bench_sgd.py --sweep    # issue 26's sweep as a whole `lrsweep run` process (below)

``--sweep``: the sweep a researcher runs (N = 500, B = 8, noise 0.5, online, 16 seeds x 16 rates in
[0.02, 1.5], 1,000 steps, the loss logged at the end): the whole ``lrsweep run`` process (a subprocess:
imports, planning, compile, training, storage, the end-of-run comparison), once with an empty
compilation cache and once with the cache the first run filled, against the per-student scan loop's
warm time for all the students (timed on ``--loop-students`` of them, scaled), and the engine's
in-kernel time for the same grid.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import steps as steps_lib
from lrsweep.core.metrics import MetricContext
from lrsweep.core.optim import batch_size_at, make_optimizer
from lrsweep.core.spec import GroupSpec
from lrsweep.core.tasks import TASKS, make_instance, step_context

from benchutil import device_header, quick_defaults, timed


def make_students(n_features: int, batch: int, n_students: int, steps: int, lr: float, optimizer: str):
    """Config dict -> load_config -> expand_grid: n_students seeds, one learning rate."""
    cfg = {"name": "bench_sgd", "seeds": list(range(n_students)),
           "task": {"kind": "power_law_features", "n_features": n_features, "a": 1.5, "b": 1.25, "noise_std": 0.1},
           "model": {"parameterization": "standard", "n_layers": 1, "output_dim": 1}, "init": "zeros",
           "train": {"steps": steps, "optimizer": optimizer, "batch_size": batch, "log_every": steps},
           "grid": {"lr": lr}}
    students = config.expand_grid(config.load_config(cfg))
    return GroupSpec.from_row(students.iloc[0].to_dict()), students


def sweep_config(n_features: int, batch: int, n_seeds: int, n_rates: int, steps: int, noise: float) -> dict:
    """The issue-26 sweep: n_seeds x n_rates students sharing each seed's online batches."""
    return {"name": "bench_sgd_sweep", "seeds": {"range": [0, n_seeds - 1, 1]},
            "task": {"kind": "power_law_features", "n_features": n_features, "noise_std": noise},
            "model": {"parameterization": "standard", "n_layers": 1}, "init": "zeros",
            "train": {"optimizer": "sgd", "batch_size": batch, "steps": steps, "log_every": steps},
            "grid": {"lr": {"geomspace": [0.02, 1.5, n_rates]}}}


def time_process(cfg: dict, cache_dir: str, out: str) -> float:
    """Wall seconds of ``lrsweep run`` on ``cfg`` (a subprocess, compile cache ``cache_dir``)."""
    path = os.path.join(out, "sweep.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = {**os.environ, "LRSWEEP_CACHE_DIR": cache_dir}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import sys; from lrsweep.cli import main; sys.exit(main())", "run", path, "--out", os.path.join(out, "results"),
                    "--quiet"], env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_sweep(args) -> None:
    """Issue 26's sweep: the whole process (cold and warm compile cache) and the engine's kernel
    against the per-student scan loop's warm time, all measured here."""
    cfg = sweep_config(args.features, args.batch, args.seeds, args.rates, args.steps, args.noise)
    students = config.expand_grid(config.load_config(cfg))
    spec = GroupSpec.from_row(students.iloc[0].to_dict())
    n = len(students)
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "jax-cache")
        procs = []
        for name in ("cold", "warm"):
            os.makedirs(os.path.join(tmp, name))
            procs.append(time_process(cfg, cache, os.path.join(tmp, name)))
    kernel, per_chunk, _ = bench_engine(spec, students, args.repeats, args.max_memory, args.chunk_size)
    # the loop on a sample spread over seeds and rates
    sample = students.iloc[np.linspace(0, n - 1, min(n, args.loop_students)).astype(int)]
    loop_rate = bench_scan_loop(spec, loop_setups(spec, sample), args.repeats)
    loop_s = n * spec.steps / loop_rate
    kernel_s = n * spec.steps / kernel
    print(f"sweep: power_law_features N={args.features} batch={args.batch} noise={args.noise} online sgd, "
          f"{args.seeds} seeds x {args.rates} rates = {n} students x {spec.steps} steps ({per_chunk} per chunk)")
    print(f"  per-student scan loop, warm    {loop_s:8.2f} s  (timed on {len(sample)} students, scaled)")
    print(f"  engine kernel (compiled)       {kernel_s:8.2f} s  loop/engine {loop_s / kernel_s:7.1f}x")
    print(f"  lrsweep run process, cold cache {procs[0]:7.2f} s  loop/process {loop_s / procs[0]:7.1f}x")
    print(f"  lrsweep run process, warm cache {procs[1]:7.2f} s  loop/process {loop_s / procs[1]:7.1f}x")


def bench_engine(spec, students, repeats: int, max_memory: int | None = None, chunk_size: int | None = None):
    """(student-steps/s over all chunks, students per chunk, {student_id: final test loss})."""
    itemsize = jnp.dtype(jnp.result_type(float)).itemsize
    (u, p), chunks = engine.plan_chunks(spec, students, max_memory=max_memory or engine.default_max_memory(spec),
                                        dtype_bytes=itemsize, chunk_size=chunk_size)
    chunk_fn = engine.make_chunk_fn(spec)
    instances = [jax.block_until_ready(engine.build_instances(chunk_fn, c)) for c in chunks]
    engine.run_chunk(chunk_fn, chunks[0], instances=instances[0])  # warm-up: compile
    finals = {}

    def run():
        for c, inst in zip(chunks, instances):
            res = engine.run_chunk(chunk_fn, c, instances=inst)
            finals.update(zip(res["student_id"].tolist(), res["curves"]["test_loss"][:, -1].tolist()))

    t = timed(run, repeats)
    return len(students) * spec.steps / t, u * p, finals


def loop_setups(spec, students):
    """Per student: (params0, inst, hparams), the engine's instance of that student (built untimed)."""
    dtype = jnp.result_type(float)
    setups = []
    for _, row in students.iterrows():
        hp = {c: jnp.asarray(row[c], jnp.uint32 if c == "seed" else dtype) for c in spec.instance_columns}
        params0, inst = make_instance(spec, hp, dtype, moments=False)
        setups.append((params0, inst, {c: jnp.asarray(row[c], dtype) for c in spec.traced_columns}))
    return setups


def bench_step_loop(spec, setups, repeats: int):
    """(student-steps/s, final test losses) of one jitted step called per student and step."""
    form = steps_lib.FORMULATIONS[spec.formulation]
    task_eval = TASKS[spec.task.kind].evaluate

    @jax.jit
    def step(params, opt_state, inst, hparams, t):
        ctx = step_context(inst, t, True, batch_size_at(spec, hparams, t))
        _, grads, _, _ = form.loss_and_grads(spec, params, params, inst, ctx)
        updates, opt_state = make_optimizer(spec, hparams).update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    @jax.jit
    def test_loss(params, inst):
        return task_eval(spec, MetricContext(spec, params, inst, None, None, None, None))["test_loss"]

    params0, inst0, hp0 = setups[0]
    jax.block_until_ready(step(params0, make_optimizer(spec, hp0).init(params0), inst0, hp0, jnp.int32(0)))
    ts = [jnp.int32(t) for t in range(spec.steps)]
    finals = []

    def run():
        finals.clear()
        for params, inst, hparams in setups:
            opt_state = make_optimizer(spec, hparams).init(params)
            for t in ts:
                params, opt_state = step(params, opt_state, inst, hparams, t)
            finals.append(test_loss(params, inst))
        jax.block_until_ready(finals)

    return len(setups) * spec.steps / timed(run, repeats), [float(f) for f in finals]


def bench_scan_loop(spec, setups, repeats: int) -> float:
    """Student-steps/s of the engine's one-student run (a scan), jitted once, called per student."""
    train_one = jax.jit(engine.make_train_one(spec))
    jax.block_until_ready(train_one(*setups[0]))
    return len(setups) * spec.steps / timed(lambda: jax.block_until_ready([train_one(*s) for s in setups]), repeats)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a < 1 min run on a small CPU")
    ap.add_argument("--features", type=int, default=500, help="N")
    ap.add_argument("--batch", type=int, default=8, help="B, fresh samples per step")
    ap.add_argument("--students", type=int, default=None, help="seeds (default 4096; quick 1024)")
    ap.add_argument("--steps", type=int, default=None, help="default 64 (quick 16)")
    ap.add_argument("--lr", type=float, default=0.2)
    ap.add_argument("--optimizer", default="sgd", choices=("sgd", "momentum"))
    ap.add_argument("--loop-students", type=int, default=None, help="students in the loops (default 64; quick 16)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats, best kept (default 3; quick 2)")
    ap.add_argument("--max-memory", type=int, default=None, help="engine chunk budget, bytes (default: the runner's)")
    ap.add_argument("--chunk-size", type=int, default=None, help="students per chunk (default: from the budget)")
    ap.add_argument("--x64", action="store_true", help="float64")
    ap.add_argument("--no-schedule", action="store_true", help="skip timing the schedule search")
    ap.add_argument("--sweep", action="store_true", help="issue 26's sweep as a whole process (see above)")
    ap.add_argument("--seeds", type=int, default=16, help="--sweep: seeds (default 16)")
    ap.add_argument("--rates", type=int, default=16, help="--sweep: learning rates in [0.02, 1.5] (default 16)")
    ap.add_argument("--noise", type=float, default=0.5, help="--sweep: label noise sigma (default 0.5)")
    args = ap.parse_args()
    if args.sweep:
        quick_defaults(args, students=(0, 0), steps=(1000, 1000), loop_students=(32, 32), repeats=(2, 2))
    quick_defaults(args, students=(1024, 4096), steps=(16, 64), loop_students=(16, 64), repeats=(2, 3))
    return args


def main():
    args = parse_args()
    t_start = time.perf_counter()
    device_header(args.x64)
    if args.sweep:
        bench_sweep(args)
        print(f"total wall time {time.perf_counter() - t_start:.0f} s (compiles included)")
        return
    spec, students = make_students(args.features, args.batch, args.students, args.steps, args.lr, args.optimizer)
    eng, per_chunk, eng_finals = bench_engine(spec, students, args.repeats, args.max_memory, args.chunk_size)
    subset = students.iloc[:args.loop_students]
    setups = loop_setups(spec, subset)
    step_rate, loop_finals = bench_step_loop(spec, setups, args.repeats)
    scan_rate = bench_scan_loop(spec, setups, args.repeats)
    want = np.asarray([eng_finals[int(s)] for s in subset["student_id"]])
    gap = float(np.max(np.abs(np.asarray(loop_finals) / want - 1)))
    print(f"power_law_features N={args.features} batch={args.batch} {args.optimizer} lr={args.lr}: "
          f"{len(students)} students x {spec.steps} steps ({per_chunk} per chunk); loops on {len(setups)} students")
    print(f"  engine            {eng:>12.4g} student-steps/s")
    print(f"  step loop         {step_rate:>12.4g} student-steps/s   engine/loop {eng / step_rate:>7.1f}x")
    print(f"  scan loop         {scan_rate:>12.4g} student-steps/s   engine/loop {eng / scan_rate:>7.1f}x")
    print(f"  final test loss, step loop vs engine: max relative gap {gap:.1e} (mean over students "
          f"{np.mean(list(eng_finals.values())):.4g}, initial {np.sum(np.arange(1, args.features + 1.0) ** -1.5):.4g})")
    if not args.no_schedule:
        time_schedule_search(args.features)
    print(f"total wall time {time.perf_counter() - t_start:.0f} s (compiles included)")


def time_schedule_search(n_features: int, a: float = 2.5, b: float = 1.5, noise_std: float = 0.5) -> None:
    """The search of `lrsweep schedule` (lrsweep.families.schedules.search.search_point, every base kind) for 10
    horizons T = 100 .. 10,000: first call (compiles) and a second one."""
    from lrsweep.families.schedules.search import BASE_KINDS, Search, search_point
    horizons = tuple(int(round(t)) for t in np.geomspace(100, 10_000, 10))
    point = {"a": a, "b": b, "input_dim": n_features, "noise_std": noise_std, "batch_size": 1}
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        result = search_point(point, Search(horizons, BASE_KINDS, {}))
        times.append(time.perf_counter() - t0)
    losses = ", ".join(f"{k} {result[k]['loss'][-1]:.4g}" for k in BASE_KINDS)
    print(f"lrsweep schedule search, N={n_features}, a={a:g}, b={b:g}, sigma={noise_std:g}, batch 1, 10 horizons "
          f"T = 100..10,000, kinds {', '.join(BASE_KINDS)}: {times[0]:.1f} s first (compiles), {times[1]:.1f} s "
          f"second; final loss at T = 10,000: {losses}")


if __name__ == "__main__":
    main()
