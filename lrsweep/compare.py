"""Comparison: join stored runs with registered theory, through the stored results only.

A :class:`lrsweep.registry.Theory` says which students it covers (``matches``) and what it predicts
for them at a logged step (``predict``); a family registers its own
(:func:`lrsweep.registry.register_theory`), with optional summaries
(:func:`lrsweep.registry.register_summary`, written as ``<name>.parquet``). This module never changes
when a family registers a theory.

A *check* (:func:`lrsweep.registry.register_check`) is for theories that predict per student from the
student's own stored values, or state inequalities, rather than a seed mean: ``fn(students, curves)``
returns rows ``configuration, n, passed, detail`` (:data:`lrsweep.registry.CHECK_COLUMNS`) for the
students it covers; :func:`run_checks` gathers them into ``<run>/checks.parquet`` and a failed row
fails the verdict (``lrsweep compare --strict`` exits 1).

Per grid point and step (a point = a student's hyperparameters without the seed) the table holds
the empirical mean and standard error over seeds, the prediction, the residual in standard errors
(``z``) and in relative terms.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep.core import config as config_lib
from lrsweep.core import store
from lrsweep.core.columns import lr_columns, seed_mean_sem, short_name
from lrsweep.core.errors import ConfigError
from lrsweep import registry
from lrsweep.registry import THEORIES, CHECK_COLUMNS, CHECKS, CHECK_CURVE_COLUMNS, REPORTED, SUMMARIES, TABLE_CHECKS

Z_TOLERANCE = 5.0           # largest |mean - prediction| / standard error allowed where a theory is exact
EXACT_AGREEMENT = 0.8       # share of exact points within 3 SE (seed means of heavy-tailed losses: SE is itself noisy)
REL_TOLERANCE = 1e-5        # largest |mean - prediction| / |prediction| where every seed has the same value (no
                            # spread, so no z): float32 round-off of a stored loss and of its reduction over samples


def run_checks(students: pd.DataFrame, curves: pd.DataFrame, names: list[str] | None = None,
               tables: dict | None = None) -> pd.DataFrame:
    """Every registered check (or those in ``names``) on a run's tables: columns ``check`` and
    :data:`CHECK_COLUMNS`, empty when no check covers a student. ``tables``: name -> frame for the
    checks that read another table (:data:`TABLE_CHECKS`); a check whose table is absent is skipped."""
    frames = []
    for name in (list(CHECKS) if names is None else [n for n in names if n in CHECKS]):
        if name in TABLE_CHECKS:
            frame = (tables or {}).get(TABLE_CHECKS[name])
            rows = CHECKS[name](frame) if frame is not None else None
        elif students.empty:
            continue
        else:
            rows = CHECKS[name](students, curves)
        if rows is None or rows.empty:
            continue
        missing = [c for c in CHECK_COLUMNS if c not in rows]
        assert not missing, f"check {name} returned no {missing}"
        rows = rows.loc[:, list(CHECK_COLUMNS)].astype({"n": int, "passed": bool})
        rows.insert(0, "check", name)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["check", *CHECK_COLUMNS])


def _non_table_checks(theories: list[str] | None) -> bool:
    return any(name not in TABLE_CHECKS and (theories is None or name in theories) for name in CHECKS)


def _check_names(theories: list[str] | None) -> None:
    """ConfigError naming --theory when a name is neither a registered theory nor a check."""
    unknown = [n for n in theories or [] if n not in THEORIES and n not in CHECKS]
    if unknown:
        raise ConfigError("--theory", f"unknown '{unknown[0]}'; registered: {', '.join([*THEORIES, *CHECKS])}")


def point_columns(df: pd.DataFrame) -> list[str]:
    """Columns that identify a grid point: every config column but the seed, and the learning-rate
    axes (derived from the field table; only those present and not constant-null)."""
    fields = [c for c in config_lib.field_columns() if c != "seed"]
    lr_axes = ["lr_line", "lr_total", "lr_1_fraction"]
    return [c for c in ["run_id", "group_id", *fields, *lr_axes] if c in df and df[c].notna().any()]


def matches_setting(df: pd.DataFrame, setting: dict, free: tuple = ()) -> np.ndarray:
    """Students whose every config field equals the theory's ``setting`` (field path -> value) or, for
    fields the setting does not name, the field's default; ``free`` paths are not checked. A column
    a run lacks (written before the field existed) counts as its default. A whitelist: a field
    added later (a loss, a task) excludes a student unless the theory names it."""
    mask = np.ones(len(df), bool)
    for path, field in config_lib.FIELDS.items():
        col = short_name(path)
        if field.role == "run" or path in free or col not in df:
            continue
        want = setting.get(path, field.default)
        if path == "task.target_std" and want is None:  # the authors' default for the student
            want = _default_target_std(df)
            mask &= np.isclose(df[col].to_numpy(float), want, rtol=1e-9)
        elif want is None or (isinstance(want, tuple) and not want):
            mask &= unset(df[col])
        elif field.value_type == "float":
            mask &= np.isclose(df[col].to_numpy(float), float(want), rtol=1e-12)
        else:
            mask &= (df[col] == want).to_numpy(bool)
    return mask


def _is_unset(v) -> bool:
    return v is None or v != v or v == "" or v == ()


def unset(values: pd.Series) -> np.ndarray:
    """(n,) bool: each value is None, NaN, "" or () (a field left at an empty default), tested once per distinct
    value (per row where the values cannot be hashed)."""
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)  # None and NaN: code -1
    except TypeError:  # unhashable values (lists)
        return values.map(_is_unset).to_numpy(bool)
    return np.append(np.array([_is_unset(v) for v in uniques], bool), True)[codes]


# the columns the authors' default teacher scale depends on (config_lib.default_target_std)
_TARGET_STD_INPUTS = ("model.parameterization", "task.input_dim", "model.width")


def _default_target_std(df: pd.DataFrame) -> np.ndarray:
    """(len(df),) :func:`lrsweep.core.config.default_target_std` of every row, evaluated once per distinct
    (parameterization, input_dim, width) rather than once per row."""
    cols = [short_name(p) for p in _TARGET_STD_INPUTS if short_name(p) in df]
    want = np.empty(len(df))
    for key, rows in df.groupby(cols, sort=False, dropna=False).indices.items():
        want[rows] = config_lib.default_target_std(dict(zip(cols, key if isinstance(key, tuple) else (key,))))
    return want


def compare(run: str | Path, theories: list[str] | None = None) -> pd.DataFrame:
    """Per grid point and step: empirical mean/SE over seeds vs every matching theory.

    Args:
      run: a run directory (or a sweep directory: every run below it).
      theories: registry names to use (default: all).
    Returns:
      Columns: the point columns, ``lr_1, lr_2, ...``, ``step, theory, n_seeds, mean, sem,
      prediction, z, rel_gap, exact``.
    """
    _check_names(theories)
    load_arrays(run)
    return _compare_by_group(run, theories)


def _compare_by_group(run: str | Path, theories: list[str] | None) -> pd.DataFrame:
    """:func:`_compare_curves` one shape group at a time (a grid point never spans groups: ``group_id``
    is a point column), so only one group's curves are in memory at once; runs of a sweep in turn."""
    frames = []
    for path in store.select_runs(run, "latest"):
        students = store.load(path, "students", columns=["group_id"])
        for gid in sorted(students["group_id"].unique()) if not students.empty else []:
            frames.append(_compare_curves(store.load(path, groups=[int(gid)]), theories))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _check_curves(run: str | Path, theories: list[str] | None) -> pd.DataFrame:
    """The curves the checks get: every row of the run, since a check may pair students of different
    groups (e.g. a gd head with its best-response twin), joined with every student column; of the
    curve metrics only those the checks declare (:func:`register_check`), all if one declares none."""
    names = [n for n in CHECKS if n not in TABLE_CHECKS and (theories is None or n in theories)]
    if any(n not in CHECK_CURVE_COLUMNS for n in names):
        return store.load(run)
    patterns = {p for n in names for p in CHECK_CURVE_COLUMNS[n]}
    students, metrics = set(), set()
    for path in store.select_runs(run, "latest"):  # names from the footers only
        students |= {c for f in store.table_files(path, "students") for c in store.read_schema(f).names}
        metrics |= {c for f in store.table_files(path, "curves") for c in store.read_schema(f).names
                    if any(fnmatch.fnmatchcase(c, p) for p in patterns)}
    if not students:
        return pd.DataFrame()
    return store.load(run, columns=[*sorted(students | {"group_id"}), *sorted(metrics)])


