"""Exact learning-rate polynomials, the algebra (jax): one coefficient computation per seed serves a grid.

A linear student trained by full-batch GD with per-layer rates eta_1..eta_m (seed 000, arXiv
2606.00340, Sec. 3: W_l <- W_l - eta_l dL/dW_l) has, after k steps, weights that are polynomials
in the eta's. Their matrix coefficients depend on the instance (init, data, teacher) but not on
the rates, so the train loss 1/2 (tr W_eff^T S W_eff - 2 tr W_eff^T b + yy) and the test loss
||W_eff - beta||_F^2 + noise_var (Sec. 3) are scalar polynomials (Sec. 4 expands them by hand for
one and two steps). Here S = X^T X / n, b = X^T y / n (the moments of :mod:`lrsweep.core.steps`).

A polynomial is ``{exponent tuple (e_1..e_m): coefficient}``, stored as :class:`Poly`: the static
exponents as rows of an int array and the coefficients stacked on a leading axis. It is written
in the scaled variable u_l = eta_l / s (s > 0, one per group, traced; by default the largest
eta of the group), i.e. the update is W_l <- W_l - s u_l grad_l: the coefficient of u^e is the
size of that term at eta = s, while raw coefficients (s = 1) of high monomials scale like h^-7
and fall out of float32's range once raw rates reach 1e4-1e5. Per step, with
c = ``arch.output_scale`` and paper_deep's readout a (none otherwise: identity):

    R_{m+1} = a,  R_l = W_l R_{l+1} (right to left: matrix-vector with a vector readout),
    W_eff = c R_1,  G = S W_eff - b (``exact``) or -b (``signal_only``, Sec. 4),
    L_1 = c G,  L_{l+1} = W_l^T L_l,  grad_l = L_l R_{l+1}^T   (= dL/dW_l).

Equal monomials are combined after every product and sum. The same driver runs on shapes only
(:func:`plan`: monomial sets, matmuls, FLOPs and memory, no arrays) and on arrays
(:func:`coefficients`), so the plan counts exactly the products that are performed.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep.core import steps as steps_lib
from lrsweep.core.students import layers

MAX_TERMS = 1 << 14   # terms of one polynomial beyond which poly mode is not planned
MAX_PAIRS = 1 << 20   # pairwise products of one polynomial product (static index arrays)


class TooLarge(ValueError):
    """The polynomials outgrow MAX_TERMS / MAX_PAIRS: grid mode is the only sensible mode."""


class Poly(NamedTuple):
    """sum_j coef[j] u^exps[j]: exps (n, m) int (static); coef (n, rows, cols), an array or (shape pass) its shape."""
    exps: np.ndarray
    coef: Any

    def as_dict(self) -> dict:
        return {tuple(int(v) for v in e): c for e, c in zip(self.exps, self.coef)}


def _unique(exps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct monomials (sorted) and, for each input row, the index of its monomial."""
    if exps.shape[1] == 0:  # no variables (grid-mode counting): every term is the constant
        return exps[:1], np.zeros(len(exps), np.int64)
    radix = exps.max(axis=0).astype(np.int64) + 1
    if np.prod(radix.astype(float)) < 2.0 ** 62:  # one int64 key per row: a fast 1-d unique, same order
        weights = np.cumprod(np.concatenate([radix[1:], [1]])[::-1])[::-1]
        keys, first, inv = np.unique(exps @ weights, return_index=True, return_inverse=True)
        return exps[first], inv.reshape(-1)
    out, inv = np.unique(exps, axis=0, return_inverse=True)
    return out, inv.reshape(-1)


def _pair_exps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) * len(b) > MAX_PAIRS:
        raise TooLarge(f"a product of {len(a)} x {len(b)} terms exceeds {MAX_PAIRS} pairs")
    return (a[:, None, :] + b[None, :, :]).reshape(len(a) * len(b), a.shape[1])


def _checked(exps: np.ndarray) -> np.ndarray:
    if len(exps) > MAX_TERMS:
        raise TooLarge(f"a polynomial has {len(exps)} terms (> {MAX_TERMS})")
    return exps


# --------------------------------------------------------------------------------------
# Backends: arrays (jax) or shapes (cost accounting). Both see the same static index arrays.
# --------------------------------------------------------------------------------------

def _mm_shape(a_shape, b_shape, ta, tb):
    r, k = a_shape[::-1] if ta else a_shape
    k2, c = b_shape[::-1] if tb else b_shape
    assert k == k2, (a_shape, b_shape, ta, tb)
    return r, k, c


