"""`lrsweep schedule` as trustworthy as `lrsweep run` (issue 24): its run has a status from the start, an
interrupted or damaged run (the search tables, the Monte Carlo verification, a verify run) is what
`ls`, `show`, `compare`, `plot` and `lrsweep.load` say, and `lrsweep schedule --resume RUN` repairs it to
the results of a clean run, bit for bit (x64); other commands refuse a schedule run."""
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

import lrsweep
from conftest import cli_main
from lrsweep.core import runstate
from lrsweep.core import store
from lrsweep.core.errors import StoreError

CFG = {"name": "sched", "task": {"kind": "power_law_features", "n_features": 8, "noise_std": 0.5},
       "model": {"parameterization": "standard", "n_layers": 1}, "init": "zeros",
       "train": {"optimizer": "sgd", "batch_size": 1},
       "schedule_search": {"horizons": [8, 16], "kinds": ["optimal", "constant"], "iterations": 5}}
VERIFY = ["--verify", "8", "--verify-max-seeds", "8", "--x64", "--quiet"]
TABLES = ("schedules.parquet", "schedule_summary.parquet")


def _config(tmp_path: Path, **edit) -> Path:
    path = tmp_path / "sched.yaml"
    path.write_text(yaml.safe_dump({**CFG, **edit}))
    return path


def _the_run(out: Path) -> Path:
    (run,) = (out / "sched").iterdir()
    return run


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """The search and its verification in one go: what every repaired run must equal."""
    tmp = tmp_path_factory.mktemp("clean")
    rc, out, err = cli_main(["schedule", _config(tmp), "--out", tmp / "results", *VERIFY])
    assert rc == 0, err
    return _the_run(tmp / "results")


def assert_same_tables(run: Path, clean: Path):
    for name in TABLES:
        got, want = (store.read_parquet(r / name).to_pandas() for r in (run, clean))
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def ls_line(run: Path) -> tuple[str, str]:
    """(the run's line of `lrsweep ls`, the commands it lists to finish or repair runs)."""
    rc, out, err = cli_main(["ls", run.parent])
    assert rc == 0, err
    line = next(x for x in out.splitlines() if x.startswith(str(run) + " "))
    return line, out.split("to finish or repair:", 1)[-1]


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err


def copy_of(clean: Path, tmp_path: Path) -> Path:
    run = tmp_path / "results" / "sched" / clean.name
    shutil.copytree(clean, run)
    return run


def test_the_stored_columns_use_the_configs_names(clean):
    """n_features as the config writes it (not the core's input_dim) and `schedule` for the schedule
    family (`kind` is task.kind everywhere else)."""
    for name in TABLES:
        columns = set(store.read_parquet(clean / name).schema.names)
        assert {"n_features", "schedule"} <= columns and not {"input_dim", "kind"} & columns, name
    summary = lrsweep.load(clean, table="schedule_summary")
    assert set(summary["schedule"]) == {"optimal", "constant"} and (summary["n_features"] == 8).all()
    assert summary["mc_n"].eq(8).all()
    meta = store.read_json(clean / "meta.json")
    assert meta["status"] == "complete" and meta["verify"]["status"] == "complete"
    assert meta["options"] == {"verify": 8, "max_seeds": 8, "max_memory": None} and meta["x64"] is True
    assert runstate.run_state(clean).state == "complete"


