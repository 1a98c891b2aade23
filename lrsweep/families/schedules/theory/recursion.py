r"""Exact second-moment recursions of SGD and heavy ball on :class:`~.model.Modes` (sections 1 and 4
of :mod:`lrsweep.families.schedules.theory`), their block form for long horizons, and log L_T with a
hand-written adjoint for the schedule searches.

Inputs per step (or block) are (T, B) arrays, B the rows (schedules) scanned together:
``(lr, batch)`` for SGD, ``(lr, batch, momentum)`` for heavy ball, ``(lr, batch, size)`` for blocks
of ``size`` steps at one rate and batch (size 0 is the identity, a padding block).
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .model import Modes, as_modes

SEGMENT = 100      # checkpoint spacing of the adjoint (steps or blocks)
CAP = 1e30         # states are clipped here so a diverging candidate keeps finite gradients
SERIES = 1e-3      # |x n| below which the block sums use their series (x = 1 - a)


class Params(NamedTuple):
    """The model as jnp arrays: lam (K,), lam_w = weight * lam (K,), c0 (K,), offset, noise_var."""
    lam: jax.Array
    lam_w: jax.Array
    c0: jax.Array
    offset: jax.Array
    noise_var: jax.Array


def params(modes: Modes, noise_var) -> Params:
    if not (np.isscalar(noise_var) and np.isfinite(noise_var) and noise_var >= 0):
        raise ValueError(f"noise_var: a non-negative finite number, got {noise_var!r}")
    dtype = jnp.result_type(float)
    return Params(*(jnp.asarray(v, dtype) for v in (modes.lam, modes.weight * modes.lam, modes.c0, modes.offset,
                                                     float(noise_var))))


def _loss(p: Params, c):
    return c @ p.lam_w + p.offset


# -------------------------------------------------------------------------------------------- steps
def sgd_step(p: Params, state, x):
    """One SGD step of C_k' = a_k C_k + (eta^2/m) lam_k (L + sigma^2) for rows (B, K); x = (eta, m)."""
    (c,) = state
    eta, m = x
    a = 1.0 - 2.0 * eta[:, None] * p.lam + ((m + 1.0) / m * eta ** 2)[:, None] * p.lam ** 2
    return (a * c + (eta ** 2 / m * (_loss(p, c) + p.noise_var))[:, None] * p.lam,)


def sgd_back(p: Params, cot, state, x):
    """Adjoint of :func:`sgd_step` written out (jax's transpose of the step is ~3x slower)."""
    (g,), (c,) = cot, state
    eta, m = x
    kappa = (m + 1.0) / m
    drive = _loss(p, c) + p.noise_var
    g_lam = g @ p.lam
    a = 1.0 - 2.0 * eta[:, None] * p.lam + (kappa * eta ** 2)[:, None] * p.lam ** 2
    gc_lam, gc_lam2 = (g * c) @ p.lam, (g * c) @ p.lam ** 2
    d_eta = -2.0 * gc_lam + 2.0 * kappa * eta * gc_lam2 + 2.0 * eta / m * drive * g_lam
    d_m = -(eta / m) ** 2 * (gc_lam2 + drive * g_lam)
    return (a * g + (eta ** 2 / m * g_lam)[:, None] * p.lam_w,), (d_eta, d_m)


def momentum_step(p: Params, state, x):
    """One heavy-ball step of the (P, Q, R) recursion; x = (eta, m, beta), each (B,)."""
    q_p, q, r = state
    eta, m, beta = (v[:, None] for v in x)
    drive = (_loss(p, q_p) + p.noise_var)[:, None]
    r = beta ** 2 * r + 2.0 * beta * p.lam * q + (m + 1.0) / m * p.lam ** 2 * q_p + p.lam / m * drive
    drift = beta * q + p.lam * q_p
    return (q_p - 2.0 * eta * drift + eta ** 2 * r, drift - eta * r, r)


