"""Columnar planning: a grid's constant fields are one value each, never one Python object or one
array entry per student, so a million-student plan stays small (a memory bound, not a timing)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from lrsweep.core import columns as columns_lib
import pytest
import pandas as pd
import yaml

import lrsweep
from lrsweep.core import config
from lrsweep.core import runner

BIG = {"name": "big", "seeds": {"range": [0, 999, 1]},
       "task": {"kind": "linear_teacher", "input_dim": 8, "n_train": 16},
       "model": {"n_layers": 2, "width": 8, "activation": "linear"},
       "train": {"optimizer": "gd", "steps": 10, "log_every": 5},
       "grid": {"lr": {"geomspace": [0.001, 1.0, 1000]}}}

CHILD = """
import contextlib, io, json, sys
from lrsweep.cli import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    rc = main(["run", sys.argv[1], "--dry-run"])
# VmHWM: this process's peak RSS (ru_maxrss would include the forking parent's before exec)
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rc": rc, "out": buf.getvalue(), "maxrss_kb": hwm}))
"""


def test_a_million_student_plan_stays_small(tmp_path):
    """1000 seeds x 1000 rates planned with --dry-run in a fresh process under 600 MB peak (about 230 MB
    of it is importing jax and pandas; one float64 column of 10^6 rows is 8 MB). Before the columnar
    plan every one of the ~66 config fields was a full column and the same plan took 1.0 GB."""
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(BIG))
    env = {**os.environ, "PYTHONPATH": str(Path(lrsweep.__file__).parent.parent), "LRSWEEP_CACHE_DIR": "off"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["rc"] == 0 and "big: 1000000 students in 1 shape group(s)" in got["out"]
    assert got["maxrss_kb"] < 600 * 1024, got["maxrss_kb"]


def test_constant_fields_are_one_value_and_stored_as_before(tmp_path):
    """In the plan a field the grid does not vary is a broadcast view (no memory per student); the
    stored students table still has every field as a column with the config's value, typed as before."""
    cfg = {"name": "plan", "seeds": [0, 1], "task": {"input_dim": 4, "n_train": 6},
           "model": {"n_layers": 2, "width": 3, "activation": "relu"}, "init": "gaussian",
           "train": {"steps": 2}, "grid": {"model.width": [3, 4], "lr": [0.1, 0.2]}}
    students, specs = runner.prepare(config.load_config(cfg))
    arrays = {c: students[c].array for c in students}
    constant = {c for c, a in arrays.items()
                if isinstance(a, pd.arrays.NumpyExtensionArray) and a.to_numpy().strides == (0,)}
    assert {"init", "activation", "input_dim", "n_train", "steps", "noise_std"} <= constant
    assert not {"student_id", "seed", "width", "lr_1"} & constant
    summary = runner.run(config.load_config(cfg), tmp_path, progress=False, run_id="r")
    stored = lrsweep.load(summary.run_dir, table="students").sort_values("student_id")
    assert len(stored) == 8 and (stored["init"] == "gaussian").all() and (stored["activation"] == "relu").all()
    assert (stored["input_dim"] == 4).all() and stored["input_dim"].dtype == np.int64
    assert (stored["n_train"] == 6).all() and (stored["noise_std"] == 0.0).all()
    assert stored["init"].dtype in (object, "string", "str") or pd.api.types.is_string_dtype(stored["init"])
    # the Cartesian product seeds x width x lr, the last axis fastest
    np.testing.assert_array_equal(stored["seed"], [0, 0, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(stored["width"], [3, 3, 4, 4, 3, 3, 4, 4])
    np.testing.assert_array_equal(stored["lr_1"], [0.1, 0.2] * 4)


# --------------------------------------------------------------------------------------
# The stored students table: every field, the config's constants, the grid's product
# --------------------------------------------------------------------------------------

SMALL = {"seeds": [0, 1], "task": {"input_dim": 4, "n_train": 6}, "init": "gaussian"}
STORED = {
    # four shape groups: width x activation
    "multi-group": {**SMALL, "name": "groups", "model": {"n_layers": 2, "width": 3}, "train": {"steps": 2},
                    "grid": {"model.width": [3, 4], "model.activation": ["linear", "relu"], "lr": [0.1, 0.2]}},
    # traced schedule axes; batch_end null is the batch size
    "schedule": {**SMALL, "name": "sched", "model": {"n_layers": 2, "width": 3},
                 "train": {"steps": 3, "optimizer": "sgd", "batch_size": 4, "batch_schedule": "ramp",
                           "schedule": "wsd", "stable_fraction": 0.5, "log_steps": [1, 2]},
                 "grid": {"schedule_exponent": [1.0, 2.0], "batch_start": [1.0, 2.0], "lr": [0.1]}},
    # seed 002 ratios: lr_ratio .inf is the best-response head
    "ratio": {**SMALL, "name": "ratio", "model": {"parameterization": "standard", "n_layers": 2, "width": 3},
              "train": {"steps": 2}, "grid": {"lr_body": [0.1, 0.2], "lr_ratio": [2.0, float("inf")]}},
}
DERIVED = {"target_std", "batch_end", "head", "update", "head_steps", "mode", "formulation", "name"}
KIND_DTYPES = {"int": "int64", "float": "float64", "bool": "bool"}


def _product(cfg) -> list[dict]:
    """The grid's points in row order (last axis fastest), written out plainly."""
    import itertools
    return [{n: v for (names, _), entry in zip(cfg.axes, combo) for n, v in zip(names, entry)}
            for combo in itertools.product(*[values for _, values in cfg.axes])]


@pytest.mark.parametrize("case", sorted(STORED))
def test_stored_students_keep_every_field_and_the_grid(tmp_path, case):
    """The plan keeps constant fields once; the STORED table has every config field that applies to a
    student (a field left out declares when it applies, and is on no axis), constants equal to the
    config's values with their kind's dtype, and the axis values in the order of the grid's Cartesian
    product."""
    cfg = config.load_config(STORED[case])
    summary = runner.run(cfg, tmp_path, progress=False, run_id="r")
    stored = lrsweep.load(summary.run_dir, table="students").sort_values("student_id").reset_index(drop=True)
    points = _product(cfg)
    assert len(stored) == len(points) and list(stored["student_id"]) == list(range(len(points)))
    on_axis = {n for names, values in cfg.axes for n in names}
    for path, field in config.FIELDS.items():
        col = path.split(".")[-1]
        if col not in stored:  # it applies to no student of the grid (Field.applies)
            assert field.applies is not None and path not in on_axis and col not in on_axis, col
            continue
        if path in on_axis or col in on_axis or col in DERIVED:
            continue
        value = cfg.base[path]
        if field.value_type in KIND_DTYPES and value is not None:
            assert str(stored[col].dtype) == KIND_DTYPES[field.value_type], (col, stored[col].dtype)
            assert (stored[col] == value).all(), (col, value)
        elif field.value_type == "str":
            assert pd.api.types.is_string_dtype(stored[col]) and (stored[col] == value).all(), col
        else:  # null, or a list stored as text: one value for the whole grid
            assert stored[col].nunique(dropna=False) == 1, col
    for name in on_axis:
        want = np.array([p[name] for p in points])
        got = stored[name if name in stored else name.split(".")[-1]] if name != "lr" else stored["lr_1"]
        np.testing.assert_array_equal(got.to_numpy(), want, err_msg=name)
    # one group per combination of the static fields (a best-response head is its own group)
    static = stored[[c for c in config.static_columns() if c in stored]].apply(lambda row: repr(tuple(row)), axis=1)
    assert static.groupby(stored["group_id"]).nunique().eq(1).all()
    assert stored["group_id"].nunique() == static.nunique() == {"multi-group": 4, "schedule": 1, "ratio": 2}[case]
    if case == "schedule":
        assert (stored["batch_end"] == 4.0).all() and (stored["log_steps"] == "1,2").all()
    if case == "ratio":
        best = np.isinf(stored["lr_ratio"].to_numpy())
        assert list(stored["head"][best].unique()) == ["best_response"] and list(stored["head"][~best].unique()) == ["gd"]
        np.testing.assert_allclose(stored["lr_2"][~best], 2.0 * stored["lr_body"][~best], rtol=1e-12)
        assert np.isinf(stored["lr_2"][best]).all() and (stored["lr_1"] == stored["lr_body"]).all()


# --------------------------------------------------------------------------------------
# Columnar row keys: group ids and the distinct-students check
# --------------------------------------------------------------------------------------

def test_row_codes_match_plain_tuples():
    """Rows equal in every column share a code, numbered by first appearance; NaN equals NaN, None is a
    value; a constant (broadcast) column changes nothing; many wide columns (a key past 2^62) stay exact."""
    rng = np.random.default_rng(0)
    n = 500
    floats = rng.choice([0.5, 1.0, np.nan], n)
    ints = rng.integers(0, 3, n)
    objs = np.array([None, "a", (1, 2)], dtype=object)[rng.integers(0, 3, n)]
    const = np.broadcast_to(np.float64(7.0), (n,))
    wide = [rng.integers(0, 10 ** 6, n) // 10 ** 5 * 10 ** 5 + i for i in range(6)]  # 10 values each, 6 columns
    for columns in ([floats, ints, objs, const], [const], [ints] + wide, wide * 4):  # 10^24 keys: compressed
        rows = [tuple("nan" if isinstance(v, float) and np.isnan(v) else v for v in row) for row in zip(*columns)]
        first = {}
        want = np.array([first.setdefault(r, len(first)) for r in rows])
        codes, count = columns_lib.row_codes(columns)
        np.testing.assert_array_equal(codes, want)
        assert count == len(first)


@pytest.mark.parametrize("n_seeds, rates", [(3, [0.1, 0.2, 0.1]), (4, [0.3, 0.2, 0.1])])
def test_first_duplicate_is_the_first_repeat(n_seeds, rates):
    """The first row equal to an earlier one, and that row (a repeated rate in every seed), or None."""
    seed = np.repeat(np.arange(n_seeds), len(rates))
    lr = np.tile(rates, n_seeds)
    rows = list(zip(seed.tolist(), lr.tolist()))
    second = next((i for i, r in enumerate(rows) if r in rows[:i]), None)
    want = None if second is None else (rows.index(rows[second]), second)
    assert config._first_duplicate([seed, lr], len(rows)) == want


def test_long_run_plans_memory_by_logged_steps_not_steps():
    """train.log_steps {geomspace: [1, T, k]}: a student's chunk memory grows with the logged steps, not
    with T: 10^4 steps logged at 20 points need no more than 20 steps logged at every step."""
    from lrsweep.core.chunking import bytes_per_student
    def per_student(steps, log):
        cfg = {"task": {"input_dim": 8, "n_train": 16}, "model": {"n_layers": 2, "width": 8},
               "train": {"steps": steps, **log}, "grid": {"lr": [0.1]}}
        students, specs = runner.prepare(config.load_config(cfg))
        return bytes_per_student(specs[0], 4), specs[0]
    long, spec = per_student(10 ** 4, {"log_steps": {"geomspace": [1, 10 ** 4, 20]}})
    short, _ = per_student(20, {"log_every": 1})
    assert spec.formulation == "moments" and len(spec.log_steps) <= 22 and spec.log_steps[-1] == 10 ** 4
    assert long <= short
    dense, _ = per_student(10 ** 4, {"log_every": 1})
    assert dense > long + 4 * 2 * 9000  # a dense curve: two elements per logged step more


CHUNK_CASES = {
    **STORED,
    # list-valued fields (metrics, log_steps, points) and a None field, constant over the grid
    "lists": {"name": "lists", "seeds": [0, 1, 2], "task": {"kind": "classification", "data": "points",
              "points": [[1.0, 0.0, 1], [0.0, 1.0, -1]]}, "model": {"n_layers": 2, "width": 2},
              "init": "gaussian", "train": {"steps": 4, "log_steps": [1, 3], "metrics": ["weight_norm"],
                                            "loss": "logistic"}, "grid": {"lr": [0.1, 0.2]}},
    # a list-valued axis: log_steps varies per student
    "list-axis": {**SMALL, "name": "la", "model": {"n_layers": 2, "width": 3}, "train": {"steps": 4},
                  "grid": {"train.log_steps": [[1], [2, 3]], "lr": [0.1]}},
}


@pytest.mark.parametrize("case", sorted(CHUNK_CASES))
def test_chunk_students_part_is_the_plan_rows_as_text(case):
    """A chunk's students part (constants converted once) equals the plan's rows converted row by row
    (store.lists_as_text of the rows): same columns, dtypes and values, for any subset of students."""
    from lrsweep.core import store
    students, _ = runner.prepare(config.load_config(CHUNK_CASES[case]))
    for ids in (np.arange(len(students)), np.arange(1, len(students), 2), np.array([len(students) - 1])):
        want = store.lists_as_text(students.iloc[ids].reset_index(drop=True))
        pd.testing.assert_frame_equal(runner.chunk_students(students, ids), want)
