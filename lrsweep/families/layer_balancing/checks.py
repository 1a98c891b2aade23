"""Layer balancing (seed 000) beside the comparison: which students its theories cover, and the
answers along lines eta_1 + eta_2 = C (where the loss is smallest, whether the balanced split is a
local minimum), from the closed forms and, for runs with stored learning-rate polynomials, exactly
from the experiment's seed means. Registers every entry of :data:`lrsweep.families.layer_balancing.theories.THEORIES`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lrsweep.core import store
from lrsweep.compare import matches_setting
from lrsweep.registry import THEORIES as REGISTRY, Theory, register_summary, register_theory as register
from lrsweep.families.layer_balancing.theories import THEORIES

# Fields a layer-balancing theory leaves free: the seed, sizes (constrained below), how the run is
# computed and logged, the gradient (exact for signal_only; reported as a gap otherwise), and the
# schedule's traced parameters (irrelevant at constant rates, which the setting requires).
FREE = ("seed", "task.input_dim", "task.n_train", "model.width", "model.output_dim", "task.n_test",
        "train.steps", "train.log_every", "train.log_steps", "train.gradient", "train.formulation",
        "train.diverge_factor", "train.metrics", "train.schedule_exponent", "train.stable_fraction")


# What each theory predicts, in words (figure titles; lrsweep.plots.common never shows a registry name).
TITLES = {
    "layer_balancing.two_layer": "exact expected test loss after t GD steps with the signal-only gradient, "
                                 "Gaussian teacher (seed 000 Sec. 5)",
    "layer_balancing.two_layer_orthonormal_target": "exact expected test loss after t GD steps with the signal-only "
                                                    "gradient, teacher Q/\u221ad (seed 000 Sec. 5)",
    "layer_balancing.two_layer_published": "the authors' published test-loss formula, teacher Q/\u221ad "
                                           "(seed 000 Sec. 5)",
    "layer_balancing.two_layer_gaussian_init": "exact expected test loss after one GD step with the signal-only "
                                               "gradient, Gaussian init (seed 000 App. E.2.1)",
    "layer_balancing.three_layer": "exact expected test loss after t GD steps with the signal-only gradient "
                                   "(seed 000 Sec. 5)",
    "layer_balancing.three_layer_published": "the authors' test-loss formula, leading order in 1/h "
                                             "(seed 000 Sec. 5)",
    "layer_balancing.three_layer_gaussian_init": "exact expected test loss after one GD step with the signal-only "
                                                 "gradient, Gaussian init (seed 000 App. E.2.2)",
}


def theory_from_setting(name: str, entry: dict) -> Theory:
    """Adapt a :data:`lrsweep.families.layer_balancing.theories.THEORIES` entry (setting in config vocabulary, fn(eta_1, eta_2, h, steps))."""
    setting = {k: v for k, v in entry["setting"].items() if k != "width"}

    def matches(df):
        if df.empty:
            return np.zeros(0, bool)
        mask = matches_setting(df, setting, FREE)
        if setting.get("init") == "orthogonal":  # h = n = d
            mask &= ((df["width"] == df["input_dim"]) & (df["width"] == df["n_train"])).to_numpy()
        return mask

    extra = entry.get("extra_args", ())

    def predict(df, step):
        kwargs = {"n": df["n_train"].to_numpy(float), "d": df["input_dim"].to_numpy(float)}
        kwargs = {k: v for k, v in kwargs.items() if k in extra}
        return np.asarray(entry["fn"](df["lr_1"].to_numpy(float), df["lr_2"].to_numpy(float),
                                      df["width"].to_numpy(float), steps=int(step), **kwargs), float)

    def exact_for(df):
        exact = entry.get("exact", False)
        return np.asarray((df["gradient"] == "signal_only").to_numpy() & exact, bool) if "gradient" in df \
            else np.zeros(len(df), bool)

    return Theory(name, matches, predict, tuple(entry["steps"]), exact_for, entry.get("reference", ""),
                  TITLES.get(name, ""))


for _name, _entry in THEORIES.items():
    register(theory_from_setting(_name, _entry))


def line_key(df: pd.DataFrame) -> str:
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


# --------------------------------------------------------------------------------------
# Exact answers along a line: the loss restricted to eta_1 + eta_2 = C is a polynomial in eta_1
# --------------------------------------------------------------------------------------

LINE_NODES = 65          # Chebyshev nodes: interpolation is exact for line polynomials of degree <= 64
BALANCED_TOL = 0.01      # |stationary point - C/2| <= 1% of C counts as "at the balanced split"


def line_polynomial(loss_along: Callable[[np.ndarray], np.ndarray], lo: float, hi: float,
                    n_nodes: int = LINE_NODES):
    """The univariate polynomial eta_1 -> loss on [lo, hi], interpolated at Chebyshev points.

    Along a line every loss of a linear student after k GD steps (and every closed form of
    lrsweep.families.layer_balancing.theories) is a polynomial in eta_1; interpolating it at more Chebyshev points than its
    degree recovers it exactly up to rounding, in a well-conditioned basis. Returns a
    ``numpy.polynomial.Chebyshev`` (None if a node value is not finite: a diverged point).
    """
    nodes = np.polynomial.chebyshev.chebpts2(n_nodes)
    eta_1 = lo + (nodes + 1.0) * (hi - lo) / 2.0
    values = np.asarray(loss_along(eta_1), float)
    if not np.all(np.isfinite(values)):
        return None
    poly = np.polynomial.Chebyshev.fit(eta_1, values, n_nodes - 1, domain=[lo, hi])
    scale = np.abs(poly.coef).max()
    return poly.trim(1e-13 * scale) if scale > 0 else poly


def line_argmin(poly, lo: float, hi: float, n_scan: int = 4001) -> float:
    """argmin of the polynomial on [lo, hi]: the root of its derivative next to the best scan point."""
    x = np.linspace(lo, hi, n_scan)
    i = int(np.argmin(poly(x)))
    if i in (0, n_scan - 1):
        return float(x[i])
    d1 = poly.deriv()
    a, b = x[i - 1], x[i + 1]
    if d1(a) > 0 or d1(b) < 0:  # no sign change: the scan point is as good as it gets
        return float(x[i])
    for _ in range(200):  # bisection on p' (monotone bracket), to machine precision
        mid = 0.5 * (a + b)
        if d1(mid) > 0:
            b = mid
        else:
            a = mid
        if b - a <= 1e-15 * max(abs(a), abs(b), 1.0):
            break
    return float(0.5 * (a + b))


def balanced_analysis(poly, balanced: float, total: float, tol: float = BALANCED_TOL) -> dict:
    """Slope and curvature at the balanced split; local minimum iff the curvature is positive and
    the local quadratic's stationary point lies within ``tol * C`` of it (exactly at it for the
    symmetric theory; seed means are symmetric only up to noise)."""
    if poly is None:
        return {"slope": np.nan, "curvature": np.nan, "local_min": np.nan}
    slope, curvature = float(poly.deriv()(balanced)), float(poly.deriv(2)(balanced))
    offset = -slope / curvature if curvature != 0 else np.inf
    return {"slope": slope, "curvature": curvature,
            "local_min": float(curvature > 0 and abs(offset) <= tol * total)}


def _theory_along(theory: Theory, row: pd.DataFrame, step: int, total: float):
    """eta_1 -> the theory's prediction on the line eta_1 + eta_2 = C through ``row`` (a one-row frame)."""
    def along(eta_1):
        frame = row.iloc[np.zeros(len(eta_1), int)].reset_index(drop=True)
        frame["lr_1"], frame["lr_2"] = eta_1, total - eta_1
        return theory.predict(frame, step)
    return along


