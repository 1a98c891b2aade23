"""The curvature metrics ``sharpness`` and ``ntk_eig`` (lrsweep.core.metrics, lrsweep.core.curvature) through the
engine, against dense eigendecompositions written here: the Hessian of a loss and the Jacobian of a
forward pass coded in this file from plain jnp ops (seed 003 Sec. 4.2: NTK over n; Corollary 1)."""
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import numpy_instance, train_config

D, N, H = 3, 6, 4
BIG = 10_000  # sharpness_iters >= P: Lanczos spans the whole space, so its top Ritz value is exact


# ---- the student, its loss and plain gradient descent, written independently of lrsweep ----------

def forward(par, act, weights, readout, x):
    """paper_2nn X W1 W2 / h; paper_deep s(..s(X W1)..Wm) a / sqrt(h); standard s(..)Wm; ntk the
    same over sqrt(d h^(m-1))."""
    z, m, h, d = x, len(weights), weights[0].shape[1], x.shape[1]
    for l, w in enumerate(weights):
        z = z @ w
        if act == "relu" and (par == "paper_deep" or l < m - 1):
            z = jnp.maximum(z, 0.0)
    if par == "paper_2nn":
        return z / h
    if par == "paper_deep":
        return z @ readout / math.sqrt(h)
    if par == "ntk":
        return z / math.sqrt(d * h ** (m - 1))
    return z


def loss_value(loss, pred, y):
    if loss == "mse":
        return 0.5 * jnp.mean(jnp.sum((pred - y) ** 2, axis=1))
    if loss == "logistic":
        return jnp.mean(jnp.log1p(jnp.exp(-y * pred)))
    return jnp.mean(jnp.exp(-y * pred))  # exponential


@functools.lru_cache(maxsize=None)
def reference_fns(par, act, loss, shapes):
    """Jitted (Hessian of the loss, Jacobian of the outputs, gradient) of the flat weights theta."""
    sizes = [math.prod(s) for s in shapes]

    def unflat(theta):
        parts = jnp.split(theta, np.cumsum(sizes)[:-1])
        return [p.reshape(s) for p, s in zip(parts, shapes)]

    outputs = lambda theta, x, readout: forward(par, act, unflat(theta), readout, x).reshape(-1)
    loss_fn = lambda theta, x, y, readout: loss_value(loss, forward(par, act, unflat(theta), readout, x), y)
    def signal_grad(theta, x, y, readout):  # mse's gradient with the residual f - y replaced by -y
        _, pullback = jax.vjp(lambda th: outputs(th, x, readout), theta)
        return pullback(-y.reshape(-1) / x.shape[0])[0]

    return (jax.jit(jax.hessian(loss_fn)), jax.jit(jax.jacrev(outputs)), jax.jit(jax.grad(loss_fn)),
            jax.jit(signal_grad))


def dense_reference(case, weights0, inst, lrs, steps, log_steps):
    """{t: (top Hessian eigenvalue, top eigenvalue of J J^T / n)} at the logged steps of plain GD
    (with ``gradient: signal_only``, GD on the signal term; the Hessian is the true loss's)."""
    x, y, readout = jnp.asarray(inst["x"]), jnp.asarray(inst["y"]), jnp.asarray(inst["readout"])
    shapes = tuple(w.shape for w in weights0)
    hessian, jacobian, grad, signal_grad = reference_fns(case["par"], case["act"], case["loss"], shapes)
    if case.get("gradient") == "signal_only":
        grad = signal_grad
    rates = jnp.concatenate([jnp.full(w.size, lr) for w, lr in zip(weights0, lrs)])
    theta, out = jnp.concatenate([jnp.asarray(w).reshape(-1) for w in weights0]), {}
    for t in range(steps + 1):
        if t in log_steps:
            jac = np.asarray(jacobian(theta, x, readout))
            out[t] = (np.linalg.eigvalsh(np.asarray(hessian(theta, x, y, readout)))[-1],
                      np.linalg.eigvalsh(jac @ jac.T / x.shape[0])[-1])
        theta = theta - rates * grad(theta, x, y, readout)
    return out


def make_cfg(par, n_layers, act, loss, formulation="autodiff", kind="linear_teacher", lrs=(0.2, 0.1),
             steps=6, log_every=3, iters=BIG, seeds=(0,), width=H, input_dim=D, n_train=N, out=2,
             gradient="exact"):
    task = {"kind": kind, "input_dim": input_dim, "n_train": n_train, "n_test": 8}
    if kind == "classification":
        task.update(data="separable", margin=0.5)
        out = 1
    cfg = {"name": "curv", "seeds": list(seeds), "task": task, "init": "gaussian",
           "model": {"parameterization": par, "n_layers": n_layers, "width": width, "activation": act,
                     "output_dim": 1 if formulation == "lowrank" else out},
           "train": {"steps": steps, "log_every": log_every, "formulation": formulation, "loss": loss,
                     "gradient": gradient,
                     "metrics": ["sharpness", "ntk_eig"], "sharpness_iters": iters},
           "grid": {"lr_1": list(lrs)}}
    for l in range(2, n_layers + (par != "paper_deep")):  # paper_deep's readout is not trained
        cfg["grid"][f"lr_{l}"] = lrs[0]
    return cfg


