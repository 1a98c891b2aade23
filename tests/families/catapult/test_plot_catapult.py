"""Seed 003's phase figures (lrsweep.families.catapult.figures through `lrsweep plot`): loss curves coloured by
eta lambda_0, final curvature against eta with the boundaries 2 / lambda_0 and 4 / lambda_0, and the
phase diagram from boundaries.parquet.

Runs are written here as tables (the producers of ``ntk_eig``, ``sharpness`` and boundaries.parquet
are built elsewhere): the uv model of Lewkowycz et al. 2020 (one point x = 1, label 0, f = v.u /
sqrt(m)) iterated in plain numpy, its NTK eigenvalue (|u|^2 + |v|^2) / m and its top Hessian
eigenvalue from a dense eigendecomposition. One real tiny run checks the CLI and the fallback.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib import cm, colors

import lrsweep
from lrsweep import plots as plot
from lrsweep.core import store
from conftest import cli_main

STEPS = 40
DIVERGE_FACTOR = 1e4
SCALED_ETAS = [0.5, 1.0, 1.5, 1.8, 2.5, 3.0, 3.5, 5.0]  # eta lambda_0: lazy, catapult, divergent


def uv_student(width: int, seed: int, eta_scaled: float):
    """One uv-model student trained by plain GD; eta lambda_0 = eta_scaled (1 + seed / 50).

    Returns (eta, per-step train loss, NTK eigenvalue, sharpness), NaN after divergence (a non-finite
    loss or one above DIVERGE_FACTOR times the initial loss).
    """
    rng = np.random.default_rng(seed)
    u, v = rng.standard_normal(width), rng.standard_normal(width)
    eta = eta_scaled * (1 + 0.02 * seed) / ((u @ u + v @ v) / width)  # seeds apart in eta lambda_0
    loss, ntk, sharp = np.full((3, STEPS + 1), np.nan)
    for t in range(STEPS + 1):
        f = u @ v / np.sqrt(width)
        if not np.isfinite(f) or (t and f * f / 2 > DIVERGE_FACTOR * loss[0]):
            break
        grad = np.concatenate([v, u]) / np.sqrt(width)
        cross = np.block([[np.zeros((width, width)), np.eye(width)], [np.eye(width), np.zeros((width, width))]])
        loss[t], ntk[t] = f * f / 2, grad @ grad
        sharp[t] = np.linalg.eigvalsh(np.outer(grad, grad) + f * cross / np.sqrt(width))[-1]
        u, v = u - eta * f * v / np.sqrt(width), v - eta * f * u / np.sqrt(width)
    return eta, loss, ntk, sharp


def phase_of(loss):
    """metrics.PHASE's definitions, written out: divergent, lazy, catapult or oscillating."""
    if np.isnan(loss[-1]):
        return "divergent"
    if np.nanmax(loss) <= loss[0]:
        return "lazy"
    return "catapult" if loss[-1] < loss[0] else "oscillating"


def write_uv_run(root: Path, widths, seeds, scaled_etas=SCALED_ETAS, ntk_logged=True) -> Path:
    """A stored uv run (students.parquet, curves.parquet, meta.json) as the engine would write it."""
    run = root / "uv" / "run0"
    students, curves = [], []
    for sid, (width, seed, x) in enumerate((w, s, x) for w in widths for s in seeds for x in scaled_etas):
        eta, loss, ntk, sharp = uv_student(width, seed, x)
        last = int(np.flatnonzero(np.isfinite(loss))[-1])
        students.append(dict(
            run_id="run0", student_id=sid, group_id=0, name="uv", kind="single_point", label=0.0,
            parameterization="ntk", n_layers=2, width=width, activation="linear", init="gaussian",
            loss="mse", input_dim=1, n_train=1, steps=STEPS, diverge_factor=DIVERGE_FACTOR, seed=seed,
            lr_1=eta, lr_2=eta, lr_total=2 * eta, final_train_loss=loss[-1], phase=phase_of(loss),
            loss_peak=np.nanmax(loss), loss_peak_step=int(np.nanargmax(loss)),
            final_sharpness=sharp[-1], final_ntk_eig=ntk[-1] if ntk_logged else np.nan,
            diverged=bool(np.isnan(loss[-1])), diverged_step=last + 1 if np.isnan(loss[-1]) else None))
        frame = pd.DataFrame({"run_id": "run0", "student_id": sid, "step": np.arange(STEPS + 1),
                              "train_loss": loss, "sharpness": sharp})
        if ntk_logged:
            frame["ntk_eig"] = ntk
        curves.append(frame)
    students = pd.DataFrame(students)
    if not ntk_logged:
        students = students.drop(columns="final_ntk_eig")
    store.write_table(students, run / "students.parquet")
    store.write_table(pd.concat(curves, ignore_index=True), run / "curves.parquet")
    store.write_json({"status": "complete", "n_students": len(students)}, run / "meta.json")
    return run


