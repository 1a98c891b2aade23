"""Run a sweep: validate, plan, train group by group, write results crash-safely.

This is the one training loop every family uses; :func:`run` is what ``lrsweep run`` calls.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep import config as config_lib
from lrsweep import store
from lrsweep.checkpoint import EVERY_S, SEGMENT_STEPS, ChunkCheckpoints
from lrsweep.progress import Progress

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM: every finished chunk is stored; ``--resume`` finishes it."""

    def __init__(self, run_dir: Path, n_done: int, n_total: int):
        super().__init__(f"{n_done} of {n_total} students have results in {run_dir}")
        self.run_dir, self.n_done, self.n_total = run_dir, n_done, n_total


@dataclasses.dataclass
class RunSummary:
    run_dir: Path
    n_students: int
    n_diverged: int
    wall_time_s: float
    students_per_s: float
    best: pd.DataFrame  # best non-diverged student per lr_total (or overall)
    groups: int


def resolve_config_path(name: str | Path | None) -> Path:
    """A path, or a name looked up in ./configs and the repository's configs/ (``quickstart``)."""
    if name is None:
        return DEFAULT_CONFIG
    path = Path(name)
    if path.exists():
        return path
    for root in (Path.cwd() / "configs", DEFAULT_CONFIG.parent):
        for cand in (root / f"{name}.yaml", root / name):
            if cand.is_file():
                return cand
    raise config_lib.ConfigError("config", f"no config file or built-in config named '{name}' "
                                           f"(looked in ./configs and {DEFAULT_CONFIG.parent})")


def prepare(cfg: config_lib.SweepConfig):
    """Expand the grid and build every group's static spec. Raises ConfigError; computes nothing."""
    from lrsweep.spec import GroupSpec
    students = config_lib.expand_grid(cfg)
    static = [c for c in config_lib.static_columns() if c in students]
    key = [repr(t) for t in zip(*(students[c].tolist() for c in static))]
    students.insert(1, "group_id", pd.factorize(np.array(key, dtype=object))[0].astype(np.int64))
    specs = {gid: GroupSpec.from_row(rows.iloc[0].to_dict()) for gid, rows in students.groupby("group_id", sort=True)}
    return students, specs


def choose_modes(cfg: config_lib.SweepConfig, students: pd.DataFrame, specs: dict) -> dict:
    """Per group: which driver runs it (:func:`lrsweep.drivers.plan_mode`), from ``train.mode`` (after
    :func:`setup_jax`). Raises ConfigError("train.mode") where poly is asked for but cannot run."""
    import jax.numpy as jnp

    from lrsweep import drivers
    requested = cfg.base.get("train.mode", "auto")
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    return {gid: drivers.plan_mode(spec, students[students["group_id"] == gid], requested, dtype_bytes=dtype_bytes)
            for gid, spec in specs.items()}


