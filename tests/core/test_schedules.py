"""Learning-rate schedules (seed 004): the multipliers against the paper's formulas written out
independently here, the engine against the numpy reference with those multipliers, and the
schedule parameters as traced grid axes (one compile, per-student values)."""
import math

import jax.numpy as jnp
import numpy as np
import pytest

import reference
from conftest import train_config
from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core.optim import Schedule, schedule_multiplier
from lrsweep import registry
from test_engine import D, H, N, instance_numpy


def paper_schedule(kind, T, t, exponent=1.0, stable_fraction=0.8, warmup=0):
    """Seed 004: polynomial (1 - t/T)^delta; WSD eq. 82: 1 for t < t_s, ((1 - t/T)/(1 - t_s/T))^delta
    for t > t_s; power law (1 + t)^-chi; linear warmup (t + 1)/w for t < w."""
    if kind == "constant":
        s = 1.0
    elif kind == "polynomial":
        s = (1 - t / T) ** exponent
    elif kind == "wsd":
        t_s = stable_fraction * T
        s = 1.0 if t < t_s else ((1 - t / T) / (1 - t_s / T)) ** exponent
    else:
        s = (1 + t) ** -exponent
    if warmup and t < warmup:
        s *= (t + 1) / warmup
    return s


CASES = [("constant", 1.0, 0.8, 0), ("polynomial", 1.0, 0.8, 0), ("polynomial", 2.5, 0.8, 3),
         ("wsd", 2.0, 0.5, 0), ("wsd", 1.0, 0.75, 2), ("power", 0.5, 0.8, 0), ("power", 1.0, 0.8, 4)]


@pytest.mark.parametrize("kind,exponent,fraction,warmup", CASES)
def test_multiplier_matches_paper_formula(x64, kind, exponent, fraction, warmup):
    T = 16
    sched = Schedule(kind, T, warmup, jnp.asarray(exponent), jnp.asarray(fraction))
    got = np.array([float(schedule_multiplier(sched, t)) for t in range(T)])
    want = np.array([paper_schedule(kind, T, t, exponent, fraction, warmup) for t in range(T)])
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=0)
    assert np.all(got > 0) and got.max() <= 1.0 + 1e-15


def test_schedule_limits():
    """delta = 0 and stable fraction 1 are the constant schedule; WSD is continuous at t_s."""
    T = 20
    for kind, exponent, fraction in [("polynomial", 0.0, 0.8), ("wsd", 3.0, 1.0), ("power", 0.0, 0.8)]:
        s = Schedule(kind, T, 0, jnp.asarray(exponent), jnp.asarray(fraction))
        np.testing.assert_array_equal([float(schedule_multiplier(s, t)) for t in range(T)], np.ones(T))
    s = Schedule("wsd", T, 0, jnp.asarray(2.0), jnp.asarray(0.5))
    assert float(schedule_multiplier(s, 10)) == 1.0 and 0.8 < float(schedule_multiplier(s, 11)) < 1.0


def _cfg(kind, warmup=0, steps=6, **grid):
    return {"name": "sched", "seeds": [0, 1],
            "task": {"input_dim": D, "n_train": N, "noise_std": 0.1},
            "model": {"parameterization": "paper_deep", "n_layers": 3, "width": H},
            "train": {"steps": steps, "schedule": kind, "warmup_steps": warmup},
            "grid": {"lr_1": [1.0, 2.0], "lr_2": 0.5, **grid}}


@pytest.mark.parametrize("kind,warmup,formulation", [("polynomial", 0, "moments"), ("wsd", 2, "lowrank"),
                                                     ("power", 0, "autodiff"), ("constant", 3, "moments")])
def test_engine_with_schedule_matches_reference(x64, kind, warmup, formulation):
    cfg = _cfg(kind, warmup, schedule_exponent=[0.5, 2.0], stable_fraction=[0.5])
    cfg["train"]["formulation"] = formulation
    students, results = train_config(cfg)
    assert len(students) == 8
    finals = set()
    for sid, got in results.items():
        spec, row, params0, inst = instance_numpy(students, sid)
        mult = [paper_schedule(kind, spec.steps, t, row["schedule_exponent"], row["stable_fraction"], warmup)
                for t in range(spec.steps)]
        ref = reference.reference_train(params0, inst["x"], inst["y"], lrs=[row["lr_1"], row["lr_2"]],
                                        steps=spec.steps, parameterization="paper_deep", readout=inst["readout"],
                                        beta=inst["beta"], lr_multipliers=mult)
        np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10)
        finals.add(round(float(got["test_loss"][-1]), 12))
    assert len(finals) == 8 if kind != "constant" else len(finals) == 4  # the exponent matters, or not


def test_schedule_parameters_are_traced(x64):
    """A grid over delta and the stable fraction compiles once and gives each student its own schedule."""
    cfg = _cfg("wsd", schedule_exponent=[0.5, 1.0, 2.0, 4.0], stable_fraction=[0.25, 0.5, 1.0])
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    assert spec.traced_columns[:2] == ["lr_1", "lr_2"]
    assert {"schedule_exponent", "stable_fraction"} <= set(spec.traced_columns)
    fn = engine.make_chunk_fn(spec)
    _, chunks = engine.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8, chunk_size=8)
    out = {}
    for chunk in chunks:
        res = engine.run_chunk(fn, chunk)
        out.update(zip(res["student_id"].tolist(), res["curves"]["test_loss"][:, -1]))
    assert fn.train._cache_size() == 1 and len(chunks) > 1
    df = students.assign(final=students["student_id"].map(out))
    full = df[df["stable_fraction"] == 1.0].groupby(["seed", "lr_1"])["final"].nunique()
    assert (full == 1).all()  # stable fraction 1: constant rates, the exponent cannot matter
    rest = df[df["stable_fraction"] < 1.0].groupby(["seed", "lr_1", "stable_fraction"])["final"].nunique()
    assert (rest == 4).all()


@pytest.mark.parametrize("field,value,words", [
    ("train.schedule", "linear", "allowed values"), ("train.stable_fraction", 1.5, "[0, 1]"),
    ("train.schedule_exponent", -1.0, ">= 0"), ("train.warmup_steps", 10, "<= train.steps")])
def test_bad_schedule_input(field, value, words):
    cfg = _cfg("wsd")
    section, key = field.split(".")
    cfg[section][key] = value
    with pytest.raises(config.ConfigError, match=field.replace(".", r"\.")) as err:
        runner.prepare(config.load_config(cfg))
    assert words in str(err.value)


def test_scheduled_runs_skip_constant_rate_theory_and_poly(x64):
    """Layer-balancing theory assumes constant rates: a scheduled student is not compared; poly mode,
    which expands constant rates, does not apply to it."""
    from lrsweep.core import poly
    cfg = _cfg("polynomial", steps=2)
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    assert "change over the steps" in poly.qualifies(spec)
    theory = registry.THEORIES["layer_balancing.three_layer"]
    df = students.assign(width=8, input_dim=8, n_train=8, design="orthogonal", target="gaussian",
                         target_std=1 / math.sqrt(8), noise_std=0.0)
    assert not theory.matches(df).any()
    assert theory.matches(df.assign(schedule="constant")).all()
