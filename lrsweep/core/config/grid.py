"""Grid expansion: one row per student, built column by column (a constant field stays one broadcast
value), every static combination checked once, learning rates resolved per layer, two identical
students refused. No jax."""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.core.columns import LAYER_RATE, is_broadcast, short_name
from lrsweep.core.architecture import Architecture
from lrsweep.core.config.columnar import (_column, _first_duplicate, _floats, _isclose, _isnan, _take,
                                          _where, equals)
from lrsweep.core.config.load import SweepConfig
from lrsweep.core.config.schema import FIELDS, field_columns, rate_axes
from lrsweep.core.config.validate import _check_student_shapes, default_target_std
from lrsweep.core.config.values import ARRAY_INDEX, array_table
from lrsweep.core.errors import ConfigError


def resolve_lrs(point: dict, m: int) -> list[float]:
    """Per-layer learning rates eta_1..eta_m for one grid point (see module docstring); the values may be
    numpy columns (one entry per student)."""
    for scheme in registry.RATE_SCHEMES.values():  # head rates, the authors' lines
        lrs = scheme.resolve(point, m)
        if lrs is not None:
            return lrs
    if "lr_total" in point:
        total = point["lr_total"]
        if "lr_1_fraction" in point:
            eta_1 = point["lr_1_fraction"] * total
            return [eta_1] + [(total - eta_1) / (m - 1)] * (m - 1) if m > 1 else [total]
        explicit = {int(LAYER_RATE.match(k).group(1)): v for k, v in point.items() if LAYER_RATE.match(k)}
        if explicit:
            free = [l for l in range(1, m + 1) if l not in explicit]
            rest = (total - sum(explicit.values())) / max(len(free), 1)
            return [explicit.get(l, rest) for l in range(1, m + 1)]
        return [total / m] * m
    lrs = []
    for layer in range(1, m + 1):
        key = f"lr_{layer}"
        if key in point:
            lrs.append(point[key])
        elif "lr" in point:
            lrs.append(point["lr"])
        else:
            raise ConfigError(f"grid.{key}", f"no learning rate for layer {layer} of {m} trainable layers: "
                                             f"give {key} or a shared `lr`")
    return lrs


def _expanded_axes(cfg: SweepConfig) -> list[tuple[tuple, list]]:
    """The grid's axes with each value of a scheme's expanded axis (:attr:`RateScheme.expand`, seed
    000's ``lr_line``) replaced by the points it stands for."""
    axes = []
    for names, values in cfg.axes:
        for scheme in registry.RATE_SCHEMES.values():
            expanded = scheme.expand(names, values) if scheme.expand is not None else None
            if expanded is not None:
                names, values = expanded
                break
        axes.append((names, values))
    return axes


def _axis_sizes(cfg: SweepConfig) -> list[tuple[str, int]]:
    """(axis, number of entries) per axis; an expanded axis counts its points, a zip once."""
    out = []
    for names, values in cfg.axes:
        sizes = [s.size(names, values) for s in registry.RATE_SCHEMES.values() if s.size is not None]
        size = next((n for n in sizes if n is not None), None)
        out.append((f"{names[0]} points" if size is not None else "seeds" if names == ("seed",) else "+".join(names),
                    len(values) if size is None else size))
    return out


def grid_size(cfg: SweepConfig) -> int:
    """Number of students the grid expands to, from the axes alone (nothing is expanded): the product
    of the axis lengths, a zip counted once, each ``lr_line`` value counted as its number of points."""
    return math.prod(n for _, n in _axis_sizes(cfg))


# Planning is columnar (constant fields are one value each): 10^7 students plan in ~4-7 s and ~0.9 GB
# peak on a 2-core machine (scripts/bench_scaling.py), linear beyond; the cap guards against typos.
DEFAULT_MAX_STUDENTS = 20_000_000


