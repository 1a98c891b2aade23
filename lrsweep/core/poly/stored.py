"""Stored loss-polynomial coefficients: their Parquet layout and evaluation at new learning rates.

Reading (:func:`evaluate`) needs numpy, pandas and pyarrow only: neither the engine nor jax.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lrsweep.core import store
from lrsweep.core.columns import lr_columns
from lrsweep.core.poly.numerics import apply_divergence, condition, evaluate_coefficients

COEFFICIENT_VALUES = ("run_id", "lr_scale", "train_coef", "test_coef")  # the rest is a row's key


def coefficient_schema(m: int, instance_columns) -> pa.Schema:
    """Long format: one row per (instance, step, monomial present at that step); a side table of the
    run (:func:`lrsweep.core.store.side_table_schema`: merged into ``poly.parquet``, a resumed instance,
    recomputed whole, kept once)."""
    inst = [(c, pa.int64() if c == "seed" else pa.float64()) for c in instance_columns]
    schema = pa.schema([("run_id", pa.string()), ("group_id", pa.int64()), *inst, ("step", pa.int64())]
                       + [(f"e_{i}", pa.int64()) for i in range(1, m + 1)]
                       + [("lr_scale", pa.float64()), ("train_coef", pa.float64()), ("test_coef", pa.float64())])
    return store.side_table_schema(schema, COEFFICIENT_VALUES)


def coefficient_table(chunk, run_id: str, group_id: int) -> pd.DataFrame:
    """The chunk's coefficients as rows of :func:`coefficient_schema`."""
    n_steps, _ = chunk.present.shape
    t_idx, j_idx = np.nonzero(chunk.present)
    n_inst = len(chunk.instance_hp["seed"])
    cols = {"run_id": run_id, "group_id": np.int64(group_id)}
    for c in chunk.instance_hp:
        cols[c] = np.repeat(chunk.instance_hp[c], len(t_idx))
    cols["step"] = np.tile(t_idx, n_inst).astype(np.int64)
    for i in range(chunk.monomials.shape[1]):
        cols[f"e_{i + 1}"] = np.tile(chunk.monomials[j_idx, i], n_inst).astype(np.int64)
    cols["lr_scale"] = chunk.lr_scale
    cols["train_coef"] = chunk.train_coef[:, t_idx, j_idx].reshape(-1)
    cols["test_coef"] = chunk.test_coef[:, t_idx, j_idx].reshape(-1)
    return pd.DataFrame(cols)


@dataclasses.dataclass(frozen=True)
class StoredInstance:
    """One stored poly instance (a seed's polynomials, :func:`read_instances`): ``monomials`` (J, n_vars)
    exponents, ``train_coef`` and ``test_coef`` (steps, J), the scale its learning rates were divided by."""
    group_id: int
    key: dict               # the instance columns (seed, ...) -> value
    n_vars: int             # trained layers of its group (its polynomials' variables)
    monomials: np.ndarray
    train_coef: np.ndarray
    test_coef: np.ndarray
    lr_scale: float
    diverge_factor: float


def read_instances(run) -> list[StoredInstance]:
    """Every stored poly instance of a run directory (``poly.parquet``, or its parts while running), in
    (group, instance) order; read once, evaluated at any learning rates by :func:`evaluate_instances`."""
    run = Path(run)
    table = store.read_table(store.marked_parts(run, "poly"))
    if table.empty:
        raise ValueError(f"{run} has no stored coefficients (no group ran in poly mode)")
    factor = store.read_table(store.marked_parts(run, "students")).groupby("group_id")["diverge_factor"].first()
    inst_cols = [c for c in table.columns if c not in ("run_id", "group_id", "step", "lr_scale", "train_coef",
                                                       "test_coef") and not c.startswith("e_")]
    instances = []
    for gid, g in table.groupby("group_id", sort=True):
        exp_cols = [c for c in g.columns if c.startswith("e_") and g[c].notna().all()]
        for inst, gi in g.groupby(list(inst_cols), sort=True):
            monos, col = np.unique(gi[exp_cols].to_numpy(np.int64), axis=0, return_inverse=True)
            n_steps = int(gi["step"].max()) + 1
            coef = {}
            for k in ("train_coef", "test_coef"):
                coef[k] = np.zeros((n_steps, len(monos)))
                coef[k][gi["step"].to_numpy(), col.reshape(-1)] = gi[k].to_numpy()
            instances.append(StoredInstance(int(gid), dict(zip(inst_cols, inst)), len(exp_cols), monos,
                                            coef["train_coef"], coef["test_coef"], float(gi["lr_scale"].iloc[0]),
                                            float(factor.loc[gid])))
    return instances


