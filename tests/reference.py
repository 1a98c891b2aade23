"""Independent plain-numpy float64 reference trainer for the lrsweep engine tests.

This module deliberately shares NO code with ``lrsweep/``: no jax, no autodiff.
It trains ONE student at a time with full-batch gradient descent (``reference_train``) or
with SGD / heavy-ball momentum on batches handed to it (``reference_train_batches``), using
gradients written out by hand (backprop through a chain of matmuls and ReLU
masks). The JAX engine is checked against it to ~1e-10 relative, so it is kept
short and written directly from the spec.

Every model is the same chain, differing only in masks, scale ``c`` and readout:

    z_0 = X
    u_l = z_{l-1} @ W_l,   z_l = act_l(u_l)          for l = 1..m
    pred = c * z_m @ readout   (or c * z_m when there is no readout)

    paper_2nn : linear only, m = 2, c = 1/h,       no readout
    paper_deep: act = relu after EVERY layer (if relu), c = 1/sqrt(h), fixed readout a
    standard  : act = relu after layers 1..m-1 (if relu), c = 1, no readout
    ntk       : as standard, c = 1/sqrt(fan_in_1 * .. * fan_in_m) = 1/sqrt(d h^(m-1))

Losses (``loss=``), n training points, all means over points (see ``loss_and_dpred``):

    mse        : L = (0.5/n) sum_i ||pred_i - y_i||^2,   dL/dpred_i = (pred_i - y_i) / n
    logistic   : L = (1/n) sum_i log(1 + exp(-m_i)),     dL/dpred_i = -(y_i/n) sigmoid(-m_i)
    exponential: L = (1/n) sum_i exp(-m_i),              dL/dpred_i = -(y_i/n) exp(-m_i)

with margin m_i = y_i pred_i. With per-row ``weights`` w_i (a masked minibatch: 1/m on m rows, 0 on
the rest) every 1/n above becomes w_i: L = sum_i w_i ell_i. The two classification losses need labels y_i in {-1, +1} and one
output (pred of shape (n, 1)); logistic is computed stably (finite at |m| = 1e4), exponential may
overflow to inf (allowed: divergence), without raising.
``gradient="signal_only"`` (mse only) replaces the residual pred - y by -y (pred treated as zero).

Trainable heads (seed 002; standard and ntk, m >= 2): the body is W_1..W_{m-1}, the head w = W_m, and
pred = c z w with z the body's features. ``reference_train_heads`` trains one student under the head
rules written out from the issue: simultaneous per-layer GD, alternating (k head steps at the current
body, then the body step), and the best response (the head set to argmin_w L + ridge/2 ||w||^2 before
every body step: ``np.linalg.solve`` of the ridge normal equations for mse, Newton run to convergence
for logistic and exponential). ``phi`` and ``phi_grad`` give Phi(M) = min_w L + ridge/2 ||w||^2 and its
gradient (the loss gradient at the minimising head: the envelope theorem); ``phi_hessian_fd`` its
Hessian over the body by central differences of that gradient.
"""
import numpy as np

PARAMETERIZATIONS = ("paper_2nn", "paper_deep", "standard", "ntk")
LOSSES = ("mse", "logistic", "exponential")


def _check(params, parameterization, activation, readout):
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {parameterization!r}")
    if activation not in ("linear", "relu"):
        raise ValueError(f"unknown activation {activation!r}")
    if parameterization == "paper_2nn" and (activation != "linear" or len(params) != 2):
        raise ValueError("paper_2nn is linear with exactly 2 layers")
    if parameterization == "paper_deep" and readout is None:
        raise ValueError("paper_deep needs a fixed readout")
    if parameterization != "paper_deep" and readout is not None:
        raise ValueError("only paper_deep has a readout")


