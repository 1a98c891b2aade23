"""The engine against the independent numpy reference (tests/reference.py), and its invariances.

Tolerances: 1e-10 relative in float64 (the two sides sum in different orders, and the moments
path forms X^T X first; observed gaps are ~1e-14).
"""
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference
from conftest import device_env, flat_result, numpy_instance, train_config
from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core.spec import GroupSpec

D, H, N = 8, 6, 10

# (parameterization, n_layers, activation, lr per trainable layer, formulation)
CASES = [  # each a tuple
    ("paper_2nn", 2, "linear", [5.0, 3.0], "moments"),
    ("paper_2nn", 2, "linear", [5.0, 3.0], "autodiff"),
    ("paper_deep", 2, "linear", [1.0], "moments"),
    ("paper_deep", 3, "linear", [1.0, 0.5], "moments"),
    ("paper_deep", 3, "linear", [1.0, 0.5], "autodiff"),
    ("paper_deep", 4, "linear", [0.75, 0.5, 0.25], "moments"),
    ("standard", 2, "linear", [0.2, 0.1], "moments"),
    ("standard", 3, "linear", [0.1, 0.05, 0.15], "autodiff"),
    ("paper_deep", 3, "relu", [1.5, 1.0], "autodiff"),
    ("standard", 3, "relu", [0.2, 0.1, 0.3], "autodiff"),
    ("paper_deep", 3, "linear", [1.0, 0.5], "lowrank"),
    ("paper_deep", 2, "linear", [1.0], "lowrank"),
    ("paper_deep", 4, "linear", [0.75, 0.5, 0.25], "lowrank"),
    ("standard", 3, "linear", [0.1, 0.05, 0.15], "lowrank"),  # output_dim 1 (lowrank needs one output)
]
FULL_PAIRS = (0, 3, 4, 10)  # cases run with every init x design pair


def make_cfg(par, n_layers, act, lrs, formulation, init="orthogonal", design="gaussian", steps=5,
             gradient="exact", seeds=(0, 1), **task):
    cfg = {"name": "t", "seeds": list(seeds),
           "task": {"input_dim": D, "n_train": N, "design": design, "n_test": 64, **task},
           "model": {"parameterization": par, "n_layers": n_layers, "width": H, "activation": act,
                     "output_dim": 1 if formulation == "lowrank" else 2},
           "init": init, "train": {"steps": steps, "formulation": formulation, "gradient": gradient},
           "grid": {f"lr_{i}": [v, 0.5 * v] if i == 1 else v for i, v in enumerate(lrs, 1)}}
    return cfg


instance_numpy = numpy_instance  # the engine's instance of a student, as numpy (conftest)


INITS_DESIGNS = [(i, d) for i in ("orthogonal", "gaussian") for d in ("gaussian", "orthogonal")]
# Every init x design for the 2-NN and the 3-NN (both formulations); one pair each for the rest,
# cycling so that every pair meets every parameterization family (keeps CI under its budget).
REFERENCE_CASES = [case + pair for k, case in enumerate(CASES)
                   for pair in (INITS_DESIGNS if k in FULL_PAIRS else [INITS_DESIGNS[k % 4]])]


@pytest.mark.parametrize("par,n_layers,act,lrs,formulation,init,design", REFERENCE_CASES)
def test_engine_matches_numpy_reference(x64, par, n_layers, act, lrs, formulation, init, design):
    cfg = make_cfg(par, n_layers, act, lrs, formulation, init=init, design=design, noise_std=0.1)
    students, results = train_config(cfg)
    assert len(results) == len(students) == 4
    for sid in results:
        spec, row, params0, inst = instance_numpy(students, sid)
        ref = reference.reference_train(
            params0, inst["x"], inst["y"], lrs=[row[f"lr_{i}"] for i in range(1, len(params0) + 1)],
            steps=spec.steps, parameterization=par, activation=act,
            readout=inst["readout"] if par == "paper_deep" else None, beta=inst["beta"] if act == "linear" else None,
            X_test=inst["x_test"] if act == "relu" else None, y_test=inst["y_test"] if act == "relu" else None)
        got = results[sid]
        assert not got["diverged"]
        # the learning rates must actually move the loss, or the comparison proves little
        assert abs(ref["train_loss"][-1] - ref["train_loss"][0]) > 1e-3 * ref["train_loss"][0]
        np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10)


