"""Mid-chunk checkpoints: a long chunk's training state saved with orbax, so a killed run resumes
inside the chunk instead of from its first step.

A chunk is the unit of results (its Parquet parts are written atomically when it ends); for
chunks of many steps (schedules, long SGD runs) the engine trains in segments and, at most every
``every_s`` seconds, saves the batched state (weights, optimizer state, divergence bookkeeping,
logged metrics so far) and the step reached. The checkpoint is keyed by the chunk's student ids,
so it is only ever restored into the same students, and removed once the chunk's results are
written. orbax writes into a temporary directory and renames it when complete: a checkpoint cut
short by a crash is never restored.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

SEGMENT_STEPS = 1024  # steps per compiled segment when a chunk may be checkpointed
EVERY_S = 600.0       # default seconds between checkpoints of one chunk


class ChunkCheckpoints:
    """Save / restore / remove the training state of chunks under ``directory``.

    ``every_s``: seconds between saves of one chunk (0 or None disables checkpointing);
    ``segment_steps``: steps trained between two chances to save (chunks of at most that many
    steps are never checkpointed).
    """

    def __init__(self, directory: str | Path, every_s: float | None = EVERY_S, segment_steps: int = SEGMENT_STEPS):
        self.directory = Path(directory)
        self.every_s = every_s
        self.segment_steps = int(segment_steps)

    @property
    def enabled(self) -> bool:
        return bool(self.every_s) and self.every_s > 0

    @staticmethod
    def key(student_ids: np.ndarray) -> str:
        ids = np.ascontiguousarray(np.asarray(student_ids, np.int64))
        return hashlib.sha1(ids.tobytes() + str(ids.shape).encode()).hexdigest()[:16]

    def _paths(self, student_ids) -> list[Path]:
        """Finished checkpoints of these students, newest step last."""
        if not self.directory.exists():
            return []
        key = self.key(student_ids)
        found = [p for p in self.directory.glob(f"{key}-t*") if p.is_dir() and p.name.split("-t")[-1].isdigit()]
        return sorted(found, key=lambda p: int(p.name.split("-t")[-1]))

    def save(self, student_ids, step: int, leaves: list) -> Path:
        """Save host arrays ``leaves`` (the flattened state) after ``step`` steps; older ones are removed."""
        import orbax.checkpoint as ocp
        old = self._paths(student_ids)
        path = (self.directory / f"{self.key(student_ids)}-t{int(step):09d}").absolute()
        self.directory.mkdir(parents=True, exist_ok=True)
        tree = {"student_ids": np.asarray(student_ids, np.int64), "step": np.asarray(step, np.int64),
                "leaves": [np.asarray(x) for x in leaves]}
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(path, tree)
            ckptr.wait_until_finished()
        for p in old:
            if p != path:
                shutil.rmtree(p, ignore_errors=True)
        return path

    def restore(self, student_ids, like: list) -> tuple[int, list] | None:
        """(step, leaves) of the newest checkpoint of exactly these students, shaped like ``like``
        (a list of arrays or ShapeDtypeStructs); None if there is none (or it does not match)."""
        paths = self._paths(student_ids)
        if not paths:
            return None
        import jax
        import orbax.checkpoint as ocp
        ids = np.asarray(student_ids, np.int64)
        target = {"student_ids": jax.ShapeDtypeStruct(ids.shape, np.int64),
                  "step": jax.ShapeDtypeStruct((), np.int64),
                  "leaves": [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in like]}
        try:
            with ocp.StandardCheckpointer() as ckptr:
                tree = ckptr.restore(paths[-1].absolute(), target)
        except Exception:  # a checkpoint of another layout or precision: train the chunk afresh
            return None
        if not np.array_equal(np.asarray(tree["student_ids"]), ids):
            return None
        return int(tree["step"]), [np.asarray(x) for x in tree["leaves"]]

    def remove(self, student_ids) -> None:
        """Delete every checkpoint of these students, half-written ones included."""
        if not self.directory.exists():
            return
        for p in self.directory.glob(f"{self.key(student_ids)}-t*"):
            shutil.rmtree(p, ignore_errors=True)
        if self.directory.exists() and not any(self.directory.iterdir()):
            self.directory.rmdir()