def _scale(params, parameterization):
    if parameterization == "ntk":
        return 1.0 / np.sqrt(np.prod([float(W.shape[0]) for W in params]))
    h = params[0].shape[1]
    return {"paper_2nn": 1.0 / h, "paper_deep": 1.0 / np.sqrt(h), "standard": 1.0}[parameterization]


def _relu_after(l, m, parameterization, activation):
    """Is there a ReLU after trainable layer l (0-based) of m?"""
    if activation == "linear":
        return False
    return parameterization == "paper_deep" or l < m - 1


def _forward(params, X, parameterization, activation, readout):
    """Returns pred and the cache (layer inputs z_{l-1}, ReLU masks) for backprop."""
    _check(params, parameterization, activation, readout)
    m = len(params)
    z, inputs, masks = np.asarray(X, dtype=np.float64), [], []
    for l, W in enumerate(params):
        inputs.append(z)
        u = z @ W
        if _relu_after(l, m, parameterization, activation):
            mask = (u > 0).astype(np.float64)  # relu'(u), taken as 0 at u == 0
            z = u * mask
        else:
            mask = None
            z = u
        masks.append(mask)
    if readout is not None:
        z = z @ readout
    return _scale(params, parameterization) * z, (inputs, masks)


def _as_params(params):
    return [np.array(W, dtype=np.float64, copy=True) for W in params]


def predict(params, X, *, parameterization, activation="linear", readout=None):
    params = _as_params(params)
    readout = None if readout is None else np.asarray(readout, dtype=np.float64)
    return _forward(params, X, parameterization, activation, readout)[0]


def effective_weight(params, *, parameterization, readout=None):
    """Linear students only: W_eff such that pred = X @ W_eff."""
    params = _as_params(params)
    return predict(params, np.eye(params[0].shape[0]), parameterization=parameterization,
                   activation="linear", readout=readout)


def loss_and_dpred(pred, y, loss="mse", weights=None):
    """The train loss (a mean over the n rows, or sum_i weights_i ell_i) and dL/dpred, for predictions
    ``pred`` (n, k)."""
    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = pred.shape[0]
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64).reshape(n, 1)
        value, dpred = loss_and_dpred(pred, y, loss)  # mean form: ell_i / n and d ell_i / n per row
        ell = _per_row_loss(pred, y, loss)
        return float(np.sum(w[:, 0] * ell)), dpred * n * w
    if loss == "mse":
        return float(0.5 / n * np.sum((pred - y) ** 2)), (pred - y) / n
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}")
    if pred.ndim != 2 or pred.shape[1] != 1:
        raise ValueError(f"{loss} loss needs one output, pred of shape (n, 1)")
    y = y.reshape(pred.shape)
    if not np.all(np.abs(y) == 1):
        raise ValueError(f"{loss} loss needs labels in {{-1, +1}}")
    m = y * pred
    with np.errstate(over="ignore", under="ignore"):
        if loss == "logistic":
            # log(1 + e^-m) = logaddexp(0, -m);  sigmoid(-m) = 1 / (1 + e^m) = exp(-logaddexp(0, m))
            return float(np.sum(np.logaddexp(0.0, -m)) / n), -y / n * np.exp(-np.logaddexp(0.0, m))
        e = np.exp(-m)  # exponential: may be inf for very negative margins
        return float(np.sum(e) / n), -y / n * e


def _per_row_loss(pred, y, loss):
    """ell_i of each row (n,): 0.5 ||pred_i - y_i||^2, log(1 + e^-m_i) or e^-m_i."""
    if loss == "mse":
        return 0.5 * np.sum((pred - y) ** 2, axis=1)
    m = y.reshape(pred.shape) * pred
    with np.errstate(over="ignore", under="ignore"):
        return (np.logaddexp(0.0, -m) if loss == "logistic" else np.exp(-m))[:, 0]


