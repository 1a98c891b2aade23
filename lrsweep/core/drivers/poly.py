"""The polynomial driver (``train.mode: poly``): exact loss polynomials in the learning rates.

One coefficient computation per instance (:mod:`lrsweep.core.poly.algebra`) serves every learning-rate
point of it; students whose polynomial evaluation is ill-conditioned are trained by the engine on
the same instance data. Same results layout as the grid driver, plus the coefficient table
(:mod:`lrsweep.core.poly.stored`).
"""

from __future__ import annotations

import dataclasses
import math
import time
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


ENGINE_RATE = {"cpu": 5e10, "accelerator": 1e13}
"""FLOP-equivalents per second the engine reaches, per platform, before anything is measured (the
unchanged rough rates of the FLOP model: fig1 measured 22 GFLOP/s on a 2-core CPU, 13 TFLOP/s on an
H200, both x64)."""

SAVING_S = (2.0, 60.0)
"""Where poly mode's estimated saving of compute (at :data:`ENGINE_RATE`) lies below the first bound
grid mode runs (the FLOP model's assumed ~2 s of extra compile), above the second poly mode runs (more
than any compile measured: 8 s for fig1's coefficient program on a 2-core CPU, 38 s for 8 steps); in
between fixed costs can decide, and :func:`measure_seconds` measures them once."""

HOST_S_PER_FLOP = 1e-9
"""Host seconds per FLOP of :func:`evaluate_students` (numpy) before it is measured."""


def engine_rate() -> float:
    """:data:`ENGINE_RATE` of the default device's platform."""
    return ENGINE_RATE["cpu" if jax.devices()[0].platform == "cpu" else "accelerator"]


