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
any did not. Cheap: a few tiny runs (8 students, 3 steps; a tiny ``lrsweep boundary`` and ``lrsweep
schedule --verify 6``) on the CPU, under 3 minutes on 2 cores (it prints its wall time). A case's
description starts with the number of issue 24's list it covers (#1 ... #19) where it does.

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
# lrsweep boundary: the uv model (seed 003), 2 seeds x 4 coarse rates, both boundaries bracketed; chunks
# of 2 students make its bisection two chunks (one unit each)
UV = {"name": "uv", "seeds": [0, 1], "task": {"kind": "single_point"},
      "model": {"parameterization": "ntk", "n_layers": 2, "width": 8, "activation": "linear", "output_dim": 1},
      "init": "gaussian", "train": {"steps": 20, "log_every": 10, "metrics": ["ntk_eig"]},
      "grid": {"lr": {"geomspace": [0.2, 5.0, 4]}}}
BOUNDARY_ARGS = ["--chunk-size", "2", "--quiet"]
# lrsweep schedule: seed 004's random-feature model, 2 horizons x 2 schedules, --verify with 6 seeds (the
# tail fit needs 6: --verify 5 is refused)
SCHED = {"name": "sched", "task": {"kind": "power_law_features", "n_features": 8, "noise_std": 0.5},
         "model": {"parameterization": "standard", "n_layers": 1}, "init": "zeros",
         "train": {"optimizer": "sgd", "batch_size": 1},
         "schedule_search": {"horizons": [8, 16], "kinds": ["optimal", "constant"], "iterations": 5}}
VERIFY = ["--verify", "6", "--verify-max-seeds", "6", "--quiet"]
# lrsweep run of a Stackelberg config with body_sketch (tests/families/stackelberg/test_run_output.py's,
# without its train.head_ridge, which lrsweep now refuses where no student has a best-response head)
SKETCH = {"name": "sketch", "seeds": [0, 1], "task": {"input_dim": 16, "n_train": 32},
          "model": {"parameterization": "standard", "n_layers": 2, "width": 16}, "init": "gaussian",
          "train": {"steps": 2, "metrics": ["body_sketch"], "sketch_dim": 128},
          "grid": {"lr_body": [0.01], "lr_ratio": [1.0]}}


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


def top_runs(out: Path) -> set:
    """The run directories ``out/<name>/<id>`` (not their verify sub-runs)."""
    return {p.parent for p in out.glob("*/*/meta.json")}


def ls_status(run) -> tuple[str | None, str, str]:
    """(the run's status, the last column of its ``lrsweep ls`` line; the commands ls lists to finish or
    repair runs; ls's stderr)."""
    import re
    run = Path(run)
    o = call(["ls", run.parent])
    line = next((x for x in o.out.splitlines() if x.startswith(str(run) + " ")), None)
    status = None if line is None else re.split(r"\s{2,}", line.strip())[-1]
    return status, o.out.split("to finish or repair:", 1)[-1] if "to finish or repair:" in o.out else "", o.err


def ls_problems(runs: "Runs", run: str, status: str, repair: str) -> list:
    got, todo, err = ls_status(run)
    problems = []
    if got is None:
        problems.append(f"ls lists no {run}: {err.strip()[-200:]}")
    elif got.startswith("complete") or not got.startswith(runs.fmt(status)):
        problems.append(f"ls says {got!r}, expected {runs.fmt(status)!r}...")
    if repair not in todo:
        problems.append(f"ls does not list {repair!r} to finish or repair it")
    return problems


