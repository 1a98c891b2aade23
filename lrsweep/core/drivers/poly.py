"""The polynomial driver (``train.mode: poly``): exact loss polynomials in the learning rates.

One coefficient computation per instance (:mod:`lrsweep.core.poly.algebra`) serves every learning-rate
point of it; students whose polynomial evaluation is ill-conditioned are trained by the engine on
the same instance data. Same results layout as the grid driver, plus the coefficient table
(:mod:`lrsweep.core.poly.stored`).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep.core import engine
from lrsweep.core import steps as steps_lib
from lrsweep.core.chunking import bytes_per_student, instance_groups
from lrsweep.core.columns import lr_columns
from lrsweep.core.config import ConfigError
from lrsweep.core.drivers.base import ChunkOutput, Driver
from lrsweep.core.poly.algebra import TooLarge, grid_cost_per_student, make_coefficient_fn, plan, PolyPlan
from lrsweep.core.poly.numerics import apply_divergence, condition, evaluate_coefficients, rtol_for
from lrsweep.core.poly.stored import coefficient_schema, coefficient_table
from lrsweep.core.tasks import TASKS

MODES = ("auto", "grid", "poly")


def qualifies(spec) -> str | None:
    """None if poly mode applies to the group, else the reason: a linear student under the squared
    loss on a linear teacher (the losses are then polynomials, seed 000 Sec. 3-4), plain gd with
    constant rates, data through their moments."""
    why = steps_lib.moments_blocker(spec)
    if why is None and not TASKS[spec.task.kind].exact_linear_risk(spec):
        why = (f"the teacher is not linear (task.kind: {spec.task.kind}, "
               f"task.teacher_activation: {spec.task.teacher_activation})")
    if why is None and spec.optimizer != "gd":
        why = f"train.optimizer is {spec.optimizer}, not gd"
    if why is None:
        why = steps_lib.hook_blocker(spec)
    if why is not None:
        return why
    if not spec.constant_rates:
        return (f"the learning rates change over the steps (train.schedule: {spec.schedule}, "
                f"train.warmup_steps: {spec.warmup_steps})")
    if spec.formulation == "autodiff":
        return "train.formulation is autodiff (poly mode works on the data moments)"
    if spec.metrics:
        return f"train.metrics ({', '.join(spec.metrics)}) are computed by the engine at logged steps"
    return None


def memory_capacity() -> int:
    """Bytes one poly instance may use: half the accelerator's limit, a quarter of the host RAM on the CPU."""
    limit, ram = engine.memory_limits()
    return int(limit * 0.5) if limit is not None else ram // 4


def compile_overhead_flops() -> float:
    """Poly mode compiles one program more than grid mode (~2 s): that time in FLOPs of the device
    (a rough rate: 5e10 FLOP/s on the CPU, 1e13 on an accelerator)."""
    return 2.0 * (5e10 if jax.devices()[0].platform == "cpu" else 1e13)


def mode_report(spec, n_students: int, n_instances: int, mode: str = "auto", *, memory_budget: int | None = None,
                dtype_bytes: int = 8, overhead_flops: float | None = None) -> dict:
    """Which mode a group runs in, and why: {"mode", "reason", FLOPs of both modes, plan summary}.

    ``auto`` picks poly when the group qualifies (:func:`qualifies`), its polynomials stay small,
    one instance fits ``memory_budget`` (default :func:`memory_capacity`) and its FLOPs
    (coefficients once per instance + evaluation per student + ``overhead_flops``, default
    :func:`compile_overhead_flops`) are below grid mode's (:func:`grid_cost_per_student`). ``poly``
    raises ConfigError("train.mode") where poly mode cannot run; ``grid`` always runs the engine.
    """
    if mode not in MODES:
        raise ConfigError("train.mode", f"unknown '{mode}'; allowed values: {', '.join(MODES)}")
    rep = {"mode": "grid", "requested": mode, "reason": ""}
    why = qualifies(spec)
    if why is None:
        p = plan(spec)
        if p.feasible:
            need = p.peak_elements * dtype_bytes
            rep.update(poly_flops=n_instances * p.flops + n_students * p.eval_flops(),
                       grid_flops=n_students * grid_cost_per_student(spec, dtype_bytes),
                       poly_bytes_per_instance=int(need),
                       n_monomials=p.n_monomials, n_terms=[list(s.weight_terms) for s in p.steps],
                       loss_terms=[s.loss_terms for s in p.steps], matmuls=[s.matmuls for s in p.steps])
            budget = memory_capacity() if memory_budget is None else memory_budget
            if need > budget:
                why = f"poly needs ~{need / 2**30:.2f} GiB per instance, more than the {budget / 2**30:.2f} GiB " \
                      f"available"
        else:
            why = f"the polynomials grow too large in {spec.steps} steps ({p.reason})"
    if mode == "grid":
        rep["reason"] = "requested"
    elif why is not None:
        if mode == "poly":
            raise ConfigError("train.mode", f"poly mode needs a linear student and teacher trained by gd, with "
                                            f"polynomials that fit, but {why}; use train.mode auto or grid")
        rep["reason"] = why
    elif mode == "poly":
        rep.update(mode="poly", reason="requested")
    elif rep["poly_flops"] + (compile_overhead_flops() if overhead_flops is None else overhead_flops) \
            < rep["grid_flops"]:
        rep.update(mode="poly", reason="poly mode needs fewer FLOPs")
    else:
        rep["reason"] = "grid mode needs fewer FLOPs"
    return rep


