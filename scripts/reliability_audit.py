"""Measure how many bad inputs, faults and damaged files each lrsweep command holds against (issue 24).

Runs a catalogue of cases against the CLI in-process (``lrsweep.cli.main`` with stdout and stderr
captured, SystemExit caught) and checks each against the standard:

  - the exit code is the one expected (2 for bad input and for a fault that is not the user's);
  - a refusal prints exactly one stderr line, never a traceback, and names what it must (the
    option or field, the damaged file, the command that repairs it);
  - bad input writes nothing (every file under the scratch root keeps its bytes and mtime);
  - no lock file is left behind that was not there before;
  - where a case says so, the repair it names then works (exit 0, the run complete).

Prints one Markdown table (command, cases tried, held) and the cases that did not hold; exits 1 if
any did not. Cheap: a few tiny runs (8 students, 3 steps) on the CPU, under 3 minutes on 2 cores.

    PYTHONPATH=. python scripts/reliability_audit.py [-v]

The catalogue is the list CASES: add a case with :func:`case` (argv against the CLI) or
:func:`check` (a Python callable, e.g. for ``lrsweep.load``). ``{plain}``, ``{sharded}``... in an
argv name the runs the fixtures make (:class:`Runs`); a case's ``setup`` gets the runs and may damage
a copy or patch a function for the duration (a fault).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import io
import json
import os
import shutil
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Callable

os.environ.setdefault("LRSWEEP_CACHE_DIR", "off")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")  # tiny programs: compile fast, as the tests do

import yaml  # noqa: E402

TINY = {"name": "tiny", "seeds": [0, 1],
        "task": {"input_dim": 6, "n_train": 6},
        "model": {"parameterization": "standard", "n_layers": 2, "activation": "relu", "width": 3},
        "train": {"steps": 3},
        "grid": {"lr": [0.05, 0.1, 0.2, 0.4]}}
RUN_ARGS = ["--quiet", "--chunk-size", "2"]


# --------------------------------------------------------------------------------------
# Running one CLI call and checking it
# --------------------------------------------------------------------------------------

@dataclasses.dataclass
class Outcome:
    rc: object
    out: str
    err: str
    escaped: str = ""  # a traceback that escaped main (a bug)


def call(argv) -> Outcome:
    from lrsweep import cli
    out, err = io.StringIO(), io.StringIO()
    escaped = ""
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
        except BaseException:  # noqa: BLE001 - what escapes main is what the audit reports
            rc, escaped = None, traceback.format_exc()
    return Outcome(rc, out.getvalue(), err.getvalue(), escaped)


def snapshot(root: Path) -> dict:
    """Every file's size and mtime; a lock file's existence only (whoever takes a lock writes its name
    into it; a lock file left behind is checked apart: :func:`lock_files`)."""
    return {p: (0, 0) if p.name.startswith(".lock") else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if p.is_file()}


def lock_files(root: Path) -> set:
    return set(root.rglob(".lock*"))


@dataclasses.dataclass
class Case:
    command: str           # the row of the table: run, merge, boundary, schedule, ls/show/compare/plot, load
    kind: str              # bad input | fault | damaged file
    what: str
    argv: list | None = None
    rc: int = 2
    says: tuple = ()       # substrings the one stderr line must hold ({plain}... formatted)
    writes: bool = False   # may write (a fault, a repair); bad input may not
    setup: Callable | None = None    # runs -> context manager (a fault) or None; may damage runs
    then: list | None = None         # argv of the repair, which must exit 0 and leave the run complete
    then_run: str | None = None      # the run ``then`` must leave complete ({name})
    stdout: tuple = ()     # substrings stdout must hold (an exit-0 case)
    fn: Callable | None = None       # a Python check instead of argv: runs -> problem text or None


def case(command, kind, what, argv, rc=2, **kw) -> Case:
    return Case(command, kind, what, argv, rc, **kw)


def check(command, kind, what, fn) -> Case:
    return Case(command, kind, what, fn=fn)


def evaluate(c: Case, runs: "Runs") -> str | None:
    """None if the case held, else what did not."""
    root = runs.root
    if c.fn is not None:
        try:
            return c.fn(runs)
        except BaseException:  # noqa: BLE001
            return "raised:\n" + traceback.format_exc()
    fault = c.setup(runs) if c.setup is not None else None
    argv = [runs.fmt(a) for a in c.argv]
    with fault if fault is not None else contextlib.nullcontext():
        before, locks = snapshot(root), lock_files(root)
        o = call(argv)
    problems = []
    if o.escaped:
        return "exception escaped main:\n" + o.escaped
    if o.rc != c.rc:
        problems.append(f"exit {o.rc}, expected {c.rc}")
    lines = o.err.strip().splitlines()
    if "Traceback" in o.err:
        problems.append("traceback on stderr")
    if c.rc != 0:
        if len(lines) != 1:
            problems.append(f"{len(lines)} stderr lines")
        if not c.writes and snapshot(root) != before:
            changed = sorted(str(p.relative_to(root)) for p in set(snapshot(root)) ^ set(before)) or ["(contents)"]
            problems.append(f"wrote: {', '.join(changed[:3])}")
        new_locks = lock_files(root) - locks
        if new_locks and not c.writes:  # a fault's new run keeps its lock file, as every run does
            problems.append(f"left lock file(s): {', '.join(str(p.relative_to(root)) for p in new_locks)}")
    for text in c.says:
        if runs.fmt(text) not in o.err:
            problems.append(f"stderr lacks {runs.fmt(text)!r}")
    for text in c.stdout:
        if runs.fmt(text) not in o.out:
            problems.append(f"stdout lacks {runs.fmt(text)!r}")
    if c.then is not None and not problems:
        o2 = call([runs.fmt(a) for a in c.then])
        if o2.rc != 0 or o2.escaped:
            problems.append(f"repair {' '.join(runs.fmt(a) for a in c.then)} exit {o2.rc}: "
                            f"{(o2.escaped or o2.err).strip().splitlines()[-1:]}")
        elif c.then_run is not None:
            from lrsweep.core import runstate
            state = runstate.run_state(runs.fmt(c.then_run))
            if state.state != "complete":
                problems.append(f"after the repair: {state.describe()}")
    if problems:
        return "; ".join(problems) + (f"\n      stderr: {o.err.strip()[-300:]}" if o.err.strip() else "")
    return None


# --------------------------------------------------------------------------------------
# Fixtures: a few tiny runs, and copies of them to damage
# --------------------------------------------------------------------------------------

class Runs:
    """The runs the cases act on, under a scratch ``root``: ``plain`` (complete), ``sharded`` (2 shards
    complete, not merged), ``merged`` (a sharded run merged), ``boundary`` / ``schedule`` (a plain
    run made to look like a boundary run / a schedule search by its meta.json and tables: their
    status model, without their compute); :meth:`copy` gives a fresh copy to damage."""

    def __init__(self, root: Path):
        self.root = root
        self.cfg = root / "tiny.yaml"
        self.cfg.write_text(yaml.safe_dump(TINY, sort_keys=False))
        self.out = root / "results"
        self.names: dict[str, Path] = {"root": root, "out": self.out, "cfg": self.cfg}
        self._copies = 0
        self._make("plain", ["run", self.cfg, "--out", self.out, "--run-id", "plain", *RUN_ARGS])
        for i in (0, 1):
            self._make("sharded", ["run", self.cfg, "--out", self.out, "--run-id", "sharded", "--shard", f"{i}/2",
                                   *RUN_ARGS])
        shutil.copytree(self.names["sharded"], self.out / "tiny" / "merged")
        self.names["merged"] = self.out / "tiny" / "merged"
        self._ok(call(["merge", self.names["merged"]]))
        self.names["boundary"] = self._boundary_like(self.copy("plain", "boundary"))
        self.names["schedule"] = self._schedule_like(self.root / "schedule")

    def _make(self, name, argv):
        self._ok(call(argv))
        self.names[name] = self.out / "tiny" / name

    @staticmethod
    def _ok(o: Outcome):
        if o.rc != 0:
            raise SystemExit(f"audit fixture failed: {o.escaped or o.err}")

    def fmt(self, text) -> str:
        text = str(text)
        for name, path in self.names.items():
            text = text.replace("{" + name + "}", str(path))
        return text

    def copy(self, name: str, as_name: str | None = None) -> Path:
        """A fresh copy of run ``name`` (named ``as_name``, or ``<name>-<k>``), registered as ``{as_name}``."""
        self._copies += 1
        as_name = as_name or f"{name}-{self._copies}"
        dst = self.out / "tiny" / as_name
        shutil.copytree(self.names[name], dst)
        for lock in dst.glob(".lock*"):
            lock.unlink()
        meta = json.loads((dst / "meta.json").read_text())
        self.names[as_name] = dst
        return dst if meta else dst

    @staticmethod
    def _boundary_like(run: Path) -> Path:
        import pandas as pd
        from lrsweep.core import store
        store.write_table(pd.DataFrame({"unit_id": [0, 1], "lr": [1.0, 2.0]}), run / "boundaries.parquet")
        meta = store.read_json(run / "meta.json")
        meta["boundary"] = {"rtol": 1e-3, "status": "complete", "rows": {"boundaries.parquet": 2}}
        store.write_json(meta, run / "meta.json")
        cfg = yaml.safe_load((run / "config.yaml").read_text())  # a boundary run logs the phase it bisects
        cfg.setdefault("train", {})["metrics"] = ["phase"]
        (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        return run

    @staticmethod
    def _schedule_like(run: Path) -> Path:
        import pandas as pd
        from lrsweep.core import store
        run.mkdir(parents=True)
        for name in ("schedules.parquet", "schedule_summary.parquet"):
            store.write_table(pd.DataFrame({"T": [10, 10], "t": [0, 1], "lr": [0.1, 0.1]}), run / name)
        store.write_json({"kind": "schedule", "status": "complete",
                          "rows": {"schedules.parquet": 2, "schedule_summary.parquet": 2}}, run / "meta.json")
        store.write_yaml({"name": "schedule"}, run / "config.yaml")
        return run


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def damaged(name: str, pick: Callable[[Path], Path], as_name: str) -> Callable:
    """A setup: copy run ``name`` as ``as_name`` and truncate the file ``pick(copy)``."""
    def setup(runs: Runs):
        run = runs.copy(name, as_name)
        target = pick(run)
        truncate(target)
        runs.names[f"{as_name}.file"] = target
        return None
    return setup


def first(pattern: str) -> Callable[[Path], Path]:
    return lambda run: sorted(run.glob(pattern))[0]


def write_fault(target: str, after: int, as_name: str, fresh_run: bool = True) -> Callable:
    """A setup: store.<target> raises EACCES from its ``after``-th call on (a directory turned read-only
    mid-run), for the duration of the case."""
    def setup(runs: Runs):
        from lrsweep.core import store
        real = getattr(store, target)
        calls = []

        def failing(*args, **kwargs):
            calls.append(1)
            path = args[1] if len(args) > 1 else kwargs.get("path")
            if len(calls) >= after:
                raise PermissionError(errno.EACCES, "Permission denied", str(path))
            return real(*args, **kwargs)

        runs.names[as_name] = runs.out / "tiny" / as_name
        stack = contextlib.ExitStack()
        stack.callback(setattr, store, target, real)
        setattr(store, target, failing)
        return stack
    return setup


def lock_held(run_name: str, lock: str = ".lock") -> Callable:
    """A setup: another writer holds run ``run_name``'s lock ``lock`` for the duration of the case."""
    def setup(runs: Runs):
        from lrsweep.core import runstate
        return runstate.RunLock(runs.names[run_name], lock)
    return setup


