"""Seed 002 (Stackelberg view of head and body learning rates): the head's fields and rate axes
(:mod:`.fields`), the head rules that move the last layer before each body step (:mod:`.heads`), the
body's metrics (:mod:`.metrics`), the theory and its checks (:mod:`.theory`, :mod:`.checks`) and the
figures by head/body ratio (:mod:`.figures`)."""

from lrsweep import registry
from lrsweep.families.stackelberg import checks, fields, figures, heads, metrics  # noqa: F401  (checks and metrics register themselves)

fields.register()
registry.register_step_hook(heads.HOOK)
registry.register_figures(lambda run, name, curves: figures.stackelberg_figures(name, curves),
                          claims=figures.is_head_run, replaces="loss")
