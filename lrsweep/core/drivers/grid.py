"""The grid driver (``train.mode: grid``): train every student with the engine (:mod:`lrsweep.core.engine`)."""

from __future__ import annotations

from lrsweep.core import engine
from lrsweep.core.drivers.base import ChunkOutput, Driver


def iter_group(spec, students, ctx):
    """Chunks planned over the whole group (a resumed run cuts the same chunks and finds their
    checkpoints); chunks whose students are all done are skipped. Long chunks report their
    segments to ``ctx.progress``."""
    segment_callback = ctx.progress.chunk if ctx.progress is not None else None
    for chunk, result in engine.iter_group(spec, students, max_memory=ctx.max_memory, chunk_size=ctx.chunk_size,
                                           done=ctx.done, checkpoints=ctx.checkpoints,
                                           segment_callback=segment_callback, shape=ctx.shape):
        yield ChunkOutput(chunk.index, chunk.student_ids, result, chunk=chunk)


DRIVER = Driver("grid", iter_group)
