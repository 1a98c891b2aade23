"""``lrsweep boundary``: bisection of the phase boundaries, checked against plain numpy iterations of
the same students (float64), closed forms derived independently here, chunk and resume invariance,
and bad input."""

import math

import numpy as np
import pandas as pd
import pytest
from conftest import cli_main, numpy_instance

from lrsweep.families.catapult import boundary
from lrsweep.core import config
from lrsweep.core import runner

RTOL = 1e-3


def uv_config(**train):
    return {"name": "uv", "seeds": [0, 1, 2], "task": {"kind": "single_point"},
            "model": {"parameterization": "ntk", "n_layers": 2, "width": 16, "activation": "linear", "output_dim": 1},
            "init": "gaussian", "train": {"steps": 60, "log_every": 30, "metrics": ["ntk_eig"], **train},
            "grid": {"lr": {"geomspace": [0.2, 5.0, 6]}}}


def linear_config(loss, init_scale):
    return {"name": f"thm1_{loss}", "seeds": [0, 1], "init_scale": init_scale,
            "task": {"kind": "classification", "data": "degenerate", "n_train": 2, "input_dim": 1},
            "model": {"parameterization": "standard", "n_layers": 1, "width": 1, "output_dim": 1},
            "init": "gaussian", "train": {"loss": loss, "steps": 40, "log_every": 40},
            "grid": {"lr": {"geomspace": [0.05, 40.0, 7]}}}


def uv_phase(u, v, lr, steps, factor=1e6):
    """Plain GD on f = v.u / sqrt(m), L = f^2 / 2 (vectors, float64): the phase by seed 003's rules."""
    m = len(u)
    losses = []
    for _ in range(steps + 1):
        f = u @ v / math.sqrt(m)
        losses.append(0.5 * f * f)
        if not np.isfinite(losses[-1]) or losses[-1] > factor * max(losses[0], 1e-30):
            return "divergent"
        u, v = u - lr * f * v / math.sqrt(m), v - lr * f * u / math.sqrt(m)
    if max(losses) <= losses[0]:
        return "lazy"
    return "catapult" if losses[-1] < losses[0] else "oscillating"


def plain_bisect(predicate, lo, hi, rtol=1e-9):
    while hi / lo > 1 + rtol:
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if predicate(mid) else (mid, hi)
    return math.sqrt(lo * hi)


@pytest.fixture(scope="module")
def uv_run(tmp_path_factory):
    import jax
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        out = tmp_path_factory.mktemp("uv")
        summary = boundary.run_boundary(config.load_config(uv_config()), out, rtol=RTOL, x64=True, progress=False)
        yield summary, out
    finally:
        jax.config.update("jax_enable_x64", old)


def test_uv_boundaries_bracket_the_plain_iteration(uv_run):
    """Both boundaries of every seed contain the rate where a plain numpy GD of the same u, v changes
    phase, and the lazy/catapult one contains the first-step condition |1 - eta l0 + eta^2 f0^2/m| = 1,
    eta = 4 / (l0 + sqrt(l0^2 - 8 f0^2 / m)), derived here: the loss rises iff it rises at step 1."""
    summary, _ = uv_run
    table = summary.table
    students, _ = runner.prepare(config.load_config(uv_config()))
    assert len(table) == 3 * 2 and table["bracketed"].all()
    for seed in (0, 1, 2):
        sid = int(students[students["seed"] == seed]["student_id"].iloc[0])
        _, _, (w1, w2), _ = numpy_instance(students, sid)
        u, v, m = w1.ravel(), w2.ravel(), 16
        lam, f2 = (u @ u + v @ v) / m, (u @ v) ** 2 / m
        rise = 4 / (lam + math.sqrt(lam ** 2 - 8 * f2 / m))
        rows = table[table["seed"] == seed].set_index("boundary")
        plain = {"lazy/catapult": plain_bisect(lambda e: uv_phase(u, v, e, 60) != "lazy", 0.2, 5.0),
                 "catapult/divergent": plain_bisect(lambda e: uv_phase(u, v, e, 60) == "divergent", 0.2, 5.0)}
        assert plain["lazy/catapult"] == pytest.approx(rise, rel=1e-8)
        for name, eta in plain.items():
            lo, hi = rows.loc[name, "lr_low"], rows.loc[name, "lr_high"]
            assert lo <= eta * (1 + 1e-9) and eta <= hi * (1 + 1e-9), (seed, name, lo, eta, hi)
            assert hi / lo <= 1 + RTOL
            assert rows.loc[name, "lr"] == pytest.approx(math.sqrt(lo * hi))
        assert rows.loc["lazy/catapult", "initial_train_loss"] == pytest.approx(f2 / 2, rel=1e-12)  # L_0 = f_0^2 / 2
        assert rows.loc["lazy/catapult", "initial_ntk_eig"] == pytest.approx(lam, rel=1e-12)
    from lrsweep.families.catapult import checks as catapult_compare
    checks = catapult_compare.check_boundaries(table)
    assert set(checks["configuration"]) == {"boundary=catapult/divergent", "boundary=lazy/catapult"}
    assert checks["passed"].all() and checks["n"].sum() == 6, checks.to_dict("records")


