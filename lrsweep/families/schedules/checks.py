"""Seed 004 (Bordelon & Mori 2026) joined with stored runs: registrations for :mod:`lrsweep.compare`.

- Theory ``random_features.sgd``: the exact expected excess risk of SGD / heavy-ball momentum on
  power-law features (:func:`lrsweep.families.schedules.theory.loss_curves`) for every logged step of
  every grid point, against the Monte Carlo mean over seeds (an exact expectation: within standard
  errors). The student's schedules are rebuilt from its stored columns by :mod:`lrsweep.core.schedules`,
  the functions the engine trained it with.
- Checks on ``schedule_summary.parquet`` (``lrsweep schedule``): the optimal schedule is no worse than
  the best of every baseline family at every horizon in the recursion, and not significantly worse by
  Monte Carlo (``random_features.optimal_beats_baselines``: a failure names the family that wins and a
  bound that binds); the Monte Carlo final loss of every schedule whose loss tail allows a reliable
  mean equals the recursion's within a family-wise (Bonferroni) threshold of standard errors
  (``random_features.verify``); whether each schedule's Monte Carlo mean is reliable at all, and why
  not (``random_features.verify_tails``, reported: :mod:`lrsweep.core.tails`); the exponents fitted over
  the horizons with 95% intervals against the seed's statements (``random_features.exponents``:
  asymptotic statements at finite N and T, reported, never failing).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrsweep import compare
from lrsweep.core import config as config_lib
from lrsweep import registry
from lrsweep.families.schedules.point import POINT_COLUMNS, SCHEDULE, current_names, point_label

CITATION = "seed 004, arXiv 2602.04774 (Bordelon & Mori 2026)"
HANDLED = ("seed", "task.a", "task.b", "task.input_dim", "task.noise_std", "task.online", "train.optimizer",
           "train.batch_size", "train.batch_schedule", "train.batch_start", "train.batch_end",
           "train.batch_ramp_exponent", "train.batch_array", "train.batch_index", "train.momentum",
           "train.momentum_schedule", "train.momentum_array", "train.momentum_index", "train.steps",
           "train.schedule", "train.schedule_exponent", "train.stable_fraction", "train.schedule_floor",
           "train.schedule_array", "train.schedule_index", "train.warmup_steps", "train.log_every",
           "train.log_steps", "train.formulation", "train.diverge_factor", "train.metrics",
           "train.sharpness_iters", "init_scale",
           # not read by this task and student
           "task.n_train", "task.n_test", "task.design", "task.target", "task.target_std",
           "task.teacher_activation", "task.test_noise", "task.label", "task.data", "task.margin",
           "task.flip_fraction", "task.points", "model.width")
SETTING = {"task.kind": "power_law_features", "model.parameterization": "standard", "model.n_layers": 1,
           "init": "zeros"}


def _matches(df: pd.DataFrame) -> np.ndarray:
    mask = compare.matches_setting(df, SETTING, free=HANDLED)
    mask &= df["optimizer"].isin(["sgd", "momentum"]).to_numpy(bool)
    if "online" in df:
        mask &= df["online"].map(lambda v: v is None or v != v or bool(v)).to_numpy(bool)
    return mask


def _value(row, column, default):
    value = row.get(column, default)
    return default if value is None or (isinstance(value, float) and value != value) else value


def _table(row, column):
    key = _value(row, column, None)
    return None if key is None else config_lib.array_table(key)


def student_schedule(row: dict):
    """(lr (T,), batch (T,), momentum (T,) or None) of a stored student, by :mod:`lrsweep.core.schedules`."""
    from lrsweep.core import schedules  # jax: only where a prediction is made (reading runs needs numpy alone)
    steps = int(row["steps"])
    t = np.arange(steps)
    lr_sched = schedules.Schedule(row["schedule"], steps, int(_value(row, "warmup_steps", 0)),
                                  float(_value(row, "schedule_exponent", 1.0)), float(_value(row, "stable_fraction", 0.8)),
                                  float(_value(row, "schedule_floor", 0.0)), _table(row, "schedule_array"),
                                  int(_value(row, "schedule_index", 0)))
    lr = float(row["lr_1"]) * np.asarray(schedules.lr_multiplier(lr_sched, t), float)
    max_batch = int(row["batch_size"])
    batch_sched = schedules.BatchSchedule(_value(row, "batch_schedule", "constant"), steps, max_batch,
                                          float(_value(row, "batch_start", 1.0)), float(_value(row, "batch_end", max_batch)),
                                          float(_value(row, "batch_ramp_exponent", 1.0)), _table(row, "batch_array"),
                                          int(_value(row, "batch_index", 0)))
    batch = np.asarray(schedules.batch_size(batch_sched, t), float)
    beta = None
    if row["optimizer"] == "momentum":
        beta_sched = schedules.MomentumSchedule(_value(row, "momentum_schedule", "constant"),
                                                float(_value(row, "momentum", 0.0)), _table(row, "momentum_array"),
                                                int(_value(row, "momentum_index", 0)))
        beta = np.asarray(schedules.momentum(beta_sched, t), float)
    return lr, batch, beta


_CURVES: dict = {}


def expected_curve(row: dict) -> np.ndarray:
    """The recursion's expected test loss at steps 0..T of a stored grid point (float64; cached)."""
    import jax

    from lrsweep.families.schedules import theory as rf
    key = tuple(sorted((k, str(v)) for k, v in row.items() if k not in ("step", "mean", "sem", "n_seeds")))
    if key not in _CURVES:
        with jax.enable_x64(True):
            lr, batch, beta = student_schedule(row)
            lam, target = rf.spectrum(int(row["input_dim"]), float(row["a"]), float(row["b"]))
            _CURVES[key] = np.asarray(rf.loss_curves(lam, target ** 2, float(row["noise_std"]) ** 2, lr, batch, beta))
    return _CURVES[key]


