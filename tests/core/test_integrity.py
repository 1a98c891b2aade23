"""Results a researcher can trust: one writer per run (an OS lock), liveness (a killed run shows as
dead and resumable), damaged files (named errors; `ls` goes on; `--resume` retrains what is lost),
and every student stored once."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import cli_main, run_tables

import lrsweep
from lrsweep.core import runner
from lrsweep.core import runstate
from lrsweep.core import store
from lrsweep.core.errors import RunLockedError, StoreError

CFG = {"name": "trust", "seeds": [0, 1, 2, 3, 4, 5],
       "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
       "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
       "init": "orthogonal", "train": {"steps": 2},
       "grid": {"lr_total": [2, 4], "lr_1_fraction": [0.25, 0.75]}}
N = 6 * 4        # students
N_LOGS = 3       # logged steps 0, 1, 2

# The CLI in a subprocess whose chunk writer sleeps first, so a run is reliably still writing while
# the test acts on it (the sleep is outside the numerics: results are unchanged).
SLOW_CLI = """
import sys, time
from lrsweep.core import runner
write = runner._write_chunk
def slow(*args, **kwargs):
    time.sleep(float(sys.argv[1]))
    return write(*args, **kwargs)
runner._write_chunk = slow
from lrsweep.cli import main
sys.exit(main(sys.argv[2:]))
"""


def slow_cli(*argv, delay=0.3):
    env = {**os.environ, "PYTHONPATH": str(Path(lrsweep.__file__).parent.parent)}
    return subprocess.Popen([sys.executable, "-c", SLOW_CLI, str(delay), *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def ls_line(root: Path, run: Path) -> str:
    rc, stdout, err = cli_main(["ls", root])
    assert rc == 0, err
    return next(line for line in stdout.splitlines() if line.startswith(str(run) + " "))




def assert_same_results(run: Path, clean: Path):
    got, want = run_tables(run), run_tables(clean)
    for table in ("students", "curves"):
        pd.testing.assert_frame_equal(got[table], want[table], check_exact=True)


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    """The same config trained in one go: what every repaired run must equal, bit for bit."""
    out = tmp_path_factory.mktemp("clean")
    runner.run(lrsweep.load_config(CFG), out, run_id="clean", progress=False, chunk_size=4)
    return out / "trust" / "clean"


def crashed_run(tmp_path, n_chunks=2, chunk_size=4) -> Path:
    """A run that crashed after ``n_chunks`` chunks were written (parts on disk, status failed)."""
    real = runner._write_chunk
    calls = []

    def write_then_crash(*args, **kwargs):
        if len(calls) == n_chunks:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return real(*args, **kwargs)

    runner._write_chunk = write_then_crash
    try:
        with pytest.raises(RuntimeError, match="simulated crash"):
            runner.run(lrsweep.load_config(CFG), tmp_path / "out", run_id="crashed", progress=False,
                       chunk_size=chunk_size)
    finally:
        runner._write_chunk = real
    return tmp_path / "out" / "trust" / "crashed"


# --------------------------------------------------------------------------------------
# One writer per run
# --------------------------------------------------------------------------------------

def test_killed_run_is_dead_and_two_concurrent_resumes_store_each_student_once(tmp_path, clean_run):
    cfg_path = tmp_path / "trust.yaml"
    cfg_path.write_text(yaml.safe_dump(CFG, sort_keys=False))  # student ids follow axis order
    out = tmp_path / "out"
    # the clean run's chunk shape: float32 numbers are a function of it (lrsweep.core.engine), and the
    # comparison below is bit for bit (chunks of 2 matched chunks of 4 on jaxlib 0.10's emitters, not on 0.11's)
    first = slow_cli("run", cfg_path, "--out", out, "--quiet", "--chunk-size", "4")
    assert wait_for(lambda: len(list(out.rglob("*.students.parquet"))) >= 2), first.communicate()
    (run,) = [p.parent for p in out.rglob("meta.json")]
    # alive: ls says running and names the writer
    assert f"running (pid {first.pid} on {socket.gethostname()}" in ls_line(out, run)
    first.kill()  # kill -9: no handler runs, meta.json still says running
    first.wait()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "running" and meta["pid"] == first.pid and meta["host"] == socket.gethostname()
    assert "heartbeat" in meta
    k = len(lrsweep.load(run, table="students"))
    assert 0 < k < N
    assert ls_line(out, run).endswith(f"dead (resumable: {k}/{N} students)")

    # two resumes at once: one takes the lock, the other is refused before touching anything
    procs = [slow_cli("run", "--resume", run, "--quiet") for _ in range(2)]
    results = [(p, *p.communicate(timeout=300)) for p in procs]
    codes = sorted(p.returncode for p, _, _ in results)
    assert codes == [0, 2], [(p.returncode, err[-800:]) for p, _, err in results]
    (winner,) = [p for p, _, _ in results if p.returncode == 0]
    (refused_err,) = [err for p, _, err in results if p.returncode == 2]
    assert len(refused_err.strip().splitlines()) == 1, refused_err
    assert "another lrsweep process is writing this run" in refused_err
    assert f"pid {winner.pid} on {socket.gethostname()}" in refused_err

    students = pd.read_parquet(run / "students")
    curves = pd.read_parquet(run / "curves")
    assert sorted(students["student_id"]) == list(range(N))  # every student exactly once
    assert len(curves) == N * N_LOGS and not curves.duplicated(["student_id", "step"]).any()
    assert ls_line(out, run).endswith("complete")
    assert_same_results(run, clean_run)


def test_lock_is_exclusive_and_names_its_holder(tmp_path):
    run = tmp_path / "r"
    run.mkdir()
    with runstate.RunLock(run):
        assert runstate.lock_holder(run)["pid"] == os.getpid()
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()} on {socket.gethostname()} since"):
            runstate.RunLock(run).acquire()
    assert runstate.lock_holder(run) is None
    with runstate.RunLock(run):  # released: can be taken again
        pass


def test_resume_refused_while_the_run_is_locked_changes_nothing(tmp_path):
    run = crashed_run(tmp_path)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    with runstate.RunLock(run):
        rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "another lrsweep process" in err
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before


def test_heartbeat_from_another_host(tmp_path):
    """Locks may not be shared across hosts: a run on another host counts as running while its
    heartbeat is fresh, and dead once it is stale."""
    run = tmp_path / "r"
    run.mkdir()
    now = pd.Timestamp.now()
    for age_s, state in ((5, "running"), (3600, "dead")):
        beat = (now - pd.Timedelta(seconds=age_s)).isoformat(timespec="seconds")
        store.write_json({"status": "running", "n_students": 4, "pid": 1, "host": "elsewhere-node-7",
                          "heartbeat": beat}, run / "meta.json")
        assert runstate.run_state(run).state == state


def test_record_heartbeat_advances(tmp_path):
    rec = runstate.RunRecord(tmp_path, {"status": "new"}, heartbeat_s=0.05).start()
    try:
        first = json.loads((tmp_path / "meta.json").read_text())
        assert first["status"] == "running" and first["pid"] == os.getpid()
        rec.meta["heartbeat"] = "2000-01-01T00:00:00"  # the thread must overwrite it
        assert wait_for(lambda: json.loads((tmp_path / "meta.json").read_text())["heartbeat"] > "2001", 10)
    finally:
        rec.stop()


# --------------------------------------------------------------------------------------
# Damaged files
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("table", ["students", "curves"])
def test_truncated_part_is_named_listed_and_retrained(tmp_path, clean_run, table):
    healthy = tmp_path / "out" / "trust" / "healthy"
    shutil.copytree(clean_run, healthy)
    run = crashed_run(tmp_path)
    part = sorted((run / "parts").glob(f"*.{table}.parquet"))[0]
    os.truncate(part, 100)
    with pytest.raises(StoreError) as e:
        lrsweep.load(run)
    assert str(part) in str(e.value) and f"lrsweep run --resume {run}" in str(e.value)
    assert len(str(e.value).splitlines()) == 1
    rc, stdout, _ = cli_main(["ls", tmp_path / "out"])
    assert rc == 0
    assert ls_line(tmp_path / "out", healthy).endswith("complete")
    line = ls_line(tmp_path / "out", run)
    assert "failed: RuntimeError: simulated crash (resumable: " in line and f"unreadable file(s): {part}" in line
    rc, stdout, err = cli_main(["show", run])
    if table == "students":  # the summary needs it: a named one-line error
        assert rc == 2 and len(err.strip().splitlines()) == 1 and str(part) in err
    else:  # the summary reads only students: shown, with the damage in the status line
        assert rc == 0 and f"unreadable file(s): {part}" in stdout.splitlines()[0]

    rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert "retraining chunk" in err and part.name.split(".")[0] in err
    assert_same_results(run, clean_run)
    assert ls_line(tmp_path / "out", run).endswith("complete")


def test_truncated_merged_table_is_named_listed_and_retrained(tmp_path, clean_run):
    root = tmp_path / "out"
    run, other = root / "trust" / "broken", root / "trust" / "fine"
    shutil.copytree(clean_run, run)
    shutil.copytree(clean_run, other)
    broken = sorted((run / "students").rglob("*.parquet"))[0]
    os.truncate(broken, 100)
    line = ls_line(root, run)
    assert line.split()[-1] != "complete" and "corrupt: " in line and str(broken) in line
    assert ls_line(root, other).endswith("complete")
    with pytest.raises(StoreError, match=f"{broken.name}: unreadable Parquet file"):
        lrsweep.load(run, table="students")
    rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert "retraining every student" in err
    assert_same_results(run, clean_run)
    assert ls_line(root, run).endswith("complete")


def test_merged_table_with_missing_rows_is_not_complete(tmp_path, clean_run):
    """`complete` means the merged tables match what the merge recorded, not that meta says so."""
    run = tmp_path / "r"
    shutil.copytree(clean_run, run)
    (part,) = sorted((run / "students").rglob("*.parquet"))[-1:]
    students = pd.read_parquet(part)
    store.write_table(students.iloc[:-3], part)
    state = runstate.run_state(run)
    assert state.state == "corrupt" and f"{N - 3} rows, expected {N}" in state.detail


# --------------------------------------------------------------------------------------
# Every student once
# --------------------------------------------------------------------------------------

def test_duplicated_chunk_is_refused_by_load_and_merged_once(tmp_path, clean_run):
    """Parts holding the same students twice (what two writers at once used to leave): load refuses,
    naming the files; the resume's merge keeps each student once."""
    run = crashed_run(tmp_path)
    stem = sorted((run / "parts").glob("*.students.parquet"))[0].name.split(".")[0]
    for table in ("students", "curves"):
        shutil.copy(run / "parts" / f"{stem}.{table}.parquet", run / "parts" / f"g0000-zzzzzz-c000000.{table}.parquet")
    with pytest.raises(StoreError, match="student ids appear more than once") as e:
        lrsweep.load(run)
    assert f"{stem}.students.parquet" in str(e.value) and "g0000-zzzzzz-c000000.students.parquet" in str(e.value)
    rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert_same_results(run, clean_run)