def evaluate(run, step=None, **lrs) -> pd.DataFrame:
    """Train and test loss of every stored poly instance at learning rates ``lr_1=..., lr_2=...``.

    Reads the coefficients of a run directory (``poly.parquet``, or its parts while running) and
    evaluates them at the broadcast arrays ``lr_1 .. lr_m``, for the poly groups with m trained
    layers, without training. ``step``: an int or a list (default: every step 0..steps).
    Divergence as in training: losses at steps >= ``diverged_step`` are NaN. Returns one row per
    (group, instance, point, step); ``condition`` is kappa of :func:`condition` (the relative error
    is about kappa times the eps of the dtype the run computed the coefficients in).
    """
    _lr_keys(lrs)
    return evaluate_instances(read_instances(run), step, run=run, **lrs)


def _lr_keys(lrs: dict) -> list[str]:
    m = len(lrs)
    keys = lr_columns(m)
    if sorted(lrs) != sorted(keys) or m == 0:
        raise ValueError(f"give one learning rate per trained layer: lr_1=..., ..., lr_m=...; got {sorted(lrs)}")
    return keys


def evaluate_instances(instances: list[StoredInstance], step=None, run="the run", **lrs) -> pd.DataFrame:
    """:func:`evaluate` of instances already read (:func:`read_instances`, or some of them): the same rows
    for those instances. ``run`` names the run in errors."""
    keys = _lr_keys(lrs)
    m = len(keys)
    points = np.stack(np.broadcast_arrays(*(np.asarray(lrs[k], np.float64) for k in keys)), -1).reshape(-1, m)
    frames = []
    for inst in instances:
        if inst.n_vars != m:
            continue
        gid, scale, n_steps = inst.group_id, inst.lr_scale, len(inst.train_coef)
        train, test, res = _losses(inst, points)
        kappa = np.fmax(condition(inst.train_coef, inst.monomials, points, scale, train),
                        condition(inst.test_coef, inst.monomials, points, scale, test))
        div_step = pd.array(res["diverged_step"].astype(np.int64), dtype="Int64")
        div_step[~res["diverged"]] = pd.NA
        want = _steps(inst, step)
        for t in want:
            frames.append(pd.DataFrame({
                "group_id": gid, **inst.key, "point": np.arange(len(points)),
                **{k: points[:, i] for i, k in enumerate(keys)}, "step": int(t),
                "train_loss": res["train_loss"][:, t], "test_loss": res["test_loss"][:, t],
                "diverged": res["diverged"], "diverged_step": div_step, "condition": kappa[:, t]}))
    if not frames:
        raise ValueError(f"{run}: no poly group has {m} trained layers (lr_1..lr_{m})")
    inst_cols = list(instances[0].key) if instances else []
    return pd.concat(frames, ignore_index=True).sort_values(
        ["group_id", *inst_cols, "point", "step"], kind="stable").reset_index(drop=True)


def _losses(inst: StoredInstance, points: np.ndarray):
    """(train (P, steps), test (P, steps), :func:`apply_divergence` of them) of one instance at ``points`` (P, m)."""
    train = evaluate_coefficients(inst.train_coef, inst.monomials, points, inst.lr_scale)
    test = evaluate_coefficients(inst.test_coef, inst.monomials, points, inst.lr_scale)
    return train, test, apply_divergence(train, test, range(len(inst.train_coef)), inst.diverge_factor)


def _steps(inst: StoredInstance, step) -> list[int]:
    n_steps = len(inst.train_coef)
    want = list(range(n_steps)) if step is None else [int(t) for t in np.atleast_1d(step)]
    if any(not 0 <= t < n_steps for t in want):
        raise ValueError(f"step: {step} is outside 0..{n_steps - 1} (group {inst.group_id})")
    return want


def instance_test_losses(instances: list[StoredInstance], step: int, **lrs) -> np.ndarray:
    """(instances, P) test losses at one ``step`` and points ``lr_1=..., lr_2=...``: the ``test_loss`` column of
    :func:`evaluate_instances` for these instances (each with as many trained layers as rates given), as an array."""
    keys = _lr_keys(lrs)
    points = np.stack(np.broadcast_arrays(*(np.asarray(lrs[k], np.float64) for k in keys)), -1).reshape(-1, len(keys))
    assert all(inst.n_vars == len(keys) for inst in instances)
    rows = []
    for inst in instances:
        (t,) = _steps(inst, step)
        rows.append(_losses(inst, points)[2]["test_loss"][:, t])
    return np.stack(rows) if rows else np.zeros((0, len(points)))