def instances_per_call(pl: PolyPlan, n_instances: int, budget: int, itemsize: int) -> int:
    """How many instances one coefficient call holds: as many as fit ``budget`` bytes, at least one."""
    return max(1, min(n_instances, budget // max(1, pl.peak_elements * itemsize)))


def _instance_hp(spec, u: int) -> dict:
    return engine.instance_hparams(spec, {c: np.zeros(u) for c in spec.instance_columns})


def _instance_shapes(spec, u: int, moments: bool):
    """ShapeDtypeStructs of ``u`` instances' (params0, inst) (no arrays are built)."""
    key = engine.InstanceSpec(spec.task, spec.arch, spec.init)
    return jax.eval_shape(lambda h: engine._build_instances(key, moments, h), _instance_hp(spec, u))


def measure_seconds(spec, pl: PolyPlan, n_students: int, n_instances: int, dtype_bytes: int) -> dict:
    """Measured seconds of both modes for a group, on this device:

    - ``poly_compile_s``: its coefficient program compiled ahead of time, at the instances per call
      :func:`iter_group` uses with the default budget (with the persistent compilation cache on, the
      run then loads it instead of compiling);
    - ``grid_compile_s`` and ``grid_rate``: the engine's program for one instance and p of its points
      (p: ~0.5 s of compute at :func:`engine_rate`, at most the points per instance), compiled, then
      run once: its FLOP-equivalents (:func:`grid_cost_per_student`) per second;
    - ``host_s``: :func:`evaluate_students` of one instance's points on unit coefficients, times the
      instances.
    """
    from lrsweep.core.drivers import timing
    dtype = jnp.result_type(float)
    u = instances_per_call(pl, n_instances, engine.default_max_memory(spec), jnp.dtype(dtype).itemsize)
    poly_compile = timing.compile_seconds(make_coefficient_fn(spec, pl), *_instance_shapes(spec, u, True), 1.0)
    per_instance = max(1, -(-n_students // max(1, n_instances)))
    cost = grid_cost_per_student(spec, dtype_bytes)
    p = int(min(per_instance, max(1, 0.5 * engine_rate() // cost)))
    train = engine.make_chunk_fn(spec).train
    moments = spec.formulation != "autodiff"
    hparams = {c: jnp.full((1, p), 1e-6, dtype) for c in spec.traced_columns}
    grid_compile = timing.compile_seconds(train, *_instance_shapes(spec, 1, moments), hparams)
    instance = engine.make_instances(spec, moments, _instance_hp(spec, 1))
    jax.block_until_ready(instance)
    t0 = time.perf_counter()
    jax.block_until_ready(train(*instance, hparams))
    grid_rate = p * cost / max(time.perf_counter() - t0, 1e-9)
    coef = np.zeros((spec.steps + 1, pl.n_monomials))
    coef[:, 0] = 1.0
    lrs = np.full((per_instance, spec.arch.n_trainable), 0.5)
    t0 = time.perf_counter()
    evaluate_students(spec, pl, coef, coef, lrs, 1.0, float(jnp.finfo(dtype).eps), rtol_for(dtype))
    host_s = (time.perf_counter() - t0) * n_instances
    return {"poly_compile_s": poly_compile, "grid_compile_s": grid_compile, "grid_rate": grid_rate, "host_s": host_s}


def choice_key(spec, n_students: int, n_instances: int) -> str:
    """What an auto choice holds for: the group's static spec, its students and instances, the device
    (:func:`lrsweep.core.drivers.timing.device_key`)."""
    import hashlib

    from lrsweep.core.drivers import timing
    shape = hashlib.sha1(repr(spec).encode()).hexdigest()[:16]
    return f"choice|spec {shape}|{n_students} students|{n_instances} instances|" + timing.device_key()


def seconds_estimate(spec, pl: PolyPlan, n_students: int, n_instances: int, dtype_bytes: int, rate: float) -> dict:
    """Seconds of compute per mode at ``rate`` FLOP/s: ``poly_compute_s`` (coefficients once per
    instance), ``grid_compute_s`` (:func:`grid_cost_per_student` per student), ``host_s`` (poly's
    evaluation at :data:`HOST_S_PER_FLOP`), and the rate."""
    return {"poly_compute_s": n_instances * pl.flops / rate,
            "grid_compute_s": n_students * grid_cost_per_student(spec, dtype_bytes) / rate,
            "host_s": float(n_students * pl.eval_flops() * HOST_S_PER_FLOP), "rate": rate}


def decide(est: dict, measure) -> dict:
    """Pick a mode from seconds (:func:`seconds_estimate`): {"mode", "reason", "poly_s", "grid_s"}, and
    what was measured. ``measure()`` returns :func:`measure_seconds`; it is called only where poly's
    saving of compute lies within :data:`SAVING_S` (None: poly there, as the FLOP model decided). Then poly costs its compile, its compute and the
    host's evaluation; grid, its compile and its compute at the measured rate."""
    poly_s, grid_s = est["poly_compute_s"] + est["host_s"], est["grid_compute_s"]
    saving = grid_s - poly_s
    lo, hi = SAVING_S
    if saving <= lo:
        return {"mode": "grid", "reason": f"poly mode would save ~{max(saving, 0):.3g} s of compute, less than its "
                                          f"compile (~{poly_s:.3g} s against ~{grid_s:.3g} s before compile)",
                "poly_s": poly_s, "grid_s": grid_s}
    if saving >= hi:
        return {"mode": "poly", "reason": f"poly mode saves ~{saving:.3g} s of compute, more than compiling costs "
                                          f"(~{poly_s:.3g} s against ~{grid_s:.3g} s)", "poly_s": poly_s, "grid_s": grid_s}
    if measure is None:  # nothing measured (several processes must agree): the FLOP model's rule
        return {"mode": "poly", "reason": f"poly mode saves ~{saving:.3g} s of compute, more than the ~{lo:.3g} s "
                                          f"of compile assumed (not measured: {jax.process_count()} processes)",
                "poly_s": poly_s, "grid_s": grid_s}
    got = measure()
    poly_s = got["poly_compile_s"] + est["poly_compute_s"] + got["host_s"]
    grid_s = got["grid_compile_s"] + est["grid_compute_s"] * est["rate"] / got["grid_rate"]
    mode = "poly" if poly_s < grid_s else "grid"
    return {"mode": mode, "reason": f"{mode} mode is faster, measured (~{poly_s:.3g} s poly against ~{grid_s:.3g} s "
                                    f"grid, compile included)", "poly_s": poly_s, "grid_s": grid_s, **got}


def mode_report(spec, n_students: int, n_instances: int, mode: str = "auto", *, memory_budget: int | None = None,
                dtype_bytes: int = 8) -> dict:
    """Which mode a group runs in, and why: {"mode", "reason", FLOPs and seconds of both modes, plan summary}.

    ``auto`` picks poly when the group qualifies (:func:`qualifies`), its polynomials stay small,
    one instance fits ``memory_budget`` (default :func:`memory_capacity`) and it is estimated faster
    (:func:`decide`): compute in seconds at :func:`engine_rate`, compile and host evaluation measured where
    they decide (:func:`measure_seconds`). The choice is stored per :func:`choice_key`, so a
    repeated or resumed run on the same kind of device decides the same. ``poly`` raises
    ConfigError("train.mode") where poly mode cannot run; ``grid`` always runs the engine.
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
    else:
        rep.update(choose_auto(spec, p, n_students, n_instances, dtype_bytes))
    return rep


def choose_auto(spec, pl: PolyPlan, n_students: int, n_instances: int, dtype_bytes: int) -> dict:
    """:func:`decide` for a qualifying group, read from the store where it was decided before."""
    from lrsweep.core.drivers import timing
    key = choice_key(spec, n_students, n_instances)
    stored = timing.lookup(key)
    if stored is not None:
        return {**stored, "reason": stored["reason"] + "; decided before on this device kind"}
    est = seconds_estimate(spec, pl, n_students, n_instances, dtype_bytes, engine_rate())
    # the processes of a multi-process job must pick the same modes: they do not measure
    measure = (lambda: measure_seconds(spec, pl, n_students, n_instances, dtype_bytes)) \
        if jax.process_count() == 1 else None
    choice = {**est, **decide(est, measure)}
    timing.remember(key, choice)
    return choice


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
    u = instances_per_call(pl, n_inst, budget, itemsize)
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
