"""Seed 002's figures (lrsweep.families.stackelberg.figures through `lrsweep plot`): loss curves by head/body ratio
with the best-response run on top, the curvature of Phi beside the loss's, steps to a target loss and
the distance to the best-response run against the ratio.

Runs are written here as tables with closed-form curves: a gd-head student's train loss is
A exp(-k t) (A = 1 + seed / 10, k = eta_body (1 + log10 ratio)), its best-response twin's
A/2 exp(-5 eta_body t), and its body sits GAP eta_body / ratio * t / T away from the twin's, so seed
means, steps to a target (log-linear interpolation is exact for an exponential) and distances are
written out below. One real tiny run checks `lrsweep plot` end to end.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lrsweep
from lrsweep import plots as plot
from lrsweep.core import store
from conftest import cli_main
from test_plot import colorbars, panels

STEPS, LOG_EVERY = 40, 5
LOGGED = np.arange(0, STEPS + 1, LOG_EVERY)
SEEDS = [0, 1, 2]
BODY_RATES = [0.02, 0.05]
RATIOS = [1.0, 10.0, 100.0, 300.0]
DIVERGING = (0.05, 300.0, 1)  # (body rate, ratio, seed): its loss grows and it diverges at step 20
GAP = 0.4
STEMS = ("loss_by_ratio", "curvature", "steps_to_target", "distance_vs_ratio")
CONFIG = dict(run_id="run0", name="heads", kind="linear_teacher", input_dim=8, n_train=32, noise_std=0.1,
              parameterization="standard", n_layers=3, width=4, activation="relu", init="gaussian", loss="mse",
              steps=STEPS, log_every=LOG_EVERY, sketch_dim=16, head_ridge=0.0, optimizer="gd",
              n_trainable=3)


def amplitude(seed):
    return 1.0 + 0.1 * seed


def gd_loss(body, ratio, seed):
    """Train loss at LOGGED of a gd-head student (NaN after divergence)."""
    a = amplitude(seed)
    if (body, ratio, seed) == DIVERGING:
        return np.where(LOGGED < 20, a * np.exp(0.2 * LOGGED), np.nan)
    return a * np.exp(-body * (1 + np.log10(ratio)) * LOGGED)


def best_loss(body, seed):
    return 0.5 * amplitude(seed) * np.exp(-5 * body * LOGGED)


def best_body(seed):
    """The best-response run's body sketch at LOGGED: (len(LOGGED), 4)."""
    a = amplitude(seed)
    return np.stack([a * (1 + 0.01 * LOGGED), np.full(LOGGED.shape, 0.5 * a), 0 * LOGGED, 0 * LOGGED], 1)


def gd_body(body, ratio, seed):
    m = best_body(seed).copy()
    m[:, 2] += GAP * body / ratio * LOGGED / STEPS
    return m


def student_rows(body, ratio, seed, sid, equal_budget=None):
    best = not np.isfinite(ratio)
    head = np.inf if best else body * ratio
    total = np.inf if best else (2 * body + head if equal_budget is None else equal_budget)
    diverged = (body, ratio, seed) == DIVERGING
    return dict(CONFIG, student_id=sid, group_id=int(best), seed=seed, head="best_response" if best else "gd",
                update="simultaneous", head_steps=1, lr_1=body, lr_2=body, lr_3=head, lr_total=total,
                lr_body=body, lr_head=head, lr_ratio=ratio, diverged=diverged, diverged_step=20 if diverged else None)


def curve_rows(sid, loss, sharp, phi, sketch):
    frame = pd.DataFrame({"run_id": "run0", "student_id": sid, "step": LOGGED, "train_loss": loss,
                          "test_loss": 1.1 * loss, "sharpness": sharp, "phi_sharpness": phi})
    for j in range(sketch.shape[1]):
        frame[f"body_sketch_{j + 1}"] = np.where(np.isfinite(loss), sketch[:, j], np.nan)
    return frame


def sharpness(ratio, seed):
    return 2 * amplitude(seed) * (1 + np.sqrt(ratio) * LOGGED / 100)


def phi_sharpness(ratio, seed):
    return 3 * amplitude(seed) * np.exp(-0.01 * np.log10(ratio) * LOGGED)


