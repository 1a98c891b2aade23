"""Task instances (lrsweep.core.tasks) against their documented distributions, recomputed in numpy.

The engine-versus-numpy tests take their initial weights and data from ``make_instance``, so a bug
in data generation cannot show there: here every instance is checked against the config's
documentation (lrsweep/config.py FIELDS, lrsweep/tasks/linear_teacher.py) with expected values written out.

Statistical checks: sample moments of N(0, s^2) entries (pooled over several seeds and large
sizes) must lie within 5 standard errors of the documented moment; SE of the mean is s/sqrt(N), of
the mean square s^2 sqrt(2/N). A correct generator fails one such check with probability ~6e-7, and
every draw here is fixed by its seed, so a check that passes once always passes. The pooled sizes
(2000 to 2.4 million entries) put 5 SE of a variance at 0.1% to 16% of it: far below the error of
the bugs they guard against (a d/h swap in a scale: a factor 1.5 to 9; a dropped or squared factor),
and 0.7% for the design X itself. Exact identities (orthogonality, labels, moments) use rtol 1e-12:
float64 round-off of a few matrix products.
"""
import functools

import numpy as np
import pytest

from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner

N_SE = 5.0

# The static settings checked below (generating an instance set compiles once per setting: few,
# large settings; the traced noise_std / target_std / init_scale reuse the compiled program).
# d != h everywhere, so a d/h mix-up in a variance shows.
SETTINGS = {
    # 40 seeds: beta (d, 1) and the readout (h, 1) pool 12000 / 8000 entries
    "deep": dict(seeds=range(40), par="paper_deep", n_layers=3, d=300, h=200, n=100),
    "standard": dict(seeds=range(10), par="standard", n_layers=2, d=150, h=50, out=4, n=200),
    "standard_relu_teacher": dict(seeds=range(10), par="standard", n_layers=2, d=150, h=50, out=4, n=200,
                                  teacher_activation="relu"),
    "2nn": dict(seeds=range(4), par="paper_2nn", n_layers=2, d=60, h=40, n=16),
    "orthogonal": dict(seeds=range(2), par="standard", n_layers=3, d=50, h=20, out=3, n=90, init="orthogonal",
                       design="orthogonal", target="orthonormal"),
}


def build(setting, *, moments=False, **traced):
    """Every instance (one per seed) of a setting, generated through the engine's own path: config ->
    expand_grid -> GroupSpec -> make_instances. ``traced``: noise_std, target_std, init_scale.
    Returns (students, spec, [params0 per layer], inst): float64 numpy arrays, leading axis = seed."""
    return _build(setting, moments, tuple(sorted(traced.items())))


@functools.lru_cache(maxsize=None)
def _build(setting, moments, traced):
    kw = dict(SETTINGS[setting])
    traced = dict(traced)
    cfg = {"name": "t", "seeds": list(kw.pop("seeds")),
           "task": {"input_dim": kw.pop("d"), "n_train": kw.pop("n"), "n_test": 300,
                    **{k: traced[k] for k in ("noise_std", "target_std") if k in traced}},
           "model": {"parameterization": kw.pop("par"), "n_layers": kw.pop("n_layers"), "width": kw.pop("h"),
                     "output_dim": kw.pop("out", 1), "activation": kw.pop("activation", "linear")},
           "init": kw.pop("init", "gaussian"), "init_scale": traced.get("init_scale", 1.0),
           "train": {"steps": 1}, "grid": {"lr": 1.0}}
    cfg["task"].update(kw)  # design, target, teacher_activation
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    hp = engine.instance_hparams(spec, {c: students[c].to_numpy() for c in spec.instance_columns})
    params0, inst = engine.make_instances(spec, moments, hp)

    def to_np(a):
        a = np.array(a, np.float64)
        a.setflags(write=False)  # shared between tests through the cache
        return a
    return students, spec, [to_np(params0[k]) for k in spec.arch.layer_names], {k: to_np(v) for k, v in inst.items()}


