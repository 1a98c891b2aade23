"""Students with a trainable head (seed 002, lrsweep.families.stackelberg.heads): the head rules, phi_sharpness and body_sketch
against the independent numpy reference (tests/reference.py), their config checks and their invariances.

Tolerances: 1e-10 relative in float64 for trajectories (the two sides sum in different orders, and the
moments path forms X^T X first); 1e-5 relative for Hessian eigenvalues against central differences
(O(eps^2) truncation with eps = 1e-5); 1e-12 between runs of the engine itself (a chunk of another shape
may change the last bit, see test_engine.test_batch_and_chunk_independence).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference
from conftest import device_env, numpy_instance, train_config, with_changes
from lrsweep.core import config
from lrsweep.families.stackelberg import heads
from lrsweep.core import runner

INF = float("inf")


def head_cfg(par, n_layers, act, *, lr_body=None, ratios=(3.0, INF), teacher="linear", formulation="auto", ridge=0.0,
             update="simultaneous", head_steps=1, output_dim=1, steps=8, seeds=(0, 1), width=4, input_dim=6,
             n_train=16, metrics=("body_sketch",), grid_rates=None, **train):
    """A linear_teacher config of students with a head: lr_body x lr_ratio (.inf: the best response) or the
    rate axes ``grid_rates``, logged at every step, body_sketch holding the body's weights themselves
    (sketch_dim >= P_body)."""
    return {"name": "heads", "seeds": list(seeds),
            "task": {"input_dim": input_dim, "n_train": n_train, "teacher_activation": teacher,
                     "noise_std": 0.0 if teacher == "relu" else 0.1},
            "model": {"parameterization": par, "n_layers": n_layers, "width": width, "activation": act,
                      "output_dim": output_dim},
            "init": "gaussian",
            "train": {"steps": steps, "formulation": formulation, "head_ridge": ridge, "update": update,
                      "head_steps": head_steps, "metrics": list(metrics), "sketch_dim": 256, **train},
            "grid": grid_rates or {"lr_body": [lr_body], "lr_ratio": list(ratios)}}


def assert_matches_reference(got: dict, ref: dict, drop: float = 1e-3):
    """An engine student's logged train loss and body equal the numpy reference's at every step (1e-10), and
    the rates moved the loss by more than ``drop`` relative (or the comparison proves little)."""
    assert not got["diverged"]
    loss = ref["train_loss"]
    assert loss[-1] < (1 - drop) * loss[0]
    np.testing.assert_allclose(got["train_loss"], loss, rtol=1e-10)
    bodies = np.stack([reference.flatten_body(p[:-1]) for p in ref["params"]])
    np.testing.assert_allclose(body_curve(got), bodies, rtol=1e-10, atol=1e-12 * np.max(np.abs(bodies)))


def body_curve(got: dict) -> np.ndarray:
    """The body_sketch columns of one student, (n_logs, k)."""
    k = sum(1 for c in got if c.startswith("body_sketch_"))
    return np.stack([got[f"body_sketch_{i}"] for i in range(1, k + 1)], axis=-1)


def labels(inst: dict, teacher: str) -> np.ndarray:
    """The training labels, made here for a ReLU teacher (noise 0): y = relu(X beta)."""
    return np.maximum(inst["x"] @ inst["beta"], 0.0) if teacher == "relu" else inst["y"]


def reference_run(students, sid, y=None):
    """The numpy reference's trajectory of one engine student (its own instance, rates and head rule)."""
    spec, row, params0, inst = numpy_instance(students, sid)
    ref = reference.reference_train_heads(
        params0, inst["x"], inst["y"] if y is None else y, lr_body=row["lr_body"], lr_head=row["lr_head"],
        steps=spec.steps, parameterization=spec.arch.parameterization, activation=spec.arch.activation,
        head=row["head"], update=row["update"], head_steps=int(row["head_steps"]), ridge=row["head_ridge"],
        loss=spec.loss)
    return spec, row, inst, ref


# --------------------------------------------------------------------------------------
# The reference itself (numpy only)
# --------------------------------------------------------------------------------------

def _random_body(rng, d, h, n_body):
    return [rng.standard_normal((d if l == 0 else h, h)) / np.sqrt(d if l == 0 else h) for l in range(n_body)]


@pytest.mark.parametrize("par,act,loss,ridge", [("standard", "linear", "mse", 0.0), ("ntk", "relu", "mse", 0.3),
                                                ("standard", "relu", "logistic", 0.1),
                                                ("ntk", "linear", "exponential", 0.2)])
