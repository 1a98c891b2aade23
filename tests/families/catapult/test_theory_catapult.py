"""Tests of lrsweep.families.catapult.theory (seed 003 / Lewkowycz et al. 2020) and its checks.

References are written plainly here in numpy float64: the uv model as GD on the vectors u, v; the
linear predictor as GD on the scalar w with the gradient of (ell(w) + ell(-w)) / 2 spelled out from
the per-sample loss; the phase from the definitions of lrsweep.core.metrics.PHASE. Tolerances: 1e-12
where both sides are the same recursion in a different arithmetic order over a few steps; 1e-9 for
bisections (stopped at 1e-14 relative width); looser ones are stated where used.
"""
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import cli_main
from lrsweep import compare
from lrsweep.core import store
from lrsweep.families.catapult import theory as catapult
from lrsweep.families.catapult import checks as cc
from lrsweep import registry


# ---------------------------------------------------------------------------------------------
# Plain references
# ---------------------------------------------------------------------------------------------

def plain_phase(losses, diverge_factor):
    """lrsweep.core.metrics.PHASE on a loss sequence L_0..L_T, with the divergence rule written out."""
    l0 = losses[0]
    for loss in losses:
        if not np.isfinite(loss) or loss > diverge_factor * max(l0, 1e-30):
            return "divergent"
    if max(losses) <= l0:
        return "lazy"
    return "catapult" if losses[-1] < l0 else "oscillating"