def write_run(root: Path, students: list[dict], curves: list[pd.DataFrame]) -> Path:
    run = root / "heads" / "run0"
    store.write_table(pd.DataFrame(students), run / "students.parquet")
    store.write_table(pd.concat(curves, ignore_index=True), run / "curves.parquet")
    store.write_json({"status": "complete", "n_students": len(students)}, run / "meta.json")
    return run


def write_ratio_run(root: Path) -> Path:
    """Body rates x (ratios + best response) x seeds, as the engine stores them."""
    students, curves = [], []
    for body in BODY_RATES:
        for ratio in RATIOS + [np.inf]:
            for seed in SEEDS:
                sid = len(students)
                students.append(student_rows(body, ratio, seed, sid))
                if np.isfinite(ratio):
                    loss = gd_loss(body, ratio, seed)
                    curves.append(curve_rows(sid, loss, np.where(np.isfinite(loss), sharpness(ratio, seed), np.nan),
                                             np.where(np.isfinite(loss), phi_sharpness(ratio, seed), np.nan),
                                             gd_body(body, ratio, seed)))
                else:
                    curves.append(curve_rows(sid, best_loss(body, seed), np.full(LOGGED.shape, 10 * amplitude(seed)),
                                             np.full(LOGGED.shape, 2.5 * amplitude(seed)), best_body(seed)))
    return write_run(root, students, curves)


@pytest.fixture(scope="module")
def ratio_run(tmp_path_factory):
    return write_ratio_run(tmp_path_factory.mktemp("ratio"))


@pytest.fixture(scope="module")
def figures(ratio_run):
    return dict(plot.run_figures(ratio_run, dense=0))



def panel_of(fig, words):
    (ax,) = [ax for ax in panels(fig) if words in ax.get_title()]
    return ax


def line(ax, gid):
    (ln,) = [ln for ln in ax.get_lines() if ln.get_gid() == gid]
    return ln


def legend_text(fig) -> str:
    return " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts()).replace("\n", " ")


def body_words(body):
    return rf"$\eta_\mathrm{{body}}$ = {body:g}"


def seed_mean(arrays):
    return np.nanmean(np.stack(arrays), 0)


# --------------------------------------------------------------------------------------
# Which figures
# --------------------------------------------------------------------------------------

def test_lrsweep_plot_writes_the_four_figures_of_a_head_run(tmp_path):
    """A run with a best-response head (lr_3 = inf) plots (was: OverflowError in the test-loss figures)
    and gets exactly the four seed 002 figures, as PNG and PDF."""
    run = write_ratio_run(tmp_path)
    rc, out, err = cli_main(["plot", run])
    assert rc == 0, err
    written = sorted(p.name for p in (run / "plots").iterdir())
    assert written == sorted(f"{stem}{ext}" for stem in STEMS for ext in (".pdf", ".png"))


# --------------------------------------------------------------------------------------
# Loss curves by ratio
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("body", BODY_RATES)
def test_best_response_curve_is_the_seed_mean_black_thick_and_on_top(figures, body):
    fig = figures["loss_by_ratio"]
    ax = panel_of(fig, body_words(body))
    best = line(ax, "best response")
    np.testing.assert_allclose(best.get_xdata(), LOGGED)
    np.testing.assert_allclose(best.get_ydata(), seed_mean([best_loss(body, s) for s in SEEDS]), rtol=1e-12)
    assert best.get_color() == "black"
    ratio_lines = [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("ratio ")]
    assert len(ratio_lines) == len(RATIOS)
    assert all(best.get_linewidth() > ln.get_linewidth() and best.get_zorder() > ln.get_zorder()
               for ln in ratio_lines)
    assert ax.get_yscale() == "log"
    assert "best response (ratio" in legend_text(fig)


