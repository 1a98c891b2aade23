"""Poly mode (lrsweep.core.poly, exact learning-rate polynomials) against grid mode (lrsweep.core.engine).

Tolerance 1e-10 relative in float64, as for the engine against the numpy reference: poly mode
evaluates sum_j c_j u^e_j, whose rounding is ~kappa eps (kappa = sum |c_j u^e_j| / |sum c_j u^e_j|);
students with kappa eps > 1e-11 are trained in grid mode instead (checked here too, with the
error model itself).
"""
import dataclasses
import json

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import cli_main, flat_result

import lrsweep
from lrsweep.core import config
from lrsweep.core import drivers
from lrsweep.core import engine
from lrsweep.core import poly
from lrsweep.core import runner
from lrsweep.core import steps
from lrsweep.core.drivers import poly as poly_driver

D, H, N = 8, 6, 10


def small_cfg(par, n_layers, steps_, init, design, lrs, gradient="exact", width=H, d=D, n=N, seeds=(0, 1),
              **task):
    m = n_layers - 1 if par == "paper_deep" else n_layers
    grid = {"lr_1": list(lrs[0]), "lr_2": list(lrs[1])}
    grid.update({f"lr_{i}": lrs[1][0] for i in range(3, m + 1)})
    return {"name": "p", "seeds": list(seeds), "task": {"input_dim": d, "n_train": n, "design": design, **task},
            "model": {"parameterization": par, "n_layers": n_layers, "width": width, "output_dim": 2},
            "init": init, "train": {"steps": steps_, "gradient": gradient}, "grid": grid}


# (parameterization, n_layers, steps, init, design, gradient, task extras, (lr_1 values, lr_2 values)):
# with WIDE (through the CLI below: 2-NN, orthogonal init and design, 2 steps) they cover 2-, 3-
# and 4-layer students, 1-3 steps, both inits and designs, every parameterization, signal_only and
# label noise; every grid has diverging points. (One engine compile per case: few, rich cases.)
CASES = {
    "A-2nn-3steps-noise": ("paper_2nn", 2, 3, "orthogonal", "gaussian", "exact", {"noise_std": 0.1},
                           ([1.0, 3.0, 8.0, 40.0], [1.0, 3.0, 8.0])),  # and ill-conditioned points
    "C-3nn-2steps-noise": ("paper_deep", 3, 2, "gaussian", "gaussian", "exact",
                           {"noise_std": 0.1, "test_noise": True}, ([0.3, 1.0, 3.0, 30.0], [0.3, 1.0])),
    "D-4nn-2steps-signal": ("paper_deep", 4, 2, "orthogonal", "orthogonal", "signal_only", {},
                            ([0.3, 1.0, 3.0, 300.0], [0.3, 1.0, 3.0])),
    "E-standard3-1step-noise": ("standard", 3, 1, "gaussian", "orthogonal", "exact", {"noise_std": 0.1},
                                ([0.1, 0.3, 1.0, 3e3], [0.1, 0.3, 0.5])),
}
# Conditioning, end to end through the CLI: the 2-NN (orthogonal init and design) at h = 64 with
# raw rates up to 3e4 (seed 000 scales eta ~ h^1.5); raw coefficients of high monomials are
# ~1e-49 (below float32's range), scaled ones are not.
WIDE = small_cfg("paper_2nn", 2, 2, "orthogonal", "orthogonal",
                 ([300.0, 1000.0, 3000.0, 1e4, 3e4], [300.0, 1000.0, 3000.0, 1e4]), width=64, d=64, n=64)
WIDE["name"] = "wide"
WIDE["task"]["target"] = "orthonormal"
NEW_LR_1 = 2000.0  # a value between the grid's


def by_student(chunks):
    out, coef = {}, []
    for item in chunks:
        chunk, res = (item.chunk, item.result) if isinstance(item, drivers.ChunkOutput) else item
        if isinstance(chunk, poly.PolyChunk):
            coef.append(chunk)
        for i, sid in enumerate(res["student_id"]):
            out[int(sid)] = flat_result(res, i)
            if "mode" in res:
                out[int(sid)]["mode"] = res["mode"][i]
    return out, coef


def poly_iter(spec, students, **ctx):
    return poly_driver.iter_group(spec, students, drivers.GroupContext(**ctx))


