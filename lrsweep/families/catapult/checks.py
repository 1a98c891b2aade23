"""Seed 003 (lazy / catapult / divergent phases) beside the comparison: checks of
:mod:`lrsweep.families.catapult.theory` against stored runs, registered with :func:`lrsweep.registry.register_check`.

These theories predict each student from its own stored initial values (the train loss and NTK
eigenvalue at step 0), or state inequalities, so they are checks, not seed-mean comparisons:

- ``catapult.uv_phase``: uv-model students (single_point, mse, label 0, 2-layer linear ntk,
  input 1, equal rates, ``phase`` and ``ntk_eig`` logged): the stored phase equals the exact
  recursion's from (L_0, lambda_0, eta, width, steps, diverge_factor).
- ``catapult.theorem1_phase``: linear predictors on degenerate data (classification, degenerate,
  n_train even, 1 layer standard or ntk, exponential or logistic, ``phase`` logged): the stored phase
  equals the exact map's and is one Theorem 1's region allows (:data:`catapult.REGION_PHASES`).
- ``catapult.theorem1_final_loss``: the same students' final train loss equals the exact map's.
- ``catapult.corollary1``: one-hidden-layer linear networks on degenerate data (and the uv model),
  per configuration (every other axis and the seed): among catapult students that converged,
  ``final_sharpness`` and ``final_ntk_eig`` are non-increasing in eta, and sharpness = c ntk_eig.

A mismatch of a per-student prediction is excused only near a boundary: when perturbing the inputs
(eta, L_0, lambda_0) by :data:`BOUNDARY_RTOL` (float32 storage, float32 trajectories) yields the
stored value. Each row reports the share that match and every unexcused mismatch.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from lrsweep.core import config as config_lib
from lrsweep.core.columns import layer_of, lr_columns
from lrsweep.core.architecture import Architecture
from lrsweep.compare import matches_setting
from lrsweep.registry import register_check
from lrsweep.families.catapult import theory as catapult

BOUNDARY_RTOL = 1e-4    # relative perturbation of the inputs under which a mismatch counts as "at a boundary"
FINAL_LOSS_RTOL = 1e-5  # final train loss vs the exact map's range over those perturbations (float32 losses)
CONVERGED_ATOL = 1e-5   # Corollary 1: "converged" = final train loss within this of the minimum
MONOTONE_RTOL = 1e-3    # Corollary 1: a rise smaller than this (relative) is round-off / unfinished convergence
SHARPNESS_RTOL = 1e-2   # Corollary 1: sharpness vs c ntk_eig (Lanczos estimate), plus the O(|f|) term
MISMATCHES_SHOWN = 3

# Fields none of these models reads (the data are fixed, L_0 and lambda_0 carry the init), or that
# only say how a run is computed and logged.
FREE = ("seed", "init", "init_scale", "task.margin", "task.flip_fraction", "task.design", "task.target",
        "task.target_std", "task.n_test", "task.test_noise", "train.steps", "train.log_every", "train.log_steps",
        "train.metrics", "train.sharpness_iters", "train.formulation", "train.diverge_factor",
        "train.schedule_exponent", "train.stable_fraction")
KEY = ["run_id", "student_id"]


def _covered(students: pd.DataFrame, settings: list[dict], free: tuple) -> np.ndarray:
    """Students matching any of ``settings`` (field path -> value), with equal rates on every layer."""
    if students.empty:
        return np.zeros(0, bool)
    mask = np.zeros(len(students), bool)
    for setting in settings:
        mask |= matches_setting(students, setting, free)
    lrs = lr_columns(students)
    if "n_trainable" in students and lrs:
        for col in lrs[1:]:
            used = students["n_trainable"].to_numpy() >= layer_of(col)
            same = np.isclose(students[col].to_numpy(float), students["lr_1"].to_numpy(float), rtol=1e-12)
            mask &= ~used | same
    elif len(lrs) > 1:
        for col in lrs[1:]:
            mask &= np.isclose(students[col].to_numpy(float), students["lr_1"].to_numpy(float), rtol=1e-12)
    return mask


def _settings(**choices) -> list[dict]:
    """Every combination of the listed field values (one value or a tuple each)."""
    keys = list(choices)
    values = [v if isinstance(v, tuple) else (v,) for v in choices.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _initial(curves: pd.DataFrame, column: str) -> pd.Series:
    """Step-0 value of a curve column per (run_id, student_id)."""
    if column not in curves or curves.empty:
        return pd.Series(dtype=float)
    first = curves[curves["step"] == 0]
    return first.set_index(KEY)[column].astype(float)


def _with_initial(students: pd.DataFrame, curves: pd.DataFrame, columns: dict) -> pd.DataFrame:
    """``students`` with step-0 curve values joined as new columns ({new name: curve column})."""
    out = students.set_index(KEY)
    for name, column in columns.items():
        out[name] = _initial(curves, column).reindex(out.index)
    return out.reset_index()


def _group_columns(df: pd.DataFrame, with_seed: bool) -> list[str]:
    """Config columns that vary among the covered students (learning rates excluded), plus the run."""
    fields = [c for c in config_lib.field_columns() if c in df and (with_seed or c != "seed")]
    return [c for c in ["run_id", *fields] if c in df and df[c].astype(str).nunique() > 1]


def _describe(keys: list[str], values) -> str:
    if not keys:
        return "all covered students"
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values))


def _groups(df: pd.DataFrame, with_seed: bool, named=("loss",)):
    """(configuration text, rows) per combination of the varying config columns; ``named`` columns
    are always in the text."""
    keys = _group_columns(df, with_seed)
    keys += [c for c in named if c in df and c not in keys]
    listed = [k for k in keys if isinstance(df[k].iloc[0], (list, tuple, np.ndarray))]  # unhashable cells
    frame = df.assign(**{k: df[k].astype(str) for k in listed})
    for values, g in frame.groupby(keys, sort=True, dropna=False):
        yield _describe(keys, values), df.loc[g.index]


def _perturbations(n_inputs: int):
    """Relative factors for each input: every combination of 1 - r, 1, 1 + r."""
    r = BOUNDARY_RTOL
    return list(itertools.product((1.0 - r, 1.0, 1.0 + r), repeat=n_inputs))


def _phase_rows(df: pd.DataFrame, predict, inputs: list[str], what: str, allowed=None) -> pd.DataFrame:
    """One row per configuration: stored ``phase`` vs ``predict(*inputs_columns, frame)`` (names),
    a mismatch excused where some perturbation of the inputs predicts the stored phase.

    ``allowed(frame, *inputs) -> list of sets`` (optional): phases a statement allows per student;
    a stored phase outside it under every perturbation fails too."""
    rows = []
    for config, g in _groups(df, with_seed=False):
        base = [g[c].to_numpy(float) for c in inputs]
        nominal = predict(g, *base)
        stored = g["phase"].astype(str).to_numpy()
        seen = [set() for _ in range(len(g))]
        allowed_seen = [set() for _ in range(len(g))]
        for factors in _perturbations(len(inputs)):
            args = [b * f for b, f in zip(base, factors)]
            for i, p in enumerate(predict(g, *args)):
                seen[i].add(p)
            if allowed is not None:
                for i, ok in enumerate(allowed(g, *args)):
                    allowed_seen[i] |= set(ok)
        match = stored == nominal
        excused = np.array([s in near for s, near in zip(stored, seen)]) & ~match
        if allowed is not None:
            outside = np.array([s not in ok for s, ok in zip(stored, allowed_seen)])
        else:
            outside = np.zeros(len(g), bool)
        bad = (~match & ~excused) | outside
        detail = f"{int(match.sum())}/{len(g)} match {what}"
        if excused.any():
            detail += f"; {int(excused.sum())} differ within {BOUNDARY_RTOL:g} of a phase boundary"
        if bad.any():
            shown = g[bad].head(MISMATCHES_SHOWN)
            detail += f"; {int(bad.sum())} wrong: " + "; ".join(
                f"seed {r.seed} eta {r.lr_1:.6g}: stored {r.phase}, predicted {p}"
                for r, p in zip(shown.itertuples(), nominal[bad][:MISMATCHES_SHOWN]))
        rows.append({"configuration": config, "n": len(g), "passed": not bad.any(), "detail": detail})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# (a) the uv model
# --------------------------------------------------------------------------------------

UV_SETTINGS = _settings(**{"task.kind": "single_point", "task.label": 0.0, "task.input_dim": 1, "task.n_train": 1,
                           "model.parameterization": "ntk", "model.n_layers": 2, "model.output_dim": 1,
                           "model.activation": "linear", "train.loss": "mse"})


def uv_students(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """The uv-model students with ``loss0`` and ``ntk0`` (step 0) joined; empty if ``phase`` or
    ``ntk_eig`` was not logged."""
    if "phase" not in students or "ntk_eig" not in curves:
        return pd.DataFrame()
    sub = students[_covered(students, UV_SETTINGS, FREE + ("model.width",))]
    if sub.empty:
        return sub
    sub = _with_initial(sub, curves, {"loss0": "train_loss", "ntk0": "ntk_eig"})
    return sub[np.isfinite(sub["loss0"]) & np.isfinite(sub["ntk0"])]


def _uv_predict(g, eta, loss0, ntk0):
    return catapult.uv_phase(loss0, ntk0, eta, g["width"].to_numpy(float), int(g["steps"].iloc[0]),
                             float(g["diverge_factor"].iloc[0]))


def check_uv_phase(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(a) stored phase of uv-model students vs the exact recursion from their L_0 and lambda_0."""
    df = uv_students(students, curves)
    if df.empty:
        return pd.DataFrame()
    return _phase_rows(df, _uv_predict, ["lr_1", "loss0", "ntk0"], "the exact uv recursion")


