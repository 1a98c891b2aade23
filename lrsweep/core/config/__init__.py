"""Sweep configs: schema, validation and grid expansion (no jax here).

A config is plain data (a YAML file or a dict). :func:`load_config` validates it against
:data:`FIELDS` and returns a :class:`SweepConfig`; :func:`expand_grid` turns it into a
pandas DataFrame with one row per student. Every check happens here, before any compute,
and raises :class:`ConfigError` naming the field and the allowed values.

Learning rates (seed 000, arXiv 2606.00340, Sec. 5 and App. F) are given per trainable layer
(``lr_1 .. lr_m``, eta_l), as ``lr_total`` (C = eta_1 + ... + eta_m) times ``lr_1_fraction``
(eta_1 = f C, the other layers share the rest equally), or as the authors' line grid
``lr_line`` (see :func:`authors_line_grid`). Students with a head (seed 002: standard or ntk, the last
layer W_m the head, the layers before it the body) take ``lr_body`` (every body layer) with ``lr_head``
or ``lr_ratio`` (eta_head / eta_body), or ``lr_head`` with ``lr_ratio``, or ``lr_total`` with
``lr_ratio`` (an equal budget: (m - 1) eta_body + eta_head = C); ``lr_ratio: .inf`` is the
best-response limit (``train.head: best_response``).
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import itertools
import math
import re
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from lrsweep import registry
from lrsweep.core.architecture import PARAMETERIZATIONS, Architecture
from lrsweep.core.errors import ConfigError  # re-exported: lrsweep.core.config.ConfigError


# --------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Field:
    """One scalar config field: dotted path, kind, default, allowed values, doc."""
    path: str
    kind: str  # "int" | "float" | "str" | "bool" | "int_list"
    default: Any
    doc: str
    choices: tuple | None = None
    minimum: float | None = None  # inclusive
    positive: bool = False  # strictly > 0
    role: str = "static"  # see ROLES
    nullable: bool = False
    axis: bool = True  # may be a grid axis
    maximum: float | None = None  # inclusive
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
          "paper_2nn: X W1 W2 / h (identity head); paper_deep: X W1..W_{L-1} a / sqrt(h), fixed head a; "
          "standard: every layer trained, no extra scaling; ntk: every layer trained, every pre-activation "
          "divided by sqrt(fan_in), weights N(0, 1) (seed 003 eq. 3).", choices=PARAMETERIZATIONS),
    Field("model.n_layers", "int", 3, "Number of layers L (paper_deep counts its fixed head: L-1 layers train).",
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
          "Hessian of Phi(body) = loss(body, w*(body)) over the body's weights), `body_sketch` (the body's "
          "weights, or train.sketch_dim projections of them: distances between runs).",
          choices=registry.METRICS,
          axis=False),
    Field("train.sharpness_iters", "int", 20, "Lanczos iterations (Hessian-vector products) per logged step of "
          "`sharpness` (at most the number of parameters are used).", positive=True,
          applies=lambda t: has_metric(t, "sharpness") | has_metric(t, "phi_sharpness")),
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
          "lrsweep.core.poly), `auto` (poly where it applies and needs fewer FLOPs). Same numbers either way; "
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
    return tuple(short(f.path) for f in FIELDS.values() if f.role == role)


def field_columns() -> tuple[str, ...]:
    """Student-table columns of every field that defines a student (static, instance, traced)."""
    return tuple(c for role in ("static", "instance", "traced") for c in columns(role))


def lr_columns(n_trainable: int) -> list[str]:
    """``lr_1 .. lr_m``: the per-layer rates, traced like the ``traced`` fields."""
    return [f"lr_{i}" for i in range(1, n_trainable + 1)]


EXTRA_ALIASES = {"seeds": "seed", "n_features": "task.input_dim", "task.n_features": "task.input_dim"}


def aliases() -> dict[str, str]:
    """Short name -> field path for every field (its last component: the student-table column), and
    ``seeds``, ``n_features``: derived from the schema, so every field a family registers has one."""
    return {**{short(path): path for path in FIELDS if short(path) != path and path != "name"}, **EXTRA_ALIASES}


CORE_RATE_AXES = ("lr", "lr_total", "lr_1_fraction")  # a shared rate, a budget C and eta_1 = f C
_LR_LAYER = re.compile(r"^lr_([1-9][0-9]*)$")
CORE_SECTIONS = ("name", "seed", "seeds", "task", "model", "init", "init_scale", "train", "grid")


def top_level() -> tuple[str, ...]:
    """Allowed top-level keys: the core's and the sections families read (``schedule_search``)."""
    return CORE_SECTIONS + tuple(registry.SECTIONS)


def rate_axes() -> tuple[str, ...]:
    """Learning-rate grid axes besides lr_1..lr_m: the core's and every :class:`lrsweep.registry.RateScheme`'s."""
    return CORE_RATE_AXES + tuple(a for scheme in registry.RATE_SCHEMES.values() for a in scheme.axes)


def is_layer_rate(name: str) -> bool:
    """``lr_1``, ``lr_2``, ...: one layer's rate."""
    return _LR_LAYER.match(name) is not None


def is_rate_axis(name: str) -> bool:
    return name in rate_axes() or is_layer_rate(name)


def _scheme_of(axis: str):
    return next((s for s in registry.RATE_SCHEMES.values() if axis in s.axes), None)
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def describe_schema() -> str:
    """Markdown table of every field (used by the README and ``lrsweep schema``)."""
    rows = ["| field | default | allowed | meaning |", "| --- | --- | --- | --- |"]
    for f in FIELDS.values():
        allowed = ", ".join(map(str, f.choices)) if f.choices else (
            "> 0" if f.positive else f"[{f.minimum:g}, {f.maximum:g}]" if f.maximum is not None else
            f">= {f.minimum:g}" if f.minimum is not None else f.kind)
        rows.append(f"| `{f.path}` | `{f.default}` | {allowed} | {f.doc} |")
    return "\n".join(rows)


def _suggest(name: str, options) -> str:
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.5)
    return f" (did you mean '{close[0]}'?)" if close else ""


_FLOAT_RE = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


