"""Benchmark the vmapped engine against a hand-written per-student loop, and against the device.

For each case (parameterization, activation, formulation) x width h x n_layers L it prints, all
measured in one run on jax.devices()[0]:
  - engine student-steps/s (all chunks of a group, timed after a warm-up call, compile excluded)
    versus a careful per-student loop (one jitted optax step, Python loop over students x steps);
  - for matrix-matrix-bound students: useful GFLOP/s versus a measured large square jnp.matmul
    (%peak) and versus a batched matmul of the students' own shape (%bmm: what small matmuls
    reach on this device);
  - for matrix-vector students (paper_deep linear, moments): GB/s versus a measured array read
    (jnp.sum; an x * 1.5 copy is printed too);
  - the same students in the ``lowrank`` formulation (shared initial weights, rank-one updates:
    matrix-matrix products per instance), GFLOP/s versus matmul; its loop is the dense moments loop.

    python scripts/bench_engine.py            # GPU sizes
    python scripts/bench_engine.py --quick    # < 2 min smoke run on a small CPU
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import steps as steps_lib
from lrsweep.core.optim import make_optimizer
from lrsweep.core.spec import GroupSpec
from lrsweep.core.tasks import make_instance, step_context

from benchutil import device_header, quick_defaults, timed

# (parameterization, activation, formulation, bound): "flop" = matrix-matrix, "bytes" = matrix-vector.
CASES = [("paper_2nn", "linear", "moments", "flop"), ("paper_2nn", "linear", "autodiff", "flop"),
         ("paper_deep", "relu", "autodiff", "flop"), ("standard", "relu", "autodiff", "flop"),
         ("paper_deep", "linear", "moments", "bytes"), ("paper_deep", "linear", "lowrank", "flop")]


def device_peaks(n_mm: int, n_words: int, dtype, repeats: int) -> tuple[float, float, float]:
    """FLOP/s of an n_mm^2 square matmul; bytes/s of jnp.sum (read) and of x * 1.5 (read + write) on n_words.

    The sum is the bandwidth reference: the weight-streaming model below is read-dominated, and on
    CPU the copy also pays page faults for its freshly allocated output.
    """
    a = jax.random.normal(jax.random.PRNGKey(0), (n_mm, n_mm), dtype)
    x = jnp.ones((n_words,), dtype)
    rates = []
    for fn, arg, work in ((jnp.matmul, (a, a), 2.0 * n_mm ** 3), (jnp.sum, (x,), x.nbytes),
                          (lambda v: v * 1.5, (x,), 2.0 * x.nbytes)):
        fn = jax.jit(fn)
        jax.block_until_ready(fn(*arg))
        rates.append(work / timed(lambda: jax.block_until_ready(fn(*arg)), repeats))
    return tuple(rates)


_BATCHED = {}


def batched_matmul_peak(batch: int, h: int, dtype, repeats: int) -> float:
    """FLOP/s of jnp.matmul on (batch, h, h) x (batch, h, h): the students' own matmul shape, the
    ceiling for matrix-matrix students of width h batched `batch` at a time on this device."""
    if (batch, h) not in _BATCHED:
        a = jax.random.normal(jax.random.PRNGKey(1), (batch, h, h), dtype)
        fn = jax.jit(jnp.matmul)
        jax.block_until_ready(fn(a, a))
        _BATCHED[batch, h] = 2.0 * batch * h ** 3 / timed(lambda: jax.block_until_ready(fn(a, a)), repeats)
    return _BATCHED[batch, h]


def make_students(par, act, form, h, L, n_students, n_inst, steps, n_factor):
    """Config dict -> load_config -> expand_grid: n_inst seeds x (n_students / n_inst) learning rates."""
    n = n_factor * h
    points = max(1, n_students // n_inst)
    cfg = {"name": "bench", "seeds": list(range(n_inst)),
           "task": {"input_dim": h, "n_train": n, "n_test": n},
           "model": {"parameterization": par, "n_layers": L, "width": h, "activation": act},
           "init": "gaussian",
           "train": {"steps": steps, "log_every": steps, "formulation": form},
           "grid": {"lr": {"geomspace": [1e-3, 1e-1, points]}}}
    return config.expand_grid(config.load_config(cfg))


def useful_flops(spec: GroupSpec) -> float:
    """Matmul FLOPs of one training step (forward + backward), counted analytically.

    autodiff, n samples, each layer z_out = z_in @ W with W (r, c): forward 2 n r c; backward
    dW = z_in^T g 2 n r c (trained layers only), dz_in = g W^T 2 n r c (all but the first layer,
    X needs no gradient). paper_deep's fixed readout (h, 1) costs forward + dz_in. So for d = h:
    paper_2nn 10 n h^2, paper_deep/standard ReLU ~ 6 n h^2 (L - 1) - 2 n h^2 + O(n h).
    moments (paper_2nn only here; d x h W_1, h x h W_2): W_eff = W_1 W_2 2 d h^2, S W_eff
    2 d^2 h, dW_1 = G W_2^T and dW_2 = W_1^T G 2 d h^2 each: 6 d h^2 + 2 d^2 h (= 8 h^3).
    Metrics (loss at log steps, sampled test loss) and instance generation are not counted.
    """
    arch, n = spec.arch, spec.task.n_train
    if spec.formulation == "lowrank":
        # shared W^0 products: m forward, m - 1 backward (2 r c each) and S w (2 d^2); each of the
        # 2m - 1 applications of a low-rank correction L^T (R x) costs 2 T (r + c) (T = steps rows).
        T = spec.steps
        fwd = sum(2.0 * r * c + 2.0 * T * (r + c) for r, c in arch.shapes)
        bwd = sum(2.0 * r * c + 2.0 * T * (r + c) for r, c in arch.shapes[:-1])
        return fwd + bwd + 2.0 * arch.input_dim ** 2
    if spec.formulation == "moments":
        assert arch.parameterization == "paper_2nn", "moments is counted in bytes for vector readouts"
        d, h = arch.input_dim, arch.width
        return 6.0 * d * h * h + 2.0 * d * d * h
    layers = [(r, c, True) for r, c in arch.shapes]
    if arch.parameterization == "paper_deep":
        layers.append((arch.width, 1, False))
    return sum(2.0 * n * r * c * (1 + trained + (i > 0)) for i, (r, c, trained) in enumerate(layers))


def bytes_moved(spec: GroupSpec, points: int, itemsize: int) -> float:
    """Bytes per student-step of the matrix-vector (moments, vector readout) path.

    Model: every trained W_l is read 3 times (forward matvec for W_eff, backward dz = W^T g, the
    update W - eta g z^T fused with the divergence freeze) and written once: 4 |W_l| words. The
    instance moments S = X^T X / n (d x d) are read once per step per instance, i.e. shared by its
    `points` learning-rate points. Vectors (O(h)) are ignored.
    """
    d = spec.task.input_dim
    return itemsize * (4.0 * spec.arch.n_params + d * d / points)


def plan_fill(spec, students, max_memory: int, itemsize: int) -> float:
    """Real students / slots of the plan ``lrsweep run`` makes on this process's devices (2-D mesh)."""
    _, chunks = engine.plan_chunks(spec, students, max_memory=max_memory, dtype_bytes=itemsize,
                                   n_devices=jax.local_device_count(), mesh="auto")
    return len(students) / (len(chunks) * chunks.u * chunks.p)


