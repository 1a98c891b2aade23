"""Parquet storage: loading runs and sweeps, schema unification, atomic writes."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import lrsweep
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core import store
from lrsweep import registry

CFG = {"name": "st", "seeds": [0, 1],
       "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
       "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
       "init": "orthogonal", "train": {"steps": 2},
       # lr_total 1e4 diverges (frozen, NaN losses, diverged_step set); 2 does not
       "grid": {"lr_total": [2, 1e4], "lr_1_fraction": [0.25, 0.75]}}
N_STUDENTS, N_LOGS = 2 * 2 * 2, 3

REQUIRED = ["run_id", "student_id", "seed", "n_layers", "width", "input_dim", "n_train", "init", "activation",
            "lr_1", "lr_2", "lr_total", "step", "train_loss", "test_loss", "diverged", "diverged_step"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two runs of the same sweep (the second with label noise) under one directory."""
    out = tmp_path_factory.mktemp("store")
    a = lrsweep.run(config.load_config(CFG), out, progress=False, run_id="a").run_dir
    b = lrsweep.run(config.load_config(CFG, ["task.noise_std=0.1"]), out, progress=False, run_id="b").run_dir
    return out / "st", a, b


def test_load_curves_has_required_columns(sweep):
    _, a, _ = sweep
    df = lrsweep.load(a)
    missing = [c for c in REQUIRED if c not in df]
    assert not missing
    assert len(df) == N_STUDENTS * N_LOGS
    assert set(df["run_id"]) == {"a"}
    assert sorted(set(df["step"])) == [0, 1, 2]
    assert df.groupby("student_id").size().eq(N_LOGS).all()


def test_curves_are_joined_with_their_student(sweep):
    _, a, _ = sweep
    curves = lrsweep.load(a)
    students = lrsweep.load(a, table="students").set_index("student_id")
    for sid, g in curves.groupby("student_id"):
        for col in ("lr_1", "lr_2", "lr_total", "seed", "width", "diverged"):
            assert (g[col] == students.loc[sid, col]).all(), (sid, col)
        last = g.sort_values("step").iloc[-1]
        np.testing.assert_equal(last["test_loss"], students.loc[sid, "final_test_loss"])
        np.testing.assert_equal(last["train_loss"], students.loc[sid, "final_train_loss"])


def test_divergence_columns(sweep):
    _, a, _ = sweep
    s = lrsweep.load(a, table="students")
    assert s["diverged"].dtype == bool
    div, ok = s[s["diverged"]], s[~s["diverged"]]
    assert set(div["lr_total"]) == {1e4} and set(ok["lr_total"]) == {2.0}
    assert ok["diverged_step"].isna().all()
    assert div["diverged_step"].notna().all()
    assert div["diverged_step"].between(0, 2).all()
    curves = lrsweep.load(a)
    after = curves[curves["diverged"] & (curves["step"] >= curves["diverged_step"])]
    assert len(after) > 0 and after["train_loss"].isna().all()
    assert np.isfinite(curves.loc[~curves["diverged"], "train_loss"]).all()


def test_students_table_matches_plain_readers(sweep):
    _, a, _ = sweep
    ours = lrsweep.load(a, table="students").sort_values("student_id").reset_index(drop=True)
    # plain readers of the hive-partitioned dataset: group_id comes from the folder names, as a category, last
    arrow = pq.read_table(a / "students").to_pandas().sort_values("student_id").reset_index(drop=True)
    pandas_ = pd.read_parquet(a / "students").sort_values("student_id").reset_index(drop=True)
    assert len(ours) == len(arrow) == len(pandas_) == N_STUDENTS
    assert set(ours.columns) == set(arrow.columns) == set(pandas_.columns)
    arrow, pandas_ = (f[list(ours.columns)].astype({"group_id": np.int64}) for f in (arrow, pandas_))
    pd.testing.assert_frame_equal(ours, pandas_)
    # plain arrow has no nullable ints: diverged_step comes back as float with NaN
    pd.testing.assert_frame_equal(ours.drop(columns="diverged_step"), arrow.drop(columns="diverged_step"))
    np.testing.assert_array_equal(ours["diverged_step"].astype("float64").to_numpy(),
                                  arrow["diverged_step"].astype("float64").to_numpy())


