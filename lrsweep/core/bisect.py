"""Phase boundaries in the learning rate by bisection (numerics only: no files).

A *unit* is a student without its learning rate: every config field fixed, the shared rate eta
(``lr_1 = .. = lr_m``) free. Along eta the phase (:data:`lrsweep.core.divergence.PHASES`) changes at two
boundaries (seed 003 Sec. 1; Lewkowycz et al. 2020):

- ``lazy/catapult``: the smallest eta at which the loss rises above its initial value
  (the phase leaves ``lazy``);
- ``catapult/divergent``: the smallest eta at which the student diverges.

Each is located by bisection in log eta on a bracket [lo, hi] (predicate false at lo, true at hi)
taken from a coarse grid: after ``r`` halvings hi / lo = (hi_0 / lo_0)^(2^-r). All bisections of
a chunk of units (two per unit) advance together: one compiled program runs every round,
``jit(vmap_units(vmap_boundaries(train)))`` inside a ``lax.scan`` over rounds, so a round is one
batched training of the midpoints and nothing returns to the host until the brackets are
final. A unit's brackets depend only on its own training, never on the units beside it.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep.core.columns import lr_columns
from lrsweep.core.divergence import PHASES

BOUNDARIES = ("lazy/catapult", "catapult/divergent")
_LAZY, _DIVERGENT = PHASES.index("lazy"), PHASES.index("divergent")


def crossed(phase, xp=np):
    """(..., 2) bool: whether each boundary lies below a student of this phase code (``xp``: numpy or
    jax.numpy): the phase is not lazy; the phase is divergent."""
    return xp.stack([phase != _LAZY, phase == _DIVERGENT], axis=-1)


def initial_bracket(lrs: np.ndarray, phases, boundary: int) -> tuple[float, float]:
    """(lo, hi) around the first change of ``boundary`` along the sorted coarse rates ``lrs`` with
    their phase names. Open sides are NaN: (NaN, lrs[0]) when it is crossed already at the smallest
    rate, (lrs[-1], NaN) when never."""
    codes = np.array([PHASES.index(p) for p in phases])
    hit = np.flatnonzero(crossed(codes)[:, boundary])
    if len(hit) == 0:
        return float(lrs[-1]), math.nan
    i = hit[0]
    return (math.nan, float(lrs[0])) if i == 0 else (float(lrs[i - 1]), float(lrs[i]))


def rounds_needed(ratio: float, rtol: float) -> int:
    """Halvings of log(hi / lo) until hi / lo <= 1 + rtol."""
    if not ratio > 1.0 + rtol:
        return 0
    return int(math.ceil(math.log2(math.log(ratio) / math.log1p(rtol))))


def dense_equivalent(lr_min: float, lr_max: float, rtol: float) -> int:
    """Students of a geometric grid over [lr_min, lr_max] whose neighbours are 1 + rtol apart."""
    return int(math.ceil(math.log(lr_max / lr_min) / math.log1p(rtol))) + 1


def phase_spec(spec):
    """The group's spec trimmed to what the phase needs: the running phase reduction, the loss at
    the first and last step (no curves, no curvature metrics)."""
    return dataclasses.replace(spec, metrics=("phase",), log_steps=tuple(sorted({0, spec.steps})))


@functools.lru_cache(maxsize=None)
def bisect_fn(spec, rounds: int):
    """Jitted ``bisect(params0, inst, other {name: (U,)}, lo (U, 2), hi (U, 2)) -> (lo, hi)``:
    ``rounds`` halvings of every unit's two brackets (leading axis U: units, each with its own
    instance; ``other``: the traced hyperparameters besides the rates). A bracket with a NaN side is
    carried along and ignored by the caller."""
    from lrsweep.core import engine
    pspec = phase_spec(spec)
    train = engine.make_student_fns(pspec).train
    rate_columns = lr_columns(pspec.traced_columns)
    per_unit = jax.vmap(train, in_axes=(None, None, 0))   # the two midpoints share the unit's instance
    batched = jax.vmap(per_unit, in_axes=(0, 0, 0))

    def bisect(params0, inst, other, lo, hi):
        def one_round(bracket, _):
            lo, hi = bracket
            mid = jnp.sqrt(lo * hi)
            hparams = {name: jnp.broadcast_to(v[:, None], mid.shape) for name, v in other.items()}
            hparams.update({name: mid for name in rate_columns})
            phase = batched(params0, inst, hparams).reductions["phase"]
            hit = jnp.diagonal(crossed(phase, jnp), axis1=-2, axis2=-1)  # midpoint b tests boundary b
            return (jnp.where(hit, lo, mid), jnp.where(hit, mid, hi)), None

        (lo, hi), _ = jax.lax.scan(one_round, (lo, hi), None, length=rounds)
        return lo, hi

    return jax.jit(bisect)
