"""Cross-field checks of one static combination of a grid (raise ConfigError before any compute): the
core's (parameterizations, tasks of the core, optimizer and batch, init shapes, steps) and every
family's (:data:`lrsweep.registry.VALIDATORS`, a task's :class:`lrsweep.registry.TaskRules`)."""

from __future__ import annotations

import math

from lrsweep import registry
from lrsweep.core.columns import field_value
from lrsweep.core.architecture import Architecture
from lrsweep.core.config.values import ARRAY_KIND
from lrsweep.core.errors import ConfigError


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
    get = lambda path: field_value(p, path)
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
    get = lambda path: field_value(p, path)
    steps, explicit = get("train.steps"), get("train.log_steps")
    if explicit is not None and not isinstance(explicit, float):  # NaN: a column of a frame without it
        return tuple(sorted(set(explicit) | {0, steps}))
    return tuple(sorted(set(range(0, steps + 1, get("train.log_every"))) | {steps}))


def default_target_std(p: dict) -> float:
    """The authors' teacher scale: paper_2nn 1/d, paper_deep 1/sqrt(h), standard and ntk 1/sqrt(d) (``p`` keyed
    by field path or short column name)."""
    get = lambda path: field_value(p, path)
    par = get("model.parameterization")
    if par == "paper_2nn":
        return 1.0 / get("task.input_dim")
    if par == "paper_deep":
        return 1.0 / math.sqrt(get("model.width"))
    return 1.0 / math.sqrt(get("task.input_dim"))


registry.register_task_rules("linear_teacher", registry.TaskRules(check=_check_linear_teacher))


registry.register_task_rules("classification", registry.TaskRules(check=_check_classification))
