"""SGD and momentum (seed 004 engine): the engine against the independent numpy reference
(tests/reference.py ``reference_train_batches``), one student at a time, fed the same batches.

The batches are re-derived HERE from the documented key protocol, with jax.random only for the
draws: step t of the instance of seed s uses key_t = fold_in(fold_in(PRNGKey(s), 0x5354), t);
a minibatch of a fixed set is jax.random.choice(key_t, n, (M,), replace=False) (the first m(t)
rows weighted 1/m(t), the rest 0, when the batch size follows a schedule); an online batch of
power_law_features is x = sqrt(lam) * normal(k_x, (M, N)), y = x w* + sigma normal(k_noise, (M, 1))
with k_x, k_noise = split(key_t), both normals drawn under jax.threefry_partitionable(False). Everything else (gradients, momentum, schedules, losses, the
spectrum) is plain numpy float64.

Tolerances: 1e-10 relative in float64 (the two sides sum in different orders; observed ~1e-14);
1e-12 where the engine is compared with itself under another grid, chunking or device count.
"""
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
import yaml

import reference
from conftest import cli_main, device_env, numpy_instance, train_config

D, H, N_TRAIN, M, STEPS = 8, 6, 10, 4, 6
STEP_KEY_SALT = 0x5354  # the documented per-step stream (lrsweep.core.tasks), written out here

# the seed-000 students: (parameterization, n_layers, activation, lr per trainable layer)
STUDENTS = {"paper_deep3": ("paper_deep", 3, "linear", [1.0, 0.5]),
            "standard2_relu": ("standard", 2, "relu", [0.2, 0.1]),
            "paper_2nn": ("paper_2nn", 2, "linear", [5.0, 3.0])}


def sgd_cfg(student="paper_deep3", optimizer="sgd", seeds=(0, 1), steps=STEPS, batch_size=M, train=None,
            grid=None):
    par, n_layers, act, lrs = STUDENTS[student]
    return {"name": "sgd", "seeds": list(seeds),
            "task": {"input_dim": D, "n_train": N_TRAIN, "noise_std": 0.1, "n_test": 32},
            "model": {"parameterization": par, "n_layers": n_layers, "width": H, "activation": act},
            "train": {"steps": steps, "optimizer": optimizer, "batch_size": batch_size, **(train or {})},
            "grid": {**{f"lr_{i}": [v, 0.5 * v] if i == 1 else v for i, v in enumerate(lrs, 1)}, **(grid or {})}}


def power_law_cfg(optimizer="sgd", online=True, seeds=(0, 1), steps=8, n_features=16, grid=None, **train):
    return {"name": "plf", "seeds": list(seeds),
            "task": {"kind": "power_law_features", "n_features": n_features, "a": 1.5, "b": 1.25,
                     "noise_std": 0.3, "online": online, "n_train": 12},
            "model": {"parameterization": "standard", "n_layers": 1, "output_dim": 1}, "init": "zeros",
            "train": {"steps": steps, "optimizer": optimizer, "batch_size": M, **train},
            "grid": {"lr": [0.5, 1.0], **(grid or {})}}


# ---- the batches, from the key protocol -------------------------------------------------------

def step_key(seed, t):
    return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(int(seed)), STEP_KEY_SALT), t)


def mask(size, m):
    """Weights 1/m on the first m rows of ``size`` (None: the plain mean, a constant batch size)."""
    return None if m is None else np.where(np.arange(size) < m, 1.0 / m, 0.0)


def minibatch(x, y, seed, t, m=None):
    rows = np.asarray(jax.random.choice(step_key(seed, t), x.shape[0], (M,), replace=False))
    assert len(set(rows.tolist())) == M  # without replacement
    return x[rows], y[rows], mask(M, m)


