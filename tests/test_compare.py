"""Theory against the engine: Monte Carlo over seeds of the signal-only engine vs each exact formula.

The formulas of lrsweep.families.layer_balancing.theories are exact expectations of the signal-only surrogate, so the seed
mean must sit within a few standard errors of them (|z| <= 4 at every point; 64 seeds). The same
data must reject the leading-order published 3-NN formula, or the test would prove nothing.
"""
import jax
import numpy as np
import pandas as pd
import pytest
import yaml

from lrsweep import compare
from lrsweep.families.layer_balancing import checks as lb_compare
from lrsweep import registry
from conftest import cli_main


def _run(tmp_path, name, par, n_layers, h, init, design, target, lr_1, lr_2, steps, seeds=64, d=None, n=None):
    cfg = {"name": name, "seeds": {"range": [0, seeds - 1, 1]},
           "task": {"input_dim": d or h, "n_train": n or h, "design": design, "target": target},
           "model": {"parameterization": par, "n_layers": n_layers, "width": h},
           "init": init, "train": {"steps": steps, "gradient": "signal_only"},
           "grid": {"lr_1": lr_1, "lr_2": lr_2}}
    return _run_cli(cfg, tmp_path)


def _run_cli(cfg, tmp_path):
    """Train through the CLI (``lrsweep run --x64``, the path a user takes), in this process: the run's
    float64 switch is put back afterwards (a fresh process per run cost its imports, ~2-3 s each)."""
    path = tmp_path / f"{cfg['name']}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    x64 = jax.config.jax_enable_x64
    try:
        rc, _, err = cli_main(["run", path, "--x64", "--quiet", "--out", tmp_path / "out"])
    finally:
        jax.config.update("jax_enable_x64", x64)
    assert rc == 0, err[-2000:]
    (run,) = list((tmp_path / "out" / cfg["name"]).iterdir())
    return run


CASES = [
    # theory name, parameterization, L, init/design, target, eta scale (h^{3/2} for 2-NN, h^{2/3} for 3-NN)
    ("layer_balancing.two_layer", "paper_2nn", 2, "orthogonal", "gaussian", 1.5),
    ("layer_balancing.two_layer_orthonormal_target", "paper_2nn", 2, "orthogonal", "orthonormal", 1.5),
    ("layer_balancing.three_layer", "paper_deep", 3, "orthogonal", "gaussian", 2 / 3),
    ("layer_balancing.two_layer_gaussian_init", "paper_2nn", 2, "gaussian", "gaussian", 1.5),
    ("layer_balancing.three_layer_gaussian_init", "paper_deep", 3, "gaussian", "gaussian", 2 / 3),
]


@pytest.mark.montecarlo
@pytest.mark.parametrize("h", [16, 32])
@pytest.mark.parametrize("theory,par,n_layers,init,target,alpha", CASES)
def test_signal_only_engine_matches_exact_theory(tmp_path, theory, par, n_layers, init, target, alpha, h):
    if par == "paper_deep":
        # The 3-NN loss has heavy tails at small h (q^4 |a|^8 terms): a 64-seed mean and its standard
        # error are only trustworthy from h ~ 32 on, so this family is checked at 2h.
        h = 2 * h
    scale = h ** alpha
    steps = 1 if "gaussian_init" in theory else 2
    run = _run(tmp_path, "mc", par, n_layers, h, init, init, target,
               [0.3 * scale, 1.0 * scale, 2.0 * scale], [0.5 * scale, 1.5 * scale], steps)
    table = compare.compare(run, [theory])
    assert len(table) == 6 * steps  # 6 grid points x logged steps the theory covers
    assert table["exact"].all() and (table["n_seeds"] == 64).all()
    # the learning rates must move the loss well beyond the standard error, or agreement is vacuous
    assert (abs(table["prediction"] - table["prediction"].max()) > 5 * table["sem"]).any()
    assert table["z"].abs().max() <= 4.0, table[["lr_1", "lr_2", "step", "mean", "sem", "prediction", "z"]]
    assert compare.verdict(table).ok


