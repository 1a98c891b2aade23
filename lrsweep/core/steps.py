"""Step formulations: the loss and its gradient for one student, computed three exact ways.

- :func:`autodiff_loss_and_grads`: reverse mode through the forward pass on the data X (any
  student, ReLU included). The reference the fast path is tested against.
- :func:`moments_loss_and_grads`: linear students under MSE see the data only through
  S = X^T X / n, X^T y / n and y^T y / n. With W = W_eff,
  L = 1/2 (tr W^T S W - 2 tr W^T (X^T y / n) + y^T y / n) and dL/dW_eff = S W - X^T y / n,
  pulled back to each W_l through the product W_1..W_m (a, for paper_deep). With the vector
  readout every product is matrix-vector: O(m h^2 + d^2) per step instead of O(n d h).
  Caveat: L is a difference of O(1) terms, so its relative precision drops once
  L << y^T y / n (use ``--x64`` when training to small loss with this path).
- :func:`lowrank_loss_and_grads`: for linear students with one output (paper_deep's vector readout)
  every layer's gradient is rank one, dL/dW_k = c q_k s_{k+1}^T with q_k = (W_1..W_{k-1})^T g,
  s_{k+1} = W_{k+1}..W_m a, g = S w - X^T y / n, c the output scale. So after t steps
  W_k = W_k^0 + L_k^T R_k with t rows in L_k, R_k, and the initial W_k^0 is the instance's, shared
  by all its learning-rate points: the products W_k^0 x of a chunk become one matrix-matrix
  product per instance (compute bound) instead of streaming every student's own h x h weights
  (memory bound). O(T h) state per layer for T steps instead of h^2; same numbers as ``moments``.

``gradient="signal_only"`` keeps only the target-driven part of the gradient (the residual
f(X) - y replaced by -y): the paper's gradient approximation (seed 000, Sec. 4, "signal" term).

Each formulation is a :class:`Formulation`: ``requires`` says what it needs of a group (or why it
cannot run it), ``init`` builds a student's trained state from the instance's initial weights,
``loss_and_grads`` returns ``(train_loss, grads, w_eff, aux)`` (grads by layer name; ``w_eff`` None
where the step did not form it), ``apply`` adds the optimizer's updates, ``dense`` gives the weights.
A head moved outside the optimizer's step (best response, alternating: :mod:`lrsweep.families.stackelberg.heads`) acts
on the dense weights before each step, so it runs with the dense formulations only.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrsweep.core.losses import LOSSES
from lrsweep.core.students import effective_weight, predict
from lrsweep.core.tasks import TASKS


def _moments_loss(w_eff, sw, inst):
    """L = 1/2 (tr W^T S W - 2 tr W^T X^T y / n + y^T y / n), given sw = S W."""
    return 0.5 * (jnp.sum(w_eff * sw) - 2.0 * jnp.sum(w_eff * inst["xy"]) + inst["yy"])


def moments_loss_and_grads(spec, params0, params, inst, ctx):
    del params0, ctx
    w_eff, pullback = jax.vjp(lambda p: effective_weight(spec.arch, p, inst["readout"]), params)
    sw = inst["xx"] @ w_eff
    loss = _moments_loss(w_eff, sw, inst)
    cotangent = sw - inst["xy"] if spec.gradient == "exact" else -inst["xy"]
    (grads,) = pullback(cotangent)
    return loss, grads, w_eff, None


def autodiff_loss_and_grads(spec, params0, params, inst, ctx):
    del params0
    x, y, weights = TASKS[spec.task.kind].batch(spec, inst, ctx)
    pred, pullback = jax.vjp(lambda p: predict(spec.arch, p, inst["readout"], x), params)
    loss, cotangent = LOSSES[spec.loss].value_and_cotangent(pred, y, weights)
    if spec.gradient == "signal_only":
        cotangent = -y / x.shape[0] if weights is None else -weights[:, None] * y
    (grads,) = pullback(cotangent)
    return loss, grads, None, None  # the test loss forms W_eff itself, only at logged steps


def train_loss(spec, params, inst, ctx):
    """The train loss of dense weights ``params`` at step ``ctx.t``, as a differentiable function of
    them (curvature metrics differentiate it twice): the moments loss where the instance holds the
    moments (``xx``: moments and lowrank formulations), else the loss of the task's batch. Always the
    true loss: ``gradient: signal_only`` changes the step's gradient, not the loss."""
    if "xx" in inst:
        w_eff = effective_weight(spec.arch, params, inst["readout"])
        return _moments_loss(w_eff, inst["xx"] @ w_eff, inst)
    x, y, weights = TASKS[spec.task.kind].batch(spec, inst, ctx)
    return LOSSES[spec.loss].value_and_cotangent(predict(spec.arch, params, inst["readout"], x), y, weights)[0]


class LowRank(NamedTuple):
    """Trained state of the ``lowrank`` formulation: W_k = W_k^0 + left[k]^T right[k] (by layer name).

    left[k] (T, rows of W_k), right[k] (T, columns of W_k): row t is step t's update
    -eta_k c q_k and s_{k+1} (zero rows for steps not taken yet, or taken by a frozen student).
    """
    left: dict
    right: dict


def _times(w0, left, right, x):
    """(W^0 + L^T R) x."""
    return w0 @ x + left.T @ (right @ x)


def _times_transposed(w0, left, right, q):
    """(W^0 + L^T R)^T q."""
    return q @ w0 + right.T @ (left @ q)


