"""The classification task (lrsweep.core.tasks.classification) against its documented distribution."""
import numpy as np
import pytest

import reference
from conftest import numpy_instance, train_config
from lrsweep.core import config


def instance(task: dict, seed=0, width=4):
    """The float64 instance data of a classification config (one student)."""
    cfg = {"seeds": [seed], "task": {"kind": "classification", **task},
           "model": {"parameterization": "standard", "n_layers": 2, "width": width}, "init": "gaussian",
           "train": {"loss": "logistic"}, "grid": {"lr": 0.1}}
    return numpy_instance(config.expand_grid(config.load_config(cfg)), 0)[3]


def test_degenerate_is_one_feature_with_both_labels(x64):
    """Seed 003 Assumption 3: every point at e_1, labels +1 and -1 in equal numbers."""
    inst = instance({"data": "degenerate", "input_dim": 3, "n_train": 4})
    np.testing.assert_array_equal(inst["x"], [[1, 0, 0]] * 4)
    assert sorted(inst["y"][:, 0].tolist()) == [-1, -1, 1, 1]


@pytest.mark.parametrize("margin", [0.0, 0.5, 2.0])
def test_separable_data_have_the_margin(x64, margin):
    """Labels are +-1 and a unit direction w separates them with y (x . w) >= margin / 2; the inputs
    off that direction are standard Gaussian."""
    inst = instance({"data": "separable", "input_dim": 5, "n_train": 4000, "margin": margin})
    x, y, w = inst["x"], inst["y"][:, 0], inst["direction"]
    assert set(np.unique(y)) == {-1.0, 1.0}
    np.testing.assert_allclose(np.linalg.norm(w), 1.0, rtol=1e-12)
    assert (y * (x @ w)).min() >= margin / 2 - 1e-12
    off = x - np.outer(x @ w, w)  # the orthogonal complement: N(0, I - w w^T), trace 4
    se = np.sqrt(2 * 4 / len(x)) * 1.0  # std error of the mean squared norm / 4 (chi^2_4 / 4 has variance 1/2)
    assert abs(np.mean(np.sum(off ** 2, axis=1)) / 4 - 1.0) < 5 * se
    assert abs(np.mean(y)) < 5 / np.sqrt(len(y))  # balanced classes


def test_nonseparable_flips_exactly_the_fraction(x64):
    """round(flip_fraction n) labels disagree with sign(x . w); the rest agree (and keep the margin)."""
    inst = instance({"data": "nonseparable", "input_dim": 3, "n_train": 101, "margin": 1.0, "flip_fraction": 0.2})
    x, y, w = inst["x"], inst["y"][:, 0], inst["direction"]
    wrong = y * (x @ w) < 0
    assert wrong.sum() == round(0.2 * 101)
    # no linear separator through the origin exists: the flipped points sit on the wrong side of w by >= margin/2
    assert (np.abs(x @ w) >= 0.5 - 1e-12).all()


def test_points_are_the_given_rows(x64):
    rows = [[1.0, 2.0, 1.0], [-1.0, 0.5, -1.0], [0.0, -3.0, 1.0]]
    inst = instance({"data": "points", "points": rows})
    np.testing.assert_array_equal(inst["x"], np.asarray(rows)[:, :2])
    np.testing.assert_array_equal(inst["y"][:, 0], [1, -1, 1])
    np.testing.assert_array_equal(inst["x_test"], inst["x"])


def test_data_do_not_depend_on_the_learning_rate_points(x64):
    """A student's data depend only on its instance: two grids around it give the same data."""
    a = instance({"data": "nonseparable", "input_dim": 3, "n_train": 10}, seed=7)
    b = instance({"data": "nonseparable", "input_dim": 3, "n_train": 10}, seed=7)
    c = instance({"data": "nonseparable", "input_dim": 3, "n_train": 10}, seed=8)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])


def test_explicit_points_train_like_the_reference(x64):
    """Data built here by hand (not by lrsweep): a 2-layer ReLU student with the logistic loss."""
    rows = [[1.0, 0.0, 1.0], [0.5, 1.0, -1.0], [-1.0, 0.3, 1.0], [0.2, -0.7, -1.0]]
    cfg = {"seeds": [3], "task": {"kind": "classification", "data": "points", "points": rows},
           "model": {"parameterization": "standard", "n_layers": 2, "width": 3, "activation": "relu"},
           "init": "gaussian", "train": {"loss": "logistic", "steps": 5}, "grid": {"lr": [0.3, 3.0]}}
    students, res = train_config(cfg)
    x, y = np.asarray(rows)[:, :2], np.asarray(rows)[:, 2:]
    for sid, got in res.items():
        row = students.set_index("student_id").loc[sid]
        params0 = numpy_instance(students, sid)[2]  # the engine's initial weights (init tested elsewhere); not the data
        ref = reference.reference_train(params0, x, y, lrs=[row["lr_1"], row["lr_2"]], steps=5,
                                        parameterization="standard", activation="relu", loss="logistic",
                                        X_test=x, y_test=y)
        np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_error"], ref["test_error"], rtol=0, atol=1e-14)  # a mean of 0/1: exact up to the order of the sum


@pytest.mark.parametrize("task,field", [
    ({"data": "points"}, "task.points"),
    ({"data": "degenerate", "n_train": 5}, "task.n_train"),
    ({"data": "points", "points": [[1.0, 2.0, 0.5]]}, "task.points"),
    ({"data": "separable", "flip_fraction": 0.7}, "task.flip_fraction"),
    ({"data": "points", "points": [[1.0, 1.0]], "n_train": 3}, "task.points")])
def test_bad_classification_input(task, field):
    cfg = {"task": {"kind": "classification", **task}, "model": {"parameterization": "standard", "width": 4},
           "init": "gaussian", "train": {"loss": "logistic"}, "grid": {"lr": 0.1}}
    with pytest.raises(config.ConfigError) as err:
        from lrsweep.core import runner
        runner.prepare(config.load_config(cfg))
    assert err.value.field == field, str(err.value)


def test_two_outputs_rejected():
    cfg = {"task": {"kind": "classification"}, "model": {"parameterization": "standard", "output_dim": 2},
           "init": "gaussian", "train": {"loss": "logistic"}, "grid": {"lr": 0.1}}
    with pytest.raises(config.ConfigError, match="model.output_dim"):
        config.expand_grid(config.load_config(cfg))
