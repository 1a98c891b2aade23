"""Planning a group's students into compiled calls (numpy and pandas only; no jax).

Students are laid out as (instances, points): an *instance* (its ``instance`` columns: seed,
noise_std, ...) owns the initial weights and data, shared by the learning-rate *points* that
train on it. :func:`plan_chunks` cuts a group into equal-shape chunks (padded, so no chunk
recompiles) that fit a memory budget; every driver plans with :func:`instance_groups`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from lrsweep.core import columns as columns_lib
from lrsweep.core import metrics as metrics_lib
from lrsweep.core import steps as steps_lib


def instance_index(students, columns) -> tuple[np.ndarray, np.ndarray, dict]:
    """Columnar instance bookkeeping: (``inst`` (n,) the instance of each row, numbered in order of
    first appearance; ``sizes`` (n_instances,) students per instance; ``hp[c]`` (n_instances,) each
    instance's value of column c). No Python object per student or per instance."""
    if not len(students):
        return np.zeros(0, np.int64), np.zeros(0, np.int64), {c: students[c].to_numpy()[:0] for c in columns}
    # a constant (broadcast) column splits nothing and is not read
    inst = (columns_lib.row_codes([students[c] for c in columns])[0] if len(columns)
            else np.zeros(len(students), np.int64))
    sizes = np.bincount(inst)
    first = columns_lib.first_rows(inst)
    return inst, sizes, {c: students[c].to_numpy()[first] for c in columns}


def instance_groups(students, columns) -> tuple[list[np.ndarray], dict]:
    """Rows of each instance (in order of first appearance) and its hyperparameters.

    Returns (members, hp): ``members[i]`` the row positions of instance i's students, ``hp[c]``
    (n_instances,) the value of column c for each instance. (A list per instance: for small groups;
    planning uses :func:`instance_index`.)
    """
    inst, sizes, hp = instance_index(students, columns)
    order = np.argsort(inst, kind="stable")  # rows of instance 0, then 1, ...; each in row order
    return np.split(order, np.cumsum(sizes)[:-1]), hp


def mesh_shape(n_devices: int, n_instances: int, n_points: int) -> tuple[int, int]:
    """(a, b), a * b = ``n_devices``: devices along the instance and the point axis of a chunk.

    The factorisation that pads least (fewest slots ceil(U/a) a * ceil(P/b) b for U instances of P
    points), ties to more devices along instances (their data then sit on fewer devices): one seed
    of 4,000 rates on 8 devices -> (1, 8), 64 seeds of 3 rates -> (8, 1).
    """
    best = None
    for a in range(n_devices, 0, -1):
        if n_devices % a:
            continue
        b = n_devices // a
        slots = math.ceil(n_instances / a) * a * math.ceil(n_points / b) * b
        if best is None or slots < best[0]:
            best = (slots, a, b)
    return best[1], best[2]


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One compiled call: ``instance_hp`` (u,) per instance column, ``hparams`` (u, p) per traced
    column, ``student_ids`` (u, p) (-1 = pad: a copy of a real student's hparams, results dropped)."""
    index: int
    instance_hp: dict
    hparams: dict
    student_ids: np.ndarray


def bytes_per_student(spec, dtype_bytes: int) -> int:
    """Rough peak memory of one student inside a chunk (params, grads, update, temporaries, and the
    logged metrics' working set: e.g. sharpness's Lanczos basis, ntk_eig's Jacobian, and the step
    hooks' carried states: e.g. seed 002's inverse of the head's normal equations)."""
    arch, task = spec.arch, spec.task
    per = 4 * steps_lib.state_size(arch, spec.formulation, spec.steps) + 2 * spec.n_logs + 16
    per += metrics_lib.working_elements(spec)
    per += 3 * sum(hook.state_elements(spec) for hook in spec.hooks)  # carried, new, frozen copy
    if spec.formulation == "autodiff":
        n = task.n_train + (0 if arch.is_linear else task.n_test)
        per += 3 * n * (arch.width * arch.n_trainable + arch.output_dim)
    else:
        per += 4 * (arch.width + task.input_dim) * max(arch.output_dim, 1)
    return per * dtype_bytes


def bytes_per_instance(spec, dtype_bytes: int) -> int:
    arch, task = spec.arch, spec.task
    d, n = task.input_dim, task.n_train
    per = 3 * n * d + d * d + 2 * d * arch.output_dim + arch.n_params + arch.width
    if not arch.is_linear:
        per += 2 * task.n_test * (d + arch.output_dim)
    return per * dtype_bytes


def chunk_bytes(spec, instances: int, points: int, dtype_bytes: int) -> int:
    """Estimated peak memory of a chunk of ``instances`` x ``points`` students."""
    return instances * (points * bytes_per_student(spec, dtype_bytes) + bytes_per_instance(spec, dtype_bytes))


def min_chunk_bytes(spec, dtype_bytes: int) -> int:
    """The smallest chunk's memory: one instance (its data and initial weights) and one student."""
    return chunk_bytes(spec, 1, 1, dtype_bytes)


def chunk_shape(spec, n_instances: int, n_points: int, *, max_memory: int, dtype_bytes: int, n_devices: int = 1,
                chunk_size: int | None = None, mesh: tuple[int, int] | None = None) -> tuple[int, int]:
    """(u, p): instances and points (students of one instance) per chunk. ``chunk_size`` caps students
    per chunk (u * p), otherwise ``max_memory`` per device does (at least one of each). ``mesh`` (a, b):
    devices along instances and points (:func:`mesh_shape`; default (``n_devices``, 1)): u is a
    multiple of a and p of b, and the chunk's memory is spread over a * b devices."""
    a, b = mesh or (n_devices, 1)
    per_student = bytes_per_student(spec, dtype_bytes)
    per_inst = bytes_per_instance(spec, dtype_bytes)
    # each device holds u/a instances (replicated over the b devices of their row) and u p / (a b) students
    budget = max_memory * a * b
    cap = chunk_size or max(1, budget // per_student)
    p = max(1, min(n_points, cap, max(1, (budget - per_inst * b) // per_student)))
    p = math.ceil(n_points / math.ceil(n_points / p))  # as many chunks, evenly filled: less padding
    u = max(1, min(n_instances, cap // p, max(1, budget // (p * per_student + per_inst * b))))
    u = math.ceil(n_instances / math.ceil(n_instances / u))
    return a * math.ceil(u / a), b * math.ceil(p / b)


class ChunkPlan(Sequence):
    """The chunks of a group, built on demand (``len``, index, iterate): a 10^7-student group never
    holds every chunk's arrays at once. Chunk k covers instance block ``k // n_point_blocks`` and
    point block ``k % n_point_blocks`` (blocks without a real student are skipped). A pad slot
    trains a copy of a real point of its instance (of the chunk, in a row of pad instances), so
    every traced value stays in its validated range (no batch of 0 rows); its results are dropped."""

    def __init__(self, u, p, order, starts, keys, inst, pos, values, ids, hp, n_inst, mesh=(1, 1)):
        self.u, self.p, self.mesh = u, p, mesh
        self._order, self._starts, self._keys = order, starts, keys  # students sorted by chunk; chunk k's: order[starts[k]:starts[k+1]]
        self._inst, self._pos, self._values, self._ids, self._hp, self._n_inst = inst, pos, values, ids, hp, n_inst

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        u, p = self.u, self.p
        rows = self._order[self._starts[k]:self._starts[k + 1]]
        ib = int(self._inst[rows[0]]) // u
        r, c = spread(self._inst[rows] - ib * u, u, self.mesh[0]), spread(self._pos[rows] % p, p, self.mesh[1])
        src = np.full(u, rows[0])
        src[r] = rows  # a real student of each row (the chunk's first for a row of pad instances)
        values = {}
        for name, v in self._values.items():
            block = np.repeat(v[src][:, None], p, axis=1)  # pads: a real point of the same instance
            block[r, c] = v[rows]
            values[name] = block
        ids = np.full((u, p), -1, np.int64)
        ids[r, c] = self._ids[rows]
        inst_rows = ib * u + spread(np.arange(u), u, self.mesh[0], inverse=True)
        inst_rows = np.where(inst_rows < self._n_inst, inst_rows, 0)  # pad with instance 0 (results discarded)
        return Chunk(k, {name: h[inst_rows] for name, h in self._hp.items()}, values, ids)


def spread(i: np.ndarray, n: int, n_devices: int, inverse: bool = False) -> np.ndarray:
    """Where the i-th of a block's n entries sits along an axis split over ``n_devices`` devices:
    dealt round-robin (entry i to device i mod n_devices), so the pads at a block's end spread over
    the devices and every device gets real students whenever the block has n_devices of them.
    ``inverse``: the entry at each position."""
    per = n // n_devices
    if inverse:
        return (i % per) * n_devices + i // per
    return (i % n_devices) * per + i // n_devices


def _shape(spec, n_inst, n_points, max_memory, dtype_bytes, n_devices, chunk_size, mesh):
    if mesh == "auto":
        mesh = mesh_shape(n_devices, n_inst, n_points)
    mesh = mesh or (n_devices, 1)
    return chunk_shape(spec, n_inst, n_points, max_memory=max_memory, dtype_bytes=dtype_bytes,
                       n_devices=n_devices, chunk_size=chunk_size, mesh=mesh), mesh


def group_shape(spec, students, *, max_memory: int, dtype_bytes: int, n_devices: int = 1,
                chunk_size: int | None = None) -> tuple[tuple[int, int], tuple[int, int]]:
    """((u, p), mesh): the chunk shape and device mesh :func:`plan_chunks` picks for a group with
    ``mesh="auto"`` (planning nothing else)."""
    _, sizes, _ = instance_index(students, spec.instance_columns)
    return _shape(spec, len(sizes), int(sizes.max()), max_memory, dtype_bytes, n_devices, chunk_size, "auto")


def fit_mesh(n_devices: int, u: int, p: int) -> tuple[int, int]:
    """A mesh for a chunk shape fixed in advance (a sharded run's, :func:`plan_chunks` ``shape``): the
    most devices d <= ``n_devices`` with a factorisation a * b = d, a | u, b | p (most along
    instances on ties)."""
    for d in range(n_devices, 0, -1):
        for a in range(d, 0, -1):
            if d % a == 0 and u % a == 0 and p % (d // a) == 0:
                return a, d // a
    return 1, 1


def plan_chunks(spec, students, *, max_memory: int, dtype_bytes: int, n_devices: int = 1,
                chunk_size: int | None = None, mesh: tuple[int, int] | str | None = None,
                shape: tuple[int, int] | None = None) -> tuple[tuple[int, int], ChunkPlan]:
    """Cut a group's students (a DataFrame) into equal (u, p) chunks.

    Returns ((u, p), chunks). ``chunk_size`` caps students per chunk (u * p), otherwise the
    memory budget does. ``mesh`` (a, b) devices along (instances, points) (default (``n_devices``,
    1)), or ``"auto"``: :func:`mesh_shape` of ``n_devices`` for this group (``chunks.mesh``): u is a
    multiple of a, p of b. ``shape``: (u, p) fixed in advance (a sharded run's, so every shard compiles
    the programs an unsharded run with that shape does; the mesh then fits it: :func:`fit_mesh`). Columnar: students are sorted once by (instance block,
    point block); chunks are built on demand (:class:`ChunkPlan`).
    """
    inst, sizes, hp_all = instance_index(students, spec.instance_columns)
    n_inst = len(sizes)
    n_points = int(sizes.max())
    if shape is not None:
        u, p = map(int, shape)
        mesh = fit_mesh(n_devices, u, p) if mesh == "auto" else (mesh or (1, 1))
    else:
        (u, p), mesh = _shape(spec, n_inst, n_points, max_memory, dtype_bytes, n_devices, chunk_size, mesh)
    order = np.argsort(inst, kind="stable")
    starts = np.zeros(n_inst + 1, np.int64)
    np.cumsum(sizes, out=starts[1:])
    pos = np.empty(len(inst), np.int64)
    pos[order] = np.arange(len(inst)) - np.repeat(starts[:-1], sizes)  # the student's place in its instance
    n_pb = math.ceil(n_points / p)
    key = (inst // u) * n_pb + pos // p
    by_chunk = np.argsort(key, kind="stable")
    keys, first = np.unique(key[by_chunk], return_index=True)
    bounds = np.append(first, len(key))
    values = {c: students[c].to_numpy(np.float64) for c in spec.traced_columns}
    ids = students["student_id"].to_numpy(np.int64)
    return (u, p), ChunkPlan(u, p, by_chunk, bounds, keys, inst, pos, values, ids, hp_all, n_inst, mesh)
