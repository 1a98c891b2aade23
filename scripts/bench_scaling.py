"""How a sweep scales with its size: the whole ``lrsweep run`` path (plan, train, write, merge) at a
fixed student shape as the grid grows, and the planning of a grid too large to train here.

For each size N (seeds x learning-rate points, default 10^2 .. 10^6) one fresh process runs the
sweep through :func:`lrsweep.core.runner.run` and reports, all measured in that run:
  - wall time, students/s and student-steps/s of the whole run (compile included; the compile
    seconds are printed apart, from the run's meta.json, see :mod:`lrsweep.core.compilestats`);
  - the process's peak host memory (ru_maxrss) and, on an accelerator, the device's peak bytes in use;
  - cost per student relative to the largest size (1.0 = linear cost), and the ratio of the
    engine's student-steps/s to a per-student loop (one jitted step per student, as in
    scripts/bench_engine.py) measured on the same device in the same script.
Then ``lrsweep run --dry-run`` of a 10^7-student grid (``--plan-students``), in a fresh process:
seconds and peak memory of the planning alone.

    python scripts/bench_scaling.py               # 10^2 .. 10^6 students, plan 10^7
    python scripts/bench_scaling.py --quick       # 10^2 .. 10^4, plan 10^6: a smoke run
    python scripts/bench_scaling.py --width 64 --steps 100   # GPU sizes (scripts/device_check.sh)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sweep_config(n_students: int, width: int, steps: int, n_logs: int, name: str = "scaling") -> dict:
    """N students: seeds x learning-rate points (at most 1,000 points per seed), one shape group."""
    points = min(n_students, 1000)
    seeds = max(1, n_students // points)
    return {"name": name, "seeds": {"range": [0, seeds - 1, 1]},
            "task": {"kind": "linear_teacher", "input_dim": width, "n_train": 2 * width},
            "model": {"n_layers": 2, "width": width, "activation": "linear"},
            "train": {"optimizer": "gd", "steps": steps, "log_steps": {"geomspace": [1, steps, n_logs]},
                      "mode": "grid"},  # the engine, not the exact polynomials linear gd students allow
            "grid": {"lr": {"geomspace": [1e-3, 0.5, points]}}}


CHILD_RUN = r"""
import json, sys, time
from lrsweep.core import config
from lrsweep.core import runner
spec = json.loads(sys.argv[1])
cfg = config.load_config(spec["config"])
t0 = time.perf_counter()
summary = runner.run(cfg, out=spec["out"], progress=False, max_students=None, x64=spec["x64"])
wall = time.perf_counter() - t0
import jax
stats = jax.local_devices()[0].memory_stats() or {}
meta = json.loads((summary.run_dir / "meta.json").read_text())
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # this process's peak
print(json.dumps({"wall": wall, "n": summary.n_students, "rss": hwm * 1024,
                  "device_peak": stats.get("peak_bytes_in_use"), "compile": meta.get("compile", {}),
                  "device": jax.devices()[0].device_kind, "n_devices": jax.local_device_count()}))
"""

CHILD_PLAN = r"""
import json, sys, time, io, contextlib
from lrsweep.cli import main
t0 = time.perf_counter()
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["run", sys.argv[1], "--dry-run", "--max-students", sys.argv[2]])
wall = time.perf_counter() - t0
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rc": rc, "wall": wall, "rss": hwm * 1024,
                  "first_line": buf.getvalue().splitlines()[0] if buf.getvalue() else ""}))
"""


def child(code: str, *argv: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def loop_rate(width: int, steps: int, x64: bool, n_loop: int = 32) -> float:
    """Student-steps/s of the per-student loop of scripts/bench_engine.py at this shape."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from bench_engine import bench_loop  # noqa: E402

    import jax
    jax.config.update("jax_enable_x64", x64)
    from lrsweep.core import config
    from lrsweep.core.spec import GroupSpec
    students = config.expand_grid(config.load_config(sweep_config(n_loop, width, steps, 2)))
    spec = GroupSpec.from_row(students.iloc[0].to_dict())
    return bench_loop(spec, students, n_loop, repeats=2)


def gib(n) -> str:
    return "-" if n is None else f"{n / (1 << 30):.2f}GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f}MiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10^2 .. 10^4 students and plan 10^6: a smoke run")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="grid sizes (default 10^2 .. 10^6)")
    ap.add_argument("--width", type=int, default=8, help="input_dim = width, n_train = 2 width (default 8)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--logs", type=int, default=5, help="logged steps: log_steps geomspace [1, steps, LOGS]")
    ap.add_argument("--plan-students", type=int, default=None, help="the --dry-run grid (default 10^7; quick 10^6)")
    ap.add_argument("--x64", action="store_true")
    ap.add_argument("--out", default=None, help="results root (default: a temporary folder, removed)")
    args = ap.parse_args()
    sizes = args.sizes or ([10 ** k for k in range(2, 5)] if args.quick else [10 ** k for k in range(2, 7)])
    plan_n = args.plan_students or (10 ** 6 if args.quick else 10 ** 7)

    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or tmp
        rows = []
        for n in sizes:
            cfg_path = Path(tmp) / f"scaling_{n}.json"
            cfg_path.write_text(json.dumps(sweep_config(n, args.width, args.steps, args.logs, f"scaling_{n}")))
            r = child(CHILD_RUN, json.dumps({"config": str(cfg_path), "out": out, "x64": args.x64}))
            rows.append(r)
            if len(rows) == 1:
                print(f"device: {r['device']} x {r['n_devices']}  shape: linear 2-layer, d = h = {args.width}, "
                      f"n = {2 * args.width}, {args.steps} steps, {args.logs} logged steps, "
                      f"{'float64' if args.x64 else 'float32'}")
                print(f"{'students':>10} {'wall s':>8} {'compile s':>9} {'students/s':>11} {'st-steps/s':>11} "
                      f"{'(no compile)':>12} {'peak RSS':>9} {'device peak':>11}")
            c = r["compile"]
            train_s = r["wall"] - c.get("compile_s", 0.0)
            print(f"{r['n']:>10,} {r['wall']:>8.2f} {c.get('compile_s', float('nan')):>9.2f} "
                  f"{r['n'] / r['wall']:>11,.0f} {r['n'] * args.steps / r['wall']:>11.3g} "
                  f"{r['n'] * args.steps / train_s:>12.3g} {gib(r['rss']):>9} {gib(r['device_peak']):>11}", flush=True)
        big = rows[-1]
        cost = lambda r: (r["wall"] - r["compile"].get("compile_s", 0.0)) / r["n"]
        print("seconds per student (compile excluded) relative to the largest grid (1.0 = linear cost):",
              ", ".join(f"{r['n']:,}: {cost(r) / cost(big):.2f}" for r in rows))
        loop = loop_rate(args.width, args.steps, args.x64)
        eng = big["n"] * args.steps / (big["wall"] - big["compile"].get("compile_s", 0.0))
        print(f"per-student loop: {loop:.4g} student-steps/s; the largest run (whole run, compile excluded): "
              f"{eng:.4g} -> {eng / loop:.1f}x")

        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(sweep_config(plan_n, args.width, args.steps, args.logs, "plan")))
        t0 = time.perf_counter()
        p = child(CHILD_PLAN, str(plan_path), str(plan_n))
        print(f"plan {plan_n:,} students (lrsweep run --dry-run, fresh process): {p['wall']:.1f} s in the planner, "
              f"{time.perf_counter() - t0:.1f} s with start-up, peak RSS {gib(p['rss'])} (exit {p['rc']}; "
              f"{p['first_line']})")


if __name__ == "__main__":
    main()
