"""Seed 000's figures (Figs. 1, 2, 4-14): test loss against eta_1, one curve per line eta_1 + eta_2 = C
coloured by C, a star at the balanced split, theory and experiment side by side per step."""

from __future__ import annotations

import numpy as np
import pandas as pd

from lrsweep import registry
from lrsweep.plots.common import (is_line_grid, seed_means, BALANCED, LOG_SPAN, add_legend, axis_candidates, colorbar_size, compact_ticks, draw_experiment, figure_title, groups, headroom, legend_handles, line_column, panel_grid, panel_title, plotted_steps, stem, steps_note, style_panel, theory_words, varying, wide_span, with_predictions)


def lines_figure(points: pd.DataFrame, steps: list[int], title: str = ""):
    """Seed 000's layout: test loss against eta_1, one curve per line eta_1 + eta_2 = C coloured by C.

    Args:
      points: :func:`seed_means` rows of one figure (one value of every other varying axis), with
        a ``prediction`` column where a theory covers them.
      steps: the steps to draw; a step with predictions gets a theory panel beside its experiment.
    Returns:
      The Figure.
    """
    from matplotlib import cm, colors
    line = line_column(points)
    has_theory = {t: "prediction" in points and points.loc[points["step"] == t, "prediction"].notna().any()
                  for t in steps}
    panels = [(t, kind) for t in steps for kind in (("prediction", "mean") if has_theory[t] else ("mean",))]
    fig, axes = panel_grid(len(panels), unit=2 if any(has_theory.values()) else 1, extra_width=1.0)
    totals = np.sort(points[line].unique())
    norm = colors.Normalize(totals.min(), totals.max() if totals.max() > totals.min() else totals.min() + 1)
    cmap = cm.viridis
    any_diverged = any_partial = False
    for ax, (step, kind) in zip(axes, panels):
        g = points[points["step"] == step]
        n_div = 0
        for index, (total, gl) in enumerate(g.groupby(line)):
            gl = gl.sort_values("lr_1")
            color = cmap(norm(total))
            if kind == "prediction":
                ax.plot(gl["lr_1"], gl["prediction"], color=color, lw=1.3)
            else:
                n_div += draw_experiment(ax, gl["lr_1"], gl, color, index=index)
            bal = gl[np.isclose(gl["lr_1"], gl["lr_2"], rtol=1e-9) & ~(gl["diverged"] & (kind == "mean"))]
            if len(bal):
                ax.plot(bal["lr_1"], bal[kind], **BALANCED)
        any_diverged |= n_div > 0
        any_partial |= kind == "mean" and bool(((g["n_seeds"] < g["n_students"]) & (g["n_seeds"] > 0)).any())
        ax.set_title(panel_title(step, "theory" if kind == "prediction" else "experiment" if has_theory[step]
                                 else "", n_div), fontsize=8)
    for step in steps:  # one y range per step: theory and experiment side by side compare by eye
        pair = [ax for ax, (t, _) in zip(axes, panels) if t == step]
        g = points[points["step"] == step]
        values = [g["mean"]] + ([g["prediction"]] if has_theory[step] else [])
        log_y = wide_span(np.concatenate([np.asarray(v, float) for v in values]), LOG_SPAN)
        for ax in pair:
            style_panel(ax, r"$\eta_1$", "test loss" if ax is axes[0] or ax.get_subplotspec().is_first_col()
                        else None, False, log_y)
        for ax in pair:
            headroom(ax)
        lo = min(a.get_ylim()[0] for a in pair)
        hi = max(a.get_ylim()[1] for a in pair)
        for ax in pair:
            ax.set_ylim(lo, hi)
    bar = fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), ax=axes, **colorbar_size(axes))
    bar.set_label(r"line $C = \eta_1 + \eta_2$" if "lr_3" not in points
                  else r"line $C = \eta_1 + \dots + \eta_m$", fontsize=8)
    compact_ticks(bar.ax.yaxis, False)
    bar.ax.tick_params(labelsize=7)
    n_seeds = int(points["n_students"].max())
    add_legend(fig, legend_handles(n_seeds, balanced=True, diverged=any_diverged, partial=any_partial))
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def line_figures(name: str, points: pd.DataFrame, keys: list[str], table: pd.DataFrame) -> list:
    """Seed 000's line figures: per theory covering the students, the steps it predicts with theory
    beside experiment; the other steps (or all, without theory) as experiment only."""
    split = varying(points, axis_candidates(points), fixed=[line_column(points), "lr_1"])
    out = []
    for values, g in groups(points, split):
        covered = set()
        for theory in (table["theory"].unique() if not table.empty else []):
            tg = with_predictions(g, table, theory, keys)
            steps = sorted(int(t) for t in tg.loc[tg["prediction"].notna(), "step"].unique())
            if not steps:
                continue
            covered |= set(steps)
            words = theory_words(registry.THEORIES[theory])
            title = figure_title(name, "test loss along lines $\\eta_1 + \\eta_2 = C$", g, extra=f"theory: {words}")
            out.append((stem(f"lines_{theory.split('.')[-1]}", split, values),
                        lines_figure(tg[tg["step"].isin(steps)], steps, title)))
        steps, n = plotted_steps(g, exclude=covered)
        if steps:
            what = "test loss along lines $\\eta_1 + \\eta_2 = C$" + (" (experiment)" if covered else "")
            title = figure_title(name, what, g, extra=steps_note(steps, n))
            out.append((stem("lines", split, values), lines_figure(g, steps, title)))
    return out


def claims(curves: pd.DataFrame) -> bool:
    """A line grid with test losses: these figures replace the generic loss-against-rate ones."""
    return "test_loss" in curves and bool(curves["test_loss"].notna().any()) and is_line_grid(curves)


def figures(run, name: str, curves: pd.DataFrame) -> list:
    """The line figures of a seed 000 line grid (none otherwise)."""
    from lrsweep import compare
    if not claims(curves):
        return []
    points, keys = seed_means(curves)
    return line_figures(name, points, keys, compare.compare(run))