def setup_jax(x64: bool, cache_dir: str | None = None) -> None:
    import jax
    jax.config.update("jax_enable_x64", bool(x64))
    cache = cache_dir or os.environ.get("LRSWEEP_CACHE_DIR", str(Path.home() / ".cache" / "lrsweep" / "jax"))
    if cache.lower() in ("", "off", "none"):
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    except Exception:  # older jax without the persistent cache options
        pass


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _meta(cfg, students, specs, x64, max_memory, chunk_size) -> dict:
    import jax
    import jaxlib

    import lrsweep
    dev = jax.devices()[0]
    return {"lrsweep": getattr(lrsweep, "__version__", "0"), "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "python": platform.python_version(),
            "device_kind": dev.device_kind, "platform": dev.platform, "device_count": jax.device_count(),
            "git_revision": _git_revision(), "x64": bool(x64), "max_memory": max_memory,
            "chunk_size": chunk_size, "n_students": int(len(students)), "n_groups": len(specs),
            "command": " ".join(sys.argv), "status": "running",
            "started": _dt.datetime.now().isoformat(timespec="seconds")}


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run(cfg: config_lib.SweepConfig | None = None, out: str | Path = "results", *, x64: bool = False,
        max_memory: int | None = None, chunk_size: int | None = None, resume: str | Path | None = None,
        progress: bool = True, run_id: str | None = None, checkpoint_every: float | None = None,
        segment_steps: int | None = None) -> RunSummary:
    """Train every student of ``cfg``; write ``<out>/<name>/<run_id>/``; return a summary.

    With ``resume=RUN_DIR`` the config, precision and budget stored in that run are reused and
    only students without results are trained. ``checkpoint_every`` (seconds, default
    :data:`lrsweep.checkpoint.EVERY_S`; 0 disables) and ``segment_steps``: chunks of more steps
    are trained in segments and their state saved under ``RUN_DIR/checkpoints`` (orbax), so a
    resumed run continues inside them.
    """
    if resume is not None:
        run_dir = Path(resume)
        if not store.is_run(run_dir):
            raise config_lib.ConfigError("--resume", f"{run_dir} is not a run directory (no meta.json)")
        meta = store.read_json(run_dir / "meta.json")
        cfg = config_lib.load_config(run_dir / "config.yaml")
        x64, max_memory, chunk_size = meta["x64"], meta["max_memory"], meta["chunk_size"]
    students, specs = prepare(cfg)  # all validation happens here, before any directory exists
    setup_jax(x64)
    from lrsweep import drivers
    modes = choose_modes(cfg, students, specs)  # ConfigError for an impossible train.mode: poly
    if resume is None:
        run_dir = Path(out) / cfg.name / (run_id or new_run_id())
        run_dir.mkdir(parents=True, exist_ok=False)
        store.write_yaml(cfg.to_dict(), run_dir / "config.yaml")
        meta = _meta(cfg, students, specs, x64, max_memory, chunk_size)
    meta["groups"] = {str(gid): _jsonable(rep) for gid, rep in modes.items()}
    meta["status"] = "running"
    store.write_json(meta, run_dir / "meta.json")
    done = set(store.done_student_ids(run_dir).tolist())
    attempt = uuid.uuid4().hex[:6]
    bar = Progress(len(students), initial=len(done), enabled=progress)
    start = time.perf_counter()
    trained = 0
    registry = drivers.drivers()
    try:
        for gid, spec in specs.items():
            group = students[students["group_id"] == gid]
            if group["student_id"].isin(done).all():
                continue
            bar.set_description(f"group {gid + 1}/{len(specs)} h={spec.arch.width} L={spec.arch.n_layers} "
                                f"T={spec.steps}")
            mode = modes[gid]["mode"]
            ckpts = ChunkCheckpoints(run_dir / "checkpoints" / f"g{gid:04d}",
                                     EVERY_S if checkpoint_every is None else checkpoint_every,
                                     segment_steps or SEGMENT_STEPS)
            ctx = drivers.GroupContext(done, max_memory, chunk_size, ckpts, run_dir.name, gid, modes[gid],
                                       progress=bar if progress else None)
            for out in registry[mode].iter_group(spec, group, ctx):
                _write_chunk(run_dir, f"g{gid:04d}-{attempt}-c{out.index:06d}", spec, students, out, run_dir.name,
                             mode)
                ckpts.remove(out.student_ids)
                n = len(out.result["student_id"])
                trained += n
                bar.update(n, n_diverged=int(np.sum(out.result["diverged"])))
    except KeyboardInterrupt:
        bar.close()
        meta.update(status="interrupted", wall_time_s=round(time.perf_counter() - start + meta.get("wall_time_s", 0.0), 3))
        store.write_json(meta, run_dir / "meta.json")
        raise RunInterrupted(run_dir, len(done) + trained, len(students)) from None
    finally:
        bar.close()
    wall = time.perf_counter() - start
    if (run_dir / "checkpoints").exists() and not any((run_dir / "checkpoints").iterdir()):
        (run_dir / "checkpoints").rmdir()
    if (run_dir / "parts").exists():
        store.merge_parts(run_dir)
    meta.update(status="complete", wall_time_s=round(wall + meta.get("wall_time_s", 0.0), 3),
                students_per_s=round(trained / wall, 2) if wall > 0 and trained else meta.get("students_per_s"),
                finished=_dt.datetime.now().isoformat(timespec="seconds"))
    store.write_json(meta, run_dir / "meta.json")
    return summarize(run_dir, wall=wall, trained=trained, groups=len(specs))


