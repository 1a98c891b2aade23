"""Drivers: how a group's results are computed. Each implements one interface and the runner has
one loop and one writer for all of them.

- ``grid`` (:mod:`lrsweep.core.drivers.grid`): train every student with the engine;
- ``poly`` (:mod:`lrsweep.core.drivers.poly`): exact loss polynomials in the learning rates, one
  coefficient computation per instance (linear students under plain gd).

A driver's ``iter_group(spec, students, ctx)`` gets the whole group (so a resumed run plans the
same chunks) and a :class:`GroupContext` (students already done, budgets, checkpoints, ids), and
yields :class:`ChunkOutput`: host results in the engine's layout (``student_id``, ``curves``,
``reductions``, ``diverged``, ``diverged_step``, optionally ``mode`` per student) plus any extra
tables to store beside them. A new driver is a module here and an entry in :func:`drivers`.
"""

from __future__ import annotations

from lrsweep.core.drivers.base import ChunkOutput, Driver, GroupContext


def drivers() -> dict[str, Driver]:
    from lrsweep.core.drivers import grid, poly
    return {d.name: d for d in (grid.DRIVER, poly.DRIVER)}


def plan_mode(spec, students, requested: str, *, dtype_bytes: int) -> dict:
    """Which driver runs a group and why ({"mode", "reason", ...}; poly adds its ``lr_scale``);
    ConfigError("train.mode") where the requested one cannot run it. Decided on the whole group, so
    a resumed run decides the same."""
    from lrsweep.core.chunking import instance_index
    from lrsweep.core.drivers import poly
    _, sizes, _ = instance_index(students, spec.instance_columns)  # columnar: no row list per instance
    rep = poly.mode_report(spec, len(students), len(sizes), requested, dtype_bytes=dtype_bytes)
    if rep["mode"] == "poly":
        rep["lr_scale"] = poly.group_scale(students, spec.arch.n_trainable)
    return rep


__all__ = ["ChunkOutput", "Driver", "GroupContext", "drivers", "plan_mode"]