class ArrayBackend:
    """Coefficient arithmetic on stacked jax arrays; every pairwise product in one dot_general."""

    @staticmethod
    def products(a, b, ta, tb, ids, n):
        """out[ids[i nb + j]] += op(a[i]) @ op(b[j]) for all pairs (i, j)."""
        pairs = jnp.einsum(("akr" if ta else "ark") + "," + ("bck" if tb else "bkc") + "->abrc", a, b)
        return _segment_sum(pairs.reshape((-1,) + pairs.shape[2:]), ids, n)

    @staticmethod
    def combine(parts, ids, n):
        return _segment_sum(jnp.concatenate(parts), ids, n)

    @staticmethod
    def scale(a, factor):
        return a * factor

    @staticmethod
    def loss_terms(w_eff, sw, b, yy, beta, const):
        """Train and test loss terms in the order (pairs a, b; linear a; constant)."""
        gram_s = jnp.einsum("ark,brk->ab", w_eff, sw).reshape(-1)
        gram = jnp.einsum("ark,brk->ab", w_eff, w_eff).reshape(-1)
        lin_b = jnp.einsum("ark,rk->a", w_eff, b)
        lin_beta = jnp.einsum("ark,rk->a", w_eff, beta)
        one = jnp.ones((1,), w_eff.dtype)
        train = jnp.concatenate([0.5 * gram_s, -lin_b, 0.5 * yy * one])
        test = jnp.concatenate([gram, -2.0 * lin_beta, const * one])
        return train, test

    @staticmethod
    def place(vec, ids, n):
        return _segment_sum(vec, ids, n)


def _segment_sum(x, ids, n):
    if len(ids) == n and np.array_equal(ids, np.arange(n)):
        return x  # nothing to combine
    return jax.ops.segment_sum(x, jnp.asarray(ids, jnp.int32), n)


@dataclasses.dataclass
class ShapeBackend:
    """Coefficients are (rows, cols) shapes; records matmuls, FLOPs and elements per step."""
    step: int = 0
    log: list = dataclasses.field(default_factory=list)  # (step, kind, pairs, flops, out elements, temp elements)

    def products(self, a, b, ta, tb, ids, n):
        (na, *sa), (nb, *sb) = a, b
        r, k, c = _mm_shape(sa, sb, ta, tb)
        self.log.append((self.step, "matmul", na * nb, 2.0 * na * nb * r * k * c, n * r * c, 2 * na * nb * r * c))
        return (n, r, c)

    def combine(self, parts, ids, n):
        self.log.append((self.step, "sum", 0, 0.0, n * math.prod(parts[0][1:]), 0))
        return (n,) + tuple(parts[0][1:])

    def scale(self, a, factor):
        return a

    def loss_terms(self, w_eff, sw, b, yy, beta, const):
        n, r, c = w_eff
        self.log.append((self.step, "loss", 0, 2.0 * (2 * n * n * r * c + 2 * n * r * c), 2 * n * n + 2 * n, 0))
        return None, None

    def place(self, vec, ids, n):
        return None


def _mul(be, a: Poly, b: Poly, ta=False, tb=False) -> Poly:
    """op(a) op(b) with op = transpose where asked; equal monomials combined."""
    exps, ids = _unique(_pair_exps(a.exps, b.exps))
    return Poly(_checked(exps), be.products(a.coef, b.coef, ta, tb, ids, len(exps)))


def _add(be, a: Poly, b: Poly) -> Poly:
    exps, ids = _unique(np.concatenate([a.exps, b.exps]))
    return Poly(_checked(exps), be.combine([a.coef, b.coef], ids, len(exps)))


def _scale(be, a: Poly, factor) -> Poly:
    return Poly(a.exps, be.scale(a.coef, factor))


def _shift(a: Poly, layer: int) -> Poly:
    """Multiply by u_layer (layer counted from 0)."""
    exps = a.exps.copy()
    if exps.shape[1]:
        exps[:, layer] += 1
    return Poly(exps, a.coef)


def right_chain(arch, w, readout, be):
    """R_{m+1} = a (None: identity), R_i = W_i R_{i+1}; returns [None, R_1, .., R_{m+1}] and W_eff = c R_1."""
    m = arch.n_trainable
    r = [None] * (m + 2)
    r[m + 1] = readout
    for i in range(m, 0, -1):
        r[i] = w[i - 1] if r[i + 1] is None else _mul(be, w[i - 1], r[i + 1])
    return r, _scale(be, r[1], arch.output_scale)