def uv_init(m, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(m), rng.standard_normal(m)


def uv_gd(u, v, eta, steps, diverge_factor=np.inf):
    """GD on L = (v.u / sqrt(m))^2 / 2, both layers at rate eta: losses, NTK eigenvalues (|u|^2 + |v|^2)/m,
    and the final (u, v); stops after the divergence rule fires (the rest of the losses are inf)."""
    m = len(u)
    losses, ntks = [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(steps + 1):
            f = v @ u / math.sqrt(m)
            losses.append(0.5 * f * f)
            ntks.append((u @ u + v @ v) / m)
            if not np.isfinite(losses[-1]) or losses[-1] > diverge_factor * max(losses[0], 1e-30):
                losses += [np.inf] * (steps - t)
                break
            if t < steps:
                u, v = u - eta * f * v / math.sqrt(m), v - eta * f * u / math.sqrt(m)
    return np.array(losses), np.array(ntks), (u, v)


def per_sample(loss, margin):
    return math.exp(-margin) if loss == "exponential" else math.log1p(math.exp(-margin))


def per_sample_slope(loss, margin):
    """d ell / d margin."""
    return -math.exp(-margin) if loss == "exponential" else -1.0 / (1.0 + math.exp(margin))


def linear_gd(w0, eta, loss, steps):
    """GD on the risk of labels +1, -1 at x = 1: R(w) = (ell(w) + ell(-w)) / 2, R' = (ell'(w) - ell'(-w)) / 2."""
    w, losses = w0, []
    for t in range(steps + 1):
        try:
            losses.append(0.5 * (per_sample(loss, w) + per_sample(loss, -w)))
        except OverflowError:
            losses.append(np.inf)
        if not np.isfinite(losses[-1]):
            losses += [np.inf] * (steps - t)
            break
        w = w - eta * 0.5 * (per_sample_slope(loss, w) - per_sample_slope(loss, -w))
    return np.array(losses), w


def bisect(is_high, lo, hi, rtol=1e-14):
    while hi - lo > rtol * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if is_high(mid) else (mid, hi)
    return 0.5 * (lo + hi)


# ---------------------------------------------------------------------------------------------
# The uv model
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eta_lambda", [0.7, 1.9, 2.4, 3.0])
def test_uv_recursion_equals_gd_on_the_vectors(seed, eta_lambda):
    u, v = uv_init(16, seed)
    losses, ntks, _ = uv_gd(u, v, eta_lambda / ((u @ u + v @ v) / 16), 12)
    eta = eta_lambda / ntks[0]
    traj = catapult.uv_trajectory(losses[0], ntks[0], eta, 16, 12)
    # 12 steps of the same recursion: the catapult's growth (factor <= 9 per step) keeps round-off ~1e-13
    np.testing.assert_allclose(traj["train_loss"], losses, rtol=1e-11, atol=1e-14 * losses[0])
    np.testing.assert_allclose(traj["ntk_eig"], ntks, rtol=1e-12)
    out = catapult.uv_outcome(losses[0], ntks[0], eta, 16, 12)
    np.testing.assert_allclose(out["final_train_loss"], losses[-1], rtol=1e-11, atol=1e-14 * losses[0])
    np.testing.assert_allclose(out["final_ntk_eig"], ntks[-1], rtol=1e-12)


def test_uv_trajectory_applies_the_divergence_rule_like_the_engine():
    u, v = uv_init(16, 3)
    losses, ntks, _ = uv_gd(u, v, 5.0 / ((u @ u + v @ v) / 16), 30)
    traj = catapult.uv_trajectory(losses[0], ntks[0], 5.0 / ntks[0], 16, 30, diverge_factor=100.0)
    first = int(np.argmax(losses > 100.0 * losses[0]))
    assert first > 1
    assert np.isfinite(traj["train_loss"][:first]).all() and np.isnan(traj["train_loss"][first:]).all()
    out = catapult.uv_outcome(losses[0], ntks[0], 5.0 / ntks[0], 16, 30, 100.0)
    assert out["phase"] == "divergent" and out["diverged_step"] == first and np.isnan(out["final_train_loss"])


@pytest.mark.parametrize("seed", [0, 4])
def test_uv_phase_equals_the_phase_of_gd_on_the_vectors(seed):
    u, v = uv_init(16, seed)
    ntk0 = (u @ u + v @ v) / 16
    etas = np.linspace(0.13, 5.03, 50) / ntk0  # off eta lambda_0 = 2, 4 exactly (the boundaries)
    plain = [plain_phase(uv_gd(u, v, eta, 200, 1e6)[0], 1e6) for eta in etas]
    loss0 = 0.5 * (v @ u) ** 2 / 16
    assert list(catapult.uv_phase(loss0, ntk0, etas, 16, 200, 1e6)) == plain
    assert {"lazy", "catapult", "divergent"} <= set(plain)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_uv_lazy_boundary_is_where_gd_on_the_vectors_first_raises_the_loss(seed):
    """At m = 16: the largest eta whose loss never exceeds L_0 (200 steps), by bisection, is eta_-."""
    u, v = uv_init(16, seed)
    ntk0, loss0 = (u @ u + v @ v) / 16, 0.5 * (v @ u) ** 2 / 16
    rises = lambda eta: bool((uv_gd(u, v, eta, 200)[0][1:] > loss0).any())
    assert not rises(1.0 / ntk0) and rises(3.0 / ntk0)
    np.testing.assert_allclose(catapult.uv_lazy_boundary(loss0, ntk0, 16), bisect(rises, 1.0 / ntk0, 3.0 / ntk0),
                               rtol=1e-9)


@pytest.mark.parametrize("steps,factor,versus", [(100, 1e6, "equal"), (6, 1e6, "above"), (100, 3.0, "below")])
def test_uv_divergence_boundary_is_where_gd_on_the_vectors_diverges(steps, factor, versus):
    """At m = 16: bisection of "divergent" on the vector GD equals the scalar boundary. With enough
    steps and a generous rule it is 4 / lambda_0 itself; few steps push it up (blow-up takes time), a
    strict rule pulls it down (the catapult's peak counts as divergence)."""
    u, v = uv_init(16, 0)
    ntk0, loss0 = (u @ u + v @ v) / 16, 0.5 * (v @ u) ** 2 / 16
    divergent = lambda eta: plain_phase(uv_gd(u, v, eta, steps, factor)[0], factor) == "divergent"
    lo = float(catapult.uv_lazy_boundary(loss0, ntk0, 16))
    plain = bisect(divergent, lo, 6.0 / ntk0)
    got = float(catapult.uv_divergence_boundary(loss0, ntk0, 16, steps, factor))
    np.testing.assert_allclose(got, plain, rtol=1e-9)
    if versus == "equal":
        np.testing.assert_allclose(got, 4.0 / ntk0, rtol=1e-9)
    elif versus == "above":
        assert got > 4.0 / ntk0 * (1 + 1e-6)
    else:
        assert got < 4.0 / ntk0 * (1 - 1e-3)


@pytest.mark.parametrize("width", [16, 256, 4096, 65536])
def test_uv_boundaries_approach_the_wide_limits(width):
    """eta_- = (2 / lambda_0)(1 + 2 rho + 8 rho^2 + ...) -> 2 / lambda_0 (rho = f_0^2 / (m lambda_0^2));
    the divergence boundary is exactly 4 / lambda_0 at every width (unlimited rule, long run)."""
    u, v = uv_init(width, 7)
    ntk0, f_sq = (u @ u + v @ v) / width, (v @ u) ** 2 / width
    rho = f_sq / (width * ntk0 ** 2)
    lazy = float(catapult.uv_lazy_boundary(f_sq / 2, ntk0, width)) * ntk0 / 2
    assert abs(lazy - 1 - 2 * rho) <= 10 * rho ** 2
    assert abs(lazy - 1) <= 3 * rho and rho < 0.05
    np.testing.assert_allclose(catapult.uv_divergence_boundary(f_sq / 2, ntk0, width, 400, 1e300) * ntk0 / 4, 1.0,
                               rtol=1e-9)


def test_uv_strict_rule_records_wide_catapults_as_divergent():
    """At fixed diverge_factor the catapult's peak (L ~ m / eta^2) exceeds factor * L_0 once the width is
    large enough (x_0 < 4 / factor): the recorded boundary falls below 4 / lambda_0."""
    loss0, ntk0 = 0.5, 2.0
    narrow = catapult.uv_divergence_boundary(loss0, ntk0, 1e3, 400, 1e3)
    wide = catapult.uv_divergence_boundary(loss0, ntk0, 1e7, 400, 1e3)
    np.testing.assert_allclose(narrow, 2.0, rtol=1e-9)
    assert wide < 2.0 * 0.95


def test_uv_catapult_lands_below_two_over_eta():
    u, v = uv_init(16, 1)
    ntk0, loss0 = (u @ u + v @ v) / 16, 0.5 * (v @ u) ** 2 / 16
    etas = np.linspace(2.05, 3.95, 40) / ntk0
    out = catapult.uv_outcome(loss0, ntk0, etas, 16, 3000)
    landed = out["phase"] == "catapult"
    assert landed.sum() >= 30
    assert (out["final_ntk_eig"][landed] < 2.0 / etas[landed]).all()
    assert (out["final_ntk_eig"][landed] < ntk0).all()


def test_uv_scaled_map_is_the_recursion_in_scaled_variables():
    f_sq, ntk, eta, m = 0.3, 1.7, 1.4, 16.0
    x, y = catapult.uv_scaled_map(eta ** 2 * f_sq / m, eta * ntk)
    f_sq1, ntk1 = catapult.uv_step(f_sq, ntk, eta, m)
    np.testing.assert_allclose([x, y], [eta ** 2 * f_sq1 / m, eta * ntk1], rtol=1e-14)


def test_uv_loss_can_rise_late_above_the_upper_root():
    """The docstring's counterexample: no rise at step 1 (|1 - y + x| <= 1) but a rise later."""
    x, y = 3.23, 4.11
    assert abs(1 - y + x) <= 1 and y * y >= 4 * x
    xs = [x]
    for _ in range(50):
        x, y = catapult.uv_scaled_map(x, y)
        xs.append(x)
    assert max(xs[1:]) > xs[0]


# ---------------------------------------------------------------------------------------------
# Theorem 1: linear predictor on degenerate data
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss,w0,eta", [("exponential", 0.8, 0.5), ("exponential", 0.8, 1.9),
                                         ("logistic", 1.5, 3.0), ("logistic", 1.5, 9.0), ("logistic", 0.4, 12.0)])
