"""``lrsweep`` command line: a thin front end over :mod:`lrsweep.core.runner` and :mod:`lrsweep.core.store`.

Exit status: 0 done, 1 ``compare --strict`` disagreement, 2 bad input (one line on stderr, nothing
written), 130 interrupted, 141 the reader of stdout left early (``lrsweep schema | head``: the rest of
the output is dropped quietly; a run's results are stored before anything is printed).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from lrsweep import registry
from lrsweep.core import config as config_lib
from lrsweep.core import stopping
from lrsweep.core.errors import LrsweepError, StoreError

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C
SUMMARY_ROWS = 20  # settings printed at the end of a run and by `lrsweep show` (--rows)
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as shells report a writer whose reader left


def parse_bytes(text: str) -> int:
    """'2GB', '512MiB', '1e9' -> bytes."""
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([KMGT]?i?B?)?\s*", text, flags=re.IGNORECASE)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a size like 2GB or 512MiB, got {text!r}")
    unit = (m.group(2) or "").upper().replace("I", "").replace("B", "")
    try:
        value = float(m.group(1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a size like 2GB or 512MiB, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a size > 0 like 2GB, got {text!r}")
    return int(value * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[unit])


def _number(kind, allowed: str, ok, name: str):
    """An argparse type: ``kind(text)`` for which ``ok(v)`` holds, else ``<allowed>, got <text>``."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{allowed}, got {text!r}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{allowed}, got {text}")
        return v
    parse.__name__ = name
    return parse


positive_int = _number(int, "expected a positive integer", lambda v: v > 0, "positive_int")
nonnegative_int = _number(int, "expected an integer >= 0", lambda v: v >= 0, "nonnegative_int")
_seconds = _number(float, "expected seconds (a number >= 0)", lambda v: v >= 0, "seconds")
mem_fraction = _number(float, "expected a number in (0, 1]", lambda v: 0.0 < v <= 1.0, "mem_fraction")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``lrsweep: <option>: <what is allowed>, got <value>`` on stderr, exit 2
    (no usage block: the message names the option; ``lrsweep CMD --help`` gives the rest). Subparsers are of
    this class too (``add_subparsers`` makes them with the parent's class)."""

    def error(self, message: str):
        print(f"lrsweep: {one_line_error(message, self.prog)}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def one_line_error(message: str, prog: str = "lrsweep") -> str:
    """argparse's error ``message`` as ``<option>: <what is allowed>, got <value>`` (one line)."""
    message = " ".join(message.split())
    m = re.fullmatch(r"argument (\S+?)(?:/\S+)?: invalid choice: (.*) \(choose from (.*)\)", message)
    if m:
        option, value, choices = m.groups()
        return f"{option}: one of {choices.replace(chr(39), '')}, got {value}"
    m = re.fullmatch(r"argument (\S+?)(?:/\S+)?: (.*)", message)
    if m:
        return f"{m.group(1)}: {m.group(2)}"
    if message == "the following arguments are required: COMMAND":
        return f"COMMAND: a command is required (usage: lrsweep COMMAND ...), one of {', '.join(_command_names())}"
    command = prog.removeprefix("lrsweep").strip()
    return f"{command}: {message}" if command else message


def _command_names() -> list[str]:
    return ["run", "merge", *registry.COMMANDS, "ls", "show", "compare", "plot", "schema"]


class _EpilogAsWritten(argparse.HelpFormatter):
    """Help with the description filled as usual and the epilog (examples) kept line by line."""

    def _fill_text(self, text, width, indent):  # as argparse.RawDescriptionHelpFormatter, for text of lines
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    """The ``lrsweep`` parser: one subparser per command, in the order ``--help`` lists them (a family's
    commands, :data:`lrsweep.registry.COMMANDS`, after ``merge``)."""
    p = Parser(prog="lrsweep", description="Learning-rate sweeps of many small students, "
                          "trained at once with jit(vmap(scan)), stored as Parquet.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run_arguments(sub.add_parser("run", help="train every student of a config", description=(
        "Train every student of CONFIG (a YAML path or a name in configs/; default: the built-in quickstart) "
        "and write results/<name>/<run_id>/.")))
    _merge_arguments(sub.add_parser("merge", help="finish a sharded run: merge its shards' results", description=(
        "Merge the results of every shard of RUN (lrsweep run --shard I/N --run-id ID) into its tables, "
        "checked against the plan, mark it complete and compare it with theory. Exit 2, naming what is "
        "missing, while a shard is incomplete or running.")))
    for command in registry.COMMANDS.values():  # a family's subcommands (boundary, schedule)
        command.add_arguments(sub.add_parser(command.name, help=command.help, description=command.description,
                                             epilog=command.epilog or None,
                                             formatter_class=_EpilogAsWritten))
    _ls_arguments(sub.add_parser("ls", help="list runs with status and size"))
    _show_arguments(sub.add_parser("show", help="summary table of a run"))
    _compare_arguments(sub.add_parser("compare", help="compare a run with every registered theory that covers "
                                                      "its students"))
    _plot_arguments(sub.add_parser("plot", help="the papers' figures of a run (PNG and PDF in RUN/plots)"))
    sub.add_parser("schema", help="print every config field with its default and allowed values")
    return p