def gradients(arch, w, r, g, be):
    """dL/dW_i = L_i R_{i+1}^T with L_1 = c G, L_{i+1} = W_i^T L_i (the pullback of W_eff = c W_1..W_m a)."""
    left = _scale(be, g, arch.output_scale)  # c G first, as the engine's vjp scales the cotangent
    grads = []
    for i in range(1, arch.n_trainable + 1):
        if i > 1:
            left = _mul(be, w[i - 2], left, ta=True)
        grads.append(left if r[i + 1] is None else _mul(be, left, r[i + 1], tb=True))
    return grads


def _trajectory(arch, steps, gradient, weights, readout, s_mat, neg_b, b, yy, beta, const, scale, be):
    """GD on polynomials in u: W_i <- W_i - s u_i dL/dW_i. Returns, for t = 0..steps, (loss exponents,
    train coefficients, test coefficients, terms of W_1..W_m)."""
    w = list(weights)
    out = []
    for t in range(steps + 1):
        if isinstance(be, ShapeBackend):
            be.step = t
        r, w_eff = right_chain(arch, w, readout, be)
        sw = _mul(be, s_mat, w_eff)
        # train: sum_{a,b} u^(e_a + e_b) <A_a, S A_b> / 2 - sum_a u^e_a <A_a, b> + yy / 2 (test: S = I, b = beta)
        zero = np.zeros((1, w_eff.exps.shape[1]), w_eff.exps.dtype)
        loss_exps, ids = _unique(np.concatenate([_pair_exps(w_eff.exps, w_eff.exps), w_eff.exps, zero]))
        train, test = be.loss_terms(w_eff.coef, sw.coef, b, yy, beta, const)
        out.append((loss_exps, be.place(train, ids, len(loss_exps)), be.place(test, ids, len(loss_exps)),
                    tuple(len(p.exps) for p in w)))
        if t == steps:
            break
        g = _add(be, sw, neg_b) if gradient == "exact" else neg_b  # G = S W_eff - b, or -b (Sec. 4)
        grads = gradients(arch, w, r, g, be)
        w = [_add(be, wi, _shift(_scale(be, gi, -scale), i)) for i, (wi, gi) in enumerate(zip(w, grads))]
    return out


# --------------------------------------------------------------------------------------
# Symbolic pass
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class StepCost:
    """Step t: terms of W_1..W_m at t, loss terms at t, products and FLOPs of t (loss at t and t -> t+1)."""
    step: int
    weight_terms: tuple
    loss_terms: int
    matmuls: int
    flops: float
    peak_elements: int


@dataclasses.dataclass(frozen=True)
class PolyPlan:
    """Shape-only result of the polynomial recursion for one instance of a group."""
    n_vars: int
    monomials: np.ndarray          # (n_monomials, m): the union over steps, sorted
    present: np.ndarray            # (steps + 1, n_monomials) bool: monomial occurs at step t
    steps: tuple                   # StepCost per step t = 0..steps
    feasible: bool = True
    reason: str = ""

    @property
    def flops(self) -> float:
        return sum(s.flops for s in self.steps) if self.feasible else math.inf

    @property
    def matmuls(self) -> int:
        return sum(s.matmuls for s in self.steps)

    @property
    def peak_elements(self) -> int:
        return max((s.peak_elements for s in self.steps), default=0) if self.feasible else 1 << 62

    @property
    def n_monomials(self) -> int:
        return len(self.monomials)

    def eval_flops(self) -> float:
        """FLOPs to evaluate train and test loss of one student at every step (monomials + dot)."""
        return 2.0 * 2 * self.present.sum() + self.n_monomials * self.n_vars


def _shape_inputs(arch, task, n_vars):
    d, out, m = task.input_dim, arch.output_dim, n_vars
    z = np.zeros((1, m), np.int64)
    weights = [Poly(z, (1,) + s) for s in arch.shapes]
    readout = Poly(z, (1, arch.width, 1)) if arch.parameterization == "paper_deep" else None
    return weights, readout, Poly(z, (1, d, d)), Poly(z, (1, d, out))