def _block_sums(x, n):
    """a^n, S0 = sum_{j<n} a^j and S1 = sum_{j<n} j a^(n-1-j) for a = 1 - x (a > 0), block length n >= 0:
    S0 = (1 - a^n)/x and S1 = (n - S0)/x (multiply out (1 - a) S1), their series in x n where those
    cancel (|x n| < SERIES: relative error < SERIES^3; beyond it the cancellation costs < 1e-13)."""
    small = jnp.abs(x * n) < SERIES
    xs = jnp.where(small, 1.0, x)
    an = jnp.exp(n * jnp.log1p(-x))
    s0_closed = (1.0 - an) / xs
    n1, n2 = n - 1.0, n - 2.0
    s0 = jnp.where(small, n - x * n * n1 / 2 + x ** 2 * n * n1 * n2 / 6, s0_closed)
    s1 = jnp.where(small, n * n1 / 2 - x * n * n1 * n2 / 6 + x ** 2 * n * n1 * n2 * (n - 3.0) / 24,
                   (n - s0_closed) / xs)
    return an, s0, s1


def block_step(p: Params, state, x):
    """n steps at one rate eta and batch m, x = (eta, m, n), each (B,) (section 4 of the package
    docstring): every mode exactly, C_n = a^n C_0 + lam sum_j a^(n-1-j) u_j, for a drive
    u_j = (eta^2/m)(L_j + sigma^2) taken linear in j between the block's ends, the end value solved
    from L_n (one linear equation). n = 1 is :func:`sgd_step`; n = 0 the identity. A block whose
    feedback 1 - (eta^2/m) sum_j w_j lam_j^2 S1_j / n is not positive (an unstable rate the linear
    drive cannot follow) gives an infinite loss."""
    (c,) = state
    eta, m, n = x
    kappa = (m + 1.0) / m
    g = eta ** 2 / m
    xk = 2.0 * eta[:, None] * p.lam - (kappa * eta ** 2)[:, None] * p.lam ** 2      # 1 - a
    an, s0, s1 = _block_sums(xk, n[:, None])
    s1n = jnp.where(n[:, None] > 0, s1 / jnp.maximum(n[:, None], 1.0), 0.0)
    lam2w = p.lam * p.lam_w
    u0 = g * (_loss(p, c) + p.noise_var)
    a_end = _loss(p, an * c)
    b0, b1 = s0 @ lam2w, s1n @ lam2w
    feedback = 1.0 - g * b1
    loss_end = (a_end + u0 * (b0 - b1) + g * p.noise_var * b1) / jnp.where(feedback > 0, feedback, 1.0)
    loss_end = jnp.where(feedback > 0, loss_end, jnp.inf)
    u1 = g * (loss_end + p.noise_var)
    return (an * c + p.lam * (u0[:, None] * s0 + (u1 - u0)[:, None] * s1n),)


STEPS = {"sgd": sgd_step, "momentum": momentum_step, "blocks": block_step}


def _back(recursion):
    if recursion == "sgd":
        return sgd_back

    def back(p, cot, state, x):
        _, vjp = jax.vjp(lambda s, xx: STEPS[recursion](p, s, xx), state, x)
        return vjp(cot)
    return back


def initial_state(p: Params, rows: int, recursion: str):
    c = jnp.broadcast_to(p.c0, (rows, p.c0.shape[-1]))
    return (c, jnp.zeros_like(c), jnp.zeros_like(c)) if recursion == "momentum" else (c,)


# ------------------------------------------------------------------------------------------- curves
@functools.partial(jax.jit, static_argnames=("recursion",))
def curves(p: Params, xs, recursion: str):
    """Loss before every step (block) and after the last: xs are (T, B) arrays; returns (B, T+1)."""
    step = STEPS[recursion]

    def body(state, x):
        return step(p, state, x), _loss(p, state[0])

    state, losses = jax.lax.scan(body, initial_state(p, xs[0].shape[1], recursion), xs)
    return jnp.concatenate([losses.T, _loss(p, state[0])[:, None]], axis=1)