def test_interrupted_verification_is_incomplete_and_resumes_to_the_clean_run(clean, tmp_path, monkeypatch):
    """Ctrl-C after the first chunk of the first verify run: exit 130 naming `lrsweep schedule --resume`,
    no lock held, ls says incomplete with that command; the resume equals the clean run."""
    from lrsweep.core import runner
    write, calls = runner._write_chunk, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(*args, **kwargs)
    monkeypatch.setattr(runner, "_write_chunk", interrupted)
    rc, _, err = cli_main(["schedule", _config(tmp_path), "--out", tmp_path / "results", *VERIFY])
    run = _the_run(tmp_path / "results")
    assert rc == 130 and f"lrsweep schedule --resume {run}" in one_line(err)
    monkeypatch.setattr(runner, "_write_chunk", write)
    assert runstate.lock_holder(run) is None
    meta = store.read_json(run / "meta.json")
    assert meta["status"] == "complete" and meta["verify"]["status"] == "interrupted"
    line, todo = ls_line(run)
    assert "incomplete" in line and f"lrsweep schedule --resume {run}" in todo
    rc, out, err = cli_main(["show", run])  # what it holds, its status naming the command
    assert rc == 0 and "incomplete: the Monte Carlo verification did not finish (interrupted)" in out
    assert f"finish it with: lrsweep schedule --resume {run}" in out
    rc, out, err = cli_main(["schedule", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert_same_tables(run, clean)
    assert runstate.run_state(run).state == "complete" and "complete" in ls_line(run)[0]


def test_a_truncated_table_is_corrupt_everywhere_and_resume_rebuilds_it(clean, tmp_path):
    run = copy_of(clean, tmp_path)
    damaged = run / "schedules.parquet"
    damaged.write_bytes(damaged.read_bytes()[:100])
    repair = f"lrsweep schedule --resume {run}"
    line, todo = ls_line(run)
    assert "corrupt" in line and str(damaged) in line and repair in todo
    for command in (["show", run], ["compare", run], ["plot", run, "--out", tmp_path / "figs"]):
        rc, out, err = cli_main(command)
        assert rc == 2 and str(damaged) in one_line(err) and repair in err, (command, err)
    with pytest.raises(StoreError, match="schedules.parquet.*repair with: lrsweep schedule --resume"):
        lrsweep.load(run, table="schedules")
    assert len(lrsweep.load(run, table="schedule_summary")) == len(lrsweep.load(clean, table="schedule_summary"))
    with pytest.raises(StoreError, match="no curves table; its tables: schedules, schedule_summary"):
        lrsweep.load(run)
    rc, out, err = cli_main(["schedule", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert_same_tables(run, clean)
    assert runstate.run_state(run).state == "complete"


def test_a_damaged_verify_run_makes_the_parent_corrupt_and_resume_repairs_it(clean, tmp_path):
    run = copy_of(clean, tmp_path)
    sub = run / store.read_json(run / "meta.json")["verify"]["runs"][0]
    part = sorted((sub / "curves").rglob("*.parquet"))[0]
    part.write_bytes(part.read_bytes()[:100])
    repair = f"lrsweep schedule --resume {run}"
    line, todo = ls_line(run)
    assert "corrupt" in line and repair in todo
    assert store.repair_command(sub) == repair  # the verify run's own line points at its parent's command
    rc, _, err = cli_main(["show", run])
    assert rc == 2 and repair in one_line(err)
    rc, out, err = cli_main(["schedule", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert_same_tables(run, clean)
    assert runstate.run_state(run).state == runstate.run_state(sub).state == "complete"


def test_an_unwritable_table_is_one_line_and_the_run_failed_with_its_repair(clean, tmp_path, monkeypatch):
    """store.write_table refused (a full or read-only disk): exit 2, one line naming the file and the
    command; ls says failed with it; once writable, the command finishes the run."""
    write = store.write_table

    def refused(df, path, *args, **kwargs):
        if Path(path).name == "schedules.parquet":
            raise PermissionError(13, "Permission denied", str(path))
        return write(df, path, *args, **kwargs)
    monkeypatch.setattr(store, "write_table", refused)
    rc, _, err = cli_main(["schedule", _config(tmp_path), "--out", tmp_path / "results", "--x64", "--quiet"])
    run = _the_run(tmp_path / "results")
    assert rc == 2 and str(run / "schedules.parquet") in one_line(err)
    assert f"lrsweep schedule --resume {run}" in err and "Traceback" not in err
    monkeypatch.setattr(store, "write_table", write)
    line, todo = ls_line(run)
    assert "failed" in line and f"lrsweep schedule --resume {run}" in todo
    assert runstate.lock_holder(run) is None
    rc, _, err = cli_main(["schedule", "--resume", run, "--quiet"])
    assert rc == 0, err
    pd.testing.assert_frame_equal(*(store.read_parquet(r / "schedules.parquet").to_pandas() for r in (run, clean)),
                                  check_exact=True)
    assert runstate.run_state(run).state == "complete"


@pytest.mark.parametrize("command", [["run", "--resume"], ["boundary", "--resume"], ["merge"]])
def test_other_commands_refuse_a_schedule_run(clean, tmp_path, command):
    run = copy_of(clean, tmp_path)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    rc, _, err = cli_main([*command, run])
    assert rc == 2 and f"{run} is a schedule search; finish it with: lrsweep schedule --resume {run}" in one_line(err)
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before and runstate.lock_holder(run) is None


def test_schedule_resume_refuses_what_it_cannot_use(clean, tmp_path):
    student_run = tmp_path / "students_run"
    student_run.mkdir()
    (student_run / "meta.json").write_text('{"status": "complete", "n_students": 1}')
    rc, _, err = cli_main(["schedule", "--resume", student_run])
    assert rc == 2 and f"finish it with: lrsweep run --resume {student_run}" in one_line(err)
    rc, _, err = cli_main(["schedule", "--resume", clean, "--verify", "8"])
    assert rc == 2 and "--resume" in one_line(err) and "--verify" in err


@pytest.mark.parametrize("edit, field", [
    ({"grid": {"lr": [0.1, 0.2]}}, "grid.lr"),
    ({"grid": {"zip": {"a": [2.5, 1.5], "lr": [0.1, 0.2]}}}, "grid.lr"),
    ({"schedule_search": {"horizons": [20.5]}}, "schedule_search.horizons"),
    ({"schedule_search": {"horizons": "many"}}, "schedule_search.horizons"),
    ({"schedule_search": {"kinds": [["optimal"]]}}, "schedule_search.kinds"),
])
def test_settings_the_search_cannot_use_exit_2_before_any_directory(tmp_path, edit, field):
    rc, _, err = cli_main(["schedule", _config(tmp_path, **edit), "--out", tmp_path / "results"])
    assert rc == 2 and one_line(err).startswith(f"lrsweep: config error: {field}: ") and not (tmp_path / "results").exists()
    if field == "schedule_search.horizons":
        assert "integer step counts in [2, 10^9]" in err


def test_help_cites_a_config_that_exists():
    rc, out, _ = cli_main(["schedule", "--help"])
    cited = [w.strip("().,") for w in out.split() if w.strip("().,").startswith("configs/")]
    assert rc == 0 and cited and all((Path(__file__).parents[3] / c).is_file() for c in cited), cited
