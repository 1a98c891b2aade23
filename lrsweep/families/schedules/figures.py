"""Figures of seed 004 (Bordelon & Mori 2026, arXiv 2602.04774): optimal learning-rate schedules of SGD
on power-law random features, and Monte Carlo loss curves against the exact recursion.

A schedule run (``lrsweep schedule``, :mod:`lrsweep.families.schedules.search`) gets, per point
(a, b, N, sigma, batch size; ``<point>`` = ``a2.5_b1.5_N200_noise0.5_B8``):

- ``schedules_<point>``: lr(t) against t/T of every kind, one panel per kind, coloured by the horizon T
  (log y); step batch size and momentum panels for the kinds where they vary (:func:`schedules_figure`);
- ``collapse_<point>``: T^xi eta*(t) of the optimal schedule for every T, against t/T and, log-log,
  against 1 - t/T, with the seed's shape (1 - t/T)^delta dashed (:func:`collapse_figure`);
- ``loss_vs_T_<point>``: final expected loss against T, one line per kind with its fitted exponent,
  Monte Carlo means +-1 SE after ``--verify`` (:func:`loss_vs_T_figure`);
- ``verify_loss_curves_rf*``: :func:`rf_figures` of its ``--verify`` run, curves labelled by kind.

An ordinary run of power_law_features SGD / momentum students gets ``loss_curves_rf*``
(:func:`rf_figures`): the recursion's expected test loss at every step (lines) over the Monte Carlo
mean +-1 SE (markers and bands), against step + 1 on log-log axes.

The theory (statements, fitted exponents, expected curves) comes from :mod:`lrsweep.families.layer_balancing.theories`; nothing
is computed here but what is drawn. Builders return Figures (no pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep.plots import common as plot
from lrsweep import registry
from lrsweep.families.schedules.point import POINT_COLUMNS, SCHEDULE, read_table

POINT_TAGS = {"a": "a", "b": "b", "n_features": "N", "noise_std": "noise", "batch_size": "B"}
KIND_ORDER = ("optimal", "optimal_batch", "optimal_momentum", "constant", "power", "polynomial", "wsd")
KIND_WORDS = {"optimal": "optimal (free)", "optimal_batch": "optimal rate and batch",
              "optimal_momentum": "optimal rate and momentum", "constant": "best constant",
              "power": "best power law", "polynomial": "best polynomial decay", "wsd": "best WSD"}
KIND_COLORS = dict(zip(KIND_ORDER, ("black", "tab:purple", "tab:brown", "tab:blue", "tab:orange", "tab:green",
                                    "tab:red")))
QUANTITY_WORDS = {"lr": r"learning rate $\eta_t$", "step_batch_size": r"batch size $m_t$",
                  "momentum": r"momentum $\beta_t$"}
MAX_HORIZONS = 6          # horizons drawn in a schedules figure (evenly spaced, first and last kept)
RF_THEORY = "random_features.sgd"
THEORY_WORDS = "exact expected loss (second-moment recursion, seed 004)"
TOP_FACTOR = 3.0          # loss axes end this factor above the largest Monte Carlo mean (a diverging
                          # expectation does not flatten the rest)


# --------------------------------------------------------------------------------------
# Words and names
# --------------------------------------------------------------------------------------

def point_tag(point: dict) -> str:
    """File-name part of a point: ``a2.5_b1.5_N200_noise0.5_B8``."""
    return "_".join(f"{POINT_TAGS[k]}{plot.number(point[k])}" for k in POINT_COLUMNS)


def point_words(point: dict, phase: str = "") -> str:
    words = (f"a = {plot.number(point['a'])}, b = {plot.number(point['b'])}" + (f" ({phase} phase)" if phase else "")
             + f", N = {plot.number(point['n_features'])} features, label noise \u03c3 = "
             f"{plot.number(point['noise_std'])}, batch {plot.number(point['batch_size'])}")
    return words


def source_words(statement: dict) -> str:
    """Where a statement of :func:`lrsweep.families.schedules.theory.statements` comes from, for a reader."""
    source = statement["source"]
    return "derived in lrsweep.families.schedules.theory" if source.startswith("derived") else source


def rf_words(points: pd.DataFrame) -> str:
    """The constant settings of power-law-feature students in the seed's words (a, b, N, sigma, batch)."""
    def const(c):
        return c in points and points[c].nunique(dropna=False) == 1
    row = points.iloc[0]
    parts = [f"{s} = {plot.number(row[c])}" for s, c in (("a", "a"), ("b", "b"), ("N", "input_dim")) if const(c)]
    if const("noise_std"):
        parts.append(f"label noise \u03c3 = {plot.number(row['noise_std'])}")
    if const("batch_size"):
        parts.append(f"batch {plot.number(row['batch_size'])}")
    if const("optimizer"):
        parts.append("SGD" if row["optimizer"] == "sgd" else "heavy-ball momentum")
    if const("schedule") and row["schedule"] != "constant":
        parts.append(f"{row['schedule']} schedule")
    return ", ".join(parts)