def fresh_samples(lam, w_star, sigma, seed, t, m=None):
    key_x, key_noise = jax.random.split(step_key(seed, t))
    with jax.threefry_partitionable(False):  # the documented layout of the online draws
        z_x = np.asarray(jax.random.normal(key_x, (M, lam.size), np.float64))
        z_noise = np.asarray(jax.random.normal(key_noise, (M, 1), np.float64))
    x = np.sqrt(lam) * z_x
    y = x @ w_star + sigma * z_noise
    return x, y, mask(M, m)


def power_law_spectrum(n_features, a, b):
    """lambda_k = k^-b and w*_k = k^((b - a)/2) (so lambda_k w*_k^2 = k^-a), k = 1..N."""
    k = np.arange(1, n_features + 1, dtype=np.float64)
    return k ** -b, (k ** ((b - a) / 2))[:, None]


# ---- numpy schedules ------------------------------------------------------------------------

def batch_size_schedule(row, T):
    """m(t), t = 0..T (None: the constant M): round(m_0 + (m_1 - m_0)(t/T)^p), or the array's row."""
    if row["batch_schedule"] == "ramp":
        m = row["batch_start"] + (row["batch_end"] - row["batch_start"]) * (np.arange(T + 1) / T) ** \
            row["batch_ramp_exponent"]
        return np.clip(np.floor(m + 0.5), 1, M).astype(int).tolist()
    if row["batch_schedule"] == "array":
        arr = BATCH_ARRAYS[int(row["batch_index"])]
        return [int(v) for v in arr] + [int(arr[-1])]  # step T: only the logged loss reads it
    return [None] * (T + 1)


def lr_schedule(row, T):
    t = np.arange(T, dtype=np.float64)
    kind = row["schedule"]
    if kind == "cosine":
        return row["schedule_floor"] + (1 - row["schedule_floor"]) * (1 + np.cos(np.pi * t / T)) / 2
    if kind == "polynomial":
        return (1 - t / T) ** row["schedule_exponent"]
    if kind == "wsd":
        t_s = row["stable_fraction"] * T
        return np.where(t < t_s, 1.0, ((1 - t / T) / (1 - t_s / T)) ** row["schedule_exponent"])
    if kind == "array":
        return np.asarray(LR_ARRAYS[int(row["schedule_index"])])
    assert kind == "constant"
    return np.ones(T)


def momentum_schedule(row, T):
    if row["optimizer"] != "momentum":
        return None
    if row["momentum_schedule"] == "array":
        return MOMENTUM_ARRAYS[int(row["momentum_index"])]
    return [row["momentum"]] * T


LR_ARRAYS = [[1.0, 1.0, 0.5, 0.5, 0.25, 0.1], [0.2, 0.6, 1.0, 1.0, 0.6, 0.2]]
BATCH_ARRAYS = [[1, 2, 3, 4, 4, 2], [4, 4, 3, 3, 2, 1]]
MOMENTUM_ARRAYS = [[0.0, 0.5, 0.9, 0.9, 0.5, 0.0], [0.9, 0.9, 0.0, 0.0, 0.3, 0.6]]


# ---- the comparison -------------------------------------------------------------------------

def reference_of(students, sid):
    """The numpy reference run of one student of the engine's grid, on the protocol's batches."""
    spec, row, params0, inst = numpy_instance(students, sid)
    T, seed = spec.steps, row["seed"]
    sizes = batch_size_schedule(row, T)
    kw = dict(lrs=[row[f"lr_{i}"] for i in range(1, len(params0) + 1)], steps=T,
              parameterization=spec.arch.parameterization, activation=spec.arch.activation,
              readout=inst["readout"] if spec.arch.parameterization == "paper_deep" else None,
              betas=momentum_schedule(row, T), lr_multipliers=lr_schedule(row, T))
    if spec.task.kind == "power_law_features":
        lam, w_star = power_law_spectrum(spec.task.input_dim, row["a"], row["b"])
        np.testing.assert_allclose(inst["lam"], lam, rtol=1e-14)  # the task's spectrum is the documented one
        test_loss = lambda ps: float(np.sum(lam[:, None] * (ps[0] - w_star) ** 2))  # excess risk (1 layer)
        if row["online"] is not False:
            batches = [fresh_samples(lam, w_star, row["noise_std"], seed, t, sizes[t]) for t in range(T + 1)]
            return row, reference.reference_train_batches(params0, batches, test_loss=test_loss, **kw)
    elif spec.arch.is_linear:
        test_loss = lambda ps: float(np.sum((reference.effective_weight(
            ps, parameterization=kw["parameterization"], readout=kw["readout"]) - inst["beta"]) ** 2))
    else:
        test_loss = lambda ps: float(np.mean(np.sum((reference.predict(
            ps, inst["x_test"], parameterization=kw["parameterization"], activation=kw["activation"],
            readout=kw["readout"]) - inst["y_test"]) ** 2, axis=1)))
    x, y = inst["x"], inst["y"]
    batches = [minibatch(x, y, seed, t, sizes[t]) for t in range(T + 1)]
    return row, reference.reference_train_batches(params0, batches, train_set=(x, y), test_loss=test_loss, **kw)