def lowrank_loss_and_grads(spec, params0, state: LowRank, inst, ctx):
    """Loss, per-layer left gradient factors c q_k (right factors s_{k+1} in aux) and w = W_eff."""
    del ctx
    arch = spec.arch
    names = arch.layer_names
    m = arch.n_trainable
    s = [None] * (m + 2)  # s[k] = W_k .. W_m a (1-based), s[m + 1] = a (or 1: standard's last layer)
    s[m + 1] = inst["readout"][:, 0] if arch.has_readout else jnp.ones((1,), inst["xx"].dtype)
    for k in range(m, 0, -1):
        name = names[k - 1]
        s[k] = _times(params0[name], state.left[name], state.right[name], s[k + 1])
    w = arch.output_scale * s[1]
    sw = inst["xx"] @ w
    b = inst["xy"][:, 0]
    loss = 0.5 * (w @ sw - 2.0 * (w @ b) + inst["yy"])
    q = sw - b if spec.gradient == "exact" else -b
    lefts = {}
    for k in range(1, m + 1):
        lefts[names[k - 1]] = arch.output_scale * q
        if k < m:
            name = names[k - 1]
            q = _times_transposed(params0[name], state.left[name], state.right[name], q)
    return loss, lefts, w[:, None], dict(zip(names, s[2:]))


def lowrank_init(spec, params0) -> LowRank:
    rows = max(spec.steps, 1)
    return LowRank({k: jnp.zeros((rows, w.shape[0]), w.dtype) for k, w in params0.items()},
                   {k: jnp.zeros((rows, w.shape[1]), w.dtype) for k, w in params0.items()})


def lowrank_apply(state: LowRank, updates, rights, t) -> LowRank:
    return LowRank({k: l.at[t].set(updates[k]) for k, l in state.left.items()},
                   {k: r.at[t].set(rights[k]) for k, r in state.right.items()})


def lowrank_dense(spec, params0, state: LowRank) -> dict:
    return {k: params0[k] + state.left[k].T @ state.right[k] for k in params0}


class Formulation(NamedTuple):
    """How one student's step is computed; the engine's scan body is written against this.

    requires(spec) -> None or why it cannot run the group; init(spec, params0) -> state;
    loss_and_grads(spec, params0, state, inst, ctx) -> (loss, grads {layer: array}, w_eff, aux);
    apply(state, updates, aux, t) -> state; dense(spec, params0, state) -> weights {layer: matrix}.
    """
    requires: Callable
    init: Callable
    loss_and_grads: Callable
    apply: Callable
    dense: Callable


def moments_blocker(spec) -> str | None:
    """None where the data enter only through their moments: a linear student under the squared
    loss, trained on the whole (fixed) training set."""
    if not spec.arch.is_linear:
        return f"the student is not linear (model.activation: {spec.arch.activation})"
    if not LOSSES[spec.loss].quadratic:
        return f"the loss is not quadratic (train.loss: {spec.loss}; needs mse)"
    if spec.stochastic:
        return f"the steps see sampled batches (train.batch_size: {spec.batch_size}; needs the whole training set)"
    return None


def lowrank_blocker(spec) -> str | None:
    """None if the ``lowrank`` formulation applies (rank-one updates of plain gd, one output)."""
    why = moments_blocker(spec)
    if why is not None:
        return why
    if spec.arch.output_dim != 1:
        return (f"the student has {spec.arch.output_dim} outputs (needs 1: paper_deep, or standard with "
                f"output_dim 1)")
    if not TASKS[spec.task.kind].exact_linear_risk(spec):
        return f"the teacher is not linear (task.teacher_activation: {spec.task.teacher_activation})"
    if spec.optimizer != "gd":
        return f"train.optimizer is {spec.optimizer}, not gd"
    return hook_blocker(spec)


def hook_blocker(spec) -> str | None:
    """None where the optimizer's step moves every layer (no step hook acts on the dense weights)."""
    return spec.hooks[0].why(spec) if spec.hooks else None


def _dense(loss_and_grads, requires) -> Formulation:
    """A formulation whose state is the dense weights themselves."""
    return Formulation(requires, lambda spec, params0: params0, loss_and_grads,
                       lambda params, updates, aux, t: optax.apply_updates(params, updates),
                       lambda spec, params0, params: params)


FORMULATIONS = {"moments": _dense(moments_loss_and_grads, moments_blocker),
                "autodiff": _dense(autodiff_loss_and_grads, lambda spec: None),
                "lowrank": Formulation(lowrank_blocker, lowrank_init, lowrank_loss_and_grads, lowrank_apply,
                                       lowrank_dense)}


def state_size(arch, formulation: str, steps: int) -> int:
    """Words of one student's trained state: the weights, or T rows of (r_k + c_k) per layer (lowrank)."""
    if formulation == "lowrank":
        return max(steps, 1) * sum(r + c for r, c in arch.shapes)
    return arch.n_params


def lowrank_cheaper(arch, steps: int) -> bool:
    """Whether T rank-one rows per layer take less state than the dense weights: sum_k T (r_k + c_k) < sum_k r_k c_k."""
    return state_size(arch, "lowrank", steps) < arch.n_params


def resolve_formulation(spec) -> str:
    """``spec.formulation`` checked against its requirements, or for ``auto``: ``lowrank`` where it
    applies and its state is smaller than the weights, else ``moments`` where it applies, else
    ``autodiff``. Raises ValueError naming what the requested formulation needs."""
    requested = spec.formulation
    if requested == "auto":
        if lowrank_blocker(spec) is None and lowrank_cheaper(spec.arch, spec.steps):
            return "lowrank"
        return "moments" if moments_blocker(spec) is None else "autodiff"
    why = FORMULATIONS[requested].requires(spec)
    if why is not None:
        allowed = ["auto"] + [k for k in ("moments", "lowrank", "autodiff") if FORMULATIONS[k].requires(spec) is None]
        raise ValueError(f"`{requested}` does not apply: {why}; allowed here: {', '.join(allowed)}")
    return requested