def _kinds(frame: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(frame[SCHEDULE]))
    return [k for k in KIND_ORDER if k in present] + [k for k in present if k not in KIND_ORDER]


def _horizon_norm(horizons):
    from matplotlib import colors
    h = np.asarray(horizons, float)
    return colors.LogNorm(h.min(), h.max()) if h.max() > h.min() else colors.Normalize(h.min() - 1, h.max() + 1)


def shown_horizons(horizons, max_shown: int = MAX_HORIZONS) -> list[int]:
    """At most ``max_shown`` of the sorted horizons, evenly spaced, first and last kept."""
    h = sorted(int(v) for v in set(horizons))
    if len(h) <= max_shown:
        return h
    return [h[i] for i in np.unique(np.linspace(0, len(h) - 1, max_shown).round().astype(int))]


def _horizon_bar(fig, axes, norm):
    bar = plot.add_colorbar(fig, axes, norm, "viridis", "horizon T (steps)")
    plot.log_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
    return bar


def _varies(frame: pd.DataFrame, column: str) -> bool:
    """``column`` takes more than one finite value over the steps of some horizon."""
    if column not in frame:
        return False
    return any(np.unique(v[np.isfinite(v)]).size > 1
               for _, g in frame.groupby("T") for v in [g[column].to_numpy(float)])


# --------------------------------------------------------------------------------------
# Schedule runs
# --------------------------------------------------------------------------------------

def schedules_figure(long: pd.DataFrame, title: str = ""):
    """lr(t) (and m_t, beta_t where they vary) against t/T, one panel per kind and quantity, coloured by T.

    Args:
      long: ``schedules.parquet`` rows of one point (columns T, schedule, t, lr, step_batch_size, momentum).
    Returns:
      The Figure; line gids ``"<quantity> <kind> T=<T>"``.
    """
    from matplotlib import cm
    horizons = shown_horizons(long["T"].unique())
    long = long[long["T"].isin(horizons)]
    kinds = _kinds(long)
    panels = [("lr", k) for k in kinds]
    for column in ("step_batch_size", "momentum"):
        panels += [(column, k) for k in kinds if _varies(long[long[SCHEDULE] == k], column)]
    fig, axes = plot.panel_grid(len(panels), extra_width=1.0)
    norm = _horizon_norm(horizons)
    for ax, (column, kind) in zip(axes, panels):
        g = long[long[SCHEDULE] == kind]
        values = []
        for T, h in g.groupby("T", sort=True):
            h = h.sort_values("t")
            h = h[h["t"] < T]  # the schedule's steps (t = T holds the final loss only)
            y = h[column].to_numpy(float)
            keep = np.isfinite(y) & ((y > 0) if column != "momentum" else True)
            ax.plot(h["t"].to_numpy(float)[keep] / T, y[keep], color=cm.viridis(norm(T)), lw=1.1,
                    gid=f"{column} {kind} T={int(T)}")
            values.append(y[keep])
        v = np.concatenate(values) if values else np.array([])
        log_y = column == "lr" or (column == "step_batch_size" and plot.wide_span(v, 3.0))
        first = ax.get_subplotspec().is_first_col()
        plot.style_panel(ax, "t / T", QUANTITY_WORDS[column] if first or column != "lr" else None, False, log_y)
        ax.set_xlim(0, 1)
        ax.set_title(KIND_WORDS.get(kind, kind) + ("" if column == "lr" else f": {QUANTITY_WORDS[column]}"),
                     fontsize=8)
    _horizon_bar(fig, axes, norm)
    if title:
        plot.set_title(fig, title)
    return fig


