"""Figures from stored runs (no training, no theory code here): :func:`run_figures` gathers a run's
figures from every family that draws it (:func:`lrsweep.registry.register_figures`) and the generic
test-loss figures (:mod:`lrsweep.plots.loss`); :func:`plot_run` writes them as PNG and PDF.
Common helpers are in :mod:`lrsweep.plots.common`."""

from __future__ import annotations

from pathlib import Path

from lrsweep import registry
from lrsweep.core.errors import StoreError
from lrsweep.plots.common import DPI


def run_figures(run: str | Path, dense: int = 400) -> list[tuple[str, object]]:
    """Every figure of a run as ``(file stem, Figure)``: a run of a registered kind (a schedule search)
    gets its kind's figures; a student run gets every registered family's figures
    (:func:`lrsweep.registry.register_figures`) and, unless a family claims them, the generic
    test-loss figures of :func:`lrsweep.plots.loss.loss_figures`.

    Raises:
      StoreError: the run has nothing to plot.
    """
    from lrsweep import compare
    from lrsweep.core import store
    from lrsweep.plots import loss
    run = Path(run)
    kind = registry.run_kind(run)
    if kind is not None and kind.figures is not None:
        return kind.figures(run)
    compare.load_arrays(run)
    curves = store.load(run)
    name = str(curves["name"].iloc[0]) if "name" in curves and curves["name"].nunique() == 1 else ""
    figures = []
    for draw in registry.FIGURES:
        figures += draw(run, name, curves)
    if not registry.claimed(curves, "loss"):
        figures += loss.loss_figures(run, name, curves, dense)
    if not figures:
        if curves.empty:
            raise StoreError(run, "no results yet (no chunk has finished); nothing to plot")
        raise StoreError(run, "nothing to plot: test-loss figures need test losses and a varying learning "
                              "rate; phase figures need phase, ntk_eig or sharpness and one rate shared by "
                              "every layer")
    return figures


def save(fig, path: Path) -> list[Path]:
    """Write ``path``.png and .pdf (a stem with dots, ``noise0.5``, keeps them)."""
    out = []
    for ext in (".png", ".pdf"):
        target = path.parent / (path.name + ext)
        fig.savefig(target, dpi=DPI)
        out.append(target)
    return out


def plot_run(run: str | Path, out_dir: str | Path | None = None, dense: int = 400) -> list[Path]:
    """Write every figure of :func:`run_figures` as PNG and PDF to ``out_dir`` (default ``<run>/plots``)."""
    run = Path(run)
    figures = run_figures(run, dense)
    out_dir = Path(out_dir) if out_dir else run / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, fig in figures:
        paths += save(fig, out_dir / stem)
    return paths
