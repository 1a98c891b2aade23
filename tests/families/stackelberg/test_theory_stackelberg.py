"""lrsweep.families.stackelberg.theory (seed 002): statements, fits, and the exact width-1 model against a plain
vector reference, hand-derived values and the engine."""
import math

import numpy as np
import pytest

from conftest import numpy_instance, train_config
from lrsweep.families.stackelberg import theory as sb


def test_statements_name_the_derived_values_and_the_seeds_claims():
    s = sb.statements()
    assert s["distance_ratio_exponent"]["value"] == -1.0
    assert "derived" in s["distance_ratio_exponent"]["source"]
    assert "Schur" in s["curvature_bound"]["source"]
    for claim in ("sharper_early", "faster_nonuniform", "finite_time"):
        assert "the seed's claim" in s[claim]["source"]


def test_fit_exponent_matches_numpy_polyfit_and_skips_bad_points():
    rng = np.random.default_rng(0)
    ratios = np.array([1, 2, 4, 8, 16, 32.0])
    dist = 3.0 * ratios ** -1.3 * np.exp(0.05 * rng.standard_normal(ratios.size))
    (slope_ref, _), cov = np.polyfit(np.log(ratios), np.log(dist), 1, cov=True)
    slope, se = sb.fit_exponent(np.r_[ratios, np.inf, 64, 128], np.r_[dist, 1.0, 0.0, np.nan])
    assert slope == pytest.approx(slope_ref, rel=1e-12)
    assert se == pytest.approx(math.sqrt(cov[0, 0]), rel=1e-9)  # polyfit: residual variance over n - 2
    assert sb.fit_exponent([1, 2], [1.0, 0.25]) == (pytest.approx(-2.0), pytest.approx(float("nan"), nan_ok=True))
    assert all(math.isnan(v) for v in sb.fit_exponent([1, np.inf], [1.0, 2.0]))


def test_max_stable_ratio_separates_converging_from_diverging_head_gd():
    """GD on 1/2 w^T A w - b^T w at rate beta = ratio * alpha: just below 2 / (alpha lambda_max) it converges,
    just above it diverges (plain numpy iteration)."""
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    a = q @ np.diag([3.0, 1.0, 0.5, 0.1]) @ q.T
    b, alpha = rng.standard_normal(4), 0.01
    limit = float(sb.max_stable_ratio(alpha, 3.0))
    assert limit == pytest.approx(2 / 0.03)
    for ratio, converges in ((0.99 * limit, True), (1.01 * limit, False)):
        w = np.zeros(4)
        for _ in range(3000):
            w = w - ratio * alpha * (a @ w - b)
        assert np.allclose(a @ w, b, atol=1e-6) == converges
    assert np.isinf(sb.max_stable_ratio(0.1, 0.0))


def vector_reference(u0, w0, beta, alpha, eta, steps, rule, k=1, ridge=0.0, c=1.0):
    """Plain full-vector GD on L = 1/2 |beta - c u w|^2 (no plane reduction): the train-loss curve and u_t."""
    u, w = np.array(u0, float), float(w0)
    losses, us = [], []
    for t in range(steps + 1):
        if rule == "best_response":
            w = c * (u @ beta) / (c * c * (u @ u) + ridge)
        elif rule == "alternating":
            for _ in range(k):
                w = w - eta * c * (u @ (c * u * w - beta))
        r = c * u * w - beta
        losses.append(0.5 * r @ r)
        us.append(u.copy())
        gu, gw = c * w * r, c * (u @ r)
        u = u - alpha * gu
        if rule == "simultaneous":
            w = w - eta * gw
    return np.array(losses), np.array(us)


@pytest.mark.parametrize("rule,k,ridge,c", [("simultaneous", 1, 0.0, 1.0), ("alternating", 3, 0.0, 0.5),
                                              ("best_response", 1, 0.0, 1.0), ("best_response", 1, 0.2, 0.5)])
