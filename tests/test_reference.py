"""Checks of the independent numpy reference trainer (tests/reference.py) itself."""
import numpy as np
import pytest

try:
    from tests.reference import effective_weight, loss_and_grads, predict, reference_train
except ImportError:  # pytest rootdir/prepend import of the tests/ folder
    from reference import effective_weight, loss_and_grads, predict, reference_train

D, H, N, OUT = 5, 4, 7, 3

CASES = [("paper_2nn", "linear", 2)] + [
    (p, a, m) for p in ("paper_deep", "standard") for a in ("linear", "relu") for m in (1, 2, 3)
]
LINEAR_CASES = [c for c in CASES if c[1] == "linear"]


def make_problem(parameterization, m, seed=0, n=N, d=D, h=H):
    """Random student, head, teacher and data (y = X beta + small noise for linear)."""
    rng = np.random.default_rng(seed)
    head = None
    if parameterization == "paper_2nn":
        out = h
        params = [rng.standard_normal((d, h)), rng.standard_normal((h, h))]
    elif parameterization == "paper_deep":
        out = 1
        params = [rng.standard_normal((d, h))] + [rng.standard_normal((h, h)) for _ in range(m - 1)]
        head = rng.standard_normal((h, 1))
    else:
        out = OUT
        shapes = [d] + [h] * (m - 1) + [out]
        params = [rng.standard_normal((a, b)) / np.sqrt(a) for a, b in zip(shapes[:-1], shapes[1:])]
    X = rng.standard_normal((n, d))
    beta = rng.standard_normal((d, out)) / np.sqrt(d)
    y = X @ beta + 0.1 * rng.standard_normal((n, out))
    return params, head, X, y, beta


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
    params, head, X, y, _ = make_problem(parameterization, m, seed=m)
    kw = dict(parameterization=parameterization, activation=activation, head=head)
    loss, grads = loss_and_grads(params, X, y, **kw)
    pred = predict(params, X, **kw)
    assert np.isclose(loss, 0.5 / N * np.sum((pred - y) ** 2), rtol=1e-14)
    fd = finite_diff(lambda ps: loss_and_grads(ps, X, y, **kw)[0], params)
    assert_grads_close(grads, fd)


@pytest.mark.parametrize("parameterization,activation,m", LINEAR_CASES)
def test_signal_only_grads_are_gradient_of_target_term(parameterization, activation, m):
    """Residual -y is the gradient of S(params) = -(1/n) sum(pred * y)."""
    if parameterization == "standard":
        params, head, X, y, _ = make_problem(parameterization, m)
        with pytest.raises(ValueError):
            loss_and_grads(params, X, y, parameterization=parameterization, gradient="signal_only")
        return
    params, head, X, y, _ = make_problem(parameterization, m, seed=10 + m)
    kw = dict(parameterization=parameterization, activation=activation, head=head)
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
    params, head, X, y, beta = make_problem(parameterization, m, seed=20 + m)
    snapshot = [P.copy() for P in params]
    kw = dict(parameterization=parameterization, activation=activation, head=head)
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
        W_eff = effective_weight(params, parameterization=parameterization, head=head)
        np.testing.assert_allclose(predict(params, X, **kw), X @ W_eff, rtol=1e-12)
        assert np.isclose(te[0], np.sum((W_eff - beta) ** 2), rtol=1e-14)
    else:
        pred = predict(params, X_test, **kw)
        assert np.isclose(te[0], np.mean(np.sum((pred - y_test) ** 2, axis=1)), rtol=1e-14)


@pytest.mark.parametrize("parameterization,activation,m", LINEAR_CASES)
def test_linear_exact_test_loss_matches_monte_carlo(parameterization, activation, m):
    params, head, X, y, beta = make_problem(parameterization, m, seed=30 + m)
    noise_var = 0.3
    out = reference_train(params, X, y, lrs=[1e-2] * len(params), steps=3, head=head,
                          beta=beta, parameterization=parameterization, test_noise_var=noise_var)
    exact = out["test_loss"]
    assert np.allclose(exact - noise_var,
                       reference_train(params, X, y, lrs=[1e-2] * len(params), steps=3, head=head,
                                       beta=beta, parameterization=parameterization)["test_loss"])
    # Monte Carlo at init: x ~ N(0, I); noise with total variance noise_var over outputs
    rng = np.random.default_rng(99)
    n_mc = 200_000
    Xmc = rng.standard_normal((n_mc, D))
    pred = predict(params, Xmc, parameterization=parameterization, head=head)
    k = beta.shape[1]
    ymc = Xmc @ beta + np.sqrt(noise_var / k) * rng.standard_normal((n_mc, k))
    per_row = np.sum((pred - ymc) ** 2, axis=1)
    mc, se = per_row.mean(), per_row.std() / np.sqrt(n_mc)
    assert abs(mc - exact[0]) < 4 * se
    assert se < 0.05 * exact[0]  # the check has teeth


def test_divergence_keeps_going():
    params, head, X, y, beta = make_problem("standard", 3, seed=5)
    out = reference_train(params, X, y, lrs=[50.0] * 3, steps=30, beta=beta,
                          parameterization="standard")
    assert out["train_loss"].shape == (31,)
    assert not np.all(np.isfinite(out["train_loss"]))
    assert np.isfinite(out["train_loss"][0])


def spec_predict(params, X, parameterization, activation, head):
    """The spec's formulas written out literally, one case at a time."""
    relu = lambda z: np.maximum(z, 0)
    h = params[0].shape[1]
    if parameterization == "paper_2nn":
        return X @ params[0] @ params[1] / h
    if parameterization == "paper_deep":
        z = X
        for W in params:
            z = relu(z @ W) if activation == "relu" else z @ W
        return z @ head / np.sqrt(h)
    z = X
    for W in params[:-1]:
        z = relu(z @ W) if activation == "relu" else z @ W
    return z @ params[-1]


@pytest.mark.parametrize("parameterization,activation,m", CASES)
def test_predict_matches_spec_formula(parameterization, activation, m):
    params, head, X, _, beta = make_problem(parameterization, m, seed=40 + m)
    got = predict(params, X, parameterization=parameterization, activation=activation, head=head)
    want = spec_predict(params, X, parameterization, activation, head)
    assert got.shape == want.shape == (N, beta.shape[1])
    if parameterization == "standard":
        assert np.any(want < 0)  # a stray final ReLU would be visible
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)
