"""Figures of `lrsweep plot`: the layout a paper prints (wrapped panels, no overlapping text, no
redundant step-0 panel), loss against a log learning-rate axis for non-line grids, diverged points
marked and counted, legends that explain the marks, titles in words.

The figures are taken where :func:`lrsweep.plots.common.plot_run` saves them (``Figure.savefig`` is
captured), so each test checks what `lrsweep plot RUN` writes.
"""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest

import lrsweep
from lrsweep import compare
from lrsweep import plots as plot
from lrsweep.core import store
from lrsweep.core.errors import StoreError
from lrsweep import registry
from conftest import cli_main

UNIFORM_LRS = [1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0]


def _run(cfg: dict, root: Path) -> Path:
    return lrsweep.run(lrsweep.load_config(cfg), root, progress=False).run_dir


@pytest.fixture(scope="module")
def uniform_run(tmp_path_factory):
    """A shared `lr` over decades (the large ones diverge), two gradients, a theory that covers it."""
    return _run({"name": "uniform", "seeds": [0, 1, 2],
                 "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal", "target": "orthonormal"},
                 "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": 8}, "init": "orthogonal",
                 "train": {"steps": 3}, "grid": {"lr": UNIFORM_LRS, "gradient": ["exact", "signal_only"]}},
                tmp_path_factory.mktemp("uniform"))


@pytest.fixture(scope="module")
def many_steps_run(tmp_path_factory):
    """Lines eta_1 + eta_2 = C logged at 16 steps; no theory covers it (Gaussian design)."""
    return _run({"name": "many_steps", "seeds": [0, 1],
                 "task": {"input_dim": 8, "n_train": 16, "design": "gaussian"},
                 "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 8}, "init": "orthogonal",
                 "train": {"steps": 16}, "grid": {"lr_line": [4, 6]}},
                tmp_path_factory.mktemp("many"))