def check_value(field: Field, value: Any, where: str) -> Any:
    """Validate and coerce one value of ``field``; ``where`` names it in the error."""
    if value is None:
        if field.nullable:
            return None
        raise ConfigError(where, f"must not be null ({_allowed(field)})")
    kind = field.kind
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                or (isinstance(value, float) and not float(value).is_integer()):
            raise ConfigError(where, f"expected an integer, got {value!r} ({_allowed(field)})")
        value = int(value)
    elif kind == "float":
        if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 as a string
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise ConfigError(where, f"expected a number, got {value!r} ({_allowed(field)})")
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(where, f"must be finite, got {value!r}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(where, f"expected a string, got {value!r} ({_allowed(field)})")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(where, f"expected true or false, got {value!r}")
    elif kind == "str_list":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(where, f"expected a list of names, got {value!r} ({_allowed(field)})")
        for v in value:
            if v not in field.choices:
                raise ConfigError(where, f"{v!r} is not allowed; allowed values: {', '.join(field.choices)}"
                                  + _suggest(v, field.choices))
        if len(set(value)) != len(value):
            raise ConfigError(where, f"{value!r} names a metric twice")
        return tuple(value)
    elif kind == "points":
        rows = value if isinstance(value, (list, tuple)) else None
        if not rows or any(not isinstance(r, (list, tuple)) or len(r) < 2 for r in rows):
            raise ConfigError(where, f"expected a non-empty list of rows [x_1, ..., x_d, y], got {value!r}")
        if len({len(r) for r in rows}) != 1:
            raise ConfigError(where, "every row needs the same length [x_1, ..., x_d, y]")
        for r in rows:
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in r):
                raise ConfigError(where, f"entries must be finite numbers, got {list(r)!r}")
            if r[-1] not in (-1, 1):
                raise ConfigError(where, f"the label (last entry) must be -1 or +1, got {r[-1]!r}")
        return tuple(tuple(float(v) for v in r) for r in rows)
    elif kind == "arrays":
        return register_arrays(_read_arrays(value, where), where)
    elif kind == "int_list":
        if isinstance(value, dict):  # {geomspace: [a, b, k]}: k log-spaced steps, rounded, deduplicated
            if list(value) != ["geomspace"]:
                raise ConfigError(where, f"expected a list of steps or {{geomspace: [first, last, k]}}, got {value!r}")
            args = value["geomspace"]
            if (not isinstance(args, (list, tuple)) or len(args) != 3
                    or any(isinstance(v, bool) or not isinstance(v, int) for v in args)):
                raise ConfigError(where, f"geomspace takes three integers [first, last, k], got {args!r}")
            first, last, k = args
            if not 1 <= first <= last or k < 1:
                raise ConfigError(where, f"geomspace needs 1 <= first <= last and k >= 1, got {list(args)!r}")
            return tuple(int(v) for v in np.unique(np.rint(np.geomspace(first, last, k)).astype(np.int64)))
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(where, f"expected a non-empty list of integers, got {value!r}")
        value = tuple(sorted({check_value(Field(field.path, "int", 0, "", minimum=0), v, where)
                              for v in value}))
        return value
    if field.choices is not None and value not in field.choices:
        raise ConfigError(where, f"{value!r} is not allowed; allowed values: {', '.join(map(str, field.choices))}"
                          + (_suggest(value, field.choices) if isinstance(value, str) else ""))
    if field.positive and value <= 0:
        raise ConfigError(where, f"must be > 0, got {value!r}")
    if field.minimum is not None and value < field.minimum:
        raise ConfigError(where, f"must be >= {field.minimum:g}, got {value!r}")
    if field.maximum is not None and value > field.maximum:
        raise ConfigError(where, f"must be <= {field.maximum:g}, got {value!r} ({_allowed(field)})")
    return value


def _allowed(field: Field) -> str:
    if field.choices:
        return "allowed values: " + ", ".join(map(str, field.choices))
    if field.positive:
        return f"a {field.kind} > 0"
    if field.minimum is not None and field.maximum is not None:
        return f"a {field.kind} in [{field.minimum:g}, {field.maximum:g}]"
    if field.minimum is not None:
        return f"a {field.kind} >= {field.minimum:g}"
    return f"a {field.kind}"


# --------------------------------------------------------------------------------------
# Per-step arrays (train.schedule_array, batch_array, momentum_array)
# --------------------------------------------------------------------------------------

ARRAYS: dict[str, np.ndarray] = {}
"""Digest -> (K, T_max) float64 table of a config's per-step arrays (rows padded with NaN). The student
table holds the digest (a short string), the compiled program the table, the run's config.yaml the numbers."""


def _read_arrays(value: Any, where: str) -> list[np.ndarray]:
    """One array (a list of numbers, or a .npy / .csv file of one array or one per row), or a list of
    such, as a list of 1-D float arrays."""
    def one_file(path: str) -> list[np.ndarray]:
        file = Path(path).expanduser()
        if not file.is_absolute() and _CONFIG_DIR[0] is not None and (_CONFIG_DIR[0] / file).is_file():
            file = _CONFIG_DIR[0] / file  # relative to the config file first, then to the working directory
        if not file.is_file():
            raise ConfigError(where, f"file not found: {path} (give a list of numbers, or a .npy or .csv file)")
        try:
            data = np.load(file) if file.suffix == ".npy" else np.loadtxt(file, delimiter=",", ndmin=1)
        except (ValueError, OSError) as e:
            raise ConfigError(where, f"cannot read {path} as numbers: {str(e).splitlines()[0]}") from None
        data = np.asarray(data, float)
        if data.ndim not in (1, 2) or data.size == 0:
            raise ConfigError(where, f"{path}: expected one array or one array per row, got shape {data.shape}")
        return [data] if data.ndim == 1 else list(data)

    def numbers(v) -> bool:
        return isinstance(v, (list, tuple)) and len(v) > 0 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)

    if isinstance(value, str):
        arrays = one_file(value)
    elif numbers(value):
        arrays = [np.asarray(value, float)]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, str) or numbers(v) for v in value):
        arrays = [a for v in value for a in (one_file(v) if isinstance(v, str) else [np.asarray(v, float)])]
    else:
        raise ConfigError(where, f"expected a list of numbers (one per step), a .npy or .csv file, or a list of "
                                 f"those, got {value!r:.80}")
    for i, a in enumerate(arrays):
        if not np.all(np.isfinite(a)) or (a < 0).any():
            raise ConfigError(where, f"array {i}: entries must be finite and >= 0")
    return arrays


_CONFIG_DIR: list = [None]  # the directory of the config file being loaded (relative array files)


def register_arrays(arrays: list[np.ndarray], where: str = "") -> str:
    """Store a list of per-step arrays in :data:`ARRAYS`; returns its digest (the column value)."""
    import hashlib
    t_max = max(len(a) for a in arrays)
    table = np.full((len(arrays), t_max), np.nan)
    for i, a in enumerate(arrays):
        table[i, :len(a)] = a
    digest = hashlib.sha1(table.tobytes() + str(table.shape).encode()).hexdigest()[:12]
    key = f"{digest} ({len(arrays)} x {t_max})"
    ARRAYS[key] = table
    return key


def array_table(key: str) -> np.ndarray:
    """The (K, T_max) table of a digest from :func:`register_arrays`."""
    if key not in ARRAYS:
        raise ConfigError("train", f"per-step arrays {key} are not loaded; load the run's config first")
    return ARRAYS[key]


def arrays_as_lists(key: str) -> list[list[float]]:
    """The arrays of a digest as plain lists (what a resolved config stores)."""
    return [[float(x) for x in row[~np.isnan(row)]] for row in array_table(key)]


ARRAY_INDEX = {"train.schedule_array": "train.schedule_index", "train.batch_array": "train.batch_index",
               "train.momentum_array": "train.momentum_index"}
ARRAY_KIND = {"train.schedule_array": ("train.schedule", "array"), "train.batch_array": ("train.batch_schedule", "array"),
              "train.momentum_array": ("train.momentum_schedule", "array")}
PATH_ALIASES = {"task.n_features": "task.input_dim"}


# --------------------------------------------------------------------------------------
# Grid values
# --------------------------------------------------------------------------------------