def _predict(rows: pd.DataFrame, step: int) -> np.ndarray:
    return np.array([expected_curve(r)[int(step)] for r in rows.to_dict("records")])


SPREAD_BUDGET = 5e10      # mode pairs x steps x schedules of the fourth-moment recursion per point (~minutes)


def _spreads(points: pd.DataFrame) -> np.ndarray:
    """E L_s^2 / (E L_s)^2 - 1 at each point's step s by the fourth-moment recursion (SGD; NaN for
    momentum and where the recursion would exceed the verify command's SPREAD_BUDGET); rows of one
    point set share a call (rates after a row's step are zero: the identity)."""
    import jax

    from lrsweep.families.schedules import theory as rf
    out = np.full(len(points), np.nan)
    records = points.to_dict("records")
    key = ("input_dim", "a", "b", "noise_std")
    groups: dict = {}
    for i, row in enumerate(records):
        if row["optimizer"] == "sgd" and int(row["step"]) > 0:
            groups.setdefault(tuple(row[k] for k in key), []).append(i)
    for (n, a, b, noise), rows in groups.items():
        steps = [int(records[i]["step"]) for i in rows]
        if int(n) ** 2 * max(steps) * len(rows) > SPREAD_BUDGET:
            continue
        lr, batch = np.zeros((len(rows), max(steps))), np.ones((len(rows), max(steps)))
        for j, (i, s) in enumerate(zip(rows, steps)):
            rates, sizes, _ = student_schedule(records[i])
            lr[j, :s], batch[j, :s] = rates[:s], sizes[:s]
        lam, target = rf.spectrum(int(n), float(a), float(b))
        with jax.enable_x64(True):
            mean, second = rf.loss_moments(lam, target ** 2, float(noise) ** 2, lr, batch)
        with np.errstate(invalid="ignore", over="ignore"):
            out[rows] = np.where(np.isfinite(second), second / mean ** 2 - 1, np.inf)
    return out


def mean_judgement(row: dict) -> dict:
    """A comparison row (a grid point at a step, with :func:`judge_means`' columns) as :func:`reliability`'s
    input: the verify command's rule applied to a seed mean."""
    return {"mc_n": row["n_seeds"], "mc_sem": row["sem"], "expected_loss": row["prediction"],
            "loss_spread": row["loss_spread"], "mc_tail_k": row["tail_k"], "mc_seeds_needed": row["seeds_needed"],
            "mc_diverged": row["n_diverged"]}


