"""Seed 004's point: the settings one schedule search optimises for (the exponents a and b, the number of
features N, the label noise sigma and the batch size), as config fields and as the columns of every
table the family writes and reads (``schedules``, ``schedule_summary``, the exponent fits)."""

from __future__ import annotations

from lrsweep.core.columns import short_name

POINT_FIELDS = ("task.a", "task.b", "task.input_dim", "task.noise_std", "train.batch_size")
STUDENT_COLUMNS = tuple(short_name(p) for p in POINT_FIELDS)  # a, b, input_dim, noise_std, batch_size
# as the config writes them (task.n_features is N; the core calls it input_dim, the dimension of any input)
POINT_COLUMNS = ("a", "b", "n_features", "noise_std", "batch_size")
SCHEDULE = "schedule"  # the column naming a row's schedule family (optimal, constant, power, ...)


def point_label(values) -> str:
    """A point as text, ``a=2.5, b=1.5, n_features=50, noise_std=0.5, batch_size=4`` (values in
    :data:`POINT_COLUMNS` order)."""
    return ", ".join(f"{k}={v:g}" for k, v in zip(POINT_COLUMNS, values))

OLD_NAMES = {"input_dim": "n_features", "kind": SCHEDULE}  # the columns of tables written before issue 24


def current_names(frame):
    """A ``schedules`` / ``schedule_summary`` frame with today's column names (a table written before
    they took the config's names says ``input_dim`` and ``kind``)."""
    if SCHEDULE in frame.columns:
        return frame
    return frame.rename(columns=OLD_NAMES)


def read_table(path):
    """``RUN/schedules.parquet`` or ``RUN/schedule_summary.parquet`` as pandas, today's column names
    (:func:`current_names`); StoreError naming the file and its repair where it is unreadable."""
    from lrsweep.core import store
    return current_names(store.read_parquet(path).to_pandas())