def test_curves_file_matches_plain_readers(sweep):
    _, a, _ = sweep
    ours = lrsweep.load(a).sort_values(["student_id", "step"]).reset_index(drop=True)
    plain = pq.read_table(a / "curves").to_pandas().sort_values(["student_id", "step"]).reset_index(drop=True)
    via_pandas = pd.read_parquet(a / "curves").sort_values(["student_id", "step"]).reset_index(drop=True)
    plain["group_id"] = plain["group_id"].astype(np.int64)  # the folder names' category
    via_pandas["group_id"] = via_pandas["group_id"].astype(np.int64)
    for c in plain.columns:
        np.testing.assert_array_equal(ours[c].to_numpy(), plain[c].to_numpy(), c)
        np.testing.assert_array_equal(via_pandas[c].to_numpy(), plain[c].to_numpy(), c)
    assert plain["student_id"].dtype == np.int64 and plain["step"].dtype == np.int64


def test_load_sweep_concatenates_runs(sweep):
    root, a, b = sweep
    both = lrsweep.load(root, runs="all")
    assert len(both) == 2 * N_STUDENTS * N_LOGS
    assert both.groupby("run_id").size().to_dict() == {"a": N_STUDENTS * N_LOGS, "b": N_STUDENTS * N_LOGS}
    assert both.groupby("run_id")["noise_std"].unique().map(list).to_dict() == {"a": [0.0], "b": [0.1]}
    # the same student ids exist in both runs: the join must not cross runs
    assert both.groupby(["run_id", "student_id", "step"]).size().eq(1).all()
    students = lrsweep.load(root, table="students", runs="all")
    assert len(students) == 2 * N_STUDENTS
    # the results root (above the sweep) finds the same runs
    assert len(lrsweep.load(root.parent, table="students", runs="all")) == 2 * N_STUDENTS
    assert store.find_runs(root) == [a, b]
    # a list of run ids (or paths) picks runs
    assert set(lrsweep.load(root, table="students", runs=["a"])["run_id"]) == {"a"}
    assert set(lrsweep.load(root, table="students", runs=[str(b)])["run_id"]) == {"b"}
    with pytest.raises(FileNotFoundError, match="no run zz"):
        lrsweep.load(root, runs=["zz"])


def test_load_sweep_defaults_to_latest_run(sweep):
    """A sweep directory loads only its newest run (by start time): runs of different configs are
    never averaged together by accident."""
    root, a, b = sweep
    for run, started in ((a, "2026-01-02T00:00:00"), (b, "2026-01-01T00:00:00")):
        meta = store.read_json(run / "meta.json")
        store.write_json({**meta, "started": started}, run / "meta.json")
    latest = lrsweep.load(root, table="students")
    assert set(latest["run_id"]) == {"a"} and len(latest) == N_STUDENTS
    assert set(lrsweep.load(root.parent)["run_id"]) == {"a"}  # newest run of each sweep


def test_load_errors(sweep, tmp_path):
    _, a, _ = sweep
    with pytest.raises(ValueError, match="table"):
        lrsweep.load(a, table="curvez")
    with pytest.raises(FileNotFoundError):
        lrsweep.load(tmp_path / "missing")
    assert lrsweep.load(tmp_path).empty  # no runs below


# --------------------------------------------------------------------------------------
# Schema unification across part files
# --------------------------------------------------------------------------------------

