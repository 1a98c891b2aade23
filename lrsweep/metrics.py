"""Metrics: per-student functions evaluated inside the scan at logged steps, and running reductions.

At every logged step the engine records ``train_loss``, the task's evaluation (``test_loss``, ...:
:mod:`lrsweep.tasks`) and each metric named in ``train.metrics``, from a :class:`MetricContext`
(dense weights whatever the formulation, lowrank included; the instance; the train loss; a key).
A metric returns a scalar or, with ``per_layer``, one value per trained layer (or ``size(spec)``
values); each becomes a column of curves.parquet (``<name>_<l>`` per layer or entry) and its last logged value a ``final_<name>``
column of students.parquet. A :class:`Reduction` instead folds a value over *every* step (e.g.
the largest train loss, seed 003's catapult peak) into students.parquet columns.

Adding a metric: a function and one entry in :data:`METRICS` (and its name in the ``train.metrics``
choices of :mod:`lrsweep.config`). Nothing in the engine, the runner or the store changes.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep import divergence
from lrsweep.divergence import PHASES
from jax.flatten_util import ravel_pytree

from lrsweep import curvature
from lrsweep import heads
from lrsweep import steps as steps_lib
from lrsweep.losses import LOSSES
from lrsweep.students import layers, predict
from lrsweep.tasks import TASKS, StepContext


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
    ``fn(ctx, state) -> (value, state)``; a diverged student's state is frozen. ``words(spec)``: the
    metric's working set per student in array elements (its state and temporaries at a logged step),
    which chunk planning adds to a student's memory (:mod:`lrsweep.chunking`)."""
    name: str
    fn: Callable
    per_layer: bool
    init_state: Callable | None = None
    words: Callable = lambda spec: 0
    size: Callable | None = None  # spec -> k: a vector of k values per logged step (columns <name>_1..k)


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
    k = min(train.sharpness_iters, P) Lanczos steps (:func:`lrsweep.curvature.hessian_top_eig`)
    warm-started from the previous logged step's top Ritz vector (``start``, the state).

    The loss is :func:`lrsweep.steps.train_loss` of the dense weights (the moments loss for the
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
    Explicit Jacobian and dense eigendecomposition (:func:`lrsweep.curvature.ntk_top_eig`)."""
    spec = ctx.spec
    x, weight = _ntk_inputs(spec, ctx)
    theta, unravel = ravel_pytree(ctx.params)
    outputs = lambda th: predict(spec.arch, unravel(th), ctx.inst["head"], x)
    return curvature.ntk_top_eig(outputs, theta, weight)


def _ntk_samples(spec) -> int:
    """Inputs the NTK is evaluated on: the n training samples, or d virtual ones from the moments."""
    return spec.task.n_train if spec.formulation == "autodiff" else spec.task.input_dim


def _sharpness_words(spec) -> int:
    """The Lanczos basis k P, the state and a few P-vectors of the HVP, the small k x k problem."""
    k, p = sharpness_iters(spec), spec.arch.n_params
    return (k + 4) * p + 2 * k * k


def _ntk_words(spec) -> int:
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
"""The phase of gradient descent at the student's rate (:data:`lrsweep.divergence.PHASES`, the rule
there), stored as its name."""

def _body(ctx: MetricContext):
    """(theta, unravel): the body's weights W_1 .. W_{m-1} as one vector (seed 002's M)."""
    return ravel_pytree({name: ctx.params[name] for name in heads.body_names(ctx.spec.arch)})


def _body_size(spec) -> int:
    return sum(r * c for r, c in spec.arch.shapes[:-1])


def phi_sharpness_iters(spec) -> int:
    return min(spec.sharpness_iters, _body_size(spec))


def phi_sharpness_init(spec, params0, inst, key):
    """The Lanczos start at step 0: a random unit vector in the space of the body's weights."""
    del params0, inst
    return curvature.random_unit(key, _body_size(spec), jnp.result_type(float))


def phi_hvp_implicit(spec, theta, unravel, head_star, inst, batch):
    """v -> Hess Phi(M) v at the body theta by the implicit-function theorem, given the best response
    ``head_star``: with G = L + lambda/2 ||w||^2, dw*/dM v = -G_ww^{-1} G_wM v, and
    Hess Phi v = G_MM v + G_Mw (dw*/dM v) = d/de grad_M G(M + e v, w* + e dw*/dM v)."""
    name = heads.head_name(spec.arch)
    ridge = spec.head_ridge

    def objective(th, w):
        prob = heads.problem(spec, {**unravel(th), name: w}, inst, batch)
        return heads.loss_and_grad(spec, prob, w)[0] + 0.5 * ridge * jnp.sum(w * w)

    grad_w = jax.grad(objective, argnums=1)
    grad_body = jax.grad(objective, argnums=0)
    size = head_star.size
    hess_w = jax.hessian(objective, argnums=1)(theta, head_star).reshape(size, size)
    factor = jax.scipy.linalg.cho_factor(heads.shifted(hess_w, 0.0))  # the ridge is in the objective

    def hvp(v):
        _, mixed = jax.jvp(lambda th: grad_w(th, head_star), (theta,), (v,))
        dw = -jax.scipy.linalg.cho_solve(factor, mixed.reshape(-1)).reshape(head_star.shape)
        return jax.jvp(grad_body, (theta, head_star), (v, dw))[1]
    return hvp