def test_linear_map_equals_gd_on_w(loss, w0, eta):
    losses, _ = linear_gd(w0, eta, loss, 40)
    np.testing.assert_allclose(catapult.weight_from_loss(losses[0], loss), w0, rtol=1e-12)
    traj = catapult.linear_trajectory(losses[0], eta, loss, 40)
    finite = np.isfinite(losses)  # the engine logs NaN from the first non-finite loss on
    np.testing.assert_allclose(traj[finite], losses[finite], rtol=1e-12)
    assert np.isnan(traj[~finite]).all()
    out = catapult.linear_outcome(losses[0], eta, loss, 40, 1e6)
    assert out["phase"] == plain_phase(losses, 1e6)


@pytest.mark.parametrize("loss", ["exponential", "logistic"])
@pytest.mark.parametrize("w0", [0.05, 0.3, 1.0, 2.5])
def test_critical_rate_is_where_the_loss_first_exceeds_its_start(loss, w0):
    losses0 = linear_gd(w0, 0.0, loss, 0)[0][0]
    rises = lambda eta: bool((linear_gd(w0, eta, loss, 2000)[0][1:] > losses0).any())
    hi = 4.0 if loss == "exponential" else 40.0
    assert rises(hi) and not rises(0.5)
    np.testing.assert_allclose(catapult.critical_rate(w0, loss), bisect(rises, 0.5, hi), rtol=1e-9)


