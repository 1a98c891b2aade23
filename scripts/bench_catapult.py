"""Benchmark the catapult family: curvature metrics inside the vmapped scan, and boundaries by bisection.

All measured in one run on jax.devices()[0]:
  1. student-steps/s of a vmapped grid of ntk students (2-layer, width m, degenerate data, logistic
     loss) with ``sharpness`` and ``ntk_eig`` logged every k steps, against a per-student loop
     doing the same (one jitted student at a time, Python loop; timed on a sample, compile excluded);
  2. the metrics' share of the run time: the same grid without the metrics; the curvature metrics
     alone (each side's time with them less its time without) in the engine against the loop, for
     the catapult grid and for seed 002's ``body_sharpness`` (2-layer ReLU students with a head);
     with ``--compare-matfree`` also with matfree's ``tridiag_sym`` as the Lanczos (the library's
     Lanczos before issue 26), interleaved in the same run;
  3. ``lrsweep boundary`` on the uv model: students trained (coarse grid + bisection) against a
     dense geometric grid reaching the same precision rtol, and the wall time against that grid's
     time at the measured engine rate;
  4. seed 002's head rules: student-steps/s of best-response students (the head set to its ridge least
     squares, or Newton's minimiser for logistic, before every body step) against simultaneous gd
     students of the same shape (2-layer ReLU, width --head-width), for mse and logistic.

    python scripts/bench_catapult.py            # GPU sizes (>= 10,000 students)
    python scripts/bench_catapult.py --quick    # a 2-core CPU in about a minute
    python scripts/bench_catapult.py --cpu --only curvature   # the GPU sizes' width on 512 students
    python scripts/bench_catapult.py --quick --only heads     # seed 002's head-rule lines only
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time

import jax
import numpy as np

from lrsweep.families.catapult import boundary
from lrsweep.core import chunking
from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner


CLOCK = time.perf_counter  # --process-time: CPU seconds of this process (all its threads)


def grid_config(n_seeds: int, n_rates: int, width: int, steps: int, log_every: int, metrics: list) -> dict:
    return {"name": "bench_catapult", "seeds": {"range": [0, n_seeds - 1, 1]},
            "task": {"kind": "classification", "data": "degenerate", "n_train": 2, "input_dim": 1},
            "model": {"parameterization": "ntk", "n_layers": 2, "width": width, "activation": "linear",
                      "output_dim": 1},
            "init": "gaussian",
            "train": {"loss": "logistic", "steps": steps, "log_every": log_every, "metrics": metrics,
                      "sharpness_iters": 10},
            "grid": {"lr": {"geomspace": [0.05, 20.0, n_rates]}}}


def head_config(n_seeds: int, n_rates: int, width: int, steps: int, loss: str, best_response: bool,
                log_every: int | None = None, metrics: tuple = ()) -> dict:
    """2-layer ReLU students of width h with a head, n_rates body rates per seed: simultaneous gd at
    lr_ratio 4, or the best response (lr_ratio .inf); n = 2 h training points, ridge 1e-3."""
    d, n = 16, 2 * width
    task = ({"kind": "linear_teacher", "input_dim": d, "n_train": n, "noise_std": 0.1} if loss == "mse" else
            {"kind": "classification", "data": "nonseparable", "flip_fraction": 0.1, "input_dim": d, "n_train": n})
    return {"name": "bench_heads", "seeds": {"range": [0, n_seeds - 1, 1]}, "task": task,
            "model": {"parameterization": "standard", "n_layers": 2, "width": width, "activation": "relu",
                      "output_dim": 1},
            "init": "gaussian", "train": {"loss": loss, "steps": steps, "log_every": log_every or steps,
                                          "head_ridge": 1e-3, "metrics": list(metrics), "sharpness_iters": 10},
            "grid": {"lr_body": {"geomspace": [1e-3, 1e-1, n_rates]}, "lr_ratio": [math.inf if best_response else 4.0]}}


def engine_time(cfg: dict, max_memory: int | None) -> tuple[float, int, object, object]:
    """Seconds to train every student (compile excluded: the first chunk is run twice and the
    first call not counted), the number of students, the spec and the students frame."""
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    dtype_bytes = np.dtype(jax.numpy.result_type(float)).itemsize
    _, chunks = chunking.plan_chunks(spec, students, max_memory=max_memory or engine.default_max_memory(spec),
                                     dtype_bytes=dtype_bytes)
    fn = engine.make_chunk_fn(spec)
    built = [engine.build_instances(fn, c) for c in chunks]
    hp = [{k: jax.numpy.asarray(v, jax.numpy.result_type(float)) for k, v in c.hparams.items()} for c in chunks]
    jax.block_until_ready(fn.train(*built[0], hp[0]))  # compile
    t0 = CLOCK()
    for inst, h in zip(built, hp):
        jax.block_until_ready(fn.train(*inst, h))
    return CLOCK() - t0, len(students), spec, students


def loop_time(spec, students, sample: int) -> float:
    """Seconds per student of a per-student loop: one jitted student, called once per student."""
    from lrsweep.core.tasks import make_instance
    train = jax.jit(engine.make_student_fns(spec).train)
    dtype = jax.numpy.result_type(float)
    rows = students.sample(n=min(sample, len(students)), random_state=0)
    args = []
    for _, row in rows.iterrows():
        hp = {c: jax.numpy.asarray(row[c], jax.numpy.uint32 if c == "seed" else dtype) for c in spec.instance_columns}
        params0, inst = make_instance(spec, hp, dtype, spec.formulation != "autodiff")
        args.append((params0, inst, {c: jax.numpy.asarray(row[c], dtype) for c in spec.traced_columns}))
    jax.block_until_ready(train(*args[0]))  # compile
    t0 = CLOCK()
    for a in args:
        jax.block_until_ready(train(*a))
    return (CLOCK() - t0) / len(args)


def matfree_lanczos(hvp, start, iters: int):
    """The library's Lanczos before issue 26 (matfree ``tridiag_sym``, full reorthogonalisation: two
    Gram-Schmidt passes per step, matrix-vector products), in :func:`lrsweep.core.curvature.lanczos`'s
    form: the basis (k, P) and the tridiagonal (k, k)."""
    from matfree import decomp
    basis, tridiag, _, _ = decomp.tridiag_sym(iters, reortho="full", custom_vjp=False)(hvp, start)
    return basis, tridiag


def curvature_ratio(label: str, with_cfg: dict, without_cfg: dict, sample: int, max_memory, lanczos_fns: dict) -> None:
    """Print the curvature metrics' own cost per student, engine against the per-student loop: each
    side's time with the metrics less its time without, for every Lanczos in ``lanczos_fns``
    (interleaved: engine and loop timed together per variant, 2 rounds, the faster kept)."""
    from lrsweep.core import curvature
    t_plain, n, spec0, students0 = engine_time(without_cfg, max_memory)
    loop_plain = loop_time(spec0, students0, sample)
    best = {}
    for _ in range(2):
        for name, fn in lanczos_fns.items():
            own, curvature.lanczos = curvature.lanczos, fn
            try:
                t, _, spec, students = engine_time(with_cfg, max_memory)
                loop = loop_time(spec, students, sample)
            finally:
                curvature.lanczos = own
            old = best.get(name, (math.inf, math.inf))
            best[name] = (min(old[0], t), min(old[1], loop))
    for name, (t, loop) in best.items():
        engine_s, loop_s = (t - t_plain) / n, loop - loop_plain
        print(f"  {label}, Lanczos {name}: curvature metrics alone {engine_s * 1e3:.3f} ms/student in the engine, "
              f"{loop_s * 1e3:.3f} ms/student in the loop -> {loop_s / engine_s:.1f}x; whole run {loop * n / t:.1f}x "
              f"the loop ({t:.2f} s, metrics {100 * (1 - t_plain / t):.0f}%)")


def head_lines(seeds: int, rates: int, width: int, steps: int, max_memory) -> None:
    """Print seed 002's head-rule lines: best-response students against simultaneous gd of the same shape."""
    for loss in ("mse", "logistic"):
        shape = (seeds, rates // 4, width, steps, loss)
        t_br, n, spec, _ = engine_time(head_config(*shape, best_response=True), max_memory)
        t_gd, *_ = engine_time(head_config(*shape, best_response=False), max_memory)
        newton = "" if loss == "mse" else f", Newton then chord steps, at most {spec.newton_steps} Newton steps per phase"
        print(f"heads ({loss}, 2-layer ReLU, h = {width}, n = {spec.task.n_train}, {n} students x {steps} "
              f"steps{newton}): best response {n * steps / t_br:,.0f} student-steps/s, simultaneous gd "
              f"{n * steps / t_gd:,.0f} -> the best response costs {t_br / t_gd:.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="CPU sizes (about a minute)")
    ap.add_argument("--cpu", action="store_true", help="mid sizes for a 2-core CPU: the GPU sizes' width "
                                                        "(m = 256) and steps on 8 x 64 students")
    ap.add_argument("--only", choices=["all", "curvature", "catapult-curvature", "heads", "all-but-heads"],
                    default="all",
                    help="curvature: only the curvature lines (catapult grid and body_sharpness); "
                         "catapult-curvature: only the catapult grid's; heads: only seed 002's head-rule lines; "
                         "all-but-heads: every line but those (scripts/device_check.sh runs the heads as a step of their own)")
    ap.add_argument("--compare-matfree", action="store_true",
                    help="also time the curvature lines with matfree's Lanczos (before issue 26)")
    ap.add_argument("--seeds", type=int, default=None, help="default 16 (quick 4)")
    ap.add_argument("--rates", type=int, default=None, help="default 640 (quick 64)")
    ap.add_argument("--width", type=int, default=None, help="default 256 (quick 64)")
    ap.add_argument("--steps", type=int, default=None, help="default 500 (quick 200)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--loop-sample", type=int, default=None, help="students timed in the loop (default 64; quick 16)")
    ap.add_argument("--max-memory", type=int, default=None, help="bytes per chunk (default: the engine's)")
    ap.add_argument("--rtol", type=float, default=1e-3)
    ap.add_argument("--head-width", type=int, default=64, help="width of the head-rule students (default 64)")
    ap.add_argument("--head-steps", type=int, default=None, help="steps of the head-rule students (default 500; "
                                                                  "quick 50)")
    ap.add_argument("--process-time", action="store_true",
                    help="time in CPU seconds of this process (time.process_time) rather than wall seconds: "
                         "steadier on a machine shared with other work")
    a = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.process_time else time.perf_counter
    seeds = a.seeds or (4 if a.quick else 8 if a.cpu else 16)
    rates = a.rates or (64 if a.quick or a.cpu else 640)
    width = a.width or (64 if a.quick else 256)
    steps = a.steps or (200 if a.quick else 500)
    sample = a.loop_sample or (16 if a.quick else 32 if a.cpu else 64)
    head_steps = a.head_steps or (50 if a.quick else 500)
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({dev.platform}), jax {jax.__version__}")
    if a.only == "heads":
        return head_lines(seeds, rates, a.head_width, head_steps, a.max_memory)

    from lrsweep.core import curvature
    lanczos_fns = {"lrsweep": curvature.lanczos, **({"matfree": matfree_lanczos} if a.compare_matfree else {})}
    metrics = ["sharpness", "ntk_eig", "phase"]
    print(f"curvature: {seeds * rates:,} ntk students (2 layers, m = {width}, logistic, degenerate data), {steps} "
          f"steps, sharpness (10 Lanczos steps) and ntk_eig every {a.log_every} steps; loop: {sample} timed")
    curvature_ratio("catapult sharpness + ntk_eig", grid_config(seeds, rates, width, steps, a.log_every, metrics),
                    grid_config(seeds, rates, width, steps, a.log_every, ["phase"]), sample, a.max_memory, lanczos_fns)
    if a.only == "catapult-curvature":
        return
    shape = (seeds, rates // 4, a.head_width, head_steps, "mse", False)
    print(f"curvature: {seeds * (rates // 4):,} 2-layer ReLU students with a head (h = {a.head_width}, "
          f"n = {2 * a.head_width}, mse, simultaneous gd), {head_steps} steps, body_sharpness (10 Lanczos steps) "
          f"every {a.log_every} steps")
    curvature_ratio("seed 002 body_sharpness", head_config(*shape, log_every=a.log_every, metrics=("body_sharpness",)),
                    head_config(*shape, log_every=a.log_every), sample, a.max_memory, lanczos_fns)
    if a.only == "curvature":
        return

    cfg = grid_config(seeds, rates, width, steps, a.log_every, metrics)
    t_grid, n, spec, students = engine_time(cfg, a.max_memory)
    t_plain, *_ = engine_time(grid_config(seeds, rates, width, steps, a.log_every, ["phase"]), a.max_memory)
    per_student = loop_time(spec, students, sample)
    rate_grid, rate_loop = n * steps / t_grid, steps / per_student
    print(f"grid: {n:,} ntk students (2 layers, m = {width}, logistic, degenerate data), {steps} steps, "
          f"sharpness ({spec.sharpness_iters} Lanczos steps) and ntk_eig every {a.log_every} steps")
    print(f"  engine {rate_grid:,.0f} student-steps/s ({t_grid:.2f} s); per-student loop {rate_loop:,.0f} "
          f"student-steps/s ({per_student * 1e3:.1f} ms/student, {sample} timed) -> {rate_grid / rate_loop:.0f}x")
    print(f"  without the metrics {t_plain:.2f} s: the metrics take {100 * (1 - t_plain / t_grid):.0f}% of the run")

    uv = {"name": "bench_uv", "seeds": {"range": [0, seeds - 1, 1]}, "task": {"kind": "single_point"},
          "model": {"parameterization": "ntk", "n_layers": 2, "width": width, "activation": "linear",
                    "output_dim": 1},
          "init": "gaussian", "train": {"steps": steps, "log_every": steps, "metrics": ["ntk_eig"]},
          "grid": {"lr": {"geomspace": [0.25, 4.0, 9]}}}
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        summary = boundary.run_boundary(config.load_config(uv), out, rtol=a.rtol, progress=False)
        t_boundary = time.perf_counter() - t0
    t_dense, *_ = engine_time({**uv, "grid": {"lr": {"geomspace": [0.25, 4.0, 64]}}}, a.max_memory)
    dense_s = summary.n_dense / (seeds * 64) * t_dense
    print(f"boundary (uv model, m = {width}, {seeds} seeds, rtol {a.rtol:g}): {summary.n_trained:,} students "
          f"trained (coarse {summary.n_coarse} + bisection {summary.n_bisection}) vs a dense grid of "
          f"{summary.n_dense:,} -> {summary.n_dense / summary.n_trained:.0f}x fewer students")
    print(f"  wall time {t_boundary:.1f} s, two compiles included (the coarse grid's program and the "
          f"bisection's); the dense grid at the engine's measured rate: {dense_s:.1f} s plus its compile")
    assert math.isfinite(t_boundary)

    if a.only != "all-but-heads":
        head_lines(seeds, rates, a.head_width, head_steps, a.max_memory)


if __name__ == "__main__":
    main()