def one_line_naming(o: Outcome, rc: int, *texts) -> str | None:
    if o.escaped:
        return "exception escaped main:\n" + o.escaped
    lines = o.err.strip().splitlines()
    problems = ([f"exit {o.rc}, expected {rc}"] if o.rc != rc else []) + \
        ([f"{len(lines)} stderr lines"] if len(lines) != 1 else []) + \
        [f"stderr lacks {t!r}" for t in texts if t not in o.err]
    return "; ".join(problems) + f" (stderr: {o.err.strip()[-300:]})" if problems else None


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
    new_run: str | None = None       # name ({new_run}) for the run the call creates under {out}
    status: str | None = None        # before the repair: the run's ``lrsweep ls`` status starts with this
                                     # (never complete) and ls lists ``then`` to finish or repair it
    after: Callable | None = None    # after the repair: runs -> problem text or None


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
    try:
        fault = c.setup(runs) if c.setup is not None else None
    except BaseException:  # noqa: BLE001
        return "its setup raised:\n" + traceback.format_exc()
    argv = [runs.fmt(a) for a in c.argv]
    with fault if fault is not None else contextlib.nullcontext():
        before, locks, old_runs = snapshot(root), lock_files(root), top_runs(runs.out)
        o = call(argv)
    if c.new_run is not None:
        made = sorted(top_runs(runs.out) - old_runs)
        if len(made) != 1:
            return f"expected one new run under {runs.out}, found {len(made)}: {o.escaped or o.err.strip()[-300:]}"
        runs.names[c.new_run] = made[0]
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
    if c.status is not None and not problems:
        problems += ls_problems(runs, runs.fmt(c.then_run), c.status,
                                "lrsweep " + " ".join(runs.fmt(a) for a in c.then[:3]))  # COMMAND --resume RUN
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
        if c.after is not None and not problems:
            problem = c.after(runs)
            if problem:
                problems.append(f"after the repair: {problem}")
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
    status model, without their compute), ``bnd`` (a real ``lrsweep boundary`` run of ``bcfg``),
    ``sch`` (a real ``lrsweep schedule --verify 6`` run of ``scfg``) and ``sch.sub`` (its first verify
    run); :meth:`copy` gives a fresh copy to damage."""

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
        # the family commands' own runs, made once
        self.names["bcfg"] = self._config("uv.yaml", UV)
        self.names["scfg"] = self._config("sched.yaml", SCHED)
        self.names["bnd"] = self._made(["boundary", "{bcfg}", "--out", "{out}", *BOUNDARY_ARGS])
        self.names["sch"] = self._made(["schedule", "{scfg}", "--out", "{out}", *VERIFY])
        self.names["sch.sub"] = self.names["sch"] / json.loads((self.names["sch"] / "meta.json").read_text())[
            "verify"]["runs"][0]

    def _config(self, name: str, cfg: dict) -> Path:
        path = self.root / name
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        return path

    def _made(self, argv) -> Path:
        """Run ``argv`` (which makes one run under {out}); its directory."""
        before = top_runs(self.out)
        self._ok(call([self.fmt(a) for a in argv]))
        (run,) = top_runs(self.out) - before
        return run

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


def patched(obj, attr: str, make: Callable) -> contextlib.ExitStack:
    """``obj.attr`` replaced by ``make(real)`` until the returned stack closes."""
    real = getattr(obj, attr)
    stack = contextlib.ExitStack()
    stack.callback(setattr, obj, attr, real)
    setattr(obj, attr, make(real))
    return stack


def nth_call_raises(n: int, exc: Callable, when: Callable = lambda *a, **k: True) -> Callable:
    """make(real) for :func:`patched`: the ``n``-th call for which ``when(*args)`` holds raises ``exc(*args)``."""
    def make(real):
        calls = []

        def fn(*args, **kwargs):
            if when(*args, **kwargs):
                calls.append(1)
                if len(calls) == n:
                    raise exc(*args, **kwargs)
            return real(*args, **kwargs)
        return fn
    return make


def interrupt(*args, **kwargs):
    return KeyboardInterrupt()


def eacces(df, path, *args, **kwargs):
    return PermissionError(errno.EACCES, "Permission denied", str(path))


def unbisected(runs: "Runs", as_name: str) -> Path:
    """A copy of ``bnd`` as a kill -9 right after its coarse grid leaves it: students complete, the
    bisection recorded as running, no boundaries.parquet."""
    run = runs.copy("bnd", as_name)
    meta = json.loads((run / "meta.json").read_text())
    meta["boundary"] = {"status": "running", "rtol": meta["boundary"]["rtol"]}
    (run / "meta.json").write_text(json.dumps(meta))
    (run / "boundaries.parquet").unlink()
    return run


def bisection_interrupted(as_name: str) -> Callable:
    """A setup: an unbisected copy of ``bnd``; Ctrl-C after the bisection's first chunk."""
    def setup(runs: Runs):
        from lrsweep.families.catapult import boundary
        unbisected(runs, as_name)
        return patched(boundary, "_bisect_chunk", nth_call_raises(2, interrupt))
    return setup