def write_boundaries(run: Path, rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    store.write_table(table, run / "boundaries.parquet")
    return table


def figures_of(run) -> dict:
    return dict(plot.run_figures(run, dense=0))


def panels(fig):
    return [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]


def colorbars(fig):
    return [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]


def legend_text(fig) -> str:
    return " ".join(t.get_text() for leg in fig.legends for t in leg.get_texts()).replace("\n", " ")


def bar_color(bar, value):
    """The colour a reader finds at ``value`` on a viridis colour bar: the bar's axis position of it."""
    position = (bar.transData + bar.transAxes.inverted()).transform((0.5, value))[1]
    return cm.viridis(position)


def lambda_0(run) -> pd.Series:
    curves = store.load(run)
    return curves[curves["step"] == 0].set_index("student_id")["ntk_eig"]


@pytest.fixture(scope="module")
def seeded_run(tmp_path_factory):
    """Two widths, three seeds: lambda_0 differs between the seeds of a width."""
    return write_uv_run(tmp_path_factory.mktemp("seeded"), widths=[8, 32], seeds=[0, 1, 2])


@pytest.fixture(scope="module")
def one_seed_run(tmp_path_factory):
    """Two widths, one seed: one lambda_0 per panel."""
    return write_uv_run(tmp_path_factory.mktemp("one"), widths=[8, 32], seeds=[3])


# --------------------------------------------------------------------------------------
# Which figures
# --------------------------------------------------------------------------------------

def test_phase_figures_appear_for_a_catapult_run_and_not_for_a_seed_000_run(seeded_run, tmp_path):
    """A uv run (phases, ntk_eig, sharpness; no test loss) gets loss curves and final curvature
    (was: a KeyError on test_loss); a seed-000 run gets neither."""
    stems = set(figures_of(seeded_run))
    assert {"loss_curves", "curvature_vs_lr"} <= stems
    assert not any(s.startswith(("lines", "loss_vs_lr", "heatmap", "phase_diagram")) for s in stems)
    seed_000 = lrsweep.run(lrsweep.load_config(
        {"name": "lb", "seeds": [0, 1], "task": {"input_dim": 4, "n_train": 4, "design": "orthogonal",
                                                 "target": "orthonormal"},
         "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": 4}, "init": "orthogonal",
         "train": {"steps": 2}, "grid": {"lr": [1.0, 3.0, 10.0]}}), tmp_path, progress=False).run_dir
    stems = set(figures_of(seed_000))
    assert stems and not any(s.startswith(("loss_curves", "curvature", "phase_diagram")) for s in stems)


