"""What a run stores per student (issue: stored columns): the grid axes under the names the user wrote
(an ``lr`` axis is a column ``lr``), every field that varies, and only the fields that apply to the
student; aliases come from the schema, so every grid-able field has its short name."""
import shutil
from pathlib import Path

import numpy as np

import lrsweep
from lrsweep.core import config
from conftest import cli_main

OLD_RUN = Path(__file__).parent.parent / "data" / "v010_quickstart"  # written by lrsweep 0.1.0

BASE = {"name": "cols", "seeds": [0], "task": {"input_dim": 4, "n_train": 8},
        "model": {"parameterization": "standard", "n_layers": 2, "width": 4}, "init": "gaussian",
        "train": {"steps": 3}, "grid": {"lr": [0.01, 0.02]}}


def run(cfg: dict, tmp_path) -> Path:
    summary = lrsweep.run(config.load_config(cfg), tmp_path, progress=False)
    return summary.run_dir


def test_every_grid_able_field_has_its_short_name():
    aliases = config.aliases()
    for path, field in config.FIELDS.items():
        if field.axis and "." in path:
            assert aliases[path.split(".")[-1]] == path, path


def test_newton_steps_is_a_grid_axis_by_its_short_name():
    """Before: ``grid: {newton_steps: [2, 4]}`` exited 2 (an alias kept by hand missed it)."""
    newton = {"task": {"kind": "classification", "input_dim": 4, "n_train": 8},  # where Newton steps are read
              "train": {"steps": 3, "loss": "logistic", "head": "best_response", "head_ridge": 0.1}}
    cfg = config.load_config({**BASE, **newton, "grid": {"lr": [0.01], "newton_steps": [2, 4]}})
    students = config.expand_grid(cfg)
    assert list(students["newton_steps"]) == [2, 4]


def test_a_uniform_lr_axis_is_stored_as_lr(tmp_path):
    students = lrsweep.load(run(BASE, tmp_path), table="students").sort_values("student_id")
    assert list(students["lr"]) == [0.01, 0.02]
    assert np.array_equal(students["lr"], students["lr_1"]) and np.array_equal(students["lr"], students["lr_2"])


def test_plain_gd_stores_no_momentum_batch_or_head_columns(tmp_path):
    columns = set(lrsweep.load(run(BASE, tmp_path), table="students").columns)
    absent = {"momentum", "momentum_schedule", "batch_size", "batch_schedule", "batch_start", "batch_end",
              "batch_array", "head", "update", "head_steps", "head_ridge", "newton_steps", "sketch_dim",
              "schedule_exponent", "stable_fraction", "a", "b", "label", "margin", "flip_fraction"}
    assert not absent & columns
    assert {"lr", "lr_1", "lr_2", "width", "n_layers", "optimizer", "schedule", "seed"} <= columns


def test_fields_that_apply_are_stored(tmp_path):
    """Momentum SGD stores beta and the batch; a head with a best-response twin stores the head rule."""
    sgd = {**BASE, "train": {"steps": 3, "optimizer": "momentum", "batch_size": 4, "momentum": 0.5}}
    columns = set(lrsweep.load(run(sgd, tmp_path / "sgd"), table="students").columns)
    assert {"momentum", "batch_size", "batch_schedule"} <= columns
    head = {**BASE, "grid": {"lr_body": [0.01], "lr_ratio": [1.0, float("inf")]}}
    students = lrsweep.load(run(head, tmp_path / "head"), table="students")
    assert set(students["head"]) == {"gd", "best_response"}


def test_an_axis_is_stored_even_where_its_field_does_not_apply(tmp_path):
    cfg = {**BASE, "grid": {"lr": [0.01], "momentum": [0.5, 0.9]}}
    students = lrsweep.load(run(cfg, tmp_path), table="students")
    assert sorted(students["momentum"]) == [0.5, 0.9]


def test_a_run_of_version_0_1_0_loads_compares_and_plots(tmp_path):
    shutil.copytree(OLD_RUN, tmp_path / "v010_quickstart")
    old = next((tmp_path / "v010_quickstart").iterdir())
    assert len(lrsweep.load(old, table="students")) == 28  # 7 splits x 2 gradients x 2 seeds
    rc, out, err = cli_main(["compare", old])
    assert rc == 0 and "layer_balancing.three_layer: 14 exact points" in out, err
    rc, out, err = cli_main(["plot", old, "--dense", "0"])
    assert rc == 0 and "wrote" in out, err
