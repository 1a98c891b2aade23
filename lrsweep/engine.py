"""The engine: one ``jit(vmap(vmap(scan(step))))`` path that trains a whole shape group.

A group shares shapes and categorical choices (:class:`GroupSpec`), so it compiles once. Its
students are laid out as (instances, points): an *instance* (seed, noise_std, target_std,
init_scale) owns the initial weights and data, generated on the device from its seed, and
broadcast (not copied) to the learning-rate *points* that train on it. The grid is cut into
equal-shape chunks (padded, so no chunk recompiles) that fit a memory budget; the instance
axis of a chunk is sharded over all devices.

A student's trained state and its step are a :class:`lrsweep.steps.Formulation` (dense weights,
or low-rank corrections to the shared initial weights); its rates and schedule parameters are a
vector in the vmapped axis (:attr:`GroupSpec.hparam_columns`). Chunks of many steps can be
trained in segments with checkpoints in between (:mod:`lrsweep.checkpoint`).

Divergence (seed 003: the divergent phase is physics, not an error): a student whose train
loss is non-finite or exceeds ``diverge_factor`` times its initial loss is frozen with
``jnp.where`` (never control flow on batched values), its later metrics are NaN, and
``diverged_step`` records the first such step. Nothing it does reaches another student.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep import steps as steps_lib
from lrsweep.optim import SCHEDULE_COLUMNS, Schedule, make_optimizer
from lrsweep.students import Architecture
from lrsweep.tasks import InstanceHparams, TaskSpec, make_instance, test_loss

INSTANCE_COLUMNS = ("seed", "noise_std", "target_std", "init_scale")


@dataclasses.dataclass(frozen=True)
class GroupSpec:
    """Everything static about a group of students (hashable: keys the compiled program)."""
    arch: Architecture
    task: TaskSpec
    init: str
    optimizer: str
    steps: int
    log_steps: tuple
    gradient: str
    formulation: str
    diverge_factor: float
    schedule: str = "constant"
    warmup_steps: int = 0

    @classmethod
    def from_row(cls, row) -> "GroupSpec":
        """Build from a student row of :func:`lrsweep.config.expand_grid`."""
        par = row["parameterization"]
        out = row["width"] if par == "paper_2nn" else 1 if par == "paper_deep" else row["output_dim"]
        arch = Architecture(par, int(row["n_layers"]), int(row["width"]), int(row["input_dim"]), int(out),
                            row["activation"])
        task = TaskSpec(row["kind"], int(row["input_dim"]), int(row["n_train"]), row["design"], row["target"],
                        row["teacher_activation"], int(row["n_test"]), bool(row["test_noise"]))
        steps = int(row["steps"])
        if row.get("log_steps") is not None and not (isinstance(row["log_steps"], float)):
            logs = tuple(sorted(set(row["log_steps"]) | {0, steps}))
        else:
            logs = tuple(sorted(set(range(0, steps + 1, int(row["log_every"]))) | {steps}))
        formulation = steps_lib.resolve_formulation(row["formulation"], arch, row["optimizer"], steps,
                                                    row["teacher_activation"])
        return cls(arch, task, row["init"], row["optimizer"], steps, logs, row["gradient"], formulation,
                   float(row["diverge_factor"]), row.get("schedule", "constant"), int(row.get("warmup_steps", 0)))

    @property
    def n_logs(self) -> int:
        return len(self.log_steps)

    @property
    def constant_rates(self) -> bool:
        """Whether every step uses the same learning rates (no schedule, no warmup)."""
        return self.schedule == "constant" and self.warmup_steps == 0

    @property
    def hparam_columns(self) -> list[str]:
        """A student's traced numbers, in the order of its vector in the chunk: eta_1..eta_m, then the
        schedule's parameters (:data:`lrsweep.optim.SCHEDULE_COLUMNS`) if the rates change over time."""
        cols = [f"lr_{i}" for i in range(1, self.arch.n_trainable + 1)]
        return cols if self.constant_rates else cols + list(SCHEDULE_COLUMNS)

    def optimizer_for(self, hparams: jax.Array):
        """The optax transform of one student from its vector of :attr:`hparam_columns`."""
        m = self.arch.n_trainable
        schedule = None
        if not self.constant_rates:
            schedule = Schedule(self.schedule, self.steps, self.warmup_steps, hparams[m], hparams[m + 1])
        return make_optimizer(self.optimizer, hparams[:m], schedule)


class StudentResult(NamedTuple):
    """Per-student outputs; leading axes are the batch axes added by vmap."""
    train_loss: jax.Array     # (..., n_logs)
    test_loss: jax.Array      # (..., n_logs)
    diverged: jax.Array       # (...,) bool
    diverged_step: jax.Array  # (...,) int32, -1 if never


