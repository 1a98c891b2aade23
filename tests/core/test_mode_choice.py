"""``train.mode: auto`` in seconds (lrsweep.core.drivers.poly.decide / mode_report): fixed costs count
where they decide, the choice is stored per group and device kind, a resumed run keeps its modes.
No timing is asserted: measured values are given."""

import pytest
import yaml
from conftest import cli_main

from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core.drivers import poly
from lrsweep.core.drivers import timing


def fig1_spec(width=1000):
    """Seed 000's fig1 group: paper_2nn, h = d = n, orthogonal, 2 steps."""
    cfg = {"name": "fig1", "seeds": [0],
           "task": {"input_dim": width, "n_train": width, "design": "orthogonal", "target": "orthonormal"},
           "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": width}, "init": "orthogonal",
           "train": {"steps": 2, "log_steps": [0, 1, 2]}, "grid": {"lr_line": [27000.0]}}
    (spec,) = runner.prepare(config.load_config(cfg))[1].values()
    return spec


@pytest.fixture(autouse=True)
def fresh_store(monkeypatch, tmp_path):
    """Every test starts with an empty store of choices, kept in tmp_path."""
    monkeypatch.setenv("LRSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    timing.forget()
    yield
    timing.forget()


def _never():
    raise AssertionError("measured where the FLOP model decides")


# fig1 (1805 students, 5 seeds, x64) on an H200, README: poly mode 11.7 s of which 0.03 s of
# coefficients, grid mode 8.6 s of which 0.55 s per seed of training at 13 TFLOP/s
H200_FIG1 = {"poly_compile_s": 11.7 - 0.03, "grid_compile_s": 8.6 - 5 * 0.55, "grid_rate": 13e12, "host_s": 0.0}


def test_fixed_costs_decide_on_a_fast_device():
    spec = fig1_spec()
    pl = poly.plan(spec)
    est = poly.seconds_estimate(spec, pl, 1805, 5, 8, poly.ENGINE_RATE["accelerator"])
    measured = []
    got = poly.decide(est, lambda: measured.append(1) or H200_FIG1)
    assert measured == [1] and got["mode"] == "grid" and got["grid_s"] < got["poly_s"]
    # the same compute with poly's fixed costs below grid's saving: poly
    cheap = {**H200_FIG1, "poly_compile_s": 1.0}
    assert poly.decide(est, lambda: cheap)["mode"] == "poly"
    # the processes of a multi-process job measure nothing (they must agree): the FLOP model's rule
    assert poly.decide(est, None)["mode"] == "poly"


def test_compute_decides_on_the_cpu():
    """fig1 on the 2-core CPU (README: poly 40 s, grid 1787 s): poly, nothing measured; one student: grid."""
    spec = fig1_spec()
    pl = poly.plan(spec)
    got = poly.decide(poly.seconds_estimate(spec, pl, 1805, 5, 8, poly.ENGINE_RATE["cpu"]), _never)
    assert got["mode"] == "poly" and got["grid_s"] > 20 * got["poly_s"]
    assert poly.decide(poly.seconds_estimate(spec, pl, 1, 1, 8, poly.ENGINE_RATE["cpu"]), _never)["mode"] == "grid"
    # saving below the compile of a program: grid, unmeasured
    small = fig1_spec(width=16)
    est = poly.seconds_estimate(small, poly.plan(small), 1805, 5, 8, poly.ENGINE_RATE["accelerator"])
    assert poly.decide(est, _never)["mode"] == "grid"


def test_choice_is_stored_and_read_back(monkeypatch):
    spec = fig1_spec()
    calls = []
    monkeypatch.setattr(poly, "engine_rate", lambda: poly.ENGINE_RATE["accelerator"])
    monkeypatch.setattr(poly, "measure_seconds", lambda *a: calls.append(a) or H200_FIG1)
    first = poly.mode_report(spec, 1805, 5, memory_budget=8 << 30)
    assert first["mode"] == "grid" and len(calls) == 1 and first["poly_compile_s"] == H200_FIG1["poly_compile_s"]
    # new measurements would flip it: the stored choice holds, in this process and the next
    monkeypatch.setattr(poly, "measure_seconds", lambda *a: calls.append(a) or {**H200_FIG1, "poly_compile_s": 0.1})
    again = poly.mode_report(spec, 1805, 5, memory_budget=8 << 30)
    timing.forget()
    fresh = poly.mode_report(spec, 1805, 5, memory_budget=8 << 30)
    assert again["mode"] == fresh["mode"] == "grid" and len(calls) == 1
    assert "decided before" in fresh["reason"] and timing.store_path().is_file()
    # another group (fewer students) is decided on its own
    assert poly.mode_report(spec, 1805, 4, memory_budget=8 << 30)["mode"] == "poly" and len(calls) == 2


def test_store_off_keeps_choices_in_memory(monkeypatch):
    monkeypatch.setenv("LRSWEEP_CACHE_DIR", "off")
    assert timing.store_path() is None
    timing.remember("k", 1)
    assert timing.lookup("k") == 1


TINY = {"name": "tiny_auto", "seeds": [0, 1],
        "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal", "target": "orthonormal"},
        "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": 8}, "init": "orthogonal",
        "train": {"steps": 2, "log_steps": [0, 1, 2]}, "grid": {"lr_line": [5.0, 10.0]}}