def test_ratio_lines_are_seed_means_in_the_colour_the_colour_bar_shows(figures):
    """One log colour bar from the smallest to the largest finite ratio; each ratio's line is the colour a
    reader finds at its ratio on the bar; a seed that diverged leaves the mean of the others and an x."""
    from matplotlib.collections import QuadMesh
    from matplotlib.colors import to_rgba
    fig = figures["loss_by_ratio"]
    (bar,) = colorbars(fig)
    assert bar.get_yscale() == "log"
    assert bar.get_ylim() == pytest.approx((min(RATIOS), max(RATIOS)), rel=1e-12)
    (solids,) = [c for c in bar.collections if isinstance(c, QuadMesh)]  # the bar's colours
    cmap = solids.cmap
    for body in BODY_RATES:
        ax = panel_of(fig, body_words(body))
        colours = []
        for ratio in RATIOS:
            ln = line(ax, f"ratio {ratio:g}")
            position = (bar.transData + bar.transAxes.inverted()).transform((0.5, ratio))[1]
            assert to_rgba(ln.get_color()) == pytest.approx(cmap(position), abs=2 / 255)
            colours.append(to_rgba(ln.get_color()))
            want = seed_mean([gd_loss(body, ratio, s) for s in SEEDS])
            np.testing.assert_allclose(ln.get_ydata(), want, rtol=1e-12)
        assert len(set(colours)) == len(RATIOS)
        marks = [ln for ln in ax.get_lines() if ln.get_gid() == "diverged"]
        assert len(marks) == (body == DIVERGING[0])
    ax = panel_of(fig, body_words(DIVERGING[0]))
    survivors = [s for s in SEEDS if s != DIVERGING[2]]
    late = LOGGED >= 20
    np.testing.assert_allclose(line(ax, "ratio 300").get_ydata()[late],
                               seed_mean([gd_loss(*DIVERGING[:2], s) for s in survivors])[late], rtol=1e-12)


# --------------------------------------------------------------------------------------
# Curvature
# --------------------------------------------------------------------------------------

def test_curvature_draws_phi_solid_and_the_loss_sharpness_dashed(figures):
    fig = figures["curvature"]
    ax = panel_of(fig, body_words(0.02))
    for ratio in RATIOS:
        phi, sharp = line(ax, f"phi_sharpness ratio {ratio:g}"), line(ax, f"sharpness ratio {ratio:g}")
        assert phi.get_linestyle() == "-" and sharp.get_linestyle() == "--"
        assert phi.get_color() == sharp.get_color()
        np.testing.assert_allclose(phi.get_ydata(), seed_mean([phi_sharpness(ratio, s) for s in SEEDS]), rtol=1e-12)
        np.testing.assert_allclose(sharp.get_ydata(), seed_mean([sharpness(ratio, s) for s in SEEDS]), rtol=1e-12)
    best_phi, best_sharp = line(ax, "phi_sharpness best response"), line(ax, "sharpness best response")
    assert best_phi.get_color() == best_sharp.get_color() == "black"
    np.testing.assert_allclose(best_phi.get_ydata(), 2.5 * np.mean([amplitude(s) for s in SEEDS]), rtol=1e-12)
    assert ax.get_yscale() == "log"
    title = fig._suptitle.get_text().replace("\n", " ")
    assert "Phi(M)" in title and "over all weights" in title  # the title says what each curve is


# --------------------------------------------------------------------------------------
# Steps to the target
# --------------------------------------------------------------------------------------

def test_steps_to_target_against_the_ratio(figures):
    """The target is halfway down in log loss (geometric mean of the median first and median last gd-head
    losses; a diverged one ends at inf); steps to it are ln(A / target) / k for A exp(-k t); a dashed
    horizontal line per body rate at the best response's steps; a star at ratio 1; an x where a seed
    never reaches it."""
    fig = figures["steps_to_target"]
    (ax,) = panels(fig)
    assert ax.get_xscale() == "log"
    starts, ends = [], []
    for body in BODY_RATES:
        for ratio in RATIOS:
            for s in SEEDS:
                loss = gd_loss(body, ratio, s)
                starts.append(loss[0])
                ends.append(np.inf if np.isnan(loss[-1]) else loss[-1])
    target = np.sqrt(np.median(starts) * np.median(ends))
    assert f"target loss {target:.3g}" in ax.get_title()
    assert "halfway down in log loss" in fig._suptitle.get_text().replace("\n", " ")

    def steps(a, k):
        t = np.log(a / target) / k
        return max(t, 0.0) if t <= STEPS else np.inf

    for body in BODY_RATES:
        reached, means = [], []
        for ratio in RATIOS:
            per_seed = [steps(amplitude(s), body * (1 + np.log10(ratio))) if (body, ratio, s) != DIVERGING
                        else np.inf for s in SEEDS]
            if np.isfinite(per_seed).all():
                reached.append(ratio)
                means.append(np.mean(per_seed))
        ln = line(ax, f"body_rate {body:g}")
        np.testing.assert_allclose(ln.get_xdata(), reached)
        np.testing.assert_allclose(ln.get_ydata(), means, rtol=1e-9)
        best = line(ax, f"best response body_rate {body:g}")
        want = np.mean([steps(0.5 * amplitude(s), 5 * body) for s in SEEDS])
        np.testing.assert_allclose(best.get_ydata(), [want, want], rtol=1e-9)
        assert best.get_linestyle() == "--" and best.get_color() == ln.get_color()
        if 1.0 in reached:
            (star,) = [m for m in ax.get_lines() if m.get_gid() == "uniform" and m.get_color() == "crimson"
                       and np.isclose(m.get_ydata()[0], means[reached.index(1.0)])]
            assert star.get_xdata()[0] == 1.0 and star.get_marker() == "*"
    missed = [m for m in ax.get_lines() if m.get_gid() == "not reached"]
    assert any(DIVERGING[1] in m.get_xdata() for m in missed)


