"""What a run is worth at a glance (no training, no jax): counts, timing and the best learning rates
per setting of a stored run (:func:`summarize`, :func:`best_rates`), what ``lrsweep run`` and
``lrsweep show`` print."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.core import columns as columns_lib
from lrsweep.core import config as config_lib
from lrsweep.core import store
from lrsweep.core.errors import LrsweepError


@dataclasses.dataclass
class RunSummary:
    """Counts and timing of a run, and ``best``: :func:`best_rates` of its students, one row per setting."""
    run_dir: Path
    n_students: int
    n_diverged: int
    wall_time_s: float
    students_per_s: float
    best: pd.DataFrame
    groups: int
    setting_columns: list = dataclasses.field(default_factory=list)  # what a row of ``best`` is per
    compile: dict = dataclasses.field(default_factory=dict)  # lrsweep.core.compilestats.CompileStats.as_dict()
    shard: tuple | None = None  # (i, n, students of the shard) for a shard's run
    trained: int | None = None  # students trained by this command (None: a stored run's summary)
    already: int | None = None  # students (of this shard) that had results before it


SUMMARY_METRICS = ("final_test_loss", "final_train_loss")  # a setting's loss: the first it has values of


def setting_axes() -> tuple:
    """Rate axes whose values are settings, not rates to optimise (:attr:`lrsweep.registry.RateScheme.settings`)."""
    return tuple(a for scheme in registry.RATE_SCHEMES.values() for a in scheme.settings)


def setting_columns(students: pd.DataFrame, line_columns: tuple | None = None) -> list[str]:
    """The columns :func:`best_rates` chooses a best point per: every config field of role static,
    instance or traced that varies in ``students`` (not the seed), and the line columns that vary
    (default :func:`setting_axes`, e.g. ``lr_line``; ``lr_total`` where C is swept). Never lr_1..lr_m:
    those are what is optimised."""
    line_columns = setting_axes() if line_columns is None else line_columns
    fields = [c for c in config_lib.field_columns() if c != "seed"]
    return [c for c in [*fields, *line_columns] if c in students and students[c].nunique(dropna=False) > 1]


def rate_columns(students: pd.DataFrame) -> list[str]:
    """The columns a learning-rate point is named by: the config's rate axes a family registered
    (:attr:`lrsweep.registry.RateScheme.axes`, e.g. ``lr_body``, ``lr_head``, ``lr_ratio``) where the run has
    them and they are not settings, else the per-layer rates ``lr_1 .. lr_m``."""
    settings = setting_axes()
    named = [a for scheme in registry.RATE_SCHEMES.values() for a in scheme.axes
             if a in students and a not in settings]
    return named or columns_lib.lr_columns(students)


def best_rates(students: pd.DataFrame, line_columns: tuple | None = None) -> pd.DataFrame:
    """Per setting (:func:`setting_columns`), the learning-rate point with the lowest mean final loss.

    A point is a setting's rates (:func:`rate_columns`: the config's rate axes, e.g. lr_body, lr_head,
    lr_ratio, else the per-layer lr_1..lr_m); its mean is over the seeds that did not
    diverge. Eligible are the points where the fewest seeds diverged (as a fraction of the point's
    seeds): none where some point has none. A point where every seed diverged is never best; a
    setting where every point diverged has a row with ``n_seeds`` 0 and no rates. The loss is the
    first of :data:`SUMMARY_METRICS` with values in the setting; a surviving seed whose loss is not
    finite makes its point's mean NaN (never best unless no point has a finite mean).

    Args:
      students: the students table of a run (``lrsweep.load(run, table="students")``).
      line_columns: learning-rate columns that are settings, not rates to optimise.
    Returns:
      One row per setting, in sorted setting order: the setting columns, the rate columns, ``metric``
      (its name), ``mean``, ``n_seeds`` (surviving seeds at the point), ``n_diverged`` (diverged there).
    """
    if students.empty:
        return pd.DataFrame()
    keys = setting_columns(students, line_columns)
    rates = rate_columns(students)
    setting = (students.groupby(keys, dropna=False, sort=True).ngroup() if keys
               else pd.Series(0, index=students.index))
    metric = pd.Series(None, index=students.index, dtype=object)
    value = pd.Series(np.nan, index=students.index)
    for name in reversed([m for m in SUMMARY_METRICS if m in students]):  # the first metric wins
        has = students[name].notna().groupby(setting).transform("any")
        metric[has], value[has] = name, students.loc[has, name].astype(float)
    alive = ~students["diverged"].astype(bool)
    table = students[keys + rates].assign(_setting=setting, metric=metric, _value=value.where(alive),
                                          _alive=alive, _bad=alive & ~np.isfinite(value))
    points = table.groupby(["_setting", *rates], dropna=False, sort=True).agg(
        **{k: (k, "first") for k in keys}, metric=("metric", "first"), mean=("_value", "mean"),
        n_seeds=("_alive", "sum"), n_students=("_alive", "size"), n_bad=("_bad", "sum")).reset_index()
    points.loc[points["n_bad"] > 0, "mean"] = np.nan
    points["n_diverged"] = points["n_students"] - points["n_seeds"]
    points["_fraction_diverged"] = points["n_diverged"] / points["n_students"]
    best = points.sort_values(["_setting", "_fraction_diverged", "mean"], kind="stable", na_position="last")
    best = best.drop_duplicates("_setting").reset_index(drop=True)
    best.loc[best["n_seeds"] == 0, rates] = np.nan  # every point of the setting diverged
    best[["n_seeds", "n_diverged"]] = best[["n_seeds", "n_diverged"]].astype(np.int64)
    return best[[*keys, *rates, "metric", "mean", "n_seeds", "n_diverged"]]


def _line_columns(run_dir: Path) -> tuple:
    """:func:`setting_axes` (``lr_line``), and ``lr_total`` where the stored config sweeps it (then each C is
    a setting; where the grid sweeps lr or lr_1..lr_m, lr_total is a rate like them). A stored config that
    no longer validates is read as not sweeping lr_total."""
    try:
        cfg = config_lib.load_config(Path(run_dir) / "config.yaml")
    except LrsweepError:
        return setting_axes()
    swept = {name for names, _ in cfg.axes for name in names}
    return setting_axes() + (("lr_total",) if "lr_total" in swept else ())


def summarize(run_dir: Path, *, wall: float | None = None, trained: int | None = None,
              groups: int | None = None) -> RunSummary:
    """Summary of a stored run: counts, divergence, and the best learning rates per setting
    (:func:`best_rates`; nothing is written)."""
    df = store.load(run_dir, table="students")
    meta = store.read_json(run_dir / "meta.json")
    lines = _line_columns(run_dir)
    keys = setting_columns(df, lines) if not df.empty else []
    wall = meta.get("wall_time_s", 0.0) if wall is None else wall
    trained = len(df) if trained is None else trained
    return RunSummary(run_dir, len(df), int(df["diverged"].sum()) if "diverged" in df else 0, wall,
                      meta.get("students_per_s") or (trained / wall if wall else float("nan")),
                      best_rates(df, lines), groups if groups is not None else meta.get("n_groups", 0), keys,
                      meta.get("compile", {}))