def test_resumed_run_keeps_its_modes():
    """A resumed run takes each group's mode from its meta.json, whatever auto would say now."""
    cfg = config.load_config(TINY)
    students, specs = runner.prepare(cfg)
    runner.setup_jax(True, "off")
    assert runner.choose_modes(cfg, students, specs)[0]["mode"] == "grid"
    kept = runner.choose_modes(cfg, students, specs, {"0": {"mode": "poly", "reason": "poly mode is faster",
                                                            "poly_s": 1.0, "grid_s": 2.0}})[0]
    assert kept["mode"] == "poly" and "kept from the run's start" in kept["reason"] and kept["grid_s"] == 2.0
    assert "lr_scale" in kept  # what the poly driver needs


def test_resume_reads_the_stored_modes(tmp_path, monkeypatch):
    """run(resume=...) passes meta.json's groups to the planner."""
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    rc, _, err = cli_main(["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--x64"])
    assert rc == 0, err
    (run_dir,) = (tmp_path / "out" / "tiny_auto").iterdir()
    seen = {}
    real = runner.plan_run

    def spy(*args, **kwargs):
        seen.update(decided=kwargs.get("decided"))
        return real(*args, **kwargs)
    monkeypatch.setattr(runner, "plan_run", spy)
    runner.run(resume=run_dir, progress=False)
    assert seen["decided"]["0"]["mode"] == "grid"


def test_dry_run_prints_both_estimates(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    rc, out, err = cli_main(["run", str(path), "--dry-run"])
    assert rc == 0, err
    assert "mode=grid (poly mode would save" in out and "estimated: poly mode ~" in out and ", grid mode ~" in out


def test_a_shard_takes_the_modes_of_the_run_it_joins(tmp_path):
    """Shards of one sweep run the same modes: a shard joining a run takes the run's (meta.json), even
    where its own ``auto`` would pick another."""
    import json

    from lrsweep.core import runstate
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    args = ["run", str(path), "--out", str(tmp_path / "out"), "--quiet", "--x64", "--run-id", "J1"]
    rc, _, err = cli_main(args + ["--shard", "0/2"])
    assert rc == 0, err
    run_dir = tmp_path / "out" / "tiny_auto" / "J1"
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["groups"]["0"]["mode"] == "grid"  # what auto picks here
    meta["groups"]["0"].update(mode="poly", reason="poly mode is faster")  # as another machine might have
    (run_dir / "meta.json").write_text(json.dumps(meta))
    rc, _, err = cli_main(args + ["--shard", "1/2"])
    assert rc == 0, err
    record = json.loads(runstate.shard_record_path(run_dir, 1, 2).read_text())
    assert record["groups"]["0"]["mode"] == "poly"
    # shard 1 trained in poly mode (its coefficient table), shard 0 in grid mode
    assert list(run_dir.glob("parts/s1of2-*.poly.parquet")) and not list(run_dir.glob("parts/s0of2-*.poly.parquet"))