def judge_means(points: pd.DataFrame, samples) -> pd.DataFrame:
    """Whether each point's seed mean can be trusted, by the rule of ``lrsweep schedule --verify``
    (:func:`reliability`: the exact spread from the fourth-moment recursion, then the tail measured on
    the samples, :mod:`lrsweep.core.tails`; one rule for both), asked of the points outside 3 standard
    errors only (a mean within 3 SE passes whether or not it is trusted; the recursion costs N^2 per
    step and point): columns loss_spread, tail_k, seeds_needed, n_diverged (NaN where not asked), reliable."""
    from lrsweep.core import tails
    out = pd.DataFrame(np.nan, index=points.index, columns=["loss_spread", "tail_k", "seeds_needed", "n_diverged"])
    out["reliable"] = True
    asked = np.nonzero((points["z"].abs() > 3).to_numpy(bool))[0]
    if asked.size == 0:
        return out
    out.iloc[asked, 0] = _spreads(points.iloc[asked])
    for i in asked:
        x = samples[i]
        fit = tails.tail(x) if x.size >= tails.MIN_SAMPLES else {"k": np.nan, "needed": np.nan}
        out.iloc[i, 1:4] = [float(fit["k"]), float(fit["needed"]), int(np.sum(~np.isfinite(x)))]
    rows = pd.concat([points[["n_seeds", "sem", "prediction"]], out], axis=1).iloc[asked].to_dict("records")
    out.iloc[asked, 4] = [reliability(mean_judgement(r))["reliable"] for r in rows]
    return out


registry.register_theory(registry.Theory(
    name="random_features.sgd",
    matches=_matches,
    predict=_predict,
    steps=range(0, 1_000_001),  # every step: a range, not 10^6 ints built at import
    exact_for=lambda df: np.ones(len(df), bool),
    reference=f"{CITATION}; the second-moment recursion of lrsweep.families.schedules.theory (derived there)",
    title="exact expected excess risk of SGD on power-law features (seed 004)",
    judge_means=judge_means,
))


# ------------------------------------------------------------------------------------------------
# Checks on lrsweep schedule runs
# ------------------------------------------------------------------------------------------------

BASELINES = ("constant", "power", "polynomial", "wsd", "cosine")


def optimal_beats_baselines(summary: pd.DataFrame) -> pd.DataFrame:
    """Per point and T: the optimal schedule's final loss is no worse than every baseline family's best
    in the recursion (relative 1e-9), and, after --verify, its Monte Carlo mean is not significantly
    above any (z < 3) where both means are reliable (their tails allow it). A failure says which
    baseline wins and whether a rate bound binds."""
    rows = []
    for _, g in summary.groupby([*POINT_COLUMNS, "T"], sort=True):
        T = int(g["T"].iloc[0])
        by_kind = g.set_index(SCHEDULE)
        if "optimal" not in by_kind.index:
            continue
        base = [k for k in BASELINES if k in by_kind.index]
        if not base:
            continue
        opt = by_kind.loc["optimal"]
        worse = [k for k in base if opt["expected_loss"] > by_kind.loc[k, "expected_loss"] * (1 + 1e-9)]
        detail = "recursion: optimal {:.5g} vs ".format(opt["expected_loss"]) + ", ".join(
            f"{k} {by_kind.loc[k, 'expected_loss']:.5g}" for k in base)
        if worse:
            detail += f"; beaten by {', '.join(worse)}"
        bound = [k for k in ["optimal", *base] if bool(by_kind.loc[k].get("at_bound", False))]
        if bound:
            detail += f"; at the rate bound {float(opt.get('rate_bound', np.inf)):.4g}: {', '.join(bound)}"
        ok = not worse
        if "mc_mean" in by_kind and np.isfinite(opt.get("mc_mean", np.nan)):
            significant = []
            for k in base:
                other = by_kind.loc[k]
                if not (reliable(opt) and reliable(other)):
                    continue
                se = float(np.hypot(opt["mc_sem"], other["mc_sem"]))
                if se > 0 and (opt["mc_mean"] - other["mc_mean"]) / se > 3:
                    significant.append(k)
            ok &= not significant
            detail += "; Monte Carlo: optimal {:.4g} vs ".format(opt["mc_mean"]) + ", ".join(
                f"{k} {by_kind.loc[k, 'mc_mean']:.4g}" for k in base)
            if significant:
                detail += f" (significantly below the optimal: {', '.join(significant)})"
        point_key = tuple(g.iloc[0][c] for c in POINT_COLUMNS)
        rows.append({"configuration": f"{point_label(point_key)}, T={T}", "n": int(opt.get("mc_n", 0) or 0),
                     "passed": bool(ok), "detail": detail})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