def loss_and_grads(params, X, y, *, parameterization, activation="linear", readout=None,
                   gradient="exact", loss="mse", weights=None):
    """Train loss and [dL/dW_l] for the trainable layers (the module docstring has the conventions)."""
    params = _as_params(params)
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    readout = None if readout is None else np.asarray(readout, dtype=np.float64)
    pred, (inputs, masks) = _forward(params, X, parameterization, activation, readout)
    value, dpred = loss_and_dpred(pred, y, loss, weights)
    if gradient == "signal_only":
        if loss != "mse":
            raise ValueError("signal_only is only defined for the mse loss")
        if activation != "linear" or parameterization in ("standard", "ntk"):
            raise ValueError("signal_only is only for linear paper_2nn / paper_deep")
        dpred = -y / X.shape[0]  # target-driven part only: residual as if pred were zero
    elif gradient != "exact":
        raise ValueError(f"unknown gradient {gradient!r}")
    # g = dL/dz_m: through pred = c * z_m (@ readout).
    g = _scale(params, parameterization) * dpred
    if readout is not None:
        g = g @ readout.T
    grads = [None] * len(params)
    for l in reversed(range(len(params))):
        if masks[l] is not None:
            g = g * masks[l]               # dL/du_l = dL/dz_l * relu'(u_l)
        grads[l] = inputs[l].T @ g         # dL/dW_l = z_{l-1}^T dL/du_l
        g = g @ params[l].T                # dL/dz_{l-1} = dL/du_l W_l^T
    return value, grads


def reference_train(params0, X, y, *, lrs, steps, parameterization, activation="linear",
                    readout=None, beta=None, X_test=None, y_test=None, test_noise_var=0.0,
                    gradient="exact", lr_multipliers=None, loss="mse", weight_norms=False):
    """Plain GD, one student. Returns arrays over steps k = 0..steps (weights after k updates):

    "train_loss", "test_loss" always. mse: test_loss is the exact population risk
    ||W_eff - beta||_F^2 + test_noise_var when linear with ``beta``, else the mean over test rows of
    ||pred - y||^2 (NOT halved), else nan. logistic / exponential: test_loss is the same loss as the
    train loss (mean over test rows), and also "train_error", "test_error": the 0-1 error
    mean(sign(pred) != y) on each set (pred == 0 or nan counts as an error); test_* are nan
    without X_test, y_test; ``beta`` is refused (no closed form).
    ``weight_norms=True`` adds "weight_norm", shape (steps + 1, m): the Frobenius norm of each
    trainable layer (the readout is not trained and not included).
    ``lr_multipliers``: a factor per step t = 0..steps-1 on every rate (a schedule).
    """
    params = _as_params(params0)
    if len(lrs) != len(params):
        raise ValueError("need one learning rate per trainable layer")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}")
    classify = loss != "mse"
    if classify and beta is not None:
        raise ValueError("beta (exact population risk) is only for the mse loss")
    beta = None if beta is None else np.asarray(beta, dtype=np.float64)
    kw = dict(parameterization=parameterization, activation=activation, readout=readout)

    def error(ps, X_, y_):  # 0-1 error; sign(0) = 0 and sign(nan) = nan never equal a label
        pred = predict(ps, X_, **kw)
        return float(np.mean(np.sign(pred) != np.asarray(y_, dtype=np.float64).reshape(pred.shape)))

    def test_loss(ps):
        if activation == "linear" and beta is not None:
            # exact population risk for x ~ N(0, I): ||W_eff - beta||_F^2 + noise
            W_eff = effective_weight(ps, parameterization=parameterization, readout=readout)
            return float(np.sum((W_eff - beta) ** 2)) + float(test_noise_var)
        if X_test is None or y_test is None:
            return np.nan
        pred = predict(ps, X_test, **kw)
        if classify:
            return loss_and_dpred(pred, y_test, loss)[0]
        return float(np.mean(np.sum((pred - np.asarray(y_test, dtype=np.float64)) ** 2, axis=1)))

    out = {"train_loss": np.empty(steps + 1), "test_loss": np.empty(steps + 1)}
    if classify:
        out["train_error"], out["test_error"] = np.empty(steps + 1), np.full(steps + 1, np.nan)
    if weight_norms:
        out["weight_norm"] = np.empty((steps + 1, len(params)))
    with np.errstate(all="ignore"):  # divergence is allowed: values just become inf/nan
        for k in range(steps + 1):
            value, grads = loss_and_grads(params, X, y, gradient=gradient, loss=loss, **kw)
            out["train_loss"][k], out["test_loss"][k] = value, test_loss(params)
            if classify:
                out["train_error"][k] = error(params, X, y)
                if X_test is not None and y_test is not None:
                    out["test_error"][k] = error(params, X_test, y_test)
            if weight_norms:
                out["weight_norm"][k] = [np.sqrt(np.sum(W ** 2)) for W in params]
            if k < steps:  # simultaneous update, all layers from the same gradient
                factor = 1.0 if lr_multipliers is None else float(lr_multipliers[k])
                params = [W - float(lr) * factor * G for W, lr, G in zip(params, lrs, grads)]
    return out


