"""The schema: every config field once, with its role, default, allowed values and when it applies
(:class:`Field`), the core's fields and the names derived from the table (column names, aliases,
learning-rate axes, top-level sections). Families add theirs through :mod:`lrsweep.registry`."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.core.architecture import PARAMETERIZATIONS
from lrsweep.core.columns import LAYER_RATE, is_broadcast, is_layer_rate, lr_columns, short_name  # noqa: F401  (lr_columns: config's API)
from lrsweep.core.config.columnar import equals, has_metric


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: dotted path, value type, default, doc, allowed values, role, when it applies."""
    path: str
    value_type: str  # "int" | "float" | "str" | "bool" | "int_list" | "str_list" | "points" | "arrays"
    default: Any
    doc: str
    choices: tuple | None = None
    minimum: float | None = None  # inclusive
    positive: bool = False  # strictly > 0
    role: str = "static"  # see ROLES
    nullable: bool = False
    axis: bool = True  # may be a grid axis
    maximum: float | None = None  # inclusive
    above: float | None = None  # strict lower bound (``positive`` is above=0)
    applies: Callable | None = None  # {column: (n,)} -> (n,) bool: the students it means something for (None: all)


# What a field is to the engine, declared once per field; every column list derives from it:
#   static    shapes and categorical choices: splits shape groups, keys the compiled program;
#   instance  generates an instance's weights and data (traced, vmapped over the instance axis);
#   traced    a per-student number in the vmapped student axis, read by name (like lr_1 .. lr_m);
#   run       how a run is executed or named; never a column of the compiled program.
ROLES = ("static", "instance", "traced", "run")


# When a field applies (Field.applies): a column it does not apply to is not stored (config.yaml keeps it).
_LINEAR_TEACHER = lambda t: equals(t["kind"], "linear_teacher")


_STOCHASTIC = lambda t: ~equals(t["optimizer"], "gd")


_MOMENTUM = lambda t: equals(t["optimizer"], "momentum")


FIELDS: dict[str, Field] = registry.FIELDS  # the core's fields (below) and every family's