SPREAD_PRECISION = 0.1   # a mean is judged by its exact spread when its relative standard error is at most this
TAIL_MIN = 1000          # samples a tail fit needs before it may clear a schedule whose variance is too large


def reliability(row) -> dict:
    """Whether a schedule's Monte Carlo mean over ``mc_n`` seeds can be trusted, by what, and how many seeds
    would do: {reliable, by, seeds, se}.

    - ``spread``: the fourth-moment recursion's E L^2/(E L)^2 - 1 (``loss_spread``) gives the exact
      standard error of the mean, sqrt(spread/n) E L; it is trusted when at most SPREAD_PRECISION
      of the mean (n >= spread / 0.01), and the z-test uses that exact error;
    - ``tail``: otherwise (a spread that huge is carried by runs too rare to matter for the mean, or
      none computed) the tail measured on the samples decides (:mod:`lrsweep.core.tails`: n >= 10^(1/(1-k)),
      k < 0.7, nothing overflowed; after a spread too large, measured on at least TAIL_MIN = 1000 samples:
      a fit to the top 13 of 64 misses tails that 8,192 samples show), and the z-test uses the sample's
      standard error.
    ``seeds``: the fewer seeds either way asks for (inf: none suffices)."""
    from lrsweep.core import tails
    n = float(row.get("mc_n", 0) or 0)
    spread = row.get("loss_spread", np.nan)
    spread = np.nan if spread is None else float(spread)
    by_spread = spread / SPREAD_PRECISION ** 2 if np.isfinite(spread) else np.inf
    k = row.get("mc_tail_k", np.nan)
    k = np.nan if k is None else float(k)
    diverged = int(row.get("mc_diverged", 0) or 0) > 0
    if np.isnan(k):                     # a run from before the tail columns
        by_tail = 0.0 if not diverged else np.inf
    else:
        needed = float(row.get("mc_seeds_needed", np.inf))
        by_tail = np.inf if diverged or not np.isfinite(k) or k >= tails.PRACTICAL_K else needed
        if not np.isnan(spread):        # computed, and too large (or past float64) to judge by
            by_tail = max(by_tail, TAIL_MIN)
    if n >= by_spread:
        se = np.sqrt(spread / n) * float(row["expected_loss"])
        return {"reliable": True, "by": "spread", "seeds": by_spread, "se": se}
    sample_se = float(row.get("mc_sem", np.nan))
    return {"reliable": bool(n >= by_tail), "by": "tail", "seeds": float(min(by_spread, by_tail)), "se": sample_se}


def reliable(row) -> bool:
    return reliability(row)["reliable"]


def tail_words(row) -> str:
    """Why a schedule's Monte Carlo mean cannot be trusted, for a reader."""
    n = int(row["mc_n"])
    k = float(row.get("mc_tail_k", np.nan))
    spread = float(row.get("loss_spread", np.nan) if row.get("loss_spread") is not None else np.nan)
    parts = []
    if np.isinf(spread):
        parts.append("E L^2/(E L)^2 past float64's range (fourth-moment recursion): the variance is no guide")
    elif np.isfinite(spread):
        parts.append(f"E L^2/(E L)^2 - 1 = {_big(spread)} (fourth-moment recursion): a mean within 10% needs "
                     f"{_big(spread / SPREAD_PRECISION ** 2)} seeds by its variance")
    if int(row.get("mc_diverged", 0) or 0) > 0 or not np.isfinite(k):
        parts.append(f"{int(row.get('mc_diverged', 0) or 0)} of {n} runs overflowed (the tail reaches past float64)")
    else:
        needed = float(row["mc_seeds_needed"])
        moments = "no finite mean" if k >= 1 else "no finite variance" if k >= 0.5 else "a finite variance"
        need = ("no number of seeds suffices" if not np.isfinite(needed) or k >= 0.7 else
                f"a reliable mean needs {_big(needed)} seeds")
        parts.append(f"tail index k = {k:.2f} measured on the largest of {n} final losses (P(L > x) ~ x^-{1 / k:.2g}, "
                     f"{moments}): {need}" if k > 0 else f"tail index k = {k:.2f}")
    return "; ".join(parts) + f"; {n} were trained"


