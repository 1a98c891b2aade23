"""``lrsweep boundary``: the learning rates where the phase changes, for every point of a grid's other axes.

1. The config's grid, with its shared ``lr`` axis as the coarse grid, is trained as an ordinary
   run (:func:`lrsweep.core.runner.run`; ``phase`` is added to ``train.metrics``): its students and
   curves tables as usual.
2. Per *unit* (a coarse student without its rate: the other axes and the seed) and boundary, the
   first change of phase along the coarse rates gives a bracket, which :mod:`lrsweep.core.bisect`
   narrows to ``hi / lo <= 1 + rtol``, every unit of a chunk in one compiled program.
3. ``boundaries.parquet``: one row per unit and boundary (:data:`lrsweep.core.bisect.BOUNDARIES`): the
   unit's config columns and ``seed``, ``boundary``, ``lr_low``, ``lr_high``, ``lr`` (their
   geometric mean), ``bracketed``, ``rounds``, ``n_trained`` (the unit's coarse students plus the
   rounds of this boundary), ``initial_train_loss`` and ``initial_ntk_eig`` (lambda_0; NaN unless
   ``ntk_eig`` is logged), to set ``lr`` beside 2 / lambda_0 and 4 / lambda_0.

Each finished chunk is written to ``boundary_parts/`` keyed by its units, so ``--resume`` trains
only the units without results, whatever the chunking; the parts are merged, each unit once.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from lrsweep.core import bisect
from lrsweep.core import chunking
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core import runstate
from lrsweep.core import stopping
from lrsweep.core import store
from lrsweep.core import config as config_lib
from lrsweep.core.columns import is_layer_rate, lr_columns
from lrsweep.core.config import ConfigError
from lrsweep.core.progress import Progress

DEFAULT_RTOL = 1e-3
STAGE = "boundary"  # the run's stage (meta.json key; registered by lrsweep.families.catapult)
PARTS = "boundary_parts"
TABLE = "boundaries.parquet"


@dataclasses.dataclass
class BoundarySummary:
    run_dir: Path
    table: pd.DataFrame
    rtol: float
    n_coarse: int          # students of the coarse grid
    n_bisection: int       # students trained by the bisections (all rounds, every unit)
    n_dense: int           # students a geometric grid of the same resolution would train

    @property
    def n_trained(self) -> int:
        return self.n_coarse + self.n_bisection


ULPS = 8  # the smallest rtol: this many float epsilons (sqrt(lo * hi) still splits such a bracket)


def min_rtol(x64: bool) -> float:
    """The smallest ``rtol`` the bisection can reach in this precision: :data:`ULPS` times the float
    epsilon (float32: 9.5e-07, float64: 1.8e-15). Below a few ulps the midpoint sqrt(lo * hi) rounds
    to lo or hi and the bracket stops shrinking: the rounds would run and the claim hi/lo <= 1 + rtol
    would be false."""
    return ULPS * float(np.finfo(np.float64 if x64 else np.float32).eps)


def check_rtol(rtol: float, x64: bool, option: str = "--rtol") -> None:
    """ConfigError(``option``) unless min_rtol(x64) <= rtol < 1."""
    low = min_rtol(x64)
    if not (low <= rtol < 1.0):
        precision = "float64 (--x64)" if x64 else "float32"
        other = "" if x64 else f"; --x64 (float64) allows down to {min_rtol(True):.2g}"
        raise ConfigError(option, f"must be in [{low:.2g}, 1) in {precision}, {ULPS} ulps of its precision at "
                                  f"least{other}; got {rtol!r}")


def check(cfg: config_lib.SweepConfig, rtol: float, x64: bool = False) -> list[float]:
    """The coarse rates (the grid's ``lr`` axis); ConfigError before any compute otherwise."""
    check_rtol(rtol, x64)
    for names, values in cfg.axes:
        if "lr" in names:
            if names != ("lr",):
                raise ConfigError("grid.lr", "lrsweep boundary bisects the shared rate lr: give it as its own "
                                             "axis, not inside a zip")
            lrs = sorted(v[0] for v in values)
            if len(lrs) < 2 or lrs[0] <= 0.0:
                raise ConfigError("grid.lr", f"lrsweep boundary needs at least 2 positive rates to bracket "
                                             f"the boundaries (e.g. lr: {{geomspace: [0.1, 10, 9]}}), got {lrs}")
            return lrs
    raise ConfigError("grid", "lrsweep boundary bisects a shared learning rate: give the grid an `lr` axis "
                              "(not lr_1..lr_L, lr_total or lr_line)")


def with_phase(cfg: config_lib.SweepConfig) -> config_lib.SweepConfig:
    """``cfg`` with ``phase`` among ``train.metrics`` (what the bisection reads), in the config it
    stores too (config.yaml), so a resumed run trains what the first attempt did."""
    metrics = tuple(cfg.base["train.metrics"] or ())
    if "phase" in metrics:
        return cfg
    train = dict(cfg.raw.get("train") or {})
    train["metrics"] = [*metrics, "phase"]
    return dataclasses.replace(cfg, base={**cfg.base, "train.metrics": metrics + ("phase",)},
                               raw={**cfg.raw, "train": train})


def resumable(run_dir: Path) -> tuple[float, bool]:
    """(rtol, x64) of a run ``lrsweep boundary --resume`` can finish; ConfigError("--resume") naming why
    not (not a run, a sharded run, a run not made by ``lrsweep boundary``, no ``phase`` metric or no
    ``lr`` axis, an rtol out of range). Reads only; writes nothing."""
    run_dir = Path(run_dir)
    if not store.is_run(run_dir):
        raise ConfigError("--resume", f"{run_dir} is not a run directory (no meta.json)")
    runstate.refuse_other_kind(run_dir, "--resume")  # a schedule search: its own command finishes it
    try:
        meta = store.read_json(run_dir / "meta.json")
        cfg = config_lib.load_config(run_dir / "config.yaml")
    except (OSError, ValueError) as e:
        raise ConfigError("--resume", f"{run_dir} cannot be read ({runstate.error_line(e, 160)})") from None
    if meta.get("shards"):
        raise ConfigError("--resume", f"{run_dir} was made by lrsweep run --shard, not by lrsweep boundary (which "
                                      f"does not shard); bisect its grid in a run of its own: "
                                      f"lrsweep boundary {run_dir / 'config.yaml'}")
    record = meta.get(STAGE)
    if not isinstance(record, dict):
        raise ConfigError("--resume", f"{run_dir} was not made by lrsweep boundary (its meta.json records no "
                                      f"bisection); bisect its grid in a run of its own: "
                                      f"lrsweep boundary {run_dir / 'config.yaml'}")
    if "phase" not in tuple(cfg.base["train.metrics"] or ()) and not _students_have_phase(run_dir):
        raise ConfigError("--resume", f"{run_dir} does not log the phase metric the bisection reads "
                                      f"(train.metrics); bisect its grid in a run of its own: "
                                      f"lrsweep boundary {run_dir / 'config.yaml'}")
    x64, rtol = bool(meta.get("x64", False)), record.get("rtol", DEFAULT_RTOL)
    try:
        check(cfg, rtol, x64)
    except ConfigError as e:
        raise ConfigError("--resume", f"{run_dir} cannot be bisected ({e})") from None
    return rtol, x64


def _students_have_phase(run_dir: Path) -> bool:
    """Whether the stored students have the phase (runs of lrsweep boundary from before config.yaml
    listed it); an unreadable file counts as yes (the resume retrains it)."""
    files = store.table_files(run_dir, "students")
    try:
        return bool(files) and "phase" in store.read_schema(files[0]).names
    except store.StoreError:
        return True


def run_boundary(cfg: config_lib.SweepConfig | None = None, out: str | Path = "results", *,
                 rtol: float = DEFAULT_RTOL, x64: bool = False, max_memory: int | None = None,
                 chunk_size: int | None = None, resume: str | Path | None = None, progress: bool = True,
                 max_students: int | None = config_lib.DEFAULT_MAX_STUDENTS) -> BoundarySummary:
    """Train the coarse grid (or finish it), then locate both boundaries of every unit to ``rtol``.

    The bisection is the run's stage ``boundary`` (:class:`lrsweep.registry.Stage`): ``meta.json``
    records ``boundary: {status: running, rtol}`` with the run's first record, before any training,
    so a run stopped anywhere (killed, interrupted, failed, in the coarse grid or the bisection) is
    not complete and names ``lrsweep boundary --resume RUN``; ``interrupted`` or ``failed`` (with the
    error) when it stopped in the bisection, ``complete`` with the row count of boundaries.parquet.

    With ``resume`` the run's config, precision and rtol are reused (:func:`resumable`: ConfigError
    before anything is written where the run is not one of these); finished chunks of the coarse
    grid and of the bisection are kept, a damaged boundaries.parquet is rebuilt, and a complete run
    is returned as it is.
    """
    if resume is not None:
        resume = Path(resume)
        rtol, x64 = resumable(resume)
        if runstate.run_state(resume).state == "complete":
            return _stored_summary(resume)
    else:
        check(cfg, rtol, x64)
        cfg = with_phase(cfg)
    result = []

    def bisection(run_dir: Path, record: runstate.RunRecord) -> None:
        meta = record.meta
        result.append(_bisection_stage(run_dir, record, rtol, meta.get("max_memory"), meta.get("chunk_size"),
                                       progress))

    runner.run(cfg, out, x64=x64, max_memory=max_memory, chunk_size=chunk_size, resume=resume, progress=progress,
               max_students=max_students, extra_meta={STAGE: {"status": "running", "rtol": rtol}}, then=bisection)
    return result[0]


class BisectionInterrupted(runner.RunInterrupted):
    """The bisection stopped by Ctrl-C or SIGTERM: finished chunks are stored; ``--resume`` finishes it."""

    def __init__(self, run_dir: Path):
        KeyboardInterrupt.__init__(self, f"the bisection stopped; its finished chunks are stored in {run_dir}")
        self.run_dir = run_dir


def _bisection_stage(run_dir: Path, record: runstate.RunRecord, rtol: float, max_memory, chunk_size,
                     progress: bool) -> BoundarySummary:
    """The bisection of a run whose students are complete, its state recorded in meta.json[boundary]."""
    stage = {"status": "running", "rtol": rtol}
    try:
        result = _bisect_run(run_dir, rtol, max_memory, chunk_size, progress)
    except KeyboardInterrupt:
        _record_stage(record, {**stage, "status": "interrupted"})
        raise BisectionInterrupted(run_dir) from None
    except BaseException as e:
        _record_stage(record, {**stage, "status": "failed", "error": runstate.error_line(e)})
        raise
    record.update(**{STAGE: {**stage, "status": "complete", "n_coarse": result.n_coarse,
                             "n_bisection": result.n_bisection, "n_dense": result.n_dense,
                             "rows": {TABLE: len(result.table)}}})
    _remove_parts(run_dir)  # after the record: until then they let a resume skip the finished units
    return result


def _record_stage(record: runstate.RunRecord, stage: dict) -> None:
    """Record how the bisection stopped; where meta.json cannot be written it still says running,
    which reads as not finished too (the error that stopped it is the one to report)."""
    try:
        record.update(**{STAGE: stage})
    except OSError:
        pass


def _remove_parts(run_dir: Path) -> None:
    if (run_dir / PARTS).is_dir():
        for p in (run_dir / PARTS).glob("*.parquet"):
            p.unlink()
        (run_dir / PARTS).rmdir()


def _stored_summary(run_dir: Path) -> BoundarySummary:
    """The summary of a complete bisection, from boundaries.parquet and meta.json."""
    record = store.read_json(run_dir / "meta.json")[STAGE]
    table = store.read_parquet(run_dir / TABLE).to_pandas()
    return BoundarySummary(run_dir, table, record["rtol"], int(record["n_coarse"]), int(record["n_bisection"]),
                           int(record["n_dense"]))


def units(students: pd.DataFrame, initial: pd.DataFrame) -> pd.DataFrame:
    """One row per unit (students equal but for their rates), in student-id order: the config columns,
    ``unit_id``, ``n_coarse``, the sorted coarse ``lrs`` and their ``phases``, the initial values."""
    rates = lr_columns(students) + ["lr_total"]
    keys = [c for c in ["group_id", *config_lib.field_columns()] if c in students]
    df = students.sort_values("student_id").merge(initial, on="student_id", how="left")
    df["_lr"] = df["lr_1"].astype(float)
    grouped = df.groupby(keys, sort=False, dropna=False)
    drop = [c for c in [*rates, "_lr", "student_id", "phase"] if c in df]
    first = grouped.head(1).drop(columns=drop).reset_index(drop=True)
    ordered = [g.sort_values("_lr") for _, g in grouped]
    first["unit_id"] = np.arange(len(first), dtype=np.int64)
    first["n_coarse"] = [len(g) for g in ordered]
    first["lrs"] = [g["_lr"].to_numpy() for g in ordered]
    first["phases"] = [g["phase"].to_numpy() for g in ordered]
    return first


def brackets(table: pd.DataFrame) -> np.ndarray:
    """(units, 2 boundaries, 2 sides lo / hi) initial brackets (NaN for an open side)."""
    out = np.full((len(table), len(bisect.BOUNDARIES), 2), np.nan)
    for i, (lrs, phases) in enumerate(zip(table["lrs"], table["phases"])):
        for b in range(len(bisect.BOUNDARIES)):
            out[i, b] = bisect.initial_bracket(lrs, phases, b)
    return out


def _initial_values(run_dir: Path) -> pd.DataFrame:
    """student_id, initial_train_loss and initial_ntk_eig (NaN if not logged) at step 0, read from the
    merged curves table (only those columns)."""
    files = store.table_files(run_dir, "curves")
    names = set().union(*(store.read_schema(f).names for f in files)) if files else set()
    first = store.read_table(files, ["student_id", "step", "train_loss"] + (["ntk_eig"] if "ntk_eig" in names else []))
    first = first[first["step"] == 0]
    return pd.DataFrame({"student_id": first["student_id"].to_numpy(),
                         "initial_train_loss": first["train_loss"].to_numpy(float),
                         "initial_ntk_eig": (first["ntk_eig"].to_numpy(float) if "ntk_eig" in first
                                             else np.full(len(first), np.nan))})


def _done_units(run_dir: Path) -> tuple[list[pd.DataFrame], set]:
    """The finished chunks of an earlier attempt (``boundary_parts/``) and their unit ids; a part that
    cannot be read is removed (its units are bisected again), saying so on stderr."""
    parts = sorted((run_dir / PARTS).glob("*.parquet")) if (run_dir / PARTS).is_dir() else []
    frames = []
    for p in parts:
        try:
            frames.append(store.read_parquet(p).to_pandas())
        except store.StoreError as e:
            print(f"lrsweep: {str(e).split(';')[0]}; bisecting its units again", file=sys.stderr)
            p.unlink()
    done = set(np.concatenate([f["unit_id"].to_numpy() for f in frames]).tolist()) if frames else set()
    return frames, done


def _bisect_run(run_dir: Path, rtol: float, max_memory, chunk_size, progress: bool) -> BoundarySummary:
    planned, specs = runner.prepare(config_lib.load_config(run_dir / "config.yaml"))
    stored = store.load(run_dir, table="students")[["student_id", "phase"]]
    students = planned.merge(stored, on="student_id", how="left", validate="one_to_one")
    table = units(students, _initial_values(run_dir))
    start = brackets(table)
    ratio = start[..., 1] / start[..., 0]
    frames, done = _done_units(run_dir)
    dtype_bytes = jnp.dtype(jnp.result_type(float)).itemsize
    sharding = engine.instance_sharding()
    n_dev = jax.local_device_count() if sharding is not None else 1
    n_bisection = 0
    plans = []
    for gid, members in table.groupby("group_id", sort=True).groups.items():
        rows = np.asarray(members)
        spec = specs[gid]
        finite = ratio[rows][np.isfinite(ratio[rows])]
        rounds = bisect.rounds_needed(float(finite.max()), rtol) if len(finite) else 0
        n_bisection += len(rows) * len(bisect.BOUNDARIES) * rounds
        todo = rows[~np.isin(table["unit_id"].to_numpy()[rows], list(done))]
        if len(todo):
            plans.append((spec, rounds, len(rows), todo))
    (run_dir / TABLE).unlink(missing_ok=True)  # a table of an earlier attempt (damaged) is rebuilt
    bar = Progress(sum(len(t) for _, _, _, t in plans) * len(bisect.BOUNDARIES), enabled=progress,
                   unit="bisection", diverged=False)
    try:
        for spec, rounds, n_units, todo in plans:
            bar.set_description(f"boundary h={spec.arch.width} L={spec.arch.n_layers} {rounds} rounds")
            # the chunk shape of the whole group, whatever is left: a resumed attempt compiles the same
            # program, so its units' brackets are the uninterrupted run's bit for bit
            u, _ = chunking.chunk_shape(bisect.phase_spec(spec), n_units, len(bisect.BOUNDARIES),
                                        max_memory=max_memory or engine.default_max_memory(spec),
                                        dtype_bytes=dtype_bytes, n_devices=n_dev, chunk_size=chunk_size)
            for c in range(0, len(todo), u):
                rows = todo[c:c + u]
                lo, hi = _bisect_chunk(spec, rounds, table.iloc[rows], start[rows], u, sharding)
                part = _rows(table.iloc[rows], start[rows], lo, hi, rounds)
                store.write_table(part, run_dir / PARTS / f"u{int(table['unit_id'].iloc[rows[0]]):09d}.parquet")
                frames.append(part)
                bar.update(len(rows) * len(bisect.BOUNDARIES))
                stopping.check()  # a signal whose KeyboardInterrupt Python dropped
    finally:
        bar.close()
    merged = pd.concat(frames, ignore_index=True) if frames else _rows(table.iloc[:0], start[:0], start[:0, :, 0],
                                                                        start[:0, :, 1], 0)
    merged = (merged.drop_duplicates(["unit_id", "boundary"]).sort_values(["unit_id", "boundary"], kind="stable")
              .reset_index(drop=True))
    if len(merged) != len(table) * len(bisect.BOUNDARIES):
        raise store.StoreError(run_dir / PARTS, f"{len(merged)} boundary rows for {len(table)} units; "
                                                f"finish it with: lrsweep boundary --resume {run_dir}")
    store.write_table(merged, run_dir / TABLE)
    lrs = np.concatenate(list(table["lrs"])) if len(table) else np.zeros(0)
    n_dense = len(table) * bisect.dense_equivalent(float(lrs.min()), float(lrs.max()), rtol) if len(table) else 0
    return BoundarySummary(run_dir, merged, rtol, int(table["n_coarse"].sum()), n_bisection, n_dense)


def _bisect_chunk(spec, rounds: int, chunk: pd.DataFrame, start: np.ndarray, u: int, sharding):
    """Run one chunk's bisections: ``chunk`` (k <= u units) padded to u with its first unit (results
    dropped), so every chunk of a group has one shape and one compiled program."""
    k = len(chunk)
    pad = np.concatenate([np.arange(k), np.zeros(u - k, np.int64)])
    hp = {c: chunk[c].to_numpy()[pad] for c in spec.instance_columns}
    fn = engine.make_chunk_fn(bisect.phase_spec(spec))
    params0, inst = fn.instances(engine.instance_hparams(spec, hp))
    dtype = jnp.result_type(float)
    other = {c: jnp.asarray(chunk[c].to_numpy(np.float64)[pad], dtype)
             for c in spec.traced_columns if not is_layer_rate(c)}
    lo, hi = (jnp.asarray(start[pad, :, side], dtype) for side in (0, 1))
    args = (params0, inst, other, lo, hi)
    if sharding is not None:
        args = jax.device_put(args, sharding)
    lo, hi = jax.device_get(bisect.bisect_fn(spec, rounds)(*args))
    return np.asarray(lo, np.float64)[:k], np.asarray(hi, np.float64)[:k]


def _rows(chunk: pd.DataFrame, start: np.ndarray, lo: np.ndarray, hi: np.ndarray, rounds: int) -> pd.DataFrame:
    """One row per unit and boundary (the module docstring's columns)."""
    frames = []
    base = store.lists_as_text(chunk.drop(columns=["lrs", "phases"]).reset_index(drop=True))
    for b, name in enumerate(bisect.BOUNDARIES):
        bracketed = np.isfinite(start[:, b]).all(axis=1)
        f = base.copy()
        f["boundary"] = name
        f["bracketed"] = bracketed
        f["lr_low"] = np.where(bracketed, lo[:, b], start[:, b, 0])
        f["lr_high"] = np.where(bracketed, hi[:, b], start[:, b, 1])
        f["lr"] = np.where(bracketed, np.sqrt(f["lr_low"] * f["lr_high"]), math.nan)
        f["rounds"] = np.where(bracketed, rounds, 0).astype(np.int64)
        f["n_trained"] = f["n_coarse"].to_numpy(np.int64) + f["rounds"].to_numpy()
        frames.append(f)
    return pd.concat(frames, ignore_index=True)
