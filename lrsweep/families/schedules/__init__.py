"""Seed 004 (SGD and optimal schedules on power-law random features): the task and its fields (:mod:`.task`,
:mod:`.fields`), the exact loss recursion, schedule searches and exponents (:mod:`.theory`), their checks
(:mod:`.checks`), figures (:mod:`.figures`) and ``lrsweep schedule`` (:mod:`.search`, :mod:`.commands`)."""

from lrsweep import registry
from lrsweep.families.schedules import checks, commands, fields, figures, search  # noqa: F401  (checks registers itself)

fields.register()
registry.load_later("lrsweep.families.schedules.training")
registry.register_figures(figures.rf_figures)
registry.register_run_kind(registry.RunKind("schedule_search", search.is_schedule_run, figures.schedule_figures,
                                            commands.show, search.TABLES,
                                            resume="lrsweep schedule --resume {run}"))
registry.register_stage(registry.Stage("verify", "the Monte Carlo verification", (), "lrsweep schedule --resume {run}"))
registry.register_command(commands.COMMAND)