def lr_list(row, spec):
    return [row[f"lr_{l}"] for l in range(1, spec.arch.n_trainable + 1)]


# every parameterization (n_layers 1 and ReLU included), every loss (logistic and exponential on
# classification data, mse on both), the three formulations
CASES = [
    dict(par="paper_2nn", n_layers=2, act="linear", loss="mse", formulation="moments"),
    dict(par="paper_deep", n_layers=3, act="relu", loss="mse"),
    dict(par="paper_deep", n_layers=3, act="linear", loss="mse", formulation="lowrank"),
    dict(par="paper_deep", n_layers=3, act="relu", loss="mse", gradient="signal_only"),
    dict(par="paper_deep", n_layers=2, act="relu", loss="exponential", kind="classification"),
    dict(par="standard", n_layers=2, act="relu", loss="logistic", kind="classification"),
    dict(par="standard", n_layers=1, act="linear", loss="exponential", kind="classification"),
    dict(par="standard", n_layers=3, act="relu", loss="mse", kind="classification"),
    dict(par="ntk", n_layers=1, act="linear", loss="mse"),
    dict(par="ntk", n_layers=2, act="linear", loss="logistic", kind="classification"),
    dict(par="ntk", n_layers=3, act="relu", loss="exponential", kind="classification"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(v) for v in c.values()))
def test_curvature_matches_dense_eigendecomposition(x64, case):
    cfg = make_cfg(**case)
    students, results = train_config(cfg)
    for sid, got in results.items():
        spec, row, weights0, inst = numpy_instance(students, sid)
        assert not got["diverged"]
        ref = dense_reference(case, weights0, inst, lr_list(row, spec), spec.steps, spec.log_steps)
        assert len(ref) == 3
        for slot, t in enumerate(spec.log_steps):
            # x64 round-off of the Lanczos recurrence (k = P, full reorthogonalisation) and of GD
            np.testing.assert_allclose(got["sharpness"][slot], ref[t][0], rtol=1e-8, atol=1e-12, err_msg=f"t={t}")
            np.testing.assert_allclose(got["ntk_eig"][slot], ref[t][1], rtol=1e-8, atol=1e-12, err_msg=f"t={t}")


@pytest.mark.filterwarnings("ignore:Explicitly requested dtype float64")  # numpy_instance in float32
def test_curvature_in_float32():
    """float32 runs give the float64 dense values to float32 precision (data, GD and Lanczos in
    float32: relative error ~1e-6, bound 1e-4)."""
    case = dict(par="standard", n_layers=2, act="relu", loss="logistic", kind="classification")
    students, results = train_config(make_cfg(**case))
    for sid, got in results.items():
        assert got["sharpness"].dtype == np.float32
        spec, row, weights0, inst = numpy_instance(students, sid)  # float32 data (not float64's samples)
        with jax.enable_x64(True):
            ref = dense_reference(case, weights0, inst, lr_list(row, spec), spec.steps, spec.log_steps)
        for slot, t in enumerate(spec.log_steps):
            np.testing.assert_allclose(got["sharpness"][slot], ref[t][0], rtol=1e-4)
            np.testing.assert_allclose(got["ntk_eig"][slot], ref[t][1], rtol=1e-4)


def test_uv_model_sharpness_equals_ntk_at_convergence(x64):
    """The uv model (one point, 2-layer ntk, label 0) in the catapult range 2/lambda_0 < eta < 4/lambda_0:
    the loss first rises, then converges to f = 0, where the Hessian is J^T J and its top eigenvalue
    the NTK's (seed 003 Corollary 1; Lewkowycz et al. 2020), below 2/eta."""
    cfg = {"name": "uv", "seeds": [0], "task": {"kind": "single_point", "input_dim": 1, "n_train": 1},
           "init": "gaussian", "model": {"parameterization": "ntk", "n_layers": 2, "width": 16, "output_dim": 1},
           "train": {"steps": 400, "log_every": 100, "metrics": ["sharpness", "ntk_eig", "loss_peak"],
                     "sharpness_iters": 8},
           "grid": {"lr_1": [1.5], "lr_2": 1.5}}
    students, results = train_config(cfg)
    (got,) = results.values()
    spec, row, (u, v), inst = numpy_instance(students, 0)
    lam0 = (np.sum(u ** 2) + np.sum(v ** 2)) / 16  # |grad f|^2 of f = u . v / sqrt(16) at x = 1
    assert 2.0 / lam0 < 1.5 < 4.0 / lam0  # the catapult range
    np.testing.assert_allclose(got["ntk_eig"][0], lam0, rtol=1e-12)
    assert got["loss_peak"] > got["train_loss"][0] and got["train_loss"][-1] < 1e-24
    assert got["ntk_eig"][-1] < 2.0 / 1.5 < got["ntk_eig"][0]
    np.testing.assert_allclose(got["sharpness"][-1], got["ntk_eig"][-1], rtol=1e-6)


