"""Run a sweep: validate, plan, train group by group, write results crash-safely.

This is the one training loop every family uses; :func:`run` is what ``lrsweep run`` calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import math
import os
import platform
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.core import config as config_lib
from lrsweep.core import columns as columns_lib
from lrsweep.core import compilestats
from lrsweep.core import runstate
from lrsweep.core import stopping, store
from lrsweep.core.checkpoint import EVERY_S, SEGMENT_STEPS, ChunkCheckpoints
from lrsweep.core.errors import ConfigError, LrsweepError, StoreError
from lrsweep.core.progress import Progress
from lrsweep.core.summary import RunSummary, summarize

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"


class RunInterrupted(KeyboardInterrupt):
    """A run stopped by Ctrl-C or SIGTERM: every finished chunk is stored; ``--resume`` finishes it."""

    def __init__(self, run_dir: Path, n_done: int, n_total: int):
        super().__init__(f"{n_done} of {n_total} students have results in {run_dir}")
        self.run_dir, self.n_done, self.n_total = run_dir, n_done, n_total


def resolve_config_path(name: str | Path | None) -> Path:
    """A path, or a name looked up in ./configs and the shipped configs/ (``quickstart``); a path written
    as the README writes it (``configs/<family>/<file>.yaml``) that does not exist from the working
    directory is the shipped config of that name, so the README's commands run from any directory."""
    if name is None:
        return DEFAULT_CONFIG
    path = Path(name)
    if path.exists():
        return path
    shipped = DEFAULT_CONFIG.parent
    inside = Path(*path.parts[1:]) if len(path.parts) > 1 and path.parts[0] == "configs" else None
    for root in (Path.cwd() / "configs", shipped):
        for cand in (root / f"{name}.yaml", root / name, *([shipped / inside] if inside else [])):
            if cand.is_file():
                return cand
    raise config_lib.ConfigError("config", f"no config file or built-in config named '{name}' "
                                           f"(looked in ./configs and {shipped})")


def prepare(cfg: config_lib.SweepConfig):
    """Expand the grid and build every group's static spec. Raises ConfigError; computes nothing."""
    from lrsweep.core.spec import GroupSpec
    students = config_lib.expand_grid(cfg)
    varying = [c for c in config_lib.static_columns() if c in config_lib.axis_columns(cfg)]  # others: one value
    group_id, n_groups = columns_lib.row_codes([students[c].array for c in varying]) if varying else (
        np.zeros(len(students), np.int64), 1)
    students.insert(1, "group_id", group_id)
    first = columns_lib.first_rows(group_id) if n_groups > 1 else [0]  # group ids count up by first appearance
    specs = {gid: GroupSpec.from_row(students.iloc[int(i)].to_dict()) for gid, i in enumerate(first)}
    return students, specs


@dataclasses.dataclass
class Plan:
    """A run checked before any compute or run directory (:func:`plan_run`): its students, each
    group's spec and mode report, and each group's memory report (:func:`check_memory`)."""
    n_students: int
    students: pd.DataFrame
    specs: dict
    modes: dict
    memory: dict


def plan_run(cfg: config_lib.SweepConfig, out: str | Path | None = None, *, x64: bool = False,
             max_memory: int | None = None, max_students: int | None = config_lib.DEFAULT_MAX_STUDENTS,
             decided: dict | None = None) -> Plan:
    """Every check of a run, before any compute or run directory exists; raises ConfigError.

    In order: a run directory can be made under ``out`` (None: not checked); the grid has at most
    ``max_students`` students, counted from its axes before expanding (None: no cap); the grid
    itself (:func:`prepare`); each group's mode; the smallest chunk of each group fits ``max_memory``
    and the device (:func:`check_memory`). ``decided``: a run's stored mode reports (meta.json's
    ``groups``): a resumed run keeps its groups' modes. ``lrsweep run --dry-run`` prints what this returns.
    """
    for name, section in registry.SECTIONS.items():  # a config for a family's command (schedule_search)
        if cfg.raw.get(name) is not None:
            raise config_lib.ConfigError(name, f"this config describes a {section.command} run: run it with "
                                               f"lrsweep {section.command} CONFIG (lrsweep run trains a grid)")
    if out is not None:
        check_out(out, cfg.name)
    n = config_lib.grid_size(cfg) if max_students is None else config_lib.check_grid_size(cfg, max_students)
    students, specs = prepare(cfg)
    setup_jax(x64)
    modes = choose_modes(cfg, students, specs, decided)  # ConfigError for an impossible train.mode: poly
    return Plan(n, students, specs, modes, check_memory(specs, modes, max_memory))


