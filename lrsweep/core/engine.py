"""The engine: one ``jit(vmap(vmap(scan(step))))`` path that trains a whole shape group.

A group (:class:`lrsweep.core.spec.GroupSpec`) compiles once. A chunk (:mod:`lrsweep.core.chunking`) is
(instances, points): each instance's initial weights and data are generated on the device from
its hyperparameters (:func:`lrsweep.core.tasks.make_instance`) and broadcast (not copied) to its
learning-rate points. Chunks lie on a 2-D mesh ("instances", "points") of this process's devices
(:func:`chunk_sharding`; its shape per group from :func:`lrsweep.core.chunking.mesh_shape`): one seed of
many rates spreads its points over the devices, many seeds their instances.

Devices and round-off: in float64 the device count and the chunk size change a student's numbers
by < 1e-12 relative (tests/test_mesh.py). In float32 they may change them by ~1e-6: a student's
numbers are a deterministic function of the chunk shape *per device*, not of the device count.
XLA folds the points of an instance into one matrix product ((n, d) @ (d, p h)), drops an instance
axis of size 1 (a batched product becomes a plain one), and the CPU's dot kernel and tiling depend on
the whole product's shape, so the same column is summed in another order
(measured: a lone (32, 32) @ (32, N) float32 product changes its first 32 columns when N goes from
1,024 to 1,280). 8 devices holding (1, 3) students each are bit-identical to one device with
(1, 3) chunks; (16, 3) vs (1, 3) chunks differ by 5.5e-7, (1, 40) vs (1, 20) by 7.9e-7 (3-layer
paper_deep, autodiff, h = d = n = 32, 40 steps; the 40 points' product has 1,280 columns, the 20's 640).

One student's step is: the head rule's move of the last layer at the current body (identity for
plain per-layer GD; alternating head steps or the best response: :mod:`lrsweep.families.stackelberg.heads`), its
formulation's loss and gradients (:mod:`lrsweep.core.steps`: dense weights, or low-rank corrections to
the shared initial weights), the optax transform of its traced hyperparameters read by name
(:mod:`lrsweep.core.optim`) and the formulation's update. Every step receives a :class:`lrsweep.core.tasks.StepContext` (t and a key derived from the
instance and t). At logged steps the train loss, the task's evaluation and the metrics of
``train.metrics`` are written into a small buffer (:mod:`lrsweep.core.metrics`); running reductions
see every step. Chunks of many steps can be trained in segments, with checkpoints
(:mod:`lrsweep.core.checkpoint`) and progress reports in between.

Divergence (:mod:`lrsweep.core.divergence`; seed 003: the divergent phase is physics, not an error): a
diverged student is frozen with ``jnp.where`` (never control flow on batched values), its later
metrics are NaN, and ``diverged_step`` records the first such step. Nothing it does reaches
another student.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep.core import divergence
from lrsweep.core import metrics as metrics_lib
from lrsweep.core import steps as steps_lib
from lrsweep.core.architecture import Architecture
from lrsweep.core.checkpoint import SEGMENT_STEPS
from lrsweep.core.chunking import Chunk, bytes_per_instance, bytes_per_student, plan_chunks
from lrsweep.core.optim import batch_size_at, make_optimizer
from lrsweep.core.tasks import TASKS, TaskSpec, make_instance, step_context


class StudentResult(NamedTuple):
    """Per-student outputs; leading axes are the batch axes added by vmap."""
    curves: dict              # name -> (..., n_logs[, m]): train_loss, the task's metrics, train.metrics
    reductions: dict          # column -> (...,): running reductions (e.g. loss_peak)
    diverged: jax.Array       # (...,) bool
    diverged_step: jax.Array  # (...,) int32, -1 if never


class StudentFns(NamedTuple):
    """One student's training, whole (``train``) or in pieces that a checkpoint can sit between.

    ``state = start(params0, inst, hparams)``; ``state = advance(state, params0, inst, hparams, ts)``
    trains the steps ``ts`` (consecutive ints); ``finish(state, params0, inst, hparams)`` observes
    the last step. ``train(params0, inst, hparams)`` is the three in a row over every step.
    ``hparams``: {name: scalar} of :attr:`GroupSpec.traced_columns`. ``state``: (the formulation's
    trained state, the optimizer's state, the observation carry, the step hooks' states).
    """
    start: object
    advance: object
    finish: object
    train: object


def curve_names(spec) -> list[str]:
    """The logged metrics of a group, in column order: train_loss, the task's, then train.metrics."""
    return ["train_loss", *TASKS[spec.task.kind].metric_names(spec), *(m.name for m in metrics_lib.logged(spec))]