def grid_values(spec: Any, where: str) -> list:
    """Parse one grid axis: a scalar, a list, or {linspace|logspace|geomspace: [a, b, n]},
    {range: [start, stop, step]} (stop inclusive), {values: [...]}."""
    if isinstance(spec, dict):
        if len(spec) != 1:
            raise ConfigError(where, f"a generated axis has exactly one key of linspace, logspace, geomspace, "
                                     f"range, values; got {sorted(spec)}")
        (kind, args), = spec.items()
        if kind == "values":
            return grid_values(list(args), where)
        if kind not in ("linspace", "logspace", "geomspace", "range"):
            raise ConfigError(where, f"unknown generator '{kind}'; allowed: linspace, logspace, geomspace, range, "
                                     f"values" + _suggest(kind, ("linspace", "logspace", "geomspace", "range")))
        if not isinstance(args, (list, tuple)) or len(args) != 3 or any(
                isinstance(a, bool) or not isinstance(a, (int, float)) for a in args):
            raise ConfigError(where, f"{kind} takes three numbers [start, stop, num_or_step], got {args!r}")
        a, b, c = args
        if kind == "range":
            if c <= 0 or b < a:
                raise ConfigError(where, f"range needs step > 0 and stop >= start, got {args!r}")
            n = int(math.floor((b - a) / c + 1e-9)) + 1
            vals = [a + i * c for i in range(n)]
            return [int(v) if all(isinstance(x, int) for x in args) else float(v) for v in vals]
        if not float(c).is_integer() or c < 1:
            raise ConfigError(where, f"{kind} needs a positive integer count, got {c!r}")
        fn = {"linspace": np.linspace, "logspace": np.logspace, "geomspace": np.geomspace}[kind]
        if kind == "geomspace" and (a <= 0 or b <= 0):
            raise ConfigError(where, f"geomspace needs positive endpoints, got {args!r}")
        return [float(v) for v in fn(a, b, int(c))]
    if isinstance(spec, (list, tuple)):
        if len(spec) == 0:
            raise ConfigError(where, "empty axis: give at least one value")
        return list(spec)
    return [spec]


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    """A validated config: ``base`` maps every field path to its value, ``axes`` the grid."""
    base: dict
    axes: tuple  # tuple of (names tuple, list of value tuples); names are field paths or lr keys
    raw: dict

    @property
    def name(self) -> str:
        return self.base["name"]

    def to_dict(self) -> dict:
        """The resolved config as nested plain data (what is written to config.yaml)."""
        return self.raw


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and path in ("task", "model", "train"):
            out.update(_flatten(v, path + "."))
        else:
            out[path] = v
    return out


def _set_path(d: dict, path: str, value: Any) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        if not isinstance(d.get(k), dict):
            d[k] = {}
        d = d[k]
    d[keys[-1]] = value


def _with_path(raw: dict, path: str, value: Any) -> dict:
    """A copy of ``raw`` with ``path`` (dotted) set to ``value``."""
    import copy
    raw = copy.deepcopy(raw)
    for alias, target in PATH_ALIASES.items():
        if target == path and alias.split(".")[0] in raw:
            (raw[alias.split(".")[0]] or {}).pop(alias.split(".")[1], None)
    _set_path(raw, path, value)
    return raw


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``--set path=value`` overrides (values parsed as YAML) to raw config data.

    A field that is also a grid axis is removed from the grid (the override wins).
    """
    import copy
    raw = copy.deepcopy(raw)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError("--set", f"expected PATH=VALUE, got {item!r}")
        path, text = item.split("=", 1)
        path = path.strip()
        value = parse_yaml(text, "--set", f"{item}: ")
        if path in aliases() and path != "seeds":
            path = aliases()[path]
        if path.startswith("grid."):
            raw.setdefault("grid", {})
            raw["grid"][path[5:]] = value
            continue
        if path in ("seed", "seeds"):
            raw.pop("seed", None)
            raw["seeds"] = value
            for key in ("seed", "seeds"):
                (raw.get("grid") or {}).pop(key, None)
            continue
        for alias, target in PATH_ALIASES.items():  # the override replaces the field under either name
            section, key = alias.split(".")
            if target == path and isinstance(raw.get(section), dict):
                raw[section].pop(key, None)
        _set_path(raw, path, value)
        grid = raw.get("grid") or {}
        alias = {v: k for k, v in aliases().items()}.get(path)
        for key in (path, alias):
            if key and key in grid:
                del grid[key]
    return raw


def _check_distinct(values: list, where: str, names: tuple | None = None) -> list:
    """``values`` of one axis (rows of a zip over ``names``); ConfigError(where) for a value given twice:
    it would train the same students twice."""
    first = {}
    for i, v in enumerate(values):
        if v in first:
            what = f"value {v!r}" if names is None else "row " + ", ".join(f"{n}={x!r}" for n, x in zip(names, v))
            raise ConfigError(where, f"{what} appears twice (entries {first[v] + 1} and {i + 1}): the same "
                                     f"students would be trained twice")
        first[v] = i
    return values


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may be overridden by the keys after it
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: SafeLoader reports it
                continue
            if repeated:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, field: str, prefix: str = "") -> Any:
    """YAML text -> data; ConfigError(field, prefix + one line) for invalid YAML or a duplicate key."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = "" if mark is None else f" (line {mark.line + 1}, column {mark.column + 1})" if "\n" in text.strip() \
            else f" (column {mark.column + 1})"
        raise ConfigError(field, f"{prefix}{'' if 'duplicate key' in str(e.problem) else 'not valid YAML: '}"
                                 f"{' '.join(str(e.problem).split())}{where}") from None
    except yaml.YAMLError as e:
        raise ConfigError(field, f"{prefix}not valid YAML: {' '.join(str(e).split())}") from None


def _read_text(path: Path) -> str:
    """A config file's text; ConfigError("config") where it is missing, a directory or unreadable."""
    if not path.exists():
        raise ConfigError("config", f"file not found: {path}")
    if path.is_dir():
        raise ConfigError("config", f"{path} is a directory; give a YAML file (e.g. configs/quickstart.yaml)")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise ConfigError("config", f"{path} is not a text (YAML) file") from None
    except OSError as e:
        raise ConfigError("config", f"cannot read {path}: {e.strerror or e}") from None


def _axis_name(key: str, where: str) -> str:
    if is_rate_axis(key):
        return key
    path = aliases().get(key, key)
    if path == "seed" or path in FIELDS:
        if path == "name":
            raise ConfigError(where, "name cannot be a grid axis")
        if path in FIELDS and not FIELDS[path].axis:
            raise ConfigError(where, f"{path} cannot be a grid axis (it does not change the results); set it "
                                     f"once" + (" (train.mode or `lrsweep run --mode`)" if path == "train.mode" else ""))
        return path
    options = list(FIELDS) + list(aliases()) + list(rate_axes()) + ["lr_1", "lr_2", "zip"]
    raise ConfigError(where, f"unknown grid axis '{key}'{_suggest(key, options)}; axes are config fields "
                             f"(e.g. width, n_layers, init, noise_std, steps), lr_1..lr_L, "
                             f"{', '.join(rate_axes())}, or zip")


def _check_axis_values(name: str, values: list, where: str) -> list:
    if name in FIELDS or name == "seed":
        return [check_value(FIELDS[name], v, where) for v in values]
    scheme = _scheme_of(name)
    check = scheme.check_value if scheme is not None and scheme.check_value is not None else check_rate
    return [check(name, v, where) for v in values]


def is_float_text(text: str) -> bool:
    return _FLOAT_RE.match(text.strip()) is not None


def check_rate(name: str, v, where: str) -> float:
    """One value of a learning-rate axis: a finite number >= 0 (``lr_1_fraction`` in [0, 1])."""
    if isinstance(v, str) and is_float_text(v):
        v = float(v)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ConfigError(where, f"learning rates must be finite numbers, got {v!r}")
    if name == "lr_1_fraction" and not 0.0 <= v <= 1.0:
        raise ConfigError(where, f"lr_1_fraction must be in [0, 1], got {v!r}")
    if name != "lr_1_fraction" and v < 0:
        raise ConfigError(where, f"learning rates must be >= 0, got {v!r}")
    return float(v)


