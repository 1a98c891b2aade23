"""Columnar helpers of the student table (numpy and pandas only): a field constant over the grid is
one read-only broadcast view, never n values; these functions keep it so."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from lrsweep.core.columns import combined_codes, first_rows, is_broadcast


def _take(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]``, a broadcast view where ``rows`` is one (a constant stays constant)."""
    return np.broadcast_to(values[rows[0]], rows.shape) if is_broadcast(rows) else values[rows]


def equals(column, value) -> np.ndarray:
    """(n,) bool ``column == value``: one comparison, broadcast, where the column is constant."""
    if is_broadcast(column):
        return np.broadcast_to(np.bool_(column[0] == value), column.shape)
    return np.asarray(column == value, bool)


def has_metric(table, name: str) -> np.ndarray:
    """(n,) bool: ``name`` is among each student's ``train.metrics``."""
    column = table["metrics"]
    if is_broadcast(column):
        return np.broadcast_to(np.bool_(name in (column[0] or ())), column.shape)
    return np.fromiter((name in (v or ()) for v in column), bool, len(column))


def _isnan(x: np.ndarray) -> np.ndarray:
    return np.broadcast_to(np.isnan(x[0]), x.shape) if is_broadcast(x) else np.isnan(x)


def _where(cond, a, b) -> np.ndarray:
    """``np.where``, a broadcast view where every input is constant."""
    if all(is_broadcast(np.asarray(x)) for x in (cond, a, b)):
        return np.broadcast_to(np.where(cond[0], a[0], b[0]), np.shape(cond))
    return np.where(cond, a, b)


def _floats(column) -> np.ndarray:
    """A numeric column that may hold None (null) as float64 with NaN; a constant stays a broadcast view."""
    if is_broadcast(column):
        return np.broadcast_to(np.float64(np.nan if column[0] is None else column[0]), column.shape)
    if column.dtype == object:
        return np.fromiter((np.nan if v is None else v for v in column), float, len(column))
    return np.asarray(column, float)


def _column(values: list, n: int, take: np.ndarray | None = None) -> np.ndarray | pd.api.extensions.ExtensionArray:
    """(n,) column of a student table: ``values[take]``, typed as pandas types those Python values:
    bool, int64, float64, ``str`` (built in pyarrow: fast), else objects (tuples, None). Without
    ``take``, ``values[0]`` for every student as a read-only broadcast view: no memory however many
    students (:func:`select_rows` keeps it so)."""
    if take is None:
        v = values[0]
        dtype = (bool if isinstance(v, bool) else np.int64 if isinstance(v, int) else
                 np.float64 if isinstance(v, float) else object)
        return _broadcast(v, dtype, n)
    if all(isinstance(v, str) for v in values):
        take = np.zeros(n, np.int64) if take is None else take
        return pd.array(pa.array(values, pa.string()).take(pa.array(take)), dtype="str")
    if all(isinstance(v, bool) for v in values):
        dtype = bool
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        dtype = np.int64
    elif all(isinstance(v, float) for v in values):
        dtype = np.float64
    else:
        dtype = object
    if take is None:
        out = np.empty(n, dtype)
        out.fill(values[0])
        return out
    distinct = np.empty(len(values), dtype)
    for i, v in enumerate(values):  # element by element: tuples stay objects
        distinct[i] = v
    return distinct[take]


def _broadcast(value, dtype, n: int) -> np.ndarray:
    """(n,) read-only view of one value (a tuple stays one object)."""
    one = np.empty((), dtype)
    one[()] = value
    return np.broadcast_to(one, (n,))


def select_rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]`` keeping constant (broadcast) columns broadcast: memory grows with the columns
    that vary, not with every config field (a 10^7-student plan)."""
    mask = np.asarray(mask, bool)
    k = int(mask.sum())
    if k == len(frame):
        return frame
    cols = {}
    for name in frame.columns:
        values = frame[name].array
        raw = values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else None
        if raw is not None and is_broadcast(raw):
            cols[name] = pd.Series(_broadcast(raw[0], raw.dtype, k), dtype=raw.dtype, index=frame.index[mask], copy=False)
        else:
            cols[name] = pd.Series(values[mask], index=frame.index[mask], copy=False)
    return pd.DataFrame(cols, index=frame.index[mask], copy=False)


def _isclose(a, b, rel_tol: float, abs_tol: float) -> np.ndarray:
    """Elementwise :func:`math.isclose` (symmetric in a and b, unlike np.isclose)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    diff = np.abs(a - b)
    return (diff <= np.abs(rel_tol * b)) | (diff <= np.abs(rel_tol * a)) | (diff <= abs_tol)


def _first_duplicate(columns: list, n: int) -> tuple[int, int] | None:
    """(first, second): the first row equal in every column to an earlier one and that earlier row;
    None when all n rows differ. A bincount where the key space is small (no hashing), else a factorize."""
    key, size = combined_codes(columns, n)
    if size < n:
        return (0, 1) if n > 1 and size <= 1 else _duplicate_rows(key)
    if size <= 4 * n and np.bincount(key, minlength=size).max() <= 1:
        return None
    return _duplicate_rows(key)


def _duplicate_rows(key: np.ndarray) -> tuple[int, int] | None:
    codes = pd.factorize(key)[0]  # numbered in order of first appearance
    new = np.zeros(len(codes), bool)
    new[first_rows(codes)] = True
    repeats = np.flatnonzero(~new)
    if not len(repeats):
        return None
    second = int(repeats[0])
    return int(np.argmax(codes == codes[second])), second
