"""Seed 003 Theorem 2: the exact (f, lambda) map of a one-hidden-layer linear network on degenerate data
(lrsweep.families.catapult.theorem2) and the checks catapult.theorem2_phase / catapult.theorem2_final_ntk.

References written plainly here in numpy float64: GD on the vectors u, v of f = v.u / sqrt(m) with the
two points x = 1, y = +1 and y = -1 and the per-sample losses exp(-y f), log(1 + exp(-y f)),
(f - y)^2 / 2 spelled out; the phase rule of lrsweep.core.metrics.PHASE written out.
"""
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import cli_main, numpy_instance, train_config
from lrsweep.core import store
from lrsweep.families.catapult import checks as cc
from lrsweep.families.catapult import theorem2 as t2
from lrsweep.families.catapult import theory as catapult

LOSSES = ("mse", "exponential", "logistic")


def per_sample_slope(loss, y, f):
    """d ell(f; y) / d f for one point."""
    if loss == "exponential":
        return -y * math.exp(-y * f)
    if loss == "logistic":  # -y sigmoid(-y f), without overflow
        z = y * f
        return -y / (1.0 + math.exp(z)) if z < 0 else -y * math.exp(-z) / (1.0 + math.exp(-z))
    return f - y


def per_sample(loss, y, f):
    if loss == "exponential":
        return math.exp(-y * f)
    if loss == "logistic":
        z = y * f
        return max(-z, 0.0) + math.log1p(math.exp(-abs(z)))
    return 0.5 * (f - y) ** 2


def plain_risk(loss, f):
    return 0.5 * (per_sample(loss, 1.0, f) + per_sample(loss, -1.0, f))


def plain_phase(losses, factor):
    l0 = losses[0]
    if any(not np.isfinite(x) or x > factor * max(l0, 1e-30) for x in losses):
        return "divergent"
    if max(losses) <= l0:
        return "lazy"
    return "catapult" if losses[-1] < l0 else "oscillating"


def vector_gd(u, v, eta, loss, steps, factor=np.inf):
    """GD on R = mean over (x = 1, y = +-1) of ell(y f), f = v.u / sqrt(m): losses and NTK eigenvalues."""
    m = len(u)
    losses, ntks = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            f = v @ u / math.sqrt(m)
            try:
                losses.append(plain_risk(loss, f))
            except OverflowError:
                losses.append(np.inf)
            ntks.append((u @ u + v @ v) / m)
            if not np.isfinite(losses[-1]) or losses[-1] > factor * losses[0]:
                break
            g = 0.5 * (per_sample_slope(loss, 1.0, f) + per_sample_slope(loss, -1.0, f))
            u, v = u - eta * g * v / math.sqrt(m), v - eta * g * u / math.sqrt(m)
    return np.array(losses), np.array(ntks)


