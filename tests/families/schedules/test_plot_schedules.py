"""Seed 004's figures (lrsweep.families.schedules.figures through `lrsweep plot`): the schedules, the collapse
T^xi eta*(t) and the final loss against T of a schedule run, and the Monte Carlo loss curves of
power-law-feature students over the exact recursion.

Schedule runs are written here as tables (what `lrsweep schedule` writes, with made-up schedules whose
values the tests know); the recursion is written out in numpy below. One real tiny run checks the
loss-curve figure end to end.
"""
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lrsweep.families.schedules import figures as plot_schedules
from lrsweep.core import store
from conftest import cli_main

POINT = {"a": 2.5, "b": 1.5, "n_features": 50, "noise_std": 0.5, "batch_size": 4}
TAG = "a2.5_b1.5_N50_noise0.5_B4"
HORIZONS = [100, 200, 400, 800]
XI = (2.5 - 1.5) / 2.5          # the seed's easy-phase statement (a - b)/a
DELTA = 2 * 1.5 - 1             # delta = 2b - 1
LOSS_POWER = {"optimal": -0.62, "constant": -0.5, "optimal_momentum": -0.6}


def lr_of(kind: str, T: int, t: np.ndarray) -> np.ndarray:
    if kind == "constant":
        return np.full(t.shape, 0.8 * T ** -0.3)
    return 0.9 * T ** -XI * (1 - t / T) ** DELTA + 1e-4 * (1 + np.sin(t))  # a wiggle: not an exact collapse


def write_schedule_run(root: Path, mc: bool = True) -> Path:
    """A stored schedule run (meta.json, schedules.parquet, schedule_summary.parquet)."""
    run = root / "sched" / "run0"
    run.mkdir(parents=True)
    long, summary = [], []
    rng = np.random.default_rng(0)
    for kind, power in LOSS_POWER.items():
        for T in HORIZONS:
            t = np.arange(T + 1)
            lr = lr_of(kind, T, t[:-1])
            beta = np.linspace(0.9, 0.5, T) if kind == "optimal_momentum" else np.zeros(T)
            long.append(pd.DataFrame({**POINT, "T": T, "schedule": kind, "t": t, "lr": np.append(lr, np.nan),
                                      "step_batch_size": np.append(np.full(T, 4.0), np.nan),
                                      "momentum": np.append(beta, np.nan), "expected_loss": 1.0 / (1 + t)}))
            loss = 2.0 * T ** power * np.exp(0.05 * rng.standard_normal())
            row = {**POINT, "T": T, "schedule": kind, "expected_loss": loss, "lr_peak": lr.max(), "lr_initial": lr[0],
                   "decay_window": float(T), "samples": 4.0 * T}
            if mc:
                row.update(mc_mean=loss * 1.05, mc_sem=loss * 0.03, mc_n=16, mc_diverged=0)
            summary.append(row)
    store.write_table(pd.concat(long, ignore_index=True), run / "schedules.parquet")
    store.write_table(pd.DataFrame(summary), run / "schedule_summary.parquet")
    store.write_json({"kind": "schedule", "status": "complete", "n_students": 0, "horizons": HORIZONS,
                      "kinds": list(LOSS_POWER)}, run / "meta.json")
    return run


@pytest.fixture(scope="module")
def schedule_figs(tmp_path_factory):
    run = write_schedule_run(tmp_path_factory.mktemp("sched"))
    return dict(plot_schedules.schedule_figures(run))


def lines_by_gid(fig) -> dict:
    return {ln.get_gid(): ln for ax in fig.axes for ln in ax.get_lines() if ln.get_gid()}


def test_plot_cli_writes_the_schedule_run_figures(tmp_path):
    run = write_schedule_run(tmp_path)
    rc, out, err = cli_main(["plot", run])
    assert rc == 0, err
    for stem in (f"schedules_{TAG}", f"collapse_{TAG}", f"loss_vs_T_{TAG}"):
        for ext in (".png", ".pdf"):
            assert (run / "plots" / (stem + ext)).is_file(), stem + ext
    assert not any(p.name.startswith("verify_") for p in (run / "plots").iterdir())  # no --verify run


def test_collapse_curves_are_T_to_the_xi_times_the_optimal_rate(schedule_figs):
    fig = schedule_figs[f"collapse_{TAG}"]
    lines = lines_by_gid(fig)
    peaks = []
    for T in HORIZONS:
        t = np.arange(T)
        want = T ** XI * lr_of("optimal", T, t)
        line = lines[f"collapse T={T}"]
        np.testing.assert_allclose(line.get_xdata(), t / T, rtol=1e-12)
        np.testing.assert_allclose(line.get_ydata(), want, rtol=1e-9)
        np.testing.assert_allclose(lines[f"collapse log T={T}"].get_ydata(), want, rtol=1e-9)
        peaks.append(want.max())
    shape = lines["shape"]
    x = np.asarray(shape.get_xdata())
    np.testing.assert_allclose(shape.get_ydata(), np.median(peaks) * (1 - x) ** DELTA, rtol=1e-9)
    assert shape.get_linestyle() == "--"
    assert fig.axes[1].get_xscale() == "log" and fig.axes[1].get_yscale() == "log"
    assert len(fig.axes) == 3  # two panels and one colour bar


