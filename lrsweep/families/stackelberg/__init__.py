"""Seed 002 (Stackelberg view of head and body learning rates): the head's fields and rate axes
(:mod:`.fields`), the head rules that move the last layer before each body step (:mod:`.heads`), the
body's metrics (:mod:`.metrics`), the theory and its checks (:mod:`.theory`, :mod:`.checks`) and the
figures by head/body ratio (:mod:`.figures`)."""

from lrsweep import registry
from lrsweep.families.stackelberg import checks, fields, figures  # noqa: F401  (checks registers itself)

fields.register()
registry.load_later("lrsweep.families.stackelberg.training")
registry.register_figures(lambda run, name, curves: figures.stackelberg_figures(name, curves),
                          claims=figures.is_head_run, replaces="loss")