# --------------------------------------------------------------------------------------
# (b) Theorem 1: linear predictor on degenerate data
# --------------------------------------------------------------------------------------

LINEAR_SETTINGS = _settings(**{"task.kind": "classification", "task.data": "degenerate",
                               "model.parameterization": ("standard", "ntk"), "model.n_layers": 1,
                               "model.output_dim": 1, "train.loss": catapult.DEGENERATE_LOSSES})


def _rate_on_output(df: pd.DataFrame) -> np.ndarray:
    """The rate on f = c w of the 1-layer student: eta c^2 (c = Architecture.output_scale: 1 for
    standard, 1 / sqrt(d) for ntk) -- f' = f - eta c^2 R'(f) with |x| = 1."""
    scale = np.array([Architecture.from_fields(r).output_scale for r in df.to_dict("records")], float)
    return df["lr_1"].to_numpy(float) * scale ** 2


def linear_students(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Theorem 1's students (n_train even: balanced labels) with ``loss0`` and ``eta_f`` (the rate on f)."""
    if "phase" not in students:
        return pd.DataFrame()
    mask = _covered(students, LINEAR_SETTINGS, FREE + ("model.width", "model.activation", "task.input_dim",
                                                      "task.n_train"))
    even = students["n_train"].to_numpy() % 2 == 0 if "n_train" in students else True  # default 128
    sub = students[mask & even]
    if sub.empty:
        return sub
    sub = _with_initial(sub, curves, {"loss0": "train_loss"})
    sub = sub[np.isfinite(sub["loss0"])].copy()
    sub["eta_f"] = _rate_on_output(sub)
    return sub


def _linear_predict(g, eta, loss0):
    return catapult.linear_outcome(loss0, eta, g["loss"].iloc[0], int(g["steps"].iloc[0]),
                                   float(g["diverge_factor"].iloc[0]))["phase"]


def _region_phases(g, eta, loss0):
    region = catapult.theorem1_region(catapult.weight_from_loss(loss0, g["loss"].iloc[0]), eta, g["loss"].iloc[0])
    return [catapult.REGION_PHASES[r] for r in region]


def check_theorem1_phase(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(b) stored phase vs the exact map w' = w - eta R'(w) from L_0, and vs Theorem 1's region."""
    df = linear_students(students, curves)
    if df.empty:
        return pd.DataFrame()
    return _phase_rows(df, _linear_predict, ["eta_f", "loss0"],
                       "the exact GD map (and Theorem 1's region allows them)", allowed=_region_phases)


def check_theorem1_final_loss(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(b) final train loss of the students not divergent vs the exact map's (its range over the
    input perturbations, widened by FINAL_LOSS_RTOL)."""
    df = linear_students(students, curves)
    if df.empty or "final_train_loss" not in df:
        return pd.DataFrame()
    rows = []
    for config, g in _groups(df, with_seed=False):
        loss, steps, factor = g["loss"].iloc[0], int(g["steps"].iloc[0]), float(g["diverge_factor"].iloc[0])
        eta, loss0 = g["eta_f"].to_numpy(float), g["loss0"].to_numpy(float)
        finals = np.stack([catapult.linear_outcome(loss0 * b, eta * a, loss, steps, factor)["final_train_loss"]
                           for a, b in _perturbations(2)])
        nominal = catapult.linear_outcome(loss0, eta, loss, steps, factor)
        stored = g["final_train_loss"].to_numpy(float)
        keep = (g["phase"].astype(str).to_numpy() != "divergent") & (nominal["phase"] != "divergent")
        if not keep.any():
            continue
        lo = np.fmin.reduce(finals, axis=0) * (1 - FINAL_LOSS_RTOL)  # NaN-ignoring min / max
        hi = np.fmax.reduce(finals, axis=0) * (1 + FINAL_LOSS_RTOL)
        inside = (stored >= lo) & (stored <= hi)
        bad = keep & ~inside
        detail = (f"{int((keep & inside).sum())}/{int(keep.sum())} final train losses (students not divergent) "
                  f"within the exact map's range (rtol {FINAL_LOSS_RTOL:g}, inputs +-{BOUNDARY_RTOL:g})")
        if bad.any():
            detail += "; wrong: " + "; ".join(
                f"seed {r.seed} eta {r.lr_1:.6g}: stored {s:.8g}, predicted {p:.8g}" for r, s, p in
                zip(g[bad].head(MISMATCHES_SHOWN).itertuples(), stored[bad], nominal["final_train_loss"][bad]))
        rows.append({"configuration": config, "n": int(keep.sum()), "passed": not bad.any(), "detail": detail})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# (c) Corollary 1: one hidden layer on degenerate data
# --------------------------------------------------------------------------------------

_TWO_LAYER = {"model.parameterization": ("standard", "ntk"), "model.n_layers": 2, "model.output_dim": 1,
              "model.activation": "linear"}
COROLLARY_SETTINGS = (_settings(**{"task.kind": "classification", "task.data": "degenerate",
                                   "train.loss": tuple(catapult.HESSIAN_FACTOR), **_TWO_LAYER})
                      + _settings(**{"task.kind": "single_point", "task.input_dim": 1, "task.n_train": 1,
                                     "train.loss": "mse", **_TWO_LAYER}))
CURVATURE = ("final_sharpness", "final_ntk_eig")


def corollary_students(students: pd.DataFrame) -> pd.DataFrame:
    """Covered students that ended in the catapult phase at the minimum (final loss within
    CONVERGED_ATOL), with ``c`` (Hessian factor), ``gap`` and ``scale`` (the output scale s)."""
    if "phase" not in students or "final_train_loss" not in students or not any(c in students for c in CURVATURE):
        return pd.DataFrame()
    free = FREE + ("model.width", "task.input_dim", "task.n_train", "task.label")
    mask = _covered(students, COROLLARY_SETTINGS, free)
    if "n_train" in students:
        mask &= (students["kind"] == "single_point").to_numpy() | (students["n_train"].to_numpy() % 2 == 0)
    sub = students[mask & (students["phase"].astype(str) == "catapult").to_numpy()].copy()
    if sub.empty:
        return sub
    minimum = np.array([catapult.minimum_loss(r["loss"], r["kind"]) for r in sub.to_dict("records")])
    sub["gap"] = sub["final_train_loss"].to_numpy(float) - minimum
    sub = sub[sub["gap"] <= CONVERGED_ATOL].copy()
    sub["c"] = sub["loss"].map(catapult.HESSIAN_FACTOR).astype(float)
    sub["scale"] = [Architecture.from_fields(r).output_scale for r in sub.to_dict("records")]
    return sub


def _first_rise(eta: np.ndarray, values: np.ndarray) -> str | None:
    """Where sorted-by-eta ``values`` rise by more than MONOTONE_RTOL (text), else None."""
    for i in range(len(values) - 1):
        if values[i + 1] > values[i] * (1 + MONOTONE_RTOL) + 1e-12:
            return f"{values[i]:.6g} at eta {eta[i]:.6g} -> {values[i + 1]:.6g} at eta {eta[i + 1]:.6g}"
    return None


def check_corollary1(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Seed 003 Corollary 1 (informal), per configuration and seed: final sharpness and NTK eigenvalue
    non-increasing in eta among converged catapult students. Reported, not strict: the exact uv
    recursion shows lambda_final falling only up to eta lambda_0 ~ 3.1 and erratic above
    (:mod:`lrsweep.families.catapult.theory`); the detail names the first rise."""
    del curves
    df = corollary_students(students)
    if df.empty:
        return pd.DataFrame()
    rows = []
    for config, g in _groups(df, with_seed=True):
        g = g.sort_values("lr_1")
        eta = g["lr_1"].to_numpy(float)
        notes, rises = [], False
        for col in CURVATURE:
            if col in g and g[col].notna().any():
                rise = _first_rise(eta, g[col].to_numpy(float))
                notes.append(f"{col} {'rises: ' + rise if rise else 'non-increasing'}")
                rises |= rise is not None
        rows.append({"configuration": config, "n": len(g), "passed": not rises,
                     "detail": f"{len(g)} converged catapult students: " + "; ".join(notes)})
    return pd.DataFrame(rows)


def check_hessian_ntk(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """At a minimum the Hessian is c grad f grad f^T (seed 003 Corollary 1's proof), so
    sharpness = c ntk_eig with c = loss''(0) (:data:`lrsweep.families.catapult.theory.HESSIAN_FACTOR`), for
    every converged catapult student (a |f| s sqrt(2 c gap) term allowed for the distance to it)."""
    del curves
    df = corollary_students(students)
    if df.empty or not all(c in df for c in CURVATURE):
        return pd.DataFrame()
    rows = []
    for config, g in _groups(df, with_seed=True):
        eta = g["lr_1"].to_numpy(float)
        ntk, sharp = g["final_ntk_eig"].to_numpy(float), g["final_sharpness"].to_numpy(float)
        c, s = g["c"].to_numpy(float), g["scale"].to_numpy(float)
        gap = np.maximum(g["gap"].to_numpy(float), 1e-6 * np.maximum(1.0, g["final_train_loss"].to_numpy(float)))
        tol = SHARPNESS_RTOL * c * np.abs(ntk) + s * np.sqrt(2.0 * c * gap)
        equal = np.abs(sharp - c * ntk) <= tol
        detail = f"sharpness = c ntk_eig on {int(equal.sum())}/{len(g)} converged catapult students"
        if not equal.all():
            i = int(np.argmin(equal))
            detail += f" (eta {eta[i]:.6g}: sharpness {sharp[i]:.6g}, c ntk_eig {c[i] * ntk[i]:.6g})"
        rows.append({"configuration": config, "n": len(g), "passed": bool(equal.all()), "detail": detail})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# (d) boundaries.parquet (lrsweep boundary) against the closed forms
# --------------------------------------------------------------------------------------

def _boundary_prediction(row: dict) -> float:
    """The theory's rate for one boundary row, or NaN where no theory covers it."""
    frame = pd.DataFrame([row])
    if row["boundary"] == "lazy/catapult" and _covered(frame, UV_SETTINGS, FREE + ("model.width",)).all():
        return float(catapult.uv_lazy_boundary(row["initial_train_loss"], row["initial_ntk_eig"], row["width"]))
    if row["boundary"] == "catapult/divergent" and _covered(frame, UV_SETTINGS, FREE + ("model.width",)).all():
        return float(catapult.uv_divergence_boundary(row["initial_train_loss"], row["initial_ntk_eig"], row["width"],
                                                     int(row["steps"]), float(row["diverge_factor"])))
    free = FREE + ("model.width", "model.activation", "task.input_dim", "task.n_train")
    if (row["boundary"] == "lazy/catapult" and _covered(frame, LINEAR_SETTINGS, free).all()
            and int(row["n_train"]) % 2 == 0):
        w0 = catapult.weight_from_loss(row["initial_train_loss"], row["loss"])
        scale = Architecture.from_fields(row).output_scale  # the rate on f is eta c^2 (_rate_on_output)
        return float(catapult.critical_rate(w0, row["loss"])) / scale ** 2
    return float("nan")


def check_boundaries(table: pd.DataFrame) -> pd.DataFrame:
    """(d) each bracketed boundary of ``lrsweep boundary`` contains the theory's rate (the uv model:
    eta_- from L_0, lambda_0 and m, and the exact recursion's divergence rate for the run's T and
    diverge_factor; Theorem 1: eta_c from L_0), the bracket widened by BOUNDARY_RTOL for float32."""
    if table is None or table.empty or "initial_ntk_eig" not in table:
        return pd.DataFrame()
    df = table[table["bracketed"].astype(bool)].copy()
    if df.empty:
        return pd.DataFrame()
    df["predicted"] = [_boundary_prediction(r) for r in df.to_dict("records")]
    df = df[np.isfinite(df["predicted"])]
    if df.empty:
        return pd.DataFrame()
    rows = []
    for config, g in _groups(df.drop(columns=["seed"]), with_seed=False, named=("boundary",)):
        lo, hi, pred = (g[c].to_numpy(float) for c in ("lr_low", "lr_high", "predicted"))
        inside = (lo * (1 - BOUNDARY_RTOL) <= pred) & (pred <= hi * (1 + BOUNDARY_RTOL))
        ratio = g["lr"].to_numpy(float) / pred
        detail = (f"predicted rate inside the bracket for {int(inside.sum())}/{len(g)}; measured / predicted "
                  f"{ratio.min():.5f}..{ratio.max():.5f}")
        rows.append({"configuration": config, "n": len(g), "passed": bool(inside.all()), "detail": detail})
    return pd.DataFrame(rows)


register_check("catapult.uv_phase", check_uv_phase, curve_columns=("train_loss", "ntk_eig"))
register_check("catapult.theorem1_phase", check_theorem1_phase, curve_columns=("train_loss",))
register_check("catapult.theorem1_final_loss", check_theorem1_final_loss, curve_columns=("train_loss",))
register_check("catapult.hessian_ntk", check_hessian_ntk, curve_columns=())
register_check("catapult.corollary1", check_corollary1, strict=False, curve_columns=())
register_check("catapult.boundaries", check_boundaries, table="boundaries")


# --------------------------------------------------------------------------------------
# (e) Theorem 2: one hidden layer on degenerate data, the exact (f, lambda) map
# --------------------------------------------------------------------------------------

from lrsweep.families.catapult import theorem2  # noqa: E402  (appended section)

FINAL_NTK_RTOL = 1e-3  # final NTK vs the exact map's range over the input perturbations (float32 runs)
BOUND_RTOL = 1e-3      # eta lambda_final <= (2 / c)(1 + BOUND_RTOL): float32 and unfinished convergence

THEOREM2_SETTINGS = _settings(**{"task.kind": "classification", "task.data": "degenerate", "task.input_dim": 1,
                                 "model.parameterization": "ntk", "model.n_layers": 2, "model.output_dim": 1,
                                 "model.activation": "linear", "train.loss": theorem2.THEOREM2_LOSSES})


def theorem2_students(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Theorem 2's students (n_train even) with ``f_sq0`` (f_0^2 from L_0) and ``ntk0`` (step 0)."""
    if "phase" not in students or "ntk_eig" not in curves:
        return pd.DataFrame()
    mask = _covered(students, THEOREM2_SETTINGS, FREE + ("model.width", "task.n_train"))
    even = students["n_train"].to_numpy() % 2 == 0 if "n_train" in students else True
    sub = students[mask & even]
    if sub.empty:
        return sub
    sub = _with_initial(sub, curves, {"loss0": "train_loss", "ntk0": "ntk_eig"})
    sub = sub[np.isfinite(sub["loss0"]) & np.isfinite(sub["ntk0"])].copy()
    sub["f_sq0"] = [float(theorem2.output_from_loss(l0, loss)) for l0, loss in zip(sub["loss0"], sub["loss"])]
    return sub


def _theorem2_outcome(g, eta, f_sq0, ntk0):
    loss = g["loss"].iloc[0]
    loss0 = theorem2.network_risk(f_sq0, loss)
    return theorem2.network_outcome(loss0, ntk0, eta, g["width"].to_numpy(float), loss, int(g["steps"].iloc[0]),
                                    float(g["diverge_factor"].iloc[0]))


def check_theorem2_phase(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(e) stored phase of one-hidden-layer students on degenerate data vs the exact (f, lambda) map
    (:mod:`lrsweep.families.catapult.theorem2`) from their f_0^2 (from L_0) and lambda_0."""
    df = theorem2_students(students, curves)
    if df.empty:
        return pd.DataFrame()
    predict = lambda g, eta, f_sq0, ntk0: _theorem2_outcome(g, eta, f_sq0, ntk0)["phase"]
    return _phase_rows(df, predict, ["lr_1", "f_sq0", "ntk0"], "the exact (f, lambda) map of Theorem 2")


def check_theorem2_final_ntk(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(e) Theorem 2's inverse relation: every student that converged (final loss within CONVERGED_ATOL
    of min R) has eta lambda_final <= 2 / c (2 exponential and mse, 8 logistic; BOUND_RTOL for float32);
    and every student not divergent ends at the exact map's lambda_final (its range over the input
    perturbations, widened by FINAL_NTK_RTOL)."""
    df = theorem2_students(students, curves)
    if df.empty or "final_ntk_eig" not in df or "final_train_loss" not in df:
        return pd.DataFrame()
    rows = []
    for config, g in _groups(df, with_seed=False):
        loss = g["loss"].iloc[0]
        eta, f_sq0, ntk0 = (g[c].to_numpy(float) for c in ("lr_1", "f_sq0", "ntk0"))
        finals = np.stack([_theorem2_outcome(g, eta * a, f_sq0 * b, ntk0 * c)["final_ntk_eig"]
                           for a, b, c in _perturbations(3)])
        nominal = _theorem2_outcome(g, eta, f_sq0, ntk0)
        stored, final_loss = g["final_ntk_eig"].to_numpy(float), g["final_train_loss"].to_numpy(float)
        keep = (g["phase"].astype(str).to_numpy() != "divergent") & (nominal["phase"] != "divergent")
        lo = np.fmin.reduce(finals, axis=0) * (1 - FINAL_NTK_RTOL)
        hi = np.fmax.reduce(finals, axis=0) * (1 + FINAL_NTK_RTOL)
        off = keep & ~((stored >= lo) & (stored <= hi))
        converged = keep & (final_loss - catapult.minimum_loss(loss) <= CONVERGED_ATOL)
        bound = theorem2.final_ntk_bound(loss)
        product = eta * stored
        above = converged & ~(product <= bound * (1 + BOUND_RTOL))
        detail = (f"{int((keep & ~off).sum())}/{int(keep.sum())} final NTK eigenvalues (students not divergent) "
                  f"within the exact map's range (rtol {FINAL_NTK_RTOL:g}, inputs +-{BOUNDARY_RTOL:g}); "
                  f"eta lambda_final <= {bound:g} on {int((converged & ~above).sum())}/{int(converged.sum())} "
                  f"converged students")
        if converged.any():
            detail += f" (max {np.max(product[converged]):.4g})"
        for name, bad, pred in (("off the map", off, nominal["final_ntk_eig"]), ("above the bound", above, None)):
            if bad.any():
                detail += f"; {int(bad.sum())} {name}: " + "; ".join(
                    f"seed {r.seed} eta {r.lr_1:.6g}: lambda_final {s:.6g}" + (f", predicted {p:.6g}" if pred is not None
                                                                                 else f", eta lambda {r.lr_1 * s:.6g}")
                    for r, s, p in zip(g[bad].head(MISMATCHES_SHOWN).itertuples(), stored[bad],
                                       (pred if pred is not None else stored)[bad]))
        rows.append({"configuration": config, "n": int(keep.sum()), "passed": not (off.any() or above.any()),
                     "detail": detail})
    return pd.DataFrame(rows)


register_check("catapult.theorem2_phase", check_theorem2_phase, curve_columns=("train_loss", "ntk_eig"))
register_check("catapult.theorem2_final_ntk", check_theorem2_final_ntk, curve_columns=("train_loss", "ntk_eig"))


# --------------------------------------------------------------------------------------
# (f) Proposition 1 and Table 1: separable and non-separable data
# --------------------------------------------------------------------------------------

from lrsweep.families.catapult import separation  # noqa: E402  (appended section)

MONOTONE_LOSS_RTOL = 1e-6  # Proposition 1: a logged rise smaller than this (relative) is float32 round-off
FLATTER_RTOL = 1e-3        # Table 1: lambda_final below lambda_0 by more than this counts as a flatter end

PROPOSITION1_SETTINGS = _settings(**{"task.kind": "classification", "task.data": "points",
                                     "model.parameterization": ("standard", "ntk"), "model.n_layers": 1,
                                     "model.output_dim": 1, "train.loss": "logistic"})
TABLE1_SETTINGS = _settings(**{"task.kind": "classification", "task.data": ("points", "separable"),
                               "model.output_dim": 1, "model.activation": "linear",
                               "train.loss": catapult.DEGENERATE_LOSSES})


def _separable(df: pd.DataFrame) -> np.ndarray:
    """Per student: its data are linearly separable (``separable`` data; ``points`` by a linear program)."""
    out = np.zeros(len(df), bool)
    cache = {}
    for i, (data, points) in enumerate(zip(df["data"], df["points"] if "points" in df else [None] * len(df))):
        if data == "separable":
            out[i] = True
        elif data == "points" and points is not None:
            if points not in cache:
                cache[points] = separation.is_separable(*separation.parse_points(points))
            out[i] = cache[points]
    return out


def check_proposition1(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(f) seed 003 Proposition 1 (logistic, linear predictor on ``points`` data, separable or not):
    below eta = 2 / L (L = lambda_max(X^T X / n) / 4, the rate on f = c w . x) the logged train loss never
    rises and the phase is lazy."""
    if "phase" not in students or "train_loss" not in curves or "points" not in students:
        return pd.DataFrame()
    free = FREE + ("model.width", "model.activation", "task.input_dim", "task.n_train", "task.points")
    df = students[_covered(students, PROPOSITION1_SETTINGS, free)].copy()
    if df.empty:
        return pd.DataFrame()
    df["eta_f"] = _rate_on_output(df)
    df["rate"] = [separation.proposition1_rate(separation.parse_points(p)[0], "logistic") for p in df["points"]]
    df["separable"] = _separable(df)
    rows = []
    for config, g in _groups(df, with_seed=False, named=("loss", "points")):
        below = g[g["eta_f"] < g["rate"]]
        bad = []
        for r in below.itertuples():
            c = curves[(curves["run_id"] == r.run_id) & (curves["student_id"] == r.student_id)].sort_values("step")
            loss = c["train_loss"].to_numpy(float)
            rises = loss[1:] > loss[:-1] * (1 + MONOTONE_LOSS_RTOL)
            if r.phase != "lazy" or rises.any() or not np.isfinite(loss).all():
                bad.append(f"seed {r.seed} eta {r.lr_1:.6g}: phase {r.phase}, loss rises at "
                           f"{int(np.argmax(rises)) if rises.any() else 'no'} logged step")
        kind = "separable" if g["separable"].all() else "non-separable" if not g["separable"].any() else "mixed"
        detail = (f"{kind} data, 2/L = {g['rate'].iloc[0]:.6g}: {len(below) - len(bad)}/{len(below)} students "
                  f"below it never raise the loss ({len(g) - len(below)} at or above it: no claim)")
        if bad:
            detail += f"; {len(bad)} wrong: " + "; ".join(bad[:MISMATCHES_SHOWN])
        rows.append({"configuration": config, "n": len(below), "passed": not bad, "detail": detail})
    return pd.DataFrame(rows)


def check_table1(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """(f) seed 003 Table 1: on linearly separable data (exponential, logistic; linear networks of any
    depth) no student has a catapult, i.e. none ends in the ``catapult`` phase with its NTK eigenvalue
    below lambda_0 (a flatter end). Students that rose and fell with lambda_final >= lambda_0 are counted
    in the detail (the loss falls to 0 at infinity, not into a flatter minimum)."""
    if "phase" not in students or "ntk_eig" not in curves or "final_ntk_eig" not in students:
        return pd.DataFrame()
    free = FREE + ("model.width", "model.parameterization", "model.n_layers", "task.input_dim", "task.n_train",
                   "task.points")
    df = students[_covered(students, TABLE1_SETTINGS, free)]
    if df.empty:
        return pd.DataFrame()
    df = df[_separable(df)]
    if df.empty:
        return pd.DataFrame()
    df = _with_initial(df, curves, {"ntk0": "ntk_eig"})
    rows = []
    for config, g in _groups(df, with_seed=False):
        rose_fell = g["phase"].astype(str).to_numpy() == "catapult"
        flatter = rose_fell & (g["final_ntk_eig"].to_numpy(float) < g["ntk0"].to_numpy(float) * (1 - FLATTER_RTOL))
        ratio = g["final_ntk_eig"].to_numpy(float) / g["ntk0"].to_numpy(float)
        detail = (f"{int(flatter.sum())}/{len(g)} separable-data students catapult to a flatter end; "
                  f"{int(rose_fell.sum())} rose and fell below L_0")
        if rose_fell.any():
            detail += f" (lambda_final / lambda_0 {np.nanmin(ratio[rose_fell]):.3g}..{np.nanmax(ratio[rose_fell]):.3g})"
        if flatter.any():
            detail += "; wrong: " + "; ".join(f"seed {r.seed} eta {r.lr_1:.6g}: lambda {r.ntk0:.4g} -> {r.final_ntk_eig:.4g}"
                                              for r in g[flatter].head(MISMATCHES_SHOWN).itertuples())
        rows.append({"configuration": config, "n": len(g), "passed": not flatter.any(), "detail": detail})
    return pd.DataFrame(rows)


register_check("catapult.proposition1", check_proposition1, curve_columns=("train_loss",))
register_check("catapult.table1", check_table1, curve_columns=("ntk_eig",))


SIDES = {"lazy/catapult": (lambda p: p == "lazy", lambda p: p != "lazy"),
         "catapult/divergent": (lambda p: p != "divergent", lambda p: p == "divergent")}


def check_theorem2_boundaries(table: pd.DataFrame) -> pd.DataFrame:
    """(e) every bracket of ``lrsweep boundary`` on Theorem 2's students is a bracket of the exact map:
    from the seed's own L_0 and lambda_0 (and the run's T and diverge_factor), the map's phase at
    ``lr_low`` is on the boundary's lower side and at ``lr_high`` on its upper side, each end also
    accepted moved outward by BOUNDARY_RTOL (float32 inputs). Asked of both ends, not "the first switch
    lies inside": for logistic loss at large m lambda_0^2 divergence is not monotone in eta (README,
    window table), and the bisection may land on any switch of its coarse bracket."""
    if table is None or table.empty or "initial_ntk_eig" not in table:
        return pd.DataFrame()
    df = table[table["bracketed"].astype(bool)]
    df = df[_covered(df, THEOREM2_SETTINGS, FREE + ("model.width", "task.n_train"))
            & (df["n_train"].to_numpy() % 2 == 0)] if "n_train" in df else df.iloc[:0]
    if df.empty:
        return pd.DataFrame()
    rows = []
    for config, g in _groups(df.drop(columns=["seed"]), with_seed=False, named=("boundary",)):
        lower, upper = SIDES[g["boundary"].iloc[0]]
        loss, steps, factor = g["loss"].iloc[0], int(g["steps"].iloc[0]), float(g["diverge_factor"].iloc[0])
        loss0, ntk0, width = (g[c].to_numpy(float) for c in ("initial_train_loss", "initial_ntk_eig", "width"))
        phase = lambda eta: theorem2.network_phase(loss0, ntk0, eta, width, loss, steps, factor)
        lo, hi = g["lr_low"].to_numpy(float), g["lr_high"].to_numpy(float)
        low_ok = lower(phase(lo)) | lower(phase(lo * (1 - BOUNDARY_RTOL)))
        high_ok = upper(phase(hi)) | upper(phase(hi * (1 + BOUNDARY_RTOL)))
        ok = low_ok & high_ok
        detail = (f"{int(ok.sum())}/{len(g)} brackets are brackets of the exact map (ends +-{BOUNDARY_RTOL:g}); "
                  f"eta lambda_0 {np.min(g['lr'] * ntk0):.5g}..{np.max(g['lr'] * ntk0):.5g}")
        if not ok.all():
            detail += "; " + "; ".join(
                f"seed {seed}: [{a:.6g}, {b:.6g}] map {p_lo} .. {p_hi}"
                for seed, a, b, p_lo, p_hi in list(zip(df.loc[g.index, "seed"][~ok], lo[~ok], hi[~ok], phase(lo)[~ok],
                                                       phase(hi)[~ok]))[:MISMATCHES_SHOWN])
        rows.append({"configuration": config, "n": len(g), "passed": bool(ok.all()), "detail": detail})
    return pd.DataFrame(rows)


register_check("catapult.theorem2_boundaries", check_theorem2_boundaries, table="boundaries")