def bench_engine(spec, students, max_memory, repeats) -> tuple[float, int]:
    """Student-steps/s of the engine over all chunks of the group, the chunk's points p and its
    students u * p."""
    itemsize = jnp.dtype(jnp.result_type(float)).itemsize
    max_memory = max_memory or engine.default_max_memory(spec)  # the runner's default
    (u, p), chunks = engine.plan_chunks(spec, students, max_memory=max_memory, dtype_bytes=itemsize)
    chunk_fn = engine.make_chunk_fn(spec)
    # Instances (initial weights, data moments) are built before the clock starts, as for the loop:
    # both sides time training steps only (engine.iter_group builds each instance block once too).
    key = lambda c: tuple(np.asarray(c.instance_hp[k]).tobytes() for k in spec.instance_columns)
    instances = {}
    for c in chunks:
        if key(c) not in instances:
            instances[key(c)] = jax.block_until_ready(chunk_fn.instances(engine.instance_hparams(spec, c.instance_hp)))
    engine.run_chunk(chunk_fn, chunks[0], instances=instances[key(chunks[0])])  # warm-up: compile
    t = timed(lambda: [engine.run_chunk(chunk_fn, c, instances=instances[key(c)]) for c in chunks], repeats)
    return len(students) * spec.steps / t, p, u * p


