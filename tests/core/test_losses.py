"""Classification losses (lrsweep.core.losses) through the engine against the numpy reference, their
numerical stability, and the fast paths that refuse them.

Tolerance 1e-10 relative in float64, as for the squared loss (tests/test_engine.py): both sides
sum the same terms in different orders; observed gaps are ~1e-15.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference
from conftest import cli_main, numpy_instance, train_config
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core.losses import LOSSES
from lrsweep import registry

D, H, N = 6, 5, 12


def clf_cfg(loss, n_layers=2, activation="linear", lrs=(0.5, 0.25), data="nonseparable", steps=6, **extra):
    return {"name": "clf", "seeds": [0, 1],
            "task": {"kind": "classification", "data": data, "input_dim": D, "n_train": N, "n_test": 40,
                     "margin": 0.5, "flip_fraction": 0.25},
            "model": {"parameterization": "standard", "n_layers": n_layers, "width": H, "activation": activation,
                      "output_dim": 1},
            "init": "gaussian", "train": {"loss": loss, "steps": steps, **extra},
            "grid": {f"lr_{i}": [v, 2 * v] if i == 1 else v for i, v in enumerate(lrs, 1)}}


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_engine_matches_reference(x64, loss, activation):
    """2-layer linear and ReLU `standard` students on nonseparable data: train loss, test loss and
    0-1 test error at every step equal the hand-written numpy gradients."""
    lrs = (0.5, 0.25) if loss == "logistic" else (0.05, 0.025)  # exp(-m) blows up sooner
    students, results = train_config(clf_cfg(loss, activation=activation, lrs=lrs))
    assert len(results) == 4
    for sid, got in results.items():
        spec, row, params0, inst = numpy_instance(students, sid)
        assert spec.formulation == "autodiff"
        ref = reference.reference_train(params0, inst["x"], inst["y"], lrs=[row["lr_1"], row["lr_2"]], steps=6,
                                        parameterization="standard", activation=activation, loss=loss,
                                        X_test=inst["x_test"], y_test=inst["y_test"])
        assert not got["diverged"]
        np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_error"], ref["test_error"], rtol=0, atol=1e-14)  # a mean of 0/1: exact up to the order of the sum
        assert ref["train_loss"][-1] < ref["train_loss"][0]  # it learned something: not a trivial pass


def test_exponential_blow_up_is_recorded_as_divergence(x64):
    """exp(-m) overflows at large rates: the divergence rule records it; the small-rate students of
    the same chunk are untouched (equal to a run without the large rates)."""
    cfg = clf_cfg("exponential", lrs=(50.0, 50.0), steps=8)
    cfg["grid"] = {"lr_1": [0.1, 200.0], "lr_2": [0.1, 200.0]}
    students, res = train_config(cfg)
    big = students["lr_1"] > 1
    for sid in students.loc[big, "student_id"]:
        assert res[int(sid)]["diverged"]
    small = {int(s): res[int(s)] for s in students.loc[~big & (students["lr_2"] < 1), "student_id"]}
    assert small and not any(r["diverged"] for r in small.values())
    cfg["grid"] = {"lr_1": 0.1, "lr_2": 0.1}
    s2, r2 = train_config(cfg)
    for sid, r in r2.items():
        seed = int(s2.set_index("student_id").loc[sid, "seed"])
        (twin,) = [v for k, v in small.items() if int(students.set_index("student_id").loc[k, "seed"]) == seed]
        # to the last bits: XLA picks its dot kernel by the chunk's shape (tests/test_engine.py)
        np.testing.assert_allclose(r["train_loss"], twin["train_loss"], rtol=1e-12)


def test_logistic_is_finite_and_exact_at_huge_margins(x64):
    """log(1 + e^-m) and its derivative at m = -1e4, 0, +1e4: 1e4 and -1; log 2 and -1/2; 0 and 0."""
    loss = LOSSES["logistic"]
    pred = jnp.asarray([[-1e4], [0.0], [1e4]])
    y = jnp.ones((3, 1))
    per = loss.per_sample(pred, y)
    np.testing.assert_allclose(per, [1e4, np.log(2.0), 0.0], rtol=1e-15, atol=1e-300)
    value, cot = loss.value_and_cotangent(pred, y)
    np.testing.assert_allclose(value, (1e4 + np.log(2.0)) / 3, rtol=1e-15)
    np.testing.assert_allclose(cot[:, 0], [-1 / 3, -1 / 6, 0.0], rtol=1e-15, atol=1e-300)
    assert np.all(np.isfinite(cot))
    grad = jax.grad(lambda p: loss.value_and_cotangent(p, y)[0])(pred)  # the cotangent is the gradient
    np.testing.assert_allclose(grad, cot, rtol=1e-15, atol=1e-300)
    exp_value, _ = LOSSES["exponential"].value_and_cotangent(pred, y)
    assert np.isinf(exp_value)  # allowed to overflow: the divergence rule catches it


@pytest.mark.parametrize("field,cfg_change,words", [
    ("train.formulation", {"formulation": "moments"}, "quadratic"),
    ("train.formulation", {"formulation": "lowrank"}, "quadratic"),
    ("train.gradient", {"gradient": "signal_only"}, "mse"),
    ("train.mode", {"mode": "poly"}, "quadratic")])
def test_fast_paths_refuse_classification_losses(tmp_path, field, cfg_change, words):
    """Asking for a path that needs the squared loss with a logistic loss exits 2 before any compute,
    naming the field and what it needs, and leaves no run directory."""
    import yaml
    cfg = clf_cfg("logistic")
    cfg["train"].update(cfg_change)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli_main(["run", path, "--out", tmp_path / "out", "--quiet"])
    assert rc == 2, (out, err)
    assert field in err and words in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_auto_formulation_falls_back_to_autodiff():
    """A linear student with a logistic loss: auto gives autodiff (moments would be silently wrong)."""
    _, specs = runner.prepare(config.load_config(clf_cfg("logistic")))
    assert [s.formulation for s in specs.values()] == ["autodiff"]
    _, specs = runner.prepare(config.load_config(clf_cfg("mse")))  # mse on +-1 labels: the fast path is exact
    assert [s.formulation for s in specs.values()] == ["lowrank"] or [s.formulation for s in specs.values()] == ["moments"]


def test_classification_loss_needs_binary_labels():
    cfg = clf_cfg("logistic")
    cfg["task"] = {"kind": "linear_teacher", "input_dim": D, "n_train": N}
    with pytest.raises(config.ConfigError, match="train.loss") as err:
        runner.prepare(config.load_config(cfg))
    assert "classification" in str(err.value)


def test_logistic_run_matches_no_layer_balancing_theory(tmp_path):
    """compare on a logistic run: no registered theory covers it, and it says so."""
    import yaml
    cfg = clf_cfg("logistic", steps=2)
    cfg["model"] = {"parameterization": "paper_deep", "n_layers": 3, "width": H}
    cfg["task"].update(input_dim=H, n_train=H + 1)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli_main(["run", path, "--out", tmp_path, "--quiet"])
    assert rc == 0, err
    assert "no student of this run is covered by a registered theory" in out
    from lrsweep import compare
    run = next(tmp_path.rglob("meta.json")).parent
    assert compare.compare(run).empty
    # the same students with the squared loss on a linear teacher would be matched by the whitelist
    students = __import__("lrsweep").load(run, table="students")
    theory = registry.THEORIES["layer_balancing.three_layer"]
    lb = students.assign(kind="linear_teacher", loss="mse", data="separable", margin=1.0, flip_fraction=0.1,
                         input_dim=H, n_train=H, width=H, design="orthogonal", target="gaussian", init="orthogonal",
                         target_std=1 / np.sqrt(H))
    assert theory.matches(lb).all() and not theory.matches(students).any()
