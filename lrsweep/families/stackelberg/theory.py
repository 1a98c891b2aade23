"""Seed 002 (a Stackelberg reading of head/body learning rates): statements, fits and an exact model.

The seed reads per-layer GD with a small body rate alpha and a large head rate beta as two-time-scale
GD on the Stackelberg problem (seed Sec. 3; its proof, App. B, Prop. B.2, tracks ||w_k - w*(M_k)||,
so the head *follows* its best response to the body):

    min_M Phi(M) = G(M, w*(M)),   w*(M) = argmin_w G(M, w),   G = L + lambda/2 ||w||^2.

This module holds what can be said without running the engine (numpy only):

- :func:`statements`: the values the comparison checks (:mod:`lrsweep.families.stackelberg.checks`)
  test, each with where it comes from: two derived here (the ratio exponent of the distance to the
  best-response run, the curvature bound at a best response) and the seed's own claims.
- :func:`fit_exponent`, :func:`head_lag_factor`, :func:`ratio_window`, :func:`max_stable_ratio`: the
  log-log fit of a distance against the ratio, the head's quasi-static lag, the ratios where the exponent
  -1 can show, and the largest ratio at which the head's GD is stable.
- :func:`best_response_coupling`, :func:`body_velocity_deficit`, :func:`linear_response_distance`,
  :func:`onset_ratio`: where the distance starts to fall like ratio^-1 (the body's channel of the head's lag).
- :func:`two_time_scale_quadratic`: the seed's App. B algorithm on a problem meeting its assumptions (the rate).
- An exact reduced model (:func:`width_one_run`): a two-layer linear student of width 1 on a whitened
  design and a noiseless linear teacher, where every update rule reduces to a recursion in three
  numbers, and with it the seed's mechanism (i) (a Stackelberg objective without the saddle of L):
  :func:`width_one_steps_to_target`, :func:`saddle_escape_rate`.
"""

from __future__ import annotations

import math

import numpy as np

CITATION = "seed 002 (Stackelberg view of head/body learning rates)"


def statements() -> dict:
    """{name: {"value", "source"}} of the statements the checks test.

    ``distance_ratio_exponent`` (-1, derived): at a fixed body rate alpha and head rate beta = r alpha,
    the head's simultaneous GD w_{t+1} = w_t - beta grad_w G(M_t, w_t) is a contraction of factor
    (1 - beta mu) (mu: the smallest eigenvalue of A = grad_ww G) towards w*(M_t), which moves by
    O(alpha) per step. The lag e_t = w_t - w*(M_t) obeys e_{t+1} = (I - beta A) e_t + O(alpha), so after the
    initial transient (geometric, ~1/(beta mu) steps) e_t = (beta A)^{-1} O(alpha) = O(alpha / beta) = O(1/r):
    the singular-perturbation (Tikhonov) lag of a fast variable. The body's step differs from the
    best-response run's by alpha grad_Mw G e_t, so over a fixed horizon the bodies differ by O(1/r) (the
    transient contributes alpha sum_t (1 - beta mu)^t |e_0| = O(alpha / beta) too, once it is over within the
    horizon): distance ~ r^-1 for ratios inside :func:`ratio_window`, i.e. beta mu T >> 1 and beta below the
    stability limit 2 / lambda_max(A) (:func:`max_stable_ratio`).

    ``curvature_bound`` (derived): at a best response (grad_w G = 0, G_ww > 0), the implicit-function
    theorem gives Hess Phi = G_MM - G_Mw G_ww^{-1} G_wM, a Schur complement, so Hess Phi <= G_MM (Loewner:
    the subtracted term is PSD). G_MM = L_MM (the ridge acts on w only) is a principal submatrix of the
    full Hessian of L over (M, w), so lambda_max(G_MM) <= lambda_max(Hess L) (Cauchy interlacing). Hence
    phi_sharpness <= sharpness on best-response runs, exactly, with or without ridge.

    The seed's claims (reported, never derived here): ``sharper_early`` (its numerical analysis: Phi
    has sharper curvature than L, especially early in training), ``faster_nonuniform`` (mechanism (i):
    some instances give Phi stronger structure, so non-uniform rates converge faster), ``finite_time``
    (App. B: finite-time convergence of two-time-scale alternating GD, rate O(k^-2/3) in its stochastic
    setting; :func:`two_time_scale_quadratic` measures it). ``ratio_onset`` (derived, :func:`best_response_coupling`):
    where the ratio^-1 law sets in.
    """
    derived = "derived in lrsweep.families.stackelberg.theory.statements"
    return {
        "distance_ratio_exponent": {"value": -1.0, "source": f"{derived}: two-time-scale lag O(alpha / beta)"},
        "curvature_bound": {"value": "phi_sharpness <= sharpness at a best response",
                            "source": f"{derived}: Schur complement + Cauchy interlacing"},
        "sharper_early": {"value": "phi_sharpness / sharpness > 1 early in training",
                          "source": f"{CITATION}: numerical analysis (the seed's claim)"},
        "faster_nonuniform": {"value": "a non-uniform ratio reaches a loss before the uniform one on some instances",
                              "source": f"{CITATION}: mechanism (i) (the seed's claim)"},
        "finite_time": {"value": "finite-time convergence of two-time-scale alternating GD, "
                                 f"E||M_k - M*||^2 + E||w_k - w*(M_k)||^2 = O(k^{RATE_EXPONENT:.4g})",
                        "source": f"{CITATION}: App. B, Theorems 3.6-3.7 (the seed's claim; measured by "
                                  "scripts/stackelberg_rate.py, two_time_scale_quadratic)"},
        "ratio_onset": {"value": "the distance falls like ratio^-1 from r ~ 9 ||dw*/dM||^2 (local slope -0.9)",
                        "source": f"{derived}: best_response_coupling (the body's channel of the lag); "
                                  "checked by scripts/stackelberg_onset.py"},
    }


