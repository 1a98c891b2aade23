"""Figures of the phases of gradient descent at a fixed learning rate: lazy, catapult, divergent
(seed 003 Sec. 4.2 and Figs. 2-3; the conventions of Lewkowycz et al. 2020, arXiv 2003.02218, Figs. 1-3:
the learning rate in units of the initial NTK eigenvalue, eta lambda_0). Every threshold drawn is the
theory of the run's loss (:func:`lrsweep.families.catapult.theory.thresholds`, c = loss''(0)): lazy |
catapult at eta lambda_0 = 2 / c, a catapult landing with eta lambda_final <= 2 / c, catapult |
divergent at 4 / lambda_0 for mse only (mse, exponential: c = 1; logistic: c = 1/4, so 8 / lambda_0
and 8 / eta). A run with several losses gets one figure per loss.

:func:`catapult_figures` adds, where the stored columns exist:

- :func:`loss_curves_figure`: the train loss of every student against the step (log y), coloured
  by eta lambda_0 (by eta where ``ntk_eig`` was not logged), one panel per value of the other axes;
- :func:`curvature_figure`: ``final_sharpness`` and ``final_ntk_eig`` against the learning rate,
  points marked by phase, with the loss's thresholds (mse: 2 / lambda_0, 4 / lambda_0 and 2 / eta);
- :func:`phase_diagram_figure`: from ``boundaries.parquet`` (``lrsweep boundary``), the two
  boundaries against the width, the depth or the init scale, mean and min-max band over seeds,
  regions labelled.

lambda_0 of a student is its ``ntk_eig`` at step 0. Builders return Figures (no pyplot state).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep.families.catapult import theory
from lrsweep.plots import common as plot

BOUNDARY_FILE = "boundaries.parquet"
BOUNDARY_STATS = ("seed", "boundary", "lr_low", "lr_high", "lr", "bracketed", "initial_train_loss",
                  "initial_ntk_eig", "n_trained", "n_coarse", "rounds", "unit_id", "run_id")
LAZY_CATAPULT, CATAPULT_DIVERGENT = "lazy/catapult", "catapult/divergent"
PHASE_COLORS = {"lazy": "tab:blue", "catapult": "tab:orange", "oscillating": "tab:purple", "divergent": "tab:red"}
BOUNDARY_COLORS = {LAZY_CATAPULT: "tab:blue", CATAPULT_DIVERGENT: "tab:red"}
LIMIT_STYLES = {LAZY_CATAPULT: "--", CATAPULT_DIVERGENT: ":"}
BOUND_STYLES = {"final_ntk_eig": "-.", "final_sharpness": (0, (5, 1, 1, 1, 1, 1))}  # k / eta where they differ
MAX_STUDENT_CURVES = 60   # more students in a panel: an even selection over eta lambda_0, said in the title
LOSS_FLOOR = 1e-10        # loss axes end this factor below the largest initial loss (converged below it)
CURVATURE_WORDS = {"final_sharpness": "final sharpness (top Hessian eigenvalue)",
                   "final_ntk_eig": "final NTK eigenvalue"}
SCALED_RATE = r"$\eta\lambda_0$"
DIAGRAM_X = ("width", "n_layers", "init_scale")  # a phase diagram's x: the first of these that varies
DIAGRAM_X_WORDS = {"width": "width h", "n_layers": "number of layers", "init_scale": "init scale"}
RATE_WORDS = r"learning rate $\times$ initial NTK eigenvalue, $\eta\lambda_0$"


# --------------------------------------------------------------------------------------
# The loss's theory
# --------------------------------------------------------------------------------------

def loss_of(table: pd.DataFrame) -> str:
    """The training loss of ``table``'s students (``loss`` column; mse where absent). One per figure."""
    if "loss" not in table:
        return "mse"
    (loss,) = table["loss"].dropna().unique() if table["loss"].notna().any() else ("mse",)
    return str(loss)


def boundary_lines(loss: str) -> dict[str, float]:
    """eta lambda_0 of each boundary theory gives for ``loss`` (:func:`theory.thresholds`): lazy |
    catapult at 2 / c; catapult | divergent at 4 / c for mse only."""
    t = theory.thresholds(loss)
    return {LAZY_CATAPULT: t.lazy, **({CATAPULT_DIVERGENT: t.divergent} if t.divergent is not None else {})}