def test_critical_rates_limits_and_the_papers_eta_c_above_8():
    w = np.geomspace(1e-6, 50, 200)
    assert (catapult.critical_rate(w, "logistic") > 8).all()
    assert (np.diff(catapult.critical_rate(w, "logistic")) > 0).all()
    assert (catapult.critical_rate(w, "exponential") <= 2).all()
    np.testing.assert_allclose(catapult.critical_rate([0.0, 1e-9], "logistic"), 8.0, rtol=1e-12)
    np.testing.assert_allclose(catapult.critical_rate([0.0, 1e-9], "exponential"), 2.0, rtol=1e-12)


@pytest.mark.parametrize("w0", [0.5, 2.0, 4.0])
def test_theorem1_logistic_regions(w0):
    """eta < 8: to log 2, never rising; 8 < eta < eta_c: never above L_0, to the 2-cycle's L(w*) > log 2;
    eta > eta_c: above L_0 from step 1 on, to L(w*). 6000 steps: the cycle attracts at rate
    (1 - 2 w*/sinh w*)^2, slow for large w*; the last two losses bracket L(w*) within 1e-6."""
    eta_c = float(catapult.critical_rate(w0, "logistic"))
    risk = lambda w: 0.5 * (per_sample("logistic", w) + per_sample("logistic", -w))
    for eta in [7.5, 0.5 * (8 + eta_c), 1.3 * eta_c]:
        losses, _ = linear_gd(w0, eta, "logistic", 6000)
        w_star = float(catapult.two_cycle_weight(eta))
        region = catapult.theorem1_region(w0, eta, "logistic")
        if eta < 8:
            assert region == "converges" and w_star == 0.0
            assert (np.diff(losses) <= 1e-15).all() and abs(losses[-1] - math.log(2)) < 1e-12
        elif eta < eta_c:
            assert region == "two_cycle"
            assert losses.max() <= losses[0] and risk(w_star) > math.log(2) + 1e-3
            np.testing.assert_allclose(losses[-1], risk(w_star), rtol=1e-6)
        else:
            assert region == "saturates"
            assert (losses[1:] > losses[0]).all()
            np.testing.assert_allclose(losses[-1], risk(w_star), rtol=1e-6)
        np.testing.assert_allclose(4 * w_star / math.tanh(w_star / 2) if w_star else 8.0, max(eta, 8.0), rtol=1e-12)


def test_theorem1_logistic_loss_need_not_fall_monotonically_below_eta_c():
    """The docstring's correction to "never increases": w_0 = 3, eta = 9 < eta_c rises at some step
    (yet never above L_0)."""
    losses, _ = linear_gd(3.0, 9.0, "logistic", 200)
    assert 9.0 < catapult.critical_rate(3.0, "logistic")
    assert (np.diff(losses) > 1e-12).any() and losses.max() <= losses[0]


@pytest.mark.parametrize("w0", [0.3, 1.5])
def test_theorem1_exponential_regions(w0):
    eta_c = float(catapult.critical_rate(w0, "exponential"))
    below, _ = linear_gd(w0, 0.9 * eta_c, "exponential", 3000)
    assert (np.diff(below) <= 1e-15).all() and abs(below[-1] - 1.0) < 1e-12
    at, w = linear_gd(w0, eta_c, "exponential", 3)
    np.testing.assert_allclose(at, at[0], rtol=1e-12)
    above, _ = linear_gd(w0, 1.01 * eta_c, "exponential", 3000)
    assert (np.diff(above[np.isfinite(above)]) > 0).all() and not np.isfinite(above[-1])


def test_hessian_factor_is_the_second_derivative_of_the_degenerate_risk_at_its_minimum():
    h = 1e-4  # central difference: error ~ h^2 R'''' / 12 ~ 1e-9
    for loss in ("exponential", "logistic"):
        risk = lambda w: 0.5 * (per_sample(loss, w) + per_sample(loss, -w))
        second = (risk(h) - 2 * risk(0.0) + risk(-h)) / h ** 2
        np.testing.assert_allclose(catapult.HESSIAN_FACTOR[loss], second, rtol=1e-6)
        np.testing.assert_allclose(catapult.minimum_loss(loss), risk(0.0), rtol=1e-15)