def collapse_figure(optimal: pd.DataFrame, xi: float, delta: float, title: str = "",
                    delta_source: str = "seed eq. 82"):
    """T^xi eta*(t) of every horizon against t/T (linear) and against 1 - t/T (log-log), coloured by T;
    dashed: c (1 - t/T)^delta, c the median over T of the largest T^xi eta*(t).

    Args:
      optimal: ``schedules.parquet`` rows of one point and kind (columns T, t, lr).
      xi, delta: the exponents (the seed's statements: xi = (a - b)/a in the easy phase, 0 in the hard;
        delta = 2b - 1).
    Returns:
      The Figure; line gids ``"collapse T=<T>"`` (left) and ``"collapse log T=<T>"`` (right),
      ``"shape"`` and ``"shape log"`` for the dashed curve.
    """
    from matplotlib import cm
    from matplotlib.lines import Line2D
    fig, axes = plot.panel_grid(2, extra_width=1.0)
    horizons = sorted(int(T) for T in optimal["T"].unique())
    norm = _horizon_norm(horizons)
    peaks = []
    for T, h in optimal.groupby("T", sort=True):
        h = h[h["t"] < T].sort_values("t")
        frac = h["t"].to_numpy(float) / T
        y = float(T) ** xi * h["lr"].to_numpy(float)
        color = cm.viridis(norm(T))
        axes[0].plot(frac, y, color=color, lw=1.1, gid=f"collapse T={int(T)}")
        keep = y > 0
        axes[1].plot(1.0 - frac[keep], y[keep], color=color, lw=1.1, gid=f"collapse log T={int(T)}")
        peaks.append(np.nanmax(y))
    scale = float(np.median(peaks))
    frac = np.linspace(0.0, 1.0, 401)
    axes[0].plot(frac, scale * (1.0 - frac) ** delta, color="crimson", ls="--", lw=1.3, gid="shape")
    remain = np.geomspace(1.0 / max(horizons), 1.0, 200)
    axes[1].plot(remain, scale * remain ** delta, color="crimson", ls="--", lw=1.3, gid="shape log")
    ylabel = rf"$T^{{\xi}}\,\eta^*(t)$, $\xi$ = {plot.number(round(xi, 3))}"
    plot.style_panel(axes[0], "t / T", ylabel, False, False)
    axes[0].set_xlim(0, 1)
    axes[0].set_ylim(0, None)
    axes[0].set_title("against the fraction of training done", fontsize=8)
    plot.style_panel(axes[1], "1 - t / T (fraction left)", None, True, True)
    axes[1].set_title("log-log: the tail as a power of 1 - t/T", fontsize=8)
    low = min(np.nanmin(ln.get_ydata()) for ln in axes[1].get_lines() if ln.get_gid() != "shape log")
    axes[1].set_ylim(0.3 * low, 2.0 * max(peaks))  # the dashed power law runs below the data, not to 0
    _horizon_bar(fig, axes, norm)
    plot.add_legend(fig, [Line2D([], [], color="crimson", ls="--", lw=1.3,
                                 label=rf"$c\,(1 - t/T)^{{\delta}}$, $\delta = 2b - 1$ = {plot.number(round(delta, 3))} "
                                       f"({delta_source}), c the median peak")])
    if title:
        plot.set_title(fig, title)
    return fig


