"""The `lrsweep` command line: bad input (exit 2, nothing written), run / ls / show / schema /
--dry-run / --set, and --resume after a simulated crash (bit-identical to a clean run)."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jaxlib
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import cli_main

import lrsweep
from lrsweep import cli
from lrsweep.core import config

LRSWEEP = str(Path(sys.executable).parent / "lrsweep")

TINY = {"name": "tiny", "seeds": [0, 1],
        "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
        "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
        "init": "orthogonal", "train": {"steps": 2},
        "grid": {"lr_total": [2, 4], "lr_1_fraction": [0.25, 0.75]}}
N_TINY = 2 * 2 * 2


def write_cfg(path: Path, cfg=TINY) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def run_dirs(out: Path):
    return sorted(p.parent for p in out.rglob("meta.json"))


def assert_nothing_written(out: Path):
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))


# --------------------------------------------------------------------------------------
# Bad input: exit code 2, a message naming the field, nothing under --out
# --------------------------------------------------------------------------------------

def _bad_cases(tmp: Path):
    good = write_cfg(tmp / "good.yaml")
    def cfg_with(name, mut, text=None):
        p = tmp / name
        if text is not None:
            p.write_text(text)
            return p
        c = yaml.safe_load(good.read_text())
        mut(c)
        return write_cfg(p, c)
    not_a_run = tmp / "not_a_run"
    not_a_run.mkdir()
    return {
        "missing-file": (["run", tmp / "nope.yaml"], "config"),
        "unknown-field": (["run", cfg_with("a.yaml", lambda c: c["model"].update(widht=4))], "model.widht"),
        "unknown-top-level": (["run", cfg_with("b.yaml", lambda c: c.update(modle={}))], "modle"),
        "bad-init": (["run", cfg_with("c.yaml", lambda c: c.update(init="xavier"))], "init"),
        "bad-type": (["run", cfg_with("d.yaml", lambda c: c["model"].update(width="big"))], "model.width"),
        "ortho-shapes": (["run", good, "--set", "model.width=16"], "init"),
        "no-lr": (["run", cfg_with("e.yaml", lambda c: c.update(grid={"width": [4]}))], "grid"),
        "negative-lr": (["run", good, "--set", "grid.lr_total=[-1]"], "grid.lr_total"),
        "bad-generator": (["run", good, "--set", "grid.lr_total={linspace: [1, 2]}"], "grid.lr_total"),
        "set-unknown": (["run", good, "--set", "train.stpes=3"], "train.stpes"),
        "set-no-equals": (["run", good, "--set", "train.steps"], "--set"),
        "set-bad-value": (["run", good, "--set", "train.steps=-3"], "train.steps"),
        "invalid-yaml": (["run", cfg_with("f.yaml", None, text="grid: {lr: [1, 2\n")], "config"),
        "list-yaml": (["run", cfg_with("g.yaml", None, text="- 1\n- 2\n")], "config"),
        "empty-yaml": (["run", cfg_with("h.yaml", None, text="")], "grid"),
        "name-escapes-out": (["run", good, "--set", "name=../../escaped"], "name"),
        "chunk-size-zero": (["run", good, "--chunk-size", "0"], "--chunk-size"),
        "max-memory-garbage": (["run", good, "--max-memory", "lots"], "--max-memory"),
        "checkpoint-every-negative": (["run", good, "--checkpoint-every", "-5"], "--checkpoint-every"),
        "resume-not-a-run": (["run", "--resume", not_a_run], "--resume"),
        "resume-missing": (["run", "--resume", tmp / "missing_run"], "--resume"),
        "resume-with-config": (["run", good, "--resume", not_a_run], "--resume"),
        "dry-run-bad": (["run", good, "--dry-run", "--set", "model.n_layers=1"], "model.n_layers"),
        # issue 24: argparse errors are one line naming the option and what it allows (case 10)
        "rtol-not-a-number": (["boundary", good, "--rtol", "abc"], "--rtol: expected a number in (0, 1)"),
        "verify-zero": (["schedule", good, "--verify", "0"], "--verify: expected a positive integer"),
        "verify-too-few-for-a-tail-fit": (["schedule", "configs/schedules/optimal_schedules_cpu.yaml", "--verify", "5"],
                                          "--verify: needs >= 6 seeds"),
        "mem-fraction-not-a-number": (["run", good, "--mem-fraction", "abc"], "--mem-fraction: expected a number in (0, 1]"),
        "distributed-bogus": (["run", good, "--distributed", "bogus"], "--distributed: one of auto"),
        "num-processes-zero": (["run", good, "--num-processes", "0"], "--num-processes: expected a positive integer"),
        "unknown-command": (["bogus", good], "COMMAND: one of run, merge"),
        # jax.distributed's options, checked before it is touched (case 6)
        "coordinator-no-port": (["run", good, "--coordinator", "localhost", "--num-processes", "2", "--process-id", "0"],
                                "--coordinator: expected HOST:PORT with PORT an integer in 1..65535"),
        "coordinator-port-range": (["run", good, "--coordinator", "h:70000", "--num-processes", "2", "--process-id", "0"],
                                   "--coordinator: expected HOST:PORT"),
        "process-id-out-of-range": (["run", good, "--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"],
                                    "--process-id: must be in 0..1"),
        "coordinator-alone": (["run", good, "--coordinator", "h:1234"], "--num-processes"),
        "distributed-auto-and-coordinator": (["run", good, "--distributed", "auto", "--coordinator", "h:1234"],
                                             "--distributed: auto lets JAX detect the cluster"),
        "distributed-auto-dry-run": (["run", good, "--dry-run", "--distributed", "auto", "--num-processes", "2"],
                                     "--distributed"),
        # a setting that cannot take effect (case 9)
        "newton-steps-never-read": (["run", good, "--set", "train.newton_steps=3"], "train.newton_steps: only read by"),
    }


BAD_IDS = ["missing-file", "unknown-field", "unknown-top-level", "bad-init", "bad-type", "ortho-shapes", "no-lr",
           "negative-lr", "bad-generator", "set-unknown", "set-no-equals", "set-bad-value", "invalid-yaml",
           "list-yaml", "empty-yaml", "name-escapes-out", "chunk-size-zero", "max-memory-garbage",
           "checkpoint-every-negative",
           "resume-not-a-run", "resume-missing", "resume-with-config", "dry-run-bad",
           "rtol-not-a-number", "verify-zero", "verify-too-few-for-a-tail-fit", "mem-fraction-not-a-number", "distributed-bogus", "num-processes-zero",
           "unknown-command", "coordinator-no-port", "coordinator-port-range", "process-id-out-of-range",
           "coordinator-alone", "distributed-auto-and-coordinator", "distributed-auto-dry-run",
           "newton-steps-never-read"]


@pytest.mark.parametrize("case", BAD_IDS)
def test_bad_input_exit_2_names_field_writes_nothing(tmp_path, case):
    argv, field = _bad_cases(tmp_path)[case]
    out = tmp_path / "out"
    rc, stdout, stderr = cli_main(argv + ["--out", out, "--quiet"])
    assert rc == 2, (stdout, stderr)
    assert field in stderr, stderr
    assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("lrsweep: "), stderr  # one line, no usage
    assert "Traceback" not in stderr
    assert_nothing_written(out)
    assert not (tmp_path.parent / "escaped").exists()


def test_bad_cases_cover_the_list(tmp_path):
    assert sorted(_bad_cases(tmp_path)) == sorted(BAD_IDS)


def test_show_bad_run_exit_2(tmp_path):
    rc, _, err = cli_main(["show", tmp_path])
    assert rc == 2 and "run" in err and "meta.json" in err


def test_no_command_is_usage_error():
    rc, _, err = cli_main([])
    assert rc == 2 and "usage" in err and len(err.strip().splitlines()) == 1, err
    assert "one of run, merge" in err


@pytest.mark.filterwarnings("error")  # numpy's "Empty input file" UserWarning was printed before the message
def test_empty_schedule_csv_is_one_line(tmp_path):
    (tmp_path / "rates.csv").write_text("")
    path = write_cfg(tmp_path / "sweep.yaml", {**TINY, "train": {"steps": 2, "schedule": "array",
                                                                 "schedule_array": "rates.csv"}})
    rc, _, err = cli_main(["run", path, "--out", tmp_path / "out", "--quiet"])
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "train.schedule_array" in err and "rates.csv holds no numbers" in err
    assert_nothing_written(tmp_path / "out")


def test_subprocess_bad_input(tmp_path):
    bad = write_cfg(tmp_path / "bad.yaml", {**TINY, "init": "xavier"})
    out = tmp_path / "out"
    p = subprocess.run([LRSWEEP, "run", str(bad), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2
    assert "init" in p.stderr and "orthogonal" in p.stderr and "gaussian" in p.stderr
    assert "Traceback" not in p.stderr
    assert_nothing_written(out)


def test_subprocess_schema():
    p = subprocess.run([LRSWEEP, "schema"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    for path in config.FIELDS:
        assert f"`{path}`" in p.stdout


def test_schema_in_process():
    rc, out, _ = cli_main(["schema"])
    assert rc == 0
    for path, field in config.FIELDS.items():
        assert f"`{path}`" in out
        for choice in field.choices or ():
            assert str(choice) in out


def test_readme_field_table_is_the_schema_as_printed():
    """The README's field table is what ``lrsweep schema`` prints, row for row (it had drifted: task.a and
    task.b's ranges, and train.sharpness_iters's metrics, were older texts)."""
    rc, out, _ = cli_main(["schema"])
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text().splitlines()
    rows = [line for line in out.splitlines() if line.startswith("| `")]
    assert rc == 0 and len(rows) == len(config.FIELDS)
    assert [row for row in rows if row not in readme] == []


def test_sharpness_iters_is_stored_for_every_lanczos_metric():
    """``train.sharpness_iters`` is read by every Lanczos metric; a run of ``body_sharpness`` alone stored
    no column of it (its ``applies`` rule listed sharpness and phi_sharpness only)."""
    from lrsweep.core import runner
    for metric in ("sharpness", "phi_sharpness", "body_sharpness"):
        cfg = config.load_config(runner.resolve_config_path("configs/stackelberg/curvature_body_cpu.yaml"),
                                 [f"train.metrics=[{metric}]"])
        students = config.expand_grid(cfg)
        assert "sharpness_iters" in config.stored_columns(students), metric


def test_parse_bytes():
    assert cli.parse_bytes("2GB") == 2 * 2**30
    assert cli.parse_bytes("2gb") == 2 * 2**30
    assert cli.parse_bytes("512MiB") == 512 * 2**20
    assert cli.parse_bytes("1e9") == 10**9
    assert cli.parse_bytes("64K") == 65536
    for bad in ("0", "-1GB", "lots", "2XB"):
        with pytest.raises(Exception):
            cli.parse_bytes(bad)


# --------------------------------------------------------------------------------------
# A real run (console script in a subprocess) and the commands that read it
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cli_run")
    cfg = write_cfg(tmp / "tiny.yaml")
    out = tmp / "results"
    p = subprocess.run([LRSWEEP, "run", str(cfg), "--out", str(out), "--quiet"], capture_output=True, text=True,
                       timeout=300, cwd=tmp)
    assert p.returncode == 0, p.stderr
    runs = run_dirs(out)
    assert len(runs) == 1
    return runs[0], p.stdout, out


def test_run_layout(tiny_run):
    run, stdout, out = tiny_run
    assert run.parent == out / "tiny"
    assert str(run) in stdout
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml", "curves", "meta.json", "students"]
    # hive partitioned by shape group: one file per trained chunk
    assert [p.name for p in (run / "students").iterdir()] == ["group_id=0"]
    assert len(list((run / "curves" / "group_id=0").glob("*.parquet"))) >= 1
    assert not (run / "parts").exists()
    assert not [p for p in run.rglob("*") if p.name.endswith(".tmp")]


def test_run_meta(tiny_run):
    run, _, _ = tiny_run
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert meta["jax"] == jax.__version__
    assert meta["jaxlib"] == jaxlib.__version__
    assert isinstance(meta["device_kind"], str) and meta["device_kind"]
    assert isinstance(meta["device_count"], int) and meta["device_count"] >= 1
    assert meta["wall_time_s"] > 0
    assert meta["students_per_s"] > 0
    assert meta["n_students"] == N_TINY


def test_run_tables(tiny_run):
    run, _, _ = tiny_run
    students = pq.read_table(run / "students").to_pandas()  # plain pyarrow: group_id from the folder names
    curves = pq.read_table(run / "curves").to_pandas()
    assert len(students) == N_TINY and sorted(students["student_id"]) == list(range(N_TINY))
    assert len(curves) == N_TINY * 3  # steps 0, 1, 2
    assert sorted(set(curves["step"])) == [0, 1, 2]
    assert set(students["run_id"]) == set(curves["run_id"]) == {run.name}
    assert np.isfinite(curves["train_loss"]).all() and np.isfinite(curves["test_loss"]).all()
    # the stored grid is the config's grid
    pairs = sorted(zip(students["lr_total"], students["lr_1"], students["lr_2"]))
    want = sorted((C, f * C, (1 - f) * C) for C in (2.0, 4.0) for f in (0.25, 0.75) for _ in (0, 1))
    assert pairs == want  # exact: every value is a binary fraction
    assert sorted(students["seed"]) == [0, 0, 0, 0, 1, 1, 1, 1]


def test_run_config_yaml_reproduces_grid(tiny_run):
    run, _, _ = tiny_run
    stored = config.expand_grid(config.load_config(run / "config.yaml"))
    fresh = config.expand_grid(config.load_config(TINY))
    pd.testing.assert_frame_equal(stored, fresh)


def test_ls(tiny_run, tmp_path):
    run, _, out = tiny_run
    rc, stdout, _ = cli_main(["ls", out])
    assert rc == 0
    line = next(l for l in stdout.splitlines() if str(run) in l)
    assert "complete" in line and f"{N_TINY}/{N_TINY}" in line.split()
    rc, stdout, _ = cli_main(["ls", tmp_path / "nothing"])
    assert rc == 0 and "no" in stdout


def test_show(tiny_run):
    run, _, _ = tiny_run
    rc, stdout, _ = cli_main(["show", run])
    assert rc == 0
    assert "status: complete" in stdout
    assert f"students: {N_TINY}" in stdout
    assert str(run) in stdout
    assert "lr_1" in stdout and "final_test_loss" in stdout


def test_dry_run_writes_nothing(tmp_path):
    cfg = write_cfg(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    rc, stdout, _ = cli_main(["run", cfg, "--out", out, "--dry-run", "--set", "grid.lr_total=[1,2,3]"])
    assert rc == 0
    assert "tiny: 12 students in 1 shape group" in stdout
    assert "h=4" in stdout and "L=3" in stdout
    assert not out.exists()


def test_run_with_set_in_process(tmp_path):
    cfg = write_cfg(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    rc, stdout, err = cli_main(["run", cfg, "--out", out, "--quiet", "--set", "train.steps=1",
                                "--set", "grid.lr_total=[3]", "--set", "name=other"])
    assert rc == 0, err
    (run,) = run_dirs(out)
    assert run.parent.name == "other"
    students = lrsweep.load(run, table="students")
    curves = lrsweep.load(run)
    assert len(students) == 2 * 2 and set(students["lr_total"]) == {3.0}
    assert set(students["steps"]) == {1} and sorted(set(curves["step"])) == [0, 1]
    stored = yaml.safe_load((run / "config.yaml").read_text())
    assert stored["train"]["steps"] == 1 and stored["grid"]["lr_total"] == [3]


# --------------------------------------------------------------------------------------
# --resume after a crash
# --------------------------------------------------------------------------------------

RESUME_CFG = {**TINY, "name": "crash", "seeds": [0, 1, 2]}  # 3 seeds x 4 lr points = 12 students


class Crash(RuntimeError):
    pass


def test_resume_after_crash_matches_clean_run(tmp_path, monkeypatch):
    from lrsweep.core import engine
    cfg = write_cfg(tmp_path / "crash.yaml", RESUME_CFG)
    real_iter_group = engine.iter_group
    chunks_seen = []

    def crashing_iter_group(*args, **kwargs):
        for item in real_iter_group(*args, **kwargs):
            chunks_seen.append(item[0].index)
            yield item
            raise Crash("simulated crash after the first chunk")

    monkeypatch.setattr(engine, "iter_group", crashing_iter_group)
    out = tmp_path / "out"
    with pytest.raises(Crash):
        cli.main(["run", str(cfg), "--out", str(out), "--quiet", "--chunk-size", "4"])
    monkeypatch.setattr(engine, "iter_group", real_iter_group)

    (run,) = run_dirs(out)
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "failed" and meta["error"] == "Crash: simulated crash after the first chunk"
    assert not (run / "students").exists() and not (run / "curves").exists()
    parts = sorted(p.name for p in (run / "parts").iterdir())
    assert len(parts) == 2 and sum(p.endswith(".students.parquet") for p in parts) == 1, parts
    # a crash between a chunk's curves part and its students part leaves an orphan curves part:
    # it must neither show up in load() nor be merged twice after the resume
    (curves_part,) = [p for p in (run / "parts").iterdir() if p.name.endswith(".curves.parquet")]
    shutil.copy(curves_part, run / "parts" / "g0000-orphan-c000001.curves.parquet")
    partial = lrsweep.load(run, table="students")
    assert len(partial) == 4  # one chunk of --chunk-size 4
    assert len(lrsweep.load(run)) == 4 * 3
    rc, stdout, _ = cli_main(["ls", out])
    line = next(l for l in stdout.splitlines() if str(run) in l)
    assert rc == 0 and " 4/12 " in line  # one chunk of 4 has results
    assert line.endswith("failed: Crash: simulated crash after the first chunk (resumable: 4/12 students)")

    rc, stdout, err = cli_main(["run", "--resume", run, "--dry-run"])
    assert rc == 0 and "12 students" in stdout
    rc, stdout, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert str(run) in stdout
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete"
    assert not (run / "parts").exists()

    clean_out = tmp_path / "clean"
    rc, _, err = cli_main(["run", cfg, "--out", clean_out, "--quiet", "--chunk-size", "4"])
    assert rc == 0, err
    (clean,) = run_dirs(clean_out)

    for table, key in (("students", ["student_id"]), ("curves", ["student_id", "step"])):
        a = pd.read_parquet(run / table).sort_values(key).reset_index(drop=True)
        b = pd.read_parquet(clean / table).sort_values(key).reset_index(drop=True)
        assert len(a) == len(b) == (12 if table == "students" else 36)
        assert a["student_id"].tolist() == b["student_id"].tolist()
        cols = ["final_train_loss", "final_test_loss"] if table == "students" else ["train_loss", "test_loss"]
        for c in cols:  # bit for bit
            assert a[c].to_numpy().tobytes() == b[c].to_numpy().tobytes(), c
        if table == "students":
            same = [c for c in b.columns if c not in ("run_id",)]
            pd.testing.assert_frame_equal(a[same], b[same])


def test_ctrl_c_marks_run_interrupted_and_says_how_to_resume(tmp_path, monkeypatch):
    from lrsweep.core import engine
    cfg = write_cfg(tmp_path / "crash.yaml", RESUME_CFG)
    real_iter_group = engine.iter_group

    def interrupted_iter_group(*args, **kwargs):
        for item in real_iter_group(*args, **kwargs):
            yield item
            raise KeyboardInterrupt

    monkeypatch.setattr(engine, "iter_group", interrupted_iter_group)
    out = tmp_path / "out"
    rc, stdout, stderr = cli_main(["run", cfg, "--out", out, "--quiet", "--chunk-size", "4"])
    (run,) = run_dirs(out)
    assert rc == 130
    assert "4 of 12 students" in stderr and f"lrsweep run --resume {run}" in stderr and "Traceback" not in stderr
    assert json.loads((run / "meta.json").read_text())["status"] == "interrupted"
    rc, stdout, _ = cli_main(["ls", out])
    line = next(line for line in stdout.splitlines() if str(run) in line)
    assert "interrupted" in line and " 4/12 " in line
    monkeypatch.setattr(engine, "iter_group", real_iter_group)
    rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    meta = json.loads((run / "meta.json").read_text())
    assert meta["status"] == "complete" and len(lrsweep.load(run, table="students")) == 12


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped interrupt, on purpose
def test_a_signal_whose_interrupt_python_drops_still_stops_the_run(tmp_path, monkeypatch):
    """CI saw it: the SIGTERM handler ran inside JAX's garbage-collector callback, where Python prints
    the KeyboardInterrupt as "Exception ignored" and drops it; the run trained to the end and exited 0.
    Here the signal lands inside a ``__del__`` (dropped the same way) after the first chunk is
    stored: the run still stops at the next chunk, interrupted, with exit 130 and one chunk stored."""
    import os
    import signal

    from lrsweep.core import runner

    class SignalInDel:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(10_000))  # the handler runs here, inside __del__: its KeyboardInterrupt is dropped

    write, written = runner._write_chunk, []

    def write_then_signal(*args, **kwargs):
        write(*args, **kwargs)
        written.append(args[1])
        if len(written) == 1:
            SignalInDel()  # collected at once

    monkeypatch.setattr(runner, "_write_chunk", write_then_signal)
    out = tmp_path / "out"
    rc, _, err = cli_main(["run", write_cfg(tmp_path / "c.yaml"), "--out", out, "--quiet", "--chunk-size", "1"])
    (run,) = run_dirs(out)
    assert rc == 130, err[-1000:]
    assert json.loads((run / "meta.json").read_text())["status"] == "interrupted"
    assert len(written) == 1 and f"1 of {N_TINY} students have results" in err


def test_sigterm_stops_a_run_cleanly(tmp_path):
    """A scheduler's SIGTERM: exit 130, finished chunks kept, status interrupted, no traceback.

    80 one-student chunks: when the first is stored, 79 (seconds of work) are left for the signal
    to interrupt; the in-process resume trains what is left in one chunk (``--chunk-size`` on a
    resume replaces the stored cap), not 79 calls again."""
    import signal
    import time
    cfg = {**TINY, "name": "term", "seeds": list(range(20)), "train": {"steps": 200}}
    path = write_cfg(tmp_path / "term.yaml", cfg)
    out = tmp_path / "out"
    proc = subprocess.Popen([LRSWEEP, "run", str(path), "--out", str(out), "--quiet", "--chunk-size", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list(out.rglob("*.students.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    (run,) = run_dirs(out)
    assert proc.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    assert json.loads((run / "meta.json").read_text())["status"] == "interrupted"
    n_done = len(lrsweep.load(run, table="students"))
    # the count the message reports is what is stored: nothing lost, nothing half-written
    assert f"{n_done} of 80 students have results" in stderr, stderr[-500:]
    assert not list(run.rglob("*.tmp"))
    rc, _, err = cli_main(["run", "--resume", run, "--quiet", "--chunk-size", "80"])
    assert rc == 0, err
    finished = lrsweep.load(run, table="students")
    assert sorted(finished["student_id"]) == list(range(80))