def test_reference_phi_grad_is_the_gradient_of_phi(par, act, loss, ridge):
    """The envelope gradient (the loss gradient at the best-response head) equals central differences of
    Phi itself; ntk's scale 1/sqrt(d h^(m-1)) is checked against the loss computed by hand."""
    rng = np.random.default_rng(5)
    d, h, n = 4, 3, 12
    body = _random_body(rng, d, h, 2)
    X = rng.standard_normal((n, d))
    y = np.sign(rng.standard_normal((n, 1))) if loss != "mse" else rng.standard_normal((n, 2))
    kw = dict(parameterization=par, activation=act, ridge=ridge, loss=loss)
    w = reference.best_response_head(body, X, y, **kw)
    z = reference.features(body, X, act)
    c = 1.0 / np.sqrt(d * h * h) if par == "ntk" else 1.0
    if loss == "mse":
        by_hand = 0.5 / n * np.sum((c * z @ w - y) ** 2) + 0.5 * ridge * np.sum(w * w)
        assert np.isclose(reference.phi(body, X, y, **kw), by_hand, rtol=1e-13)
    grads = reference.phi_grad(body, X, y, **kw)
    eps = 1e-6
    for l, W in enumerate(body):
        for idx in [(0, 0), (d - 1 if l == 0 else h - 1, h - 1), (1, 2)]:
            plus, minus = [B.copy() for B in body], [B.copy() for B in body]
            plus[l][idx] += eps
            minus[l][idx] -= eps
            fd = (reference.phi(plus, X, y, **kw) - reference.phi(minus, X, y, **kw)) / (2 * eps)
            assert abs(fd - grads[l][idx]) < 1e-7 * max(1.0, np.max(np.abs(grads[l]))), (l, idx, fd, grads[l][idx])
    assert max(np.max(np.abs(g)) for g in grads) > 1e-3


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_reference_newton_head_is_the_minimiser(loss):
    """The reference's Newton head minimises loss + ridge/2 |w|^2 as scipy's BFGS finds it from the loss
    of tests/reference.loss_and_dpred (a separate formula) with finite-difference gradients."""
    from scipy.optimize import minimize
    rng = np.random.default_rng(7)
    n, h, ridge, c = 20, 3, 0.05, 0.7
    Z = rng.standard_normal((n, h))
    y = np.sign(Z @ rng.standard_normal((h, 1)))  # separable: the minimiser exists only through the ridge
    w = reference.newton_head(Z, y, c, ridge, loss)
    objective = lambda v: reference.loss_and_dpred(c * Z @ v.reshape(h, 1), y, loss)[0] + 0.5 * ridge * v @ v
    found = minimize(objective, np.zeros(h), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(w[:, 0], found, rtol=1e-5, atol=1e-6)
    assert objective(w[:, 0]) <= objective(found) + 1e-14
    assert np.linalg.norm(w) > 1.0  # the ridge, not the start, holds the head


# --------------------------------------------------------------------------------------
# 1. The engine's head rules against the numpy reference (mse)
# --------------------------------------------------------------------------------------

# (parameterization, n_layers, activation, teacher, formulation, ridge, update of the gd twin, k, outputs,
#  lr_body); every case also trains the best-response twin (lr_ratio .inf)
REFERENCE_CASES = [
    ("standard", 2, "linear", "linear", "moments", 0.0, "simultaneous", 1, 2, 0.1),
    ("ntk", 2, "relu", "relu", "autodiff", 0.1, "alternating", 1, 1, 0.5),
    ("standard", 3, "relu", "linear", "autodiff", 0.0, "alternating", 3, 2, 0.1),
    ("ntk", 3, "linear", "linear", "moments", 0.05, "alternating", 1, 1, 0.5),
    ("ntk", 4, "relu", "relu", "autodiff", 0.0, "simultaneous", 1, 2, 0.5),
    ("standard", 4, "linear", "relu", "autodiff", 0.1, "alternating", 3, 1, 0.05),
    ("standard", 5, "relu", "linear", "autodiff", 0.05, "simultaneous", 1, 1, 0.05),
    ("ntk", 5, "linear", "linear", "moments", 0.0, "alternating", 3, 2, 0.5),
]


@pytest.mark.parametrize("par,n_layers,act,teacher,formulation,ridge,update,k,out,lr_body", REFERENCE_CASES)
def test_head_rules_match_numpy_reference(x64, par, n_layers, act, teacher, formulation, ridge, update, k, out,
                                          lr_body):
    """Every logged train loss and the body's weights at every step (the body_sketch columns, exact here)
    equal the reference's, for the gd head at lr_head = 3 lr_body (simultaneous or alternating) and the
    best response, 1e-10 relative."""
    cfg = head_cfg(par, n_layers, act, lr_body=lr_body, teacher=teacher, formulation=formulation, ridge=ridge,
                   update=update, head_steps=k, output_dim=out)
    students, results = train_config(cfg)
    assert sorted(students["head"]) == ["best_response"] * 2 + ["gd"] * 2
    finals = {}
    for sid, got in results.items():
        spec, row, inst, ref = reference_run(students, sid, labels(numpy_instance(students, sid)[3], teacher))
        assert spec.formulation == formulation and spec.task.teacher_activation == teacher
        assert (spec.head, spec.update, spec.head_steps) == ((row["head"], update, k) if row["head"] == "gd"
                                                             else ("best_response", "simultaneous", 1))
        assert_matches_reference(got, ref)
        finals[row["seed"], row["head"]] = ref["train_loss"][-1]
    for seed in (0, 1):  # the two rules are different dynamics (the comparison would not see a swap)
        assert abs(finals[seed, "gd"] - finals[seed, "best_response"]) > 1e-3 * finals[seed, "gd"]


# --------------------------------------------------------------------------------------
# 2. Logistic and exponential best responses: Newton's head
# --------------------------------------------------------------------------------------

def classification_cfg(par, act, loss, *, lr_body=None, ridge=0.1, n_layers=2, steps=6, metrics=("body_sketch",),
                       ratios=(3.0, INF), seeds=(0, 1), grid_rates=None, **train):
    return {"name": "cls", "seeds": list(seeds),
            "task": {"kind": "classification", "data": "nonseparable", "flip_fraction": 0.125, "input_dim": 5,
                     "n_train": 16, "n_test": 8},
            "model": {"parameterization": par, "n_layers": n_layers, "width": 4, "activation": act},
            "init": "gaussian",
            "train": {"steps": steps, "loss": loss, "head_ridge": ridge, "metrics": list(metrics),
                      "sketch_dim": 256, **train},
            "grid": grid_rates or {"lr_body": [lr_body], "lr_ratio": list(ratios)}}


def newton_problem(loss: str, seed: int):
    """A best-response spec (ntk ReLU head) and a head problem on features built in numpy: (spec, prob,
    the reference's converged minimiser of loss + ridge/2 |w|^2, the rng for starting heads)."""
    cfg = classification_cfg("ntk", "relu", loss, lr_body=1.0)
    spec = next(s for s in runner.prepare(config.load_config(cfg))[1].values() if s.head == "best_response")
    rng = np.random.default_rng(seed)
    n, h = 16, spec.arch.width
    Z = np.maximum(rng.standard_normal((n, h)), 0.0) * 2.0
    y = np.sign(Z @ rng.standard_normal((h, 1)) + 0.3 * rng.standard_normal((n, 1)))
    want = reference.newton_head(Z, y, spec.arch.output_scale, spec.head_ridge, loss)
    return spec, {"z": jnp.asarray(Z), "y": jnp.asarray(y), "weights": None}, want, rng


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_newton_best_response_converges_to_reference_minimiser(x64, loss):
    """heads.best_response on features built in numpy: from the initial head (t = 0: 4 x newton_steps
    Newton steps) and from a warm start (t > 0: newton_steps), the head equals the reference's minimiser of
    loss + ridge/2 |w|^2 (Newton run to convergence) to 1e-10."""
    spec, prob, want, rng = newton_problem(loss, seed=3)
    h = spec.arch.width
    cold = heads.best_response(spec, prob, jnp.asarray(rng.standard_normal((h, 1))), t=0)
    warm = heads.best_response(spec, prob, jnp.asarray(want * 1.3 + 0.1), t=5)
    for got in (cold, warm):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12 * np.max(np.abs(want)))
    assert np.max(np.abs(want)) > 0.5


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_newton_minimiser_falls_back_to_newton_when_the_chord_stalls(x64, loss, monkeypatch):
    """With the hand-over to the chord method forced after the first full Newton step from a far start
    (heads.NEAR = inf) and the chord capped at 2 steps, the chord stops short of round-off and the third
    phase (damped Newton again) runs: the head still equals the reference's minimiser to 1e-10."""
    spec, prob, want, rng = newton_problem(loss, seed=4)
    h = spec.arch.width
    monkeypatch.setattr(heads, "NEAR", np.inf)
    monkeypatch.setattr(heads, "CHORD_STEPS", 2)
    got, (k1, k2, k3), _ = heads.newton_minimiser(spec, prob, jnp.asarray(3.0 * rng.standard_normal((h, 1))),
                                               spec.head_ridge, 4 * spec.newton_steps)
    assert int(k3) > 0
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12 * np.max(np.abs(want)))