def test_warm_start_converges_where_a_cold_start_does_not(x64):
    """3 Lanczos steps per logged step (P = 56): from a random vector (step 0) 10-30% off the top
    eigenvalue; warm-started over 30 logged steps of a slowly changing Hessian (a linear student,
    smooth in its weights, at lr 1e-4), equal to it up to the lag behind the moving Hessian (~1e-9)."""
    case = dict(par="standard", n_layers=2, act="linear", loss="mse")
    cfg = make_cfg(**case, formulation="autodiff", lrs=(1e-4,), steps=30, log_every=1, iters=3, width=8,
                   input_dim=6, n_train=16, out=1)
    students, results = train_config(cfg)
    (got,) = results.values()
    spec, row, weights0, inst = numpy_instance(students, 0)
    ref = dense_reference(case, weights0, inst, lr_list(row, spec), spec.steps, (0, spec.steps))
    cold = abs(got["sharpness"][0] - ref[0][0]) / ref[0][0]
    warm = abs(got["sharpness"][-1] - ref[spec.steps][0]) / ref[spec.steps][0]
    assert warm < 1e-7 and cold > 1e-2, (warm, cold)
    assert np.all(got["sharpness"] <= ref[0][0] * (1 + 1e-6))  # Ritz values never exceed the top


@pytest.mark.parametrize("par,n_layers,out,others", [("paper_deep", 3, 1, ["lowrank", "moments"]),
                                                     ("standard", 2, 2, ["moments"])])
def test_moment_formulations_agree_with_autodiff(x64, par, n_layers, out, others):
    """A linear mse student: the NTK from the moments (virtual inputs S^(1/2)) and the Hessian of the
    moments loss equal the sample-based ones, at every logged step (default sharpness_iters < P)."""
    runs = {}
    for formulation in ["autodiff", *others]:
        cfg = make_cfg(par, n_layers, "linear", "mse", formulation=formulation, out=out, iters=20,
                       width=6, input_dim=6, n_train=12, steps=8, log_every=2)
        runs[formulation] = train_config(cfg)[1]
    for formulation in others:
        for sid, got in runs[formulation].items():
            for name in ("sharpness", "ntk_eig"):
                np.testing.assert_allclose(got[name], runs["autodiff"][sid][name], rtol=1e-8, err_msg=formulation)
    assert 6 * 6 * (n_layers - 1) + 6 * out > 20  # P > sharpness_iters: the warm-started path


def test_divergent_student_is_nan_and_leaves_the_others_alone(x64):
    case = dict(par="standard", n_layers=2, act="relu", loss="mse", steps=8, log_every=2, iters=5)
    _, with_div = train_config(make_cfg(**case, lrs=(0.1, 0.05, 80.0)))
    _, without = train_config(make_cfg(**case, lrs=(0.1, 0.05)))
    (bad,) = [r for r in with_div.values() if r["diverged"]]
    logged = np.arange(0, 9, 2)
    after = logged >= bad["diverged_step"]
    assert after.any() and (~after).any()
    for name in ("sharpness", "ntk_eig"):
        assert np.all(np.isnan(bad[name][after])) and np.all(np.isfinite(bad[name][~after]))
    # the same students (ids 0, 1 in both grids) get the same values, chunk neighbour or not
    for sid in (0, 1):
        assert not with_div[sid]["diverged"]
        for name in ("sharpness", "ntk_eig"):
            np.testing.assert_allclose(with_div[sid][name], without[sid][name], rtol=1e-12)


def test_zero_hessian_gives_zero_not_nan(x64):
    """A Hessian exactly zero (e.g. a ReLU student whose units are all dead): Lanczos breaks down at
    once (residual exactly 0, matfree's next basis vector 0/0); the value is 0, not NaN."""
    from lrsweep.core import curvature
    value, ritz = curvature.hessian_top_eig(lambda th: jnp.sum(th) * 0.0 + 1.0, jnp.ones(5), jnp.ones(5) / math.sqrt(5), 5)
    assert value == 0.0 and np.all(np.isfinite(np.asarray(ritz)))


