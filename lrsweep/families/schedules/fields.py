"""Seed 004's config: the ``power_law_features`` task's exponents (``task.a``, ``task.b``), online by default,
and the ``schedule_search`` section read by ``lrsweep schedule`` (:mod:`lrsweep.families.schedules.search`)."""

from __future__ import annotations

from lrsweep import registry
from lrsweep.core import config
from lrsweep.core.config import ConfigError, Field

_POWER_LAW = lambda t: config.equals(t["kind"], "power_law_features")
FIELDS = [
    Field("task.a", "float", 1.5, "power_law_features: the target's exponent, lambda_k w*_k^2 = k^-a (a > 1).",
          above=1.0, role="instance", applies=_POWER_LAW),
    Field("task.b", "float", 1.25, "power_law_features: the spectrum's exponent, lambda_k = k^-b (b > 1).",
          above=1.0, role="instance", applies=_POWER_LAW),
]


def check_power_law(p: dict, arch) -> None:
    """The exact excess risk is that of a linear student with one output."""
    if not arch.is_linear or arch.output_dim != 1:
        raise ConfigError("model.activation" if not arch.is_linear else "model.output_dim",
                          "power_law_features measures the exact excess risk of a linear student with one "
                          "output (e.g. parameterization: standard, n_layers: 1, init: zeros)")


def register() -> None:
    for field in FIELDS:
        registry.register_field(field)
    registry.register_task_rules("power_law_features", registry.TaskRules(online=True, check=check_power_law))
    registry.register_section("schedule_search", registry.Section("schedule", default_lr=1.0))