def line_summary(table: pd.DataFrame, experiment_along: Callable | None = None) -> pd.DataFrame:
    """Per theory, line eta_1 + eta_2 = C and step: where the loss is smallest and whether the
    balanced split eta_1 = eta_2 is a local minimum, for experiment and theory.

    Read off the grid (``argmin_eta_1``, ``balanced_local_min_grid``) and exactly from the line
    polynomials: the theory's closed form always (``predicted_*``); the experiment's seed mean
    when ``experiment_along(rows, step, total)`` returns a callable eta_1 -> loss (runs with stored
    learning-rate polynomials, :mod:`lrsweep.core.poly`), else the grid answer is used for it.
    """
    if not table.empty:  # the comparison table holds every family's rows; lines are layer balancing's
        table = table[table["theory"].str.startswith("layer_balancing.")]
    if table.empty:
        return pd.DataFrame()
    line = line_key(table)
    group_keys = [c for c in ("theory", "run_id", "width", "n_layers", "gradient", line, "step") if c in table]
    rows = []
    for key, g in table.groupby(group_keys, sort=True):
        eta_1 = g["lr_1"].to_numpy(float)
        total = float((g["lr_1"] + g["lr_2"]).median())
        lo, hi, balanced = float(eta_1.min()), float(eta_1.max()), total / 2
        rec = dict(zip(group_keys, key))
        step = int(rec["step"])
        grid_local_min = _balanced_local_min(eta_1, g["mean"].to_numpy(), total)
        rec.update(n_points=len(g), argmin_eta_1=eta_1[np.argmin(g["mean"].to_numpy())],
                   balanced_local_min_grid=grid_local_min)
        theory_poly = line_polynomial(_theory_along(REGISTRY[rec["theory"]], g.iloc[:1], step, total), lo, hi) \
            if hi > lo else None
        predicted = balanced_analysis(theory_poly, balanced, total)
        grid_argmin = rec["argmin_eta_1"]
        # the experiment's grid argmin is the theory's best grid point (ties: symmetric lines)
        on_grid = theory_poly(np.sort(eta_1)) if theory_poly is not None else None
        rec["argmin_matches"] = (float(theory_poly(grid_argmin) <= on_grid.min() + 1e-9 * abs(on_grid.min()))
                                 if theory_poly is not None else np.nan)
        rec.update(predicted_argmin_eta_1=line_argmin(theory_poly, lo, hi) if theory_poly is not None else np.nan,
                   predicted_balanced_slope=predicted["slope"], predicted_balanced_curvature=predicted["curvature"],
                   predicted_balanced_local_min=predicted["local_min"])
        along = experiment_along(g, step, total) if experiment_along is not None and hi > lo else None
        exp_poly = line_polynomial(along, lo, hi) if along is not None else None
        if exp_poly is not None:
            measured = balanced_analysis(exp_poly, balanced, total)
            rec.update(exact_argmin_eta_1=line_argmin(exp_poly, lo, hi), balanced_slope=measured["slope"],
                       balanced_curvature=measured["curvature"], balanced_local_min=measured["local_min"],
                       line_method="polynomial")
        else:
            rec.update(exact_argmin_eta_1=np.nan, balanced_slope=np.nan, balanced_curvature=np.nan,
                       balanced_local_min=grid_local_min, line_method="grid")
        rows.append(rec)
    return pd.DataFrame(rows)