def test_chunk_memory_counts_the_metrics_working_set():
    from lrsweep.core import config
    from lrsweep.core import runner
    from lrsweep.core.chunking import bytes_per_student
    base = make_cfg("standard", 2, "relu", "mse", iters=7, width=8, n_train=10)
    plain = {**base, "train": {**base["train"], "metrics": []}}
    specs = [next(iter(runner.prepare(config.load_config(c))[1].values())) for c in (base, plain)]
    p = D * 8 + 8 * 2
    # at least the Lanczos basis (7 x P) and the state (P), and the (n * out) x P Jacobian, float64
    assert bytes_per_student(specs[0], 8) - bytes_per_student(specs[1], 8) >= 8 * (8 * p + 10 * 2 * p)


def test_warm_start_survives_checkpointed_segments(x64, tmp_path):
    """The Lanczos state travels with the training state: segments of 3 steps, saved after each,
    give one scan's sharpness bit for bit (with 4 iterations per logged step the values depend on it)."""
    from lrsweep.core import config
    from lrsweep.core import engine
    from lrsweep.core import runner
    from lrsweep.core.checkpoint import ChunkCheckpoints
    from conftest import flat_result
    cfg = make_cfg("standard", 2, "relu", "mse", steps=10, log_every=1, iters=4, lrs=(0.1, 0.05))
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    ck, saved = ChunkCheckpoints(tmp_path / "ck", every_s=1e-9, segment_steps=3), []
    real_save = ck.save
    ck.save = lambda ids, step, leaves: saved.append(step) or real_save(ids, step, leaves)
    runs = []
    for checkpoints in (None, ck):
        runs.append({int(sid): flat_result(res, i)["sharpness"]
                     for _, res in engine.iter_group(spec, students, checkpoints=checkpoints)
                     for i, sid in enumerate(res["student_id"])})
    assert runs[0].keys() == runs[1].keys() == {0, 1}
    for sid in runs[0]:
        np.testing.assert_array_equal(runs[1][sid], runs[0][sid])
    assert set(saved) == {3, 6, 9}  # saved (state included) between segments


def numpy_lanczos_top(h, start, k):
    """The top Ritz pair of the symmetric matrix h (P, P) on the Krylov space K_k(h, start): plain numpy,
    float64, Lanczos with every new vector orthogonalised twice against all earlier ones."""
    q = [start / np.linalg.norm(start)]
    for _ in range(k - 1):
        w = h @ q[-1]
        for _ in range(2):
            w = w - np.array(q).T @ (np.array(q) @ w)
        q.append(w / np.linalg.norm(w))
    basis = np.array(q)  # (k, P)
    values, vectors = np.linalg.eigh(basis @ h @ basis.T)
    return values[-1], basis.T @ vectors[:, -1]


@pytest.mark.parametrize("k", [3, 8, 30])
def test_lanczos_ritz_pair_matches_a_numpy_lanczos(x64, k):
    """curvature.top_eig (three-term step + one full Gram-Schmidt pass) gives the Ritz pair of a plain
    two-pass Lanczos on the same Krylov space to x64 round-off (k = P = 30: the top eigenpair), for a
    spread, a clustered-top and an indefinite spectrum (one compile per k)."""
    from lrsweep.core import curvature
    rng = np.random.default_rng(k)
    p = 30
    top_eig = jax.jit(lambda m, v0: curvature.top_eig(lambda v: m @ v, v0, k))
    spectra = {"spread": np.geomspace(1e-3, 10.0, p),
               "clustered top": np.r_[np.linspace(0, 1, p - 3), 5.0, 5.0 - 1e-6, 4.9],
               "indefinite": np.linspace(-3.0, 2.0, p)}
    for spectrum, eig in spectra.items():
        u, _ = np.linalg.qr(rng.normal(size=(p, p)))
        h, start = (u * eig) @ u.T, rng.normal(size=p)
        start /= np.linalg.norm(start)
        value, ritz = top_eig(jnp.asarray(h), jnp.asarray(start))
        ref_value, ref_ritz = numpy_lanczos_top(h, start, k)
        np.testing.assert_allclose(float(value), ref_value, rtol=1e-10, err_msg=spectrum)  # x64 round-off
        if k == p:
            np.testing.assert_allclose(float(value), eig.max(), rtol=1e-10, err_msg=spectrum)
        if spectrum != "clustered top" or k < p:  # a Ritz vector is defined where the top Ritz value is separated
            np.testing.assert_allclose(abs(np.dot(np.asarray(ritz), ref_ritz)), 1.0, atol=1e-8, err_msg=spectrum)