def load_config(source: str | Path | dict, overrides: list[str] | None = None,
                defaults: dict | None = None) -> SweepConfig:
    """Read (a YAML path or a dict), apply overrides, validate; raise ConfigError on bad input.
    ``defaults``: top-level sections taken where the config has none (a command's own section)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        raw = parse_yaml(_read_text(path), "config", f"{path}: ")
        if raw is None:
            raw = {}
        _CONFIG_DIR[0] = path.parent
        try:
            return _load(_with_defaults(raw, defaults), overrides)
        finally:
            _CONFIG_DIR[0] = None
    return _load(_with_defaults(source, defaults), overrides)


def _with_defaults(raw, defaults: dict | None):
    if not defaults or not isinstance(raw, dict):
        return raw
    return {**{k: v for k, v in defaults.items() if raw.get(k) is None}, **{k: v for k, v in raw.items()
                                                                             if v is not None or k not in defaults}}


def _load(raw, overrides: list[str] | None) -> SweepConfig:
    """:func:`load_config` of parsed data."""
    if not isinstance(raw, dict):
        raise ConfigError("config", f"top level must be a mapping of {', '.join(top_level())}")
    raw = apply_overrides(raw, overrides)
    raw = {k: v for k, v in raw.items() if not (k in ("task", "model", "train") and v is None)}  # `model:` empty
    for key in raw:
        if key not in top_level():
            # a misplaced or misspelt field (`width:` at the top) suggests its full path
            options = {k: k for k in top_level()} | {a: p for a, p in aliases().items() if a != "seeds"} | {
                p.split(".")[-1]: p for p in FIELDS}
            close = difflib.get_close_matches(str(key), list(options), n=1, cutoff=0.5)
            hint = f" (did you mean '{options[close[0]]}'?)" if close else ""
            raise ConfigError(str(key), f"unknown key{hint}; allowed: {', '.join(top_level())}")
    if "seed" in raw and "seeds" in raw:
        raise ConfigError("seeds", "give either seed (one value) or seeds (a list), not both")
    for section in ("task", "model", "train", "grid"):
        if section in raw and raw[section] is not None and not isinstance(raw[section], dict):
            raise ConfigError(section, f"must be a mapping, got {raw[section]!r}")

    flat = _flatten({k: v for k, v in raw.items() if k not in ("grid", "seeds", *registry.SECTIONS)})
    for alias, path in PATH_ALIASES.items():
        if alias in flat:
            if path in flat:
                raise ConfigError(alias, f"is an alias of {path}; give one of them")
            flat[path] = flat.pop(alias)
    base = {}
    for key, value in flat.items():
        if key not in FIELDS:
            section = key.split(".")[0]
            options = [p for p in FIELDS if p.startswith(section + ".")] or list(FIELDS)
            raise ConfigError(key, f"unknown field{_suggest(key, options)}; allowed in '{section}': "
                                   f"{', '.join(p.split('.')[-1] for p in options)}")
        base[key] = check_value(FIELDS[key], value, key)
    if "name" in base and (not _NAME_RE.match(base["name"]) or base["name"] in (".", "..")):
        raise ConfigError("name", f"must be a plain directory name (letters, digits, '.', '_', '-'), "
                                  f"got {base['name']!r}")
    rules = registry.TASK_RULES.get(base.get("task.kind", FIELDS["task.kind"].default))
    for path, value in (rules.defaults.items() if rules is not None else ()):  # single_point: one input x = 1
        base.setdefault(path, value)
    if base.get("task.points") is not None:  # explicit points set the data's size unless given
        base.setdefault("task.n_train", len(base["task.points"]))
        base.setdefault("task.input_dim", len(base["task.points"][0]) - 1)
    for path, field in FIELDS.items():
        base.setdefault(path, field.default)

    axes = []
    grid = raw.get("grid") or {}
    zips = grid.get("zip") if isinstance(grid.get("zip"), list) else [grid.get("zip")]
    grid_keys = list(grid) + [k for z in zips if isinstance(z, dict) for k in z]
    seeds = None
    if "seeds" in raw or not any(aliases().get(str(k), k) == "seed" for k in grid_keys):  # else a grid axis
        seeds = raw.get("seeds", [base["seed"]])
        if not isinstance(seeds, (list, tuple, dict, int)) or isinstance(seeds, bool):
            raise ConfigError("seeds", f"expected a list of non-negative integers, got {seeds!r}")
        seeds = _check_distinct(_check_axis_values("seed", grid_values(seeds, "seeds"), "seeds"), "seeds")
        axes.append((("seed",), [(s,) for s in seeds]))

    for key, spec in grid.items():
        where = f"grid.{key}"
        if key == "zip":
            groups = spec if isinstance(spec, list) else [spec]
            for gi, group in enumerate(groups):
                gw = f"{where}[{gi}]"
                if not isinstance(group, dict) or not group:
                    raise ConfigError(gw, "zip takes a mapping of axes with equal-length lists")
                names, columns = [], []
                for k, v in group.items():
                    name = _axis_name(k, f"{gw}.{k}")
                    names.append(name)
                    columns.append(_check_axis_values(name, grid_values(v, f"{gw}.{k}"), f"{gw}.{k}"))
                lengths = {len(c) for c in columns}
                if len(lengths) != 1:
                    raise ConfigError(gw, f"zip axes must have equal lengths, got "
                                          f"{dict(zip(group, map(len, columns)))}")
                rows = _check_distinct(list(zip(*columns)), gw, names)
                axes.append((tuple(names), rows))
            continue
        name = _axis_name(str(key), where)
        values = _check_distinct(_check_axis_values(name, grid_values(spec, where), where), where)
        axes.append(((name,), [(v,) for v in values]))

    names = [n for ns, _ in axes for n in ns]
    for path, index in ARRAY_INDEX.items():  # several arrays: a grid axis over their index
        if base[path] is not None and index not in names and len(array_table(base[path])) > 1:
            axes.append(((index,), [(i,) for i in range(len(array_table(base[path])))]))
            names.append(index)
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ConfigError("grid", f"axis given twice: {', '.join(sorted(dup))}")
    layer_axes = [n for n in names if _LR_LAYER.match(n)]
    for scheme in registry.RATE_SCHEMES.values():  # lr_line alone; head rates in pairs
        scheme.check_axes(names, axes)
    if "lr" in names and "lr_total" in names:
        raise ConfigError("grid.lr", "give a shared lr or an lr_total, not both")
    if "lr_1_fraction" in names and layer_axes:
        raise ConfigError("grid.lr_1_fraction", f"lr_1_fraction sets every layer's learning rate; do not "
                                                 f"combine it with {', '.join(layer_axes)}")
    if "lr_1_fraction" in names and "lr_total" not in names:
        raise ConfigError("grid.lr_1_fraction", "needs an lr_total axis (eta_1 = fraction * lr_total)")
    defaults = [s.default_lr for name, s in registry.SECTIONS.items() if raw.get(name) is not None
                and s.default_lr is not None]
    if defaults and not any(is_rate_axis(n) for n in names):
        axes.append((("lr",), [(defaults[0],)]))  # `lrsweep schedule` finds the rates; its verify runs use lr 1 x array
        names.append("lr")
    if not any(is_rate_axis(n) for n in names):
        raise ConfigError("grid", f"no learning rate given: add lr, lr_1..lr_L, lr_total (with lr_1_fraction) "
                                  f"or another rate axis ({', '.join(rate_axes()[3:])}) to the grid")
    resolved = dict(raw)
    for path in ARRAY_INDEX:  # files read once: the run's config.yaml keeps the numbers
        if base[path] is not None:
            resolved = _with_path(resolved, path, arrays_as_lists(base[path]))
    resolved.pop("seed", None)
    if seeds is not None:
        resolved["seeds"] = seeds
    return SweepConfig(base=base, axes=tuple(axes), raw=resolved)


# --------------------------------------------------------------------------------------
# Students
# --------------------------------------------------------------------------------------

def resolve_lrs(point: dict, m: int) -> list[float]:
    """Per-layer learning rates eta_1..eta_m for one grid point (see module docstring); the values may be
    numpy columns (one entry per student)."""
    for scheme in registry.RATE_SCHEMES.values():  # head rates, the authors' lines
        lrs = scheme.resolve(point, m)
        if lrs is not None:
            return lrs
    if "lr_total" in point:
        total = point["lr_total"]
        if "lr_1_fraction" in point:
            eta_1 = point["lr_1_fraction"] * total
            return [eta_1] + [(total - eta_1) / (m - 1)] * (m - 1) if m > 1 else [total]
        explicit = {int(_LR_LAYER.match(k).group(1)): v for k, v in point.items() if _LR_LAYER.match(k)}
        if explicit:
            free = [l for l in range(1, m + 1) if l not in explicit]
            rest = (total - sum(explicit.values())) / max(len(free), 1)
            return [explicit.get(l, rest) for l in range(1, m + 1)]
        return [total / m] * m
    lrs = []
    for layer in range(1, m + 1):
        key = f"lr_{layer}"
        if key in point:
            lrs.append(point[key])
        elif "lr" in point:
            lrs.append(point["lr"])
        else:
            raise ConfigError(f"grid.{key}", f"no learning rate for layer {layer} of {m} trainable layers: "
                                             f"give {key} or a shared `lr`")
    return lrs


def _check_student_shapes(p: dict) -> None:
    """Cross-field checks for one static combination (raise before any compute)."""
    par, L = p["model.parameterization"], p["model.n_layers"]
    d, h, n = p["task.input_dim"], p["model.width"], p["task.n_train"]
    if par == "paper_2nn":
        if L != 2:
            raise ConfigError("model.n_layers", f"paper_2nn has exactly 2 trained layers, got n_layers={L}")
        if p["model.activation"] != "linear":
            raise ConfigError("model.activation", "paper_2nn is linear only; allowed values: linear")
    if par == "paper_deep" and L < 2:
        raise ConfigError("model.n_layers", f"paper_deep counts its fixed head, so n_layers >= 2; got {L}")
    arch = Architecture.from_fields(p)
    rules = registry.TASK_RULES[p["task.kind"]]
    if rules.check is not None:
        rules.check(p, arch)
    _check_optimizer(p)
    for check in registry.VALIDATORS:  # what a family's fields need (a head, ...)
        check(p, arch)
    if p["train.loss"] != "mse" and p["task.kind"] != "classification":  # linear_teacher, single_point
        raise ConfigError("train.loss", f"{p['train.loss']} needs labels in {{-1, +1}} (task.kind: "
                                        f"classification); allowed for task.kind {p['task.kind']}: mse")
    if p["init"] == "orthogonal":
        for i, (rows, cols) in enumerate(arch.shapes, 1):
            if rows < cols:
                fix = (f"set task.input_dim >= model.width (e.g. --set task.input_dim={h}"
                       + (f" --set task.n_train={max(n, h)}" if p["task.design"] == "orthogonal" and n < h else "")
                       + ") or model.width <= task.input_dim" if i == 1 else
                       "set model.width >= model.output_dim or model.output_dim <= model.width")
                raise ConfigError("init", f"orthogonal init needs fan_in >= fan_out (orthonormal columns) but "
                                          f"W{i} is {rows} x {cols} (task.input_dim={d}, model.width={h}); {fix}, "
                                          f"or use init: gaussian")
    steps = p["train.steps"]
    if p["train.warmup_steps"] > steps:
        raise ConfigError("train.warmup_steps", f"must be <= train.steps={steps}, got {p['train.warmup_steps']}")
    if p["train.log_steps"] is not None and max(p["train.log_steps"]) > steps:
        raise ConfigError("train.log_steps", f"steps to log must be <= train.steps={steps}, got "
                                             f"{max(p['train.log_steps'])}")


def online(p: dict) -> bool:
    """Whether the task draws fresh samples every step (``task.online``, null: the task's default)."""
    get = lambda path: p[path] if path in p else p[short(path)]
    value = get("task.online")
    if value is None or (isinstance(value, float) and value != value):
        return registry.TASK_RULES[get("task.kind")].online
    return bool(value)


def _check_optimizer(p: dict) -> None:
    """The optimizer, batch and schedule fields of one static combination agree."""
    opt, batch, kind = p["train.optimizer"], p["train.batch_size"], p["task.kind"]
    if online(p) and not registry.TASK_RULES[kind].online:
        streams = ", ".join(k for k, r in registry.TASK_RULES.items() if r.online)
        raise ConfigError("task.online", f"task.kind {kind} has a fixed training set; allowed: false (online "
                                         f"samples: {streams})")
    if opt == "gd" and batch is not None:
        raise ConfigError("train.batch_size", "gd uses the whole training set; use train.optimizer: sgd (or "
                                              "momentum) for minibatches, or leave train.batch_size null")
    if online(p):
        if opt == "gd":
            raise ConfigError("train.optimizer", f"{kind} draws fresh samples every step (task.online): allowed "
                                                 f"values: sgd, momentum (or task.online: false for a fixed set)")
        if batch is None:
            raise ConfigError("train.batch_size", f"{kind} is online: give the number of samples per step (> 0)")
    elif batch is not None and batch > p["task.n_train"]:
        raise ConfigError("train.batch_size", f"must be <= task.n_train={p['task.n_train']}, got {batch}")
    if p["train.batch_schedule"] != "constant" and batch is None:
        raise ConfigError("train.batch_schedule", f"{p['train.batch_schedule']} needs train.batch_size (the "
                                                  f"compiled batch shape) and train.optimizer sgd or momentum")
    for path, (kind_path, value) in ARRAY_KIND.items():
        if (p[kind_path] == value) != (p[path] is not None):
            raise ConfigError(path if p[path] is not None else kind_path,
                              f"{path} is read exactly when {kind_path} is {value}")
    if p["train.momentum_schedule"] != "constant" and opt != "momentum":
        raise ConfigError("train.momentum_schedule", f"only read by train.optimizer: momentum (got {opt})")


def _check_linear_teacher(p: dict, arch: Architecture) -> None:
    d, n = p["task.input_dim"], p["task.n_train"]
    if p["task.design"] == "orthogonal" and n < d:
        raise ConfigError("task.design", f"orthogonal design (X^T X = n I) needs n_train >= input_dim; "
                                         f"got n_train={n} < input_dim={d}")
    if p["task.target"] == "orthonormal" and d < arch.output_dim:
        raise ConfigError("task.target", f"orthonormal target needs input_dim >= output dim; got {d} < "
                                         f"{arch.output_dim}")


def _check_classification(p: dict, arch: Architecture) -> None:
    if arch.output_dim != 1:
        raise ConfigError("model.output_dim", f"binary classification needs one output; the {arch.parameterization} "
                                              f"student has {arch.output_dim} (use paper_deep, or standard with "
                                              f"output_dim 1)")
    data, n, d = p["task.data"], p["task.n_train"], p["task.input_dim"]
    if data == "points":
        if p["task.points"] is None:
            raise ConfigError("task.points", "task.data: points needs task.points, a list of rows [x_1, ..., x_d, y]")
        if (len(p["task.points"]), len(p["task.points"][0]) - 1) != (n, d):
            raise ConfigError("task.points", f"{len(p['task.points'])} rows of {len(p['task.points'][0]) - 1} "
                                             f"features, but task.n_train={n} and task.input_dim={d}")
    elif p["task.points"] is not None:
        raise ConfigError("task.points", f"only read with task.data: points (got task.data: {data})")
    if data == "degenerate" and n % 2:
        raise ConfigError("task.n_train", f"degenerate data pairs every +1 point with a -1 point: n_train must "
                                          f"be even, got {n}")


def log_steps(p: dict) -> tuple[int, ...]:
    """Steps at which metrics are recorded (always includes 0 and the last step); short or dotted keys."""
    get = lambda path: p[path] if path in p else p[short(path)]
    steps, explicit = get("train.steps"), get("train.log_steps")
    if explicit is not None and not isinstance(explicit, float):  # NaN: a column of a frame without it
        return tuple(sorted(set(explicit) | {0, steps}))
    return tuple(sorted(set(range(0, steps + 1, get("train.log_every"))) | {steps}))


def _expanded_axes(cfg: SweepConfig) -> list[tuple[tuple, list]]:
    """The grid's axes with each value of a scheme's expanded axis (:attr:`RateScheme.expand`, seed
    000's ``lr_line``) replaced by the points it stands for."""
    axes = []
    for names, values in cfg.axes:
        for scheme in registry.RATE_SCHEMES.values():
            expanded = scheme.expand(names, values) if scheme.expand is not None else None
            if expanded is not None:
                names, values = expanded
                break
        axes.append((names, values))
    return axes


def _axis_sizes(cfg: SweepConfig) -> list[tuple[str, int]]:
    """(axis, number of entries) per axis; an expanded axis counts its points, a zip once."""
    out = []
    for names, values in cfg.axes:
        sizes = [s.size(names, values) for s in registry.RATE_SCHEMES.values() if s.size is not None]
        size = next((n for n in sizes if n is not None), None)
        out.append((f"{names[0]} points" if size is not None else "seeds" if names == ("seed",) else "+".join(names),
                    len(values) if size is None else size))
    return out


def grid_size(cfg: SweepConfig) -> int:
    """Number of students the grid expands to, from the axes alone (nothing is expanded): the product
    of the axis lengths, a zip counted once, each ``lr_line`` value counted as its number of points."""
    return math.prod(n for _, n in _axis_sizes(cfg))


# Planning is columnar (constant fields are one value each): 10^7 students plan in ~4-7 s and ~0.9 GB
# peak on a 2-core machine (scripts/bench_scaling.py), linear beyond; the cap guards against typos.
DEFAULT_MAX_STUDENTS = 20_000_000


def check_grid_size(cfg: SweepConfig, max_students: int) -> int:
    """The grid's size (:func:`grid_size`); ConfigError("grid") above ``max_students``, before any expansion."""
    n = grid_size(cfg)
    if n > max_students:
        sizes = " x ".join(f"{name} {size:,}" for name, size in _axis_sizes(cfg) if size > 1)
        raise ConfigError("grid", f"{n:,} students ({sizes}) is more than --max-students {max_students:,}; "
                                  f"shrink the grid, or raise the cap with --max-students {n}")
    return n


def expand_grid(cfg: SweepConfig) -> pd.DataFrame:
    """One row per student: every field (short column names) plus lr_1..lr_m and lr_total.

    Rows are the Cartesian product of the axes (the last axis varies fastest), built column by column;
    each combination of static values is checked once. Raises ConfigError for any combination that
    cannot run and for two identical students; nothing is computed.
    """
    axes = _expanded_axes(cfg)
    shape = [len(values) for _, values in axes]
    n = math.prod(shape)
    if n == 0:
        raise ConfigError("grid", "the grid is empty")
    index = np.unravel_index(np.arange(n, dtype=np.int64), shape)  # index[a][row]: the row's entry on axis a
    on_axis = {name: (a, j) for a, (names, _) in enumerate(axes) for j, name in enumerate(names)}

    def column(name):
        if name not in on_axis:
            return _column([cfg.base[name]], n)
        a, j = on_axis[name]
        return _column([v[j] for v in axes[a][1]], n, index[a])

    # static combinations (first appearance order): shapes, layer count, the authors' teacher scale
    static_axes = [a for a, (names, _) in enumerate(axes)
                   if any(name in FIELDS and FIELDS[name].role == "static" for name in names)]
    combo = (np.ravel_multi_index([index[a] for a in static_axes], [shape[a] for a in static_axes])
             if static_axes else np.broadcast_to(np.int64(0), (n,)))
    n_trainable, target_std = [], []
    variants = [v for scheme in registry.RATE_SCHEMES.values() for v in scheme.variants(axes)]  # lr_ratio .inf
    for entries in itertools.product(*[range(shape[a]) for a in static_axes]):
        point = dict(cfg.base)
        for a, (names, values) in enumerate(axes):
            point.update(zip(names, values[entries[static_axes.index(a)] if a in static_axes else 0]))
        _check_student_shapes(point)
        for overrides in variants:  # the settings some students of this combination take instead
            _check_student_shapes({**point, **overrides})
        m = Architecture.from_fields(point).n_trainable
        extra = sorted((k for k in point if _LR_LAYER.match(k) and int(k[3:]) > m), key=lambda k: int(k[3:]))
        if extra:
            raise ConfigError(f"grid.{extra[0]}", f"the student has only {m} trainable layers "
                                                  f"(lr_1..lr_{m}); {extra[0]} would be ignored")
        n_trainable.append(m)
        target_std.append(default_target_std(point))
    m_row = _take(np.asarray(n_trainable, np.int64), combo)

    stable = column("train.stable_fraction")
    if (stable > 1.0).any():
        raise ConfigError("train.stable_fraction", f"must be in [0, 1], got {float(stable[np.argmax(stable > 1.0)])!r}")

    table = {short(k): column(k) for k in cfg.base if k != "task.target_std"}
    _resolve_schedule_columns(table)
    table["target_std"] = _target_std(cfg, axes, on_axis, index, _take(np.asarray(target_std), combo))
    table = {short(k): table[short(k)] for k in cfg.base}  # the config's field order
    table.update(_lr_columns(axes, on_axis, column, m_row))
    for hook in registry.GRID_HOOKS:  # lr_ratio .inf: the best-response head
        hook(table)
    # constants stay broadcast views of their one value (object dtype kept: no n-row string conversion)
    index = combo = stable = None  # the (n,) axis positions are no longer needed: freed before the check
    _check_distinct_students(table, cfg, axes, shape)
    df = pd.DataFrame({k: pd.Series(v, dtype=v.dtype, copy=False) if is_constant_column(v) else v
                       for k, v in table.items()}, copy=False)
    df.insert(0, "student_id", np.arange(n, dtype=np.int64))
    return df


def _resolve_schedule_columns(table: dict) -> None:
    """Per-student checks of the traced schedule fields (batch ramp, array rows) against the static ones;
    ``batch_end`` null becomes the batch size."""
    batch = _floats(table["batch_size"])
    end = _floats(table["batch_end"])
    end = _where(_isnan(end), batch, end)  # stays NaN (null) for full-batch students
    table["batch_end"] = end
    ramp = equals(table["batch_schedule"], "ramp")
    for name, values in (("batch_end", end), ("batch_start", np.asarray(table["batch_start"], float))):
        bad = ramp & (values > batch) if ramp.any() else ramp
        if bad.any():
            r = int(np.argmax(bad))
            raise ConfigError(f"train.{name}", f"must be <= train.batch_size={int(batch[r])} (the compiled batch "
                                               f"shape), got {values[r]:g}")
    steps = np.asarray(table["steps"])
    for path, index_path in ARRAY_INDEX.items():
        keys, index = table[short(path)], np.asarray(table[short(index_path)])
        distinct = {keys[0]} if is_constant_column(keys) else set(pd.unique(np.asarray(keys, object)))
        for key in distinct - {None}:
            rows = (np.ones(len(keys), bool) if is_constant_column(keys)
                    else np.fromiter((k == key for k in keys), bool, len(keys)))
            tab = array_table(key)
            lengths = np.sum(~np.isnan(tab), axis=1)
            over = rows & (index >= len(tab))
            if over.any():
                raise ConfigError(index_path, f"{path} has {len(tab)} arrays (indices 0..{len(tab) - 1}), got "
                                              f"{int(index[over][0])}")
            too_short = rows & (lengths[np.minimum(index, len(tab) - 1)] != steps)
            if too_short.any():
                r = int(np.argmax(too_short))
                raise ConfigError(path, f"array {int(index[r])} has {int(lengths[index[r]])} values but train.steps "
                                        f"is {int(steps[r])}: give one value per step")
            if path == "train.momentum_array" and np.nanmax(tab) > 1.0:
                raise ConfigError(path, "momentum values must be in [0, 1]")
            if path == "train.batch_array":
                over = rows & (np.nanmax(tab, axis=1)[np.minimum(index, len(tab) - 1)] > batch)
                if over.any() or np.nanmin(tab) < 1:
                    raise ConfigError(path, "batch sizes must be in [1, train.batch_size] (the compiled batch shape)")


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]``, a broadcast view where ``rows`` is one (a constant stays constant)."""
    return np.broadcast_to(values[rows[0]], rows.shape) if is_constant_column(rows) else values[rows]


def equals(column, value) -> np.ndarray:
    """(n,) bool ``column == value``: one comparison, broadcast, where the column is constant."""
    if is_constant_column(column):
        return np.broadcast_to(np.bool_(column[0] == value), column.shape)
    return np.asarray(column == value, bool)


def stored_columns(frame: pd.DataFrame) -> list[str]:
    """The columns of a plan's student table that a run stores: all but those of fields that apply to no
    student of it (:attr:`Field.applies`: a plain gd run stores no momentum, batch or head columns) and
    hold one value; ``config.yaml`` keeps every field."""
    table = _ColumnView(frame)
    keep = []
    for column in frame.columns:
        path = aliases().get(column, column)
        field = FIELDS.get(path) if column not in EXTRA_ALIASES else None
        if field is None or field.applies is None or not is_constant_column(table[column]) \
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


def has_metric(table, name: str) -> np.ndarray:
    """(n,) bool: ``name`` is among each student's ``train.metrics``."""
    column = table["metrics"]
    if is_constant_column(column):
        return np.broadcast_to(np.bool_(name in (column[0] or ())), column.shape)
    return np.fromiter((name in (v or ()) for v in column), bool, len(column))