def boundary_words(boundary: str, loss: str) -> str:
    """What a boundary line is, for a legend."""
    c = theory.HESSIAN_FACTOR[loss]
    if boundary == LAZY_CATAPULT:
        return "lazy | catapult, 2/(c" + r"$\lambda_0$" + f"), c = {loss}''(0) = {c:g}"
    return "catapult | divergent, 4/" + r"$\lambda_0$" + f" (uv model, {loss})"


def final_bound(quantity: str, loss: str) -> float:
    """k with eta * quantity <= k where a catapult lands: the NTK eigenvalue 2 / c
    (:func:`theory.thresholds`), the sharpness (= c lambda) 2, GD's stability bound, for every loss."""
    return theory.thresholds(loss).final if quantity == "final_ntk_eig" else 2.0


def curve_style(quantity: str, loss: str):
    """Line style of the curve k / eta on a panel of ``quantity``: one style where both quantities
    share k (c = 1), one each where they differ (logistic: 8 / eta and 2 / eta)."""
    return "-." if theory.HESSIAN_FACTOR[loss] == 1.0 else BOUND_STYLES.get(quantity, "-.")


def with_loss_split(table: pd.DataFrame, keys: list[str]) -> tuple[list[str], list[str]]:
    """(figure keys, panel keys) as :func:`lrsweep.plots.common.split_panels`, with the loss always a
    figure key where it varies: the thresholds drawn are the loss's."""
    others = [k for k in keys if k != "loss"]
    split, panel_keys = plot.split_panels(table, others)
    return (["loss"] if "loss" in keys else []) + split, panel_keys


# --------------------------------------------------------------------------------------
# Per-student quantities
# --------------------------------------------------------------------------------------

def learning_rate(students: pd.DataFrame) -> np.ndarray | None:
    """eta per student, where every layer of every student trains at one rate (else None: with
    separate layer rates there is no single eta lambda_0)."""
    columns = plot.lr_columns(students)
    if not columns:
        return None
    rates = students[columns].to_numpy(float)
    first = rates[:, 0]
    same = np.isnan(rates) | np.isclose(rates, first[:, None], rtol=1e-12, atol=0.0)
    return first if bool(same.all()) and np.isfinite(first).all() else None


def initial_ntk_eig(curves: pd.DataFrame) -> pd.Series | None:
    """lambda_0 per student id (its ``ntk_eig`` at step 0); None where ntk_eig was not logged for all."""
    if "ntk_eig" not in curves:
        return None
    start = curves[curves["step"] == 0].drop_duplicates("student_id").set_index("student_id")["ntk_eig"]
    start = start.astype(float)
    return start if len(start) and np.isfinite(start).all() and (start > 0).all() else None


def student_table(curves: pd.DataFrame) -> pd.DataFrame | None:
    """One row per student (``curves`` joined with its student columns) with ``eta``, ``lambda_0``
    (NaN where ntk_eig was not logged) and ``rate``: eta lambda_0, or eta without lambda_0. None where
    the students have no single learning rate."""
    students = curves.drop_duplicates("student_id").reset_index(drop=True)
    eta = learning_rate(students)
    if eta is None:
        return None
    lam0 = initial_ntk_eig(curves)
    students = students.assign(eta=eta, lambda_0=np.nan if lam0 is None else
                               students["student_id"].map(lam0).to_numpy(float))
    return students.assign(rate=eta * students["lambda_0"] if lam0 is not None else eta)


def configurations(table: pd.DataFrame) -> list[str]:
    """The other axes that vary over ``table`` (one panel per combination of their values)."""
    return plot.varying(table, plot.axis_candidates(table))


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------

