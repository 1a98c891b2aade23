"""The static description of a shape group: what keys its compiled program.

A group shares every field of role ``static`` (:mod:`lrsweep.core.config`); its students differ only in
instance hyperparameters (seed, noise, scales: the vmapped instance axis) and traced ones (learning
rates, schedule parameters: the vmapped point axis), which the step functions read by name from
dicts built with :attr:`GroupSpec.instance_columns` and :attr:`GroupSpec.traced_columns`.
"""

from __future__ import annotations

import dataclasses

from lrsweep import registry
from lrsweep.core import columns as columns_lib
from lrsweep.core import config as config_lib
from lrsweep.core.architecture import Architecture
from lrsweep.core.config import ConfigError
from lrsweep.core.tasks import TaskSpec


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """Everything static about a group of students (hashable: keys the compiled program).

    The core's static fields are attributes; a family's (seed 002's ``head``, ``update``, ...) are in
    ``extra``, read as attributes too (``spec.head``), so the core names none of them."""
    arch: Architecture
    task: TaskSpec
    init: str
    optimizer: str
    steps: int
    log_steps: tuple
    gradient: str
    formulation: str
    diverge_factor: float
    schedule: str = "constant"
    warmup_steps: int = 0
    loss: str = "mse"
    metrics: tuple = ()
    sharpness_iters: int = 20
    batch_size: int | None = None        # samples per step of sgd / momentum (None: the whole training set)
    batch_schedule: str = "constant"
    momentum_schedule: str = "constant"
    schedule_array: str | None = None    # digests of per-step arrays (lrsweep.core.config.ARRAYS)
    batch_array: str | None = None
    momentum_array: str | None = None
    extra: tuple = ()                    # (column, value) of every family's static train.* fields

    def __getattr__(self, name: str):
        for key, value in object.__getattribute__(self, "extra"):
            if key == name:
                return value
        raise AttributeError(name)

    @classmethod
    def from_row(cls, row) -> "GroupSpec":
        """From a student row of :func:`lrsweep.core.config.expand_grid` (a column the row lacks takes its
        field's default); checks what the formulation and the gradient need (ConfigError naming the
        field) and resolves ``formulation: auto``."""
        from lrsweep.core import losses
        from lrsweep.core import steps
        get = lambda name: row.get(name, config_lib.FIELDS[config_lib.path_of(name)].default)
        spec = cls(
            Architecture.from_fields(row), TaskSpec.from_row(row), row["init"], row["optimizer"], int(row["steps"]),
            config_lib.log_steps(row), row["gradient"], row["formulation"], float(row["diverge_factor"]),
            schedule=get("schedule"), warmup_steps=int(get("warmup_steps")), loss=get("loss"),
            metrics=tuple(get("metrics") or ()), sharpness_iters=int(get("sharpness_iters")),
            batch_size=_int_or_none(get("batch_size")), batch_schedule=get("batch_schedule"),
            momentum_schedule=get("momentum_schedule"), schedule_array=_str_or_none(get("schedule_array")),
            batch_array=_str_or_none(get("batch_array")), momentum_array=_str_or_none(get("momentum_array")),
            extra=tuple((name, _typed(name, get(name))) for name in _extra_columns()))
        if spec.gradient == "signal_only" and not losses.LOSSES[spec.loss].quadratic:
            raise ConfigError("train.gradient", f"signal_only replaces the squared loss's residual f(X) - y by -y "
                                                f"and needs train.loss: mse (got {spec.loss}); allowed here: exact")
        try:
            formulation = steps.resolve_formulation(spec)
        except ValueError as e:
            raise ConfigError("train.formulation", str(e)) from None
        return dataclasses.replace(spec, formulation=formulation)

    @property
    def hooks(self) -> tuple:
        """The registered step hooks that act on this group (:class:`lrsweep.registry.StepHook`)."""
        return tuple(hook for hook in registry.STEP_HOOKS.values() if hook.applies(self))

    @property
    def moved_layers(self) -> tuple:
        """Layers moved by a step hook, outside the optimizer's step."""
        return tuple(name for hook in self.hooks for name in hook.moves(self))

    @property
    def stochastic(self) -> bool:
        """Whether a step sees a sampled batch (minibatches of a fixed set, or fresh samples)."""
        return self.batch_size is not None

    @property
    def n_logs(self) -> int:
        return len(self.log_steps)

    @property
    def constant_rates(self) -> bool:
        """Whether every step uses the same learning rates (no schedule, no warmup)."""
        return self.schedule == "constant" and self.warmup_steps == 0

    @property
    def instance_columns(self) -> tuple[str, ...]:
        """Student columns that generate an instance (role ``instance``)."""
        return config_lib.columns("instance")

    @property
    def traced_columns(self) -> list[str]:
        """A student's traced hyperparameters, by name: eta_1..eta_m and the fields of role ``traced``."""
        return columns_lib.lr_columns(self.arch.n_trainable) + list(config_lib.columns("traced"))


def _int_or_none(value):
    return None if value is None or (isinstance(value, float) and value != value) else int(value)


def _str_or_none(value):
    return value if isinstance(value, str) else None


_CORE = {f.name for f in dataclasses.fields(GroupSpec)} | {"log_every", "log_steps"}


def _extra_columns() -> list[str]:
    """Static ``train.*`` fields the core does not name: a family's (read through ``GroupSpec.extra``)."""
    return [columns_lib.short_name(p) for p, f in config_lib.FIELDS.items()
            if f.role == "static" and p.startswith("train.") and columns_lib.short_name(p) not in _CORE]


def _typed(name: str, value):
    """A stored cell as its field's Python type (hashable, equal to the config's value)."""
    kind = config_lib.FIELDS[config_lib.path_of(name)].value_type
    return int(value) if kind == "int" else float(value) if kind == "float" else value
