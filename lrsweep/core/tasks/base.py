"""Tasks: where a student's data come from and how it is evaluated. One module per task.

A :class:`Task` has three parts:

- ``make_data(spec, keys, hp, dtype) -> dict``: the instance's data (``x``, ``y`` and whatever its
  evaluation needs) from the instance's random keys and hyperparameters (config fields of role
  ``instance``: seed, noise_std, ...), for ONE instance (the engine vmaps it);
- ``batch(spec, inst, ctx) -> (x, y, weights)``: the batch of step ``ctx.t``: the whole training set
  (weights None: the mean), or, for a step of sgd / momentum (``ctx.minibatch``), ``spec.batch_size``
  rows drawn from ``ctx.key`` (derived from the instance and t, so the learning-rate points that
  share an instance share its batches): a minibatch of the fixed set, or fresh samples of an online
  task. A batch size m(t) below the compiled M (``ctx.batch_size``) weights the first m rows 1/m
  and the rest 0 (:func:`mask_weights`);
- ``evaluate(spec, ctx) -> {name: scalar}`` at logged steps (``metric_names(spec)`` lists them):
  the exact population risk for the linear teacher, test loss and 0-1 error for classification.

An *instance* (:func:`make_instance`) is everything a student's training depends on except its
traced hyperparameters: initial weights, fixed readout and data. It is a pure function of the seed
and the instance hyperparameters, so a student's data never depend on its place in the grid.
``PRNGKey(seed)`` is split into fixed slots (:data:`KEY_SLOTS`), so changing e.g. ``noise_std``
keeps the same inputs, teacher and initial weights. Adding a task: a module here and one entry
registered with :func:`lrsweep.registry.register_task` (a family registers its own, and its fields).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from lrsweep import registry
from lrsweep.core import config as config_lib
from lrsweep.core.students import init_readout, init_params

# PRNGKey(seed) split into these slots in this order (the order, not the names, fixes every random number)
KEY_SLOTS = ("design", "teacher", "noise", "test", "init", "readout")
TASKS = registry.TASKS  # name -> Task: the core's (below) and every family's
STEP_KEY_SALT = 0x5354  # the per-step key stream: fold_in(PRNGKey(seed), salt), then fold_in(., t)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The static ``task.*`` fields of a group (hashable), read as attributes: ``spec.task.n_train``."""
    values: tuple

    @classmethod
    def from_row(cls, row: dict) -> "TaskSpec":
        fields = [f for f in config_lib.FIELDS.values() if f.path.startswith("task.") and f.role == "static"]
        return cls(tuple((f.path[5:], _hashable(row.get(f.path[5:], f.default))) for f in fields))

    def __getattr__(self, name: str) -> Any:
        for key, value in object.__getattribute__(self, "values"):
            if key == name:
                return value
        raise AttributeError(name)


def _hashable(value):
    if isinstance(value, float) and value != value:
        return None  # a NaN cell: the field was absent
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


class StepContext(NamedTuple):
    """What the step function knows besides the state: the step index, its random key, whether the step
    trains on a sampled batch (sgd, momentum) and the step's batch size m(t) (None: the compiled M)."""
    t: Any
    key: Any
    minibatch: bool = False
    batch_size: Any = None


class Task(NamedTuple):
    name: str
    make_data: Callable
    evaluate: Callable
    metric_names: Callable
    batch: Callable
    exact_linear_risk: Callable  # spec -> bool: test loss = ||W_eff - beta||^2 + noise_var (poly, lowrank)
    population_loss: Callable | None = None  # (spec, inst, params) -> the expected train loss (online tasks)


def mask_weights(size: int, batch_size, dtype=None):
    """Per-row weights of a batch of ``size`` rows of which the first ``batch_size`` (traced) count:
    1/m on them, 0 on the rest; None (the plain mean) when ``batch_size`` is None."""
    if batch_size is None:
        return None
    rows = jnp.arange(size)
    return jnp.where(rows < batch_size, 1.0 / batch_size, 0.0).astype(dtype or jnp.result_type(float))


def fixed_set_batch(spec, inst, ctx):
    """The whole training set, or for a stochastic step ``spec.batch_size`` distinct rows of it drawn
    from the step's key (a minibatch without replacement)."""
    x, y = inst["x"], inst["y"]
    if not ctx.minibatch or spec.batch_size is None:
        return x, y, None
    rows = jax.random.choice(ctx.key, x.shape[0], (spec.batch_size,), replace=False)
    return x[rows], y[rows], mask_weights(spec.batch_size, ctx.batch_size, x.dtype)


def make_instance(spec, hp: dict, dtype, moments: bool) -> tuple[dict, dict]:
    """Initial weights (params dict) and instance data of ONE instance.

    ``hp``: the instance hyperparameters (:func:`lrsweep.core.config.columns` ``("instance")``), scalars.
    ``moments``: replace the training set by S = X^T X / n, X^T y / n, y^T y / n (``xx, xy, yy``),
    what the moments and lowrank formulations read.
    """
    keys = dict(zip(KEY_SLOTS, jax.random.split(jax.random.PRNGKey(hp["seed"]), len(KEY_SLOTS))))
    inst = TASKS[spec.task.kind].make_data(spec, keys, hp, dtype)
    params0 = init_params(keys["init"], spec.arch, spec.init, hp["init_scale"].astype(dtype), dtype)
    inst["readout"] = init_readout(keys["readout"], spec.arch, dtype)
    inst["step_key"] = jax.random.fold_in(jax.random.PRNGKey(hp["seed"]), STEP_KEY_SALT)
    if moments:
        x, y = inst.pop("x"), inst.pop("y")
        n = x.shape[0]
        inst.update(xx=x.T @ x / n, xy=x.T @ y / n, yy=jnp.sum(y * y) / n)
    return params0, inst


def step_context(inst: dict, t, minibatch: bool = False, batch_size=None) -> StepContext:
    return StepContext(t, jax.random.fold_in(inst["step_key"], t), minibatch, batch_size)