def loss_curves_figure(curves: pd.DataFrame, table: pd.DataFrame, keys: list[str], title: str = "",
                       loss: str = "mse"):
    """Train loss against the step for every student (log y), coloured by ``table["rate"]``.

    Args:
      curves: the students' logged steps (``student_id``, ``step``, ``train_loss``).
      table: :func:`student_table` rows of the students shown.
      keys: the other varying axes; one panel per combination of their values.
    Returns:
      The Figure; one colour bar, labelled eta lambda_0 (or eta where lambda_0 is unknown), with
      the boundaries of ``loss``'s theory marked on it (:func:`boundary_lines`; mse: 2 and 4).
    """
    from matplotlib import cm, colors
    from matplotlib.lines import Line2D
    groups = plot.groups(table, keys)
    fig, axes = plot.panel_grid(len(groups), extra_width=1.0)
    scaled = bool(table["lambda_0"].notna().all())
    start = curves.loc[curves["step"] == curves["step"].min(), "train_loss"].to_numpy(float)
    floor = LOSS_FLOOR * np.nanmax(start) if np.isfinite(start).any() else 0.0
    norm = plot.rate_norm(table["rate"])
    any_diverged = False
    for ax, (values, g) in zip(axes, groups):
        g = g.sort_values("rate")
        shown = g.iloc[np.unique(np.linspace(0, len(g) - 1, MAX_STUDENT_CURVES).round().astype(int))] \
            if len(g) > MAX_STUDENT_CURVES else g
        by_student = {sid: c.sort_values("step") for sid, c in
                      curves[curves["student_id"].isin(shown["student_id"])].groupby("student_id")}
        for row in shown.itertuples():
            c = by_student[row.student_id]
            step, train_loss = c["step"].to_numpy(float), c["train_loss"].to_numpy(float)
            keep = np.isfinite(train_loss) & (train_loss > 0)
            color = cm.viridis(norm(row.rate))
            ax.plot(step[keep], train_loss[keep], color=color, lw=0.9, alpha=0.9, gid=f"student {row.student_id}")
            if bool(row.diverged) and keep.any():
                last = np.flatnonzero(keep)[-1]
                ax.plot(step[last], train_loss[last], color=color, gid="diverged", **plot.DIVERGED)
                any_diverged = True
        plot.style_panel(ax, "step", "train loss" if ax.get_subplotspec().is_first_col() else None, False, True)
        if floor > 0 and ax.get_ylim()[0] < floor:
            ax.set_ylim(floor, None)
        note = f"{len(shown)} of {len(g)} students" if len(shown) < len(g) else ""
        ax.set_title("; ".join(filter(None, [plot.configuration_words(keys, values), note])), fontsize=8)
    label = RATE_WORDS if scaled else r"learning rate $\eta$ (NTK eigenvalue not logged)"
    bar = plot.add_colorbar(fig, axes, norm, "viridis", label)
    if isinstance(norm, colors.LogNorm):
        plot.log_ticks(bar.ax.yaxis, norm.vmin, norm.vmax)
    handles = []
    if scaled:
        for boundary, limit in boundary_lines(loss).items():
            if norm.vmin <= limit <= norm.vmax:
                bar.ax.axhline(limit, color="k", lw=1.0, ls=LIMIT_STYLES[boundary], gid=f"limit {limit:g}")
                handles.append(Line2D([], [], color="k", lw=1.0, ls=LIMIT_STYLES[boundary],
                                      label=f"on the colour bar: {SCALED_RATE} = {limit:g}, "
                                            f"{boundary_words(boundary, loss)}"))
    if any_diverged:
        handles.append(Line2D([], [], color="0.2", label="diverged (last finite loss)",
                              **{**plot.DIVERGED, "clip_on": True}))
    if handles:
        plot.add_legend(fig, handles)
    if title:
        plot.set_title(fig, title)
    return fig


def curvature_mode(table: pd.DataFrame, keys: list[str]) -> str:
    """How :func:`curvature_figure` draws the rate: ``"eta_lambda"``: x = eta with the boundaries at
    k / lambda_0 (every panel has one lambda_0); ``"scaled"``: x = eta lambda_0 and the
    curvature / lambda_0 (lambda_0 differs between the seeds of a panel); ``"eta"``: x = eta, no
    boundaries (ntk_eig was not logged)."""
    if not table["lambda_0"].notna().all():
        return "eta"
    for _, g in plot.groups(table, keys):
        if not np.allclose(g["lambda_0"], g["lambda_0"].iloc[0], rtol=1e-6, atol=0.0):
            return "scaled"
    return "eta_lambda"