def choose_mode(spec, n_students: int, n_instances: int, mode: str = "auto", **kwargs) -> str:
    """``"grid"`` or ``"poly"`` for a group (:func:`mode_report` says why)."""
    return mode_report(spec, n_students, n_instances, mode, **kwargs)["mode"]


def evaluate_students(spec, pl: PolyPlan, train_coef, test_coef, lrs, scale, coef_eps: float, rtol: float):
    """Results (engine layout) of one instance's students at ``lrs`` (P, m), and which are reliable.

    A student is reliable when kappa * coef_eps <= rtol for its train and test loss at every logged
    step before its divergence, and its divergence verdict at every step up to it is not within the
    error bound of the threshold. The others are trained in grid mode by :func:`iter_group`.
    """
    train = evaluate_coefficients(train_coef, pl.monomials, lrs, scale)
    test = evaluate_coefficients(test_coef, pl.monomials, lrs, scale)
    res = apply_divergence(train, test, spec.log_steps, spec.diverge_factor)
    # a coefficient that overflowed (float32, wildly divergent rates in the group) spoils its step
    # for every point: only students that diverged before that step keep their poly results
    finite = np.isfinite(train_coef).all(axis=-1) & np.isfinite(test_coef).all(axis=-1)
    first_bad = int(np.argmin(finite)) if not finite.all() else len(finite)
    k_train = condition(train_coef, pl.monomials, lrs, scale, train)
    k_test = condition(test_coef, pl.monomials, lrs, scale, test)
    n_steps = train.shape[1]
    steps = np.arange(n_steps)[None, :]
    end = np.where(res["diverged"], res["diverged_step"], n_steps)[:, None]  # first step not alive
    with np.errstate(invalid="ignore", over="ignore"):
        err = k_train * coef_eps * np.abs(train)
        threshold = spec.diverge_factor * np.maximum(train[:, :1], 1e-30)
        verdict_ok = ~np.isfinite(train) | (np.abs(train - threshold) > err + spec.diverge_factor * err[:, :1])
        logged = np.zeros(n_steps, bool)
        logged[list(spec.log_steps)] = True
        precise = (k_train * coef_eps <= rtol) & (k_test * coef_eps <= rtol)
    ok = np.where(steps <= end, verdict_ok, True) & np.where(logged[None, :] & (steps < end), precise, True)
    return res, ok.all(axis=1) & ((end[:, 0] < first_bad) | (first_bad == n_steps))


# --------------------------------------------------------------------------------------
# A group, chunk by chunk (the engine's contract)
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PolyChunk:
    """Instances computed in one call, with their coefficients (u_real, steps + 1, n_monomials)."""
    index: int
    instance_hp: dict            # column -> (u_real,) numpy array
    student_ids: np.ndarray      # (n,) students evaluated here, in result order
    train_coef: np.ndarray
    test_coef: np.ndarray
    monomials: np.ndarray        # (n_monomials, m)
    present: np.ndarray          # (steps + 1, n_monomials) bool
    lr_scale: float


def group_scale(students, m: int) -> float:
    """s = the largest |eta_l| of the group (1 if all are 0)."""
    lrs = np.abs(students[lr_columns(m)].to_numpy(np.float64))
    s = float(lrs.max()) if lrs.size else 0.0
    return s if s > 0 and math.isfinite(s) else 1.0