def plan(spec, n_vars: int | None = None) -> PolyPlan:
    """Shape-only pass: monomial sets, terms, matmuls, FLOPs and peak elements per step (no arrays).

    ``n_vars=0`` counts one student of grid mode (every polynomial collapses to one term).
    Explosive cases (many steps) stop at MAX_TERMS / MAX_PAIRS with ``feasible=False``.
    """
    arch = spec.arch
    m = arch.n_trainable if n_vars is None else n_vars
    be = ShapeBackend()
    weights, readout, s_mat, neg_b = _shape_inputs(arch, spec.task, m)
    try:
        traj = _trajectory(arch, spec.steps, spec.gradient, weights, readout, s_mat, neg_b, None, None, None, None,
                           1.0, be)
    except TooLarge as e:
        return PolyPlan(m, np.zeros((0, m), np.int64), np.zeros((0, 0), bool), (), False, str(e))
    monomials, present = _union([e for e, *_ in traj])
    d, out = spec.task.input_dim, arch.output_dim
    data = spec.task.n_train * d + d * d + 2 * d * out + arch.width  # X (before its moments), S, b, beta, readout
    costs = []
    for t, (exps, _, _, wterms) in enumerate(traj):
        events = [ev for ev in be.log if ev[0] == t]
        start = data + sum(n * math.prod(sh) for n, sh in zip(wterms, arch.shapes))
        peak = start + sum(ev[4] for ev in events) + max((ev[5] for ev in events), default=0)
        costs.append(StepCost(t, wterms, len(exps), sum(ev[2] for ev in events), sum(ev[3] for ev in events),
                              int(peak)))
    return PolyPlan(m, monomials, present, tuple(costs))


def _union(exps_per_step):
    monomials, _ = _unique(np.concatenate(exps_per_step))
    index = {tuple(e): j for j, e in enumerate(monomials.tolist())}
    present = np.zeros((len(exps_per_step), len(monomials)), bool)
    for t, exps in enumerate(exps_per_step):
        present[t, [index[tuple(e)] for e in exps.tolist()]] = True
    return monomials, present


def grid_flops_per_student(spec) -> float:
    """FLOPs of one student in grid mode: the same recursion with single-term polynomials."""
    return plan(spec, n_vars=0).flops


MACHINE_BALANCE = 8.0  # FLOPs per byte moved at which a device is as busy computing as streaming (CPU ~ 10)


def grid_cost_per_student(spec, dtype_bytes: int = 8) -> float:
    """Grid mode's cost of one student in FLOP-equivalents: its FLOPs, or, for students whose steps are
    matrix-vector products (paper_deep), the state each step streams (read, update, write: 4 elements
    per weight, as in scripts/bench_engine.py; the low-rank rows for ``lowrank``) times
    :data:`MACHINE_BALANCE`, whichever is larger."""
    streamed = spec.steps * 4.0 * steps_lib.state_size(spec.arch, spec.formulation, spec.steps) * dtype_bytes
    return max(grid_flops_per_student(spec), MACHINE_BALANCE * streamed)


# --------------------------------------------------------------------------------------
# Coefficients (arrays)
# --------------------------------------------------------------------------------------

def coefficients(spec, params0, inst, scale, pl: PolyPlan | None = None, be=ArrayBackend):
    """Loss coefficients of one instance in u = eta / scale: (train, test), each (steps + 1, n_monomials).

    ``params0``/``inst`` as from :func:`lrsweep.core.tasks.make_instance` with moments; the monomials
    are ``plan(spec).monomials``. Traceable (``scale`` may be traced).
    """
    pl = pl or plan(spec)
    if not pl.feasible:
        raise TooLarge(pl.reason)
    arch, m = spec.arch, spec.arch.n_trainable
    z = np.zeros((1, m), np.int64)
    weights = [Poly(z, w[None]) for w in layers(arch, params0)]
    readout = Poly(z, inst["readout"][None]) if arch.has_readout else None
    const = jnp.sum(inst["beta"] * inst["beta"]) + inst["noise_var"]
    traj = _trajectory(arch, spec.steps, spec.gradient, weights, readout, Poly(z, inst["xx"][None]),
                       Poly(z, -inst["xy"][None]), inst["xy"], inst["yy"], inst["beta"], const, scale, be)
    index = {tuple(e): j for j, e in enumerate(pl.monomials.tolist())}
    train, test = [], []
    for exps, tr, te, _ in traj:
        ids = np.array([index[tuple(e)] for e in exps.tolist()])
        train.append(jnp.zeros(pl.n_monomials, tr.dtype).at[ids].set(tr))
        test.append(jnp.zeros(pl.n_monomials, te.dtype).at[ids].set(te))
    return jnp.stack(train), jnp.stack(test)


def make_coefficient_fn(spec, pl: PolyPlan | None = None):
    """Jitted ``(params0, inst, scale) -> (train, test)`` for a batch of instances from
    :func:`lrsweep.core.engine.make_instances` (moments), each (u, steps + 1, n_monomials). The instances and the scale are
    traced, so new seeds never recompile."""
    pl = pl or plan(spec)
    return jax.jit(jax.vmap(lambda params0, inst, scale: coefficients(spec, params0, inst, scale, pl),
                            in_axes=(0, 0, None)))