@pytest.mark.parametrize("par,act,loss,lr_body", [("standard", "relu", "logistic", 0.5),
                                                  ("ntk", "linear", "exponential", 0.4),
                                                  ("ntk", "relu", "logistic", 2.0)])
def test_classification_heads_match_numpy_reference(x64, par, act, loss, lr_body):
    """An engine run of the best response logs L(M_t, w*(M_t)) with w* the reference's converged Newton
    minimiser, and moves the body as the reference does, at every step (1e-10); its gd twin too."""
    students, results = train_config(classification_cfg(par, act, loss, lr_body=lr_body))
    assert sorted(students["head"]) == ["best_response"] * 2 + ["gd"] * 2
    for sid, got in results.items():
        _, row, inst, ref = reference_run(students, sid)
        assert_matches_reference(got, ref)


# --------------------------------------------------------------------------------------
# 3. phi_sharpness: the top Hessian eigenvalue of Phi over the body
# --------------------------------------------------------------------------------------

PHI_METRICS = ("phi_sharpness", "body_sketch")
WITH_SHARPNESS = ("phi_sharpness", "sharpness", "body_sketch")
PHI_CASES = {  # one seed, a gd head and the best response, logged at steps 0, 2, 4; Lanczos over every
    # direction (sharpness_iters >= P): the eigenvalues are exact
    "mse linear moments": head_cfg("standard", 3, "linear", lr_body=0.1, formulation="moments", steps=4, seeds=(0,),
                                   metrics=PHI_METRICS, sharpness_iters=400, log_every=2),
    "mse relu ridge": head_cfg("ntk", 2, "relu", lr_body=0.5, ridge=0.1, steps=4, seeds=(0,), metrics=WITH_SHARPNESS,
                               sharpness_iters=400, log_every=2),
    "logistic relu": classification_cfg("standard", "relu", "logistic", lr_body=0.5, steps=4, seeds=(0,),
                                        metrics=WITH_SHARPNESS, sharpness_iters=400, log_every=2),
    "exponential linear": classification_cfg("ntk", "linear", "exponential", lr_body=0.4, n_layers=3, steps=4,
                                             seeds=(0,), metrics=PHI_METRICS, sharpness_iters=400, log_every=2),
}


@pytest.mark.parametrize("case", list(PHI_CASES))
def test_phi_sharpness_matches_numpy_hessian(x64, case):
    """At every logged step, of gd-head and best-response students alike (Phi depends on the body only),
    phi_sharpness is the top eigenvalue (np.linalg.eigvalsh) of the numpy Hessian of Phi (central
    differences of its envelope gradient, Newton's minimiser for the margin losses) at the body the run
    logged, 1e-5 relative. On the best-response runs phi_sharpness <= sharpness: Hess Phi = G_MM -
    G_Mw G_ww^-1 G_wM <= G_MM (Loewner), and lambda_max(G_MM) <= lambda_max(full Hessian) (interlacing)."""
    students, results = train_config(PHI_CASES[case])
    checked = []
    for sid, got in results.items():
        spec, row, params0, inst = numpy_instance(students, sid)
        assert not got["diverged"]
        kw = dict(parameterization=spec.arch.parameterization, activation=spec.arch.activation,
                  ridge=spec.head_ridge, loss=spec.loss)
        shapes = [s for s in spec.arch.shapes[:-1]]
        cuts = np.cumsum([0] + [a * b for a, b in shapes])
        for t, theta in enumerate(body_curve(got)):
            body = [theta[i:j].reshape(s) for i, j, s in zip(cuts[:-1], cuts[1:], shapes)]
            want = np.linalg.eigvalsh(reference.phi_hessian_fd(body, inst["x"], inst["y"], **kw))[-1]
            np.testing.assert_allclose(got["phi_sharpness"][t], want, rtol=1e-5, err_msg=f"{case} {sid} log {t}")
        assert got["phi_sharpness"].shape == (3,)
        if row["head"] == "best_response" and "sharpness" in got:
            assert np.all(got["phi_sharpness"] <= got["sharpness"] * (1 + 1e-9)), (got["phi_sharpness"],
                                                                                  got["sharpness"])
            checked.append(sid)
    assert len(checked) == ("sharpness" in PHI_CASES[case]["train"]["metrics"])


@pytest.mark.parametrize("formulation,act,ridge", [("autodiff", "relu", 0.1), ("autodiff", "linear", 0.0),
                                                   ("moments", "linear", 0.05)])
def test_phi_closed_form_equals_implicit_function_hessian(x64, formulation, act, ridge):
    """For mse, the Hessian of the closed form Phi = 1/2 (yy - b^T (A + lambda I)^-1 b) (jax.hessian) and
    the implicit-function Hessian-vector product at the best response (metrics.phi_hvp_implicit) are one
    matrix, 1e-10 relative; both match the numpy finite-difference Hessian (1e-5)."""
    from jax.flatten_util import ravel_pytree

    from lrsweep.families.stackelberg import metrics
    from lrsweep.core.tasks import StepContext
    cfg = head_cfg("standard", 3, act, lr_body=0.1, ridge=ridge, formulation=formulation, ratios=(2.0,))
    students, specs = runner.prepare(config.load_config(cfg))
    spec, row, params0, inst = numpy_instance(students, 0)
    assert spec.formulation == formulation
    rng = np.random.default_rng(11)
    params0 = [w + 0.3 * rng.standard_normal(w.shape) for w in params0]  # away from the initial weights
    inst = {k: jnp.asarray(v) for k, v in inst.items()}
    if formulation == "moments":  # the data as moments, as lrsweep.core.tasks.make_instance gives them
        n = inst["x"].shape[0]
        inst = {"xx": inst["x"].T @ inst["x"] / n, "xy": inst["x"].T @ inst["y"] / n, "yy": jnp.sum(inst["y"] ** 2) / n}
    names = spec.arch.layer_names
    params = {k: jnp.asarray(w) for k, w in zip(names, params0)}
    theta, unravel = ravel_pytree({k: params[k] for k in heads.body_names(spec.arch)})

    @jax.jit
    def both(params, inst):
        batch = StepContext(0, jax.random.PRNGKey(0))
        head = params[names[-1]]
        closed = jax.hessian(lambda th: heads.phi(spec, heads.problem(spec, {**unravel(th), names[-1]: head},
                                                                      inst, batch)))(theta)
        w_star = heads.best_response(spec, heads.problem(spec, params, inst, batch), head, 0)
        implicit = jax.vmap(metrics.phi_hvp_implicit(spec, theta, unravel, w_star, inst, batch))(jnp.eye(theta.size))
        return closed, implicit

    closed, implicit = (np.asarray(a) for a in both(params, inst))
    scale = np.max(np.abs(closed))
    np.testing.assert_allclose(implicit, closed, rtol=0, atol=1e-10 * scale)
    _, _, p0, inst_np = numpy_instance(students, 0)
    fd = reference.phi_hessian_fd([w + 0 for w in params0[:-1]], inst_np["x"], inst_np["y"],
                                  parameterization="standard", activation=act, ridge=ridge)
    np.testing.assert_allclose(closed, fd, rtol=0, atol=1e-5 * scale)
    assert scale > 1e-2