@pytest.mark.montecarlo
def test_same_data_reject_the_leading_order_formula(tmp_path):
    """At h = 16 the published 3-NN formula (leading order in 1/h) is far outside the error bars.

    The 1-step losses have light tails, so 1024 seeds pin them to ~1%: the published formula is
    ~20% low there (O(1/h) terms dropped), the exact one is within the noise.
    """
    scale = 16 ** (2 / 3)
    run = _run(tmp_path, "mc", "paper_deep", 3, 16, "orthogonal", "orthogonal", "gaussian",
               [0.5 * scale, 1.0 * scale], [1.0 * scale], 2, seeds=1024)
    exact = compare.compare(run, ["layer_balancing.three_layer"])
    published = compare.compare(run, ["layer_balancing.three_layer_published"])
    assert (exact["n_seeds"] == 1024).all() and len(exact) == 4
    assert exact["z"].abs().max() <= 4.0
    assert published["z"].abs().max() > 8.0


def test_exact_gradient_students_are_compared_but_not_judged(tmp_path):
    """Exact-gradient students get a relative gap to the surrogate; the verdict does not fail on it."""
    cfg = {"name": "gap", "seeds": [0, 1, 2, 3],
           "task": {"input_dim": 32, "n_train": 32, "design": "orthogonal"},
           "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 32},
           "init": "orthogonal", "train": {"steps": 2}, "grid": {"lr_line": [10]}}
    run = _run_cli(cfg, tmp_path)
    table, summaries, verdict = compare.write_comparison(run, ["layer_balancing.three_layer"])
    lines = summaries["lines"]
    assert not table["exact"].any() and np.isfinite(table["rel_gap"]).all()
    assert verdict.ok and (run / "comparison.parquet").exists() and (run / "lines.parquet").exists()
    # one row per (line, step); the authors' grid on C = 10 has the balanced split eta_1 = 5
    assert len(lines) == 2 and lines["n_points"].eq(9).all()
    assert lines["predicted_balanced_local_min"].notna().all()
    # Every row's numbers, recomputed here: the seed mean and SE from the stored curves, the prediction
    # from the exact 3-NN formula at (lr_1, lr_2, h = 32, step) -- step 1 written out from its docstring
    # (seed 000 Sec. 5, exact in h), step 2 from the module (checked against Monte Carlo in
    # test_theory_layer_balancing) -- and z, rel_gap from those. rtol 1e-12: the same float64 arithmetic
    # in a different order (pandas' groupby mean vs numpy's); 1e-10 for z and rel_gap, differences of
    # nearby numbers (mean - prediction) that amplify that round-off.
    from lrsweep.core import store
    from lrsweep.families.layer_balancing import theory as lb
    curves = store.load(run)
    assert len(table) == 9 * 2 and set(table["step"]) == {1, 2}
    h = 32.0
    for row in table.itertuples():
        at = curves[(curves["lr_1"] == row.lr_1) & (curves["lr_2"] == row.lr_2) & (curves["step"] == row.step)]
        losses = at["test_loss"].to_numpy(float)
        assert sorted(at["seed"]) == [0, 1, 2, 3] and row.n_seeds == 4
        np.testing.assert_allclose(row.mean, losses.mean(), rtol=1e-12)
        np.testing.assert_allclose(row.sem, losses.std(ddof=1) / 2.0, rtol=1e-12)
        p, q = row.lr_1 + row.lr_2, row.lr_1 * row.lr_2
        if row.step == 1:
            pred = (1 + 1 / h - 2 * p / h + p**2 * (h + 2) / h**3 + 2 * q * (h + 2) / h**4
                    + q**2 * (h + 2) ** 2 * (h + 4) / h**7)
        else:
            pred = float(lb.three_layer_orthogonal_loss(row.lr_1, row.lr_2, h, steps=2))
        np.testing.assert_allclose(row.prediction, pred, rtol=1e-12)
        np.testing.assert_allclose(row.rel_gap, (losses.mean() - pred) / abs(pred), rtol=1e-10)
        np.testing.assert_allclose(row.z, (losses.mean() - pred) / (losses.std(ddof=1) / 2.0), rtol=1e-10)
    assert (table["rel_gap"].abs() > 1e-3).any()  # exact gradient vs surrogate: the gaps are not all ~0