def load_check(path: str, says: str, exc_names=("StoreError", "FileNotFoundError", "ValueError"), setup=None,
               **kw) -> Callable:
    """``lrsweep.load(path, **kw)`` must raise one of ``exc_names``, one line, naming ``says``."""
    def fn(runs: Runs):
        import lrsweep
        if setup is not None:
            setup(runs)
        try:
            lrsweep.load(runs.fmt(path), **kw)
        except Exception as e:  # noqa: BLE001
            text = str(e)
            if type(e).__name__ not in exc_names:
                return f"raised {type(e).__name__}: {text[:200]}"
            if len(text.strip().splitlines()) != 1 or runs.fmt(says) not in text:
                return f"message not one line naming {runs.fmt(says)!r}: {text[:300]}"
            return None
        return "no error"
    return fn


# --------------------------------------------------------------------------------------
# The catalogue
# --------------------------------------------------------------------------------------

R = ["run", "{cfg}", "--out", "{out}", "--quiet"]
BAD, FAULT, DAMAGE = "bad input", "fault", "damaged file"

CASES = [
    # run: bad input (options, config, contradictions with the run), before any compute
    case("run", BAD, "--run-id of an existing run", [*R, "--run-id", "plain"], says=("--run-id",)),
    case("run", BAD, "no such config", ["run", "nosuch.yaml", "--out", "{out}"], says=("config",)),
    case("run", BAD, "config is a directory", ["run", "{root}", "--out", "{out}"], says=("config",)),
    case("run", BAD, "unknown --set field", [*R, "--set", "nofield=3"], says=("nofield",)),
    case("run", BAD, "--set without =", [*R, "--set", "train.steps"], says=("--set",)),
    case("run", BAD, "--set out of range", [*R, "--set", "train.steps=-1"], says=("train.steps",)),
    case("run", BAD, "--set wrong type", [*R, "--set", "model.width=abc"], says=("model.width",)),
    case("run", BAD, "--max-memory not a size", [*R, "--max-memory", "abc"], says=("--max-memory",)),
    case("run", BAD, "--max-memory too small", [*R, "--max-memory", "1B"], says=("--max-memory",)),
    case("run", BAD, "--chunk-size 0", [*R, "--chunk-size", "0"], says=("--chunk-size",)),
    case("run", BAD, "--mode bogus", [*R, "--mode", "bogus"], says=("--mode",)),
    case("run", BAD, "--mode poly on a relu student", [*R, "--mode", "poly"], says=("train.mode",)),
    case("run", BAD, "--checkpoint-every -1", [*R, "--checkpoint-every", "-1"], says=("--checkpoint-every",)),
    case("run", BAD, "--max-students below the grid", [*R, "--max-students", "3"], says=("--max-students",)),
    case("run", BAD, "--out is a file", [*R, "--out", "{cfg}"], says=("--out",)),
    case("run", BAD, "--run-id with /", [*R, "--run-id", "a/b"], says=("--run-id",)),
    case("run", BAD, "--shard 2/2", [*R, "--shard", "2/2", "--run-id", "x"], says=("--shard",)),
    case("run", BAD, "--shard without --run-id", [*R, "--shard", "0/2"], says=("--run-id",)),
    case("run", BAD, "--shard into an unsharded run", [*R, "--shard", "0/2", "--run-id", "plain"], says=("--shard",)),
    case("run", BAD, "--shard of another split", [*R, "--shard", "0/3", "--run-id", "sharded"], says=("--shard",)),
    case("run", BAD, "--mem-fraction 1.5", [*R, "--mem-fraction", "1.5"], says=("--mem-fraction",)),
    case("run", BAD, "--num-processes without --coordinator", [*R, "--num-processes", "2"],
         says=("--coordinator",)),
    case("run", BAD, "--resume of no run", ["run", "--resume", "{root}"], says=("--resume",)),
    case("run", BAD, "--resume with a config", ["run", "{cfg}", "--resume", "{plain}"], says=("--resume",)),
    case("run", BAD, "--resume --x64 of a float32 run", ["run", "--resume", "{plain}", "--x64"], says=("--x64",)),
    case("run", BAD, "--resume --run-id of another run", ["run", "--resume", "{plain}", "--run-id", "x"],
         says=("--run-id",)),
    case("run", BAD, "--resume --shard of an unsharded run", ["run", "--resume", "{plain}", "--shard", "0/2"],
         says=("--shard",)),
    case("run", BAD, "--resume of a sharded run without --shard", ["run", "--resume", "{sharded}"],
         says=("--shard",)),
    case("run", BAD, "--resume of a run being written", ["run", "--resume", "{plain}", "--quiet"],
         setup=lock_held("plain"), says=("another lrsweep process",)),
    # run: faults and damaged files; the repair named must work
    case("run", FAULT, "part unwritable mid-run", [*R, "--run-id", "wf", "--chunk-size", "2"], writes=True,
         setup=write_fault("write_table", 3, "wf"), says=("cannot write", "lrsweep run --resume {wf}"),
         then=["run", "--resume", "{wf}", "--quiet"], then_run="{wf}"),
    case("run", FAULT, "meta.json unwritable at the end", [*R, "--run-id", "wm", "--chunk-size", "2"], writes=True,
         setup=write_fault("write_json", 3, "wm"), says=("cannot write", "meta.json", "lrsweep run --resume {wm}"),
         then=["run", "--resume", "{wm}", "--quiet"], then_run="{wm}"),
    case("run", DAMAGE, "truncated merged students: show names it, resume repairs", ["show", "{dmg1}"],
         setup=damaged("plain", first("students/*/*.parquet"), "dmg1"), says=("{dmg1.file}", "lrsweep run --resume"),
         then=["run", "--resume", "{dmg1}", "--quiet"], then_run="{dmg1}"),
    case("run", DAMAGE, "truncated curves part of a shard: its resume retrains it",
         ["run", "--resume", "{dmg2}", "--shard", "0/2", "--quiet"],
         rc=0, writes=True, setup=damaged("sharded", first("parts/s0of2-*.curves.parquet"), "dmg2")),
    # merge
    case("merge", BAD, "a plain run", ["merge", "{plain}"], says=("not a sharded run",)),
    case("merge", BAD, "a boundary run", ["merge", "{boundary}"], says=("not a sharded run",)),
    case("merge", BAD, "not a run", ["merge", "{root}"], says=("run:",)),
    case("merge", BAD, "no such path", ["merge", "{root}/nothere"], says=("run:",)),
    case("merge", BAD, "a shard running", ["merge", "{sharded}"], setup=lock_held("sharded", ".lock-shard-1-of-2"),
         says=("shard 1/2",)),
    case("merge", BAD, "merged twice: a no-op", ["merge", "{merged}"], rc=0, stdout=("already merged",)),
    case("merge", DAMAGE, "a shard not run", ["merge", "{half}"],
         setup=lambda runs: [shutil.rmtree(p) if p.is_dir() else p.unlink() for p in
                             (runs.copy("sharded", "half") / "parts").glob("s1of2-*")] and None,
         says=("1/2",)),
    case("merge", DAMAGE, "a truncated part", ["merge", "{dmg3}"],
         setup=damaged("sharded", first("parts/s1of2-*.curves.parquet"), "dmg3"),
         says=("{dmg3.file}", "lrsweep run --resume {dmg3} --shard 1/2"),
         then=["run", "--resume", "{dmg3}", "--shard", "1/2", "--quiet"]),
    case("merge", FAULT, "its tables unwritable", ["merge", "{wmerge}"], writes=True,
         setup=lambda runs: (runs.copy("sharded", "wmerge"), write_fault("_place", 1, "wmerge")(runs))[1],
         says=("cannot write", "lrsweep merge {wmerge}"), then=["merge", "{wmerge}"], then_run="{wmerge}"),
    # boundary (its bad input before any compute; its stage in the status model)
    case("boundary", BAD, "--rtol 0", ["boundary", "{cfg}", "--out", "{out}", "--rtol", "0"], says=("--rtol",)),
    case("boundary", BAD, "--rtol nan", ["boundary", "{cfg}", "--out", "{out}", "--rtol", "nan"], says=("--rtol",)),
    case("boundary", BAD, "--rtol abc", ["boundary", "{cfg}", "--out", "{out}", "--rtol", "abc"], says=("--rtol",)),
    case("boundary", BAD, "no such config", ["boundary", "nosuch.yaml", "--out", "{out}"], says=("config",)),
    case("boundary", BAD, "one coarse rate", ["boundary", "{cfg}", "--out", "{out}", "--set", "grid.lr=[0.1]"],
         says=("grid.lr",)),
    case("boundary", BAD, "--chunk-size 0", ["boundary", "{cfg}", "--out", "{out}", "--chunk-size", "0"],
         says=("--chunk-size",)),
    case("boundary", BAD, "--max-memory abc", ["boundary", "{cfg}", "--out", "{out}", "--max-memory", "abc"],
         says=("--max-memory",)),
    case("boundary", BAD, "--resume of no run", ["boundary", "--resume", "{root}"], says=("--resume",)),
    case("boundary", BAD, "--resume with a config", ["boundary", "{cfg}", "--resume", "{boundary}"],
         says=("--resume",)),
    case("boundary", BAD, "--resume of a run being written", ["boundary", "--resume", "{boundary}", "--quiet"],
         setup=lock_held("boundary"), says=("another lrsweep process",)),
    case("boundary", BAD, "--resume of a sharded run not merged", ["boundary", "--resume", "{sharded}", "--quiet"],
         says=("--shard",)),
    case("boundary", DAMAGE, "truncated boundaries.parquet: show names it and the repair", ["show", "{dmg4}"],
         setup=damaged("boundary", lambda run: run / "boundaries.parquet", "dmg4"),
         says=("{dmg4}/boundaries.parquet", "lrsweep boundary --resume {dmg4}")),
    # schedule
    case("schedule", BAD, "no such config", ["schedule", "nosuch.yaml", "--out", "{out}"], says=("config",)),
    case("schedule", BAD, "a grid config", ["schedule", "{cfg}", "--out", "{out}"], says=("task.kind", "allowed values")),
    case("schedule", BAD, "--verify 0", ["schedule", "configs/schedules/optimal_schedules_cpu.yaml", "--out", "{out}",
                                         "--verify", "0"], says=("--verify",)),
    case("schedule", BAD, "--max-memory abc", ["schedule", "configs/schedules/optimal_schedules_cpu.yaml", "--out",
                                               "{out}", "--max-memory", "abc"], says=("--max-memory",)),
    case("schedule", BAD, "empty horizons", ["schedule", "configs/schedules/optimal_schedules_cpu.yaml", "--out",
                                             "{out}", "--set", "schedule_search.horizons=[]"],
         says=("schedule_search.horizons",)),
    case("schedule", BAD, "--resume of no run", ["schedule", "--resume", "{root}"], says=("--resume",)),
    case("schedule", DAMAGE, "truncated schedules.parquet: show names it and the repair", ["show", "{dmg5}"],
         setup=lambda runs: (shutil.copytree(runs.names["schedule"], runs.root / "dmg5"),
                             runs.names.__setitem__("dmg5", runs.root / "dmg5"),
                             truncate(runs.root / "dmg5" / "schedules.parquet")) and None,
         says=("{dmg5}/schedules.parquet", "lrsweep schedule --resume {dmg5}")),
    # ls / show / compare / plot: readers
    case("ls/show/compare/plot", BAD, "show: not a run", ["show", "{root}"], says=("run",)),
    case("ls/show/compare/plot", BAD, "compare: not a run", ["compare", "{root}"], says=("run",)),
    case("ls/show/compare/plot", BAD, "plot: not a run", ["plot", "{root}"], says=("run",)),
    case("ls/show/compare/plot", BAD, "show: no such path", ["show", "{root}/nothere"], says=("nothere",)),
    case("ls/show/compare/plot", BAD, "show --rows 0", ["show", "{plain}", "--rows", "0"], says=("--rows",)),
    case("ls/show/compare/plot", BAD, "compare --theory unknown", ["compare", "{plain}", "--theory", "nosuch"],
         says=("--theory",)),
    case("ls/show/compare/plot", BAD, "plot --dense -1", ["plot", "{plain}", "--dense", "-1"], says=("--dense",)),
    case("ls/show/compare/plot", DAMAGE, "show: meta.json not JSON", ["show", "{dmg6}"],
         setup=lambda runs: (runs.copy("plain", "dmg6") / "meta.json").write_text("{not json") and None,
         says=("meta.json",)),
    case("ls/show/compare/plot", DAMAGE, "compare: truncated curves", ["compare", "{dmg7}"],
         setup=damaged("plain", first("curves/*/*.parquet"), "dmg7"), says=("{dmg7.file}", "lrsweep run --resume")),
    case("ls/show/compare/plot", DAMAGE, "plot: truncated students", ["plot", "{dmg8}"],
         setup=damaged("plain", first("students/*/*.parquet"), "dmg8"), says=("{dmg8.file}", "lrsweep run --resume")),
    case("ls/show/compare/plot", DAMAGE, "ls: damaged runs listed with their repair", ["ls", "{out}"], rc=0,
         stdout=("corrupt", "lrsweep run --resume {dmg7}", "lrsweep boundary --resume {dmg4}")),
    case("ls/show/compare/plot", BAD, "ls: no such root", ["ls", "{root}/nothere"], rc=0, stdout=("no results",)),
    # load
    check("load", BAD, "no such path", load_check("{root}/nothere", "nothere")),
    check("load", BAD, "unknown table", load_check("{plain}", "table", table="bogus")),
    check("load", BAD, "unknown run id", load_check("{out}", "nosuch", runs=["nosuch"])),
    check("load", DAMAGE, "truncated students", load_check("{dmg9}", "{dmg9.file}", setup=damaged(
        "plain", first("students/*/*.parquet"), "dmg9"))),
    check("load", DAMAGE, "truncated curves", load_check("{dmg10}", "{dmg10.file}", setup=damaged(
        "plain", first("curves/*/*.parquet"), "dmg10"))),
    check("load", DAMAGE, "truncated part", load_check("{dmg11}", "{dmg11.file}", setup=damaged(
        "sharded", first("parts/s0of2-*.students.parquet"), "dmg11"))),
]