# --------------------------------------------------------------------------------------
# 4. body_sketch: the body's weights, or one Gaussian sketch of them per instance
# --------------------------------------------------------------------------------------

def test_body_sketch_is_one_linear_map_per_instance(x64):
    """P_body = 16 weights, sketch_dim 8: within an instance, one linear map S (8 x 16) carries every
    student's body at every step to its sketch (least squares over 80 bodies of full rank fits them to
    round-off), the same config with sketch_dim >= P_body giving the bodies; another seed has another S.
    S has N(0, 1/k) entries: mean square 1/k (within 4 standard errors) and the sketched distances
    between students estimate the true ones (Johnson-Lindenstrauss)."""
    cfg = head_cfg("standard", 2, "relu", lr_body=0.1, ridge=0.1, steps=9, width=4, input_dim=4)
    cfg["grid"] = {"lr_body": [0.05, 0.1, 0.2, 0.3], "lr_ratio": [1.0, 4.0], "train.sketch_dim": [8, 256]}
    students, results = train_config(cfg)
    k, p = 8, 16
    per_seed = {}
    for sid, got in results.items():
        row = students.set_index("student_id").loc[sid]
        assert not got["diverged"]
        per_seed.setdefault(int(row["seed"]), {}).setdefault((row["lr_body"], row["lr_ratio"]), {})[
            int(row["sketch_dim"])] = body_curve(got)
    maps = {}
    for seed, runs in per_seed.items():
        assert len(runs) == 8 and all(r[8].shape == (10, k) and r[256].shape == (10, p) for r in runs.values())
        bodies = np.concatenate([r[256] for r in runs.values()])   # (80, 16)
        sketches = np.concatenate([r[8] for r in runs.values()])   # (80, 8)
        sv = np.linalg.svd(bodies, compute_uv=False)
        assert sv[-1] > 1e-6 * sv[0]  # the bodies determine S
        s_t, *_ = np.linalg.lstsq(bodies, sketches, rcond=None)
        np.testing.assert_allclose(bodies @ s_t, sketches, rtol=0, atol=1e-10 * np.max(np.abs(sketches)))
        maps[seed] = s_t.T
        assert abs(np.mean(maps[seed] ** 2) * k - 1) < 4 * np.sqrt(2 / (k * p))
        final = np.stack([r[256][-1] for r in runs.values()]), np.stack([r[8][-1] for r in runs.values()])
        true = [np.linalg.norm(a - b) for i, a in enumerate(final[0]) for b in final[0][i + 1:]]
        sketched = [np.linalg.norm(a - b) for i, a in enumerate(final[1]) for b in final[1][i + 1:]]
        ratio = np.sum(np.square(sketched)) / np.sum(np.square(true))
        assert 0.2 < ratio < 3.0 and min(true) > 1e-3
    assert np.linalg.norm(maps[0] - maps[1]) > 0.5 * np.linalg.norm(maps[0])


# --------------------------------------------------------------------------------------
# 6. Independence: a student's numbers do not depend on its neighbours, chunk or device
# --------------------------------------------------------------------------------------

def independence_cfg(seeds=(0, 1, 2, 3), lr_bodies=(0.2, 0.5), ratios=(2.0, 8.0, INF), loss="mse"):
    """Alternating gd heads (k = 2) and best responses of one ReLU student, several instances."""
    if loss == "mse":
        return head_cfg("ntk", 3, "relu", ridge=0.05, update="alternating", head_steps=2, steps=6,
                        seeds=seeds, metrics=(), grid_rates={"lr_body": list(lr_bodies), "lr_ratio": list(ratios)})
    return classification_cfg("ntk", "relu", loss, steps=6, seeds=seeds, metrics=(),
                              grid_rates={"lr_body": list(lr_bodies), "lr_ratio": list(ratios)})


def by_point(students, results) -> dict:
    """(seed, lr_body, lr_ratio) -> the student's result."""
    return {(int(r.seed), round(r.lr_body, 12), r.lr_ratio): results[int(r.student_id)] for r in students.itertuples()}


def assert_same_curves(got: dict, want: dict, rtol=1e-12):
    for key, res in got.items():
        for column in ("train_loss", "test_loss"):
            np.testing.assert_allclose(res[column], want[key][column], rtol=rtol, atol=0, err_msg=f"{key} {column}")


@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_head_rules_do_not_depend_on_chunk_or_neighbours(x64, loss):
    """Alternating and best-response students give the same curves in the full grid, in chunks of 5
    (cut across instances and rates) and alone (another seed list and grid around them), 1e-12."""
    students, full = train_config(independence_cfg(loss=loss))
    assert set(students["head"]) == {"gd", "best_response"} and len(students) == 24
    full = by_point(students, full)
    for res in full.values():
        assert not res["diverged"] and res["train_loss"][-1] < res["train_loss"][0]
    s5, r5 = train_config(independence_cfg(loss=loss), chunk_size=5)
    assert_same_curves(by_point(s5, r5), full)
    alone_s, alone_r = train_config(independence_cfg(seeds=(2,), lr_bodies=(0.5,), ratios=(8.0, INF), loss=loss))
    alone = by_point(alone_s, alone_r)
    assert sorted(alone) == [(2, 0.5, 8.0), (2, 0.5, INF)]
    assert_same_curves(alone, full)


def test_head_rules_on_four_devices_match_one(x64, tmp_path):
    """4 simulated CPU devices (the instance axis sharded) give the curves of one device, 1e-12."""
    import json
    import os
    import subprocess
    import sys
    import textwrap
    script = textwrap.dedent(f"""
        import json, sys
        import jax
        jax.config.update("jax_enable_x64", True)
        sys.path[:0] = [{os.path.dirname(__file__)!r}, {os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))!r}]
        from conftest import train_config
        from test_heads import by_point, independence_cfg
        students, res = train_config(independence_cfg())
        curves = {{repr(k): v["train_loss"].tolist() + v["test_loss"].tolist()
                  for k, v in by_point(students, res).items()}}
        print(json.dumps({{"n_dev": jax.device_count(), "curves": curves}}))
    """)
    env = device_env(4)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n_dev"] == 4
    students, res = train_config(independence_cfg())
    one = {repr(k): np.concatenate([v["train_loss"], v["test_loss"]]) for k, v in by_point(students, res).items()}
    assert out["curves"].keys() == one.keys() and len(one) == 24
    for k, v in one.items():
        np.testing.assert_allclose(out["curves"][k], v, rtol=1e-12, atol=0, err_msg=k)


