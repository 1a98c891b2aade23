"""Exact learning-rate polynomials: one coefficient computation per seed serves a whole grid.

A linear student trained by full-batch GD with per-layer rates eta_1..eta_m (seed 000, arXiv
2606.00340, Sec. 3: W_l <- W_l - eta_l dL/dW_l) has, after k steps, weights that are polynomials
in the eta's. Their matrix coefficients depend on the instance (init, data, teacher) but not on
the rates, so the train loss 1/2 (tr W_eff^T S W_eff - 2 tr W_eff^T b + yy) and the test loss
||W_eff - beta||_F^2 + noise_var (Sec. 3) are scalar polynomials (Sec. 4 expands them by hand for
one and two steps). Here S = X^T X / n, b = X^T y / n (the moments of :mod:`lrsweep.steps`).

A polynomial is ``{exponent tuple (e_1..e_m): coefficient}``, stored as :class:`Poly`: the static
exponents as rows of an int array and the coefficients stacked on a leading axis. It is written
in the scaled variable u_l = eta_l / s (s > 0, one per group, traced; by default the largest
eta of the group), i.e. the update is W_l <- W_l - s u_l grad_l: the coefficient of u^e is the
size of that term at eta = s, while raw coefficients (s = 1) of high monomials scale like h^-7
and fall out of float32's range once raw rates reach 1e4-1e5. Per step, with
c = ``arch.output_scale`` and paper_deep's head a (none otherwise: identity):

    R_{m+1} = a,  R_l = W_l R_{l+1} (right to left: matrix-vector with a vector head),
    W_eff = c R_1,  G = S W_eff - b (``exact``) or -b (``signal_only``, Sec. 4),
    L_1 = c G,  L_{l+1} = W_l^T L_l,  grad_l = L_l R_{l+1}^T   (= dL/dW_l).

Equal monomials are combined after every product and sum. The same driver runs on shapes only
(:func:`plan`: monomial sets, matmuls, FLOPs and memory, no arrays) and on arrays
(:func:`coefficients`), so the plan counts exactly the products that are performed.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pyarrow as pa

from lrsweep import engine
from lrsweep import steps as steps_lib
from lrsweep.config import ConfigError
from lrsweep.engine import INSTANCE_COLUMNS, make_instances
from lrsweep.tasks import InstanceHparams

MODES = ("auto", "grid", "poly")
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


def right_chain(arch, w, head, be):
    """R_{m+1} = a (None: identity), R_i = W_i R_{i+1}; returns [None, R_1, .., R_{m+1}] and W_eff = c R_1."""
    m = arch.n_trainable
    r = [None] * (m + 2)
    r[m + 1] = head
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


def _trajectory(arch, steps, gradient, weights, head, s_mat, neg_b, b, yy, beta, const, scale, be):
    """GD on polynomials in u: W_i <- W_i - s u_i dL/dW_i. Returns, for t = 0..steps, (loss exponents,
    train coefficients, test coefficients, terms of W_1..W_m)."""
    w = list(weights)
    out = []
    for t in range(steps + 1):
        if isinstance(be, ShapeBackend):
            be.step = t
        r, w_eff = right_chain(arch, w, head, be)
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
    head = Poly(z, (1, arch.width, 1)) if arch.parameterization == "paper_deep" else None
    return weights, head, Poly(z, (1, d, d)), Poly(z, (1, d, out))


def plan(spec, n_vars: int | None = None) -> PolyPlan:
    """Shape-only pass: monomial sets, terms, matmuls, FLOPs and peak elements per step (no arrays).

    ``n_vars=0`` counts one student of grid mode (every polynomial collapses to one term).
    Explosive cases (many steps) stop at MAX_TERMS / MAX_PAIRS with ``feasible=False``.
    """
    arch = spec.arch
    m = arch.n_trainable if n_vars is None else n_vars
    be = ShapeBackend()
    weights, head, s_mat, neg_b = _shape_inputs(arch, spec.task, m)
    try:
        traj = _trajectory(arch, spec.steps, spec.gradient, weights, head, s_mat, neg_b, None, None, None, None,
                           1.0, be)
    except TooLarge as e:
        return PolyPlan(m, np.zeros((0, m), np.int64), np.zeros((0, 0), bool), (), False, str(e))
    monomials, present = _union([e for e, *_ in traj])
    d, out = spec.task.input_dim, arch.output_dim
    data = spec.task.n_train * d + d * d + 2 * d * out + arch.width  # X (before its moments), S, b, beta, head
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
    matrix-vector products (paper_deep), the state each step streams (read, update, write: 4 words
    per weight, as in scripts/bench_engine.py; the low-rank rows for ``lowrank``) times
    :data:`MACHINE_BALANCE`, whichever is larger."""
    streamed = spec.steps * 4.0 * steps_lib.state_size(spec.arch, spec.formulation, spec.steps) * dtype_bytes
    return max(grid_flops_per_student(spec), MACHINE_BALANCE * streamed)