def _isnan(x: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.isnan(x[0]), x.shape) if is_constant_column(x) else np.isnan(x)


def _where(cond, a, b) -> np.ndarray:
    """``np.where``, a broadcast view where every input is constant."""
    if all(is_constant_column(np.asarray(x)) for x in (cond, a, b)):
        return np.broadcast_to(np.where(cond[0], a[0], b[0]), np.shape(cond))
    return np.where(cond, a, b)


def _floats(column) -> np.ndarray:
    """A numeric column that may hold None (null) as float64 with NaN; a constant stays a broadcast view."""
    if is_constant_column(column):
        return np.broadcast_to(np.float64(np.nan if column[0] is None else column[0]), column.shape)
    if column.dtype == object:
        return np.fromiter((np.nan if v is None else v for v in column), float, len(column))
    return np.asarray(column, float)


def _target_std(cfg, axes, on_axis, index, default: np.ndarray) -> np.ndarray:
    """(n,) task.target_std; null (the default) is the authors' scale of each student's shape."""
    if "task.target_std" in on_axis:
        a, j = on_axis["task.target_std"]
        given = np.array([np.nan if v[j] is None else v[j] for v in axes[a][1]], float)[index[a]]
    else:
        given = np.broadcast_to(np.float64(np.nan if cfg.base["task.target_std"] is None else
                                           cfg.base["task.target_std"]), default.shape)
    return _where(_isnan(given), default, given)