def test_diverging_head_is_recorded_and_isolated(x64):
    """Simultaneous gd with a huge head rate (lr_ratio 1e3) diverges at the step where the reference's loss
    leaves the bound (non-finite or > 1e6 x its initial loss) and is frozen; its neighbours in the same
    chunk, and the best responses beside them, have the curves they have without it (1e-12)."""
    def cfg(ratios):
        return head_cfg("standard", 2, "relu", ridge=0.1, steps=8, seeds=(0, 1), metrics=(),
                        grid_rates={"lr_body": [0.05, 0.1], "lr_ratio": list(ratios)})
    students, results = train_config(cfg([2.0, 1e3, INF]))
    full = by_point(students, results)
    for (seed, lr_body, ratio), res in full.items():
        assert bool(res["diverged"]) == (ratio == 1e3), (seed, lr_body, ratio)
        if ratio == 1e3:
            sid = int(students[(students.seed == seed) & (students.lr_body == lr_body) & (students.lr_ratio == ratio)]
                      .student_id.iloc[0])
            _, _, _, ref = reference_run(students, sid)
            with np.errstate(invalid="ignore"):
                bad = ~np.isfinite(ref["train_loss"]) | (ref["train_loss"] > 1e6 * ref["train_loss"][0])
            k = int(res["diverged_step"])
            assert bad.any() and k == int(np.argmax(bad)) and k < 8
            assert np.all(np.isnan(res["train_loss"][k:])) and np.all(np.isfinite(res["train_loss"][:k]))
            np.testing.assert_allclose(res["train_loss"][:k], ref["train_loss"][:k], rtol=1e-10)
    s2, r2 = train_config(cfg([2.0, INF]))
    clean = by_point(s2, r2)
    assert len(clean) == 8 and not any(r["diverged"] for r in clean.values())
    assert_same_curves(clean, full)


# --------------------------------------------------------------------------------------
# 5. Config: the head's rate axes, and bad input
# --------------------------------------------------------------------------------------

CONFIG = {"name": "c", "seeds": [0], "task": {"input_dim": 4, "n_train": 8},
          "model": {"parameterization": "standard", "n_layers": 3, "width": 4}, "init": "gaussian",
          "train": {"steps": 2}, "grid": {"lr_body": [0.1], "lr_ratio": [2.0]}}


def config_with(**changes) -> dict:
    """CONFIG with ``section__field=value`` (or ``section=value``) changes."""
    return with_changes(CONFIG, **changes)


def rate_table(cfg) -> list[tuple]:
    """(head, lr_1, lr_2, lr_3, lr_total, lr_body, lr_head, lr_ratio) per student of a config."""
    df = config.expand_grid(config.load_config(cfg))
    cols = ["head", "lr_1", "lr_2", "lr_3", "lr_total", "lr_body", "lr_head", "lr_ratio"]
    return [tuple(r) for r in df[cols].itertuples(index=False)]


@pytest.mark.parametrize("grid,want", [
    # n_layers 3: two body layers at eta_body, the head at eta_head, lr_total = 2 eta_body + eta_head
    ({"lr_body": [0.1], "lr_ratio": [2.0, ".inf"]},
     [("gd", 0.1, 0.1, 0.2, 0.4, 0.1, 0.2, 2.0), ("best_response", 0.1, 0.1, INF, INF, 0.1, INF, INF)]),
    ({"lr_body": [0.1], "lr_head": [0.5]}, [("gd", 0.1, 0.1, 0.5, 0.7, 0.1, 0.5, 5.0)]),
    ({"lr_head": [0.6], "lr_ratio": [3.0]}, [("gd", 0.2, 0.2, 0.6, 1.0, 0.2, 0.6, 3.0)]),
    ({"lr_total": [1.0], "lr_ratio": [3.0, 1.0]},  # equal budget: eta_body = 1 / (2 + ratio)
     [("gd", 0.2, 0.2, 0.6, 1.0, 0.2, 0.6, 3.0), ("gd", 1 / 3, 1 / 3, 1 / 3, 1.0, 1 / 3, 1 / 3, 1.0)]),
    ({"lr_body": [0.0, 0.1], "lr_ratio": [4.0]},  # a frozen body keeps the ratio it was given
     [("gd", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 4.0), ("gd", 0.1, 0.1, 0.4, 0.6, 0.1, 0.4, 4.0)]),
    ({"lr_body": [0.0], "lr_head": [0.5]},  # a frozen body under a gd head: ratio inf, still gd
     [("gd", 0.0, 0.0, 0.5, 0.5, 0.0, 0.5, INF)]),
    ({"zip": {"lr_body": [0.1, 0.2], "lr_ratio": [2.0, ".inf"]}},
     [("gd", 0.1, 0.1, 0.2, 0.4, 0.1, 0.2, 2.0), ("best_response", 0.2, 0.2, INF, INF, 0.2, INF, INF)]),
])
def test_head_rate_axes_resolve(grid, want):
    got = rate_table(config_with(grid=grid))
    assert [g[0] for g in got] == [w[0] for w in want]
    np.testing.assert_allclose(np.array([g[1:] for g in got], float), np.array([w[1:] for w in want], float),
                               rtol=1e-12)


def test_inf_ratio_rows_are_best_response_students_of_their_own_group():
    """lr_ratio .inf rows get train.head best_response (update simultaneous, one head step) even in an
    alternating config; the others keep the config's rule; they train in different groups."""
    cfg = config_with(train={"steps": 2, "update": "alternating", "head_steps": 3},
                      grid={"lr_body": [0.1, 0.2], "lr_ratio": [2.0, ".inf"]})
    students, specs = runner.prepare(config.load_config(cfg))
    rules = {(r.lr_body, r.lr_ratio): (r.head, r.update, r.head_steps) for r in students.itertuples()}
    assert rules == {(0.1, 2.0): ("gd", "alternating", 3), (0.2, 2.0): ("gd", "alternating", 3),
                     (0.1, INF): ("best_response", "simultaneous", 1), (0.2, INF): ("best_response", "simultaneous", 1)}
    assert sorted((s.head, s.update, s.head_steps) for s in specs.values()) == [
        ("best_response", "simultaneous", 1), ("gd", "alternating", 3)]


