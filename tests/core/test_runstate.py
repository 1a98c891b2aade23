"""One status model for every kind of run: a family's stage added to a run (registry.Stage) and a run
of tables (registry.RunKind) are running, dead, incomplete, corrupt or complete like a student run,
and ls, show, compare and plot agree on it and name the command that finishes or repairs it."""
import json
import shutil

import pandas as pd
import pytest
from conftest import cli_main

from lrsweep import registry
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core import runstate
from lrsweep.core import store
from lrsweep.core.errors import StoreError

CFG = {"name": "status", "seeds": [0, 1],
       "task": {"input_dim": 4, "n_train": 4, "design": "orthogonal"},
       "model": {"parameterization": "paper_deep", "n_layers": 2, "width": 4},
       "init": "orthogonal", "train": {"steps": 2}, "grid": {"lr_total": [1.0]}}
STAGE = registry.Stage("toy_stage", "the toy stage", ("toy.parquet",), "lrsweep toy --resume {run}")
KIND = registry.RunKind("toy_kind", lambda run: (run / "toy_kind").exists(), tables=("toy.parquet",),
                        resume="lrsweep toy --resume {run}")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("status")
    return runner.run(config.load_config(CFG), out, run_id="done", progress=False).run_dir


@pytest.fixture
def run(trained, tmp_path, monkeypatch):
    """A copy of a complete run with a registered toy stage."""
    monkeypatch.setitem(registry.STAGES, STAGE.name, STAGE)
    copy = tmp_path / "out" / "status" / "r"
    shutil.copytree(trained, copy)
    (copy / ".lock").unlink(missing_ok=True)
    return copy


def set_meta(run, **fields):
    meta = json.loads((run / "meta.json").read_text())
    meta.update(fields)
    (run / "meta.json").write_text(json.dumps(meta))


def test_a_stage_that_did_not_finish_is_incomplete_everywhere(run):
    set_meta(run, toy_stage={"status": "running"})
    state = runstate.run_state(run)
    assert (state.state, state.resume) == ("incomplete", f"lrsweep toy --resume {run}")
    assert state.describe() == "incomplete: the toy stage did not finish (dead) (resumable)"  # no lock held
    rc, out, _ = cli_main(["ls", run.parent.parent])
    assert rc == 0 and f"lrsweep toy --resume {run}" in out.splitlines()[-1], out
    rc, out, err = cli_main(["show", run])
    assert rc == 0 and out.startswith("status: incomplete") and f"finish it with: lrsweep toy --resume {run}" in out
    rc, _, err = cli_main(["compare", run])  # goes on with the students, saying what is missing
    assert rc == 0 and len(err.strip().splitlines()) == 1 and "lrsweep toy --resume" in err, err


def test_a_failed_stage_says_why(run):
    set_meta(run, toy_stage={"status": "failed", "error": "PermissionError: denied"})
    assert runstate.run_state(run).detail == "the toy stage did not finish (failed: PermissionError: denied)"


@pytest.mark.parametrize("damage", ["missing", "truncated", "short"])
def test_a_damaged_stage_table_is_corrupt_and_names_its_repair(run, damage):
    pd.DataFrame({"x": [1.0, 2.0, 3.0]}).to_parquet(run / "toy.parquet")
    set_meta(run, toy_stage={"status": "complete", "rows": {"toy.parquet": 3 if damage != "short" else 4}})
    assert runstate.run_state(run).state == "complete" or damage == "short"
    if damage == "missing":
        (run / "toy.parquet").unlink()
    elif damage == "truncated":
        data = (run / "toy.parquet").read_bytes()
        (run / "toy.parquet").write_bytes(data[: len(data) // 2])
    state = runstate.run_state(run)
    assert state.state == "corrupt" and str(run / "toy.parquet") in state.detail
    assert state.resume == f"lrsweep toy --resume {run}"
    for command in ("show", "compare", "plot"):
        rc, _, err = cli_main([command, run])
        lines = err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, (command, err)
        assert "toy.parquet" in lines[0] and f"lrsweep toy --resume {run}" in lines[0], (command, err)
    if damage == "truncated":  # reading it names the same repair, not `lrsweep run --resume`
        with pytest.raises(StoreError, match="repair with: lrsweep toy --resume"):
            store.read_parquet(run / "toy.parquet")


def test_a_run_of_tables_has_the_same_states(tmp_path, monkeypatch):
    monkeypatch.setitem(registry.RUN_KINDS, KIND.name, KIND)
    run = tmp_path / "toy" / "r"
    run.mkdir(parents=True)
    (run / "toy_kind").touch()
    (run / "meta.json").write_text(json.dumps({"status": "running", "n_students": 0}))  # killed: no lock
    state = runstate.run_state(run)
    assert (state.state, state.resume, state.describe()) == ("dead", f"lrsweep toy --resume {run}", "dead (resumable)")
    rc, _, err = cli_main(["show", run])
    assert rc == 2 and "no results yet" in err and f"lrsweep toy --resume {run}" in err
    with runstate.RunLock(run):
        assert runstate.run_state(run).state == "running" and runstate.run_state(run).resume is None
    set_meta(run, status="complete", rows={"toy.parquet": 2})
    assert runstate.run_state(run).state == "corrupt"  # its table is missing
    pd.DataFrame({"x": [1.0, 2.0]}).to_parquet(run / "toy.parquet")
    assert runstate.run_state(run).state == "complete"