def test_width_one_plane_equals_the_vector_reference(rule, k, ridge, c):
    rng = np.random.default_rng(2)
    u0, beta, w0 = rng.standard_normal(6), rng.standard_normal(6) / 2, 0.7
    plane = sb.width_one_plane(u0, beta)
    run = sb.width_one_run(plane["b"], plane["x0"], plane["y0"], w0, 0.05, 0.3, 40, rule, k, ridge, c)
    losses, us = vector_reference(u0, w0, beta, 0.05, 0.3, 40, rule, k, ridge, c)
    np.testing.assert_allclose(run["loss"], losses, rtol=1e-12, atol=1e-15)
    rebuilt = run["x"][:, None] * plane["e1"] + run["y"][:, None] * plane["e2"]
    np.testing.assert_allclose(rebuilt, us, rtol=1e-11, atol=1e-13)


def test_phi_is_angle_only_and_is_the_loss_at_the_best_head():
    b, theta = 1.3, 0.7
    for s in (1e-3, 1.0, 1e3):
        x, y = s * math.cos(theta), s * math.sin(theta)
        assert sb.width_one_phi(x, y, b) == pytest.approx(0.5 * b * b * math.sin(theta) ** 2, rel=1e-12)
        w = sb.width_one_best_head(x, y, b)
        assert sb.width_one_loss(x, y, w, b) == pytest.approx(sb.width_one_phi(x, y, b), rel=1e-12)
    # with a ridge, Phi = min_w L + lambda/2 w^2: check against a fine scan over w
    x, y, lam = 0.4, 0.2, 0.3
    ws = np.linspace(-5, 5, 200001)
    assert sb.width_one_phi(x, y, b, ridge=lam) == pytest.approx(
        np.min(sb.width_one_loss(x, y, ws, b) + 0.5 * lam * ws ** 2), abs=1e-9)


def test_simultaneous_head_lags_by_the_quasi_static_factor():
    """Late in a run at ratio 40 (beta a ~ 0.7), w_t - w*(u_t) = -Delta w* / (beta a) (simultaneous) and
    -q / (1 - q) Delta w* (alternating, q = (1 - beta a)^k) within 3%: the two-time-scale lag."""
    b, x0, y0, w0, alpha, ratio, t = 1.0, 0.3, 0.9, 0.2, 0.02, 40, 150
    for rule, k in (("simultaneous", 1), ("alternating", 1), ("alternating", 3)):
        run = sb.width_one_run(b, x0, y0, w0, alpha, alpha * ratio, 300, rule, k)
        w_star = sb.width_one_best_head(run["x"], run["y"], b)
        curvature = alpha * ratio * (run["x"][t] ** 2 + run["y"][t] ** 2)
        lag = run["w"][t] - w_star[t]
        assert lag == pytest.approx(-sb.head_lag_factor(rule, curvature, k) * (w_star[t] - w_star[t - 1]), rel=0.03)


def test_width_one_distance_to_best_response_shrinks_like_one_over_ratio():
    """The body distance max_t |u_r - u_BR| / |u_0| of simultaneous GD approaches the exponent -1 as the ratio
    grows below the stability limit 2 / (alpha |u|^2) ~ 110 here, and blows up past it."""
    b, x0, y0, w0, alpha, steps = 1.0, 0.3, 0.9, 0.2, 0.02, 200
    br = sb.width_one_run(b, x0, y0, w0, alpha, 0.0, steps, "best_response")
    ratios = np.array([1, 2, 4, 8, 16, 32, 64, 128.0])
    dist = np.array([np.max(np.hypot(r["x"] - br["x"], r["y"] - br["y"])) / math.hypot(x0, y0)
                     for r in (sb.width_one_run(b, x0, y0, w0, alpha, alpha * q, steps) for q in ratios)])
    assert np.all(np.diff(dist[:7]) < 0) and dist[7] > dist[6]
    slope, _ = sb.fit_exponent(ratios[4:7], dist[4:7])
    assert -1.05 < slope < -0.9
    assert 100 < float(sb.max_stable_ratio(alpha, x0 ** 2 + y0 ** 2)) < 128


# The seed's mechanism (i) in the width-1 model: b = 1, u0 = s (cos 1.3, sin 1.3), w0 = s/2, body rate 0.05,
# target 1% of b^2 / 2. Steps to target from the recursion (the README's table, scripts/stackelberg_tables.py).
SCALES = [1.0, 0.3, 0.1, 0.03, 0.01, 1e-3, 1e-4]


