"""Figures from stored runs and comparisons (no training, no theory code here).

Which figures a run gets follows from its grid (:func:`run_figures`):

- eta_1 lines (``lr_line``, or ``lr_total`` with ``lr_1_fraction``): seed 000's layout (Figs. 1, 2,
  4-14, :func:`lines_figure`): test loss against eta_1, one curve per line eta_1 + eta_2 = C
  coloured by C, a star at the balanced split, theory and experiment side by side per step;
- any other learning-rate grid (a uniform ``lr``, ``lr_1`` with other axes): test loss against the
  learning rate on a log axis (:func:`lr_figure`), one curve per value of the other varying axes;
- two independently varying layer rates: the seed-mean test loss over (eta_1, eta_2)
  (:func:`heatmap_figure`), and for poly-mode groups an n x n map from the stored polynomials;
- phases or curvature stored (seed 003): loss curves coloured by eta lambda_0, final curvature
  against eta and the phase diagram of ``boundaries.parquet`` (:mod:`lrsweep.families.catapult.figures`).
  A run without test losses (``single_point``) gets only these.
- students with a head (seed 002: an ``lr_ratio`` axis or a best-response head): loss curves and
  curvature by head/body ratio, steps to a target loss and the distance to the best-response run
  against the ratio (:mod:`lrsweep.families.stackelberg.figures`), in place of the test-loss figures.

Every curve is the mean over the seeds that survived to that step, with a band of +-1 standard
error; a point where every seed diverged is an x at the top of its panel. Panels wrap into rows
of at most :data:`MAX_COLUMNS`; a step-0 panel is left out where every point starts equal.
Builders return a ``matplotlib.figure.Figure`` (no pyplot state); :func:`plot_run` saves them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from lrsweep.core.columns import is_layer_rate, layer_of, lr_columns, seed_mean_sem


MAX_COLUMNS = 4          # panels per row
MAX_PANELS = 16          # more logged steps than this: an evenly spaced selection, said in the title
MAX_CURVES = 10          # more curves than this in a loss-vs-rate figure: one figure per first axis value
PANEL_SIZE = (2.7, 2.2)  # inches per panel
DPI = 130
LOG_SPAN = 10.0          # a loss axis is logarithmic when its values span more than this factor
LR_LOG_SPAN = 5.0        # a learning-rate axis is logarithmic when its values span more than this factor
BALANCED = dict(marker="*", color="crimson", ms=9, ls="none", zorder=5)
DIVERGED = dict(marker="x", ms=5, mew=1.2, ls="none", clip_on=False, zorder=6)
PARTIAL = dict(marker="o", mfc="none", ms=5, ls="none", zorder=5)
THEORY_STYLES = ("--", ":", "-.")
AXIS_ORDER = ("width", "n_layers", "gradient", "init", "loss", "activation", "parameterization", "design",
              "target", "noise_std", "input_dim", "n_train", "schedule", "schedule_exponent", "init_scale")


# --------------------------------------------------------------------------------------
# Reducing curves to grid points
# --------------------------------------------------------------------------------------

def seed_means(curves: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Per grid point and logged step: the test loss over the seeds still training at that step.

    Returns ``(points, keys)``: ``points`` has the key columns and ``n_students`` (seeds at the
    point), ``n_seeds`` (survivors), ``mean``, ``sem`` (0 with one survivor) and ``diverged``
    (no survivor); ``keys`` are the point columns of :func:`lrsweep.compare.point_columns` plus
    the layer rates and ``step``, the same keys as a comparison table's.
    """
    from lrsweep import compare
    keys = [k for k in compare.point_columns(curves) + lr_columns(curves) + ["step"] if curves[k].notna().all()]
    points = seed_mean_sem(curves.groupby(keys, sort=True)["test_loss"], sizes=True)
    points["sem"] = points["sem"].fillna(0.0)
    points["diverged"] = points["n_seeds"] == 0
    return points, keys


