"""Generic test-loss figures of a student run: loss against the learning rate (one curve per value of
the other varying axes), (eta_1, eta_2) heat maps and, for poly-mode groups, dense maps from the stored
learning-rate polynomials."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.plots.common import (LOG_SPAN, LR_LOG_SPAN, MAX_CURVES, PANEL_SIZE, THEORY_STYLES, add_colorbar, add_legend, axis_candidates, cell_edges, darker, draw_diagonal, draw_experiment, figure_title, groups, headroom, learning_rate_axis, legend_handles, loss_norm, lr_columns, nearest_spacing, panel_grid, panel_title, plotted_steps, seed_means, stem, steps_note, style_panel, theory_words, uniform_rates, value_words, varying, wide_span, with_predictions)


def lr_figure(points: pd.DataFrame, x: str, xlabel: str, curve_keys: list[str], steps: list[int],
              title: str = "", theories: list[tuple[str, str]] = ()):
    """Test loss against a learning rate (log x where it spans decades), one panel per step.

    Args:
      points: :func:`seed_means` rows.
      x: the learning-rate column on the x axis.
      curve_keys: the other varying columns; one curve per combination of their values.
      theories: ``(column, words)``: prediction columns drawn dashed (dotted, ...) over the curves.
    Returns:
      The Figure.
    """
    from matplotlib import cm
    fig, axes = panel_grid(len(steps))
    groups = list(points.groupby(curve_keys, sort=True)) if curve_keys else [((), points)]
    numeric = len(curve_keys) == 1 and pd.api.types.is_numeric_dtype(points[curve_keys[0]])
    colors = cm.viridis(np.linspace(0.0, 0.85, len(groups))) if numeric and len(groups) > 1 else \
        [cm.tab10(i % 10) for i in range(len(groups))]
    log_x = wide_span(points[x], LR_LOG_SPAN)
    any_diverged = any_partial = False
    for ax, step in zip(axes, steps):
        n_div = 0
        shown = []
        for index, ((key, g), color) in enumerate(zip(groups, colors)):
            key = key if isinstance(key, tuple) else (key,)
            g = g[g["step"] == step].sort_values(x)
            label = ", ".join(value_words(c, v) for c, v in zip(curve_keys, key)) or None
            n_div += draw_experiment(ax, g[x], g, color, label=label if ax is axes[0] else None, index=index)
            any_partial |= bool(((g["n_seeds"] < g["n_students"]) & (g["n_seeds"] > 0)).any())
            for (column, _), style in zip(theories, THEORY_STYLES):
                if column in g and g[column].notna().any():
                    ax.plot(g[x], g[column], color=darker(color), ls=style, lw=1.1, zorder=4, gid="theory")
                    shown.append(g[column])
            shown.append(g["mean"])
        any_diverged |= n_div > 0
        values = np.concatenate([np.asarray(v, float) for v in shown]) if shown else np.zeros(0)
        style_panel(ax, xlabel if len(xlabel) < 40 else xlabel.split(" (")[0], "test loss"
                    if ax.get_subplotspec().is_first_col() else None, log_x, wide_span(values, LOG_SPAN))
        headroom(ax)
        ax.set_title(panel_title(step, n_diverged=n_div), fontsize=8)
    handles = []
    if curve_keys:
        handles = [h for h in axes[0].get_legend_handles_labels()[0]]
    n_seeds = int(points["n_students"].max())
    handles += legend_handles(n_seeds, diverged=any_diverged, partial=any_partial,
                              theories=[words for _, words in theories])
    add_legend(fig, handles, ncols=3 if len(handles) > 4 else 2)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def heatmap_figure(points: pd.DataFrame, steps: list[int], title: str = ""):
    """Seed-mean test loss over (eta_1, eta_2), one panel per step, one colour scale for all
    (logarithmic where the losses span decades); grey x where every seed diverged.

    A full product grid is drawn as cells; other grids (the lines eta_1 + eta_2 = C) as squares
    sized to the spacing of the points.
    """
    fig, axes = panel_grid(len(steps), extra_width=1.0)
    shown = points[points["step"].isin(steps)]
    norm = loss_norm(shown["mean"])
    log_1, log_2 = wide_span(shown["lr_1"], 100.0), wide_span(shown["lr_2"], 100.0)
    first = shown[shown["step"] == steps[0]]
    e1, e2 = np.sort(first["lr_1"].unique()), np.sort(first["lr_2"].unique())
    product = len(first) == len(e1) * len(e2) and len(first[["lr_1", "lr_2"]].drop_duplicates()) == len(first)
    side = 0.75 * PANEL_SIZE[0] * 72 * nearest_spacing(first["lr_1"], first["lr_2"], log_1, log_2)
    any_diverged = diagonal = False
    for ax, step in zip(axes, steps):
        g = shown[shown["step"] == step]
        gone = g["diverged"].to_numpy(bool)
        if product:
            mesh = g.pivot_table(index="lr_2", columns="lr_1", values="mean", dropna=False).reindex(
                index=e2, columns=e1)
            ax.pcolormesh(cell_edges(e1, log_1), cell_edges(e2, log_2), np.ma.masked_invalid(mesh.to_numpy()),
                          cmap="magma", norm=norm, shading="flat")
        else:
            ax.scatter(g["lr_1"][~gone], g["lr_2"][~gone], c=g["mean"][~gone], cmap="magma", norm=norm,
                       s=side ** 2, marker="s", linewidths=0)
        if gone.any():
            ax.scatter(g["lr_1"][gone], g["lr_2"][gone], color="0.55", s=min(side ** 2, 30), marker="x",
                       gid="diverged")
            any_diverged = True
        style_panel(ax, r"$\eta_1$", r"$\eta_2$" if ax.get_subplotspec().is_first_col() else None, log_1, log_2)
        diagonal |= draw_diagonal(ax)
        ax.set_title(panel_title(step, n_diverged=int(gone.sum())), fontsize=8)
    add_colorbar(fig, axes, norm, "magma", "test loss (mean over seeds)")
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color="0.3", ls=":", lw=1, label=r"balanced split $\eta_1 = \eta_2$")] \
        if diagonal else []
    if any_diverged:
        handles.append(Line2D([], [], color="0.55", marker="x", ls="none", label="every seed diverged"))
    if handles:
        add_legend(fig, handles)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def dense_heatmap_figure(grid_1: np.ndarray, grid_2: np.ndarray, loss: dict, title: str = ""):
    """Seed-mean test loss on an n x n (eta_1, eta_2) mesh per step (``loss``: step -> (n, n));
    white where it diverged, one colour scale for all panels."""
    steps = sorted(loss)
    fig, axes = panel_grid(len(steps), extra_width=1.0)
    norm = loss_norm(np.concatenate([v.ravel() for v in loss.values()]))
    for ax, step in zip(axes, steps):
        ax.pcolormesh(grid_1, grid_2, np.ma.masked_invalid(loss[step]), cmap="magma", norm=norm, shading="auto",
                      rasterized=True)
        ax.set_xlim(grid_1[0, 0], grid_1[0, -1])
        ax.set_ylim(grid_2[0, 0], grid_2[-1, 0])
        style_panel(ax, r"$\eta_1$", r"$\eta_2$" if ax.get_subplotspec().is_first_col() else None, False, False)
        draw_diagonal(ax, color="white")
        ax.set_title(panel_title(step), fontsize=8)
    add_colorbar(fig, axes, norm, "magma", "test loss (mean over seeds)")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    add_legend(fig, [Line2D([], [], color="0.3", ls=":", lw=1, label=r"balanced split $\eta_1 = \eta_2$"),
                     Patch(facecolor="white", edgecolor="0.5", label="white: diverged (mean over seeds)")])
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def lr_figures(name: str, points: pd.DataFrame, keys: list[str], table: pd.DataFrame) -> list:
    """Test loss against the learning rate, one curve per value of the other varying axes, theory dashed."""
    axis = learning_rate_axis(points)
    if axis is None:
        return []
    x, xlabel = axis
    others = [c for c in lr_columns(points) if c != x]
    curves = varying(points, axis_candidates(points) + others, fixed=[x])
    split = []
    while curves and len(points[curves].drop_duplicates()) > MAX_CURVES:
        split.append(curves.pop(0))
    theories = list(table["theory"].unique()) if not table.empty else []
    for i, theory in enumerate(theories[:len(THEORY_STYLES)]):
        points = with_predictions(points, table, theory, keys, column=f"prediction_{i}")
    out = []
    for values, g in groups(points, split):
        steps, n = plotted_steps(g)
        if not steps:
            continue
        used = [(f"prediction_{i}", theory_words(registry.THEORIES[t])) for i, t in enumerate(theories[:3])
                if g[f"prediction_{i}"].notna().any()]
        extra = "; ".join(filter(None, [", ".join(value_words(k, v) for k, v in zip(split, values)),
                                        steps_note(steps, n)]))
        title = figure_title(name, "test loss against the learning rate", g, skip=curves, extra=extra)
        out.append((stem("loss_vs_lr", split, values), lr_figure(g, x, xlabel, curves, steps, title, used)))
    return out


def heatmap_figures(name: str, points: pd.DataFrame) -> list:
    """(eta_1, eta_2) maps where the first two layers' rates vary independently of each other."""
    if "lr_2" not in points or uniform_rates(points) or not varying(points, ["lr_2"], fixed=["lr_1"]):
        return []
    split = varying(points, axis_candidates(points) + lr_columns(points)[2:], fixed=["lr_1", "lr_2"])
    out = []
    for values, g in groups(points, split):
        steps, n = plotted_steps(g)
        if steps:
            title = figure_title(name, "test loss over ($\\eta_1$, $\\eta_2$)", g, extra=steps_note(steps, n))
            out.append((stem("heatmap", split, values), heatmap_figure(g, steps, title)))
    return out