def test_loss_vs_T_legend_carries_the_fitted_exponent_and_mc_error_bars(schedule_figs):
    fig = schedule_figs[f"loss_vs_T_{TAG}"]
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    texts = [t.get_text().replace("\n", " ") for t in fig.legends[0].get_texts()]
    for kind, words in (("optimal", "optimal (free)"), ("constant", "best constant")):
        line = lines_by_gid(fig)[f"loss {kind}"]
        T, loss = np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)
        assert list(T) == HORIZONS
        slope = np.polyfit(np.log(T), np.log(loss), 1)[0]
        label = next(t for t in texts if t.startswith(words))
        shown = float(re.search(r"T\^\{(-?[\d.]+)\}", label).group(1))
        assert shown == pytest.approx(slope, abs=6e-4)
    # Monte Carlo means with +-1 SE bars: the caps sit at mean -+ sem
    mc = lines_by_gid(fig)["mc optimal"]
    want = lines_by_gid(fig)["loss optimal"].get_ydata() * 1.05
    np.testing.assert_allclose(mc.get_ydata(), want, rtol=1e-9)
    (bars,) = [c for c in ax.containers if c.lines[0] is mc]
    caps = np.sort(np.concatenate([cap.get_ydata() for cap in bars.lines[1]]))
    np.testing.assert_allclose(caps, np.sort(np.concatenate([want * (1 - 0.03 / 1.05), want * (1 + 0.03 / 1.05)])),
                               rtol=1e-9)
    assert any("Monte Carlo" in t for t in texts)


def test_loss_vs_T_without_verify_has_no_error_bars(tmp_path):
    run = write_schedule_run(tmp_path, mc=False)
    fig = dict(plot_schedules.schedule_figures(run))[f"loss_vs_T_{TAG}"]
    assert not fig.axes[0].containers
    assert not any("Monte Carlo" in t.get_text() for t in fig.legends[0].get_texts())


def test_schedules_figure_draws_lr_per_kind_and_momentum_where_it_varies(schedule_figs):
    fig = schedule_figs[f"schedules_{TAG}"]
    lines = lines_by_gid(fig)
    for kind in LOSS_POWER:
        for T in HORIZONS:
            np.testing.assert_allclose(lines[f"lr {kind} T={T}"].get_ydata(), lr_of(kind, T, np.arange(T)), rtol=1e-9)
    assert {g.split()[1] for g in lines if g.startswith("momentum")} == {"optimal_momentum"}
    assert not any(g.startswith("step_batch_size") for g in lines)  # constant batch: no panel
    lr_axes = [ax for ax in fig.axes if any((ln.get_gid() or "").startswith("lr ") for ln in ax.get_lines())]
    assert len(lr_axes) == 3 and all(ax.get_yscale() == "log" for ax in lr_axes)


def test_plot_of_a_schedule_run_keeps_config_errors(tmp_path):
    rc, out, err = cli_main(["plot", tmp_path / "missing"])
    assert rc == 2 and err.count("\n") == 1 and "run" in err


# --------------------------------------------------------------------------------------
# Monte Carlo over the recursion (a real tiny run)
# --------------------------------------------------------------------------------------

def expected_sgd_loss(n: int, a: float, b: float, sigma: float, lr: float, batch: int, steps: int) -> np.ndarray:
    """E L_t, t = 0..steps, of SGD from w = 0 on power-law features: per mode C_k = E e_k^2,
    C_k' = (1 - 2 eta lam_k + (m+1)/m eta^2 lam_k^2) C_k + (eta^2/m) lam_k (L + sigma^2), L = sum lam_k C_k."""
    k = np.arange(1, n + 1, dtype=float)
    lam, c = k ** -b, k ** (b - a)
    out = [lam @ c]
    for _ in range(steps):
        loss = lam @ c
        c = (1 - 2 * lr * lam + (batch + 1) / batch * lr ** 2 * lam ** 2) * c + lr ** 2 / batch * lam * (loss + sigma ** 2)
        out.append(lam @ c)
    return np.array(out)


RF_CONFIG = """name: rf_tiny
seeds: [0, 1, 2, 3]
task: {kind: power_law_features, n_features: 12, a: 2.0, b: 1.5, noise_std: 0.3}
model: {parameterization: standard, n_layers: 1}
init: zeros
train: {optimizer: sgd, batch_size: 2, steps: 30, log_every: 5}
grid:
  lr: [0.05, 0.3]
"""


def test_loss_curves_rf_draws_the_recursion_over_the_monte_carlo_mean(tmp_path):
    import yaml

    from lrsweep.core import config
    from lrsweep.core import runner
    run = runner.run(config.load_config(yaml.safe_load(RF_CONFIG)), tmp_path / "res", x64=True, progress=False).run_dir
    rc, out, err = cli_main(["plot", run])
    assert rc == 0, err
    assert (run / "plots" / "loss_curves_rf.png").is_file() and (run / "plots" / "loss_curves_rf.pdf").is_file()
    (stem, fig), = plot_schedules.rf_figures(run, "rf_tiny")
    assert stem == "loss_curves_rf"
    curves = store.load(run)
    means = curves.groupby(["lr_1", "step"])["test_loss"].mean()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    lines = lines_by_gid(fig)
    for i, lr in enumerate(sorted(curves["lr_1"].unique())):  # drawn in the order of the grid points
        theory = lines[f"theory {i}"]
        np.testing.assert_allclose(theory.get_xdata(), np.arange(31) + 1.0)
        np.testing.assert_allclose(theory.get_ydata(), expected_sgd_loss(12, 2.0, 1.5, 0.3, lr, 2, 30), rtol=1e-6)
        mc = lines[f"mc {i}"]
        np.testing.assert_allclose(mc.get_xdata(), means[lr].index.to_numpy(float) + 1)
        np.testing.assert_allclose(mc.get_ydata(), means[lr].to_numpy(float), rtol=1e-6)
    assert len(fig.axes) == 2  # one panel, one colour bar (by the learning rate)