def check_out(out: str | Path, name: str) -> None:
    """ConfigError("--out") where no run directory can be made in ``out``/``name``: a file on the way,
    or the nearest existing folder not writable."""
    path = Path(out) / name
    existing = next(p for p in (path, *path.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ConfigError("--out", f"{existing} is a file, not a directory; give a results folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError("--out", f"cannot write in {existing} (permission denied)")


def check_memory(specs: dict, modes: dict, max_memory: int | None) -> dict:
    """Per group: the smallest chunk's memory (:func:`lrsweep.core.chunking.min_chunk_bytes`, one instance
    and one student; a poly group's coefficients where larger) checked against the device (the
    accelerator's bytes_limit, else the host's RAM) and ``max_memory``; ConfigError where it does not
    fit. Returns {group: {"min_chunk", "budget", "device", "device_name"}} (bytes). After :func:`setup_jax`."""
    import jax
    import jax.numpy as jnp

    from lrsweep.core import engine
    from lrsweep.core.chunking import min_chunk_bytes
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    limit, ram = engine.memory_limits()
    device, device_name = (limit, f"{jax.devices()[0].device_kind} memory") if limit else (ram, "host RAM")
    report = {}
    for gid, spec in specs.items():
        need = max(min_chunk_bytes(spec, dtype_bytes), modes[gid].get("poly_bytes_per_instance", 0)
                   if modes[gid]["mode"] == "poly" else 0)
        a = spec.arch
        what = (f"the smallest chunk of group {gid} (one instance and one student: d={a.input_dim}, "
                f"n={spec.task.n_train}, h={a.width}, L={a.n_layers}, {dtype_bytes * 8}-bit) needs ~{format_bytes(need)}")
        if need > device:
            raise ConfigError("task.input_dim, task.n_train, model.width", f"{what}, more than the "
                              f"{format_bytes(device)} of {device_name}; make them smaller")
        if max_memory is not None and need > max_memory:
            raise ConfigError("--max-memory", f"{format_bytes(max_memory)} is too small: {what}; give at least "
                                              f"--max-memory {format_bytes(need, up=True)}")
        report[gid] = {"min_chunk": int(need), "budget": max_memory or engine.default_max_memory(spec),
                       "device": int(device), "device_name": device_name}
    return report


def format_bytes(n: float, up: bool = False) -> str:
    """1536 -> '1.5KiB'; ``up``: rounded up to the digit shown (a budget that is enough)."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{math.ceil(value * 10) / 10 if up else value:.1f}{unit}"
    return f"{int(n)}B"


def choose_modes(cfg: config_lib.SweepConfig, students: pd.DataFrame, specs: dict, decided: dict | None = None) -> dict:
    """Per group: which driver runs it (:func:`lrsweep.core.drivers.plan_mode`), from ``train.mode`` (after
    :func:`setup_jax`), or the mode ``decided`` ({str(group): report}, a run's meta.json) by ``auto`` when
    the run started. Raises ConfigError("train.mode") where poly is asked for but cannot run."""
    import jax.numpy as jnp

    from lrsweep.core import drivers
    requested = cfg.base.get("train.mode", "auto")
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    modes = {}
    for gid, spec in specs.items():
        before = (decided or {}).get(str(gid), {})
        keep = requested == "auto" and before.get("mode") in ("grid", "poly")
        group = config_lib.select_rows(students, students["group_id"].to_numpy() == gid)
        modes[gid] = drivers.plan_mode(spec, group, before["mode"] if keep else requested, dtype_bytes=dtype_bytes)
        if keep:
            modes[gid].update({k: v for k, v in before.items() if k.endswith("_s") or k.endswith("rate")},
                              requested="auto", reason=f"{before.get('reason', '')}; kept from the run's start")
    return modes


def setup_jax(x64: bool, cache_dir: str | None = None) -> None:
    import jax
    jax.config.update("jax_enable_x64", bool(x64))
    cache = cache_dir or os.environ.get("LRSWEEP_CACHE_DIR", str(Path.home() / ".cache" / "lrsweep" / "jax"))
    if cache.lower() in ("", "off", "none"):
        return
    try:
        jax.config.update("jax_compilation_cache_dir", cache)
        # every program is cached, however quick to compile: a repeated or resumed sweep compiles nothing
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
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

    from lrsweep._version import __version__
    dev = jax.devices()[0]
    return {"lrsweep": __version__, "jax": jax.__version__,
            "jaxlib": jaxlib.__version__, "python": platform.python_version(),
            "device_kind": dev.device_kind, "platform": dev.platform, "device_count": jax.device_count(),
            "git_revision": _git_revision(), "x64": bool(x64), "max_memory": max_memory,
            "chunk_size": chunk_size, "n_students": int(len(students)), "n_groups": len(specs),
            "command": " ".join(sys.argv), "status": "running",
            "started": _dt.datetime.now().isoformat(timespec="microseconds")}  # orders runs (load: latest)


def new_run_id() -> str:
    return _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run(cfg: config_lib.SweepConfig | None = None, out: str | Path = "results", *, x64: bool = False,
        max_memory: int | None = None, chunk_size: int | None = None, resume: str | Path | None = None,
        progress: bool = True, run_id: str | None = None, checkpoint_every: float | None = None,
        segment_steps: int | None = None, heartbeat_s: float = runstate.HEARTBEAT_S,
        max_students: int | None = config_lib.DEFAULT_MAX_STUDENTS, shard: tuple[int, int] | None = None,
        extra_meta: dict | None = None, then: Callable[[Path, runstate.RunRecord], None] | None = None) -> RunSummary:
    """Train every student of ``cfg``; write ``<out>/<name>/<run_id>/``; return a summary.

    With ``resume=RUN_DIR`` the config and precision stored in that run are reused (a
    ``max_memory`` / ``chunk_size`` given here replaces the stored one: results do not depend on
    them), chunks whose files are unreadable are dropped and only students without results are
    trained. The process holds the run's write lock (:class:`lrsweep.core.runstate.RunLock`) throughout:
    a second writer raises :class:`lrsweep.core.errors.RunLockedError`. ``checkpoint_every`` (seconds,
    default :data:`lrsweep.core.checkpoint.EVERY_S`; 0 disables) and ``segment_steps``: chunks of more
    steps are trained in segments and their state saved under ``RUN_DIR/checkpoints`` (orbax), so a
    resumed run continues inside them. ``max_students`` caps a new run's grid (None: no cap); every
    check of :func:`plan_run` passes before a run directory is made.

    ``shard=(i, n)``: train only shard i of n (:func:`lrsweep.core.distributed.shard_mask`) into the run
    ``run_id`` (required: the shards' common name), made by whichever shard comes first; see
    :func:`run_shard`. :func:`merge` finishes the run once every shard is complete.

    ``extra_meta``: entries of ``meta.json`` written with the run's first record, before any training
    (a family's :class:`lrsweep.registry.Stage` records itself as running there, so a run stopped
    anywhere shows its stage's resume command). ``then(run_dir, record)``: the work of that stage, run
    after the students are complete, still under the run's lock with the heartbeat going (it updates
    meta.json through ``record.update``). Neither applies to a shard.
    """
    if shard is not None:
        assert extra_meta is None and then is None, "a stage runs on the merged run, not on a shard"
        return run_shard(cfg, out, shard, x64=x64, max_memory=max_memory, chunk_size=chunk_size, resume=resume,
                         progress=progress, run_id=run_id, checkpoint_every=checkpoint_every,
                         segment_steps=segment_steps, heartbeat_s=heartbeat_s, max_students=max_students)
    with contextlib.ExitStack() as stack:
        if resume is not None:
            run_dir = Path(resume)
            if not store.is_run(run_dir):
                raise config_lib.ConfigError("--resume", f"{run_dir} is not a run directory (no meta.json)")
            runstate.refuse_other_kind(run_dir, "--resume")  # another kind's command finishes it
            _refuse_unsharded_resume(run_dir)
            stack.enter_context(runstate.RunLock(run_dir))  # before reading anything a writer changes
            meta = store.read_json(run_dir / "meta.json")
            cfg = config_lib.load_config(run_dir / "config.yaml")
            x64 = meta["x64"]
            max_memory = meta["max_memory"] if max_memory is None else max_memory
            chunk_size = meta["chunk_size"] if chunk_size is None else chunk_size
            meta.update(max_memory=max_memory, chunk_size=chunk_size)
        if resume is None and run_id is not None:
            _refuse_existing(Path(out) / cfg.name / run_id)
        plan = plan_run(cfg, None if resume is not None else out, x64=x64, max_memory=max_memory,
                        max_students=None if resume is not None else max_students,  # every check, no directory yet
                        decided=meta.get("groups") if resume is not None else None)
        students, specs, modes = plan.students, plan.specs, plan.modes
        if resume is None:
            run_dir = Path(out) / cfg.name / (run_id or new_run_id())
            try:
                run_dir.mkdir(parents=True, exist_ok=False)
            except FileExistsError:  # made since the check above
                _refuse_existing(run_dir)
                raise
            stack.enter_context(runstate.RunLock(run_dir))
            store.write_yaml(cfg.to_dict(), run_dir / "config.yaml")
            meta = _meta(cfg, students, specs, x64, max_memory, chunk_size)
        meta["groups"] = {str(gid): _jsonable(rep) for gid, rep in modes.items()}
        meta.update(extra_meta or {})
        record = runstate.RunRecord(run_dir, meta, heartbeat_s).start()
        stack.callback(record.stop)
        with compilestats.CompileStats().listening() as compiled:
            summary = _train(run_dir, record, students, specs, modes, resume is not None, max_memory, chunk_size,
                             progress, checkpoint_every, segment_steps)
        record.update(compile=compiled.as_dict())  # this attempt's: a resumed run loads from the cache
        summary.compile = compiled.as_dict()
        if then is not None:
            then(run_dir, record)
        return summary


def _refuse_existing(run_dir: Path) -> None:
    """ConfigError("--run-id") where a new run's directory ``run_dir`` already exists."""
    if run_dir.exists():
        what = "a run" if store.is_run(run_dir) else "a folder"
        raise ConfigError("--run-id", f"{run_dir} already exists ({what}); give another --run-id"
                                      + (f", or finish it with: {store.repair_command(run_dir)}" if store.is_run(run_dir) else ""))


def _refuse_unsharded_resume(run_dir: Path) -> None:
    """ConfigError("--shard") for ``--resume`` without ``--shard`` of a sharded run not yet merged: it
    would train the students of shards that may be running (each holds only its own lock)."""
    meta = store.read_json(run_dir / "meta.json")
    count = meta.get("shards")
    if count and meta.get("status") != "complete":
        raise ConfigError("--shard", f"{run_dir} is split into {count} shards: resume one with --resume {run_dir} "
                                     f"--shard i/{count}, then lrsweep merge {run_dir}")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n; ConfigError("--shard") otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or int(m.group(2)) < 1 or int(m.group(1)) >= int(m.group(2)):
        raise ConfigError("--shard", f"expected i/n with 0 <= i < n (e.g. 0/4 .. 3/4), got '{text}'")
    return int(m.group(1)), int(m.group(2))


def run_shard(cfg, out, shard: tuple[int, int], *, x64=False, max_memory=None, chunk_size=None, resume=None,
              progress=True, run_id=None, checkpoint_every=None, segment_steps=None,
              heartbeat_s=runstate.HEARTBEAT_S, max_students=config_lib.DEFAULT_MAX_STUDENTS) -> RunSummary:
    """Train shard ``(i, n)`` of a sweep into the shared run ``<out>/<name>/<run_id>`` (or ``resume``).

    Independent jobs (a Slurm array, machines without a coordinator, or the processes of one
    ``jax.distributed`` job) each run one shard at the same time: the first to arrive writes the
    run's config.yaml and meta.json (``status: sharded``, ``shards: n``), the others check that
    their config, precision and n are the run's (ConfigError otherwise, nothing written). Each
    shard holds its own lock (``.lock-shard-i-of-n``: the same shard twice is refused), takes the
    groups' modes from the run's meta.json where the run exists (so ``auto`` agrees), keeps its
    status and heartbeat in ``shards/i-of-n.json``, writes its chunks as parts named ``si of n-...``
    and merges nothing: :func:`merge` (``lrsweep merge RUN``) does, once all are complete.
    """
    index, count = shard
    if resume is not None:
        run_dir = Path(resume)
        if not store.is_run(run_dir):
            raise ConfigError("--resume", f"{run_dir} is not a run directory (no meta.json)")
        cfg = config_lib.load_config(run_dir / "config.yaml")
        x64 = bool(store.read_json(run_dir / "meta.json").get("x64", False))
    elif run_id is None:
        raise ConfigError("--run-id", "--shard needs --run-id ID, the name every shard of the sweep writes into "
                                      "(e.g. the Slurm job id)")
    else:
        run_dir = Path(out) / cfg.name / run_id
    if run_id is not None and resume is not None and Path(resume).name != run_id:
        raise ConfigError("--run-id", f"--resume {resume} is the run {Path(resume).name}, not {run_id}")
    decided = store.read_json(run_dir / "meta.json").get("groups") if store.is_run(run_dir) else None
    plan = plan_run(cfg, None if resume is not None else out, x64=x64, max_memory=max_memory,
                    max_students=None if resume is not None else max_students, decided=decided)
    students, specs, modes = plan.students, plan.specs, plan.modes
    with contextlib.ExitStack() as stack:
        meta = _join_sharded(run_dir, cfg, x64, count, students, specs, modes, max_memory, chunk_size)
        if any(meta.get("groups", {}).get(str(g), {}).get("mode", m["mode"]) != m["mode"] for g, m in modes.items()):
            modes = choose_modes(cfg, students, specs, meta["groups"])  # a shard that planned in the same moment
        stack.enter_context(runstate.RunLock(run_dir, runstate.shard_lock_name(index, count)))
        from lrsweep.core.distributed import shard_mask
        shapes = {int(g): tuple(v) for g, v in meta.get("chunk_shapes", {}).items()}
        in_shard = shard_mask(students, specs, index, count)
        mine = students[in_shard]
        record_path = runstate.shard_record_path(run_dir, index, count)
        record_meta = {"shard": index, "shards": count, "n_students": int(len(mine)), "run_id": run_dir.name,
                       "started": _dt.datetime.now().isoformat(timespec="microseconds"),
                       "groups": meta.get("groups", {})}
        if record_path.exists():
            previous = store.read_json(record_path)
            record_meta["wall_time_s"] = previous.get("wall_time_s", 0.0)
        record = runstate.RunRecord(run_dir, record_meta, heartbeat_s, path=record_path).start()
        stack.callback(record.stop)
        with compilestats.CompileStats().listening() as compiled:
            summary = _train(run_dir, record, students, specs, modes, True, max_memory, chunk_size, progress,
                             checkpoint_every, segment_steps, shard=shard,
                             others=frozenset(students["student_id"].to_numpy()[~in_shard].tolist()), shapes=shapes)
        record.update(compile=compiled.as_dict())
        summary.compile = compiled.as_dict()
        summary.shard = (index, count, int(len(mine)))
        return summary


def chunk_shapes(students, specs: dict, modes: dict, max_memory, chunk_size, count: int = 1) -> dict:
    """{group: [u, p]}: the chunk shape every shard of a sharded run uses for each grid-mode group, as
    an unsharded run on this machine would cut it with these settings and chunks of at most 1/count of
    the group (a shard's share is not padded up to a larger chunk). After :func:`setup_jax`.

    One shape for all shards, so they compile the same programs as an unsharded run with that shape:
    a student's numbers can depend on the shape of its chunk (XLA picks kernels per shape), not on
    its place in it or its neighbours, so the merged shards equal such a run bit for bit (checked
    on the CPU; tests/test_shard.py). The partition (:func:`lrsweep.core.distributed.shard_mask`) does
    not depend on it."""
    import jax
    import jax.numpy as jnp

    from lrsweep.core import chunking
    from lrsweep.core import engine
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    shapes = {}
    for gid, spec in specs.items():
        if modes[gid]["mode"] == "grid":
            group = config_lib.select_rows(students, students["group_id"].to_numpy() == gid)
            share = -(-len(group) // count)
            shape, _ = chunking.group_shape(spec, group, max_memory=max_memory or engine.default_max_memory(spec),
                                            dtype_bytes=dtype_bytes, n_devices=jax.local_device_count(),
                                            chunk_size=min(chunk_size or share, share))
            shapes[str(gid)] = list(shape)
    return shapes


def _join_sharded(run_dir: Path, cfg, x64: bool, count: int, students, specs, modes, max_memory,
                  chunk_size) -> dict:
    """Create the sharded run ``run_dir`` (config.yaml, meta.json), or check that it is this sweep's:
    same config, precision and shard count (ConfigError naming the difference; nothing written)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with runstate.RunLock(run_dir, ".lock-join"):  # one creator; the others read what it wrote
        if store.is_run(run_dir):
            meta = store.read_json(run_dir / "meta.json")
            stored, given = (_flat(c.to_dict()) for c in (config_lib.load_config(run_dir / "config.yaml"), cfg))
            if stored != given:
                differ = sorted(k for k in {*stored, *given} if stored.get(k) != given.get(k))
                raise ConfigError("--shard", f"{run_dir} holds another sweep (its config differs in "
                                             f"{', '.join(differ)}); every shard must get the same config and --set")
            if bool(meta.get("x64")) != bool(x64):
                raise ConfigError("--x64", f"{run_dir} is trained in {'float64' if meta.get('x64') else 'float32'}; "
                                           f"give every shard the same precision")
            if not meta.get("shards"):
                raise ConfigError("--shard", f"{run_dir} is not a sharded run (made without --shard); resume it "
                                             f"without --shard: lrsweep run --resume {run_dir}")
            if meta.get("shards") != count:
                raise ConfigError("--shard", f"{run_dir} is split into {meta.get('shards') or 1} shard(s), not {count}")
            return meta
        store.write_yaml(cfg.to_dict(), run_dir / "config.yaml")
        meta = _meta(cfg, students, specs, x64, max_memory, chunk_size)
        meta.update(status="sharded", shards=count, groups={str(gid): _jsonable(rep) for gid, rep in modes.items()},
                    chunk_shapes=chunk_shapes(students, specs, modes, max_memory, chunk_size, count))
        store.write_json(meta, run_dir / "meta.json")
        return meta


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested config as {dotted path: value}."""
    out = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def merge(run_dir: str | Path) -> RunSummary:
    """Finish a sharded run (``lrsweep merge RUN``): once every planned student has results (every
    shard complete), merge the parts (:func:`lrsweep.core.store.merge_parts`, checked against the plan
    recomputed from config.yaml) and mark the run complete. ConfigError naming what is wrong (not a
    run, not sharded, a shard running, students missing and their shards), StoreError naming a
    damaged part and the shard resume that repairs it; every check is made before the run's lock
    is taken, and again under it, so a refusal writes nothing. A complete run is left as it is."""
    run_dir = Path(run_dir)
    if not merge_pending(run_dir):
        return summarize(run_dir)
    with runstate.RunLock(run_dir):  # a refusal under it removes the lock file it made (RunLock.__exit__)
        meta, students, specs = _merge_checks(run_dir)
        planned = students["student_id"].to_numpy()
        expected_curves = sum(int((students["group_id"] == gid).sum()) * len(spec.log_steps)
                              for gid, spec in specs.items())
        rows = store.merge_parts(run_dir, planned, expected_curves)
        count = int(meta["shards"])
        records = [runstate.shard_record_path(run_dir, i, count) for i in range(count)]
        # a shard with no students (n above a group's size) need not have run: no record, no time
        walls = [store.read_json(r).get("wall_time_s", 0.0) if r.exists() else 0.0 for r in records]
        meta.update(status="complete", rows=rows, finished=_dt.datetime.now().isoformat(timespec="seconds"),
                    wall_time_s=round(max(walls), 3), shard_wall_time_s=walls,
                    students_per_s=round(len(planned) / max(walls), 2) if max(walls) > 0 else None)
        store.write_json(meta, run_dir / "meta.json")
    return summarize(run_dir)


def merge_pending(run_dir: Path) -> bool:
    """Whether ``lrsweep merge`` has work to do on ``run_dir``: False for a sharded run already merged;
    True for one whose shards are all complete (:func:`_merge_checks` passed, read-only, no lock);
    ConfigError / StoreError otherwise (not a run, not sharded, a shard running, students missing, a
    damaged part)."""
    run_dir = Path(run_dir)
    if not store.is_run(run_dir):
        raise ConfigError("run", f"{run_dir} is not a run directory (no meta.json)")
    runstate.refuse_other_kind(run_dir, "run")  # a schedule search has nothing to merge
    meta = store.read_json(run_dir / "meta.json")
    if not meta.get("shards"):
        raise ConfigError("run", f"{run_dir} is not a sharded run ({_run_kind_text(run_dir, meta)}, made without "
                                 f"--shard); nothing to merge")
    if meta.get("status") == "complete" and not (run_dir / "parts").is_dir():
        return False
    _merge_checks(run_dir)
    return True


def _run_kind_text(run_dir: Path, meta: dict) -> str:
    """'a schedule_search run', 'a boundary run', 'a plain run': what made ``run_dir``."""
    kind = registry.run_kind(run_dir)
    stage = next((s.name for s in registry.STAGES.values() if isinstance(meta.get(s.name), dict)), None)
    return f"a {kind.name if kind else stage or 'plain'} run"


def _merge_checks(run_dir: Path):
    """(meta, students, specs) of a sharded run every shard of which is complete; ConfigError naming
    the running shard, or the missing students and the shards that own them; StoreError naming a
    damaged part and the command that repairs it (that shard's resume). Reads only."""
    meta = store.read_json(run_dir / "meta.json")
    count = int(meta["shards"])
    states = runstate.shard_states(run_dir, count)
    running = [i for i, s in states.items() if s == "running"]
    if running:
        raise ConfigError("run", f"shard {running[0]}/{count} of {run_dir} is still running; merge once every "
                                 f"shard is complete")
    for part in sorted((run_dir / "parts").glob("*.parquet")) if (run_dir / "parts").is_dir() else []:
        problem = store.file_problem(part)
        if problem is not None:
            raise StoreError(part, f"{problem.split(': ', 1)[-1]}; repair with: "
                                   f"{store.repair_command(run_dir, part)}, then merge again")
    students, specs = prepare(config_lib.load_config(run_dir / "config.yaml"))
    planned = students["student_id"].to_numpy()
    missing = ~np.isin(planned, store.done_student_ids(run_dir))
    if missing.any():
        from lrsweep.core.distributed import shard_index
        owners = np.unique(shard_index(students, specs, count)[missing])  # the shards that train them
        todo = [f"{i}/{count} ({states[int(i)]})" for i in owners]
        raise ConfigError("run", f"{run_dir}: {int(missing.sum())} of {len(planned)} students have no results; "
                                 f"shards not complete: {', '.join(todo)}; run them (lrsweep run --resume "
                                 f"{run_dir} --shard i/{count}), then merge again")
    return meta, students, specs


def _train(run_dir, record, students, specs, modes, resumed, max_memory, chunk_size, progress, checkpoint_every,
           segment_steps, shard: tuple[int, int] | None = None, others: frozenset = frozenset(),
           shapes: dict | None = None) -> RunSummary:
    """The training loop of :func:`run`, under the run's lock; records the outcome in meta.json (a
    shard: in its own record, and it leaves the merge to ``lrsweep merge``). ``others``: ids of the
    students other shards train (planned with the rest, so chunks are cut as in an unsharded run,
    and skipped like done ones); ``shapes``: each grid group's fixed chunk shape (u, p)."""
    from lrsweep.core import drivers
    meta = record.meta
    start = time.perf_counter()
    trained = 0
    done: set = set()
    bar = None
    prefix = "" if shard is None else f"s{shard[0]}of{shard[1]}-"  # a shard's chunks: its own part names
    try:
        if resumed:
            _repair(run_dir, meta, prefix)
        done = set(store.done_student_ids(run_dir).tolist())
        skip = done | others
        attempt = uuid.uuid4().hex[:6]
        bar = Progress(len(students) - len(others), initial=len(done - others), enabled=progress)
        by_mode = drivers.drivers()
        stored = students[config_lib.stored_columns(students)]  # fields that apply to no student: not stored
        for gid, spec in specs.items():
            group = config_lib.select_rows(students, students["group_id"].to_numpy() == gid)
            if group["student_id"].isin(skip).all():
                continue
            bar.set_description(f"group {gid + 1}/{len(specs)} h={spec.arch.width} L={spec.arch.n_layers} "
                                f"T={spec.steps}")
            mode = modes[gid]["mode"]
            ckpts = ChunkCheckpoints(run_dir / "checkpoints" / f"{prefix}g{gid:04d}",
                                     EVERY_S if checkpoint_every is None else checkpoint_every,
                                     segment_steps or SEGMENT_STEPS)
            ctx = drivers.GroupContext(skip, max_memory, chunk_size, ckpts, run_dir.name, gid, modes[gid],
                                       progress=bar if progress else None, shape=(shapes or {}).get(gid))
            try:
                for out in by_mode[mode].iter_group(spec, group, ctx):
                    _write_chunk(run_dir, f"{prefix}g{gid:04d}-{attempt}-c{out.index:06d}", spec, stored, out,
                                 run_dir.name, mode)
                    ckpts.remove(out.student_ids)
                    n = len(out.result["student_id"])
                    trained += n
                    bar.update(n, n_diverged=int(np.sum(out.result["diverged"])))
                    stopping.check()  # a signal whose KeyboardInterrupt Python dropped
            except Exception as e:
                if "RESOURCE_EXHAUSTED" in str(e):  # XLA out of memory: a budget the user can lower
                    raise LrsweepError(
                        f"{run_dir}: out of device memory in group {gid} ({runstate.error_line(e, 160)}); "
                        f"resume with a smaller budget: lrsweep run --resume {run_dir} --max-memory SIZE") from e
                raise
        if (run_dir / "checkpoints").exists() and not any((run_dir / "checkpoints").iterdir()):
            (run_dir / "checkpoints").rmdir()
        rows = meta.get("rows")
        if (run_dir / "parts").is_dir() and shard is None:
            expected_curves = sum(int((students["group_id"] == gid).sum()) * len(spec.log_steps)
                                  for gid, spec in specs.items())
            rows = store.merge_parts(run_dir, students["student_id"].to_numpy(), expected_curves)
    except KeyboardInterrupt:
        _record_outcome(record, status="interrupted", wall_time_s=_wall(meta, start))
        raise RunInterrupted(run_dir, len(done - others) + trained, len(students) - len(others)) from None
    except BaseException as e:
        _record_outcome(record, status="failed", error=runstate.error_line(e), wall_time_s=_wall(meta, start))
        raise
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    record.update(status="complete", rows=rows, wall_time_s=_wall(meta, start),
                  students_per_s=round(trained / wall, 2) if wall > 0 and trained else meta.get("students_per_s"),
                  finished=_dt.datetime.now().isoformat(timespec="seconds"))
    summary = summarize(run_dir, wall=wall, trained=trained, groups=len(specs))
    summary.trained, summary.already = trained, len(done - others)
    return summary


def _record_outcome(record: runstate.RunRecord, **fields) -> None:
    """Record how the run ended (failed, interrupted) where meta.json can still be written; where it
    cannot (the fault being reported: a read-only or full disk), it keeps ``running``, which with
    the lock released reads as dead: resumable, never complete."""
    try:
        record.update(**fields)
    except OSError:
        pass


def _wall(meta: dict, start: float) -> float:
    """Wall time of every attempt of the run so far (this one started at ``start``)."""
    return round(time.perf_counter() - start + meta.get("wall_time_s", 0.0), 3)


def _repair(run_dir: Path, meta: dict, prefix: str = "") -> None:
    """Before resuming: drop the chunks whose parts are unreadable (their students are retrained),
    or, once merged, merged tables that fail verification (every student is retrained). Says what
    it dropped. ``prefix``: a shard's part names (it repairs only its own chunks)."""
    if (run_dir / "parts").is_dir():
        for line in store.scrub_parts(run_dir, prefix):
            print(f"lrsweep: retraining chunk {line}", file=sys.stderr)
    elif not prefix and store.has_merged(run_dir):
        problem = store.verify_complete(run_dir, meta)
        if problem:
            store.discard_merged(run_dir, [t for t in meta.get("rows") or {} if t not in store.PARTITIONED])
            meta.pop("rows", None)
            print(f"lrsweep: {problem}; retraining every student of the run", file=sys.stderr)


def _jsonable(rep: dict) -> dict:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in rep.items()}


def _write_chunk(run_dir: Path, stem: str, spec, students: pd.DataFrame, out, run_id: str, mode: str) -> None:
    """Write one chunk's parts: curves, then the driver's extra tables, then the students part, the
    marker that the chunk is done. Columns follow the results: one curves column per logged metric,
    ``final_<metric>`` and the running reductions in students. ``result["mode"]`` (per student)
    overrides ``mode``."""
    result = out.result
    ids = result["student_id"]
    rows = chunk_students(students, ids)
    assert np.array_equal(rows["student_id"].to_numpy(), ids), "students must be the whole plan, in plan order"
    rows.insert(0, "run_id", run_id)
    diverged_step = pd.array(result["diverged_step"].astype(np.int64), dtype="Int64")
    diverged_step[~result["diverged"]] = pd.NA
    added = {"formulation": spec.formulation, "mode": result["mode"] if "mode" in result else mode,
             **{f"final_{name}": values[:, -1] for name, values in result["curves"].items()},
             **result["reductions"], "diverged": result["diverged"], "diverged_step": diverged_step}
    for name in [c for c in added if c in rows]:  # a column the plan has: replaced in place
        rows[name] = added.pop(name)
    # the rest at once (a column at a time fragments the frame: one block per metric, e.g. body_sketch_0..k-1)
    rows = pd.concat([rows, pd.DataFrame(added, index=rows.index)], axis=1)
    k = len(spec.log_steps)
    curves = pd.DataFrame({"run_id": run_id, "student_id": np.repeat(ids, k),
                           "step": np.tile(np.asarray(spec.log_steps, np.int64), len(ids)),
                           **{name: v.reshape(-1).astype(np.float64) for name, v in result["curves"].items()}})
    # curves first: a students row is the marker that the student is done (see done_student_ids)
    store.write_table(curves, run_dir / "parts" / f"{stem}.curves.parquet")
    for name, (table, schema) in out.tables.items():
        store.write_table(table, run_dir / "parts" / f"{stem}.{name}.parquet", schema)
    store.write_table(rows, run_dir / "parts" / f"{stem}.students.parquet")


def chunk_students(students: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """The plan's rows ``ids`` (row positions: student ids) as the students part stores them, equal to
    ``store.lists_as_text(students.iloc[ids])``: list values as text. A column constant over the plan
    (a broadcast view, :func:`lrsweep.core.config.expand_grid`) is converted once and repeated, not row by row."""
    k = len(ids)
    constant = [c for c in students.columns if columns_lib.is_broadcast(students[c])]
    one = store.lists_as_text(students.iloc[:1][constant])  # the constants as stored, converted once
    cols = {}
    for name in students.columns:
        if name in one:
            value, dtype = one[name].iloc[0], one[name].dtype
            if isinstance(dtype, np.dtype):  # an object column stays one (no string inference)
                cols[name] = (pd.Series(_repeat_object(value, k), dtype=object) if dtype == object
                              else np.full(k, value, dtype))
            else:
                cols[name] = pd.array(_repeat_object(value, k), dtype=dtype)
        else:
            part = students[name].iloc[ids].reset_index(drop=True)
            cols[name] = store.lists_as_text(part.to_frame())[name] if part.dtype == object else part
    return pd.DataFrame(cols, copy=False)


def _repeat_object(value, k: int) -> np.ndarray:
    """(k,) object array of one value (a tuple stays one object)."""
    out = np.empty(k, object)
    out.fill(value)
    return out