def dense_heatmap_figures(run: Path, name: str, curves: pd.DataFrame, n: int = 400) -> list:
    """n x n seed-mean test loss over (eta_1, eta_2) per poly-mode group, one panel per logged step.

    Evaluated from the run's stored learning-rate polynomials (:func:`lrsweep.core.poly.evaluate`):
    exact losses at n^2 new points without training. The box is the group's trained grid.
    """
    from lrsweep.core import poly
    from lrsweep.core import store
    if n <= 0 or not store.marked_parts(run, "poly") or "lr_2" not in curves:
        return []
    out = []
    coef_groups = set(store.read_table(store.marked_parts(run, "poly"))["group_id"].unique())
    for gid, g in curves.groupby("group_id"):
        if gid not in coef_groups or ("lr_3" in g and g["lr_3"].notna().any()):
            continue
        means, _ = seed_means(g)
        steps, _ = plotted_steps(means)
        steps = [t for t in steps if t > 0]
        if not steps:
            continue
        e1 = np.linspace(g["lr_1"].min(), g["lr_1"].max(), n)
        e2 = np.linspace(g["lr_2"].min(), g["lr_2"].max(), n)
        grid_1, grid_2 = np.meshgrid(e1, e2)
        values = poly.evaluate(run, step=steps, lr_1=grid_1.ravel(), lr_2=grid_2.ravel())
        values = values[values["group_id"] == gid]
        loss = {t: values[values["step"] == t].groupby("point")["test_loss"].mean().to_numpy().reshape(n, n)
                for t in steps}
        title = figure_title(name, f"test loss on a {n} x {n} grid from the learning-rate polynomials", g,
                             extra=f"{g['seed'].nunique()} seeds, no training between the trained points")
        out.append((f"heatmap_dense_g{gid:04d}", dense_heatmap_figure(grid_1, grid_2, loss, title)))
    return out


def loss_figures(run: Path, name: str, curves: pd.DataFrame, dense: int = 400) -> list:
    """The generic test-loss figures of a student run (none without test losses): loss against the
    learning rate per theory, (eta_1, eta_2) heat maps and dense maps of poly-mode groups."""
    from lrsweep import compare
    if "test_loss" not in curves or not curves["test_loss"].notna().any():  # single_point: none
        return []
    points, keys = seed_means(curves)
    table = compare.compare(run)
    figures = [] if registry.claimed(curves, "rate") else lr_figures(name, points, keys, table)
    return figures + heatmap_figures(name, points) + dense_heatmap_figures(run, name, curves, dense)