def varying(points: pd.DataFrame, candidates, fixed=()) -> list[str]:
    """The candidate columns that vary independently: each adds distinct combinations to ``fixed``
    and the columns kept before it (so ``lr_2`` on a uniform-``lr`` grid, determined by ``lr_1``, is
    left out, as is ``target_std`` where the width sets it)."""
    kept = [c for c in fixed if c in points]
    n_combos = len(points[kept].drop_duplicates()) if kept else 1
    out = []
    for c in candidates:
        if c not in points or c in kept or points[c].nunique(dropna=False) < 2:
            continue
        n = len(points[kept + [c]].drop_duplicates())
        if n > n_combos:
            kept.append(c)
            out.append(c)
            n_combos = n
    return out


def axis_candidates(points: pd.DataFrame) -> list[str]:
    """Non-learning-rate columns that may vary between curves or figures, the usual ones first."""
    from lrsweep import compare
    rest = [c for c in compare.point_columns(points) if c not in AXIS_ORDER and not c.startswith("lr_")
            and c not in ("run_id", "group_id", "target_std")]
    return [c for c in AXIS_ORDER if c in points] + rest + ["target_std", "run_id"]


STATS = ("n_students", "n_seeds", "mean", "sem", "diverged")


def starts_equal(points: pd.DataFrame) -> bool:
    """Step 0 is the same at every learning rate (it is the initial loss): within each value of
    the other columns, every point's step-0 mean agrees to 1e-6."""
    start = points[points["step"] == 0]
    others = [c for c in start if c not in STATS and c != "step" and not c.startswith(("lr_", "prediction"))]
    others = [c for c in others if start[c].nunique(dropna=False) > 1]
    for _, g in (start.groupby(others, sort=False) if others else [((), start)]):
        v = g["mean"].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) and not np.allclose(v, v[0], rtol=1e-6, atol=0.0):
            return False
    return True


def plotted_steps(points: pd.DataFrame, exclude=(), max_panels: int = MAX_PANELS) -> tuple[list[int], int]:
    """Logged steps worth a panel: not step 0 where every point starts at the same loss, not in
    ``exclude``; at most ``max_panels`` of them, evenly spaced, first and last kept. Returns
    ``(steps, n_candidates)``."""
    steps = []
    for t in sorted(int(s) for s in points["step"].unique()):
        if t in exclude:
            continue
        if t == 0 and starts_equal(points):
            continue
        steps.append(t)
    if len(steps) <= max_panels:
        return steps, len(steps)
    pick = np.unique(np.linspace(0, len(steps) - 1, max_panels).round().astype(int))
    return [steps[i] for i in pick], len(steps)


def is_line_grid(points: pd.DataFrame) -> bool:
    """Learning rates on lines eta_1 + ... + eta_m = C (``lr_line``, or ``lr_total`` with a varying
    ``lr_1_fraction``): seed 000's figure layout applies."""
    if "lr_line" in points and points["lr_line"].notna().all():
        return True
    return "lr_1_fraction" in points and points["lr_1_fraction"].notna().all() \
        and points["lr_1_fraction"].nunique() > 1 and "lr_2" in points


def line_column(points: pd.DataFrame) -> str:
    return "lr_line" if "lr_line" in points and points["lr_line"].notna().all() else "lr_total"


def uniform_rates(points: pd.DataFrame) -> bool:
    """Every layer trains at the same rate at every point (a grid over a shared ``lr``)."""
    rates = points[lr_columns(points)].to_numpy(float)
    return rates.shape[1] > 1 and bool(np.allclose(rates, rates[:, :1], rtol=1e-12, atol=0.0))


def learning_rate_axis(points: pd.DataFrame) -> tuple[str, str] | None:
    """(column, axis label) of the learning rate a loss-vs-rate figure puts on x; None if none varies."""
    layers = [c for c in lr_columns(points) if points[c].nunique() > 1]
    if not layers:
        return None
    if uniform_rates(points):
        return "lr_1", r"learning rate $\eta$ (every layer)"
    fraction_fixed = "lr_1_fraction" in points and points["lr_1_fraction"].notna().all() \
        and points["lr_1_fraction"].nunique() == 1
    if fraction_fixed and points["lr_total"].nunique() > 1:
        return "lr_total", r"total learning rate $C = \eta_1 + \dots + \eta_m$"
    return layers[0], rf"learning rate $\eta_{{{layers[0][3:]}}}$"


