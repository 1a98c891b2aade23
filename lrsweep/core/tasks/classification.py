"""Binary classification (seed 003, "Implicit bias of deep linear networks in the large learning
rate phase"): labels in {-1, +1}, trained with the logistic or exponential loss (or mse).

``task.data``:

- ``degenerate`` (seed 003, Assumption 3): the same feature with opposite labels; here n_train
  points at x = e_1, half labelled +1 and half -1 (the empirical risk of the paper's two points).
- ``separable``: x ~ N(0, I_d), labelled by a random unit direction w (``teacher`` key),
  y = sign(x . w), then moved margin / 2 along y w: every point has y (x . w) >= margin / 2.
- ``nonseparable``: the same, with exactly round(flip_fraction * n) labels flipped (chosen by
  the ``noise`` key).
- ``points``: ``task.points``, explicit rows [x_1, ..., x_d, y].

Evaluation: ``test_loss`` (the training loss on a test set) and ``test_error`` (0-1 error,
sign(f(x)) != y, a zero output counted as an error). The test set is n_test fresh samples of the
same distribution for separable / nonseparable, and the training set itself for degenerate and
points data (there is nothing else to draw from).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrsweep.core.tasks import base as tasks
from lrsweep.core.losses import LOSSES
from lrsweep.core.students import predict


def _gaussian_classes(key_x, key_flip, w, n, d, margin, flip_fraction, dtype):
    x = jax.random.normal(key_x, (n, d), dtype)
    y = jnp.where(x @ w >= 0, 1.0, -1.0).astype(dtype)
    x = x + (0.5 * margin * y)[:, None] * w[None, :]
    flips = jnp.round(flip_fraction * n)
    flipped = jax.random.permutation(key_flip, n) < flips  # exactly `flips` of the n labels
    return x, jnp.where(flipped, -y, y)[:, None]


def make_data(spec, keys, hp, dtype) -> dict:
    task, d, n = spec.task, spec.task.input_dim, spec.task.n_train
    if task.data == "degenerate":
        x = jnp.zeros((n, d), dtype).at[:, 0].set(1.0)
        y = jnp.where(jnp.arange(n) % 2 == 0, 1.0, -1.0).astype(dtype)[:, None]
        return {"x": x, "y": y, "x_test": x, "y_test": y}
    if task.data == "points":
        rows = jnp.asarray(task.points, dtype)
        return {"x": rows[:, :-1], "y": rows[:, -1:], "x_test": rows[:, :-1], "y_test": rows[:, -1:]}
    w = jax.random.normal(keys["teacher"], (d,), dtype)
    w = w / jnp.linalg.norm(w)
    margin = hp["margin"].astype(dtype)
    flip = hp["flip_fraction"].astype(dtype) if task.data == "nonseparable" else jnp.zeros((), dtype)
    x, y = _gaussian_classes(keys["design"], keys["noise"], w, n, d, margin, flip, dtype)
    k_test_x, k_test_flip = jax.random.split(keys["test"])
    x_test, y_test = _gaussian_classes(k_test_x, k_test_flip, w, task.n_test, d, margin, flip, dtype)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test, "direction": w}


def evaluate(spec, ctx) -> dict:
    inst = ctx.inst
    pred = predict(spec.arch, ctx.params, inst["readout"], inst["x_test"])
    y = inst["y_test"]
    return {"test_loss": jnp.mean(LOSSES[spec.loss].per_sample(pred, y)),
            "test_error": jnp.mean((y * pred <= 0).astype(pred.dtype))}


TASK = tasks.Task("classification", make_data, evaluate, lambda spec: ("test_loss", "test_error"),
                  tasks.fixed_set_batch, lambda spec: False)