def bisection_killed(as_name: str) -> Callable:
    """A setup: an unbisected copy of ``bnd`` stopped after the bisection's first chunk, its meta.json
    as a kill -9 leaves it (the bisection running, no lock): no handler ran."""
    def setup(runs: Runs):
        from lrsweep.families.catapult import boundary
        run = unbisected(runs, as_name)
        with patched(boundary, "_bisect_chunk", nth_call_raises(2, interrupt)):
            o = call(["boundary", "--resume", run, *BOUNDARY_ARGS])
        if o.rc != 130 or not list((run / boundary.PARTS).glob("*.parquet")):
            raise RuntimeError(f"the interrupted bisection did not leave a part: exit {o.rc}: {o.err.strip()}")
        meta = json.loads((run / "meta.json").read_text())
        meta["boundary"] = {"status": "running", "rtol": meta["boundary"]["rtol"]}
        (run / "meta.json").write_text(json.dumps(meta))
        for lock in run.glob(".lock*"):
            lock.unlink()
        return None
    return setup


def bisection_part_unwritable(as_name: str) -> Callable:
    """A setup: an unbisected copy of ``bnd``; the bisection's second part cannot be written (EACCES)."""
    def setup(runs: Runs):
        from lrsweep.core import store
        from lrsweep.families.catapult import boundary
        unbisected(runs, as_name)
        return patched(store, "write_table", nth_call_raises(
            2, eacces, lambda df, path, *a, **k: Path(path).parent.name == boundary.PARTS))
    return setup


def table_unwritable(name: str) -> Callable:
    """A setup: store.write_table refuses ``name`` (EACCES) for the duration of the case."""
    def setup(runs: Runs):
        from lrsweep.core import store
        return patched(store, "write_table", nth_call_raises(1, eacces, lambda df, path, *a, **k: Path(path).name == name))
    return setup


def verify_interrupted(runs: Runs):
    """A setup: Ctrl-C after the first chunk of ``schedule --verify``'s first verify run."""
    from lrsweep.core import runner
    return patched(runner, "_write_chunk", nth_call_raises(2, interrupt))


def verify_part_unwritable(runs: Runs):
    """A setup: a part of ``schedule --verify``'s verify run cannot be written (its second table)."""
    from lrsweep.core import store
    return patched(store, "write_table", nth_call_raises(
        2, eacces, lambda df, path, *a, **k: "verify" in Path(path).parts))


def mc_columns(run_name: str, seeds: int = 6) -> Callable:
    """The Monte Carlo columns are in the run's schedule_summary, every schedule with ``seeds`` samples."""
    def fn(runs: Runs):
        import lrsweep
        summary = lrsweep.load(runs.fmt(run_name), table="schedule_summary")
        missing = {"mc_mean", "mc_sem", "mc_n"} - set(summary.columns)
        if missing:
            return f"schedule_summary lacks {sorted(missing)}"
        if not (summary["mc_n"] >= seeds).all():
            return f"mc_n {list(summary['mc_n'])}, expected >= {seeds}"
        return None
    return fn


