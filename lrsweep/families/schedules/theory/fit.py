"""Exponents from schedules and losses over horizons: log-log slopes with confidence intervals, local
slopes over sliding windows of horizons, and the shape of a schedule's decay (section 6 of
:mod:`lrsweep.families.schedules.theory`)."""
from __future__ import annotations

import numpy as np


def fit_exponent(T, y):
    """Least-squares slope of log y against log T and its standard error: y ~ T^slope."""
    out = fit_exponent_ci(T, y)
    return out["slope"], out["se"]


def fit_exponent_ci(T, y, level=0.95):
    """Slope of log y on log T with its standard error and a ``level`` Student-t confidence interval
    (lo, hi; infinite with two points, where a line has no residual to estimate its error from)."""
    from scipy import stats
    x, v = np.log(np.asarray(T, float)), np.log(np.asarray(y, float))
    if x.shape != v.shape or x.ndim != 1 or x.size < 2:
        raise ValueError("T, y: equal-length 1-d arrays with at least 2 points")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(v))):
        raise ValueError("T, y: positive finite values")
    A = np.stack([x, np.ones_like(x)], 1)
    coef, *_ = np.linalg.lstsq(A, v, rcond=None)
    resid = v - A @ coef
    dof = x.size - 2
    if dof == 0:
        return {"slope": float(coef[0]), "se": float("nan"), "lo": -np.inf, "hi": np.inf, "n": 2}
    cov = (resid @ resid / dof) * np.linalg.inv(A.T @ A)
    se = float(np.sqrt(max(cov[0, 0], 0.0)))
    half = float(stats.t.ppf(0.5 + level / 2, dof)) * se
    return {"slope": float(coef[0]), "se": se, "lo": float(coef[0] - half), "hi": float(coef[0] + half),
            "n": int(x.size)}


def local_exponents(T, y, window=5):
    """Slopes of log y on log T over every run of ``window`` consecutive horizons (sorted by T): arrays
    T (the window's geometric-mean horizon), slope, se, lo, hi (95% intervals)."""
    T, y = np.asarray(T, float), np.asarray(y, float)
    order = np.argsort(T)
    T, y = T[order], y[order]
    if not isinstance(window, (int, np.integer)) or window < 2 or window > T.size:
        raise ValueError(f"window: an integer in [2, {T.size}], got {window!r}")
    rows = [fit_exponent_ci(T[i:i + window], y[i:i + window]) for i in range(T.size - window + 1)]
    centre = np.exp([np.log(T[i:i + window]).mean() for i in range(T.size - window + 1)])
    return {"T": centre, **{k: np.array([r[k] for r in rows]) for k in ("slope", "se", "lo", "hi")}}


def decay_region(lr, T, edge=1.0, plateau=0.9):
    """Steps of a schedule's decay: after the last step at >= ``plateau`` times the peak (the end of a
    warm-up bump or of a WSD's stable phase; t = 0 for a pure decay) and before the edge where the
    remaining intrinsic time sum_{s >= t} eta_s drops below ``edge`` (the seed's eq. 83 edge
    boundary chi(t*) = 1: beyond it the continuous-time shape does not apply). Boolean (T,)."""
    T = int(T)
    lr = np.asarray(lr, float)[:T]
    t = np.arange(T)
    remaining = np.cumsum(lr[::-1])[::-1]
    start = int(np.nonzero(lr >= plateau * lr.max())[0][-1]) if lr.max() > 0 else 0
    keep = (lr > 0) & (t >= start) & (remaining >= edge)
    if keep.sum() < 2:
        keep = lr > 0
    if keep.sum() < 2:
        raise ValueError("lr: at least two positive rates before T")
    return keep


def fit_decay(lr, T, edge=1.0, plateau=0.9, delta=None):
    """Fit lr_t = eta_p (1 - t/T)^delta over :func:`decay_region` by least squares in log lr against
    log(1 - t/T); with ``delta`` given only the prefactor eta_p is fitted. Returns dict delta,
    peak (the fitted prefactor eta_p: the decay extrapolated to t = 0), plateau (the median rate
    before the decay: a WSD's stable rate), n (steps fitted)."""
    T = int(T)
    lr = np.asarray(lr, float)[:T]
    keep = decay_region(lr, T, edge, plateau)
    t = np.arange(T)
    x, v = np.log1p(-t[keep] / T), np.log(lr[keep])
    if delta is None:
        slope, intercept = np.polyfit(x, v, 1)
    else:
        slope, intercept = float(delta), float(np.mean(v - delta * x))
    first = int(np.argmax(keep))
    before = lr[:first + 1]
    return {"delta": float(slope), "peak": float(np.exp(intercept)), "plateau": float(np.median(before[before > 0])),
            "n": int(keep.sum())}


def decay_window(lr, T, level=0.5):
    """T - t_s: steps from the end over which the rate stays below ``level`` times its plateau
    (the largest rate before T)."""
    if not 0 < level < 1:
        raise ValueError(f"level: in (0, 1), got {level!r}")
    T = int(T)
    lr = np.asarray(lr, float)[:T]
    above = np.nonzero(lr >= level * lr.max())[0]
    return int(T - (above[-1] + 1))


def expand_blocks(values, sizes):
    """Per-step values from per-block ones: block j's value repeated ``sizes[j]`` times."""
    return np.repeat(np.asarray(values, float), np.asarray(sizes, np.int64))
