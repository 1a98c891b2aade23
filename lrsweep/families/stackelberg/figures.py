"""Figures of seed 002 (a body and a head trained at different rates, read as a Stackelberg game in
which the head follows its best response w*(M) to the body M; :mod:`lrsweep.families.stackelberg.heads`): finite head/body
ratios against the best-response run (ratio -> inf), the curvature of Phi(M) = min_w L(M, w) beside
the loss's, and the steps to a target loss against the ratio.

A run gets them where its students have a head (:func:`is_head_run`: an ``lr_ratio`` column or a
``best_response`` head). :func:`stackelberg_figures` returns, where the columns exist:

- ``loss_by_ratio`` (:func:`loss_by_ratio_figure`): train loss against the step (log y), one panel per
  body rate (per budget C of an equal-budget run, (m-1) eta_body + eta_head = C) and value of the other
  varying settings; per finite ratio the seed mean with a light +-1 SE band, coloured by the ratio on a
  log colour scale; the best-response run on top, black and thicker;
- ``curvature`` (:func:`curvature_figure`): ``phi_sharpness`` (solid) and ``sharpness`` (dashed) against
  the step, the same panels and colours;
- ``steps_to_target`` (:func:`steps_to_target_figure`): steps to a target train loss (:data:`TARGET_RULE`)
  against the ratio (log x), one line per body rate (budget), the best response's value as a dashed
  horizontal line, ratio 1 (one rate for every layer) starred;
- ``distance_vs_ratio`` (:func:`distance_figure`): the loss and body distances of
  :func:`lrsweep.families.stackelberg.checks.distance_table` against the ratio (log-log), seed mean +-1 SE,
  a slope -1 guide (two-time-scale theory: the head lags w*(M_t) by O(eta_body / eta_head)).

Beyond :data:`lrsweep.plots.common.MAX_PANELS` panels a figure splits into one file per value of the leading
setting (``loss_by_ratio_width32``). A student's ratio is lr_m / lr_1 (head over body, inf for a
best-response head). Numbers come from :mod:`lrsweep.families.stackelberg.checks`; nothing is computed
here but what is drawn. Builders return Figures (no pyplot state).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrsweep.core import config as config_lib
from lrsweep.core.columns import seed_mean_sem
from lrsweep.plots import common as plot
from lrsweep.families.stackelberg.checks import TWIN_FREE  # what a best-response twin may differ in

BEST = "best_response"
BEST_WORDS = r"best response (ratio $\to\infty$)"
BEST_STYLE = dict(color="black", lw=2.4, zorder=6)
RATIO_CMAP = "plasma"
RATIO_RANGE = (0.0, 0.85)  # the part of the colour map used: its pale end is hard to see on white
RATIO_WORDS = r"head / body rate ratio $\eta_\mathrm{head} / \eta_\mathrm{body}$"
RATIO_AXIS = r"ratio $\eta_\mathrm{head} / \eta_\mathrm{body}$"
RATE_WORDS = {"body_rate": r"$\eta_\mathrm{body}$", "lr_total": r"budget $C$", "lr_head": r"$\eta_\mathrm{head}$"}
UNIFORM = dict(marker="*", color="crimson", ms=9, ls="none", zorder=7)
CURVATURE = {"phi_sharpness": "-", "sharpness": "--"}
CURVATURE_WORDS = {
    "phi_sharpness": r"solid: top Hessian eigenvalue of $\Phi(M)=L(M,w^*(M))$ over the body's weights M",
    "sharpness": "dashed: top Hessian eigenvalue of the loss L over all weights"}
CURVATURE_LEGEND = {"phi_sharpness": r"$\Phi$ sharpness (phi_sharpness)", "sharpness": "loss sharpness (sharpness)"}
DISTANCES = {"loss_distance": r"loss distance $\max_t |L_r - L_\mathrm{BR}| / L_r(0)$",
             "body_distance": r"body distance $\max_t \|M_r - M_\mathrm{BR}\| / \|M_\mathrm{BR}(0)\|$"}
TARGET_RULE = ("halfway down in log loss from the start to the end of training: the geometric mean of the median "
               "initial and the median final train loss of the panel's gd-head students")
MIN_WIDTH = 6.0   # inches: a one-panel figure's title and legend need the room
BAND_ALPHA = 0.12


# --------------------------------------------------------------------------------------
# Students and panels
# --------------------------------------------------------------------------------------

def is_head_run(curves: pd.DataFrame) -> bool:
    """The run's students have a head: it stored ``lr_ratio`` or has a best-response head."""
    if curves.empty or "n_trainable" not in curves:
        return False
    ratio = "lr_ratio" in curves and curves["lr_ratio"].notna().any()
    return bool(ratio or ("head" in curves and (curves["head"] == BEST).any()))