def _flat_inputs(lr, others):
    """Broadcast lr (..., T) and each of ``others`` to one shape; return (shape, [(T, rows) arrays])."""
    lr = np.asarray(lr, np.float64)
    shapes = [lr.shape] + [np.shape(o) for o in others]
    try:
        shape = np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"batch/momentum/sizes: shapes {shapes[1:]} do not broadcast to lr's {lr.shape}") from None
    steps = shape[-1]
    return shape, [np.broadcast_to(np.asarray(v, np.float64), shape).reshape(-1, steps).T for v in [lr] + others]


def loss_curves(lam, c0, noise_var, lr, batch=None, momentum=None):
    """Expected test loss before each step and after the last (section 1), exact.

    Args:
      lam: (N,) eigenvalues with c0: (N,) initial E e_k^2 (w*^2 for w_0 = 0), or a :class:`Modes`
        (then c0 is ignored); noise_var: sigma^2.
      lr: (..., T) per-step rates; batch: per-step batch sizes (floats >= 1) broadcastable to lr,
        default 1; momentum: per-step beta broadcastable to lr, None for the plain SGD recursion.
    Returns:
      (..., T+1) expected losses (float64 when x64 is on).
    """
    modes = as_modes(lam, c0)
    p = params(modes, noise_var)
    lr = np.asarray(lr, np.float64)
    if lr.ndim < 1 or lr.shape[-1] < 1 or not np.all(np.isfinite(lr)):
        raise ValueError("lr: a finite array of per-step rates with steps on the last axis")
    batch = np.ones(()) if batch is None else np.asarray(batch, np.float64)
    if not np.all(np.isfinite(batch)) or np.any(batch < 1):
        raise ValueError("batch: per-step batch sizes >= 1")
    others = [batch]
    if momentum is not None:
        momentum = np.asarray(momentum, np.float64)
        if not np.all(np.isfinite(momentum)) or np.any(momentum < 0) or np.any(momentum >= 1):
            raise ValueError("momentum: per-step beta in [0, 1)")
        others.append(momentum)
    shape, flat = _flat_inputs(lr, others)
    dtype = jnp.result_type(float)
    out = curves(p, tuple(jnp.asarray(v, dtype) for v in flat), "sgd" if momentum is None else "momentum")
    return np.asarray(out).reshape(shape[:-1] + (shape[-1] + 1,))


def block_loss_curves(modes: Modes, noise_var, lr, sizes, batch=None):
    """Expected test loss at the edges of blocks of ``sizes`` steps, each at one rate and batch (section 4):
    lr, sizes, batch (..., B) broadcastable; returns (..., B+1), the loss before each block and after
    the last."""
    modes = as_modes(modes)
    p = params(modes, noise_var)
    sizes = np.asarray(sizes, np.float64)
    if np.any(sizes < 0) or np.any(sizes != np.round(sizes)):
        raise ValueError("sizes: non-negative integer block lengths")
    batch = np.ones(()) if batch is None else np.asarray(batch, np.float64)
    if not np.all(np.isfinite(batch)) or np.any(batch < 1):
        raise ValueError("batch: per-block batch sizes >= 1")
    shape, (lr_f, batch_f, size_f) = _flat_inputs(lr, [batch, sizes])
    dtype = jnp.result_type(float)
    out = curves(p, tuple(jnp.asarray(v, dtype) for v in (lr_f, batch_f, size_f)), "blocks")
    return np.asarray(out).reshape(shape[:-1] + (shape[-1] + 1,))