def _phase_points(ax, x, y, phases) -> set:
    """Scatter of finite points coloured by phase (``phases`` None: one colour); students without a
    finite value (divergent) as an x at the top of the panel. Returns the phases drawn."""
    from matplotlib import transforms
    drawn = set()
    finite = np.isfinite(y)
    names = [None] if phases is None else \
        [p for p in PHASE_COLORS if p in set(phases)] + sorted({str(p) for p in phases} - set(PHASE_COLORS))
    for phase in names:
        sel = finite & ((phases.astype(str) == phase) if phase is not None else True)
        if sel.any():
            ax.scatter(x[sel], y[sel], s=14, color=PHASE_COLORS.get(phase, "0.3"), zorder=4,
                       gid=f"phase {phase}" if phase else "students", linewidths=0)
            drawn.add(phase)
    if (~finite).any():
        top = transforms.blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(x[~finite], np.full((~finite).sum(), 0.96), color=PHASE_COLORS["divergent"], transform=top,
                gid="diverged", **plot.DIVERGED)
        drawn.add("no final value")
    return drawn


def curvature_figure(table: pd.DataFrame, keys: list[str], quantities: list[str], title: str = "",
                     loss: str = "mse"):
    """Final sharpness and final NTK eigenvalue against the learning rate, one panel each per value of
    the other axes, points coloured by phase.

    Drawn (see :func:`curvature_mode`), from ``loss``'s theory (:func:`boundary_lines`,
    :func:`final_bound`): against eta, vertical lines at the boundaries k / lambda_0 (mse: 2 / lambda_0
    lazy | catapult, 4 / lambda_0 catapult | divergent; logistic 8 / lambda_0 only) and the curve
    k / eta below which a catapult lands (NTK eigenvalue 2 / (c eta), sharpness 2 / eta); or, where
    lambda_0 differs between seeds, value / lambda_0 against eta lambda_0 with lines at k and the curve
    k / (eta lambda_0). For mse lambda_final < 2 / eta in the catapult phase (Lewkowycz et al. 2020, Sec. 2).
    """
    from matplotlib.lines import Line2D
    mode = curvature_mode(table, keys)
    groups = plot.groups(table, keys)
    fig, axes = plot.panel_grid(len(groups) * len(quantities), unit=len(quantities))
    phases = "phase" in table and table["phase"].notna().any()
    x_all = table["rate"] if mode == "scaled" else table["eta"]
    log_x = plot.wide_span(x_all, plot.LR_LOG_SPAN)
    drawn, bounds = set(), {}
    panels = [(values, g, q) for values, g in groups for q in quantities]
    for ax, (values, g, quantity) in zip(axes, panels):
        g = g.sort_values("eta")
        lam0 = g["lambda_0"].to_numpy(float)
        x = g["rate" if mode == "scaled" else "eta"].to_numpy(float)
        y = g[quantity].to_numpy(float) / (lam0 if mode == "scaled" else 1.0)
        drawn |= _phase_points(ax, x, y, g["phase"].to_numpy(object) if phases else None)
        finite = y[np.isfinite(y)]
        log_y = plot.wide_span(finite, plot.LOG_SPAN)
        words = CURVATURE_WORDS.get(quantity, quantity.replace("_", " "))
        plot.style_panel(ax, SCALED_RATE if mode == "scaled" else r"learning rate $\eta$",
                         f"{words} / $\\lambda_0$" if mode == "scaled" else words, log_x, log_y)
        if log_x:
            plot.log_ticks(ax.xaxis, float(np.nanmin(x_all)), float(np.nanmax(x_all)))
        if mode != "eta":  # the boundaries of the loss's theory, at eta lambda_0 = k
            for boundary, limit in boundary_lines(loss).items():
                at = limit / (1.0 if mode == "scaled" else lam0[0])
                ax.axvline(at, color="0.25", lw=1.0, ls=LIMIT_STYLES[boundary], gid=f"boundary {limit:g}")
        lo, hi = ax.get_xlim()
        grid = np.geomspace(lo, hi, 200) if log_x else np.linspace(max(lo, 1e-12 * hi), hi, 200)
        bound = final_bound(quantity, loss)
        ax.plot(grid, bound / grid, color="0.4", lw=1.0, ls=curve_style(quantity, loss), scalex=False, scaley=False,
                gid="two over eta" if bound == 2.0 else f"{bound:g} over eta")
        bounds[quantity] = bound
        ax.set_xlim(lo, hi)
        ax.set_title(plot.configuration_words(keys, values) or words.split(" (")[0], fontsize=8)
        plot.headroom(ax)
    named = [p for p in PHASE_COLORS if p in drawn] + sorted(p for p in drawn - set(PHASE_COLORS)
                                                             if p not in (None, "no final value"))
    handles = [Line2D([], [], color=PHASE_COLORS.get(p, "0.3"), marker="o", ls="none", ms=4, label=f"{p} phase")
               for p in named]
    if None in drawn:
        handles.append(Line2D([], [], color="0.3", marker="o", ls="none", ms=4, label="student"))
    if "no final value" in drawn:
        handles.append(Line2D([], [], color=PHASE_COLORS["divergent"], label="diverged: no final value (at the top)",
                              **{**plot.DIVERGED, "clip_on": True}))
    one_curve = len(set(bounds.values())) == 1  # mse, exponential: one 2 / eta for both quantities
    for quantity, bound in bounds.items():
        curve = rf"${bound:g}/(\eta\lambda_0)$" if mode == "scaled" else rf"${bound:g}/\eta$"
        what = ("a catapult lands below it (2/(c" + r"$\eta$" + f"), c = {theory.HESSIAN_FACTOR[loss]:g})"
                if quantity == "final_ntk_eig" or one_curve else "GD's stability bound on the sharpness")
        on = "" if one_curve else f" on the {CURVATURE_WORDS.get(quantity, quantity).split(' (')[0]}"
        handles.append(Line2D([], [], color="0.4", lw=1.0, ls=curve_style(quantity, loss), label=f"{curve}{on}: {what}"))
        if one_curve:
            break
    if mode != "eta":
        lines = boundary_lines(loss)
        at = {b: (f"{SCALED_RATE} = {v:g}" if mode == "scaled" else rf"$\eta = {v:g}/\lambda_0$")
              for b, v in lines.items()}
        handles += [Line2D([], [], color="0.25", lw=1.0, ls=LIMIT_STYLES[b],
                           label=f"{at[b]}: {boundary_words(b, loss)}") for b in lines]
    plot.add_legend(fig, handles, ncols=3 if len(handles) > 4 else 2)
    if title:
        plot.set_title(fig, title)
    return fig


