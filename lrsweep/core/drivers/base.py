"""The driver interface (:mod:`lrsweep.core.drivers`): what a driver gets and what it yields."""

from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np


@dataclasses.dataclass
class GroupContext:
    """What a driver may use besides the spec and students: ``done`` student ids, ``max_memory``,
    ``chunk_size``, ``checkpoints`` (:class:`lrsweep.core.checkpoint.ChunkCheckpoints`), ``run_id``,
    ``group_id``, ``options`` (the mode report of :func:`plan_mode`), ``progress`` (a
    :class:`lrsweep.core.progress.Progress`, or None: its ``chunk(n_students)`` gives a chunk's
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
