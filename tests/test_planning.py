"""Columnar planning: a grid's constant fields are one value each, never one Python object or one
array entry per student, so a million-student plan stays small (a memory bound, not a timing)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

import lrsweep
from lrsweep import config, runner

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