def boundary_axes(boundaries: pd.DataFrame) -> tuple[str | None, list[str]]:
    """(x, other keys) of a phase diagram: x is the first of :data:`DIAGRAM_X` (width, depth, init
    scale) that varies; the other varying configuration columns make panels (the loss: figures).
    x None where none varies."""
    vary = plot.varying(boundaries, [c for c in plot.axis_candidates(boundaries) if c not in BOUNDARY_STATS])
    x = next((c for c in DIAGRAM_X if c in vary), None)
    return x, [c for c in vary if c != x]


def boundary_values(boundaries: pd.DataFrame) -> tuple[pd.DataFrame, bool]:
    """The bracketed estimates with ``y``: eta lambda_0 where every one has lambda_0, else eta; and
    whether y is scaled."""
    b = boundaries[boundaries["bracketed"].astype(bool) & np.isfinite(boundaries["lr"].astype(float))]
    lam0 = b["initial_ntk_eig"].astype(float) if "initial_ntk_eig" in b else pd.Series(np.nan, index=b.index)
    scaled = bool(len(b)) and bool(np.isfinite(lam0).all())
    return b.assign(y=b["lr"].astype(float) * (lam0 if scaled else 1.0)), scaled


def _region(ax, x, lo, hi, phase, log_y) -> None:
    """Shade a phase's region between two curves and name it at the middle x."""
    ax.fill_between(x, lo, hi, color=PHASE_COLORS[phase], alpha=0.08, lw=0, zorder=0)
    i = len(x) // 2
    mid = np.sqrt(lo[i] * hi[i]) if log_y else (lo[i] + hi[i]) / 2
    ax.text(x[i], mid, phase, ha="center", va="center", fontsize=8, color=PHASE_COLORS[phase], gid=f"region {phase}")