_CORE_FIELDS = [
    Field("name", "str", "sweep", "Sweep name; results go to <out>/<name>/<run_id>/.", role="run"),
    Field("seed", "int", 0, "Seed of init, data and teacher (usually a grid axis via `seeds`).",
          minimum=0, role="instance"),
    Field("task.kind", "str", "linear_teacher",
          "Task (lrsweep.core.tasks): `linear_teacher` (regression y = teacher(X beta) + xi, seed 000) or "
          "`classification` (binary labels in {-1, +1}, seed 003) or `single_point` (one input x = 1 with label "
          "task.label under mse: with a 2-layer ntk student, the uv model of Lewkowycz et al. 2020) or "
          "`power_law_features` (seed 004: x_k ~ N(0, k^-b), k = 1..N, target lambda_k w*_k^2 = k^-a, fresh samples "
          "every step unless task.online: false; the test loss is the exact excess risk).",
          choices=registry.TASK_RULES),
    Field("task.data", "str", "separable",
          "Classification data: `degenerate` (seed 003 Assumption 3: n_train points at the same feature e_1, "
          "half labelled +1, half -1), `separable` (Gaussian inputs labelled by a random unit direction w, "
          "pushed margin / 2 away from the separating hyperplane), `nonseparable` (the same, with a "
          "flip_fraction of the labels flipped), `points` (task.points).",
          choices=("degenerate", "separable", "nonseparable", "points"),
          applies=lambda t: equals(t["kind"], "classification")),
    Field("task.margin", "float", 1.0, "Classification: gap between the two classes along w (separable, "
          "nonseparable).", minimum=0.0, role="instance",
          applies=lambda t: equals(t["kind"], "classification") & ~equals(t["data"], "degenerate") & ~equals(t["data"], "points")),
    Field("task.flip_fraction", "float", 0.1, "Classification (`nonseparable`): fraction of labels flipped, "
          "in [0, 0.5].", minimum=0.0, maximum=0.5, role="instance",
          applies=lambda t: equals(t["kind"], "classification") & equals(t["data"], "nonseparable")),
    Field("task.points", "points", None, "Classification (`points`): explicit rows [x_1, ..., x_d, y], y in "
          "{-1, +1}; input_dim and n_train follow from them.", nullable=True, axis=False,
          applies=lambda t: equals(t["kind"], "classification") & equals(t["data"], "points")),
    Field("task.input_dim", "int", 64, "Input dimension d (power_law_features: the number of features N; "
          "`task.n_features` is its alias).", positive=True),
    Field("task.online", "bool", None, "Fresh samples every step (online SGD) instead of a fixed training set of "
          "task.n_train; null: the task's default (online for power_law_features, fixed otherwise).",
          nullable=True),
    Field("task.n_train", "int", 128, "Number of training samples n.", positive=True),
    Field("task.design", "str", "gaussian",
          "Training inputs: X ~ N(0,1) (`gaussian`) or X = sqrt(n) Q so X^T X = n I (`orthogonal`, n >= d).",
          choices=("gaussian", "orthogonal"),
          applies=_LINEAR_TEACHER),
    Field("task.target", "str", "gaussian",
          "Teacher beta: iid N(0, target_std^2) (`gaussian`) or Q / sqrt(d) (`orthonormal`).",
          choices=("gaussian", "orthonormal"),
          applies=_LINEAR_TEACHER),
    Field("task.target_std", "float", None,
          "Std of gaussian teacher entries; null = the authors' choice (paper_2nn 1/d, paper_deep 1/sqrt(h), standard 1/sqrt(d)).",
          positive=True, role="instance", nullable=True,
          applies=_LINEAR_TEACHER),
    Field("task.teacher_activation", "str", "linear", "y = X beta (`linear`) or y = relu(X beta) (`relu`).",
          choices=("linear", "relu"),
          applies=_LINEAR_TEACHER),
    Field("task.noise_std", "float", 0.0, "Label noise std: y = teacher(X) + xi, xi ~ N(0, noise_std^2).",
          minimum=0.0, role="instance"),
    Field("task.n_test", "int", 2048, "Sampled test-set size (only for students without an exact test loss: ReLU).",
          positive=True),
    Field("task.test_noise", "bool", False, "Add the label-noise variance to the test loss."),
    Field("model.parameterization", "str", "paper_deep",
          "paper_2nn: X W1 W2 / h (identity readout); paper_deep: X W1..W_{L-1} a / sqrt(h), fixed readout a; "
          "standard: every layer trained, no extra scaling; ntk: every layer trained, every pre-activation "
          "divided by sqrt(fan_in), weights N(0, 1) (seed 003 eq. 3).", choices=PARAMETERIZATIONS),
    Field("model.n_layers", "int", 3, "Number of layers L (paper_deep counts its fixed readout: L-1 layers train).",
          positive=True),
    Field("model.width", "int", 64, "Hidden width h.", positive=True),
    Field("model.activation", "str", "linear", "Activation between layers.", choices=("linear", "relu")),
    Field("model.output_dim", "int", 1, "Output dimension (standard only; paper_2nn uses h, paper_deep 1).",
          positive=True),
    Field("init", "str", "orthogonal",
          "orthogonal: QR with sign fix, orthonormal columns (needs fan_in >= fan_out); "
          "gaussian: W1 ~ N(0,1/d), hidden ~ N(0,1/h); zeros: every weight 0 (the linear predictor of seed 004).",
          choices=("orthogonal", "gaussian", "zeros")),
    Field("init_scale", "float", 1.0, "Multiplies every trained weight at init.", positive=True, role="instance"),
    Field("train.loss", "str", "mse",
          "Training loss (lrsweep.core.losses): `mse` (0.5/n) sum ||f(x) - y||^2; `logistic` (1/n) sum log(1 + "
          "exp(-y f(x))) and `exponential` (1/n) sum exp(-y f(x)) for labels in {-1, +1} (one output).",
          choices=("mse", "logistic", "exponential")),
    Field("train.metrics", "str_list", (), "Extra metrics at logged steps (lrsweep.core.metrics), e.g. [weight_norm]: "
          "`weight_norm` (Frobenius norm per trained layer), `sharpness` (top eigenvalue of the train loss's "
          "Hessian, Lanczos warm-started from the previous logged step), `ntk_eig` (top eigenvalue of the "
          "empirical NTK over the number of samples, seed 003); running over every step: `loss_peak` "
          "(largest train loss and its first step), `phase` (lazy, catapult, oscillating or divergent, "
          "lrsweep.core.metrics.PHASE); for students with a head (seed 002): `phi_sharpness` (top eigenvalue of the "
          "Hessian of Phi(body) = loss(body, w*(body)) over the body's weights), `body_sharpness` (top eigenvalue of "
          "the loss Hessian's body block L_MM at the current head), `body_sketch` (the body's "
          "weights, or train.sketch_dim projections of them: distances between runs).",
          choices=registry.METRICS,
          axis=False),
    Field("train.sharpness_iters", "int", 20, "Lanczos iterations (Hessian-vector products) per logged step of "
          "every Lanczos metric: `sharpness`, `phi_sharpness`, `body_sharpness` (at most the number of parameters "
          "are used).", positive=True,
          applies=lambda t: np.logical_or.reduce([has_metric(t, name) for name, m in registry.METRICS.items()
                                                   if getattr(m, "lanczos", False)])),
    Field("train.optimizer", "str", "gd",
          "`gd`: full-batch gradient descent; `sgd`: train.batch_size samples per step (fresh ones for online "
          "tasks, else a minibatch of the training set drawn from a key of the instance and the step: the "
          "learning-rate points of an instance see the same batches); `momentum`: heavy ball on those gradients, "
          "v <- beta(t) v + g, w <- w - eta_l s(t) v (optax.trace's convention).",
          choices=("gd", "sgd", "momentum")),
    Field("train.batch_size", "int", None, "Samples per step of sgd and momentum (the compiled batch shape M; "
          "null: the whole training set).", positive=True, nullable=True,
          applies=_STOCHASTIC),
    Field("train.batch_schedule", "str", "constant",
          "Batch size m(t) (lrsweep.core.schedules): `constant` M; `ramp` round(m_0 + (m_1 - m_0) (t/T)^p) with "
          "m_0 = batch_start, m_1 = batch_end, p = batch_ramp_exponent; `array` (train.batch_array). Sizes below M "
          "are masks on the compiled batch of M.", choices=("constant", "ramp", "array"),
          applies=_STOCHASTIC),
    Field("train.batch_start", "float", 1.0, "m_0 of the batch ramp (traced).", minimum=1.0, role="traced",
          applies=lambda t: equals(t["batch_schedule"], "ramp")),
    Field("train.batch_end", "float", None, "m_1 of the batch ramp, at most train.batch_size (traced; null: "
          "train.batch_size).", minimum=1.0, role="traced", nullable=True,
          applies=lambda t: equals(t["batch_schedule"], "ramp")),
    Field("train.batch_ramp_exponent", "float", 1.0, "p of the batch ramp (traced).", minimum=0.0, role="traced",
          applies=lambda t: equals(t["batch_schedule"], "ramp")),
    Field("train.batch_array", "arrays", None, "Per-step batch sizes of `batch_schedule: array` (see "
          "train.schedule_array).", nullable=True, axis=False,
          applies=lambda t: equals(t["batch_schedule"], "array")),
    Field("train.batch_index", "int", 0, "Which of train.batch_array's arrays a student uses (traced; several "
          "arrays make it a grid axis).", minimum=0, role="traced",
          applies=lambda t: equals(t["batch_schedule"], "array")),
    Field("train.momentum", "float", 0.9, "beta of `momentum` (traced).", minimum=0.0, maximum=1.0, role="traced",
          applies=_MOMENTUM),
    Field("train.momentum_schedule", "str", "constant", "beta(t): `constant` train.momentum, or `array` "
          "(train.momentum_array).", choices=("constant", "array"),
          applies=_MOMENTUM),
    Field("train.momentum_array", "arrays", None, "Per-step momentum of `momentum_schedule: array` (see "
          "train.schedule_array).", nullable=True, axis=False,
          applies=lambda t: equals(t["momentum_schedule"], "array")),
    Field("train.momentum_index", "int", 0, "Which of train.momentum_array's arrays a student uses (traced).",
          minimum=0, role="traced",
          applies=lambda t: equals(t["momentum_schedule"], "array")),
    Field("train.steps", "int", 8, "Number of training steps T.", minimum=0),
    Field("train.schedule", "str", "constant",
          "Learning-rate schedule s(t), t = 0..T-1, multiplying every layer's rate (seed 004, lrsweep.core.schedules): "
          "`constant`; `polynomial` (1 - t/T)^delta; `wsd` 1 until t_s = stable_fraction T, then "
          "((1 - t/T)/(1 - t_s/T))^delta (eq. 82); `power` (1 + t)^(-chi); `cosine` floor + (1 - floor) "
          "(1 + cos(pi t/T))/2; `array` train.schedule_array (with lr 1, the array is the rate itself).",
          choices=("constant", "polynomial", "wsd", "power", "cosine", "array")),
    Field("train.schedule_exponent", "float", 1.0, "delta of `polynomial` / `wsd`, chi of `power` (traced: a grid "
          "axis never recompiles).", minimum=0.0, role="traced",
          applies=lambda t: equals(t["schedule"], "polynomial") | equals(t["schedule"], "wsd") | equals(t["schedule"], "power")),
    Field("train.stable_fraction", "float", 0.8, "t_s / T of `wsd`: the fraction of steps at the full rate, in "
          "[0, 1] (traced).", minimum=0.0, maximum=1.0, role="traced",
          applies=lambda t: equals(t["schedule"], "wsd")),
    Field("train.schedule_floor", "float", 0.0, "`cosine`: the final multiplier, in [0, 1] (traced).",
          minimum=0.0, maximum=1.0, role="traced",
          applies=lambda t: equals(t["schedule"], "cosine")),
    Field("train.schedule_array", "arrays", None,
          "Per-step multipliers s(t) of `schedule: array`: a list of T numbers, a .npy or .csv file (one array, or "
          "one per row), or a list of such; several arrays form a grid axis over train.schedule_index.",
          nullable=True, axis=False,
          applies=lambda t: equals(t["schedule"], "array")),
    Field("train.schedule_index", "int", 0, "Which of train.schedule_array's arrays a student uses (traced).",
          minimum=0, role="traced",
          applies=lambda t: equals(t["schedule"], "array")),
    Field("train.warmup_steps", "int", 0, "Linear warmup: the rate is multiplied by min(1, (t + 1) / w) over the "
          "first w steps (0: none; at most train.steps).", minimum=0),
    Field("train.log_every", "int", 1, "Log metrics every k steps (and at the last step).", positive=True),
    Field("train.log_steps", "int_list", None,
          "Explicit steps to log (overrides log_every), e.g. [0, 1, 2, 4, 8], or {geomspace: [1, T, k]}: k "
          "log-spaced steps from 1 to T, rounded and deduplicated (bounded curves for long runs). Step 0 and "
          "the last step are always logged.", nullable=True),
    Field("train.gradient", "str", "exact",
          "`exact`, or `signal_only`: the residual f(X) - y replaced by -y, the gradient approximation of "
          "seed 000 Sec. 4 (linear paper_2nn / paper_deep students).", choices=("exact", "signal_only")),
    Field("train.formulation", "str", "auto",
          "How a step is computed: `moments` (linear MSE students, data enter through X^T X/n, X^T y/n), "
          "`lowrank` (moments, and the weights kept as the instance's initial weights plus one rank-one "
          "update per step: linear students with one output under gd), `autodiff` (jax.grad on the data), "
          "`auto` (lowrank where it applies and T (rows + columns) < rows x columns, else moments for linear "
          "students, else autodiff). Same numbers either way.",
          choices=("auto", "moments", "lowrank", "autodiff")),
    Field("train.mode", "str", "auto",
          "How a group is computed: `grid` (train every student, lrsweep.core.engine), `poly` (linear students under "
          "gd: exact loss polynomials in the learning rates, one coefficient computation per seed, "
          "lrsweep.core.poly), `auto` (poly where it applies and is estimated faster: compute seconds, plus compile and host evaluation measured once where they decide). Same numbers either way; "
          "not a grid axis.", choices=("auto", "grid", "poly"), role="run", axis=False),
    Field("train.diverge_factor", "float", 1e6,
          "A student diverges when its train loss is non-finite or exceeds this factor times its initial loss.",
          positive=True),
]


