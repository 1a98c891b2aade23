"""Optimizers as optax transforms whose hyperparameters are traced arrays, read by name.

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


def per_layer_rates(rates: dict, multipliers: dict | None = None) -> optax.GradientTransformation:
    """update_l = -eta_l m_l(t) g_l for the layer named l (per-layer GD, seed 000 Sec. 3).

    Args:
      rates: layer name -> eta_l (a traced scalar), e.g. ``{"W1": hparams["lr_1"], ...}``.
      multipliers: layer name -> ``fn(t)``, a schedule multiplier per layer (None: constant rates;
        the state then counts the steps taken). Layers are matched by name, never by position.
    """
    def init_fn(params):
        del params
        return optax.EmptyState() if multipliers is None else optax.ScaleByScheduleState(jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None):
        del params
        if multipliers is None:
            return {name: -rates[name].astype(g.dtype) * g for name, g in updates.items()}, state
        scaled = {name: -(rates[name] * multipliers[name](state.count)).astype(g.dtype) * g
                  for name, g in updates.items()}
        return scaled, optax.ScaleByScheduleState(state.count + 1)

    return optax.GradientTransformation(init_fn, update_fn)


def schedule_of(spec, hparams: dict) -> Schedule | None:
    """The group's schedule with this student's traced parameters (None for constant rates)."""
    if spec.schedule == "constant" and spec.warmup_steps == 0:
        return None
    return Schedule(spec.schedule, spec.steps, spec.warmup_steps, hparams["schedule_exponent"],
                    hparams["stable_fraction"])


def gd(spec, hparams: dict) -> optax.GradientTransformation:
    """Full-batch GD with per-layer rates ``lr_l`` and the group's schedule on every layer."""
    names = spec.arch.layer_names
    rates = {name: hparams[f"lr_{l}"] for l, name in enumerate(names, 1)}
    schedule = schedule_of(spec, hparams)
    multipliers = None if schedule is None else {name: (lambda t: schedule_multiplier(schedule, t)) for name in names}
    return per_layer_rates(rates, multipliers)


OPTIMIZERS = {"gd": gd}


def make_optimizer(spec, hparams: dict) -> optax.GradientTransformation:
    """The optax transform of ``train.optimizer`` for one student, from its traced hyperparameters by name."""
    return OPTIMIZERS[spec.optimizer](spec, hparams)