def load_arrays(run: str | Path) -> None:
    """Register the per-step arrays of every run's config (:data:`lrsweep.core.config.ARRAYS`): theories of
    scheduled students read them by the digest in the students table."""
    for path in store.find_runs(run):
        if (path / "config.yaml").exists():
            try:
                config_lib.load_config(path / "config.yaml")
            except ConfigError:  # a config of an older version: its students carry no arrays
                pass


def _tables_only(run: Path) -> bool:
    """A run of a registered kind (:func:`lrsweep.registry.run_kind`: ``lrsweep schedule``), without trained
    students: only its table checks apply."""
    return registry.run_kind(run) is not None


def _compare_curves(curves: pd.DataFrame, theories: list[str] | None) -> pd.DataFrame:
    if curves.empty:
        return pd.DataFrame()
    students = curves.drop_duplicates(["run_id", "student_id"])
    lr_cols = lr_columns(curves)
    frames = []
    for name in list(THEORIES) if theories is None else [n for n in theories if n in THEORIES]:
        theory = THEORIES[name]
        ids = students.loc[theory.matches(students), ["run_id", "student_id"]]
        if ids.empty:
            continue
        sub = curves.merge(ids, on=["run_id", "student_id"])
        sub = sub[covered_steps(sub["step"].to_numpy(), theory.steps)]
        if sub.empty:
            continue
        keys = point_columns(sub) + lr_cols + ["step"]
        keys = [k for k in keys if sub[k].notna().all()]
        grouped = sub.groupby(keys, sort=True)["test_loss"]
        agg = seed_mean_sem(grouped)
        agg["prediction"] = np.nan
        for step, rows in agg.groupby("step"):
            agg.loc[rows.index, "prediction"] = theory.predict(rows, step)
        residuals(agg)
        agg["exact"] = theory.exact_for(agg)
        if theory.judge_means is not None:
            samples = [g.to_numpy(float) for _, g in grouped]       # the groups in agg's order (both sorted)
            judged = theory.judge_means(agg, samples)
            for column in judged:
                agg[column] = judged[column].to_numpy()
        agg.insert(0, "theory", name)
        frames.append(agg)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