def prepare(spec, hparams: dict, params: dict, inst: dict, ctx, states: tuple) -> tuple[dict, tuple]:
    """Every registered step hook (:func:`lrsweep.registry.register_step_hook`) in turn: what moves the
    weights before step ``ctx.t``'s gradient (seed 002's head rule); the identity when none applies.
    ``states``: one per hook (:func:`hook_states`; None for a hook without state). Returns the moved
    weights and the hooks' new states."""
    new_states = []
    for hook, state in zip(spec.hooks, states):
        if hook.init_state is None:
            params = hook.fn(spec, hparams, params, inst, ctx)
        else:
            params, state = hook.fn(spec, hparams, params, inst, ctx, state)
        new_states.append(state)
    return params, tuple(new_states)


def hook_states(spec, params: dict, inst: dict) -> tuple:
    """The step hooks' initial per-student states (:attr:`lrsweep.registry.StepHook.init_state`), None
    for a hook without state: carried by the scan from step to step, checkpointed with the weights."""
    return tuple(None if hook.init_state is None else hook.init_state(spec, params, inst) for hook in spec.hooks)


def make_student_fns(spec) -> StudentFns:
    """The pure per-student functions of a group (the engine vmaps them over a chunk).

    ``params0`` are the instance's initial weights; the trained state starts from them
    (:class:`lrsweep.core.steps.Formulation`: the weights themselves, or low-rank corrections to them).
    """
    student = _Student(spec)
    return StudentFns(student.start, student.advance, student.finish, student.train)


