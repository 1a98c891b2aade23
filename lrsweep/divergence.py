"""The divergence rule, written once for the engine (jax, per step) and the polynomial driver (numpy).

Seed 003: the divergent phase is physics, not an error. A student diverges at the first step t
whose train loss is non-finite or exceeds ``diverge_factor`` times its initial loss; from then on
it is frozen and its logged metrics are NaN.
"""


def exceeds(loss, loss0, diverge_factor: float, xp):
    """Bool (broadcast): ``loss`` is non-finite or above ``diverge_factor * max(loss0, 1e-30)``;
    ``xp`` is numpy or jax.numpy."""
    return ~xp.isfinite(loss) | (loss > diverge_factor * xp.maximum(loss0, 1e-30))
