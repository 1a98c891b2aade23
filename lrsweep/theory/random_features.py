r"""Expected test loss of SGD on a power-law random-feature model, and optimal schedules (seed 004).

Bordelon & Mori 2026, "Theory of Optimal Learning Rate Schedules and Scaling Laws for a Random
Feature Model" (arXiv 2602.04774). The seed's extraction lost most formulas; everything below is
re-derived here, except where an item says "seed eq. 82".

Model. Features x in R^N with independent x_k ~ N(0, lambda_k), lambda_k = k^-b; target
w*_k = k^((b-a)/2) (lambda_k w*_k^2 = k^-a); labels y = w*.x + sigma xi. A linear student w, started
at 0, trained on 1/2 mean_batch (w.x - y)^2 with fresh samples every step. Test loss is the excess
risk L(w) = sum_k lambda_k (w_k - w*_k)^2 (no 1/2). Step t = 0..T-1 uses rate eta_t, batch m_t,
momentum beta_t; curves hold L before step t, t = 0..T (index T: after the last step).

1. Exact recursions (:func:`loss_curves`)
-----------------------------------------
e = w - w*; one sample's gradient is g = x (x.e - sigma xi). Gaussian x has E x_k^4 = 3 lambda_k^2, so
E[x_k^2 (x.e)^2] = 2 lambda_k^2 e_k^2 + lambda_k sum_j lambda_j e_j^2, and for the mean of m samples

    E[g_k | e] = lambda_k e_k,
    E[g_k^2 | e] = ((m+1)/m) lambda_k^2 e_k^2 + (lambda_k / m)(sum_j lambda_j e_j^2 + sigma^2).

Cross-mode moments never enter a diagonal second moment, so C_k = E e_k^2 closes (L = sum_k lambda_k C_k):

    SGD:  C_k' = (1 - 2 eta lambda_k + ((m+1)/m) eta^2 lambda_k^2) C_k + (eta^2/m) lambda_k (L + sigma^2).

Heavy ball (optax.trace: v' = beta v + g, w' = w - eta v', v_0 = 0), per mode P = E e^2, Q = E e v,
R = E v^2 (P_0 = w*^2, Q_0 = R_0 = 0), using E[v g | e, v] = lambda v e:

    R' = beta^2 R + 2 beta lambda Q + ((m+1)/m) lambda^2 P + (lambda/m)(L + sigma^2)
    Q' = E[(e - eta v') v'] = beta Q + lambda P - eta R'
    P' = E[(e - eta v')^2] = P - 2 eta (beta Q + lambda P) + eta^2 R'.

beta = 0 gives back SGD. Both are exact (no large-N limit), linear in the state for a given schedule.

2. Stability (:func:`stability_limit`)
--------------------------------------
For a constant rate and batch the SGD map is C' = A C + b, A = diag(a_k) + (eta^2/m) lambda lambda^T,
a_k = 1 - 2 eta lambda_k + ((m+1)/m) eta^2 lambda_k^2 > 0. A is positive, so its Perron root is < 1
iff every a_k < 1 and the fixed-point equation of the rank-one part has its root beyond 1:
F(eta) = sum_k (eta lambda_k / m) / (2 - ((m+1)/m) eta lambda_k) < 1. F increases with eta; the largest
stable constant rate is the root of F = 1 (bisection). It is the default upper bound eta_max.

3. Scaling statements (:func:`statements`; sigma > 0 throughout)
-----------------------------------------------------------------
s = (a-1)/b: noiseless gradient flow gives L ~ (sum eta)^-s. Continuous time, the noise adds
sigma^2 int_0^T eta(t)^2 K(int_t^T eta) dt with K(u) = sum_k lambda_k^2 e^{-2 lambda_k u} ~ u^-(2-1/b).

- Constant rate: noise sigma^2 eta int_0^{eta T} K ~ sigma^2 eta (K integrable), so
  L ~ (eta T)^-s + sigma^2 eta: eta* ~ T^-(a-1)/(a-1+b), L* ~ T^-(a-1)/(a-1+b). A power law
  c (1+t)^-chi keeps the exponent (chi -> s/(1+s) balances the same two terms at every t).
- Polynomial eta_p (1 - t/T)^delta, tau = 1 - t/T: the noise is
  eta_p^2 T (eta_p T)^-(2-1/b) int tau^(2 delta - (delta+1)(2-1/b)) d tau; delta = 2b - 1 makes the
  exponent 0 (every time contributes equally; seed eq. 82 gives delta = 2b-1). Then
  L ~ (eta_p T)^-s + sigma^2 eta_p^(1/b) T^-(1-1/b), minimised at eta_p ~ T^-(a-b)/a: xi = (a-b)/a and
  L* ~ T^-(a-1)/a when a > b (easy phase).
- a < b (hard phase): that eta_p would grow with T, so the rate sits at the stability limit (xi = 0)
  and is annealed only at the end, over T - t_s ~ T^(1-(b-a)/(2b-1)) steps (seed eq. 82), a vanishing
  fraction; L* ~ T^-(a-1)/b, the gradient-flow rate at eta = O(1).

4. Searches (:func:`search`)
----------------------------
All horizons at once: one scan of T_max steps over (horizon, candidate) rows, rates masked to 0 from
T_h on (so the state, and the loss, stay at their value at T_h). Families (constant, power, polynomial,
wsd; shapes of :mod:`lrsweep.schedules`) by a deterministic coordinate zoom search; free schedules by
Adam on log L_T through a hand-written adjoint of the recursion (checkpointed every ``_SEGMENT``
steps; jax's own scan transpose is ~5x slower here), warm-started from the best family.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrsweep import schedules

_SEGMENT = 100      # checkpoint spacing of the adjoint (steps)
_UNROLL = 1
_CAP = 1e30         # optimiser states are clipped here so a diverging candidate keeps finite gradients

KINDS = ("optimal", "constant", "power", "polynomial", "wsd", "optimal_batch", "optimal_momentum")


# ----------------------------------------------------------------------------------------------- model
def spectrum(n_features, a, b):
    """lambda_k = k^-b and w*_k = k^((b-a)/2), k = 1..n_features (numpy float64)."""
    if not isinstance(n_features, (int, np.integer)) or isinstance(n_features, bool) or n_features < 1:
        raise ValueError(f"n_features: a positive integer, got {n_features!r}")
    for name, value in (("a", a), ("b", b)):
        if not (np.isscalar(value) and np.isfinite(value) and value > 0):
            raise ValueError(f"{name}: a positive finite number, got {value!r}")
    k = np.arange(1, n_features + 1, dtype=np.float64)
    return k ** -float(b), k ** ((float(b) - float(a)) / 2.0)


def _check_model(lam, c0, noise_var):
    lam = np.asarray(lam, np.float64)
    c0 = np.asarray(c0, np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("lam: a non-empty 1-d array of positive finite eigenvalues")
    if c0.shape != lam.shape or not np.all(np.isfinite(c0)) or np.any(c0 < 0):
        raise ValueError(f"c0: non-negative finite initial second moments of shape {lam.shape}")
    if not (np.isscalar(noise_var) and np.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var: a non-negative finite number, got {noise_var!r}")
    return lam, c0, float(noise_var)


def _sgd_step(lam, noise_var, state, x):
    """One SGD step of the C recursion for rows (B, N); x = (eta (B,), m (B,))."""
    (c,) = state
    eta, m = x
    loss = c @ lam
    a = 1.0 - 2.0 * eta[:, None] * lam + ((m + 1.0) / m * eta ** 2)[:, None] * lam ** 2
    return (a * c + (eta ** 2 / m * (loss + noise_var))[:, None] * lam,)


def _momentum_step(lam, noise_var, state, x):
    """One heavy-ball step of the (P, Q, R) recursion; x = (eta, m, beta), each (B,)."""
    p, q, r = state
    eta, m, beta = (v[:, None] for v in x)
    loss = (p @ lam)[:, None]
    r = beta ** 2 * r + 2.0 * beta * lam * q + (m + 1.0) / m * lam ** 2 * p + lam / m * (loss + noise_var)
    drift = beta * q + lam * p
    return (p - 2.0 * eta * drift + eta ** 2 * r, drift - eta * r, r)


def _sgd_back(lam, noise_var, cot, state, x):
    """Adjoint of :func:`_sgd_step` written out (jax's transpose of the step is ~3x slower)."""
    (g,), (c,) = cot, state
    eta, m = x
    kappa = (m + 1.0) / m
    loss = c @ lam
    g_lam = g @ lam
    a = 1.0 - 2.0 * eta[:, None] * lam + (kappa * eta ** 2)[:, None] * lam ** 2
    gc_lam, gc_lam2 = (g * c) @ lam, (g * c) @ lam ** 2
    d_eta = -2.0 * gc_lam + 2.0 * kappa * eta * gc_lam2 + 2.0 * eta / m * (loss + noise_var) * g_lam
    d_m = -(eta / m) ** 2 * (gc_lam2 + (loss + noise_var) * g_lam)
    return (a * g + (eta ** 2 / m * g_lam)[:, None] * lam,), (d_eta, d_m)


def _momentum_back(lam, noise_var, cot, state, x):
    """Adjoint of :func:`_momentum_step` by jax.vjp."""
    _, vjp = jax.vjp(lambda s, xx: _momentum_step(lam, noise_var, s, xx), state, x)
    return vjp(cot)


def _initial_state(c0, rows, momentum):
    c = jnp.broadcast_to(c0, (rows, c0.shape[-1]))
    return (c, jnp.zeros_like(c), jnp.zeros_like(c)) if momentum else (c,)


def _curves(lam, c0, noise_var, xs, momentum):
    """Loss before every step and after the last: xs are (T, B) arrays; returns (B, T+1)."""
    step = _momentum_step if momentum else _sgd_step

    def body(state, x):
        return step(lam, noise_var, state, x), state[0] @ lam

    state, losses = jax.lax.scan(body, _initial_state(c0, xs[0].shape[1], momentum), xs, unroll=_UNROLL)
    return jnp.concatenate([losses.T, (state[0] @ lam)[:, None]], axis=1)


@functools.partial(jax.jit, static_argnames=("momentum",))
def _curves_jit(lam, c0, noise_var, xs, momentum):
    return _curves(lam, c0, noise_var, xs, momentum)


def loss_curves(lam, c0, noise_var, lr, batch=None, momentum=None):
    """Expected test loss before each step and after the last (section 1).

    Args:
      lam: (N,) eigenvalues; c0: (N,) initial E e_k^2 (w*^2 for w_0 = 0); noise_var: sigma^2.
      lr: (..., T) per-step rates; batch: per-step batch sizes (floats >= 1) broadcastable to lr,
        default 1; momentum: per-step beta broadcastable to lr, None for the plain SGD recursion.
    Returns:
      (..., T+1) expected losses (float64 when x64 is on).
    """
    lam, c0, noise_var = _check_model(lam, c0, noise_var)
    lr = np.asarray(lr, np.float64)
    if lr.ndim < 1 or lr.shape[-1] < 1 or not np.all(np.isfinite(lr)):
        raise ValueError("lr: a finite array of per-step rates with steps on the last axis")
    shapes = [lr.shape]
    batch = np.ones(()) if batch is None else np.asarray(batch, np.float64)
    if not np.all(np.isfinite(batch)) or np.any(batch < 1):
        raise ValueError("batch: per-step batch sizes >= 1")
    shapes.append(batch.shape)
    if momentum is not None:
        momentum = np.asarray(momentum, np.float64)
        if not np.all(np.isfinite(momentum)) or np.any(momentum < 0) or np.any(momentum >= 1):
            raise ValueError("momentum: per-step beta in [0, 1)")
        shapes.append(momentum.shape)
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"batch/momentum: shapes {shapes[1:]} do not broadcast to lr's {lr.shape}") from None
    steps = shape[-1]
    flat = [np.broadcast_to(v, shape).reshape(-1, steps).T for v in
            ([lr, batch] if momentum is None else [lr, batch, momentum])]
    dtype = jnp.result_type(float)
    xs = tuple(jnp.asarray(v, dtype) for v in flat)
    out = _curves_jit(jnp.asarray(lam, dtype), jnp.asarray(c0, dtype), jnp.asarray(noise_var, dtype), xs,
                      momentum is not None)
    return np.asarray(out).reshape(shape[:-1] + (steps + 1,))


