"""``lrsweep boundary``: the learning rates where the phase changes (seed 003), registered as a CLI
subcommand by :mod:`lrsweep.families.catapult`."""

from __future__ import annotations

import argparse
import sys

from lrsweep import cli, registry
from lrsweep.core import config as config_lib
from lrsweep.core import stopping


def add_arguments(b) -> None:
    b.add_argument("config", nargs="?", help="YAML file or built-in name")
    b.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field (repeatable)")
    b.add_argument("--rtol", type=_rtol, default=None,
                   help="relative precision of each boundary: hi/lo <= 1 + RTOL (default 1e-3; at least 8 ulps "
                        "of the precision: 9.5e-07 in float32, 1.8e-15 with --x64)")
    b.add_argument("--out", default="results", help="results root (default: results)")
    b.add_argument("--x64", action="store_true", help="train in float64 (default float32)")
    b.add_argument("--max-memory", type=cli.parse_bytes, default=None, help="memory budget per chunk, e.g. 2GB")
    b.add_argument("--chunk-size", type=cli.positive_int, default=None, help="cap on students per compiled call")
    b.add_argument("--resume", metavar="RUN_DIR", help="finish or repair a run of lrsweep boundary (reuses its "
                                                       "config, precision and rtol)")
    b.add_argument("--max-students", type=cli.positive_int, default=config_lib.DEFAULT_MAX_STUDENTS, metavar="N",
                   help="refuse a coarse grid of more than N students")
    b.add_argument("--quiet", action="store_true", help="no progress")


def _rtol(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), e.g. 1e-4, got {text!r}") from None


def cmd_boundary(args) -> int:
    from lrsweep.families.catapult import boundary
    from lrsweep.core import progress
    from lrsweep.core import runner
    if not args.quiet:
        progress.interval_from_env()
    cfg = None
    if args.resume:
        if args.config is not None or args.overrides:
            raise config_lib.ConfigError("--resume", "reuses the config stored in the run; do not also give "
                                                     "CONFIG or --set")
        given = [name for name, value in (("--rtol", args.rtol), ("--x64", args.x64 or None)) if value is not None]
        if given:
            raise config_lib.ConfigError(given[0], "--resume reuses the run's rtol and precision; do not also give "
                                                   f"{' or '.join(given)}")
    else:
        cfg = config_lib.load_config(runner.resolve_config_path(args.config), args.overrides)
    rtol = boundary.DEFAULT_RTOL if args.rtol is None else args.rtol
    try:
        with stopping.signals_stop():
            summary = boundary.run_boundary(cfg, args.out, rtol=rtol, x64=args.x64, max_memory=args.max_memory,
                                            chunk_size=args.chunk_size, resume=args.resume,
                                            progress=not args.quiet, max_students=args.max_students)
    except runner.RunInterrupted as e:  # the coarse grid or the bisection (boundary.BisectionInterrupted)
        print(f"lrsweep: interrupted; {e}. Finish it with: lrsweep boundary --resume {e.run_dir}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    except KeyboardInterrupt:  # outside the training and the bisection (planning, between the two)
        where = args.resume or args.out
        print(f"lrsweep: interrupted; lrsweep ls {where} shows the run and the command that finishes it",
              file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    from lrsweep import compare
    comparison = compare.write_comparison(summary.run_dir)  # the checks read boundaries.parquet
    print_boundaries(summary)
    cli.print_comparison_tables(summary.run_dir, *comparison, rows=6)
    return 0


def print_boundaries(summary) -> None:
    """Where the table is, how many students it took against a dense grid, and the boundaries in
    units of 1 / lambda_0 where lambda_0 was logged."""
    import pandas as pd
    t = summary.table
    print(f"boundaries: {summary.run_dir / 'boundaries.parquet'}: {int(t['bracketed'].sum())} of {len(t)} bracketed "
          f"by the coarse rates, located to hi/lo <= 1 + {summary.rtol:.3g}")
    ratio = summary.n_dense / summary.n_trained if summary.n_trained else float("nan")
    print(f"students trained: {_count(summary.n_trained)} (coarse grid {_count(summary.n_coarse)} + bisection "
          f"{_count(summary.n_bisection)}); a dense grid of the same resolution: {_count(summary.n_dense)} "
          f"({_count(ratio)}x more)")
    shown = t[t["bracketed"]].copy()
    if shown.empty:
        return
    shown["eta_lambda0"] = shown["lr"] * shown["initial_ntk_eig"]
    keys = [c for c in ("width", "n_layers", "activation", "init_scale", "loss", "data", "kind") if c in shown
            and shown[c].nunique() > 1]
    agg = shown.groupby(keys + ["boundary"], sort=True).agg(
        n=("lr", "size"), lr=("lr", "median"), eta_lambda0=("eta_lambda0", "median")).reset_index()
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(f"median over seeds (eta_lambda0: the boundary times the initial NTK eigenvalue; theory: "
              f"{theory_words(shown)}):")
        print(agg.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"load with: pandas.read_parquet('{summary.run_dir / 'boundaries.parquet'}')")


def theory_words(table) -> str:
    """The thresholds theory gives for the losses of ``table`` (theory.thresholds), e.g. "mse: lazy/catapult
    2, catapult/divergent 4"; "logistic: lazy/catapult 8"."""
    from lrsweep.families.catapult import theory
    losses = sorted(set(table["loss"].dropna())) if "loss" in table else ["mse"]
    words = []
    for loss in losses:
        t = theory.thresholds(loss)
        words.append(f"{loss}: lazy/catapult {t.lazy:g}" + (f", catapult/divergent {t.divergent:g}"
                                                           if t.divergent is not None else ""))
    return "; ".join(words)


def _count(n: float) -> str:
    """A count as people read it: 12,345 up to a billion, then 1.2e+15 (not every digit)."""
    return "?" if n != n else f"{n:,.0f}" if abs(n) < 1e9 else f"{n:.2g}"


def show_lines(run, meta: dict) -> list[str]:
    """What ``lrsweep show`` adds for a run with a bisection: where its boundaries are, or how to finish it."""
    bisection = meta.get("boundary")
    if bisection is None or bisection.get("status") != "complete":  # the status line says what to do
        return []
    return [f"boundaries: {run / 'boundaries.parquet'} (rtol {bisection['rtol']:.3g}; students trained: "
            f"{_count(bisection['n_coarse'] + bisection['n_bisection'])}, a dense grid: "
            f"{_count(bisection['n_dense'])})"]


EXAMPLES = """examples:
  lrsweep boundary catapult/uv_width_cpu                 # configs/catapult/uv_width_cpu.yaml, rtol 1e-3
  lrsweep boundary catapult/example1_linear_degenerate_cpu --x64 --rtol 1e-9
  lrsweep boundary catapult/uv_width_cpu --set seeds=[0,1] --out /tmp/results
  lrsweep boundary --resume results/uv_width_cpu/RUN_ID  # finish or repair a run (lrsweep ls lists them)
"""

COMMAND = registry.Command("boundary", 'learning rates where the phase changes (lazy/catapult, catapult/divergent)', (
        "Train CONFIG's grid (its shared `lr` axis is the coarse grid), then locate for every point of the "
        "other axes and seed the learning rates where the phase changes, by bisections that advance together "
        "in one compiled program, to hi/lo <= 1 + rtol. Writes RUN/boundaries.parquet beside the run's tables."),
        add_arguments, cmd_boundary, epilog=EXAMPLES)