def _run_arguments(r) -> None:
    r.add_argument("config", nargs="?", help="YAML file or built-in name (default: quickstart)")
    r.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                   help="override a field, e.g. --set train.steps=16 --set model.width=32 "
                        "--set grid.lr_line=[6,10] (repeatable; the quickstart's orthogonal init needs "
                        "task.input_dim >= model.width)")
    r.add_argument("--out", default="results", help="results root (default: results)")
    r.add_argument("--x64", action="store_true", help="train in float64 (default float32)")
    r.add_argument("--max-memory", type=parse_bytes, default=None,
                   help="memory budget per chunk, e.g. 2GB (default: half the accelerator; on the CPU 64 MiB, "
                        "or room for 32 students up to 1/8 of RAM when students are large)")
    r.add_argument("--chunk-size", type=positive_int, default=None, help="cap on students per compiled call")
    r.add_argument("--mode", choices=("auto", "grid", "poly"), default=None,
                   help="override train.mode: grid trains every student, poly evaluates exact loss polynomials "
                        "in the learning rates (linear students, gd), auto picks the cheaper where poly applies")
    r.add_argument("--resume", metavar="RUN_DIR", help="finish an interrupted run (reuses its config)")
    r.add_argument("--checkpoint-every", type=_seconds, default=600.0, metavar="SECONDS",
                   help="save the state of a chunk of more than 1024 steps at most this often, so --resume "
                        "continues inside it (default 600; 0: never)")
    r.add_argument("--max-students", type=positive_int, default=config_lib.DEFAULT_MAX_STUDENTS, metavar="N",
                   help=f"refuse a grid of more than N students, counted before expanding it (default "
                        f"{config_lib.DEFAULT_MAX_STUDENTS:,}: planning them takes seconds and a few GB; "
                        f"a multi-host or --shard job splits the training, not the plan)")
    r.add_argument("--dry-run", action="store_true",
                   help="run every check and print the plan (grid size, groups, memory per chunk); train nothing")
    r.add_argument("--quiet", action="store_true",
                   help="no progress (otherwise a bar on a terminal, or a plain line every 30 s to a file: "
                        "set LRSWEEP_PROGRESS_EVERY=SECONDS to change)")
    _scale_out_arguments(r.add_argument_group("scale-out", "several jobs or hosts, one run (see README, Scale out)"))