def steps_for(rule, ratio, scales=SCALES):
    direction = (math.cos(1.3), math.sin(1.3))
    return sb.width_one_steps_to_target(1.0, direction, 0.5, scales, 0.05, 0.05 * ratio, 20000, 0.005, rule)


def test_gd_pays_a_fixed_number_of_steps_per_decade_of_init_scale():
    """Escaping L's saddle at the origin costs log(10) / log(1 + b sqrt(alpha beta)) steps per decade of init
    scale (the linearisation, derived by hand in saddle_escape_rate's docstring): ~ 46 at ratio 1, ~ 14.6 at
    ratio 10."""
    for ratio, per_decade in ((1, math.log(10) / math.log(1.05)), (10, math.log(10) / math.log(1 + 0.05 * math.sqrt(10)))):
        assert sb.saddle_escape_rate(1.0, 0.05, 0.05 * ratio) == pytest.approx(1 + 0.05 * math.sqrt(ratio))
        steps = steps_for("simultaneous", ratio, [1e-3, 1e-4, 1e-5])
        assert np.diff(steps) == pytest.approx([per_decade, per_decade], abs=1.0)


def test_best_response_has_no_saddle_but_an_effective_rate_alpha_over_s2():
    """Phi is 0-homogeneous: from init scale s the best-response run is the scale-1 run at rate alpha / s^2
    (exact), so there is no saddle to escape (a few steps at s = 0.03 .. 0.3, where GD needs ~ 80-110), but
    at small s the first step throws |u| far out and the run then crawls at rate alpha / |u|^2."""
    gd, br = steps_for("simultaneous", 1), steps_for("best_response", math.inf)
    window = slice(1, 4)  # s = 0.3, 0.1, 0.03
    assert np.all(br[window] <= 10) and np.all(gd[window] >= 70)
    assert br[5] > gd[5] and br[6] > 20000 > gd[6]   # s = 1e-3, 1e-4: the effective rate alpha / s^2 is too large
    s, direction = 0.01, (math.cos(1.3), math.sin(1.3))
    direct = sb.width_one_run(1.0, s * direction[0], s * direction[1], 0.0, 0.05, 0.0, 50, "best_response")
    scaled = sb.best_response_scale_law(1.0, *direction, s, 0.05, 50)
    np.testing.assert_allclose(scaled["loss"], direct["loss"], rtol=1e-12)
    np.testing.assert_allclose(scaled["x"], direct["x"], rtol=1e-10)


@pytest.mark.parametrize("parameterization,ridge", [("standard", 0.0), ("ntk", 0.2)])
def test_width_one_model_matches_the_engine(x64, parameterization, ridge):
    """The engine's train loss and body (body_sketch: the body's d weights) of a width-1 two-layer linear
    student on an orthogonal design with a noiseless linear teacher equal the recursion's to 1e-10, for
    simultaneous gd, alternating gd (3 head steps) and the best response."""
    cfg = {"task": {"kind": "linear_teacher", "input_dim": 4, "n_train": 8, "noise_std": 0.0, "design": "orthogonal"},
           "model": {"parameterization": parameterization, "n_layers": 2, "width": 1, "activation": "linear"},
           "init": "gaussian", "train": {"steps": 25, "log_every": 1, "metrics": ["body_sketch"], "head_ridge": ridge},
           "grid": {"lr_body": [0.1], "zip": {"lr_ratio": [1, 4, ".inf", 1, 4],
                                              "update": ["simultaneous"] * 3 + ["alternating"] * 2,
                                              "head_steps": [1, 1, 1, 3, 3]}}}
    students, results = train_config(cfg)
    c = 1.0 if parameterization == "standard" else 0.5  # ntk: 1 / sqrt(d * 1)
    for sid in students["student_id"]:
        spec, row, (u0, w0), inst = numpy_instance(students, sid)
        assert spec.arch.output_scale == c
        plane = sb.width_one_plane(u0, inst["beta"])
        rule = "best_response" if row["head"] == "best_response" else row["update"]
        run = sb.width_one_run(plane["b"], plane["x0"], plane["y0"], w0.item(), row["lr_1"], row["lr_2"], 25, rule,
                               int(row["head_steps"]), ridge, c)
        np.testing.assert_allclose(results[sid]["train_loss"], run["loss"], rtol=0, atol=1e-10)
        body = np.stack([results[sid][f"body_sketch_{i}"] for i in range(1, 5)], axis=1)
        np.testing.assert_allclose(body, run["x"][:, None] * plane["e1"] + run["y"][:, None] * plane["e2"],
                                   rtol=0, atol=1e-10)