_STEP_SETS: dict = {}  # id(a theory's steps) -> (its steps, their set)


def covered_steps(steps: np.ndarray, covered) -> np.ndarray:
    """(n,) bool: which of ``steps`` a theory covers (``covered``: its ``steps``, a tuple or a range), tested
    once per distinct step (a range by arithmetic; a tuple against a set made once per theory)."""
    if not isinstance(covered, range):
        cached = _STEP_SETS.get(id(covered))
        if cached is None or cached[0] is not covered:
            cached = _STEP_SETS[id(covered)] = (covered, frozenset(covered))
        covered = cached[1]
    present = np.unique(steps)
    return np.isin(steps, [s for s in present.tolist() if s in covered])


def residuals(agg: pd.DataFrame) -> None:
    """Add ``z`` = (mean - prediction) / sem and ``rel_gap`` = (mean - prediction) / |prediction| to a table of
    seed means. ``z`` is NaN where the seeds have no spread (sem 0: every seed the same value, e.g. at step 0;
    a round-off gap would give +-inf) or one seed: such a point is judged by ``rel_gap`` (:func:`verdict`)."""
    gap = agg["mean"] - agg["prediction"]
    with np.errstate(divide="ignore", invalid="ignore"):
        agg["z"] = np.where(agg["sem"] > 0, gap / agg["sem"].where(agg["sem"] > 0, 1.0), np.nan)
        agg["rel_gap"] = gap / np.abs(agg["prediction"])


def no_spread_agrees(points: pd.DataFrame) -> np.ndarray:
    """(n,) bool: |mean - prediction| <= :data:`REL_TOLERANCE` |prediction| (points whose seeds agree exactly)."""
    gap = np.abs(points["mean"].to_numpy(float) - points["prediction"].to_numpy(float))
    return gap <= REL_TOLERANCE * np.abs(points["prediction"].to_numpy(float))


@dataclasses.dataclass
class Verdict:
    ok: bool
    text: str


CHECK_FAILURES_SHOWN = 3  # failed configurations listed per check in the verdict text


