"""Per-step schedules of the learning rate, the batch size and the momentum: pure jnp functions of the
step index t = 0..T-1 and of parameters that may be traced (a grid axis never recompiles).

Written once and read by the engine's optimizers (:mod:`lrsweep.core.optim`), by the tasks' minibatch
masks and by the theory of seed 004 (:mod:`lrsweep.families.schedules.theory`), so the schedule a
student is trained with and the one its expected loss is computed for are the same function.

Learning-rate multipliers s(t) (every layer's rate is eta_l s(t); seed 004, "Theory of Optimal
Learning Rate Schedules and Scaling Laws for a Random Feature Model"):

- ``constant``:   s(t) = 1
- ``polynomial``: s(t) = (1 - t/T)^delta                      (the easy-phase optimum's shape)
- ``wsd``:        s(t) = 1 for t < t_s, ((1 - t/T) / (1 - t_s/T))^delta after   (eq. 82; t_s = f T)
- ``power``:      s(t) = (1 + t)^(-chi)                        (the power-law baseline)
- ``cosine``:     s(t) = floor + (1 - floor) (1 + cos(pi t / T)) / 2
- ``array``:      s(t) = table[index, t], a per-step array (row ``index`` of a static table)

times a linear warmup min(1, (t + 1) / w) over the first w steps when w > 0.

Batch sizes m(t) (an integer in [1, M], M the compiled batch shape):

- ``constant``: m(t) = M
- ``ramp``:     m(t) = round(m_0 + (m_1 - m_0) (t / T)^p), m_0 = start, m_1 = end (<= M), p the exponent
- ``array``:    m(t) = round(table[index, t])

Momentum beta(t) (heavy ball, v <- beta(t) v + g): ``constant`` beta, or ``array`` table[index, t].
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

LR_SCHEDULES = ("constant", "polynomial", "wsd", "power", "cosine", "array")
BATCH_SCHEDULES = ("constant", "ramp", "array")
MOMENTUM_SCHEDULES = ("constant", "array")


class Schedule(NamedTuple):
    """A learning-rate schedule: kind, run length T (static; traced where only the rates are asked for),
    warmup w (static), traced parameters, and the static (K, T') table of ``array`` schedules (None
    otherwise) with the traced row ``index``."""
    kind: str
    steps: int
    warmup_steps: int
    exponent: object = 1.0         # delta (polynomial, wsd) or chi (power)
    stable_fraction: object = 0.8  # t_s / T (wsd)
    floor: object = 0.0            # cosine's final multiplier
    table: object = None
    index: object = 0


def _row(table, index, t):
    """table[index, t] for a static table (a tuple of tuples or an array) and traced index and t."""
    table = jnp.asarray(table)
    return table[jnp.asarray(index, jnp.int32), jnp.asarray(t, jnp.int32)]


def lr_multiplier(schedule: Schedule, t):
    """s(t) of the module docstring, for a step index t (traced or an array of steps)."""
    dtype = jnp.result_type(float)
    t = jnp.asarray(t, dtype)
    if isinstance(schedule.steps, (int, np.integer)):
        total = float(max(schedule.steps, 1))
    else:                                  # a traced run length (seed 004's searches: horizons as data)
        total = jnp.maximum(jnp.asarray(schedule.steps, dtype), 1.0)
    kind = schedule.kind
    if kind == "constant":
        s = jnp.ones_like(t)
    elif kind == "polynomial":
        s = jnp.clip(1.0 - t / total, 0.0, 1.0) ** schedule.exponent
    elif kind == "wsd":
        t_s = schedule.stable_fraction * total
        ratio = (1.0 - t / total) / jnp.maximum(1.0 - t_s / total, 1e-30)
        s = jnp.where(t < t_s, 1.0, jnp.clip(ratio, 0.0, 1.0) ** schedule.exponent)
    elif kind == "power":
        s = (1.0 + t) ** (-jnp.asarray(schedule.exponent, dtype))
    elif kind == "cosine":
        s = schedule.floor + (1.0 - schedule.floor) * 0.5 * (1.0 + jnp.cos(jnp.pi * t / total))
    elif kind == "array":
        s = _row(schedule.table, schedule.index, t).astype(dtype)
    else:
        raise ValueError(f"train.schedule: unknown '{kind}'; allowed: {', '.join(LR_SCHEDULES)}")
    if schedule.warmup_steps > 0:
        s = s * jnp.minimum(1.0, (t + 1.0) / schedule.warmup_steps)
    return s


class BatchSchedule(NamedTuple):
    """m(t): kind, run length T and the compiled batch shape M (static), traced ramp parameters and
    the static table of ``array`` schedules with its traced row."""
    kind: str
    steps: int
    max_size: int
    start: object = 1.0
    end: object = None
    exponent: object = 1.0
    table: object = None
    index: object = 0


def batch_size(schedule: BatchSchedule, t):
    """m(t) of the module docstring as an int32 in [1, M]."""
    if schedule.kind == "constant":
        return jnp.full(jnp.shape(t), schedule.max_size, jnp.int32)
    dtype = jnp.result_type(float)
    if schedule.kind == "ramp":
        t = jnp.asarray(t, dtype)
        end = schedule.max_size if schedule.end is None else schedule.end
        frac = t / float(max(schedule.steps, 1))
        m = schedule.start + (end - schedule.start) * frac ** jnp.asarray(schedule.exponent, dtype)
    elif schedule.kind == "array":
        m = _row(schedule.table, schedule.index, t)
    else:
        raise ValueError(f"train.batch_schedule: unknown '{schedule.kind}'; allowed: {', '.join(BATCH_SCHEDULES)}")
    return jnp.clip(jnp.floor(jnp.asarray(m, dtype) + 0.5), 1, schedule.max_size).astype(jnp.int32)


class MomentumSchedule(NamedTuple):
    kind: str
    beta: object = 0.0
    table: object = None
    index: object = 0


def momentum(schedule: MomentumSchedule, t):
    """beta(t) of the module docstring."""
    if schedule.kind == "constant":
        return jnp.asarray(schedule.beta) * jnp.ones(jnp.shape(t), jnp.result_type(float))
    if schedule.kind == "array":
        return _row(schedule.table, schedule.index, t).astype(jnp.result_type(float))
    raise ValueError(f"train.momentum_schedule: unknown '{schedule.kind}'; allowed: {', '.join(MOMENTUM_SCHEDULES)}")