def test_set_inf_ratio_on_the_command_line(tmp_path):
    """`--set grid.lr_ratio=[1,inf]`: the word inf is the best-response head."""
    import yaml
    from conftest import cli_main
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    rc, out, err = cli_main(["run", path, "--set", "grid.lr_ratio=[1,inf]", "--out", tmp_path / "out", "--quiet",
                             "--dry-run"])
    assert rc == 0, err
    assert "head=best_response" in out and "2 students" in out
    cfg = config.load_config(str(path), ["grid.lr_ratio=[1,inf]"])
    assert [r[0] for r in rate_table(cfg.raw)] == ["gd", "best_response"]


BAD_HEADS = {  # config changes -> words of the one line on stderr (the field first)
    "paper_deep with head axes": (dict(model__parameterization="paper_deep"), ["grid.lr_body", "standard or ntk"]),
    "n_layers 1 with head axes": (dict(model__n_layers=1), ["grid.lr_body", "n_layers >= 2"]),
    "n_layers 1 best_response": (dict(model__n_layers=1, train={"steps": 2, "head": "best_response"},
                                      grid={"lr": [0.1]}), ["train.head", "n_layers >= 2"]),
    "alternating best_response": (dict(train={"steps": 2, "head": "best_response", "update": "alternating"}),
                                  ["train.update", "simultaneous"]),
    "head_steps without alternating": (dict(train={"steps": 2, "head_steps": 3}), ["train.head_steps", "alternating"]),
    "logistic best response, ridge 0": (
        dict(task={"kind": "classification", "input_dim": 4, "n_train": 8}, train={"steps": 2, "loss": "logistic"},
             grid={"lr_body": [0.1], "lr_ratio": [".inf"]}), ["train.head_ridge", "> 0", "logistic"]),
    "width > n_train, ridge 0": (dict(model__width=16, grid={"lr_body": [0.1], "lr_ratio": [2.0, ".inf"]}),
                                 ["train.head_ridge", "model.width (16) > task.n_train (8)"]),
    "phi_sharpness, width > n_train, ridge 0": (dict(model__width=16, train={"steps": 2, "metrics": ["phi_sharpness"]}),
                                                ["train.head_ridge", "model.width"]),
    "lr_ratio 0": (dict(grid={"lr_body": [0.1], "lr_ratio": [0.0]}), ["grid.lr_ratio", "> 0", ".inf"]),
    "lr_ratio negative": (dict(grid={"lr_body": [0.1], "lr_ratio": [-2.0]}), ["grid.lr_ratio", "> 0"]),
    "lr_ratio not a number": (dict(grid={"lr_body": [0.1], "lr_ratio": ["fast"]}), ["grid.lr_ratio", "> 0"]),
    "lr_total with lr_ratio .inf": (dict(grid={"lr_total": [1.0], "lr_ratio": [2.0, ".inf"]}),
                                    ["grid.lr_ratio", "lr_total", "lr_body"]),
    "lr_head with lr_ratio .inf": (dict(grid={"lr_head": [0.3], "lr_ratio": [2.0, ".inf"]}),
                                   ["grid.lr_ratio", "lr_head", "lr_body"]),
    "lr_body with lr_1": (dict(grid={"lr_body": [0.1], "lr_1": [0.2], "lr_ratio": [2.0]}), ["grid.lr_body", "lr_1"]),
    "lr_ratio alone": (dict(grid={"lr_ratio": [2.0]}), ["grid.lr_ratio", "two of"]),
    "all three head axes": (dict(grid={"lr_body": [0.1], "lr_head": [0.2], "lr_ratio": [2.0]}),
                            ["grid.lr_body", "two of"]),
    "sgd with best_response": (dict(train={"steps": 2, "optimizer": "sgd", "batch_size": 4},
                                    grid={"lr_body": [0.1], "lr_ratio": [2.0, ".inf"]}), ["train.optimizer", "gd"]),
    "unknown head": (dict(train={"steps": 2, "head": "newton"}), ["train.head", "gd, best_response"]),
    "phi_sharpness on paper_deep": (dict(model__parameterization="paper_deep", grid={"lr": [0.1]},
                                         train={"steps": 2, "metrics": ["phi_sharpness"]}),
                                    ["train.metrics", "standard or ntk"]),
    # 7. poly mode and the lowrank formulation cannot run a head moved outside the optimizer's step
    "lowrank with best_response": (dict(model__activation="linear", train={"steps": 2, "formulation": "lowrank"},
                                        grid={"lr_body": [0.1], "lr_ratio": [".inf"]}),
                                   ["train.formulation", "lowrank", "best_response", "allowed"]),
    "lowrank alternating": (dict(model__activation="linear", train={"steps": 2, "formulation": "lowrank",
                                                                    "update": "alternating"}),
                            ["train.formulation", "lowrank", "alternating"]),
    "poly with best_response": (dict(model__activation="linear", grid={"lr": [0.1, 0.2]},
                                     train={"steps": 2, "mode": "poly", "head": "best_response"}),
                                ["train.mode", "poly", "best_response"]),
}


@pytest.mark.parametrize("name", list(BAD_HEADS))
def test_bad_head_input_exits_2_naming_the_field(tmp_path, name):
    import yaml
    from conftest import cli_main
    changes, words = BAD_HEADS[name]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config_with(**changes)))
    out = tmp_path / "out"
    rc, stdout, err = cli_main(["run", path, "--out", out, "--quiet"])
    assert rc == 2, (rc, stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrsweep: ") and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))


def test_poly_mode_on_the_command_line_is_refused_for_head_rules(tmp_path):
    """`--mode poly` on a linear student whose head is the best response (or alternates): exit 2, one line
    naming train.mode and why."""
    import yaml
    from conftest import cli_main
    for rule in ({"head": "best_response"}, {"update": "alternating"}):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config_with(model__activation="linear", train={"steps": 2, **rule},
                                                   grid={"lr": [0.1, 0.2]})))
        rc, stdout, err = cli_main(["run", path, "--mode", "poly", "--out", tmp_path / "out", "--quiet"])
        assert rc == 2 and len(err.strip().splitlines()) == 1, err
        assert "train.mode" in err and "head is moved outside the optimizer's step" in err, err
        assert not (tmp_path / "out").exists()