class _Student:
    """A group's per-student training (:func:`make_student_fns` hands out its bound methods): what every
    step reads of the spec, computed once; each piece a method, so no function nests more than two deep."""

    def __init__(self, spec):
        self.spec = spec
        self.form = steps_lib.FORMULATIONS[spec.formulation]
        self.task = TASKS[spec.task.kind]
        self.logged, self.reductions = metrics_lib.logged(spec), metrics_lib.reductions(spec)
        self.log_slot = np.full(spec.steps + 1, -1, np.int32)  # step -> its row of the curve buffers, -1: not logged
        self.log_slot[list(spec.log_steps)] = np.arange(spec.n_logs)

    def observe(self, t, params0, state, inst, loss, w_eff, carry):
        """Divergence bookkeeping and reductions at step t and, if t is logged, write the metrics."""
        spec = self.spec
        alive, loss0, div_step, bufs, reduced, mstates = carry
        if spec.stochastic:  # a batch's loss can be ~0 by chance: judge divergence against the whole set's
            loss0 = jax.lax.cond(t == 0, lambda: self.initial_loss(params0, state, inst).astype(loss.dtype),
                                 lambda: loss0)
        else:
            loss0 = jnp.where(t == 0, loss, loss0)
        bad = divergence.exceeds(loss, loss0, spec.diverge_factor, jnp)
        div_step = jnp.where(alive & bad, t, div_step)
        alive = alive & ~bad
        reduced = tuple(r.update(c, loss, t, alive) for r, c in zip(self.reductions, reduced))
        slot = self.log_slot[t] if isinstance(t, int) else jnp.asarray(self.log_slot)[t]
        write = functools.partial(self.write_logged, t, slot, alive, params0, state, inst, loss, w_eff)
        if isinstance(t, int):  # the last step (finish): known while tracing, no branch to batch
            bufs, mstates = write((bufs, mstates)) if slot >= 0 else (bufs, mstates)
        else:  # `slot` does not depend on the student, so this cond stays a real branch under vmap
            bufs, mstates = jax.lax.cond(slot >= 0, write, lambda operand: operand, (bufs, mstates))
        return alive, loss0, div_step, bufs, reduced, mstates

    def write_logged(self, t, slot, alive, params0, state, inst, loss, w_eff, operand):
        """The logged step t's train loss, task evaluation and ``train.metrics`` written into row ``slot``
        of the buffers (NaN for a diverged student); metric states advanced where alive."""
        spec = self.spec
        bufs, mstates = operand
        ctx = metrics_lib.MetricContext(spec, self.form.dense(spec, params0, state), inst, loss, w_eff,
                                        step_context(inst, t).key, t)
        logged_loss = loss
        if spec.stochastic and "x" in inst:  # the step saw a minibatch: log the whole set's loss
            logged_loss = steps_lib.train_loss(spec, ctx.params, inst, step_context(inst, t))
        values = {"train_loss": logged_loss, **self.task.evaluate(spec, ctx)}
        new_states = dict(mstates)
        for m in self.logged:
            if m.init_state is None:
                values[m.name] = m.fn(ctx)
            else:
                values[m.name], new = m.fn(ctx, mstates[m.name])
                new_states[m.name] = jax.tree_util.tree_map(lambda a, b: jnp.where(alive, a, b), new,
                                                            mstates[m.name])
        bufs = {k: b.at[slot].set(jnp.where(alive, values[k], jnp.full((), jnp.nan, b.dtype)))
                for k, b in bufs.items()}
        return bufs, new_states

    def initial_loss(self, params0, state, inst):
        """The divergence rule's reference for sampled batches: the whole training set's loss at step 0,
        or, for an online task, its expected loss (:attr:`lrsweep.core.tasks.Task.population_loss`)."""
        spec = self.spec
        dense = self.form.dense(spec, params0, state)
        if self.task.population_loss is not None and "x" not in inst:
            return self.task.population_loss(spec, inst, dense)
        return steps_lib.train_loss(spec, dense, inst, step_context(inst, 0))

    def context(self, inst, hparams, t):
        """The step's context: a sampled batch of m(t) rows for sgd and momentum."""
        return step_context(inst, t, self.spec.stochastic, batch_size_at(self.spec, hparams, t))

    def start(self, params0, inst, hparams):
        spec = self.spec
        dtype = jax.tree_util.tree_leaves(params0)[0].dtype
        shapes = {name: () for name in ("train_loss", *self.task.metric_names(spec))}
        shapes.update({m.name: metrics_lib.metric_shape(spec, m) for m in self.logged})
        bufs = {name: jnp.full((spec.n_logs, *shape), jnp.nan, dtype) for name, shape in shapes.items()}
        key = jax.random.fold_in(inst["step_key"], -1 & 0x7FFFFFFF)  # the metrics' own stream
        mstates = {m.name: m.init_state(spec, params0, inst, key) for m in self.logged if m.init_state is not None}
        carry = (jnp.array(True), jnp.zeros((), dtype), jnp.array(-1, jnp.int32), bufs,
                 tuple(r.init(dtype) for r in self.reductions), mstates)
        state = self.form.init(spec, params0)
        return (state, make_optimizer(spec, hparams).init(state), carry,
                hook_states(spec, self.form.dense(spec, params0, state), inst))

    def advance(self, state, params0, inst, hparams, ts):
        step = functools.partial(self.step, make_optimizer(self.spec, hparams), params0, inst, hparams)
        state, _ = jax.lax.scan(step, state, ts)
        return state

    def step(self, tx, params0, inst, hparams, state, t):
        """One step t (the body of :meth:`advance`'s scan): the step hooks' move, the loss and gradients,
        the observation, the optimizer's update; a diverged student is frozen."""
        spec = self.spec
        params, opt_state, carry, hooks = state
        ctx = self.context(inst, hparams, t)
        moved, new_hooks = prepare(spec, hparams, params, inst, ctx, hooks)
        loss, grads, w_eff, aux = self.form.loss_and_grads(spec, params0, moved, inst, ctx)
        carry = self.observe(t, params0, moved, inst, loss, w_eff, carry)
        updates, new_opt_state = tx.update(grads, opt_state, moved)
        new_params = self.form.apply(moved, updates, aux, t)
        alive = carry[0]
        keep = lambda new, old: jnp.where(alive, new, old)  # freeze diverged students
        params = jax.tree_util.tree_map(keep, new_params, params)
        opt_state = jax.tree_util.tree_map(keep, new_opt_state, opt_state)
        hooks = jax.tree_util.tree_map(keep, new_hooks, hooks)
        return (params, opt_state, carry, hooks), None

    def finish(self, state, params0, inst, hparams) -> StudentResult:
        spec = self.spec
        params, _, carry, hooks = state
        ctx = self.context(inst, hparams, spec.steps)
        params, _ = prepare(spec, hparams, params, inst, ctx, hooks)
        loss, _, w_eff, _ = self.form.loss_and_grads(spec, params0, params, inst, ctx)
        alive, _, div_step, bufs, reduced, _ = self.observe(spec.steps, params0, params, inst, loss, w_eff, carry)
        columns = {}
        for r, c in zip(self.reductions, reduced):
            columns.update(r.columns(c))
        return StudentResult(bufs, columns, ~alive, div_step)

    def train(self, params0, inst, hparams) -> StudentResult:
        state = self.start(params0, inst, hparams)
        if self.spec.steps > 0:
            state = self.advance(state, params0, inst, hparams, jnp.arange(self.spec.steps, dtype=jnp.int32))
        return self.finish(state, params0, inst, hparams)