def qualifies(spec) -> str | None:
    """None if poly mode applies to the group, else the reason (linear student and teacher, gd, moments)."""
    why = steps_lib.linear_gd_blocker(spec.arch, spec.optimizer, spec.task.teacher_activation)
    if why is not None:
        return why
    if not spec.constant_rates:
        return (f"the learning rates change over the steps (train.schedule: {spec.schedule}, "
                f"train.warmup_steps: {spec.warmup_steps})")
    if spec.formulation == "autodiff":
        return "train.formulation is autodiff (poly mode works on the data moments)"
    return None


def memory_capacity() -> int:
    """Bytes one poly instance may use: half the accelerator's limit, a quarter of the host RAM on the CPU."""
    limit, ram = engine.memory_limits()
    return int(limit * 0.5) if limit is not None else ram // 4


def compile_overhead_flops() -> float:
    """Poly mode compiles one program more than grid mode (~2 s): that time in FLOPs of the device
    (a rough rate: 5e10 FLOP/s on the CPU, 1e13 on an accelerator)."""
    return 2.0 * (5e10 if jax.devices()[0].platform == "cpu" else 1e13)


def mode_report(spec, n_students: int, n_instances: int, mode: str = "auto", *, memory_budget: int | None = None,
                dtype_bytes: int = 8, overhead_flops: float | None = None) -> dict:
    """Which mode a group runs in, and why: {"mode", "reason", FLOPs of both modes, plan summary}.

    ``auto`` picks poly when the group qualifies (:func:`qualifies`), its polynomials stay small,
    one instance fits ``memory_budget`` (default :func:`memory_capacity`) and its FLOPs
    (coefficients once per instance + evaluation per student + ``overhead_flops``, default
    :func:`compile_overhead_flops`) are below grid mode's (:func:`grid_cost_per_student`). ``poly``
    raises ConfigError("train.mode") where poly mode cannot run; ``grid`` always runs the engine.
    """
    if mode not in MODES:
        raise ConfigError("train.mode", f"unknown '{mode}'; allowed values: {', '.join(MODES)}")
    rep = {"mode": "grid", "requested": mode, "reason": ""}
    why = qualifies(spec)
    if why is None:
        p = plan(spec)
        if p.feasible:
            need = p.peak_elements * dtype_bytes
            rep.update(poly_flops=n_instances * p.flops + n_students * p.eval_flops(),
                       grid_flops=n_students * grid_cost_per_student(spec, dtype_bytes),
                       poly_bytes_per_instance=int(need),
                       n_monomials=p.n_monomials, n_terms=[list(s.weight_terms) for s in p.steps],
                       loss_terms=[s.loss_terms for s in p.steps], matmuls=[s.matmuls for s in p.steps])
            budget = memory_capacity() if memory_budget is None else memory_budget
            if need > budget:
                why = f"poly needs ~{need / 2**30:.2f} GiB per instance, more than the {budget / 2**30:.2f} GiB " \
                      f"available"
        else:
            why = f"the polynomials grow too large in {spec.steps} steps ({p.reason})"
    if mode == "grid":
        rep["reason"] = "requested"
    elif why is not None:
        if mode == "poly":
            raise ConfigError("train.mode", f"poly mode needs a linear student and teacher trained by gd, with "
                                            f"polynomials that fit, but {why}; use train.mode auto or grid")
        rep["reason"] = why
    elif mode == "poly":
        rep.update(mode="poly", reason="requested")
    elif rep["poly_flops"] + (compile_overhead_flops() if overhead_flops is None else overhead_flops) \
            < rep["grid_flops"]:
        rep.update(mode="poly", reason="poly mode needs fewer FLOPs")
    else:
        rep["reason"] = "grid mode needs fewer FLOPs"
    return rep