def init(m, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return scale * rng.standard_normal(m), scale * rng.standard_normal(m)


# ---------------------------------------------------------------------------------------------
# The map against GD on the vectors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("scaled_rate", [0.5, 1.9, 2.1, 3.0, 9.0, 20.0])
def test_map_equals_gd_on_the_vectors(loss, seed, scaled_rate):
    """40 steps of the map from (L_0, lambda_0) vs GD on u, v: loss and lambda to 1e-9 relative."""
    m = 16
    u, v = init(m, seed, 0.5)
    lam0 = (u @ u + v @ v) / m
    eta = scaled_rate / lam0
    losses, ntks = vector_gd(u, v, eta, loss, 40, factor=1e6)
    traj = t2.network_trajectory(losses[0], lam0, eta, m, loss, 40, diverge_factor=1e6)
    n = len(losses) if len(losses) == 41 else len(losses) - 1  # the reference stops at the divergence step
    np.testing.assert_allclose(traj["train_loss"][:n], losses[:n], rtol=1e-9)
    np.testing.assert_allclose(traj["ntk_eig"][:n], ntks[:n], rtol=1e-9)
    assert np.isnan(traj["train_loss"][n:]).all()  # the engine's convention from the divergence step on


def test_mse_is_the_uv_map_operation_for_operation():
    rng = np.random.default_rng(0)
    f_sq, ntk, eta, m = rng.uniform(0, 3, 500), rng.uniform(0.1, 4, 500), rng.uniform(0.1, 3, 500), 16.0
    for a, b in zip(t2.network_step(f_sq, ntk, eta, m, "mse"), catapult.uv_step(f_sq, ntk, eta, m)):
        np.testing.assert_array_equal(a, b)
    loss0, lam0 = rng.uniform(0.01, 2, 40), rng.uniform(1, 3, 40)
    rates = rng.uniform(0.2, 5, 40) / lam0
    ours = t2.network_outcome(loss0, lam0, rates, m, "mse", 300, 1e6, kind="single_point")
    uv = catapult.uv_outcome(loss0, lam0, rates, m, 300, 1e6)
    np.testing.assert_array_equal(ours["phase"], uv["phase"])
    np.testing.assert_array_equal(ours["final_ntk_eig"], uv["final_ntk_eig"])


def test_gain_is_the_risk_slope_over_f_and_c_at_zero():
    """q(f) = R'(f) / f from central differences of the plainly written risk; q(0) = R''(0) = c."""
    h = 1e-5
    for loss in LOSSES:
        for f in (1e-2, 0.3, 2.0, 7.0):
            slope = (plain_risk(loss, f + h) - plain_risk(loss, f - h)) / (2 * h)
            np.testing.assert_allclose(t2.risk_gain(f * f, loss), slope / f, rtol=1e-6)
        np.testing.assert_allclose(t2.risk_gain(0.0, loss), catapult.HESSIAN_FACTOR[loss], rtol=1e-15)
        # the series below |f| = 1e-4 meets the closed form (above) without a jump
        np.testing.assert_allclose(t2.risk_gain(0.999e-4 ** 2, loss), t2.risk_gain(1.001e-4 ** 2, loss), rtol=1e-10)
    for loss in ("exponential", "logistic"):
        f = np.array([0.0, 1e-3, 0.5, 3.0])
        np.testing.assert_allclose(t2.network_risk(f * f, loss), [plain_risk(loss, x) for x in f], rtol=1e-14)
        np.testing.assert_allclose(t2.output_from_loss(t2.network_risk(f * f, loss), loss), f * f, atol=1e-12)


def test_the_papers_bounds_two_and_eight():
    """Seed 003 Theorem 2: eta lambda_final <= 2 (exponential), <= 8 (logistic)."""
    assert t2.final_ntk_bound("exponential") == 2.0 and t2.final_ntk_bound("logistic") == 8.0
    assert t2.final_ntk_bound("mse") == 2.0


@pytest.mark.parametrize("loss", ["exponential", "logistic"])
def test_converged_students_obey_the_bound_and_catapults_exist(loss):
    """GD on the vectors (no theory code): every run that ends at min R has eta lambda_final <= 2 / c, and
    some rate above the wide-limit lazy boundary 2 / (c lambda_0) is a catapult."""
    c = catapult.HESSIAN_FACTOR[loss]
    phases, worst = set(), 0.0
    for seed in range(4):
        u, v = init(16, seed, 0.5 if loss == "exponential" else 1.0)
        lam0 = (u @ u + v @ v) / 16
        for scaled in np.linspace(0.5, 3.0, 26) / c:
            losses, ntks = vector_gd(u, v, scaled / lam0, loss, 1500, 1e6)
            phase = plain_phase(losses, 1e6) if len(losses) == 1501 else "divergent"
            phases.add(phase)
            if phase != "divergent" and losses[-1] - plain_risk(loss, 0.0) < 1e-9:
                worst = max(worst, scaled / lam0 * ntks[-1] * c)
    assert {"lazy", "catapult"} <= phases
    assert worst <= 2.0 + 1e-9


@pytest.mark.parametrize("loss", LOSSES)
def test_first_rise_rate_is_where_the_loss_first_rises_at_step_one(loss):
    for seed in range(3):
        u, v = init(16, seed, 0.5)
        lam0, loss0 = (u @ u + v @ v) / 16, plain_risk(loss, v @ u / 4.0)
        edge = float(t2.first_rise_rate(loss0, lam0, 16, loss))
        below, _ = vector_gd(u, v, edge * (1 - 1e-6), loss, 1)
        above, _ = vector_gd(u, v, edge * (1 + 1e-6), loss, 1)
        assert below[1] <= below[0] < above[1], (loss, seed)


# ---------------------------------------------------------------------------------------------
# The engine (x64) follows the map step by step
# ---------------------------------------------------------------------------------------------

RATES = [0.3, 0.9, 1.02, 1.1, 1.5, 4.0, 6.0]  # lambda_0 ~ 2: lazy, catapult, divergent (exp); lazy, catapult (logistic)


def degenerate(steps=80, losses=("exponential", "logistic"), seeds=(0, 1, 2), rates=RATES, width=16, log_every=1):
    return {"name": "t2", "seeds": list(seeds),
            "task": {"kind": "classification", "data": "degenerate", "n_train": 2, "input_dim": 1},
            "model": {"parameterization": "ntk", "n_layers": 2, "width": width, "activation": "linear",
                      "output_dim": 1},
            "init": "gaussian", "train": {"steps": steps, "log_every": log_every,
                                          "metrics": ["loss_peak", "ntk_eig", "phase"]},
            "grid": {"train.loss": list(losses), "lr": list(rates)}}


def test_engine_follows_the_map_step_by_step(x64):
    students, results = train_config(degenerate())
    phases, checked = set(), 0
    for sid, res in results.items():
        row = students.set_index("student_id").loc[sid]
        eta, loss = float(row["lr_1"]), row["loss"]
        _, _, (w1, w2), _ = numpy_instance(students, sid)
        u, v = w1.ravel(), w2.ravel()
        losses, lam = np.asarray(res["train_loss"]), np.asarray(res["ntk_eig"])
        assert losses[0] == pytest.approx(plain_risk(loss, u @ v / 4.0), rel=1e-13)
        assert lam[0] == pytest.approx((u @ u + v @ v) / 16, rel=1e-13)
        alive = np.isfinite(losses) & np.isfinite(lam) & (losses < 1e30)
        t = np.flatnonzero(alive[:-1] & alive[1:])
        if len(t) == 0:  # diverged at step 1
            continue
        checked += 1
        f_sq = t2.output_from_loss(losses[t], loss)
        pred_f_sq, pred_lam = t2.network_step(f_sq, lam[t], eta, 16, loss)
        np.testing.assert_allclose(losses[t + 1], t2.network_risk(pred_f_sq, loss), rtol=1e-10)
        np.testing.assert_allclose(lam[t + 1], pred_lam, rtol=1e-10)
        phases.add((loss, str(res["phase"])))
    assert {("exponential", "lazy"), ("exponential", "catapult"), ("exponential", "divergent"),
            ("logistic", "lazy"), ("logistic", "catapult")} <= phases, phases
    assert checked >= len(results) - 6


# ---------------------------------------------------------------------------------------------
# The checks on an engine run (float32), through lrsweep compare
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def theorem2_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("theorem2")
    cfg = degenerate(steps=300, seeds=(0, 1), rates=[round(float(r), 4) for r in np.linspace(0.3, 6.0, 20)], log_every=100)
    path = tmp / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli_main(["run", path, "--out", tmp, "--quiet"])
    assert rc == 0, err
    return next(tmp.rglob("meta.json")).parent


def test_compare_writes_passing_theorem2_rows(theorem2_run):
    rc, out, err = cli_main(["compare", theorem2_run, "--theory", "catapult.theorem2_phase",
                             "--theory", "catapult.theorem2_final_ntk"])
    assert rc == 0, err
    checks = pd.read_parquet(theorem2_run / "checks.parquet")
    rows = checks[checks["check"].str.startswith("catapult.theorem2")]
    assert set(rows["check"]) == {"catapult.theorem2_phase", "catapult.theorem2_final_ntk"}
    assert set(rows["configuration"]) == {"loss=exponential", "loss=logistic"}
    assert rows["passed"].all(), rows.to_dict("records")
    students = store.load(theorem2_run, "students")
    seen = set(zip(students["loss"], students["phase"]))
    assert {("exponential", "catapult"), ("exponential", "divergent"), ("logistic", "catapult")} <= seen
    assert "converged students (max" in " ".join(rows["detail"])


def test_phase_check_fails_on_a_wrong_map(theorem2_run, monkeypatch):
    """Mutation: the map run at 1.3 eta predicts other phases; the check turns to fail."""
    students, curves = store.load(theorem2_run, "students"), store.load(theorem2_run)
    assert cc.check_theorem2_phase(students, curves)["passed"].all()
    right = t2.network_outcome
    monkeypatch.setattr(t2, "network_outcome", lambda loss0, ntk0, eta, *a, **k: right(loss0, ntk0, 1.3 * eta, *a, **k))
    rows = cc.check_theorem2_phase(students, curves)
    assert not rows["passed"].any() and "wrong" in " ".join(rows["detail"])


def test_final_ntk_check_fails_on_a_wrong_final_value_or_bound(theorem2_run, monkeypatch):
    students, curves = store.load(theorem2_run, "students"), store.load(theorem2_run)
    assert cc.check_theorem2_final_ntk(students, curves)["passed"].all()
    right = t2.network_outcome

    def shifted(*a, **k):
        out = dict(right(*a, **k))
        out["final_ntk_eig"] = out["final_ntk_eig"] * 1.01
        return out
    with monkeypatch.context() as patch:
        patch.setattr(t2, "network_outcome", shifted)
        rows = cc.check_theorem2_final_ntk(students, curves)
        assert not rows["passed"].any() and "off the map" in " ".join(rows["detail"])
    with monkeypatch.context() as patch:  # the paper's bound with the lambda / 4 factor dropped (logistic: 2)
        patch.setattr(t2, "final_ntk_bound", lambda loss: 2.0)
        rows = cc.check_theorem2_final_ntk(students, curves).set_index("configuration")
        assert rows.loc["loss=exponential", "passed"] and not rows.loc["loss=logistic", "passed"]
        assert "above the bound" in rows.loc["loss=logistic", "detail"]


def test_theorem2_checks_cover_only_their_students(theorem2_run):
    students, curves = store.load(theorem2_run, "students"), store.load(theorem2_run)
    for change in ({"activation": "relu"}, {"n_layers": 3}, {"input_dim": 2}, {"data": "separable"},
                   {"lr_2": 0.01}):
        assert cc.check_theorem2_phase(students.assign(**change), curves).empty, change
    assert cc.check_theorem2_phase(students, curves.drop(columns="ntk_eig")).empty
