"""Power-law random features (seed 004, Bordelon & Mori 2026, arXiv 2602.04774): the model whose SGD
dynamics the theory of :mod:`lrsweep.families.schedules.theory` solves exactly.

Features x in R^N with independent x_k ~ N(0, lambda_k), lambda_k = k^-b (k = 1..N); the target
w*_k = k^((b - a)/2) (deterministic and positive), so lambda_k (w*_k)^2 = k^-a; labels
y = w*.x + sigma xi, xi ~ N(0, 1). The seed's text does not show its definitions of the exponents;
these are the issue's, and the seed's eq. 82 (delta = 2b - 1, T - t_s ~ T^(1 - (b - a)/(2b - 1)))
reads consistently with them (lrsweep.families.schedules.theory derives it).

Online by default (``task.online``): every step draws ``train.batch_size`` fresh samples from its key;
with ``task.online: false`` a fixed set of ``task.n_train`` samples. ``task.input_dim`` is N
(alias ``task.n_features``). Test loss: the exact excess risk sum_k lambda_k (w_k - w*_k)^2 of the
linear student's effective weight (no test set, no 1/2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrsweep.core.tasks import base as tasks
from lrsweep.core.students import effective_weight


ONLINE_DRAW_LAYOUT = False  # jax.threefry_partitionable for the online batches' normal draws


def online(task) -> bool:
    """``task.online`` (null: online, this task's default)."""
    return task.online is not False


def spectrum(n_features: int, a, b, dtype):
    """(lambda, w*) of the module docstring."""
    k = jnp.arange(1, n_features + 1, dtype=dtype)
    return k ** (-b), k ** ((b - a) / 2)


def make_data(spec, keys, hp, dtype) -> dict:
    lam, target = spectrum(spec.task.input_dim, hp["a"].astype(dtype), hp["b"].astype(dtype), dtype)
    data = {"lam": lam, "target": target[:, None], "noise_std": hp["noise_std"].astype(dtype)}
    if not online(spec.task):
        x = jnp.sqrt(lam) * jax.random.normal(keys["design"], (spec.task.n_train, spec.task.input_dim), dtype)
        data["x"] = x
        data["y"] = x @ data["target"] + data["noise_std"] * jax.random.normal(keys["noise"], (spec.task.n_train, 1), dtype)
    return data


def batch(spec, inst, ctx):
    """Fresh samples (``train.batch_size`` of them) from the step's key, or the fixed set's batch.

    The two normal draws use threefry's non-partitionable counter layout (``ONLINE_DRAW_LAYOUT``): the
    same generator as jax's default, about 1.3x faster on a CPU, where these draws are most of an SGD
    step (README, issue 26). Each draw is still a function of its own key and shape only."""
    if not online(spec.task):
        return tasks.fixed_set_batch(spec, inst, ctx)
    lam = inst["lam"]
    key_x, key_noise = jax.random.split(ctx.key)
    with jax.threefry_partitionable(ONLINE_DRAW_LAYOUT):
        z_x = jax.random.normal(key_x, (spec.batch_size, lam.shape[0]), lam.dtype)
        z_noise = jax.random.normal(key_noise, (spec.batch_size, 1), lam.dtype)
    x = jnp.sqrt(lam) * z_x
    y = x @ inst["target"] + inst["noise_std"] * z_noise
    return x, y, tasks.mask_weights(spec.batch_size, ctx.batch_size, lam.dtype)


def evaluate(spec, ctx) -> dict:
    """{"test_loss": sum_k lambda_k (w_k - w*_k)^2}, exact."""
    inst = ctx.inst
    w_eff = ctx.w_eff if ctx.w_eff is not None else effective_weight(spec.arch, ctx.params, inst["readout"])
    return {"test_loss": jnp.sum(inst["lam"][:, None] * (w_eff - inst["target"]) ** 2)}


def population_loss(spec, inst, params):
    """E over a fresh sample of 1/2 (w.x - y)^2 = (excess risk + sigma^2) / 2."""
    w_eff = effective_weight(spec.arch, params, inst["readout"])
    return 0.5 * (jnp.sum(inst["lam"][:, None] * (w_eff - inst["target"]) ** 2) + inst["noise_std"] ** 2)


TASK = tasks.Task("power_law_features", make_data, evaluate, lambda spec: ("test_loss",), batch,
                  lambda spec: True, population_loss)
