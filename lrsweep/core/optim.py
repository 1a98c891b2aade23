"""Optimizers as optax transforms whose hyperparameters are traced arrays, read by name.

A learning rate passed as a Python float would be baked into the compiled program; here every
rate, and every schedule parameter, is an array in the vmapped student axis, so one compiled
program serves the whole grid. The schedules themselves (s(t), m(t), beta(t)) are in
:mod:`lrsweep.core.schedules`.

- ``gd`` / ``sgd``: update_l = -eta_l s(t) g_l (the gradient of the whole set, or of the step's batch);
- ``momentum``: heavy ball, v_l <- beta(t) v_l + g_l, update_l = -eta_l s(t) v_l (optax.trace's
  convention, with beta(t) traced; optax.trace takes a Python float decay, so it is written here).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from lrsweep.core import config as config_lib
from lrsweep.core import schedules as sched
from lrsweep.core.schedules import Schedule, lr_multiplier as schedule_multiplier  # noqa: F401  (re-exported)


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


def _table(key):
    return None if key is None else jnp.asarray(config_lib.array_table(key))


def schedule_of(spec, hparams: dict) -> Schedule | None:
    """The group's learning-rate schedule with this student's traced parameters (None: constant rates)."""
    if spec.schedule == "constant" and spec.warmup_steps == 0:
        return None
    return Schedule(spec.schedule, spec.steps, spec.warmup_steps, hparams["schedule_exponent"],
                    hparams["stable_fraction"], hparams["schedule_floor"], _table(spec.schedule_array),
                    hparams["schedule_index"])


def batch_schedule_of(spec, hparams: dict) -> sched.BatchSchedule | None:
    """m(t) of a stochastic group (None: the whole training set every step)."""
    if spec.batch_size is None:
        return None
    return sched.BatchSchedule(spec.batch_schedule, spec.steps, spec.batch_size, hparams["batch_start"],
                               hparams["batch_end"], hparams["batch_ramp_exponent"], _table(spec.batch_array),
                               hparams["batch_index"])


def batch_size_at(spec, hparams: dict, t):
    """The step's batch size m(t) (int32), or None for full-batch steps."""
    schedule = batch_schedule_of(spec, hparams)
    return None if schedule is None or schedule.kind == "constant" else sched.batch_size(schedule, t)


def _layer_rates(spec, hparams: dict):
    names = spec.arch.layer_names
    rates = {name: hparams[f"lr_{l}"] for l, name in enumerate(names, 1)}
    for name in spec.moved_layers:  # moved by a step hook (a head rule), not the optimizer: its rate may be inf
        rates[name] = jnp.zeros_like(rates[name])
    schedule = schedule_of(spec, hparams)
    multipliers = None if schedule is None else {name: (lambda t: schedule_multiplier(schedule, t)) for name in names}
    return rates, multipliers


def gd(spec, hparams: dict) -> optax.GradientTransformation:
    """GD (or SGD: the engine hands it the batch's gradient) with per-layer rates ``lr_l`` and the group's
    schedule on every layer."""
    return per_layer_rates(*_layer_rates(spec, hparams))


class HeavyBallState(NamedTuple):
    count: jax.Array
    velocity: dict


def heavy_ball(betas) -> optax.GradientTransformation:
    """v <- beta(t) v + g (returns v): optax.trace with a per-step, traced decay ``betas(t)``."""
    def init_fn(params):
        return HeavyBallState(jnp.zeros([], jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        del params
        beta = betas(state.count)
        velocity = jax.tree_util.tree_map(lambda v, g: (beta * v).astype(g.dtype) + g, state.velocity, updates)
        return velocity, HeavyBallState(state.count + 1, velocity)

    return optax.GradientTransformation(init_fn, update_fn)


def momentum(spec, hparams: dict) -> optax.GradientTransformation:
    """Heavy ball with beta(t) of ``train.momentum_schedule``, then per-layer rates and schedule."""
    beta = sched.MomentumSchedule(spec.momentum_schedule, hparams["momentum"], _table(spec.momentum_array),
                                  hparams["momentum_index"])
    return optax.chain(heavy_ball(lambda t: sched.momentum(beta, t)), gd(spec, hparams))


OPTIMIZERS = {"gd": gd, "sgd": gd, "momentum": momentum}


def make_optimizer(spec, hparams: dict) -> optax.GradientTransformation:
    """The optax transform of ``train.optimizer`` for one student, from its traced hyperparameters by name."""
    return OPTIMIZERS[spec.optimizer](spec, hparams)
