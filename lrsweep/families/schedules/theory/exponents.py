"""The seed's exponents measured on searched schedules: which quantity of which schedule each
statement of :func:`.model.statements` is about, and its slopes over horizons (whole range with a
confidence interval, and local over sliding windows: whether it converges to the statement).

A measurement is a mapping ``kind -> column -> (H,) array`` over horizons T (the columns of
``schedule_summary.parquet``: ``expected_loss``, ``lr_peak``, ``decay_prefactor``, ``plateau_rate``,
``decay_exponent``, ``decay_window``).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .fit import fit_exponent_ci, local_exponents
from .model import statements

RELATIVE_TOLERANCE = 0.1   # "agrees": within the 95% interval widened by 10% of the stated value (at least 0.02)
ABSOLUTE_TOLERANCE = 0.02


class Quantity(NamedTuple):
    name: str        # key of the statement in :func:`.model.statements`
    kind: str        # the schedule measured
    column: str      # its column
    sign: int        # the statement's exponent is sign x the log-log slope (0: the column is the exponent)
    words: str


def quantities(a, b) -> list[Quantity]:
    """What is measured for each statement at exponents (a, b): xi from the decay's prefactor in the easy
    phase (the rate extrapolated to t = 0 from the decay, not the peak, which a warm-up bump sets) and
    from the plateau (the stable rate) in the hard phase; the window only in the hard phase."""
    easy = statements(a, b)["phase"]["value"] == "easy"
    out = [Quantity("constant_rate_exponent", "constant", "lr_peak", -1, "best constant rate ~ T^-x"),
           Quantity("loss_exponent_constant", "constant", "expected_loss", -1, "loss of the best constant ~ T^-x"),
           Quantity("loss_exponent_power", "power", "expected_loss", -1, "loss of the best power law ~ T^-x"),
           Quantity("loss_exponent_optimal", "optimal", "expected_loss", -1, "loss of the optimal schedule ~ T^-x"),
           Quantity("xi", "optimal", "decay_prefactor" if easy else "plateau_rate", -1,
                    "xi: optimal decay prefactor eta_p ~ T^-xi" if easy else "xi: optimal plateau rate ~ T^-xi"),
           Quantity("delta", "optimal", "decay_exponent", 0, "optimal decay (1 - t/T)^delta: delta")]
    if not easy:
        out.append(Quantity("window_exponent", "optimal", "decay_window", 1, "decay window T - t_s ~ T^x"))
    return out


def agrees(value, lo, hi, predicted) -> bool:
    """The stated value lies in [lo, hi] widened by max(0.02, 10% of the stated value)."""
    slack = max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(predicted))
    return bool(lo - slack <= predicted <= hi + slack)


def measure(T, measurement: dict, a, b, window: int | None = None) -> list[dict]:
    """One row per quantity measurable in ``measurement``: the statement (``predicted``, ``source``), the
    slope over all horizons with its standard error and 95% interval (``fitted``, ``se``, ``lo``,
    ``hi``; for delta the value at the largest T and the spread of the last ``window``), the local
    slope over the last ``window`` horizons (``local``, ``local_lo``, ``local_hi``), ``agrees``
    (:func:`agrees` on the whole-range interval) and the local slopes themselves (``local_T``,
    ``local_slopes``) for figures."""
    T = np.asarray(T, float)
    order = np.argsort(T)
    T = T[order]
    said = statements(a, b)
    window = min(window or T.size, T.size)
    rows = []
    for q in quantities(a, b):
        values = measurement.get(q.kind, {}).get(q.column)
        if values is None:
            continue
        y = np.asarray(values, float)[order]
        keep = np.isfinite(y) & ((y > 0) if q.sign else True)
        if keep.sum() < 2:
            continue
        Tk, yk = T[keep], y[keep]
        predicted = float(said[q.name]["value"])
        if q.sign == 0:         # a level, not a slope
            last = yk[-window:]
            fit = {"slope": float(yk[-1]), "se": float(np.std(last, ddof=1)) if last.size > 1 else np.nan,
                   "lo": float(last.min()), "hi": float(last.max())}
            local = {"T": Tk, "slope": yk, "lo": yk, "hi": yk}
            last_local = (float(yk[-1]), float(yk[-1]), float(yk[-1]))
        else:
            fit = fit_exponent_ci(Tk, yk)
            fit = {k: q.sign * fit[k] for k in ("slope", "lo", "hi")} | {"se": fit["se"]}
            fit["lo"], fit["hi"] = min(fit["lo"], fit["hi"]), max(fit["lo"], fit["hi"])
            w = min(window, Tk.size)
            local = local_exponents(Tk, yk, w) if w >= 2 else None
            if local is not None:
                local = {"T": local["T"], "slope": q.sign * local["slope"],
                         "lo": np.minimum(q.sign * local["lo"], q.sign * local["hi"]),
                         "hi": np.maximum(q.sign * local["lo"], q.sign * local["hi"])}
                last_local = (float(local["slope"][-1]), float(local["lo"][-1]), float(local["hi"][-1]))
            else:
                last_local = (np.nan, np.nan, np.nan)
        rows.append({"quantity": q.name, "words": q.words, "kind": q.kind, "column": q.column,
                     "predicted": predicted, "source": said[q.name]["source"], "fitted": fit["slope"],
                     "se": fit["se"], "lo": fit["lo"], "hi": fit["hi"], "local": last_local[0],
                     "local_lo": last_local[1], "local_hi": last_local[2],
                     "agrees": agrees(fit["slope"], fit["lo"], fit["hi"], predicted),
                     "T_min": float(Tk[0]), "T_max": float(Tk[-1]),
                     "local_T": None if local is None else np.asarray(local["T"], float),
                     "local_slopes": None if local is None else np.asarray(local["slope"], float)})
    return rows