def check_against_reference(cfg, n_students):
    """Train ``cfg`` and compare every student with its reference run; returns (students, results, refs)."""
    students, results = train_config(cfg)
    assert len(results) == n_students
    refs = {}
    for sid, got in results.items():
        row, ref = reference_of(students, sid)
        assert not got["diverged"], sid
        # the steps must actually move the loss, or the comparison proves little
        assert abs(ref["test_loss"][-1] - ref["test_loss"][0]) > 1e-3 * ref["test_loss"][0], ref["test_loss"]
        np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10, err_msg=f"student {sid}")
        np.testing.assert_allclose(got["test_loss"], ref["test_loss"], rtol=1e-10, err_msg=f"student {sid}")
        refs[sid] = (row, ref)
    return students, results, refs


@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])
@pytest.mark.parametrize("student", list(STUDENTS))
def test_minibatch_sgd_and_momentum_match_numpy_reference(x64, student, optimizer):
    """Seed-000 students on a linear teacher's fixed set of 10, minibatches of 4; momentum beta is a
    grid axis (traced). The logged train loss is the whole set's."""
    grid = {"momentum": [0.5, 0.9]} if optimizer == "momentum" else {}
    students, _, refs = check_against_reference(sgd_cfg(student, optimizer, grid=grid),
                                                8 if optimizer == "momentum" else 4)
    # the minibatches matter: full-batch GD from the same start ends elsewhere
    sid = 0
    spec, row, params0, inst = numpy_instance(students, sid)
    ref = refs[sid][1]
    gd = reference.reference_train_batches(
        params0, [(inst["x"], inst["y"], None)] * (spec.steps + 1), lrs=[row[f"lr_{i}"] for i in
        range(1, len(params0) + 1)], steps=spec.steps, parameterization=spec.arch.parameterization,
        activation=spec.arch.activation, readout=inst["readout"] if spec.arch.parameterization == "paper_deep" else None,
        betas=momentum_schedule(row, spec.steps), train_set=(inst["x"], inst["y"]))
    assert abs(gd["train_loss"][-1] / ref["train_loss"][-1] - 1) > 1e-4


SCHEDULE_CASES = {
    "cosine": ({"schedule": "cosine"}, {"schedule_floor": [0.0, 0.3]}, 8),
    "array": ({"schedule": "array", "schedule_array": LR_ARRAYS}, {}, 8),  # two arrays: the index axis
    "polynomial": ({"schedule": "polynomial"}, {"schedule_exponent": [0.5, 2.0]}, 8),
    "wsd": ({"schedule": "wsd", "stable_fraction": 0.5}, {"schedule_exponent": [1.0, 2.0]}, 8),
    "batch_ramp": ({"batch_schedule": "ramp", "batch_start": 1}, {"batch_end": [3, 4],
                                                                  "batch_ramp_exponent": [1.0, 2.0]}, 16),
    "batch_array": ({"batch_schedule": "array", "batch_array": BATCH_ARRAYS}, {}, 8),
    "momentum_array": ({"momentum_schedule": "array", "momentum_array": MOMENTUM_ARRAYS}, {}, 8),
}


