"""Planning a group's students into compiled calls (numpy and pandas only; no jax).

Students are laid out as (instances, points): an *instance* (its ``instance`` columns: seed,
noise_std, ...) owns the initial weights and data, shared by the learning-rate *points* that
train on it. :func:`plan_chunks` cuts a group into equal-shape chunks (padded, so no chunk
recompiles) that fit a memory budget; every driver plans with :func:`instance_groups`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from lrsweep import metrics as metrics_lib
from lrsweep import steps as steps_lib


def instance_groups(students, columns) -> tuple[list[np.ndarray], dict]:
    """Rows of each instance (in order of first appearance) and its hyperparameters.

    Returns (members, hp): ``members[i]`` the row positions of instance i's students, ``hp[c]``
    (n_instances,) the value of column c for each instance.
    """
    ids = students.groupby(list(columns), sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(ids, kind="stable")  # rows of instance 0, then 1, ...; each in row order
    members = np.split(order, np.cumsum(np.bincount(ids))[:-1])
    first = np.array([m[0] for m in members])
    return members, {c: students[c].to_numpy()[first] for c in columns}


@dataclasses.dataclass(frozen=True)
class Chunk:
    """One compiled call: ``instance_hp`` (u,) per instance column, ``hparams`` (u, p) per traced
    column, ``student_ids`` (u, p) (-1 = pad)."""
    index: int
    instance_hp: dict
    hparams: dict
    student_ids: np.ndarray


def bytes_per_student(spec, dtype_bytes: int) -> int:
    """Rough peak memory of one student inside a chunk (params, grads, update, temporaries, and the
    logged metrics' working set: e.g. sharpness's Lanczos basis, ntk_eig's Jacobian)."""
    arch, task = spec.arch, spec.task
    per = 4 * steps_lib.state_size(arch, spec.formulation, spec.steps) + 2 * spec.n_logs + 16
    per += metrics_lib.working_words(spec)
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
                chunk_size: int | None = None) -> tuple[int, int]:
    """(u, p): instances and points (students of one instance) per chunk. ``chunk_size`` caps students
    per chunk (u * p), otherwise ``max_memory`` does (at least one of each); u is a multiple of
    ``n_devices``."""
    per_student = bytes_per_student(spec, dtype_bytes)
    per_inst = bytes_per_instance(spec, dtype_bytes)
    cap = chunk_size or max(1, max_memory // per_student)
    p = max(1, min(n_points, cap, max(1, (max_memory - per_inst) // per_student)))
    p = math.ceil(n_points / math.ceil(n_points / p))  # as many chunks, evenly filled: less padding
    u = max(1, min(n_instances, cap // p, max(1, max_memory // (p * per_student + per_inst))))
    u = math.ceil(n_instances / math.ceil(n_instances / u))
    if n_devices > 1:
        u = n_devices * math.ceil(u / n_devices)
    return u, p


def plan_chunks(spec, students, *, max_memory: int, dtype_bytes: int, n_devices: int = 1,
                chunk_size: int | None = None) -> tuple[tuple[int, int], list[Chunk]]:
    """Cut a group's students (a DataFrame) into equal (u, p) chunks.

    Returns ((u, p), chunks). ``chunk_size`` caps students per chunk (u * p), otherwise the
    memory budget does. u is a multiple of ``n_devices`` (the sharded axis).
    """
    members, hp_all = instance_groups(students, spec.instance_columns)
    n_inst = len(members)
    n_points = max(len(m) for m in members)
    u, p = chunk_shape(spec, n_inst, n_points, max_memory=max_memory, dtype_bytes=dtype_bytes,
                       n_devices=n_devices, chunk_size=chunk_size)
    cols = spec.traced_columns
    values_all = {c: students[c].to_numpy(np.float64) for c in cols}
    ids_all = students["student_id"].to_numpy(np.int64)
    chunks = []
    for ib in range(0, n_inst, u):
        rows = np.arange(ib, ib + u)
        valid_rows = rows < n_inst
        rows = np.where(valid_rows, rows, 0)  # pad with instance 0 (results discarded)
        for pb in range(0, n_points, p):
            values = {c: np.zeros((u, p)) for c in cols}
            ids = np.full((u, p), -1, np.int64)
            for r, (inst, ok) in enumerate(zip(rows, valid_rows)):
                if not ok:
                    continue
                sel = members[inst][pb:pb + p]
                for c in cols:
                    values[c][r, :len(sel)] = values_all[c][sel]
                ids[r, :len(sel)] = ids_all[sel]
            if (ids >= 0).any():
                chunks.append(Chunk(len(chunks), {c: v[rows] for c, v in hp_all.items()}, values, ids))
    return (u, p), chunks