def snap(values) -> np.ndarray:
    """Rates to 12 significant digits: a budget C split and summed back (0.19999999999999998) is one value."""
    v = np.asarray(values, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = 10.0 ** (11 - np.floor(np.log10(np.abs(np.where(np.isfinite(v) & (v != 0), v, 1.0)))))
    return np.where(np.isfinite(v) & (v != 0), np.round(v * scale) / scale, v)


def head_table(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per student (its student columns) with ``ratio`` = lr_m / lr_1 (inf for a best-response
    head), ``body_rate`` = lr_1 and ``best`` (a best-response head); the rates through :func:`snap`."""
    students = curves.drop_duplicates("student_id").reset_index(drop=True)
    m = students["n_trainable"].to_numpy(int)
    head = np.array([students[f"lr_{k}"].iloc[i] for i, k in enumerate(m)], float)
    best = (students["head"] == BEST).to_numpy(bool)
    body = students["lr_1"].to_numpy(float)
    rates = {c: snap(students[c]) for c in ("lr_total", "lr_head") if c in students}
    return students.assign(ratio=snap(np.where(best, np.inf, head / body)), body_rate=snap(body), best=best, **rates)


def rate_axis(table: pd.DataFrame) -> str:
    """The rate that spans the grid with the ratio: ``lr_total`` on an equal-budget grid (several
    ratios per budget C), ``lr_head`` on an lr_head grid, else ``body_rate``: whichever of them holds
    the most ratios per value over the gd-head students."""
    gd = table[~table["best"]]
    def ratios_per_value(c):
        return gd.groupby(c)["ratio"].nunique().mean() if c in gd and gd[c].notna().all() else 0.0
    return max(("body_rate", "lr_total", "lr_head"), key=lambda c: (ratios_per_value(c), c == "body_rate"))


def setting_keys(table: pd.DataFrame, rate: str) -> list[str]:
    """The settings besides the rate and the ratio that vary over the gd-head students (the head rule
    itself excluded: the best-response students are drawn in every panel they match)."""
    gd = table[~table["best"]]
    candidates = [c for c in plot.axis_candidates(gd) if c != "head"]
    return plot.varying(gd, candidates, fixed=[rate, "ratio"])


def _equal(column: pd.Series, value) -> np.ndarray:
    if pd.api.types.is_float_dtype(column) and isinstance(value, (float, np.floating)):
        return np.isclose(column.to_numpy(float), value, rtol=1e-9, atol=0.0)
    return (column == value).to_numpy(bool)


def best_response_of(table: pd.DataFrame, keys: list[str], values: tuple) -> pd.DataFrame:
    """The best-response students whose settings ``keys`` equal ``values`` (the head rule's own
    settings, :data:`TWIN_FREE`, aside: a best-response student is simultaneous with one head step)."""
    best = table[table["best"]]
    for k, v in zip(keys, values):
        if k not in TWIN_FREE and k in best:
            best = best[_equal(best[k], v)]
    same = [c for c in config_lib.student_columns(best) if c not in TWIN_FREE]
    return best.drop_duplicates(same)  # one of several students alike but for the free settings


def key_words(keys, values) -> str:
    return ", ".join(f"{RATE_WORDS[k]} = {plot.number(v)}" if k in RATE_WORDS else plot.value_words(k, v)
                     for k, v in zip(keys, values))


def seed_mean(curves: pd.DataFrame, ids, column: str) -> pd.DataFrame:
    """Per logged step of the students ``ids``: ``mean`` and ``sem`` (0 with one value) of ``column``
    over the students with a finite value there, ``n_seeds`` of them (steps with none left out)."""
    c = curves[curves["student_id"].isin(ids)]
    v = c[column].astype(float)
    out = seed_mean_sem(c.assign(value=v.where(np.isfinite(v))).groupby("step")["value"])
    out["sem"] = out["sem"].fillna(0.0)
    return out[out["n_seeds"] > 0]


def ratio_norm(ratios):
    """Log colour scale over the finite ratios."""
    from matplotlib import colors
    r = np.asarray(ratios, float)
    r = r[np.isfinite(r) & (r > 0)]
    lo, hi = (r.min(), r.max()) if r.size else (1.0, 1.0)
    return colors.LogNorm(lo, hi) if hi > lo else colors.LogNorm(lo / 2, lo * 2)


def ratio_cmap():
    """:data:`RATIO_CMAP` over :data:`RATIO_RANGE` (its pale end left out)."""
    from matplotlib import colormaps, colors
    base = colormaps[RATIO_CMAP]
    return colors.ListedColormap(base(np.linspace(*RATIO_RANGE, 256)), name=f"{RATIO_CMAP}_ratio")


def _ratio_bar(fig, axes, norm, cmap):
    bar = plot.add_colorbar(fig, axes, norm, cmap, RATIO_WORDS)
    plot.log_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
    return bar


def _finite_ratios(g: pd.DataFrame) -> list[float]:
    return sorted(float(r) for r in g["ratio"].unique() if np.isfinite(r))


def _n_seeds(table: pd.DataFrame) -> int:
    return int(table["seed"].nunique()) if "seed" in table else 1


def _seeds_words(n: int) -> str:
    return f"{n} seed" + ("s" if n != 1 else "")


def _draw_mean(ax, s: pd.DataFrame, color, gid: str, band: bool, ls="-", diverged=False, **style):
    """A seed-mean curve (and its +-1 SE band, clipped above zero for a log axis); an x at its last
    point where a student diverged. Returns the line."""
    step, mean, sem = s["step"].to_numpy(float), s["mean"].to_numpy(float), s["sem"].to_numpy(float)
    keep = mean > 0
    line, = ax.plot(step[keep], mean[keep], color=color, ls=ls, gid=gid, **{"lw": 1.3, **style})
    if band and keep.any():
        ax.fill_between(step[keep], np.maximum(mean - sem, 0.2 * mean)[keep], (mean + sem)[keep], color=color,
                        alpha=BAND_ALPHA, lw=0, gid=f"band {gid}")
    if diverged and keep.any():
        last = np.flatnonzero(keep)[-1]
        ax.plot(step[last], mean[last], color=color, gid="diverged", **{**plot.DIVERGED, "clip_on": True})
    return line


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------

def _panels(table: pd.DataFrame, keys: list[str]):
    """(values, gd-head students, best-response students) per panel."""
    gd = table[~table["best"]]
    return [(values, g, best_response_of(table, keys, values)) for values, g in plot.groups(gd, keys)]


def loss_by_ratio_figure(curves: pd.DataFrame, table: pd.DataFrame, keys: list[str], title: str = ""):
    """Train loss against the step (log y), one panel per value of ``keys``.

    Args:
      curves: the students' logged steps (``student_id``, ``step``, ``train_loss``).
      table: :func:`head_table` rows of the students shown.
      keys: the panel settings (the rate first or last, see :func:`stackelberg_figures`).
    Returns:
      The Figure; per panel the lines ``"ratio <r>"`` (seed means, coloured by r on the one log colour
      bar) and ``"best response"`` (black, on top).
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    panels = _panels(table, keys)
    fig, axes = plot.panel_grid(len(panels), extra_width=1.0)
    fig.set_size_inches(max(fig.get_figwidth(), MIN_WIDTH), fig.get_figheight())
    cmap, norm = ratio_cmap(), ratio_norm(table["ratio"])
    diverged_ids = set(table.loc[table["diverged"].astype(bool), "student_id"]) if "diverged" in table else set()
    any_best = any_diverged = False
    for ax, (values, g, best) in zip(axes, panels):
        for r in _finite_ratios(g):
            ids = g.loc[g["ratio"] == r, "student_id"]
            gone = bool(diverged_ids & set(ids))
            _draw_mean(ax, seed_mean(curves, ids, "train_loss"), cmap(norm(r)),
                       f"ratio {plot.number(r)}", band=True, diverged=gone)
            any_diverged |= gone
        if len(best):
            _draw_mean(ax, seed_mean(curves, best["student_id"], "train_loss"), BEST_STYLE["color"],
                       "best response", band=True, lw=BEST_STYLE["lw"], zorder=BEST_STYLE["zorder"])
            any_best = True
        plot.style_panel(ax, "step", "train loss" if ax.get_subplotspec().is_first_col() else None, False, True)
        plot.log_ticks(ax.yaxis, *ax.get_ylim())
        ax.set_title(key_words(keys, values), fontsize=8)
    _ratio_bar(fig, axes, norm, cmap)
    handles = [Patch(color="0.5", alpha=0.35, label=f"band: mean \u00b11 standard error over "
                                                    f"{_seeds_words(_n_seeds(table))}")]
    if any_best:
        handles.insert(0, Line2D([], [], color=BEST_STYLE["color"], lw=BEST_STYLE["lw"], label=BEST_WORDS))
    if any_diverged:
        handles.append(Line2D([], [], color="0.2", label="a seed diverged (curve: mean of the others)",
                              **{**plot.DIVERGED, "clip_on": True}))
    plot.add_legend(fig, handles)
    if title:
        plot.set_title(fig, title)
    return fig


def curvature_figure(curves: pd.DataFrame, table: pd.DataFrame, keys: list[str], quantities: list[str],
                     title: str = ""):
    """``phi_sharpness`` (solid) and ``sharpness`` (dashed) against the step (log y), seed means
    coloured by the ratio, the best-response run black; one panel per value of ``keys``.

    Returns:
      The Figure; lines ``"<quantity> ratio <r>"`` and ``"<quantity> best response"``.
    """
    from matplotlib.lines import Line2D
    panels = _panels(table, keys)
    fig, axes = plot.panel_grid(len(panels), extra_width=1.0)
    fig.set_size_inches(max(fig.get_figwidth(), MIN_WIDTH), fig.get_figheight())
    cmap, norm = ratio_cmap(), ratio_norm(table["ratio"])
    any_best = False
    for ax, (values, g, best) in zip(axes, panels):
        for quantity in quantities:
            ls = CURVATURE[quantity]
            for r in _finite_ratios(g):
                ids = g.loc[g["ratio"] == r, "student_id"]
                _draw_mean(ax, seed_mean(curves, ids, quantity), cmap(norm(r)),
                           f"{quantity} ratio {plot.number(r)}", band=False, ls=ls)
            if len(best):
                _draw_mean(ax, seed_mean(curves, best["student_id"], quantity), BEST_STYLE["color"],
                           f"{quantity} best response", band=False, ls=ls, lw=BEST_STYLE["lw"] * 0.8,
                           zorder=BEST_STYLE["zorder"])
                any_best = True
        plot.style_panel(ax, "step", "top Hessian eigenvalue" if ax.get_subplotspec().is_first_col() else None,
                         False, True)
        plot.log_ticks(ax.yaxis, *ax.get_ylim())
        ax.set_title(key_words(keys, values), fontsize=8)
    _ratio_bar(fig, axes, norm, cmap)
    handles = [Line2D([], [], color="0.3", ls=CURVATURE[q], lw=1.3, label=CURVATURE_LEGEND[q]) for q in quantities]
    if any_best:
        handles.append(Line2D([], [], color=BEST_STYLE["color"], lw=BEST_STYLE["lw"] * 0.8, label=BEST_WORDS))
    plot.add_legend(fig, handles, ncols=3)
    if title:
        plot.set_title(fig, title)
    return fig


def panel_target(curves: pd.DataFrame, gd: pd.DataFrame) -> float:
    """:data:`TARGET_RULE`: sqrt(L_start L_end) over the gd-head students ``gd``, L_start the median of their
    first logged train losses, L_end the median of their last logged ones (a diverged student's last is
    inf: it counts as one that ended high)."""
    c = curves[curves["student_id"].isin(gd["student_id"])].sort_values("step")
    loss = c.groupby("student_id")["train_loss"]
    start = loss.first().astype(float)
    end = loss.last().astype(float).fillna(np.inf)
    return float(np.sqrt(np.median(start) * np.median(end)))


def steps_to_target_figure(curves: pd.DataFrame, table: pd.DataFrame, rate: str, keys: list[str],
                           target: float | None = None, title: str = ""):
    """Steps to a target train loss against the ratio (log x), one line per value of ``rate``, one
    panel per value of ``keys``.

    Args:
      rate: ``body_rate`` or ``lr_total`` (equal budget): one line per value.
      target: the train loss to reach; None: :data:`TARGET_RULE` per panel (said in its title).
    Returns:
      The Figure; lines ``"<rate> <v>"`` (seed means +-1 SE where every seed reaches the target, an x at
      the top where one does not), ``"best response <rate> <v>"`` (dashed, horizontal), ``"uniform"``.
    """
    from matplotlib import cm, transforms
    from matplotlib.lines import Line2D
    from lrsweep.families.stackelberg import checks as sc
    panels = _panels(table, keys)
    fig, axes = plot.panel_grid(len(panels))
    fig.set_size_inches(max(fig.get_figwidth(), MIN_WIDTH), fig.get_figheight())
    rates = sorted(float(v) for v in table.loc[~table["best"], rate].unique())
    colors = {v: cm.tab10(i % 10) for i, v in enumerate(rates)}
    any_best = any_missed = any_uniform = False
    for ax, (values, g, best) in zip(axes, panels):
        goal = panel_target(curves, g) if target is None else float(target)
        shown = pd.concat([g, best])
        steps = sc.steps_to_target(curves[curves["student_id"].isin(shown["student_id"])], goal)
        g = g.assign(steps=g["student_id"].map(steps).astype(float))
        best = best.assign(steps=best["student_id"].map(steps).astype(float))
        top = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        for v, h in g.groupby(rate, sort=True):
            color = colors[float(v)]
            stats = h.groupby("ratio")["steps"].agg(["mean", "std", "count", lambda s: np.isfinite(s).all()])
            stats.columns = ["mean", "std", "n", "reached"]
            stats["sem"] = (stats["std"] / np.sqrt(stats["n"])).fillna(0.0)
            ok = stats[stats["reached"]]
            x = ok.index.to_numpy(float)
            bars = ax.errorbar(x, ok["mean"].to_numpy(float), yerr=ok["sem"].to_numpy(float), color=color,
                               marker="o", ms=3.5, lw=1.3, capsize=2, label=key_words([rate], [v]))
            bars.lines[0].set_gid(f"{rate} {plot.number(v)}")
            missed = stats.index[~stats["reached"]].to_numpy(float)
            if missed.size:
                ax.plot(missed, np.full(missed.size, 0.96), color=color, transform=top, gid="not reached",
                        **plot.DIVERGED)
                any_missed = True
            uniform = x[np.isclose(x, 1.0, rtol=1e-9)]
            if uniform.size:
                ax.plot(uniform, ok["mean"].to_numpy(float)[np.isclose(x, 1.0, rtol=1e-9)], gid="uniform", **UNIFORM)
                any_uniform = True
            b = best[_equal(best[rate], v)]["steps"].to_numpy(float) if rate in best else np.zeros(0)
            if b.size and np.isfinite(b).all():
                ax.axhline(b.mean(), color=color, ls="--", lw=1.2, gid=f"best response {rate} {plot.number(v)}")
                any_best = True
        y = np.concatenate([ln.get_ydata() for ln in ax.get_lines() if ln.get_gid() and
                            ln.get_gid().startswith((rate, "best response"))] or [np.zeros(0)]).astype(float)
        log_y = plot.wide_span(y, plot.LOG_SPAN)
        plot.style_panel(ax, RATIO_AXIS, "steps to the target loss" if ax.get_subplotspec().is_first_col() else None,
                         True, log_y)
        if log_y:
            plot.log_ticks(ax.yaxis, *ax.get_ylim())
        plot.log_ticks(ax.xaxis, float(table.loc[~table["best"], "ratio"].min()),
                                float(table.loc[~table["best"], "ratio"].max()))
        plot.headroom(ax)
        others = key_words([k for k in keys if k != rate], [w for k, w in zip(keys, values) if k != rate])
        ax.set_title("; ".join(filter(None, [others, f"target loss {plot.number(float(f'{goal:.3g}'))}"])),
                     fontsize=8)
    handles = [Line2D([], [], color=colors[v], marker="o", ms=3.5, lw=1.3, label=key_words([rate], [v]))
               for v in rates]
    if any_best:
        handles.append(Line2D([], [], color="0.3", ls="--", lw=1.2,
                              label=f"dashed: {BEST_WORDS} at the same " + RATE_WORDS[rate]))
    if any_uniform:
        handles.append(Line2D([], [], label="ratio 1: one rate for every layer", **UNIFORM))
    handles.append(Line2D([], [], color="0.3", lw=1.0, label=f"error bars: mean \u00b11 standard error over "
                                                             f"{_seeds_words(_n_seeds(table))}"))
    if any_missed:
        handles.append(Line2D([], [], color="0.2", label="not reached by every seed (at the top)",
                              **{**plot.DIVERGED, "clip_on": True}))
    plot.add_legend(fig, handles, ncols=3 if len(handles) > 4 else 2)
    if title:
        plot.set_title(fig, title)
    return fig


def distance_figure(distances: pd.DataFrame, keys: list[str], quantities: list[str], title: str = ""):
    """Distances to the best-response twin against the ratio (log-log), one line per body rate, one
    panel per quantity and value of ``keys``; a slope -1 guide per panel.

    Args:
      distances: :func:`lrsweep.families.stackelberg.checks.distance_table` rows joined with the
        students' ``seed`` and settings ``keys``.
      quantities: columns of ``distances`` (``loss_distance``, ``body_distance``).
    Returns:
      The Figure; lines ``"<quantity> lr_body <v>"`` (seed means +-1 SE over the finite distances) and
      ``"guide"``: c / ratio through the lowest mean at the smallest ratio (where 1/ratio would take it).
    """
    from matplotlib import cm
    from matplotlib.lines import Line2D
    groups = plot.groups(distances, keys)
    fig, axes = plot.panel_grid(len(groups) * len(quantities), unit=len(quantities))
    fig.set_size_inches(max(fig.get_figwidth(), MIN_WIDTH), fig.get_figheight())
    rates = sorted(float(v) for v in distances["lr_body"].unique())
    colors = {v: cm.tab10(i % 10) for i, v in enumerate(rates)}
    panels = [(values, g, q) for values, g in groups for q in quantities]
    for ax, (values, g, quantity) in zip(axes, panels):
        starts = []  # (smallest ratio, its mean, largest ratio) per line
        for v, h in g.groupby("lr_body", sort=True):
            d = h[np.isfinite(h[quantity].astype(float)) & (h[quantity].astype(float) > 0)]
            stats = d.groupby("lr_ratio")[quantity].agg(["mean", "std", "count"])
            if stats.empty:
                continue
            sem = (stats["std"] / np.sqrt(stats["count"])).fillna(0.0).to_numpy(float)
            x, mean = stats.index.to_numpy(float), stats["mean"].to_numpy(float)
            bars = ax.errorbar(x, mean, yerr=np.vstack([np.minimum(sem, 0.8 * mean), sem]), color=colors[v],
                               marker="o", ms=3.5, lw=1.3, capsize=2)
            bars.lines[0].set_gid(f"{quantity} lr_body {plot.number(v)}")
            starts.append((x[0], mean[0], x[-1]))
        plot.style_panel(ax, RATIO_AXIS, "distance to the best response"
                         if ax.get_subplotspec().is_first_col() else None, True, True)
        if starts:
            x0, x1 = min(x for x, _, _ in starts), max(x for _, _, x in starts)
            anchor = min(y for x, y, _ in starts if x == x0)
            grid = np.geomspace(x0, x1, 50)
            lo, hi = ax.get_ylim()
            ax.plot(grid, anchor * x0 / grid, color="0.45", ls=":", lw=1.3, gid="guide")
            ax.set_ylim(max(min(lo, anchor * x0 / x1 / 1.5), lo / 10), hi)  # the guide's end, a decade at most
            plot.log_ticks(ax.xaxis, x0, x1)
        ax.set_title("; ".join(filter(None, [key_words(keys, values), DISTANCES[quantity]])), fontsize=8)
    handles = [Line2D([], [], color=colors[v], marker="o", ms=3.5, lw=1.3, label=key_words(["body_rate"], [v]))
               for v in rates]
    handles.append(Line2D([], [], color="0.45", ls=":", lw=1.3,
                          label=r"slope $-1$ guide: the head lags its best response by "
                                r"$O(\eta_\mathrm{body}/\eta_\mathrm{head})$ (two-time-scale theory)"))
    n = int(distances["seed"].nunique()) if "seed" in distances else 1
    handles.append(Line2D([], [], color="0.3", lw=1.0, label=f"error bars: mean \u00b11 standard error over "
                                                             f"{_seeds_words(n)} (diverged runs left out)"))
    plot.add_legend(fig, handles, ncols=2)
    if title:
        plot.set_title(fig, title)
    return fig


# --------------------------------------------------------------------------------------
# A run's figures
# --------------------------------------------------------------------------------------

def stackelberg_figures(name: str, curves: pd.DataFrame, target: float | None = None) -> list[tuple[str, object]]:
    """Every seed 002 figure of a run as ``(file stem, Figure)`` (none unless :func:`is_head_run`).

    Args:
      name: the run's name (titles).
      curves: :func:`lrsweep.core.store.load` of the run (curves joined with the student columns).
      target: the train loss of ``steps_to_target``; None: :data:`TARGET_RULE`.
    """
    from lrsweep.families.stackelberg import checks as sc
    if not is_head_run(curves) or "train_loss" not in curves:
        return []
    table = head_table(curves)
    if table["best"].all():
        return []
    rate = rate_axis(table)
    settings = setting_keys(table, rate)
    split, inner = plot.split_panels(table[~table["best"]], settings + [rate])
    quantities = [q for q in CURVATURE if q in curves and curves[q].notna().any()]
    distances = sc.distance_table(table, curves)
    if len(distances):
        distances = distances.assign(lr_body=snap(distances["lr_body"]), lr_ratio=snap(distances["lr_ratio"]))
        extra = ["seed"] + [k for k in settings if k not in distances]
        distances = distances.merge(table[["student_id"] + extra], on="student_id")
    measured = [q for q in DISTANCES if q in distances and distances[q].notna().any()]
    rule = f"target: {TARGET_RULE}" if target is None else f"target: train loss {plot.number(target)}"
    out = []
    for values, gd in plot.groups(table[~table["best"]], split):
        t = pd.concat([gd, best_response_of(table, split, values)])
        c = curves[curves["student_id"].isin(t["student_id"])]
        words = plot.configuration_words(split, values)
        skip = inner + list(TWIN_FREE)

        def title(what, *extra):
            return plot.figure_title(name, what, gd, skip=skip, extra="; ".join(filter(None, [words, *extra])))

        def stem(prefix):
            return plot.stem(prefix, split, values)

        out.append((stem("loss_by_ratio"), loss_by_ratio_figure(c, t, inner, title(
            "train loss by head / body rate ratio"))))
        if quantities:
            out.append((stem("curvature"), curvature_figure(c, t, inner, quantities, title(
                "curvature of Phi and of the loss", *(CURVATURE_WORDS[q] for q in quantities)))))
        panel = [k for k in inner if k != rate]
        out.append((stem("steps_to_target"), steps_to_target_figure(c, t, rate, panel, target, title(
            "steps to a target train loss against the ratio", rule))))
        d = distances[distances["student_id"].isin(gd["student_id"])] if len(distances) else distances
        if measured and len(d):
            out.append((stem("distance_vs_ratio"), distance_figure(d, panel, measured, title(
                "distance to the best-response run against the ratio"))))
    return out