def two_layer_gd(u, v, eta, loss, steps, diverge_factor=1e6):
    """GD on f = v.u / sqrt(m) (the one-hidden-layer linear ntk network of seed 003 eq. 3 on one input
    x = 1) with the risk rho(f): f^2 / 2 (mse, label 0) or (ell(f) + ell(-f)) / 2 (labels +1, -1).
    Returns (losses L_0.., the phase by plain_phase's rule, the NTK eigenvalue (|u|^2 + |v|^2) / m at
    the end)."""
    m = len(u)
    rho = (lambda f: 0.5 * f * f) if loss == "mse" else (lambda f: 0.5 * (per_sample(loss, f) + per_sample(loss, -f)))
    slope = (lambda f: f) if loss == "mse" else (lambda f: 0.5 * (per_sample_slope(loss, f) - per_sample_slope(loss, -f)))
    losses = []
    for _ in range(steps + 1):
        f = u @ v / math.sqrt(m)
        try:
            losses.append(rho(f))
        except OverflowError:
            losses.append(math.inf)
        if not math.isfinite(losses[-1]) or losses[-1] > diverge_factor * losses[0]:
            break
        a = eta * slope(f) / math.sqrt(m)
        u, v = u - a * v, v - a * u
    return np.array(losses), plain_phase(losses, diverge_factor), (u @ u + v @ v) / m


def two_layer_init(width, scale, seed):
    rng = np.random.default_rng(seed)
    u, v = scale * rng.standard_normal(width), scale * rng.standard_normal(width)
    return u, v, (u @ u + v @ v) / width


@pytest.mark.parametrize("loss", ["mse", "exponential", "logistic"])
def test_thresholds_against_plain_two_layer_gd(loss):
    """theory.thresholds: c = rho''(0) by central difference here (mse 1, exponential 1, logistic 1/4);
    from a small output (m = 4096, weights N(0, 0.05^2): f_0 ~ 3e-3, rho = f_0^2 / (m lambda_0^2) ~ 1e-4,
    m lambda_0^2 ~ 0.1) the loss stays lazy at 0.98 x 2/c over lambda_0 and rises at 1.02 x; at 1.3 x
    it catapults and lands with eta lambda_final <= 2/c."""
    h = 1e-4
    rho = (lambda f: 0.5 * f * f) if loss == "mse" else (lambda f: 0.5 * (per_sample(loss, f) + per_sample(loss, -f)))
    c = (rho(h) - 2 * rho(0.0) + rho(-h)) / h ** 2
    t = catapult.thresholds(loss)
    assert t.lazy == pytest.approx(2 / c, rel=1e-6) and t.final == pytest.approx(2 / c, rel=1e-6)
    assert {"mse": 2.0, "exponential": 2.0, "logistic": 8.0}[loss] == t.lazy  # seed 003: eta_c > 8 for logistic
    for seed in range(3):
        u, v, lam0 = two_layer_init(4096, 0.05, seed)
        losses, phase, _ = two_layer_gd(u, v, 0.98 * t.lazy / lam0, loss, 400)
        assert phase == "lazy" and (np.diff(losses) <= 1e-15 * losses[0]).all()
        assert two_layer_gd(u, v, 1.02 * t.lazy / lam0, loss, 1)[0][1] > losses[0]  # rises at step 1
        eta = 1.3 * t.lazy / lam0
        losses, phase, lam_final = two_layer_gd(u, v, eta, loss, 3000)
        assert phase == "catapult" and eta * lam_final <= t.final * (1 + 1e-9) and eta * lam_final < 1.3 * t.lazy