def both_modes(cfg):
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    grid, _ = by_student(engine.iter_group(spec, students))
    got, chunks = by_student(poly_iter(spec, students))
    return students, spec, grid, got, chunks


@pytest.fixture(scope="module")
def results():
    """Each case trained once in both modes (float64; restored afterwards)."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    cache = {}

    def get(name):
        if name not in cache:
            par, n_layers, steps_, init, design, gradient, task, lrs = CASES[name]
            cache[name] = both_modes(small_cfg(par, n_layers, steps_, init, design, lrs, gradient, **task))
        return cache[name]

    yield get
    jax.config.update("jax_enable_x64", old)


def assert_same(grid, got, rtol=1e-10):
    assert sorted(grid) == sorted(got)
    for sid, g in grid.items():
        p = got[sid]
        assert bool(p["diverged"]) == bool(g["diverged"]), sid
        assert int(p["diverged_step"]) == int(g["diverged_step"]), sid
        for key in ("train_loss", "test_loss"):
            np.testing.assert_array_equal(np.isnan(p[key]), np.isnan(g[key]), err_msg=f"{sid} {key}")
            ok = ~np.isnan(g[key])
            np.testing.assert_allclose(p[key][ok], g[key][ok], rtol=rtol, atol=0, err_msg=f"{sid} {key}")


@pytest.mark.parametrize("name", CASES)
def test_poly_equals_grid_at_every_point(x64, results, name):
    students, spec, grid, got, chunks = results(name)
    assert_same(grid, got)
    modes = np.array([got[s]["mode"] for s in sorted(got)])
    assert (modes == "poly").mean() >= 0.6, modes  # the polynomials, not the fallback, carry the test
    diverged = [s for s, g in grid.items() if g["diverged"]]
    assert diverged and len(diverged) < len(grid)
    moved = [g["test_loss"][-1] / g["test_loss"][0] for g in grid.values() if not g["diverged"]]
    assert np.median(np.abs(np.log(moved))) > 0.05  # the rates move the loss
    if name.startswith("A"):
        assert (modes == "grid").any()  # ill-conditioned points exist here and were retrained
    pl = poly.plan(spec)
    for chunk in chunks:  # coefficients vanish where the plan says a monomial is absent
        for coef in (chunk.train_coef, chunk.test_coef):
            assert not (coef != 0)[:, ~pl.present].any()


@pytest.mark.parametrize("name", CASES)
def test_error_model(x64, results, name):
    """Raw polynomial values at every point (no fallback) are within 100 kappa eps of grid mode."""
    students, spec, grid, got, chunks = results(name)
    pl = poly.plan(spec)
    m = spec.arch.n_trainable
    rows = students.set_index("student_id")
    inst_of = {int(seed): (c, i) for c in chunks for i, seed in enumerate(c.instance_hp["seed"])}
    logs = list(spec.log_steps)
    checked = 0
    for sid, g in grid.items():
        chunk, i = inst_of[int(rows.loc[sid, "seed"])]
        lrs = rows.loc[[sid], [f"lr_{k}" for k in range(1, m + 1)]].to_numpy()
        for coef, key in ((chunk.train_coef[i], "train_loss"), (chunk.test_coef[i], "test_loss")):
            value = poly.evaluate_coefficients(coef, pl.monomials, lrs, chunk.lr_scale)[0][logs]
            kappa = poly.condition(coef, pl.monomials, lrs, chunk.lr_scale)[0][logs]
            ok = np.isfinite(g[key])
            bound = 100 * kappa[ok] * np.finfo(np.float64).eps * np.abs(g[key][ok])
            assert np.all(np.abs(value[ok] - g[key][ok]) <= bound + 1e-300), (sid, key, value, g[key], kappa)
            checked += ok.sum()
    assert checked > 0


# --------------------------------------------------------------------------------------
# The recursion itself
# --------------------------------------------------------------------------------------

def spec_of(par, n_layers, steps_, gradient="exact", width=H, d=D, n=N, **task):
    cfg = small_cfg(par, n_layers, steps_, "gaussian", "gaussian", ([1.0], [1.0]), gradient, width=width, d=d, n=n,
                    **task)
    (spec,) = runner.prepare(config.load_config(cfg))[1].values()
    return spec


def random_instance(spec, seed=0):
    """Random weights and moments of the right shapes (S symmetric positive definite)."""
    rng = np.random.default_rng(seed)
    arch, d = spec.arch, spec.task.input_dim
    x = rng.normal(size=(2 * d, d))
    params = {k: jnp.asarray(rng.normal(size=s) / np.sqrt(s[0])) for k, s in zip(arch.layer_names, arch.shapes)}
    readout = rng.normal(size=(arch.width, 1)) if arch.parameterization == "paper_deep" else np.zeros(0)
    f = lambda *a: jnp.asarray(np.asarray(a[0], np.float64))
    inst = {"readout": f(readout), "beta": f(rng.normal(size=(d, arch.output_dim))), "xx": f(x.T @ x / (2 * d)),
            "xy": f(rng.normal(size=(d, arch.output_dim))), "yy": f(3.0), "noise_var": f(0.01)}
    return params, inst


@pytest.mark.parametrize("par,n_layers", [("paper_2nn", 2), ("paper_deep", 3), ("paper_deep", 4), ("standard", 3)])
@pytest.mark.parametrize("gradient", ["exact", "signal_only"])
def test_gradients_equal_moments_path(x64, par, n_layers, gradient):
    """On random weights (single-term polynomials) the chain gives steps.moments_loss_and_grads' W_eff
    and gradient (the same products in the same order, so equal to rounding)."""
    spec = spec_of(par, n_layers, 1)
    arch = spec.arch
    weights, inst = random_instance(spec)
    z = np.zeros((1, arch.n_trainable), np.int64)
    be = poly.ArrayBackend
    w = [poly.Poly(z, weights[k][None]) for k in arch.layer_names]
    readout = poly.Poly(z, inst["readout"][None]) if par == "paper_deep" else None
    r, w_eff = poly.right_chain(arch, w, readout, be)
    sw = poly._mul(be, poly.Poly(z, inst["xx"][None]), w_eff)
    neg_b = poly.Poly(z, -inst["xy"][None])
    g = poly._add(be, sw, neg_b) if gradient == "exact" else neg_b
    grads = poly.gradients(arch, w, r, g, be)
    spec = dataclasses.replace(spec, gradient=gradient)
    _, want, want_w_eff, _ = steps.moments_loss_and_grads(spec, weights, weights, inst, None)
    want = [want[k] for k in arch.layer_names]
    np.testing.assert_allclose(w_eff.coef[0], want_w_eff, rtol=1e-14, atol=0)
    for got, ref in zip(grads, want):
        assert got.coef.shape == (1,) + ref.shape
        np.testing.assert_allclose(got.coef[0], ref, rtol=1e-13, atol=1e-15 * float(jnp.abs(ref).max()))


def test_symbolic_counts_two_layer_by_hand():
    """2-NN, one step: W_1 in {1, u1}, W_2 in {1, u2}; W_eff = W_1 W_2 / h in {1, u1, u2, u1 u2};
    the losses are quadratic in W_eff: u1^a u2^b, a, b <= 2 (9 monomials). Products at step 0:
    W_1 W_2, S W_eff, W_1^T G, G W_2^T (4); at the last step the loss only: W_1 W_2 and S W_eff.
    With 2 steps, step 1 has 2x2, 1x4, 2x4 (W_1^T G), 4x2 (G W_2^T) = 24 and step 2 W_1 (7 terms)
    W_2 (7 terms) and S W_eff (21 terms): 49 + 21."""
    pl = poly.plan(spec_of("paper_2nn", 2, 1))
    assert [s.weight_terms for s in pl.steps] == [(1, 1), (2, 2)]
    assert [s.loss_terms for s in pl.steps] == [1, 9]
    assert [s.matmuls for s in pl.steps] == [4, 4 + 4]
    assert sorted(map(tuple, pl.monomials.tolist())) == [(a, b) for a in range(3) for b in range(3)]
    pl2 = poly.plan(spec_of("paper_2nn", 2, 2))
    assert [s.weight_terms for s in pl2.steps] == [(1, 1), (2, 2), (7, 7)]
    assert [s.matmuls for s in pl2.steps] == [4, 24, 49 + 21]
    # W_1 after 2 steps: {1, u1} + u1 * (G W_2^T: u1^{0,1} u2^{0,1,2}) = 7 terms up to u1^2 u2^2
    # signal-only: G = -b has one term, so L_2 = W_1^T G and G W_2^T have 2: W_1 in {1, u1, u1 u2}
    sig = poly.plan(spec_of("paper_2nn", 2, 2, gradient="signal_only"))
    assert [s.weight_terms for s in sig.steps] == [(1, 1), (2, 2), (3, 3)]
    assert [s.matmuls for s in sig.steps] == [4, 4 + 4 + 2 + 2, 9 + 7]
    # grid mode (no variables): every polynomial has one term
    grid = poly.plan(spec_of("paper_2nn", 2, 2), n_vars=0)
    assert [s.matmuls for s in grid.steps] == [4, 4, 2]
    assert poly.grid_flops_per_student(spec_of("paper_2nn", 2, 2)) == grid.flops


class CountingBackend(poly.ArrayBackend):
    """Counts the pairwise products it performs (instrumented, not planned)."""
    def __init__(self):
        self.products_done = 0

    def products(self, a, b, ta, tb, ids, n):
        self.products_done += a.shape[0] * b.shape[0]
        return poly.ArrayBackend.products(a, b, ta, tb, ids, n)


def dot_flops(jaxpr) -> float:
    """2 x (output size) x (contracted size) over every dot_general, sub-jaxprs included."""
    total = 0.0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * np.prod([lhs[i] for i in contract])
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            total += dot_flops(sub)
    return total


@pytest.mark.parametrize("par,n_layers,steps_,gradient", [
    ("paper_2nn", 2, 2, "exact"), ("paper_deep", 3, 2, "signal_only"), ("paper_deep", 4, 2, "exact"),
    ("standard", 3, 1, "exact")])
def test_symbolic_pass_counts_what_is_computed(x64, par, n_layers, steps_, gradient):
    """Instrumented: the pairwise products performed, and the FLOPs of every dot_general traced."""
    spec = spec_of(par, n_layers, steps_, gradient)
    pl = poly.plan(spec)
    params0, inst = random_instance(spec)
    be = CountingBackend()
    jaxpr = jax.make_jaxpr(lambda p, i, s: poly.coefficients(spec, p, i, s, pl, be))(params0, inst, 2.0)
    assert be.products_done == pl.matmuls
    assert dot_flops(jaxpr.jaxpr) == pl.flops
    assert [v.aval.shape for v in jaxpr.jaxpr.outvars] == [(steps_ + 1, pl.n_monomials)] * 2


def test_overflowed_coefficients_are_retrained():
    """A non-finite coefficient at step t spoils t for every point: only students that diverged
    before t keep their poly results (float32 coefficients of wildly divergent groups)."""
    spec = spec_of("paper_2nn", 2, 2)
    pl = poly.plan(spec)
    train = np.zeros((3, pl.n_monomials))
    train[:, 0] = 1.0                                       # loss 1 at every step ...
    u1 = [tuple(e) for e in pl.monomials.tolist()].index((1, 0))
    train[1, u1] = 1e7                                      # ... but 1e7 u1 more at step 1
    train[2, u1] = np.inf                                   # and an overflow at step 2
    lrs = np.array([[1.0, 0.5], [1e-9, 0.5]])              # diverges at step 1 / does not
    res, ok = poly.evaluate_students(spec, pl, train, train.copy(), lrs, 1.0, 2.2e-16, 1e-11)
    assert res["diverged_step"].tolist() == [1, 2] and ok.tolist() == [True, False]


# --------------------------------------------------------------------------------------
# Choosing the mode
# --------------------------------------------------------------------------------------

def test_choose_mode():
    fig1 = spec_of("paper_2nn", 2, 2, width=1000, d=1000, n=1000)
    assert poly.choose_mode(fig1, 361 * 5, 5, memory_budget=8 << 30) == "poly"
    assert poly.choose_mode(fig1, 1, 1, memory_budget=8 << 30) == "grid"
    assert poly.choose_mode(fig1, 361 * 5, 5, "grid") == "grid"
    assert poly.choose_mode(fig1, 1, 1, "poly", memory_budget=8 << 30) == "poly"
    # does not fit: auto falls back to grid, poly says so
    assert poly.choose_mode(fig1, 361 * 5, 5, memory_budget=1 << 20) == "grid"
    with pytest.raises(config.ConfigError, match="train.mode"):
        poly.choose_mode(fig1, 361 * 5, 5, "poly", memory_budget=1 << 20)
    relu = spec_of("paper_deep", 3, 2, width=H)
    relu = dataclasses.replace(relu, arch=dataclasses.replace(relu.arch, activation="relu"), formulation="autodiff")
    assert poly.choose_mode(relu, 1000, 1) == "grid"
    with pytest.raises(config.ConfigError) as err:
        poly.choose_mode(relu, 1000, 1, "poly")
    assert err.value.field == "train.mode" and "not linear" in str(err.value)
    many = spec_of("paper_2nn", 2, 8)  # the polynomials explode: never poly
    assert not poly.plan(many).feasible and poly.choose_mode(many, 10 ** 6, 1) == "grid"


def test_mode_is_validated_and_not_an_axis(tmp_path):
    with pytest.raises(config.ConfigError, match="train.mode"):
        config.load_config({"train": {"mode": "fast"}, "grid": {"lr": 1.0}})
    with pytest.raises(config.ConfigError, match="grid.mode"):
        config.load_config({"grid": {"lr": 1.0, "mode": ["grid", "poly"]}})
    relu = small_cfg("paper_deep", 3, 2, "orthogonal", "orthogonal", ([1.0], [1.0]))
    relu["model"]["activation"] = "relu"
    path = tmp_path / "relu.yaml"
    path.write_text(yaml.safe_dump(relu))
    out = tmp_path / "out"
    rc, _, err = cli_main(["run", path, "--mode", "poly", "--out", out, "--quiet"])
    assert rc == 2 and "train.mode" in err and "Traceback" not in err
    assert not out.exists()


# --------------------------------------------------------------------------------------
# End to end: CLI, runner, stored coefficients, evaluate, resume
# --------------------------------------------------------------------------------------

def run_cli(tmp, mode, cfg, *extra):
    path = tmp / f"{mode}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, stdout, err = cli_main(["run", path, "--mode", mode, "--x64", "--quiet", "--out", tmp / mode, *extra])
    assert rc == 0, err
    (run,) = sorted(p.parent for p in (tmp / mode).rglob("meta.json"))
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """WIDE through `lrsweep run --mode poly` and, with one more lr_1 value, `--mode grid`."""
    tmp = tmp_path_factory.mktemp("poly_runs")
    old = jax.config.jax_enable_x64
    with_new = json.loads(json.dumps(WIDE))
    with_new["grid"]["lr_1"] = sorted(WIDE["grid"]["lr_1"] + [NEW_LR_1])
    poly_run = run_cli(tmp, "poly", WIDE)
    grid_run = run_cli(tmp, "grid", with_new)
    jax.config.update("jax_enable_x64", old)
    return tmp, poly_run, grid_run


def keyed(df, cols):
    return df.set_index(["seed", "lr_1", "lr_2", *cols]).sort_index()


N_WIDE = 2 * 5 * 4


def test_cli_poly_and_grid_runs_store_the_same(runs):
    _, poly_run, grid_run = runs
    ps, gs = lrsweep.load(poly_run, table="students"), lrsweep.load(grid_run, table="students")
    assert set(ps["mode"]) == {"poly"} and set(gs["mode"]) == {"grid"}
    gs = gs[gs.lr_1 != NEW_LR_1]
    assert len(ps) == len(gs) == N_WIDE
    a, b = keyed(ps, []), keyed(gs, [])
    assert a["diverged"].any() and not a["diverged"].all() and (a["diverged"] == b["diverged"]).all()
    assert (a["diverged_step"].fillna(-1) == b["diverged_step"].fillna(-1)).all()
    for col in ("final_train_loss", "final_test_loss"):
        np.testing.assert_allclose(a[col], b[col], rtol=1e-10)
    same = [c for c in b.columns if c not in ("run_id", "student_id", "mode", "final_train_loss", "final_test_loss")]
    pd.testing.assert_frame_equal(a[same], b[same], check_dtype=False)
    pc, gc = (keyed(lrsweep.load(r), ["step"]) for r in (poly_run, grid_run))
    gc = gc[gc.index.droplevel("step").isin(a.index)]
    assert len(pc) == len(gc) == 3 * N_WIDE
    for col in ("train_loss", "test_loss"):
        np.testing.assert_array_equal(pc[col].isna(), gc[col].isna())
        np.testing.assert_allclose(pc[col], gc[col], rtol=1e-10)
    group = json.loads((poly_run / "meta.json").read_text())["groups"]["0"]
    assert group["mode"] == "poly" and group["matmuls"] == [4, 24, 70] and group["n_terms"][-1] == [7, 7]
    assert json.loads((grid_run / "meta.json").read_text())["groups"]["0"]["mode"] == "grid"
    assert (poly_run / "poly.parquet").exists() and not (grid_run / "poly.parquet").exists()
    assert not (poly_run / "parts").exists()
    coef = pd.read_parquet(poly_run / "poly.parquet")
    assert list(coef.columns) == ["run_id", "group_id", *config.columns("instance"), "step", "e_1", "e_2", "lr_scale",
                                  "train_coef", "test_coef"]
    assert len(coef) == 2 * (1 + 9 + 69)  # seeds x monomials present at steps 0, 1, 2
    # conditioning: raw coefficients c / s^|e| of the top monomials are below float32's range
    assert set(coef["lr_scale"]) == {3e4}
    raw = coef["test_coef"] / coef["lr_scale"] ** (coef["e_1"] + coef["e_2"])
    assert raw.abs().min() < 1e-40 < coef["test_coef"].abs().min()


def test_evaluate_reproduces_and_predicts(runs):
    _, poly_run, grid_run = runs
    stored = keyed(lrsweep.load(poly_run), ["step"])
    lr_1 = np.array(WIDE["grid"]["lr_1"])[:, None]
    lr_2 = np.array(WIDE["grid"]["lr_2"])[None, :]
    ev = lrsweep.core.poly.evaluate(poly_run, lr_1=lr_1, lr_2=lr_2)  # broadcast: 5 x 4 points
    assert len(ev) == 2 * 20 * 3 and ev["condition"].max() < 1e4
    ev = keyed(ev, ["step"]).loc[stored.index]
    for col in ("train_loss", "test_loss"):
        np.testing.assert_array_equal(ev[col].isna(), stored[col].isna())
        np.testing.assert_allclose(ev[col], stored[col], rtol=1e-10)
    new = keyed(lrsweep.core.poly.evaluate(poly_run, lr_1=NEW_LR_1, lr_2=lr_2.ravel(), step=[1, 2]), ["step"])
    grid = keyed(lrsweep.load(grid_run), ["step"])
    want = grid[(grid.index.get_level_values("lr_1") == NEW_LR_1) & (grid.index.get_level_values("step") > 0)]
    assert len(new) == len(want) == 2 * 4 * 2 and want["test_loss"].isna().any()
    np.testing.assert_array_equal(new["test_loss"].isna(), want["test_loss"].isna())
    np.testing.assert_allclose(new["test_loss"], want["test_loss"], rtol=1e-10)
    with pytest.raises(ValueError, match="lr_1"):
        lrsweep.core.poly.evaluate(poly_run, lr_1=1.0)


def test_instances_read_once_evaluate_as_evaluate_does(runs):
    """poly.read_instances + evaluate_instances (what compare's line answers use, one read per run) give
    evaluate's frame exactly; instance_test_losses its test_loss column, instance-major, bit for bit; and the
    experiment's line loss of polynomial_lines is the pandas seed mean of those rows."""
    from lrsweep.families.layer_balancing import checks as lb
    _, poly_run, _ = runs
    lr_1, lr_2 = np.linspace(500.0, 9000.0, 7), np.linspace(8000.0, 200.0, 7)
    instances = poly.read_instances(poly_run)
    assert len(instances) == 2 and [i.key["seed"] for i in instances] == [0, 1]
    for step in (None, 2):
        pd.testing.assert_frame_equal(poly.evaluate_instances(instances, step, lr_1=lr_1, lr_2=lr_2),
                                      lrsweep.core.poly.evaluate(poly_run, step=step, lr_1=lr_1, lr_2=lr_2))
    ev = lrsweep.core.poly.evaluate(poly_run, step=2, lr_1=lr_1, lr_2=lr_2)
    losses = poly.instance_test_losses(instances, 2, lr_1=lr_1, lr_2=lr_2)
    assert losses.shape == (2, 7)
    np.testing.assert_array_equal(losses.ravel(), ev.sort_values(["seed", "point"])["test_loss"].to_numpy())
    total = 9000.0
    along = lb.polynomial_lines(poly_run)(pd.DataFrame({"group_id": [0]}), 2, total)
    ev = lrsweep.core.poly.evaluate(poly_run, step=2, lr_1=lr_1, lr_2=total - lr_1)
    np.testing.assert_array_equal(along(lr_1), ev.groupby("point")["test_loss"].mean().to_numpy())
    with pytest.raises(ValueError, match="outside"):
        poly.instance_test_losses(instances, 3, lr_1=lr_1, lr_2=lr_2)


def test_coefficients_do_not_depend_on_the_scale(x64):
    """The scale s is traced (no recompile) and the losses do not depend on it."""
    students, specs = runner.prepare(config.load_config(WIDE))
    (spec,) = specs.values()
    pl = poly.plan(spec)
    hp = engine.instance_hparams(spec, {c: students[c].to_numpy()[:1] for c in spec.instance_columns})
    params0, inst = engine.make_instances(spec, True, hp)
    fn = poly.make_coefficient_fn(spec, pl)
    lrs = students[students.seed == 0][["lr_1", "lr_2"]].to_numpy()
    losses = []
    for scale in (3e4, 1.0, 777.0):
        train, test = (np.asarray(a[0]) for a in fn(params0, inst, scale))
        losses.append(np.stack([poly.evaluate_coefficients(c, pl.monomials, lrs, scale) for c in (train, test)]))
    assert fn._cache_size() == 1
    for other in losses[1:]:
        np.testing.assert_allclose(other, losses[0], rtol=1e-10)


def test_resume_poly_run(runs, monkeypatch):
    """A poly run killed after its first chunk resumes to the tables of an uninterrupted one."""
    tmp, poly_run, _ = runs
    real = poly_driver.DRIVER

    def crashing(*args, **kwargs):
        for item in real.iter_group(*args, **kwargs):
            yield item
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(poly_driver, "DRIVER", real._replace(iter_group=crashing))
    (tmp / "crash").mkdir()
    with pytest.raises(RuntimeError):
        smallest = runner.plan_run(config.load_config(WIDE, ["train.mode=poly"]), x64=True).memory[0]["min_chunk"]
        run_cli(tmp / "crash", "poly", WIDE, "--max-memory", str(smallest))  # one instance per chunk
    monkeypatch.setattr(poly_driver, "DRIVER", real)
    (run,) = sorted(p.parent for p in (tmp / "crash").rglob("meta.json"))
    assert len(lrsweep.load(run, table="students")) == N_WIDE // 2
    rc, _, err = cli_main(["run", "--resume", run, "--quiet"])
    assert rc == 0, err
    for table, col in (("students", "final_test_loss"), ("curves", "test_loss")):
        a = keyed(lrsweep.load(run, table=table), ["step"] if table == "curves" else [])
        b = keyed(lrsweep.load(poly_run, table=table), ["step"] if table == "curves" else [])
        np.testing.assert_allclose(a[col].to_numpy(), b[col].to_numpy(), rtol=1e-12)  # other chunk shapes
    a, b = (pd.read_parquet(r / "poly.parquet").drop(columns="run_id") for r in (run, poly_run))
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), rtol=1e-12)


def test_reading_coefficients_imports_neither_engine_nor_jax(runs):
    """lrsweep.core.poly.evaluate and compare's exact line answers read a stored run with numpy alone."""
    import subprocess
    import sys
    _, poly_run, _ = runs
    code = (f"import sys, lrsweep.core.poly, lrsweep.compare\n"
            f"from lrsweep.families.layer_balancing import checks as lb\n"
            f"df = lrsweep.core.poly.evaluate({str(poly_run)!r}, lr_1=[2000.0], lr_2=[1000.0], step=2)\n"
            f"assert len(df) == 2 and df['test_loss'].notna().all()\n"
            f"assert lb.polynomial_lines({str(poly_run)!r}) is not None\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib') or m == 'lrsweep.core.engine')\n"
            f"print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