def phase_diagram_figure(boundaries: pd.DataFrame, x: str, keys: list[str], title: str = "", loss: str = "mse"):
    """The two phase boundaries against the width (log x), the depth or the init scale (log x), one
    panel per value of the other axes: the seed mean of the bracketed estimates as a line, their
    min-max as a band, the boundaries of ``loss``'s theory dashed where y is eta lambda_0
    (:func:`boundary_lines`: mse 2 and 4, exponential 2, logistic 8), the regions named."""
    from matplotlib import ticker
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    values_all, scaled = boundary_values(boundaries)
    groups = plot.groups(boundaries, keys)
    fig, axes = plot.panel_grid(len(groups))
    log_x = x in ("width", "init_scale") and bool((boundaries[x] > 0).all())
    lines = boundary_lines(loss) if scaled else {}
    log_y = not scaled and plot.wide_span(values_all["y"], plot.LR_LOG_SPAN)
    n_seeds = int(boundaries["seed"].nunique())
    for ax, (values, g) in zip(axes, groups):
        xs = np.sort(g[x].unique()).astype(float)
        estimates = values_all[values_all.index.isin(g.index)]
        means = {}
        for boundary in (LAZY_CATAPULT, CATAPULT_DIVERGENT):
            e = estimates[estimates["boundary"] == boundary]
            if e.empty:
                continue
            s = e.groupby(x)["y"].agg(["mean", "min", "max"]).sort_index()
            at = s.index.to_numpy(float)
            color = BOUNDARY_COLORS[boundary]
            ax.fill_between(at, s["min"], s["max"], color=color, alpha=0.25, lw=0, gid=f"band {boundary}")
            ax.plot(at, s["mean"], color=color, marker="o", ms=3, lw=1.4, gid=f"boundary {boundary}")
            means[boundary] = np.interp(np.log(xs) if log_x else xs, np.log(at) if log_x else at, s["mean"])
        for boundary, limit in lines.items():
            ax.axhline(limit, color=BOUNDARY_COLORS[boundary], lw=0.9, ls="--", gid=f"wide limit {limit:g}")
        plot.style_panel(ax, DIAGRAM_X_WORDS.get(x, x),
                         SCALED_RATE if scaled else r"learning rate $\eta$", log_x, log_y)
        if len(xs) <= 8:  # a tick at every width (depth) searched
            ax.xaxis.set_major_locator(ticker.FixedLocator(xs))
            ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: plot.number(v)))
            ax.xaxis.set_minor_locator(ticker.NullLocator())
        finite = [v for m in means.values() for v in m] + list(lines.values())
        if finite:
            top = max(finite) * (1.6 if log_y else 1.3)
            bottom = min(finite) / 1.6 if log_y else 0.0
            ax.set_ylim(bottom, top)
            if LAZY_CATAPULT in means:
                _region(ax, xs, np.full_like(xs, bottom), means[LAZY_CATAPULT], "lazy", log_y)
            if len(means) == 2:
                _region(ax, xs, means[LAZY_CATAPULT], means[CATAPULT_DIVERGENT], "catapult", log_y)
            if CATAPULT_DIVERGENT in means:
                _region(ax, xs, means[CATAPULT_DIVERGENT], np.full_like(xs, top), "divergent", log_y)
        missing = int((~g["bracketed"].astype(bool)).sum())
        note = f"{missing} estimates outside the searched range" if missing else ""
        ax.set_title("; ".join(filter(None, [plot.configuration_words(keys, values), note])), fontsize=8)
    seeds = f"{n_seeds} seed" + ("s" if n_seeds != 1 else "")
    handles = [Line2D([], [], color=BOUNDARY_COLORS[b], marker="o", ms=3, lw=1.4,
                      label=f"{b.replace('/', ' | ')} boundary: mean over {seeds}") for b in BOUNDARY_COLORS]
    handles.append(Patch(color="0.5", alpha=0.35, label="band: min to max over seeds"))
    for boundary, limit in lines.items():
        handles.append(Line2D([], [], color=BOUNDARY_COLORS[boundary], lw=0.9, ls="--",
                              label=f"{SCALED_RATE} = {limit:g}: theory's {boundary_words(boundary, loss)}"))
    plot.add_legend(fig, handles)
    if title:
        plot.set_title(fig, title)
    return fig