@pytest.mark.parametrize("par,n_layers,act,lrs,formulation", [
    ("paper_deep", 3, "linear", [1.0, 0.5], "moments"),       # linear student: the data as X^T y / n
    ("standard", 3, "relu", [0.2, 0.1, 0.3], "autodiff"),
])
def test_relu_teacher_matches_numpy_reference_on_numpy_labels(x64, par, n_layers, act, lrs, formulation):
    """task.teacher_activation: relu. The reference trains on labels made HERE, y = relu(X beta) from
    the instance's X and beta (noise_std 0), and tests on relu(X_test beta): so a teacher that drops
    its ReLU (or any label bug) shows, unlike a comparison on the engine's own y. The test loss is the
    sampled one (no closed form with a ReLU teacher)."""
    cfg = make_cfg(par, n_layers, act, lrs, formulation, teacher_activation="relu")
    students, results = train_config(cfg)
    assert len(results) == 4
    for sid, got in results.items():
        spec, row, params0, inst = instance_numpy(students, sid)
        assert spec.task.teacher_activation == "relu" and spec.formulation == formulation
        X, beta, X_test = inst["x"], inst["beta"], inst["x_test"]
        y, y_test = np.maximum(X @ beta, 0.0), np.maximum(X_test @ beta, 0.0)
        assert np.mean(X @ beta < 0) > 0.25  # the ReLU changes many labels
        ref = reference.reference_train(
            params0, X, y, lrs=[row[f"lr_{i}"] for i in range(1, len(params0) + 1)], steps=spec.steps,
            parameterization=par, activation=act, readout=inst["readout"] if par == "paper_deep" else None,
            X_test=X_test, y_test=y_test)
        assert not got["diverged"]
        assert abs(ref["train_loss"][-1] - ref["train_loss"][0]) > 1e-3 * ref["train_loss"][0]
        np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10)


@pytest.mark.parametrize("par,lrs,formulation,out", [
    ("standard", [0.2, 0.1], "moments", 3),    # output_dim 3
    ("paper_2nn", [5.0, 3.0], "autodiff", H),  # output dim h = 6
])
def test_test_noise_adds_the_noise_variance_of_every_output(x64, par, lrs, formulation, out):
    """task.test_noise: the test loss is ||W_eff - beta||_F^2 + out * noise_std^2, the label-noise
    variance summed over the `out` outputs (written out here: 3 and h = 6)."""
    noise_std = 0.2
    cfg = make_cfg(par, 2, "linear", lrs, formulation, noise_std=noise_std, test_noise=True)
    cfg["model"]["output_dim"] = 3
    students, results = train_config(cfg)
    for sid, got in results.items():
        spec, row, params0, inst = instance_numpy(students, sid)
        assert inst["beta"].shape == (D, out)
        kw = dict(lrs=[row["lr_1"], row["lr_2"]], steps=spec.steps, parameterization=par, beta=inst["beta"])
        ref = reference.reference_train(params0, inst["x"], inst["y"], test_noise_var=out * noise_std**2, **kw)
        bare = reference.reference_train(params0, inst["x"], inst["y"], **kw)["test_loss"]
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10)
        np.testing.assert_allclose(got["test_loss"] - bare, out * noise_std**2, rtol=1e-8)


@pytest.mark.parametrize("par,n_layers,lrs,formulation", [  # lowrank needs one output: not paper_2nn
    (par, n, lrs, form) for par, n, lrs in [("paper_2nn", 2, [5.0, 3.0]), ("paper_deep", 3, [1.0, 0.5])]
    for form in ("moments", "autodiff", "lowrank") if not (par == "paper_2nn" and form == "lowrank")])
