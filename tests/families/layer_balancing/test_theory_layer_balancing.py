"""Tests of lrsweep.families.layer_balancing.theory (seed 000, arXiv 2606.00340).

Monte Carlo references are written plainly in numpy float64: draw the paper's random objects, apply
the signal-only updates literally, average ||W_eff - beta||_F^2 over seeds. Tolerance: 3.5 standard
errors of the MC mean (all (eta_1, eta_2) pairs of a grid share the same draws). Exact algebraic
identities use rtol 1e-12 (float64 round-off of sums of ~10 terms of size <= 1e3).
"""
import warnings
from functools import partial

import numpy as np
import pytest

from lrsweep.families.layer_balancing.theories import THEORIES
from lrsweep.families.layer_balancing import theory as lb

N_SIGMA = 3.5


# ---------------------------------------------------------------------------------------------
# Plain Monte Carlo references
# ---------------------------------------------------------------------------------------------

def haar(rng, size, n):
    """(size, n, n) Haar-orthogonal matrices: QR of a Gaussian matrix with the sign fix."""
    q, r = np.linalg.qr(rng.standard_normal((size, n, n)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


def T(m):
    return np.swapaxes(m, -1, -2)


def mc_two_layer_orthogonal(h, etas, steps, target, n_samples, seed):
    """Per-draw test losses (n_samples, len(etas)); orthogonal W1, W2, X^T X = n I (so S = I)."""
    rng = np.random.default_rng(seed)
    W1, W2 = haar(rng, n_samples, h), haar(rng, n_samples, h)
    if target == "gaussian":
        beta = rng.standard_normal((n_samples, h, h)) / h           # std 1/d, d = h
    else:
        beta = haar(rng, n_samples, h) / np.sqrt(h)                 # Q / sqrt(d)
    out = []
    for e1, e2 in etas:
        A, B = W1, W2
        for _ in range(steps):
            A, B = A + (e1 / h) * beta @ T(B), B + (e2 / h) * T(A) @ beta
        out.append(((A @ B / h - beta) ** 2).sum((1, 2)))
    return np.stack(out, 1)


def mc_three_layer_orthogonal(h, etas, steps, n_samples, seed):
    rng = np.random.default_rng(seed)
    W1, W2 = haar(rng, n_samples, h), haar(rng, n_samples, h)
    a = rng.standard_normal((n_samples, h, 1)) / np.sqrt(h)
    beta = rng.standard_normal((n_samples, h, 1)) / np.sqrt(h)
    out = []
    for e1, e2 in etas:
        A, B = W1, W2
        for _ in range(steps):  # beta a^T B^T = beta (B a)^T and A^T beta a^T, as outer products
            A, B = (A + (e1 / np.sqrt(h)) * beta * T(B @ a),
                    B + (e2 / np.sqrt(h)) * (T(A) @ beta) * T(a))
        out.append(((A @ (B @ a) / np.sqrt(h) - beta) ** 2).sum((1, 2)))
    return np.stack(out, 1)


def mc_gaussian_init(n_layers, n, d, h, etas, n_samples, seed):
    """One signal-only step from Gaussian init with Gaussian design X ~ N(0,1)^{n x d}."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_samples, n, d))
    S = T(X) @ X / n
    W1 = rng.standard_normal((n_samples, d, h)) / np.sqrt(d)
    W2 = rng.standard_normal((n_samples, h, h)) / np.sqrt(h)
    out = []
    if n_layers == 2:
        beta = rng.standard_normal((n_samples, d, h)) / d
        for e1, e2 in etas:
            A = W1 + (e1 / h) * S @ beta @ T(W2)
            B = W2 + (e2 / h) * T(W1) @ S @ beta
            out.append(((A @ B / h - beta) ** 2).sum((1, 2)))
    else:
        a = rng.standard_normal((n_samples, h, 1)) / np.sqrt(h)
        beta = rng.standard_normal((n_samples, d, 1)) / np.sqrt(h)
        for e1, e2 in etas:
            A = W1 + (e1 / np.sqrt(h)) * S @ beta @ T(a) @ T(W2)
            B = W2 + (e2 / np.sqrt(h)) * T(W1) @ S @ beta @ T(a)
            out.append(((A @ B @ a / np.sqrt(h) - beta) ** 2).sum((1, 2)))
    return np.stack(out, 1)


def mean_se(losses):
    return losses.mean(0), losses.std(0, ddof=1) / np.sqrt(losses.shape[0])


def assert_within_se(mean, se, theory, label):
    z = (mean - theory) / se
    assert np.all(np.abs(z) < N_SIGMA), f"{label}: MC {mean} +- {se}, theory {theory}, z = {z}"


# Learning-rate grids (multiples of the paper's scales h^(3/2) and h^(2/3)); unbalanced pairs included.
GRID_2NN = [(0.5, 0.5), (0.9, 0.1), (0.2, 0.7), (1.0, 1.0)]
GRID_3NN = [(0.5, 0.5), (0.9, 0.1), (0.2, 0.7), (1.0, 1.0)]


def etas_for(grid, scale):
    return [(x * scale, y * scale) for x, y in grid]


# ---------------------------------------------------------------------------------------------
# Exact formulas vs Monte Carlo
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("h", [16, 32])
@pytest.mark.parametrize("steps", [1, 2])
@pytest.mark.parametrize("target", ["gaussian", "orthonormal"])
def test_two_layer_orthogonal_matches_monte_carlo(h, steps, target):
    etas = etas_for(GRID_2NN, h**1.5)
    mean, se = mean_se(mc_two_layer_orthogonal(h, etas, steps, target, 3000, seed=10 * h + steps))
    e1, e2 = np.array(etas).T
    theory = lb.two_layer_orthogonal_loss(e1, e2, h, steps, target)
    assert_within_se(mean, se, theory, f"2-NN h={h} steps={steps} target={target}")


@pytest.mark.parametrize("h", [16, 32])
@pytest.mark.parametrize("steps", [1, 2])
def test_three_layer_orthogonal_matches_monte_carlo(h, steps):
    etas = etas_for(GRID_3NN, 2 * h ** (2 / 3))
    n_samples = 20000 if h == 16 else 6000   # QR of many 32 x 32 matrices dominates the runtime
    mean, se = mean_se(mc_three_layer_orthogonal(h, etas, steps, n_samples, seed=20 * h + steps))
    e1, e2 = np.array(etas).T
    assert_within_se(mean, se, lb.three_layer_orthogonal_loss(e1, e2, h, steps), f"3-NN h={h} steps={steps}")


@pytest.mark.parametrize("n,d,h", [(16, 16, 16), (24, 12, 20)])
def test_two_layer_gaussian_init_matches_monte_carlo(n, d, h):
    etas = etas_for(GRID_2NN, 0.5 * h**1.5)
    mean, se = mean_se(mc_gaussian_init(2, n, d, h, etas, 6000, seed=n + d + h))
    e1, e2 = np.array(etas).T
    assert_within_se(mean, se, lb.two_layer_gaussian_init_loss(e1, e2, h, n, d), f"2-NN gauss ({n},{d},{h})")


@pytest.mark.parametrize("n,d,h", [(16, 16, 16), (24, 12, 20)])
def test_three_layer_gaussian_init_matches_monte_carlo(n, d, h):
    etas = etas_for(GRID_3NN, h ** (2 / 3))
    mean, se = mean_se(mc_gaussian_init(3, n, d, h, etas, 20000, seed=n * d + h))
    e1, e2 = np.array(etas).T
    assert_within_se(mean, se, lb.three_layer_gaussian_init_loss(e1, e2, h, n, d), f"3-NN gauss ({n},{d},{h})")


def test_monte_carlo_rejects_published_where_it_is_not_exact():
    """The MC above has the power to tell exact from published (so agreement is not vacuous)."""
    h = 16
    etas = etas_for(GRID_2NN, h**1.5)
    e1, e2 = np.array(etas).T
    mean, se = mean_se(mc_two_layer_orthogonal(h, etas, 2, "gaussian", 3000, seed=7))
    z_pub = (mean - lb.two_layer_two_step_published(e1, e2, h)) / se
    assert np.max(np.abs(z_pub)) > 10 * N_SIGMA
    # ... while for the authors' orthonormal target the published two-step formula is exact.
    mean, se = mean_se(mc_two_layer_orthogonal(h, etas, 2, "orthonormal", 3000, seed=7))
    assert_within_se(mean, se, lb.two_layer_two_step_published(e1, e2, h), "published 2-step, orthonormal target")
    # 3-NN: the published (leading-order) formulas are off by O(1/h) relative, visible at h = 16.
    etas = etas_for(GRID_3NN, 2 * h ** (2 / 3))
    e1, e2 = np.array(etas).T
    for steps in (1, 2):
        mean, se = mean_se(mc_three_layer_orthogonal(h, etas, steps, 20000, seed=8))
        z_pub = (mean - lb.three_layer_loss_published(e1, e2, h, steps)) / se
        assert np.max(np.abs(z_pub)) > 2 * N_SIGMA, (steps, z_pub)


# ---------------------------------------------------------------------------------------------
# Exact minus published: exactly the identified terms
# ---------------------------------------------------------------------------------------------

RNG_POINTS = np.random.default_rng(0)
H_PTS = np.array([3.0, 16.0, 100.0, 1000.0])[:, None]
U1, U2 = RNG_POINTS.uniform(0, 2, (2, 1, 7))


def test_two_layer_exact_minus_published_one_step():
    e1, e2 = U1 * H_PTS**1.5, U2 * H_PTS**1.5
    h, q = H_PTS, e1 * e2
    pub = lb.two_layer_one_step_published(e1, e2, h)
    np.testing.assert_allclose(lb.two_layer_orthogonal_loss(e1, e2, h, 1, "orthonormal") - pub,
                               2 * q / h**5, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(lb.two_layer_orthogonal_loss(e1, e2, h, 1, "gaussian") - pub,
                               2 * q / h**5 + 2 * q**2 / h**9, rtol=1e-9, atol=1e-15)


def test_two_layer_exact_minus_published_two_steps():
    e1, e2 = U1 * H_PTS**1.5, U2 * H_PTS**1.5
    h, p, q = H_PTS, e1 + e2, e1 * e2
    pub = lb.two_layer_two_step_published(e1, e2, h)
    np.testing.assert_allclose(lb.two_layer_orthogonal_loss(e1, e2, h, 2, "orthonormal"), pub, rtol=1e-12)
    diff = (p**2 * (8 * q / h**7 + 8 * q / h**8 + 16 * q**2 / h**10 + 24 * q**2 / h**11 + 16 * q**2 / h**12)
            - p * (4 * q / h**5 + 4 * q / h**6)
            + q**4 * (3 / h**13 + 4 / h**14 + 37 / h**15 + 40 / h**16 + 20 / h**17)
            + q**3 * (4 / h**10 + 36 / h**11 + 80 / h**12 + 48 / h**13)
            + q**2 * (2 / h**7 + 18 / h**8 + 56 / h**9))
    np.testing.assert_allclose(lb.two_layer_orthogonal_loss(e1, e2, h, 2, "gaussian") - pub, diff,
                               rtol=1e-9, atol=1e-12)


def test_three_layer_exact_minus_published():
    e1, e2 = U1 * H_PTS ** (2 / 3), U2 * H_PTS ** (2 / 3)
    h, p, q = H_PTS, e1 + e2, e1 * e2
    d1 = 2 * p**2 / h**3 + 2 * q * (h + 2) / h**4 + 4 * q**2 * (2 * h**2 + 5 * h + 4) / h**7
    np.testing.assert_allclose(lb.three_layer_orthogonal_loss(e1, e2, h, 1)
                               - lb.three_layer_one_step_published(e1, e2, h), d1, rtol=1e-9, atol=1e-13)
    d2 = (-16 * p * q * (h + 1) / h**4 + 4 * q * (h + 5) / h**4
          + 4 * q**2 * (h + 37) * (2 * h**2 + 5 * h + 4) / h**7
          + 8 * p**2 * (h**6 + 8 * h**5 * q + 9 * h**4 * q**2 + 20 * h**4 * q + 62 * h**3 * q**2 + 16 * h**3 * q
                        + 204 * h**2 * q**2 + 320 * h * q**2 + 192 * q**2) / h**9
          + 24 * q**3 * (9 * h**4 + 62 * h**3 + 204 * h**2 + 320 * h + 192) / h**10
          + 8 * q**4 * (4 * h**6 + 53 * h**5 + 376 * h**4 + 1538 * h**3 + 3616 * h**2 + 4512 * h + 2304) / h**13)
    np.testing.assert_allclose(lb.three_layer_orthogonal_loss(e1, e2, h, 2)
                               - lb.three_layer_two_step_published(e1, e2, h), d2, rtol=1e-8, atol=1e-13)


@pytest.mark.parametrize("steps", [1, 2])
def test_three_layer_published_is_leading_order(steps):
    """At eta ~ h^(2/3) the gap exact - published shrinks like 1/h (the loss itself is O(1) there)."""
    hs = np.array([1e2, 1e3, 1e4, 1e5])
    e1, e2 = 0.8 * hs ** (2 / 3), 0.5 * hs ** (2 / 3)
    gap = np.abs(lb.three_layer_orthogonal_loss(e1, e2, hs, steps) - lb.three_layer_loss_published(e1, e2, hs, steps))
    assert np.all(np.diff(np.log10(gap)) < -0.9), gap
    assert gap[-1] < 1e-3


def test_init_loss_and_gaussian_init_reduces_at_zero_rate():
    for h in (7.0, 64.0):
        for fn in (lb.two_layer_orthogonal_loss, lb.three_layer_orthogonal_loss):
            for steps in (1, 2):
                assert fn(0.0, 0.0, h, steps) == pytest.approx(1 + 1 / h, rel=1e-14)
    # Gaussian init, general (n, d, h): only the init term survives at eta = 0.
    assert lb.two_layer_gaussian_init_loss(0.0, 0.0, 20, 30, 10) == pytest.approx(20 / 10 + 1 / 20)
    assert lb.three_layer_gaussian_init_loss(0.0, 0.0, 20, 30, 10) == pytest.approx(11 / 20)


# ---------------------------------------------------------------------------------------------
# Local-optimality criteria
# ---------------------------------------------------------------------------------------------

def test_balanced_curvature_matches_closed_form():
    """Published one-step 2-NN: L = const + q^2/h^7 on the line, q = C^2/4 - t^2 => L'' = -C^2/h^7."""
    C, h = np.array([10.0, 3e4, 6e4]), np.array([16.0, 1000.0, 1000.0])
    d1, d2 = lb.balanced_curvature(lb.two_layer_one_step_published, C, h)
    np.testing.assert_allclose(d2, -(C**2) / h**7, rtol=1e-6)
    assert np.all(np.abs(d1) < 1e-9 * np.abs(d2) * C)


@pytest.mark.parametrize("alpha", [1.05, 1.25, 1.4, 1.5])
def test_two_layer_full_criterion_is_the_published_curvature(alpha):
    """d2L/dt2 = -2 dL/dq = -8 h^(a-5) * two_layer_criterion(h, a, 'full') for the published 2-step loss."""
    h = np.array([20.0, 60.0, 200.0, 1000.0, 5000.0])
    _, d2 = lb.balanced_curvature(lb.two_layer_two_step_published, 2 * h**alpha, h)
    np.testing.assert_allclose(d2, -8 * h ** (alpha - 5) * lb.two_layer_criterion(h, alpha, "full"), rtol=1e-6)


@pytest.mark.parametrize("alpha", [0.3, 0.5, 0.6])
def test_three_layer_criterion_with_34_is_the_published_curvature(alpha):
    h = np.array([10.0, 100.0, 1000.0, 1e4])
    _, d2 = lb.balanced_curvature(lb.three_layer_two_step_published, 2 * h**alpha, h)
    np.testing.assert_allclose(d2, -2 * h ** (alpha - 2) * lb.three_layer_criterion(h, alpha, coef=34), rtol=1e-6)


def test_two_layer_critical_width():
    a = np.array([1.1, 1.25, 1.4, 1.5])
    hstar = lb.two_layer_critical_width(a)
    np.testing.assert_allclose(lb.two_layer_criterion(hstar, a), 0, atol=1e-10)
    assert np.all(np.diff(hstar) > 0)
    assert hstar[-1] == pytest.approx(74.1, abs=0.1)            # eq. (85) alone at a = 3/2 ...
    assert lb.two_layer_critical_width(1.5, form="full") == pytest.approx(257.0, abs=0.05)  # ... vs h > 256
    with pytest.raises(ValueError):
        lb.two_layer_critical_width(1.6)


TWO_LAYER_EXACT = {t: {s: partial(lb.two_layer_orthogonal_loss, steps=s, target=t) for s in (1, 2)}
                   for t in lb.TWO_LAYER_TARGETS}


@pytest.mark.parametrize("h, expected_two_step", [(100, False), (1000, True)])
@pytest.mark.parametrize("target", lb.TWO_LAYER_TARGETS)
def test_two_layer_paper_claims_h100_h1000(h, expected_two_step, target):
    """Paper (Fig. 1/13, Cor. 5.4), eta = h^(3/2): at h = 1000 balanced is not a local min after one step
    but is after two; at h = 100 it is not. The exact formulas (both targets) agree."""
    C = 2 * h**1.5
    assert not lb.balanced_is_local_min(TWO_LAYER_EXACT[target][1], C, h)
    assert lb.balanced_is_local_min(TWO_LAYER_EXACT[target][2], C, h) == expected_two_step
    assert not lb.two_layer_balanced_is_local_min(h, 1.5, steps=1)
    assert lb.two_layer_balanced_is_local_min(h, 1.5, steps=2) == expected_two_step
    assert lb.two_layer_balanced_is_local_min(h, 1.5, steps=2, rule="full") == expected_two_step


@pytest.mark.parametrize("alpha", [1.1, 1.25, 1.4, 1.5])
def test_two_layer_paper_rule_is_sufficient_for_exact_formulas(alpha):
    """Where the paper's rule h > max(h*, 256) says "local min", the exact two-step losses agree."""
    h = np.array([400.0, 1000.0, 3000.0, 2e4])
    assert np.all(lb.two_layer_balanced_is_local_min(h, alpha, 2))
    for target in lb.TWO_LAYER_TARGETS:
        assert np.all(lb.balanced_is_local_min(TWO_LAYER_EXACT[target][2], 2 * h**alpha, h)), target
        assert not np.any(lb.balanced_is_local_min(TWO_LAYER_EXACT[target][1], 2 * h**alpha, h)), target
    # The full criterion is exact for the orthonormal target, over a range of h that includes failures.
    hs = np.arange(5.0, 600.0)
    np.testing.assert_array_equal(lb.balanced_is_local_min(TWO_LAYER_EXACT["orthonormal"][2], 2 * hs**alpha, hs),
                                  lb.two_layer_balanced_is_local_min(hs, alpha, 2, rule="full"))


def test_two_layer_gaussian_target_threshold_differs_at_three_halves():
    """At alpha = 3/2 the exact Gaussian-target loss needs h >= 392 (orthonormal target: h >= 257)."""
    ok = lb.balanced_is_local_min(TWO_LAYER_EXACT["gaussian"][2], 2 * np.array([300.0, 391.0, 392.0]) ** 1.5,
                                  np.array([300.0, 391.0, 392.0]))
    np.testing.assert_array_equal(ok, [False, False, True])


@pytest.mark.parametrize("alpha, h, expected", [(0.5, 100, True), (0.5, 1000, True), (0.6, 100, False),
                                                (0.6, 1000, False), (0.6, 1e4, True), (0.3, 10, False)])
def test_three_layer_criterion_vs_exact(alpha, h, expected):
    C = 2 * h**alpha
    exact2 = partial(lb.three_layer_orthogonal_loss, steps=2)
    exact1 = partial(lb.three_layer_orthogonal_loss, steps=1)
    assert lb.three_layer_balanced_is_local_min(h, alpha, steps=2) == expected
    assert lb.balanced_is_local_min(exact2, C, h) == expected
    assert not lb.three_layer_balanced_is_local_min(h, alpha, steps=1)
    assert not lb.balanced_is_local_min(exact1, C, h)


def test_balanced_curvature_warns_when_unresolvable():
    with pytest.warns(RuntimeWarning):
        lb.balanced_curvature(lambda e1, e2, h: 1.0 + 1e-14 * (e1 - e2) ** 2 / (e1 + e2) ** 2, 10.0, 16.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lb.balanced_curvature(lambda e1, e2, h: 1.0 + 1e-6 * (e1 - e2) ** 2 / (e1 + e2) ** 2, 10.0, 16.0)


def test_unbalanced_gaussian_init_is_not_stationary():
    """With d != h the Gaussian-init loss is not symmetric, so the balanced point is not stationary."""
    fn = partial(lb.two_layer_gaussian_init_loss, n=40, d=20)
    d1, d2 = lb.balanced_curvature(fn, 50.0, 30.0)
    assert abs(d1) > 1e-3 * abs(d2) * 50
    assert not lb.balanced_is_local_min(fn, 50.0, 30.0)
    # ... while at n = d = h it is a (p, q) function and the first derivative vanishes.
    d1, _ = lb.balanced_curvature(lb.two_layer_gaussian_init_loss, 50.0, 30.0)
    assert abs(d1) < 1e-15


# ---------------------------------------------------------------------------------------------
# API: broadcasting, dispatch, registry
# ---------------------------------------------------------------------------------------------

def test_broadcasting_and_dtype():
    e1 = np.linspace(0, 100, 5)[:, None]
    out = lb.two_layer_loss(e1, 3.0, np.array([16, 32]), steps=2)
    assert out.shape == (5, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out[:, 1], lb.two_layer_orthogonal_loss(e1[:, 0], 3.0, 32, 2, "gaussian"))


def test_dispatch_errors():
    with pytest.raises(ValueError):
        lb.two_layer_loss(1.0, 1.0, 16, steps=3)
    with pytest.raises(ValueError):
        lb.two_layer_loss(1.0, 1.0, 16, steps=2, init="gaussian")
    with pytest.raises(ValueError):
        lb.three_layer_loss(1.0, 1.0, 16, steps=1, n=20)
    assert lb.two_layer_loss(1.0, 2.0, 16, init="gaussian", n=20, d=8) == lb.two_layer_gaussian_init_loss(
        1.0, 2.0, 16, 20, 8)


@pytest.mark.parametrize("name", sorted(THEORIES))
def test_registry_entries(name):
    entry = THEORIES[name]
    h = np.array([16.0, 64.0])
    for steps in entry["steps"]:
        out = entry["fn"](np.array([[0.0], [5.0]]), 2.0, h, steps)
        assert out.shape == (2, 2) and np.all(np.isfinite(out))
        # eta = 0 recovers the init loss 1 + 1/h (n = d = h in every setting)
        np.testing.assert_allclose(entry["fn"](0.0, 0.0, h, steps), 1 + 1 / h, rtol=1e-13)
    assert entry["setting"]["model.n_layers"] == (2 if "two_layer" in name else 3)


# The registry at nonzero rates. What each entry must be, written out here (not read from the registry):
# (parameterization, n_layers, init = design, target, exact, extra args).
REGISTRY_EXPECTED = {
    "layer_balancing.two_layer": ("paper_2nn", 2, "orthogonal", "gaussian", True, ()),
    "layer_balancing.two_layer_orthonormal_target": ("paper_2nn", 2, "orthogonal", "orthonormal", True, ()),
    "layer_balancing.two_layer_published": ("paper_2nn", 2, "orthogonal", "orthonormal", False, ()),
    "layer_balancing.two_layer_gaussian_init": ("paper_2nn", 2, "gaussian", "gaussian", True, ("n", "d")),
    "layer_balancing.three_layer": ("paper_deep", 3, "orthogonal", "gaussian", True, ()),
    "layer_balancing.three_layer_published": ("paper_deep", 3, "orthogonal", "gaussian", False, ()),
    "layer_balancing.three_layer_gaussian_init": ("paper_deep", 3, "gaussian", "gaussian", True, ("n", "d")),
}


def published_formula(n_layers, e1, e2, h, steps):
    """The seed's published formulas, copied from the paper / authors' code (p = eta_1 + eta_2, q = eta_1 eta_2)."""
    p, q = e1 + e2, e1 * e2
    if n_layers == 2 and steps == 1:
        return 1 + 1 / h - 2 * p / h**2 + p**2 / h**4 + q**2 / h**7
    if n_layers == 2:
        return ((1 / h) * (1 + q / h**3) ** 4 + 16 * q**2 / h**7 + (2 * p * (q + h**3) / h**5 - 1) ** 2
                + (1 + q / h**3) ** 2 * 8 * q / h**5)
    if steps == 1:
        return 1 + 1 / h - 2 * p / h + p**2 / h**2 + q**2 / h**4
    return ((2 * p * (h + q) / h**2 - 1) ** 2 + 1 / h + 2 * q / h**2 + 10 * q / h**3 + 37 * q**2 / h**4
            + 12 * q**3 / h**5 + q**4 / h**6 + q**2 / h**3)


def test_registry_lists_exactly_the_expected_entries():
    assert set(THEORIES) == set(REGISTRY_EXPECTED)


@pytest.mark.parametrize("name", sorted(REGISTRY_EXPECTED))
def test_registry_entry_at_nonzero_rates(name):
    """Each entry's setting is the one written above, and its function at nonzero, unbalanced (eta_1, eta_2)
    (p and q both vary) equals the module's function called with the setting's init / target (and n != d
    where the entry takes them), or the published formula written out here. rtol 1e-13: the same
    arithmetic either way (published: a re-typed formula, round-off of ~10 terms)."""
    par, n_layers, init, target, exact, extra = REGISTRY_EXPECTED[name]
    entry = THEORIES[name]
    s = entry["setting"]
    assert (s["model.parameterization"], s["model.n_layers"], s["init"], s["task.design"], s["task.target"]) == (
        par, n_layers, init, init, target)
    assert s["train.gradient"] == "signal_only" and s["task.noise_std"] == 0.0
    assert entry["exact"] == exact and tuple(entry["extra_args"]) == extra
    h = np.array([16.0, 20.0, 64.0])[:, None]
    scale = h**1.5 if n_layers == 2 else h ** (2 / 3)
    e1, e2 = np.array([0.9, 0.2, 0.5, 1.3]) * scale, np.array([0.2, 0.7, 0.5, 0.4]) * scale
    kwargs = {"n": 2 * h, "d": h / 2} if extra else {}   # n != d != h: a swap would show
    for steps in entry["steps"]:
        got = entry["fn"](e1, e2, h, steps, **kwargs)
        assert got.shape == (3, 4) and np.all(np.isfinite(got))
        at_zero = entry["fn"](0 * e1, 0 * e2, h, steps, **kwargs)
        assert np.all(np.abs(got - at_zero) > 1e-3)  # the rates move the loss away from its eta = 0 value
        if not exact:
            want = published_formula(n_layers, e1, e2, h, steps)
        elif n_layers == 2:
            want = lb.two_layer_loss(e1, e2, h, steps, init=init, target=target, **kwargs)
        else:
            want = lb.three_layer_loss(e1, e2, h, steps, init=init, **kwargs)
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=0, err_msg=f"{name} steps={steps}")


@pytest.mark.montecarlo
@pytest.mark.parametrize("name", sorted(n for n, e in REGISTRY_EXPECTED.items() if e[4]))
def test_exact_registry_entries_match_monte_carlo_of_their_setting(name):
    """Independent of the module: the Monte Carlo above, drawn in the entry's stated setting (init, target,
    n != d for Gaussian init), at one unbalanced nonzero rate pair; within N_SIGMA standard errors."""
    par, n_layers, init, target, _, extra = REGISTRY_EXPECTED[name]
    entry = THEORIES[name]
    n, d, h = (24, 12, 20) if init == "gaussian" else (16, 16, 16)
    scale = h**1.5 if n_layers == 2 else h ** (2 / 3) * (2 if init == "orthogonal" else 1)
    etas = [(0.9 * scale, 0.2 * scale)]
    kwargs = {"n": n, "d": d} if extra else {}
    for steps in entry["steps"]:
        if init == "gaussian":
            losses = mc_gaussian_init(n_layers, n, d, h, etas, 6000 if n_layers == 2 else 20000, seed=31 + steps)
        elif n_layers == 2:
            losses = mc_two_layer_orthogonal(h, etas, steps, target, 3000, seed=32 + steps)
        else:
            losses = mc_three_layer_orthogonal(h, etas, steps, 20000, seed=33 + steps)
        mean, se = mean_se(losses)
        theory = entry["fn"](etas[0][0], etas[0][1], h, steps, **kwargs)
        init_loss = entry["fn"](0.0, 0.0, h, steps, **kwargs)
        assert np.all(np.abs(theory - init_loss) > 5 * se), (name, steps)  # the rates move the loss
        assert_within_se(mean, se, theory, f"{name} steps={steps}")