def test_only_mse_has_a_divergence_threshold():
    """mse: the uv model diverges above eta lambda_0 = 4 and not below (at every width). Exponential and
    logistic have no such constant: at one eta lambda_0 a small start (m = 4096, N(0, 0.05^2) weights:
    m lambda_0^2 ~ 0.1) and a large one (N(0, 1): m lambda_0^2 ~ 1.6e4) fall in different phases."""
    assert catapult.thresholds("mse").divergent == 4.0
    assert catapult.thresholds("exponential").divergent is None and catapult.thresholds("logistic").divergent is None
    for width, scale in ((4096, 0.05), (4096, 1.0)):
        u, v, lam0 = two_layer_init(width, scale, 0)
        assert two_layer_gd(u, v, 0.98 * 4 / lam0, "mse", 2000)[1] == "catapult"
        assert two_layer_gd(u, v, 1.02 * 4 / lam0, "mse", 2000)[1] == "divergent"
    narrow, wide = two_layer_init(4096, 0.05, 0), two_layer_init(4096, 1.0, 0)
    # exponential at eta lambda_0 = 3: the narrow network catapults, the wide one diverges
    assert two_layer_gd(narrow[0], narrow[1], 3 / narrow[2], "exponential", 2000)[1] == "catapult"
    assert two_layer_gd(wide[0], wide[1], 3 / wide[2], "exponential", 2000)[1] == "divergent"
    # logistic at eta lambda_0 = 20 (> 4/c = 16): the narrow one diverges, the wide one does not
    assert two_layer_gd(narrow[0], narrow[1], 20 / narrow[2], "logistic", 2000)[1] == "divergent"
    assert two_layer_gd(wide[0], wide[1], 20 / wide[2], "logistic", 2000)[1] != "divergent"


# ---------------------------------------------------------------------------------------------
# Checks on hand-made tables (the uv model; sharpness and ntk_eig are other helpers' metrics)
# ---------------------------------------------------------------------------------------------

def hessian_top(u, v):
    """Top eigenvalue of the Hessian of L = (v.u / sqrt(m))^2 / 2, by central differences of its gradient."""
    m, theta = len(u), np.concatenate([u, v])
    def grad(th):
        a, b = th[:m], th[m:]
        f = b @ a / math.sqrt(m)
        return np.concatenate([f * b, f * a]) / math.sqrt(m)
    eps = 1e-6
    cols = [(grad(theta + eps * e) - grad(theta - eps * e)) / (2 * eps) for e in np.eye(2 * m)]
    return float(np.linalg.eigvalsh(0.5 * (np.array(cols) + np.array(cols).T))[-1])


def uv_tables(eta_lambdas, seeds=(0, 1), m=16, steps=300, factor=1e6):
    """students / curves tables of uv-model runs, from GD on the vectors (as the engine would store them)."""
    students, curves = [], []
    sid = 0
    for seed in seeds:
        u, v = uv_init(m, seed)
        ntk0 = (u @ u + v @ v) / m
        for el in eta_lambdas:
            eta = el / ntk0
            losses, ntks, (uf, vf) = uv_gd(u, v, eta, steps, factor)
            phase = plain_phase(losses, factor)
            final = (losses[-1], ntks[-1], hessian_top(uf, vf)) if phase != "divergent" else (np.nan,) * 3
            students.append(dict(run_id="r", student_id=sid, seed=seed, kind="single_point", label=0.0, input_dim=1,
                                 n_train=1, parameterization="ntk", n_layers=2, width=m, output_dim=1,
                                 activation="linear", loss="mse", steps=steps, diverge_factor=factor, lr_1=eta,
                                 lr_2=eta, n_trainable=2, phase=phase, final_train_loss=final[0],
                                 final_ntk_eig=final[1], final_sharpness=final[2]))
            curves.append(dict(run_id="r", student_id=sid, step=0, train_loss=losses[0], ntk_eig=ntks[0]))
            sid += 1
    return pd.DataFrame(students), pd.DataFrame(curves)


def test_uv_phase_check_passes_on_gd_tables_and_fails_on_a_wrong_phase():
    students, curves = uv_tables(np.linspace(0.3, 4.6, 24))
    rows = cc.check_uv_phase(students, curves)
    assert len(rows) == 1 and rows["passed"].all() and rows["n"].sum() == 48, rows.to_dict("records")
    assert set(students["phase"]) >= {"lazy", "catapult", "divergent"}
    wrong = students.copy()
    far = wrong.index[(wrong["phase"] == "lazy") & (wrong["lr_1"] * curves["ntk_eig"] < 1.0)][0]
    wrong.loc[far, "phase"] = "catapult"
    rows = cc.check_uv_phase(wrong, curves)
    assert not rows["passed"].any() and "stored catapult, predicted lazy" in rows["detail"].iloc[0]