def _fake_run(tmp_path):
    run = tmp_path / "sw" / "r1"
    (run / "parts").mkdir(parents=True)
    store.write_json({"status": "running", "n_students": 3}, run / "meta.json")
    # like the runner's parts, each students part carries its group (the merge makes it the folder)
    s1 = pd.DataFrame({"run_id": "r1", "student_id": [0, 1], "group_id": 0, "lr_1": [1.0, 2.0], "diverged": [False, True],
                       "diverged_step": pd.array([pd.NA, 1], dtype="Int64")})
    s2 = pd.DataFrame({"run_id": "r1", "student_id": [2], "group_id": 1, "lr_1": [3.0], "diverged": [False],
                       "diverged_step": pd.array([pd.NA], dtype="Int64"), "lr_2": [0.5], "family": ["relu"]})
    store.write_table(s1, run / "parts" / "g0-x-c0.students.parquet")
    store.write_table(s2, run / "parts" / "g1-x-c0.students.parquet")
    for stem, ids in (("g0-x-c0", [0, 1]), ("g1-x-c0", [2])):
        c = pd.DataFrame({"run_id": "r1", "student_id": np.repeat(ids, 2), "step": np.tile([0, 1], len(ids)),
                          "train_loss": 1.0, "test_loss": 2.0})
        if stem.startswith("g1"):
            c["sharpness"] = [3.0, 4.0]  # a metric only this group logs
        store.write_table(c, run / "parts" / f"{stem}.curves.parquet")
    return run


def test_parts_with_extra_column_are_unified(tmp_path):
    run = _fake_run(tmp_path)
    s = lrsweep.load(run, table="students").sort_values("student_id").reset_index(drop=True)
    assert s["student_id"].tolist() == [0, 1, 2]
    assert s["lr_2"].isna().tolist() == [True, True, False] and s.loc[2, "lr_2"] == 0.5
    assert s["family"].isna().tolist() == [True, True, False] and s.loc[2, "family"] == "relu"
    assert s["diverged_step"].isna().tolist() == [True, False, True] and s.loc[1, "diverged_step"] == 1
    c = lrsweep.load(run)
    assert len(c) == 6 and c.loc[c["student_id"] == 2, "lr_2"].eq(0.5).all()
    assert c.loc[c["student_id"] < 2, "family"].isna().all()
    # the same holds after merging the parts into the final tables
    store.merge_parts(run)
    assert not (run / "parts").exists()
    merged = lrsweep.load(run, table="students")
    assert merged["group_id"].tolist() == [0, 0, 1]  # the folder's, back as an int64 column
    pd.testing.assert_frame_equal(merged.reset_index(drop=True), s)
    assert set(store.done_student_ids(run).tolist()) == {0, 1, 2}
    # a curves column of one group survives the merge (null elsewhere): the schema follows the data
    # (plain pq.read_table(run / "curves") takes the first file's schema: store.dataset unifies them all)
    curves = store.dataset(run, "curves").to_table().to_pandas()
    assert curves["group_id"].tolist() == [0, 0, 0, 0, 1, 1]
    pd.testing.assert_frame_equal(lrsweep.load(run, columns=list(curves.columns)).sort_values(["student_id", "step"])
                                  .reset_index(drop=True)[list(curves.columns)], curves)
    assert curves.loc[curves["student_id"] == 2, "sharpness"].tolist() == [3.0, 4.0]
    assert curves.loc[curves["student_id"] < 2, "sharpness"].isna().all()
    assert curves["step"].dtype == np.int64 and curves["train_loss"].dtype == np.float64


def test_read_table_promotes_types(tmp_path):
    f1, f2 = tmp_path / "a.parquet", tmp_path / "b.parquet"
    pq.write_table(pa.table({"x": pa.array([1, 2], pa.int64())}), f1)
    pq.write_table(pa.table({"x": pa.array([0.5], pa.float64()), "y": ["s"]}), f2)
    df = store.read_table([f1, f2])
    assert df["x"].tolist() == [1.0, 2.0, 0.5]
    assert df["y"].isna().tolist() == [True, True, False] and df["y"].iloc[2] == "s"
    assert store.read_table([]).empty


def test_done_student_ids_reads_parts(tmp_path):
    run = _fake_run(tmp_path)
    assert sorted(store.done_student_ids(run).tolist()) == [0, 1, 2]
    assert store.done_student_ids(tmp_path).size == 0


