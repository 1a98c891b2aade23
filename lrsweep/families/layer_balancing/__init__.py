"""Seed 000 (Deng et al., layer balancing): the ``lr_line`` grid axis (:mod:`.fields`), exact expected test
losses of per-layer learning rates for deep linear students along lines eta_1 + eta_2 = C (:mod:`.theory`,
:mod:`.theories`), their comparison with the seed means of a run and the per-line summary (:mod:`.checks`),
and the line figures (:mod:`.figures`)."""

from lrsweep import registry
from lrsweep.families.layer_balancing import checks, fields, figures  # noqa: F401  (checks registers the theories)

fields.register()
registry.register_figures(figures.figures, claims=figures.claims, replaces="rate")