def fit_exponent(ratios, distances) -> tuple[float, float]:
    """(slope, standard error) of the least-squares line log(distance) = a + slope log(ratio) over the
    points where both are finite and positive; (nan, nan) with fewer than two such points, se nan with
    two (no residual degrees of freedom)."""
    r, d = np.asarray(ratios, float), np.asarray(distances, float)
    ok = np.isfinite(r) & np.isfinite(d) & (r > 0) & (d > 0)
    x, y = np.log(r[ok]), np.log(d[ok])
    if x.size < 2 or np.ptp(x) == 0:
        return math.nan, math.nan
    xc = x - x.mean()
    slope = float(np.sum(xc * (y - y.mean())) / np.sum(xc * xc))
    if x.size == 2:
        return slope, math.nan
    resid = y - y.mean() - slope * xc
    return slope, float(math.sqrt(np.sum(resid ** 2) / (x.size - 2) / np.sum(xc * xc)))


def head_lag_factor(rule, step_curvature, head_steps=1):
    """The quasi-static lag of a gd head behind its best response, in units of the best response's move per
    body step: e = w - w*(M) ~ -factor Delta w*, for one eigen-direction of A with beta a = ``step_curvature``
    (beta the head rate, a the eigenvalue). With Delta w*_t = w*(M_{t+1}) - w*(M_t) slowly varying:

    - ``simultaneous``: e_{t+1} = (1 - beta a) e_t - Delta w*_t, fixed point e = -Delta w* / (beta a): factor
      1 / (beta a), i.e. proportional to 1 / ratio (the exponent -1 of :func:`statements`);
    - ``alternating`` (k head steps before the body's, the lag measured after them): e'_t = q (e'_{t-1} -
      Delta w*) with q = (1 - beta a)^k, fixed point factor q / (1 - q); ~ 1 / (k beta a) while k beta a << 1,
      and 0 at beta a = 1 (the head's step lands on w*: steeper than ratio^-1 near there).
    """
    x = np.asarray(step_curvature, float)
    if rule == "simultaneous":
        return 1.0 / x
    if rule == "alternating":
        q = (1.0 - x) ** head_steps
        return q / (1.0 - q)
    raise ValueError(f"rule: unknown '{rule}'; allowed: simultaneous, alternating")


