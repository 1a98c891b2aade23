"""Step formulations: the loss and its gradient for one student, computed three exact ways.

- :func:`autodiff_loss_and_grads`: reverse mode through the forward pass on the data X (any
  student, ReLU included). The reference the fast path is tested against.
- :func:`moments_loss_and_grads`: linear students under MSE see the data only through
  S = X^T X / n, X^T y / n and y^T y / n. With W = W_eff,
  L = 1/2 (tr W^T S W - 2 tr W^T (X^T y / n) + y^T y / n) and dL/dW_eff = S W - X^T y / n,
  pulled back to each W_l through the product W_1..W_m (a, for paper_deep). With the vector
  head every product is matrix-vector: O(m h^2 + d^2) per step instead of O(n d h).
  Caveat: L is a difference of O(1) terms, so its relative precision drops once
  L << y^T y / n (use ``--x64`` when training to small loss with this path).
- :func:`lowrank_loss_and_grads`: for linear students with one output (paper_deep's vector head)
  every layer's gradient is rank one, dL/dW_k = c q_k s_{k+1}^T with q_k = (W_1..W_{k-1})^T g,
  s_{k+1} = W_{k+1}..W_m a, g = S w - X^T y / n, c the output scale. So after t steps
  W_k = W_k^0 + L_k^T R_k with t rows in L_k, R_k, and the initial W_k^0 is the instance's, shared
  by all its learning-rate points: the products W_k^0 x of a chunk become one matrix-matrix
  product per instance (compute bound) instead of streaming every student's own h x h weights
  (memory bound). O(T h) state per layer for T steps instead of h^2; same numbers as ``moments``.

``gradient="signal_only"`` keeps only the target-driven part of the gradient (the residual
f(X) - y replaced by -y): the paper's gradient approximation (seed 000, Sec. 4, "signal" term).

Each formulation is a :class:`Formulation`: ``init`` builds a student's trained state from the
instance's initial weights, ``loss_and_grads`` returns ``(train_loss, grads, w_eff, aux)``
(``w_eff`` None where the step did not form it) and ``apply`` adds the optimizer's updates.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrsweep.students import Architecture, effective_weight, predict
from lrsweep.tasks import Instance


def moments_loss_and_grads(arch: Architecture, params, inst: Instance, gradient: str = "exact"):
    w_eff, pullback = jax.vjp(lambda p: effective_weight(arch, p, inst.head), params)
    sw = inst.xx @ w_eff
    loss = 0.5 * (jnp.sum(w_eff * sw) - 2.0 * jnp.sum(w_eff * inst.xy) + inst.yy)
    cotangent = sw - inst.xy if gradient == "exact" else -inst.xy
    (grads,) = pullback(cotangent)
    return loss, grads, w_eff


def autodiff_loss_and_grads(arch: Architecture, params, inst: Instance, gradient: str = "exact"):
    n = inst.x.shape[0]
    pred, pullback = jax.vjp(lambda p: predict(arch, p, inst.head, inst.x), params)
    residual = pred - inst.y
    loss = 0.5 * jnp.sum(residual * residual) / n
    cotangent = residual if gradient == "exact" else -inst.y
    (grads,) = pullback(cotangent / n)
    return loss, grads, None  # the test loss forms W_eff itself, only at logged steps


class LowRank(NamedTuple):
    """Trained state of the ``lowrank`` formulation: W_k = W_k^0 + left[k]^T right[k].

    left[k] (T, rows of W_k), right[k] (T, columns of W_k): row t is step t's update
    -eta_k c q_k and s_{k+1} (zero rows for steps not taken yet, or taken by a frozen student).
    """
    left: tuple
    right: tuple


def _times(w0, left, right, x):
    """(W^0 + L^T R) x."""
    return w0 @ x + left.T @ (right @ x)


def _times_transposed(w0, left, right, q):
    """(W^0 + L^T R)^T q."""
    return q @ w0 + right.T @ (left @ q)


def lowrank_loss_and_grads(arch: Architecture, params0, state: LowRank, inst: Instance, gradient: str = "exact"):
    """Loss, per-layer left gradient factors c q_k (right factors s_{k+1} in aux) and w = W_eff."""
    m = arch.n_trainable
    s = [None] * (m + 2)  # s[k] = W_k .. W_m a (1-based), s[m + 1] = a (or 1: standard's last layer)
    s[m + 1] = inst.head[:, 0] if arch.parameterization == "paper_deep" else jnp.ones((1,), inst.xx.dtype)
    for k in range(m, 0, -1):
        s[k] = _times(params0[k - 1], state.left[k - 1], state.right[k - 1], s[k + 1])
    w = arch.output_scale * s[1]
    sw = inst.xx @ w
    b = inst.xy[:, 0]
    loss = 0.5 * (w @ sw - 2.0 * (w @ b) + inst.yy)
    q = sw - b if gradient == "exact" else -b
    lefts = []
    for k in range(1, m + 1):
        lefts.append(arch.output_scale * q)
        if k < m:
            q = _times_transposed(params0[k - 1], state.left[k - 1], state.right[k - 1], q)
    return loss, tuple(lefts), w[:, None], tuple(s[2:])


def lowrank_init(arch: Architecture, params0, steps: int) -> LowRank:
    rows = max(steps, 1)
    return LowRank(tuple(jnp.zeros((rows, w.shape[0]), w.dtype) for w in params0),
                   tuple(jnp.zeros((rows, w.shape[1]), w.dtype) for w in params0))


def lowrank_apply(state: LowRank, updates, rights, t) -> LowRank:
    return LowRank(tuple(l.at[t].set(u) for l, u in zip(state.left, updates)),
                   tuple(r.at[t].set(v) for r, v in zip(state.right, rights)))


class Formulation(NamedTuple):
    """How one student's step is computed; the engine's scan body is written against this.

    init(arch, params0, steps) -> state; loss_and_grads(arch, params0, state, inst, gradient) ->
    (loss, grads, w_eff, aux); apply(state, updates, aux, t) -> state. ``grads`` has one leaf per
    trained layer (what the optax transform scales by eta_l).
    """
    init: Callable
    loss_and_grads: Callable
    apply: Callable


def _dense(loss_and_grads) -> Formulation:
    """A formulation whose state is the dense weights (W_1, ..., W_m) themselves."""
    def with_aux(arch, params0, params, inst, gradient):
        del params0
        return (*loss_and_grads(arch, params, inst, gradient), None)
    return Formulation(lambda arch, params0, steps: params0, with_aux,
                       lambda params, updates, aux, t: optax.apply_updates(params, updates))


FORMULATIONS = {"moments": _dense(moments_loss_and_grads), "autodiff": _dense(autodiff_loss_and_grads),
                "lowrank": Formulation(lowrank_init, lowrank_loss_and_grads, lowrank_apply)}


def linear_gd_blocker(arch: Architecture, optimizer: str, teacher_activation: str) -> str | None:
    """None for a linear student and teacher under gd (what the exact fast paths need), else why not."""
    if not arch.is_linear:
        return f"the student is not linear (model.activation: {arch.activation})"
    if teacher_activation != "linear":
        return f"the teacher is not linear (task.teacher_activation: {teacher_activation})"
    if optimizer != "gd":
        return f"train.optimizer is {optimizer}, not gd"
    return None


def lowrank_blocker(arch: Architecture, optimizer: str, teacher_activation: str) -> str | None:
    """None if the ``lowrank`` formulation applies (rank-one updates), else why not."""
    if arch.is_linear and arch.output_dim != 1:
        return f"the student has {arch.output_dim} outputs (needs 1: paper_deep, or standard with output_dim 1)"
    return linear_gd_blocker(arch, optimizer, teacher_activation)


def state_size(arch: Architecture, formulation: str, steps: int) -> int:
    """Words of one student's trained state: the weights, or T rows of (r_k + c_k) per layer (lowrank)."""
    if formulation == "lowrank":
        return max(steps, 1) * sum(r + c for r, c in arch.shapes)
    return arch.n_params