def bench_loop(spec, students, n_loop, repeats) -> float:
    """Student-steps/s of the per-student loop: one jitted step, Python loop over students and steps.

    The loop trains the dense weights (moments for linear students, autodiff otherwise): what a
    careful user writes by hand. The engine's lowrank case is measured against that same loop.
    """
    dtype = jnp.result_type(float)
    dense = dataclasses.replace(spec, formulation="autodiff" if spec.formulation == "autodiff" else "moments")
    loss_and_grads = steps_lib.FORMULATIONS[dense.formulation].loss_and_grads

    @jax.jit
    def step(params, inst, hparams):
        loss, grads, _, _ = loss_and_grads(dense, params, params, inst, step_context(inst, 0))
        updates, _ = make_optimizer(dense, hparams).update(grads, optax.EmptyState())
        return optax.apply_updates(params, updates), loss

    rows = students.iloc[:n_loop]
    setups = []
    for _, row in rows.iterrows():  # the same initial weights and data as the engine's students
        hp = {c: jnp.asarray(row[c], jnp.uint32 if c == "seed" else dtype) for c in spec.instance_columns}
        params0, inst = make_instance(dense, hp, dtype, dense.formulation == "moments")
        setups.append((params0, inst, {c: jnp.asarray(row[c], dtype) for c in spec.traced_columns}))
    jax.block_until_ready(step(*setups[0]))  # compile

    def run():
        losses = []
        for params, inst, lrs in setups:
            for _ in range(spec.steps):
                params, loss = step(params, inst, lrs)
                losses.append(loss)
        jax.device_get(losses)

    return len(setups) * spec.steps / timed(run, repeats)