@pytest.mark.parametrize("case", list(SCHEDULE_CASES))
def test_schedules_match_numpy_reference(x64, case):
    train, grid, n = SCHEDULE_CASES[case]
    optimizer = "momentum" if case == "momentum_array" else "sgd"
    students, _, refs = check_against_reference(sgd_cfg(optimizer=optimizer, train=train, grid=grid), n)
    index = {"array": "schedule_index", "batch_array": "batch_index", "momentum_array": "momentum_index"}
    if case in index:  # several arrays made their index a grid axis
        assert sorted(set(students[index[case]])) == [0, 1]


@pytest.mark.parametrize("optimizer,online", [("sgd", True), ("momentum", True), ("sgd", False)])
def test_power_law_features_match_numpy_reference(x64, optimizer, online):
    """Linear predictor (standard, 1 layer, init zeros) on power-law features: online batches of fresh
    samples (logged train loss: the step's batch loss) or a fixed set of 12 (the whole set's loss);
    the test loss is sum_k lambda_k (w_k - w*_k)^2 computed in numpy."""
    grid = {"momentum": [0.3, 0.7]} if optimizer == "momentum" else {}
    students, results, refs = check_against_reference(power_law_cfg(optimizer, online, grid=grid),
                                                      8 if optimizer == "momentum" else 4)
    # init zeros: the first test loss is sum_k lambda_k w*_k^2 = sum_k k^-a
    for got in results.values():
        np.testing.assert_allclose(got["test_loss"][0], np.sum(np.arange(1, 17.0) ** -1.5), rtol=1e-12)


def _by_key(students, results):
    key = lambda r: (int(r["seed"]), round(float(r["lr_1"]), 12))
    return {key(r): results[int(r["student_id"])] for r in students.to_dict("records")}


def test_lr_points_share_batches_and_chunking_changes_nothing(x64):
    """A student is the same when other learning-rate points (and seeds) are added to the grid, and
    under any chunk size: its batches depend on its instance and the step only."""
    cfg = sgd_cfg(seeds=(0, 1, 2))
    cfg["grid"]["lr_1"] = [1.0, 0.5, 0.75]
    students, full = train_config(cfg)
    full = _by_key(students, full)
    alone = sgd_cfg(seeds=(2,))
    alone["grid"]["lr_1"] = [0.75]
    s1, r1 = train_config(alone)
    (key, res), = _by_key(s1, r1).items()
    assert key == (2, 0.75) and int(s1["student_id"].iloc[0]) == 0  # id 8 in the full grid
    for name in ("train_loss", "test_loss"):
        np.testing.assert_allclose(res[name], full[key][name], rtol=1e-12, atol=0)
    for chunk_size in (1, 4):
        s2, r2 = train_config(cfg, chunk_size=chunk_size)
        for k, res in _by_key(s2, r2).items():
            np.testing.assert_allclose(res["test_loss"], full[k]["test_loss"], rtol=1e-12, atol=0)
            np.testing.assert_allclose(res["train_loss"], full[k]["train_loss"], rtol=1e-12, atol=0)


