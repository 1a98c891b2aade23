"""``lrsweep schedule``: optimal learning-rate (and batch, momentum) schedules of seed 004's power-law
random-feature model, found by gradient descent through the exact loss recursion
(:mod:`lrsweep.theory.random_features`), written beside the baselines, and verified by Monte Carlo SGD
in the engine (``--verify SEEDS``).

The config is an ordinary sweep config of the ``power_law_features`` task (its grid may sweep
``task.a``, ``task.b``, ``task.input_dim``, ``task.noise_std``, ``train.batch_size``; a point is one
combination of those) with a ``schedule_search`` section (:data:`SEARCH_FIELDS`). A run directory
holds:

- ``schedules.parquet``: one row per point, horizon ``T``, ``kind`` and step ``t`` = 0..T: ``lr``,
  ``batch_size``, ``momentum`` (the step's schedule; NaN at t = T) and ``expected_loss`` (before step t);
- ``schedule_summary.parquet``: one row per point, ``T`` and ``kind``: the final ``expected_loss``,
  the schedule's peak and initial rate, its decay window, the fitted parameters of the family and,
  after ``--verify``, the Monte Carlo ``mc_mean``, ``mc_sem``, ``mc_n``, ``mc_diverged`` of the
  engine's students trained with exactly that schedule (``verify/<run_id>/``, an ordinary run).

Numerics live in the theory module; this module reads configs and writes tables.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep import config as config_lib
from lrsweep import store
from lrsweep.errors import ConfigError

POINT_FIELDS = ("task.a", "task.b", "task.input_dim", "task.noise_std", "train.batch_size")
BASE_KINDS = ("optimal", "constant", "power", "polynomial", "wsd")
EXTRA_KINDS = ("optimal_batch", "optimal_momentum")
SEARCH_FIELDS = {
    "horizons": ({"geomspace": [100, 10000, 10]}, "training horizons T: a list or {geomspace: [T_min, T_max, n]}"),
    "kinds": (list(BASE_KINDS), "schedule families: " + ", ".join(BASE_KINDS + EXTRA_KINDS)),
    "parameterization": ("segments", "the optimal schedule: `segments` (linear between n_segments + 1 nodes "
                                     "equally spaced in log(1 - t/T)), `piecewise_constant` (constant on the "
                                     "n_segments pieces between them) or `array` (one rate per step)"),
    "n_segments": (32, "pieces of a `segments` schedule"),
    "eta_max": (None, "largest rate allowed (null: eta_max_fraction times the recursion's stability bound)"),
    "eta_max_fraction": (0.5, "with eta_max null: the share of the mean-square stability bound allowed. Near the "
                              "bound the loss's higher moments diverge first, so a Monte Carlo mean converges "
                              "slowly (it sits below the expectation for any practical number of seeds)"),
    "iterations": (None, "gradient steps of the search (null: the theory's default)"),
    "sample_budget": (None, "optimal_batch: total samples sum_t m_t (null: batch_size x T)"),
    "momentum_max": (0.99, "optimal_momentum: largest beta"),
}


@dataclasses.dataclass(frozen=True)
class Search:
    horizons: tuple
    kinds: tuple
    options: dict


def read_search(cfg: config_lib.SweepConfig) -> Search:
    """The validated ``schedule_search`` section (ConfigError naming the field)."""
    raw = cfg.raw.get("schedule_search") or {}
    if not isinstance(raw, dict):
        raise ConfigError("schedule_search", f"must be a mapping of {', '.join(SEARCH_FIELDS)}")
    for key in raw:
        if key not in SEARCH_FIELDS:
            raise ConfigError(f"schedule_search.{key}", f"unknown field; allowed: {', '.join(SEARCH_FIELDS)}")
    value = {k: raw.get(k, default) for k, (default, _) in SEARCH_FIELDS.items()}
    horizons = config_lib.grid_values(value["horizons"], "schedule_search.horizons")
    if any(isinstance(h, bool) or not isinstance(h, (int, float)) or h < 2 for h in horizons):
        raise ConfigError("schedule_search.horizons", f"horizons are step counts >= 2, got {horizons!r}")
    horizons = tuple(sorted({int(round(h)) for h in horizons}))
    kinds = value["kinds"]
    kinds = [kinds] if isinstance(kinds, str) else kinds
    allowed = BASE_KINDS + EXTRA_KINDS
    if not isinstance(kinds, list) or not kinds or any(k not in allowed for k in kinds):
        raise ConfigError("schedule_search.kinds", f"got {kinds!r}; allowed values: {', '.join(allowed)}")
    if value["parameterization"] not in ("segments", "piecewise_constant", "array"):
        raise ConfigError("schedule_search.parameterization", f"got {value['parameterization']!r}; allowed values: "
                                                              f"segments, piecewise_constant, array")
    for key, low in (("n_segments", 1), ("iterations", 1), ("sample_budget", 1)):
        v = value[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < low):
            raise ConfigError(f"schedule_search.{key}", f"expected an integer >= {low} or null, got {v!r}")
    for key, (low, high) in (("eta_max", (0.0, np.inf)), ("momentum_max", (0.0, 1.0)), ("eta_max_fraction", (0.0, 1.0))):
        v = value[key]
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not low < v <= high):
            raise ConfigError(f"schedule_search.{key}", f"expected a number in ({low:g}, {high:g}], got {v!r}")
    options = {k: value[k] for k in ("parameterization", "n_segments", "eta_max", "iterations", "sample_budget",
                                     "momentum_max", "eta_max_fraction") if value[k] is not None}
    return Search(horizons, tuple(dict.fromkeys(kinds)), options)


def points(cfg: config_lib.SweepConfig) -> pd.DataFrame:
    """The distinct (a, b, N, sigma, batch size) of the config's grid; ConfigError where a student is not
    seed 004's SGD on power-law features."""
    students = config_lib.expand_grid(cfg)
    for column, want in (("kind", ("power_law_features",)), ("optimizer", ("sgd", "momentum")),
                         ("n_layers", (1,)), ("parameterization", ("standard",)), ("init", ("zeros",))):
        bad = ~students[column].isin(want)
        if bad.any():
            path = next(p for p in config_lib.FIELDS if p.split(".")[-1] == column)
            raise ConfigError(path, f"lrsweep schedule optimises seed 004's SGD on the linear predictor: "
                                    f"allowed values: {', '.join(map(str, want))}, got {students[column][bad].iloc[0]!r}")
    for column in ("schedule", "batch_schedule", "momentum_schedule"):
        if (students[column] != "constant").any():
            raise ConfigError(f"train.{column}", "lrsweep schedule finds the schedules itself: leave it constant")
    cols = [p.split(".")[-1] for p in POINT_FIELDS]
    return students[cols + ["optimizer"]].drop_duplicates(cols).reset_index(drop=True)