# --------------------------------------------------------------------------------------
# Words
# --------------------------------------------------------------------------------------

GRADIENT_WORDS = {"exact": "exact gradient", "signal_only": "signal-only gradient"}
INIT_WORDS = {"gaussian": "Gaussian"}
TARGET_WORDS = {"gaussian": "Gaussian teacher", "orthonormal": "teacher Q/\u221ad"}
OUTPUT_WORDS = {"paper_2nn": r"$f = XW_1W_2/h$", "paper_deep": r"$f = XW_1\cdots W_{L-1}a/\sqrt{h}$",
                "standard": "standard parameterization", "ntk": "NTK parameterization"}


def number(v) -> str:
    """A number as a reader writes it: 64, 0.25, 1e-05 -> 1e-5, 3000 -> 3000."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return str(v)
    v = float(v)
    if v == int(v) and abs(v) < 1e5:
        return str(int(v))
    text = f"{v:.3g}"
    return text.replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


def value_words(column: str, value) -> str:
    """One varying axis's value in words: ``h = 64``, ``3-layer``, ``signal-only gradient``, eta_2 = 0.1."""
    if is_layer_rate(column):
        return rf"$\eta_{{{layer_of(column)}}}$ = {number(value)}"
    words = {
        "width": f"h = {number(value)}", "n_layers": f"{number(value)}-layer", "input_dim": f"d = {number(value)}",
        "n_train": f"n = {number(value)}", "init": f"{INIT_WORDS.get(value, value)} init", "loss": f"{value} loss",
        "gradient": GRADIENT_WORDS.get(value, f"{value} gradient"), "design": f"{value} inputs",
        "target": TARGET_WORDS.get(value, f"{value} teacher"), "noise_std": f"label noise \u03c3 = {number(value)}",
        "activation": str(value), "parameterization": OUTPUT_WORDS.get(value, str(value)),
        "schedule": f"{value} schedule", "init_scale": f"init scale {number(value)}",
        "target_std": f"teacher std {number(value)}",
    }
    return words.get(column, f"{column.replace('_', ' ')} = {number(value)}")


def student_words(points: pd.DataFrame, skip=()) -> str:
    """The students of ``points`` in words, from the columns constant over them, e.g. "3-layer
    linear, h = d = n = 64, orthogonal init, Gaussian teacher"; columns in ``skip`` are left out."""
    def const(c):
        return c in points and c not in skip and points[c].nunique(dropna=False) == 1

    row = points.iloc[0]
    parts = []
    net = " ".join(w for c, w in (("n_layers", f"{number(row.get('n_layers'))}-layer"),
                                  ("activation", str(row.get("activation")))) if const(c))
    if net:
        parts.append(net)
    if const("parameterization"):
        parts.append(OUTPUT_WORDS.get(row["parameterization"], str(row["parameterization"])))
    one_point = const("kind") and row["kind"] == "single_point"
    sizes = [(s, row[c]) for s, c in (("h", "width"), ("d", "input_dim"), ("n", "n_train"))
             if const(c) and not (one_point and s != "h")]
    if sizes and len({v for _, v in sizes}) == 1:
        parts.append(" = ".join(s for s, _ in sizes) + f" = {number(sizes[0][1])}")
    elif sizes:
        parts.append(", ".join(f"{s} = {number(v)}" for s, v in sizes))
    if const("init"):
        parts.append(value_words("init", row["init"]))
    if one_point:
        parts.append(f"one training point x = 1, y = {number(row.get('label', 0.0))}")
    elif const("kind") and row["kind"] == "classification":
        parts.append(f"{row.get('data', '')} classification".strip())
    elif const("target"):
        parts.append(TARGET_WORDS.get(row["target"], f"{row['target']} teacher"))
    if const("noise_std") and float(row["noise_std"]) > 0:
        parts.append(value_words("noise_std", row["noise_std"]))
    if const("loss") and row["loss"] != "mse":
        parts.append(f"{row['loss']} loss")
    if const("schedule") and row["schedule"] != "constant":
        parts.append(f"{row['schedule']} schedule")
    if const("gradient"):
        parts.append(GRADIENT_WORDS.get(row["gradient"], str(row["gradient"])))
    return ", ".join(parts)