def check_grid_size(cfg: SweepConfig, max_students: int) -> int:
    """The grid's size (:func:`grid_size`); ConfigError("grid") above ``max_students``, before any expansion."""
    n = grid_size(cfg)
    if n > max_students:
        sizes = " x ".join(f"{name} {size:,}" for name, size in _axis_sizes(cfg) if size > 1)
        raise ConfigError("grid", f"{n:,} students ({sizes}) is more than --max-students {max_students:,}; "
                                  f"shrink the grid, or raise the cap with --max-students {n}")
    return n


def expand_grid(cfg: SweepConfig) -> pd.DataFrame:
    """One row per student: every field (short column names) plus lr_1..lr_m and lr_total.

    Rows are the Cartesian product of the axes (the last axis varies fastest), built column by column;
    each combination of static values is checked once. Raises ConfigError for any combination that
    cannot run and for two identical students; nothing is computed.
    """
    axes = _expanded_axes(cfg)
    shape = [len(values) for _, values in axes]
    n = math.prod(shape)
    if n == 0:
        raise ConfigError("grid", "the grid is empty")
    index = np.unravel_index(np.arange(n, dtype=np.int64), shape)  # index[a][row]: the row's entry on axis a
    on_axis = {name: (a, j) for a, (names, _) in enumerate(axes) for j, name in enumerate(names)}

    def column(name):
        if name not in on_axis:
            return _column([cfg.base[name]], n)
        a, j = on_axis[name]
        return _column([v[j] for v in axes[a][1]], n, index[a])

    # static combinations (first appearance order): shapes, layer count, the authors' teacher scale
    static_axes = [a for a, (names, _) in enumerate(axes)
                   if any(name in FIELDS and FIELDS[name].role == "static" for name in names)]
    combo = (np.ravel_multi_index([index[a] for a in static_axes], [shape[a] for a in static_axes])
             if static_axes else np.broadcast_to(np.int64(0), (n,)))
    n_trainable, target_std = [], []
    variants = [v for scheme in registry.RATE_SCHEMES.values() for v in scheme.variants(axes)]  # lr_ratio .inf
    for entries in itertools.product(*[range(shape[a]) for a in static_axes]):
        point = dict(cfg.base)
        for a, (names, values) in enumerate(axes):
            point.update(zip(names, values[entries[static_axes.index(a)] if a in static_axes else 0]))
        _check_student_shapes(point)
        for overrides in variants:  # the settings some students of this combination take instead
            _check_student_shapes({**point, **overrides})
        m = Architecture.from_fields(point).n_trainable
        extra = sorted((k for k in point if LAYER_RATE.match(k) and int(k[3:]) > m), key=lambda k: int(k[3:]))
        if extra:
            raise ConfigError(f"grid.{extra[0]}", f"the student has only {m} trainable layers "
                                                  f"(lr_1..lr_{m}); {extra[0]} would be ignored")
        n_trainable.append(m)
        target_std.append(default_target_std(point))
    m_row = _take(np.asarray(n_trainable, np.int64), combo)

    stable = column("train.stable_fraction")
    if (stable > 1.0).any():
        raise ConfigError("train.stable_fraction", f"must be in [0, 1], got {float(stable[np.argmax(stable > 1.0)])!r}")

    table = {short_name(k): column(k) for k in cfg.base if k != "task.target_std"}
    _resolve_schedule_columns(table)
    table["target_std"] = _target_std(cfg, axes, on_axis, index, _take(np.asarray(target_std), combo))
    table = {short_name(k): table[short_name(k)] for k in cfg.base}  # the config's field order
    table.update(_lr_columns(axes, on_axis, column, m_row))
    for hook in registry.GRID_HOOKS:  # lr_ratio .inf: the best-response head
        hook(table)
    # constants stay broadcast views of their one value (object dtype kept: no n-row string conversion)
    index = combo = stable = None  # the (n,) axis positions are no longer needed: freed before the check
    _check_distinct_students(table, cfg, axes, shape)
    df = pd.DataFrame({k: pd.Series(v, dtype=v.dtype, copy=False) if is_broadcast(v) else v
                       for k, v in table.items()}, copy=False)
    df.insert(0, "student_id", np.arange(n, dtype=np.int64))
    return df