def ratio_window(lr_body, steps, head_hessian_min, head_hessian_top) -> tuple[float, float]:
    """(lower, upper) = (1 / (alpha a_min T), 2 / (alpha a_max)): the ratios where the distance to the
    best-response run can shrink like ratio^-1 over a horizon of T steps at body rate alpha (a_min, a_max: the
    extreme eigenvalues of the head's Hessian A).

    Below ``lower`` the head's slowest direction has not finished its transient within T steps
    ((1 - beta a_min)^T ~ 1): the body moves with a head error of about |e_0| throughout, whatever beta, and the
    distance is nearly flat in the ratio (exponent ~ 0). Well above it the transient is over and the lag is
    the quasi-static 1 / (beta a) of :func:`head_lag_factor` (exponent -1). Above ``upper`` the head's GD is
    unstable (:func:`max_stable_ratio`). An ill-conditioned head (a_max / a_min > 2 alpha T a_max, e.g. a body
    with a square Gaussian hidden layer, whose smallest singular value is near 0) has no such window: the
    measured exponent stays between 0 and -1.

    The lower edge is necessary, not sufficient, and does not predict where the law appears: the body also
    relaxes the lag, so the law needs r >> ||dw*/dM||^2 (:func:`best_response_coupling`, :func:`onset_ratio`);
    scripts/stackelberg_onset.py measures both against the onset."""
    lower = 1.0 / (lr_body * head_hessian_min * steps) if head_hessian_min > 0 else math.inf
    return lower, float(max_stable_ratio(lr_body, head_hessian_top))


def max_stable_ratio(lr_body, head_hessian_top):
    """2 / (lr_body lambda_max(A)): the largest ratio beta / alpha at which the head's GD at a fixed body
    (w <- w - beta (A w - b)) is stable (|1 - beta lambda| < 1 for every eigenvalue of A); inf where A = 0."""
    top = np.asarray(head_hessian_top, float) * np.asarray(lr_body, float)
    with np.errstate(divide="ignore"):
        return np.where(top > 0, 2.0 / np.where(top > 0, top, 1.0), np.inf)


# ------------------------------------------------------------------------------------------------
# The exact reduced model: a width-1 two-layer linear student on a whitened design
# ------------------------------------------------------------------------------------------------

RULES = ("simultaneous", "alternating", "best_response")


def width_one_plane(u0, beta) -> dict:
    """The plane of (u, beta) of a width-1 student: ``b`` = |beta|, ``x0`` = u0 . e1 and ``y0`` >= 0 the
    coordinates of u0 on e1 = beta / b and on e2 = the unit vector of u0's part orthogonal to beta, and
    ``e1``, ``e2`` ((d,) each; e2 = 0 when u0 is parallel to beta).

    Every update below moves u by a combination of u and beta (grad_u L = c w (c u w - beta)), so
    u_t = x_t e1 + y_t e2 for all t: the run lives in this plane."""
    u0, beta = np.ravel(np.asarray(u0, float)), np.ravel(np.asarray(beta, float))
    b = float(np.linalg.norm(beta))
    e1 = beta / b
    x0 = float(u0 @ e1)
    perp = u0 - x0 * e1
    y0 = float(np.linalg.norm(perp))
    e2 = perp / y0 if y0 > 0 else np.zeros_like(perp)
    return {"b": b, "x0": x0, "y0": y0, "e1": e1, "e2": e2}


def width_one_loss(x, y, w, b, scale=1.0):
    """L = 1/2 |beta - c u w|^2 = 1/2 ((c x w - b)^2 + (c y w)^2) in the plane's coordinates."""
    return 0.5 * ((scale * x * w - b) ** 2 + (scale * y * w) ** 2)


def width_one_best_head(x, y, b, scale=1.0, ridge=0.0):
    """w*(u) = c (u . beta) / (c^2 |u|^2 + lambda) = c x b / (c^2 (x^2 + y^2) + lambda)."""
    return scale * x * b / (scale * scale * (x * x + y * y) + ridge)


def width_one_phi(x, y, b, scale=1.0, ridge=0.0):
    """Phi(u) = min_w L + lambda/2 w^2 = 1/2 (|beta|^2 - c^2 (u . beta)^2 / (c^2 |u|^2 + lambda)); at lambda
    = 0, 1/2 b^2 sin^2(theta) with theta the angle between u and beta: Phi depends on the direction of u
    only (0-homogeneous), so it has no saddle at u = 0, where L has one."""
    c2 = scale * scale
    return 0.5 * (b * b - c2 * (x * b) ** 2 / (c2 * (x * x + y * y) + ridge))