def make_train_one(spec):
    """``train_one(params0, inst, hparams) -> StudentResult`` for ONE student (pure)."""
    return make_student_fns(spec).train


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """What an instance depends on statically: groups that differ in steps, gradient, loss or
    rates share its compiled generator."""
    task: TaskSpec
    arch: Architecture
    init: str


def _build_instances(key: InstanceSpec, moments: bool, hp: dict):
    dtype = jnp.result_type(float)
    return jax.vmap(lambda one: make_instance(key, one, dtype, moments))(hp)


_make_instances = functools.partial(jax.jit, static_argnums=(0, 1))(_build_instances)


def make_instances(spec, moments: bool, hp: dict):
    """Initial weights and data of a batch of instances (leaves of ``hp`` are (u,)), on the device.
    Each instance depends only on its own hyperparameters (vmap).

    On an accelerator one jitted program. On the CPU op by op: there the orthogonal init's QR is a
    host callback (:func:`lrsweep.core.students.orthogonal`), and JAX never stores a program holding a
    callback in its persistent cache, so a jitted generator would be compiled again by every run
    (3.4 s for the quickstart's); op by op, every op's small program is cached and only the
    callback itself is not (milliseconds). The same operations either way.
    """
    key = InstanceSpec(spec.task, spec.arch, spec.init)
    if jax.local_devices()[0].platform == "cpu":
        return _build_instances(key, moments, hp)
    return _make_instances(key, moments, hp)


class ChunkFn(NamedTuple):
    """A group's compiled training: ``train(params0, inst, hparams {name: (u, p)}) -> StudentResult
    (u, p, ...)``, and its pieces ``start``, ``advance(state, params0, inst, hparams, ts)``, ``finish``
    (see :class:`StudentFns`) for chunks trained in checkpointed segments."""
    spec: object
    train: object
    start: object
    advance: object
    finish: object

    def instances(self, hp: dict):
        return make_instances(self.spec, self.spec.formulation != "autodiff", hp)