def run_case(case, h, L, args, peaks):
    par, act, form, bound = case
    n_students = args.students or max(args.min_students, args.student_budget // h ** 3)
    students = make_students(par, act, form, h, L, n_students, args.instances, args.steps, args.n_factor)
    spec = GroupSpec.from_row(students.iloc[0].to_dict())
    eng, p, per_chunk = bench_engine(spec, students, args.max_memory, args.repeats)
    itemsize = jnp.dtype(jnp.result_type(float)).itemsize
    fill = plan_fill(spec, students, args.max_memory or engine.default_max_memory(spec), itemsize)
    loop = bench_loop(spec, students, min(args.loop_students, len(students)), args.repeats)
    bmm = ""
    if bound == "flop":
        rate, peak, unit = eng * useful_flops(spec), peaks[0], "GFLOP/s"
        if form != "lowrank":
            ceiling = batched_matmul_peak(min(per_chunk, 64), h, jnp.result_type(float), args.repeats)
            bmm = f"{100 * rate / ceiling:>6.1f}%"
    else:
        rate, peak, unit = eng * bytes_moved(spec, p, itemsize), peaks[1], "GB/s"
    line = (f"{par:<10} {act:<6} {form:<8} {h:>5} {L:>2} {len(students):>6} {spec.steps:>3} {eng:>12.4g} "
            f"{loop:>10.4g} {eng / loop:>7.1f}x {rate / 1e9:>9.3g} {unit:<7} {peak / 1e9:>8.3g} "
            f"{100 * rate / peak:>6.1f}% {bmm:>7} {100 * fill:>5.1f}%")
    return line, eng / loop, len(students)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: a < 2 min smoke run on a 2-core CPU")
    ap.add_argument("--widths", type=int, nargs="+", default=None, help="default 64 256 1024 (quick: 64 256)")
    ap.add_argument("--layers", type=int, nargs="+", default=[2, 3])
    ap.add_argument("--cases", nargs="+", default=None,
                    help="subset of par/act/form, e.g. paper_2nn/linear/moments (default: all)")
    ap.add_argument("--students", type=int, default=None, help="students per case (default: from budget)")
    ap.add_argument("--student-budget", type=int, default=None,
                    help="students = budget / h^3 (default 2^32; quick 2^28), at least --min-students")
    ap.add_argument("--min-students", type=int, default=None, help="default 256 (quick 16)")
    ap.add_argument("--instances", type=int, default=4, help="seeds per case; students share their data")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--n-factor", type=int, default=2, help="n_train = n_factor * width (input_dim = width)")
    ap.add_argument("--loop-students", type=int, default=None, help="students in the loop (default 32; quick 8)")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats, best kept (default 3; quick 2)")
    ap.add_argument("--max-memory", type=int, default=None, help="engine chunk budget, bytes (default: the runner's, per case)")
    ap.add_argument("--x64", action="store_true", help="float64")
    args = ap.parse_args()
    quick_defaults(args, widths=([64, 256], [64, 256, 1024]), student_budget=(1 << 28, 1 << 32),
                   min_students=(16, 256), loop_students=(8, 32), repeats=(2, 3))
    args.mm_size, args.copy_size = (2048, 1 << 26) if args.quick else (8192, 1 << 28)
    return args


def main():
    args = parse_args()
    t_start = time.perf_counter()
    dtype = device_header(args.x64)
    mm, read, copy = device_peaks(args.mm_size, args.copy_size, dtype, max(args.repeats, 5))
    peaks = (mm, read)
    print(f"peaks: matmul {args.mm_size}^2 {mm / 1e9:.3g} GFLOP/s | {args.copy_size * jnp.dtype(dtype).itemsize >> 20}"
          f" MiB: sum (read) {read / 1e9:.3g} GB/s, x*1.5 (read + write) {copy / 1e9:.3g} GB/s; %peak uses "
          f"matmul, or the sum; %bmm: of a batched (students per chunk, h, h) matmul, the same-shape ceiling; "
          f"fill: real students / slots of lrsweep run's plan on the {jax.local_device_count()} local device(s)")
    print(f"{'param':<10} {'act':<6} {'form':<8} {'h':>5} {'L':>2} {'stud':>6} {'stp':>3} {'engine st/s':>12} "
          f"{'loop st/s':>10} {'ratio':>8} {'engine':>9} {'unit':<7} {'peak':>8} {'%peak':>7} {'%bmm':>7} {'fill':>6}")
    wanted = set(args.cases) if args.cases else None
    target = []
    for h in args.widths:
        for L in args.layers:
            for case in CASES:
                if wanted is not None and "/".join(case[:3]) not in wanted:
                    continue
                if case[0] == "paper_2nn" and L != 2:
                    continue  # paper_2nn has exactly 2 layers
                line, ratio, n = run_case(case, h, L, args, peaks)
                print(line, flush=True)
                if h == 64 and n >= 1000:
                    target.append(ratio)
    if target:
        print(f"target engine/loop >= 20x at h=64 with 1000+ students: met in {sum(r >= 20 for r in target)}"
              f"/{len(target)} cases (min {min(target):.1f}x, max {max(target):.1f}x)")
    print(f"total wall time {time.perf_counter() - t_start:.0f} s (compiles included)")


if __name__ == "__main__":
    main()