@np.errstate(over="ignore", invalid="ignore")
def width_one_run(b, x0, y0, w0, lr_body, lr_head, steps, rule="simultaneous", head_steps=1, ridge=0.0,
                  scale=1.0) -> dict:
    """The exact trajectory of a width-1 two-layer linear student f(x) = c x^T u w (standard: c = 1; ntk:
    c = 1/sqrt(d)) on a design with X^T X = n I and labels y = X beta, i.e. L(u, w) = 1/2 |beta - c u w|^2
    (the engine's mse, the mean of 1/2 (f - y)^2, is this exactly), in the plane of (u, beta)
    (:func:`width_one_plane`): u = x e1 + y e2, |beta| = b. With r = c u w - beta = (c x w - b, c y w):

        grad_u L = c w r        ->  (x, y) <- (x, y) - alpha c w (c x w - b, c y w)
        grad_w L = c u . r      ->  w <- w - beta (c^2 (x^2 + y^2) w - c x b)

    Rules (as in :mod:`lrsweep.families.stackelberg.heads`; the logged loss at step t is the loss at the head the body's step
    sees, and the head rule acts again before the loss at step T):

    - ``simultaneous``: both gradients at (u_t, w_t), rates alpha = ``lr_body`` and beta = ``lr_head``;
    - ``alternating``: ``head_steps`` k head steps w <- w - beta grad_w L(u_t, w), then the body's step at
      the moved head;
    - ``best_response``: w <- w*(u_t) (:func:`width_one_best_head`, ridge lambda), then the body's step
      at w*: u <- u - alpha grad_u L(u, w*) = u - alpha grad Phi(u) (envelope theorem).

    Returns ``{"x", "y", "w", "loss"}``, arrays of steps + 1 (index t: the body at step t and the head
    the step sees; nan after a non-finite loss). Plain float64 numpy: no engine code.
    """
    if rule not in RULES:
        raise ValueError(f"rule: unknown '{rule}'; allowed: {', '.join(RULES)}")
    c = scale
    x, y, w = np.float64(x0), np.float64(y0), np.float64(w0)
    out = {k: np.full(steps + 1, np.nan) for k in ("x", "y", "w", "loss")}
    for t in range(steps + 1):
        if rule == "best_response":
            w = width_one_best_head(x, y, b, c, ridge)
        elif rule == "alternating":
            for _ in range(head_steps):
                w = w - lr_head * (c * c * (x * x + y * y) * w - c * x * b)
        out["x"][t], out["y"][t], out["w"][t] = x, y, w
        out["loss"][t] = width_one_loss(x, y, w, b, c)
        if t == steps or not np.isfinite(out["loss"][t]):
            break  # a diverged run: the later entries stay nan
        gx, gy = c * w * (c * x * w - b), c * w * (c * y * w)
        if rule == "simultaneous":
            w = w - lr_head * (c * c * (x * x + y * y) * w - c * x * b)
        x, y = x - lr_body * gx, y - lr_body * gy
    return out


def first_step_below(loss, target) -> float:
    """The first index t with loss[t] <= target (inf if none)."""
    hit = np.flatnonzero(np.asarray(loss) <= target)
    return float(hit[0]) if hit.size else math.inf


def width_one_steps_to_target(b, direction, head_direction, init_scales, lr_body, lr_head, steps, target,
                              rule="simultaneous", ridge=0.0) -> np.ndarray:
    """Steps to reach ``target`` (train loss) from u0 = s (x, y) ``direction``, w0 = s ``head_direction``
    for each init scale s (inf: not within ``steps``), by :func:`width_one_run`."""
    dx, dy = direction
    return np.array([first_step_below(width_one_run(b, s * dx, s * dy, s * head_direction, lr_body, lr_head, steps,
                                                    rule, ridge=ridge)["loss"], target) for s in init_scales])