def test_least_squares_head_with_a_dead_relu_unit_is_the_minimum_norm_solution(x64):
    """A ReLU unit off on every training input gives a zero feature column: A = z^T z / n is singular and
    an unshifted Cholesky returns NaN. With head_ridge 0 the head is numpy's minimum-norm least squares
    (the dead unit's weight 0), and Phi its residual."""
    cfg = {"name": "dead", "seeds": [0], "task": {"kind": "linear_teacher", "input_dim": 4, "n_train": 16},
           "model": {"parameterization": "standard", "n_layers": 2, "width": 4, "activation": "relu"},
           "init": "gaussian", "train": {"steps": 1}, "grid": {"lr_body": [0.1], "lr_ratio": [".inf"]}}
    spec = next(iter(runner.prepare(config.load_config(cfg))[1].values()))
    rng = np.random.default_rng(0)
    Z = np.maximum(rng.standard_normal((16, 4)), 0.0)
    Z[:, 2] = 0.0
    y = rng.standard_normal((16, 1))
    want = np.linalg.lstsq(Z, y, rcond=None)[0]
    prob = {"z": jnp.asarray(Z), "y": jnp.asarray(y), "weights": None}
    got = np.asarray(heads.best_response(spec, prob, jnp.zeros((4, 1))))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)
    assert got[2, 0] == 0.0
    residual = 0.5 * np.mean((Z @ want - y) ** 2)
    np.testing.assert_allclose(float(heads.phi(spec, prob)), residual, rtol=1e-10)


# --------------------------------------------------------------------------------------
# The best response from a carried inverse (heads.carried_head): the chord to round-off
# --------------------------------------------------------------------------------------

def _dead_unit_spec(ridge: float):
    cfg = {"name": "carried", "seeds": [0], "task": {"kind": "linear_teacher", "input_dim": 4, "n_train": 24},
           "model": {"parameterization": "standard", "n_layers": 2, "width": 6, "activation": "relu"},
           "init": "gaussian", "train": {"steps": 1, "head_ridge": ridge}, "grid": {"lr_body": [0.1], "lr_ratio": [".inf"]}}
    return next(iter(runner.prepare(config.load_config(cfg))[1].values()))


def _numpy_head(z, y, ridge):
    """argmin 1/2 |z w - y|^2 / n + ridge/2 |w|^2 with a dead unit's weight 0 (heads.shifted), numpy."""
    n, h = z.shape
    a = z.T @ z / n
    m = a + ridge * np.eye(h) + np.diag((np.diagonal(a) == 0).astype(float))
    return np.linalg.solve(m, z.T @ y / n), np.linalg.inv(m)


@pytest.mark.parametrize("ridge", [0.0, 0.05])
def test_least_squares_head_from_a_stale_inverse_is_the_new_solution(x64, ridge):
    """At a renewal step (t = 0) the head is the Cholesky solution and the carried P is (A + ridge I)^{-1};
    at the next step, from that stale P and another body (features moved by 10%, a unit dead now), the
    chord gives the new body's solution, 1e-10 relative; a P that makes the chord stall (-I) hands over to
    Cholesky, same solution. numpy's solve as the reference."""
    spec = _dead_unit_spec(ridge)
    rng = np.random.default_rng(3)
    z0 = np.maximum(rng.standard_normal((24, 6)), 0.0)
    y = rng.standard_normal((24, 1))
    prob = lambda z: {"z": jnp.asarray(z), "y": jnp.asarray(y), "weights": None}
    state0 = heads.head_state(spec, {heads.head_name(spec.arch): jnp.zeros((6, 1))}, {"x": None})
    assert [s.shape for s in state0] == [(6, 6), (6, 1)]
    w0, (p0, _) = heads.carried_head(spec, prob(z0), jnp.zeros((6, 1)), state0, 0)
    want0, inv0 = _numpy_head(z0, y, ridge)
    np.testing.assert_allclose(np.asarray(w0), want0, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(p0), inv0, rtol=1e-8, atol=1e-12 * np.abs(inv0).max())
    z1 = z0 * (1.0 + 0.1 * rng.standard_normal(z0.shape))
    z1[:, 4] = 0.0  # a ReLU unit off on every input from this step on
    want1, _ = _numpy_head(z1, y, ridge)
    for p, what in ((p0, "stale inverse"), (-jnp.eye(6), "stalling chord")):
        w1, (p1, w_prev) = heads.carried_head(spec, prob(z1), w0, (p, w0), 1)
        np.testing.assert_allclose(np.asarray(w1), want1, rtol=1e-10, atol=1e-14, err_msg=what)
        assert w1[4, 0] == 0.0 or abs(float(w1[4, 0])) < 1e-14, what
        np.testing.assert_array_equal(np.asarray(w_prev), np.asarray(w0))
    assert not np.array_equal(np.asarray(p1), -np.eye(6))  # the stalled student's P was renewed


@pytest.mark.parametrize("loss", ["logistic", "exponential"])
def test_carried_margin_head_from_a_stale_inverse_is_the_new_minimiser(x64, loss):
    """Margin losses: at a renewal step (t = 0) the carried head is the Newton minimiser and P the inverse of
    a Hessian near it (|P H - I| < 1e-2, H the Hessian at the minimiser in numpy); at the next step, from
    that stale P and features moved by 10%, the chord gives the new features' minimiser (numpy Newton,
    reference.newton_head) to 1e-10; a P that makes the chord stall (-I) hands over to Newton, same
    minimiser, and that P is renewed."""
    spec, prob0, want0, rng = newton_problem(loss, seed=5)
    h, c, ridge = spec.arch.width, spec.arch.output_scale, spec.head_ridge
    state0 = heads.head_state(spec, {heads.head_name(spec.arch): jnp.zeros((h, 1))}, {"x": None})
    assert [s.shape for s in state0] == [(h, h), (h, 1)]
    w0, (p0, _) = heads.carried_head(spec, prob0, jnp.asarray(rng.standard_normal((h, 1))), state0, 0)
    np.testing.assert_allclose(np.asarray(w0), want0, rtol=1e-10, atol=1e-12 * np.max(np.abs(want0)))
    Z0, y = np.asarray(prob0["z"]), np.asarray(prob0["y"])
    curvature = reference._margin_derivatives(y * c * (Z0 @ want0), loss)[2] / len(Z0)
    hessian = c * c * Z0.T @ (curvature * Z0) + ridge * np.eye(h)
    assert np.linalg.norm(np.asarray(p0) @ hessian - np.eye(h), 2) < 1e-2
    Z1 = Z0 * (1.0 + 0.1 * rng.standard_normal(Z0.shape))
    want1 = reference.newton_head(Z1, y, c, ridge, loss)
    prob1 = {**prob0, "z": jnp.asarray(Z1)}
    for p, what in ((p0, "stale inverse"), (-jnp.eye(h), "stalling chord")):
        w1, (p1, w_prev) = heads.carried_head(spec, prob1, w0, (p, w0), 1)
        np.testing.assert_allclose(np.asarray(w1), want1, rtol=1e-10, atol=1e-12 * np.max(np.abs(want1)),
                                   err_msg=what)
        np.testing.assert_array_equal(np.asarray(w_prev), np.asarray(w0))
    assert not np.array_equal(np.asarray(p1), -np.eye(h))  # the stalled student's P was renewed
    assert np.max(np.abs(want1 - want0)) > 1e-3 * np.max(np.abs(want0))  # the minimiser did move


