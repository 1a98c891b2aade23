"""Benchmark `lrsweep compare` and the end-of-run summary against what they summarise, as ratios measured
in one run (issue 26, item 4), and check that a faster comparison writes the same tables.

- compare/show: ``lrsweep compare RUN`` and ``lrsweep show RUN`` as processes on one stored run of
  ``configs/layer_balancing/fig2_3nn_orthogonal_cpu.yaml``, interleaved, ``--rounds`` times;
- process/training (``--fig1``): the whole ``lrsweep run configs/layer_balancing/fig1_2nn_orthogonal.yaml``
  (seed 000 Fig. 1: h = 1000, 1,805 students) as a process against its training time, the run's own
  wall time (``wall_time_s`` in meta.json: compile and training, what the runner measures);
- ``--before TREE``: the same measurements with another checkout of lrsweep (``PYTHONPATH=TREE``; e.g.
  ``git worktree add /tmp/old <commit>``), interleaved with this one; and ``--same RUN ...``: the tables
  ``compare`` writes (comparison, lines, checks) by both checkouts on copies of each stored RUN, bit for bit
  (pyarrow ``Table.equals``).

    nice python scripts/bench_compare.py                       # compare/show, 3 rounds
    nice python scripts/bench_compare.py --fig1                # and fig1's process/training (minutes)
    nice python scripts/bench_compare.py --before /tmp/old --fig1 --same results/some/run ...
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
FIG2 = HERE / "configs/layer_balancing/fig2_3nn_orthogonal_cpu.yaml"
FIG1 = HERE / "configs/layer_balancing/fig1_2nn_orthogonal.yaml"
TABLES = ("comparison", "lines", "checks")


def cli(tree: Path, *args: str) -> float:
    """Wall seconds of ``python -m lrsweep.cli ARGS`` run in ``tree`` (its lrsweep first on the path; paths
    in ``args`` absolute), output discarded."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lrsweep.cli", *args], env=env, check=True, cwd=tree,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def check_tree(tree: Path) -> None:
    """Fail unless ``python -m`` in ``tree`` imports that tree's lrsweep (not an installed one)."""
    found = subprocess.run([sys.executable, "-c", "import lrsweep; print(lrsweep.__file__)"], cwd=tree, check=True,
                           env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True).stdout
    assert Path(found.strip()).is_relative_to(tree), f"{tree} imports lrsweep from {found.strip()}"


def stored_run(root: Path, config: Path, tree: Path) -> Path:
    """The latest run of ``config`` under ``root``, made first (by ``tree``) if there is none."""
    runs = sorted((root / config.stem).glob("*/meta.json"))
    if not runs:
        cli(tree, "run", str(config), "--out", str(root))
        runs = sorted((root / config.stem).glob("*/meta.json"))
    return runs[-1].parent


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def compare_show(trees: dict, run: Path, rounds: int) -> None:
    """Per tree: ``compare`` and ``show`` seconds and their ratio per round, interleaved."""
    times = {name: {"compare": [], "show": []} for name in trees}
    for _ in range(rounds):
        for name, tree in trees.items():
            for command in ("show", "compare"):
                times[name][command].append(cli(tree, command, str(run)))
    print(f"compare/show on {run} ({rounds} rounds, interleaved):")
    for name, t in times.items():
        ratios = [c / s for c, s in zip(t["compare"], t["show"])]
        print(f"  {name:6s} compare {spread(t['compare'])} s, show {spread(t['show'])} s, "
              f"compare/show {spread(ratios)}")


def process_training(trees: dict, out: Path, rounds: int) -> None:
    """Per tree: fig1's whole ``lrsweep run`` process against its training time, interleaved."""
    rows = {name: [] for name in trees}
    for r in range(rounds):
        for name, tree in trees.items():
            root = out / f"fig1-{name}-{r}"
            process = cli(tree, "run", str(FIG1), "--out", str(root))
            meta = json.loads(next(root.glob("*/*/meta.json")).read_text())
            rows[name].append((process, meta["wall_time_s"]))
            shutil.rmtree(root)
    print(f"fig1 process/training ({FIG1.name}, {rounds} round(s), interleaved):")
    for name, r in rows.items():
        print(f"  {name:6s} process {spread([p for p, _ in r])} s, training {spread([t for _, t in r])} s, "
              f"process/training {spread([p / t for p, t in r])}, outside training {spread([p - t for p, t in r])} s")


def same_tables(before: Path, after: Path, runs: list[Path], work: Path) -> bool:
    """``lrsweep compare`` by both checkouts on copies of each run: every table it writes equal bit for bit."""
    import pyarrow.parquet as pq
    ok = True
    for i, run in enumerate(runs):
        written = {}
        for name, tree in (("before", before), ("after", after)):
            copy = work / f"same-{i}-{name}" / run.name
            shutil.copytree(run, copy)
            for t in TABLES:
                (copy / f"{t}.parquet").unlink(missing_ok=True)
            cli(tree, "compare", str(copy))
            written[name] = {t: pq.read_table(copy / f"{t}.parquet") for t in TABLES
                             if (copy / f"{t}.parquet").exists()}
        b, a = written["before"], written["after"]
        same = sorted(b) == sorted(a) and all(b[t].equals(a[t]) for t in b)
        ok &= same
        print(f"  {run}: {', '.join(f'{t} ({b[t].num_rows} rows)' for t in b) or 'no tables'}: "
              f"{'identical' if same else 'DIFFER'}")
    return ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, help="another checkout of lrsweep, measured interleaved with this one")
    ap.add_argument("--rounds", type=int, default=3, help="compare/show rounds (0: none)")
    ap.add_argument("--fig1", action="store_true", help="also fig1's process/training (trains 1,805 students per round)")
    ap.add_argument("--fig1-rounds", type=int, default=1)
    ap.add_argument("--runs", type=Path, default=None, help="where the stored fig2 run is kept (default: a temporary folder)")
    ap.add_argument("--same", type=Path, nargs="*", default=[], help="stored runs to compare by both checkouts (with --before)")
    args = ap.parse_args()
    args.same = [p.resolve() for p in args.same]
    args.runs = args.runs.resolve() if args.runs else None
    trees = {"after": HERE} if args.before is None else {"before": args.before.resolve(), "after": HERE}
    for tree in trees.values():
        check_tree(tree)
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or Path(tmp) / "runs"
        run = stored_run(runs, FIG2, HERE)
        if args.rounds:
            compare_show(trees, run, args.rounds)
        if args.fig1:
            process_training(trees, Path(tmp), args.fig1_rounds)
        if args.before is not None:
            print("tables written by compare, before and after:")
            if not same_tables(args.before.resolve(), HERE, [run, *args.same], Path(tmp)):
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
