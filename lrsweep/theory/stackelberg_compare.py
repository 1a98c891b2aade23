"""Seed 002 against stored runs: the best-response run as the limit of large head/body ratios,
steps to a target loss, and the curvature of Phi beside the loss's (through stored curves only).

Every function takes the frames of :func:`lrsweep.store.load` (``students``: one row per student;
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

from lrsweep import config as config_lib

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
    return pd.Series(frame.groupby(cols, sort=False, dropna=False).ngroup().to_numpy(), index=students.index)


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
    diverged: distances NaN)."""
    twins = twin_ids(students)
    has_twin = twins.reindex(students["student_id"]).notna().to_numpy()
    gd = students[(students["head"] == "gd").to_numpy() & has_twin]
    diverged_ids = set(students.loc[students.get("diverged", pd.Series(False, index=students.index)).astype(bool),
                                    "student_id"])
    sketch = _sketch_columns(curves)
    by_id = {sid: frame.sort_values("step") for sid, frame in curves.groupby("student_id")}
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
    """student_id -> the first step at which the train loss reaches ``target`` (log-linear interpolation
    between the logged steps around the crossing; inf where it never does, 0 if it starts there)."""
    out = {}
    for sid, frame in curves.groupby("student_id"):
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