def _scale_out_arguments(scale) -> None:
    scale.add_argument("--run-id", default=None, metavar="ID",
                       help="name the run directory <out>/<name>/ID (default: date-time-random); every --shard "
                            "of a sweep gives the same ID")
    scale.add_argument("--shard", default=None, metavar="I/N",
                       help="train only shard I of N (0 <= I < N) into the run --run-id, e.g. a Slurm array "
                            "task: 1/N of every group's students, the same whatever the machine; finish with "
                            "lrsweep merge RUN once all N are complete")
    scale.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="jax.distributed: process 0's address; with --num-processes and --process-id")
    scale.add_argument("--num-processes", type=positive_int, default=None, metavar="N")
    scale.add_argument("--process-id", type=nonnegative_int, default=None, metavar="I")
    scale.add_argument("--distributed", choices=("auto",), default=None,
                       help="jax.distributed with the cluster detected by JAX (TPU pods, Slurm, ...); instead "
                            "of --coordinator, --num-processes and --process-id, not with them")
    scale.add_argument("--mem-fraction", type=mem_fraction, default=None, metavar="F",
                       help="share of each GPU XLA may take (0 < F <= 1; XLA preallocates 75%% by default: "
                            "give e.g. 0.3 to run three sweeps on one card). Sets XLA_PYTHON_CLIENT_MEM_FRACTION")


def _merge_arguments(mg) -> None:
    mg.add_argument("run", help="run directory (<out>/<name>/<run_id>)")


def _ls_arguments(ls) -> None:
    ls.add_argument("root", nargs="?", default="results")


def _show_arguments(show) -> None:
    show.add_argument("run", help="run directory")
    show.add_argument("--rows", type=positive_int, default=SUMMARY_ROWS,
                      help=f"settings to print in the best learning rates table (default {SUMMARY_ROWS})")


def _compare_arguments(c) -> None:
    c.add_argument("run", help="run directory")
    c.add_argument("--theory", action="append", default=None, help="only this registry name (repeatable)")
    c.add_argument("--strict", action="store_true", help="exit 1 when agreement fails the stated tolerance")
    c.add_argument("--rows", type=positive_int, default=12, help="table rows to print (default 12)")


def _plot_arguments(pl) -> None:
    pl.add_argument("run", help="run directory")
    pl.add_argument("--out", default=None, help="output directory (default RUN/plots)")
    pl.add_argument("--dense", type=nonnegative_int, default=400, metavar="N",
                    help="N x N heat map over (eta_1, eta_2) from the stored learning-rate polynomials of "
                         "poly-mode groups, no training (default 400; 0: off)")


def _print_summary(summary, rows: int = SUMMARY_ROWS) -> None:
    """Counts, then the best learning rates per setting (summary_lib.best_rates), at most ``rows`` of them."""
    import pandas as pd
    print(f"run directory: {summary.run_dir}")
    now = f" ({_trained_text(summary)})" if summary.trained is not None and summary.already else ""
    print(f"students: {summary.n_students}{now} in {summary.groups} shape group(s), diverged: {summary.n_diverged}, "
          f"wall time: {summary.wall_time_s:.1f}s, students/s: {summary.students_per_s:.1f}")
    if summary.compile:
        from lrsweep.core.compilestats import CompileStats
        print(CompileStats(**{k: summary.compile[k] for k in ("programs", "cache_hits", "compile_s", "load_s")}).line())
    best = summary.best
    if not best.empty:
        metrics = best["metric"].dropna().unique()
        loss = metrics[0] if len(metrics) == 1 else "loss (column metric)"
        per = f" per ({', '.join(summary.setting_columns)})" if summary.setting_columns else ""
        print(f"best learning rates{per}: the point with the lowest mean {loss}\n"
              f"  among those with the fewest diverged seeds (never one where every seed diverged);\n"
              f"  mean over the surviving (non-diverged) seeds; n_seeds survived, n_diverged diverged there")
        shown = best.head(rows).drop(columns=["metric"] if len(metrics) == 1 else [])
        text = shown.astype(object).map(lambda v: "-" if v is None or v != v else
                                        f"{v:.6g}" if isinstance(v, float) else str(v))
        text.loc[shown["n_seeds"] == 0, "mean"] = "all diverged"
        with pd.option_context("display.width", 160, "display.max_columns", 40):
            print(text.to_string(index=False))
        if len(best) > rows:
            print(f"({len(best) - rows} more settings not shown; all {len(best)}: "
                  f"lrsweep show {summary.run_dir} --rows {len(best)})")
    print(f"load with: lrsweep.load({str(summary.run_dir)!r})")