def test_write_table_fixes_known_types(tmp_path):
    df = pd.DataFrame({"student_id": np.array([0, 1], np.int32), "width": [4.0, 8.0], "other": [1, 2]})
    store.write_table(df, tmp_path / "t.parquet")
    schema = pq.read_schema(tmp_path / "t.parquet")
    assert schema.field("student_id").type == pa.int64()
    assert schema.field("width").type == pa.int64()
    assert schema.field("other").type == pa.int64()


# --------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------

def test_write_table_atomic_success(tmp_path):
    df = pd.DataFrame({"student_id": [0, 1, 2], "train_loss": [0.5, 0.25, np.nan]})
    target = tmp_path / "sub" / "t.parquet"
    store.write_table(df, target)
    assert [p.name for p in target.parent.iterdir()] == ["t.parquet"]  # no temp file left
    back = pq.read_table(target).to_pandas()
    np.testing.assert_array_equal(back["train_loss"].to_numpy(), df["train_loss"].to_numpy())
    assert back["student_id"].tolist() == [0, 1, 2]


def _failing_writer(calls):
    def write_table(table, where, *args, **kwargs):
        calls.append(str(where))
        with open(where, "wb") as fh:  # half a file, then the "crash"
            fh.write(b"PAR1 partial")
        raise OSError("disk full (simulated)")
    return write_table


