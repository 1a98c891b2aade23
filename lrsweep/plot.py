"""Figures from stored runs and comparisons (no training, no theory code here).

:func:`plot_lines` is seed 000's figure layout (Figs. 1, 2, 4-14): test loss against eta_1, one
curve per line eta_1 + eta_2 = C coloured by C with a colour bar, a star at the balanced split,
one panel per step, theory and experiment side by side. :func:`plot_heatmap` shows the mean test
loss over (eta_1, eta_2) per step.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> list[Path]:
    out = []
    for ext in (".png", ".pdf"):
        target = path.with_suffix(ext)
        fig.savefig(target, dpi=130, bbox_inches="tight")
        out.append(target)
    return out


def plot_lines(table: pd.DataFrame, out: Path, title: str = "") -> list[Path]:
    """Test loss vs eta_1 per line C and step; columns of panels: (theory, experiment) per step.

    Args:
      table: per-point means, columns ``lr_1, lr_2, step, mean`` and optionally ``sem`` and
        ``prediction`` (a :func:`lrsweep.compare.compare` table for one theory, or the empirical
        means of a run without theory).
    """
    plt = _pyplot()
    from matplotlib import cm, colors
    from lrsweep.theory.layer_balancing_compare import line_key
    line = line_key(table)
    steps = sorted(table["step"].unique())
    has_theory = "prediction" in table and table["prediction"].notna().any()
    kinds = (["prediction", "mean"] if has_theory else ["mean"])
    fig, axes = plt.subplots(1, len(steps) * len(kinds), figsize=(3.6 * len(steps) * len(kinds), 3.2),
                             squeeze=False, sharex=True)
    totals = np.sort(table[line].unique())
    norm = colors.Normalize(totals.min(), totals.max() if totals.max() > totals.min() else totals.min() + 1)
    cmap = cm.viridis
    for si, step in enumerate(steps):
        for ki, kind in enumerate(kinds):
            ax = axes[0, si * len(kinds) + ki]
            g = table[table["step"] == step]
            for total, gl in g.groupby(line):
                gl = gl.sort_values("lr_1")
                color = cmap(norm(total))
                ax.plot(gl["lr_1"], gl[kind], color=color, lw=1.2)
                if kind == "mean" and "sem" in gl:
                    ax.fill_between(gl["lr_1"], gl["mean"] - gl["sem"], gl["mean"] + gl["sem"], color=color,
                                    alpha=0.25, lw=0)
                bal = gl[np.isclose(gl["lr_1"], gl["lr_2"])]
                if len(bal):
                    ax.plot(bal["lr_1"], bal[kind], marker="*", color="crimson", ms=9, ls="none")
            label = "theory" if kind == "prediction" else "experiment"
            ax.set_title(f"step {step} ({label})", fontsize=9)
            ax.set_xlabel(r"$\eta_1$")
            if si == 0 and ki == 0:
                ax.set_ylabel("test loss")
        if has_theory:  # theory and experiment of one step share the y axis
            lo = min(a.get_ylim()[0] for a in axes[0, si * 2: si * 2 + 2])
            hi = max(a.get_ylim()[1] for a in axes[0, si * 2: si * 2 + 2])
            for a in axes[0, si * 2: si * 2 + 2]:
                a.set_ylim(lo, hi)
    sm = cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes.ravel().tolist(), label=r"$\eta_1+\eta_2$", fraction=0.02)
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def plot_heatmap(table: pd.DataFrame, out: Path, value: str = "mean", title: str = "") -> list[Path]:
    """Mean test loss over the (eta_1, eta_2) grid, one panel per step (log colour scale)."""
    plt = _pyplot()
    from matplotlib import colors
    steps = sorted(table["step"].unique())
    fig, axes = plt.subplots(1, len(steps), figsize=(4 * len(steps), 3.4), squeeze=False)
    for ax, step in zip(axes[0], steps):
        g = table[table["step"] == step]
        vals = g[value].to_numpy(float)
        finite = vals[np.isfinite(vals) & (vals > 0)]
        norm = colors.LogNorm(finite.min(), finite.max()) if len(finite) and finite.max() > finite.min() else None
        sc = ax.scatter(g["lr_1"], g["lr_2"], c=vals, cmap="magma", norm=norm, s=18, marker="s")
        diverged = ~np.isfinite(vals)
        if diverged.any():
            ax.scatter(g["lr_1"][diverged], g["lr_2"][diverged], c="lightgray", s=18, marker="x", label="diverged")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(f"step {step}", fontsize=9)
        ax.set_xlabel(r"$\eta_1$")
        ax.set_ylabel(r"$\eta_2$")
        fig.colorbar(sc, ax=ax, label=f"test loss ({value})")
    if title:
        fig.suptitle(title, fontsize=10, y=1.02)
    paths = _save(fig, out)
    plt.close(fig)
    return paths


def dense_heatmaps(run: Path, curves: pd.DataFrame, out_dir: Path, n: int = 400) -> list[Path]:
    """n x n seed-mean test loss over (eta_1, eta_2) per poly-mode group, one panel per logged step.

    Evaluated from the run's stored learning-rate polynomials (:func:`lrsweep.poly.evaluate`):
    exact losses at n^2 new points without training. The box is the group's trained grid.
    """
    from lrsweep import poly, store
    if n <= 0 or not store.marked_parts(run, "poly") or "lr_2" not in curves:
        return []
    from matplotlib import colors
    plt = _pyplot()
    paths = []
    coef_groups = set(store.read_table(store.marked_parts(run, "poly"))["group_id"].unique())
    for gid, g in curves.groupby("group_id"):
        if gid not in coef_groups or ("lr_3" in g and g["lr_3"].notna().any()):
            continue
        steps = sorted(int(t) for t in g["step"].unique() if t > 0)
        e1 = np.linspace(g["lr_1"].min(), g["lr_1"].max(), n)
        e2 = np.linspace(g["lr_2"].min(), g["lr_2"].max(), n)
        grid_1, grid_2 = np.meshgrid(e1, e2)
        values = poly.evaluate(run, step=steps, lr_1=grid_1.ravel(), lr_2=grid_2.ravel())
        values = values[values["group_id"] == gid]
        fig, axes = plt.subplots(1, len(steps), figsize=(5.4 * len(steps), 4.2), squeeze=False, layout="constrained")
        for ax, step in zip(axes[0], steps):
            mean = values[values["step"] == step].groupby("point")["test_loss"].mean().to_numpy().reshape(n, n)
            finite = mean[np.isfinite(mean) & (mean > 0)]
            wide = len(finite) and finite.max() > 20 * finite.min()
            norm = colors.LogNorm(finite.min(), finite.max()) if wide else None
            im = ax.pcolormesh(grid_1, grid_2, np.ma.masked_invalid(mean), cmap="magma", norm=norm, shading="auto",
                               rasterized=True)
            ax.plot(e1, e1, color="white", lw=0.6, ls=":", label=r"$\eta_1 = \eta_2$")
            ax.set_xlim(e1[0], e1[-1])
            ax.set_ylim(e2[0], e2[-1])
            ax.set_title(f"step {step}", fontsize=9)
            ax.set_xlabel(r"$\eta_1$")
            ax.set_ylabel(r"$\eta_2$")
            fig.colorbar(im, ax=ax, label="mean test loss")
        row = g.iloc[0]
        fig.suptitle(f"{n}x{n} points from the learning-rate polynomials, group {gid}: h={row['width']}, "
                     f"L={row['n_layers']}, {row.get('gradient', '')}, {g['seed'].nunique()} seeds "
                     f"(white = diverged)", fontsize=9)
        paths += _save(fig, out_dir / f"heatmap_dense_g{gid:04d}")
        plt.close(fig)
    return paths


def empirical_means(curves: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds per (point, step) for a run without a matching theory."""
    keys = [c for c in ("width", "n_layers", "gradient", "lr_line", "lr_total", "lr_1", "lr_2", "step")
            if c in curves and curves[c].notna().all()]
    g = curves.groupby(keys)["test_loss"]
    out = g.agg(mean="mean", std="std", n_seeds="count").reset_index()
    out["sem"] = out["std"] / np.sqrt(out["n_seeds"])
    return out


