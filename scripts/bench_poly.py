"""Benchmark poly mode (exact learning-rate polynomials, lrsweep.core.poly) against grid mode (lrsweep.core.engine).

Seed 000's Fig. 1: the 2-NN (paper_2nn), orthogonal init and design, orthonormal target,
h = d = n = 1000, the authors' line grid lr_line C = 27000..63000 step 2000 (19 lines x 19
points), 5 seeds, 2 GD steps logged at 0, 1, 2, float64. Both modes train the same students in
one run; it prints both wall times (compile included, as a user sees them), their ratio, the
largest relative difference of the losses, and the crossover: from measured seconds per FLOP
and the symbolic FLOP counts (lrsweep.core.poly.plan), the number of grid points per seed below
which grid mode wins again, for 1..4 steps.

    python scripts/bench_poly.py            # h = 1000 (grid mode takes long on a small CPU)
    python scripts/bench_poly.py --quick    # h = 256
    python scripts/bench_poly.py --width 128
    OPENBLAS_NUM_THREADS=1 python scripts/bench_poly.py   # see the note it prints otherwise

Other widths scale the line totals C by (h / 1000)^(3/2), the paper's learning-rate scaling, so
the grid covers the same physics (the CPU twins in configs/ do the same).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import numpy as np


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="h = 256")
    ap.add_argument("--width", type=int, default=None, help="h = d = n (default 1000; quick 256)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--max-memory", type=int, default=None, help="chunk budget in bytes (both modes)")
    args = ap.parse_args()
    args.width = args.width or (256 if args.quick else 1000)
    return args


def fig1_config(h: int, seeds: int, steps: int) -> dict:
    factor = (h / 1000) ** 1.5
    totals = [round(c * factor, 6) for c in range(27000, 63001, 2000)]
    return {"name": "bench_poly", "seeds": list(range(seeds)),
            "task": {"input_dim": h, "n_train": h, "design": "orthogonal", "target": "orthonormal"},
            "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": h},
            "init": "orthogonal", "train": {"steps": steps, "log_steps": list(range(steps + 1))},
            "grid": {"lr_line": totals}}


def collect(chunks) -> dict:
    """{student_id: {train_loss, test_loss, diverged, diverged_step}} from (chunk, result) pairs or ChunkOutputs."""
    out = {}
    for item in chunks:
        res = item.result if hasattr(item, "result") else item[1]
        flat = {**res["curves"], "diverged": res["diverged"], "diverged_step": res["diverged_step"]}
        for i, sid in enumerate(res["student_id"]):
            out[int(sid)] = {k: np.asarray(v[i]) for k, v in flat.items()}
    return out


def max_rel_diff(a: dict, b: dict) -> tuple[float, int]:
    worst, mismatched = 0.0, 0
    for sid, ra in a.items():
        rb = b[sid]
        mismatched += int(bool(ra["diverged"]) != bool(rb["diverged"]) or ra["diverged_step"] != rb["diverged_step"])
        for key in ("train_loss", "test_loss"):
            x, y = ra[key].astype(float), rb[key].astype(float)
            mismatched += int(not np.array_equal(np.isnan(x), np.isnan(y)))
            ok = np.isfinite(x) & np.isfinite(y)
            if ok.any():
                worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.abs(y[ok]))))
    return worst, mismatched


def main():
    args = parse_args()
    import os
    if os.environ.get("OPENBLAS_NUM_THREADS") != "1":
        print("note: OPENBLAS_NUM_THREADS is not 1; on a small CPU, concurrent host QRs of instance generation "
              "(lrsweep.core.students) can stall ~1 s per program call, in both modes")
    jax.config.update("jax_enable_x64", True)
    from lrsweep.core import config
    from lrsweep.core import drivers
    from lrsweep.core import engine
    from lrsweep.core import poly
    from lrsweep.core import runner
    from lrsweep.core.drivers import poly as poly_driver

    h = args.width
    cfg = config.load_config(fig1_config(h, args.seeds, args.steps))
    students, specs = runner.prepare(cfg)
    (spec,) = specs.values()
    n_inst = args.seeds
    plan = poly.plan(spec)
    grid_flops = poly.grid_flops_per_student(spec)
    print(f"fig1: paper_2nn h = d = n = {h}, {len(students)} students ({len(students) // n_inst} points x "
          f"{n_inst} seeds), {spec.steps} steps, x64, {jax.devices()[0].device_kind}")
    print(f"poly plan: {plan.n_monomials} loss monomials; per step terms of (W_1, W_2) "
          f"{[s.weight_terms for s in plan.steps]}, matmuls {[s.matmuls for s in plan.steps]}; "
          f"{plan.flops / 1e9:.3g} GFLOP and ~{plan.peak_elements * 8 / 2**30:.2f} GiB per seed; "
          f"grid mode {grid_flops / 1e9:.3g} GFLOP per student")

    t0 = time.perf_counter()
    got_poly = collect(poly_driver.iter_group(spec, students, drivers.GroupContext(max_memory=args.max_memory)))
    t_poly = time.perf_counter() - t0
    # the coefficient part alone, compiled (a second call): seconds per FLOP of poly mode
    hp_cols = students.drop_duplicates(list(spec.instance_columns))
    hp = engine.instance_hparams(spec, {c: hp_cols[c].to_numpy() for c in spec.instance_columns})
    fn = poly.make_coefficient_fn(spec, plan)
    params0, inst = engine.make_instances(spec, True, hp)
    jax.block_until_ready(fn(params0, inst, 1.0))
    t0 = time.perf_counter()
    jax.block_until_ready(fn(params0, inst, 1.0))
    t_coef = time.perf_counter() - t0
    print(f"poly mode: {t_poly:.2f} s (coefficients of {n_inst} seeds {t_coef:.2f} s compiled, "
          f"{plan.flops * n_inst / t_coef / 1e9:.1f} GFLOP/s)")

    t0 = time.perf_counter()
    got_grid = collect(engine.iter_group(spec, students, max_memory=args.max_memory))
    t_grid = time.perf_counter() - t0
    # steady state: the students of one seed again (same chunk shape when a chunk holds one seed)
    one = students[students["seed"] == 0]
    t0 = time.perf_counter()
    collect(engine.iter_group(spec, one, max_memory=args.max_memory))
    t_grid_one = time.perf_counter() - t0
    print(f"grid mode: {t_grid:.2f} s (one seed again: {t_grid_one:.2f} s, "
          f"{grid_flops * len(one) / t_grid_one / 1e9:.1f} GFLOP/s)")
    worst, mismatched = max_rel_diff(got_poly, got_grid)
    n_div = sum(bool(r["diverged"]) for r in got_grid.values())
    print(f"same numbers: max relative difference {worst:.2e} over every finite logged loss; "
          f"{mismatched} divergence/NaN mismatches; {n_div} diverged students")
    print(f"speedup: grid / poly = {t_grid / t_poly:.1f}x")
    # after the timed runs: auto may measure (compile each mode's program once), which would warm them
    rep = poly_driver.mode_report(spec, len(students), n_inst, dtype_bytes=8)
    print(f"auto mode picks: {rep['mode']} ({rep['reason']})")

    # crossover: grid wins when P * grid_flops * spf_grid < plan.flops * spf_poly + P * eval cost
    spf_grid = t_grid_one / (grid_flops * len(one))
    spf_poly = t_coef / (plan.flops * n_inst)
    print(f"crossover (measured {1e12 * spf_grid:.1f} ps/FLOP grid, {1e12 * spf_poly:.1f} ps/FLOP poly, compile "
          f"not counted; host evaluation ~1 ns/FLOP): grid mode wins below P* points per seed")
    print(f"{'steps':>5} {'monomials':>9} {'poly GFLOP/seed':>15} {'GiB/seed':>8} {'grid GFLOP/student':>18} "
          f"{'P*':>8}")
    for steps in range(1, 5):
        s = dataclasses.replace(spec, steps=steps, log_steps=tuple(range(steps + 1)))
        p = poly.plan(s)
        g = poly.grid_flops_per_student(s)
        if not p.feasible:
            print(f"{steps:>5} {'-':>9} {'polynomials too large: grid mode always':>45}")
            continue
        per_point = g * spf_grid - p.eval_flops() * 1e-9  # host evaluation ~1 ns/FLOP
        star = p.flops * spf_poly / per_point if per_point > 0 else float("inf")
        print(f"{steps:>5} {p.n_monomials:>9} {p.flops / 1e9:>15.4g} {p.peak_elements * 8 / 2**30:>8.2f} "
              f"{g / 1e9:>18.4g} {star:>8.1f}")


if __name__ == "__main__":
    main()