def test_uv_boundaries_take_10x_fewer_students_than_a_dense_grid(uv_run):
    summary, _ = uv_run
    dense_per_unit = math.ceil(math.log(5.0 / 0.2) / math.log1p(RTOL)) + 1  # neighbours 1 + rtol apart
    per_unit = summary.table.drop_duplicates("unit_id")["n_coarse"].sum() + summary.n_bisection
    assert summary.n_trained == per_unit
    assert 3 * dense_per_unit >= 10 * summary.n_trained
    assert summary.n_dense == 3 * dense_per_unit


def test_boundaries_do_not_depend_on_chunking(uv_run, tmp_path, x64):
    summary, _ = uv_run
    other = boundary.run_boundary(config.load_config(uv_config()), tmp_path, rtol=RTOL, x64=True, chunk_size=2,
                                  progress=False).table
    cols = ["seed", "boundary", "lr_low", "lr_high", "bracketed"]
    pd.testing.assert_frame_equal(summary.table[cols], other[cols])


def test_boundary_resume_trains_only_the_rest(uv_run, tmp_path, x64, monkeypatch):
    """Interrupted after the first chunk of the bisection, ``--resume`` trains the remaining units
    once and gives the uninterrupted table."""
    summary, _ = uv_run
    real, calls = boundary._bisect_chunk, []

    def interrupt_second(*args):
        calls.append(len(args[2]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(boundary, "_bisect_chunk", interrupt_second)
    with pytest.raises(KeyboardInterrupt):
        boundary.run_boundary(config.load_config(uv_config()), tmp_path, rtol=RTOL, x64=True, chunk_size=2,
                              progress=False)
    (run_dir,) = list((tmp_path / "uv").iterdir())
    assert len(list((run_dir / boundary.PARTS).glob("*.parquet"))) == 1
    rc, out, _ = cli_main(["show", run_dir])
    assert rc == 0 and f"lrsweep boundary --resume {run_dir}" in out
    calls.clear()
    monkeypatch.setattr(boundary, "_bisect_chunk", lambda *a: calls.append(len(a[2])) or real(*a))
    resumed = boundary.run_boundary(None, tmp_path, resume=run_dir, chunk_size=2, progress=False)
    assert sum(calls) == 3 - 1  # units left: the first chunk held one unit (two students: both boundaries)
    cols = ["seed", "boundary", "lr_low", "lr_high"]
    pd.testing.assert_frame_equal(summary.table[cols], resumed.table[cols])
    assert not (run_dir / boundary.PARTS).exists()
    stored = pd.read_parquet(run_dir / boundary.TABLE)
    assert not stored.duplicated(["unit_id", "boundary"]).any() and len(stored) == 6
    rc, out, _ = cli_main(["show", run_dir])
    assert rc == 0 and f"boundaries: {run_dir / boundary.TABLE} (rtol 0.001" in out


@pytest.mark.parametrize("loss,init_scale,critical", [
    ("exponential", 1.0, lambda w: 2 * w / math.sinh(w)),        # |w - eta sinh w| <= |w|
    ("logistic", 3.0, lambda w: 4 * w / math.tanh(w / 2)),       # |w - (eta/2) tanh(w/2)| <= |w|
])
def test_linear_predictor_critical_rate_on_degenerate_data(loss, init_scale, critical, tmp_path, x64):
    """seed 003 Theorem 1: on two points x = 1 with labels +-1 the risk is cosh w (exponential) or
    (log(1+e^-w) + log(1+e^w)) / 2 (logistic), even and increasing in |w|, so the loss rises iff the
    first step overshoots |w_0|: eta_c = 2 w_0 / sinh w_0, or 4 w_0 / tanh(w_0 / 2) (derived here)."""
    cfg = linear_config(loss, init_scale)
    summary = boundary.run_boundary(config.load_config(cfg), tmp_path, rtol=RTOL, x64=True, progress=False)
    students, _ = runner.prepare(config.load_config(cfg))
    rows = summary.table[summary.table["boundary"] == "lazy/catapult"]
    for _, row in rows.iterrows():
        sid = int(students[students["seed"] == row["seed"]]["student_id"].iloc[0])
        _, _, (w,), _ = numpy_instance(students, sid)
        eta_c = critical(abs(float(w.ravel()[0])))
        assert row["bracketed"]
        assert row["lr_low"] <= eta_c <= row["lr_high"], (row["seed"], row["lr_low"], eta_c, row["lr_high"])
    # lrsweep compare's boundary check agrees, and fails on a table whose brackets are off by 1%
    from lrsweep.families.catapult import checks as catapult_compare
    rows = catapult_compare.check_boundaries(summary.table)
    assert len(rows) == 1 and rows["passed"].all() and rows["n"].sum() == 2, rows.to_dict("records")
    shifted = summary.table.assign(lr_low=summary.table["lr_low"] * 1.01, lr_high=summary.table["lr_high"] * 1.01)
    assert not catapult_compare.check_boundaries(shifted)["passed"].any()


def test_bad_boundary_input_exits_2_before_any_directory(tmp_path):
    import yaml
    cases = {
        "grid": {**uv_config(), "grid": {"lr_1": [0.1, 1.0], "lr_2": [1.0]}},
        "grid.lr": {**uv_config(), "grid": {"lr": [0.5]}},
    }
    for field, cfg in cases.items():
        path = tmp_path / f"{field}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        rc, out, err = cli_main(["boundary", path, "--out", tmp_path / "out", "--quiet"])
        assert rc == 2 and err.count("\n") == 1 and f"{field}:" in err, err
    path = tmp_path / "ok.yaml"
    path.write_text(yaml.safe_dump(uv_config()))
    rc, _, err = cli_main(["boundary", path, "--rtol", "0", "--out", tmp_path / "out", "--quiet"])
    assert rc == 2 and "--rtol" in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_boundaries_do_not_depend_on_the_device_count(uv_run, tmp_path):
    """The bisection program sharded over 4 (simulated) devices gives the single-device brackets."""
    import os
    import subprocess
    import sys

    import yaml
    summary, _ = uv_run
    path = tmp_path / "uv.yaml"
    path.write_text(yaml.safe_dump(uv_config()))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-m", "lrsweep.cli", "boundary", str(path), "--out", str(tmp_path / "out"),
                           "--x64", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (table,) = (tmp_path / "out").rglob(boundary.TABLE)
    import json
    assert json.loads((table.parent / "meta.json").read_text())["device_count"] == 4
    cols = ["seed", "boundary", "lr_low", "lr_high", "bracketed"]
    pd.testing.assert_frame_equal(summary.table[cols], pd.read_parquet(table)[cols])