def make_chunk_fn(spec) -> ChunkFn:
    """Jitted training of a chunk: instances on the outer vmap axis, each instance's data shared by
    its p learning-rate points (inner vmap, broadcast with in_axes=None, never copied)."""
    fns = make_student_fns(spec)

    def batched(fn, state_axis: bool, ts: bool = False):
        """vmap over points (instance data broadcast), then over instances; ``ts`` unbatched."""
        inner = (0,) * state_axis + (None, None, 0) + (None,) * ts
        outer = (0,) * (state_axis + 3) + (None,) * ts
        return jax.vmap(jax.vmap(fn, in_axes=inner), in_axes=outer)

    start, advance, finish = batched(fns.start, False), batched(fns.advance, True, ts=True), batched(fns.finish, True)

    def train(params0, inst, hparams):
        # The pieces batched one by one: the state leaves `start` batched over both axes (vmap
        # broadcasts what does not yet vary), so the scan's batching rule settles its carry in one
        # pass per axis instead of two, each pass re-batching the whole step (the same program).
        state = start(params0, inst, hparams)
        if spec.steps > 0:
            state = advance(state, params0, inst, hparams, jnp.arange(spec.steps, dtype=jnp.int32))
        return finish(state, params0, inst, hparams)

    return ChunkFn(spec, jax.jit(train), jax.jit(start), jax.jit(advance), jax.jit(finish))


def instance_hparams(spec, values: dict, sharding=None) -> dict:
    """Instance hyperparameters (numpy (u,) per column) as device arrays, sharded over instances."""
    dtype = jnp.result_type(float)
    hp = {c: jnp.asarray(values[c], jnp.uint32 if c == "seed" else dtype) for c in spec.instance_columns}
    return jax.device_put(hp, _instances_part(sharding)) if sharding is not None else hp


def build_instances(chunk_fn: ChunkFn, chunk: Chunk, sharding=None):
    """The chunk's (params0, inst), laid out over the devices like its instance axis.

    On the CPU the orthogonal init's QR runs on the host (:func:`lrsweep.core.students.orthogonal`),
    which XLA's SPMD partitioner can only replicate (with a warning per array): there the
    instances are built unsharded and then distributed. Elsewhere each device builds its own.
    """
    if sharding is not None and jax.local_devices()[0].platform == "cpu":
        return jax.device_put(chunk_fn.instances(instance_hparams(chunk_fn.spec, chunk.instance_hp)),
                              _instances_part(sharding))
    return chunk_fn.instances(instance_hparams(chunk_fn.spec, chunk.instance_hp, sharding))


def host_results(spec, result: StudentResult, student_ids: np.ndarray) -> dict:
    """Host arrays of the real (non-pad) students: ``student_id``, ``diverged``, ``diverged_step``,
    ``curves`` {column: (k, n_logs)} in :func:`curve_names` order (per-layer metrics as ``name_l``),
    ``reductions`` {column: (k,)}."""
    result = jax.device_get(result)
    mask = student_ids >= 0
    curves = {}
    for name in curve_names(spec):
        curves.update(metrics_lib.curve_columns(name, np.asarray(result.curves[name])[mask]))
    return {"student_id": student_ids[mask], "curves": curves,
            "reductions": metrics_lib.label_columns({k: np.asarray(v)[mask] for k, v in result.reductions.items()}),
            "diverged": np.asarray(result.diverged)[mask], "diverged_step": np.asarray(result.diverged_step)[mask]}


def run_chunk(chunk_fn: ChunkFn, chunk: Chunk, sharding=None, instances=None, checkpoints=None,
              on_segment=None) -> dict:
    """Run one chunk; return :func:`host_results` for its real students, in student_ids order.

    ``instances``: the chunk's (params0, inst) if already built (chunks of the same instances
    share them: :func:`iter_group` builds them once per instance block). A chunk of more steps
    than the segment length (``checkpoints.segment_steps``, else
    :data:`lrsweep.core.checkpoint.SEGMENT_STEPS`) is trained segment by segment when ``checkpoints``
    (a :class:`lrsweep.core.checkpoint.ChunkCheckpoints`) is enabled, resumed from a saved state if one
    exists, or when ``on_segment`` is given: ``on_segment(steps_done, steps_total, n_diverged)``
    is then called after each segment (``n_diverged``: real students diverged so far). Segments
    give the numbers of one scan bit for bit.
    """
    if instances is None:
        instances = build_instances(chunk_fn, chunk, sharding)
    dtype = jnp.result_type(float)
    hparams = {c: jnp.asarray(v, dtype) for c, v in chunk.hparams.items()}
    if sharding is not None:
        hparams = jax.device_put(hparams, _students_part(sharding))
    saving = checkpoints is not None and checkpoints.enabled
    segment_steps = checkpoints.segment_steps if checkpoints is not None else SEGMENT_STEPS
    if chunk_fn.spec.steps > segment_steps and (saving or on_segment is not None):
        result = _train_in_segments(chunk_fn, chunk, instances, hparams, sharding, segment_steps,
                                    checkpoints if saving else None, on_segment)
    else:
        result = chunk_fn.train(*instances, hparams)
    return host_results(chunk_fn.spec, result, chunk.student_ids)