class StudentFns(NamedTuple):
    """One student's training, whole (``train``) or in pieces that a checkpoint can sit between.

    ``state = start(params0, inst, lrs)``; ``state = advance(state, params0, inst, lrs, ts)``
    trains the steps ``ts`` (consecutive ints); ``finish(state, params0, inst, lrs)`` observes
    the last step. ``train(params0, inst, lrs)`` is the three in a row over every step.
    """
    start: object
    advance: object
    finish: object
    train: object


def make_student_fns(spec: GroupSpec) -> StudentFns:
    """The pure per-student functions of a group (the engine vmaps them over a chunk).

    ``params0`` are the instance's initial weights; the trained state starts from them
    (:class:`lrsweep.steps.Formulation`: the weights themselves, or low-rank corrections to them).
    """
    form = steps_lib.FORMULATIONS[spec.formulation]
    log_slot = np.full(spec.steps + 1, -1, np.int32)
    log_slot[list(spec.log_steps)] = np.arange(spec.n_logs)

    def observe(t, params, inst, loss, w_eff, carry):
        """Divergence bookkeeping at step t and, if t is logged, write the metrics."""
        alive, loss0, div_step, train_buf, test_buf = carry
        loss0 = jnp.where(t == 0, loss, loss0)
        bad = ~jnp.isfinite(loss) | (loss > spec.diverge_factor * jnp.maximum(loss0, 1e-30))
        div_step = jnp.where(alive & bad, t, div_step)
        alive = alive & ~bad
        slot = log_slot[t] if isinstance(t, int) else jnp.asarray(log_slot)[t]

        def write(bufs):
            train_b, test_b = bufs
            nan = jnp.full((), jnp.nan, loss.dtype)
            test = test_loss(spec.task, spec.arch, params, inst, w_eff)
            return (train_b.at[slot].set(jnp.where(alive, loss, nan)),
                    test_b.at[slot].set(jnp.where(alive, test, nan)))

        # `slot` does not depend on the student, so this cond stays a real branch under vmap.
        train_buf, test_buf = jax.lax.cond(slot >= 0, write, lambda b: b, (train_buf, test_buf))
        return alive, loss0, div_step, train_buf, test_buf

    def loss_and_grads(params0, params, inst):
        return form.loss_and_grads(spec.arch, params0, params, inst, spec.gradient)

    def start(params0, inst, hparams):
        dtype = params0[0].dtype
        nan_buf = jnp.full((spec.n_logs,), jnp.nan, dtype)
        carry = (jnp.array(True), jnp.zeros((), dtype), jnp.array(-1, jnp.int32), nan_buf, nan_buf)
        params = form.init(spec.arch, params0, spec.steps)
        return params, spec.optimizer_for(hparams).init(params), carry

    def advance(state, params0, inst, hparams, ts):
        tx = spec.optimizer_for(hparams)

        def body(state, t):
            params, opt_state, carry = state
            loss, grads, w_eff, aux = loss_and_grads(params0, params, inst)
            carry = observe(t, params, inst, loss, w_eff, carry)
            updates, new_opt_state = tx.update(grads, opt_state, params)
            new_params = form.apply(params, updates, aux, t)
            alive = carry[0]
            keep = lambda new, old: jnp.where(alive, new, old)  # freeze diverged students
            params = jax.tree_util.tree_map(keep, new_params, params)
            opt_state = jax.tree_util.tree_map(keep, new_opt_state, opt_state)
            return (params, opt_state, carry), None

        state, _ = jax.lax.scan(body, state, ts)
        return state

    def finish(state, params0, inst, hparams) -> StudentResult:
        del hparams
        params, _, carry = state
        loss, _, w_eff, _ = loss_and_grads(params0, params, inst)
        alive, _, div_step, train_buf, test_buf = observe(spec.steps, params, inst, loss, w_eff, carry)
        return StudentResult(train_buf, test_buf, ~alive, div_step)

    def train(params0, inst, hparams) -> StudentResult:
        state = start(params0, inst, hparams)
        if spec.steps > 0:
            state = advance(state, params0, inst, hparams, jnp.arange(spec.steps, dtype=jnp.int32))
        return finish(state, params0, inst, hparams)

    return StudentFns(start, advance, finish, train)