def assert_normal(sample, std, label):
    """Mean 0 and mean square std^2 within N_SE standard errors (iid Gaussian entries, pooled)."""
    x = np.asarray(sample, np.float64).ravel()
    N = x.size
    assert abs(x.mean()) < N_SE * std / np.sqrt(N), (label, "mean", x.mean(), "std", std, "N", N)
    ms, var = np.mean(x * x), std**2
    assert abs(ms - var) < N_SE * var * np.sqrt(2.0 / N), (label, "mean square", ms, "expected", var, "N", N)


def relu(z):
    return np.maximum(z, 0.0)


def xb(inst, x="x"):
    """X beta per seed."""
    return np.einsum("snd,sdk->snk", inst[x], inst["beta"])


# --------------------------------------------------------------------------------------
# Design X
# --------------------------------------------------------------------------------------

def test_gaussian_design_is_iid_standard_normal(x64):
    """task.design: gaussian -- X ~ N(0, 1) entries: mean, variance (pooled and per column), the
    Gaussian 4th moment E x^4 = 3, and independent across seeds."""
    _, _, _, inst = build("deep")
    X = inst["x"]
    assert X.shape == (40, 100, 300)
    assert_normal(X, 1.0, "X")
    x4 = np.mean(X**4)
    assert abs(x4 - 3.0) < N_SE * np.sqrt(96.0 / X.size), x4  # var(x^4) = E x^8 - (E x^4)^2 = 105 - 9
    col = np.mean(X**2, axis=(0, 1))  # per input column, 4000 entries each
    assert np.all(np.abs(col - 1.0) < N_SE * np.sqrt(2.0 / 4000)), col
    for a, b in [(0, 1), (1, 2), (0, 39)]:
        corr = np.mean(X[a] * X[b])
        assert abs(corr) < N_SE / np.sqrt(X[a].size), (a, b, corr)


def test_orthogonal_design_has_gram_n_identity(x64):
    """task.design: orthogonal -- X = sqrt(n) Q, so X^T X = n I; a different X per seed."""
    _, _, _, inst = build("orthogonal")
    X = inst["x"]
    assert X.shape == (2, 90, 50)
    for s in range(2):
        np.testing.assert_allclose(X[s].T @ X[s], 90 * np.eye(50), atol=1e-10 * 90)
    assert np.abs(X[0] - X[1]).max() > 0.5


# --------------------------------------------------------------------------------------
# Teacher beta
# --------------------------------------------------------------------------------------

# setting -> (beta's shape per seed, the authors' target_std written out: seed 000 App. F)
DEFAULT_TARGET_STD = {
    "2nn": ((60, 40), 1 / 60),                 # paper_2nn: 1/d; beta is (d, h)
    "deep": ((300, 1), 1 / np.sqrt(200)),      # paper_deep: 1/sqrt(h); beta is (d, 1)
    "standard": ((150, 4), 1 / np.sqrt(150)),  # standard: 1/sqrt(d); beta is (d, out)
}


@pytest.mark.parametrize("setting", sorted(DEFAULT_TARGET_STD))
def test_gaussian_target_has_the_authors_default_std(x64, setting):
    """task.target: gaussian with task.target_std null -- beta ~ N(0, target_std^2) with the authors'
    target_std per parameterization (d != h: a d/h mix-up changes the variance 1.5x to 9x)."""
    shape, target_std = DEFAULT_TARGET_STD[setting]
    students, _, _, inst = build(setting)
    np.testing.assert_allclose(students["target_std"], target_std, rtol=1e-12)
    assert inst["beta"].shape[1:] == shape
    assert_normal(inst["beta"], target_std, f"beta {setting}")


def test_gaussian_target_explicit_std(x64):
    students, _, _, inst = build("standard", target_std=0.3)
    assert (students["target_std"] == 0.3).all()
    assert_normal(inst["beta"], 0.3, "beta, target_std 0.3")


def test_orthonormal_target(x64):
    """task.target: orthonormal -- beta = Q / sqrt(d): beta^T beta = I / d (3 outputs)."""
    _, _, _, inst = build("orthogonal")
    for s in range(2):
        b = inst["beta"][s]
        assert b.shape == (50, 3)
        np.testing.assert_allclose(b.T @ b, np.eye(3) / 50, atol=1e-12)