def test_signal_only_gradient_matches_reference(x64, par, n_layers, lrs, formulation):
    cfg = make_cfg(par, n_layers, "linear", lrs, formulation, design="orthogonal", gradient="signal_only")
    students, results = train_config(cfg)
    for sid, got in results.items():
        spec, row, params0, inst = instance_numpy(students, sid)
        ref = reference.reference_train(
            params0, inst["x"], inst["y"], lrs=[row["lr_1"], row["lr_2"]], steps=spec.steps,
            parameterization=par, readout=inst["readout"] if par == "paper_deep" else None, beta=inst["beta"],
            gradient="signal_only")
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10)


def test_init_and_design_distributions(x64):
    """Orthogonal init has orthonormal columns; orthogonal design has X^T X = n I; gaussian scales."""
    cfg = make_cfg("paper_deep", 3, "linear", [1.0, 1.0], "autodiff", design="orthogonal", seeds=[3])
    students, _ = config.expand_grid(config.load_config(cfg)), None
    _, _, params0, inst = instance_numpy(students, 0)
    for w in params0:
        np.testing.assert_allclose(w.T @ w, np.eye(w.shape[1]), atol=1e-12)
    np.testing.assert_allclose(inst["x"].T @ inst["x"], N * np.eye(D), atol=1e-10)
    # gaussian init: W1 ~ N(0, 1/d), hidden ~ N(0, 1/h); readout ~ N(0, 1/h); check variances at size
    big = {"name": "t", "seeds": [0], "task": {"input_dim": 400, "n_train": 400},
           "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 300},
           "init": "gaussian", "grid": {"lr": 1.0}}
    students = config.expand_grid(config.load_config(big))
    _, _, (w1, w2), inst = instance_numpy(students, 0)
    for arr, var in [(w1, 1 / 400), (w2, 1 / 300), (inst["readout"], 1 / 300), (inst["beta"], 1 / 300),
                     (inst["x"], 1.0)]:
        se = var * np.sqrt(2 / arr.size)  # std error of a sample variance of Gaussians
        assert abs(arr.var() - var) < 5 * se, (arr.shape, arr.var(), var)


def _grid_cfg(n_fracs=25, seeds=(0, 1, 2, 3), totals=(1.0, 3.0), steps=6, formulation="auto"):
    return {"name": "g", "seeds": list(seeds), "task": {"input_dim": D, "n_train": N},
            "model": {"parameterization": "paper_deep", "n_layers": 3, "width": H},
            "train": {"steps": steps, "formulation": formulation},
            "grid": {"lr_total": list(totals), "lr_1_fraction": {"linspace": [0.0, 1.0, n_fracs]}}}


def _by_hparams(students, results):
    key = lambda r: (int(r["seed"]), round(r["lr_1"], 12), round(r["lr_2"], 12))
    return {key(r): results[int(r["student_id"])] for r in students.to_dict("records")}