def plot_run(run: str | Path, out_dir: str | Path | None = None, dense: int = 400) -> list[Path]:
    """Every figure of a run: per theory (and per gradient / width) the line figure and heat map,
    and for poly-mode groups a ``dense`` x ``dense`` heat map from the stored polynomials.

    Students no theory covers get the experiment-only figures. Written to ``<run>/plots/``.
    """
    from lrsweep import compare, store
    run = Path(run)
    out_dir = Path(out_dir) if out_dir else run / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    curves = store.load(run)
    if curves.empty or "lr_2" not in curves:
        raise ValueError(f"{run}: plots need a run with at least two trained layers (lr_1, lr_2)")
    table = compare.compare(run)
    paths = []
    split = [c for c in ("gradient", "width", "n_layers") if c in curves and curves[c].nunique() > 1]
    if not table.empty:
        for key, g in table.groupby(["theory", *split]):
            key = key if isinstance(key, tuple) else (key,)
            stem = "_".join(str(k) for k in key).replace("layer_balancing.", "")
            title = ", ".join(f"{k}={v}" for k, v in zip(["theory", *split], key))
            paths += plot_lines(g, out_dir / f"lines_{stem}", title)
    means = empirical_means(curves)
    for key, g in (means.groupby(split) if split else [((), means)]):
        key = key if isinstance(key, tuple) else (key,)
        stem = "_".join(str(k) for k in key) or "all"
        title = ", ".join(f"{k}={v}" for k, v in zip(split, key))
        if table.empty:
            paths += plot_lines(g, out_dir / f"lines_{stem}", title)
        paths += plot_heatmap(g, out_dir / f"heatmap_{stem}", title=title)
    paths += dense_heatmaps(run, curves, out_dir, dense)
    return paths