def saddle_escape_rate(b, lr_body, lr_head, scale=1.0) -> float:
    """The growth factor per step of simultaneous GD near the saddle u = 0, w = 0 of L.

    Linearised at the origin (r = -beta), x <- x + alpha c b w and w <- w + beta c b x (y decays: y <- y (1 -
    alpha c^2 w^2)), a linear map with eigenvalues 1 +- c b sqrt(alpha beta). From an init of scale s, x and w
    grow like s (1 + c b sqrt(alpha beta))^t until c x w ~ b, so the escape takes
    log(1/s) / log(1 + c b sqrt(alpha beta)) + O(1) steps: each decade of init scale costs
    log(10) / log(1 + c b sqrt(alpha beta)) steps, shrinking like ratio^-1/2 at a fixed body rate. The best
    response (lambda = 0) has no such cost (Phi is 0-homogeneous, :func:`width_one_phi`), but its steps depend
    on the init scale through the effective rate alpha / s^2 (grad Phi(s v) = grad Phi(v) / s:
    :func:`best_response_scale_law`): at small s the first step throws |u| to ~ alpha b^2 |sin 2 theta_0| / (2 s)
    and the run then turns towards beta at the rate alpha / |u|^2 ~ s^2, slower than GD. A ridge lambda caps
    this: the origin escape of :func:`best_response_escape_rate`."""
    return 1.0 + scale * b * math.sqrt(lr_body * lr_head)


def equal_budget_escape_rate(b, lr_total, ratio, scale=1.0) -> float:
    """:func:`saddle_escape_rate` at an equal budget alpha + beta = C, beta = ratio alpha: 1 + c b C sqrt(r) / (1 + r).
    By AM-GM, sqrt(alpha beta) <= (alpha + beta) / 2 with equality at alpha = beta: near the saddle of L at the
    origin, uniform rates (r = 1) escape fastest, and r and 1 / r escape at the same rate. So at an equal
    budget the seed's mechanism (i) cannot come from the saddle escape of simultaneous GD."""
    return saddle_escape_rate(b, lr_total / (1.0 + ratio), lr_total * ratio / (1.0 + ratio), scale)


def best_response_escape_rate(b, lr_body, ridge, scale=1.0) -> float:
    """The growth factor per step of the best-response run near u = 0 with a ridge lambda > 0.

    For c^2 |u|^2 << lambda, Phi_lambda(u) = 1/2 (b^2 - c^2 (u . beta)^2 / (c^2 |u|^2 + lambda)) ~ 1/2 b^2 -
    c^2 (u . beta)^2 / (2 lambda): the origin is a critical point again (a maximum along beta), and
    x <- x + alpha c^2 b^2 x / lambda, a factor 1 + alpha c^2 b^2 / lambda per step against simultaneous GD's
    1 + c b sqrt(alpha beta) (:func:`saddle_escape_rate`): a decade of init scale costs
    log(10) / log(1 + alpha c^2 b^2 / lambda) steps, about one step at alpha b^2 / lambda ~ 10."""
    return 1.0 + lr_body * scale * scale * b * b / ridge


def best_response_scale_law(b, x0, y0, init_scale, lr_body, steps) -> dict:
    """The best-response run (lambda = 0) from s (x0, y0) at body rate alpha, rescaled: u_t = s v_t with v the
    run from (x0, y0) at rate alpha / s^2 (Phi(s v) = Phi(v), grad Phi(s v) = grad Phi(v) / s, so
    s v - alpha grad Phi(s v) = s (v - (alpha / s^2) grad Phi(v))). Returns the rescaled run's ``x, y, loss``:
    equal to :func:`width_one_run`'s from the scaled init (a check of the statement, not of the code)."""
    run = width_one_run(b, x0, y0, 0.0, lr_body / init_scale ** 2, 0.0, steps, "best_response")
    return {"x": init_scale * run["x"], "y": init_scale * run["y"], "loss": run["loss"]}


# ------------------------------------------------------------------------------------------------
# Where the ratio^-1 law starts: the body carries the head towards it
# ------------------------------------------------------------------------------------------------

