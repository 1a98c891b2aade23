"""Checks of the independent numpy reference trainer (tests/reference.py) itself."""
import math
import warnings

import numpy as np
import pytest

try:
    from tests.reference import (effective_weight, loss_and_dpred, loss_and_grads, predict,
                                 reference_train)
except ImportError:  # pytest rootdir/prepend import of the tests/ folder
    from reference import effective_weight, loss_and_dpred, loss_and_grads, predict, reference_train

D, H, N, OUT = 5, 4, 7, 3

CASES = [("paper_2nn", "linear", 2)] + [
    (p, a, m) for p in ("paper_deep", "standard") for a in ("linear", "relu") for m in (1, 2, 3)
]
LINEAR_CASES = [c for c in CASES if c[1] == "linear"]


def make_problem(parameterization, m, seed=0, n=N, d=D, h=H, out=OUT):
    """Random student, readout, teacher and data (y = X beta + small noise for linear).

    ``out``: the number of outputs of a standard student."""
    rng = np.random.default_rng(seed)
    readout = None
    if parameterization == "paper_2nn":
        out = h
        params = [rng.standard_normal((d, h)), rng.standard_normal((h, h))]
    elif parameterization == "paper_deep":
        out = 1
        params = [rng.standard_normal((d, h))] + [rng.standard_normal((h, h)) for _ in range(m - 1)]
        readout = rng.standard_normal((h, 1))
    else:
        shapes = [d] + [h] * (m - 1) + [out]
        params = [rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(shapes[:-1], shapes[1:])]
    X = rng.standard_normal((n, d))
    beta = rng.standard_normal((d, out)) / np.sqrt(d)
    y = X @ beta + 0.1 * rng.standard_normal((n, out))
    return params, readout, X, y, beta


def finite_diff(f, params, eps=1e-6):
    grads = []
    for l, W in enumerate(params):
        G = np.zeros_like(W)
        for idx in np.ndindex(W.shape):
            plus = [P.copy() for P in params]
            minus = [P.copy() for P in params]
            plus[l][idx] += eps
            minus[l][idx] -= eps
            G[idx] = (f(plus) - f(minus)) / (2 * eps)
        grads.append(G)
    return grads


def assert_grads_close(got, want, rtol=1e-6):
    assert len(got) == len(want)
    scale = max(np.max(np.abs(g)) for g in want)
    assert scale > 1e-8  # gradient must not be trivially zero
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("parameterization,activation,m", CASES)
def test_grads_match_finite_differences(parameterization, activation, m):
    params, readout, X, y, _ = make_problem(parameterization, m, seed=m)
    kw = dict(parameterization=parameterization, activation=activation, readout=readout)
    loss, grads = loss_and_grads(params, X, y, **kw)
    pred = predict(params, X, **kw)
    assert np.isclose(loss, 0.5 / N * np.sum((pred - y) ** 2), rtol=1e-14)
    fd = finite_diff(lambda ps: loss_and_grads(ps, X, y, **kw)[0], params)
    assert_grads_close(grads, fd)


@pytest.mark.parametrize("parameterization,activation,m", LINEAR_CASES)
def test_signal_only_grads_are_gradient_of_target_term(parameterization, activation, m):
    """Residual -y is the gradient of S(params) = -(1/n) sum(pred * y)."""
    if parameterization == "standard":
        params, readout, X, y, _ = make_problem(parameterization, m)
        with pytest.raises(ValueError):
            loss_and_grads(params, X, y, parameterization=parameterization, gradient="signal_only")
        return
    params, readout, X, y, _ = make_problem(parameterization, m, seed=10 + m)
    kw = dict(parameterization=parameterization, activation=activation, readout=readout)
    loss_s, grads_s = loss_and_grads(params, X, y, gradient="signal_only", **kw)
    loss_e, grads_e = loss_and_grads(params, X, y, **kw)
    assert loss_s == loss_e  # the reported loss is still the true train loss
    assert not np.allclose(grads_s[0], grads_e[0])
    fd = finite_diff(lambda ps: -np.sum(predict(ps, X, **kw) * y) / N, params)
    assert_grads_close(grads_s, fd)