def _set_mem_fraction(fraction: float | None) -> None:
    """XLA_PYTHON_CLIENT_MEM_FRACTION for the backend about to start; ConfigError when out of range or
    when JAX's backend already started (it reads the variable once)."""
    if fraction is None:
        return
    if not 0.0 < fraction <= 1.0:
        raise config_lib.ConfigError("--mem-fraction", f"must be in (0, 1], got {fraction:g}")
    try:  # private: a jax release may move it; then the variable is set and read if the backend is still to start
        from jax._src.xla_bridge import backends_are_initialized
    except ImportError:
        def backends_are_initialized():
            return False
    if backends_are_initialized():
        raise config_lib.ConfigError("--mem-fraction", "JAX's backend already started in this process; "
                                                       "set XLA_PYTHON_CLIENT_MEM_FRACTION before it starts")
    os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{fraction:g}"


def _scale_out(args):
    """(shard, distributed): the --shard I/N asked for, or this process's of a jax.distributed job
    (started here, before any other JAX call); ConfigError for a bad combination."""
    from lrsweep.core import distributed
    from lrsweep.core import runner
    multi = args.distributed is not None or any(
        v is not None for v in (args.coordinator, args.num_processes, args.process_id))
    distributed.check_options(args.coordinator, args.num_processes, args.process_id, auto=args.distributed == "auto")
    shard = runner.parse_shard(args.shard) if args.shard is not None else None
    if multi and shard is not None:
        raise config_lib.ConfigError("--shard", "a jax.distributed job shards itself (process i of n); "
                                                "do not also give --shard")
    if shard is not None and args.run_id is None and not args.resume:
        raise config_lib.ConfigError("--run-id", "--shard needs --run-id ID, the name every shard of the sweep "
                                                 "writes into (e.g. the Slurm job id)")
    if multi and args.dry_run:
        return None, False
    if multi:
        if args.distributed is None:
            distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        else:
            distributed.initialize(None, None, None)
    return shard, multi