@pytest.mark.parametrize("formulation", ["moments", "autodiff", "lowrank"])
def test_batch_and_chunk_independence(x64, formulation):
    """A student's curve does not depend on its neighbours, its place in the grid or the chunk size.

    Equality to 1e-12 relative, not bitwise: XLA picks its dot kernel by the batched shape (a
    chunk of one point per instance is a matrix-vector product, a larger one a batched matmul),
    and the kernels sum in different orders, so the last bit can differ (seen: 1 ulp).
    """
    cfg = _grid_cfg(formulation=formulation)
    students, full = train_config(cfg)
    assert len(students) == 200
    full = _by_hparams(students, full)
    for chunk_size in (1, 7, 64):
        s2, r2 = train_config(cfg, chunk_size=chunk_size)
        for key, res in _by_hparams(s2, r2).items():
            np.testing.assert_allclose(res["test_loss"], full[key]["test_loss"], rtol=1e-12, atol=0)
    # one student alone, with a different seed list and grid around it
    alone = _grid_cfg(n_fracs=1, seeds=[2], totals=[3.0], formulation=formulation)
    alone["grid"] = {"lr_1": 0.75, "lr_2": 2.25}
    s3, r3 = train_config(alone)
    (key, res), = _by_hparams(s3, r3).items()
    np.testing.assert_allclose(res["train_loss"], full[(2, 0.75, 2.25)]["train_loss"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(res["test_loss"], full[(2, 0.75, 2.25)]["test_loss"], rtol=1e-12, atol=0)


def _train_recording_chunks(cfg, chunk_size):
    """Like conftest.train_config for a one-group config, also returning the student ids of each chunk."""
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    out, chunks = {}, []
    for chunk, res in engine.iter_group(spec, students, chunk_size=chunk_size):
        chunks.append(chunk.student_ids[chunk.student_ids >= 0].tolist())
        for i, sid in enumerate(res["student_id"]):
            out[int(sid)] = flat_result(res, i)
    return students, out, chunks


@pytest.mark.parametrize("formulation", ["moments", "lowrank"])
def test_divergence_isolated(x64, formulation):
    """Half the grid diverges, in chunks that also hold clean students: the clean students are
    bit-identical to the same grid with gentle rates in place of the diverging ones.

    Per instance the 20 points run as totals 1, 2 (clean) then 400, 800 (diverging), 5 fractions
    each; chunk_size 8 (balanced by plan_chunks to 7 points) cuts them 0-6 | 7-13 | 14-19, so points
    7-13 mix totals 2 and 400 (asserted on the chunks actually run). The
    gentle grid (totals 1, 2, 0.5, 0.25) has the same chunk layout, so every clean student sits in
    the same slot of a chunk of the same shape: the same compiled program on the same numbers
    (bitwise equal; a run of a different chunk shape may differ in the last bit, see above).
    """
    cfg = _grid_cfg(n_fracs=5, totals=(1.0, 2.0, 400.0, 800.0), steps=8, formulation=formulation)
    students, res, chunks = _train_recording_chunks(cfg, chunk_size=8)
    big = students.set_index("student_id")["lr_total"] > 100
    div = {sid: bool(r["diverged"]) for sid, r in res.items()}
    assert all(div[int(s)] for s in big.index[big]) and not any(div[int(s)] for s in big.index[~big])
    mixed = [ids for ids in chunks if big[ids].any() and not big[ids].all()]
    assert len(mixed) >= 4  # (at least) one mixed chunk per seed
    for s in big.index[big]:
        r = res[int(s)]
        k = int(r["diverged_step"])
        # the step the numpy reference's train loss first leaves the bound (non-finite or > 1e6 x loss_0)
        _, row, w0, inst = instance_numpy(students, int(s))
        ref = reference.reference_train(w0, inst["x"], inst["y"], lrs=[row["lr_1"], row["lr_2"]], steps=8,
                                        parameterization="paper_deep", readout=inst["readout"], beta=inst["beta"])
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(ref["train_loss"]) | (ref["train_loss"] > 1e6 * ref["train_loss"][0])
        assert k == int(np.argmax(bad)), (int(s), k, ref["train_loss"])
        assert np.all(np.isnan(r["test_loss"][k:])) and np.all(np.isfinite(r["test_loss"][:k]))
    gentle = _grid_cfg(n_fracs=5, totals=(1.0, 2.0, 0.5, 0.25), steps=8, formulation=formulation)
    s2, r2, chunks2 = _train_recording_chunks(gentle, chunk_size=8)
    assert chunks2 == chunks and not any(r["diverged"] for r in r2.values())
    full = _by_hparams(students, res)
    for key, r in _by_hparams(s2, r2).items():
        if round(key[1] + key[2], 9) in (1.0, 2.0):  # totals 1 and 2: the students both grids share
            np.testing.assert_array_equal(r["test_loss"], full[key]["test_loss"])
            np.testing.assert_array_equal(r["train_loss"], full[key]["train_loss"])


def _numpy_gd_weights(params0, inst, lrs, n_steps, par, readout):
    """The reference's plain GD (tests/reference.py gradients), returning the weights after n_steps."""
    params = [np.array(w) for w in params0]
    for _ in range(n_steps):
        _, grads = reference.loss_and_grads(params, inst["x"], inst["y"], parameterization=par, readout=readout)
        params = [w - lr * g for w, lr, g in zip(params, lrs, grads)]
    return params


def _trained_weights(spec, state, params0, i, j):
    """Weights of student (i, j) of a chunk's training state (state[0]: the formulation's trained
    state, lrsweep.core.steps): the dense weights themselves, or W^0 + L^T R for ``lowrank``."""
    names = spec.arch.layer_names
    trained = jax.tree_util.tree_map(lambda a: np.asarray(a)[i, j], state[0])
    w0 = [np.asarray(params0[k])[i] for k in names]
    if spec.formulation == "lowrank":
        return [w + trained.left[k].T @ trained.right[k] for w, k in zip(w0, names)]
    return [trained[k] for k in names]


@pytest.mark.parametrize("formulation", ["moments", "lowrank"])
def test_diverged_students_are_frozen(x64, formulation):
    """A diverged student stops training at its divergence step k (its state is what a checkpoint
    saves, so it must stay finite): after all steps its weights are the numpy reference's GD weights
    after k steps, while a clean student's are those after every step. 1e-10 relative, as above."""
    cfg = _grid_cfg(n_fracs=3, seeds=(0, 1), totals=(1.0, 400.0, 800.0), steps=8, formulation=formulation)
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    fn = engine.make_chunk_fn(spec)
    _, (chunk,) = engine.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8)
    params0, inst = engine.build_instances(fn, chunk)
    hparams = {c: jnp.asarray(v) for c, v in chunk.hparams.items()}
    state = fn.advance(fn.start(params0, inst, hparams), params0, inst, hparams,
                       jnp.arange(spec.steps, dtype=jnp.int32))
    result = fn.finish(state, params0, inst, hparams)
    n_frozen = 0
    for (i, j), sid in np.ndenumerate(chunk.student_ids):
        if sid < 0:
            continue
        k = int(np.asarray(result.diverged_step)[i, j])
        _, row, w0, inst_np = instance_numpy(students, int(sid))
        lr = [row["lr_1"], row["lr_2"]]
        want = _numpy_gd_weights(w0, inst_np, lr, spec.steps if k < 0 else k, "paper_deep", inst_np["readout"])
        got = _trained_weights(spec, state, params0, i, j)
        assert (k >= 0) == (row["lr_total"] > 100), (sid, k)
        n_frozen += k >= 0
        for g, w in zip(got, want):
            assert np.all(np.isfinite(g)), (sid, k)
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=f"student {sid}, diverged at {k}")
    assert n_frozen == 12