def raises_one_line(fn: Callable, says: str, exc_names=("StoreError",)) -> str | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001
        text = str(e)
        if type(e).__name__ not in exc_names:
            return f"raised {type(e).__name__}: {text[:200]}"
        if len(text.strip().splitlines()) != 1 or says not in text:
            return f"message not one line naming {says!r}: {text[:300]}"
        return None
    return "no error"


def damaged_everywhere(name: str, as_name: str, file_of: Callable[[Path], Path], damage: Callable[[Path], None],
                       repair: str, load: Callable) -> Callable:
    """A check: a copy of run ``name`` with ``damage(file_of(copy))``: ls says corrupt and lists ``repair``;
    show, compare and plot exit 2 on one line naming the file and ``repair``; ``load(lrsweep, copy)``
    raises StoreError on one line naming the file; ``repair`` then works (exit 0, the run complete)."""
    def fn(runs: Runs):
        import lrsweep
        from lrsweep.core import runstate
        run = runs.copy(name, as_name)
        file = file_of(run)
        damage(file)
        fix = repair.format(run=run)
        problems = []
        status, todo, err = ls_status(run)
        if status is None or not status.startswith("corrupt"):
            problems.append(f"ls says {status!r}, not corrupt")
        elif str(file) not in status:
            problems.append(f"ls's status does not name {file}: {status!r}")
        if fix not in todo:
            problems.append(f"ls does not list {fix!r}")
        for argv in (["show", run], ["compare", run], ["plot", run]):
            problem = one_line_naming(call(argv), 2, str(file), fix)
            if problem:
                problems.append(f"{argv[0]}: {problem}")
        problem = raises_one_line(lambda: load(lrsweep, run), str(file))
        if problem:
            problems.append(f"lrsweep.load: {problem}")
        o = call([*fix.split()[1:], "--quiet"])
        if o.rc != 0 or o.escaped:
            problems.append(f"repair {fix} exit {o.rc}: {(o.escaped or o.err).strip()[-300:]}")
        elif runstate.run_state(run).state != "complete":
            problems.append(f"after the repair: {runstate.run_state(run).describe()}")
        return "; ".join(problems) or None
    return fn


def drop_first_row(path: Path) -> None:
    import pandas as pd
    pd.read_parquet(path).iloc[1:].to_parquet(path)


def config_file(name: str, cfg: dict, csv: str | None = None) -> Callable:
    """A setup: write the config ``{name}`` (and an empty CSV ``{name}.csv`` when ``csv`` is given)."""
    def setup(runs: Runs):
        body = json.loads(json.dumps(cfg))
        if csv is not None:
            path = runs.root / f"{name}.csv"
            path.write_text(csv)
            body["train"]["schedule_array"] = str(path)
        runs.names[name] = runs._config(f"{name}.yaml", body)
        return None
    return setup


def nan_horizons(runs: Runs):
    """A setup: the schedule config with ``schedule_search.horizons: [20, .nan]`` (YAML's NaN)."""
    cfg = {**SCHED, "schedule_search": {**SCHED["schedule_search"], "horizons": [20, float("nan")]}}
    text = yaml.safe_dump(cfg, sort_keys=False)
    if ".nan" not in text:
        raise RuntimeError(f"could not write horizons [20, .nan]: {text}")
    path = runs.root / "nan.yaml"
    path.write_text(text)
    runs.names["nancfg"] = path
    return None