def test_best_response_with_a_ridge_escapes_the_origin_at_its_own_rate():
    """With lambda = 0.01 the origin is a critical point of Phi_lambda, escaped at a factor 1 + alpha b^2 /
    lambda = 6 per step (hand-derived): log(10) / log(6) ~ 1.29 steps per decade, against ~ 46 for GD at
    ratio 1; so from s = 1e-4 the best response needs ~ 10 steps where GD needs ~ 230."""
    assert sb.best_response_escape_rate(1.0, 0.05, 0.01) == pytest.approx(6.0)
    direction = (math.cos(1.3), math.sin(1.3))
    steps = sb.width_one_steps_to_target(1.0, direction, 0.5, [1e-4, 1e-7], 0.05, 0.0, 2000, 0.005, "best_response",
                                         ridge=0.01)
    assert steps[1] - steps[0] == pytest.approx(3 * math.log(10) / math.log(6.0), abs=1.0)
    assert steps[0] <= 12 and steps_for("simultaneous", 1, [1e-4])[0] >= 200


def test_at_an_equal_budget_uniform_rates_escape_the_saddle_fastest():
    """alpha + beta = C: the escape factor 1 + b C sqrt(r) / (1 + r) peaks at r = 1 (AM-GM); in the recursion
    from s = 1e-3 the steps to target are smallest at r = 1, and a decade of init scale costs
    log(10) / log(1 + b C sqrt(r) / (1 + r)) steps (hand-derived), the same for r and 1 / r."""
    C, direction = 0.1, (math.cos(1.3), math.sin(1.3))
    ratios = [0.25, 0.5, 1.0, 2.0, 4.0]
    rates = [sb.equal_budget_escape_rate(1.0, C, r) for r in ratios]
    assert rates == pytest.approx([1 + C * math.sqrt(r) / (1 + r) for r in ratios]) and np.argmax(rates) == 2
    steps = [sb.width_one_steps_to_target(1.0, direction, 0.5, [1e-3, 1e-5], C / (1 + r), C * r / (1 + r), 20000,
                                          0.005) for r in ratios]
    assert np.argmin([s[0] for s in steps]) == 2
    for r, s in zip(ratios, steps):
        assert (s[1] - s[0]) / 2 == pytest.approx(math.log(10) / math.log(1 + C * math.sqrt(r) / (1 + r)), abs=0.5)


def test_the_exponent_is_flat_below_the_ratio_window_and_minus_one_inside_it():
    """Width-1 model (a = |u|^2 ~ 0.9, alpha = 0.02): with T = 5 steps the window starts at 1 / (alpha a T) ~ 11,
    and the distance barely moves with the ratio below it (local exponent > -0.1 over ratios 0.25..2) and
    approaches -1 far above it (< -0.85 over 32..64); with T = 200 (window from ~0.28) the exponent is < -0.9
    over 16..64."""
    b, x0, y0, w0, alpha = 1.0, 0.3, 0.9, 0.2, 0.02
    lower, upper = sb.ratio_window(alpha, 5, x0 ** 2 + y0 ** 2, x0 ** 2 + y0 ** 2)
    assert lower == pytest.approx(1 / (alpha * 0.9 * 5)) and upper == pytest.approx(2 / (alpha * 0.9))

    def slope(steps, ratios):
        br = sb.width_one_run(b, x0, y0, w0, alpha, 0.0, steps, "best_response")
        dist = [np.max(np.hypot(r["x"] - br["x"], r["y"] - br["y"]))
                for r in (sb.width_one_run(b, x0, y0, w0, alpha, alpha * q, steps) for q in ratios)]
        return sb.fit_exponent(ratios, dist)[0]

    assert slope(5, [0.25, 0.5, 1, 2]) > -0.1 and slope(5, [32, 64]) < -0.85
    assert slope(200, [16, 32, 64]) < -0.9
