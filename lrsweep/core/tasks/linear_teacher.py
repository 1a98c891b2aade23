"""The linear teacher (seed 000, App. F): y = teacher(X beta) + xi, evaluated by the population risk.

Design X: ``gaussian`` (X ~ N(0, 1)) or ``orthogonal`` (X = sqrt(n) Q, X^T X = n I). Teacher beta
(d, out): ``gaussian`` (N(0, target_std^2)) or ``orthonormal`` (Q / sqrt(d)); ``teacher_activation``
relu gives y = relu(X beta) (seed 000 Fig. 15). Label noise xi ~ N(0, noise_std^2).

Test loss: the population risk E_x ||f(x) - teacher(x)||^2 for x ~ N(0, I) (no 1/2), plus the
noise variance out * noise_std^2 with ``test_noise``. For a linear student and teacher it is
exactly ||W_eff - beta||_F^2 (no sampling); otherwise the mean over ``n_test`` sampled inputs.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from lrsweep.core.tasks import base as tasks
from lrsweep.core.students import effective_weight, orthogonal, predict


def teacher(task, beta, x):
    z = x @ beta
    return jax.nn.relu(z) if task.teacher_activation == "relu" else z


def exact_linear_risk(spec) -> bool:
    """Whether the population risk has the closed form ||W_eff - beta||^2 (linear student and teacher)."""
    return spec.arch.is_linear and spec.task.teacher_activation == "linear"


def make_data(spec, keys, hp, dtype) -> dict:
    task, d, n, out = spec.task, spec.task.input_dim, spec.task.n_train, spec.arch.output_dim
    if task.design == "orthogonal":
        x = math.sqrt(n) * orthogonal(keys["design"], (n, d), dtype)
    else:
        x = jax.random.normal(keys["design"], (n, d), dtype)
    if task.target == "orthonormal":
        beta = orthogonal(keys["teacher"], (d, out), dtype) / math.sqrt(d)
    else:
        beta = hp["target_std"].astype(dtype) * jax.random.normal(keys["teacher"], (d, out), dtype)
    noise_std = hp["noise_std"].astype(dtype)
    y = teacher(task, beta, x) + noise_std * jax.random.normal(keys["noise"], (n, out), dtype)
    data = {"x": x, "y": y, "beta": beta,
            "noise_var": jnp.where(task.test_noise, out * noise_std ** 2, jnp.zeros((), dtype))}
    if not exact_linear_risk(spec):
        data["x_test"] = jax.random.normal(keys["test"], (task.n_test, d), dtype)
        data["y_test"] = teacher(task, beta, data["x_test"])
    return data


def evaluate(spec, ctx) -> dict:
    """{"test_loss": population risk (+ noise variance if asked)}."""
    inst = ctx.inst
    if exact_linear_risk(spec):
        w_eff = ctx.w_eff if ctx.w_eff is not None else effective_weight(spec.arch, ctx.params, inst["readout"])
        return {"test_loss": jnp.sum((w_eff - inst["beta"]) ** 2) + inst["noise_var"]}
    pred = predict(spec.arch, ctx.params, inst["readout"], inst["x_test"])
    return {"test_loss": jnp.mean(jnp.sum((pred - inst["y_test"]) ** 2, axis=-1)) + inst["noise_var"]}


TASK = tasks.Task("linear_teacher", make_data, evaluate, lambda spec: ("test_loss",), tasks.fixed_set_batch,
                  exact_linear_risk)
