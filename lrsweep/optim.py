"""Optimizers as optax transforms whose hyperparameters are traced arrays.

A learning rate passed as a Python float would be baked into the compiled program; here every
rate, and every schedule parameter, is an array in the vmapped student axis, so one compiled
program serves the whole grid.

Schedules (seed 004, "Theory of Optimal Learning Rate Schedules ... Random Feature Model") multiply
every layer's rate by s(t) at step t = 0..T-1 of a T-step run:

- ``constant``:   s(t) = 1
- ``polynomial``: s(t) = (1 - t/T)^delta                      (the easy-phase optimum, Sec. 1)
- ``wsd``:        s(t) = 1 for t < t_s, ((1 - t/T) / (1 - t_s/T))^delta after   (eq. 82; t_s = f T)
- ``power``:      s(t) = (1 + t)^(-chi)                        (the power-law baseline)

times a linear warmup min(1, (t + 1) / w) over the first w steps when w > 0. delta, chi and the
stable fraction f are traced (grid axes without recompiling); the kind, T and w are static.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "polynomial", "wsd", "power")
SCHEDULE_COLUMNS = ("schedule_exponent", "stable_fraction")  # traced, one value per student


class Schedule(NamedTuple):
    """A schedule: kind, run length T and warmup w (static), and its traced parameters."""
    kind: str
    steps: int
    warmup_steps: int
    exponent: jax.Array         # delta (polynomial, wsd) or chi (power)
    stable_fraction: jax.Array  # t_s / T (wsd)


def schedule_multiplier(schedule: Schedule, t) -> jax.Array:
    """s(t) of the module docstring, for a step index t (traced)."""
    t = jnp.asarray(t, schedule.exponent.dtype)
    total = float(max(schedule.steps, 1))
    if schedule.kind == "constant":
        s = jnp.ones_like(t)
    elif schedule.kind == "polynomial":
        s = (1.0 - t / total) ** schedule.exponent
    elif schedule.kind == "wsd":
        t_s = schedule.stable_fraction * total
        ratio = (1.0 - t / total) / jnp.maximum(1.0 - t_s / total, 1e-30)
        s = jnp.where(t < t_s, 1.0, jnp.clip(ratio, 0.0, 1.0) ** schedule.exponent)
    elif schedule.kind == "power":
        s = (1.0 + t) ** (-schedule.exponent)
    else:
        raise ValueError(f"train.schedule: unknown '{schedule.kind}'; allowed: {', '.join(SCHEDULES)}")
    if schedule.warmup_steps > 0:
        s = s * jnp.minimum(1.0, (t + 1.0) / schedule.warmup_steps)
    return s


def scale_by_layer(lr_per_layer: jax.Array, schedule: Schedule | None = None) -> optax.GradientTransformation:
    """Multiply the l-th leaf of the update by -eta_l (per-layer GD, seed 000 eq. for W_l^{t+1}),
    times s(t) if a schedule is given (its state then counts the steps taken).

    Args:
      lr_per_layer: (m,) array, eta_1..eta_m, one per leaf of the params tuple (in order).
    """
    def init_fn(params):
        del params
        return optax.EmptyState() if schedule is None else optax.ScaleByScheduleState(jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        rates, new_state = lr_per_layer, state
        if schedule is not None:
            rates = lr_per_layer * schedule_multiplier(schedule, state.count)
            new_state = optax.ScaleByScheduleState(state.count + 1)
        scaled = [-rates[i].astype(g.dtype) * g for i, g in enumerate(leaves)]
        return jax.tree_util.tree_unflatten(treedef, scaled), new_state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(name: str, lr_per_layer: jax.Array, schedule: Schedule | None = None) -> optax.GradientTransformation:
    """The update rule named by ``train.optimizer`` with per-layer rates (and schedule) as data."""
    if name == "gd":
        return scale_by_layer(lr_per_layer, schedule)
    raise ValueError(f"train.optimizer: unknown '{name}'; allowed: gd")