def _train_in_segments(chunk_fn: ChunkFn, chunk: Chunk, instances, hparams, sharding, segment_steps: int,
                       checkpoints=None, on_segment=None) -> StudentResult:
    """Train ``segment_steps`` at a time (one compiled program per segment length); with
    ``checkpoints``, restore the newest saved state and save at most every ``every_s`` seconds;
    report each segment to ``on_segment``.

    The same per-step function as one scan over every step (tested equal), so a resumed chunk
    gives the numbers an uninterrupted one does.
    """
    params0, inst = instances
    steps = chunk_fn.spec.steps
    like, treedef = jax.tree_util.tree_flatten(jax.eval_shape(chunk_fn.start, params0, inst, hparams))
    restored = checkpoints.restore(chunk.student_ids, like) if checkpoints is not None else None
    if restored is None:
        t, state = 0, chunk_fn.start(params0, inst, hparams)
    else:
        t, leaves = restored
        put = (lambda x: jax.device_put(x, _students_part(sharding))) if sharding is not None else jnp.asarray
        state = jax.tree_util.tree_unflatten(treedef, [put(x) for x in leaves])
    real = chunk.student_ids >= 0
    last_save = time.monotonic()
    while t < steps:
        n = min(segment_steps, steps - t)
        state = jax.block_until_ready(chunk_fn.advance(state, params0, inst, hparams,
                                                       jnp.arange(t, t + n, dtype=jnp.int32)))
        t += n
        if on_segment is not None:
            on_segment(t, steps, int((real & ~np.asarray(jax.device_get(_alive(state)))).sum()))
        if checkpoints is not None and t < steps and time.monotonic() - last_save >= checkpoints.every_s:
            checkpoints.save(chunk.student_ids, t, jax.device_get(jax.tree_util.tree_leaves(state)))
            last_save = time.monotonic()
    return chunk_fn.finish(state, params0, inst, hparams)


def _alive(state):
    """The (u, p) alive flags of a batched training state (see ``start`` in :func:`make_student_fns`)."""
    _, _, carry, _ = state
    return carry[0]


class ChunkSharding(NamedTuple):
    """How a chunk lies on a 2-D mesh ("instances", "points") of this process's devices: its instance
    arrays (u, ...) split over "instances" and copied along "points"; its students' arrays (u, p, ...)
    split over both."""
    instances: jax.sharding.NamedSharding
    students: jax.sharding.NamedSharding


def _instances_part(sharding):
    return sharding.instances if isinstance(sharding, ChunkSharding) else sharding


def _students_part(sharding):
    return sharding.students if isinstance(sharding, ChunkSharding) else sharding


def chunk_sharding(mesh: tuple[int, int]) -> ChunkSharding | None:
    """The :class:`ChunkSharding` of an (a, b) mesh of local devices (None for one device).

    Only this process's devices (``jax.local_devices()``): under ``jax.distributed`` each process
    trains its own students (:mod:`lrsweep.core.distributed`), so no array spans hosts.
    """
    a, b = mesh
    if a * b <= 1:
        return None
    grid = jax.sharding.Mesh(np.array(jax.local_devices()[: a * b]).reshape(a, b), ("instances", "points"))
    P = jax.sharding.PartitionSpec
    return ChunkSharding(jax.sharding.NamedSharding(grid, P("instances")),
                         jax.sharding.NamedSharding(grid, P("instances", "points")))


