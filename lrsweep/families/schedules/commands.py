"""``lrsweep schedule``: optimal learning-rate schedules of seed 004's random-feature model, registered as
a CLI subcommand by :mod:`lrsweep.families.schedules`, with what ``lrsweep show`` prints of such a run."""

from __future__ import annotations

import sys

from lrsweep import cli, registry
from lrsweep.core import config as config_lib
from lrsweep.core import stopping
from lrsweep.core import store
from lrsweep.families.schedules.point import POINT_COLUMNS, SCHEDULE, point_label, read_table


def add_arguments(sc) -> None:
    sc.add_argument("config", nargs="?", help="YAML file or built-in name (e.g. "
                                             "configs/schedules/optimal_schedules_cpu.yaml)")
    sc.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                    help="override a field, e.g. --set schedule_search.horizons=[100,1000] (repeatable)")
    sc.add_argument("--out", default="results", help="results root (default: results)")
    sc.add_argument("--verify", type=cli.positive_int, default=None, metavar="SEEDS",
                    help="train every found schedule with SEEDS seeds and compare the Monte Carlo mean")
    sc.add_argument("--verify-max-seeds", type=cli.positive_int, default=None, metavar="N",
                    help="seeds a schedule may get when its loss tail needs more than SEEDS for a reliable mean "
                         "(default 16 x SEEDS)")
    sc.add_argument("--x64", action="store_true", help="search in float64 (default float32; every reported loss "
                                                       "is float64)")
    sc.add_argument("--max-memory", type=cli.parse_bytes, default=None, help="memory budget per chunk of --verify")
    sc.add_argument("--resume", metavar="RUN", default=None,
                    help="finish or repair a schedule run (interrupted, failed, a damaged table, an unfinished "
                         "--verify) with its stored config and options")
    sc.add_argument("--quiet", action="store_true", help="no progress")


def cmd_schedule(args) -> int:
    from lrsweep.core import runner
    from lrsweep.families.schedules import search as schedule_search
    cfg = None
    if args.resume is not None:
        given = [name for name, on in (("CONFIG", args.config is not None), ("--set", args.overrides),
                                       ("--verify", args.verify is not None),
                                       ("--verify-max-seeds", args.verify_max_seeds is not None),
                                       ("--x64", args.x64)) if on]
        if given:
            raise config_lib.ConfigError("--resume", f"reuses the config and options stored in the run; do not "
                                                     f"also give {', '.join(given)}")
    else:
        if args.config is None:
            raise config_lib.ConfigError("config", "give a power_law_features config (e.g. "
                                                   "configs/schedules/optimal_schedules_cpu.yaml) or --resume RUN")
        cfg = config_lib.load_config(runner.resolve_config_path(args.config), args.overrides,
                                     defaults={"schedule_search": {}})
    try:
        with stopping.signals_stop():
            result = schedule_search.run_schedule(cfg, args.out, verify=args.verify, max_seeds=args.verify_max_seeds,
                                                  x64=args.x64, progress=not args.quiet, max_memory=args.max_memory,
                                                  resume=args.resume)
    except KeyboardInterrupt as e:
        run = getattr(e, "run_dir", None) or args.resume
        print(f"lrsweep: interrupted; {e or 'stopped'}. Finish it with: lrsweep schedule --resume "
              f"{run or 'RUN'}", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    print(f"schedule run: {result.run_dir}")
    summary = result.summary
    n_points = len(summary[list(POINT_COLUMNS)].drop_duplicates())
    if result.search is not None:
        print(f"searched: {result.search.describe()}")
    print(f"search: {result.search_s:.1f} s for {n_points} point(s) x {summary['T'].nunique()} horizons x "
          f"{summary[SCHEDULE].nunique()} schedules")
    print_schedule_summary(summary)
    cli.print_verdict(result.run_dir)
    return 0


def print_schedule_summary(summary) -> None:
    """Final expected loss per horizon (rows) and schedule (columns), per point; with --verify the Monte
    Carlo mean beside it; a * marks a schedule that touches the rate bound."""
    import pandas as pd
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        for point, g in summary.groupby(list(POINT_COLUMNS), sort=False):
            bound = float(g["rate_bound"].iloc[0]) if "rate_bound" in g else float("inf")
            print("final expected loss (recursion)" + (" | Monte Carlo mean" if "mc_mean" in g else "") + " at "
                  + point_label(point) + "; rate "
                  + ("unbounded (every rate with a finite loss searched)" if bound == float("inf")
                     else f"bounded by eta_max = {bound:.4g}") + ":")
            cells = g.assign(cell=[f"{v:.4g}" + ("*" if hit else "") for v, hit in
                                   zip(g["expected_loss"], g.get("at_bound", pd.Series(False, index=g.index)))])
            heavy = None
            if "mc_mean" in g:
                from lrsweep.families.schedules.checks import reliable
                heavy = pd.Series([not reliable(r) for r in g.to_dict("records")], index=g.index)
                cells["cell"] = cells["cell"] + " | " + g["mc_mean"].map(lambda v: f"{v:.4g}") + heavy.map(
                    {True: "!", False: ""})
            print(cells.pivot(index="T", columns=SCHEDULE, values="cell").to_string())
            if heavy is not None and heavy.any():
                print(f"  ! heavy-tailed final loss: its Monte Carlo mean is no check of the recursion (the exact "
                      f"expectation): {int(heavy.sum())} of {len(g)} schedules; why: random_features.verify_tails")
            if "at_bound" in g and g["at_bound"].any():
                print(f"  * touches the rate bound eta_max = {bound:.4g}: {int(g['at_bound'].sum())} of {len(g)} "
                      f"schedules (the bound is the config's choice; without it the optimum may lie above it)")


def show(run) -> int:
    """``lrsweep show`` of a schedule run: what was searched, where the tables are, the summary."""
    meta = store.read_json(run / "meta.json")
    verify = meta.get("verify") if isinstance(meta.get("verify"), dict) else {}
    print(f"schedule search: {len(meta['horizons'])} horizons x {len(meta['kinds'])} schedules x {meta['n_points']} "
          f"point(s), {meta.get('search_s', float('nan')):.1f} s; tables: {run / 'schedules.parquet'}, "
          f"{run / 'schedule_summary.parquet'}" + (f"; Monte Carlo run: {run / verify['run']}"
                                                    if verify.get("run") else "")
          + (f"; searched in blocks (resolution {meta['resolution']:g})" if meta.get("resolution") else ""))
    print_schedule_summary(read_table(run / "schedule_summary.parquet"))
    return 0


COMMAND = registry.Command("schedule", "optimal learning-rate schedules of seed 004's random-feature model", (
        "Find, for every point of CONFIG's grid (a power_law_features config; its schedule_search section is "
        "optional) and every horizon T, the best constant, power-law, polynomial-decay, WSD and cosine schedules "
        "and the optimal schedule, through the exact loss recursion, over every rate whose expected loss stays "
        "finite unless schedule_search bounds the rate. Writes RUN/schedules.parquet and "
        "RUN/schedule_summary.parquet; --verify SEEDS trains every schedule by Monte Carlo SGD in RUN/verify/. Without schedule_search the horizons "
        "are the config's train.steps (else geomspace 100..10,000) and the schedules the six above; the output "
        "says which were searched. The grid gives no learning rate (the search finds them). --resume RUN "
        "finishes or repairs a run (interrupted, failed, a damaged table, an unfinished --verify)."),
    add_arguments, cmd_schedule)
