"""Metrics: per-student functions evaluated inside the scan at logged steps, and running reductions.

At every logged step the engine records ``train_loss``, the task's evaluation (``test_loss``, ...:
:mod:`lrsweep.tasks`) and each metric named in ``train.metrics``, from a :class:`MetricContext`
(dense weights whatever the formulation, lowrank included; the instance; the train loss; a key).
A metric returns a scalar or, with ``per_layer``, one value per trained layer; each becomes a
column of curves.parquet (``<name>_<l>`` per layer) and its last logged value a ``final_<name>``
column of students.parquet. A :class:`Reduction` instead folds a value over *every* step (e.g.
the largest train loss, seed 003's catapult peak) into students.parquet columns.

Adding a metric: a function and one entry in :data:`METRICS` (and its name in the ``train.metrics``
choices of :mod:`lrsweep.config`). Nothing in the engine, the runner or the store changes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from lrsweep.students import layers


class MetricContext(NamedTuple):
    """spec (GroupSpec); params: dense weights {W1..Wm}; inst: the instance dict; loss: the train loss
    at this step; w_eff: the effective weight where the step formed it (linear students), else None;
    key: a random key for this student and step (stochastic estimators)."""
    spec: Any
    params: dict
    inst: dict
    loss: Any
    w_eff: Any
    key: Any


class Metric(NamedTuple):
    name: str
    fn: Callable          # MetricContext -> () or (m,)
    per_layer: bool


class Reduction(NamedTuple):
    """A running reduction over every step t = 0..T: ``init(dtype) -> carry``, ``update(carry, loss, t,
    alive) -> carry`` (``alive``: the student has not diverged before t), ``columns(carry) -> dict``."""
    name: str
    init: Callable
    update: Callable
    columns: Callable


def weight_norm(ctx: MetricContext):
    """||W_l||_F for each trained layer l."""
    return jnp.stack([jnp.sqrt(jnp.sum(w * w)) for w in layers(ctx.spec.arch, ctx.params)])


def _peak_update(carry, loss, t, alive):
    peak, step = carry
    higher = alive & (loss > peak)  # strict: the first step of the peak; NaN is never a peak
    return jnp.where(higher, loss, peak), jnp.where(higher, t, step)


LOSS_PEAK = Reduction(
    "loss_peak",
    lambda dtype: (jnp.full((), -jnp.inf, dtype), jnp.array(-1, jnp.int32)),
    _peak_update,
    lambda carry: {"loss_peak": carry[0], "loss_peak_step": carry[1]})

METRICS: dict[str, Metric] = {"weight_norm": Metric("weight_norm", weight_norm, per_layer=True)}
REDUCTIONS: dict[str, Reduction] = {"loss_peak": LOSS_PEAK}


def logged(spec) -> list[Metric]:
    """The group's extra logged metrics, in ``train.metrics`` order."""
    return [METRICS[name] for name in spec.metrics if name in METRICS]


def reductions(spec) -> list[Reduction]:
    return [REDUCTIONS[name] for name in spec.metrics if name in REDUCTIONS]


def metric_shape(spec, metric: Metric) -> tuple:
    return (spec.arch.n_trainable,) if metric.per_layer else ()


def curve_columns(name: str, values) -> dict:
    """Host array (students, n_logs[, m]) -> {column: (students, n_logs)}; per-layer as ``name_l``."""
    if values.ndim == 2:
        return {name: values}
    return {f"{name}_{l + 1}": values[..., l] for l in range(values.shape[-1])}
