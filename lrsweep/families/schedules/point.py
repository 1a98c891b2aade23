"""Seed 004's point: the settings one schedule search optimises for (the exponents a and b, the number of
features N, the label noise sigma and the batch size), as config fields and as the columns of every
table the family writes and reads (``schedules``, ``schedule_summary``, the exponent fits)."""

from __future__ import annotations

from lrsweep.core.columns import short_name

POINT_FIELDS = ("task.a", "task.b", "task.input_dim", "task.noise_std", "train.batch_size")
POINT_COLUMNS = tuple(short_name(p) for p in POINT_FIELDS)  # a, b, input_dim, noise_std, batch_size


def point_label(values) -> str:
    """A point as text, ``a=2.5, b=1.5, input_dim=50, noise_std=0.5, batch_size=4`` (values in
    :data:`POINT_COLUMNS` order)."""
    return ", ".join(f"{k}={v:g}" for k, v in zip(POINT_COLUMNS, values))