def test_diverge_factor_sets_the_divergence_step(x64):
    """train.diverge_factor: a student diverges at the first step whose train loss is non-finite or
    exceeds factor * its initial loss. Each student under three factors (a static field: one group
    each); the expected step is read off the numpy reference curve. For seed 0 the shared rate 4
    diverges at steps 3, 4 and 7 under factors 2, 1e3 and 1e100 (its loss ratios to step 0 are
    1, 1.06, 1.7, 14, 2.7e4, 3.9e14, 1.3e45, 5e136, inf), the rate 3 only under factor 2."""
    factors = [2.0, 1e3, 1e100]
    cfg = make_cfg("paper_deep", 3, "linear", [1.0, 1.0], "moments", steps=8, seeds=(0, 1))
    cfg["grid"] = {"lr": [3.0, 4.0, 8.0], "train.diverge_factor": factors}
    students, results = train_config(cfg)
    steps_seen = {}
    for sid, got in results.items():
        spec, row, params0, inst = instance_numpy(students, sid)
        assert spec.diverge_factor == row["diverge_factor"]
        ref = reference.reference_train(params0, inst["x"], inst["y"], lrs=[row["lr_1"], row["lr_2"]], steps=8,
                                        parameterization="paper_deep", readout=inst["readout"])["train_loss"]
        threshold = row["diverge_factor"] * ref[0]
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(ref) | (ref > threshold)
            # no reference value within 1e-6 of the threshold, so round-off cannot flip the verdict
            assert np.all(np.abs(ref[np.isfinite(ref)] / threshold - 1) > 1e-6)
        k = int(np.argmax(bad)) if bad.any() else -1
        assert int(got["diverged_step"]) == k and bool(got["diverged"]) == (k >= 0), (row["lr_1"], row["diverge_factor"])
        end = k if k >= 0 else 9
        np.testing.assert_allclose(got["train_loss"][:end], ref[:end], rtol=1e-10)
        assert np.all(np.isnan(got["train_loss"][end:]))
        steps_seen.setdefault((row["seed"], row["lr_1"]), {})[row["diverge_factor"]] = k
    # the factor changes the verdict: the same student diverges later (or never) under a larger factor
    for verdicts in steps_seen.values():
        ks = [verdicts[f] if verdicts[f] >= 0 else np.inf for f in factors]
        assert ks == sorted(ks), verdicts
    assert steps_seen[(0, 4.0)] == {2.0: 3, 1e3: 4, 1e100: 7}  # as the reference curve says (docstring)
    assert steps_seen[(0, 3.0)] == {2.0: 5, 1e3: -1, 1e100: -1}