def _column(values: list, n: int, take: np.ndarray | None = None) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """(n,) column of a student table: ``values[take]``, typed as pandas types those Python values:
    bool, int64, float64, ``str`` (built in pyarrow: fast), else objects (tuples, None). Without
    ``take``, ``values[0]`` for every student as a read-only broadcast view: no memory however many
    students (:func:`select_rows` keeps it so)."""
    if take is None:
        v = values[0]
        dtype = (bool if isinstance(v, bool) else np.int64 if isinstance(v, int) else
                 np.float64 if isinstance(v, float) else object)
        return _broadcast(v, dtype, n)
    if all(isinstance(v, str) for v in values):
        take = np.zeros(n, np.int64) if take is None else take
        return pd.array(pa.array(values, pa.string()).take(pa.array(take)), dtype="str")
    if all(isinstance(v, bool) for v in values):
        dtype = bool
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        dtype = np.int64
    elif all(isinstance(v, float) for v in values):
        dtype = np.float64
    else:
        dtype = object
    if take is None:
        out = np.empty(n, dtype)
        out.fill(values[0])
        return out
    distinct = np.empty(len(values), dtype)
    for i, v in enumerate(values):  # element by element: tuples stay objects
        distinct[i] = v
    return distinct[take]


def _broadcast(value, dtype, n: int) -> np.ndarray:
    """(n,) read-only view of one value (a tuple stays one object)."""
    one = np.empty((), dtype)
    one[()] = value
    return np.broadcast_to(one, (n,))