def instance_sharding(n_devices: int | None = None):
    """Shard an instance axis over this process's devices (None on a single device)."""
    devices = jax.local_devices()[: n_devices or None]
    if len(devices) <= 1:
        return None
    mesh = jax.sharding.Mesh(np.array(devices), ("instances",))
    return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("instances"))


def memory_limits() -> tuple[int | None, int]:
    """(the accelerator's bytes_limit, or None on a backend without one; the host's RAM in bytes)."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # CPU backends may not implement memory_stats
        stats = {}
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 8 << 30
    limit = stats.get("bytes_limit")
    return (int(limit) if limit else None), int(ram)


def free_device_memory() -> int | None:
    """Bytes the first local accelerator can still allocate (bytes_limit - bytes_in_use; None where the
    backend keeps no memory statistics, e.g. the CPU). With XLA's preallocation (the default on GPU:
    75% of the card, ``--mem-fraction``) bytes_limit is the preallocated pool, so this is the pool's
    free part: what another sweep sharing the card left over is not counted."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:
        return None
    if not stats.get("bytes_limit"):
        return None
    return max(0, int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0)))


def default_max_memory(spec=None) -> int:
    """The chunk budget per device: on an accelerator half its free memory (:func:`free_device_memory`,
    read when the group starts: room for XLA's temporaries and the next chunk's inputs); on the CPU,
    64 MiB chunks for small students and room for 32 students (up to 1/8 of RAM) for large ones."""
    free = free_device_memory()
    if free is not None:
        return int(free * 0.5)
    _, ram = memory_limits()
    if jax.local_devices()[0].platform == "cpu":
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


def iter_group(spec, students, *, max_memory: int | None = None, chunk_size: int | None = None,
               done: set | None = None, checkpoints=None, segment_callback=None,
               shape: tuple[int, int] | None = None) -> Iterator[tuple[Chunk, dict]]:
    """Train one group chunk by chunk; yields (chunk, host results).

    ``done``: student ids that already have results. Chunks are planned over all of ``students``
    (so a resumed run cuts the same chunks, and finds their checkpoints); a chunk whose students
    are all done is skipped, and results of done students are left out. Consecutive chunks of
    the same instances reuse the instances built for the first of them. ``checkpoints``: see
    :func:`run_chunk`. ``segment_callback(n_students)``, if given, is called before each chunk
    with the number of its students that will be yielded and returns that chunk's
    ``on_segment`` (see :func:`run_chunk`) or None. ``shape``: the chunks' (u, p) fixed in advance
    (:func:`lrsweep.core.chunking.plan_chunks`).
    """
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    _, chunks = plan_chunks(spec, students, max_memory=max_memory or default_max_memory(spec),
                            dtype_bytes=dtype_bytes, n_devices=jax.local_device_count(), chunk_size=chunk_size,
                            mesh="auto", shape=shape)
    sharding = chunk_sharding(chunks.mesh)
    chunk_fn = make_chunk_fn(spec)
    built, instances = None, None
    done_ids = np.fromiter(done, np.int64) if done else np.zeros(0, np.int64)
    for chunk in chunks:
        real = chunk.student_ids[chunk.student_ids >= 0]
        new = ~np.isin(real, done_ids)
        if len(done_ids) and not new.any():
            continue
        key = tuple(np.asarray(chunk.instance_hp[c]).tobytes() for c in spec.instance_columns)
        if key != built:
            instances, built = build_instances(chunk_fn, chunk, sharding), key
        on_segment = segment_callback(int(new.sum())) if segment_callback is not None else None
        result = run_chunk(chunk_fn, chunk, sharding, instances, checkpoints, on_segment)
        new = ~np.isin(result["student_id"], done_ids)
        if not new.all():
            result = select(result, new)
        yield chunk, result


def select(result: dict, mask: np.ndarray) -> dict:
    """The students of a host result where ``mask`` holds (nested dicts of per-student arrays)."""
    return {k: select(v, mask) if isinstance(v, dict) else v[mask] for k, v in result.items()}
