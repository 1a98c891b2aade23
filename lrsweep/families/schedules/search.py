"""``lrsweep schedule``: optimal learning-rate (and batch, momentum) schedules of seed 004's power-law
random-feature model, found through the exact loss recursion (:mod:`lrsweep.families.schedules.theory`),
written beside the best schedule of each family, and verified by Monte Carlo SGD in the engine
(``--verify SEEDS``).

The config is an ordinary sweep config of the ``power_law_features`` task (its grid may sweep
``task.a``, ``task.b``, ``task.n_features``, ``task.noise_std``, ``train.batch_size``; a point is one
combination of those) with an optional ``schedule_search`` section (:data:`SEARCH_FIELDS`; without
it every default applies and the horizons are the config's ``train.steps`` where it gives them).
Every rate whose expected loss stays finite is searched unless the section bounds the rate
(``eta_max`` or ``eta_max_fraction``); every reported schedule says whether it touches that bound.
A run directory holds:

- ``schedules.parquet``: one row per point, horizon ``T``, ``schedule`` (its family: optimal, constant, power, ...) and step ``t`` = 0..T (block
  starts where the search ran in blocks, ``block_steps`` long): ``lr``, ``step_batch_size``,
  ``momentum`` (NaN at t = T) and ``expected_loss`` (before step t);
- ``schedule_summary.parquet``: one row per point, ``T`` and ``schedule``: the final ``expected_loss``,
  ``rate_bound`` (inf: none) and ``at_bound``, the schedule's peak and initial rate, its decay
  (``decay_exponent``, ``decay_prefactor``, ``plateau_rate``, ``decay_window``), the family's fitted
  parameters (``param_*``), ``start`` (the family the optimum started from) and, after ``--verify``,
  the Monte Carlo ``mc_mean``, ``mc_sem``, ``mc_n``, ``mc_diverged`` and the tail of the final losses
  (``mc_tail_k``, ``mc_seeds_needed``: :mod:`lrsweep.core.tails`) of the engine's students trained with
  exactly that schedule (``verify/<run_id>/``, ordinary runs).

Numerics live in the theory module; this module reads configs and writes tables.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep.core import config as config_lib
from lrsweep.core import stopping
from lrsweep.core import store
from lrsweep.core import tails
from lrsweep.core.columns import short_name
from lrsweep.core.errors import ConfigError
from lrsweep.families.schedules.point import POINT_COLUMNS, SCHEDULE, STUDENT_COLUMNS, point_label, read_table

BASE_KINDS = ("optimal", "constant", "power", "polynomial", "wsd", "cosine")
EXTRA_KINDS = ("optimal_batch", "optimal_momentum")
DEFAULT_HORIZONS = {"geomspace": [100, 10000, 10]}
EXACT_UP_TO = 20_000          # default resolution: exact up to this horizon, blocks of 1% beyond
BLOCK_RESOLUTION = 0.01
SEARCH_FIELDS = {
    "horizons": (None, "training horizons T: a list or {geomspace: [T_min, T_max, n]} (null: the config's "
                       "train.steps values where given, else geomspace 100..10,000, 10 horizons)"),
    "kinds": (list(BASE_KINDS), "schedule kinds: " + ", ".join(BASE_KINDS + EXTRA_KINDS)),
    "parameterization": ("segments", "the optimal schedule: `segments` (a log-rate correction of the best family's "
                                     "schedule, linear between nodes equally spaced in log(1 - t/T) and in t/T), "
                                     "`piecewise_constant` (constant on n_segments pieces of log(1 - t/T)) or "
                                     "`array` (one rate per step)"),
    "n_segments": (32, "nodes in log(1 - t/T) of a `segments` schedule (>= 2), pieces of a piecewise_constant one"),
    "eta_max": (None, "largest rate allowed (null: no bound; every rate with a finite expected loss is searched)"),
    "eta_max_fraction": (None, "with eta_max null: bound the rate at this share of the constant rate's mean-square "
                               "stability bound (null: no bound)"),
    "iterations": (None, "Adam steps of the free optimum (null: 200)"),
    "resolution": (None, "`exact` (one recursion step per SGD step) or r in (0, 1): blocks of max(1, r min(t, T-t)) "
                         "steps (section 4 of lrsweep.families.schedules.theory; null: exact up to T = 20,000, "
                         "0.01 beyond)"),
    "sample_budget": (None, "optimal_batch: total samples sum_t m_t (null: batch_size x T)"),
    "momentum_max": (0.99, "optimal_momentum: largest beta"),
}


@dataclasses.dataclass(frozen=True)
class Search:
    horizons: tuple
    kinds: tuple
    options: dict
    origin: dict = dataclasses.field(default_factory=dict)  # horizons, kinds -> where they come from, in words

    def describe(self) -> str:
        """What is searched and where it comes from, one line (``lrsweep schedule`` prints it)."""
        return (f"horizons T = {', '.join(map(str, self.horizons))} ({self.origin.get('horizons', 'given')}); "
                f"schedules: {', '.join(self.kinds)} ({self.origin.get('kinds', 'given')})")


def _config_steps(cfg: config_lib.SweepConfig) -> tuple | None:
    """The horizons the config gives as ``train.steps`` (a value or a grid axis), None where it gives none."""
    raw_train = cfg.raw.get("train") or {}
    names = {n for names, _ in cfg.axes for n in names}
    if "train.steps" in names:
        i = next(i for i, (ns, _) in enumerate(cfg.axes) if "train.steps" in ns)
        names_i, values = cfg.axes[i]
        j = names_i.index("train.steps")
        return tuple(sorted({int(v[j]) for v in values}))
    if isinstance(raw_train, dict) and raw_train.get("steps") is not None:
        return (int(cfg.base["train.steps"]),)
    return None


def _horizons(spec, cfg) -> tuple[tuple, str]:
    """(the horizons, where they come from in words); ConfigError("schedule_search.horizons") naming the
    allowed values: integer step counts in [2, 10^9] (a generated axis is rounded to integers)."""
    if spec is None:
        given = _config_steps(cfg)
        if given is not None:
            return given, "the config's train.steps; schedule_search.horizons not given"
        spec, origin = DEFAULT_HORIZONS, "the default geomspace 100..10,000, 10 horizons; schedule_search.horizons " \
                                         "and train.steps not given"
    else:
        origin = "schedule_search.horizons"
    allowed = "integer step counts in [2, 10^9], as a list or {geomspace: [T_min, T_max, n]}"
    if not isinstance(spec, (dict, list, tuple, int, float)) or isinstance(spec, bool):
        raise ConfigError("schedule_search.horizons", f"expected {allowed}, got {spec!r}")
    horizons = config_lib.grid_values(spec, "schedule_search.horizons")
    bad = [h for h in horizons if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h)
           or h < 2 or h > 1e9 or (not isinstance(spec, dict) and not float(h).is_integer())]
    if bad:
        raise ConfigError("schedule_search.horizons", f"expected {allowed}, got {bad[0]!r}")
    return tuple(sorted({int(round(h)) for h in horizons})), origin


def read_search(cfg: config_lib.SweepConfig) -> Search:
    """The validated ``schedule_search`` section (defaults where absent; ConfigError naming the field)."""
    raw = cfg.raw.get("schedule_search")
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError("schedule_search", f"must be a mapping of {', '.join(SEARCH_FIELDS)}")
    for key in raw:
        if key not in SEARCH_FIELDS:
            raise ConfigError(f"schedule_search.{key}", f"unknown field; allowed: {', '.join(SEARCH_FIELDS)}")
    value = {k: raw.get(k, default) for k, (default, _) in SEARCH_FIELDS.items()}
    horizons, horizons_origin = _horizons(value["horizons"], cfg)
    kinds = value["kinds"]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    allowed = BASE_KINDS + EXTRA_KINDS
    if not isinstance(kinds, list) or not kinds or any(not isinstance(k, str) or k not in allowed for k in kinds):
        raise ConfigError("schedule_search.kinds", f"got {kinds!r}; allowed values: {', '.join(allowed)}")
    if value["parameterization"] not in ("segments", "piecewise_constant", "array"):
        raise ConfigError("schedule_search.parameterization", f"got {value['parameterization']!r}; allowed values: "
                                                              f"segments, piecewise_constant, array")
    for key, low in (("n_segments", 2), ("iterations", 1), ("sample_budget", 1)):
        v = value[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ConfigError(f"schedule_search.{key}", f"expected an integer >= {low} or null, got {v!r}")
    for key, (low, high) in (("eta_max", (0.0, 1e6)), ("momentum_max", (0.0, 1.0)), ("eta_max_fraction", (0.0, 1e6))):
        v = value[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not low < v <= high
                              or (key == "momentum_max" and v >= high)):
            bracket = ")" if key == "momentum_max" else "]"
            raise ConfigError(f"schedule_search.{key}", f"expected a number in ({low:g}, {high:g}{bracket} or null, "
                                                         f"got {v!r}")
    if value["eta_max"] is not None and value["eta_max_fraction"] is not None:
        raise ConfigError("schedule_search.eta_max_fraction", "give eta_max or eta_max_fraction, not both")
    resolution = value["resolution"]
    if resolution is not None and resolution != "exact" and (
            isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not 0 < resolution < 1):
        raise ConfigError("schedule_search.resolution", f"expected exact, a number in (0, 1) or null, got {resolution!r}")
    if resolution is None:
        resolution = "exact" if max(horizons) <= EXACT_UP_TO else BLOCK_RESOLUTION
    if resolution != "exact" and any(k in kinds for k in EXTRA_KINDS):
        raise ConfigError("schedule_search.resolution", "optimal_batch and optimal_momentum need resolution: exact")
    options = {k: value[k] for k in ("parameterization", "n_segments", "eta_max", "iterations", "sample_budget",
                                     "momentum_max", "eta_max_fraction") if value[k] is not None}
    options["resolution"] = None if resolution == "exact" else float(resolution)
    origin = {"horizons": horizons_origin,
              "kinds": "schedule_search.kinds" if "kinds" in raw else "the default; schedule_search.kinds not given"}
    return Search(horizons, tuple(dict.fromkeys(kinds)), options, origin)


def points(cfg: config_lib.SweepConfig) -> pd.DataFrame:
    """The distinct (a, b, N, sigma, batch size) of the config's grid (columns :data:`POINT_COLUMNS`);
    ConfigError where a student is not seed 004's SGD on power-law features, or where the grid gives
    learning rates (the search finds them)."""
    from lrsweep import registry
    default = registry.SECTIONS["schedule_search"].default_lr
    students = config_lib.expand_grid(cfg)
    for column, want in (("kind", ("power_law_features",)), ("optimizer", ("sgd", "momentum")),
                         ("n_layers", (1,)), ("parameterization", ("standard",)), ("init", ("zeros",))):
        bad = ~students[column].isin(want)
        if bad.any():
            path = next(p for p in config_lib.FIELDS if short_name(p) == column)
            raise ConfigError(path, f"lrsweep schedule optimises seed 004's SGD on the linear predictor: "
                                    f"allowed values: {', '.join(map(str, want))}, got {students[column][bad].iloc[0]!r}")
    rates = [n for names, values in cfg.axes for n in names if config_lib.is_rate_axis(n)
             and (names, values) != (("lr",), [(default,)])]  # the section's own lr 1 (its verify runs' scale)
    if rates:
        raise ConfigError(f"grid.{rates[0]}", "lrsweep schedule searches the learning rates itself (every rate "
                                              "whose expected loss stays finite; bound them with "
                                              "schedule_search.eta_max or eta_max_fraction): remove the rate axes "
                                              "from the grid")
    for column in ("schedule", "batch_schedule", "momentum_schedule"):
        if (students[column] != "constant").any():
            raise ConfigError(f"train.{column}", "lrsweep schedule finds the schedules itself: leave it constant")
    pts = students[[*STUDENT_COLUMNS, "optimizer"]].rename(columns=dict(zip(STUDENT_COLUMNS, POINT_COLUMNS)))
    return pts.drop_duplicates(list(POINT_COLUMNS)).reset_index(drop=True)


def rate_bound(point: dict, search: Search) -> float | None:
    """The search's rate bound at a point: eta_max, eta_max_fraction x the stability bound, or None."""
    from lrsweep.families.schedules import theory as rf
    if "eta_max" in search.options:
        return float(search.options["eta_max"])
    if "eta_max_fraction" in search.options:
        lam, _ = rf.spectrum(int(point["n_features"]), float(point["a"]), float(point["b"]))
        return float(search.options["eta_max_fraction"]) * rf.stability_limit(lam, float(point["batch_size"]))
    return None