# --------------------------------------------------------------------------------------
# Distance to the best response
# --------------------------------------------------------------------------------------

def test_distance_to_the_best_response_with_a_slope_minus_one_guide(figures):
    fig = figures["distance_vs_ratio"]
    loss_ax, body_ax = panels(fig)
    assert "loss distance" in loss_ax.get_title() and "body distance" in body_ax.get_title()
    for body in BODY_RATES:
        body_means, loss_means = [], []
        for ratio in RATIOS:
            seeds = [s for s in SEEDS if (body, ratio, s) != DIVERGING]  # a diverged run has no distance
            norm0 = [np.linalg.norm(best_body(s)[0]) for s in seeds]
            body_means.append(np.mean([GAP * body / ratio / n for n in norm0]))
            gaps = [np.abs(gd_loss(body, ratio, s) - best_loss(body, s))[1:].max() / gd_loss(body, ratio, s)[0]
                    for s in seeds]
            loss_means.append(np.mean(gaps))
        ln = line(body_ax, f"body_distance lr_body {body:g}")
        np.testing.assert_allclose(ln.get_xdata(), RATIOS)
        np.testing.assert_allclose(ln.get_ydata(), body_means, rtol=1e-9)
        np.testing.assert_allclose(line(loss_ax, f"loss_distance lr_body {body:g}").get_ydata(), loss_means,
                                   rtol=1e-9)
    for ax in (loss_ax, body_ax):
        assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
        guide = line(ax, "guide")
        x, y = np.log(guide.get_xdata()), np.log(guide.get_ydata())
        assert np.polyfit(x, y, 1)[0] == pytest.approx(-1.0, abs=1e-12)
        first = min(line(ax, f"{q} lr_body {b:g}").get_ydata()[0] for b in BODY_RATES
                    for q in ("loss_distance", "body_distance") if ax.get_title().startswith(q.split("_")[0]))
        assert guide.get_ydata()[0] == pytest.approx(first, rel=1e-12)  # through the lowest at the smallest ratio
    assert "slope" in legend_text(fig)


def test_alternating_and_simultaneous_panels_share_the_best_response_run(tmp_path):
    """train.update varies over the gd heads: a panel per (update, body rate), the one best-response run
    (stored as simultaneous, once per grid value of update) drawn in each."""
    students, curves = [], []
    for update in ("simultaneous", "alternating"):
        for body in BODY_RATES:
            for ratio in (1.0, 10.0, np.inf):
                for seed in SEEDS:
                    sid = len(students)
                    students.append(dict(student_rows(body, ratio, seed, sid),
                                         update="simultaneous" if np.isinf(ratio) else update))
                    loss = best_loss(body, seed) if np.isinf(ratio) else \
                        gd_loss(body, ratio, seed) * (0.9 if update == "alternating" else 1.0)
                    curves.append(curve_rows(sid, loss, 0 * loss + 2, 0 * loss + 1, best_body(seed)))
    figs = dict(plot.run_figures(write_run(tmp_path, students, curves), dense=0))
    fig = figs["loss_by_ratio"]
    assert len(panels(fig)) == 4
    for update in ("simultaneous", "alternating"):
        for body in BODY_RATES:
            (ax,) = [ax for ax in panels(fig) if f"update = {update}" in ax.get_title()
                     and body_words(body) in ax.get_title()]
            np.testing.assert_allclose(line(ax, "best response").get_ydata(),
                                       seed_mean([best_loss(body, s) for s in SEEDS]), rtol=1e-12)
            scale = 0.9 if update == "alternating" else 1.0
            np.testing.assert_allclose(line(ax, "ratio 10").get_ydata(),
                                       scale * seed_mean([gd_loss(body, 10.0, s) for s in SEEDS]), rtol=1e-12)
    assert len(panels(figs["steps_to_target"])) == 2