def compare_of_verify_run(runs: Runs) -> str | None:
    """#16: compare of a --verify sub-run: exit 0, and no z in comparison.parquet is inf (step 0, where
    every seed starts alike, has zero spread)."""
    import numpy as np
    import pandas as pd
    parent = runs.copy("sch", "cmpv")
    sub = parent / Path(runs.names["sch.sub"]).relative_to(runs.names["sch"])
    o = call(["compare", sub])
    if o.rc != 0 or o.escaped:
        return f"compare exit {o.rc}: {(o.escaped or o.err).strip()[-400:]}"
    found = list(sub.rglob("comparison*.parquet"))
    if not found:
        return "no comparison table written"
    for path in found:
        table = pd.read_parquet(path)
        for col in table.columns:
            if "z" in col.lower().split("_") or col.lower().startswith("z"):
                vals = pd.to_numeric(table[col], errors="coerce").to_numpy(float)
                if np.isinf(vals).any():
                    bad = table[np.isinf(vals)]
                    return f"{path.name}: {col} inf in {len(bad)} row(s): {bad.head(3).to_dict('records')}"
    return None


def sketch_run(runs: Runs) -> str | None:
    """#17 and #19: a Stackelberg run with body_sketch warns nothing (no PerformanceWarning) and its
    best-rates table is headed lr_body, lr_head, lr_ratio."""
    import warnings
    path = runs._config("sketch.yaml", SKETCH)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        o = call(["run", path, "--out", runs.root / "sketch", "--quiet"])
    if o.rc != 0 or o.escaped:
        return f"exit {o.rc}: {(o.escaped or o.err).strip()[-400:]}"
    perf = [str(w.message)[:120] for w in caught if "PerformanceWarning" in type(w.message).__name__]
    if perf or "PerformanceWarning" in o.err:
        return f"PerformanceWarning: {perf[:1] or o.err.strip()[-200:]}"
    header = next((x for x in o.out.splitlines() if x.split()[-3:] == ["mean", "n_seeds", "n_diverged"]), None)
    if header is None or header.split()[:3] != ["lr_body", "lr_head", "lr_ratio"]:
        return f"#19 best-rates header {header!r}, not lr_body lr_head lr_ratio"
    return None


def schedule_names(runs: Runs) -> str | None:
    """#19: schedules.parquet and schedule_summary.parquet use the config's names (n_features, schedule),
    not the core's (input_dim, kind)."""
    import pyarrow.parquet as pq
    for name in ("schedules.parquet", "schedule_summary.parquet"):
        columns = set(pq.read_schema(runs.names["sch"] / name).names)
        if not {"n_features", "schedule"} <= columns or {"input_dim", "kind"} & columns:
            return f"{name} columns: {sorted(columns)}"
    return None


def dry_run_elsewhere(runs: Runs) -> str | None:
    """#18: ``lrsweep run configs/quickstart.yaml --dry-run`` from another directory works."""
    cwd = os.getcwd()
    os.chdir(runs.root)
    try:
        o = call(["run", "configs/quickstart.yaml", "--dry-run", "--out", runs.root / "dry"])
    finally:
        os.chdir(cwd)
    if o.rc != 0 or o.escaped:
        return f"exit {o.rc}: {(o.escaped or o.err).strip()[-300:]}"
    return None