for _field in _CORE_FIELDS:
    registry.register_field(_field)


for _module in ("lrsweep.core.tasks", "lrsweep.core.metrics"):  # with jax: imported when first read
    registry.load_later(_module)


def columns(role: str) -> tuple[str, ...]:
    """Student-table columns of the fields with this role (short names, in FIELDS order)."""
    assert role in ROLES, role
    return tuple(short_name(f.path) for f in FIELDS.values() if f.role == role)


def field_columns() -> tuple[str, ...]:
    """Student-table columns of every field that defines a student (static, instance, traced)."""
    return tuple(c for role in ("static", "instance", "traced") for c in columns(role))


EXTRA_ALIASES = {"seeds": "seed", "n_features": "task.input_dim", "task.n_features": "task.input_dim"}


def aliases() -> dict[str, str]:
    """Short name -> field path for every field (its last component: the student-table column), and
    ``seeds``, ``n_features``: derived from the schema, so every field a family registers has one."""
    return {**{short_name(path): path for path in FIELDS if short_name(path) != path and path != "name"}, **EXTRA_ALIASES}


CORE_RATE_AXES = ("lr", "lr_total", "lr_1_fraction")  # a shared rate, a budget C and eta_1 = f C




CORE_SECTIONS = ("name", "seed", "seeds", "task", "model", "init", "init_scale", "train", "grid")


