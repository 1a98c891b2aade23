"""``lrsweep boundary``: bisection of the phase boundaries, checked against plain numpy iterations of
the same students (float64), closed forms derived independently here, chunk and resume invariance,
and bad input."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cli_main, device_env, numpy_instance

import lrsweep
from lrsweep.families.catapult import boundary
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core import store
from lrsweep.core.errors import StoreError

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


@pytest.fixture(scope="module")
def chunked_run(tmp_path_factory):
    """uv_config in float64 with chunks of 2 (9 chunks of the coarse grid, 2 of the bisection's 3
    units), uninterrupted: what every stopped and resumed run below must equal bit for bit."""
    import jax
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        out = tmp_path_factory.mktemp("chunked")
        yield boundary.run_boundary(config.load_config(uv_config()), out, rtol=RTOL, x64=True, chunk_size=2,
                                    progress=False).run_dir
    finally:
        jax.config.update("jax_enable_x64", old)


def test_boundaries_do_not_depend_on_chunking(uv_run, chunked_run):
    summary, _ = uv_run
    other = pd.read_parquet(chunked_run / boundary.TABLE)
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


def two_layer_config(loss, width, init_scale, lrs):
    return {"name": f"thm2_{loss}", "seeds": [0, 1], "init_scale": init_scale,
            "task": {"kind": "classification", "data": "degenerate", "n_train": 2, "input_dim": 1},
            "model": {"parameterization": "ntk", "n_layers": 2, "width": width, "activation": "linear", "output_dim": 1},
            "init": "gaussian", "train": {"loss": loss, "steps": 80, "log_every": 80, "metrics": ["ntk_eig"]},
            "grid": {"lr": {"geomspace": lrs}}}


def two_layer_phase(w1, w2, x, y, lr, loss, steps, factor=1e6):
    """Plain GD (float64) on f_i = x_i W1 W2 / sqrt(d m) (ntk, two linear layers) with the risk
    mean_i ell(y_i f_i): the phase by seed 003's rules."""
    d, m = w1.shape
    ell = (lambda z: np.exp(-z)) if loss == "exponential" else (lambda z: np.logaddexp(0.0, -z))
    slope = (lambda z: -np.exp(-z)) if loss == "exponential" else (lambda z: -1.0 / (1.0 + np.exp(z)))
    losses = []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps + 1):
            h = x @ w1 / math.sqrt(d)
            f = (h @ w2).ravel() / math.sqrt(m)
            losses.append(float(np.mean(ell(y * f))))
            if not np.isfinite(losses[-1]) or losses[-1] > factor * max(losses[0], 1e-30):
                return "divergent"
            r = (y * slope(y * f) / len(y))[:, None]  # d risk / d f_i
            g2 = h.T @ r / math.sqrt(m)
            g1 = x.T @ (r @ w2.T) / math.sqrt(d * m)
            w1, w2 = w1 - lr * g1, w2 - lr * g2
    if max(losses) <= losses[0]:
        return "lazy"
    return "catapult" if losses[-1] < losses[0] else "oscillating"