def is_constant_column(values) -> bool:
    """A broadcast view (:func:`_column` of one value): every row is the first."""
    return isinstance(values, np.ndarray) and values.ndim == 1 and values.strides == (0,)


def select_rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]`` keeping constant (broadcast) columns broadcast: memory grows with the columns
    that vary, not with every config field (a 10^7-student plan)."""
    mask = np.asarray(mask, bool)
    k = int(mask.sum())
    if k == len(frame):
        return frame
    cols = {}
    for name in frame.columns:
        values = frame[name].array
        raw = values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else None
        if raw is not None and is_constant_column(raw):
            cols[name] = pd.Series(_broadcast(raw[0], raw.dtype, k), dtype=raw.dtype, index=frame.index[mask], copy=False)
        else:
            cols[name] = pd.Series(values[mask], index=frame.index[mask], copy=False)
    return pd.DataFrame(cols, index=frame.index[mask], copy=False)


def _lr_columns(axes, on_axis, column, m_row: np.ndarray) -> dict:
    """lr_1..lr_m (NaN beyond a student's m), lr_total, and the lr_1_fraction / lr_line labels, from
    :func:`resolve_lrs` applied to whole columns (one call per layer count m)."""
    names = [name for names, _ in axes for name in names if name in rate_axes() or name.startswith("lr_")]
    point = {name: column(name) for name in names}
    m_order = [int(m) for m in (m_row[:1] if is_constant_column(m_row) else pd.unique(m_row))]  # first appearance
    n = len(m_row)
    lrs = {f"lr_{l}": np.full(n, np.nan) for l in range(1, max(m_order) + 1)}
    total, bad = np.zeros(n), np.zeros(n, bool)
    for m in m_order:
        rows = m_row == m if len(m_order) > 1 else slice(None)
        layer_lrs = resolve_lrs({k: v[rows] for k, v in point.items()}, m)
        total[rows] = sum(layer_lrs)  # 0 + eta_1 + ... + eta_m, as for one student's list
        for l, v in enumerate(layer_lrs, 1):
            lrs[f"lr_{l}"][rows] = v
        bad[rows] = functools.reduce(np.minimum, layer_lrs) < 0
        if "lr_total" in point:
            bad[rows] |= ~_isclose(total[rows], point["lr_total"][rows], rel_tol=1e-9, abs_tol=1e-12)
    if bad.any():
        r = int(np.argmax(bad))
        m = int(m_row[r])
        got = [float(lrs[f"lr_{l}"][r]) for l in range(1, m + 1)]
        given = float(point["lr_total"][r]) if "lr_total" in point else float(total[r])
        raise ConfigError("grid.lr_total", f"lr_total={given!r} cannot be split with the given lr_1..lr_{m} "
                                           f"into learning rates >= 0 (got {got})")
    # column order of a table built row by row: the first student's lr_1..lr_m, then the labels,
    # then the layers of later students with more
    out = {f"lr_{l}": lrs[f"lr_{l}"] for l in range(1, m_order[0] + 1)}
    out["lr_total"] = total
    for label in ("lr", "lr_1_fraction"):  # the axes as the config names them
        if label in point:
            out[label] = point[label].astype(float)
    for scheme in registry.RATE_SCHEMES.values():  # lr_line; lr_body, lr_head, lr_ratio
        out.update(scheme.columns(point, lrs, m_row))
    out["n_trainable"] = m_row
    out.update({k: v for k, v in lrs.items() if k not in out})
    return out


def _axis_label(names: tuple, entry: tuple) -> str:
    """One entry of an axis as the config writes it: ``width=64``, ``lr_line=8.0 (eta_1=1.0)``."""
    for scheme in registry.RATE_SCHEMES.values():
        text = scheme.label(names, entry) if scheme.label is not None else None
        if text is not None:
            return text
    return ", ".join(f"{name}={value!r}" for name, value in zip(names, entry))


def _isclose(a, b, rel_tol: float, abs_tol: float) -> np.ndarray:
    """Elementwise :func:`math.isclose` (symmetric in a and b, unlike np.isclose)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = np.abs(a - b)
    return (diff <= np.abs(rel_tol * b)) | (diff <= np.abs(rel_tol * a)) | (diff <= abs_tol)


def student_columns(df: pd.DataFrame) -> list[str]:
    """The columns that define what a student trains: static, instance and traced fields and
    lr_1..lr_m (not the labels lr_total, lr_1_fraction, lr_line, nor the run fields)."""
    fields = field_columns()
    return [c for c in df.columns if c in fields or _LR_LAYER.match(c)]


def axis_columns(cfg: SweepConfig) -> set[str]:
    """Student-table columns of the fields on an axis of more than one value: every other field
    column of :func:`expand_grid` holds one value."""
    on = {name for names, values in cfg.axes if len(values) > 1 for name in names}
    derived = {c for scheme in registry.RATE_SCHEMES.values() for c in scheme.derived(on)}  # lr_ratio .inf
    return {short(name) for name in on if name in FIELDS} | derived


def row_codes(columns: list) -> tuple[np.ndarray, int]:
    """Columnar row keys: ((n,) int64 codes, number of distinct rows) over ``columns`` (equal arrays
    of n values, or pandas Series / arrays; NaN equals NaN, like pandas groupby with dropna=False). Rows equal in every column
    share a code; codes count up in order of first appearance. A constant (broadcast) column is
    skipped unread; each other column is factorized once and the codes combined in mixed radix."""
    n = len(columns[0]) if columns else 0
    key, size = _combined_codes(columns, n)
    if size == 1:
        return np.zeros(n, np.int64), min(n, 1)
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64, copy=False), len(uniques)


