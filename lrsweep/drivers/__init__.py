"""Drivers: how a group's results are computed. Each implements one interface and the runner has
one loop and one writer for all of them.

- ``grid`` (:mod:`lrsweep.drivers.grid`): train every student with the engine;
- ``poly`` (:mod:`lrsweep.drivers.poly`): exact loss polynomials in the learning rates, one
  coefficient computation per instance (linear students under plain gd).

A driver's ``iter_group(spec, students, ctx)`` gets the whole group (so a resumed run plans the
same chunks) and a :class:`GroupContext` (students already done, budgets, checkpoints, ids), and
yields :class:`ChunkOutput`: host results in the engine's layout (``student_id``, ``curves``,
``reductions``, ``diverged``, ``diverged_step``, optionally ``mode`` per student) plus any extra
tables to store beside them. A new driver is a module here and an entry in :data:`DRIVERS`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np


@dataclasses.dataclass
class GroupContext:
    """What a driver may use besides the spec and students: ``done`` student ids, ``max_memory``,
    ``chunk_size``, ``checkpoints`` (:class:`lrsweep.checkpoint.ChunkCheckpoints`), ``run_id``,
    ``group_id``, ``options`` (the mode report of :func:`plan_mode`), ``progress`` (a
    :class:`lrsweep.progress.Progress`, or None: its ``chunk(n_students)`` gives a chunk's
    ``on_segment`` callback for progress inside long chunks)."""
    done: set = dataclasses.field(default_factory=set)
    max_memory: int | None = None
    chunk_size: int | None = None
    checkpoints: object = None
    run_id: str = ""
    group_id: int = 0
    options: dict = dataclasses.field(default_factory=dict)
    progress: object = None
    shape: tuple | None = None  # (u, p) fixed for the run (a sharded run's: every shard cuts the same chunks)


@dataclasses.dataclass
class ChunkOutput:
    index: int
    student_ids: np.ndarray   # the chunk's students (its checkpoint key)
    result: dict
    tables: dict = dataclasses.field(default_factory=dict)  # name -> (DataFrame, pyarrow schema)
    chunk: object = None      # the driver's own chunk record (engine Chunk, PolyChunk), for inspection


class Driver(NamedTuple):
    name: str
    iter_group: Callable


def drivers() -> dict[str, Driver]:
    from lrsweep.drivers import grid, poly
    return {d.name: d for d in (grid.DRIVER, poly.DRIVER)}


def plan_mode(spec, students, requested: str, *, dtype_bytes: int) -> dict:
    """Which driver runs a group and why ({"mode", "reason", ...}; poly adds its ``lr_scale``);
    ConfigError("train.mode") where the requested one cannot run it. Decided on the whole group, so
    a resumed run decides the same."""
    from lrsweep.chunking import instance_index
    from lrsweep.drivers import poly
    _, sizes, _ = instance_index(students, spec.instance_columns)  # columnar: no row list per instance
    rep = poly.mode_report(spec, len(students), len(sizes), requested, dtype_bytes=dtype_bytes)
    if rep["mode"] == "poly":
        rep["lr_scale"] = poly.group_scale(students, spec.arch.n_trainable)
    return rep