def top_level() -> tuple[str, ...]:
    """Allowed top-level keys: the core's and the sections families read (``schedule_search``)."""
    return CORE_SECTIONS + tuple(registry.SECTIONS)


def rate_axes() -> tuple[str, ...]:
    """Learning-rate grid axes besides lr_1..lr_m: the core's and every :class:`lrsweep.registry.RateScheme`'s."""
    return CORE_RATE_AXES + tuple(a for scheme in registry.RATE_SCHEMES.values() for a in scheme.axes)


def is_rate_axis(name: str) -> bool:
    return name in rate_axes() or is_layer_rate(name)


def _scheme_of(axis: str):
    return next((s for s in registry.RATE_SCHEMES.values() if axis in s.axes), None)


def describe_schema() -> str:
    """Markdown table of every field (used by the README and ``lrsweep schema``)."""
    rows = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for f in FIELDS.values():
        allowed = ", ".join(map(str, f.choices)) if f.choices else (
            f"> {f.above:g}" if f.above is not None else "> 0" if f.positive else f"[{f.minimum:g}, {f.maximum:g}]" if f.maximum is not None else
            f">= {f.minimum:g}" if f.minimum is not None else f.value_type)
        rows.append(f"| `{f.path}` | `{f.default}` | {allowed} | {f.doc} |")
    return "\n".join(rows)