def theory_words(theory) -> str:
    """A registered theory in words (its ``title``; the reference when it has none)."""
    return theory.title or theory.reference or "registered theory"


def figure_title(name: str, what: str, points: pd.DataFrame, skip=(), extra: str = "") -> str:
    lines = [f"{name}: {what}" if name else what, student_words(points, skip)]
    if extra:
        lines.append(extra)
    return "\n".join(line for line in lines if line)


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------

def panel_grid(n_panels: int, unit: int = 1, extra_width: float = 0.8, extra_height: float = 1.4):
    """A constrained-layout figure with ``n_panels`` axes in as few rows of at most
    :data:`MAX_COLUMNS` as possible, filled evenly; ``unit`` panels (a theory/experiment pair)
    always share a row."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    units, per_row = math.ceil(n_panels / unit), max(1, MAX_COLUMNS // unit)
    nrows = math.ceil(units / per_row)
    ncols = math.ceil(units / nrows) * unit
    fig = Figure(figsize=(ncols * PANEL_SIZE[0] + extra_width, nrows * PANEL_SIZE[1] + extra_height),
                 layout="constrained", dpi=DPI)
    FigureCanvasAgg(fig)  # draws without pyplot (no global figure state)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, list(axes[:n_panels])


def compact_ticks(axis, log: bool) -> None:
    """Few, short tick labels: at most 4 on a linear axis (3000, 0.25, 1e-5), decades on a log axis."""
    from matplotlib import ticker
    if log:
        axis.set_major_locator(ticker.LogLocator(numticks=5))
        axis.set_minor_formatter(ticker.NullFormatter())
    else:
        axis.set_major_locator(ticker.MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: number(round(v, 12))))


def darker(color, factor: float = 0.6):
    """The same hue, darker (theory drawn over its experiment curve stays visible)."""
    from matplotlib import colors
    r, g, b = colors.to_rgb(color)
    return (r * factor, g * factor, b * factor)


def wide_span(values, span: float) -> bool:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return bool(len(v)) and v.min() > 0 and v.max() > span * v.min()


def nearest_spacing(x, y, log_x: bool, log_y: bool) -> float:
    """Median distance from a point to its nearest neighbour, in units of the plotted box (so a
    marker of that many panel widths just touches its neighbours)."""
    xy = np.stack([np.log(np.asarray(v, float)) if log else np.asarray(v, float)
                   for v, log in ((x, log_x), (y, log_y))], -1)
    xy = np.unique(xy, axis=0)
    if len(xy) < 2:
        return 0.5
    span = np.ptp(xy, axis=0)
    xy = xy / np.where(span > 0, span, 1.0)
    if len(xy) > 3000:  # a regular-ish grid: the spacing of a square grid with as many points
        return 1.0 / math.sqrt(len(xy))
    dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(dist, np.inf)
    return float(min(0.5, np.median(dist.min(1))))


def style_panel(ax, xlabel: str, ylabel: str | None, log_x: bool, log_y: bool) -> None:
    if log_x:
        ax.set_xscale("log")
    if log_y:
        ax.set_yscale("log")
    compact_ticks(ax.xaxis, log_x)
    compact_ticks(ax.yaxis, log_y)
    ax.tick_params(labelsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=8)


def headroom(ax, fraction: float = 0.2) -> None:
    """Raise the top of the y axis so the diverged marks sit above the curves."""
    if not any(ln.get_gid() == "diverged" for ln in ax.get_lines()):
        return
    lo, hi = ax.get_ylim()
    if ax.get_yscale() == "log":
        ax.set_ylim(lo, hi * (hi / lo) ** fraction)
    else:
        ax.set_ylim(lo, hi + fraction * (hi - lo))


def draw_experiment(ax, x, points: pd.DataFrame, color, label=None, index: int = 0) -> int:
    """Seed mean against ``x`` with a +-1 SE band; hollow circles where some seeds diverged; an x
    at the top of the panel where all did (curve ``index`` staggers them a little, so the marks of
    curves diverging at the same x stay apart). Returns how many points diverged."""
    from matplotlib import transforms
    x = np.asarray(x, float)
    mean, sem = points["mean"].to_numpy(float), points["sem"].to_numpy(float)
    gone = points["diverged"].to_numpy(bool)
    alive = ~gone
    ax.plot(x[alive], mean[alive], color=color, lw=1.3, label=label)
    ax.fill_between(x[alive], (mean - sem)[alive], (mean + sem)[alive], color=color, alpha=0.25, lw=0)
    partial = alive & (points["n_seeds"] < points["n_students"]).to_numpy()
    if partial.any():
        ax.plot(x[partial], mean[partial], color=color, gid="partial", **PARTIAL)
    if gone.any():
        top = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        height = 0.96 - 0.035 * (index % 4)
        ax.plot(x[gone], np.full(gone.sum(), height), color=color, transform=top, gid="diverged", **DIVERGED)
    return int(gone.sum())


def legend_handles(n_seeds: int, *, balanced=False, diverged=False, partial=False, theories=(),
                   diagonal=False) -> list:
    """Figure-legend entries explaining the marks: band, star, x, hollow circle, theory line styles."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    seeds = f"{n_seeds} seed" + ("s" if n_seeds != 1 else "")
    handles = [Patch(color="0.5", alpha=0.35, label=f"band: mean \u00b11 standard error over {seeds}")]
    if balanced:
        handles.append(Line2D([], [], label=r"balanced split $\eta_1 = \eta_2$", **BALANCED))
    if diagonal:
        handles.append(Line2D([], [], color="0.3", ls=":", lw=1, label=r"balanced $\eta_1 = \eta_2$"))
    if diverged:
        handles.append(Line2D([], [], color="0.2", label="every seed diverged (at the top)",
                              **{**DIVERGED, "clip_on": True}))
    if partial:
        handles.append(Line2D([], [], color="0.2", label="some seeds diverged (mean of the rest)", **PARTIAL))
    for style, words in zip(THEORY_STYLES, theories):
        handles.append(Line2D([], [], color="0.2", ls=style, lw=1.2, label=f"theory: {words}"))
    return handles