def polynomial_lines(run: str | Path) -> Callable | None:
    """``experiment_along`` for :func:`line_summary` from a run's stored learning-rate polynomials.

    The seed mean of the test loss on a line is the mean of the instances' polynomials
    (:func:`lrsweep.core.poly.evaluate`), so its argmin and the derivatives at the balanced split are
    exact. None when the run stored no coefficients (grid mode).
    """
    from lrsweep.core import poly
    run = Path(run)
    if not store.is_run(run) or not store.marked_parts(run, "poly"):
        return None

    instances = []  # the coefficients, read once for every line

    def along(rows: pd.DataFrame, step: int, total: float):
        if "group_id" not in rows or rows["group_id"].nunique() != 1 or "lr_3" in rows and rows["lr_3"].notna().any():
            return None
        gid = int(rows["group_id"].iloc[0])

        def loss(eta_1):
            if not instances:
                instances.extend(poly.read_instances(run))
            mine = [i for i in instances if i.group_id == gid and i.n_vars == 2]  # the rows evaluate keeps of gid
            if not mine:
                poly.evaluate_instances(instances, step, run=run, lr_1=eta_1, lr_2=total - eta_1)  # raises if no group has 2
                return np.full(len(eta_1), np.nan)
            losses = poly.instance_test_losses(mine, step, lr_1=eta_1, lr_2=total - eta_1)  # (instances, points)
            # the seed mean as pandas takes it (what the rows of poly.evaluate, instance-major, gave)
            values = pd.DataFrame({"point": np.tile(np.arange(losses.shape[1]), len(losses)), "test_loss": losses.ravel()})
            return values.groupby("point")["test_loss"].mean().to_numpy()
        return loss
    return along




def lines_text(lines: pd.DataFrame, run) -> str:
    """What ``lrsweep compare`` prints of the per-line summary."""
    line = "lr_line" if "lr_line" in lines else "lr_total"
    agree = (lines["balanced_local_min"] == lines["predicted_balanced_local_min"])
    known = lines["balanced_local_min"].notna()
    how = "exact line polynomials" if (lines.get("line_method") == "polynomial").all() else "the grid"
    return (f"lines eta_1 + eta_2 = C ({how}): balanced split local-min verdict matches theory on "
            f"{int(agree[known].sum())}/{int(known.sum())} (line, step) pairs; argmin eta_1 matches on "
            f"{int((lines['argmin_matches'] == 1).sum())}/{int(lines['argmin_matches'].notna().sum())} "
            f"(per-line table: {run}/lines.parquet, by {line})")


register_summary("lines", lambda table, run: line_summary(table, polynomial_lines(run)), lines_text)