def cmd_run(args) -> int:
    from lrsweep.core import progress
    from lrsweep.core import runner
    if not args.quiet:
        progress.interval_from_env()  # ConfigError before anything is written
    _set_mem_fraction(args.mem_fraction)
    if args.run_id is not None and (not args.run_id.strip() or "/" in args.run_id or args.run_id in (".", "..")):
        raise config_lib.ConfigError("--run-id", f"a directory name without '/', got '{args.run_id}'")
    shard, multi = _scale_out(args)
    if args.resume:
        from lrsweep.core import store
        if args.config is not None or args.overrides or args.mode is not None:
            raise config_lib.ConfigError("--resume", "reuses the config stored in the run; do not also give "
                                                     "CONFIG, --set or --mode")
        if not store.is_run(Path(args.resume)):
            raise config_lib.ConfigError("--resume", f"{args.resume} is not a run directory (no meta.json)")
        from lrsweep.core import runstate
        runstate.refuse_other_kind(args.resume, "--resume")  # a schedule search: lrsweep schedule --resume
        cfg = config_lib.load_config(Path(args.resume) / "config.yaml")  # for --dry-run; run() reloads it
        stored_x64 = bool(store.read_json(Path(args.resume) / "meta.json").get("x64", False))
        if args.x64 and not stored_x64:
            raise config_lib.ConfigError("--x64", f"{args.resume} is trained in float32; --resume keeps its "
                                                  f"precision: leave out --x64")
        if args.run_id is not None and Path(args.resume).name != args.run_id:
            raise config_lib.ConfigError("--run-id", f"--resume {args.resume} is the run {Path(args.resume).name}, "
                                                     f"not {args.run_id}; leave out --run-id")
        args.x64 = stored_x64
    else:
        path = runner.resolve_config_path(args.config)
        overrides = args.overrides + ([f"train.mode={args.mode}"] if args.mode else [])
        cfg = config_lib.load_config(path, overrides)
    if args.dry_run:
        plan = runner.plan_run(cfg, None if args.resume else args.out, x64=args.x64, max_memory=args.max_memory,
                               max_students=None if args.resume else args.max_students)
        _print_plan(cfg, plan)
        return 0
    run_id = args.run_id
    if multi:
        from lrsweep.core import distributed
        import jax
        run_id = distributed.share_run_id(run_id, runner.new_run_id)
        shard = (jax.process_index(), jax.process_count())
    try:
        with stopping.signals_stop():
            summary = runner.run(cfg, args.out, x64=args.x64, max_memory=args.max_memory,
                                 chunk_size=args.chunk_size, resume=args.resume, progress=not args.quiet,
                                 checkpoint_every=args.checkpoint_every, max_students=args.max_students,
                                 run_id=run_id, shard=shard)
    except runner.RunInterrupted as e:
        again = f" --shard {shard[0]}/{shard[1]}" if shard and not multi else ""
        print(f"lrsweep: interrupted; {e}. Finish it with: lrsweep run --resume {e.run_dir}{again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if shard is not None:
        i, n, k = summary.shard
        print(f"shard {i}/{n}: {k} students ({_trained_text(summary)}) in {summary.run_dir} "
              f"({summary.wall_time_s:.1f}s)")
        if not multi:
            from lrsweep.core import runstate
            done = sum(s == "complete" for s in runstate.shard_states(summary.run_dir, n).values())
            print(f"all {n} shards complete; next: lrsweep merge {summary.run_dir}" if done == n else
                  f"{done}/{n} shards complete; when every shard is: lrsweep merge {summary.run_dir}")
            return 0
        from lrsweep.core import distributed
        distributed.barrier("trained")
        if i != 0:
            print(f"process 0 merges the run: {summary.run_dir}")
            return 0
        summary = runner.merge(summary.run_dir)
    from lrsweep import compare
    comparison = compare.write_comparison(summary.run_dir)  # stored before anything is printed
    _print_summary(summary)
    print_comparison_tables(summary.run_dir, *comparison, rows=6)
    return 0


def _trained_text(summary) -> str:
    """'5 trained now, 3 already stored': what this command trained and what it found stored."""
    now = f"{summary.trained} trained now"
    return f"{now}, {summary.already} already stored" if summary.already else now


def cmd_merge(args) -> int:
    from lrsweep import compare
    from lrsweep.core import runner
    from lrsweep.core import runstate
    if not runner.merge_pending(Path(args.run)):  # merged before: verify, change nothing
        state = runstate.require_results(args.run)
        print(f"{args.run}: already merged ({state.describe()}); nothing to do. See it with: lrsweep show {args.run}")
        return 0
    summary = runner.merge(Path(args.run))
    comparison = compare.write_comparison(summary.run_dir)
    _print_summary(summary)
    print_comparison_tables(summary.run_dir, *comparison, rows=6)
    return 0


def _print_plan(cfg, plan) -> None:
    """What ``run --dry-run`` prints: grid size, each group (shape, mode, chunks and their memory), the
    memory check."""
    import jax.numpy as jnp

    from lrsweep.core import chunking
    from lrsweep.core.runner import format_bytes
    students, dtype_bytes = plan.students, jnp.dtype(jnp.result_type(float)).itemsize
    print(f"{cfg.name}: {len(students)} students in {len(plan.specs)} shape group(s) (grid size {plan.n_students:,})")
    for gid, spec in plan.specs.items():
        group = config_lib.select_rows(students, students["group_id"].to_numpy() == gid)
        a, mode, mem = spec.arch, plan.modes[gid], plan.memory[gid]
        print(f"  group {gid}: {len(group)} students, {a.parameterization} L={a.n_layers} h={a.width} d={a.input_dim} "
              f"n={spec.task.n_train} {a.activation} init={spec.init} steps={spec.steps} "
              f"loss={spec.loss} formulation={spec.formulation}"
              + ("" if spec.constant_rates else f" schedule={spec.schedule} warmup={spec.warmup_steps}")
              + "".join(f" {hook.summary(spec)}" for hook in spec.hooks)
              + f" mode={mode['mode']} ({mode['reason']})")
        if "poly_s" in mode:
            fixed = (f"; compile {mode['poly_compile_s']:.3g} s poly, {mode['grid_compile_s']:.3g} s grid (measured)"
                     if "poly_compile_s" in mode else "")
            print(f"    estimated: poly mode ~{mode['poly_s']:.3g} s, grid mode ~{mode['grid_s']:.3g} s{fixed}")
        if mode["mode"] == "grid":
            members, _ = chunking.instance_groups(group, spec.instance_columns)
            u, p = chunking.chunk_shape(spec, len(members), max(map(len, members)), max_memory=mem["budget"],
                                        dtype_bytes=dtype_bytes)
            print(f"    chunks of {u} instance(s) x {p} student(s): ~{format_bytes(chunking.chunk_bytes(spec, u, p, dtype_bytes))} "
                  f"each (budget {format_bytes(mem['budget'])})")
        else:
            print(f"    poly coefficients: ~{format_bytes(mode.get('poly_bytes_per_instance', 0))} per instance "
                  f"(budget {format_bytes(mem['budget'])})")
    gid = max(plan.memory, key=lambda g: plan.memory[g]["min_chunk"])
    mem = plan.memory[gid]
    print(f"memory check: ok: the smallest chunk of every group (one instance and one student) fits its budget "
          f"and the {format_bytes(mem['device'])} of {mem['device_name']} (largest: ~{format_bytes(mem['min_chunk'])}, "
          f"group {gid})")


def print_verdict(run) -> bool:
    """Compare (a run's table checks), write the tables, print the verdict; return ok."""
    from lrsweep import compare
    _, _, verdict = compare.write_comparison(run)
    print("theory verdict:")
    print("  " + verdict.text.replace("\n", "\n  "))
    return verdict.ok


def print_comparison(run, theories=None, rows=12) -> bool:
    """Compare, write comparison.parquet, print a compact table and the verdict; return ok."""
    from lrsweep import compare
    return print_comparison_tables(run, *compare.write_comparison(run, theories), rows=rows)


def print_comparison_tables(run, table, summaries, verdict, rows=12) -> bool:
    import pandas as pd
    if not table.empty:
        cols = [c for c in ("theory", "gradient", "lr_total", "lr_1", "lr_2", "step", "n_seeds", "mean", "sem",
                            "prediction", "z", "rel_gap") if c in table]
        worst = table.reindex(table["z"].abs().sort_values(ascending=False).index).head(rows)
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(f"largest residuals of {len(table)} compared (point, step) pairs "
                  f"(full table: {run}/comparison.parquet):")
            print(worst[cols].to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        for name, frame in summaries.items():  # a family's summary (seed 000's lines)
            if name in registry.SUMMARY_TEXT:
                print(registry.SUMMARY_TEXT[name](frame, run))
    print("theory verdict:\n  " + verdict.text.replace("\n", "\n  "))
    return verdict.ok


def _readable_run(run) -> None:
    """Raise where ``run`` cannot be read (:func:`lrsweep.core.runstate.require_results`); where it is
    not complete, say so on stderr, one line with the command that finishes it, and go on with what
    it holds."""
    from lrsweep.core import runstate
    state = runstate.require_results(run)
    if state.state != "complete":
        print(f"lrsweep: note: {state.line()} (what follows is what it holds)", file=sys.stderr)


def cmd_compare(args) -> int:
    _readable_run(args.run)
    if registry.run_kind(args.run) is not None:  # a run of tables (a schedule search): its table checks
        ok = print_verdict(args.run)
        return 1 if (args.strict and not ok) else 0
    ok = print_comparison(args.run, args.theory, args.rows)
    return 1 if (args.strict and not ok) else 0


def cmd_plot(args) -> int:
    from lrsweep import plots as plot
    _readable_run(args.run)
    paths = plot.plot_run(args.run, args.out, dense=args.dense)
    print(f"wrote {len(paths)} files to {paths[0].parent if paths else args.out}")
    for p in paths:
        if p.suffix == ".png":
            print(f"  {p}")
    return 0


def cmd_ls(args) -> int:
    """One line per run: status (from the lock, meta.json and the verified tables), students with
    results, start, wall time, size. A damaged run is reported as such; the others still list."""
    from lrsweep.core import runstate
    from lrsweep.core import store
    root = Path(args.root)
    if not root.exists():
        print(f"no results under {root}")
        return 0
    runs = store.find_runs(root)
    if not runs:
        print(f"no runs under {root}")
        return 0
    width = max(40, *(len(str(r)) for r in runs))
    todo = []
    print(f"{'run':{width}s}  {'students':>13s}  {'started':19s}  {'wall':>8s}  {'size':>9s}  status")
    for run in runs:
        state = runstate.run_state(run)
        try:
            size = f"{store.run_size(run) / 1e6:8.2f}M"
        except OSError:
            size = "?"
        wall = f"{state.wall_time_s:7.1f}s" if state.wall_time_s is not None else "-"
        status = state.describe()
        ckpts = len([p for p in (run / "checkpoints").glob("*/*-t*") if p.name.split("-t")[-1].isdigit()]) \
            if (run / "checkpoints").exists() else 0
        status += f", {ckpts} mid-chunk checkpoint(s)" if ckpts else ""
        print(f"{str(run):{width}s}  {f'{state.done}/{state.total}':>13s}  {str(state.started or '-')[:19]:19s}  "
              f"{wall:>8s}  {size:>9s}  {status}")
        if state.resume:
            todo.append(state.resume)
    if todo:
        print("to finish or repair:\n" + "\n".join(f"  {command}" for command in todo))
    return 0


def cmd_show(args) -> int:
    from lrsweep.core import runstate
    from lrsweep.core import store
    run = Path(args.run)
    state = runstate.require_results(run)
    kind = registry.run_kind(run)
    if kind is not None and kind.show is not None:
        print(f"status: {state.describe()}" + (f"; finish it with: {state.resume}" if state.resume else ""))
        return kind.show(run)
    meta = store.read_json(run / "meta.json")
    print(f"status: {state.describe()}" + (f"; finish it with: {state.resume}" if state.resume else "") + f"  jax {meta.get('jax')} on {meta.get('device_count')}x "
          f"{meta.get('device_kind')}  x64={meta.get('x64')}")
    from lrsweep.core import summary as summary_lib
    _print_summary(summary_lib.summarize(run), rows=args.rows)
    for lines in registry.SHOW_LINES:  # what a family adds to a run it extended (boundaries)
        for line in lines(run, meta):
            print(line)
    return 0


COMMANDS = {"run": cmd_run, "merge": cmd_merge, "ls": cmd_ls, "show": cmd_show, "compare": cmd_compare, "plot": cmd_plot,
            "schema": lambda args: print(config_lib.describe_schema()) or 0}


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = COMMANDS[args.command](args) if args.command in COMMANDS else registry.COMMANDS[args.command].run(args)
        sys.stdout.flush()  # a reader that left shows here, not at exit
        return rc
    except LrsweepError as e:
        print(f"lrsweep: {e.prefix}{e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_BROKEN_PIPE
    except OSError as e:
        if getattr(e, "filename", None) and e.errno in store_write_errnos():
            return _write_error(e)
        if not isinstance(e, FileNotFoundError):
            raise
        print(f"lrsweep: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT


def store_write_errnos() -> frozenset:
    """errno values of a write that failed through no fault of the input (:data:`lrsweep.core.store.WRITE_ERRNOS`)."""
    from lrsweep.core import store
    return store.WRITE_ERRNOS


def _write_error(e: OSError) -> int:
    """A file could not be written (permission, read-only file system, full disk): one line naming it
    and the command that finishes the run once it is writable; exit 2. The run's status is then
    failed or dead (:func:`lrsweep.core.runner._record_outcome`), never complete."""
    from lrsweep.core import store
    file = Path(e.filename)
    run = store.run_of(file)
    todo = (f"finish with: {store.repair_command(run, file)}" if store.is_run(run)
            else "run the command again")
    print(f"lrsweep: cannot write {e.filename}: {e.strerror}; once it is writable, {todo}", file=sys.stderr)
    return EXIT_BAD_INPUT


def _drop_stdout() -> None:
    """The reader of stdout left (``lrsweep schema | head``): send what is still buffered to /dev/null,
    so exiting flushes quietly (Python docs, signal module, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout without a file descriptor (redirected in-process)
        pass


if __name__ == "__main__":
    sys.exit(main())