@pytest.mark.parametrize("width,init_scale,window", [(16, 1.0, True), (1024, 1.0, False)])
def test_exponential_catapult_window_is_classified_as_plain_gd_does(width, init_scale, window, tmp_path, x64,
                                                                    monkeypatch):
    """Exponential loss on degenerate data (seed 003 Theorem 2): both boundaries contain the rate where a
    plain float64 GD of the same weights changes phase (loss rises; inf/NaN or above diverge_factor L_0).
    Narrow (m = 16): a catapult window between them, a rate inside it rises and comes back below L_0
    (phase catapult, not oscillating); wide (m = 1024): the window closes (below 1 + 1e-2)."""
    cfg = two_layer_config("exponential", width, init_scale, [0.4, 3.0, 6])
    summary = boundary.run_boundary(config.load_config(cfg), tmp_path, rtol=RTOL, x64=True, progress=False)
    students, _ = runner.prepare(config.load_config(cfg))
    table = summary.table
    assert table["bracketed"].all()
    for seed in (0, 1):
        sid = int(students[students["seed"] == seed]["student_id"].iloc[0])
        _, _, (w1, w2), inst = numpy_instance(students, sid)
        x, y = inst["x"], inst["y"].ravel()
        phase = lambda e: two_layer_phase(w1, w2, x, y, e, "exponential", 80)
        rows = table[table["seed"] == seed].set_index("boundary")
        plain = {"lazy/catapult": plain_bisect(lambda e: phase(e) != "lazy", 0.4, 3.0, 1e-7),
                 "catapult/divergent": plain_bisect(lambda e: phase(e) == "divergent", 0.4, 3.0, 1e-7)}
        for name, eta in plain.items():
            lo, hi = rows.loc[name, "lr_low"], rows.loc[name, "lr_high"]
            assert lo <= eta * (1 + 1e-7) and eta <= hi * (1 + 1e-7), (seed, name, lo, eta, hi)
        ratio = plain["catapult/divergent"] / plain["lazy/catapult"]
        if window:
            assert ratio > 1.05 and phase(math.sqrt(plain["catapult/divergent"] * plain["lazy/catapult"])) == "catapult"
        else:
            assert ratio < 1.01
    # catapult.theorem2_boundaries: the brackets are the exact map's (theorem2.py, derived independently
    # of the engine), and they are not those of a map whose rate is off by 1%
    from lrsweep.families.catapult import checks, theorem2
    rows = checks.check_theorem2_boundaries(table)
    assert len(rows) == 2 and rows["passed"].all() and rows["n"].sum() == len(table), rows["detail"].tolist()
    true_phase = theorem2.network_phase
    monkeypatch.setattr(theorem2, "network_phase", lambda loss0, ntk0, eta, *args, **kw:
                        true_phase(loss0, ntk0, np.asarray(eta) * 1.01, *args, **kw))
    assert not checks.check_theorem2_boundaries(table)["passed"].any()


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
    env = device_env(4)
    proc = subprocess.run([sys.executable, "-m", "lrsweep.cli", "boundary", str(path), "--out", str(tmp_path / "out"),
                           "--x64", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (table,) = (tmp_path / "out").rglob(boundary.TABLE)
    import json
    assert json.loads((table.parent / "meta.json").read_text())["device_count"] == 4
    cols = ["seed", "boundary", "lr_low", "lr_high", "bracketed"]
    pd.testing.assert_frame_equal(summary.table[cols], pd.read_parquet(table)[cols])



# --------------------------------------------------------------------------------------
# A bisection stopped anywhere, damaged or refused: the run's status, one line, and a resume that
# gives the uninterrupted run bit for bit (float64, chunks of 2: ``chunked_run``)
# --------------------------------------------------------------------------------------

def copy_run(run: Path, tmp_path: Path) -> Path:
    """A copy of a stored run (no lock file: a command that takes the lock would leave one)."""
    dst = tmp_path / "out" / "uv" / run.name
    shutil.copytree(run, dst)
    (dst / ".lock").unlink(missing_ok=True)
    return dst


def unbisected(run: Path) -> Path:
    """``run`` as a kill -9 right after its coarse grid leaves it: students complete, the bisection
    recorded as running, no boundaries.parquet."""
    meta = json.loads((run / "meta.json").read_text())
    meta["boundary"] = {"status": "running", "rtol": RTOL}
    (run / "meta.json").write_text(json.dumps(meta))
    (run / boundary.TABLE).unlink()
    return run


def ls_status(run: Path) -> tuple[str, list[str]]:
    """(the run's status in ``lrsweep ls``, the commands ls lists to finish or repair runs)."""
    rc, out, err = cli_main(["ls", run.parent])
    assert rc == 0, err
    line = next(line for line in out.splitlines() if line.startswith(str(run) + " "))
    todo = out.split("to finish or repair:\n")[1].split("\n") if "to finish or repair:" in out else []
    return re.split(r"\s{2,}", line.strip())[-1], [t.strip() for t in todo if t.strip()]  # the last column


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    return err.strip()


def assert_same_as(run: Path, clean: Path) -> None:
    """Every table of ``run`` equals ``clean``'s exactly (run ids aside)."""
    key = ["unit_id", "boundary"]
    got, want = (pd.read_parquet(r / boundary.TABLE).sort_values(key).reset_index(drop=True) for r in (run, clean))
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    for table, key in (("students", ["student_id"]), ("curves", ["student_id", "step"])):
        got, want = (lrsweep.load(r, table=table).drop(columns="run_id").sort_values(key).reset_index(drop=True)
                     for r in (run, clean))
        pd.testing.assert_frame_equal(got[sorted(got.columns)], want[sorted(want.columns)], check_exact=True)
    meta = json.loads((run / "meta.json").read_text())["boundary"]
    assert meta["status"] == "complete" and meta["rows"] == {boundary.TABLE: 6}
    assert not (run / boundary.PARTS).exists()


def resume_cli(run: Path) -> None:
    rc, out, err = cli_main(["boundary", "--resume", run, "--quiet"])
    assert rc == 0, err
    assert ls_status(run) == ("complete", [])


# The CLI in a subprocess whose second bisection chunk stalls (outside the numerics), so a kill -9
# lands in the bisection after the first chunk's part is stored.
STALLING_CLI = """
import sys, time
from lrsweep.families.catapult import boundary
real, calls = boundary._bisect_chunk, []
def stall_second(*args):
    calls.append(1)
    if len(calls) == 2:
        time.sleep(600)
    return real(*args)
boundary._bisect_chunk = stall_second
from lrsweep.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_killed_bisection_is_incomplete_everywhere_and_resumes_bit_identically(chunked_run, tmp_path, x64):
    """kill -9 in the bisection (no handler runs): ls says incomplete and lists the boundary resume;
    show, compare and plot say so on one line and go on with the coarse grid; the resume gives the
    uninterrupted run."""
    import yaml
    path = tmp_path / "uv.yaml"
    path.write_text(yaml.safe_dump(uv_config(), sort_keys=False))  # the columns follow the YAML's order
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(lrsweep.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-c", STALLING_CLI, "boundary", str(path), "--out", str(out), "--x64",
                             "--chunk-size", "2", "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 240
    while not list(out.rglob(f"{boundary.PARTS}/*.parquet")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.kill()
    _, err = proc.communicate()
    (run,) = [p.parent for p in out.rglob("meta.json")]
    assert len(list((run / boundary.PARTS).glob("*.parquet"))) == 1, err[-2000:]
    resume = f"lrsweep boundary --resume {run}"
    assert ls_status(run) == ("incomplete: the bisection did not finish (dead) (resumable)", [resume])
    rc, stdout, err = cli_main(["show", run])
    assert rc == 0 and f"finish it with: {resume}" in stdout, err
    for command in (["compare", run], ["plot", run, "--dense", "0"]):
        rc, stdout, err = cli_main(command)
        assert rc == 0, err
        assert err.startswith(f"lrsweep: note: {run}: incomplete: the bisection did not finish") and resume in err, err
    resume_cli(run)
    assert_same_as(run, chunked_run)


def test_coarse_grid_stopped_anywhere_names_the_boundary_resume(chunked_run, tmp_path, x64, monkeypatch):
    """A run stopped in its coarse grid (failed, then as a kill -9 leaves it: dead) is resumed by
    lrsweep boundary --resume, never lrsweep run --resume (that would leave it without boundaries)."""
    real, calls = runner._write_chunk, []

    def write_then_crash(*args, **kwargs):
        if len(calls) == 3:
            raise RuntimeError("simulated crash")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "_write_chunk", write_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        boundary.run_boundary(config.load_config(uv_config()), tmp_path / "out", rtol=RTOL, x64=True, chunk_size=2,
                              progress=False)
    monkeypatch.setattr(runner, "_write_chunk", real)
    (run,) = [p.parent for p in (tmp_path / "out").rglob("meta.json")]
    resume = f"lrsweep boundary --resume {run}"
    assert ls_status(run) == ("failed: RuntimeError: simulated crash (resumable: 6/18 students)", [resume])
    meta = json.loads((run / "meta.json").read_text())
    assert meta["boundary"] == {"status": "running", "rtol": RTOL}
    meta["status"] = "running"  # as a kill -9 leaves it
    (run / "meta.json").write_text(json.dumps(meta))
    assert ls_status(run) == ("dead (resumable: 6/18 students)", [resume])
    resume_cli(run)
    assert_same_as(run, chunked_run)


def test_interrupted_bisection_says_how_to_finish_it(chunked_run, tmp_path, x64, monkeypatch):
    run = unbisected(copy_run(chunked_run, tmp_path))
    real, calls = boundary._bisect_chunk, []

    def interrupt_second(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(boundary, "_bisect_chunk", interrupt_second)
    rc, _, err = cli_main(["boundary", "--resume", run, "--quiet"])
    resume = f"lrsweep boundary --resume {run}"
    assert rc == 130 and one_line(err).endswith(f"Finish it with: {resume}"), err
    assert json.loads((run / "meta.json").read_text())["boundary"]["status"] == "interrupted"
    assert ls_status(run) == ("incomplete: the bisection did not finish (interrupted) (resumable)", [resume])
    monkeypatch.setattr(boundary, "_bisect_chunk", real)
    resume_cli(run)
    assert_same_as(run, chunked_run)


@pytest.mark.parametrize("fails", ["part", "table", "meta"])
def test_unwritable_run_is_one_line_and_resumable(chunked_run, tmp_path, x64, monkeypatch, fails):
    """A write refused mid-bisection (the second chunk's part, boundaries.parquet, or meta.json at
    the end, when the failure cannot be recorded either): one line naming the file and the command
    that finishes the run, which works once the directory is writable again; ls never says complete."""
    run = unbisected(copy_run(chunked_run, tmp_path))
    real_table, real_json, parts = store.write_table, store.write_json, []

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    def write_table(df, path, *args, **kwargs):
        if fails == "part" and Path(path).parent.name == boundary.PARTS:
            parts.append(path)
            if len(parts) == 2:
                refuse(path)
        if fails == "table" and Path(path).name == boundary.TABLE:
            refuse(path)
        return real_table(df, path, *args, **kwargs)

    def write_json(obj, path):
        if fails == "meta" and obj.get("boundary", {}).get("status") != "running":
            refuse(path)
        return real_json(obj, path)

    monkeypatch.setattr(store, "write_table", write_table)
    monkeypatch.setattr(store, "write_json", write_json)
    rc, _, err = cli_main(["boundary", "--resume", run, "--quiet"])
    file = {"part": lambda: parts[1], "table": lambda: run / boundary.TABLE, "meta": lambda: run / "meta.json"}[fails]()
    resume = f"lrsweep boundary --resume {run}"
    assert rc == 2 and one_line(err) == (f"lrsweep: cannot write {file}: Permission denied; once it is "
                                         f"writable, finish with: {resume}"), err
    monkeypatch.setattr(store, "write_table", real_table)
    monkeypatch.setattr(store, "write_json", real_json)
    status, todo = ls_status(run)
    assert status.startswith("incomplete: the bisection did not finish (") and todo == [resume], status
    if fails != "meta":
        assert "(failed: PermissionError: [Errno 13] Permission denied" in status
    resume_cli(run)
    assert_same_as(run, chunked_run)


@pytest.mark.parametrize("damage", ["truncated", "rows missing"])
def test_damaged_boundaries_table_is_named_and_rebuilt(chunked_run, tmp_path, x64, monkeypatch, damage):
    """ls says corrupt, show / compare / plot / load refuse it on one line naming the file and the
    boundary resume, and that resume rebuilds it (the bisection counted in bisections)."""
    run = copy_run(chunked_run, tmp_path)
    table = run / boundary.TABLE
    if damage == "truncated":
        table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    else:
        pd.read_parquet(table).iloc[1:].to_parquet(table)
    resume = f"lrsweep boundary --resume {run}"
    status, todo = ls_status(run)
    assert status.startswith(f"corrupt: {table}: ") and todo == [resume], status
    for command in (["show", run], ["compare", run], ["plot", run, "--dense", "0"]):
        rc, _, err = cli_main(command)
        assert rc == 2 and one_line(err).startswith(f"lrsweep: {run}: corrupt: {table}: ") \
            and err.strip().endswith(f"repair it with: {resume}"), (command, err)
    with pytest.raises(StoreError, match=re.escape(str(table))) as e:
        lrsweep.load(run, table="boundaries")
    assert str(e.value).endswith(f"repair with: {resume}")
    monkeypatch.setenv("LRSWEEP_PROGRESS_EVERY", "0")
    rc, _, err = cli_main(["boundary", "--resume", run])
    assert rc == 0, err
    progress = [line for line in err.splitlines() if "bisection" in line]
    assert progress and all(re.fullmatch(r"lrsweep: [\d.]+/6 bisections \(\d+%\), \S+ bisections/s, ETA \S+", line)
                            for line in progress), err
    assert ls_status(run) == ("complete", [])
    assert_same_as(run, chunked_run)
    pd.testing.assert_frame_equal(lrsweep.load(run, table="boundaries").drop(columns="run_id"),
                                  pd.read_parquet(chunked_run / boundary.TABLE), check_exact=True)


def test_load_reads_the_boundaries_of_a_sweep_and_refuses_an_unfinished_one(chunked_run, tmp_path):
    run = copy_run(chunked_run, tmp_path)
    got = lrsweep.load(run.parent, table="boundaries")  # the sweep's latest run
    assert (got["run_id"] == run.name).all() and len(got) == 6
    unbisected(run)
    with pytest.raises(StoreError, match=re.escape(f"{run / boundary.TABLE}: not written")) as e:
        lrsweep.load(run, table="boundaries")
    assert str(e.value).endswith(f"finish it with: lrsweep boundary --resume {run}")
    with pytest.raises(ValueError, match="allowed: curves, students, .*boundaries"):
        lrsweep.load(run, table="boundary")


def _plain(run: Path) -> None:
    meta = json.loads((run / "meta.json").read_text())
    del meta["boundary"]
    (run / "meta.json").write_text(json.dumps(meta))


def _sharded(run: Path) -> None:
    meta = json.loads((run / "meta.json").read_text())
    del meta["boundary"]
    meta.update(status="sharded", shards=2)
    (run / "meta.json").write_text(json.dumps(meta))


def _no_lr_axis(run: Path) -> None:
    import yaml
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["grid"] = {"lr_1": [0.2, 5.0], "lr_2": [1.0]}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


@pytest.mark.parametrize("make,why", [
    (_plain, "was not made by lrsweep boundary (its meta.json records no bisection)"),
    (_sharded, "was made by lrsweep run --shard, not by lrsweep boundary"),
    (_no_lr_axis, "cannot be bisected (grid: lrsweep boundary bisects a shared learning rate"),
    (None, "is not a run directory"),
])
def test_resume_refuses_a_run_it_cannot_finish_before_writing(chunked_run, tmp_path, make, why):
    """One line naming --resume and why; meta.json untouched, no lock taken, nothing written."""
    run = copy_run(chunked_run, tmp_path)
    if make is None:
        run = run / "students"
    else:
        make(run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    rc, _, err = cli_main(["boundary", "--resume", run, "--quiet"])
    assert rc == 2 and one_line(err).startswith(f"lrsweep: config error: --resume: {run} {why}"), err
    assert "--shard i/" not in err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # no .lock either


def test_resume_takes_no_new_rtol_or_precision(chunked_run, tmp_path):
    run = unbisected(copy_run(chunked_run, tmp_path))
    for extra, option in ((["--rtol", "1e-4"], "--rtol"), (["--x64"], "--x64")):
        rc, _, err = cli_main(["boundary", "--resume", run, "--quiet", *extra])
        assert rc == 2 and one_line(err).startswith(f"lrsweep: config error: {option}: --resume reuses"), err
    assert not (run / ".lock").exists() and not (run / boundary.TABLE).exists()


@pytest.mark.parametrize("x64,rtol", [(False, "1e-300"), (False, "5e-7"), (True, "1e-16"), (False, "nan"),
                                      (False, "1")])
def test_rtol_the_precision_cannot_reach_is_refused(tmp_path, x64, rtol):
    import yaml
    path = tmp_path / "uv.yaml"
    path.write_text(yaml.safe_dump(uv_config()))
    rc, _, err = cli_main(["boundary", path, "--rtol", rtol, "--out", tmp_path / "out", "--quiet"]
                          + (["--x64"] if x64 else []))
    allowed = "[1.8e-15, 1) in float64 (--x64)" if x64 else "[9.5e-07, 1) in float32"
    assert rc == 2 and one_line(err).startswith(f"lrsweep: config error: --rtol: must be in {allowed}"), err
    assert not (tmp_path / "out").exists()
    rc, _, err = cli_main(["boundary", path, "--rtol", "abc", "--out", tmp_path / "out", "--quiet"])
    assert rc == 2 and "--rtol" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("x64", [False, True])
def test_smallest_rtol_is_reached_and_printed_sanely(tmp_path, x64):
    """At the smallest rtol of its precision every bracket is within it (the midpoints still split
    it), and the counts printed are readable numbers, not hundreds of digits."""
    import jax
    import yaml
    old = jax.config.jax_enable_x64
    path = tmp_path / "uv.yaml"
    path.write_text(yaml.safe_dump(uv_config()))
    rtol = (8 * np.finfo(np.float64 if x64 else np.float32).eps)  # the documented bound: 8 ulps
    try:
        rc, out, err = cli_main(["boundary", path, "--rtol", repr(float(rtol) * 1.0001), "--out", tmp_path / "out",
                                 "--quiet"] + (["--x64"] if x64 else []))
    finally:
        jax.config.update("jax_enable_x64", old)
    assert rc == 0, err
    (table,) = (tmp_path / "out").rglob(boundary.TABLE)
    t = pd.read_parquet(table)
    assert t["bracketed"].all()
    assert (t["lr_high"] / t["lr_low"] <= 1 + rtol * 1.0001).all(), (t["lr_high"] / t["lr_low"] - 1).max()
    assert not re.search(r"\d{13}", out.replace(",", "")), out


def test_help_examples_run(capsys):
    """Every example of ``lrsweep boundary --help`` parses, and its config loads and passes the checks."""
    from lrsweep import cli
    with pytest.raises(SystemExit):
        cli.main(["boundary", "--help"])
    text = capsys.readouterr().out
    examples = [line.split("#")[0].split()[1:] for line in text.split("examples:\n")[1].splitlines() if line.strip()]
    assert len(examples) >= 3 and any("--resume" in e for e in examples)
    for argv in examples:
        args = cli.build_parser().parse_args(argv)
        if args.resume:
            continue
        cfg = config.load_config(runner.resolve_config_path(args.config), args.overrides)
        boundary.check(cfg, args.rtol or boundary.DEFAULT_RTOL, args.x64)


def test_printed_theory_is_the_losses_own():
    """`lrsweep boundary` prints beside its medians the thresholds of each loss it ran (was: mse's 2 and 4
    for every loss): logistic 8 (2 / c, c = 1/4), exponential 2, no divergence rate but mse's 4."""
    from lrsweep.families.catapult import commands
    assert commands.theory_words(pd.DataFrame({"loss": ["logistic", "exponential", "logistic"]})) == \
        "exponential: lazy/catapult 2; logistic: lazy/catapult 8"
    assert commands.theory_words(pd.DataFrame({"width": [4]})) == "mse: lazy/catapult 2, catapult/divergent 4"
