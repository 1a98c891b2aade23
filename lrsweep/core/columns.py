"""Column names and columns of the stored tables, each idea written once (numpy and pandas only; no jax).

What every reader of a students or curves table asks: which columns are the per-layer rates
(:func:`lr_columns`), the short column name of a field path (:func:`short_name`, :func:`field_value`),
whether a column is one value broadcast (:func:`is_broadcast`), row codes numbered in order of first
appearance and where each code first appears (:func:`row_codes`, :func:`first_rows`), and the seed
mean and standard error of a grouped column (:func:`seed_mean_sem`). A leaf: it imports nothing of
lrsweep, so the config, the core and every family can use it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

LAYER_RATE = re.compile(r"^lr_([1-9][0-9]*)$")
"""A per-layer rate column ``lr_l`` (l = 1, 2, ...); not the labels ``lr_total``, ``lr_1_fraction``, ``lr_line``."""


def is_layer_rate(name) -> bool:
    """``name`` is a per-layer rate column ``lr_l``."""
    return isinstance(name, str) and LAYER_RATE.match(name) is not None


def layer_of(name: str) -> int:
    """l of the per-layer rate column ``lr_l``."""
    return int(LAYER_RATE.match(name).group(1))


def lr_columns(source: int | Iterable) -> list[str]:
    """The per-layer rate columns ``lr_1 .. lr_m`` in layer order: of m trained layers (an int), or
    those among a frame's columns or a list of names."""
    if isinstance(source, (int, np.integer)):
        return [f"lr_{l}" for l in range(1, int(source) + 1)]
    return sorted((c for c in source if is_layer_rate(c)), key=layer_of)


def short_name(path: str) -> str:
    """The column name of a config field: the last part of its path (``model.width`` -> ``width``)."""
    return path.split(".")[-1]


def field_value(p, path: str):
    """The value of field ``path`` in ``p``, keyed by full path (a config) or short name (a table row)."""
    return p[path] if path in p else p[short_name(path)]


def _raw(values):
    """The numpy array behind a Series or a pandas numpy-backed array (unchanged otherwise)."""
    values = values.array if isinstance(values, pd.Series) else values
    return values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else values


def is_broadcast(values) -> bool:
    """A constant column stored as a broadcast view of one value (stride 0: no memory per row; what
    the config's grid expansion makes of a field on no axis): every row is the first, known without
    reading the rows. ``values``: a numpy array, a pandas Series or array."""
    values = _raw(values)
    return isinstance(values, np.ndarray) and values.ndim == 1 and values.strides == (0,)


def row_codes(columns: list) -> tuple[np.ndarray, int]:
    """Columnar row keys: ((n,) int64 codes, number of distinct rows) over ``columns`` (equal arrays
    of n values, or pandas Series / arrays; NaN equals NaN, like pandas groupby with dropna=False). Rows equal in
    every column share a code; codes count up in order of first appearance. A constant (broadcast) column is
    skipped unread; each other column is factorized once and the codes combined in mixed radix."""
    n = len(columns[0]) if columns else 0
    key, size = combined_codes(columns, n)
    if size == 1:
        return np.zeros(n, np.int64), min(n, 1)
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64, copy=False), len(uniques)


def combined_codes(columns: list, n: int) -> tuple[np.ndarray, int]:
    """(key, size): (n,) int64 in [0, size), equal exactly where the rows are equal in every column
    (not numbered in any order; compressed by factorizing once a mixed-radix product would overflow)."""
    key, size = np.zeros(n, np.int64), 1
    for values in columns:
        values = _raw(values)
        if is_broadcast(values):
            continue
        codes, uniques = pd.factorize(values, use_na_sentinel=False)
        if size * len(uniques) >= 2 ** 62:
            key, size = _compress(key)
        key = key * len(uniques) + codes if size > 1 else codes.astype(np.int64, copy=False)
        size *= len(uniques)
    return key, size


def _compress(key: np.ndarray) -> tuple[np.ndarray, int]:
    codes, uniques = pd.factorize(key)
    return codes.astype(np.int64, copy=False), len(uniques)


def first_rows(codes: np.ndarray) -> np.ndarray:
    """Positions of the first row of each code, for codes numbered in order of first appearance
    (:func:`row_codes`): code c first appears where the running maximum of the codes reaches c."""
    codes = np.asarray(codes)
    return np.flatnonzero(codes > np.maximum.accumulate(np.concatenate([[-1], codes[:-1]])))


def seed_mean_sem(grouped, sizes: bool = False) -> pd.DataFrame:
    """Per group of ``grouped`` (one column grouped, e.g. by point and step; NaN values left out):
    the group keys as columns, ``n_seeds`` (values), ``mean`` and ``sem`` = std / sqrt(n_seeds)
    (std with ddof 1: NaN for one value); with ``sizes``, ``n_students`` (rows) before them."""
    counts = {"n_students": "size"} if sizes else {}
    out = grouped.agg(**counts, n_seeds="count", mean="mean", std="std").reset_index()
    out["sem"] = out["std"] / np.sqrt(out["n_seeds"])
    return out.drop(columns="std")