def phi_sharpness(ctx: MetricContext, start):
    """The top eigenvalue of the Hessian of Phi(M) = min_w L(M, w) + lambda/2 ||w||^2 over the body's
    weights M (seed 002's Stackelberg objective, :mod:`lrsweep.heads`), at the current body whatever the
    current head: exact for mse through the closed form Phi = 1/2 (yy - b^T (A + lambda I)^{-1} b)
    differentiated twice; otherwise by the implicit-function theorem at the Newton best response
    (:func:`phi_hvp_implicit`). Lanczos as :func:`sharpness` (k = min(train.sharpness_iters, P_body)
    steps, warm-started). At a best-response head, Hess Phi = G_MM - G_Mw G_ww^{-1} G_wM <= G_MM in
    the Loewner order, so phi_sharpness <= sharpness there (Cauchy interlacing)."""
    spec = ctx.spec
    theta, unravel = _body(ctx)
    name = heads.head_name(spec.arch)
    head = ctx.params[name]
    batch = StepContext(ctx.t, ctx.key)
    iters = phi_sharpness_iters(spec)
    if LOSSES[spec.loss].quadratic:
        phi = lambda th: heads.phi(spec, heads.problem(spec, {**unravel(th), name: head}, ctx.inst, batch))
        return curvature.hessian_top_eig(phi, theta, start, iters)
    head_star = heads.best_response(spec, heads.problem(spec, ctx.params, ctx.inst, batch), head, 0)
    return curvature.top_eig(phi_hvp_implicit(spec, theta, unravel, head_star, ctx.inst, batch), start, iters)


SKETCH_SALT = 0x534B  # the sketch's directions: fold_in(instance step key, salt), the same at every step


def body_sketch_size(spec) -> int:
    return min(spec.sketch_dim, _body_size(spec))


def body_sketch(ctx: MetricContext):
    """The body's weights M (all P_body of them when P_body <= k = train.sketch_dim), else S M with S
    (k, P_body) of N(0, 1/k) entries drawn from the instance's key: the same S for every student of an
    instance and every step, so ||S (M - M')|| estimates ||M - M'|| between two runs of one instance
    (Johnson-Lindenstrauss: relative standard deviation about 1/sqrt(2k))."""
    theta, _ = _body(ctx)
    k = body_sketch_size(ctx.spec)
    if k == theta.size:
        return theta
    key = jax.random.fold_in(ctx.inst["step_key"], SKETCH_SALT)
    return jax.random.normal(key, (k, theta.size), theta.dtype) @ theta / jnp.sqrt(jnp.asarray(k, theta.dtype))


def _phi_words(spec) -> int:
    k, p, h = phi_sharpness_iters(spec), _body_size(spec), spec.arch.width
    samples = spec.task.n_train if spec.formulation == "autodiff" else spec.task.input_dim
    return (k + 4) * p + 2 * k * k + 4 * h * h + 4 * samples * h


METRICS: dict[str, Metric] = {
    "weight_norm": Metric("weight_norm", weight_norm, per_layer=True),
    "sharpness": Metric("sharpness", sharpness, per_layer=False, init_state=sharpness_init, words=_sharpness_words),
    "ntk_eig": Metric("ntk_eig", ntk_eig, per_layer=False, words=_ntk_words),
    "phi_sharpness": Metric("phi_sharpness", phi_sharpness, per_layer=False, init_state=phi_sharpness_init,
                            words=_phi_words),
    "body_sketch": Metric("body_sketch", body_sketch, per_layer=False,
                          words=lambda spec: body_sketch_size(spec) * (_body_size(spec) + 1), size=body_sketch_size),
}
REDUCTIONS: dict[str, Reduction] = {"loss_peak": LOSS_PEAK, "phase": PHASE}


def logged(spec) -> list[Metric]:
    """The group's extra logged metrics, in ``train.metrics`` order."""
    return [METRICS[name] for name in spec.metrics if name in METRICS]


def reductions(spec) -> list[Reduction]:
    return [REDUCTIONS[name] for name in spec.metrics if name in REDUCTIONS]


def working_words(spec) -> int:
    """Array elements one student's logged metrics hold at a logged step (:attr:`Metric.words`)."""
    return sum(m.words(spec) for m in logged(spec))


def metric_shape(spec, metric: Metric) -> tuple:
    if metric.size is not None:
        return (metric.size(spec),)
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