def test_head_state_only_for_the_best_response_on_data():
    """The hook carries (P, w_prev) for the best response (mse or logistic) on the whole training set in data
    form, and nothing for alternating gd heads or an instance of data moments (one Cholesky solve of h x h)."""
    from lrsweep.core import engine
    from lrsweep.core.tasks import make_instance

    def states(act="relu", cfg=None, **changes):
        cfg = cfg or head_cfg("standard", 2, act, lr_body=0.1, steps=2, **changes)
        spec = next(iter(runner.prepare(config.load_config(cfg))[1].values()))
        hp = {c: jnp.asarray(0, jnp.uint32 if c == "seed" else jnp.float32) for c in spec.instance_columns}
        params0, inst = make_instance(spec, hp, jnp.float32, moments=spec.formulation != "autodiff")
        out = engine.hook_states(spec, params0, inst)
        # the chunk planner counts exactly the carried elements (3 copies: carried, new, frozen)
        counted = sum(hook.state_elements(spec) for hook in spec.hooks)
        assert counted == sum(x.size for x in jax.tree_util.tree_leaves(out))
        return out

    (carried,) = states(ratios=(INF,))
    assert [s.shape for s in carried] == [(4, 4), (4, 1)]
    (carried,) = states(cfg=classification_cfg("standard", "relu", "logistic", lr_body=0.1, ratios=(INF,)))
    assert [s.shape for s in carried] == [(4, 4), (4, 1)]
    assert states(ratios=(3.0,), update="alternating") == (None,)
    assert states("linear", ratios=(INF,), formulation="moments") == (None,)


@pytest.mark.parametrize("refactor_every,chord_steps", [(3, heads.CHORD_STEPS), (1000, heads.CHORD_STEPS), (3, 1)])
def test_carried_least_squares_head_matches_numpy_reference(x64, monkeypatch, refactor_every, chord_steps):
    """The engine's mse best response over 10 steps, renewing P every 3 steps (or only at t = 0), or with a
    chord of at most one step (so it stalls and Cholesky takes over), equals the numpy reference (a fresh
    solve at every step): the logged train loss and the body at every step, 1e-10 relative."""
    monkeypatch.setattr(heads, "REFACTOR_EVERY", refactor_every)
    monkeypatch.setattr(heads, "CHORD_STEPS", chord_steps)
    cfg = head_cfg("standard", 3, "relu", lr_body=0.3, ratios=(INF,), ridge=0.01, steps=10, width=5, seeds=(0, 1))
    students, results = train_config(cfg)
    for sid, got in results.items():
        spec, row, inst, ref = reference_run(students, sid)
        assert row["head"] == "best_response"
        assert_matches_reference(got, ref, drop=0.1)


@pytest.mark.parametrize("loss", ["mse", "logistic"])
def test_carried_head_equals_a_factorisation_at_every_step(x64, monkeypatch, loss):
    """The chord from the carried inverse changes the logged losses of the solve at every step (Cholesky for
    mse, Newton for logistic; REFACTOR_EVERY = 1: the rule before the inverse was carried) by round-off
    only: 1e-12 relative, over 40 steps of 2-layer ReLU students at the benchmark's ridge."""
    if loss == "mse":
        cfg = head_cfg("standard", 2, "relu", lr_body=0.2, ratios=(INF,), ridge=1e-3, steps=40, width=16,
                       input_dim=8, n_train=32, seeds=(0, 1, 2), metrics=())
    else:
        cfg = classification_cfg("standard", "relu", "logistic", lr_body=0.5, ratios=(INF,), ridge=1e-3, steps=40,
                                 seeds=(0, 1, 2), metrics=())
    _, chord = train_config(cfg)
    monkeypatch.setattr(heads, "REFACTOR_EVERY", 1)
    _, factored = train_config(cfg)
    for sid, got in chord.items():
        np.testing.assert_allclose(got["train_loss"], factored[sid]["train_loss"], rtol=1e-12)
    # the two are different computations (not the same program twice): some last bits differ
    assert any(not np.array_equal(got["train_loss"], factored[sid]["train_loss"]) for sid, got in chord.items())


@pytest.mark.parametrize("loss,refactor_every,chord_steps", [("logistic", 3, heads.CHORD_STEPS),
                                                              ("exponential", 1000, heads.CHORD_STEPS),
                                                              ("logistic", 3, 1)])
def test_carried_margin_head_matches_numpy_reference(x64, monkeypatch, loss, refactor_every, chord_steps):
    """The engine's margin-loss best response over 10 steps, renewing P every 3 steps (or only at t = 0), or
    with a chord of at most one step (so it stalls and Newton takes over), equals the numpy reference (a
    converged Newton minimiser at every step): the logged train loss and the body at every step, 1e-10."""
    monkeypatch.setattr(heads, "REFACTOR_EVERY", refactor_every)
    monkeypatch.setattr(heads, "CHORD_STEPS", chord_steps)
    students, results = train_config(classification_cfg("standard", "relu", loss, lr_body=0.5, ratios=(INF,),
                                                         steps=10))
    for sid, got in results.items():
        _, row, inst, ref = reference_run(students, sid)
        assert row["head"] == "best_response"
        assert_matches_reference(got, ref)


def test_carried_head_in_segments_equals_one_scan(x64, tmp_path, monkeypatch):
    """The carried inverse is part of the training state: segments of 2 steps (saving a checkpoint after
    each) give the numbers of one scan bit for bit, with renewals (every 3 steps) inside segments."""
    from conftest import flat_result
    from lrsweep.core import engine
    from lrsweep.core.checkpoint import ChunkCheckpoints
    monkeypatch.setattr(heads, "REFACTOR_EVERY", 3)
    cfg = head_cfg("standard", 2, "relu", lr_body=0.3, ratios=(INF,), ridge=0.01, steps=9, seeds=(0, 1, 2))
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()

    def train(checkpoints=None):
        out = {}
        for _, res in engine.iter_group(spec, students, chunk_size=3, checkpoints=checkpoints):
            out.update({int(sid): flat_result(res, i) for i, sid in enumerate(res["student_id"])})
        return out

    whole = train()
    ck = ChunkCheckpoints(tmp_path / "ck", every_s=1e-9, segment_steps=2)
    saved = []
    real_save = ck.save
    ck.save = lambda ids, step, leaves: saved.append(step) or real_save(ids, step, leaves)
    seg = train(ck)
    assert set(saved) == {2, 4, 6, 8}
    for sid, r in whole.items():
        np.testing.assert_array_equal(seg[sid]["train_loss"], r["train_loss"], err_msg=str(sid))
