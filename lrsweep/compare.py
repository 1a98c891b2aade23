"""Comparison: join stored runs with registered theory, through the stored results only.

A :class:`Theory` says which students it covers (``matches``) and what it predicts for them at a
logged step (``predict``). :func:`register` adds one; :data:`REGISTRY` starts with every entry of
:data:`lrsweep.theory.THEORIES`. :func:`compare` never changes when a family registers a theory.

Per grid point and step (a point = a student's hyperparameters without the seed) the table holds
the empirical mean and standard error over seeds, the prediction, the residual in standard errors
(``z``) and in relative terms. Per line eta_1 + eta_2 = C and step (:func:`line_summary`): the
empirical and predicted argmin of eta_1, and whether the balanced split is a local minimum.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lrsweep import store
from lrsweep.theory import THEORIES

# Columns that identify a grid point (everything but the seed), when present in the run.
POINT_COLUMNS = ("run_id", "group_id", "parameterization", "n_layers", "width", "input_dim", "n_train", "init",
                 "design", "target", "noise_std", "gradient", "lr_line", "lr_total", "lr_1_fraction")

Z_TOLERANCE = 5.0           # largest |mean - prediction| / standard error allowed where a theory is exact
EXACT_AGREEMENT = 0.8       # share of exact points within 3 SE (seed means of heavy-tailed losses: SE is itself noisy)


@dataclasses.dataclass(frozen=True)
class Theory:
    """A registered prediction.

    Attributes:
      name: registry key, e.g. ``layer_balancing.two_layer``.
      matches: ``students -> bool mask`` of the students the theory covers (any gradient).
      predict: ``(frame, step) -> predictions`` for rows of the students table at a logged step.
      steps: the logged steps it predicts.
      exact_for: ``students -> bool mask`` where the prediction is an exact expectation (so the
        Monte Carlo residual must be within standard errors); elsewhere it is an approximation and
        only the relative gap is reported.
      reference: where the formula comes from.
    """
    name: str
    matches: Callable[[pd.DataFrame], np.ndarray]
    predict: Callable[[pd.DataFrame, int], np.ndarray]
    steps: tuple
    exact_for: Callable[[pd.DataFrame], np.ndarray]
    reference: str = ""


REGISTRY: dict[str, Theory] = {}


def register(theory: Theory) -> Theory:
    """Add a theory (a family's module calls this at import); returns it."""
    REGISTRY[theory.name] = theory
    return theory


def _col(df: pd.DataFrame, name: str, default=None) -> pd.Series:
    return df[name] if name in df else pd.Series(default, index=df.index)


def theory_from_setting(name: str, entry: dict) -> Theory:
    """Adapt a :data:`lrsweep.theory.THEORIES` entry (setting in config vocabulary, fn(eta_1, eta_2, h, steps))."""
    setting = entry["setting"]
    fields = {"model.parameterization": "parameterization", "model.n_layers": "n_layers", "init": "init",
              "task.design": "design", "task.target": "target", "task.noise_std": "noise_std"}

    def matches(df):
        mask = np.ones(len(df), bool)
        for path, col in fields.items():
            if path in setting:
                mask &= (_col(df, col) == setting[path]).to_numpy()
        if setting.get("init") == "orthogonal":  # h = n = d
            mask &= ((df["width"] == df["input_dim"]) & (df["width"] == df["n_train"])).to_numpy()
        mask &= _col(df, "lr_3").isna().to_numpy() if "lr_3" in df else True
        mask &= (_col(df, "teacher_activation", "linear") == "linear").to_numpy()
        mask &= (_col(df, "activation", "linear") == "linear").to_numpy()
        mask &= (_col(df, "init_scale", 1.0) == 1.0).to_numpy()
        if "target_std" in df and setting.get("task.target") == "gaussian":
            default = np.where(df["parameterization"] == "paper_2nn", 1.0 / df["input_dim"],
                               1.0 / np.sqrt(df["width"]))
            mask &= np.isclose(df["target_std"].to_numpy(float), default, rtol=1e-9)
        return mask

    extra = entry.get("extra_args", ())

    def predict(df, step):
        kwargs = {"n": df["n_train"].to_numpy(float), "d": df["input_dim"].to_numpy(float)}
        kwargs = {k: v for k, v in kwargs.items() if k in extra}
        return np.asarray(entry["fn"](df["lr_1"].to_numpy(float), df["lr_2"].to_numpy(float),
                                      df["width"].to_numpy(float), steps=int(step), **kwargs), float)

    def exact_for(df):
        exact = entry.get("exact", False)
        return np.asarray((_col(df, "gradient") == "signal_only").to_numpy() & exact, bool)

    return Theory(name, matches, predict, tuple(entry["steps"]), exact_for, entry.get("reference", ""))


for _name, _entry in THEORIES.items():
    register(theory_from_setting(_name, _entry))


def compare(run: str | Path, theories: list[str] | None = None) -> pd.DataFrame:
    """Per grid point and step: empirical mean/SE over seeds vs every matching theory.

    Args:
      run: a run directory (or a sweep directory: every run below it).
      theories: registry names to use (default: all).
    Returns:
      Columns: the point columns, ``lr_1, lr_2, ...``, ``step, theory, n_seeds, mean, sem,
      prediction, z, rel_gap, exact``.
    """
    curves = store.load(run)
    if curves.empty:
        return pd.DataFrame()
    students = curves.drop_duplicates(["run_id", "student_id"])
    lr_cols = sorted([c for c in curves if c.startswith("lr_") and c[3:].isdigit()], key=lambda c: int(c[3:]))
    frames = []
    for name in theories or list(REGISTRY):
        if name not in REGISTRY:
            raise KeyError(f"theory: unknown '{name}'; registered: {', '.join(REGISTRY)}")
        theory = REGISTRY[name]
        ids = students.loc[theory.matches(students), ["run_id", "student_id"]]
        if ids.empty:
            continue
        sub = curves.merge(ids, on=["run_id", "student_id"])
        sub = sub[sub["step"].isin(theory.steps)]
        if sub.empty:
            continue
        keys = [c for c in POINT_COLUMNS if c in sub and sub[c].notna().any()] + lr_cols + ["step"]
        keys = [k for k in keys if sub[k].notna().all()]
        grouped = sub.groupby(keys, sort=True)["test_loss"]
        agg = grouped.agg(n_seeds="count", mean="mean", std="std").reset_index()
        agg["sem"] = agg["std"] / np.sqrt(agg["n_seeds"])
        agg = agg.drop(columns="std")
        agg["prediction"] = np.nan
        for step, rows in agg.groupby("step"):
            agg.loc[rows.index, "prediction"] = theory.predict(rows, step)
        agg["z"] = (agg["mean"] - agg["prediction"]) / agg["sem"]
        agg["rel_gap"] = (agg["mean"] - agg["prediction"]) / np.abs(agg["prediction"])
        agg["exact"] = theory.exact_for(agg)
        agg.insert(0, "theory", name)
        frames.append(agg)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _line_key(df: pd.DataFrame) -> str:
    return "lr_line" if "lr_line" in df and df["lr_line"].notna().all() else "lr_total"


def _balanced_local_min(eta_1: np.ndarray, loss: np.ndarray, total: float) -> float:
    """On a grid along one line: is the point nearest eta_1 = total/2 below both neighbours?

    Returns NaN when the nearest point is not the balanced split itself or lies at an end.
    """
    order = np.argsort(eta_1)
    eta_1, loss = eta_1[order], loss[order]
    i = int(np.argmin(np.abs(eta_1 - total / 2)))
    if not math.isclose(eta_1[i], total / 2, rel_tol=1e-9) or i == 0 or i == len(eta_1) - 1:
        return float("nan")
    return float(loss[i] < loss[i - 1] and loss[i] < loss[i + 1])


def line_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per theory, line eta_1 + eta_2 = C and step: argmin of eta_1 and balanced local-min verdicts."""
    if table.empty:
        return pd.DataFrame()
    line = _line_key(table)
    group_keys = [c for c in ("theory", "run_id", "width", "n_layers", "gradient", line, "step") if c in table]
    rows = []
    for key, g in table.groupby(group_keys, sort=True):
        eta_1 = g["lr_1"].to_numpy(float)
        total = float((g["lr_1"] + g["lr_2"]).median())
        rec = dict(zip(group_keys, key))
        rec.update(n_points=len(g), argmin_eta_1=eta_1[np.argmin(g["mean"].to_numpy())],
                   predicted_argmin_eta_1=eta_1[np.argmin(g["prediction"].to_numpy())],
                   balanced_local_min=_balanced_local_min(eta_1, g["mean"].to_numpy(), total),
                   predicted_balanced_local_min=_balanced_local_min(eta_1, g["prediction"].to_numpy(), total))
        rows.append(rec)
    return pd.DataFrame(rows)


@dataclasses.dataclass
class Verdict:
    ok: bool
    text: str


def verdict(table: pd.DataFrame) -> Verdict:
    """Overall agreement: where a theory is exact, >= 80% of points within 3 SE and max |z| <= 5.

    Where it is an approximation (exact gradient vs the surrogate, leading-order formulas) only the
    relative gap is reported; it never fails the verdict.
    """
    if table.empty:
        return Verdict(True, "no student of this run is covered by a registered theory")
    lines = []
    ok = True
    for name, g in table.groupby("theory", sort=False):
        exact = g[g["exact"] & (g["sem"] > 0)]
        approx = g[~g["exact"]]
        if len(exact):
            within = float((exact["z"].abs() <= 3).mean())
            worst = float(exact["z"].abs().max())
            good = within >= EXACT_AGREEMENT and worst <= Z_TOLERANCE
            ok &= good
            lines.append(f"{name}: {len(exact)} exact points, {within:.0%} within 3 SE, max |z| = {worst:.2f} "
                         f"-> {'AGREES' if good else 'DISAGREES'}")
        if len(approx):
            gap = approx["rel_gap"].abs()
            what = "exact-gradient students vs the signal-only surrogate" if g["exact"].any() or \
                "gradient" not in g else "points where the formula is not exact"
            lines.append(f"{name}: {len(approx)} {what}: median |rel gap| {gap.median():.2e}, "
                         f"max {gap.max():.2e}")
    return Verdict(ok, "\n".join(lines))


def write_comparison(run: str | Path, theories: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, Verdict]:
    """Compare a run and write ``comparison.parquet`` and ``lines.parquet`` into it."""
    run = Path(run)
    table = compare(run, theories)
    lines = line_summary(table)
    if not table.empty and store.is_run(run):
        store.write_table(table, run / "comparison.parquet")
        store.write_table(lines, run / "lines.parquet")
    return table, lines, verdict(table)