def reference_train_batches(params0, batches, *, lrs, steps, parameterization, activation="linear", readout=None,
                            betas=None, lr_multipliers=None, train_set=None, test_loss=None, loss="mse"):
    """SGD (``betas`` None) or heavy-ball momentum, one student, on the batches it is handed.

    ``batches[t] = (X_t, y_t, weights_t or None)`` for t = 0..steps: step t's gradient is that of
    sum_i w_i ell_i (the mean without weights); ``batches[steps]`` is only read for the last logged
    batch loss. Momentum (optax.trace's convention): v_l <- beta(t) v_l + g_l, W_l <- W_l - eta_l s(t) v_l,
    v = 0 at the start; SGD: W_l <- W_l - eta_l s(t) g_l. ``lr_multipliers``: s(t) (None: 1).

    Returns arrays over k = 0..steps (weights after k updates), and "params", the final weights:
    "train_loss": the mean loss over ``train_set = (X, y)`` (a fixed training set), or without it the
    loss of batch k; "test_loss": ``test_loss(params)`` (nan without it).
    """
    params = _as_params(params0)
    if len(lrs) != len(params) or len(batches) != steps + 1:
        raise ValueError("need one learning rate per trainable layer and steps + 1 batches")
    kw = dict(parameterization=parameterization, activation=activation, readout=readout, loss=loss)
    velocity = [np.zeros_like(W) for W in params]
    out = {"train_loss": np.empty(steps + 1), "test_loss": np.full(steps + 1, np.nan)}
    with np.errstate(all="ignore"):  # divergence is allowed: values just become inf/nan
        for k in range(steps + 1):
            X, y, weights = batches[k]
            value, grads = loss_and_grads(params, X, y, weights=weights, **kw)
            if train_set is not None:
                value = loss_and_grads(params, *train_set, **kw)[0]
            out["train_loss"][k] = value
            if test_loss is not None:
                out["test_loss"][k] = test_loss(params)
            if k < steps:
                factor = 1.0 if lr_multipliers is None else float(lr_multipliers[k])
                if betas is not None:
                    velocity = [float(betas[k]) * v + G for v, G in zip(velocity, grads)]
                    grads = velocity
                params = [W - float(lr) * factor * G for W, lr, G in zip(params, lrs, grads)]
    out["params"] = params
    return out


# ---------------------------------------------------------------------------------------------
# Trainable heads (seed 002): standard and ntk students, body W_1..W_{m-1}, head w = W_m
# ---------------------------------------------------------------------------------------------

def features(body, X, activation="linear"):
    """The body's output z = act(..act(X W_1)..W_{m-1}), shape (n, h)."""
    z = np.asarray(X, dtype=np.float64)
    for W in body:
        z = z @ np.asarray(W, dtype=np.float64)
        if activation == "relu":
            z = np.maximum(z, 0.0)
    return z