def _point_label(point: dict) -> str:
    return ", ".join(f"{k}={point[k]:g}" for k in ("a", "b", "input_dim", "noise_std", "batch_size"))


def search_point(point: dict, search: Search) -> dict:
    """kind -> the theory's result for one point (see :func:`lrsweep.theory.random_features.search`)."""
    from lrsweep.theory import random_features as rf
    lam, target = rf.spectrum(int(point["input_dim"]), float(point["a"]), float(point["b"]))
    options = dict(search.options)
    fraction = options.pop("eta_max_fraction", 0.5)
    if options.get("eta_max") is None:
        options["eta_max"] = fraction * rf.stability_limit(lam, float(point["batch_size"]))
    import jax
    noise_var, horizons = float(point["noise_std"]) ** 2, np.asarray(search.horizons)
    with jax.enable_x64(False):  # the search in float32 (twice as fast): it only has to locate the optimum
        result = rf.search(lam, target ** 2, noise_var, horizons, kinds=search.kinds,
                           batch_size=float(point["batch_size"]), **options)
    with jax.enable_x64(True):  # every reported loss is the exact recursion in float64
        for res in result.values():
            mask = np.arange(res["lr"].shape[1])[None, :] < horizons[:, None]
            batch = np.where(mask, res["batch"], 1.0)
            momentum = res["momentum"] if np.any(res["momentum"]) else None
            curve = np.asarray(rf.loss_curves(lam, target ** 2, noise_var, np.where(mask, res["lr"], 0.0), batch,
                                              momentum))
            res.update(curve=curve, loss=curve[np.arange(len(horizons)), horizons])
    return result