@pytest.fixture(scope="module")
def line_run(tmp_path_factory):
    """Seed 000's setting (h = d = n, orthogonal, signal-only gradient) on the authors' lines."""
    return _run({"name": "lines", "seeds": [0, 1, 2],
                 "task": {"input_dim": 16, "n_train": 16, "design": "orthogonal", "target": "orthonormal"},
                 "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": 16}, "init": "orthogonal",
                 "train": {"steps": 2, "gradient": "signal_only", "mode": "grid"}, "grid": {"lr_line": [60, 100]}},
                tmp_path_factory.mktemp("lines"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``saved(run) -> {file stem: (Figure, dpi)}``: the figures plot_run saves (nothing written;
    built once per run and module)."""
    from matplotlib.figure import Figure
    cache = {}

    def plot_figures(run):
        if run not in cache:
            figures = {}

            def capture(fig, fname, *args, **kwargs):
                figures[Path(fname).stem] = (fig, kwargs.get("dpi") or fig.dpi)

            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(Figure, "savefig", capture)
                plot.plot_run(run, tmp_path_factory.mktemp("plots"), dense=0)
            assert figures
            cache[run] = figures
        return cache[run]
    return plot_figures


def draw(fig):
    """Lay the figure out and draw it on an Agg canvas; returns the renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def log_x_figures(figures):
    return {stem: fig for stem, (fig, _) in figures.items()
            if panels(fig) and all(ax.get_xscale() == "log" for ax in panels(fig))}


def all_seeds_nan(run, columns):
    """Per (point, step): True where every seed's test loss is NaN (computed from the stored curves)."""
    curves = store.load(run)
    return curves.groupby(columns + ["step"])["test_loss"].apply(lambda v: bool(v.isna().all()))


def step_of(ax) -> int:
    return int(ax.get_title().split()[1].rstrip(":"))


# --------------------------------------------------------------------------------------
# Loss against the learning rate
# --------------------------------------------------------------------------------------

def test_uniform_lr_grid_is_plotted_against_lr_on_a_log_axis(uniform_run, saved):
    """A grid over a shared `lr` gets test loss against lr on a log x axis (was: the eta_1-line layout
    on a linear axis), one curve per gradient; every grid lr is a curve point or a diverged mark."""
    (fig,) = log_x_figures(saved(uniform_run)).values()
    for ax in panels(fig):
        curves = [ln for ln in ax.get_lines() if ln.get_gid() is None and ln.get_linestyle() == "-"]
        assert len(curves) == 2  # exact and signal-only gradient
        xs = {float(x) for ln in ax.get_lines() if ln.get_gid() in (None, "diverged") for x in ln.get_xdata()}
        assert xs == set(UNIFORM_LRS)
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any("exact gradient" in t for t in labels) and any("signal-only gradient" in t for t in labels)


def test_diverged_points_are_marked_and_counted(uniform_run, saved):
    """An x at the top of a panel for each (lr, gradient) point where every seed diverged by that step,
    as many as the stored curves have, and the count in the panel title."""
    (fig,) = log_x_figures(saved(uniform_run)).values()
    gone = all_seeds_nan(uniform_run, ["lr_1", "gradient"])
    assert gone.any()  # precondition: the largest rates diverge
    for ax in panels(fig):
        step = step_of(ax)
        want = int(gone.xs(step, level="step").sum())
        marks = sum(len(ln.get_xdata()) for ln in ax.get_lines() if ln.get_gid() == "diverged")
        assert marks == want
        assert (f"({want} diverged)" in ax.get_title()) == (want > 0)
    assert any("diverged" in t.get_text() for t in fig.legends[0].get_texts())


def test_theory_is_overlaid_where_it_covers_the_students(uniform_run, saved):
    """The registered theory's predictions are drawn over the curves at the steps it predicts."""
    (fig,) = log_x_figures(saved(uniform_run)).values()
    table = compare.compare(uniform_run)
    assert not table.empty
    for ax in panels(fig):
        step = step_of(ax)
        drawn = [ln for ln in ax.get_lines() if ln.get_gid() == "theory"]
        want = table[(table["step"] == step)]
        assert bool(drawn) == (not want.empty)
        for ln in drawn:
            for x, y in zip(ln.get_xdata(), ln.get_ydata()):
                assert np.isclose(want.loc[np.isclose(want["lr_1"], x), "prediction"], y, rtol=1e-9).any()


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------

def test_many_logged_steps_wrap_into_a_compact_grid(many_steps_run, saved):
    """16 logged steps: at most 4 panels per row, at most ceil(16 / 4) rows, under 2000 px wide
    (was one row of 17 panels, about 9000 px)."""
    figures = saved(many_steps_run)
    for stem, (fig, dpi) in figures.items():
        axes = panels(fig)
        draw(fig)
        rows = {round(ax.get_position().y0, 3) for ax in axes}
        columns = {round(ax.get_position().x0, 3) for ax in axes}
        assert len(rows) <= math.ceil(16 / 4) and len(columns) <= 4, stem
        assert fig.get_figwidth() * dpi < 2000, stem
        assert fig.get_figheight() * dpi < 2000, stem
    heatmap = next(fig for stem, (fig, _) in figures.items() if stem.startswith("heatmap"))
    assert sorted(step_of(ax) for ax in panels(heatmap)) == list(range(1, 17))


def test_no_step_zero_panel_where_every_point_starts_equal(many_steps_run, saved):
    curves = store.load(many_steps_run)
    start = curves[curves["step"] == 0].groupby(["lr_1", "lr_2"])["test_loss"].mean()
    assert np.allclose(start, start.iloc[0], rtol=1e-6)  # precondition: the initial loss is shared
    for stem, (fig, _) in saved(many_steps_run).items():
        assert all(step_of(ax) != 0 for ax in panels(fig)), stem


def assert_laid_out(fig):
    """No colour bar (nor its label) over a panel, no two panels over each other, no two tick or axis labels
    of one axes over each other, the title within the figure. Returns (renderer, panels' tight boxes)."""
    renderer = draw(fig)
    axes, bars = panels(fig), colorbars(fig)
    tight = [ax.get_tightbbox(renderer) for ax in axes]
    for bar in bars:
        assert not any(bar.get_tightbbox(renderer).overlaps(ax.get_window_extent(renderer)) for ax in axes)
        assert not any(bar.yaxis.label.get_window_extent(renderer).overlaps(box) for box in tight)
    for i in range(len(axes)):
        for j in range(i + 1, len(axes)):
            assert not tight[i].overlaps(tight[j])
    for ax in axes + bars:
        for boxes in _text_boxes(ax, renderer):
            assert not any(p.overlaps(q) for k, p in enumerate(boxes) for q in boxes[k + 1:]), ax.get_title()
    title = fig._suptitle.get_window_extent(renderer)
    assert title.x0 >= 0 and title.x1 <= fig.get_figwidth() * fig.dpi
    return renderer, tight


def _text_boxes(ax, renderer):
    """Window extents of an axes' visible tick labels (major and minor) and axis labels."""
    boxes = []
    for axis in (ax.xaxis, ax.yaxis):
        ticks = axis.get_major_ticks() + axis.get_minor_ticks()
        labels = [t.label1 for t in ticks if t.label1.get_visible() and t.label1.get_text()]
        labels = [lb for lb in labels if axis.get_view_interval().min() - 1e-9 <= lb.get_position()[
            0 if axis is ax.xaxis else 1] <= axis.get_view_interval().max() + 1e-9]
        boxes.append([lb.get_window_extent(renderer) for lb in labels])
    return boxes


@pytest.mark.parametrize("which", ["many_steps_run", "line_run", "uniform_run"])
def test_no_text_overlaps_a_neighbour(which, request, saved):
    """Colour-bar labels clear every panel, panels (with their labels) clear each other, and no two
    tick labels of one axis pile onto each other (was: colour-bar labels over the next panel)."""
    for stem, (fig, _) in saved(request.getfixturevalue(which)).items():
        renderer = draw(fig)
        axes = panels(fig)
        tight = [ax.get_tightbbox(renderer) for ax in axes]
        for bar in colorbars(fig):
            label = bar.yaxis.label.get_window_extent(renderer)
            assert not any(label.overlaps(box) for box in tight), stem
            assert not any(bar.get_tightbbox(renderer).overlaps(ax.get_window_extent(renderer)) for ax in axes), stem
        for a, b in itertools.combinations(range(len(axes)), 2):
            assert not tight[a].overlaps(tight[b]), (stem, axes[a].get_title(), axes[b].get_title())
        for ax in axes + colorbars(fig):
            for boxes in _text_boxes(ax, renderer):
                for p, q in itertools.combinations(boxes, 2):
                    assert not p.overlaps(q), (stem, ax.get_title())


# --------------------------------------------------------------------------------------
# Seed 000's line figure: words, legend, panels
# --------------------------------------------------------------------------------------

def _figure_texts(fig):
    texts = [fig._suptitle.get_text() if fig._suptitle else ""]
    texts += [ax.get_title() for ax in fig.axes] + [ax.get_xlabel() for ax in fig.axes]
    texts += [ax.get_ylabel() for ax in fig.axes]
    texts += [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    return texts


def test_titles_are_words_not_registry_names(line_run, saved):
    figures = saved(line_run)
    names = set(registry.THEORIES) | {n.split(".")[-1] for n in registry.THEORIES}
    theory_figures = 0
    for stem, (fig, _) in figures.items():
        title = fig._suptitle.get_text() if fig._suptitle else ""
        assert "lines" in title and "2-layer linear" in title and "h = d = n = 16" in title, stem
        assert "orthogonal init" in title and "signal-only gradient" in title, stem
        for text in _figure_texts(fig):
            assert not any(n in text for n in names), (stem, text)
            assert "=layer" not in text and "theory=" not in text
        words = [t.title for t in registry.THEORIES.values() if t.title and t.title in title]
        theory_figures += bool(words)
    assert theory_figures >= 1


def test_line_figure_sets_theory_beside_experiment_with_a_legend(line_run, saved):
    """Per step a theory panel and an experiment panel, a star on every line at the balanced split,
    one colour bar for C, and a legend naming the star and the +-1 standard-error band."""
    figures = saved(line_run)
    table = compare.compare(line_run)
    theory_stems = [s for s, (fig, _) in figures.items()
                    if any("theory" in ax.get_title() for ax in panels(fig))]
    assert theory_stems
    n_lines = store.load(line_run)["lr_line"].nunique()
    for stem in theory_stems:
        fig, _ = figures[stem]
        legend = " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts())
        assert "balanced split" in legend and "standard error over 3 seeds" in legend.replace("\n", " ")
        titles = [ax.get_title() for ax in panels(fig)]
        steps = sorted(table["step"].unique())
        assert len(titles) == 2 * len(steps)
        assert all("theory" in t for t in titles[0::2]) and all("experiment" in t for t in titles[1::2])
        for ax in panels(fig):
            stars = [ln for ln in ax.get_lines() if ln.get_marker() == "*"]
            assert sum(len(s.get_xdata()) for s in stars) == n_lines
        assert len(colorbars(fig)) == 1 and "C" in colorbars(fig)[0].get_ylabel()


def test_plot_of_a_run_without_results_is_a_one_line_error(tmp_path):
    run = tmp_path / "empty" / "run"
    run.mkdir(parents=True)
    store.write_json({"status": "running"}, run / "meta.json")
    with pytest.raises(StoreError, match="no results"):
        plot.plot_run(run)
    rc, out, err = cli_main(["plot", run])
    assert rc == 2 and err.count("\n") == 1 and "no results" in err
    assert not (run / "plots").exists()