def _jsonable(rep: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in rep.items()}


def _write_chunk(run_dir: Path, stem: str, spec, students: pd.DataFrame, out, run_id: str, mode: str) -> None:
    """Write one chunk's parts: curves, then the driver's extra tables, then the students part, the
    marker that the chunk is done. Columns follow the results: one curves column per logged metric,
    ``final_<metric>`` and the running reductions in students. ``result["mode"]`` (per student)
    overrides ``mode``."""
    result = out.result
    ids = result["student_id"]
    rows = students.set_index("student_id").loc[ids].reset_index()
    rows.insert(0, "run_id", run_id)
    for col in rows.columns:  # list-valued fields (log_steps, metrics, points) as text
        if rows[col].map(lambda v: isinstance(v, (list, tuple))).any():
            rows[col] = rows[col].map(lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else None)
    rows["formulation"] = spec.formulation
    rows["mode"] = result["mode"] if "mode" in result else mode
    for name, values in result["curves"].items():
        rows[f"final_{name}"] = values[:, -1]
    for name, values in result["reductions"].items():
        rows[name] = values
    rows["diverged"] = result["diverged"]
    diverged_step = pd.array(result["diverged_step"].astype(np.int64), dtype="Int64")
    diverged_step[~result["diverged"]] = pd.NA
    rows["diverged_step"] = diverged_step
    k = len(spec.log_steps)
    curves = pd.DataFrame({"run_id": run_id, "student_id": np.repeat(ids, k),
                           "step": np.tile(np.asarray(spec.log_steps, np.int64), len(ids)),
                           **{name: v.reshape(-1).astype(np.float64) for name, v in result["curves"].items()}})
    # curves first: a students row is the marker that the student is done (see done_student_ids)
    store.write_table(curves, run_dir / "parts" / f"{stem}.curves.parquet")
    for name, (table, schema) in out.tables.items():
        store.write_table(table, run_dir / "parts" / f"{stem}.{name}.parquet", schema)
    store.write_table(rows, run_dir / "parts" / f"{stem}.students.parquet")


def summarize(run_dir: Path, *, wall: float | None = None, trained: int | None = None,
              groups: int | None = None) -> RunSummary:
    """Summary of a stored run: counts, divergence, best learning rates per lr_total."""
    df = store.load(run_dir, table="students")
    meta = store.read_json(run_dir / "meta.json")
    ok = df[~df["diverged"].astype(bool)]
    lr_cols = sorted([c for c in df.columns if c.startswith("lr_") and c[3:].isdigit()], key=lambda c: int(c[3:]))
    keys = [c for c in ("n_layers", "width", "steps", "lr_total") if c in df and df[c].nunique() > 1] or []
    if ok.empty:
        best = pd.DataFrame()
    else:
        mean = ok.groupby([*keys, *lr_cols], dropna=False)["final_test_loss"].mean().reset_index()
        best = mean.loc[mean.groupby(keys)["final_test_loss"].idxmin()] if keys else mean.nsmallest(1, "final_test_loss")
        best = best.dropna(axis=1, how="all").reset_index(drop=True)
    wall = meta.get("wall_time_s", 0.0) if wall is None else wall
    trained = len(df) if trained is None else trained
    return RunSummary(run_dir, len(df), int(df["diverged"].sum()), wall,
                      meta.get("students_per_s") or (trained / wall if wall else float("nan")), best,
                      groups if groups is not None else meta.get("n_groups", 0))