@pytest.mark.parametrize("formulation", ["moments", "lowrank"])
def test_float32_divergence_does_not_warn_or_poison(recwarn, formulation):
    """Default float32: inf/NaN students are recorded quietly and finite ones stay finite."""
    cfg = _grid_cfg(n_fracs=3, totals=(1.0, 1e5), steps=4, formulation=formulation)
    students, res = train_config(cfg)
    for s in students.to_dict("records"):
        r = res[int(s["student_id"])]
        assert bool(r["diverged"]) == (s["lr_total"] > 10)
        if not r["diverged"]:
            assert np.all(np.isfinite(r["test_loss"]))
    assert not [w for w in recwarn if "overflow" in str(w.message) or "invalid" in str(w.message)]


def test_one_compile_per_group(x64):
    """New learning-rate values and more chunks never recompile: the chunk function traces once."""
    cfg = _grid_cfg(n_fracs=9)
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    fn = engine.make_chunk_fn(spec)
    _, chunks = engine.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8, chunk_size=8)
    assert len(chunks) > 3
    for chunk in chunks:
        engine.run_chunk(fn, chunk)
    assert fn.train._cache_size() == 1


def test_log_steps_subset_equals_dense_curve(x64):
    cfg = _grid_cfg(n_fracs=3, steps=8)
    s1, dense = train_config(cfg)
    cfg["train"]["log_steps"] = [1, 2, 4]
    s2, sparse = train_config(cfg)
    for sid in dense:
        np.testing.assert_array_equal(sparse[sid]["test_loss"], dense[sid]["test_loss"][[0, 1, 2, 4, 8]])


def sharding_curves() -> dict:
    """Test-loss curves of 6 seeds x 5 points, dense (moments) and low-rank, on this process's devices."""
    import jax
    curves = {}
    for form in ("moments", "lowrank"):
        students, res = train_config(_grid_cfg(n_fracs=5, seeds=list(range(6)), formulation=form))
        curves.update({f"{form}{k}": v["test_loss"].tolist() for k, v in res.items()})
    return {"n_dev": jax.device_count(), "curves": curves}