def lowrank_cheaper(arch: Architecture, steps: int) -> bool:
    """Whether T rank-one rows per layer take less state than the dense weights: sum_k T (r_k + c_k) < sum_k r_k c_k."""
    return state_size(arch, "lowrank", steps) < arch.n_params


def resolve_formulation(requested: str, arch: Architecture, optimizer: str = "gd", steps: int = 0,
                        teacher_activation: str = "linear") -> str:
    """``auto``: ``lowrank`` where it applies and its state is smaller than the weights, else
    ``moments`` for linear students (MSE), ``autodiff`` otherwise."""
    if requested == "auto":
        if lowrank_blocker(arch, optimizer, teacher_activation) is None and lowrank_cheaper(arch, steps):
            return "lowrank"
        return "moments" if arch.is_linear else "autodiff"
    if requested == "moments" and not arch.is_linear:
        raise ValueError("train.formulation: `moments` needs a linear student (model.activation: linear); "
                         "allowed for ReLU students: auto, autodiff")
    if requested == "lowrank":
        why = lowrank_blocker(arch, optimizer, teacher_activation)
        if why is not None:
            raise ValueError(f"train.formulation: `lowrank` does not apply: {why}; allowed here: auto, "
                             + ("moments, autodiff" if arch.is_linear else "autodiff"))
    return requested