def choose_mode(spec, n_students: int, n_instances: int, mode: str = "auto", **kwargs) -> str:
    """``"grid"`` or ``"poly"`` for a group (:func:`mode_report` says why)."""
    return mode_report(spec, n_students, n_instances, mode, **kwargs)["mode"]


# --------------------------------------------------------------------------------------
# Coefficients (arrays)
# --------------------------------------------------------------------------------------

def coefficients(spec, params0, inst, scale, pl: PolyPlan | None = None, be=ArrayBackend):
    """Loss coefficients of one instance in u = eta / scale: (train, test), each (steps + 1, n_monomials).

    ``params0``/``inst`` as from :func:`lrsweep.tasks.make_instance` with moments; the monomials
    are ``plan(spec).monomials``. Traceable (``scale`` may be traced).
    """
    pl = pl or plan(spec)
    if not pl.feasible:
        raise TooLarge(pl.reason)
    arch, m = spec.arch, spec.arch.n_trainable
    z = np.zeros((1, m), np.int64)
    weights = [Poly(z, w[None]) for w in params0]
    head = Poly(z, inst.head[None]) if arch.parameterization == "paper_deep" else None
    const = jnp.sum(inst.beta * inst.beta) + inst.noise_var
    traj = _trajectory(arch, spec.steps, spec.gradient, weights, head, Poly(z, inst.xx[None]),
                       Poly(z, -inst.xy[None]), inst.xy, inst.yy, inst.beta, const, scale, be)
    index = {tuple(e): j for j, e in enumerate(pl.monomials.tolist())}
    train, test = [], []
    for exps, tr, te, _ in traj:
        ids = np.array([index[tuple(e)] for e in exps.tolist()])
        train.append(jnp.zeros(pl.n_monomials, tr.dtype).at[ids].set(tr))
        test.append(jnp.zeros(pl.n_monomials, te.dtype).at[ids].set(te))
    return jnp.stack(train), jnp.stack(test)


def make_coefficient_fn(spec, pl: PolyPlan | None = None):
    """Jitted ``(params0, inst, scale) -> (train, test)`` for a batch of instances from
    :func:`lrsweep.engine.make_instances`, each (u, steps + 1, n_monomials). The instances and the scale are
    traced, so new seeds never recompile."""
    pl = pl or plan(spec)
    return jax.jit(jax.vmap(lambda params0, inst, scale: coefficients(spec, params0, inst, scale, pl),
                            in_axes=(0, 0, None)))


# --------------------------------------------------------------------------------------
# Evaluation and divergence
# --------------------------------------------------------------------------------------

def evaluate_coefficients(coefs, monomials, lrs, scale):
    """sum_j coefs[..., j] prod_l (eta_l / scale)^{e_jl} at points ``lrs`` (P, m) -> (P, ...), float64."""
    coefs = np.asarray(coefs, np.float64)
    exps = np.asarray(monomials, np.int64)
    u = np.atleast_2d(np.asarray(lrs, np.float64)) / float(scale)
    v = np.ones((u.shape[0], len(exps)))
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(exps.shape[1]):
            powers = u[:, i:i + 1] ** np.arange(exps[:, i].max() + 1 if len(exps) else 1)
            v *= powers[:, exps[:, i]]
        return np.tensordot(v, coefs, axes=([1], [coefs.ndim - 1]))