# --------------------------------------------------------------------------------------
# Equal budget
# --------------------------------------------------------------------------------------

def test_equal_budget_lines_per_budget_with_the_uniform_split_starred(tmp_path):
    """lr_total with lr_ratio: one line per budget C (the budget summed back from its split,
    0.19999999999999998, is the same line), ratio 1 starred, no best response to draw."""
    students, curves = [], []
    for total in (0.2, 0.5):
        for ratio in (0.5, 1.0, 2.0):
            body = total / (2 + ratio)
            for seed in SEEDS:
                sid = len(students)
                students.append(student_rows(body, ratio, seed, sid, equal_budget=2 * body + body * ratio))
                loss = amplitude(seed) * np.exp(-total * LOGGED / (1 + abs(np.log(ratio))))
                curves.append(curve_rows(sid, loss, 0 * loss + 2, 0 * loss + 1, gd_body(body, ratio, seed)))
    figs = dict(plot.run_figures(write_run(tmp_path, students, curves), dense=0))
    assert sorted(figs) == ["curvature", "loss_by_ratio", "steps_to_target"]  # no twins: no distances
    (ax,) = panels(figs["steps_to_target"])
    budget_lines = sorted(ln.get_gid() for ln in ax.get_lines() if str(ln.get_gid()).startswith("lr_total"))
    assert budget_lines == ["lr_total 0.2", "lr_total 0.5"]
    stars = [ln for ln in ax.get_lines() if ln.get_gid() == "uniform"]
    assert len(stars) == 2 and all(list(s.get_xdata()) == [1.0] for s in stars)
    assert not [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("best response")]
    titles = sorted(a.get_title() for a in panels(figs["loss_by_ratio"]))
    assert titles == ["budget $C$ = 0.2", "budget $C$ = 0.5"]


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", STEMS)
def test_no_text_overlaps_and_the_title_fits(figures, stem):
    from test_plot import assert_laid_out
    fig = figures[stem]
    renderer, tight = assert_laid_out(fig)
    legend = fig.legends[0].get_window_extent(renderer)
    assert not any(legend.overlaps(box) for box in tight)


# --------------------------------------------------------------------------------------
# A real run
# --------------------------------------------------------------------------------------

def test_a_real_head_run_is_plotted_from_its_stored_curves(tmp_path):
    """A tiny engine run (2-layer, ratios 1, 10 and the best response; no curvature metrics, whose Lanczos
    programs take half a minute to compile): `lrsweep plot` writes the three other figures and the
    best-response curve is its stored train loss."""
    cfg = {"name": "heads", "seeds": [0], "task": {"kind": "linear_teacher", "input_dim": 3, "n_train": 8},
           "model": {"parameterization": "standard", "n_layers": 2, "width": 2, "activation": "linear"},
           "train": {"steps": 4, "log_every": 2, "metrics": ["body_sketch"]},
           "grid": {"lr_body": [0.05], "lr_ratio": [1, 10, float("inf")]}}
    run = lrsweep.run(lrsweep.load_config(cfg), tmp_path, progress=False).run_dir
    rc, _, err = cli_main(["plot", run])
    assert rc == 0, err
    assert {p.stem for p in (run / "plots").glob("*.png")} == set(STEMS) - {"curvature"}
    curves = lrsweep.load(run)
    stored = curves[curves["head"] == "best_response"].sort_values("step")
    fig = dict(plot.run_figures(run, dense=0))["loss_by_ratio"]
    (ax,) = panels(fig)
    np.testing.assert_allclose(line(ax, "best response").get_ydata(), stored["train_loss"], rtol=1e-12)