def verdict(table: pd.DataFrame, checks: pd.DataFrame | None = None) -> Verdict:
    """Overall agreement: where a theory is exact, >= 80% of points within 3 SE and max |z| <= 5, and every
    point whose seeds have no spread (sem 0) within a relative gap of :data:`REL_TOLERANCE`; and every check
    row passed.

    Where a theory is an approximation (exact gradient vs the surrogate, leading-order formulas) only
    the relative gap is reported; it never fails the verdict.
    """
    checks = pd.DataFrame() if checks is None else checks
    if table.empty and checks.empty:
        return Verdict(True, "no student of this run is covered by a registered theory")
    lines = []
    ok = True
    for name, g in (table.groupby("theory", sort=False) if not table.empty else ()):
        trusted = g["reliable"].fillna(True).astype(bool) if "reliable" in g else pd.Series(True, g.index)
        unjudged = g[g["exact"] & (g["sem"] > 0) & ~trusted]   # a mean its theory's rule cannot trust
        exact = g[g["exact"] & (g["sem"] > 0) & trusted]
        flat = g[g["exact"] & (g["sem"] == 0)]  # every seed the same value: no z, the relative gap
        approx = g[~g["exact"]]
        if len(exact) or len(flat) or len(unjudged):
            within = float((exact["z"].abs() <= 3).mean()) if len(exact) else 1.0
            worst = float(exact["z"].abs().max()) if len(exact) else 0.0
            flat_ok = no_spread_agrees(flat)
            good = within >= EXACT_AGREEMENT and worst <= Z_TOLERANCE and bool(flat_ok.all())
            ok &= good
            text = [f"{len(exact)} exact points, {within:.0%} within 3 SE, max |z| = {worst:.2f}"] if len(exact) else []
            if len(flat):
                text.append(f"{len(flat)} exact points without spread across seeds, {int(flat_ok.sum())} within "
                            f"relative gap {REL_TOLERANCE:g}, max |rel gap| = {float(flat['rel_gap'].abs().max()):.2e}")
            if len(unjudged):
                text.append(f"{len(unjudged)} exact point{'s' if len(unjudged) > 1 else ''} whose seed mean is not "
                            f"reliable (heavy tail), not judged: max |z| = {float(unjudged['z'].abs().max()):.2f}")
            lines.append(f"{name}: {'; '.join(text)} -> {'AGREES' if good else 'DISAGREES'}")
        if len(approx):
            gap = approx["rel_gap"].abs()
            what = "exact-gradient students vs the signal-only surrogate" if g["exact"].any() or \
                "gradient" not in g else "points where the formula is not exact"
            lines.append(f"{name}: {len(approx)} {what}: median |rel gap| {gap.median():.2e}, "
                         f"max {gap.max():.2e}")
    for name, g in (checks.groupby("check", sort=False) if not checks.empty else ()):
        failed = g[~g["passed"].astype(bool)]
        if name in REPORTED:
            word = "HOLDS" if failed.empty else "DOES NOT HOLD (an informal statement: reported, not failing)"
        else:
            ok &= failed.empty
            word = "PASSES" if failed.empty else "FAILS"
        lines.append(f"{name}: {len(g) - len(failed)}/{len(g)} configurations pass ({int(g['n'].sum())} students) "
                     f"-> {word}")
        shown = failed.head(CHECK_FAILURES_SHOWN)
        lines += [f"  FAILED {row.configuration}: {row.detail}" for row in shown.itertuples()]
        if len(failed) > CHECK_FAILURES_SHOWN:
            lines.append(f"  ... {len(failed) - CHECK_FAILURES_SHOWN} more failed configurations in checks.parquet")
    return Verdict(ok, "\n".join(lines))


def write_comparison(run: str | Path, theories: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Verdict]:
    """Compare a run and run its checks; write ``comparison.parquet``, the summaries (``lines.parquet``)
    and ``checks.parquet`` into it. ``theories``: registry names of theories and checks (default: all)."""
    run = Path(run)
    _check_names(theories)
    load_arrays(run)
    table = pd.DataFrame() if _tables_only(run) else _compare_by_group(run, theories)
    curves = pd.DataFrame() if _tables_only(run) or not _non_table_checks(theories) else _check_curves(run, theories)
    students = store.load(run, "students") if not curves.empty else pd.DataFrame()
    tables = {t: store.read_parquet(run / f"{t}.parquet").to_pandas() for t in set(TABLE_CHECKS.values())
              if (run / f"{t}.parquet").exists()}
    checks = run_checks(students, curves, theories, tables)
    summaries = {name: fn(table, run) for name, fn in SUMMARIES.items()}
    if store.is_run(run):
        if not table.empty:
            store.write_table(table, run / "comparison.parquet")
            for name, frame in summaries.items():
                if not frame.empty:
                    store.write_table(frame, run / f"{name}.parquet")
        if not checks.empty:
            store.write_table(checks, run / "checks.parquet")
    return table, {name: frame for name, frame in summaries.items() if not frame.empty}, verdict(table, checks)