def _resolve_schedule_columns(table: dict) -> None:
    """Per-student checks of the traced schedule fields (batch ramp, array rows) against the static ones;
    ``batch_end`` null becomes the batch size."""
    batch = _floats(table["batch_size"])
    end = _floats(table["batch_end"])
    end = _where(_isnan(end), batch, end)  # stays NaN (null) for full-batch students
    table["batch_end"] = end
    ramp = equals(table["batch_schedule"], "ramp")
    for name, values in (("batch_end", end), ("batch_start", np.asarray(table["batch_start"], float))):
        bad = ramp & (values > batch) if ramp.any() else ramp
        if bad.any():
            r = int(np.argmax(bad))
            raise ConfigError(f"train.{name}", f"must be <= train.batch_size={int(batch[r])} (the compiled batch "
                                               f"shape), got {values[r]:g}")
    steps = np.asarray(table["steps"])
    for path, index_path in ARRAY_INDEX.items():
        keys, index = table[short_name(path)], np.asarray(table[short_name(index_path)])
        distinct = {keys[0]} if is_broadcast(keys) else set(pd.unique(np.asarray(keys, object)))
        for key in distinct - {None}:
            rows = (np.ones(len(keys), bool) if is_broadcast(keys)
                    else np.fromiter((k == key for k in keys), bool, len(keys)))
            tab = array_table(key)
            lengths = np.sum(~np.isnan(tab), axis=1)
            over = rows & (index >= len(tab))
            if over.any():
                raise ConfigError(index_path, f"{path} has {len(tab)} arrays (indices 0..{len(tab) - 1}), got "
                                              f"{int(index[over][0])}")
            too_short = rows & (lengths[np.minimum(index, len(tab) - 1)] != steps)
            if too_short.any():
                r = int(np.argmax(too_short))
                raise ConfigError(path, f"array {int(index[r])} has {int(lengths[index[r]])} values but train.steps "
                                        f"is {int(steps[r])}: give one value per step")
            if path == "train.momentum_array" and np.nanmax(tab) > 1.0:
                raise ConfigError(path, "momentum values must be in [0, 1]")
            if path == "train.batch_array":
                over = rows & (np.nanmax(tab, axis=1)[np.minimum(index, len(tab) - 1)] > batch)
                if over.any() or np.nanmin(tab) < 1:
                    raise ConfigError(path, "batch sizes must be in [1, train.batch_size] (the compiled batch shape)")


def _target_std(cfg, axes, on_axis, index, default: np.ndarray) -> np.ndarray:
    """(n,) task.target_std; null (the default) is the authors' scale of each student's shape."""
    if "task.target_std" in on_axis:
        a, j = on_axis["task.target_std"]
        given = np.array([np.nan if v[j] is None else v[j] for v in axes[a][1]], float)[index[a]]
    else:
        given = np.broadcast_to(np.float64(np.nan if cfg.base["task.target_std"] is None else
                                           cfg.base["task.target_std"]), default.shape)
    return _where(_isnan(given), default, given)