def head_scale(body, parameterization):
    """c of pred = c z w: 1 (standard), 1/sqrt(d h^(m-1)) (ntk: every fan-in, the head's included)."""
    if parameterization == "standard":
        return 1.0
    if parameterization != "ntk":
        raise ValueError("heads are for standard and ntk students")
    fan_ins = [W.shape[0] for W in body] + [body[-1].shape[1]]
    return 1.0 / np.sqrt(np.prod(np.asarray(fan_ins, dtype=np.float64)))


def _margin_derivatives(m, loss):
    """ell(m), ell'(m), ell''(m) per sample of the margin losses (logistic, exponential)."""
    with np.errstate(over="ignore", under="ignore"):
        if loss == "logistic":
            s = np.exp(-np.logaddexp(0.0, m))  # sigmoid(-m)
            return np.logaddexp(0.0, -m), -s, s * (1.0 - s)
        if loss == "exponential":
            e = np.exp(-m)
            return e, -e, e
    raise ValueError(f"no margin loss {loss!r}")


def ridge_least_squares_head(Z, y, c, ridge):
    """argmin_w (0.5/n) ||c Z w - y||^2 + ridge/2 ||w||^2 = (c^2 Z^T Z / n + ridge I)^{-1} c Z^T y / n."""
    n, h = Z.shape
    return np.linalg.solve(c * c * (Z.T @ Z) / n + ridge * np.eye(h), c * (Z.T @ y) / n)


def newton_head(Z, y, c, ridge, loss, w0=None, max_iter=200):
    """argmin_w (1/n) sum_i ell(y_i c z_i w) + ridge/2 ||w||^2 (one output, labels +-1) by Newton's
    method, iterated until the step is below round-off: step halving (Armijo) while the Newton decrement
    g^T H^-1 g exceeds 1e-12, full steps below (quadratic convergence; there the objective's decrease is
    at round-off and Armijo's test would stall the iteration short of the minimiser)."""
    n, h = Z.shape
    y = np.asarray(y, dtype=np.float64).reshape(n, 1)
    w = np.zeros((h, 1)) if w0 is None else np.array(w0, dtype=np.float64).reshape(h, 1)

    def objective(w):
        return np.mean(_margin_derivatives(y * (c * Z @ w), loss)[0]) + 0.5 * ridge * np.sum(w * w)

    for _ in range(max_iter):
        _, d1, d2 = _margin_derivatives(y * (c * Z @ w), loss)
        grad = c * Z.T @ (y * d1) / n + ridge * w
        hess = c * c * (Z.T * d2[:, 0]) @ Z / n + ridge * np.eye(h)
        step = -np.linalg.solve(hess, grad)
        size, value, decrement = 1.0, objective(w), -np.sum(grad * step)
        while (decrement > 1e-12 and objective(w + size * step) > value - 1e-4 * size * decrement
               and size > 1e-10):
            size *= 0.5
        w = w + size * step
        if np.max(np.abs(size * step)) <= 1e-15 * (1.0 + np.max(np.abs(w))):
            break
    return w


def best_response_head(body, X, y, *, parameterization, activation="linear", ridge=0.0, loss="mse", w0=None):
    """w*(M) = argmin_w L(M, w) + ridge/2 ||w||^2 at the body M = ``body`` (Newton from ``w0``, or 0)."""
    Z, c = features(body, X, activation), head_scale(body, parameterization)
    if loss == "mse":
        return ridge_least_squares_head(Z, np.asarray(y, dtype=np.float64), c, ridge)
    return newton_head(Z, y, c, ridge, loss, w0)