# ------------------------------------------------------------------------------ time blocks
def time_blocks(horizon: int, resolution=None) -> np.ndarray:
    """Block lengths (int64, summing to ``horizon``): all 1 (``resolution`` None: exact), or
    max(1, floor(resolution min(t, T - t))) from t = 0: geometric in t early and in T - t late, where
    the loss and a decaying schedule change on those scales; about (2/resolution) ln(resolution T / 2)
    + 2/resolution blocks (2,800 for T = 10^6 at 0.01)."""
    T = int(horizon)
    if resolution is None:
        return np.ones(T, np.int64)
    if not (np.isscalar(resolution) and 0 < resolution < 1):
        raise ValueError(f"resolution: None (exact) or a number in (0, 1), got {resolution!r}")
    sizes, t = [], 0
    while t < T:
        n = max(1, int(resolution * min(t, T - t)))
        n = min(n, T - t)
        sizes.append(n)
        t += n
    return np.asarray(sizes, np.int64)


# ------------------------------------------------------------------------------ final loss + adjoint
ROW_SHARES = (1, 2, 4, 8)   # a segment runs every row, or the last rows/2, rows/4, rows/8 by length
MIN_TAIL = 8


def _segments(xs):
    steps = xs[0].shape[0]
    return tuple(v.reshape(steps // SEGMENT, SEGMENT, *v.shape[1:]) for v in xs)


def _row_plan(lr):
    """Rows ordered by the segments they need, and per segment how many rows a segment runs.

    A step at rate 0 leaves the loss where it is (the state of SGD and of blocks unchanged, heavy
    ball's P unchanged), so a row needs the segments up to its last nonzero rate: a short horizon
    padded to a long one's steps (zero rates) is done early. Rows are sorted by that need (stable), so
    those still running form a tail of the order; a segment runs the shortest tail of length
    rows // s (s in ROW_SHARES) that holds them, or none. Returns (order (B,), branch (segments,)), the
    branch indexing :func:`_tail_sizes`."""
    steps, rows = lr.shape
    last = jnp.max(jnp.where(lr != 0, jnp.arange(1, steps + 1)[:, None], 0), axis=0)
    need = (last + SEGMENT - 1) // SEGMENT
    order = jnp.argsort(need, stable=True)
    running = rows - jnp.searchsorted(need[order], jnp.arange(steps // SEGMENT), side="right")
    sizes = jnp.asarray(_tail_sizes(rows))
    return order, jnp.sum(sizes >= running[:, None], axis=1) - 1


def _unsorted(v, order):
    """Rows (leading axis) of ``v``, in :func:`_row_plan`'s ``order``, put back in the callers' order."""
    return jnp.zeros_like(v).at[order].set(v)


def _tail_sizes(rows):
    """Tail lengths a segment may run, longest first, then 0 (the segment skipped): never below
    MIN_TAIL rows (XLA:CPU sums a product of one or two rows in another order)."""
    return sorted({max(rows // s, min(rows, MIN_TAIL)) for s in ROW_SHARES}, reverse=True) + [0]


def _final_state(p, state, xs, step, branch, cap=CAP, keep=True):
    """Scan the segments of xs from ``state`` (rows in :func:`_row_plan`'s order), each on the tail of
    rows it needs, states clipped to +-``cap`` after each segment (None: not clipped); returns the final
    state and, with ``keep``, the state before every segment (the checkpoints; else None)."""
    rows = state[0].shape[0]

    def on_tail(size):
        def run(state, x):
            if size == 0:
                return state
            cut = rows - size
            tail = jax.lax.scan(lambda s, xx: (step(p, s, xx), None), tuple(v[cut:] for v in state),
                                tuple(v[:, cut:] for v in x))[0]
            if cap is not None:
                tail = tuple(jnp.clip(v, -cap, cap) for v in tail)
            return tuple(jnp.concatenate([v[:cut], t]) for v, t in zip(state, tail))
        return run

    branches = [on_tail(size) for size in _tail_sizes(rows)]

    def seg(state, inp):
        x, k = inp
        return jax.lax.switch(k, branches, state, x), state if keep else None
    return jax.lax.scan(seg, state, (xs, branch))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def log_final_loss(p: Params, recursion: str, xs):
    """log L_T for rows of per-step (per-block) inputs xs ((T, B) arrays, T a multiple of SEGMENT).
    Each row runs the segments up to its last nonzero rate (:func:`_row_plan`): the same values as
    scanning every row to T, bit for bit, and the same SGD gradients; the heavy-ball and block
    gradients (JAX's transpose of the step) move by ~1e-13 relative, as XLA sums a product's rows in
    another order when a segment runs fewer of them."""
    return _log_final_loss_fwd(p, recursion, xs)[0]


def _log_final_loss_fwd(p, recursion, xs):
    order, branch = _row_plan(xs[0])
    ordered = tuple(v[:, order] for v in xs)
    state, checkpoints = _final_state(p, initial_state(p, xs[0].shape[1], recursion), _segments(ordered),
                                      STEPS[recursion], branch)
    loss = _unsorted(_loss(p, state[0]), order)
    return jnp.log(loss), (p, ordered, checkpoints, loss, order, branch)


def _log_final_loss_bwd(recursion, res, g):
    p, xs, checkpoints, loss, order, branch = res
    step, back = STEPS[recursion], _back(recursion)
    rows = xs[0].shape[1]
    cot = tuple(jnp.zeros_like(v[0]) for v in checkpoints)
    cot = (p.lam_w * (g / loss)[order][:, None],) + cot[1:]

    def on_tail(size):
        def run(cot, start, x):
            zeros = tuple(jnp.zeros_like(v) for v in x)
            if size == 0:
                return cot, zeros
            cut = rows - size
            x_tail = tuple(v[:, cut:] for v in x)
            states = jax.lax.scan(lambda s, xx: (step(p, s, xx), s), tuple(v[cut:] for v in start), x_tail)[1]
            c_tail, d_tail = jax.lax.scan(lambda c, inp: back(p, c, *inp), tuple(v[cut:] for v in cot),
                                          (states, x_tail), reverse=True)
            cot = tuple(jnp.concatenate([v[:cut], t]) for v, t in zip(cot, c_tail))
            return cot, tuple(z.at[:, cut:].set(d) for z, d in zip(zeros, d_tail))
        return run

    branches = [on_tail(size) for size in _tail_sizes(rows)]

    def seg(cot, inp):
        start, x, k = inp
        return jax.lax.switch(k, branches, cot, start, x)

    _, d_xs = jax.lax.scan(seg, cot, (tuple(checkpoints), _segments(xs), branch), reverse=True)
    inverse = jnp.argsort(order)
    d_xs = tuple(jnp.nan_to_num(d.reshape(xs[0].shape))[:, inverse] for d in d_xs)
    zero = jax.tree_util.tree_map(jnp.zeros_like, p)
    return zero, d_xs


log_final_loss.defvjp(_log_final_loss_fwd, _log_final_loss_bwd)


# --------------------------------------------------------------------------------- fourth moments
def fourth_moment_step(p: Params, state, x):
    """One SGD step of (C, D), D_kj = E e_k^2 e_j^2 (section 7 of the package docstring), rows (B, K[, K]);
    x = (eta, m). Exact modes only (weights 1, no offset)."""
    c, d = state
    eta, m = (v[:, None] for v in x)
    lam = p.lam[None, :]
    s2 = p.noise_var
    loss = jnp.sum(c * lam, axis=1, keepdims=True)
    # y_j = E[e_j^2 V], V = sum_l lam_l e_l^2 + sigma^2; E V^2
    y = jnp.einsum("bkl,l->bk", d, p.lam) + s2 * c
    ev2 = jnp.einsum("bk,k->b", y, p.lam)[:, None] + s2 * (loss + s2)      # E[S V] + sigma^2 E V
    el = eta * lam                                                    # (B, K)
    f1, f2, f3 = (m + 1) / m, (m + 1) * (m + 2) / m ** 2, (m + 1) * (m + 2) * (m + 3) / m ** 3
    # P_kj = 1 - 2(el_k + el_j) + f1 (el_k^2 + 4 el_k el_j + el_j^2) - 2 f2 el_k el_j (el_k + el_j) + f3 el_k^2 el_j^2
    ek, ej = el[:, :, None], el[:, None, :]
    g1, g2, g3 = f1[:, :, None], f2[:, :, None], f3[:, :, None]
    pk = 1 - 2 * (ek + ej) + g1 * (ek ** 2 + 4 * ek * ej + ej ** 2) - 2 * g2 * ek * ej * (ek + ej) + g3 * ek ** 2 * ej ** 2
    # Q_kj = (eta^2 lam_k / m) q(lam_j), q = 1 - 2 ((m+2)/m) el_j + ((m+2)(m+3)/m^2) el_j^2
    q = 1 - 2 * (m + 2) / m * el + (m + 2) * (m + 3) / m ** 2 * el ** 2
    qk = (eta ** 2 / m * lam)[:, :, None] * q[:, None, :]               # (B, K, K)
    cc = (eta ** 4 * (m + 2) / m ** 3)[:, :, None] * lam[:, :, None] * lam[:, None, :]
    qy = qk * y[:, None, :]
    new_d = pk * d + qy + jnp.swapaxes(qy, 1, 2) + cc * ev2[:, :, None]
    diag = 4 * jnp.diagonal(qk, axis1=1, axis2=2) * y + 2 * jnp.diagonal(cc, axis1=1, axis2=2) * ev2
    new_d = new_d + jax.vmap(jnp.diag)(diag)
    a = 1.0 - 2.0 * el + f1 * el ** 2
    new_c = a * c + eta ** 2 / m * lam * (loss + s2)
    return new_c, new_d


@jax.jit
def _second_moments_of_loss(p: Params, xs):
    """(E L_T, E L_T^2) of rows of per-step inputs xs ((T, B) arrays, T a multiple of SEGMENT), each row
    run to the segment of its last nonzero rate (:func:`_row_plan`; a step at rate 0 is the identity)."""
    rows = xs[0].shape[1]
    order, branch = _row_plan(xs[0])
    c = jnp.broadcast_to(p.c0, (rows, p.c0.shape[0]))
    d = c[:, :, None] * c[:, None, :]
    (c, d), _ = _final_state(p, (c, d), _segments(tuple(v[:, order] for v in xs)), fourth_moment_step, branch,
                             cap=None, keep=False)
    return _unsorted(c @ p.lam, order), _unsorted(jnp.einsum("bkl,k,l->b", d, p.lam, p.lam), order)


def loss_moments(lam, c0, noise_var, lr, batch=None):
    """E L_T and E L_T^2 after per-step rates ``lr`` (..., T) and batches (broadcastable; default 1), from
    the exact fourth-moment recursion of section 7 (exact modes: ``lam``, ``c0`` arrays). Returns
    (mean (...,), second moment (...,)); E L^2 / (E L)^2 - 1 is the squared relative spread of the loss
    over seeds, so a mean over n seeds has relative standard error sqrt((E L^2/(E L)^2 - 1)/n)."""
    modes = as_modes(lam, c0)
    if np.any(modes.weight != 1) or modes.offset != 0:
        raise ValueError("lam: the fourth-moment recursion needs exact modes (one per feature)")
    p = params(modes, noise_var)
    batch = np.ones(()) if batch is None else np.asarray(batch, np.float64)
    if not np.all(np.isfinite(batch)) or np.any(batch < 1):
        raise ValueError("batch: per-step batch sizes >= 1")
    shape, (lr_f, batch_f) = _flat_inputs(lr, [batch])
    dtype = jnp.result_type(float)
    pad = -lr_f.shape[0] % SEGMENT                 # zero rates: the identity
    lr_f, batch_f = np.pad(lr_f, ((0, pad), (0, 0))), np.pad(batch_f, ((0, pad), (0, 0)), constant_values=1.0)
    mean, second = _second_moments_of_loss(p, (jnp.asarray(lr_f, dtype), jnp.asarray(batch_f, dtype)))
    return np.asarray(mean).reshape(shape[:-1]), np.asarray(second).reshape(shape[:-1])
