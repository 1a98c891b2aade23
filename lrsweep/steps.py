"""Step formulations: the loss and its gradient for one student, computed two exact ways.

- :func:`autodiff_loss_and_grads`: reverse mode through the forward pass on the data X (any
  student, ReLU included). The reference the fast path is tested against.
- :func:`moments_loss_and_grads`: linear students under MSE see the data only through
  S = X^T X / n, X^T y / n and y^T y / n. With W = W_eff,
  L = 1/2 (tr W^T S W - 2 tr W^T (X^T y / n) + y^T y / n) and dL/dW_eff = S W - X^T y / n,
  pulled back to each W_l through the product W_1..W_m (a, for paper_deep). With the vector
  head every product is matrix-vector: O(m h^2 + d^2) per step instead of O(n d h).
  Caveat: L is a difference of O(1) terms, so its relative precision drops once
  L << y^T y / n (use ``--x64`` when training to small loss with this path).

``gradient="signal_only"`` keeps only the target-driven part of the gradient (the residual
f(X) - y replaced by -y): the paper's gradient approximation (seed 000, Sec. 4, "signal" term).
Both return ``(train_loss, grads, w_eff)``; ``w_eff`` is None where the step did not form it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

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


FORMULATIONS = {"moments": moments_loss_and_grads, "autodiff": autodiff_loss_and_grads}


def resolve_formulation(requested: str, arch: Architecture) -> str:
    """``auto`` picks ``moments`` for linear students (MSE), ``autodiff`` otherwise."""
    if requested == "auto":
        return "moments" if arch.is_linear else "autodiff"
    if requested == "moments" and not arch.is_linear:
        raise ValueError("train.formulation: `moments` needs a linear student (model.activation: linear); "
                         "allowed for ReLU students: auto, autodiff")
    return requested