def apply_divergence(train_all, test_all, log_steps, diverge_factor) -> dict:
    """The engine's rule on losses at every step (P, steps + 1): the first t with a non-finite train loss
    or one above ``diverge_factor * max(loss_0, 1e-30)`` is ``diverged_step``; logged metrics at
    steps >= t are NaN."""
    train_all = np.asarray(train_all, np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(train_all) | (train_all > diverge_factor * np.maximum(train_all[:, :1], 1e-30))
    diverged = bad.any(axis=1)
    div_step = np.where(diverged, bad.argmax(axis=1), -1).astype(np.int32)
    logs = list(log_steps)
    alive = ~diverged[:, None] | (np.arange(train_all.shape[1])[None, :] < div_step[:, None])
    return {"train_loss": np.where(alive[:, logs], train_all[:, logs], np.nan),
            "test_loss": np.where(alive[:, logs], np.asarray(test_all, np.float64)[:, logs], np.nan),
            "diverged": diverged, "diverged_step": div_step}


def condition(coefs, monomials, lrs, scale, value=None):
    """kappa = sum_j |c_j u^e_j| / |sum_j c_j u^e_j| (P, ...): the evaluation amplifies the relative
    rounding of the coefficients (~eps of their dtype) by kappa. ``value``: the sum, if known."""
    value = evaluate_coefficients(coefs, monomials, lrs, scale) if value is None else value
    absolute = evaluate_coefficients(np.abs(coefs), monomials, np.abs(np.atleast_2d(lrs)), scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        return absolute / np.abs(value)


def rtol_for(dtype) -> float:
    """Relative error allowed for a poly-mode loss: 1e-11 in float64, 1e-5 in float32."""
    return 1e-11 if jnp.dtype(dtype).itemsize >= 8 else 1e-5


def evaluate_students(spec, pl: PolyPlan, train_coef, test_coef, lrs, scale, coef_eps: float, rtol: float):
    """Results (engine layout) of one instance's students at ``lrs`` (P, m), and which are reliable.

    A student is reliable when kappa * coef_eps <= rtol for its train and test loss at every logged
    step before its divergence, and its divergence verdict at every step up to it is not within the
    error bound of the threshold. The others are trained in grid mode by :func:`iter_group`.
    """
    train = evaluate_coefficients(train_coef, pl.monomials, lrs, scale)
    test = evaluate_coefficients(test_coef, pl.monomials, lrs, scale)
    res = apply_divergence(train, test, spec.log_steps, spec.diverge_factor)
    # a coefficient that overflowed (float32, wildly divergent rates in the group) spoils its step
    # for every point: only students that diverged before that step keep their poly results
    finite = np.isfinite(train_coef).all(axis=-1) & np.isfinite(test_coef).all(axis=-1)
    first_bad = int(np.argmin(finite)) if not finite.all() else len(finite)
    k_train = condition(train_coef, pl.monomials, lrs, scale, train)
    k_test = condition(test_coef, pl.monomials, lrs, scale, test)
    n_steps = train.shape[1]
    steps = np.arange(n_steps)[None, :]
    end = np.where(res["diverged"], res["diverged_step"], n_steps)[:, None]  # first step not alive
    with np.errstate(invalid="ignore", over="ignore"):
        err = k_train * coef_eps * np.abs(train)
        threshold = spec.diverge_factor * np.maximum(train[:, :1], 1e-30)
        verdict_ok = ~np.isfinite(train) | (np.abs(train - threshold) > err + spec.diverge_factor * err[:, :1])
        logged = np.zeros(n_steps, bool)
        logged[list(spec.log_steps)] = True
        precise = (k_train * coef_eps <= rtol) & (k_test * coef_eps <= rtol)
    ok = np.where(steps <= end, verdict_ok, True) & np.where(logged[None, :] & (steps < end), precise, True)
    return res, ok.all(axis=1) & ((end[:, 0] < first_bad) | (first_bad == n_steps))


# --------------------------------------------------------------------------------------
# A group, chunk by chunk (the engine's contract)
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PolyChunk:
    """Instances computed in one call, with their coefficients (u_real, steps + 1, n_monomials)."""
    index: int
    instance_hp: dict            # column -> (u_real,) numpy array
    student_ids: np.ndarray      # (n,) students evaluated here, in result order
    train_coef: np.ndarray
    test_coef: np.ndarray
    monomials: np.ndarray        # (n_monomials, m)
    present: np.ndarray          # (steps + 1, n_monomials) bool
    lr_scale: float


def group_scale(students, m: int) -> float:
    """s = the largest |eta_l| of the group (1 if all are 0)."""
    lrs = np.abs(students[[f"lr_{i}" for i in range(1, m + 1)]].to_numpy(np.float64))
    s = float(lrs.max()) if lrs.size else 0.0
    return s if s > 0 and math.isfinite(s) else 1.0


def make_retrain_fn(spec):
    """Jitted ``(params0, inst, lrs (p, m)) -> StudentResult`` of grid mode (:func:`engine.make_train_one`)
    for p points of one instance whose data are already built (no instance generation compiled)."""
    return jax.jit(jax.vmap(engine.make_train_one(spec), in_axes=(None, None, 0)))


def _retrain(spec, retrain_fn, params0, inst, lrs, cap: int) -> dict:
    """Grid mode for the points ``lrs`` (k, m) of one instance, in padded power-of-two batches <= cap."""
    k = len(lrs)
    p = min(cap, 1 << max(0, math.ceil(math.log2(k))))
    out = []
    for start in range(0, k, p):
        batch = lrs[start:start + p]
        padded = np.concatenate([batch, np.repeat(batch[:1], p - len(batch), axis=0)])
        res = jax.device_get(retrain_fn(params0, inst, jnp.asarray(padded, params0[0].dtype)))
        out.append({f: np.asarray(getattr(res, f))[:len(batch)] for f in res._fields})
    return {f: np.concatenate([o[f] for o in out]) for f in out[0]}


def iter_group(spec, students, *, max_memory: int | None = None, chunk_size: int | None = None,
               skip: set | None = None, scale: float | None = None) -> Iterator[tuple[PolyChunk, dict]]:
    """Poly mode for one group: yields (chunk, host results) like :func:`lrsweep.engine.iter_group`.

    A :class:`PolyChunk` holds as many instances as fit ``max_memory`` (at least one; padded so no
    chunk recompiles); each instance's coefficients are computed once and evaluated at all of its
    students' learning rates. Students whose polynomial evaluation is ill-conditioned (see
    :func:`evaluate_students`) are trained in grid mode on the same instance data
    (:func:`make_retrain_fn`); ``result["mode"]`` says which mode produced each student.
    ``scale``: s (default :func:`group_scale`). ``chunk_size`` caps those grid-mode batches.
    """
    pl = plan(spec)
    if not pl.feasible:
        raise TooLarge(pl.reason)
    m = spec.arch.n_trainable
    scale = group_scale(students, m) if scale is None else float(scale)
    dtype = jnp.result_type(float)
    coef_eps, rtol = float(jnp.finfo(dtype).eps), rtol_for(dtype)
    inst_ids = students.groupby(list(INSTANCE_COLUMNS), sort=False).ngroup().to_numpy()
    n_inst = int(inst_ids.max()) + 1
    members = [np.flatnonzero(inst_ids == i) for i in range(n_inst)]
    first = np.array([mem[0] for mem in members])
    hp_all = {c: students[c].to_numpy()[first] for c in INSTANCE_COLUMNS}
    lrs_all = students[[f"lr_{i}" for i in range(1, m + 1)]].to_numpy(np.float64)
    ids_all = students["student_id"].to_numpy(np.int64)
    budget = max_memory or engine.default_max_memory(spec)
    itemsize = jnp.dtype(dtype).itemsize
    u = max(1, min(n_inst, budget // max(1, pl.peak_elements * itemsize)))
    cap = max(1, min(chunk_size or budget, budget // engine.bytes_per_student(spec, itemsize)))
    fn = make_coefficient_fn(spec, pl)
    retrain_fn = None
    for index, start in enumerate(range(0, n_inst, u)):
        if skip and index in skip:
            continue
        rows = np.arange(start, start + u)
        real = rows[rows < n_inst]
        rows = np.where(rows < n_inst, rows, 0)  # pad with instance 0 (results discarded)
        hp = InstanceHparams(seed=jnp.asarray(hp_all["seed"][rows], jnp.uint32),
                             noise_std=jnp.asarray(hp_all["noise_std"][rows], dtype),
                             target_std=jnp.asarray(hp_all["target_std"][rows], dtype),
                             init_scale=jnp.asarray(hp_all["init_scale"][rows], dtype))
        params0, inst = make_instances(spec.task, spec.arch, spec.init, True, hp)
        train_c, test_c = (np.asarray(a, np.float64)[:len(real)] for a in jax.device_get(fn(params0, inst, scale)))
        parts = []
        for r, i in enumerate(real):
            sel = members[i]
            res, ok = evaluate_students(spec, pl, train_c[r], test_c[r], lrs_all[sel], scale, coef_eps, rtol)
            res["mode"] = np.where(ok, "poly", "grid").astype(object)
            if not ok.all():  # ill-conditioned points: grid mode on this instance
                retrain_fn = retrain_fn or make_retrain_fn(spec)
                one = jax.tree_util.tree_map(lambda a: a[r], (params0, inst))
                grid = _retrain(spec, retrain_fn, *one, lrs_all[sel][~ok], cap)
                for key in ("train_loss", "test_loss", "diverged", "diverged_step"):
                    res[key][~ok] = grid[key]
            parts.append({"student_id": ids_all[sel], **res})
        result = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        chunk = PolyChunk(index, {c: v[real] for c, v in hp_all.items()}, result["student_id"], train_c, test_c,
                          pl.monomials, pl.present, scale)
        yield chunk, result


# --------------------------------------------------------------------------------------
# Stored coefficients
# --------------------------------------------------------------------------------------

def coefficient_schema(m: int) -> pa.Schema:
    """Long format: one row per (instance, step, monomial present at that step)."""
    return pa.schema([("run_id", pa.string()), ("group_id", pa.int64()), ("seed", pa.int64()),
                      ("noise_std", pa.float64()), ("target_std", pa.float64()), ("init_scale", pa.float64()),
                      ("step", pa.int64())] + [(f"e_{i}", pa.int64()) for i in range(1, m + 1)]
                     + [("lr_scale", pa.float64()), ("train_coef", pa.float64()), ("test_coef", pa.float64())])


def coefficient_table(chunk: PolyChunk, run_id: str, group_id: int) -> pd.DataFrame:
    """The chunk's coefficients as rows of :func:`coefficient_schema`."""
    n_steps, _ = chunk.present.shape
    t_idx, j_idx = np.nonzero(chunk.present)
    n_inst = len(chunk.instance_hp["seed"])
    cols = {"run_id": run_id, "group_id": np.int64(group_id)}
    for c in INSTANCE_COLUMNS:
        cols[c] = np.repeat(chunk.instance_hp[c], len(t_idx))
    cols["step"] = np.tile(t_idx, n_inst).astype(np.int64)
    for i in range(chunk.monomials.shape[1]):
        cols[f"e_{i + 1}"] = np.tile(chunk.monomials[j_idx, i], n_inst).astype(np.int64)
    cols["lr_scale"] = chunk.lr_scale
    cols["train_coef"] = chunk.train_coef[:, t_idx, j_idx].reshape(-1)
    cols["test_coef"] = chunk.test_coef[:, t_idx, j_idx].reshape(-1)
    return pd.DataFrame(cols)


def evaluate(run, step=None, **lrs) -> pd.DataFrame:
    """Train and test loss of every stored poly instance at learning rates ``lr_1=..., lr_2=...``.

    Reads the coefficients of a run directory (``poly.parquet``, or its parts while running) and
    evaluates them at the broadcast arrays ``lr_1 .. lr_m``, for the poly groups with m trained
    layers, without training. ``step``: an int or a list (default: every step 0..steps).
    Divergence as in training: losses at steps >= ``diverged_step`` are NaN. Returns one row per
    (group, instance, point, step); ``condition`` is kappa of :func:`condition` (the relative error
    is about kappa times the eps of the dtype the run computed the coefficients in).
    """
    from lrsweep import store
    run = Path(run)
    m = len(lrs)
    if sorted(lrs) != sorted(f"lr_{i}" for i in range(1, m + 1)) or m == 0:
        raise ValueError(f"give one learning rate per trained layer: lr_1=..., ..., lr_m=...; got {sorted(lrs)}")
    keys = [f"lr_{i}" for i in range(1, m + 1)]
    points = np.stack(np.broadcast_arrays(*(np.asarray(lrs[k], np.float64) for k in keys)), -1).reshape(-1, m)
    table = store.read_table(store.marked_parts(run, "poly"))
    if table.empty:
        raise ValueError(f"{run} has no stored coefficients (no group ran in poly mode)")
    factor = store.read_table(store.marked_parts(run, "students")).groupby("group_id")["diverge_factor"].first()
    exp_cols = [f"e_{i}" for i in range(1, m + 1)]
    frames = []
    for gid, g in table.groupby("group_id", sort=True):
        n_vars = sum(1 for c in g.columns if c.startswith("e_") and g[c].notna().all())
        if n_vars != m:
            continue
        for inst, gi in g.groupby(list(INSTANCE_COLUMNS), sort=True):
            monos, col = np.unique(gi[exp_cols].to_numpy(np.int64), axis=0, return_inverse=True)
            n_steps = int(gi["step"].max()) + 1
            coef = {}
            for k in ("train_coef", "test_coef"):
                coef[k] = np.zeros((n_steps, len(monos)))
                coef[k][gi["step"].to_numpy(), col.reshape(-1)] = gi[k].to_numpy()
            scale = float(gi["lr_scale"].iloc[0])
            train = evaluate_coefficients(coef["train_coef"], monos, points, scale)
            test = evaluate_coefficients(coef["test_coef"], monos, points, scale)
            res = apply_divergence(train, test, range(n_steps), float(factor.loc[gid]))
            kappa = np.fmax(condition(coef["train_coef"], monos, points, scale, train),
                            condition(coef["test_coef"], monos, points, scale, test))
            div_step = pd.array(res["diverged_step"].astype(np.int64), dtype="Int64")
            div_step[~res["diverged"]] = pd.NA
            want = list(range(n_steps)) if step is None else [int(t) for t in np.atleast_1d(step)]
            if any(not 0 <= t < n_steps for t in want):
                raise ValueError(f"step: {step} is outside 0..{n_steps - 1} (group {gid})")
            for t in want:
                frames.append(pd.DataFrame({
                    "group_id": gid, **dict(zip(INSTANCE_COLUMNS, inst)), "point": np.arange(len(points)),
                    **{k: points[:, i] for i, k in enumerate(keys)}, "step": int(t),
                    "train_loss": res["train_loss"][:, t], "test_loss": res["test_loss"][:, t],
                    "diverged": res["diverged"], "diverged_step": div_step, "condition": kappa[:, t]}))
    if not frames:
        raise ValueError(f"{run}: no poly group has {m} trained layers (lr_1..lr_{m})")
    return pd.concat(frames, ignore_index=True).sort_values(
        ["group_id", *INSTANCE_COLUMNS, "point", "step"], kind="stable").reset_index(drop=True)