def test_uv_phase_check_excuses_a_mismatch_only_at_a_boundary():
    """A student at eta = eta_- (1 + 1e-7) recorded lazy (as float32 round-off may) passes; recorded
    catapult at 1.2 eta_- does not pass as lazy."""
    students, curves = uv_tables([0.5])
    loss0, ntk0 = curves["train_loss"].to_numpy(), curves["ntk_eig"].to_numpy()
    edge = catapult.uv_lazy_boundary(loss0, ntk0, 16)
    near = students.assign(lr_1=edge * (1 + 1e-7), lr_2=edge * (1 + 1e-7), phase="lazy")
    assert (catapult.uv_phase(loss0, ntk0, near["lr_1"], 16, 300, 1e6) == "catapult").all()
    rows = cc.check_uv_phase(near, curves)
    assert rows["passed"].all() and "within 0.0001 of a phase boundary" in rows["detail"].iloc[0]
    far = students.assign(lr_1=edge * 1.2, lr_2=edge * 1.2, phase="lazy")
    assert not cc.check_uv_phase(far, curves)["passed"].any()


def test_uv_phase_check_covers_only_uv_students():
    students, curves = uv_tables([0.5, 2.5])
    for change in ({"label": 1.0}, {"activation": "relu"}, {"lr_2": 0.1}, {"n_layers": 3}, {"loss": "logistic"}):
        assert cc.check_uv_phase(students.assign(**change), curves).empty, change
    assert cc.check_uv_phase(students.drop(columns="phase"), curves).empty
    assert cc.check_uv_phase(students, curves.drop(columns="ntk_eig")).empty


def test_corollary1_check_on_the_uv_model():
    """Over eta lambda_0 in (2, 3) the final NTK eigenvalue and sharpness fall with eta (check passes);
    over the whole catapult range (2, 4) they do not (the landing is chaotic): the check reports it."""
    students, curves = uv_tables(np.linspace(2.2, 3.0, 10), steps=1500)
    assert (students["phase"] == "catapult").all()
    np.testing.assert_allclose(students["final_sharpness"], students["final_ntk_eig"], rtol=1e-4)
    rows = cc.check_corollary1(students, curves)
    assert len(rows) == 2 and rows["passed"].all(), rows.to_dict("records")  # one row per seed
    assert set(rows["configuration"]) == {"seed=0, loss=mse", "seed=1, loss=mse"}

    whole, curves = uv_tables(np.linspace(2.2, 3.95, 24), steps=1500)
    rows = cc.check_corollary1(whole, curves)
    assert not rows["passed"].any() and rows["detail"].str.contains("final_ntk_eig rises").all()

    assert cc.check_hessian_ntk(students, curves)["passed"].all()
    flat = students.assign(final_sharpness=students["final_sharpness"] * 1.5)
    rows = cc.check_hessian_ntk(flat, curves)
    assert not rows["passed"].any() and rows["detail"].str.contains("sharpness = c ntk_eig on 0/").all()


def test_informal_statement_is_reported_without_failing_the_verdict():
    """Corollary 1's monotonicity (informal; false above eta lambda_0 ~ 3.1) is shown as DOES NOT HOLD
    and leaves the verdict ok; a strict check's failure fails it."""
    whole, curves = uv_tables(np.linspace(2.2, 3.95, 24), steps=1500)
    checks = compare.run_checks(whole, curves, ["catapult.corollary1", "catapult.hessian_ntk"])
    v = compare.verdict(pd.DataFrame(), checks)
    assert v.ok and "catapult.corollary1" in v.text and "DOES NOT HOLD" in v.text
    bad = compare.run_checks(whole.assign(final_sharpness=whole["final_sharpness"] * 1.5), curves,
                             ["catapult.hessian_ntk"])
    assert not compare.verdict(pd.DataFrame(), bad).ok


# ---------------------------------------------------------------------------------------------
# Against the engine: the linear predictor on degenerate data
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def degenerate_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("degenerate")
    cfg = {"name": "theorem1", "seeds": [0, 1, 2, 3],
           "task": {"kind": "classification", "data": "degenerate", "input_dim": 1, "n_train": 2},
           "model": {"parameterization": "standard", "n_layers": 1, "output_dim": 1},
           "init": "gaussian", "train": {"steps": 200, "log_every": 100, "metrics": ["phase"]},
           "grid": {"train.loss": ["exponential", "logistic"], "lr": {"geomspace": [0.3, 40, 29]}}}
    path = tmp / "t.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli_main(["run", path, "--out", tmp, "--quiet"])
    assert rc == 0, err
    return next(tmp.rglob("meta.json")).parent, out