def test_multi_device_sgd_matches_single_device():
    """4 simulated CPU devices (instance axis sharded) give the curves of one device for an sgd grid."""
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        jax.config.update("jax_enable_x64", True)
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(os.path.abspath(__file__)))!r}]
        from conftest import train_config
        from test_sgd import sgd_cfg
        students, res = train_config(sgd_cfg(optimizer="momentum", seeds=range(6)))
        print(json.dumps({{"n_dev": jax.device_count(),
                           "curves": {{k: v["test_loss"].tolist() + v["train_loss"].tolist() for k, v in res.items()}}}}))
    """)
    out = {}
    for n_dev in (1, 4):
        env = device_env(n_dev)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        out[n_dev] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out[4]["n_dev"] == 4 and out[1]["n_dev"] == 1
    assert out[1]["curves"].keys() == out[4]["curves"].keys() and len(out[1]["curves"]) == 12
    for k, v in out[1]["curves"].items():
        np.testing.assert_allclose(out[4]["curves"][k], v, rtol=1e-12)


def test_divergent_sgd_student_is_recorded_and_isolated(x64):
    """A huge rate diverges: recorded (diverged, NaN from its divergence step on, the reference curve
    before it) while the other rate points of its instance are those of the grid without it."""
    cfg = sgd_cfg(grid={"lr_1": [1.0, 0.5, 1e4]})
    students, results = train_config(cfg)
    n_div = 0
    for sid, got in results.items():
        row, ref = reference_of(students, sid)
        if row["lr_1"] < 100:
            assert not got["diverged"]
            np.testing.assert_allclose(got["train_loss"], ref["train_loss"], rtol=1e-10)
            continue
        n_div += 1
        k = int(got["diverged_step"])
        assert got["diverged"] and 1 <= k <= STEPS, k
        assert np.all(np.isnan(got["train_loss"][k:])) and np.all(np.isnan(got["test_loss"][k:]))
        np.testing.assert_allclose(got["train_loss"][:k], ref["train_loss"][:k], rtol=1e-10)
        with np.errstate(invalid="ignore"):
            assert not ref["train_loss"][k] < 1e3 * ref["train_loss"][0]  # it really blew up there
    assert n_div == 2
    gentle = sgd_cfg(grid={"lr_1": [1.0, 0.5]})
    s2, r2 = train_config(gentle)
    full = _by_key(students, results)
    for key, res in _by_key(s2, r2).items():
        np.testing.assert_allclose(res["test_loss"], full[key]["test_loss"], rtol=1e-12, atol=0)


def test_array_files_npy_and_csv_load_as_the_inline_arrays(x64, tmp_path):
    """schedule_array from a .npy of two rows (two index points), batch_array from a .csv: the run is
    the run with the same numbers inline."""
    np.save(tmp_path / "lr.npy", np.asarray(LR_ARRAYS))
    (tmp_path / "batch.csv").write_text(",".join(str(v) for v in BATCH_ARRAYS[1]) + "\n")
    inline = sgd_cfg(seeds=(0,), train={"schedule": "array", "schedule_array": LR_ARRAYS,
                                        "batch_schedule": "array", "batch_array": [BATCH_ARRAYS[1]]})
    files = sgd_cfg(seeds=(0,), train={"schedule": "array", "schedule_array": str(tmp_path / "lr.npy"),
                                       "batch_schedule": "array", "batch_array": str(tmp_path / "batch.csv")})
    s1, r1 = train_config(inline)
    s2, r2 = train_config(files)
    assert len(r1) == len(r2) == 4 and sorted(set(s2["schedule_index"])) == [0, 1]
    for sid in r1:
        np.testing.assert_array_equal(r2[sid]["test_loss"], r1[sid]["test_loss"])


# ---- bad input through the CLI --------------------------------------------------------------

def _bad_cases(tmp):
    steps = STEPS
    return {
        "gd-with-batch-size": (sgd_cfg(optimizer="gd"), "train.batch_size"),
        "online-with-gd": (power_law_cfg("gd", batch_size=None), "train.optimizer"),
        "online-without-batch-size": (power_law_cfg(batch_size=None), "train.batch_size"),
        "batch-end-over-batch-size": (sgd_cfg(train={"batch_schedule": "ramp", "batch_end": M + 1}),
                                      "train.batch_end"),
        "array-wrong-length": (sgd_cfg(train={"schedule": "array", "schedule_array": [1.0] * (steps - 1)}),
                               "train.schedule_array"),
        "missing-npy": (sgd_cfg(train={"schedule": "array", "schedule_array": str(tmp / "nope.npy")}),
                        "train.schedule_array"),
        "momentum-array-above-1": (sgd_cfg(optimizer="momentum", train={
            "momentum_schedule": "array", "momentum_array": [0.5] * (steps - 1) + [1.5]}), "train.momentum_array"),
        "momentum-schedule-without-momentum": (sgd_cfg(train={
            "momentum_schedule": "array", "momentum_array": [0.5] * steps}), "train.momentum_schedule"),
    }


@pytest.mark.parametrize("case", ["gd-with-batch-size", "online-with-gd", "online-without-batch-size",
                                  "batch-end-over-batch-size", "array-wrong-length", "missing-npy",
                                  "momentum-array-above-1", "momentum-schedule-without-momentum"])
def test_bad_input_exits_2_with_one_line_and_no_run_directory(tmp_path, case):
    cfg, field = _bad_cases(tmp_path)[case]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "out"
    rc, stdout, stderr = cli_main(["run", path, "--out", out, "--quiet"])
    assert rc == 2, (stdout, stderr)
    assert stderr.startswith("lrsweep: ") and stderr.count("\n") == 1, stderr
    assert field in stderr and "Traceback" not in stderr, stderr
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))


def test_segments_give_the_numbers_of_one_scan(x64):
    """A chunk trained in segments of 2 steps (what checkpointing and progress reports do) gives the
    numbers of one scan bit for bit, with the step-indexed pieces all in play: momentum array, cosine
    rate, batch ramp."""
    import types

    from lrsweep.core import config
    from lrsweep.core import engine
    from lrsweep.core import runner
    cfg = sgd_cfg(optimizer="momentum", train={"schedule": "cosine", "batch_schedule": "ramp", "batch_start": 1,
                                               "momentum_schedule": "array", "momentum_array": MOMENTUM_ARRAYS})
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    fn = engine.make_chunk_fn(spec)
    _, (chunk,) = engine.plan_chunks(spec, students, max_memory=1 << 30, dtype_bytes=8)
    whole = engine.run_chunk(fn, chunk)
    seen = []
    segments = types.SimpleNamespace(enabled=False, segment_steps=2)
    parts = engine.run_chunk(fn, chunk, checkpoints=segments, on_segment=lambda t, total, n: seen.append(t))
    assert seen == [2, 4, 6]
    for name in ("train_loss", "test_loss"):
        np.testing.assert_array_equal(parts["curves"][name], whole["curves"][name])


def test_small_first_batch_loss_is_not_divergence():
    """Online SGD, batch 1, a gentle rate (the excess risk falls for every seed): no student diverges.
    Seeds 1447 and 2593 draw a first sample whose loss is ~3e-6 and 5e-8 of the usual ~1 (float32),
    so `loss > 1e6 * loss_0` trips at step 1 on an ordinary second sample."""
    cfg = power_law_cfg(seeds=(0, 1447, 2593), steps=20, n_features=32, grid={"lr": [0.05]}, batch_size=1)
    cfg["task"]["noise_std"] = 0.1
    students, results = train_config(cfg)
    assert len(results) == 3
    for sid, got in results.items():
        assert not got["diverged"], (sid, int(got["diverged_step"]), got["train_loss"][:3])
        assert np.all(np.isfinite(got["test_loss"])) and got["test_loss"][-1] < got["test_loss"][0]


def test_reference_masked_batch_is_the_mean_over_its_first_rows():
    """The reference's per-row weights (1/m on the first m rows, 0 on the rest) give the plain mean
    loss and gradients of those m rows alone; the reference's own check, no engine involved."""
    rng = np.random.default_rng(0)
    params = [rng.normal(size=(D, H)), rng.normal(size=(H, 2))]
    X, y = rng.normal(size=(M, D)), rng.normal(size=(M, 2))
    kw = dict(parameterization="standard", activation="relu")
    masked = reference.loss_and_grads(params, X, y, weights=mask(M, 3), **kw)
    plain = reference.loss_and_grads(params, X[:3], y[:3], **kw)
    np.testing.assert_allclose(masked[0], plain[0], rtol=1e-13)
    for g, w in zip(masked[1], plain[1]):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)