def search_point(point: dict, search: Search, x64: bool = False) -> dict:
    """kind -> the theory's result for one point (see :func:`lrsweep.families.schedules.theory.search`): the
    search in float32 (``x64``: float64), every reported loss and curve the recursion's in float64."""
    import jax

    from lrsweep.families.schedules import theory as rf
    lam, target = rf.spectrum(int(point["n_features"]), float(point["a"]), float(point["b"]))
    modes = rf.exact_modes(lam, target ** 2)
    options = {k: v for k, v in search.options.items() if k not in ("eta_max", "eta_max_fraction")}
    options["eta_max"] = rate_bound(point, search)
    noise_var, horizons = float(point["noise_std"]) ** 2, np.asarray(search.horizons)
    with jax.enable_x64(bool(x64)):
        result = rf.search(modes, None, noise_var, horizons, kinds=search.kinds,
                           batch_size=float(point["batch_size"]), **options)
    with jax.enable_x64(True):  # every reported loss is the recursion in float64
        for res in result.values():
            mask = res["sizes"] > 0
            if options.get("resolution") is None:
                momentum = res["momentum"] if np.any(res["momentum"]) else None
                curve = rf.loss_curves(modes, None, noise_var, np.where(mask, res["lr"], 0.0),
                                       np.where(mask, res["batch"], 1.0), momentum)
            else:
                curve = rf.block_loss_curves(modes, noise_var, np.where(mask, res["lr"], 0.0), res["sizes"],
                                             np.where(mask, res["batch"], 1.0))
            last = mask.sum(axis=1)
            res.update(curve=np.asarray(curve), loss=np.asarray(curve)[np.arange(len(horizons)), last])
    return result


