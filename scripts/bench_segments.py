"""What training a long chunk in segments (progress, checkpoints) costs, and that it changes nothing.

For each case it trains ONE chunk of many steps twice with the same compiled programs: as one scan
(``--quiet``, no checkpoints) and in segments of ``--segment`` steps reporting each segment
(``on_segment``, as ``lrsweep run`` does). It prints the compile time of each path (first call
minus second), the run time (second call), the per-segment overhead, and whether every result is
equal bit for bit.

    python scripts/bench_segments.py            # GPU sizes
    python scripts/bench_segments.py --quick    # small CPU run
"""
from __future__ import annotations

import argparse
import tempfile
import time

import jax
import numpy as np

from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core.checkpoint import SEGMENT_STEPS, ChunkCheckpoints
from lrsweep.core.chunking import plan_chunks


def case_config(width: int, n_layers: int, activation: str, steps: int, n_seeds: int, n_rates: int) -> dict:
    return {"name": "bench", "seeds": {"range": [0, n_seeds - 1, 1]},
            "task": {"input_dim": width, "n_train": width},
            "model": {"parameterization": "paper_deep", "n_layers": n_layers, "width": width,
                      "activation": activation},
            "train": {"steps": steps, "log_every": max(1, steps // 8), "mode": "grid"},
            "grid": {"lr_total": np.geomspace(0.1, 20.0, n_rates).tolist(), "lr_1_fraction": [0.5]}}


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def bench(cfg: dict, segment: int) -> None:
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    itemsize = np.dtype(jax.numpy.result_type(float)).itemsize
    _, (chunk, *_) = plan_chunks(spec, students, max_memory=1 << 40, dtype_bytes=itemsize, chunk_size=len(students))
    fn = engine.make_chunk_fn(spec)
    inst = jax.block_until_ready(engine.build_instances(fn, chunk))
    calls = []
    with tempfile.TemporaryDirectory() as tmp:
        ck = ChunkCheckpoints(tmp, every_s=0, segment_steps=segment)
        one = lambda: engine.run_chunk(fn, chunk, None, inst)
        seg = lambda: engine.run_chunk(fn, chunk, None, inst, ck, on_segment=lambda *a: calls.append(a))
        t_one = [timed(one)[0] for _ in range(2)]
        t_seg = [timed(seg)[0] for _ in range(2)]
        _, r_one = timed(one)
        _, r_seg = timed(seg)
    equal = all(np.array_equal(a, b, equal_nan=True) for a, b in
                zip(jax.tree_util.tree_leaves(r_one), jax.tree_util.tree_leaves(r_seg)))
    n_seg = -(-spec.steps // segment)
    print(f"{spec.arch.activation} L={spec.arch.n_layers} h={spec.arch.width} students={len(students)} "
          f"steps={spec.steps} {jax.numpy.result_type(float)}: one scan {t_one[1]:.3f}s (compile "
          f"{t_one[0] - t_one[1]:.2f}s), {n_seg} segments {t_seg[1]:.3f}s (compile {t_seg[0] - t_seg[1]:.2f}s), "
          f"overhead {1e3 * (t_seg[1] - t_one[1]) / n_seg:+.2f} ms/segment ({100 * (t_seg[1] / t_one[1] - 1):+.1f}%), "
          f"diverged {int(r_one['diverged'].sum())}, bit-equal {equal}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--segment", type=int, default=SEGMENT_STEPS)
    args = p.parse_args()
    print(jax.devices()[0].device_kind, flush=True)
    if args.quick:
        cases = [(8, 2, "linear", 8 * args.segment, 4, 4)]
    else:  # tiny students (steps cost the least: the worst case for overhead), then realistic chunks
        cases = [(16, 2, "linear", 16 * args.segment, 2, 4), (64, 3, "relu", 16 * args.segment, 16, 64),
                 (256, 3, "relu", 8 * args.segment, 32, 64)]
    for x64 in (False, True):
        jax.config.update("jax_enable_x64", x64)
        for case in cases if not x64 else cases[:2]:
            bench(case_config(*case), args.segment)


if __name__ == "__main__":
    main()