def colorbar_size(axes) -> dict:
    """One colour bar beside every panel: at most about two rows tall."""
    rows = len({ax.get_subplotspec().rowspan.start for ax in axes})
    return dict(fraction=0.04, pad=0.02, aspect=15 * min(rows, 2), shrink=min(1.0, 2.0 / rows) if rows > 2 else 1.0)


def add_legend(fig, handles, ncols: int = 2) -> None:
    """A legend below the panels; labels wrapped to the width of a legend column."""
    import textwrap
    ncols = max(1, min(ncols, len(handles)))
    width = int(fig.get_figwidth() * 72 / (7 * 0.55) / ncols) - 6  # characters of 7 pt text per column
    for h in handles:
        h.set_label(textwrap.fill(h.get_label(), max(width, 20)))
    fig.legend(handles=handles, loc="outside lower center", ncols=ncols, fontsize=7, frameon=False)


def panel_title(step: int, what: str = "", n_diverged: int = 0) -> str:
    text = f"step {step}" + (f": {what}" if what else "")
    return text + (f" ({n_diverged} diverged)" if n_diverged else "")




def loss_norm(values):
    """One colour scale for every panel: logarithmic where the finite losses span decades."""
    from matplotlib import colors
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if wide_span(v, LOG_SPAN):
        return colors.LogNorm(v.min(), v.max())
    lo, hi = (v.min(), v.max()) if len(v) else (0.0, 1.0)
    return colors.Normalize(lo, hi if hi > lo else lo + max(abs(lo) * 1e-6, 1e-12))