def loss_vs_T_figure(summary: pd.DataFrame, reference: tuple[float, str] | None = None, title: str = ""):
    """Final expected loss against T (log-log), one line per kind labelled with its fitted exponent
    (:func:`lrsweep.families.schedules.theory.fit_exponent`); Monte Carlo means +-1 SE where ``mc_mean`` exists.

    Args:
      summary: ``schedule_summary.parquet`` rows of one point.
      reference: (exponent x, words): a dotted T^-x through the optimal schedule's largest-T loss.
    Returns:
      The Figure; line gids ``"loss <kind>"``, ``"mc <kind>"``, ``"reference"``.
    """
    from matplotlib.lines import Line2D

    from lrsweep.families.schedules import theory as rf
    from lrsweep.families.schedules import checks as rfc
    fig, (ax,) = plot.panel_grid(1, extra_width=2.2, extra_height=1.6)
    fig.set_size_inches(5.2, 4.4)
    handles = []
    heavy = False
    has_mc = "mc_mean" in summary and summary["mc_mean"].notna().any()
    kinds = _kinds(summary)
    for i, kind in enumerate(kinds):
        g = summary[summary[SCHEDULE] == kind].sort_values("T")
        T, loss = g["T"].to_numpy(float), g["expected_loss"].to_numpy(float)
        color = KIND_COLORS.get(kind, f"C{i}")
        label = KIND_WORDS.get(kind, kind)
        if len(T) >= 2 and (loss > 0).all():
            slope, se = rf.fit_exponent(T, loss)
            label += rf": $L \propto T^{{{slope:.3f}}}$ ($\pm${se:.3f})"
        ax.plot(T, loss, color=color, marker="o", ms=3.5, lw=1.2, label=label, gid=f"loss {kind}")
        if has_mc and g["mc_mean"].notna().any():
            shift = 1.0 + 0.02 * (i - (len(kinds) - 1) / 2)  # kinds side by side at one T
            reliable = np.array([rfc.reliable(r) for r in g.to_dict("records")], bool)
            bars = ax.errorbar(T[reliable] * shift, g["mc_mean"].to_numpy(float)[reliable],
                               yerr=g["mc_sem"].to_numpy(float)[reliable], color=color, fmt="s", mfc="none", ms=4,
                               capsize=2, lw=0.9)
            bars.lines[0].set_gid(f"mc {kind}")
            if (~reliable).any():
                ax.plot(T[~reliable] * shift, g["mc_mean"].to_numpy(float)[~reliable], color=color, marker="x", ms=5,
                        ls="none", gid=f"mc heavy {kind}")
                heavy = True
    handles = ax.get_legend_handles_labels()[0]
    if reference is not None and "optimal" in kinds:
        x, words = reference
        g = summary[summary[SCHEDULE] == "optimal"].sort_values("T")
        T = g["T"].to_numpy(float)
        anchor_T, anchor = T[-1], float(g["expected_loss"].iloc[-1])
        ax.plot(T, anchor * (T / anchor_T) ** -x, color="0.4", ls=":", lw=1.4, gid="reference",
                label=rf"seed statement for the optimal schedule: $T^{{-{x:.3f}}}$ ({words})")
        handles.append(ax.get_lines()[-1])
    if has_mc:
        n = int(summary["mc_n"].max())
        handles.append(Line2D([], [], color="0.2", marker="s", mfc="none", ls="none",
                              label=f"Monte Carlo mean \u00b11 standard error over {n} seeds (engine, --verify)"))
        if heavy:
            handles.append(Line2D([], [], color="0.2", marker="x", ls="none",
                                  label="Monte Carlo mean of a heavy-tailed loss (no reliable mean or error bar)"))
    plot.style_panel(ax, "horizon T (steps)", "final expected test loss", True, True)
    plot.log_ticks(ax.xaxis, float(summary["T"].min()), float(summary["T"].max()))
    plot.log_ticks(ax.yaxis, *ax.get_ylim())
    plot.add_legend(fig, handles, ncols=1)
    if title:
        plot.set_title(fig, title)
    return fig


PANEL_WORDS = {"xi": "xi: decay prefactor (easy) / plateau (hard) ~ T^-xi",
               "delta": "delta of the optimal decay (1 - t/T)^delta"}


