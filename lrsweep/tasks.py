"""Tasks: teachers and data (seed 000, App. F: linear teacher y = X beta + xi).

An *instance* is everything a student's training depends on except its learning rates: initial
weights, fixed head, training data (or its moments) and teacher. It is a pure function of the
seed and the instance hyperparameters, so a student's data never depend on its place in the grid.

Keys: ``PRNGKey(seed)`` is split into fixed slots (design, teacher, noise, test set, weights,
head), so changing e.g. ``noise_std`` keeps the same X, beta and initial weights.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from lrsweep.students import Architecture, effective_weight, init_head, init_params, orthogonal, predict


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """Static task description (shapes and categorical choices)."""
    kind: str
    input_dim: int
    n_train: int
    design: str
    target: str
    teacher_activation: str
    n_test: int
    test_noise: bool


class InstanceHparams(NamedTuple):
    """Per-instance numbers, traced (vmapped) so new values never recompile."""
    seed: jax.Array
    noise_std: jax.Array
    target_std: jax.Array
    init_scale: jax.Array


class Instance(NamedTuple):
    """Data of one instance. Unused fields are zero-size arrays."""
    head: jax.Array          # (h, 1) paper_deep head, else (0,)
    beta: jax.Array          # (d, out) teacher
    x: jax.Array             # (n, d) training inputs (zero-size in the moments formulation)
    y: jax.Array             # (n, out) training labels
    xx: jax.Array            # (d, d) X^T X / n   (moments formulation)
    xy: jax.Array            # (d, out) X^T y / n
    yy: jax.Array            # () y^T y / n (sum over outputs)
    x_test: jax.Array        # (n_test, d) sampled test set (nonlinear students)
    y_test: jax.Array        # (n_test, out)
    noise_var: jax.Array     # () added to the test loss when task.test_noise


def teacher(task: TaskSpec, beta, x):
    z = x @ beta
    return jax.nn.relu(z) if task.teacher_activation == "relu" else z


def make_instance(task: TaskSpec, arch: Architecture, init: str, moments: bool, hp: InstanceHparams,
                  dtype) -> tuple[tuple, Instance]:
    """Initial trained weights and the instance data for one seed. Returns (params0, instance)."""
    d, n, out = task.input_dim, task.n_train, arch.output_dim
    k_x, k_beta, k_noise, k_test, k_init, k_head = jax.random.split(jax.random.PRNGKey(hp.seed), 6)
    if task.design == "orthogonal":
        x = math.sqrt(n) * orthogonal(k_x, (n, d), dtype)
    else:
        x = jax.random.normal(k_x, (n, d), dtype)
    if task.target == "orthonormal":
        beta = orthogonal(k_beta, (d, out), dtype) / math.sqrt(d)
    else:
        beta = hp.target_std.astype(dtype) * jax.random.normal(k_beta, (d, out), dtype)
    noise_std = hp.noise_std.astype(dtype)
    y = teacher(task, beta, x) + noise_std * jax.random.normal(k_noise, (n, out), dtype)
    params0 = init_params(k_init, arch, init, hp.init_scale.astype(dtype), dtype)
    head = init_head(k_head, arch, dtype)
    noise_var = jnp.where(task.test_noise, out * noise_std ** 2, jnp.zeros((), dtype))
    if exact_test_loss(task, arch):
        x_test = jnp.zeros((0, d), dtype)
        y_test = jnp.zeros((0, out), dtype)
    else:
        x_test = jax.random.normal(k_test, (task.n_test, d), dtype)
        y_test = teacher(task, beta, x_test)
    if moments:
        inst = Instance(head, beta, jnp.zeros((0, d), dtype), jnp.zeros((0, out), dtype),
                        x.T @ x / n, x.T @ y / n, jnp.sum(y * y) / n, x_test, y_test, noise_var)
    else:
        inst = Instance(head, beta, x, y, jnp.zeros((0, 0), dtype), jnp.zeros((0, out), dtype),
                        jnp.zeros((), dtype), x_test, y_test, noise_var)
    return params0, inst


def exact_test_loss(task: TaskSpec, arch: Architecture) -> bool:
    """Whether the population risk has the closed form ||W_eff - beta||^2 (linear student and teacher)."""
    return arch.is_linear and task.teacher_activation == "linear"


def test_loss(task: TaskSpec, arch: Architecture, params, inst: Instance, w_eff=None):
    """Population risk E_x ||f(x) - teacher(x)||^2 for x ~ N(0, I) (no 1/2), + noise variance if asked.

    Linear students: exactly ||W_eff - beta||_F^2 (no sampling). Others: the mean over the sampled
    test set.
    """
    if exact_test_loss(task, arch):
        if w_eff is None:
            w_eff = effective_weight(arch, params, inst.head)
        return jnp.sum((w_eff - inst.beta) ** 2) + inst.noise_var
    pred = predict(arch, params, inst.head, inst.x_test)
    return jnp.mean(jnp.sum((pred - inst.y_test) ** 2, axis=-1)) + inst.noise_var