def test_theory_predict_passes_each_column_to_its_argument():
    """compare's adapter calls each registered formula with eta_1 = lr_1, eta_2 = lr_2, h = width, and
    (Gaussian init) n = n_train, d = input_dim -- all different here, so a swap shows. No engine."""
    from lrsweep.families.layer_balancing import theory as lb
    frame = pd.DataFrame({"lr_1": [3.0, 40.0, 7.0], "lr_2": [11.0, 5.0, 60.0], "width": [20.0, 16.0, 24.0],
                          "n_train": [30.0, 28.0, 50.0], "input_dim": [12.0, 10.0, 14.0]})
    e1, e2, h = frame["lr_1"].to_numpy(), frame["lr_2"].to_numpy(), frame["width"].to_numpy()
    n, d = frame["n_train"].to_numpy(), frame["input_dim"].to_numpy()
    want = {
        ("layer_balancing.two_layer", 2): lb.two_layer_orthogonal_loss(e1, e2, h, 2, "gaussian"),
        ("layer_balancing.three_layer", 1): lb.three_layer_orthogonal_loss(e1, e2, h, 1),
        ("layer_balancing.two_layer_gaussian_init", 1): lb.two_layer_gaussian_init_loss(e1, e2, h, n, d),
        ("layer_balancing.three_layer_gaussian_init", 1): lb.three_layer_gaussian_init_loss(e1, e2, h, n, d),
    }
    for (name, step), expected in want.items():
        np.testing.assert_allclose(registry.THEORIES[name].predict(frame, step), expected, rtol=1e-14, err_msg=name)


# --------------------------------------------------------------------------------------
# Exact line answers (no engine): the loss on a line eta_1 + eta_2 = C is a polynomial in eta_1
# --------------------------------------------------------------------------------------