def make_train_one(spec: GroupSpec):
    """``train_one(params0, inst, hparams) -> StudentResult`` for ONE student (pure); ``hparams`` are
    its :attr:`GroupSpec.hparam_columns` (eta_1..eta_m for constant rates)."""
    return make_student_fns(spec).train


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def make_instances(task: TaskSpec, arch: Architecture, init: str, moments: bool, hp: InstanceHparams):
    """Initial weights and data of a batch of instances (leaves of ``hp`` are (u,)), on the device.

    Compiled once per (task, arch, init, moments): groups that differ only in steps, gradient or
    learning rates share it. Each instance depends only on its own hyperparameters (vmap).
    """
    dtype = jnp.result_type(float)
    return jax.vmap(lambda one: make_instance(task, arch, init, moments, one, dtype))(hp)


class ChunkFn(NamedTuple):
    """A group's compiled training: ``train(params0, inst, lrs (u, p, m)) -> StudentResult (u, p, ...)``,
    and its pieces ``start``, ``advance(state, params0, inst, lrs, ts)``, ``finish`` (see
    :class:`StudentFns`) for chunks trained in checkpointed segments."""
    spec: GroupSpec
    train: object
    start: object
    advance: object
    finish: object

    def instances(self, hp: InstanceHparams):
        return make_instances(self.spec.task, self.spec.arch, self.spec.init, self.spec.formulation != "autodiff", hp)


def make_chunk_fn(spec: GroupSpec) -> ChunkFn:
    """Jitted training of a chunk: instances on the outer vmap axis, each instance's data shared by
    its p learning-rate points (inner vmap, broadcast with in_axes=None, never copied)."""
    fns = make_student_fns(spec)

    def batched(fn, state_axis: bool, ts: bool = False):
        """vmap over points (instance data broadcast), then over instances; ``ts`` unbatched."""
        inner = (0,) * state_axis + (None, None, 0) + (None,) * ts
        outer = (0,) * (state_axis + 3) + (None,) * ts
        return jax.jit(jax.vmap(jax.vmap(fn, in_axes=inner), in_axes=outer))

    return ChunkFn(spec, batched(fns.train, False), batched(fns.start, False),
                   batched(fns.advance, True, ts=True), batched(fns.finish, True))


# --------------------------------------------------------------------------------------
# Chunking
# --------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Chunk:
    """One compiled call: ``instance_rows`` (u,) index instances, ``student_ids`` (u, p) (-1 = pad)."""
    index: int
    instance_hp: dict          # column -> (u,) numpy array
    lrs: np.ndarray            # (u, p, k): each student's GroupSpec.hparam_columns (eta_1..eta_m [, schedule])
    student_ids: np.ndarray    # (u, p) int64


def bytes_per_student(spec: GroupSpec, dtype_bytes: int) -> int:
    """Rough peak memory of one student inside a chunk (params, grads, update, temporaries)."""
    arch, task = spec.arch, spec.task
    per = 4 * steps_lib.state_size(arch, spec.formulation, spec.steps) + 2 * spec.n_logs + 16
    if spec.formulation == "autodiff":
        n = task.n_train + (0 if arch.is_linear else task.n_test)
        per += 3 * n * (arch.width * arch.n_trainable + arch.output_dim)
    else:
        per += 4 * (arch.width + task.input_dim) * max(arch.output_dim, 1)
    return per * dtype_bytes


def bytes_per_instance(spec: GroupSpec, dtype_bytes: int) -> int:
    arch, task = spec.arch, spec.task
    d, n = task.input_dim, task.n_train
    per = 3 * n * d + d * d + 2 * d * arch.output_dim + arch.n_params + arch.width
    if not arch.is_linear:
        per += 2 * task.n_test * (d + arch.output_dim)
    return per * dtype_bytes