def _big(x: float) -> str:
    return "past float64's range" if not np.isfinite(x) else f"~{x:,.0f}" if x < 1e6 else f"~10^{np.log10(x):.1f}"


FAMILY_WISE = 0.01  # the chance that any of a run's verified schedules fails while every one is exact


def z_threshold(n: int, family_wise: float = FAMILY_WISE) -> float:
    """The two-sided Bonferroni threshold for n comparisons at a family-wise error ``family_wise``, at
    least 3: with 60 schedules 3 SE alone would fail an exact theory about once in six runs."""
    from statistics import NormalDist
    return max(3.0, NormalDist().inv_cdf(1.0 - family_wise / (2 * max(n, 1))))


def verify(summary: pd.DataFrame) -> pd.DataFrame:
    """Per point, T and kind with a reliable Monte Carlo mean (:func:`reliable`): |mc_mean -
    expected_loss| <= z* mc_sem, z* = :func:`z_threshold` of the number of schedules verified (3.76
    for 60). Schedules whose tail forbids a reliable mean are left to :func:`verify_tails`."""
    if "mc_mean" not in summary:
        return pd.DataFrame(columns=list(registry.CHECK_COLUMNS))
    rows = []
    records = [r for r in summary.to_dict("records") if np.isfinite(r.get("mc_n", np.nan))]
    judged = [(r, reliability(r)) for r in records]
    covered = [(r, j) for r, j in judged if j["reliable"]]
    limit = z_threshold(len(covered))
    for r, j in covered:
        error = "exact error (fourth-moment recursion)" if j["by"] == "spread" else "sample error"
        if j["se"] != 0:  # NaN too: no reliable error, z NaN fails
            z = (r["mc_mean"] - r["expected_loss"]) / j["se"]
            passed, test = abs(z) <= limit, f"z = {z:.2f}, threshold {limit:.2f}"
        else:  # no spread across seeds: no z; the relative gap (compare.REL_TOLERANCE)
            passed = bool(compare.no_spread_agrees(pd.DataFrame({"mean": [r["mc_mean"]],
                                                                 "prediction": [r["expected_loss"]]}))[0])
            gap = abs(r["mc_mean"] - r["expected_loss"]) / abs(r["expected_loss"]) if r["expected_loss"] else np.inf
            test = f"no spread: relative gap {gap:.2e}, tolerance {compare.REL_TOLERANCE:g}"
        rows.append({"configuration": f"{point_label([r[c] for c in POINT_COLUMNS])}, T={r['T']}, {r[SCHEDULE]}",
                     "n": int(r["mc_n"]), "passed": bool(passed),
                     "detail": f"Monte Carlo {r['mc_mean']:.5g} +- {j['se']:.2g} ({error}) vs recursion "
                               f"{r['expected_loss']:.5g} ({test})"})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


