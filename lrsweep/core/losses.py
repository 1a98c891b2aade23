"""Training losses: a small value type per loss, chosen by ``train.loss`` and carried in the group spec.

The train loss is the mean over samples of a per-sample loss ell(prediction, label):

- ``mse``:         ell = 1/2 ||f(x) - y||^2                       (seed 000; quadratic)
- ``logistic``:    ell = log(1 + exp(-y f(x))), y in {-1, +1}    (seed 003, Sec. 2)
- ``exponential``: ell = exp(-y f(x)),          y in {-1, +1}    (seed 003, Sec. 2)

Each loss gives its value and dL/dprediction together (``value_and_cotangent``), which the
``autodiff`` formulation pulls back through the student. Logistic is computed through
``logaddexp`` and a sigmoid of ``-|m|``, so it is finite and exact at margins m = y f(x) of
+-1e4; exponential is allowed to overflow to inf at large negative margins, which the divergence
rule records. ``quadratic`` says whether the loss is the squared error, which the exact fast paths
(the ``moments`` and ``lowrank`` formulations, poly mode, the ``signal_only`` gradient) need.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class Loss:
    """name; per_sample(pred (n, k), y (n, k)) -> (n,); value_and_cotangent(pred, y, weights=None) ->
    (mean loss, or sum_i weights_i ell_i; dL/dpred (n, k)); quadratic: the squared error (what moments, lowrank, poly and signal_only need);
    binary_labels: labels must be in {-1, +1} with one output."""
    name: str
    per_sample: Callable
    value_and_cotangent: Callable
    quadratic: bool
    binary_labels: bool


def _weights(pred, weights):
    """(n, 1) per-sample weights: 1/n (the mean), or the given ones (a masked minibatch: 1/m on m rows)."""
    if weights is None:
        return jnp.full((pred.shape[0], 1), 1.0 / pred.shape[0], pred.dtype)
    return weights.astype(pred.dtype)[:, None]


def _mse_value_and_cotangent(pred, y, weights=None):
    w = _weights(pred, weights)
    residual = pred - y
    return 0.5 * jnp.sum(w * residual * residual), w * residual


def _logistic_per_sample(pred, y):
    return jnp.sum(jnp.logaddexp(0.0, -y * pred), axis=-1)


def _logistic_value_and_cotangent(pred, y, weights=None):
    w = _weights(pred, weights)
    margin = y * pred
    # d/dm log(1 + e^-m) = -sigmoid(-m); jax.nn.sigmoid is stable at |m| = 1e4
    return jnp.sum(w[:, 0] * _logistic_per_sample(pred, y)), -w * y * jax.nn.sigmoid(-margin)


def _exponential_per_sample(pred, y):
    return jnp.sum(jnp.exp(-y * pred), axis=-1)


def _exponential_value_and_cotangent(pred, y, weights=None):
    w = _weights(pred, weights)
    e = jnp.exp(-y * pred)
    return jnp.sum(w * e), -w * y * e


LOSSES = {
    "mse": Loss("mse", lambda pred, y: 0.5 * jnp.sum((pred - y) ** 2, axis=-1), _mse_value_and_cotangent,
                quadratic=True, binary_labels=False),
    "logistic": Loss("logistic", _logistic_per_sample, _logistic_value_and_cotangent, quadratic=False,
                     binary_labels=True),
    "exponential": Loss("exponential", _exponential_per_sample, _exponential_value_and_cotangent,
                        quadratic=False, binary_labels=True),
}
