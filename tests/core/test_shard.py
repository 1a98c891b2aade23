"""One sweep over several jobs or processes: the shard partition, `--shard i/n` + `lrsweep merge` equal to
an unsharded run bit for bit, a two-process jax.distributed run on the CPU, and the errors."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import cli_main, run_tables

import lrsweep
from lrsweep.core import config
from lrsweep.core import distributed
from lrsweep.core import runner
from lrsweep.core import runstate

CFG = {"name": "sharded", "seeds": [0, 1, 2],
       "task": {"input_dim": 6, "n_train": 6},
       "model": {"parameterization": "standard", "n_layers": 2, "activation": "relu"},
       "train": {"steps": 3},
       "grid": {"model.width": [3, 5], "lr": [0.05, 0.1, 0.2, 0.4]}}
N = 2 * 3 * 4


@pytest.mark.parametrize("seeds,lrs,count", [(3, 4, 3), (1, 5, 8), (4, 1, 3), (2, 7, 1), (5, 3, 4)])
def test_every_student_is_in_exactly_one_balanced_shard(seeds, lrs, count):
    cfg = {**CFG, "seeds": list(range(seeds)), "grid": {"model.width": [3, 5], "lr": list(np.linspace(0.1, 1, lrs))}}
    students, specs = runner.prepare(config.load_config(cfg))
    masks = np.array([distributed.shard_mask(students, specs, i, count) for i in range(count)])
    assert (masks.sum(axis=0) == 1).all()  # each student in exactly one shard
    # contiguous in (instance, point) order: an instance is a seed of a width here, points in plan order
    order = students.sort_values(["group_id", "seed", "student_id"])
    for _, rows in order.assign(shard=masks.argmax(axis=0)[order.index]).groupby("group_id"):
        assert (np.diff(rows["shard"].to_numpy()) >= 0).all()
    for gid in specs:
        in_group = (students["group_id"] == gid).to_numpy()
        sizes = masks[:, in_group].sum(axis=1)
        assert sizes.max() - sizes.min() <= 1 and sizes.sum() == in_group.sum()
    # a shard takes whole runs of an instance's points: k students of P points per seed span at most
    # ceil(k / P) + 1 seeds, so it builds few instances
    for i in range(count):
        mine = students[masks[i]]
        for gid in specs:
            k = int((mine["group_id"] == gid).sum())
            assert mine.loc[mine["group_id"] == gid, "seed"].nunique() <= -(-k // lrs) + 1




@pytest.fixture(scope="module")
def unsharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    rc, _, err = cli_main(["run", write_cfg(out), "--out", out, "--quiet", "--run-id", "whole", "--chunk-size", "4"])
    assert rc == 0, err
    return out / "sharded" / "whole"


def write_cfg(folder: Path, cfg=CFG) -> Path:
    path = Path(folder) / "sharded.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def assert_same(run: Path, whole: Path) -> None:
    got, want = run_tables(run), run_tables(whole)
    for table in ("students", "curves"):
        pd.testing.assert_frame_equal(got[table], want[table], check_exact=True)
    assert sorted(got["students"]["student_id"]) == list(range(N))  # each student exactly once


def test_shards_merged_equal_the_unsharded_run_bit_for_bit(tmp_path, unsharded):
    """Same settings (--chunk-size 4: 3 chunks per group), 3 shards run one after the other (shard 1 late,
    by --resume), merged: every column of both tables equal to the one-job run, bit for bit."""
    cfg = write_cfg(tmp_path)
    run = tmp_path / "sharded" / "J7"
    for i in (2, 0):  # in any order; shard 1 is missing at first
        rc, out, err = cli_main(["run", cfg, "--out", tmp_path, "--quiet", "--shard", f"{i}/3", "--run-id", "J7",
                                 "--chunk-size", "4"])
        assert rc == 0, err
        assert f"shard {i}/3: 8 students" in out and f"shards complete; when every shard is: lrsweep merge {run}" in out
    rc, _, err = cli_main(["merge", run])  # shard 1 not run: nothing merged, what is missing named
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "8 of 24 students have no results" in err and "1/3 (not started)" in err
    assert (run / "parts").is_dir() and not (run / "students").exists()
    rc, _, err = cli_main(["ls", tmp_path])
    assert "sharded: 2/3 shards complete" in _, _
    rc, out, err = cli_main(["run", "--resume", run, "--quiet", "--shard", "1/3"])
    assert rc == 0, err
    assert f"all 3 shards complete; next: lrsweep merge {run}" in out
    rc, out, err = cli_main(["merge", run])
    assert rc == 0, err
    assert "students: 24 in 2 shape group(s)" in out
    assert_same(run, unsharded)
    rc, out, _ = cli_main(["ls", tmp_path])
    assert out.strip().splitlines()[-1].endswith("complete")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_with_jax_distributed_store_each_student_once(tmp_path, unsharded):
    """Two processes on localhost (jax.distributed, CPU): one run directory, process 0's run id,
    every student once, equal to the one-process run bit for bit."""
    cfg, port = write_cfg(tmp_path), free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(lrsweep.__file__).parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-m", "lrsweep.cli", "run", str(cfg), "--out", str(tmp_path),
                               "--quiet", "--chunk-size", "4", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                               "--process-id", str(i)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-2000:] for o in outs]
    (run,) = [p.parent for p in tmp_path.rglob("meta.json")]
    # half of each group of 12 (not whole chunks of 4: 1 and 2 of them)
    assert "shard 0/2: 12 students" in outs[0][0] and "shard 1/2: 12 students" in outs[1][0]
    assert f"process 0 merges the run: {run}" in outs[1][0]
    assert_same(run, unsharded)


@pytest.mark.parametrize("argv,field", [
    (["--shard", "0/2"], "--run-id"),
    (["--shard", "2/2", "--run-id", "x"], "--shard"),
    (["--shard", "a/b", "--run-id", "x"], "--shard"),
    (["--shard", "0/2", "--run-id", "x", "--coordinator", "localhost:1", "--num-processes", "2",
      "--process-id", "0"], "--shard"),
    (["--coordinator", "localhost:1"], "--num-processes"),  # the three come together
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "2"], "--process-id"),
    (["--mem-fraction", "1.5"], "--mem-fraction"),
    (["--run-id", "a/b"], "--run-id"),
])
def test_bad_scale_out_options_exit_2_before_anything(tmp_path, argv, field):
    rc, out, err = cli_main(["run", write_cfg(tmp_path), "--out", tmp_path / "out", "--quiet", *argv])
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.removeprefix("lrsweep: ").removeprefix("config error: ").startswith(field), err
    assert not (tmp_path / "out").exists()


def test_a_shard_of_another_sweep_or_split_is_refused(tmp_path):
    cfg = write_cfg(tmp_path)
    rc, out, err = cli_main(["run", cfg, "--out", tmp_path, "--quiet", "--shard", "0/2", "--run-id", "R",
                             "--chunk-size", "4"])
    assert rc == 0, err
    assert "shard 0/2: 12 students" in out and "1/2 shards complete" in out  # half of each group of 12
    run = tmp_path / "sharded" / "R"
    before = sorted(p.name for p in (run / "parts").iterdir())
    for argv, field in ((["--shard", "1/3"], "--shard"), (["--shard", "1/2", "--set", "train.steps=4"], "--shard"),
                        (["--shard", "1/2", "--x64"], "--x64")):
        rc, _, err = cli_main(["run", cfg, "--out", tmp_path, "--quiet", "--run-id", "R", *argv])
        assert rc == 2 and err.startswith(f"lrsweep: config error: {field}"), err
        assert len(err.strip().splitlines()) == 1
    assert "train.steps" in cli_main(["run", cfg, "--out", tmp_path, "--quiet", "--run-id", "R", "--shard", "1/2",
                                      "--set", "train.steps=4"])[2]
    assert sorted(p.name for p in (run / "parts").iterdir()) == before  # nothing written
    assert not (run / "shards" / "1-of-2.json").exists()


def test_one_writer_per_shard_and_no_unsharded_resume(tmp_path):
    """While shard 0/2's lock is held, a second shard 0/2 is refused and shard 1/2 runs; resuming the
    sharded run without --shard (it would train shard 0's students too) is refused, nothing written."""
    cfg, run = write_cfg(tmp_path), tmp_path / "sharded" / "L"
    argv = ["run", cfg, "--out", tmp_path, "--quiet", "--run-id", "L", "--chunk-size", "4"]
    run.mkdir(parents=True)
    with runstate.RunLock(run, runstate.shard_lock_name(0, 2)):  # shard 0/2 training elsewhere
        rc, _, err = cli_main([*argv, "--shard", "0/2"])
        assert rc == 2 and "another lrsweep process is writing" in err and len(err.strip().splitlines()) == 1
        rc, out, err = cli_main([*argv, "--shard", "1/2"])
        assert rc == 0 and "shard 1/2: 12 students" in out, err
        assert runstate.shard_states(run, 2) == {0: "running", 1: "complete"}
        before = sorted(p.name for p in run.rglob("*"))
        rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert err.startswith("lrsweep: config error: --shard") and "--shard i/2" in err, err
        assert sorted(p.name for p in run.rglob("*")) == before


def test_mem_fraction_and_distributed_need_a_backend_not_yet_started(tmp_path):
    """--mem-fraction and --distributed act before JAX's backend starts: refused (exit 2, one line, no
    run) in a process whose backend runs; a fresh process takes --mem-fraction."""
    import jax
    jax.devices()  # this process's backend has started
    for argv, field in ((["--mem-fraction", "0.5"], "--mem-fraction"), (["--distributed", "auto"], "--distributed")):
        rc, _, err = cli_main(["run", write_cfg(tmp_path), "--out", tmp_path / "out", "--quiet", *argv])
        assert rc == 2 and err.startswith(f"lrsweep: config error: {field}"), err
        assert len(err.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    env = {**os.environ, "PYTHONPATH": str(Path(lrsweep.__file__).parent.parent)}
    done = subprocess.run([sys.executable, "-m", "lrsweep.cli", "run", str(write_cfg(tmp_path)), "--out",
                           str(tmp_path / "out"), "--dry-run", "--mem-fraction", "0.5"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_mem_fraction_is_set_where_jax_cannot_say_whether_its_backend_started(monkeypatch):
    """Whether the backend started is private to jax (``jax._src.xla_bridge``); where a release has moved it,
    --mem-fraction sets the variable (read if the backend is still to start) instead of failing."""
    import jax
    from lrsweep import cli
    jax.devices()  # this process's backend has started: jax's own answer would refuse
    monkeypatch.setitem(sys.modules, "jax._src.xla_bridge", None)  # its import now fails
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    cli._set_mem_fraction(0.25)
    assert os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.25"


def test_merge_names_the_shards_that_own_missing_students_and_needs_no_empty_shard(tmp_path):
    """2 students in 5 shards: only shards 2 and 4 have one. Merge names shard 4 alone while its
    student is missing, and merges once it ran: the empty shards 0, 1, 3 never ran."""
    cfg = write_cfg(tmp_path, {**CFG, "seeds": [0], "grid": {"lr": [0.1, 0.2]}, "model": {**CFG["model"], "width": 3}})
    run = tmp_path / "sharded" / "E"
    rc, out, err = cli_main(["run", cfg, "--out", tmp_path, "--quiet", "--shard", "2/5", "--run-id", "E"])
    assert rc == 0 and "shard 2/5: 1 students" in out, err
    rc, _, err = cli_main(["merge", run])
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "1 of 2 students have no results; shards not complete: 4/5 (not started);" in err
    rc, out, err = cli_main(["run", "--resume", run, "--quiet", "--shard", "4/5"])
    assert rc == 0 and "shard 4/5: 1 students" in out, err
    rc, out, err = cli_main(["merge", run])
    assert rc == 0, err
    assert sorted(lrsweep.load(run, table="students")["student_id"]) == [0, 1]


def lock_files(root: Path) -> set:
    return {p for p in Path(root).rglob(".lock*")}


def snapshot(root: Path) -> dict:
    """Every file under ``root`` with its bytes and modification time: what "nothing written" compares."""
    return {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in Path(root).rglob("*") if p.is_file()}


def test_merge_of_a_run_that_is_not_sharded_or_not_a_run_is_refused_writing_nothing(tmp_path, unsharded):
    before = snapshot(unsharded)
    rc, out, err = cli_main(["merge", unsharded])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and not out, err
    assert err.strip() == (f"lrsweep: config error: run: {unsharded} is not a sharded run (a plain run, made "
                           f"without --shard); nothing to merge")
    assert snapshot(unsharded) == before
    rc, _, err = cli_main(["merge", tmp_path])
    assert rc == 2 and err.strip() == f"lrsweep: config error: run: {tmp_path} is not a run directory (no meta.json)"
    assert list(tmp_path.iterdir()) == []


def test_merge_refusals_leave_no_lock_a_damaged_part_names_its_shard_and_a_second_merge_changes_nothing(tmp_path):
    """2 shards of 2 students (one of each width; chunks of 1), float64. Merge is refused, leaving no lock file, while
    shard 1 has not run and while it runs; a truncated part of shard 1 is named with the command that
    repairs it (that shard's resume), which retrains that chunk alone and says so; the merge then
    equals the shards as first written, bit for bit; a second merge says so and writes nothing."""
    cfg = write_cfg(tmp_path, {**CFG, "seeds": [0], "grid": {"model.width": [3, 5], "lr": [0.1, 0.2]}})
    run = tmp_path / "sharded" / "D"
    argv = ["run", cfg, "--out", tmp_path, "--quiet", "--run-id", "D", "--chunk-size", "1", "--x64"]
    rc, out, err = cli_main([*argv, "--shard", "0/2"])
    assert rc == 0 and "shard 0/2: 2 students (2 trained now) in" in out, out + err
    locks = lock_files(tmp_path)
    rc, _, err = cli_main(["merge", run])  # shard 1 not run
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "1/2 (not started)" in err, err
    assert lock_files(tmp_path) == locks
    run.joinpath(".lock-shard-1-of-2").touch()
    locks = lock_files(tmp_path)
    with runstate.RunLock(run, runstate.shard_lock_name(1, 2)):  # shard 1 training elsewhere
        rc, _, err = cli_main(["merge", run])
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip() == f"lrsweep: config error: run: shard 1/2 of {run} is still running; merge once every " \
                          f"shard is complete"
    assert lock_files(tmp_path) == locks
    rc, out, err = cli_main([*argv, "--shard", "1/2"])
    assert rc == 0, err
    whole = run_tables(run)  # read from the parts
    part = sorted((run / "parts").glob("s1of2-*.curves.parquet"))[0]
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    locks = lock_files(tmp_path)
    rc, _, err = cli_main(["merge", run])
    repair = f"lrsweep run --resume {run} --shard 1/2"
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"lrsweep: {part}: unreadable Parquet file (") and \
        err.strip().endswith(f"repair with: {repair}, then merge again"), err
    assert lock_files(tmp_path) == locks and not (run / "students").exists()
    rc, out, err = cli_main(repair.split()[1:] + ["--quiet"])
    assert rc == 0 and "shard 1/2: 2 students (1 trained now, 1 already stored) in" in out, out + err
    rc, out, err = cli_main(["merge", run])
    assert rc == 0 and "students: 4 in 2 shape group(s)" in out, err
    got = run_tables(run)
    for table in ("students", "curves"):
        pd.testing.assert_frame_equal(got[table], whole[table], check_exact=True)
    before = snapshot(run)
    rc, out, err = cli_main(["merge", run])
    assert rc == 0 and not err and out.strip() == (f"{run}: already merged (complete); nothing to do. See it "
                                                   f"with: lrsweep show {run}"), out + err
    assert snapshot(run) == before


@pytest.mark.parametrize("argv,field,says", [
    (["--run-id", "whole"], "--run-id", "already exists (a run); give another --run-id, or finish it with: "
                                        "lrsweep run --resume"),
    (["--resume", "RUN", "--x64"], "--x64", "is trained in float32"),
    (["--resume", "RUN", "--run-id", "other"], "--run-id", "is the run whole, not other"),
    (["--resume", "RUN", "--shard", "0/2"], "--shard", "is not a sharded run (made without --shard)"),
])
def test_run_options_that_contradict_the_run_are_refused_writing_nothing(unsharded, argv, field, says):
    """A new run's --run-id taken (was a traceback), and --x64 / --run-id / --shard given to --resume that
    the run contradicts (were ignored, or refused leaving a lock file): exit 2, one line, nothing written."""
    out = unsharded.parent.parent
    before, locks = snapshot(unsharded), lock_files(out)
    argv = [str(unsharded) if a == "RUN" else a for a in argv]
    head = [] if "--resume" in argv else [write_cfg(out), "--out", out]
    rc, _, err = cli_main(["run", *head, "--quiet", *argv])
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"lrsweep: config error: {field}: ") and says in err, err
    assert snapshot(unsharded) == before and lock_files(out) == locks