def _decay_columns(rf, lr, T) -> dict:
    """The decay of a per-step schedule (:func:`lrsweep.families.schedules.theory.fit_decay`); NaN where it
    has fewer than two positive rates."""
    try:
        fit = rf.fit_decay(lr, T)
    except ValueError:
        return {"decay_exponent": np.nan, "decay_prefactor": np.nan, "plateau_rate": np.nan}
    return {"decay_exponent": fit["delta"], "decay_prefactor": fit["peak"], "plateau_rate": fit["plateau"]}


def tables(point: dict, horizons, result: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(schedules rows, summary rows) of one point's result: per step (exact) or per block."""
    from lrsweep.families.schedules import theory as rf
    long, summary = [], []
    base = {k: point[k] for k in POINT_COLUMNS}
    skip = ("lr", "batch", "momentum", "loss", "curve", "sizes", "bound", "at_bound", "start")
    for kind, res in result.items():
        for h, T in enumerate(horizons):
            sizes = np.asarray(res["sizes"][h], np.int64)
            n = int((sizes > 0).sum())
            sizes = sizes[:n]
            lr, batch, beta = (np.asarray(res[k][h][:n], float) for k in ("lr", "batch", "momentum"))
            steps = rf.expand_blocks(lr, sizes)
            t = np.append(np.cumsum(sizes) - sizes, T)
            long.append(pd.DataFrame({**base, "T": T, SCHEDULE: kind, "t": t, "block_steps": np.append(sizes, 0),
                                      "lr": np.append(lr, np.nan), "step_batch_size": np.append(batch, np.nan),
                                      "momentum": np.append(beta, np.nan),
                                      "expected_loss": np.asarray(res["curve"][h][:n + 1], float)}))
            row = {**base, "T": T, SCHEDULE: kind, "expected_loss": float(res["loss"][h]),
                   "rate_bound": float(res["bound"]), "at_bound": bool(res["at_bound"][h]),
                   "lr_peak": float(lr.max()), "lr_initial": float(lr[0]),
                   "decay_window": float(rf.decay_window(steps, T)), "samples": float(rf.expand_blocks(batch, sizes).sum()),
                   **_decay_columns(rf, steps, T), "start": str(res["start"][h]) if "start" in res else kind}
            row.update({f"param_{k}": float(np.asarray(v)[h]) for k, v in res.items()
                        if k not in skip and np.ndim(v) == 1})
            summary.append(row)
    return pd.concat(long, ignore_index=True), pd.DataFrame(summary)


@dataclasses.dataclass
class ScheduleSummary:
    run_dir: Path
    summary: pd.DataFrame
    search_s: float
    verify_dirs: tuple = ()
    search: Search | None = None


class ScheduleInterrupted(KeyboardInterrupt):
    """A schedule run stopped by Ctrl-C or SIGTERM: ``lrsweep schedule --resume RUN`` finishes it."""

    def __init__(self, run_dir: Path, what: str):
        super().__init__(f"{what} of {run_dir} stopped")
        self.run_dir = run_dir


TABLES = ("schedules.parquet", "schedule_summary.parquet")  # the run kind's tables (registered in __init__)


def run_schedule(cfg: config_lib.SweepConfig | None = None, out: str | Path = "results", *,
                 verify: int | None = None, max_seeds: int | None = None, x64: bool = False,
                 progress: bool = True, max_memory: int | None = None,
                 resume: str | Path | None = None) -> ScheduleSummary:
    """Search every point's schedules, write the run, and with ``verify`` train every schedule with that
    many seeds in the engine (``RUN/verify/<run_id>``), more where the tail needs and ``max_seeds``
    allows (:func:`verify_schedules`), and add the Monte Carlo columns.

    Every check passes before the run directory exists. The run is written like ``lrsweep run``'s:
    under its write lock (:class:`lrsweep.core.runstate.RunLock`), its meta.json ``status`` running
    from the start (with a heartbeat), then complete, interrupted or failed; the options (``verify``,
    ``max_seeds``, ``x64``) are stored at the start, and the verification is the run's stage
    ``verify`` (``meta["verify"]["status"]``). ``resume=RUN``: finish or repair such a run with its
    stored config and options: a search whose tables are whole is kept, a damaged table rebuilt,
    every verify run resumed (:func:`lrsweep.core.runner.run`) and its results attached again."""
    from lrsweep.core import runner, runstate
    if resume is not None:
        return _resume(Path(resume), progress=progress, max_memory=max_memory)
    search = read_search(cfg)
    pts = points(cfg)  # every check before any directory
    runner.check_out(out, cfg.name)
    if verify is not None and verify < tails.MIN_SAMPLES:
        raise ConfigError("--verify", f"needs >= {tails.MIN_SAMPLES} seeds for a standard error and a tail fit "
                                      f"(two exceedances), got {verify}")
    max_seeds = default_max_seeds(verify) if max_seeds is None else max_seeds
    if verify is not None and max_seeds < verify:
        raise ConfigError("--verify-max-seeds", f"must be >= --verify ({verify}), got {max_seeds}")
    runner.setup_jax(x64=True)
    run_dir = Path(out) / cfg.name / runner.new_run_id()
    run_dir.mkdir(parents=True, exist_ok=False)
    import datetime as _dt
    with runstate.RunLock(run_dir):
        store.write_yaml(cfg.to_dict(), run_dir / "config.yaml")
        meta = {"kind": "schedule", "status": "running", "n_students": 0, "wall_time_s": 0.0,
                "started": _dt.datetime.now().isoformat(timespec="microseconds"), "x64": bool(x64),
                "horizons": list(search.horizons), "kinds": list(search.kinds), "n_points": len(pts),
                "resolution": search.options["resolution"],
                "options": {"verify": verify, "max_seeds": max_seeds if verify is not None else None,
                            "max_memory": max_memory}}
        store.write_json(meta, run_dir / "meta.json")
        return _execute(run_dir, cfg, meta, search, pts, progress=progress, max_memory=max_memory)


def _resume(run_dir: Path, *, progress: bool, max_memory: int | None) -> ScheduleSummary:
    """:func:`run_schedule` ``resume=run_dir``: ConfigError("--resume") where it is not a schedule run."""
    from lrsweep.core import runner, runstate
    if not store.is_run(run_dir):
        raise ConfigError("--resume", f"{run_dir} is not a run directory (no meta.json)")
    runstate.refuse_other_kind(run_dir, "--resume", "schedule_search")
    with runstate.RunLock(run_dir):  # before reading anything a writer changes
        meta = store.read_json(run_dir / "meta.json")
        cfg = config_lib.load_config(run_dir / "config.yaml", defaults={"schedule_search": {}})
        search, pts = read_search(cfg), points(cfg)
        options = meta.setdefault("options", {})
        if "verify" not in options:  # stored before the options were: the verification says them
            done = meta.get("verify") or {}
            options.update(verify=done.get("seeds"), max_seeds=done.get("max_seeds"))
        runner.setup_jax(x64=True)
        return _execute(run_dir, cfg, meta, search, pts, progress=progress,
                        max_memory=options.get("max_memory") if max_memory is None else max_memory)


def _search_whole(run_dir: Path, meta: dict) -> bool:
    """Whether the run's search tables are complete: meta says so and each reads whole, with the rows
    recorded (footers only)."""
    rows = meta.get("rows") or {}
    return meta.get("status") == "complete" and not any(store.file_problem(run_dir / t, rows.get(t)) for t in TABLES)


def _execute(run_dir: Path, cfg, meta: dict, search: Search, pts: pd.DataFrame, *, progress: bool,
             max_memory: int | None) -> ScheduleSummary:
    """The search (unless its tables are whole) and the verification (unless it is complete), under the
    caller's lock, recording each outcome in meta.json."""
    from lrsweep.core import runstate
    x64, options = bool(meta.get("x64")), meta.get("options") or {}
    searched = not _search_whole(run_dir, meta)
    record = runstate.RunRecord(run_dir, meta).start()
    try:
        start, before = time.perf_counter(), float(meta.get("wall_time_s") or 0.0)
        try:
            if searched:
                summary, search_s = _search(run_dir, search, pts, x64=x64, progress=progress)
                record.update(search_s=search_s, rows={t: n for t, n in zip(TABLES, summary)})
            record.update(status="complete", wall_time_s=round(before + time.perf_counter() - start, 3))
        except KeyboardInterrupt:
            _record_safely(record, status="interrupted", wall_time_s=round(before + time.perf_counter() - start, 3))
            raise ScheduleInterrupted(run_dir, "the search") from None
        except BaseException as e:
            _record_safely(record, status="failed", error=runstate.error_line(e))
            raise
        seeds = options.get("verify")
        stage = meta.get("verify") if isinstance(meta.get("verify"), dict) else {}
        if seeds is not None and (searched or stage.get("status", "running") != "complete"
                                  or _runs_unfinished(run_dir, stage)):
            try:
                return verify_schedules(run_dir, cfg, int(seeds), max_seeds=options.get("max_seeds"),
                                        progress=progress, max_memory=max_memory, record=record, search=search)
            except KeyboardInterrupt:
                _record_safely(record, verify={**record.meta.get("verify", {}), "status": "interrupted"})
                raise ScheduleInterrupted(run_dir, "the Monte Carlo verification") from None
            except BaseException as e:
                _record_safely(record, verify={**record.meta.get("verify", {}), "status": "failed",
                                               "error": runstate.error_line(e)})
                raise
    finally:
        record.stop()
    summary = read_table(run_dir / "schedule_summary.parquet")
    runs = tuple(run_dir / r for r in (meta.get("verify") or {}).get("runs", []))
    return ScheduleSummary(run_dir, summary, meta.get("search_s", float("nan")), runs, search)


def _record_safely(record, **fields) -> None:
    """Record an outcome in meta.json; where the directory cannot be written the original error stands."""
    try:
        record.update(**fields)
    except OSError:
        pass


def _runs_unfinished(run_dir: Path, stage: dict) -> bool:
    """Whether a verify run of the stage record is missing or not complete (damaged: corrupt)."""
    from lrsweep.core import runstate
    return any(not store.is_run(run_dir / r) or runstate.run_state(run_dir / r).state != "complete"
               for r in stage.get("runs", []))


def _search(run_dir: Path, search: Search, pts: pd.DataFrame, *, x64: bool, progress: bool) -> tuple:
    """Search every point, write both tables; returns ((rows of each table), seconds)."""
    start = time.perf_counter()
    longs, summaries = [], []
    for i, point in enumerate(pts.to_dict("records")):
        stopping.check()  # a signal whose KeyboardInterrupt Python dropped
        if progress:
            print(f"lrsweep schedule: point {i + 1}/{len(pts)} ({point_label([point[k] for k in POINT_COLUMNS])}): "
                  f"{len(search.kinds)} kinds x {len(search.horizons)} horizons", flush=True)
        long, summary = tables(point, search.horizons, search_point(point, search, x64=x64))
        longs.append(long)
        summaries.append(summary)
    search_s = time.perf_counter() - start
    long, summary = pd.concat(longs, ignore_index=True), pd.concat(summaries, ignore_index=True)
    for table, path in ((long, run_dir / TABLES[0]), (summary, run_dir / TABLES[1])):
        store.write_table(table, path)
    return (len(long), len(summary)), search_s


def default_max_seeds(seeds: int | None) -> int:
    """The most seeds a schedule gets when its tail asks for more than ``--verify``: 16 times as many."""
    return 16 * int(seeds or 0)


def verify_config(cfg: config_lib.SweepConfig, long: pd.DataFrame, summary: pd.DataFrame, seeds) -> dict:
    """An ordinary sweep config training every (point, T, kind) schedule of ``summary`` with ``seeds``
    (a count, or a list of seed values): lr 1 times the per-step array, a zip over the point fields,
    T and the array index (the position of the schedule's row in ``summary``). Divergence is judged
    only by a non-finite loss: near the stability bound a huge final loss is the tail being verified."""
    momentum = bool((summary[SCHEDULE] == "optimal_momentum").any()) or (cfg.base["train.optimizer"] == "momentum")
    batch_varies = bool((summary[SCHEDULE] == "optimal_batch").any())
    key = [*POINT_COLUMNS, "T", SCHEDULE]
    rows = summary[key].reset_index(drop=True)
    grouped = {k: g for k, g in long.groupby(key, sort=False)}
    lr_arrays, batch_arrays, beta_arrays = [], [], []
    for r in rows.itertuples(index=False):
        g = grouped[tuple(r)].sort_values("t")
        sizes = g["block_steps"].to_numpy()[:-1] if "block_steps" in g else np.ones(len(g) - 1, np.int64)
        lr_arrays.append(np.repeat(g["lr"].to_numpy()[:-1], sizes).tolist())
        batch_arrays.append(np.repeat(np.clip(np.floor(g["step_batch_size"].to_numpy()[:-1] + 0.5), 1, None),
                                      sizes).tolist())
        beta_arrays.append(np.repeat(g["momentum"].to_numpy()[:-1], sizes).tolist())
    max_batch = int(max(max(b) for b in batch_arrays))
    train = {"optimizer": "momentum" if momentum else "sgd", "batch_size": max_batch, "schedule": "array",
             "schedule_array": lr_arrays, "log_steps": None, "diverge_factor": 1e300}
    if batch_varies:
        train.update(batch_schedule="array", batch_array=batch_arrays)
    if momentum:
        train.update(momentum_schedule="array", momentum_array=beta_arrays)
    zip_axes = {"task.a": rows["a"].tolist(), "task.b": rows["b"].tolist(),
                "task.input_dim": rows["n_features"].astype(int).tolist(), "task.noise_std": rows["noise_std"].tolist(),
                "train.steps": rows["T"].astype(int).tolist(), "train.log_every": [max(int(T) // 20, 1) for T in rows["T"]],
                "train.schedule_index": list(range(len(rows)))}
    if batch_varies:
        zip_axes["train.batch_index"] = list(range(len(rows)))
    else:
        zip_axes["train.batch_size"] = rows["batch_size"].astype(int).tolist()
        train.pop("batch_size")
    if momentum:
        zip_axes["train.momentum_index"] = list(range(len(rows)))
    seed_list = list(range(seeds)) if isinstance(seeds, (int, np.integer)) else [int(s) for s in seeds]
    return {"name": "verify", "task": {"kind": "power_law_features"},
            "model": {"parameterization": "standard", "n_layers": 1}, "init": "zeros",
            "train": {k: v for k, v in train.items() if v is not None},
            "grid": {"lr": [1.0], "zip": zip_axes}, "seeds": seed_list}


def _final_losses(run_dir: Path, rows) -> pd.DataFrame:
    """Per student of a verify run: its schedule's summary row (``rows[schedule_index]``), seed, final loss
    (inf where it diverged: the far tail), diverged."""
    students = store.load(run_dir, table="students")
    loss = students["final_test_loss"].astype(float).where(~students["diverged"].astype(bool), np.inf)
    row = np.asarray(rows)[students["schedule_index"].astype(int).to_numpy()]
    return pd.DataFrame({"row": row, "seed": students["seed"].astype(int), "loss": loss,
                         "diverged": students["diverged"].astype(bool)})


def monte_carlo_columns(samples: pd.DataFrame) -> pd.DataFrame:
    """Per summary row: mc_mean, mc_sem, mc_n, mc_diverged, and the tail (:func:`lrsweep.core.tails.tail`):
    mc_tail_k, mc_seeds_needed (10^(1/(1-k)); inf for k >= 1)."""
    rows = {}
    for row, g in samples.groupby("row"):
        x = g["loss"].to_numpy(float)
        fin = x[np.isfinite(x)]
        tail = tails.tail(x)
        rows[row] = {"mc_mean": float(x.mean()) if fin.size == x.size else np.inf,
                     "mc_sem": float(fin.std(ddof=1) / np.sqrt(fin.size)) if fin.size > 1 else np.nan,
                     "mc_n": int(x.size), "mc_diverged": int(g["diverged"].sum()),
                     "mc_tail_k": float(tail["k"]), "mc_seeds_needed": float(tail["needed"])}
    return pd.DataFrame.from_dict(rows, orient="index")


def loss_spreads(summary: pd.DataFrame, long: pd.DataFrame) -> pd.Series:
    """Per summary row: E L_T^2 / (E L_T)^2 - 1 from the fourth-moment recursion
    (:func:`lrsweep.families.schedules.theory.loss_moments`), for SGD schedules searched step by step; NaN
    for momentum, for block schedules and where a point's recursion would exceed SPREAD_BUDGET."""
    import jax

    from lrsweep.families.schedules import theory as rf
    from lrsweep.families.schedules.checks import SPREAD_BUDGET
    out = pd.Series(np.nan, index=summary.index, name="loss_spread")
    key = [*POINT_COLUMNS, "T", SCHEDULE]
    grouped = {k: g for k, g in long.groupby(key, sort=False)}
    for point, rows in summary.groupby(list(POINT_COLUMNS), sort=False):
        rows = rows[rows[SCHEDULE] != "optimal_momentum"]
        tables = []
        for r in rows.itertuples():
            g = grouped[tuple(getattr(r, c) for c in key)].sort_values("t")
            steps = g["block_steps"].to_numpy()[:-1] if "block_steps" in g else np.ones(len(g) - 1)
            if np.any(steps != 1) or np.any(g["momentum"].to_numpy()[:-1] != 0):
                continue
            tables.append((r.Index, g["lr"].to_numpy()[:-1], g["step_batch_size"].to_numpy()[:-1]))
        n = int(point[2])
        if not tables or n * n * max(len(t[1]) for t in tables) * len(tables) > SPREAD_BUDGET:
            continue
        width = max(len(t[1]) for t in tables)
        lr = np.zeros((len(tables), width))
        batch = np.ones((len(tables), width))
        for i, (_, a, m) in enumerate(tables):     # zero rates after T: the identity
            lr[i, :len(a)], batch[i, :len(m)] = a, np.maximum(m, 1.0)
        lam, target = rf.spectrum(n, float(point[0]), float(point[1]))
        with jax.enable_x64(True):
            mean, second = rf.loss_moments(lam, target ** 2, float(point[3]) ** 2, lr, batch)
        for (index, _, _), mu, sec in zip(tables, mean, second):
            out[index] = sec / mu ** 2 - 1 if np.isfinite(sec) else np.inf
    return out


def verify_schedules(run_dir: Path, cfg: config_lib.SweepConfig, seeds: int, *, max_seeds: int | None = None,
                     progress: bool = True, max_memory: int | None = None, record=None,
                     search: Search | None = None) -> ScheduleSummary:
    """Train the run's schedules by Monte Carlo SGD (``run_dir/verify/<run_id>``) with ``seeds`` seeds and
    judge each mean (:func:`lrsweep.families.schedules.checks.reliability`: the exact spread of the
    loss from the fourth-moment recursion, ``loss_spread``, and the tail measured on the samples); train
    the schedules whose mean is not reliable yet again with more seeds, as many as the cheaper of the two
    asks for, up to ``max_seeds``, in a second run, and judge again on all samples; add ``loss_spread``
    and the ``mc_*`` columns to ``schedule_summary.parquet`` (matched by the summary row).

    The run's stage ``verify`` (``meta["verify"]``, through ``record``, the run's
    :class:`lrsweep.core.runstate.RunRecord`; the caller holds its lock) is ``running`` from the start,
    each verify run is named in it before it starts, and it is ``complete`` once the columns are
    written. A verify run named there already is resumed where it is not complete (or damaged), so
    calling this again finishes an interrupted verification with the same results."""
    from lrsweep.core import runstate
    from lrsweep.families.schedules.checks import reliability
    max_seeds = default_max_seeds(seeds) if max_seeds is None else max_seeds
    if record is None:
        record = runstate.RunRecord(run_dir, store.read_json(run_dir / "meta.json"), heartbeat_s=0)
    old = record.meta.get("verify") if isinstance(record.meta.get("verify"), dict) else {}
    runs = list(old.get("runs", [])) if old.get("seeds", seeds) == seeds else []
    record.update(verify={"status": "running", "seeds": seeds, "max_seeds": max_seeds, "runs": runs})
    long = read_table(run_dir / "schedules.parquet")
    summary = read_table(run_dir / "schedule_summary.parquet")
    summary = summary.drop(columns=[c for c in summary if c.startswith("mc_") or c == "loss_spread"])
    summary["loss_spread"] = loss_spreads(summary, long)
    first = _verify_run(run_dir, record, 0, verify_config(cfg, long, summary, seeds), progress, max_memory)
    used = [first]
    samples = _final_losses(first, summary.index)
    stats = monte_carlo_columns(samples)
    judged = [reliability({**summary.loc[i].to_dict(), **stats.loc[i].to_dict()}) for i in stats.index]
    needed = pd.Series([j["seeds"] for j in judged], index=stats.index)
    more = needed[(needed > stats["mc_n"]) & (max_seeds > seeds)]
    if len(more):
        total = int(min(max_seeds, math.ceil(more.max())))
        if progress:
            print(f"lrsweep schedule: {len(more)} schedule(s) need more seeds for a reliable mean (up to {total}): "
                  f"training seeds {seeds}..{total - 1} of those", flush=True)
        sub = summary.loc[more.index.astype(int)]
        second = _verify_run(run_dir, record, 1, verify_config(cfg, long, sub, range(seeds, total)), progress,
                             max_memory)
        used.append(second)
        samples = pd.concat([samples, _final_losses(second, sub.index)], ignore_index=True)
        stats = monte_carlo_columns(samples)
    summary = summary.join(stats, how="left")  # row i of the summary is array i
    store.write_table(summary, run_dir / "schedule_summary.parquet")
    names = [str(Path(r).relative_to(run_dir)) for r in used]
    record.update(verify={"status": "complete", "seeds": seeds, "max_seeds": max_seeds, "run": names[0],
                          "runs": names, "rows": {"schedule_summary.parquet": len(summary)}},
                  rows={**(record.meta.get("rows") or {}), "schedule_summary.parquet": len(summary)})
    return ScheduleSummary(run_dir, summary, record.meta.get("search_s", float("nan")), tuple(used), search)


def _verify_run(run_dir: Path, record, index: int, vcfg: dict, progress: bool, max_memory: int | None) -> Path:
    """Verify run ``index`` of the stage (an ordinary run under ``run_dir/verify/``): resumed where the
    stage names it already (:func:`lrsweep.core.runner.run` ``resume=``: it finishes or repairs it), else
    named in the stage, then trained."""
    import shutil

    from lrsweep.core import runner, runstate
    runs = list(record.meta["verify"]["runs"])
    if index < len(runs):
        sub = run_dir / runs[index]
        if store.is_run(sub):
            if runstate.run_state(sub).state != "complete":
                runner.run(resume=sub, progress=progress, max_memory=max_memory)
            return sub
        shutil.rmtree(sub, ignore_errors=True)  # made, killed before its meta.json: start it again
        run_id = sub.name
    else:
        run_id = runner.new_run_id()
        record.update(verify={**record.meta["verify"], "runs": runs + [f"verify/{run_id}"]})
    cfg = config_lib.load_config(vcfg)
    return runner.run(cfg, run_dir, x64=True, progress=progress, max_memory=max_memory, run_id=run_id).run_dir


def is_schedule_run(run: str | Path) -> bool:
    path = Path(run) / "meta.json"
    return path.exists() and store.read_json(path).get("kind") == "schedule"