"""Digest -> (K, T_max) float64 table of a config's per-step arrays (rows padded with NaN). The student
table holds the digest (a short string), the compiled program the table, the run's config.yaml the numbers."""


def stored_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a plan's student table that a run stores: all but those of fields that apply to no
    student of it (:attr:`Field.applies`: a plain gd run stores no momentum, batch or head columns) and
    hold one value; ``config.yaml`` keeps every field."""
    table = _ColumnView(frame)
    keep = []
    for column in frame.columns:
        path = aliases().get(column, column)
        field = FIELDS.get(path) if column not in EXTRA_ALIASES else None
        if field is None or field.applies is None or not is_broadcast(table[column]) \
                or bool(np.asarray(field.applies(table)).any()):
            keep.append(column)
    return keep


class _ColumnView:
    """``frame[column]`` as its raw (n,) array (a constant one a broadcast view), read on demand."""
    def __init__(self, frame: pd.DataFrame):
        self.frame, self.cache = frame, {}

    def __getitem__(self, column: str):
        if column not in self.cache:
            values = self.frame[column].array
            self.cache[column] = values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else \
                np.asarray(values, object)
        return self.cache[column]

    def __contains__(self, column: str) -> bool:
        return column in self.frame


def path_of(name: str) -> str:
    """The field path of a column or short name (``width`` -> ``model.width``)."""
    return name if name in FIELDS else aliases()[name]


def static_columns() -> list[str]:
    """Columns that define a compile group (shapes and categorical choices)."""
    return list(columns("static"))