def test_write_table_failure_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(pq, "write_table", _failing_writer(calls))
    target = tmp_path / "t.parquet"
    with pytest.raises(OSError, match="simulated"):
        store.write_table(pd.DataFrame({"a": [1]}), target)
    assert calls and calls[0] != str(target)  # it wrote to a temporary name
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_write_table_failure_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "t.parquet"
    store.write_table(pd.DataFrame({"a": [1, 2]}), target)
    monkeypatch.setattr(pq, "write_table", _failing_writer([]))
    with pytest.raises(OSError):
        store.write_table(pd.DataFrame({"a": [3]}), target)
    monkeypatch.undo()
    assert pq.read_table(target).to_pandas()["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_write_json_and_yaml_atomic(tmp_path):
    store.write_json({"status": "complete", "x": np.float64(1.5)}, tmp_path / "m.json")
    assert json.loads((tmp_path / "m.json").read_text()) == {"status": "complete", "x": 1.5}
    store.write_yaml({"name": "s", "grid": {"lr": [1, 2]}}, tmp_path / "c.yaml")
    assert yaml.safe_load((tmp_path / "c.yaml").read_text()) == {"name": "s", "grid": {"lr": [1, 2]}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml", "m.json"]


# --------------------------------------------------------------------------------------
# Partitioned results: merged without reading the curves, crash-safe, read in parts
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_group_parts(tmp_path_factory):
    """A run of two shape groups stopped before its merge (its parts as training left them)."""
    out = tmp_path_factory.mktemp("parts")
    cfg = {"name": "pg", "seeds": [0, 1], "task": {"input_dim": 6, "n_train": 6},
           "model": {"n_layers": 2, "activation": "relu"}, "train": {"steps": 3},
           "grid": {"model.width": [3, 4], "lr": [0.1, 0.2, 0.3]}}
    real = store.merge_parts
    store.merge_parts = lambda *a, **k: {}  # the run ends with its parts in place
    try:
        summary = runner.run(lrsweep.load_config(cfg), out, run_id="r", progress=False, chunk_size=4)
    finally:
        store.merge_parts = real
    return summary.run_dir


def test_merge_links_curves_into_group_partitions_without_reading_them(tmp_path, two_group_parts, monkeypatch):
    run = tmp_path / "r"
    shutil.copytree(two_group_parts, run)
    before = lrsweep.load(run).sort_values(["student_id", "step"]).reset_index(drop=True)
    inodes = {p.name.split(".")[0]: p.stat().st_ino for p in (run / "parts").glob("*.curves.parquet")}
    read = []
    real_read = store.read_parquet
    monkeypatch.setattr(store, "read_parquet", lambda path, columns=None: read.append((Path(path).name, columns))
                        or real_read(path, columns))
    counts = store.merge_parts(run, np.arange(12), 12 * 4)
    assert counts == {"students": 12, "curves": 48}
    assert not any(name.endswith(".curves.parquet") for name, _ in read), read  # curves: footers only
    files = sorted((run / "curves").rglob("*.parquet"))
    assert {f.parent.name for f in files} == {"group_id=0", "group_id=1"}
    assert {f.stem: f.stat().st_ino for f in files} == inodes  # the same bytes: hard links, no copy
    after = lrsweep.load(run).sort_values(["student_id", "step"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(after[before.columns], before)
    # a group's partition alone, and only some columns
    one = lrsweep.load(run, groups=[1], columns=["test_loss", "width"])
    assert set(one["width"]) == {4} and len(one) == 6 * 4
    assert list(one.columns) == ["run_id", "student_id", "step", "test_loss", "width"]
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"select group_id, count(*) from read_parquet('{run}/students/*/*.parquet', "
                     f"hive_partitioning=true) group by group_id order by group_id").fetchall()
    assert got == [(0, 6), (1, 6)]


def _sorted_curves(run):
    return lrsweep.load(run).sort_values(["student_id", "step"]).reset_index(drop=True)


def _replace_calls(run):
    """How many os.replace calls a clean merge of (a copy of) ``run`` makes."""
    calls, real = [], os.replace
    copy = run.parent / "count"
    shutil.copytree(run, copy)
    store.os.replace = lambda src, dst: calls.append(dst) or real(src, dst)
    try:
        store.merge_parts(copy, np.arange(12), 48)
    finally:
        store.os.replace = real
    shutil.rmtree(copy)
    return len(calls)


def test_a_merge_cut_short_anywhere_is_finished_by_the_next_with_each_student_once(tmp_path, two_group_parts,
                                                                                    monkeypatch):
    """A crash at every rename of the merge (into staging, the datasets into place, the parts away)
    leaves a run that reads the same, and a second merge completes it with every student once."""
    base = tmp_path / "base"
    shutil.copytree(two_group_parts, base)
    want = _sorted_curves(base)
    n = _replace_calls(base)
    assert n >= 4  # students files into staging, the two datasets, the parts (the commit)
    real_replace = os.replace
    for k in range(1, n + 1):
        run = tmp_path / f"r{k}"
        shutil.copytree(base, run)
        calls = []

        def crash_at_k(src, dst):
            calls.append(dst)
            if len(calls) == k:
                raise OSError("simulated crash")
            return real_replace(src, dst)

        monkeypatch.setattr(store.os, "replace", crash_at_k)
        with pytest.raises(OSError, match="simulated crash"):
            store.merge_parts(run, np.arange(12), 48)
        monkeypatch.setattr(store.os, "replace", real_replace)
        assert (run / "parts").is_dir(), k  # the commit is the last rename
        mid = _sorted_curves(run)  # while the parts exist they are the truth: nothing lost, nothing twice
        pd.testing.assert_frame_equal(mid[want.columns], want)
        assert sorted(store.done_student_ids(run).tolist()) == list(range(12)), k
        assert store.merge_parts(run, np.arange(12), 48) == {"students": 12, "curves": 48}
        assert not (run / "parts").exists() and not (run / ".merging").exists()
        assert not list(run.glob(".parts-merged-*")), k
        done = _sorted_curves(run)
        pd.testing.assert_frame_equal(done[want.columns], want)
        assert sorted(store.done_student_ids(run).tolist()) == list(range(12)), k
        assert sum(pq.ParquetFile(f).metadata.num_rows for f in (run / "curves").rglob("*.parquet")) == 48


def test_a_crash_after_the_commit_leaves_whole_datasets(tmp_path, two_group_parts, monkeypatch):
    """Killed while deleting the renamed parts: the datasets are whole, and the next merge of the run
    (``lrsweep merge`` again) removes the leftover."""
    run = tmp_path / "r"
    shutil.copytree(two_group_parts, run)
    want = _sorted_curves(run)
    real_rmtree = shutil.rmtree
    monkeypatch.setattr(store.shutil, "rmtree", lambda path, **k: (_ for _ in ()).throw(OSError("killed"))
                        if Path(path).name.startswith(".parts-merged-") else real_rmtree(path, **k))
    with pytest.raises(OSError, match="killed"):
        store.merge_parts(run, np.arange(12), 48)
    monkeypatch.setattr(store.shutil, "rmtree", real_rmtree)
    assert not (run / "parts").exists() and len(list(run.glob(".parts-merged-*"))) == 1
    pd.testing.assert_frame_equal(_sorted_curves(run)[want.columns], want)
    assert store.verify_complete(run, {"rows": {"students": 12, "curves": 48}}) is None
    (run / "parts").mkdir()  # a later merge (with nothing to add) clears the leftover
    store.merge_parts(run)
    assert not list(run.glob(".parts-merged-*"))


def _forbid_whole_reads(monkeypatch, pattern=".curves.parquet"):
    """Make every whole-file (or whole row group) Parquet read of a file whose name contains
    ``pattern`` fail; footers and batch iteration stay allowed. Returns the list of files refused."""
    refused = []

    def guard(source):
        if pattern in str(source):
            refused.append(str(source))
            raise AssertionError(f"read whole: {source}")

    real_read_table, real_pd_read, real_init = pq.read_table, pd.read_parquet, pq.ParquetFile.__init__
    monkeypatch.setattr(pq, "read_table", lambda source, *a, **k: guard(source) or real_read_table(source, *a, **k))
    monkeypatch.setattr(pd, "read_parquet", lambda source, *a, **k: guard(source) or real_pd_read(source, *a, **k))

    def init(self, source, *a, **k):
        self._lrsweep_source = source
        real_init(self, source, *a, **k)
    monkeypatch.setattr(pq.ParquetFile, "__init__", init)
    for name in ("read", "read_row_group", "read_row_groups"):
        real = getattr(pq.ParquetFile, name)
        monkeypatch.setattr(pq.ParquetFile, name,
                            lambda self, *a, _real=real, **k: guard(self._lrsweep_source) or _real(self, *a, **k))
    return refused


def test_merge_reads_no_curves_file_whole(tmp_path, two_group_parts, monkeypatch):
    run = tmp_path / "r"
    shutil.copytree(two_group_parts, run)
    want = _sorted_curves(run)
    refused = _forbid_whole_reads(monkeypatch)
    with pytest.raises(AssertionError, match="read whole"):  # the guard works
        pq.read_table(next((run / "parts").glob("*.curves.parquet")))
    refused.clear()
    assert store.merge_parts(run, np.arange(12), 48) == {"students": 12, "curves": 48}
    assert refused == []
    monkeypatch.undo()
    pd.testing.assert_frame_equal(_sorted_curves(run)[want.columns], want)


def test_students_in_two_chunks_keep_the_first_chunks_rows_rewritten_in_batches(tmp_path, two_group_parts,
                                                                               monkeypatch):
    """A later chunk (stem order) holding 2 students of an earlier chunk plus its own: the
    earlier chunk keeps its rows of the 2, the later one its own; only the later chunk's files are
    rewritten, a few rows at a time, never read whole."""
    run = tmp_path / "r"
    shutil.copytree(two_group_parts, run)
    want = _sorted_curves(run)
    parts = run / "parts"
    a, b = sorted(p.name.split(".")[0] for p in parts.glob("g0000-*.students.parquet"))[:2]
    dup = pq.read_table(parts / f"{a}.students.parquet").column("student_id").to_pylist()[:2]
    own = pq.read_table(parts / f"{b}.students.parquet").column("student_id").to_pylist()
    later = "g0000-zzzzzz-c999999"  # sorts after every chunk of the run
    for table in ("students", "curves"):
        t = pa.concat_tables([pq.read_table(parts / f"{b}.{table}.parquet"), pq.read_table(parts / f"{a}.{table}.parquet")
                              .filter(pc_isin(pq.read_table(parts / f"{a}.{table}.parquet"), dup))])
        if table == "curves":  # the later copy of the repeated students has other numbers
            loss = np.asarray(t.column("test_loss"), float) + np.isin(t.column("student_id").to_numpy(), dup) * 1e3
            t = t.set_column(t.column_names.index("test_loss"), "test_loss", pa.array(loss))
        pq.write_table(t, parts / f"{later}.{table}.parquet")
        (parts / f"{b}.{table}.parquet").unlink()
    inode_a = (parts / f"{a}.curves.parquet").stat().st_ino
    monkeypatch.setattr(store, "BATCH_ROWS", 3)
    writes = []
    real_write = pq.ParquetWriter.write_table
    monkeypatch.setattr(pq.ParquetWriter, "write_table", lambda self, t, *x, **k: writes.append(t.num_rows)
                        or real_write(self, t, *x, **k))
    refused = _forbid_whole_reads(monkeypatch)
    assert store.merge_parts(run, np.arange(12), 48) == {"students": 12, "curves": 48}
    assert refused == [] and writes and max(writes) <= 3
    monkeypatch.undo()
    got = _sorted_curves(run)
    pd.testing.assert_frame_equal(got[want.columns], want)  # the first copy's numbers, each student once
    kept = pq.read_table(run / "curves" / "group_id=0" / f"{later}.parquet").column("student_id").to_numpy()
    assert sorted(set(kept.tolist())) == own and len(kept) == len(own) * 4
    assert (run / "curves" / "group_id=0" / f"{a}.parquet").stat().st_ino == inode_a  # not rewritten


def pc_isin(table, ids):
    return pa.array(np.isin(table.column("student_id").to_numpy(), ids))


def test_duckdb_reads_the_curves_dataset_with_hive_partitioning(tmp_path, two_group_parts):
    duckdb = pytest.importorskip("duckdb")
    run = tmp_path / "r"
    shutil.copytree(two_group_parts, run)
    # the reference: every curves part read with plain pyarrow, before the merge
    parts = pa.concat_tables([pq.read_table(f) for f in sorted((run / "parts").glob("*.curves.parquet"))]).to_pandas()
    want = parts.groupby("step")["test_loss"].mean()
    store.merge_parts(run, np.arange(12), 48)
    got = duckdb.sql(f"select step, avg(test_loss) as m from read_parquet('{run}/curves/*/*.parquet', "
                     f"hive_partitioning=true) group by step order by step").df().set_index("step")["m"]
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12)
    assert got.index.tolist() == [0, 1, 2, 3]
    rows = duckdb.sql(f"select group_id, count(*) from read_parquet('{run}/curves/*/*.parquet', "
                      f"hive_partitioning=true) group by group_id order by group_id").fetchall()
    assert rows == [(0, 24), (1, 24)]
    kind = duckdb.sql(f"select typeof(group_id) from read_parquet('{run}/curves/*/*.parquet', "
                      f"hive_partitioning=true) limit 1").fetchall()[0][0]
    assert kind == "BIGINT"


def test_load_of_a_merged_run_equals_the_engine_run_in_memory(two_group_parts, tmp_path):
    """lrsweep.load of the partitioned run: students x logged steps rows, and each student's curve the
    engine's numbers for the same plan (chunks of 4), trained here in memory."""
    from lrsweep.core import engine
    run = tmp_path / "r"
    shutil.copytree(two_group_parts, run)
    store.merge_parts(run, np.arange(12), 48)
    got = lrsweep.load(run)
    assert len(got) == 12 * 4 and got.groupby("student_id").size().eq(4).all()
    assert got["group_id"].dtype == np.int64 and got["step"].tolist()[:4] == [0, 1, 2, 3]
    students, specs = runner.prepare(config.load_config(run / "config.yaml"))
    n = 0
    for gid, spec in specs.items():
        group = config.select_rows(students, students["group_id"].to_numpy() == gid)
        _, plan = engine.plan_chunks(spec, group, max_memory=1 << 30, dtype_bytes=4, chunk_size=4)
        fn = engine.make_chunk_fn(spec)
        for chunk in plan:
            res = engine.run_chunk(fn, chunk)
            for i, sid in enumerate(res["student_id"]):
                mine = got[got["student_id"] == sid].sort_values("step")
                assert (mine["group_id"] == gid).all()
                for name in ("train_loss", "test_loss"):  # float32: the same plan gives the same bits
                    np.testing.assert_allclose(mine[name].to_numpy(), res["curves"][name][i], rtol=1e-6)
                n += 1
    assert n == 12


# --------------------------------------------------------------------------------------
# compare reads curves one group at a time; checks read only the metrics they declare
# --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_width_run(tmp_path_factory):
    """Two shape groups (2 and 3 steps) of students the seed-000 theories cover."""
    cfg = {"name": "cw", "seeds": [0, 1, 2], "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
           "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 8}, "init": "orthogonal",
           "train": {"steps": 2}, "grid": {"train.steps": [2, 3], "lr_1": [0.5, 1.0], "lr_2": [0.5]}}
    return lrsweep.run(config.load_config(cfg), tmp_path_factory.mktemp("cw"), progress=False, run_id="r").run_dir


def test_compare_group_by_group_equals_all_at_once(two_width_run, monkeypatch):
    from lrsweep import compare
    loads = []
    real_load = store.load
    monkeypatch.setattr(store, "load", lambda *a, **k: loads.append((a[1:] or (k.get("table", "curves"),),
                                                                     k.get("groups"))) or real_load(*a, **k))
    table = compare.compare(two_width_run)
    curve_loads = [groups for table_, groups in loads if table_ == ("curves",)]
    assert curve_loads == [[0], [1]]  # one group's curves at a time
    monkeypatch.undo()
    whole = compare._compare_curves(store.load(two_width_run), None)
    assert not table.empty and set(table["steps"]) == {2, 3}
    # 2 groups x 2 rate points x the steps the theories predict (1 and 2)
    assert table.groupby("theory").size().eq(8).all() and set(table["step"]) == {1, 2}
    key = ["theory", "steps", "lr_1", "lr_2", "step"]
    pd.testing.assert_frame_equal(table.sort_values(key).reset_index(drop=True),
                                  whole.sort_values(key).reset_index(drop=True)[list(table.columns)])


def test_checks_get_only_the_curve_metrics_they_declare(two_width_run, monkeypatch):
    from lrsweep import compare
    seen = {}

    def spy(name):
        def check(students, curves):
            seen[name] = (set(curves.columns), len(curves))
            return pd.DataFrame(columns=list(registry.CHECK_COLUMNS))
        return check

    for name in list(registry.CHECKS):
        monkeypatch.delitem(registry.CHECKS, name)
    monkeypatch.setitem(registry.CHECKS, "declares", spy("declares"))
    monkeypatch.setitem(compare.CHECK_CURVE_COLUMNS, "declares", ("train_*",))
    compare.write_comparison(two_width_run, ["declares"])
    columns, rows = seen["declares"]
    assert rows == 6 * 3 + 6 * 4  # every curve row of the run: 6 students x 3 logged steps, 6 x 4
    assert {"run_id", "student_id", "step", "train_loss", "lr_1", "width", "group_id", "seed"} <= columns
    assert "test_loss" not in columns
    monkeypatch.setitem(registry.CHECKS, "all", spy("all"))  # one check declaring nothing: every metric
    compare.write_comparison(two_width_run, ["declares", "all"])
    assert {"test_loss", "train_loss"} <= seen["all"][0] and seen["all"][1] == 42