def verify_tails(summary: pd.DataFrame) -> pd.DataFrame:
    """Per verified schedule: its Monte Carlo mean is reliable with the seeds trained (a statement about
    the loss's distribution, reported: near the stability bound it is heavy-tailed, and then the
    recursion, the exact expectation, is the answer and the Monte Carlo mean is no check of it)."""
    if "mc_mean" not in summary:
        return pd.DataFrame(columns=list(registry.CHECK_COLUMNS))
    rows = []
    for r in summary.to_dict("records"):
        if not np.isfinite(r.get("mc_n", np.nan)):
            continue
        judged = reliability(r)
        ok = judged["reliable"]
        if ok and judged["by"] == "spread":
            detail = (f"E L^2/(E L)^2 - 1 = {float(r['loss_spread']):.3g} (fourth-moment recursion): the mean of "
                      f"{int(r['mc_n'])} seeds is within {np.sqrt(float(r['loss_spread']) / r['mc_n']):.1%} (1 SE)")
        elif ok:
            detail = (f"tail index k = {float(r.get('mc_tail_k', np.nan)):.2f} measured: the mean of {int(r['mc_n'])} "
                      f"seeds is reliable" + ("" if np.isnan(float(r.get("loss_spread", np.nan))) else
                                              f" (its variance, {_big(float(r['loss_spread']))} times the mean "
                                              f"squared by the fourth-moment recursion, is carried by runs too "
                                              f"rare to move it)"))
        else:
            detail = "not verifiable by Monte Carlo: " + tail_words(r)
        rows.append({"configuration": f"{point_label([r[c] for c in POINT_COLUMNS])}, T={r['T']}, {r[SCHEDULE]}",
                     "n": int(r["mc_n"]), "passed": ok, "detail": detail})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


def exponent_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Per point with >= 3 horizons: each statement's exponent fitted over the run's horizons (log-log
    slope, standard error, 95% interval; delta at the largest T) against the seed's statement
    (:func:`lrsweep.families.schedules.theory.exponents.measure`), plus a ``phase`` row."""
    from lrsweep.families.schedules import theory as rf
    from lrsweep.families.schedules.theory import exponents as rfx
    rows = []
    for point, g in summary.groupby(list(POINT_COLUMNS), sort=True):
        a, b = float(point[0]), float(point[1])
        if g["T"].nunique() < 3:
            continue
        horizons = np.sort(g["T"].unique())
        measurement = {kind: {c: k.set_index("T")[c].reindex(horizons).to_numpy(float) for c in k
                              if c not in (*POINT_COLUMNS, "T", SCHEDULE) and pd.api.types.is_numeric_dtype(k[c])}
                       for kind, k in g.groupby(SCHEDULE)}
        for r in rfx.measure(horizons, measurement, a, b):
            rows.append({**dict(zip(POINT_COLUMNS, point)), "quantity": r["words"], "fitted": r["fitted"], "se": r["se"],
                         "lo": r["lo"], "hi": r["hi"], "predicted": r["predicted"], "source": r["source"],
                         "agrees": r["agrees"], "note": ""})
        said = rf.statements(a, b)
        rows.append({**dict(zip(POINT_COLUMNS, point)), "quantity": "phase", "fitted": np.nan, "se": np.nan, "lo": np.nan,
                     "hi": np.nan, "predicted": np.nan, "source": said["phase"]["source"], "agrees": True,
                     "note": said["phase"]["value"]})
    return pd.DataFrame(rows)


def exponents(summary: pd.DataFrame) -> pd.DataFrame:
    table = exponent_table(summary)
    if table.empty:
        return pd.DataFrame(columns=list(registry.CHECK_COLUMNS))
    rows = []
    for r in table[table["quantity"] != "phase"].itertuples(index=False):
        rows.append({"configuration": f"{point_label([getattr(r, c) for c in POINT_COLUMNS])}: {r.quantity}", "n": 0,
                     "passed": r.agrees, "detail": f"fitted {r.fitted:.3f} (95% {r.lo:.3f}..{r.hi:.3f}) vs stated "
                                                   f"{r.predicted:.3f} ({r.source})"})
    return pd.DataFrame(rows, columns=list(registry.CHECK_COLUMNS))


registry.register_check("random_features.optimal_beats_baselines", lambda f: optimal_beats_baselines(current_names(f)),
                        table="schedule_summary")
registry.register_check("random_features.verify", lambda f: verify(current_names(f)), table="schedule_summary")
registry.register_check("random_features.verify_tails", lambda f: verify_tails(current_names(f)), strict=False,
                        table="schedule_summary")
registry.register_check("random_features.exponents", lambda f: exponents(current_names(f)), strict=False,
                        table="schedule_summary")