def _retrain(spec, chunk_fn, instance, rows, cap: int) -> dict:
    """The engine (grid mode) for the students ``rows`` (a frame) of one instance whose data are
    already built, in padded power-of-two batches of at most ``cap`` points."""
    k = len(rows)
    p = min(cap, 1 << max(0, math.ceil(math.log2(k))))
    dtype = jnp.result_type(float)
    out = []
    for start in range(0, k, p):
        batch = rows.iloc[start:start + p]
        pad = np.r_[np.arange(len(batch)), np.zeros(p - len(batch), np.int64)]
        hparams = {c: jnp.asarray(batch[c].to_numpy(np.float64)[pad][None], dtype) for c in spec.traced_columns}
        res = engine.host_results(spec, chunk_fn.train(*instance, hparams), np.arange(p)[None])
        out.append(engine.select(res, np.arange(p) < len(batch)))
    return _concat(out)


def _concat(parts: list[dict]) -> dict:
    return {k: _concat([p[k] for p in parts]) if isinstance(parts[0][k], dict) else np.concatenate([p[k] for p in parts])
            for k in parts[0]}


def iter_group(spec, students, ctx) -> Iterator[ChunkOutput]:
    """Poly mode for one group: yields :class:`lrsweep.core.drivers.ChunkOutput` like the grid driver.

    A chunk holds as many instances as fit ``ctx.max_memory`` (at least one; padded so no chunk
    recompiles); each instance's coefficients are computed once and evaluated at all of its
    students' learning rates. Students whose polynomial evaluation is ill-conditioned (see
    :func:`evaluate_students`) are trained by the engine on the same instance data;
    ``result["mode"]`` says which mode produced each student. The scale s is
    ``ctx.options["lr_scale"]`` (default :func:`group_scale` of the whole group); instances whose
    students are all done are skipped.
    """
    pl = plan(spec)
    if not pl.feasible:
        raise TooLarge(pl.reason)
    m = spec.arch.n_trainable
    scale = float(ctx.options.get("lr_scale") or group_scale(students, m))
    students = students[~students["student_id"].isin(ctx.done)] if ctx.done else students
    dtype = jnp.result_type(float)
    coef_eps, rtol = float(jnp.finfo(dtype).eps), rtol_for(dtype)
    members, hp_all = instance_groups(students, spec.instance_columns)
    n_inst = len(members)
    lrs_all = students[lr_columns(m)].to_numpy(np.float64)
    ids_all = students["student_id"].to_numpy(np.int64)
    budget = ctx.max_memory or engine.default_max_memory(spec)
    itemsize = jnp.dtype(dtype).itemsize
    u = max(1, min(n_inst, budget // max(1, pl.peak_elements * itemsize)))
    cap = max(1, min(ctx.chunk_size or budget, budget // bytes_per_student(spec, itemsize)))
    fn = make_coefficient_fn(spec, pl)
    chunk_fn = None
    schema = coefficient_schema(m, spec.instance_columns)
    for index, start in enumerate(range(0, n_inst, u)):
        rows = np.arange(start, start + u)
        real = rows[rows < n_inst]
        rows = np.where(rows < n_inst, rows, 0)  # pad with instance 0 (results discarded)
        params0, inst = engine.make_instances(spec, True, engine.instance_hparams(
            spec, {c: v[rows] for c, v in hp_all.items()}))
        train_c, test_c = (np.asarray(a, np.float64)[:len(real)] for a in jax.device_get(fn(params0, inst, scale)))
        parts = []
        for r, i in enumerate(real):
            sel = members[i]
            res, ok = evaluate_students(spec, pl, train_c[r], test_c[r], lrs_all[sel], scale, coef_eps, rtol)
            res = {"student_id": ids_all[sel], "curves": {"train_loss": res["train_loss"], "test_loss": res["test_loss"]},
                   "reductions": {}, "diverged": res["diverged"], "diverged_step": res["diverged_step"],
                   "mode": np.where(ok, "poly", "grid").astype(object)}
            if not ok.all():  # ill-conditioned points: grid mode on this instance
                chunk_fn = chunk_fn or engine.make_chunk_fn(spec)
                one = jax.tree_util.tree_map(lambda a: a[r:r + 1], (params0, inst))
                grid = _retrain(spec, chunk_fn, one, students.iloc[sel[~ok]], cap)
                for key in ("diverged", "diverged_step"):
                    res[key][~ok] = grid[key]
                for key in ("train_loss", "test_loss"):
                    res["curves"][key][~ok] = grid["curves"][key]
            parts.append(res)
        result = _concat(parts)
        chunk = PolyChunk(index, {c: v[real] for c, v in hp_all.items()}, result["student_id"], train_c, test_c,
                          pl.monomials, pl.present, scale)
        yield ChunkOutput(index, result["student_id"], result,
                          {"poly": (coefficient_table(chunk, ctx.run_id, ctx.group_id), schema)}, chunk)


DRIVER = Driver("poly", iter_group)
