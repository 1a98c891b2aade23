"""Metrics: per-student functions evaluated inside the scan at logged steps, and running reductions.

At every logged step the engine records ``train_loss``, the task's evaluation (``test_loss``, ...:
:mod:`lrsweep.core.tasks`) and each metric named in ``train.metrics``, from a :class:`MetricContext`
(dense weights whatever the formulation, lowrank included; the instance; the train loss; a key).
A metric returns a scalar or, with ``per_layer``, one value per trained layer (or ``size(spec)``
values); each becomes a column of curves.parquet (``<name>_<l>`` per layer or entry) and its last logged value a ``final_<name>``
column of students.parquet. A :class:`Reduction` instead folds a value over *every* step (e.g.
the largest train loss, seed 003's catapult peak) into students.parquet columns.

Adding a metric: a function registered with :func:`lrsweep.registry.register_metric` (and its name in the ``train.metrics``
choices of :mod:`lrsweep.core.config`). Nothing in the engine, the runner or the store changes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax.numpy as jnp
import numpy as np

from lrsweep.core import divergence
from lrsweep.core.divergence import PHASES
from jax.flatten_util import ravel_pytree

from lrsweep import registry
from lrsweep.core import curvature
from lrsweep.core import steps as steps_lib
from lrsweep.core.students import layers, predict
from lrsweep.core.tasks import TASKS, StepContext


class MetricContext(NamedTuple):
    """spec (GroupSpec); params: dense weights {W1..Wm}; inst: the instance dict; loss: the train loss
    at this step; w_eff: the effective weight where the step formed it (linear students), else None;
    key: a random key for this student and step (the step's key: its batch, stochastic estimators);
    t: the step."""
    spec: Any
    params: dict
    inst: dict
    loss: Any
    w_eff: Any
    key: Any
    t: Any = None


class Metric(NamedTuple):
    """``fn(ctx) -> value`` (a scalar, or (m,) with ``per_layer``). A metric with ``init_state``
    carries a state from one logged step to the next (a warm start, e.g. the previous top
    eigenvector): ``init_state(spec, params0, inst, key) -> state`` at step 0, and then
    ``fn(ctx, state) -> (value, state)``; a diverged student's state is frozen. ``elements(spec)``: the
    metric's working set per student in array elements (its state and temporaries at a logged step),
    which chunk planning adds to a student's memory (:mod:`lrsweep.core.chunking`)."""
    name: str
    fn: Callable
    per_layer: bool
    init_state: Callable | None = None
    elements: Callable = lambda spec: 0
    size: Callable | None = None  # spec -> k: a vector of k values per logged step (columns <name>_1..k)
    lanczos: bool = False  # a top eigenvalue by Lanczos: reads train.sharpness_iters


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


def sharpness_iters(spec) -> int:
    """k: the Lanczos iterations of ``sharpness``, ``train.sharpness_iters`` capped at P."""
    return min(spec.sharpness_iters, spec.arch.n_params)


def sharpness_init(spec, params0, inst, key):
    """The Lanczos start at step 0: a random unit vector (P,) in the space of the dense weights."""
    del spec, inst
    theta, _ = ravel_pytree(params0)
    return curvature.random_unit(key, theta.size, theta.dtype)


def sharpness(ctx: MetricContext, start):
    """The top (largest algebraic) eigenvalue of the Hessian of the train loss w.r.t. every trained
    weight (seed 003 Sec. 4.2, Corollary 1: the curvature that the catapult phase flattens), by
    k = min(train.sharpness_iters, P) Lanczos steps (:func:`lrsweep.core.curvature.hessian_top_eig`)
    warm-started from the previous logged step's top Ritz vector (``start``, the state).

    The loss is :func:`lrsweep.core.steps.train_loss` of the dense weights (the moments loss for the
    moments and lowrank formulations, else the batch's loss): the true train loss's Hessian, also
    for ``gradient: signal_only`` students, whose steps follow another vector field.
    """
    theta, unravel = ravel_pytree(ctx.params)
    batch = StepContext(ctx.t, ctx.key)
    loss_fn = lambda th: steps_lib.train_loss(ctx.spec, unravel(th), ctx.inst, batch)
    return curvature.hessian_top_eig(loss_fn, theta, start, sharpness_iters(ctx.spec))


def _ntk_inputs(spec, ctx: MetricContext):
    """(inputs, weight) whose NTK weight J J^T has the spectrum of the train set's J J^T / n.

    The batch's inputs with weight 1/n; for an instance that holds only the moments (a linear
    student: f(x) = x^T W_eff) the d virtual inputs R = S^(1/2) (R^T R = S = X^T X / n) with weight
    1, since J^T J / n = G^T (S (x) I) G for G = dW_eff/dtheta depends on X only through S.
    """
    if "xx" in ctx.inst:
        s, u = jnp.linalg.eigh(ctx.inst["xx"])
        return (u * jnp.sqrt(jnp.clip(s, 0.0))) @ u.T, 1.0
    x, _, _ = TASKS[spec.task.kind].batch(spec, ctx.inst, StepContext(ctx.t, ctx.key))
    return x, 1.0 / x.shape[0]


def ntk_eig(ctx: MetricContext):
    """The top eigenvalue of the empirical NTK normalised by the number of samples n (seed 003 Sec.
    4.2, eq. 5-6): K = J J^T / n, J the (n * output_dim, P) Jacobian of the student's outputs on
    the training inputs w.r.t. every trained weight; |grad f|^2 for one sample. At a global
    minimum of the squared loss it equals ``sharpness`` (the Hessian is then J^T J / n).
    Explicit Jacobian and dense eigendecomposition (:func:`lrsweep.core.curvature.ntk_top_eig`)."""
    spec = ctx.spec
    x, weight = _ntk_inputs(spec, ctx)
    theta, unravel = ravel_pytree(ctx.params)
    outputs = lambda th: predict(spec.arch, unravel(th), ctx.inst["readout"], x)
    return curvature.ntk_top_eig(outputs, theta, weight)


def _ntk_samples(spec) -> int:
    """Inputs the NTK is evaluated on: the n training samples, or d virtual ones from the moments."""
    return spec.task.n_train if spec.formulation == "autodiff" else spec.task.input_dim


def _sharpness_elements(spec) -> int:
    """The Lanczos basis k P, the state and a few P-vectors of the HVP, the small k x k problem."""
    k, p = sharpness_iters(spec), spec.arch.n_params
    return (k + 4) * p + 2 * k * k


def _ntk_elements(spec) -> int:
    """The Jacobian rows x P (rows = samples x outputs), the activations' cotangents (or tangents)
    of its min(rows, P) batched passes, and the smaller Gram matrix with its eigendecomposition."""
    arch, samples = spec.arch, _ntk_samples(spec)
    rows, p = samples * arch.output_dim, arch.n_params
    passes = min(rows, p)
    return rows * p + passes * samples * (arch.width * arch.n_trainable + arch.output_dim) + 2 * passes ** 2


def _peak_update(carry, loss, t, alive):
    peak, step = carry
    higher = alive & (loss > peak)  # strict: the first step of the peak; NaN is never a peak
    return jnp.where(higher, loss, peak), jnp.where(higher, t, step)


LOSS_PEAK = Reduction(
    "loss_peak",
    lambda dtype: (jnp.full((), -jnp.inf, dtype), jnp.array(-1, jnp.int32)),
    _peak_update,
    lambda carry: {"loss_peak": carry[0], "loss_peak_step": carry[1]})

def _phase_update(carry, loss, t, alive):
    loss0, peak, last, _ = carry
    loss0 = jnp.where(t == 0, loss, loss0)
    return (loss0, jnp.where(alive & (loss > peak), loss, peak), jnp.where(alive, loss, last), alive)


def _phase_columns(carry):
    loss0, peak, last, alive = carry
    return {"phase": divergence.phase_code(loss0, peak, last, alive, jnp).astype(jnp.int32)}


PHASE = Reduction(
    "phase",
    lambda dtype: (jnp.zeros((), dtype), jnp.full((), -jnp.inf, dtype), jnp.zeros((), dtype), jnp.array(True)),
    _phase_update, _phase_columns, labels={"phase": PHASES})
"""The phase of gradient descent at the student's rate (:data:`lrsweep.core.divergence.PHASES`, the rule
there), stored as its name."""

for _name, _metric in {
    "weight_norm": Metric("weight_norm", weight_norm, per_layer=True),
    "sharpness": Metric("sharpness", sharpness, per_layer=False, init_state=sharpness_init, elements=_sharpness_elements,
                        lanczos=True),
    "ntk_eig": Metric("ntk_eig", ntk_eig, per_layer=False, elements=_ntk_elements),
    "loss_peak": LOSS_PEAK,
    "phase": PHASE,
}.items():
    registry.register_metric(_name, _metric)


def _registered(kind) -> dict:
    return {name: m for name, m in registry.METRICS.items() if isinstance(m, kind)}


def logged(spec) -> list[Metric]:
    """The group's extra logged metrics, in ``train.metrics`` order."""
    metrics = _registered(Metric)
    return [metrics[name] for name in spec.metrics if name in metrics]


def reductions(spec) -> list[Reduction]:
    reductions_ = _registered(Reduction)
    return [reductions_[name] for name in spec.metrics if name in reductions_]


def working_elements(spec) -> int:
    """Array elements one student's logged metrics hold at a logged step (:attr:`Metric.elements`)."""
    return sum(m.elements(spec) for m in logged(spec))


def metric_shape(spec, metric: Metric) -> tuple:
    if metric.size is not None:
        return (metric.size(spec),)
    return (spec.arch.n_trainable,) if metric.per_layer else ()


def label_columns(reduction_columns: dict) -> dict:
    """Host reduction columns with coded columns (``Reduction.labels``) replaced by their names."""
    labels = {c: names for r in _registered(Reduction).values() for c, names in r.labels.items()}
    return {c: (np.asarray(labels[c], dtype=object)[np.asarray(v)] if c in labels else v)
            for c, v in reduction_columns.items()}


def curve_columns(name: str, values) -> dict:
    """Host array (students, n_logs[, m]) -> {column: (students, n_logs)}; per-layer as ``name_l``."""
    if values.ndim == 2:
        return {name: values}
    return {f"{name}_{l + 1}": values[..., l] for l in range(values.shape[-1])}