def local_exponents_figure(local: pd.DataFrame, title: str = ""):
    """Each exponent measured over sliding windows of horizons against the window's centre T, one panel per
    quantity, one line per point (a, b), the statement dashed in the same colour: whether the measurement
    converges to it.

    Args:
      local: rows a, b, quantity, words, T, local, predicted (``scripts/schedule_exponents.py``).
    Returns:
      The Figure; gids ``"local <quantity> a=<a> b=<b>"`` and ``"stated <quantity> a=<a> b=<b>"``.
    """
    from matplotlib.lines import Line2D
    quantities = list(dict.fromkeys(local["quantity"]))
    points = list(dict.fromkeys(zip(local["a"], local["b"])))        # one colour per point in every panel
    fig, axes = plot.panel_grid(len(quantities), extra_width=0.4)
    for ax, q in zip(axes, quantities):
        g = local[local["quantity"] == q]
        for (a, b), p in g.groupby(["a", "b"], sort=False):
            i = points.index((a, b))
            p = p.sort_values("T")
            ax.plot(p["T"], p["local"], marker="o", ms=3, lw=1.2, color=f"C{i}", label=f"a = {plot.number(a)}, "
                    f"b = {plot.number(b)}", gid=f"local {q} a={plot.number(a)} b={plot.number(b)}")
            ax.axhline(p["predicted"].iloc[0], color=f"C{i}", ls="--", lw=1.0,
                       gid=f"stated {q} a={plot.number(a)} b={plot.number(b)}")
        level = q == "delta"
        plot.style_panel(ax, "horizon T" if level else "horizon T (window centre)",
                         "value" if level else "local exponent", True, False)
        ax.set_title(PANEL_WORDS.get(q, g["words"].iloc[0]), fontsize=8)
    handles = [Line2D([], [], color=f"C{i}", marker="o", ms=3, lw=1.2, label=f"a = {plot.number(a)}, b = "
                      f"{plot.number(b)}") for i, (a, b) in enumerate(points)]
    handles.append(Line2D([], [], color="0.3", ls="--", lw=1.0, label="dashed: the statement (same colour)"))
    plot.add_legend(fig, handles, ncols=min(len(handles), 3))
    if title:
        plot.set_title(fig, title)
    return fig


def _read_schedule_tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    long = read_table(run / "schedules.parquet")
    summary = read_table(run / "schedule_summary.parquet")
    return long, summary


def schedule_figures(run: str | Path) -> list[tuple[str, object]]:
    """Every figure of a schedule run as ``(file stem, Figure)``: per point the schedules, the collapse
    (where the optimal kind was searched over two or more horizons) and the loss against T; then the
    loss curves of its ``--verify`` run, labelled by kind."""
    from lrsweep.core import store
    from lrsweep.families.schedules import theory as rf
    run = Path(run)
    long, summary = _read_schedule_tables(run)
    name = str(run.parent.name)
    out = []
    for point, g in long.groupby(list(POINT_COLUMNS), sort=True):
        point = dict(zip(POINT_COLUMNS, point))
        said = rf.statements(point["a"], point["b"])
        phase = said["phase"]["value"]
        words = point_words(point, phase)
        tag = point_tag(point)
        horizons = sorted(int(T) for T in g["T"].unique())
        note = (f"{len(shown_horizons(horizons))} of {len(horizons)} horizons shown"
                if len(shown_horizons(horizons)) < len(horizons) else "")
        out.append((f"schedules_{tag}", schedules_figure(
            g, "\n".join(filter(None, [f"{name}: schedules found for seed 004's random-feature model", words, note])))))
        optimal = g[g[SCHEDULE] == "optimal"]
        if optimal["T"].nunique() >= 2:
            xi, delta = said["xi"], said["delta"]
            rule = "(a - b)/a in the easy phase" if phase == "easy" else "0 in the hard phase"
            title = "\n".join([f"{name}: collapse of the optimal schedule, $T^{{\\xi}}\\eta^*(t)$ against t/T", words,
                               f"\u03be = {rule} = {plot.number(round(xi['value'], 3))} [{source_words(xi)}], "
                               f"\u03b4 = 2b - 1 = {plot.number(round(delta['value'], 3))} [{source_words(delta)}]"])
            out.append((f"collapse_{tag}", collapse_figure(optimal, float(xi["value"]), float(delta["value"]), title,
                                                           source_words(delta))))
        s = summary[np.logical_and.reduce([np.isclose(summary[k].to_numpy(float), float(point[k])) for k in POINT_COLUMNS])]
        if s["T"].nunique() >= 2:
            x = said["loss_exponent_optimal"]
            title = "\n".join([f"{name}: final expected loss against the horizon T", words])
            out.append((f"loss_vs_T_{tag}", loss_vs_T_figure(s, (float(x["value"]), source_words(x)), title)))
    verify = (store.read_json(run / "meta.json").get("verify") or {}).get("run")
    if verify and (run / verify).exists():
        labels = {i: k for i, k in enumerate(summary[SCHEDULE])}  # row i of the summary is array i
        out += [(f"verify_{stem}", fig) for stem, fig in rf_figures(run / verify, f"{name} --verify",
                                                                    kind_of_index=labels)]
    return out


