"""Seed 003's config: the ``single_point`` task (one input x = 1 with label ``task.label``: with a 2-layer
ntk student, the uv model of Lewkowycz et al. 2020)."""

from __future__ import annotations

from lrsweep import registry
from lrsweep.core import config
from lrsweep.core.config import ConfigError, Field

LABEL = Field("task.label", "float", 0.0, "single_point: the label y of the one input x = 1.", role="instance",
              applies=lambda t: config.equals(t["kind"], "single_point"))


def check_single_point(p: dict, arch) -> None:
    """One input x = 1 and one output."""
    for path in ("task.input_dim", "task.n_train"):
        if p[path] != 1:
            raise ConfigError(path, f"task.kind single_point has one input x = 1: {path} must be 1, got {p[path]}")
    if arch.output_dim != 1:
        raise ConfigError("model.output_dim", f"single_point has one output; the {arch.parameterization} "
                                              f"student has {arch.output_dim} (use ntk or standard with output_dim 1)")


def register() -> None:
    registry.register_field(LABEL)
    registry.register_task_rules("single_point", registry.TaskRules(
        defaults={"task.n_train": 1, "task.input_dim": 1}, check=check_single_point))