def _combined_codes(columns: list, n: int) -> tuple[np.ndarray, int]:
    """(key, size): (n,) int64 in [0, size), equal exactly where the rows are equal in every column
    (not numbered in any order; compressed by factorizing once a mixed-radix product would overflow)."""
    key, size = np.zeros(n, np.int64), 1
    for values in columns:
        values = values.array if isinstance(values, pd.Series) else values
        values = values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else values
        if is_constant_column(values):
            continue
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        if size * len(uniques) >= 2 ** 62:
            key, size = _compress(key)
        key = key * len(uniques) + codes if size > 1 else codes.astype(np.int64, copy=False)
        size *= len(uniques)
    return key, size


def _compress(key: np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64, copy=False), len(uniques)


def _first_duplicate(columns: list, n: int) -> tuple[int, int] | None:
    """(first, second): the first row equal in every column to an earlier one and that earlier row;
    None when all n rows differ. A bincount where the key space is small (no hashing), else a factorize."""
    key, size = _combined_codes(columns, n)
    if size < n:
        return (0, 1) if n > 1 and size <= 1 else _duplicate_rows(key)
    if size <= 4 * n and np.bincount(key, minlength=size).max() <= 1:
        return None
    return _duplicate_rows(key)


def _duplicate_rows(key: np.ndarray) -> tuple[int, int] | None:
    codes = pd.factorize(key)[0]  # first appearance order: a row is new where its code passes every earlier one
    seen = np.maximum.accumulate(np.concatenate([[-1], codes[:-1]]))
    repeats = np.flatnonzero(codes <= seen)
    if not len(repeats):
        return None
    second = int(repeats[0])
    return int(np.argmax(codes == codes[second])), second


def _check_distinct_students(table: dict, cfg: SweepConfig, axes, shape) -> None:
    """ConfigError("grid") when two rows train the same student (identical in every
    :func:`student_columns` of ``table``, {column: (n,) values}): different axis values that give
    the same student. Columnar (:func:`_first_duplicate`)."""
    n = len(next(iter(table.values())))
    if n == 1:
        return
    on_axes = axis_columns(cfg)
    fields = field_columns()
    varying = [c for c in table if (c in fields or _LR_LAYER.match(c))
               and (c in on_axes or c.startswith("lr_") or c == "target_std")]
    pair = _first_duplicate([table[c] for c in varying], n) if varying else (0, 1)
    if pair is None:
        return
    first, second = pair
    entries = zip(axes, np.unravel_index(first, shape), np.unravel_index(second, shape))
    differ = " and ".join(f"{_axis_label(names, values[i])} vs {_axis_label(names, values[j])}"
                          for (names, values), i, j in entries if i != j)
    plain = lambda v: v.item() if isinstance(v, np.generic) else v
    same = ", ".join(f"{c}={plain(table[c][first])!r}" for c in varying
                     if (c.startswith("lr_") or c == "target_std" or len(pd.unique(np.asarray(table[c]))) > 1)
                     and not (isinstance(table[c][first], float) and math.isnan(table[c][first])))
    raise ConfigError("grid", f"students {first} and {second} are the same student ({same}): {differ} "
                              f"give identical students; keep one of them")


def default_target_std(p: dict) -> float:
    """The authors' teacher scale: paper_2nn 1/d, paper_deep 1/sqrt(h), standard and ntk 1/sqrt(d) (``p`` keyed
    by field path or short column name)."""
    get = lambda path: p[path] if path in p else p[short(path)]
    par = get("model.parameterization")
    if par == "paper_2nn":
        return 1.0 / get("task.input_dim")
    if par == "paper_deep":
        return 1.0 / math.sqrt(get("model.width"))
    return 1.0 / math.sqrt(get("task.input_dim"))


def short(path: str) -> str:
    """A field's student-table column: the last component of its path."""
    return path.split(".")[-1]


def path_of(name: str) -> str:
    """The field path of a column or short name (``width`` -> ``model.width``)."""
    return name if name in FIELDS else aliases()[name]


def static_columns() -> list[str]:
    """Columns that define a compile group (shapes and categorical choices)."""
    return list(columns("static"))


registry.register_task_rules("linear_teacher", registry.TaskRules(check=_check_linear_teacher))
registry.register_task_rules("classification", registry.TaskRules(check=_check_classification))