def phi(body, X, y, *, parameterization, activation="linear", ridge=0.0, loss="mse"):
    """Phi(M) = min_w L(M, w) + ridge/2 ||w||^2."""
    w = best_response_head(body, X, y, parameterization=parameterization, activation=activation, ridge=ridge,
                           loss=loss)
    value = loss_and_grads(list(body) + [w], X, y, parameterization=parameterization, activation=activation,
                           loss=loss)[0]
    return value + 0.5 * ridge * float(np.sum(w * w))


def phi_grad(body, X, y, *, parameterization, activation="linear", ridge=0.0, loss="mse", w0=None):
    """[dPhi/dW_l] over the body: the loss gradient at the best-response head (the envelope theorem:
    the head's gradient of L + ridge/2 ||w||^2 vanishes there); Newton starts from ``w0``."""
    w = best_response_head(body, X, y, parameterization=parameterization, activation=activation, ridge=ridge,
                           loss=loss, w0=w0)
    grads = loss_and_grads(list(body) + [w], X, y, parameterization=parameterization, activation=activation,
                           loss=loss)[1]
    return grads[:-1]


def flatten_body(body):
    """The body's weights as one vector: W_1 row-major, then W_2, ..."""
    return np.concatenate([np.asarray(W, dtype=np.float64).ravel() for W in body])


def phi_hessian_fd(body, X, y, *, eps=1e-5, **kw):
    """The Hessian of Phi over the body, in :func:`flatten_body` order, (P, P): central differences of
    :func:`phi_grad`, symmetrized (error O(eps^2)); Newton starts from the minimiser at ``body``."""
    kw["w0"] = best_response_head(body, X, y, **kw)
    shapes = [np.shape(W) for W in body]
    cuts = np.cumsum([0] + [a * b for a, b in shapes])
    theta = flatten_body(body)
    unflat = lambda th: [th[i:j].reshape(s) for i, j, s in zip(cuts[:-1], cuts[1:], shapes)]
    hess = np.empty((theta.size, theta.size))
    for i in range(theta.size):
        e = np.zeros_like(theta)
        e[i] = eps
        plus = flatten_body(phi_grad(unflat(theta + e), X, y, **kw))
        minus = flatten_body(phi_grad(unflat(theta - e), X, y, **kw))
        hess[:, i] = (plus - minus) / (2.0 * eps)
    return 0.5 * (hess + hess.T)


def reference_train_heads(params0, X, y, *, lr_body, lr_head, steps, parameterization, activation="linear",
                          head="gd", update="simultaneous", head_steps=1, ridge=0.0, loss="mse"):
    """Full-batch training of one student with a head, steps t = 0..steps. At each t: the head rule at the
    current body (``best_response``: the minimiser; ``alternating``: ``head_steps`` GD steps of the
    head at rate ``lr_head`` on L, no ridge; simultaneous gd: nothing), then the loss is recorded, then
    (t < steps) every body layer moves by ``lr_body`` times its gradient, and the head by ``lr_head``
    times its own only under simultaneous gd. Returns "train_loss" (steps + 1,) and "params": per t the
    weights [W_1..W_m] at which that loss was taken."""
    params = _as_params(params0)
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    kw = dict(parameterization=parameterization, activation=activation, loss=loss)
    out = {"train_loss": np.empty(steps + 1), "params": []}
    with np.errstate(all="ignore"):  # divergence is allowed
        for t in range(steps + 1):
            if head == "best_response":
                params[-1] = best_response_head(params[:-1], X, y, ridge=ridge, **kw)
            elif update == "alternating":
                for _ in range(head_steps):
                    params[-1] = params[-1] - lr_head * loss_and_grads(params, X, y, **kw)[1][-1]
            value, grads = loss_and_grads(params, X, y, **kw)
            out["train_loss"][t] = value
            out["params"].append([W.copy() for W in params])
            if t < steps:
                head_moves = head == "gd" and update == "simultaneous"
                params = ([W - lr_body * G for W, G in zip(params[:-1], grads[:-1])]
                          + [params[-1] - lr_head * grads[-1] if head_moves else params[-1]])
    return out