def test_engine_phases_follow_theorem1(degenerate_run):
    run, out = degenerate_run
    students, curves = store.load(run, "students"), store.load(run)
    loss0 = curves[curves["step"] == 0].set_index("student_id")["train_loss"]
    seen = set()
    for row in students.itertuples():
        w0 = catapult.weight_from_loss(loss0[row.student_id], row.loss)
        eta_c = float(catapult.critical_rate(w0, row.loss))
        if abs(row.lr_1 / eta_c - 1) < 1e-3:
            continue
        region = str(catapult.theorem1_region(w0, row.lr_1, row.loss))
        assert row.phase in catapult.REGION_PHASES[region], (row.loss, row.lr_1, eta_c, row.phase)
        seen.add((row.loss, str(region), row.phase))
    assert {("exponential", "converges", "lazy"), ("exponential", "explodes", "divergent"),
            ("logistic", "converges", "lazy"), ("logistic", "two_cycle", "lazy"),
            ("logistic", "saturates", "oscillating")} <= seen
    assert "catapult.theorem1_phase: 2/2 configurations pass" in out


def test_theorem1_checks_pass_on_the_engine_and_fail_on_wrong_tables(degenerate_run):
    run, _ = degenerate_run
    students, curves = store.load(run, "students"), store.load(run)
    checks = compare.run_checks(students, curves)
    assert set(checks["check"]) == {"catapult.theorem1_phase", "catapult.theorem1_final_loss"}
    assert checks["passed"].all() and len(checks) == 4, checks.to_dict("records")
    assert set(checks["configuration"]) == {"loss=exponential", "loss=logistic"}

    lazy = students.index[(students["phase"] == "lazy") & (students["lr_1"] < 0.5)]
    wrong = students.copy()
    wrong.loc[lazy[0], "phase"] = "oscillating"
    rows = cc.check_theorem1_phase(wrong, curves)
    assert (~rows["passed"]).sum() == 1 and "stored oscillating, predicted lazy" in " ".join(rows["detail"])

    saturating = students.index[(students["loss"] == "logistic") & (students["phase"] == "oscillating")]
    wrong = students.copy()
    wrong.loc[saturating[0], "final_train_loss"] *= 1.001
    rows = cc.check_theorem1_final_loss(wrong, curves)
    assert (~rows["passed"]).sum() == 1 and "wrong" in " ".join(rows["detail"])


# ---------------------------------------------------------------------------------------------
# compare: checks are stored, shown and counted
# ---------------------------------------------------------------------------------------------

def test_checks_are_written_shown_and_fail_strict(degenerate_run, monkeypatch):
    run, _ = degenerate_run
    rc, out, err = cli_main(["compare", run, "--strict"])
    assert rc == 0, err
    assert "catapult.theorem1_final_loss: 2/2 configurations pass" in out
    stored = pd.read_parquet(run / "checks.parquet")
    assert list(stored.columns) == ["check", *registry.CHECK_COLUMNS] and stored["passed"].all()

    failing = lambda students, curves: pd.DataFrame(
        [{"configuration": "all", "n": len(students), "passed": False, "detail": "made to fail"}])
    monkeypatch.setitem(registry.CHECKS, "test.always_fails", failing)
    rc, out, _ = cli_main(["compare", run, "--strict"])
    assert rc == 1 and "test.always_fails: 0/1 configurations pass" in out and "made to fail" in out
    assert not pd.read_parquet(run / "checks.parquet")["passed"].all()
    rc, _, _ = cli_main(["compare", run])
    assert rc == 0
    rc, out, _ = cli_main(["compare", run, "--strict", "--theory", "catapult.theorem1_phase"])
    assert rc == 0 and "theorem1_phase" in out and "always_fails" not in out and "final_loss" not in out


def test_unknown_theory_name_is_one_line_and_exit_2(degenerate_run):
    run, _ = degenerate_run
    rc, out, err = cli_main(["compare", run, "--theory", "catapult.nope"])
    assert rc == 2 and err.count("\n") == 1
    assert "--theory" in err and "catapult.nope" in err and "catapult.theorem1_phase" in err


def test_theory_and_its_checks_import_no_jax():
    import subprocess
    import sys
    code = ("import sys, lrsweep.families.catapult.theory, lrsweep.families.catapult.checks; "
            "assert 'jax' not in sys.modules, 'jax imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-1000:]