def best_response_coupling(jacobian, ratio) -> np.ndarray:
    """C_r = J^T (r I + J J^T)^{-1} (P, h o): the body's displacement per unit of head lag, in the
    quasi-static two-time-scale picture, J = dw*/dM (h o, P) the best response's Jacobian at the body M.

    Derivation (seed Sec. 3's two-time-scale GD, App. B Prop. B.2's lag e = w - w*(M); the extraction lost the
    equations, so they are redone here for simultaneous GD in continuous time, body rate alpha, head rate
    beta = r alpha, A = G_ww). By the implicit-function theorem J = -A^{-1} G_wM, so G_Mw = -J^T A, and to
    first order in e

        dM/dt = -alpha grad_M G(M, w* + e) = -alpha (grad Phi(M) + G_Mw e) = -alpha grad Phi + alpha J^T A e,
        de/dt = dw/dt - J dM/dt = -beta A e + alpha J grad Phi - alpha J J^T A e
              = -alpha (r I + J J^T) A e + alpha J grad Phi.

    The lag relaxes through two channels: the head's own GD (r A) and the body, which moves so that the
    current head fits it (J J^T A): the README's window 1 / (alpha a_min T) counted the first only. Where e has
    settled, A e = (r I + J J^T)^{-1} J grad Phi and the body moves at dM/dt = -alpha (I - P_r) grad Phi with
    P_r = C_r J (:func:`body_velocity_deficit`); an initial lag e_0 relaxing fast against the body moves it
    once by alpha int J^T A e dt = C_r e_0 (:func:`initial_head_kick`). With J = U S V^T, C_r J = V
    diag(s^2 / (r + s^2)) V^T: each direction's deficit is s^2 / (r + s^2), i.e. 1/r only once r >> s^2."""
    j = np.atleast_2d(np.asarray(jacobian, float))
    return j.T @ np.linalg.inv(ratio * np.eye(j.shape[0]) + j @ j.T)


def body_velocity_deficit(jacobian, grad_phi, ratio) -> np.ndarray:
    """P_r grad Phi = J^T (r I + J J^T)^{-1} J grad Phi (P,): by how much (over alpha) a finite-ratio body's
    velocity falls short of the best-response body's -alpha grad Phi, quasi-statically
    (:func:`best_response_coupling`). Tends to J^T J grad Phi / r (the ratio^-1 law) for r >> ||J||^2 and to the
    projection of grad Phi on J's row space for r -> 0."""
    return best_response_coupling(jacobian, ratio) @ np.asarray(jacobian, float) @ np.asarray(grad_phi, float)


def initial_head_kick(jacobian, head_error, ratio) -> np.ndarray:
    """C_r e_0 = J^T (r I + J J^T)^{-1} (w_0 - w*(M_0)) (P,): the body's displacement while an initial head lag
    e_0 relaxes (:func:`best_response_coupling`)."""
    return best_response_coupling(jacobian, ratio) @ np.ravel(np.asarray(head_error, float))


def onset_local_slope(ratio, coupling):
    """d log D / d log r = -r / (r + k) for a distance D ~ k / (r + k) (one direction of
    :func:`body_velocity_deficit`, k = s^2 its squared singular value of J = dw*/dM)."""
    r = np.asarray(ratio, float)
    return -r / (r + coupling)


def onset_ratio(coupling, slope=-0.9):
    """The ratio where :func:`onset_local_slope` reaches ``slope``: r = k slope / (-1 - slope) (9 k at -0.9),
    k = ``coupling`` = s^2, a squared singular value of the best response's Jacobian dw*/dM. The ratio^-1
    law needs r >> ||dw*/dM||^2, not beta a_min T >> 1: both the head's and the body's relaxation of the lag
    scale with A, so A drops out of their competition."""
    return np.asarray(coupling, float) * slope / (-1.0 - slope)


def linear_response_distance(ratios, lr_body, grads, jacobians, hessians, head_error0, stride=1) -> np.ndarray:
    """max_t ||delta_t|| per ratio (len(ratios),): the predicted distance between a finite-ratio body and the
    best-response body, from quantities along the best-response run only, to first order in the lag.

    delta_0 = C_r(M_0) e_0 (:func:`initial_head_kick`); then, every ``stride`` steps (the i-th entry of
    ``grads`` (P,), ``jacobians`` (h o, P) and ``hessians`` (P, P) at the best-response body M_{i stride}),
    delta <- delta - stride alpha Hess Phi delta + stride alpha P_r grad Phi: the deficit of
    :func:`body_velocity_deficit` carried by the linearised best-response flow (Hess Phi: how the body's
    dynamics amplify or damp a displacement; a saddle's escape direction amplifies it)."""
    ratios = np.asarray(ratios, float)
    delta = np.stack([initial_head_kick(jacobians[0], head_error0, r) for r in ratios])
    peak = np.linalg.norm(delta, axis=1)
    for g, j, h in zip(grads, jacobians, hessians):
        g, j, h = (np.asarray(v, float) for v in (g, j, h))
        for i, r in enumerate(ratios):
            delta[i] = delta[i] - stride * lr_body * (h @ delta[i]) + stride * lr_body * body_velocity_deficit(j, g, r)
        peak = np.maximum(peak, np.linalg.norm(delta, axis=1))
    return peak