# --------------------------------------------------------------------------------------
# Labels and noise
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["standard", "orthogonal"])
def test_noiseless_labels_are_x_beta(x64, setting):
    """y = X beta (linear teacher, noise_std 0), in numpy from the instance's own X and beta (both designs)."""
    _, _, _, inst = build(setting)
    np.testing.assert_allclose(inst["y"], xb(inst), rtol=1e-12, atol=1e-14)


def test_label_noise_has_std_noise_std(x64):
    """y - X beta ~ N(0, noise_std^2) entries, on every output (standard, 4 outputs, 8000 entries)."""
    _, _, _, inst = build("standard", noise_std=0.3)
    resid = inst["y"] - xb(inst)
    assert resid.shape == (10, 200, 4)
    assert_normal(resid, 0.3, "label noise")
    for k in range(4):
        assert_normal(resid[..., k], 0.3, f"label noise, output {k}")


def test_noise_std_changes_only_the_noise(x64):
    """Key slots: changing noise_std keeps X, beta, the weights and the readout; the noise draw is the same
    one, rescaled: y(0.4) - X beta = 4 (y(0.1) - X beta)."""
    _, _, p1, a = build("deep", noise_std=0.1)
    _, _, p2, b = build("deep", noise_std=0.4)
    for key in ("x", "beta", "readout"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    for w1, w2 in zip(p1, p2):
        np.testing.assert_array_equal(w1, w2)
    np.testing.assert_allclose(b["y"] - xb(a), 4.0 * (a["y"] - xb(a)), rtol=1e-10, atol=1e-13)
    assert np.abs(a["y"] - xb(a)).max() > 0.05  # there is noise to compare


def n_shared(a, b, tol=1e-12):
    """How many entries of a lie within tol of an entry of b. Two independent N(0, 1) draws of sizes
    N and M share a value within 1e-12 with probability ~ N M 1e-12 (< 1e-2 for the sizes here);
    one random stream reused for both shares every value."""
    a, b = np.sort(np.ravel(a)), np.sort(np.ravel(b))
    i = np.clip(np.searchsorted(b, a), 1, len(b) - 1)
    return int(np.sum(np.minimum(np.abs(a - b[i - 1]), np.abs(a - b[i])) <= tol))


def test_key_slots_are_independent_draws(x64):
    """PRNGKey(seed) is split into fixed slots (design, teacher, noise, test set, weights, readout): the
    standard normal draws behind X, beta / target_std, the noise / noise_std, W_l sqrt(fan_in), the
    readout sqrt(h) and X_test share no values with each other, nor with the same draw of another seed.
    (X_test is taken from a ReLU-teacher setting, which samples one; same seeds, so same keys.)"""
    students, _, (w1, w2), inst = build("deep", noise_std=0.1)
    target_std = students["target_std"].iloc[0]
    _, _, _, relu_inst = build("standard_relu_teacher")
    draws = {seed: {"X": inst["x"][seed], "beta": inst["beta"][seed] / target_std,
                    "noise": (inst["y"][seed] - inst["x"][seed] @ inst["beta"][seed]) / 0.1,
                    "W1": w1[seed] * np.sqrt(300), "W2": w2[seed] * np.sqrt(200),
                    "readout": inst["readout"][seed] * np.sqrt(200), "X_test": relu_inst["x_test"][seed]}
             for seed in (0, 1)}
    for seed, d in draws.items():
        for a in d:
            for b in d:
                if a < b:
                    assert n_shared(d[a], d[b]) == 0, (seed, a, b)
    for a in draws[0]:
        assert n_shared(draws[0][a], draws[1][a]) == 0, ("seeds 0 and 1", a)


# --------------------------------------------------------------------------------------
# The moments formulation's data
# --------------------------------------------------------------------------------------

def test_moments_instance_matches_the_dense_instance(x64):
    """The moments instance of a seed holds xx = X^T X / n, xy = X^T y / n, yy = sum(y * y) / n (over
    every output) of the dense (autodiff) instance of the same seed, labels with noise; and the same
    teacher and initial weights."""
    _, _, p_dense, dense = build("standard", noise_std=0.2)
    _, _, p_mom, mom = build("standard", noise_std=0.2, moments=True)
    n = 200
    for s in range(10):
        X, y = dense["x"][s], dense["y"][s]
        np.testing.assert_allclose(mom["xx"][s], X.T @ X / n, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(mom["xy"][s], X.T @ y / n, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(mom["yy"][s], np.sum(y * y) / n, rtol=1e-12)
    assert "x" not in mom and "y" not in mom  # the moments replace the training set
    np.testing.assert_array_equal(mom["beta"], dense["beta"])
    for w1, w2 in zip(p_dense, p_mom):
        np.testing.assert_array_equal(w1, w2)


# --------------------------------------------------------------------------------------
# Initial weights and readout
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting", ["deep", "orthogonal"])  # gaussian and orthogonal init
def test_init_scale_multiplies_every_trained_weight(x64, setting):
    _, _, p1, a = build(setting)
    _, _, p3, b = build(setting, init_scale=2.5)
    assert len(p1) == (2 if setting == "deep" else 3)
    for w1, w3 in zip(p1, p3):
        np.testing.assert_allclose(w3, 2.5 * w1, rtol=1e-14)
    for key in ("x", "y", "beta", "readout"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)  # the data and the fixed readout are not scaled


def test_gaussian_init_variances_are_one_over_fan_in(x64):
    """init: gaussian -- W1 ~ N(0, 1/d), later layers N(0, 1/h) (d != h), standard's last layer (h, out)
    too; paper_deep's readout a ~ N(0, 1/h)."""
    _, _, (w1, w2), inst = build("deep")
    assert w1.shape == (40, 300, 200) and w2.shape == (40, 200, 200)
    assert_normal(w1, 1 / np.sqrt(300), "W1")
    assert_normal(w2, 1 / np.sqrt(200), "W2")
    assert inst["readout"].shape == (40, 200, 1)
    assert_normal(inst["readout"], 1 / np.sqrt(200), "readout a")
    assert abs(np.mean(w2[0] * w2[1])) < N_SE * (1 / 200) / np.sqrt(w2[0].size)  # a new draw per seed
    _, _, (v1, v2), _ = build("standard")
    assert v2.shape == (10, 50, 4)
    assert_normal(v1, 1 / np.sqrt(150), "standard W1")
    assert_normal(v2, 1 / np.sqrt(50), "standard W2 (h x out)")


def test_orthogonal_init_has_orthonormal_columns(x64):
    _, _, params0, _ = build("orthogonal")
    assert [w.shape[1:] for w in params0] == [(50, 20), (20, 20), (20, 3)]
    for w in params0:
        for s in range(2):
            np.testing.assert_allclose(w[s].T @ w[s], np.eye(w.shape[2]), atol=1e-12)


# --------------------------------------------------------------------------------------
# ReLU teacher
# --------------------------------------------------------------------------------------

def test_relu_teacher_labels_and_test_set(x64):
    """task.teacher_activation: relu -- y = relu(X beta) + noise and y_test = relu(X_test beta), in numpy.

    Noiseless: y is relu(X beta). Noisy: y - relu(X beta) is the noise draw of the linear teacher's
    instance of the same seed (y - X beta there): noise is added after the ReLU, with its own key.
    The sampled test set (the test loss is not closed-form here): X_test ~ N(0, 1), its own draw.
    """
    _, spec, _, relu0 = build("standard_relu_teacher")
    _, _, _, relu1 = build("standard_relu_teacher", noise_std=0.25)
    _, _, _, lin1 = build("standard", noise_std=0.25)
    assert spec.task.teacher_activation == "relu"
    z = xb(relu0)
    assert 0.3 < (z < 0).mean() < 0.7  # about half the pre-activations are negative: the ReLU matters
    np.testing.assert_allclose(relu0["y"], relu(z), rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(relu1["x"], lin1["x"])
    np.testing.assert_allclose(relu1["y"] - relu(z), lin1["y"] - xb(lin1), rtol=1e-10, atol=1e-13)
    xt = relu1["x_test"]
    assert xt.shape == (10, 300, 150)
    assert_normal(xt, 1.0, "x_test")
    assert abs(np.mean(xt[:, :200] * relu1["x"])) < N_SE / np.sqrt(relu1["x"].size)  # not X again
    np.testing.assert_allclose(relu1["y_test"], relu(xb(relu1, "x_test")), rtol=1e-12, atol=1e-14)