def cell_edges(centres: np.ndarray, log: bool) -> np.ndarray:
    """Edges of cells around sorted centres: midpoints (geometric on a log axis), ends mirrored."""
    c = np.log(centres) if log else np.asarray(centres, float)
    if len(c) == 1:
        edges = np.array([c[0] - 0.5, c[0] + 0.5]) if not log else np.array([c[0] - 0.1, c[0] + 0.1])
    else:
        mid = (c[1:] + c[:-1]) / 2
        edges = np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
    return np.exp(edges) if log else edges


def add_colorbar(fig, axes, norm, cmap: str, label: str):
    from matplotlib import cm, colors
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, **colorbar_size(axes))
    bar.set_label(label, fontsize=8)
    compact_ticks(bar.ax.yaxis, isinstance(norm, colors.LogNorm))
    bar.ax.tick_params(labelsize=7)
    return bar


def draw_diagonal(ax, color="0.3") -> bool:
    """The balanced split eta_1 = eta_2 across the panel's box (limits unchanged); False if it misses it."""
    (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
    lo, hi = max(x0, y0), min(x1, y1)
    if lo >= hi:
        return False
    ax.plot([lo, hi], [lo, hi], color=color, ls=":", lw=1, scalex=False, scaley=False)
    return True


def groups(points: pd.DataFrame, keys: list[str]):
    if not keys:
        return [((), points)]
    return [(k if isinstance(k, tuple) else (k,), g) for k, g in points.groupby(keys, sort=True)]


def stem(prefix: str, keys: list[str], values: tuple) -> str:
    parts = [prefix] + [f"{k}{number(v)}" if not isinstance(v, str) else str(v) for k, v in zip(keys, values)]
    return "_".join(p.replace(" ", "").replace("/", "-") for p in parts)


def with_predictions(points: pd.DataFrame, table: pd.DataFrame, theory: str, keys: list[str],
                      column: str = "prediction") -> pd.DataFrame:
    """``points`` with one theory's predictions (NaN where it does not cover a point or step)."""
    pred = table[table["theory"] == theory]
    on = [k for k in keys if k in pred]
    return points.merge(pred[on + ["prediction"]].rename(columns={"prediction": column}), on=on, how="left")


def steps_note(steps: list[int], n_candidates: int) -> str:
    return f"{len(steps)} of {n_candidates} logged steps shown" if len(steps) < n_candidates else ""


def split_panels(table: pd.DataFrame, keys: list[str], max_panels: int = MAX_PANELS):
    """(figure keys, panel keys): the leading keys move to one figure per value until a figure has at
    most ``max_panels`` panels."""
    keys, split = list(keys), []
    while keys and len(table[keys].drop_duplicates()) > max_panels:
        split.append(keys.pop(0))
    return split, keys


def configuration_words(keys, values) -> str:
    return ", ".join(value_words(k, v) for k, v in zip(keys, values))


def set_title(fig, title: str) -> None:
    """The figure's title, each line wrapped to the figure's width (a one-panel figure is narrow)."""
    import textwrap
    width = max(30, int(fig.get_figwidth() * 72 / (9 * 0.5)))  # characters of 9 pt text
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in title.split("\n")), fontsize=9)


def log_ticks(axis, lo: float, hi: float) -> None:
    """Ticks at 1, 2, 5 times powers of ten, written as numbers, on a log axis spanning under three
    decades (a decade-only axis would show one label or none); decades otherwise."""
    from matplotlib import ticker
    if not (0 < lo < hi) or hi / lo > 1e3:
        compact_ticks(axis, True)
        return
    axis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0), numticks=12))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: number(float(f"{v:.3g}"))))
    axis.set_minor_formatter(ticker.NullFormatter())


def rate_norm(values):
    from matplotlib import colors
    v = np.asarray(values, float)
    if wide_span(v, LR_LOG_SPAN):
        return colors.LogNorm(v.min(), v.max())
    lo, hi = float(v.min()), float(v.max())
    return colors.Normalize(lo, hi if hi > lo else lo + max(abs(lo) * 1e-6, 1e-12))