def help_examples_exist(runs: Runs) -> str | None:
    """#18: every ``configs/...`` a help text cites is a file of the repository."""
    import lrsweep
    from lrsweep import registry
    repo = Path(lrsweep.__file__).resolve().parents[1]
    commands = ["run", "merge", "ls", "show", "compare", "plot", *registry.COMMANDS] if hasattr(
        registry, "COMMANDS") else ["run", "merge", "ls", "show", "compare", "plot", "boundary", "schedule"]
    missing, cited = [], 0
    for argv in [["--help"], *([c, "--help"] for c in commands)]:
        o = call(argv)
        for word in o.out.replace("'", " ").replace('"', " ").split():
            word = word.strip("().,;:`")
            if word.startswith("configs/") and word.endswith((".yaml", ".yml")):
                cited += 1
                if not (repo / word).is_file():
                    missing.append(f"{argv[0]}: {word}")
    if missing:
        return f"cited but missing: {missing}"
    return None if cited else "no help text cites a configs/ file"


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
    case("run", BAD, "#10 --chunk-size 0", [*R, "--chunk-size", "0"], says=("--chunk-size",)),
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
    case("run", FAULT, "#15 part unwritable mid-run", [*R, "--run-id", "wf", "--chunk-size", "2"], writes=True,
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
    case("merge", BAD, "#8 a plain run", ["merge", "{plain}"], says=("not a sharded run",)),
    case("merge", BAD, "a boundary run", ["merge", "{boundary}"], says=("not a sharded run",)),
    case("merge", BAD, "not a run", ["merge", "{root}"], says=("run:",)),
    case("merge", BAD, "no such path", ["merge", "{root}/nothere"], says=("run:",)),
    case("merge", BAD, "a shard running", ["merge", "{sharded}"], setup=lock_held("sharded", ".lock-shard-1-of-2"),
         says=("shard 1/2",)),
    case("merge", BAD, "merged twice: a no-op", ["merge", "{merged}"], rc=0, stdout=("already merged",)),
    case("merge", DAMAGE, "#8 a shard not run: refused, no .lock left", ["merge", "{half}"],
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
    case("boundary", BAD, "#10 --rtol abc", ["boundary", "{cfg}", "--out", "{out}", "--rtol", "abc"], says=("--rtol",)),
    case("boundary", BAD, "no such config", ["boundary", "nosuch.yaml", "--out", "{out}"], says=("config",)),
    case("boundary", BAD, "one coarse rate", ["boundary", "{cfg}", "--out", "{out}", "--set", "grid.lr=[0.1]"],
         says=("grid.lr",)),
    case("boundary", BAD, "#10 --chunk-size 0", ["boundary", "{cfg}", "--out", "{out}", "--chunk-size", "0"],
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
    case("schedule", BAD, "#10 --verify 0", ["schedule", "configs/schedules/optimal_schedules_cpu.yaml", "--out", "{out}",
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
    # ---- the family commands' own runs (bnd, sch): issue 24's numbered cases, faults, damaged files
    case("boundary", BAD, "#1 boundary --resume of a plain run without phase", ["boundary", "--resume", "{plain}",
                                                                                "--quiet"], says=("{plain}",)),
    case("boundary", BAD, "#2 --rtol 1e-300", ["boundary", "{bcfg}", "--out", "{out}", "--rtol", "1e-300"],
         says=("--rtol",)),
    case("schedule", BAD, "#3 a config with an lr axis", ["schedule", "{sdef}", "--out", "{out}", "--set",
                                                          "grid.lr=[0.1,0.2]"],
         setup=config_file("sdef", {k: v for k, v in SCHED.items() if k != "schedule_search"}), says=("grid.lr",)),
    case("schedule", BAD, "#3 without schedule_search: works with defaults", ["schedule", "{sdef}", "--out", "{out}",
                                                                               "--set", "train.steps=8", "--quiet"],
         rc=0, writes=True, stdout=("searched:",)),
    case("schedule", BAD, "#4 schedule_search.horizons: [20, .nan]", ["schedule", "{nancfg}", "--out", "{out}"],
         setup=nan_horizons, says=("schedule_search.horizons",)),
    case("run", BAD, "#5 run --resume of a schedule run", ["run", "--resume", "{sch}", "--quiet"],
         says=("lrsweep schedule --resume {sch}",)),
    case("run", BAD, "#6 --coordinator without a port", [*R, "--coordinator", "localhost", "--num-processes", "2",
                                                         "--process-id", "0"], says=("--coordinator",)),
    case("run", BAD, "#6 --distributed auto with --coordinator", [*R, "--distributed", "auto", "--coordinator",
                                                                  "localhost:1234"], says=("--distributed",)),
    case("run", BAD, "#7 an empty schedule-array CSV", ["run", "{emptycsv}", "--out", "{out}", "--quiet"],
         setup=config_file("emptycsv", {**TINY, "train": {"steps": 3, "schedule": "array"}}, csv=""),
         says=("schedule_array",)),
    case("merge", BAD, "#8 a boundary run", ["merge", "{bnd}"], says=("not a sharded run",)),
    case("merge", BAD, "#8 a schedule run", ["merge", "{sch}"], says=("lrsweep schedule --resume {sch}",)),
    case("schedule", BAD, "#9 task.a on power_law_features", ["schedule", "{scfg}", "--out", "{out}", "--set",
                                                              "task.a=0.5"], says=("task.a",)),
    case("run", BAD, "#9 train.newton_steps never read", [*R, "--set", "train.newton_steps=3"],
         says=("train.newton_steps",)),
    case("run", BAD, "#10 --mem-fraction abc", [*R, "--mem-fraction", "abc"], says=("--mem-fraction",)),
    case("run", BAD, "#10 --distributed bogus", [*R, "--distributed", "bogus"], says=("--distributed",)),
    case("run", BAD, "#10 --num-processes 0", [*R, "--num-processes", "0"], says=("--num-processes",)),
    case("boundary", FAULT, "Ctrl-C in the bisection (after its first chunk)", ["boundary", "--resume", "{bint}",
                                                                               *BOUNDARY_ARGS],
         rc=130, writes=True, setup=bisection_interrupted("bint"), says=("lrsweep boundary --resume {bint}",),
         status="incomplete: the bisection did not finish (interrupted)",
         then=["boundary", "--resume", "{bint}", "--quiet"], then_run="{bint}"),
    case("boundary", FAULT, "#11 kill -9 in the bisection: show says how to finish it", ["show", "{bkill}"], rc=0,
         setup=bisection_killed("bkill"), stdout=("finish it with: lrsweep boundary --resume {bkill}",),
         status="incomplete: the bisection did not finish (dead)",
         then=["boundary", "--resume", "{bkill}", "--quiet"], then_run="{bkill}"),
    case("boundary", FAULT, "#15 a part unwritable mid-bisection", ["boundary", "--resume", "{bwp}", *BOUNDARY_ARGS],
         writes=True, setup=bisection_part_unwritable("bwp"),
         says=("cannot write", "{bwp}/", "lrsweep boundary --resume {bwp}"),
         status="incomplete: the bisection did not finish (",
         then=["boundary", "--resume", "{bwp}", "--quiet"], then_run="{bwp}"),
    case("boundary", FAULT, "#15 boundaries.parquet unwritable", ["boundary", "--resume", "{bwt}", *BOUNDARY_ARGS],
         writes=True, setup=lambda runs: (unbisected(runs, "bwt"), table_unwritable("boundaries.parquet")(runs))[1],
         says=("cannot write {bwt}/boundaries.parquet", "lrsweep boundary --resume {bwt}"),
         status="incomplete: the bisection did not finish (",
         then=["boundary", "--resume", "{bwt}", "--quiet"], then_run="{bwt}"),
    case("boundary", FAULT, "#15 the run unwritable mid coarse grid", ["boundary", "{bcfg}", "--out", "{out}",
                                                                       *BOUNDARY_ARGS],
         writes=True, setup=write_fault("write_table", 3, "bwc"), new_run="bwc",
         says=("cannot write", "lrsweep boundary --resume {bwc}"), status="failed",
         then=["boundary", "--resume", "{bwc}", "--quiet"], then_run="{bwc}"),
    check("boundary", DAMAGE, "#13 truncated boundaries.parquet: ls/show/compare/plot/load, resume repairs",
          damaged_everywhere("bnd", "bdt", lambda run: run / "boundaries.parquet", truncate,
                             "lrsweep boundary --resume {run}", lambda m, run: m.load(run, table="boundaries"))),
    check("boundary", DAMAGE, "boundaries.parquet with a row missing: ls/show/compare/plot/load, resume repairs",
          damaged_everywhere("bnd", "bdr", lambda run: run / "boundaries.parquet", drop_first_row,
                             "lrsweep boundary --resume {run}", lambda m, run: m.load(run, table="boundaries"))),
    case("schedule", FAULT, "#12 Ctrl-C during --verify: resume reattaches the Monte Carlo columns",
         ["schedule", "{scfg}", "--out", "{out}", *VERIFY], rc=130, writes=True, setup=verify_interrupted,
         new_run="sint", says=("lrsweep schedule --resume {sint}",), status="incomplete",
         then=["schedule", "--resume", "{sint}", "--quiet"], then_run="{sint}", after=mc_columns("{sint}")),
    case("schedule", FAULT, "#15 schedules.parquet unwritable", ["schedule", "{scfg}", "--out", "{out}", "--quiet"],
         writes=True, setup=table_unwritable("schedules.parquet"), new_run="swt",
         says=("cannot write {swt}/schedules.parquet", "lrsweep schedule --resume {swt}"), status="failed",
         then=["schedule", "--resume", "{swt}", "--quiet"], then_run="{swt}"),
    case("schedule", FAULT, "#15 a verify run's part unwritable", ["schedule", "{scfg}", "--out", "{out}", *VERIFY],
         writes=True, setup=verify_part_unwritable, new_run="swv",
         says=("cannot write", "lrsweep schedule --resume {swv}"), status="incomplete",
         then=["schedule", "--resume", "{swv}", "--quiet"], then_run="{swv}", after=mc_columns("{swv}")),
    check("schedule", DAMAGE, "#14 truncated schedules.parquet: ls/show/compare/plot/load, resume repairs",
          damaged_everywhere("sch", "sdt", lambda run: run / "schedules.parquet", truncate,
                             "lrsweep schedule --resume {run}", lambda m, run: m.load(run, table="schedules"))),
    check("schedule", DAMAGE, "truncated schedule_summary.parquet: ls/show/compare/plot/load, resume repairs",
          damaged_everywhere("sch", "sds", lambda run: run / "schedule_summary.parquet", truncate,
                             "lrsweep schedule --resume {run}", lambda m, run: m.load(run, table="schedule_summary"))),
    check("schedule", DAMAGE, "#14 truncated curves part of a verify run: ls/show/compare/plot/load, resume repairs",
          damaged_everywhere("sch", "sdc", lambda run: sorted((run / json.loads((run / "meta.json").read_text())[
                                 "verify"]["runs"][0] / "curves").rglob("*.parquet"))[0], truncate,
                             "lrsweep schedule --resume {run}", lambda m, run: m.load(
                                 run / json.loads((run / "meta.json").read_text())["verify"]["runs"][0]))),
    case("schedule", BAD, "--verify 5, one seed below a tail fit's two exceedances",
         ["schedule", "{scfg}", "--out", "{out}", "--verify", "5", "--verify-max-seeds", "5", "--quiet"],
         says=("--verify", ">= 6")),
    check("ls/show/compare/plot", BAD, "#16 compare of a --verify run: no z inf from step 0's zero spread",
          compare_of_verify_run),
    check("run", BAD, "#17 #19 body_sketch run: no PerformanceWarning; best rates headed lr_body lr_head lr_ratio",
          sketch_run),
    check("run", BAD, "#18 run configs/quickstart.yaml --dry-run from another directory", dry_run_elsewhere),
    check("run", BAD, "#18 every help text's configs/ example exists", help_examples_exist),
    check("schedule", BAD, "#19 schedule tables name n_features and schedule (not input_dim, kind)", schedule_names),
]

ORDER = ["run", "merge", "boundary", "schedule", "ls/show/compare/plot", "load"]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-v", "--verbose", action="store_true", help="print every case")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    import time
    start = time.perf_counter()
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
        print(f"\nwall time: {time.perf_counter() - start:.0f} s")
        return 1 if failed else 0
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"scratch kept: {root}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
