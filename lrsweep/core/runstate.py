"""Who is writing a run, and is it alive: the run's write lock, its heartbeat and its status.

A run directory has exactly one writer at a time. :class:`RunLock` is an OS file lock
(``fcntl.flock`` on ``RUN/.lock``, held for the life of the writing process and released by the
kernel when it dies, ``kill -9`` included); the lock file records the holder (pid, host, since) so a
second writer is refused with a message naming it. While a run trains, :class:`RunRecord` keeps
``meta.json`` current: pid, host and a heartbeat every :data:`HEARTBEAT_S` seconds, and on failure
the error in one line. :func:`run_state` turns both into what ``lrsweep ls`` shows:

    running                       the lock is held (or, on another host, the heartbeat is fresh)
    dead (resumable: k/n)         meta says running but nobody holds the lock (killed, crashed)
    interrupted (resumable: k/n)  stopped by Ctrl-C / SIGTERM
    failed: <reason>              an exception; ``--resume`` retries
    corrupt: <file>: <reason>     a stored table is unreadable or disagrees with the plan
    incomplete: <what>            the students are complete, the work a family's command adds to the
                                  run (a bisection, a verification: :class:`lrsweep.registry.Stage`) not
    sharded: <detail>             shards of a run not yet merged (``lrsweep merge``)
    complete                      the merged tables (and every stage's) were verified against the plan

Every state but running, sharded and complete carries the command that finishes or repairs the run
(:attr:`RunState.resume`): ``lrsweep run --resume RUN``, or the resume of the family command that
made it (``lrsweep boundary --resume RUN``, ``lrsweep schedule --resume RUN``). A run of another kind
(:class:`lrsweep.registry.RunKind`: tables, no students) has the same states.

``flock`` locks are per open file, so the same process cannot take a run twice either, and on Linux
NFS mounts they are mapped to POSIX byte-range locks visible to every client.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import socket
import threading
import time
from pathlib import Path

from lrsweep import registry
from lrsweep.core import store
from lrsweep.core.errors import ConfigError, LrsweepError, RunLockedError, StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; runs are not protected there
    fcntl = None

LOCK_NAME = ".lock"
HEARTBEAT_S = 30.0   # seconds between heartbeats written to meta.json
STALE_S = 300.0      # a heartbeat older than this, from another host, counts as dead


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _holder_text(holder: dict | None) -> str:
    if not holder:
        return "another process (no holder recorded)"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}"


class RunLock:
    """Exclusive write lock of a run directory; a context manager. :meth:`acquire` raises
    :class:`RunLockedError` naming the holder when another process (or another lock object in this
    one) holds it."""

    def __init__(self, run_dir: str | Path, name: str = LOCK_NAME):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / name  # a shard's own lock: shard_lock_name(i, n)
        self._fh = None
        self.created = False  # this object made the lock file (a refusal removes it again: __exit__)

    def acquire(self) -> "RunLock":
        if fcntl is None or self._fh is not None:
            return self
        while True:
            created = not self.path.exists()
            fh = open(self.path, "a+")
            for attempt in range(5):  # a reader (`lrsweep ls`) holds a shared lock for a moment
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if attempt < 4:
                        time.sleep(0.1)
            else:
                fh.seek(0)
                holder = _parse(fh.read())
                fh.close()
                raise RunLockedError(f"{self.run_dir}: another lrsweep process is writing this run "
                                     f"({_holder_text(holder)}); wait for it to finish or stop it first")
            if _same_file(fh, self.path):
                break
            fh.close()  # its holder removed the file while we waited (a refusal): lock the one now there
        self.created = created
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def discard(self) -> None:
        """Remove the lock file this object created and release it (a command refused after taking
        the lock leaves nothing behind). A lock file that was there before is kept: another
        process may hold it later, or have it open now (:meth:`acquire` checks that the file it
        locked is still the one at the path, so removing it under the lock is safe)."""
        if self._fh is not None and self.created:
            try:
                self.path.unlink(missing_ok=True)
            except OSError:  # a directory that turned read-only: the file stays, unlocked, harmless
                pass
        self.release()

    def __enter__(self):
        return self.acquire()

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, LrsweepError):  # refused: leave no lock file
            self.discard()
        self.release()


def _same_file(fh, path: Path) -> bool:
    """Whether the open file ``fh`` is still the file at ``path`` (not removed or replaced)."""
    try:
        return os.path.samestat(os.fstat(fh.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def _parse(text: str) -> dict | None:
    try:
        return json.loads(text) if text.strip() else None
    except ValueError:
        return None


def shard_lock_name(index: int, count: int) -> str:
    """The write lock of shard ``index`` of ``count`` (shards of one run write at the same time)."""
    return f"{LOCK_NAME}-shard-{index}-of-{count}"


def shard_record_path(run_dir: Path, index: int, count: int) -> Path:
    """Where shard ``index`` of ``count`` keeps its status, pid, host and heartbeat (meta.json is the run's)."""
    return Path(run_dir) / "shards" / f"{index}-of-{count}.json"


def lock_holder(run_dir: str | Path, name: str = LOCK_NAME) -> dict | None:
    """The holder ``{pid, host, since}`` of the run's write lock (or of the lock ``name``), or None
    when nobody holds it."""
    path = Path(run_dir) / name
    if fcntl is None or not path.exists():
        return None
    with open(path) as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(fh.read()) or {}
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return None


class RunRecord:
    """meta.json of a run being written: updates from the training loop and a heartbeat thread,
    serialised so neither loses the other's fields."""

    def __init__(self, run_dir: Path, meta: dict, heartbeat_s: float = HEARTBEAT_S, path: Path | None = None):
        self.run_dir, self.meta, self.heartbeat_s = Path(run_dir), meta, heartbeat_s
        self.path = Path(path) if path is not None else self.run_dir / "meta.json"  # a shard: its own record
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def update(self, **fields) -> None:
        with self._lock:
            self.meta.update(fields)
            self.meta["heartbeat"] = _now()
            store.write_json(self.meta, self.path)

    def start(self) -> "RunRecord":
        """Mark the run running by this process and start the heartbeat."""
        for stale in ("error", "finished"):
            self.meta.pop(stale, None)
        self.update(status="running", pid=os.getpid(), host=socket.gethostname())
        if self.heartbeat_s and self.heartbeat_s > 0:
            self._thread = threading.Thread(target=self._beat, name="lrsweep-heartbeat", daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                self.update()
            except OSError:  # a full disk must not kill training; the next beat retries
                pass

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def shard_states(run_dir: Path, count: int) -> dict[int, str]:
    """Each shard's state: ``running`` (its lock is held), ``complete``, ``failed``, ``interrupted``,
    ``dead`` (its record says running, nobody holds its lock) or ``not started``."""
    states = {}
    for i in range(count):
        if lock_holder(run_dir, shard_lock_name(i, count)) is not None:
            states[i] = "running"
            continue
        try:
            status = store.read_json(shard_record_path(run_dir, i, count)).get("status", "running")
        except (OSError, ValueError):
            states[i] = "not started"
            continue
        states[i] = "dead" if status == "running" else status
    return states


def shards_state(run_dir: Path, count: int) -> tuple[str, str]:
    """(state, detail) of a sharded run not yet merged: ``running`` while a shard writes; otherwise
    ``sharded``, with how many shards are complete and what to do next."""
    states = shard_states(run_dir, count)
    done = sum(s == "complete" for s in states.values())
    if any(s == "running" for s in states.values()):
        return "running", f"{done}/{count} shards complete, {sum(s == 'running' for s in states.values())} running"
    todo = [f"{i}/{count} {s}" for i, s in states.items() if s != "complete"]
    if not todo:
        return "sharded", f"all {count} shards complete; finish with: lrsweep merge {run_dir}"
    return "sharded", f"{done}/{count} shards complete; to do: {', '.join(todo)}"


def error_line(exc: BaseException, limit: int = 300) -> str:
    """An exception as one line for meta.json and ``ls``: ``Type: first line of the message``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = "" if isinstance(exc, LrsweepError) else type(exc).__name__ + (": " if text else "")
    line = name + text
    return line if len(line) <= limit else line[: limit - 3] + "..."


@dataclasses.dataclass
class RunState:
    """What ``lrsweep ls`` shows of a run."""
    run_dir: Path
    state: str            # running | dead | interrupted | failed | corrupt | incomplete | sharded | complete
    done: int             # students with readable results
    total: int
    detail: str = ""      # the failure, the corrupt file, the unfinished stage, or the holder of a running run
    unreadable: tuple = ()  # part files that cannot be read (resuming retrains their chunks)
    started: str | None = None
    wall_time_s: float | None = None
    resume: str | None = None  # the command that finishes or repairs it (None: nothing to do, or running)

    @property
    def resumable(self) -> bool:
        return self.resume is not None

    def describe(self) -> str:
        bad = f", {len(self.unreadable)} unreadable file(s): {self.unreadable[0]}" if self.unreadable else ""
        if self.state == "running":
            return "running" + (f" ({self.detail})" if self.detail else "") + bad
        if self.state == "complete":
            return "complete"
        if self.state == "sharded":
            return f"sharded: {self.detail} ({self.done}/{self.total} students)"
        if self.state == "incomplete":
            return f"incomplete: {self.detail} (resumable)"
        head = {"dead": "dead", "interrupted": "interrupted"}.get(self.state, f"{self.state}: {self.detail}")
        if self.total == 0 and not self.done:  # a run of tables (a schedule search)
            return f"{head} (resumable)"
        return f"{head} (resumable: {self.done}/{self.total} students{bad})"

    def line(self) -> str:
        """The status and what to do about it, one line: ``RUN: <status>; finish it with: <command>``."""
        todo = f"; finish it with: {self.resume}" if self.resume else ""
        return f"{self.run_dir}: {self.describe()}{todo}"


def _age_s(stamp: str | None) -> float | None:
    try:
        return (_dt.datetime.now() - _dt.datetime.fromisoformat(stamp)).total_seconds()
    except (TypeError, ValueError):
        return None


def _writer(run_dir: Path, meta: dict) -> tuple[str, str] | None:
    """("running", who) while a process writes the run (its lock, or a fresh heartbeat from another
    host), ("dead", "") when meta says running and nobody does, else None."""
    holder = lock_holder(run_dir)
    if holder is not None:
        return "running", _holder_text(holder)
    if meta.get("status", "running") != "running":
        return None
    age = _age_s(meta.get("heartbeat"))
    if meta.get("host") not in (None, socket.gethostname()) and age is not None and age < STALE_S:
        return "running", f"pid {meta.get('pid')} on {meta.get('host')}, heartbeat {age:.0f}s ago"
    return "dead", ""


def _stages_problem(run_dir: Path, meta: dict) -> tuple[str, str, str] | None:
    """(state, detail, resume) of the first stage of a complete run that is not complete
    (``incomplete``) or whose tables cannot be trusted (``corrupt``), else None."""
    for stage in registry.STAGES.values():
        record = meta.get(stage.name)
        if not isinstance(record, dict):
            continue
        resume = stage.resume.format(run=run_dir)
        status = record.get("status", "complete")  # runs stored before stages recorded theirs
        if status != "complete":
            # nobody holds the lock (else the run is running): a stage still marked running was killed
            status = "dead" if status == "running" else status
            why = f": {record['error']}" if record.get("error") else ""
            return "incomplete", f"{stage.what} did not finish ({status}{why})", resume
        rows = record.get("rows") or {}
        for name in stage.tables:
            problem = store.file_problem(run_dir / name, rows.get(name))
            if problem:
                return "corrupt", problem, resume
        for sub in record.get("runs") or ():  # runs the stage trained (RUN/verify/<id>): theirs is its state
            state = run_state(run_dir / sub) if store.is_run(run_dir / sub) else None
            if state is None or state.state != "complete":
                what = f"{run_dir / sub}: missing" if state is None else f"{sub}: {state.describe()}"
                return ("corrupt" if state is None or state.state == "corrupt" else "incomplete"), what, resume
    return None


def refuse_other_kind(run_dir: str | Path, option: str, kind: str | None = None) -> None:
    """ConfigError(``option``) where ``run_dir`` is a run of another kind than ``kind`` (a
    :class:`lrsweep.registry.RunKind` name; None: a student grid), naming the command that finishes it
    (``--resume: RUN is a schedule search; finish it with: lrsweep schedule --resume RUN``). Nothing is
    read but meta.json, nothing written: a command calls it before it takes the run's lock."""
    have = registry.run_kind(run_dir)
    if (have.name if have is not None else None) == kind:
        return
    what = f"a {have.name.replace('_', ' ')}" if have is not None else "a run of students (lrsweep run)"
    raise ConfigError(option, f"{run_dir} is {what}; finish it with: {store.repair_command(Path(run_dir))}")


def run_state(run_dir: str | Path) -> RunState:
    """Status of a stored run from its lock, meta.json and the readable results (never raises for a
    damaged run: the damage is the status)."""
    run_dir = Path(run_dir)
    try:
        meta = store.read_json(run_dir / "meta.json")
    except (OSError, ValueError) as e:
        return RunState(run_dir, "corrupt", 0, 0, f"meta.json unreadable ({error_line(e)})")
    total = int(meta.get("n_students", 0))
    common = dict(started=meta.get("started"), wall_time_s=meta.get("wall_time_s"))
    resume = store.repair_command(run_dir)
    kind = registry.run_kind(run_dir)
    if kind is not None:  # a run of tables, no students (`lrsweep schedule`)
        writer = _writer(run_dir, meta)
        if writer is not None:
            return RunState(run_dir, writer[0], 0, 0, writer[1], resume=None if writer[0] == "running" else resume,
                            **common)
        status = meta.get("status", "running")
        if status != "complete":
            return RunState(run_dir, "interrupted" if status == "interrupted" else "failed", 0, 0,
                            meta.get("error", status), resume=resume, **common)
        rows = meta.get("rows") or {}
        problem = next(filter(None, (store.file_problem(run_dir / name, rows.get(name)) for name in kind.tables)), None)
        stage = _stages_problem(run_dir, meta)
        if problem is not None:
            return RunState(run_dir, "corrupt", 0, 0, problem, resume=resume, **common)
        if stage is not None:
            return RunState(run_dir, stage[0], 0, 0, stage[1], resume=resume, **common)
        return RunState(run_dir, "complete", 0, 0, **common)

    def state(name: str, detail: str = "") -> RunState:
        done, bad = store.count_done(run_dir)
        return RunState(run_dir, name, done, total, detail, tuple(map(str, bad)),
                        resume=None if name in ("running", "sharded") else resume, **common)

    if meta.get("shards") and meta.get("status") != "complete":
        return state(*shards_state(run_dir, int(meta["shards"])))
    writer = _writer(run_dir, meta)
    if writer is not None:
        return state(*writer)
    status = meta.get("status", "running")
    if status == "complete":
        problem = store.verify_complete(run_dir, meta)
        if problem is not None:
            return state("corrupt", problem)
        stage = _stages_problem(run_dir, meta)
        if stage is not None:
            return RunState(run_dir, stage[0], total, total, stage[1], resume=stage[2], **common)
        return RunState(run_dir, "complete", total, total, **common)
    if status == "interrupted":
        return state("interrupted")
    return state("failed", meta.get("error", status))


def require_results(run_dir: str | Path) -> RunState:
    """The state of a run that ``show``, ``compare`` and ``plot`` can read: ConfigError("run") where
    ``run_dir`` is not a run; StoreError naming the damage and the repair where it is corrupt, or
    where it has no results yet."""
    run_dir = Path(run_dir)
    if not store.is_run(run_dir):
        raise ConfigError("run", f"{run_dir} is not a run directory (no meta.json)")
    state = run_state(run_dir)
    todo = f"; {'repair' if state.state == 'corrupt' else 'finish'} it with: {state.resume}" if state.resume else ""
    if state.state == "corrupt":
        raise StoreError(run_dir, f"corrupt: {state.detail}{todo}")
    if registry.run_kind(run_dir) is None and state.done == 0 and state.state not in ("complete", "incomplete"):
        hint = todo or ("; its first chunk is still training" if state.state == "running" else "")
        raise StoreError(run_dir, f"no results yet, status: {state.describe()}{hint}")
    if registry.run_kind(run_dir) is not None and state.state not in ("complete", "incomplete"):
        raise StoreError(run_dir, f"no results yet, status: {state.describe()}{todo}")
    return state