def test_signal_only_paper_2nn_orthogonal_closed_form():
    rng = np.random.default_rng(3)
    n, d, h = 9, 5, 4
    Q, _ = np.linalg.qr(rng.standard_normal((n, d)))
    X = np.sqrt(n) * Q  # X^T X = n I
    assert np.allclose(X.T @ X, n * np.eye(d))
    W1, W2 = rng.standard_normal((d, h)), rng.standard_normal((h, h))
    beta = rng.standard_normal((d, h))
    _, (g1, g2) = loss_and_grads([W1, W2], X, X @ beta, parameterization="paper_2nn",
                                 gradient="signal_only")
    np.testing.assert_allclose(-g1, beta @ W2.T / h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(-g2, W1.T @ beta / h, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("parameterization,activation,m", CASES)
def test_tiny_lr_decreases_train_loss(parameterization, activation, m):
    params, readout, X, y, beta = make_problem(parameterization, m, seed=20 + m)
    snapshot = [P.copy() for P in params]
    kw = dict(parameterization=parameterization, activation=activation, readout=readout)
    # "tiny": first-order decrease of the first step is ~0.5% of the loss
    loss0, grads = loss_and_grads(params, X, y, **kw)
    base = 5e-3 * loss0 / sum(np.sum(g ** 2) for g in grads)
    lrs = [base * (l + 1) / len(params) for l in range(len(params))]
    steps = 25
    rng = np.random.default_rng(1)
    X_test = rng.standard_normal((11, D))
    y_test = X_test @ beta
    out = reference_train(params, X, y, lrs=lrs, steps=steps, beta=beta,
                          X_test=X_test, y_test=y_test, **kw)
    tr, te = out["train_loss"], out["test_loss"]
    assert tr.shape == te.shape == (steps + 1,)
    assert all(np.array_equal(a, b) for a, b in zip(params, snapshot))  # inputs not mutated
    assert np.all(np.diff(tr) < 0)
    # first step matches first-order prediction: dL ~ -sum_l lr_l ||g_l||^2
    assert tr[0] == loss0
    expected = -sum(lr * np.sum(g ** 2) for lr, g in zip(lrs, grads))
    assert abs((tr[1] - tr[0]) - expected) < 0.02 * abs(expected)
    # test loss at init follows the spec
    if activation == "linear":
        W_eff = effective_weight(params, parameterization=parameterization, readout=readout)
        np.testing.assert_allclose(predict(params, X, **kw), X @ W_eff, rtol=1e-12)
        assert np.isclose(te[0], np.sum((W_eff - beta) ** 2), rtol=1e-14)
    else:
        pred = predict(params, X_test, **kw)
        assert np.isclose(te[0], np.mean(np.sum((pred - y_test) ** 2, axis=1)), rtol=1e-14)


@pytest.mark.parametrize("parameterization,activation,m", LINEAR_CASES)
def test_linear_exact_test_loss_matches_monte_carlo(parameterization, activation, m):
    params, readout, X, y, beta = make_problem(parameterization, m, seed=30 + m)
    noise_var = 0.3
    out = reference_train(params, X, y, lrs=[1e-2] * len(params), steps=3, readout=readout,
                          beta=beta, parameterization=parameterization, test_noise_var=noise_var)
    exact = out["test_loss"]
    assert np.allclose(exact - noise_var,
                       reference_train(params, X, y, lrs=[1e-2] * len(params), steps=3, readout=readout,
                                       beta=beta, parameterization=parameterization)["test_loss"])
    # Monte Carlo at init: x ~ N(0, I); noise with total variance noise_var over outputs
    rng = np.random.default_rng(99)
    n_mc = 200_000
    Xmc = rng.standard_normal((n_mc, D))
    pred = predict(params, Xmc, parameterization=parameterization, readout=readout)
    k = beta.shape[1]
    ymc = Xmc @ beta + np.sqrt(noise_var / k) * rng.standard_normal((n_mc, k))
    per_row = np.sum((pred - ymc) ** 2, axis=1)
    mc, se = per_row.mean(), per_row.std() / np.sqrt(n_mc)
    assert abs(mc - exact[0]) < 4 * se
    assert se < 0.05 * exact[0]  # the check has teeth


def test_divergence_keeps_going():
    params, readout, X, y, beta = make_problem("standard", 3, seed=5)
    out = reference_train(params, X, y, lrs=[50.0] * 3, steps=30, beta=beta,
                          parameterization="standard")
    assert out["train_loss"].shape == (31,)
    assert not np.all(np.isfinite(out["train_loss"]))
    assert np.isfinite(out["train_loss"][0])


def spec_predict(params, X, parameterization, activation, readout):
    """The spec's formulas written out literally, one case at a time."""
    relu = lambda z: np.maximum(z, 0)
    h = params[0].shape[1]
    if parameterization == "paper_2nn":
        return X @ params[0] @ params[1] / h
    if parameterization == "paper_deep":
        z = X
        for W in params:
            z = relu(z @ W) if activation == "relu" else z @ W
        return z @ readout / np.sqrt(h)
    z = X
    for W in params[:-1]:
        z = relu(z @ W) if activation == "relu" else z @ W
    return z @ params[-1]


@pytest.mark.parametrize("parameterization,activation,m", CASES)
def test_predict_matches_spec_formula(parameterization, activation, m):
    params, readout, X, _, beta = make_problem(parameterization, m, seed=40 + m)
    got = predict(params, X, parameterization=parameterization, activation=activation, readout=readout)
    want = spec_predict(params, X, parameterization, activation, readout)
    assert got.shape == want.shape == (N, beta.shape[1])
    if parameterization == "standard":
        assert np.any(want < 0)  # a stray final ReLU would be visible
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


# ---------------------------------------------------------------- classification losses

CLASSIFICATION_CASES = [("standard", "linear", 2), ("standard", "relu", 2), ("paper_deep", "relu", 3)]


def make_classification(parameterization, m, seed):
    """Random one-output student (readout for paper_deep) and random +-1 labels, shape (N, 1)."""
    params, readout, X, _, _ = make_problem(parameterization, m, seed=seed, out=1)
    y = np.random.default_rng(seed + 1000).choice([-1.0, 1.0], size=(N, 1))
    assert 0 < np.sum(y > 0) < N
    return params, readout, X, y


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
@pytest.mark.parametrize("parameterization,activation,m", CLASSIFICATION_CASES)
def test_classification_grads_match_finite_differences(parameterization, activation, m, loss):
    """Hand backprop vs central differences (eps 1e-6, float64): agree to 1e-6 of the largest entry."""
    params, readout, X, y = make_classification(parameterization, m, seed=50 + m)
    assert (readout if readout is not None else params[-1]).shape[1] == 1  # one output
    kw = dict(parameterization=parameterization, activation=activation, readout=readout, loss=loss)
    value, grads = loss_and_grads(params, X, y, **kw)
    margin = y * predict(params, X, parameterization=parameterization, activation=activation, readout=readout)
    assert np.any(margin > 0) and np.any(margin < 0)  # both sides of the loss are exercised
    want = np.mean(np.log1p(np.exp(-margin))) if loss == "logistic" else np.mean(np.exp(-margin))
    assert np.isclose(value, want, rtol=1e-13)
    assert value != loss_and_grads(params, X, y, **{**kw, "loss": "mse"})[0]
    fd = finite_diff(lambda ps: loss_and_grads(ps, X, y, **kw)[0], params)
    assert_grads_close(grads, fd)
    # labels given as a flat (n,) vector mean the same thing
    value_flat, grads_flat = loss_and_grads(params, X, y[:, 0], **kw)
    assert value_flat == value and all(np.array_equal(a, b) for a, b in zip(grads_flat, grads))


def test_classification_loss_stable_at_huge_margins():
    y = np.array([[1.0], [1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow/underflow warning may escape either
        # one point at a time, n = 1: margins -1e4 and +1e4
        lo, g_lo = loss_and_dpred(np.array([[-1e4]]), y[:1], "logistic")
        hi, g_hi = loss_and_dpred(np.array([[1e4]]), y[:1], "logistic")
        assert lo == 1e4  # log(1 + e^1e4) = 1e4 + log1p(e^-1e4), the second term below 1 ulp
        assert 0.0 <= hi < 1e-300  # log1p(e^-1e4) ~ e^-1e4, underflows to 0
        assert g_lo.shape == (1, 1) and g_lo[0, 0] == -1.0  # -(y/n) sigmoid(1e4) = -1 exactly
        assert np.isfinite(g_hi[0, 0]) and -1e-300 < g_hi[0, 0] <= 0.0
        # both in one batch, n = 2; and y = -1 flips the margin
        both, g = loss_and_dpred(np.array([[-1e4], [1e4]]), y, "logistic")
        assert both == 5e3 and g[0, 0] == -0.5 and abs(g[1, 0]) < 1e-300
        neg, g_neg = loss_and_dpred(np.array([[1e4]]), np.array([[-1.0]]), "logistic")
        assert neg == 1e4 and g_neg[0, 0] == 1.0
        # exponential: e^1e4 overflows to inf (allowed), e^-1e4 underflows to 0; nothing raises
        ex_lo, gx_lo = loss_and_dpred(np.array([[-1e4]]), y[:1], "exponential")
        ex_hi, gx_hi = loss_and_dpred(np.array([[1e4]]), y[:1], "exponential")
        assert ex_lo == np.inf and gx_lo[0, 0] == -np.inf
        assert ex_hi == 0.0 and gx_hi[0, 0] == 0.0
        # through the student: 1-layer standard linear, W = +-1e4, x = 1, so pred = W
        for W, want in [(-1e4, 1e4), (1e4, 0.0)]:
            value, (gW,) = loss_and_grads([np.array([[W]])], np.ones((1, 1)), y[:1],
                                          parameterization="standard", loss="logistic")
            assert value == want and np.isfinite(gW[0, 0])
            assert gW[0, 0] == (-1.0 if W < 0 else 0.0)  # dL/dW = x dL/dpred
    # and GD with an exploding exponential loss keeps going (inf/nan values), no exception
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = reference_train([np.array([[-1e4]])], np.ones((1, 1)), y[:1], lrs=[1.0], steps=2,
                              parameterization="standard", loss="exponential")
    # step 0: loss inf, gradient -inf; W - lr * (-inf) = +inf, so pred = +inf and the loss is 0
    np.testing.assert_array_equal(out["train_loss"], [np.inf, 0.0, 0.0])


def test_classification_one_step_by_hand():
    """1 sample x = 2, y = +1; standard linear 2-layer student w1 = 0.5, w2 = -1.5; lrs 0.1, 0.2.

    pred = x w1 w2 = -1.5, margin m = -1.5.  dL/dpred = -y l'(m) with l'(m) the loss slope factor:
      logistic   : L = log(1 + e^{1.5}),  s = sigmoid(1.5) = 1 / (1 + e^{-1.5}),  dL/dpred = -s
      exponential: L = e^{1.5},                                                   dL/dpred = -e^{1.5}
    dL/dw1 = x w2 dL/dpred = -3 dL/dpred,  dL/dw2 = x w1 dL/dpred = 1 dL/dpred.
    """
    X, y = np.array([[2.0]]), np.array([[1.0]])
    params = [np.array([[0.5]]), np.array([[-1.5]])]
    for loss, L, slope in [("logistic", lambda m: math.log1p(math.exp(-m)), 1 / (1 + math.exp(-1.5))),
                           ("exponential", lambda m: math.exp(-m), math.exp(1.5))]:
        dpred = -slope
        w1 = 0.5 - 0.1 * (-3.0 * dpred)  # w1 - lr1 dL/dw1
        w2 = -1.5 - 0.2 * (1.0 * dpred)  # w2 - lr2 dL/dw2
        pred1 = 2.0 * w1 * w2
        out = reference_train(params, X, y, lrs=[0.1, 0.2], steps=1, parameterization="standard",
                              loss=loss, weight_norms=True)
        np.testing.assert_allclose(out["train_loss"], [L(-1.5), L(pred1)], rtol=1e-14)
        np.testing.assert_allclose(out["weight_norm"], [[0.5, 1.5], [abs(w1), abs(w2)]], rtol=1e-14)
        assert out["train_error"][0] == 1.0  # pred = -1.5 has the wrong sign
        assert out["train_error"][1] == (0.0 if pred1 > 0 else 1.0)
        assert np.all(np.isnan(out["test_loss"])) and np.all(np.isnan(out["test_error"]))
    # the numbers themselves: logistic s = 0.817574, w1 = 0.5 - 0.3 s = 0.254728,
    # w2 = -1.5 + 0.2 s = -1.336485, pred = 2 w1 w2 = -0.680879 (still wrong), L = log(1 + e^0.680879)
    # = 1.090451; exponential e^1.5 = 4.481689, w1 = 0.5 - 0.3 e^1.5 = -0.844507,
    # w2 = -1.5 + 0.2 e^1.5 = -0.603662, pred = 1.019594 (now right), L = e^-1.019594 = 0.360742
    lo = reference_train(params, X, y, lrs=[0.1, 0.2], steps=1, parameterization="standard",
                         loss="logistic")
    ex = reference_train(params, X, y, lrs=[0.1, 0.2], steps=1, parameterization="standard",
                         loss="exponential")
    assert abs(lo["train_loss"][1] - 1.090451) < 1e-6 and list(lo["train_error"]) == [1.0, 1.0]
    assert abs(ex["train_loss"][1] - 0.360742) < 1e-6 and list(ex["train_error"]) == [1.0, 0.0]


def test_classification_errors_by_hand():
    """1-layer standard linear student W = (1, -1): pred = x1 - x2, zero steps."""
    W = [np.array([[1.0], [-1.0]])]
    X = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [2.0, 1.0]])   # pred  1, -1, 0, 1
    y = np.array([[1.0], [1.0], [1.0], [-1.0]])                        # right, wrong, 0 = wrong, wrong
    X_test = np.array([[3.0, 0.0], [0.0, 3.0], [1.0, 1.0]])            # pred  3, -3, 0
    y_test = np.array([1.0, -1.0, -1.0])                               # right, right, 0 = wrong
    for loss in ("logistic", "exponential"):
        out = reference_train(W, X, y, lrs=[0.0], steps=2, parameterization="standard",
                              loss=loss, X_test=X_test, y_test=y_test)
        assert set(out) == {"train_loss", "test_loss", "train_error", "test_error"}
        np.testing.assert_array_equal(out["train_error"], [0.75] * 3)
        np.testing.assert_array_equal(out["test_error"], [1 / 3] * 3)
        l = (lambda m: np.log1p(np.exp(-m))) if loss == "logistic" else (lambda m: np.exp(-m))
        np.testing.assert_allclose(out["test_loss"], [(l(3.0) + l(3.0) + l(0.0)) / 3] * 3, rtol=1e-14)
        np.testing.assert_allclose(out["train_loss"], [(l(1) + l(-1) + l(0) + l(-1)) / 4] * 3, rtol=1e-14)


def test_classification_mse_unchanged_and_weight_norms():
    params, readout, X, y, beta = make_problem("paper_deep", 3, seed=60)
    kw = dict(lrs=[0.03, 0.02, 0.01], steps=4, parameterization="paper_deep", readout=readout, beta=beta)
    plain = reference_train(params, X, y, **kw)
    assert set(plain) == {"train_loss", "test_loss"}
    both = reference_train(params, X, y, loss="mse", weight_norms=True, **kw)
    assert set(both) == {"train_loss", "test_loss", "weight_norm"}
    for key in plain:
        np.testing.assert_array_equal(both[key], plain[key])
    # weight_norm[k] = Frobenius norms after k updates, recomputed with an explicit GD loop
    ps = [P.copy() for P in params]
    assert both["weight_norm"].shape == (5, 3)
    for k in range(5):
        np.testing.assert_allclose(both["weight_norm"][k], [np.linalg.norm(P) for P in ps], rtol=1e-14)
        _, grads = loss_and_grads(ps, X, y, parameterization="paper_deep", readout=readout)
        ps = [P - lr * G for P, lr, G in zip(ps, kw["lrs"], grads)]
    assert np.all(np.isfinite(both["weight_norm"]))
    assert not np.allclose(both["weight_norm"][0], both["weight_norm"][-1], rtol=1e-6, atol=0)


def test_classification_refusals():
    params, readout, X, y = make_classification("paper_deep", 2, seed=70)
    kw = dict(parameterization="paper_deep", readout=readout)
    for loss in ("logistic", "exponential"):
        with pytest.raises(ValueError, match="signal_only"):
            loss_and_grads(params, X, y, gradient="signal_only", loss=loss, **kw)
        with pytest.raises(ValueError, match="signal_only"):
            reference_train(params, X, y, lrs=[1.0, 1.0], steps=1, gradient="signal_only", loss=loss, **kw)
        with pytest.raises(ValueError, match="beta"):
            reference_train(params, X, y, lrs=[1.0, 1.0], steps=1, loss=loss, beta=np.ones((D, 1)), **kw)
        with pytest.raises(ValueError, match="labels"):
            loss_and_grads(params, X, 0.5 * y, loss=loss, **kw)
        multi, _, Xm, ym, _ = make_problem("standard", 2, seed=71)  # OUT = 3 outputs
        with pytest.raises(ValueError, match="one output"):
            loss_and_grads(multi, Xm, np.sign(ym), parameterization="standard", loss=loss)
    with pytest.raises(ValueError, match="unknown loss"):
        loss_and_grads(params, X, y, loss="hinge", **kw)
    with pytest.raises(ValueError, match="unknown loss"):
        reference_train(params, X, y, lrs=[1.0, 1.0], steps=1, loss="hinge", **kw)
    loss_and_grads(params, X, y, gradient="signal_only", **kw)  # mse keeps signal_only