def test_merge_checks_the_plan(tmp_path):
    run = crashed_run(tmp_path)
    with pytest.raises(StoreError, match=r"the parts hold 8 students, the plan 24 \(16 missing"):
        store.merge_parts(run, np.arange(N), N * N_LOGS)
    assert (run / "parts").is_dir() and not (run / "students").exists()


def test_failed_run_records_its_error(tmp_path):
    run = crashed_run(tmp_path)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "failed" and meta["error"] == "RuntimeError: simulated crash"
    assert meta["wall_time_s"] > 0
    state = runstate.run_state(run)
    assert state.describe() == f"failed: RuntimeError: simulated crash (resumable: 8/{N} students)"


def test_a_refusal_under_a_lock_removes_the_lock_file_it_made_only(tmp_path):
    """A command refused (an LrsweepError) after taking a run's lock leaves no lock file it made; a lock
    file that was there before stays, and so does one of a command that failed otherwise."""
    from lrsweep.core.errors import ConfigError
    with pytest.raises(ConfigError):
        with runstate.RunLock(tmp_path):
            raise ConfigError("run", "refused")
    assert not (tmp_path / ".lock").exists()
    (tmp_path / ".lock").write_text("")
    with pytest.raises(ConfigError):
        with runstate.RunLock(tmp_path):
            raise ConfigError("run", "refused")
    assert (tmp_path / ".lock").exists()
    (tmp_path / ".lock").unlink()
    with pytest.raises(RuntimeError):
        with runstate.RunLock(tmp_path):
            raise RuntimeError("a bug, not a refusal")
    assert (tmp_path / ".lock").exists()
    first = runstate.RunLock(tmp_path, ".lock-x").acquire()
    with pytest.raises(RunLockedError):  # held: refused, the holder's file untouched
        runstate.RunLock(tmp_path, ".lock-x").acquire()
    first.discard()
    assert not (tmp_path / ".lock-x").exists()
    again = runstate.RunLock(tmp_path, ".lock-x").acquire()  # a fresh file, locked
    assert runstate.lock_holder(tmp_path, ".lock-x") is not None
    again.release()
