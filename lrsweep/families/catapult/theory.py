r"""Lazy, catapult and divergent phases: exact predictions from a student's initial values.

Seed 003 ("Implicit bias of deep linear networks in the large learning rate phase"; its formulas
were lost in extraction, everything below is re-derived) builds on Lewkowycz et al. 2020 (arXiv
2003.02218). Three models whose gradient descent reduces to a map of one or two scalars, so a
student's whole trajectory follows from what the run stores at step 0 (the train loss L_0 and,
for two-layer students, the NTK eigenvalue ``ntk_eig``). Pure numpy; no jax, no engine.

Phases are those of :data:`lrsweep.core.divergence.PHASES`, by the rule written there once for the
engine and numpy: ``divergent`` (a non-finite loss or one above diverge_factor L_0), ``lazy``
(max_t L_t <= L_0), ``catapult`` (rose, ended below L_0), ``oscillating`` (rose, ended >= L_0, not
diverged). :class:`PhaseTracker` runs that reduction on numpy losses L_0..L_T.

1. The uv model (Lewkowycz et al. Sec. 2; task ``single_point``, mse, label 0)
------------------------------------------------------------------------------
Two-layer ``ntk`` student on x = 1: f = v^T u / sqrt(m), u, v in R^m, L = f^2 / 2, and
lambda = |grad f|^2 = (|u|^2 + |v|^2) / m, the NTK (one sample). GD with rate eta on both layers:
u' = u - eta f v / sqrt(m), v' = v - eta f u / sqrt(m). Using u^T v = sqrt(m) f,

    f' = v'^T u' / sqrt(m) = f - eta f (|u|^2 + |v|^2)/m + eta^2 f^2 (u^T v)/m^{3/2}
       = (1 - eta lambda + eta^2 f^2 / m) f,
    |u'|^2 = |u|^2 - 2 eta f^2 + eta^2 f^2 |v|^2 / m   (and u <-> v), so
    lambda' = lambda + (eta f^2 / m)(eta lambda - 4).

Only (f^2, lambda) enter (the map is odd in f), so L_0 (f_0^2 = 2 L_0) and lambda_0 fix the
trajectory (:func:`uv_trajectory`, :func:`uv_outcome`). Cauchy-Schwarz and AM-GM give
lambda >= 2 |u||v| / m >= 2 |f| / sqrt(m) at every step ("physical" states).

*Scaled variables.* x = eta^2 f^2 / m, y = eta lambda give a width-free map

    x' = (1 - y + x)^2 x,      y' = y + x (y - 4),       with y^2 >= 4 x,

and L_t / L_0 = x_t / x_0: the phase depends on (x_0, y_0, T, diverge_factor) only, and
x_0 = eta^2 f_0^2 / m -> 0 as m grows (rho = f_0^2 / (m lambda_0^2) = x_0 / y_0^2).

*Lazy / catapult boundary* (:func:`uv_lazy_boundary`). The loss rises at step 1 iff
|1 - y_0 + x_0| > 1, i.e. y_0 - x_0 > 2 or x_0 > y_0. As a function of eta,
eta lambda_0 - eta^2 f_0^2/m = 2 has the roots eta_-+ = 4 / (lambda_0 -+ sqrt(lambda_0^2 - 8 f_0^2/m))
(eta_- also written 4 / (lambda_0 + sqrt(...))), so for eta <= eta_- the loss does not rise at step 1;
eta_- = (2 / lambda_0)(1 + 2 rho + O(rho^2)) -> 2 / lambda_0 as m grows.
It does not rise later either, under the condition eta <= eta_- (equivalently 2 x_0 <= y_0 <= x_0 + 2):
for x <= 1 the set {2x <= y <= x + 2, y^2 >= 4x} is invariant -- with d = y - x in [x, 2],
y' - x' - 2 = (d - 2) + x (x - 4 + 3d - d^2) is convex in x and <= 0 at x = 0 and x = d
((d - 2)(1 + d(2 - d)) <= 0), and y' >= 2 sqrt(x') >= 2 x' because x' <= x <= 1 -- and on it
|1 - y + x| <= 1, so x_t (the loss) never increases. Proven for x_0 <= 1 (eta^2 f_0^2 <= m, every
realistic width); for 1 < x_0 <= 5 checked numerically (2e5 random physical starts, 400 steps, no
rise). The condition matters: for eta above the upper root but below lambda_0 m / f_0^2 the loss
does not rise at step 1 yet rises later (e.g. x_0 = 3.23, y_0 = 4.11). Where lambda_0^2 < 8 f_0^2/m
there is no eta_- (NaN).

*Catapult / divergent boundary* (:func:`uv_divergence_boundary`). For y_0 < 4,
y_{t+1} - 4 = (y_t - 4)(1 + x_t) stays negative, and y_t^2 >= 4 x_t, so x_t < 4: the loss stays
below 2 m / eta^2 and the ratio L_t / L_0 = x_t / x_0 below 4 / x_0. For y_0 > 4, y_t - 4 grows and
the loss blows up (checked numerically: 1e5 random starts with y_0 - 4 in (1e-6, 2), x_0 in
(1e-8, 1), all past 1e200 within 3000 steps; at y_0 = 4 exactly x follows the bounded chaotic map
x (x - 3)^2). Hence, with unlimited steps and diverge_factor >= 4 / x_0, the boundary is *exactly*
eta = 4 / lambda_0 at every width: no finite-width correction in x_0 (or rho). What moves it is the
run: with T steps a rate just above 4 / lambda_0 may not blow up in time (boundary slightly above,
-> 4/lambda_0 as T grows), and when diverge_factor < 4 / x_0 (very wide students: the catapult's peak
L ~ m / eta^2 exceeds diverge_factor L_0) catapults are recorded as divergent (boundary below
4 / lambda_0, -> 2 / lambda_0 as x_0 -> 0 at fixed diverge_factor). :func:`uv_divergence_boundary`
bisects the exact scalar map for the given T and diverge_factor, so it includes both effects.

*In the catapult phase* y decreases (y' = y - x (4 - y)) and the loss converges only if
|1 - y_t| <= 1 in the end: lambda_final <= 2 / eta (< 2 / eta generically) and < lambda_0.
lambda_final is NOT monotone in eta over the whole catapult range: it decreases from
eta lambda_0 = 2 to ~3.1 and then varies erratically up to 4 (the landing is chaotic; the same
holds in the wide limit x_0 -> 0), which bears on Corollary 1 below.

2. Linear predictor on degenerate data (seed 003 Theorem 1)
------------------------------------------------------------
Two points with the same input x = e_1 and labels +1, -1 (task ``classification``, data
``degenerate``, n_train even); f = w (model ``standard``, 1 layer; ``ntk`` gives f = w / sqrt(d),
the same map at rate eta / d). Empirical risk R(w) = (ell(w) + ell(-w)) / 2, GD w' = w - eta R'(w);
R is even and the map odd, so |w_0| (from L_0, :func:`weight_from_loss`) is all that matters.

*Exponential:* R = cosh w, w' = w - eta sinh w, eta_c = 2 |w_0| / sinh |w_0| (<= 2).
w' = w (1 - eta sinh(w)/w) and 2w/sinh w decreases in |w|. For eta < eta_c, |w_1| < |w_0|, so
eta_c(w_1) > eta_c(w_0) > eta: |w_t| decreases strictly (the loss never increases) to a fixed point of
|w - eta sinh w|, which can only be 0 (the other candidate, eta = eta_c(w_inf) > eta, is excluded):
the loss converges to min R = 1. At eta = eta_c, w_1 = -w_0: w oscillates +-w_0, the loss is constant.
For eta > eta_c, |w_t| grows strictly and without bound: the loss explodes.

*Logistic:* R = (log(1 + e^-w) + log(1 + e^w)) / 2, R' = tanh(w/2) / 2, R'' = sech^2(w/2) / 4 <= 1/4,
w' = w - (eta/2) tanh(w/2). With h(w) = 4 w / tanh(w/2) (increasing on w > 0 from h(0+) = 8),
w' / w = 1 - 2 eta / h(w):
- eta < 8: |w'/w| < 1 everywhere: |w_t| decreases strictly, the loss converges to min R = log 2.
- eta > 8: the 2-cycle +-w* with h(w*) = eta (:func:`two_cycle_weight`); |w| shrinks where
  |w| > w* and grows where |w| < w*. The cycle is stable: its multiplier is
  (1 - 2 w*/sinh w*)^2 < 1 (slow for large w*).
- The critical rate eta_c = h(|w_0|) = 4 |w_0| / tanh(|w_0|/2) > 8 (seed 003's "eta_c > 8": true
  for every w_0 != 0). For 8 < eta < eta_c the loss falls towards L(w*) > log 2 (never the minimum);
  for eta > eta_c it rises at step 1 and saturates at L(w*) > L_0.
Checked here numerically (4000 random (w_0, eta), 3000 steps): below eta_c the loss never exceeds
L_0 and above it never returns to L_0, so by the PHASE rule Theorem 1 logistic is ``lazy`` below
eta_c and ``oscillating`` above. Two of the paper's words are too strong: for 8 < eta < eta_c the
loss need not decrease monotonically (|w| can overshoot below w*: e.g. w_0 = 3, eta = 9), and for
eta > eta_c it need not be non-decreasing (for w* > ~2.18 the approach to the cycle alternates
around it, e.g. eta >= 11).

3. One-hidden-layer network on degenerate data (seed 003 Theorem 2, Corollary 1)
--------------------------------------------------------------------------------
All inputs equal, so every output is the same f(theta) and R(theta) = rho(f(theta)) with
rho(f) = mean_i ell(y_i f). Then grad R = rho'(f) grad f and

    Hess R = rho''(f) grad f grad f^T + rho'(f) Hess f.

At a global minimum rho'(f*) = 0 (f* = 0 for balanced labels), so Hess R = c grad f grad f^T with
c = rho''(f*): rank one, top eigenvalue c |grad f|^2. The Jacobian J (n x P) has n equal rows
grad f^T, so the NTK over the samples, J J^T / n = |grad f|^2 1 1^T / n, has top eigenvalue
|grad f|^2 = ntk_eig. Hence sharpness = c ntk_eig (:data:`HESSIAN_FACTOR`: mse 1, exponential
rho = cosh: 1, logistic sech^2(0)/4 = 1/4). Near the minimum the gap is rho'(f) Hess f, of size
~ c |f| s for a two-layer linear network f = s x^T W1 W2 (Hess f has eigenvalues +-s).
Corollary 1 says the final sharpness and NTK eigenvalue decrease as eta grows in the catapult
phase; see above: for the uv model this holds on the lower part of the catapult range only.

References: seed 003 (Theorems 1, 2, Corollary 1; Proposition 1); Lewkowycz, Bahri, Dyer,
Sohl-Dickstein, Gur-Ari 2020, "The large learning rate phase of deep learning: the catapult
mechanism", arXiv 2003.02218.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from lrsweep.core.divergence import PHASES, exceeds, phase_code  # the rules, written once (no jax)


HESSIAN_FACTOR = {"mse": 1.0, "exponential": 1.0, "logistic": 0.25}
"""c = rho''(f*) with sharpness = c ntk_eig at a global minimum on degenerate data (and the uv model)."""


class Thresholds(NamedTuple):
    """Rates in units of 1 / lambda (lambda the NTK eigenvalue) that theory gives for one loss."""
    lazy: float              # eta lambda_0 above which the loss rises: 2 / c
    final: float             # the catapult lands with eta lambda_final <= 2 / c
    divergent: float | None  # eta lambda_0 above which it diverges: 4 / c for mse; None (no such line)


def thresholds(loss: str) -> Thresholds:
    """The phase thresholds of ``loss`` from c = :data:`HESSIAN_FACTOR` [loss] = rho''(f*).

    Near the minimum rho'(f) = c (f - f*), so the output's linearised step (Sec. 3 above; seed 003
    eq. 8) is f' - f* = (1 - eta c lambda)(f - f*): the loss rises iff eta c lambda > 2, and a catapult
    can only land where |1 - eta c lambda_final| <= 1. Hence eta lambda_0 = 2 / c (mse, exponential 2;
    logistic 8) and eta lambda_final <= 2 / c; the sharpness c lambda obeys eta sharpness <= 2 for
    every loss. The divergence rate 4 / c holds at every width for a quadratic loss only (the uv
    model, Sec. 1: y' - 4 = (y - 4)(1 + x)); for exponential and logistic loss it is 4 / c only as
    m lambda_0^2 -> 0 and moves with m lambda_0^2 and f_0 (down for the exponential, up for the
    logistic: the README's window table), so there is no line for them.
    """
    c = HESSIAN_FACTOR[loss]
    return Thresholds(2.0 / c, 2.0 / c, 4.0 / c if loss == "mse" else None)

DEGENERATE_LOSSES = ("exponential", "logistic")


def minimum_loss(loss: str, kind: str = "classification") -> float:
    """min R: degenerate data (+-1 labels at one input): exponential 1, logistic log 2, mse 1/2
    ((f - 1)^2 + (f + 1)^2) / 4); ``single_point`` mse: 0."""
    if kind == "single_point":
        return 0.0
    return {"exponential": 1.0, "logistic": math.log(2.0), "mse": 0.5}[loss]


# --------------------------------------------------------------------------------------
# The PHASE reduction on numpy losses
# --------------------------------------------------------------------------------------

class PhaseTracker:
    """Running phase, peak and divergence of loss sequences L_0, L_1, ... (broadcast arrays).

    The numpy twin of the engine's ``phase`` and ``loss_peak`` reductions with the rules of
    :mod:`lrsweep.core.divergence`: a student is frozen at the first step whose loss is non-finite or
    above ``diverge_factor * L_0`` (``np.inf``: only non-finite losses diverge).
    """

    def __init__(self, loss0, diverge_factor):
        loss0 = np.asarray(loss0, float)
        self.loss0, self.factor, self.t = loss0, diverge_factor, 0
        with np.errstate(invalid="ignore", over="ignore"):
            bad = exceeds(loss0, loss0, diverge_factor, np)
        self.alive = ~bad
        self.diverged_step = np.where(bad, 0, -1)
        self.peak = np.where(self.alive, loss0, -np.inf)
        self.peak_step = np.where(self.alive, 0, -1)
        self.last = np.where(self.alive, loss0, np.nan)

    def observe(self, loss) -> None:
        """The loss after one more step."""
        self.t += 1
        with np.errstate(invalid="ignore", over="ignore"):
            bad = exceeds(loss, self.loss0, self.factor, np)
            self.diverged_step = np.where(self.alive & bad, self.t, self.diverged_step)
            self.alive = self.alive & ~bad
            higher = self.alive & (loss > self.peak)
        self.peak = np.where(higher, loss, self.peak)
        self.peak_step = np.where(higher, self.t, self.peak_step)
        self.last = np.where(self.alive, loss, self.last)

    def phase(self) -> np.ndarray:
        """Phase names (object array)."""
        code = phase_code(self.loss0, self.peak, self.last, self.alive, np)
        names = np.empty(np.shape(code), dtype=object)
        names[...] = np.asarray(PHASES, dtype=object)[code]
        return names

    def outcome(self) -> dict:
        """``phase``, ``final_train_loss`` (NaN when diverged, as the engine logs), ``loss_peak``,
        ``loss_peak_step``, ``diverged`` and ``diverged_step`` (-1 if never)."""
        return {"phase": self.phase(), "final_train_loss": np.where(self.alive, self.last, np.nan),
                "loss_peak": self.peak, "loss_peak_step": self.peak_step, "diverged": ~self.alive,
                "diverged_step": self.diverged_step}


def _bisect(is_high, lo, hi, iters=200, rtol=1e-14):
    """Vectorized bisection: lo, hi arrays with is_high(lo) False and is_high(hi) True; a point of
    the switch (the first one where is_high is monotone)."""
    lo, hi = np.array(lo, float), np.array(hi, float)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        high = is_high(mid)
        lo, hi = np.where(high, lo, mid), np.where(high, mid, hi)
        if np.all(hi - lo <= rtol * np.abs(hi)):
            break
    return 0.5 * (lo + hi)


# --------------------------------------------------------------------------------------
# 1. The uv model
# --------------------------------------------------------------------------------------

def uv_step(f_sq, ntk, eta, width):
    """One GD step of the uv model on (f^2, lambda): f' = (1 - eta lambda + eta^2 f^2/m) f,
    lambda' = lambda + (eta f^2/m)(eta lambda - 4)."""
    factor = 1.0 - eta * ntk + eta * eta * f_sq / width
    return factor * factor * f_sq, ntk + (eta * f_sq / width) * (eta * ntk - 4.0)


def _floats(*arrays):
    """Float64 copies broadcast to one shape."""
    return [np.array(a, float) for a in np.broadcast_arrays(*[np.asarray(a, float) for a in arrays])]


def uv_trajectory(loss0, ntk0, eta, width, steps: int, diverge_factor=np.inf) -> dict:
    """Train loss and NTK eigenvalue at steps 0..T, shape (T + 1, *broadcast shape).

    As the engine logs them: NaN from the step the divergence rule fires. loss0 = f_0^2 / 2,
    ntk0 = (|u|^2 + |v|^2) / m at init, eta the rate of both layers, width m.
    """
    loss0, ntk, eta, width = _floats(loss0, ntk0, eta, width)
    f_sq = 2.0 * loss0
    tracker = PhaseTracker(loss0, diverge_factor)
    losses, ntks = [np.where(tracker.alive, loss0, np.nan)], [np.where(tracker.alive, ntk, np.nan)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            f_sq, ntk = uv_step(f_sq, ntk, eta, width)
            tracker.observe(f_sq / 2.0)
            losses.append(np.where(tracker.alive, f_sq / 2.0, np.nan))
            ntks.append(np.where(tracker.alive, ntk, np.nan))
    return {"train_loss": np.stack(losses), "ntk_eig": np.stack(ntks)}


def uv_outcome(loss0, ntk0, eta, width, steps: int, diverge_factor=np.inf) -> dict:
    """The stored reductions the exact recursion predicts (broadcast arrays): ``phase``,
    ``final_train_loss``, ``final_ntk_eig`` (NaN when diverged), ``loss_peak``, ``diverged_step``..."""
    loss0, ntk, eta, width = _floats(loss0, ntk0, eta, width)
    f_sq = 2.0 * loss0
    tracker = PhaseTracker(f_sq / 2.0, diverge_factor)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            f_sq, ntk = uv_step(f_sq, ntk, eta, width)
            tracker.observe(f_sq / 2.0)
    out = tracker.outcome()
    out["final_ntk_eig"] = np.where(tracker.alive, ntk, np.nan)
    return out


def uv_phase(loss0, ntk0, eta, width, steps: int, diverge_factor=np.inf) -> np.ndarray:
    """The phase the exact recursion predicts (names, broadcast shape)."""
    return uv_outcome(loss0, ntk0, eta, width, steps, diverge_factor)["phase"]


def uv_scaled_map(x, y):
    """The width-free map of x = eta^2 f^2 / m, y = eta lambda: ((1 - y + x)^2 x, y + x (y - 4))."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    with np.errstate(over="ignore", invalid="ignore"):
        return (1.0 - y + x) ** 2 * x, y + x * (y - 4.0)


def uv_lazy_boundary(loss0, ntk0, width):
    """eta_- = 4 / (lambda_0 + sqrt(lambda_0^2 - 8 f_0^2 / m)): the largest rate at which the loss
    never rises (module docstring; proven where eta_-^2 f_0^2 <= m). NaN where lambda_0^2 < 8 f_0^2/m.
    Wide limit 2 / lambda_0; eta_- = (2 / lambda_0)(1 + 2 rho + O(rho^2)), rho = f_0^2 / (m lambda_0^2)."""
    ntk0 = np.asarray(ntk0, float)
    disc = ntk0 ** 2 - 16.0 * np.asarray(loss0, float) / np.asarray(width, float)  # 8 f_0^2 / m = 16 L_0 / m
    with np.errstate(invalid="ignore"):
        return np.where(disc >= 0, 4.0 / (ntk0 + np.sqrt(np.maximum(disc, 0.0))), np.nan)


def uv_divergence_boundary(loss0, ntk0, width, steps: int, diverge_factor=np.inf, max_doublings: int = 60):
    """The rate where the exact recursion's phase turns ``divergent``, by bisection (T steps and
    diverge_factor as in the run).

    Bisects between the lazy boundary (never divergent) and 1.5 * 4 / lambda_0, doubled until
    divergent (NaN if it never is). Equals 4 / lambda_0 when T is large and diverge_factor >= 4 / x_0
    (module docstring); lies below it when diverge_factor < 4 / x_0. Where the predicate is not
    monotone in eta (chaotic landings near the boundary at small T) it is one switch point.
    """
    loss0, ntk0, width = _floats(loss0, ntk0, width)
    divergent = lambda eta: uv_phase(loss0, ntk0, eta, width, steps, diverge_factor) == "divergent"
    lazy = uv_lazy_boundary(loss0, ntk0, width)
    lo = np.where(np.isfinite(lazy), lazy, 0.0)
    hi = 6.0 / ntk0
    for _ in range(max_doublings):
        high = divergent(hi)
        if high.all():
            break
        hi = np.where(high, hi, 2.0 * hi)
    found = divergent(hi)
    return np.where(found, _bisect(divergent, lo, hi), np.nan)


# --------------------------------------------------------------------------------------
# 2. Linear predictor on degenerate data (Theorem 1)
# --------------------------------------------------------------------------------------

def _check_loss(loss: str) -> None:
    if loss not in DEGENERATE_LOSSES:
        raise ValueError(f"loss: unknown '{loss}'; allowed: {', '.join(DEGENERATE_LOSSES)}")


def degenerate_risk(w, loss: str):
    """R(w) = (ell(w) + ell(-w)) / 2: cosh w (exponential), (log(1 + e^-w) + log(1 + e^w)) / 2 (logistic)."""
    _check_loss(loss)
    w = np.asarray(w, float)
    with np.errstate(over="ignore"):
        if loss == "exponential":
            return np.cosh(w)
        return 0.5 * (np.logaddexp(0.0, -w) + np.logaddexp(0.0, w))


def degenerate_risk_grad(w, loss: str):
    """R'(w): sinh w (exponential), tanh(w / 2) / 2 (logistic)."""
    _check_loss(loss)
    w = np.asarray(w, float)
    with np.errstate(over="ignore"):
        return np.sinh(w) if loss == "exponential" else 0.5 * np.tanh(0.5 * w)


def weight_from_loss(loss0, loss: str):
    """|w_0| from the initial risk L_0 = R(w_0): arccosh L_0 (exponential); the logistic risk
    R(w) = |w|/2 + log(1 + e^-|w|) inverted by bisection on [0, 2 L_0]. L_0 at or below min R
    (round-off) gives 0."""
    _check_loss(loss)
    loss0 = np.asarray(loss0, float)
    if loss == "exponential":
        return np.arccosh(np.maximum(loss0, 1.0))
    target = np.maximum(loss0, math.log(2.0))
    risk = lambda w: 0.5 * w + np.log1p(np.exp(-w))
    return np.where(loss0 <= math.log(2.0), 0.0,
                    _bisect(lambda w: risk(w) >= target, np.zeros_like(target), 2.0 * target + 1.0))


def critical_rate(w0, loss: str):
    """eta_c(w_0): 2 |w_0| / sinh |w_0| (exponential; -> 2 at w_0 = 0), 4 |w_0| / tanh(|w_0| / 2)
    (logistic; > 8, -> 8 at w_0 = 0)."""
    _check_loss(loss)
    w = np.abs(np.asarray(w0, float))
    small = w < 1e-8
    safe = np.where(small, 1.0, w)
    if loss == "exponential":
        return np.where(small, 2.0, 2.0 * safe / np.sinh(safe))
    return np.where(small, 8.0, 4.0 * safe / np.tanh(0.5 * safe))


def two_cycle_weight(eta):
    """Logistic: w* > 0 with 4 w* / tanh(w* / 2) = eta (the stable 2-cycle +-w* of eta > 8); 0 for eta <= 8."""
    eta = np.asarray(eta, float)
    h = lambda w: 4.0 * w / np.tanh(0.5 * w)
    hi = np.maximum(eta / 2.0, 1.0)  # h(w) >= 4 w: w* <= eta / 4
    return np.where(eta <= 8.0, 0.0,
                    _bisect(lambda w: h(np.maximum(w, 1e-300)) >= eta, np.zeros_like(eta), hi))


THEOREM1_REGIONS = {
    "exponential": ("converges", "critical", "explodes"),
    "logistic": ("converges", "two_cycle", "critical", "saturates"),
}
"""converges: to min R, loss never increasing (eta < eta_c; logistic eta < 8); two_cycle: logistic
8 < eta < eta_c, the loss falls towards L(w*) > log 2; critical: eta = eta_c (+-w_0, constant loss);
explodes: exponential eta > eta_c; saturates: logistic eta > eta_c, the loss rises to L(w*) > L_0."""

REGION_PHASES = {"converges": ("lazy",), "two_cycle": ("lazy",), "critical": PHASES,
                 "explodes": ("divergent", "oscillating"), "saturates": ("oscillating", "divergent")}
"""The PHASE names each region allows (explodes: oscillating if T is too short to reach the
divergence threshold; saturates: divergent only if L(w*) > diverge_factor L_0)."""


def theorem1_region(w0, eta, loss: str, rtol: float = 0.0):
    """Theorem 1's region of (|w_0|, eta) (names, :data:`THEOREM1_REGIONS`); within ``rtol`` of
    eta_c it is ``critical``."""
    eta = np.asarray(eta, float)
    eta_c = critical_rate(w0, loss)
    above = np.where(eta > eta_c * (1 + rtol), "explodes" if loss == "exponential" else "saturates", "critical")
    below = np.where(eta > 8.0, "two_cycle", "converges") if loss == "logistic" else np.full(eta.shape, "converges")
    return np.where(eta < eta_c * (1 - rtol), below, above).astype(object)


def linear_trajectory(loss0, eta, loss: str, steps: int, diverge_factor=np.inf) -> np.ndarray:
    """Train loss at steps 0..T, shape (T + 1, *broadcast shape), NaN from the divergence step on.

    ``eta`` is the rate on f itself: the layer's rate for ``standard`` (f = w), rate / d for ``ntk``."""
    w, eta = _floats(weight_from_loss(loss0, loss), eta)
    tracker = PhaseTracker(degenerate_risk(w, loss), diverge_factor)
    out = [np.where(tracker.alive, tracker.loss0, np.nan)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            w = w - eta * degenerate_risk_grad(w, loss)
            value = degenerate_risk(w, loss)
            tracker.observe(value)
            out.append(np.where(tracker.alive, value, np.nan))
    return np.stack(out)


def linear_outcome(loss0, eta, loss: str, steps: int, diverge_factor=np.inf) -> dict:
    """The stored reductions the exact map w' = w - eta R'(w) predicts from L_0 (as :func:`uv_outcome`),
    plus ``region`` (Theorem 1) and ``critical_rate``."""
    w0, eta = _floats(weight_from_loss(loss0, loss), eta)
    w = w0.copy()
    tracker = PhaseTracker(degenerate_risk(w, loss), diverge_factor)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            w = w - eta * degenerate_risk_grad(w, loss)
            tracker.observe(degenerate_risk(w, loss))
    out = tracker.outcome()
    out.update(region=theorem1_region(w0, eta, loss), critical_rate=critical_rate(w0, loss))
    return out

