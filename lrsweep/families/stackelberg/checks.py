"""Seed 002 against stored runs: the best-response run as the limit of large head/body ratios,
steps to a target loss, and the curvature of Phi beside the loss's (through stored curves only).

Every function takes the frames of :func:`lrsweep.core.store.load` (``students``: one row per student;
``curves``: one row per student and logged step, joined with the student columns).

- :func:`twin_ids`: each student's best-response twin: the student of the same run with the same
  instance, body rate and every other field, but ``train.head: best_response``.
- :func:`distance_table`: per gd-head student, its distance to its twin's trajectory, in the loss
  curve and in the body's weights (the ``body_sketch`` metric).
- :func:`steps_to_target`: per student, the first logged step whose train loss is at or below a
  target (interpolated in log loss between logged steps).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrsweep.core import config as config_lib
from lrsweep.core.columns import lr_columns, row_codes
from lrsweep.families.stackelberg import theory as stackelberg
from lrsweep import registry

TWIN_FREE = ("head", "update", "head_steps")  # what a best-response twin may differ in, besides the head's rate


def _head_rate(students: pd.DataFrame) -> np.ndarray:
    """lr_m of each student (m = n_trainable: the head's rate)."""
    m = students["n_trainable"].to_numpy(int)
    return np.array([students[f"lr_{k}"].iloc[i] for i, k in enumerate(m)], float)


def twin_key(students: pd.DataFrame) -> pd.Series:
    """A group key equal for a student and its best-response twin: every student column except
    :data:`TWIN_FREE` and the head's rate lr_m."""
    cols = [c for c in config_lib.student_columns(students) if c not in TWIN_FREE]
    frame = students[cols].copy()
    m = students["n_trainable"].to_numpy(int)
    for k in np.unique(m):
        frame.loc[m == k, f"lr_{k}"] = np.nan
    return pd.Series(row_codes([frame[c] for c in cols])[0], index=students.index)


def twin_ids(students: pd.DataFrame) -> pd.Series:
    """student_id -> the student_id of its best-response twin (NaN where the run has none); a
    best-response student is its own twin."""
    key = twin_key(students)
    best = students["head"].to_numpy() == "best_response"
    lookup = dict(zip(key[best], students["student_id"][best]))
    return pd.Series([lookup.get(k, np.nan) for k in key], index=students["student_id"].to_numpy(), name="twin_id")


def _sketch_columns(curves: pd.DataFrame) -> list[str]:
    return sorted((c for c in curves.columns if c.startswith("body_sketch_")), key=lambda c: int(c.rsplit("_", 1)[1]))


def distance_table(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per gd-head student that has a best-response twin: ``student_id``, ``twin_id``, ``lr_body``,
    ``lr_ratio``; ``loss_distance`` = max over logged steps t >= 1 of |L_r(t) - L_BR(t)| / L_r(0) (step 0
    is left out: there the gap is the initial head's, whatever the ratio) and ``final_loss_distance`` at
    the last step; ``body_distance`` = max_t ||M_r(t) - M_BR(t)|| / ||M_BR(0)|| and
    ``final_body_distance`` from the ``body_sketch`` columns (NaN without them); ``diverged`` (either run
    diverged: distances NaN). Frames of several runs: each run's rows, paired within the run, with ``run_id``."""
    if "run_id" in students and students["run_id"].nunique() > 1:
        return pd.concat([distance_table(s, c).assign(run_id=s["run_id"].iloc[0]) for s, c in _per_run(students, curves)],
                         ignore_index=True)
    twins = twin_ids(students)
    has_twin = twins.reindex(students["student_id"]).notna().to_numpy()
    gd = students[(students["head"] == "gd").to_numpy() & has_twin]
    diverged_ids = set(students.loc[students.get("diverged", pd.Series(False, index=students.index)).astype(bool),
                                    "student_id"])
    sketch = _sketch_columns(curves)
    needed = curves[["student_id", "step", "train_loss", *sketch]]  # the joined student columns: not merged
    by_id = {sid: frame.drop(columns="student_id").sort_values("step") for sid, frame in needed.groupby("student_id")}
    rows = []
    for (_, s), ratio in zip(gd.iterrows(), _head_rate(gd) / gd["lr_1"].to_numpy(float)):
        sid, tid = int(s["student_id"]), int(twins[s["student_id"]])
        both = by_id[sid].merge(by_id[tid], on="step", suffixes=("", "_br"))
        gap = np.abs(both["train_loss"] - both["train_loss_br"]).to_numpy() / both["train_loss"].iloc[0]
        body = np.full(len(both), np.nan)
        if sketch:
            ref = both[[f"{c}_br" for c in sketch]].to_numpy()
            body = np.sqrt(((both[sketch].to_numpy() - ref) ** 2).sum(1)) / np.sqrt((ref[0] ** 2).sum())
        diverged = sid in diverged_ids or tid in diverged_ids
        rows.append({"student_id": sid, "twin_id": tid, "lr_body": float(s["lr_1"]), "lr_ratio": float(ratio),
                     "loss_distance": np.nan if diverged else float(np.max(gap[1:], initial=0.0)),
                     "final_loss_distance": np.nan if diverged else float(gap[-1]),
                     "body_distance": np.nan if diverged else float(np.max(body)),
                     "final_body_distance": np.nan if diverged else float(body[-1]),
                     "diverged": diverged})
    return pd.DataFrame(rows, columns=["student_id", "twin_id", "lr_body", "lr_ratio", "loss_distance",
                                       "final_loss_distance", "body_distance", "final_body_distance", "diverged"])


def steps_to_target(curves: pd.DataFrame, target: float) -> pd.Series:
    """student_id (``(run_id, student_id)`` for frames of several runs) -> the first step at which the train
    loss reaches ``target`` (log-linear interpolation between the logged steps around the crossing; inf
    where it never does, 0 if it starts there)."""
    out = {}
    keys = ["run_id", "student_id"] if "run_id" in curves and curves["run_id"].nunique() > 1 else "student_id"
    for sid, frame in curves.groupby(keys):
        frame = frame.sort_values("step")
        steps, loss = frame["step"].to_numpy(float), frame["train_loss"].to_numpy(float)
        hit = np.flatnonzero(loss <= target)
        if not hit.size:
            out[sid] = np.inf
        elif hit[0] == 0:
            out[sid] = 0.0
        else:
            i = hit[0]
            l0, l1 = np.log(loss[i - 1]), np.log(max(loss[i], np.finfo(float).tiny))
            frac = (l0 - np.log(target)) / (l0 - l1) if l0 != l1 else 1.0
            out[sid] = steps[i - 1] + frac * (steps[i] - steps[i - 1])
    return pd.Series(out, name="steps_to_target")


# ------------------------------------------------------------------------------------------------
# Summaries (README tables) and the checks registered with lrsweep.compare
# ------------------------------------------------------------------------------------------------

EARLY_FRACTION = 0.1      # "early": logged steps t <= EARLY_FRACTION * T (at least the first logged step)
TARGET_FRACTION = 0.1     # equal budget: the target loss is max(TARGET_FRACTION L_0, sqrt(L_0 L_min))
BOUND_RTOL = {"float64": 1e-6, "float32": 1e-4}  # curvature bound: Lanczos estimates and the stored precision
BOUND_ATOL = 1e-9
EXPONENT = stackelberg.statements()["distance_ratio_exponent"]["value"]


def _per_run(students: pd.DataFrame, curves: pd.DataFrame):
    """(students, curves) of each run of the frames (student ids are unique within a run only)."""
    if "run_id" not in students or students["run_id"].nunique() <= 1:
        yield students, curves
        return
    for run_id, s in students.groupby("run_id", sort=True):
        yield s, curves[curves["run_id"] == run_id]


HOW = ("formulation", "mode")  # how a student is computed (the formulations agree): never part of a label


def _labels(frame: pd.DataFrame, drop: tuple = (), rates: bool = False) -> pd.Series:
    """Per row, the configuration as text: the config fields (and run_id, with several runs) whose values
    vary among the rows of ``frame``, but the seed, :data:`HOW` and ``drop``; with ``rates``, the rates too
    (lr_body and lr_ratio where stored, else lr_1..lr_m). "all students" when none vary."""
    cols = ["run_id", *config_lib.field_columns()]
    if rates:
        cols += (["lr_body", "lr_ratio"] if {"lr_body", "lr_ratio"} <= set(frame)
                 else lr_columns(frame))
    cols = [c for c in cols if c in frame and c != "seed" and c not in HOW and c not in drop]
    text = frame[cols].astype(str)
    varying = [c for c in cols if text[c].nunique() > 1]
    if not varying:
        return pd.Series("all students", index=frame.index)
    return text[varying].apply(lambda r: ", ".join(f"{c}={v}" for c, v in r.items()), axis=1)


def seed_distances(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """:func:`distance_table` of every run, with ``run_id``, ``seed``, ``twin_diverged`` (the best-response
    twin diverged: no reference) and ``configuration`` (every varying config field but the seed and the head's
    rate: a gd student's update rule is part of it)."""
    frames = []
    for s, c in _per_run(students, curves):
        if "head" not in s or not (s["head"] == "best_response").any():
            continue
        d = distance_table(s, c)
        if d.empty:
            continue
        keep = s.set_index("student_id")
        d["run_id"] = keep["run_id"].reindex(d["student_id"]).to_numpy() if "run_id" in keep else ""
        d["seed"] = keep["seed"].reindex(d["student_id"]).to_numpy()
        flag = keep["diverged"].astype(bool) if "diverged" in keep else pd.Series(False, index=keep.index)
        d["twin_diverged"] = flag.reindex(d["twin_id"]).to_numpy(bool)
        labels = ("lr_body", "lr_ratio", "seed", "run_id", "diverged", "diverged_step")
        frames.append(d.merge(s.drop(columns=[c for c in labels if c in s]), on="student_id", how="left"))
    if not frames:
        return pd.DataFrame()
    d = pd.concat(frames, ignore_index=True)
    d["configuration"] = _labels(d, drop=("head",))
    return d


def _distance_metric(g: pd.DataFrame) -> str:
    return "body_distance" if g["body_distance"].notna().any() else "loss_distance"


def distance_summary(students: pd.DataFrame, curves: pd.DataFrame, seeds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per configuration, body rate and ratio: ``n_seeds`` (those whose best-response twin did not diverge;
    ``n_no_reference`` the others, left out), ``n_diverged`` (of the gd students), the seed means (over the
    seeds that did not diverge) of ``body_distance``, ``loss_distance`` and their final values, and ``metric``:
    which distance the checks read (``body_distance`` where the run logged ``body_sketch``). ``seeds``: the
    :func:`seed_distances` of the frames, if already computed."""
    d = seed_distances(students, curves) if seeds is None else seeds
    columns = ["configuration", "lr_body", "lr_ratio", "n_seeds", "n_no_reference", "n_diverged", "metric", "body_distance",
               "loss_distance", "final_body_distance", "final_loss_distance"]
    if d.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for (config, body), g in d.groupby(["configuration", "lr_body"], sort=True):
        metric = _distance_metric(g)
        for ratio, r_all in g.groupby("lr_ratio", sort=True):
            r = r_all[~r_all["twin_diverged"]]
            ok = r[~r["diverged"].astype(bool)]
            rows.append({"configuration": config, "lr_body": body, "lr_ratio": ratio, "n_seeds": len(r),
                         "n_no_reference": int(r_all["twin_diverged"].sum()),
                         "n_diverged": int(r["diverged"].astype(bool).sum()), "metric": metric,
                         **{c: float(ok[c].mean()) if len(ok) else np.nan for c in columns[-4:]}})
    return pd.DataFrame(rows, columns=columns)


def seed_slope(points: pd.DataFrame, metric: str) -> tuple[float, float]:
    """(mean, standard error) over seeds of each seed's fitted exponent (:func:`lrsweep.families.stackelberg.theory.fit_exponent`
    of ``metric`` against ``lr_ratio``): each seed's own offset drops out. One seed: its fit's own SE."""
    fits = [stackelberg.fit_exponent(g["lr_ratio"], g[metric]) for _, g in points.groupby(["run_id", "seed"])]
    slopes = np.array([f[0] for f in fits if np.isfinite(f[0])])
    if len(slopes) == 0:
        return np.nan, np.nan
    if len(slopes) == 1:
        return float(slopes[0]), float(fits[0][1])
    return float(slopes.mean()), float(slopes.std(ddof=1) / np.sqrt(len(slopes)))


def distance_fits(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per configuration and body rate, over the ratios at which no seed diverged (sorted): ``ratios``,
    ``distances`` (seed means of ``metric``), ``decreasing`` (strictly, ratio by ratio; None with fewer
    than two ratios), ``first_rise`` (the ratio where it first does not decrease), and the exponent of
    :func:`seed_slope` over the largest half of those ratios (at least two): ``slope``, ``se``,
    ``fit_ratios``; ``n_no_reference`` (seeds left out: their best-response run diverged); ``diverged_ratios``."""
    seeds = seed_distances(students, curves)
    summary = distance_summary(students, curves, seeds)
    rows = []
    for (config, body), g in summary.groupby(["configuration", "lr_body"], sort=True):
        metric = g["metric"].iloc[0]
        clean = g[(g["n_diverged"] == 0) & (g["n_seeds"] > 0) & g[metric].notna()].sort_values("lr_ratio")
        ratios, dist = clean["lr_ratio"].to_numpy(float), clean[metric].to_numpy(float)
        steps = np.diff(dist)
        decreasing = bool(np.all(steps < 0)) if len(dist) >= 2 else None
        first_rise = float(ratios[1:][np.argmax(steps >= 0)]) if decreasing is False else np.nan
        fit = ratios[len(ratios) - max(2, -(-len(ratios) // 2)):] if len(ratios) >= 2 else ratios[:0]
        pts = seeds[(seeds["configuration"] == config) & (seeds["lr_body"] == body) & seeds["lr_ratio"].isin(fit)
                    & ~seeds["twin_diverged"]]
        slope, se = seed_slope(pts, metric)
        n = int((g["n_seeds"] + g["n_no_reference"]).sum())
        rows.append({"configuration": config, "lr_body": body, "metric": metric, "n": n,
                     "ratios": ratios, "distances": dist, "decreasing": decreasing, "first_rise": first_rise,
                     "slope": slope, "se": se, "fit_ratios": fit, "n_no_reference": int(g["n_no_reference"].max()),
                     "diverged_ratios": g.loc[g["n_diverged"] > 0, "lr_ratio"].to_numpy(float)})
    return pd.DataFrame(rows, columns=["configuration", "lr_body", "metric", "n", "ratios", "distances", "decreasing",
                                       "first_rise", "slope", "se", "fit_ratios", "n_no_reference", "diverged_ratios"])


def _ratios_text(ratios) -> str:
    return ", ".join(f"{r:g}" for r in ratios)


def check_distance_vs_ratio(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``stackelberg.distance_vs_ratio``: per configuration and body rate, the distance to the best-response
    run decreases strictly with the ratio over the ratios where no seed diverged; the exponent fitted over
    the largest half of them is reported against -1 (:func:`lrsweep.families.stackelberg.theory.statements`)."""
    rows = []
    for _, f in distance_fits(students, curves).iterrows():
        where = f"{f['configuration']}, lr_body={f['lr_body']:g}"
        if f["decreasing"] is None:
            if f["n_no_reference"] and not len(f["ratios"]):  # the reference itself is missing: say so
                rows.append({"configuration": where, "n": f["n"], "passed": False,
                             "detail": f"the best-response run diverged in all {f['n_no_reference']} seeds: no reference"})
            continue
        dist = "; ".join(f"{r:g}: {d:.3g}" for r, d in zip(f["ratios"], f["distances"]))
        trend = "decreasing" if f["decreasing"] else f"not decreasing at ratio {f['first_rise']:g}"
        z = (f["slope"] - EXPONENT) / f["se"] if f["se"] > 0 else np.nan
        detail = (f"{f['metric']} by ratio {dist} ({trend}); exponent {f['slope']:+.3f} +- {f['se']:.3f} over ratios "
                  f"{_ratios_text(f['fit_ratios'])} (theory {EXPONENT:g}, z = {z:+.1f})")
        if len(f["diverged_ratios"]):
            detail += f"; diverged at ratios {_ratios_text(f['diverged_ratios'])}"
        if f["n_no_reference"]:
            detail += f"; {f['n_no_reference']} seeds left out (their best-response run diverged)"
        rows.append({"configuration": where, "n": f["n"],
                     "passed": bool(f["decreasing"]), "detail": detail})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


def _precision(column: pd.Series) -> str:
    return "float32" if column.dtype == np.float32 else "float64"


def check_curvature_bound(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``stackelberg.curvature_bound``: on best-response students, phi_sharpness <= sharpness (1 + rtol) +
    1e-9 at every logged step (rtol :data:`BOUND_RTOL` of the stored precision): Hess Phi is a Schur
    complement of the full Hessian's body block (:func:`lrsweep.families.stackelberg.theory.statements`)."""
    need = {"phi_sharpness", "sharpness", "head"}
    if curves.empty or not need <= set(curves):
        return pd.DataFrame(columns=list(registry.CHECK_COLUMNS))
    br = curves[(curves["head"] == "best_response") & curves["phi_sharpness"].notna() & curves["sharpness"].notna()]
    if br.empty:
        return pd.DataFrame(columns=list(registry.CHECK_COLUMNS))
    rtol = BOUND_RTOL[_precision(curves["sharpness"])]
    br = br.assign(configuration=_labels(br, rates=True))
    rows = []
    for config, g in br.groupby("configuration", sort=True):
        phi, sharp = g["phi_sharpness"].to_numpy(float), g["sharpness"].to_numpy(float)
        bad = phi > sharp * (1.0 + rtol) + BOUND_ATOL
        ratio = phi / np.where(sharp != 0, sharp, np.nan)
        detail = (f"phi_sharpness / sharpness at most {np.nanmax(ratio):.4g} over {len(g)} logged steps "
                  f"(bound 1, rtol {rtol:g})")
        if bad.any():
            worst = g.iloc[int(np.argmax(np.where(bad, ratio, -np.inf)))]
            detail += (f"; {int(bad.sum())} steps above it, e.g. student {int(worst['student_id'])} step "
                       f"{int(worst['step'])}: {worst['phi_sharpness']:.6g} > {worst['sharpness']:.6g}")
        rows.append({"configuration": config, "n": g["student_id"].nunique() if "run_id" not in g
                     else g[["run_id", "student_id"]].drop_duplicates().shape[0],
                     "passed": not bad.any(), "detail": detail})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


def curvature_summary(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Per configuration (every varying field but the seed: the head rule and the rates in it): the mean over
    seeds of phi_sharpness, sharpness and their ratio early (logged steps t <= EARLY_FRACTION T, at least
    the first) and late (the last logged step): ``phi_early, sharpness_early, ratio_early, phi_late,
    sharpness_late, ratio_late``, ``early_steps`` (the last early step), ``n_seeds``. Where the run logged
    ``body_sharpness`` (L_MM, the body block of the loss's Hessian at the current head), the same against it:
    ``body_sharpness_early, body_ratio_early, body_sharpness_late, body_ratio_late`` (NaN otherwise)."""
    columns = ["configuration", "head", "lr_body", "lr_ratio", "n_seeds", "early_steps", "phi_early",
               "sharpness_early", "ratio_early", "phi_late", "sharpness_late", "ratio_late",
               "body_sharpness_early", "body_ratio_early", "body_sharpness_late", "body_ratio_late"]
    if curves.empty or not {"phi_sharpness", "sharpness"} <= set(curves):
        return pd.DataFrame(columns=columns)
    c = curves[curves["phi_sharpness"].notna() & curves["sharpness"].notna()]
    if c.empty:
        return pd.DataFrame(columns=columns)
    body = c["body_sharpness"] if "body_sharpness" in c else pd.Series(np.nan, index=c.index)
    c = c.assign(configuration=_labels(c, rates=True), ratio=c["phi_sharpness"] / c["sharpness"],
                 body_sharpness=body, body_ratio=c["phi_sharpness"] / body)
    rows = []
    for config, g in c.groupby("configuration", sort=True):
        first, last = g["step"].min(), g["step"].max()
        early_end = max(first, EARLY_FRACTION * g["steps"].max())
        early, late = g[g["step"] <= early_end], g[g["step"] == last]
        # per student first (several early steps), then over seeds
        e = early.groupby(["run_id", "student_id"] if "run_id" in g else ["student_id"])[
            ["phi_sharpness", "sharpness", "ratio", "body_sharpness", "body_ratio"]].mean()
        rows.append({"configuration": config, "head": g["head"].iloc[0],
                     "lr_body": g["lr_body"].iloc[0] if "lr_body" in g else g["lr_1"].iloc[0],
                     "lr_ratio": g["lr_ratio"].iloc[0] if "lr_ratio" in g else np.nan,
                     "n_seeds": len(e), "early_steps": int(early["step"].max()),
                     "phi_early": e["phi_sharpness"].mean(), "sharpness_early": e["sharpness"].mean(),
                     "ratio_early": e["ratio"].mean(), "phi_late": late["phi_sharpness"].mean(),
                     "sharpness_late": late["sharpness"].mean(), "ratio_late": late["ratio"].mean(),
                     "body_sharpness_early": e["body_sharpness"].mean(), "body_ratio_early": e["body_ratio"].mean(),
                     "body_sharpness_late": late["body_sharpness"].mean(), "body_ratio_late": late["body_ratio"].mean()})
    return pd.DataFrame(rows, columns=columns)


SHARPER_AGAINST = "sharpness"  # the seed's "than the original objective": L's Hessian over every weight
SHARPER_RATIO = {"sharpness": "ratio", "body_sharpness": "body_ratio"}  # its curvature_summary column stem


def check_sharper_early(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``stackelberg.sharper_early`` (the seed's claim, reported): on gd-head students, phi_sharpness /
    sharpness early in training (:func:`curvature_summary`) is above 1; the detail gives it beside the late
    ratio (the seed: "especially early"). The verdict is judged against ``sharpness``, the top eigenvalue of
    the full Hessian of L over body and head (:data:`SHARPER_AGAINST`: the seed compares Phi with the original
    objective, whose variables are both); where the run logged ``body_sharpness``, the detail shows the ratio
    against the body block L_MM too (the same coordinates as Hess Phi), which is not judged."""
    summary = curvature_summary(students, curves)
    summary = summary[summary["head"] == "gd"]
    rows = []
    judged = SHARPER_RATIO[SHARPER_AGAINST]
    for _, s in summary.iterrows():
        holds = bool(s[f"{judged}_early"] > 1.0)
        detail = (f"phi_sharpness / sharpness {s['ratio_early']:.3g} early (t <= {s['early_steps']}: "
                  f"{s['phi_early']:.4g} vs {s['sharpness_early']:.4g}), {s['ratio_late']:.3g} at the "
                  f"end ({'higher' if s['ratio_early'] > s['ratio_late'] else 'not higher'} early)")
        if np.isfinite(s["body_ratio_early"]):
            detail += (f"; judged against {SHARPER_AGAINST}; against the body block body_sharpness: "
                       f"{s['body_ratio_early']:.3g} early ({s['phi_early']:.4g} vs {s['body_sharpness_early']:.4g}), "
                       f"{s['body_ratio_late']:.3g} at the end")
        rows.append({"configuration": s["configuration"], "n": int(s["n_seeds"]), "passed": holds, "detail": detail})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


def equal_budget_summary(students: pd.DataFrame, curves: pd.DataFrame, fraction: float = TARGET_FRACTION) -> pd.DataFrame:
    """Per configuration and lr_total (students with lr_total and a finite lr_ratio: (m - 1) eta_body +
    eta_head = C; only where every ratio of the configuration shares the total, as in an lr_total x lr_ratio
    grid, and not by coincidence in an lr_body x lr_ratio one), per ratio: the median over seeds of the steps to the target (:func:`steps_to_target`;
    inf where the student diverged or never reaches it) and how many seeds reach it. The target is per seed
    (all ratios of a seed share the init, so L_0): max(``fraction`` L_0, sqrt(L_0 L_min)), L_min the lowest
    logged loss of that seed's non-diverged students: a tenth of the initial loss, or halfway (in log) to
    the best loss any ratio reached where that is above a hundredth of it (a noise floor). Columns
    ``configuration, lr_total, lr_ratio, n_seeds, n_reached, median_steps, target`` (median over seeds),
    ``winner`` (the ratio of the fewest median steps; ties: the smallest ratio) and ``uniform_loses``
    (ratio 1 takes more median steps than the winner; None without ratio 1)."""
    columns = ["configuration", "lr_total", "lr_ratio", "n_seeds", "n_reached", "median_steps", "target",
               "winner", "uniform_loses"]
    if curves.empty or "lr_total" not in curves or "lr_ratio" not in curves:
        return pd.DataFrame(columns=columns)
    c = curves[curves["lr_total"].notna() & np.isfinite(curves["lr_ratio"].astype(float))]
    if c.empty:
        return pd.DataFrame(columns=columns)
    lr_cols = lr_columns(c)
    c = c.assign(configuration=_labels(c, drop=tuple(lr_cols)))
    diverged = c["diverged"].astype(bool) if "diverged" in c else pd.Series(False, index=c.index)
    per_student = []
    for (config, total), g in c.groupby(["configuration", "lr_total"], sort=True):
        for _, s in g.groupby(["run_id", "seed"] if "run_id" in g else ["seed"]):
            ok = s[~diverged.loc[s.index]]
            l0 = float(s.loc[s["step"] == s["step"].min(), "train_loss"].iloc[0])
            lmin = float(ok["train_loss"].min()) if len(ok) else np.nan
            target = max(fraction * l0, float(np.sqrt(l0 * lmin))) if np.isfinite(lmin) else np.nan
            hit = steps_to_target(ok, target) if len(ok) and np.isfinite(target) else pd.Series(dtype=float)
            for sid, r in s.groupby("student_id")[["lr_ratio"]].first().iterrows():
                per_student.append({"configuration": config, "lr_total": total, "lr_ratio": float(r["lr_ratio"]),
                                    "steps": float(hit.get(sid, np.inf)), "target": target})
    p = pd.DataFrame(per_student, columns=["configuration", "lr_total", "lr_ratio", "steps", "target"])
    all_ratios = p.groupby("configuration")["lr_ratio"].agg(lambda r: frozenset(r))
    rows = []
    for (config, total), g in p.groupby(["configuration", "lr_total"], sort=True):
        by = g.groupby("lr_ratio", sort=True)
        if len(by) < 2 or frozenset(g["lr_ratio"]) != all_ratios[config]:
            continue  # not an lr_total x lr_ratio grid (an lr_body x lr_ratio grid whose sums coincide)
        med = by["steps"].median()
        best = med.min()
        winner = float(med.index[np.argmax(med.to_numpy() == best)]) if np.isfinite(best) else np.nan
        uniform = None if 1.0 not in med.index else bool(med.loc[1.0] > best)
        for ratio, r in by:
            rows.append({"configuration": config, "lr_total": total, "lr_ratio": ratio, "n_seeds": len(r),
                         "n_reached": int(np.isfinite(r["steps"]).sum()), "median_steps": float(med.loc[ratio]),
                         "target": float(r["target"].median()), "winner": winner, "uniform_loses": uniform})
    return pd.DataFrame(rows, columns=columns)


def check_equal_budget(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """``stackelberg.equal_budget`` (the seed's mechanism (i), reported): per configuration and lr_total, the
    ratio that reaches the target first (:func:`equal_budget_summary`); HOLDS where uniform rates (ratio 1)
    lose."""
    summary = equal_budget_summary(students, curves)
    rows = []
    for (config, total), g in summary.groupby(["configuration", "lr_total"], sort=True):
        uniform = g["uniform_loses"].iloc[0]
        if uniform is None:
            continue
        steps = "; ".join(f"{r:g}: {s:g}" + ("" if n == len_ else f" ({n}/{len_} reached)")
                          for r, s, n, len_ in zip(g["lr_ratio"], g["median_steps"], g["n_reached"], g["n_seeds"]))
        rows.append({"configuration": f"{config}, lr_total={total:g}", "n": int(g["n_seeds"].sum()),
                     "passed": bool(uniform),
                     "detail": f"median steps to the target (median {g['target'].iloc[0]:.3g}) by ratio {steps}; "
                               f"first: ratio {g['winner'].iloc[0]:g}"})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


registry.register_check("stackelberg.distance_vs_ratio", check_distance_vs_ratio,
                       curve_columns=("train_loss", "body_sketch_*"))
registry.register_check("stackelberg.curvature_bound", check_curvature_bound,
                       curve_columns=("phi_sharpness", "sharpness"))
registry.register_check("stackelberg.sharper_early", check_sharper_early, strict=False,
                       curve_columns=("phi_sharpness", "sharpness", "body_sharpness"))
registry.register_check("stackelberg.equal_budget", check_equal_budget, strict=False, curve_columns=("train_loss",))


# ------------------------------------------------------------------------------------------------
# Verdicts of the scripts (scripts/stackelberg_onset.py, scripts/stackelberg_rate.py): numpy runs, not stored ones
# ------------------------------------------------------------------------------------------------

ONSET_FACTOR = 2.0  # one step of the ratio grid 2^0..2^8


def onset_agrees(predicted, measured, factor=ONSET_FACTOR) -> bool:
    """The predicted onset ratio of the ratio^-1 law (:func:`lrsweep.families.stackelberg.theory.slope_onset` of
    the linear-response distance) is within ``factor`` of the measured one (both inf: agree)."""
    if np.isinf(predicted) or np.isinf(measured):
        return bool(np.isinf(predicted) and np.isinf(measured))
    return bool(measured / factor <= predicted <= measured * factor)


def rate_verdict(exponent, low, high, bound=None) -> dict:
    """The seed's finite-time rate (App. B: E||M_k - M*||^2 + E||w_k - w*(M_k)||^2 = O(k^bound), bound
    :data:`lrsweep.families.stackelberg.theory.RATE_EXPONENT` = -2/3) against a fitted exponent with its interval
    [low, high]: ``holds`` where the interval reaches at or below the bound (the measured decay is at least that
    fast), ``tight`` where the bound lies inside the interval."""
    bound = stackelberg.RATE_EXPONENT if bound is None else bound
    return {"holds": bool(low <= bound), "tight": bool(low <= bound <= high),
            "detail": f"exponent {exponent:+.3f} [{low:+.3f}, {high:+.3f}] against the bound {bound:+.3f}"}
