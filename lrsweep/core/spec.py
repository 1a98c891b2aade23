"""The static description of a shape group: what keys its compiled program.

A group shares every field of role ``static`` (:mod:`lrsweep.core.config`); its students differ only in
instance hyperparameters (seed, noise, scales: the vmapped instance axis) and traced ones (learning
rates, schedule parameters: the vmapped point axis), which the step functions read by name from
dicts built with :attr:`GroupSpec.instance_columns` and :attr:`GroupSpec.traced_columns`.
"""

from __future__ import annotations

import dataclasses

from lrsweep.core import config as config_lib
from lrsweep.core.architecture import Architecture
from lrsweep.core.config import ConfigError
from lrsweep.core.tasks import TaskSpec


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """Everything static about a group of students (hashable: keys the compiled program)."""
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
    head: str = "gd"                     # the head rule (lrsweep.families.stackelberg.heads): gd | best_response
    update: str = "simultaneous"         # simultaneous | alternating (head: gd)
    head_steps: int = 1                  # k head steps per body step (alternating)
    head_ridge: float = 0.0              # lambda of the best response
    newton_steps: int = 8                # Newton steps of a non-quadratic best response
    sketch_dim: int = 64                 # k of the body_sketch metric

    @classmethod
    def from_row(cls, row) -> "GroupSpec":
        """From a student row of :func:`lrsweep.core.config.expand_grid`; checks what the formulation and the
        gradient need (ConfigError naming the field) and resolves ``formulation: auto``."""
        from lrsweep.core import losses
        from lrsweep.core import steps
        spec = cls(Architecture.from_fields(row), TaskSpec.from_row(row), row["init"], row["optimizer"],
                   int(row["steps"]), config_lib.log_steps(row), row["gradient"], row["formulation"],
                   float(row["diverge_factor"]), row.get("schedule", "constant"), int(row.get("warmup_steps", 0)),
                   row.get("loss", "mse"), tuple(row.get("metrics", ()) or ()), int(row.get("sharpness_iters", 20)),
                   _int_or_none(row.get("batch_size")), row.get("batch_schedule", "constant"),
                   row.get("momentum_schedule", "constant"), _str_or_none(row.get("schedule_array")),
                   _str_or_none(row.get("batch_array")), _str_or_none(row.get("momentum_array")),
                   row.get("head", "gd"), row.get("update", "simultaneous"), int(row.get("head_steps", 1)),
                   float(row.get("head_ridge", 0.0)), int(row.get("newton_steps", 8)), int(row.get("sketch_dim", 64)))
        if spec.gradient == "signal_only" and not losses.LOSSES[spec.loss].quadratic:
            raise ConfigError("train.gradient", f"signal_only replaces the squared loss's residual f(X) - y by -y "
                                                f"and needs train.loss: mse (got {spec.loss}); allowed here: exact")
        try:
            formulation = steps.resolve_formulation(spec)
        except ValueError as e:
            raise ConfigError("train.formulation", str(e)) from None
        return dataclasses.replace(spec, formulation=formulation)

    @property
    def stochastic(self) -> bool:
        """Whether a step sees a sampled batch (minibatches of a fixed set, or fresh samples)."""
        return self.batch_size is not None

    @property
    def head_moves_in_step(self) -> bool:
        """Whether the optimizer's step moves the head with the body (simultaneous gd: plain per-layer
        GD); else the head rule of :mod:`lrsweep.families.stackelberg.heads` moves it before the step."""
        return self.head == "gd" and self.update == "simultaneous"

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
        return config_lib.lr_columns(self.arch.n_trainable) + list(config_lib.columns("traced"))


def _int_or_none(value):
    return None if value is None or (isinstance(value, float) and value != value) else int(value)


def _str_or_none(value):
    return value if isinstance(value, str) else None