def test_multi_device_sharding_matches_single_device(x64):
    """8 simulated CPU devices (instance axis sharded; a process started with them) give the same
    curves as one device (this process; dense and low-rank formulations)."""
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        jax.config.update("jax_enable_x64", True)
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r}]
        from test_engine import sharding_curves
        print(json.dumps(sharding_curves()))
    """)
    env = device_env(8)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json
    out = {1: json.loads(json.dumps(sharding_curves())), 8: json.loads(proc.stdout.strip().splitlines()[-1])}
    assert out[8]["n_dev"] == 8 and out[1]["n_dev"] == 1
    assert out[1]["curves"].keys() == out[8]["curves"].keys()
    for k, v in out[1]["curves"].items():
        np.testing.assert_allclose(out[8]["curves"][k], v, rtol=1e-12)


def test_auto_formulation_and_lowrank_rejections():
    """auto picks lowrank exactly where its T (r + c) rows per layer are smaller than the weights;
    an explicit lowrank where it cannot apply is a config error naming the field and the choices."""
    from lrsweep.core.steps import lowrank_cheaper

    def auto(par, n_layers, act, steps, teacher="linear"):
        cfg = {"task": {"input_dim": 64, "n_train": 64, "teacher_activation": teacher},
               "model": {"parameterization": par, "n_layers": n_layers, "width": 64, "activation": act},
               "train": {"steps": steps}, "grid": {"lr": 1.0}}
        (spec,) = runner.prepare(config.load_config(cfg))[1].values()
        return spec.formulation

    deep = GroupSpec.from_row(config.expand_grid(config.load_config(
        {"model": {"width": 64}, "task": {"input_dim": 64}, "grid": {"lr": 1.0}})).iloc[0].to_dict()).arch
    assert auto("paper_deep", 3, "linear", 31) == "lowrank"   # 2 layers of 64 x 64: 31 * 256 = 7936 < 8192
    assert auto("paper_deep", 3, "linear", 32) == "moments"   # 32 * 256 = 8192
    assert lowrank_cheaper(deep, 31) and not lowrank_cheaper(deep, 32)
    assert auto("paper_deep", 3, "linear", 8, "relu") == "moments"
    assert auto("paper_2nn", 2, "linear", 2) == "moments"
    assert auto("paper_deep", 3, "relu", 2) == "autodiff"
    for par, act, out in [("paper_2nn", "linear", 2), ("paper_deep", "relu", 1), ("standard", "linear", 3)]:
        cfg = make_cfg(par, 2, act, [1.0, 1.0] if par != "paper_deep" else [1.0], "lowrank")
        cfg["model"]["output_dim"] = out
        with pytest.raises(config.ConfigError, match="train.formulation") as err:
            runner.prepare(config.load_config(cfg))
        assert "lowrank" in str(err.value) and "allowed" in str(err.value)


@pytest.mark.parametrize("n_seeds,n_fracs,chunk_size", [(4, 5, 12), (5, 7, 6), (7, 3, 5), (3, 25, 64), (1, 9, 4)])
def test_plan_chunks_covers_each_student_once_with_balanced_chunks(n_seeds, n_fracs, chunk_size):
    """Each student is in exactly one chunk; the chunks are as few as the cap allows and evenly
    filled (a 4-seed grid under a 3-instance cap runs as 2 + 2 seeds, not 3 + 1 and 2 pad slots)."""
    cfg = _grid_cfg(n_fracs=n_fracs, seeds=range(n_seeds), totals=(1.0,))
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    (u, p), chunks = engine.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8, chunk_size=chunk_size)
    ids = np.concatenate([c.student_ids[c.student_ids >= 0] for c in chunks])
    assert sorted(ids.tolist()) == sorted(students["student_id"].tolist())
    assert u * p <= chunk_size
    p_max = min(n_fracs, chunk_size)
    u_max = min(n_seeds, chunk_size // p_max)
    u_blocks, p_blocks = math.ceil(n_seeds / u_max), math.ceil(n_fracs / p_max)
    assert len(chunks) == u_blocks * p_blocks
    # evenly filled: each axis pads less than one slot per block
    assert u_blocks * u - n_seeds < u_blocks and p_blocks * p - n_fracs < p_blocks


@pytest.mark.parametrize("n_layers,init", [(8, "orthogonal"), (5, "gaussian")])
def test_lowrank_equals_dense_paths_deep(x64, n_layers, init):
    """The lowrank formulation equals moments and autodiff for deep students (up to the 8-NN of
    seed 000), with a grid that includes diverging students."""
    cfg = _grid_cfg(n_fracs=4, seeds=(0, 1), totals=(0.5, 2.0, 400.0), steps=5)
    cfg["model"]["n_layers"], cfg["init"] = n_layers, init
    cfg["task"]["input_dim"] = H
    out = {}
    for form in ("lowrank", "moments", "autodiff"):
        cfg["train"]["formulation"] = form
        students, res = train_config(cfg)
        out[form] = _by_hparams(students, res)
    assert any(r["diverged"] for r in out["moments"].values())
    assert not all(r["diverged"] for r in out["moments"].values())
    for form in ("moments", "autodiff"):
        for key, ref in out[form].items():
            got = out["lowrank"][key]
            assert bool(got["diverged"]) == bool(ref["diverged"]) and int(got["diverged_step"]) == int(ref["diverged_step"])
            np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10, atol=0)
            np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10, atol=0)