def plan_chunks(spec: GroupSpec, students, *, max_memory: int, dtype_bytes: int, n_devices: int = 1,
                chunk_size: int | None = None) -> tuple[tuple[int, int], list[Chunk]]:
    """Cut a group's students (a DataFrame) into equal (u, p) chunks.

    Returns ((u, p), chunks). ``chunk_size`` caps students per chunk (u * p), otherwise the
    memory budget does. u is a multiple of ``n_devices`` (the sharded axis).
    """
    inst_key = list(INSTANCE_COLUMNS)
    inst_ids = students.groupby(inst_key, sort=False).ngroup().to_numpy()
    n_inst = int(inst_ids.max()) + 1
    members = [np.flatnonzero(inst_ids == i) for i in range(n_inst)]
    n_points = max(len(m) for m in members)
    per_student = bytes_per_student(spec, dtype_bytes)
    per_inst = bytes_per_instance(spec, dtype_bytes)
    cap = chunk_size or max(1, max_memory // per_student)
    p = max(1, min(n_points, cap, max(1, (max_memory - per_inst) // per_student)))
    p = math.ceil(n_points / math.ceil(n_points / p))  # as many chunks, evenly filled: less padding
    u = max(1, min(n_inst, cap // p, max(1, max_memory // (p * per_student + per_inst))))
    u = math.ceil(n_inst / math.ceil(n_inst / u))
    if n_devices > 1:
        u = n_devices * math.ceil(u / n_devices)
    lr_cols = spec.hparam_columns
    lrs_all = students[lr_cols].to_numpy(np.float64)
    ids_all = students["student_id"].to_numpy(np.int64)
    inst_first = np.array([m[0] for m in members])
    hp_all = {c: students[c].to_numpy()[inst_first] for c in inst_key}
    chunks = []
    for ib in range(0, n_inst, u):
        rows = np.arange(ib, ib + u)
        valid_rows = rows < n_inst
        rows = np.where(valid_rows, rows, 0)  # pad with instance 0 (results discarded)
        for pb in range(0, n_points, p):
            lrs = np.zeros((u, p, len(lr_cols)))
            ids = np.full((u, p), -1, np.int64)
            for r, (inst, ok) in enumerate(zip(rows, valid_rows)):
                if not ok:
                    continue
                sel = members[inst][pb:pb + p]
                lrs[r, :len(sel)] = lrs_all[sel]
                ids[r, :len(sel)] = ids_all[sel]
            if (ids >= 0).any():
                chunks.append(Chunk(len(chunks), {c: v[rows] for c, v in hp_all.items()}, lrs, ids))
    return (u, p), chunks


def chunk_hparams(chunk: Chunk, sharding=None) -> InstanceHparams:
    """The chunk's instance hyperparameters as device arrays (sharded over the instance axis)."""
    dtype = jnp.result_type(float)
    hp = InstanceHparams(
        seed=jnp.asarray(chunk.instance_hp["seed"], jnp.uint32),
        noise_std=jnp.asarray(chunk.instance_hp["noise_std"], dtype),
        target_std=jnp.asarray(chunk.instance_hp["target_std"], dtype),
        init_scale=jnp.asarray(chunk.instance_hp["init_scale"], dtype))
    return jax.device_put(hp, sharding) if sharding is not None else hp


def build_instances(chunk_fn: ChunkFn, chunk: Chunk, sharding=None):
    """The chunk's (params0, inst), laid out over the devices like its instance axis.

    On the CPU the orthogonal init's QR runs on the host (:func:`lrsweep.students.orthogonal`),
    which XLA's SPMD partitioner can only replicate (with a warning per array): there the
    instances are built unsharded and then distributed. Elsewhere each device builds its own.
    """
    if sharding is not None and jax.devices()[0].platform == "cpu":
        return jax.device_put(chunk_fn.instances(chunk_hparams(chunk)), sharding)
    return chunk_fn.instances(chunk_hparams(chunk, sharding))


def run_chunk(chunk_fn: ChunkFn, chunk: Chunk, sharding=None, instances=None,
              checkpoints=None) -> dict[str, np.ndarray]:
    """Run one chunk; return host arrays for its real (non-pad) students, in student_ids order.

    ``instances``: the chunk's (params0, inst) if already built (chunks of the same instances
    share them: :func:`iter_group` builds them once per instance block). ``checkpoints``: a
    :class:`lrsweep.checkpoint.ChunkCheckpoints`; a chunk of more steps than its segment length
    is then trained segment by segment, resumed from a saved state if one exists.
    """
    if instances is None:
        instances = build_instances(chunk_fn, chunk, sharding)
    lrs = jnp.asarray(chunk.lrs, jnp.result_type(float))
    if sharding is not None:
        lrs = jax.device_put(lrs, sharding)
    if checkpoints is not None and checkpoints.enabled and chunk_fn.spec.steps > checkpoints.segment_steps:
        result = _train_in_segments(chunk_fn, chunk, instances, lrs, sharding, checkpoints)
    else:
        result = chunk_fn.train(*instances, lrs)
    result = jax.device_get(result)
    mask = chunk.student_ids >= 0
    return {"student_id": chunk.student_ids[mask],
            "train_loss": np.asarray(result.train_loss)[mask],
            "test_loss": np.asarray(result.test_loss)[mask],
            "diverged": np.asarray(result.diverged)[mask],
            "diverged_step": np.asarray(result.diverged_step)[mask]}


def _train_in_segments(chunk_fn: ChunkFn, chunk: Chunk, instances, lrs, sharding, checkpoints) -> StudentResult:
    """Train ``segment_steps`` at a time; save the state at most every ``every_s`` seconds.

    The same per-step function as one scan over every step (tested equal), so a resumed chunk
    gives the numbers an uninterrupted one does.
    """
    params0, inst = instances
    steps, seg = chunk_fn.spec.steps, checkpoints.segment_steps
    like, treedef = jax.tree_util.tree_flatten(jax.eval_shape(chunk_fn.start, params0, inst, lrs))
    restored = checkpoints.restore(chunk.student_ids, like)
    if restored is None:
        t, state = 0, chunk_fn.start(params0, inst, lrs)
    else:
        t, leaves = restored
        put = (lambda x: jax.device_put(x, sharding)) if sharding is not None else jnp.asarray
        state = jax.tree_util.tree_unflatten(treedef, [put(x) for x in leaves])
    last_save = time.monotonic()
    while t < steps:
        n = min(seg, steps - t)
        state = jax.block_until_ready(chunk_fn.advance(state, params0, inst, lrs, jnp.arange(t, t + n, dtype=jnp.int32)))
        t += n
        if t < steps and time.monotonic() - last_save >= checkpoints.every_s:
            checkpoints.save(chunk.student_ids, t, jax.device_get(jax.tree_util.tree_leaves(state)))
            last_save = time.monotonic()
    return chunk_fn.finish(state, params0, inst, lrs)


def instance_sharding(n_devices: int | None = None):
    """Shard the instance axis over all local devices (None on a single device)."""
    devices = jax.devices()[: n_devices or None]
    if len(devices) <= 1:
        return None
    mesh = jax.sharding.Mesh(np.array(devices), ("instances",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("instances"))


def memory_limits() -> tuple[int | None, int]:
    """(the accelerator's bytes_limit, or None on a backend without one; the host's RAM in bytes)."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # CPU backends may not implement memory_stats
        stats = {}
    try:
        import os
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    limit = stats.get("bytes_limit")
    return (int(limit) if limit else None), int(ram)


def default_max_memory(spec: GroupSpec | None = None) -> int:
    """A safe share of the device: half the accelerator's limit; on the CPU, 64 MiB chunks for
    small students and room for 32 students (up to 1/8 of RAM) for large ones."""
    limit, ram = memory_limits()
    if limit is not None:
        return int(limit * 0.5)
    if jax.devices()[0].platform == "cpu":
        # On the CPU each step streams every weight of the chunk: chunks that stay near the cache
        # run up to 2x faster than one huge chunk (scripts/bench_engine.py). Large students are
        # matrix-matrix bound instead; a few dozen per chunk keeps dispatch and file counts low.
        budget = 64 << 20
        if spec is not None:
            itemsize = jnp.dtype(jnp.result_type(float)).itemsize
            budget = max(budget, min(32 * bytes_per_student(spec, itemsize) + bytes_per_instance(spec, itemsize),
                                     ram // 8))
        return budget
    return int(min(ram // 4, 4 << 30))


def iter_group(spec: GroupSpec, students, *, max_memory: int | None = None, chunk_size: int | None = None,
               done: set | None = None, checkpoints=None) -> Iterator[tuple[Chunk, dict]]:
    """Train one group chunk by chunk; yields (chunk, host results).

    ``done``: student ids that already have results. Chunks are planned over all of ``students``
    (so a resumed run cuts the same chunks, and finds their checkpoints); a chunk whose students
    are all done is skipped, and results of done students are left out. Consecutive chunks of
    the same instances reuse the instances built for the first of them. ``checkpoints``: see
    :func:`run_chunk`.
    """
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    sharding = instance_sharding()
    n_dev = jax.device_count() if sharding is not None else 1
    _, chunks = plan_chunks(spec, students, max_memory=max_memory or default_max_memory(spec),
                            dtype_bytes=dtype_bytes, n_devices=n_dev, chunk_size=chunk_size)
    chunk_fn = make_chunk_fn(spec)
    built, instances = None, None
    done_ids = np.fromiter(done, np.int64) if done else np.zeros(0, np.int64)
    for chunk in chunks:
        real = chunk.student_ids[chunk.student_ids >= 0]
        if np.isin(real, done_ids).all() and len(done_ids):
            continue
        key = tuple(np.asarray(chunk.instance_hp[c]).tobytes() for c in INSTANCE_COLUMNS)
        if key != built:
            instances, built = build_instances(chunk_fn, chunk, sharding), key
        result = run_chunk(chunk_fn, chunk, sharding, instances, checkpoints)
        new = ~np.isin(result["student_id"], done_ids)
        if not new.all():
            result = {k: v[new] for k, v in result.items()}
        yield chunk, result
