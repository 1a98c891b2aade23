"""Seed 003 Proposition 1 and Table 1 (lrsweep.families.catapult.separation) and the checks
catapult.proposition1 / catapult.table1. References in plain numpy float64: the logistic risk, its
gradient and Hessian written out per sample; separability of points on a line by the signs of y x."""
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import cli_main
from lrsweep.core import store
from lrsweep.families.catapult import checks as cc
from lrsweep.families.catapult import separation

SEPARABLE = [[1.0, 0.5, 1], [2.0, -0.5, 1], [-1.0, -0.2, -1], [0.3, -1.5, -1]]
NONSEPARABLE = [[1.0, 1], [2.0, -1], [-1.0, 1], [0.5, 1]]  # example2 / example4 (the paper's data were lost)


def logistic_risk(w, x, y):
    return float(np.mean([math.log1p(math.exp(-yi * (w @ xi))) for xi, yi in zip(x, y)]))


def logistic_grad(w, x, y):
    return np.mean([-yi * xi / (1.0 + math.exp(yi * (w @ xi))) for xi, yi in zip(x, y)], axis=0)


def logistic_hessian(w, x, y):
    out = np.zeros((x.shape[1], x.shape[1]))
    for xi, yi in zip(x, y):
        s = 1.0 / (1.0 + math.exp(-yi * (w @ xi)))
        out += s * (1 - s) * np.outer(xi, xi)
    return out / len(x)


def test_separability_on_a_line_is_the_sign_of_y_x():
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = rng.standard_normal((5, 1))
        y = rng.choice([-1.0, 1.0], 5)
        plain = bool(np.all(y * x[:, 0] > 0) or np.all(y * x[:, 0] < 0))
        assert separation.is_separable(x, y) == plain
    assert separation.is_separable(*separation.parse_points(SEPARABLE))
    assert not separation.is_separable(*separation.parse_points(NONSEPARABLE))


def test_points_parse_from_the_stored_text():
    x, y = separation.parse_points("(1.0, 0.5, 1.0),(2.0, -0.5, 1.0)")
    np.testing.assert_array_equal(x, [[1.0, 0.5], [2.0, -0.5]])
    np.testing.assert_array_equal(y, [1.0, 1.0])


@pytest.mark.parametrize("points", [SEPARABLE, NONSEPARABLE])
def test_smoothness_bounds_every_hessian_and_is_attained_at_zero(points):
    x, y = separation.parse_points(points)
    big_l = separation.logistic_smoothness(x)
    np.testing.assert_allclose(np.linalg.eigvalsh(logistic_hessian(np.zeros(x.shape[1]), x, y))[-1], big_l,
                               rtol=1e-12)
    rng = np.random.default_rng(1)
    for _ in range(200):
        w = 3 * rng.standard_normal(x.shape[1])
        assert np.linalg.eigvalsh(logistic_hessian(w, x, y))[-1] <= big_l * (1 + 1e-12)
    assert math.isnan(separation.proposition1_rate(x, "exponential"))


@pytest.mark.parametrize("points", [SEPARABLE, NONSEPARABLE])
def test_gd_below_two_over_l_never_raises_the_risk(points):
    """Proposition 1 (logistic), GD in plain numpy from random starts at 0.99 (2 / L)."""
    x, y = separation.parse_points(points)
    eta = 0.99 * separation.proposition1_rate(x, "logistic")
    rng = np.random.default_rng(2)
    for _ in range(20):
        w = 2 * rng.standard_normal(x.shape[1])
        risks = [logistic_risk(w, x, y)]
        for _ in range(200):
            w = w - eta * logistic_grad(w, x, y)
            risks.append(logistic_risk(w, x, y))
        assert np.all(np.diff(risks) <= 1e-15)


# ---------------------------------------------------------------------------------------------
# The checks on engine runs, through lrsweep compare
# ---------------------------------------------------------------------------------------------

def points_config(points, layers, rates, width=16, steps=200):
    return {"name": "p1", "seeds": [0, 1],
            "task": {"kind": "classification", "data": "points", "points": points},
            "model": {"parameterization": "ntk", "activation": "linear", "width": width, "output_dim": 1},
            "init": "gaussian", "train": {"loss": "logistic", "steps": steps, "log_every": 1,
                                          "metrics": ["loss_peak", "phase", "ntk_eig"]},
            "grid": {"n_layers": layers, "lr": rates}}


def _run(tmp, cfg):
    path = tmp / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli_main(["run", path, "--out", tmp, "--quiet"])
    assert rc == 0, err
    return next(tmp.rglob("meta.json")).parent


@pytest.fixture(scope="module")
def separable_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("sep"), points_config(SEPARABLE, [1, 2], [0.5, 2.0, 5.0, 20.0, 60.0, 200.0]))


@pytest.fixture(scope="module")
def nonseparable_run(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("nonsep"), points_config(NONSEPARABLE, [1, 2], [0.5, 2.0, 5.0, 8.0, 12.0, 20.0]))


def test_compare_on_a_separable_logistic_run_writes_table1_and_proposition1(separable_run):
    rc, out, err = cli_main(["compare", separable_run])
    assert rc == 0, err
    checks = pd.read_parquet(separable_run / "checks.parquet")
    rows = checks[checks["check"].isin(["catapult.proposition1", "catapult.table1"])]
    assert set(rows["check"]) == {"catapult.proposition1", "catapult.table1"}
    assert rows["passed"].all(), rows.to_dict("records")
    assert "separable data, 2/L = 5.11799" in " ".join(rows["detail"])


def test_proposition1_check_on_nonseparable_data_and_its_mutation(nonseparable_run, monkeypatch):
    """Passes with the true 2 / L; with the rate claimed 10x larger, students whose loss rises are
    inside the claim and the check fails."""
    students, curves = store.load(nonseparable_run, "students"), store.load(nonseparable_run)
    rows = cc.check_proposition1(students, curves)
    assert len(rows) == 1 and rows["passed"].all() and "non-separable data" in rows["detail"].iloc[0]
    right = separation.proposition1_rate
    monkeypatch.setattr(separation, "proposition1_rate", lambda x, loss: 10 * right(x, loss))
    rows = cc.check_proposition1(students, curves)
    assert not rows["passed"].any() and "wrong" in rows["detail"].iloc[0]


def test_table1_check_fails_when_nonseparable_data_are_called_separable(nonseparable_run, separable_run, monkeypatch):
    """The one-hidden-layer network on the non-separable points does catapult to a flatter end (Example 4);
    a theory that calls these data separable (Table 1's cross where the paper has a tick) fails."""
    students, curves = store.load(nonseparable_run, "students"), store.load(nonseparable_run)
    assert cc.check_table1(students, curves).empty  # not separable: not covered
    monkeypatch.setattr(separation, "is_separable", lambda x, y: True)
    rows = cc.check_table1(students, curves)
    assert not rows["passed"].all() and "wrong" in " ".join(rows["detail"])
    students, curves = store.load(separable_run, "students"), store.load(separable_run)
    assert cc.check_table1(students, curves)["passed"].all()  # the true separable data still pass
