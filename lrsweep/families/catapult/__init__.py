"""Seed 003 (large learning rates, catapult phases): the single-point task of the uv model
(:mod:`.fields`, :mod:`.tasks`), the phase and curvature statements as checks (:mod:`.theory`,
:mod:`.checks`), the phase figures (:mod:`.figures`) and ``lrsweep boundary`` (:mod:`.boundary`,
:mod:`.commands`)."""

from lrsweep import registry
from lrsweep.families.catapult import checks, commands, fields, figures  # noqa: F401  (checks registers itself)

fields.register()
registry.load_later("lrsweep.families.catapult.training")
registry.register_figures(figures.catapult_figures)
registry.register_command(commands.COMMAND)
registry.register_show_lines(commands.show_lines)
registry.register_stage(registry.Stage("boundary", "the bisection", ("boundaries.parquet",),
                                      "lrsweep boundary --resume {run}"))