def tables(point: dict, horizons, result: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(schedules rows, summary rows) of one point's result."""
    from lrsweep.theory import random_features as rf
    long, summary = [], []
    base = {k: point[k] for k in ("a", "b", "input_dim", "noise_std", "batch_size")}
    for kind, res in result.items():
        for h, T in enumerate(horizons):
            lr = np.asarray(res["lr"][h][:T], float)
            batch = np.asarray(res["batch"][h][:T], float)
            beta = np.asarray(res["momentum"][h][:T], float)
            curve = np.asarray(res["curve"][h][:T + 1], float)
            long.append(pd.DataFrame({**base, "T": T, "kind": kind, "t": np.arange(T + 1),
                                      "lr": np.append(lr, np.nan), "batch_size_t": np.append(batch, np.nan),
                                      "momentum": np.append(beta, np.nan), "expected_loss": curve}))
            row = {**base, "T": T, "kind": kind, "expected_loss": float(res["loss"][h]),
                   "lr_peak": float(lr.max()), "lr_initial": float(lr[0]),
                   "decay_window": float(rf.decay_window(lr, T)), "samples": float(batch.sum()),
                   "decay_exponent": _decay_exponent(rf, lr, T)}
            row.update({f"param_{k}": float(np.asarray(v)[h]) for k, v in res.items()
                        if k not in ("lr", "batch", "momentum", "loss", "curve") and np.ndim(v) == 1})
            summary.append(row)
    frame = pd.concat(long, ignore_index=True).rename(columns={"batch_size_t": "step_batch_size"})
    return frame, pd.DataFrame(summary)


def _decay_exponent(rf, lr, T) -> float:
    """delta of a log-log fit lr ~ (1 - t/T)^delta over the schedule (NaN for fewer than 2 positive rates)."""
    try:
        return rf.fit_decay(lr, T)["delta"]
    except ValueError:
        return float("nan")


@dataclasses.dataclass
class ScheduleSummary:
    run_dir: Path
    summary: pd.DataFrame
    search_s: float
    verify_dir: Path | None = None


def run_schedule(cfg: config_lib.SweepConfig, out: str | Path = "results", *, verify: int | None = None,
                 progress: bool = True, max_memory: int | None = None) -> ScheduleSummary:
    """Search every point's schedules, write the run, and with ``verify`` train every schedule with that
    many seeds in the engine (``RUN/verify/<run_id>``) and add the Monte Carlo columns."""
    from lrsweep import runner
    search = read_search(cfg)
    pts = points(cfg)  # every check before any directory
    runner.check_out(out, cfg.name)
    if verify is not None and verify < 2:
        raise ConfigError("--verify", f"needs >= 2 seeds for a standard error, got {verify}")
    runner.setup_jax(x64=True)
    start = time.perf_counter()
    longs, summaries = [], []
    for i, point in enumerate(pts.to_dict("records")):
        if progress:
            print(f"lrsweep schedule: point {i + 1}/{len(pts)} ({_point_label(point)}): "
                  f"{len(search.kinds)} kinds x {len(search.horizons)} horizons", flush=True)
        long, summary = tables(point, search.horizons, search_point(point, search))
        longs.append(long)
        summaries.append(summary)
    search_s = time.perf_counter() - start
    run_dir = Path(out) / cfg.name / runner.new_run_id()
    run_dir.mkdir(parents=True, exist_ok=False)
    store.write_yaml(cfg.to_dict(), run_dir / "config.yaml")
    summary = pd.concat(summaries, ignore_index=True)
    store.write_table(pd.concat(longs, ignore_index=True), run_dir / "schedules.parquet")
    store.write_table(summary, run_dir / "schedule_summary.parquet")
    import datetime as _dt
    meta = {"kind": "schedule", "status": "complete", "n_students": 0, "search_s": search_s, "wall_time_s": search_s,
            "started": _dt.datetime.now().isoformat(timespec="microseconds"),
            "horizons": list(search.horizons), "kinds": list(search.kinds), "n_points": len(pts)}
    store.write_json(meta, run_dir / "meta.json")
    result = ScheduleSummary(run_dir, summary, search_s)
    if verify is not None:
        result = verify_schedules(run_dir, cfg, verify, progress=progress, max_memory=max_memory)
    return result


def verify_config(cfg: config_lib.SweepConfig, long: pd.DataFrame, summary: pd.DataFrame, seeds: int) -> dict:
    """An ordinary sweep config training every (point, T, kind) schedule of ``summary`` with ``seeds``
    seeds: lr 1 times the per-step array, a zip over the point fields, T and the array index."""
    momentum = bool((summary["kind"] == "optimal_momentum").any()) or (cfg.base["train.optimizer"] == "momentum")
    batch_varies = bool((summary["kind"] == "optimal_batch").any())
    rows = summary[["a", "b", "input_dim", "noise_std", "batch_size", "T", "kind"]].reset_index(drop=True)
    key = ["a", "b", "input_dim", "noise_std", "batch_size", "T", "kind"]
    grouped = {k: g for k, g in long.groupby(key, sort=False)}
    lr_arrays, batch_arrays, beta_arrays = [], [], []
    for r in rows.itertuples(index=False):
        g = grouped[tuple(r)].sort_values("t")
        lr_arrays.append([float(v) for v in g["lr"].to_numpy()[:-1]])
        batch_arrays.append([float(np.clip(np.floor(v + 0.5), 1, None)) for v in g["step_batch_size"].to_numpy()[:-1]])
        beta_arrays.append([float(v) for v in g["momentum"].to_numpy()[:-1]])
    max_batch = int(max(max(b) for b in batch_arrays))
    train = {"optimizer": "momentum" if momentum else "sgd", "batch_size": max_batch, "schedule": "array",
             "schedule_array": lr_arrays, "log_steps": None}
    if batch_varies:
        train.update(batch_schedule="array", batch_array=batch_arrays)
    if momentum:
        train.update(momentum_schedule="array", momentum_array=beta_arrays)
    zip_axes = {"task.a": rows["a"].tolist(), "task.b": rows["b"].tolist(),
                "task.input_dim": rows["input_dim"].astype(int).tolist(), "task.noise_std": rows["noise_std"].tolist(),
                "train.steps": rows["T"].astype(int).tolist(), "train.log_every": [max(int(T) // 20, 1) for T in rows["T"]],
                "train.schedule_index": list(range(len(rows)))}
    if batch_varies:
        zip_axes["train.batch_index"] = list(range(len(rows)))
    else:
        zip_axes["train.batch_size"] = rows["batch_size"].astype(int).tolist()
        train.pop("batch_size")
    if momentum:
        zip_axes["train.momentum_index"] = list(range(len(rows)))
    return {"name": "verify", "task": {"kind": "power_law_features"},
            "model": {"parameterization": "standard", "n_layers": 1}, "init": "zeros",
            "train": {k: v for k, v in train.items() if v is not None},
            "grid": {"lr": [1.0], "zip": zip_axes}, "seeds": list(range(seeds))}


def verify_schedules(run_dir: Path, cfg: config_lib.SweepConfig, seeds: int, *, progress: bool = True,
                     max_memory: int | None = None) -> ScheduleSummary:
    """Train the run's schedules by Monte Carlo SGD (``run_dir/verify/<run_id>``); add ``mc_*`` columns
    to ``schedule_summary.parquet`` (matched by point, T and the array index)."""
    from lrsweep import runner
    long = store.read_parquet(run_dir / "schedules.parquet").to_pandas()
    summary = store.read_parquet(run_dir / "schedule_summary.parquet").to_pandas()
    vcfg = config_lib.load_config(verify_config(cfg, long, summary, seeds))
    result = runner.run(vcfg, run_dir, x64=True, progress=progress, max_memory=max_memory)
    students = store.load(result.run_dir, table="students")
    final = students.groupby("schedule_index")["final_test_loss"]
    stats = pd.DataFrame({"mc_mean": final.mean(), "mc_sem": final.std() / np.sqrt(final.count()),
                          "mc_n": final.count()})
    stats["mc_diverged"] = students.groupby("schedule_index")["diverged"].sum()
    summary = summary.drop(columns=[c for c in summary if c.startswith("mc_")])
    summary = summary.join(stats, how="left")  # row i of the summary is array i
    store.write_table(summary, run_dir / "schedule_summary.parquet")
    meta = store.read_json(run_dir / "meta.json")
    meta["verify"] = {"seeds": seeds, "run": str(Path(result.run_dir).relative_to(run_dir))}
    store.write_json(meta, run_dir / "meta.json")
    return ScheduleSummary(run_dir, summary, meta.get("search_s", float("nan")), Path(result.run_dir))


def is_schedule_run(run: str | Path) -> bool:
    path = Path(run) / "meta.json"
    return path.exists() and store.read_json(path).get("kind") == "schedule"