ORDER = ["run", "merge", "boundary", "schedule", "ls/show/compare/plot", "load"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="print every case")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="lrsweep-audit-"))
    try:
        runs = Runs(root)
        failed, counts = [], {}
        for c in CASES:
            problem = evaluate(c, runs)
            tried, held = counts.get(c.command, (0, 0))
            counts[c.command] = (tried + 1, held + (problem is None))
            if problem is not None:
                failed.append((c, problem))
            if args.verbose:
                print(f"{'ok  ' if problem is None else 'FAIL'} {c.command}: {c.kind}: {c.what}", file=sys.stderr)
        print("| command | cases tried (bad input / fault / damaged file) | held |")
        print("|---|---|---|")
        for command in ORDER:
            if command not in counts:
                continue
            kinds = [sum(c.command == command and c.kind == k for c in CASES) for k in (BAD, FAULT, DAMAGE)]
            print(f"| {command} | {counts[command][0]} ({' / '.join(map(str, kinds))}) | {counts[command][1]} |")
        total = sum(t for t, _ in counts.values()), sum(h for _, h in counts.values())
        print(f"| all | {total[0]} | {total[1]} |")
        if failed:
            print(f"\n{len(failed)} case(s) did not hold:")
            for c, problem in failed:
                print(f"  - {c.command}: {c.kind}: {c.what}: {problem}")
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"scratch kept: {root}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
