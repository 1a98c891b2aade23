"""The divergence rule and the phase rule, written once for the engine (jax, per step) and numpy
(the polynomial driver, the theory).

Seed 003: the divergent phase is physics, not an error. A student diverges at the first step t
whose train loss is non-finite or exceeds ``diverge_factor`` times its initial loss; from then on
it is frozen and its logged metrics are NaN.

The phase of gradient descent at a fixed rate (seed 003 Sec. 1; Lewkowycz et al. 2020), from the
train losses L_0..L_T and that rule (:data:`PHASES`, in code order):

- ``lazy``: the loss never rose above its initial value, max_t L_t <= L_0;
- ``catapult``: it rose (max_t L_t > L_0) and ended below where it started, L_T < L_0;
- ``oscillating``: it rose and neither came back below L_0 nor diverged: seed 003 Theorem 1's
  saturating logistic region (the weight settles on a 2-cycle +-w* whose loss exceeds L_0), or a
  run too short to see a catapult land or a divergence;
- ``divergent``: the divergence rule fired.

Theorem 1's middle logistic region (8 < eta < eta_c: the loss falls onto the 2-cycle's
L(w*) > min L and stays) never raises the loss, so it is ``lazy`` by this rule; its signature is a
final loss above the minimum (:mod:`lrsweep.families.catapult.theory`).
"""

PHASES = ("lazy", "catapult", "oscillating", "divergent")


def exceeds(loss, loss0, diverge_factor: float, xp):
    """Bool (broadcast): ``loss`` is non-finite or above ``diverge_factor * max(loss0, 1e-30)``;
    ``xp`` is numpy or jax.numpy."""
    return ~xp.isfinite(loss) | (loss > diverge_factor * xp.maximum(loss0, 1e-30))


def phase_code(loss0, peak, last, alive, xp):
    """Index into :data:`PHASES` from the initial loss, the largest loss before divergence, the last
    loss before divergence and whether the student is alive at the end (``xp``: numpy or jax.numpy)."""
    return xp.where(~alive, 3, xp.where(peak <= loss0, 0, xp.where(last < loss0, 1, 2)))