def _lr_columns(axes, on_axis, column, m_row: np.ndarray) -> dict:
    """lr_1..lr_m (NaN beyond a student's m), lr_total, and the lr_1_fraction / lr_line labels, from
    :func:`resolve_lrs` applied to whole columns (one call per layer count m)."""
    names = [name for names, _ in axes for name in names if name in rate_axes() or name.startswith("lr_")]
    point = {name: column(name) for name in names}
    m_order = [int(m) for m in (m_row[:1] if is_broadcast(m_row) else pd.unique(m_row))]  # first appearance
    n = len(m_row)
    lrs = {f"lr_{l}": np.full(n, np.nan) for l in range(1, max(m_order) + 1)}
    total, bad = np.zeros(n), np.zeros(n, bool)
    for m in m_order:
        rows = m_row == m if len(m_order) > 1 else slice(None)
        layer_lrs = resolve_lrs({k: v[rows] for k, v in point.items()}, m)
        total[rows] = sum(layer_lrs)  # 0 + eta_1 + ... + eta_m, as for one student's list
        for l, v in enumerate(layer_lrs, 1):
            lrs[f"lr_{l}"][rows] = v
        bad[rows] = functools.reduce(np.minimum, layer_lrs) < 0
        if "lr_total" in point:
            bad[rows] |= ~_isclose(total[rows], point["lr_total"][rows], rel_tol=1e-9, abs_tol=1e-12)
    if bad.any():
        r = int(np.argmax(bad))
        m = int(m_row[r])
        got = [float(lrs[f"lr_{l}"][r]) for l in range(1, m + 1)]
        given = float(point["lr_total"][r]) if "lr_total" in point else float(total[r])
        raise ConfigError("grid.lr_total", f"lr_total={given!r} cannot be split with the given lr_1..lr_{m} "
                                           f"into learning rates >= 0 (got {got})")
    # column order of a table built row by row: the first student's lr_1..lr_m, then the labels,
    # then the layers of later students with more
    out = {f"lr_{l}": lrs[f"lr_{l}"] for l in range(1, m_order[0] + 1)}
    out["lr_total"] = total
    for label in ("lr", "lr_1_fraction"):  # the axes as the config names them
        if label in point:
            out[label] = point[label].astype(float)
    for scheme in registry.RATE_SCHEMES.values():  # lr_line; lr_body, lr_head, lr_ratio
        out.update(scheme.columns(point, lrs, m_row))
    out["n_trainable"] = m_row
    out.update({k: v for k, v in lrs.items() if k not in out})
    return out


def _axis_label(names: tuple, entry: tuple) -> str:
    """One entry of an axis as the config writes it: ``width=64``, ``lr_line=8.0 (eta_1=1.0)``."""
    for scheme in registry.RATE_SCHEMES.values():
        text = scheme.label(names, entry) if scheme.label is not None else None
        if text is not None:
            return text
    return ", ".join(f"{name}={value!r}" for name, value in zip(names, entry))


def student_columns(df: pd.DataFrame) -> list[str]:
    """The columns that define what a student trains: static, instance and traced fields and
    lr_1..lr_m (not the labels lr_total, lr_1_fraction, lr_line, nor the run fields)."""
    fields = field_columns()
    return [c for c in df.columns if c in fields or LAYER_RATE.match(c)]


def axis_columns(cfg: SweepConfig) -> set[str]:
    """Student-table columns of the fields on an axis of more than one value: every other field
    column of :func:`expand_grid` holds one value."""
    on = {name for names, values in cfg.axes if len(values) > 1 for name in names}
    derived = {c for scheme in registry.RATE_SCHEMES.values() for c in scheme.derived(on)}  # lr_ratio .inf
    return {short_name(name) for name in on if name in FIELDS} | derived


def _check_distinct_students(table: dict, cfg: SweepConfig, axes, shape) -> None:
    """ConfigError("grid") when two rows train the same student (identical in every
    :func:`student_columns` of ``table``, {column: (n,) values}): different axis values that give
    the same student. Columnar (:func:`_first_duplicate`)."""
    n = len(next(iter(table.values())))
    if n == 1:
        return
    on_axes = axis_columns(cfg)
    fields = field_columns()
    varying = [c for c in table if (c in fields or LAYER_RATE.match(c))
               and (c in on_axes or c.startswith("lr_") or c == "target_std")]
    pair = _first_duplicate([table[c] for c in varying], n) if varying else (0, 1)
    if pair is None:
        return
    first, second = pair
    entries = zip(axes, np.unravel_index(first, shape), np.unravel_index(second, shape))
    differ = " and ".join(f"{_axis_label(names, values[i])} vs {_axis_label(names, values[j])}"
                          for (names, values), i, j in entries if i != j)
    plain = lambda v: v.item() if isinstance(v, np.generic) else v
    same = ", ".join(f"{c}={plain(table[c][first])!r}" for c in varying
                     if (c.startswith("lr_") or c == "target_std" or len(pd.unique(np.asarray(table[c]))) > 1)
                     and not (isinstance(table[c][first], float) and math.isnan(table[c][first])))
    raise ConfigError("grid", f"students {first} and {second} are the same student ({same}): {differ} "
                              f"give identical students; keep one of them")