# --------------------------------------------------------------------------------------
# A run's figures
# --------------------------------------------------------------------------------------

def logs_phases(curves: pd.DataFrame) -> bool:
    """The run studies the phases: it stored ``phase`` or logged a curvature metric."""
    return any(c in curves and curves[c].notna().any() for c in ("phase", "ntk_eig", "sharpness"))


def read_boundaries(run: Path) -> pd.DataFrame:
    """``<run>/boundaries.parquet`` (empty where the run has none)."""
    from lrsweep.core import store
    path = Path(run) / BOUNDARY_FILE
    return store.read_table([path]) if path.exists() else pd.DataFrame()


def phase_figures(name: str, curves: pd.DataFrame) -> list:
    """Loss curves coloured by eta lambda_0 and final curvature against eta, per loss and per figure
    value of the axes beyond :data:`lrsweep.plots.common.MAX_PANELS` panels."""
    if curves.empty or not logs_phases(curves) or "train_loss" not in curves:
        return []
    table = student_table(curves)
    if table is None:
        return []
    keys = configurations(table)
    out = []
    split, panel_keys = with_loss_split(table, keys)
    quantities = [q for q in CURVATURE_WORDS if q in table and table[q].notna().any()]
    rate = SCALED_RATE if table["lambda_0"].notna().all() else r"the learning rate $\eta$"
    for values, g in plot.groups(table, split):
        extra = plot.configuration_words(split, values)
        title = plot.figure_title(name, f"train loss, coloured by {rate}", g, skip=panel_keys, extra=extra)
        loss = loss_of(g)
        out.append((plot.stem("loss_curves", split, values),
                    loss_curves_figure(curves[curves["student_id"].isin(g["student_id"])], g, panel_keys, title,
                                       loss)))
        if quantities and g["eta"].nunique() > 1:
            per_panel = max(1, plot.MAX_PANELS // len(quantities))
            inner, rest = plot.split_panels(g, panel_keys, per_panel)
            for inner_values, h in plot.groups(g, inner):
                words = "; ".join(filter(None, [extra, plot.configuration_words(inner, inner_values)]))
                title = plot.figure_title(name, "final curvature against the learning rate", h, skip=rest,
                                          extra=words)
                out.append((plot.stem("curvature_vs_lr", split + inner, values + inner_values),
                            curvature_figure(h, rest, quantities, title, loss)))
    return out


def phase_diagram_figures(run: Path, name: str, curves: pd.DataFrame) -> list:
    """Phase diagrams from the run's ``boundaries.parquet``, one per figure value of the axes beyond
    :data:`lrsweep.plots.common.MAX_PANELS` panels and per loss; none where none of :data:`DIAGRAM_X` varies."""
    boundaries = read_boundaries(run)
    if boundaries.empty:
        return []
    x, keys = boundary_axes(boundaries)
    if x is None:
        return []
    words_from = curves.drop_duplicates("student_id") if not curves.empty else boundaries
    split, panel_keys = with_loss_split(boundaries, keys)
    out = []
    for values, g in plot.groups(boundaries, split):
        _, scaled = boundary_values(g)
        what = f"phase boundaries in {SCALED_RATE if scaled else 'the learning rate'}"
        title = plot.figure_title(name, what, words_from, skip=[x] + keys, extra=plot.configuration_words(split, values))
        out.append((plot.stem("phase_diagram", split, values),
                    phase_diagram_figure(g, x, panel_keys, title, loss_of(g))))
    return out


def catapult_figures(run: Path, name: str, curves: pd.DataFrame) -> list[tuple[str, object]]:
    """Every phase figure of a run as ``(file stem, Figure)`` (none where its columns are absent)."""
    return phase_figures(name, curves) + phase_diagram_figures(run, name, curves)
