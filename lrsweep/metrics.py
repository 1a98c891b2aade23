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
import numpy as np

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
    """``fn(ctx) -> value`` (a scalar, or (m,) with ``per_layer``). A metric with ``init_state``
    carries a state from one logged step to the next (a warm start, e.g. the previous top
    eigenvector): ``init_state(spec, params0, inst, key) -> state`` at step 0, and then
    ``fn(ctx, state) -> (value, state)``; a diverged student's state is frozen."""
    name: str
    fn: Callable
    per_layer: bool
    init_state: Callable | None = None


class Reduction(NamedTuple):
    """A running reduction over every step t = 0..T: ``init(dtype) -> carry``, ``update(carry, loss, t,
    alive) -> carry`` (``alive``: the student has not diverged at or before t), ``columns(carry) ->
    dict``. ``labels``: column -> names, for a column that holds codes (stored as the names)."""
    name: str
    init: Callable
    update: Callable
    columns: Callable
    labels: dict = {}


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

PHASES = ("lazy", "catapult", "oscillating", "divergent")


def _phase_update(carry, loss, t, alive):
    loss0, peak, last, _ = carry
    loss0 = jnp.where(t == 0, loss, loss0)
    return (loss0, jnp.where(alive & (loss > peak), loss, peak), jnp.where(alive, loss, last), alive)


def _phase_columns(carry):
    loss0, peak, last, alive = carry
    code = jnp.where(~alive, 3, jnp.where(peak <= loss0, 0, jnp.where(last < loss0, 1, 2)))
    return {"phase": code.astype(jnp.int32)}


PHASE = Reduction(
    "phase",
    lambda dtype: (jnp.zeros((), dtype), jnp.full((), -jnp.inf, dtype), jnp.zeros((), dtype), jnp.array(True)),
    _phase_update, _phase_columns, labels={"phase": PHASES})
"""The phase of gradient descent at a fixed learning rate (seed 003 Sec. 1; Lewkowycz et al. 2020),
from the train loss L_0..L_T of every step and the divergence rule (:mod:`lrsweep.divergence`):

- ``divergent``: the divergence rule fired (a non-finite loss, or one above diverge_factor L_0);
- ``lazy``: the loss never rose above its initial value, max_t L_t <= L_0;
- ``catapult``: it rose (max_t L_t > L_0) and ended below where it started, L_T < L_0;
- ``oscillating``: it rose and did not come back below L_0, nor diverge: seed 003 Theorem 1's
  saturating logistic region (eta above its critical rate, the weight settling on a 2-cycle
  +-w* whose loss exceeds L_0), or a run too short to see a catapult land or a divergence.

The oscillation of Theorem 1's middle logistic region (8 < eta < eta_c: the loss falls to the
2-cycle's L(w*) > min L and stays) never raises the loss, so it is ``lazy`` by this rule; its
signature is a final loss above the minimum (:mod:`lrsweep.theory.catapult`)."""

METRICS: dict[str, Metric] = {"weight_norm": Metric("weight_norm", weight_norm, per_layer=True)}
REDUCTIONS: dict[str, Reduction] = {"loss_peak": LOSS_PEAK, "phase": PHASE}


def logged(spec) -> list[Metric]:
    """The group's extra logged metrics, in ``train.metrics`` order."""
    return [METRICS[name] for name in spec.metrics if name in METRICS]


def reductions(spec) -> list[Reduction]:
    return [REDUCTIONS[name] for name in spec.metrics if name in REDUCTIONS]


def metric_shape(spec, metric: Metric) -> tuple:
    return (spec.arch.n_trainable,) if metric.per_layer else ()


def label_columns(reduction_columns: dict) -> dict:
    """Host reduction columns with coded columns (``Reduction.labels``) replaced by their names."""
    labels = {c: names for r in REDUCTIONS.values() for c, names in r.labels.items()}
    return {c: (np.asarray(labels[c], dtype=object)[np.asarray(v)] if c in labels else v)
            for c, v in reduction_columns.items()}


def curve_columns(name: str, values) -> dict:
    """Host array (students, n_logs[, m]) -> {column: (students, n_logs)}; per-layer as ``name_l``."""
    if values.ndim == 2:
        return {name: values}
    return {f"{name}_{l + 1}": values[..., l] for l in range(values.shape[-1])}