def local_slopes(ratios, distances) -> np.ndarray:
    """d log D / d log r between consecutive ratios (len - 1,)."""
    r, d = np.asarray(ratios, float), np.asarray(distances, float)
    return np.diff(np.log(d)) / np.diff(np.log(r))


def slope_onset(ratios, distances, slope=-0.9) -> float:
    """The first ratio r_i (of the sorted grid) whose local slope to r_{i+1} is at or below ``slope``: where the
    ratio^-1 law has set in (inf if nowhere)."""
    hit = np.flatnonzero(local_slopes(ratios, distances) <= slope)
    return float(np.asarray(ratios, float)[hit[0]]) if hit.size else math.inf


# ------------------------------------------------------------------------------------------------
# Finite-time rate (seed App. B) on a problem that meets its assumptions
# ------------------------------------------------------------------------------------------------

RATE_EXPONENT = -2.0 / 3.0


def two_time_scale_quadratic(hessian, linear, n_body, m0, w0, alpha0, beta0, noise, alpha_power=1.0,
                             beta_power=2.0 / 3.0) -> dict:
    """Two-time-scale alternating stochastic GD (the seed's Algorithm 1 without the TD estimate mu) on the
    quadratic G(M, w) = 1/2 x^T H x - g^T x, x = (M, w), M the first ``n_body`` coordinates: G_ww > 0 (the
    follower strongly convex, App. B's lambda), Phi(M) = G(M, w*(M)) strongly convex (the Schur complement
    H_MM - H_Mw H_ww^{-1} H_wM > 0), both gradients Lipschitz, unbiased noise of variance sigma^2.

        w_{k+1} = w_k - beta_k (grad_w G(M_k, w_k) + xi^w_k),
        M_{k+1} = M_k - alpha_k (grad_M G(M_k, w_{k+1}) + xi^M_k),
        alpha_k = alpha0 / (k + 1)^a, beta_k = beta0 / (k + 1)^b.

    This is the setting of the seed's rate O(k^-2/3) (App. B, Theorem 3.7; App. E's remark that zeta_k decaying
    like beta_k keeps "the O(k^-2/3) convergence rate"): with a = 1, b = 2/3 the tracking error's noise floor
    is E||w_k - w*(M_k)||^2 ~ beta_k sigma^2 ~ k^-2/3 and its drift term ~ alpha_k^2 / beta_k^2 ~ k^-2/3 (the
    seed's (34): 2 L^2 (L_Phi^2 + sigma^2) alpha_k^2 / (lambda^3 beta_k)), so the bound is
    E||M_k - M*||^2 + E||w_k - w*(M_k)||^2 = O(k^-2/3). (The extraction lost the theorem's statement; this
    reading is ours.) ``noise``: (steps, n) standard normals times sigma, split as (xi^M, xi^w) = (first
    n_body, rest). Returns ``body`` = ||M_k - M*||^2 and ``head`` = ||w_k - w*(M_k)||^2, arrays of steps + 1."""
    h, g = np.asarray(hessian, float), np.asarray(linear, float)
    p = n_body
    hmm, hmw, hww = h[:p, :p], h[:p, p:], h[p:, p:]
    x_star = np.linalg.solve(h, g)
    m, w = np.array(m0, float), np.array(w0, float)
    noise = np.asarray(noise, float)
    steps = noise.shape[0]
    body, head = np.empty(steps + 1), np.empty(steps + 1)

    def w_star(mm):
        return np.linalg.solve(hww, g[p:] - hmw.T @ mm)
    for k in range(steps + 1):
        body[k] = np.sum((m - x_star[:p]) ** 2)
        head[k] = np.sum((w - w_star(m)) ** 2)
        if k == steps:
            break
        alpha, beta = alpha0 / (k + 1) ** alpha_power, beta0 / (k + 1) ** beta_power
        w = w - beta * (hmw.T @ m + hww @ w - g[p:] + noise[k, p:])
        m = m - alpha * (hmm @ m + hmw @ w - g[:p] + noise[k, :p])
    return {"body": body, "head": head}