def _authors_lines(theory, h, totals, steps=(1, 2)):
    """A comparison-shaped table on the authors' line grid (seed 000: step = C // 20, N = C / step)."""
    rows = []
    for total in totals:
        step = max(1, total // 20)
        n = int(total / step)
        for i in range(1, n):
            for s in steps:
                rows.append(dict(theory=theory, width=h, n_train=h, input_dim=h, lr_line=total, lr_1=i * step,
                                 lr_2=(n - i) * step, step=s, mean=0.0, prediction=0.0))
    return lb_compare.line_summary(pd.DataFrame(rows))


@pytest.mark.parametrize("steps", [1, 2])
def test_line_polynomial_is_exact_and_argmin_is_the_true_minimum(steps):
    from lrsweep.families.layer_balancing import theory as lb
    h, total = 1000.0, 45000.0
    along = lambda e: lb.two_layer_orthogonal_loss(e, total - e, h, steps=steps, target="orthonormal")
    poly = lb_compare.line_polynomial(along, 1000.0, 44000.0)
    x = np.random.default_rng(0).uniform(1000.0, 44000.0, 200)
    np.testing.assert_allclose(poly(x), along(x), rtol=1e-11)
    dense = np.linspace(1000.0, 44000.0, 2_000_001)
    brute = dense[np.argmin(along(dense))]
    best = lb_compare.line_argmin(poly, 1000.0, 44000.0)
    assert abs(best - brute) <= 0.05 or abs(along(best) - along(brute)) <= 1e-14 * abs(along(brute))
    assert along(best) <= along(brute) * (1 + 1e-14)


@pytest.mark.parametrize("theory,h,totals", [
    ("layer_balancing.two_layer_orthonormal_target", 1000, range(27000, 63001, 2000)),  # Fig. 1
    ("layer_balancing.three_layer", 1000, range(30, 101, 5)),                          # Fig. 2
])
def test_theory_reproduces_the_papers_balanced_verdicts_at_h_1000(theory, h, totals):
    """Seed 000 (Figs. 1-2, Cor. 5.4 / Thm 5.6): on every line the balanced split is not a local
    minimum after one step and is one after two."""
    lines = _authors_lines(theory, h, list(totals))
    by_step = lines.groupby("step")["predicted_balanced_local_min"]
    assert (by_step.get_group(1) == 0).all() and (by_step.get_group(2) == 1).all()
    # the theory is symmetric in (eta_1, eta_2): the balanced split is exactly stationary
    assert (lines["predicted_balanced_slope"].abs() <= 1e-9 * lines["predicted_balanced_curvature"].abs()
            * lines["lr_line"]).all()


def test_theory_at_h_100_balanced_is_not_a_local_min_on_the_widest_line():
    """Seed 000 Fig. 13: at h = 100 (below Cor. 5.4's width) the balanced split stops being optimal."""
    lines = _authors_lines("layer_balancing.two_layer_orthonormal_target", 100, [2000])
    assert (lines.set_index("step")["predicted_balanced_local_min"] == 0).all()


def test_poly_run_gives_exact_line_answers_and_dense_heatmap(tmp_path):
    """A poly-mode run: the experiment's line polynomial goes through the trained seed means, its
    argmin is no worse than any grid point, and `lrsweep plot` draws the dense heat map from it."""
    cfg = {"name": "polylines", "seeds": [0, 1, 2],
           "task": {"input_dim": 16, "n_train": 16, "design": "orthogonal", "target": "orthonormal"},
           "model": {"parameterization": "paper_2nn", "n_layers": 2, "width": 16},
           "init": "orthogonal", "train": {"steps": 2, "mode": "poly"}, "grid": {"lr_line": [60, 100]}}
    run = _run_cli(cfg, tmp_path)
    table, summaries, _ = compare.write_comparison(run, ["layer_balancing.two_layer_orthonormal_target"])
    lines = summaries["lines"]
    assert (lines["line_method"] == "polynomial").all() and len(lines) == 4
    along = lb_compare.polynomial_lines(run)
    for _, line in lines.iterrows():
        g = table[(table["lr_line"] == line["lr_line"]) & (table["step"] == line["step"])]
        total = float((g["lr_1"] + g["lr_2"]).iloc[0])
        loss = along(g, int(line["step"]), total)
        np.testing.assert_allclose(loss(g["lr_1"].to_numpy(float)), g["mean"].to_numpy(), rtol=1e-9)
        assert loss(np.array([line["exact_argmin_eta_1"]]))[0] <= g["mean"].min() * (1 + 1e-12)
        grid_verdict = line["balanced_local_min_grid"]
        if grid_verdict == grid_verdict and abs(line["balanced_curvature"]) > 1e-6:
            assert grid_verdict == line["balanced_local_min"]
    rc, _, err = cli_main(["plot", run, "--dense", "50"])
    assert rc == 0, err[-2000:]
    assert (run / "plots" / "heatmap_dense_g0000.png").stat().st_size > 10_000


def _table(mean, sem, prediction, exact=True):
    """A comparison table as compare builds it: one row per (point, step) of one theory."""
    agg = pd.DataFrame({"step": range(len(mean)), "n_seeds": 4, "mean": mean, "sem": sem,
                        "prediction": prediction})
    compare.residuals(agg)
    agg["exact"] = exact
    agg.insert(0, "theory", "toy")
    return agg


def test_zero_spread_is_compared_by_relative_gap_not_z():
    """Step 0: every seed starts at the same value (sem 0); a round-off gap of 1.8e-16 gave z = -inf.
    Such a point agrees by its relative gap; z is NaN there, not +-inf."""
    table = _table(mean=[0.5 - 1.8e-16, 0.40], sem=[0.0, 0.01], prediction=[0.5, 0.41])
    assert np.isnan(table["z"].iloc[0]) and table["z"].iloc[1] == pytest.approx(-1.0)
    v = compare.verdict(table)
    assert v.ok and "AGREES" in v.text and "1 exact points without spread" in v.text, v.text


def test_zero_spread_with_a_real_gap_disagrees():
    """A point without spread is judged, not dropped: a 1% gap there fails the verdict (tolerance 1e-5)."""
    v = compare.verdict(_table(mean=[0.505, 0.40], sem=[0.0, 0.01], prediction=[0.5, 0.41]))
    assert not v.ok and "DISAGREES" in v.text, v.text
    v = compare.verdict(_table(mean=[0.5 * (1 + 1e-6)], sem=[0.0], prediction=[0.5]))  # float32 round-off
    assert v.ok, v.text


def test_default_target_std_of_a_frame_is_the_rule_of_each_row():
    """matches_setting's default teacher scale, taken once per distinct (parameterization, d, h), is
    config.default_target_std of each row exactly (paper_2nn 1/d, paper_deep 1/sqrt(h), else 1/sqrt(d))."""
    from lrsweep.core import config
    frame = pd.DataFrame({"parameterization": ["paper_2nn", "paper_deep", "standard", "paper_deep", "paper_2nn", "ntk"],
                          "input_dim": [16, 16, 16, 12, 12, 7], "width": [8, 8, 8, 20, 20, 3]})
    want = [1 / 16, 1 / np.sqrt(8), 1 / np.sqrt(16), 1 / np.sqrt(20), 1 / 12, 1 / np.sqrt(7)]
    got = compare._default_target_std(frame)
    np.testing.assert_array_equal(got, [config.default_target_std(r) for r in frame.to_dict("records")])
    np.testing.assert_allclose(got, want, rtol=1e-15)