def stability_limit(lam, batch_size=1.0):
    """Largest stable constant SGD rate for batch m (section 2): root of F(eta) = 1, a_k < 1."""
    lam = np.asarray(lam, np.float64)
    m = float(batch_size)
    if not m >= 1:
        raise ValueError(f"batch_size: >= 1, got {batch_size!r}")
    kappa = (m + 1.0) / m
    hi = 2.0 / (kappa * lam.max()) * (1 - 1e-12)

    def f(eta):
        return np.sum(eta * lam / m / (2.0 - kappa * eta * lam))

    if f(hi) < 1.0:
        return hi
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 1.0 else (lo, mid)
    return lo


# ------------------------------------------------------------------------------ final loss + adjoint
def _final_state(lam, noise_var, state, xs, step):
    def seg(state, x):
        new = jax.lax.scan(lambda s, xx: (step(lam, noise_var, s, xx), None), state, x, unroll=_UNROLL)[0]
        new = tuple(jnp.clip(v, -_CAP, _CAP) for v in new)
        return new, state
    return jax.lax.scan(seg, state, xs)


def _segments(xs):
    steps = xs[0].shape[0]
    return tuple(v.reshape(steps // _SEGMENT, _SEGMENT, *v.shape[1:]) for v in xs)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _log_final_loss(lam, c0, noise_var, momentum, xs):
    """log L_T for rows of per-step inputs xs ((T, B) arrays, T a multiple of _SEGMENT)."""
    return _log_final_loss_fwd(lam, c0, noise_var, momentum, xs)[0]


def _log_final_loss_fwd(lam, c0, noise_var, momentum, xs):
    step = _momentum_step if momentum else _sgd_step
    state, checkpoints = _final_state(lam, noise_var, _initial_state(c0, xs[0].shape[1], momentum),
                                      _segments(xs), step)
    loss = state[0] @ lam
    return jnp.log(loss), (lam, c0, noise_var, xs, checkpoints, loss)


def _log_final_loss_bwd(momentum, res, g):
    lam, c0, noise_var, xs, checkpoints, loss = res
    step = _momentum_step if momentum else _sgd_step
    cot = tuple(jnp.zeros_like(v[0]) for v in checkpoints)
    cot = (lam * (g / loss)[:, None],) + cot[1:]
    back_step = _momentum_back if momentum else _sgd_back

    def seg(cot, inp):
        start, x = inp
        states = jax.lax.scan(lambda s, xx: (step(lam, noise_var, s, xx), s), start, x, unroll=_UNROLL)[1]

        return jax.lax.scan(lambda c, inp: back_step(lam, noise_var, c, *inp), cot, (states, x), reverse=True,
                            unroll=_UNROLL)

    _, d_xs = jax.lax.scan(seg, cot, (tuple(c for c in checkpoints), _segments(xs)), reverse=True)
    d_xs = tuple(jnp.nan_to_num(d.reshape(xs[0].shape)) for d in d_xs)
    return None, None, None, d_xs


_log_final_loss.defvjp(_log_final_loss_fwd, _log_final_loss_bwd)


# ------------------------------------------------------------------------------------------ helpers
def _check_horizons(horizons):
    horizons = np.asarray(horizons)
    if horizons.ndim != 1 or horizons.size == 0 or not np.issubdtype(horizons.dtype, np.integer) \
            or np.any(horizons < 1):
        raise ValueError(f"horizons: a non-empty 1-d list of positive integers, got {horizons.tolist()!r}")
    return horizons.astype(np.int64)


def _padded_steps(horizons):
    return int(math.ceil(int(horizons.max()) / _SEGMENT) * _SEGMENT)


def _eta_max(lam, eta_max, batch_size):
    if eta_max is None:
        return stability_limit(lam, batch_size)
    if not (np.isscalar(eta_max) and np.isfinite(eta_max) and eta_max > 0):
        raise ValueError(f"eta_max: a positive finite number, got {eta_max!r}")
    return float(eta_max)


class _Problem:
    """The model, the horizons and a jitted final-loss evaluator over (H, G) candidate schedules."""

    def __init__(self, lam, c0, noise_var, horizons, batch_size=1.0):
        lam, c0, noise_var = _check_model(lam, c0, noise_var)
        if not (np.isscalar(batch_size) and batch_size >= 1):
            raise ValueError(f"batch_size: a number >= 1, got {batch_size!r}")
        self.batch_size = float(batch_size)
        self.horizons = _check_horizons(horizons)
        self.steps = _padded_steps(self.horizons)
        dtype = jnp.result_type(float)
        self.lam, self.c0, self.noise_var = (jnp.asarray(v, dtype) for v in (lam, c0, noise_var))
        self.lam_np = lam
        self.t = jnp.arange(self.steps, dtype=dtype)
        self.mask = jnp.asarray(np.arange(self.steps)[None, :] < self.horizons[:, None], dtype)

    def final_losses(self, lr, batch=None, momentum=None):
        """Final losses L_{T_h} of (H, G, T_max) rate tables (masked past T_h here)."""
        shape = lr.shape[:2]
        lr = (lr * self.mask[:, None, :]).reshape(-1, self.steps).T
        batch = jnp.full_like(lr, self.batch_size) if batch is None else jnp.broadcast_to(batch, shape + (self.steps,)).reshape(
            -1, self.steps).T
        xs = (lr, batch) if momentum is None else (lr, batch, jnp.broadcast_to(
            momentum, shape + (self.steps,)).reshape(-1, self.steps).T)
        return jnp.exp(_log_final_loss_jit(self.lam, self.c0, self.noise_var, momentum is not None, xs)).reshape(shape)

    def curves(self, lr, batch=None, momentum=None):
        lr = lr * self.mask
        xs = (lr.T, (jnp.full_like(lr, self.batch_size) if batch is None else batch).T)
        if momentum is not None:
            xs = xs + (momentum.T,)
        return np.asarray(_curves_jit(self.lam, self.c0, self.noise_var, xs, momentum is not None))


@functools.partial(jax.jit, static_argnums=(3,))
def _log_final_loss_jit(lam, c0, noise_var, momentum, xs):
    return _log_final_loss(lam, c0, noise_var, momentum, xs)


# ------------------------------------------------------------------------------------ family search
# Each family: (names, lower, upper, rates(params (G, p), T, t) -> (G, T_max)); log-rate coordinates.
def _family_rates(kind, params, horizon, t):
    """Rates of ``kind`` for candidate parameters (G, p) at one horizon, via lrsweep.schedules."""
    eta = jnp.exp(params[:, 0:1])
    if kind == "constant":
        shape = schedules.Schedule("constant", horizon, 0)
        return eta * schedules.lr_multiplier(shape, t)[None, :]
    if kind == "power":
        return eta * schedules.lr_multiplier(schedules.Schedule("power", horizon, 0, exponent=params[:, 1:2]), t)
    if kind == "polynomial":
        return eta * schedules.lr_multiplier(
            schedules.Schedule("polynomial", horizon, 0, exponent=params[:, 1:2]), t)
    if kind == "wsd":
        return eta * schedules.lr_multiplier(schedules.Schedule(
            "wsd", horizon, 0, stable_fraction=params[:, 1:2], exponent=params[:, 2:3]), t)
    raise ValueError(f"kind: unknown family {kind!r}; allowed: constant, power, polynomial, wsd")


def _family_box(kind, eta_max, span=14.0):
    top = math.log(eta_max)
    lower = {"constant": [top - span], "power": [top - span, 0.0], "polynomial": [top - span, 0.0],
             "wsd": [top - span, 0.0, 0.0]}[kind]
    upper = {"constant": [top], "power": [top, 1.5], "polynomial": [top, 12.0], "wsd": [top, 0.999, 12.0]}[kind]
    return np.asarray(lower), np.asarray(upper)


def best_family(problem, kind, eta_max, *, n_grid=7, rounds=4, shrink=0.3, x0=None):
    """Parameters (H, p) minimising L_{T_h} in a family: coordinate zoom search, deterministic.

    Each round scans every coordinate over ``n_grid`` points of a window (the whole box first, then
    ``shrink`` times smaller around the best), all horizons and candidates in one evaluation.
    ``x0`` (H, p): a starting incumbent (kept unless beaten). Returns (params (H, p) with the rate in
    log coordinates, losses (H,)).
    """
    lower, upper = _family_box(kind, eta_max)
    n_horizons, n_params = problem.horizons.size, lower.size
    x = np.tile((lower + upper) / 2, (n_horizons, 1)) if x0 is None else np.array(x0, float)
    width = (upper - lower) / 2
    best = np.full(n_horizons, np.inf) if x0 is None else np.asarray(
        _evaluate_family(problem, kind, x[:, None, :]))[:, 0]
    offsets = np.linspace(-1.0, 1.0, n_grid)
    for _ in range(rounds):
        for j in range(n_params):
            cand = np.repeat(x[:, None, :], n_grid, axis=1)
            cand[:, :, j] = np.clip(x[:, j:j + 1] + width[j] * offsets[None, :], lower[j], upper[j])
            cand[:, n_grid // 2, j] = x[:, j]          # the incumbent is always a candidate
            losses = np.asarray(_evaluate_family(problem, kind, cand))
            losses = np.where(np.isfinite(losses), losses, np.inf)
            idx = np.argmin(losses, axis=1)
            pick = losses[np.arange(n_horizons), idx] < best
            best = np.where(pick, losses[np.arange(n_horizons), idx], best)
            x = np.where(pick[:, None], cand[np.arange(n_horizons), idx], x)
        width = width * shrink
    return x, best


def _family_table(problem, kind, params):
    """(H, G, T_max) rates of candidate parameters (H, G, p)."""
    params = jnp.asarray(params, problem.t.dtype)
    return jnp.stack([_family_rates(kind, params[h], int(T), problem.t) for h, T in enumerate(problem.horizons)])


def _evaluate_family(problem, kind, params):
    return problem.final_losses(_family_table(problem, kind, params))


def _family_result(problem, kind, eta_max, x0=None):
    params, loss = best_family(problem, kind, eta_max, x0=x0)
    lr = np.asarray(_family_table(problem, kind, params[:, None, :])[:, 0] * problem.mask)
    names = {"constant": ("eta",), "power": ("c", "chi"), "polynomial": ("eta_p", "delta"),
             "wsd": ("eta_0", "stable_fraction", "delta")}[kind]
    out = {name: (np.exp(params[:, i]) if i == 0 else params[:, i]) for i, name in enumerate(names)}
    ones = np.where(np.asarray(problem.mask) > 0, problem.batch_size, 0.0)
    out.update(lr=lr, batch=ones, momentum=np.zeros_like(lr), loss=loss, curve=problem.curves(jnp.asarray(lr)))
    return out


FAMILIES = {"constant": "eta", "power": "c (1+t)^-chi, c <= eta_max, chi in [0, 1.5]",
            "polynomial": "eta_p (1 - t/T)^delta, delta in [0, 12]",
            "wsd": "warmup-free WSD (eta_0, stable fraction f, delta): lrsweep.schedules' wsd shape"}


def best_family_schedule(kind, lam, c0, noise_var, horizons, *, eta_max=None, batch_size=1.0):
    """The best schedule of a family (:data:`FAMILIES`) per horizon: dict of its parameters (H,) and
    lr, batch, momentum (H, T_max), loss (H,), curve (H, T_max + 1)."""
    if kind not in FAMILIES:
        raise ValueError(f"kind: one of {', '.join(FAMILIES)}, got {kind!r}")
    return _family_result(_Problem(lam, c0, noise_var, horizons, batch_size), kind,
                          _eta_max(lam, eta_max, batch_size))


# ------------------------------------------------------------------------------- free schedules
def _node_weights(problem, n_segments, constant=False):
    """(H, T_max, K+1) linear-interpolation weights of nodes equally spaced in z = log(1-t/T)/log(1/T);
    ``constant``: one-hot weights of the segment [z_k, z_{k+1}) a step falls in (K pieces, node K unused)."""
    weights = np.zeros((problem.horizons.size, problem.steps, n_segments + 1))
    for h, T in enumerate(problem.horizons):
        t = np.arange(int(T))
        z = np.log1p(-t / T) / math.log(1.0 / T) if T > 1 else np.zeros(1)
        pos = np.clip(z * n_segments, 0.0, n_segments)
        lo = np.minimum(np.floor(pos).astype(int), n_segments - 1)
        frac = np.zeros_like(pos) if constant else pos - lo
        weights[h, t, lo] = 1.0 - frac
        weights[h, t, lo + 1] += frac
    return weights


def _logit(p):
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return np.log(p) - np.log1p(-p)


PARAMETERIZATIONS = ("segments", "piecewise_constant", "array")


def optimize_schedules(lam, c0, noise_var, horizons, *, parameterization="segments", n_segments=32, eta_max=None,
                       batch_size=1, optimize_batch=False, sample_budget=None, optimize_momentum=False,
                       momentum_max=0.99, iterations=150, learning_rate=0.1, init_lr=None):
    """Minimise each horizon's final expected loss over per-step schedules by Adam on log L_{T_h}.

    Rates eta_t = eta_max sigmoid(y_t) in [0, eta_max]; y is per step (``"array"``), linear between
    ``n_segments + 1`` nodes equally spaced in log(1 - t/T) (``"segments"``: a polynomial (1-t/T)^delta
    is a line there), or constant on the ``n_segments`` pieces between them (``"piecewise_constant"``). Batches (``optimize_batch``): m_t = 1 + (B_h - T_h) softmax(z)_t, so sum m_t = B_h
    (``sample_budget``, default batch_size T_h). Momentum (``optimize_momentum``): beta_t =
    momentum_max sigmoid(u_t). All horizons in one program; rates after T_h are 0.

    Args:
      init_lr: (H, T_max) starting rates (default: the best constant rate per horizon).
    Returns:
      dict of numpy arrays: lr, batch, momentum (H, T_max), loss (H,), curve (H, T_max+1).
    """
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}")
    if not isinstance(n_segments, (int, np.integer)) or n_segments < 1:
        raise ValueError(f"n_segments: a positive integer, got {n_segments!r}")
    if not (np.isscalar(batch_size) and batch_size >= 1):
        raise ValueError(f"batch_size: a number >= 1, got {batch_size!r}")
    if not (0 <= momentum_max < 1):
        raise ValueError(f"momentum_max: in [0, 1), got {momentum_max!r}")
    if not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations: a non-negative integer, got {iterations!r}")
    problem = _Problem(lam, c0, noise_var, horizons, batch_size)
    n_h, steps = problem.horizons.size, problem.steps
    eta_max = _eta_max(lam, eta_max, batch_size)
    if sample_budget is None:
        budget = batch_size * problem.horizons.astype(float)
    else:
        budget = np.broadcast_to(np.asarray(sample_budget, float), (n_h,)).copy()
        if not np.all(budget >= problem.horizons):
            raise ValueError(f"sample_budget: at least one sample per step (>= {problem.horizons.tolist()})")
    mask = problem.mask
    if init_lr is None:
        init_lr = np.asarray(_family_result(problem, "constant", eta_max)["lr"])
    init_lr = np.broadcast_to(np.asarray(init_lr, float), (n_h, steps))
    y0 = _logit(np.where(np.asarray(mask) > 0, init_lr, init_lr[:, :1]) / eta_max)
    if parameterization in ("segments", "piecewise_constant"):
        weights = jnp.asarray(_node_weights(problem, n_segments, parameterization == "piecewise_constant"),
                              problem.t.dtype)
        nodes = np.linspace(0.0, 1.0, n_segments + 1)
        # node values: the start schedule at node times t = T (1 - T^-z)
        node_t = np.minimum((problem.horizons[:, None] * (1.0 - problem.horizons[:, None] ** -nodes[None, :]))
                            .astype(int), problem.horizons[:, None] - 1)
        y0 = np.take_along_axis(y0, node_t, axis=1)

        def expand(p):
            return jnp.einsum("htk,hk->ht", weights, p)
    else:
        def expand(p):
            return p
    params = {"lr": jnp.asarray(y0, problem.t.dtype)}
    if optimize_batch:
        params["batch"] = jnp.zeros_like(params["lr"])
    if optimize_momentum:
        params["momentum"] = jnp.full_like(params["lr"], -3.0)
    budget_j = jnp.asarray(budget, problem.t.dtype)
    horizons_j = jnp.asarray(problem.horizons, problem.t.dtype)

    def schedules_of(p):
        lr = eta_max * jax.nn.sigmoid(expand(p["lr"])) * mask
        if "batch" in p:
            logits = jnp.where(mask > 0, expand(p["batch"]), -jnp.inf)
            batch = 1.0 + (budget_j - horizons_j)[:, None] * jax.nn.softmax(logits, axis=1)
        else:
            batch = jnp.full_like(lr, float(batch_size))
        momentum = momentum_max * jax.nn.sigmoid(expand(p["momentum"])) * mask if "momentum" in p else None
        return lr, batch, momentum

    def objective(p):
        lr, batch, momentum = schedules_of(p)
        xs = (lr.T, batch.T) + (() if momentum is None else (momentum.T,))
        logs = _log_final_loss(problem.lam, problem.c0, problem.noise_var, momentum is not None, xs)
        return jnp.sum(jnp.where(jnp.isfinite(logs), logs, 1e3)), logs

    opt = optax.adam(optax.cosine_decay_schedule(learning_rate, max(int(iterations), 1), alpha=0.05))

    @jax.jit
    def update(p, state, best_p, best):
        (_, logs), grads = jax.value_and_grad(objective, has_aux=True)(p)
        improved = jnp.isfinite(logs) & (logs < best)
        best_p = jax.tree_util.tree_map(
            lambda b, v: jnp.where(improved[:, None], v, b), best_p, p)
        best = jnp.where(improved, logs, best)
        grads = jax.tree_util.tree_map(jnp.nan_to_num, grads)
        updates, state = opt.update(grads, state, p)
        return optax.apply_updates(p, updates), state, best_p, best

    state = opt.init(params)
    best_p, best = params, jnp.full((n_h,), jnp.inf, problem.t.dtype)
    for _ in range(int(iterations)):
        params, state, best_p, best = update(params, state, best_p, best)
    _, logs = objective(params)                   # the last iterate is a candidate too
    improved = np.asarray(jnp.isfinite(logs) & (logs < best))
    best_p = jax.tree_util.tree_map(lambda b, v: jnp.where(improved[:, None], v, b), best_p, params)
    lr, batch, momentum = schedules_of(best_p)
    curve = problem.curves(lr, batch, momentum)
    loss = curve[np.arange(n_h), problem.horizons]
    zero = np.zeros((n_h, steps))
    return {"lr": np.asarray(lr), "batch": np.asarray(batch * mask), "momentum":
            zero if momentum is None else np.asarray(momentum), "loss": loss, "curve": curve}


def search(lam, c0, noise_var, horizons, kinds=("optimal", "constant", "power", "polynomial", "wsd"), *,
           eta_max=None, batch_size=1.0, parameterization="segments", n_segments=32, iterations=50,
           learning_rate=0.1, sample_budget=None, momentum_max=0.99):
    """Per-horizon best schedules of every kind in ``kinds`` (:data:`KINDS`).

    ``optimal`` starts from the better of the best polynomial and WSD (searched if not asked for);
    ``optimal_batch`` and ``optimal_momentum`` start from ``optimal``. Returns {kind: dict of numpy
    arrays lr, batch, momentum (H, T_max), loss (H,), curve (H, T_max+1), plus a family's parameters}.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds: {unknown or 'empty'} not among {', '.join(KINDS)}")
    problem = _Problem(lam, c0, noise_var, horizons, batch_size)
    eta_max = _eta_max(lam, eta_max, batch_size)
    out = {}
    families = [k for k in ("constant", "power", "polynomial", "wsd") if k in kinds]
    if any(k.startswith("optimal") for k in kinds):
        families += [k for k in ("polynomial", "wsd") if k not in families]
    for kind in families:
        x0 = None
        if kind == "wsd" and "polynomial" in out:      # WSD with f = 0 is the polynomial: start there
            poly = out["polynomial"]
            x0 = np.stack([np.log(poly["eta_p"]), np.zeros_like(poly["delta"]), poly["delta"]], axis=1)
        out[kind] = _family_result(problem, kind, eta_max, x0)
    if any(k.startswith("optimal") for k in kinds):
        start = np.where((out["polynomial"]["loss"] <= out["wsd"]["loss"])[:, None], out["polynomial"]["lr"],
                         out["wsd"]["lr"])
        common = dict(eta_max=eta_max, batch_size=batch_size, parameterization=parameterization,
                      n_segments=n_segments, iterations=iterations, learning_rate=learning_rate)
        out["optimal"] = optimize_schedules(lam, c0, noise_var, horizons, init_lr=start, **common)
        if "optimal_batch" in kinds:
            out["optimal_batch"] = optimize_schedules(lam, c0, noise_var, horizons, init_lr=out["optimal"]["lr"],
                                                      optimize_batch=True, sample_budget=sample_budget, **common)
        if "optimal_momentum" in kinds:
            out["optimal_momentum"] = optimize_schedules(lam, c0, noise_var, horizons, init_lr=out["optimal"]["lr"],
                                                         optimize_momentum=True, momentum_max=momentum_max, **common)
    return {k: out[k] for k in kinds}


# ------------------------------------------------------------------------------------------ fitting
def fit_exponent(T, y):
    """Least-squares slope of log y against log T and its standard error: y ~ T^slope."""
    x, v = np.log(np.asarray(T, float)), np.log(np.asarray(y, float))
    if x.shape != v.shape or x.size < 2:
        raise ValueError("T, y: equal-length 1-d arrays with at least 2 points")
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, v, rcond=None)
    resid = v - A @ coef
    dof = max(x.size - 2, 1)
    cov = (resid @ resid / dof) * np.linalg.inv(A.T @ A)
    return float(coef[0]), float(np.sqrt(max(cov[0, 0], 0.0)))


def fit_decay(lr, T, edge=1.0, plateau=0.9):
    """Fit lr_t = eta_p (1 - t/T)^delta by log-log least squares over the decay: the steps after the
    last one at >= ``plateau`` times the peak (a WSD's stable phase, or t = 0 for a pure decay) and
    before the edge where the remaining intrinsic time sum_{s >= t} lr_s drops below ``edge`` (the
    seed's eq. 83 edge boundary chi(t*) = 1: beyond it the continuous-time shape does not apply).
    Returns dict delta, peak (the fitted eta_p), n (steps fitted)."""
    T = int(T)
    lr = np.asarray(lr, float)[:T]
    t = np.arange(T)
    remaining = np.cumsum(lr[::-1])[::-1]
    start = int(np.nonzero(lr >= plateau * lr.max())[0][-1]) if lr.max() > 0 else 0
    keep = (lr > 0) & (t >= start) & (remaining >= edge)
    if keep.sum() < 2:
        keep = lr > 0
    if keep.sum() < 2:
        raise ValueError("lr: at least two positive rates before T")
    slope, intercept = np.polyfit(np.log1p(-t[keep] / T), np.log(lr[keep]), 1)
    return {"delta": float(slope), "peak": float(np.exp(intercept)), "n": int(keep.sum())}


def decay_window(lr, T, level=0.5):
    """T - t_s: steps from the end over which the rate stays below ``level`` times its plateau
    (the largest rate before T)."""
    if not 0 < level < 1:
        raise ValueError(f"level: in (0, 1), got {level!r}")
    T = int(T)
    lr = np.asarray(lr, float)[:T]
    above = np.nonzero(lr >= level * lr.max())[0]
    return int(T - (above[-1] + 1))


# --------------------------------------------------------------------------------------- statements
def statements(a, b):
    """The scaling predictions of section 3 for exponents a, b (> 1), each {value, source}."""
    for name, value in (("a", a), ("b", b)):
        if not (np.isscalar(value) and np.isfinite(value) and value > 1):
            raise ValueError(f"{name}: a finite number > 1, got {value!r}")
    a, b = float(a), float(b)
    seed, derived = "seed eq. 82", "derived (docstring)"
    easy = a > b
    s = (a - 1) / b
    const = (a - 1) / (a - 1 + b)
    return {
        "phase": {"value": "easy" if easy else "hard", "source": derived},
        "s": {"value": s, "source": derived},
        "delta": {"value": 2 * b - 1, "source": seed},
        "window_exponent": {"value": 1.0 if easy else 1 - (b - a) / (2 * b - 1), "source": seed},
        "xi": {"value": (a - b) / a if easy else 0.0, "source": derived},
        "loss_exponent_optimal": {"value": (a - 1) / a if easy else (a - 1) / b, "source": derived},
        "constant_rate_exponent": {"value": const, "source": derived},
        "loss_exponent_constant": {"value": const, "source": derived},
        "loss_exponent_power": {"value": const, "source": derived},
        "power_chi": {"value": s / (1 + s), "source": derived},
    }