def test_lrsweep_plot_writes_the_phase_figures(seeded_run, tmp_path):
    write_boundaries(seeded_run, [dict(width=w, seed=s, boundary=b, lr_low=1.0, lr_high=1.2, lr=1.1, bracketed=True,
                                       initial_train_loss=0.5, initial_ntk_eig=2.0, n_trained=8)
                                  for w in (8, 32) for s in (0, 1) for b in ("lazy/catapult", "catapult/divergent")])
    try:
        rc, out, err = cli_main(["plot", seeded_run, "--out", tmp_path])
    finally:
        (seeded_run / "boundaries.parquet").unlink()
    assert rc == 0, err
    written = {p.name for p in tmp_path.iterdir()}
    for stem in ("loss_curves", "curvature_vs_lr", "phase_diagram"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= written


def test_a_run_no_figure_applies_to_is_a_one_line_error(tmp_path):
    """Phases stored but separate layer rates (no single eta lambda_0) and no test loss: exit 2 with one
    line saying what each figure needs, no plots directory (was: a KeyError traceback)."""
    run = write_uv_run(tmp_path, widths=[8], seeds=[0], scaled_etas=[0.5, 1.0])
    students = store.load(run, "students")
    store.write_table(students.assign(lr_2=2 * students["lr_1"]), run / "students.parquet")
    rc, out, err = cli_main(["plot", run])
    assert rc == 2 and err.count("\n") == 1 and "one rate shared by every layer" in err
    assert not (run / "plots").exists()


# --------------------------------------------------------------------------------------
# Loss curves
# --------------------------------------------------------------------------------------

def _student_lines(ax):
    return {int(ln.get_gid().split()[1]): ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("student")}


def test_loss_curves_are_coloured_monotonically_in_eta_lambda_0(seeded_run):
    """One log-y panel per width, one curve per student, its colour the colour bar's colour of its
    own eta lambda_0 (computed here from the stored lr and step-0 ntk_eig), darker to lighter as
    eta lambda_0 grows; the bar is labelled eta lambda_0 and marks 2 and 4."""
    fig = figures_of(seeded_run)["loss_curves"]
    students = store.load(seeded_run, "students").set_index("student_id")
    scaled = students["lr_1"] * lambda_0(seeded_run)
    (bar,) = colorbars(fig)
    assert r"\eta\lambda_0" in bar.get_ylabel()
    assert sorted(round(ln.get_ydata()[0], 9) for ln in bar.get_lines()) == [2.0, 4.0]
    axes = panels(fig)
    assert len(axes) == 2 and all(ax.get_yscale() == "log" for ax in axes)
    for ax, width in zip(axes, (8, 32)):
        assert f"h = {width}" in ax.get_title()
        lines = _student_lines(ax)
        assert set(lines) == set(students.index[students["width"] == width])
        order = sorted(lines, key=lambda sid: scaled[sid])
        lum = [np.dot(colors.to_rgb(lines[sid].get_color()), [0.2126, 0.7152, 0.0722]) for sid in order]
        assert np.all(np.diff(lum) > 0)  # viridis brightens monotonically
        for sid in order:
            assert np.allclose(lines[sid].get_color(), bar_color(bar, scaled[sid]), atol=1.5 / 255)
        curves = store.load(seeded_run)
        for sid, ln in lines.items():  # the stored loss at every step where a log axis can show it
            want = curves[curves["student_id"] == sid].sort_values("step")
            want = want[np.isfinite(want["train_loss"]) & (want["train_loss"] > 0)]
            assert np.array_equal(ln.get_xdata(), want["step"])
            assert np.allclose(ln.get_ydata(), want["train_loss"], rtol=1e-12)
    assert "diverged" in legend_text(fig)


def test_loss_curves_fall_back_to_eta_without_ntk_eig(tmp_path):
    """A real uv run with phases but no ntk_eig: `lrsweep plot` works (was: KeyError test_loss) and
    colours by eta."""
    run = lrsweep.run(lrsweep.load_config(
        {"name": "uv", "seeds": [0], "task": {"kind": "single_point"}, "init": "gaussian",
         "model": {"parameterization": "ntk", "n_layers": 2, "width": 16, "activation": "linear"},
         "train": {"steps": 8, "metrics": ["phase"]}, "grid": {"lr": [0.5, 1.5, 3.0]}}),
        tmp_path, progress=False).run_dir
    rc, _, err = cli_main(["plot", run])
    assert rc == 0, err
    assert (run / "plots" / "loss_curves.png").exists()
    fig = figures_of(run)["loss_curves"]
    (bar,) = colorbars(fig)
    assert r"learning rate $\eta$" in bar.get_ylabel() and "lambda" not in bar.get_ylabel()
    assert not bar.get_lines()  # 2 and 4 are marks in eta lambda_0 only
    lr = store.load(run, "students").set_index("student_id")["lr_1"]
    lines = _student_lines(panels(fig)[0])
    assert set(lines) == set(lr.index)
    for sid, ln in lines.items():
        assert np.allclose(ln.get_color(), bar_color(bar, lr[sid]), atol=1.5 / 255)


# --------------------------------------------------------------------------------------
# Final curvature
# --------------------------------------------------------------------------------------

def _vertical_lines(ax):
    return sorted(float(ln.get_xdata()[0]) for ln in ax.get_lines() if str(ln.get_gid()).startswith("boundary"))


def test_curvature_boundaries_at_two_and_four_over_lambda_0(one_seed_run):
    """One seed: final sharpness and final NTK eigenvalue against eta, vertical lines at 2/lambda_0 and
    4/lambda_0 of the panel's student, the curve 2/eta, points at the stored values, coloured by phase."""
    fig = figures_of(one_seed_run)["curvature_vs_lr"]
    students = store.load(one_seed_run, "students")
    lam0 = lambda_0(one_seed_run)
    axes = panels(fig)
    assert len(axes) == 4  # (sharpness, ntk eigenvalue) x two widths
    for i, ax in enumerate(axes):
        width, quantity = (8, 32)[i // 2], ("final_sharpness", "final_ntk_eig")[i % 2]
        g = students[students["width"] == width]
        (l0,) = set(lam0[g["student_id"]].round(12))
        assert np.allclose(_vertical_lines(ax), [2 / l0, 4 / l0], rtol=1e-12)
        (curve,) = [ln for ln in ax.get_lines() if ln.get_gid() == "two over eta"]
        assert np.allclose(curve.get_ydata() * curve.get_xdata(), 2.0)
        drawn = {}
        for coll in ax.collections:
            if str(coll.get_gid()).startswith("phase"):
                for x, y in coll.get_offsets():
                    drawn[round(x, 12)] = (coll.get_gid().split()[1], y)
        alive = g[np.isfinite(g[quantity])]
        assert sorted(drawn) == sorted(alive["lr_1"].round(12))
        for row in alive.itertuples():
            phase, y = drawn[round(row.lr_1, 12)]
            assert phase == row.phase and np.isclose(y, getattr(row, quantity), rtol=1e-12)
        marks = [ln for ln in ax.get_lines() if ln.get_gid() == "diverged"]
        assert sum(len(m.get_xdata()) for m in marks) == int((~np.isfinite(g[quantity])).sum()) > 0
    legend = legend_text(fig)
    assert all(f"{p} phase" in legend for p in ("lazy", "catapult"))


def test_curvature_in_units_of_lambda_0_where_seeds_differ(seeded_run):
    """lambda_0 differs between seeds: x = eta lambda_0 with lines at 2 and 4, y = value / lambda_0,
    and the curve 2 / (eta lambda_0)."""
    fig = figures_of(seeded_run)["curvature_vs_lr"]
    students = store.load(seeded_run, "students").set_index("student_id")
    lam0 = lambda_0(seeded_run)
    for ax in panels(fig):
        assert _vertical_lines(ax) == [2.0, 4.0]
        assert r"\eta\lambda_0" in ax.get_xlabel() and r"\lambda_0" in ax.get_ylabel()
        (curve,) = [ln for ln in ax.get_lines() if ln.get_gid() == "two over eta"]
        assert np.allclose(curve.get_ydata() * curve.get_xdata(), 2.0)
    ax = panels(fig)[1]  # h = 8, final NTK eigenvalue
    g = students[(students["width"] == 8) & np.isfinite(students["final_ntk_eig"])]
    want = sorted(zip((g["lr_1"] * lam0[g.index]).round(9), (g["final_ntk_eig"] / lam0[g.index]).round(9)))
    got = sorted((round(x, 9), round(y, 9)) for c in ax.collections if str(c.get_gid()).startswith("phase")
                 for x, y in c.get_offsets())
    assert got == want
    # the catapult lands below 2 / eta: a property of the data this figure exists to show
    cat = g[g["phase"] == "catapult"]
    assert len(cat) and (cat["final_ntk_eig"] < 2 / cat["lr_1"]).all()


# --------------------------------------------------------------------------------------
# Phase diagram
# --------------------------------------------------------------------------------------

def _boundary_rows(rng, widths, activations, seeds, lam0_nan=False):
    """Rows as `lrsweep boundary` writes them: a unit's config columns (group_id first, one group per
    width and activation), its seed and initial values, then the estimate; lr lands near eta lambda_0
    = 2 and 4 + 8 / sqrt(width)."""
    rows = []
    for g, (w, a) in enumerate((w, a) for w in widths for a in activations):
        for s in seeds:
            lam0 = np.nan if lam0_nan else 2.0 + 0.1 * rng.standard_normal()
            for b, at in (("lazy/catapult", 2.0), ("catapult/divergent", 4.0 + 8.0 / np.sqrt(w))):
                lr = (at + 0.05 * rng.standard_normal()) / (2.0 if lam0_nan else lam0)
                rows.append(dict(group_id=g, name="uv", kind="single_point", parameterization="ntk", n_layers=2,
                                 width=w, activation=a, steps=STEPS, seed=s, initial_train_loss=0.4,
                                 initial_ntk_eig=lam0, unit_id=g * len(seeds) + s, n_coarse=8, boundary=b,
                                 bracketed=True, lr_low=lr * 0.99, lr_high=lr * 1.01, lr=lr, rounds=4, n_trained=12))
    return rows


def test_phase_diagram_lines_pass_through_the_stored_estimates(seeded_run, tmp_path):
    """x = width (log), y = eta lambda_0; per boundary the seed mean of the bracketed estimates as a
    line and the min-max as a band; dashed 2 and 4; regions named in order; one panel per activation;
    an unbracketed estimate is left out and counted."""
    rng = np.random.default_rng(0)
    rows = _boundary_rows(rng, [16, 64, 256, 1024], ["linear", "relu"], [0, 1, 2])
    rows[0] = {**rows[0], "bracketed": False, "lr": np.nan, "lr_low": 0.1, "lr_high": 5.0}
    run = write_uv_run(tmp_path, widths=[8], seeds=[0], scaled_etas=[1.0, 3.0])
    table = write_boundaries(run, rows)
    figures = figures_of(run)
    fig = figures["phase_diagram"]
    axes = panels(fig)
    assert len(axes) == 2
    for ax, activation in zip(axes, ["linear", "relu"]):
        assert activation in ax.get_title() and ax.get_xscale() == "log"
        assert r"\eta\lambda_0" in ax.get_ylabel()
        t = table[(table["activation"] == activation) & table["bracketed"]]
        for boundary in ("lazy/catapult", "catapult/divergent"):
            b = t[t["boundary"] == boundary]
            y = b["lr"] * b["initial_ntk_eig"]
            want = y.groupby(b["width"]).agg(["mean", "min", "max"])
            (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == f"boundary {boundary}"]
            assert np.allclose(line.get_xdata(), want.index) and np.allclose(line.get_ydata(), want["mean"], rtol=1e-12)
            (band,) = [c for c in ax.collections if c.get_gid() == f"band {boundary}"]
            vertices = band.get_paths()[0].vertices
            for width, r in want.iterrows():
                ys = vertices[np.isclose(vertices[:, 0], width), 1]
                assert np.isclose(ys.min(), r["min"], rtol=1e-12) and np.isclose(ys.max(), r["max"], rtol=1e-12)
        limits = sorted(ln.get_ydata()[0] for ln in ax.get_lines() if str(ln.get_gid()).startswith("wide limit"))
        assert limits == [2.0, 4.0]
        regions = {t.get_gid().split()[1]: t.get_position()[1] for t in ax.texts if str(t.get_gid()).startswith("region")}
        assert regions["lazy"] < regions["catapult"] < regions["divergent"]
    assert "1 estimates outside" in axes[0].get_title() and "outside" not in axes[1].get_title()


def test_phase_diagram_in_eta_where_lambda_0_is_unknown(tmp_path):
    """initial_ntk_eig NaN: y = eta, no wide-limit lines (they need lambda_0); depth as x on a linear axis."""
    rows = _boundary_rows(np.random.default_rng(1), [16, 24, 32], ["linear"], [0, 1], lam0_nan=True)
    rows = [{**r, "width": 16, "n_layers": r["width"] // 8} for r in rows]
    run = write_uv_run(tmp_path, widths=[8], seeds=[0], scaled_etas=[1.0, 3.0])
    table = write_boundaries(run, rows)
    (ax,) = panels(figures_of(run)["phase_diagram"])
    assert ax.get_xscale() == "linear" and "number of layers" in ax.get_xlabel()
    assert r"$\eta$" in ax.get_ylabel() and "lambda" not in ax.get_ylabel()
    assert not [ln for ln in ax.get_lines() if str(ln.get_gid()).startswith("wide limit")]
    b = table[table["boundary"] == "lazy/catapult"]
    (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "boundary lazy/catapult"]
    assert np.allclose(line.get_ydata(), b.groupby("n_layers")["lr"].mean(), rtol=1e-12)


# --------------------------------------------------------------------------------------
# Layout
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["loss_curves", "curvature_vs_lr", "phase_diagram"])
def test_no_text_overlaps_and_the_title_fits(stem, tmp_path):
    """Panels (with their labels) clear each other and the colour bar, tick labels do not pile up,
    and every title line fits in the figure (was: a one-panel title cut at both sides)."""
    from test_plot import assert_laid_out
    run = write_uv_run(tmp_path, widths=[8], seeds=[0])  # one panel (pair): the narrowest figure
    if stem == "phase_diagram":
        write_boundaries(run, _boundary_rows(np.random.default_rng(2), [16, 64, 256], ["linear"], [0, 1]))
    fig = figures_of(run)[stem]
    assert_laid_out(fig)


def test_many_students_in_a_panel_are_an_even_selection_said_in_the_title(tmp_path):
    """More than MAX_STUDENT_CURVES students in a panel: that many curves, the smallest and largest
    eta lambda_0 among them, and "N of M students" in the panel title."""
    from lrsweep.families.catapult import figures as plot_catapult
    n = plot_catapult.MAX_STUDENT_CURVES + 10
    run = write_uv_run(tmp_path, widths=[4], seeds=[0], scaled_etas=list(np.linspace(0.2, 3.0, n)))
    (ax,) = panels(figures_of(run)["loss_curves"])
    lines = _student_lines(ax)
    scaled = (store.load(run, "students").set_index("student_id")["lr_1"] * lambda_0(run))
    assert len(lines) == plot_catapult.MAX_STUDENT_CURVES
    assert {scaled.idxmin(), scaled.idxmax()} <= set(lines)
    assert f"{plot_catapult.MAX_STUDENT_CURVES} of {n} students" in ax.get_title()


def test_plot_of_a_boundary_run_draws_its_estimates(tmp_path):
    """`lrsweep boundary` then `lrsweep plot`: a phase diagram over the widths whose lines are the seed
    means of the stored boundaries.parquet (lr: ntk_eig is not logged), beside the loss curves."""
    import yaml
    cfg = {"name": "uvb", "seeds": [0, 1], "task": {"kind": "single_point"}, "init": "gaussian",
           "model": {"parameterization": "ntk", "n_layers": 2, "width": 8, "activation": "linear", "output_dim": 1},
           "train": {"steps": 20}, "grid": {"width": [4, 16], "lr": {"geomspace": [0.3, 6.0, 5]}}}
    path = tmp_path / "uvb.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, _, err = cli_main(["boundary", path, "--out", tmp_path, "--rtol", "0.05", "--quiet"])
    assert rc == 0, err
    (run,) = (tmp_path / "uvb").iterdir()
    figures = figures_of(run)
    assert {"loss_curves", "phase_diagram"} <= set(figures)
    (ax,) = panels(figures["phase_diagram"])
    stored = pd.read_parquet(run / "boundaries.parquet")
    assert stored["bracketed"].all()
    for boundary, b in stored[stored["bracketed"]].groupby("boundary"):
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == f"boundary {boundary}"]
        want = b.groupby("width")["lr"].mean()
        assert np.allclose(line.get_xdata(), want.index) and np.allclose(line.get_ydata(), want, rtol=1e-12)


# --------------------------------------------------------------------------------------
# Thresholds from the theory of the run's loss
# --------------------------------------------------------------------------------------

def _limit_marks(fig):
    """Values marked on the loss curves' colour bar."""
    (bar,) = colorbars(fig)
    return sorted(float(ln.get_ydata()[0]) for ln in bar.get_lines() if str(ln.get_gid()).startswith("limit"))


def _curves(ax) -> dict:
    """gid -> the constant x * y of each k / eta curve of a panel."""
    return {ln.get_gid(): float(np.median(ln.get_xdata() * ln.get_ydata())) for ln in ax.get_lines()
            if str(ln.get_gid()).endswith("over eta")}


@pytest.fixture(scope="module")
def two_loss_run(tmp_path_factory):
    """A real run of seed 003's one-hidden-layer linear network on degenerate data (Theorem 2): one
    seed, exponential and logistic loss, eta lambda_0 from ~0.5 to ~25."""
    cfg = {"name": "thm2", "seeds": [3], "init": "gaussian",
           "task": {"kind": "classification", "data": "degenerate", "n_train": 2, "input_dim": 1},
           "model": {"parameterization": "ntk", "n_layers": 2, "width": 8, "activation": "linear", "output_dim": 1},
           "train": {"steps": 150, "log_every": 50, "metrics": ["loss_peak", "phase", "sharpness", "ntk_eig"]},
           "grid": {"loss": ["exponential", "logistic"], "lr": {"geomspace": [0.3, 12.0, 13]}}}
    return lrsweep.run(lrsweep.load_config(cfg), tmp_path_factory.mktemp("thm2"), progress=False).run_dir


def test_each_loss_gets_its_own_figures_with_its_thresholds(two_loss_run):
    """One figure per loss. Logistic (c = loss''(0) = 1/4): a line at 8/lambda_0 and none at 4/lambda_0
    or 2/lambda_0, the NTK panel's curve 8/eta, the sharpness panel's 2/eta (GD's bound on c lambda),
    8 marked on the colour bar; exponential (c = 1): 2/lambda_0 only (no 4/lambda_0: that is mse's uv
    divergence), 2/eta on both panels."""
    figures = figures_of(two_loss_run)
    assert {f"{s}_{loss}" for s in ("loss_curves", "curvature_vs_lr") for loss in ("exponential", "logistic")} \
        <= set(figures)
    assert not {"loss_curves", "curvature_vs_lr"} & set(figures)
    (lam0,) = set(lambda_0(two_loss_run).round(12))
    for loss, at, ntk_curve in (("logistic", 8.0, "8 over eta"), ("exponential", 2.0, "two over eta")):
        fig = figures[f"curvature_vs_lr_{loss}"]
        sharpness_ax, ntk_ax = panels(fig)
        for ax in (sharpness_ax, ntk_ax):
            assert np.allclose(_vertical_lines(ax), [at / lam0], rtol=1e-12)
        assert _curves(ntk_ax) == pytest.approx({ntk_curve: at}, rel=1e-9)
        assert _curves(sharpness_ax) == pytest.approx({"two over eta": 2.0}, rel=1e-9)
        legend = legend_text(fig)
        assert f"{loss}''(0)" in legend and "4/" not in legend and "uv model" not in legend
        assert _limit_marks(figures[f"loss_curves_{loss}"]) == [at]
    assert "GD's stability bound on the sharpness" in legend_text(figures["curvature_vs_lr_logistic"])


def test_the_engine_follows_the_logistic_thresholds_the_figure_draws(two_loss_run):
    """The logistic students' phases against the lines drawn: lazy below eta lambda_0 = 8, the loss
    rises above it, and a landed catapult has eta lambda_final <= 8 (= 2 / c)."""
    students = store.load(two_loss_run, "students")
    s = students[students["loss"] == "logistic"].assign(rate=lambda d: d["lr_1"] * d["student_id"].map(
        lambda_0(two_loss_run)))
    assert (s.loc[s["rate"] < 8 * 0.97, "phase"] == "lazy").all() and (s["rate"] < 8 * 0.97).sum() >= 4
    assert (s.loc[(s["rate"] > 8 * 1.03) & (s["rate"] < 14), "phase"] != "lazy").all()
    cat = s[s["phase"] == "catapult"]
    assert len(cat) and (cat["lr_1"] * cat["final_ntk_eig"] <= 8 * (1 + 1e-3)).all()


def test_the_lines_come_from_theory_thresholds(two_loss_run, monkeypatch):
    """Mutation: a wrong theory.thresholds moves every line drawn (no second table in the figures)."""
    from lrsweep.families.catapult import theory
    monkeypatch.setattr(theory, "thresholds", lambda loss: theory.Thresholds(3.0, 5.0, 6.0))
    figures = figures_of(two_loss_run)
    (lam0,) = set(lambda_0(two_loss_run).round(12))
    _, ntk_ax = panels(figures["curvature_vs_lr_logistic"])
    assert np.allclose(_vertical_lines(ntk_ax), [3 / lam0, 6 / lam0], rtol=1e-12)
    assert _curves(ntk_ax) == pytest.approx({"5 over eta": 5.0}, rel=1e-9)
    assert _limit_marks(figures["loss_curves_logistic"]) == [3.0, 6.0]


def test_mse_figures_are_unchanged(one_seed_run):
    """mse (c = 1): the figures keep their names, the colour bar marks 2 and 4, every panel its lines
    at 2/lambda_0 and 4/lambda_0 and the one curve 2/eta."""
    figures = figures_of(one_seed_run)
    assert {"loss_curves", "curvature_vs_lr"} <= set(figures)
    assert _limit_marks(figures["loss_curves"]) == [2.0, 4.0]
    for ax in panels(figures["curvature_vs_lr"]):
        assert len(_vertical_lines(ax)) == 2 and _curves(ax) == pytest.approx({"two over eta": 2.0}, rel=1e-9)
    legend = legend_text(figures["curvature_vs_lr"])
    assert "catapult | divergent, 4/" in legend and "stability bound" not in legend


def test_phase_diagram_over_init_scale_per_loss(tmp_path):
    """boundaries over the init scale (f_0 ~ s^2) and two losses: one diagram per loss, x = init scale
    (log), the loss's theory lines only (exponential 2, logistic 8; no 4)."""
    rows = []
    for uid, (loss, s, seed) in enumerate((l, s, d) for l in ("exponential", "logistic") for s in (0.1, 0.3, 1.0)
                                          for d in (0, 1)):
        lazy = 2.0 if loss == "exponential" else 8.0
        for b, at in (("lazy/catapult", lazy), ("catapult/divergent", 2 * lazy + s)):
            rows.append(dict(group_id=0, name="w", loss=loss, width=16, init_scale=s, seed=seed, unit_id=uid,
                             boundary=b, bracketed=True, lr=at / 2.0, lr_low=at / 2.02, lr_high=at / 1.98,
                             initial_train_loss=1.0, initial_ntk_eig=2.0, n_coarse=8, rounds=4, n_trained=12))
    run = write_uv_run(tmp_path, widths=[8], seeds=[0], scaled_etas=[1.0, 3.0])
    table = write_boundaries(run, rows)
    figures = figures_of(run)
    assert "phase_diagram" not in figures
    for loss, at in (("exponential", 2.0), ("logistic", 8.0)):
        (ax,) = panels(figures[f"phase_diagram_{loss}"])
        assert ax.get_xscale() == "log" and "init scale" in ax.get_xlabel()
        assert [ln.get_ydata()[0] for ln in ax.get_lines() if str(ln.get_gid()).startswith("wide limit")] == [at]
        b = table[(table["loss"] == loss) & (table["boundary"] == "catapult/divergent")]
        (line,) = [ln for ln in ax.get_lines() if ln.get_gid() == "boundary catapult/divergent"]
        assert np.allclose(line.get_xdata(), [0.1, 0.3, 1.0])
        assert np.allclose(line.get_ydata(), (b["lr"] * 2.0).groupby(b["init_scale"]).mean(), rtol=1e-12)