# --------------------------------------------------------------------------------------
# Ordinary runs: Monte Carlo against the recursion
# --------------------------------------------------------------------------------------

def rf_points(curves: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """:func:`lrsweep.plots.common.seed_means` of the students the seed 004 theory covers (empty where none)."""
    if curves.empty or "test_loss" not in curves or RF_THEORY not in registry.THEORIES:
        return pd.DataFrame(), []
    students = curves.drop_duplicates(["run_id", "student_id"])
    covered = students.loc[registry.THEORIES[RF_THEORY].matches(students), ["run_id", "student_id"]]
    if covered.empty:
        return pd.DataFrame(), []
    return plot.seed_means(curves.merge(covered, on=["run_id", "student_id"]))


def rf_loss_curves_figure(points: pd.DataFrame, expected: dict, colour: str | None, panel_keys: list[str],
                          title: str = ""):
    """Monte Carlo mean +-1 SE (markers, bands) and the expected loss (lines) against step + 1, log-log.

    Args:
      points: :func:`rf_points` rows of one figure.
      expected: grid point (tuple of ``point_keys`` values, in points' order) -> expected loss at steps 0..T;
        passed with the key columns as ``expected["keys"]``.
      colour: the column colouring curves: numeric (a colour bar) or text (a legend); None: one colour.
      panel_keys: one panel per combination of their values.
    Returns:
      The Figure; gids ``"mc <i>"`` (markers) and ``"theory <i>"`` (line) of the i-th grid point drawn.
    """
    from matplotlib import cm, colors
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    keys = expected["keys"]
    groups = plot.groups(points, panel_keys)
    numeric = colour is not None and pd.api.types.is_numeric_dtype(points[colour])
    fig, axes = plot.panel_grid(len(groups), extra_width=1.0 if numeric else 0.8)
    norm = plot.rate_norm(points[colour]) if numeric else None
    categories = list(dict.fromkeys(points[colour])) if colour is not None and not numeric else []
    if colour == "kind":
        categories = [k for k in KIND_ORDER if k in categories] + [k for k in categories if k not in KIND_ORDER]
    index = 0
    for ax, (values, g) in zip(axes, groups):
        tops, lows = [], []
        for key, p in g.groupby(keys, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            p = p.sort_values("step")
            c = (cm.viridis(norm(p[colour].iloc[0])) if numeric else
                 KIND_COLORS.get(p[colour].iloc[0], f"C{categories.index(p[colour].iloc[0]) % 10}") if categories
                 else "C0")
            alive = ~p["diverged"].to_numpy(bool)
            x = p["step"].to_numpy(float)[alive] + 1
            mean, sem = p["mean"].to_numpy(float)[alive], p["sem"].to_numpy(float)[alive]
            ax.fill_between(x, np.clip(mean - sem, mean * 1e-3, None), mean + sem, color=c, alpha=0.25, lw=0)
            ax.plot(x, mean, color=c, marker="o", ms=2.8, ls="none", gid=f"mc {index}")
            curve = np.asarray(expected[key], float)
            ax.plot(np.arange(curve.size) + 1.0, curve, color=plot.darker(c, 0.8), lw=1.1, gid=f"theory {index}")
            tops.append(np.nanmax(mean) if mean.size else np.nan)
            lows += [np.nanmin(mean[mean > 0]) if (mean > 0).any() else np.nan,
                     np.nanmin(curve[curve > 0]) if (curve > 0).any() else np.nan]
            index += 1
        plot.style_panel(ax, "step + 1", "test loss" if ax.get_subplotspec().is_first_col() else None, True, True)
        top, low = np.nanmax(tops + [np.nan]), np.nanmin(lows + [np.nan])
        if np.isfinite(top) and np.isfinite(low):
            ax.set_ylim(0.7 * low, TOP_FACTOR * top)
            plot.log_ticks(ax.yaxis, 0.7 * low, TOP_FACTOR * top)
        ax.set_title(plot.configuration_words(panel_keys, values), fontsize=8)
    n_seeds = int(points["n_students"].max())
    handles = [Patch(color="0.5", alpha=0.35, label=f"markers, band: Monte Carlo mean \u00b11 standard error "
                                                    f"over {n_seeds} seeds"),
               Line2D([], [], color="0.2", lw=1.1, label=f"line: {THEORY_WORDS}")]
    if numeric:
        label = plot.value_words(colour, 0).split(" = ")[0] if not colour.startswith("lr_") else "learning rate"
        bar = plot.add_colorbar(fig, axes, norm, "viridis", label)
        if isinstance(norm, colors.LogNorm):
            plot.log_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
    for i, cat in enumerate(categories):
        handles.append(Line2D([], [], color=KIND_COLORS.get(cat, f"C{i % 10}"), lw=1.5,
                              label=KIND_WORDS.get(cat, str(cat)) if colour == "kind" else plot.value_words(colour, cat)))
    plot.add_legend(fig, handles, ncols=2 if len(handles) > 2 else 1)
    if title:
        plot.set_title(fig, title)
    return fig


def colour_column(points: pd.DataFrame) -> str | None:
    """What colours the curves: ``kind`` where known, else the learning rate, else the first varying axis."""
    if "kind" in points and points["kind"].nunique() > 1:
        return "kind"
    for c in plot.lr_columns(points):
        if points[c].nunique() > 1:
            return c
    axes = plot.varying(points, plot.axis_candidates(points))
    return axes[0] if axes else None


def rf_figures(run: str | Path, name: str = "", curves: pd.DataFrame | None = None,
               kind_of_index: dict | None = None) -> list[tuple[str, object]]:
    """``loss_curves_rf*`` figures of a run's power_law_features SGD / momentum students (none where it has
    none): one panel per value of the axes other than the colour, figures split beyond
    :data:`lrsweep.plots.common.MAX_PANELS` panels.

    Args:
      curves: the run's loaded curves (read from ``run`` when None).
      kind_of_index: ``schedule_index`` -> schedule kind (a ``--verify`` run): curves coloured by kind.
    """
    from lrsweep import compare
    from lrsweep.core import store
    from lrsweep.families.schedules import checks as rfc
    compare.load_arrays(run)  # scheduled students name their per-step arrays by digest
    curves = store.load(Path(run)) if curves is None else curves
    points, keys = rf_points(curves)
    if points.empty:
        return []
    point_keys = [k for k in keys if k != "step"]
    if kind_of_index is not None and "schedule_index" in points:
        points = points.assign(kind=points["schedule_index"].map(lambda i: kind_of_index.get(int(i), str(i))))
    colour = colour_column(points)
    fixed = [colour] if colour else []
    panel_keys = plot.varying(points, plot.axis_candidates(points) + plot.lr_columns(points), fixed=fixed)
    panel_keys = [k for k in panel_keys if k not in ("schedule_index", "log_every")]
    panel_keys = [k for k in panel_keys if k != "steps"] + [k for k in panel_keys if k == "steps"]  # T innermost
    expected = {"keys": point_keys}
    for key, p in points.groupby(point_keys, sort=True):
        expected[key if isinstance(key, tuple) else (key,)] = rfc.expected_curve(p.iloc[0].to_dict())
    split, inner = plot.split_panels(points, panel_keys)
    out = []
    for values, g in plot.groups(points, split):
        extra = plot.configuration_words(split, values)
        what = "test loss on power-law features: Monte Carlo and the exact expectation"
        title = "\n".join(filter(None, [f"{name}: {what}" if name else what, rf_words(g), extra]))
        out.append((plot.stem("loss_curves_rf", split, values),
                    rf_loss_curves_figure(g, expected, colour, inner, title)))
    return out
