r"""Seed 003 Theorem 2: the one-hidden-layer linear network on degenerate data, an exact 2-D map.

The extraction lost equations (7)-(8); re-derived here. Two-layer ``ntk`` linear student on input
x = 1 (task ``classification``, data ``degenerate``, ``input_dim`` 1, n_train even: half the points
labelled +1, half -1 at the same input): f = v^T u / sqrt(m), u, v in R^m, NTK eigenvalue
lambda = |grad f|^2 = (|u|^2 + |v|^2) / m (the top eigenvalue of J J^T / n: the n rows of J are equal).
Every output is f, so the empirical risk is R(f) = (ell(f) + ell(-f)) / 2 (:func:`degenerate_risk`) with
derivative g(f) = R'(f):

    exponential: R = cosh f,                                   g = sinh f
    logistic:    R = (log(1 + e^-f) + log(1 + e^f)) / 2,       g = tanh(f / 2) / 2
    mse:         R = ((f - 1)^2 + (f + 1)^2) / 4 = (f^2 + 1)/2, g = f
                 (and the uv model, ``single_point`` label 0: R = f^2 / 2, g = f)

GD with rate eta on both layers: u' = u - eta g v / sqrt(m), v' = v - eta g u / sqrt(m). With
u^T v = sqrt(m) f,

    f' = v'^T u' / sqrt(m) = f - eta g lambda + eta^2 g^2 f / m,
    |u'|^2 = |u|^2 - 2 eta g f + eta^2 g^2 |v|^2 / m   (and u <-> v), so
    lambda' = lambda + (eta g / m)(eta g lambda - 4 f).

This is the uv recursion with g(f) in place of f (seed 003 eq. 8). Write g = q f with the *gain*
q(f) = g(f) / f, even in f (:func:`risk_gain`: 1 for mse, sinh f / f >= 1 for exponential,
tanh(f/2) / (2 f) <= 1/4 for logistic; q(0) = R''(0) = c, :data:`HESSIAN_FACTOR`). Then

    f' = (1 - eta q lambda + eta^2 q^2 f^2 / m) f,     lambda' = lambda + (eta q f^2 / m)(eta q lambda - 4),

odd in f, so (f^2, lambda) is a closed map (:func:`network_step`); with q = 1 it is, operation for
operation, :func:`theory.uv_step`. |f_0| follows from the stored L_0 (:func:`output_from_loss`).

*Phases.* Near f = 0, f' ~ (1 - eta c lambda) f: the loss starts to rise where eta c lambda > 2, the
wide-limit lazy boundary eta lambda_0 = 2 / c (2 exponential, 8 logistic, 2 mse). The loss rises at
step 1 iff |1 - eta q_0 lambda_0 + eta^2 q_0^2 f_0^2/m| > 1, i.e. above
eta_1 = 4 / (q_0 (lambda_0 + sqrt(lambda_0^2 - 8 f_0^2 / m))) (:func:`first_rise_rate`; the uv
eta_- / q_0). For the exponential, q shrinks as |f| falls, so this is where it first rises; for the
logistic q grows to 1/4 as |f| falls, so between eta_1 and ~8 / lambda_0 the loss rises later (the
exact map decides). lambda falls while eta q lambda < 4 (q >= c on exponential, so the catapult's
lambda falls only in a narrow window above 2 / lambda_0 before eta q lambda > 4 blows up; on logistic
q <= 1/4 and a large |f| makes q ~ 1 / (2 |f|) small, so the loss saturates instead of exploding and
the catapult reaches far above 8 / lambda_0). Measured ranges: README (issue 25).

*The inverse relation (Theorem 2).* If the loss converges to min R then f -> 0 and lambda -> lambda_final
with the fixed point f = 0 not repelling: |1 - eta c lambda_final| <= 1, i.e.

    eta lambda_final <= 2 / c:   2 (exponential, mse), 8 (logistic)      (:func:`final_ntk_bound`),

the paper's "eta lambda_final <= 2 (exponential), <= 8 (logistic)" (the lambda / 4 factor of
logistic loss is c = 1/4).

References: seed 003, Sec. 4.2, eqs. (3)-(8), Theorem 2 and its proof (Appendix A).
"""

from __future__ import annotations

import numpy as np

from lrsweep.families.catapult.theory import (HESSIAN_FACTOR, PhaseTracker, _floats, degenerate_risk,
                                              thresholds, weight_from_loss)

THEOREM2_LOSSES = ("mse", "exponential", "logistic")
_SMALL = 1e-4  # |f| below which the gain uses its Taylor series (error O(f^4) < 1e-16)


def _check(loss: str) -> None:
    if loss not in THEOREM2_LOSSES:
        raise ValueError(f"loss: unknown '{loss}'; allowed: {', '.join(THEOREM2_LOSSES)}")


def risk_gain(f_sq, loss: str):
    """q = R'(f) / f as a function of f^2 (even in f): 1 (mse), sinh f / f (exponential),
    tanh(f / 2) / (2 f) (logistic); q(0) = c = :data:`HESSIAN_FACTOR`."""
    _check(loss)
    f_sq = np.asarray(f_sq, float)
    if loss == "mse":
        return np.ones_like(f_sq)
    f = np.sqrt(f_sq)
    small = f < _SMALL
    safe = np.where(small, 1.0, f)
    with np.errstate(over="ignore", invalid="ignore"):
        if loss == "exponential":
            return np.where(small, 1.0 + f_sq / 6.0, np.sinh(safe) / safe)
        return np.where(small, 0.25 - f_sq / 48.0, np.tanh(0.5 * safe) / (2.0 * safe))


def network_step(f_sq, ntk, eta, width, loss: str):
    """One GD step of the one-hidden-layer linear network on (f^2, lambda) (module docstring):
    f^2' = (1 - eta q lambda + eta^2 q^2 f^2 / m)^2 f^2, lambda' = lambda + (eta q f^2 / m)(eta q lambda - 4)."""
    gain = eta * risk_gain(f_sq, loss)
    factor = 1.0 - gain * ntk + eta * gain * risk_gain(f_sq, loss) * f_sq / width
    return factor * factor * f_sq, ntk + (gain * f_sq / width) * (gain * ntk - 4.0)


def network_risk(f_sq, loss: str, kind: str = "classification"):
    """R at output f (from f^2): degenerate data (cosh f, logistic, (f^2 + 1) / 2 for mse); the uv
    model (``single_point``): f^2 / 2."""
    _check(loss)
    f_sq = np.asarray(f_sq, float)
    if loss == "mse":
        return 0.5 * f_sq if kind == "single_point" else 0.5 * (f_sq + 1.0)
    return degenerate_risk(np.sqrt(f_sq), loss)


def output_from_loss(loss0, loss: str, kind: str = "classification"):
    """f_0^2 from the stored L_0 (inverse of :func:`network_risk`; L_0 at or below min R gives 0)."""
    _check(loss)
    loss0 = np.asarray(loss0, float)
    if loss == "mse":
        return 2.0 * loss0 if kind == "single_point" else np.maximum(2.0 * loss0 - 1.0, 0.0)
    return weight_from_loss(loss0, loss) ** 2


def _start(loss0, ntk0, eta, width, loss, kind):
    loss0, ntk, eta, width = _floats(loss0, ntk0, eta, width)
    return output_from_loss(loss0, loss, kind), ntk, eta, width


def network_trajectory(loss0, ntk0, eta, width, loss: str, steps: int, diverge_factor=np.inf,
                       kind: str = "classification") -> dict:
    """Train loss and NTK eigenvalue at steps 0..T, shape (T + 1, *broadcast shape), NaN from the
    step the divergence rule fires (as the engine logs them)."""
    f_sq, ntk, eta, width = _start(loss0, ntk0, eta, width, loss, kind)
    value = network_risk(f_sq, loss, kind)
    tracker = PhaseTracker(value, diverge_factor)
    losses, ntks = [np.where(tracker.alive, value, np.nan)], [np.where(tracker.alive, ntk, np.nan)]
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            f_sq, ntk = network_step(f_sq, ntk, eta, width, loss)
            value = network_risk(f_sq, loss, kind)
            tracker.observe(value)
            losses.append(np.where(tracker.alive, value, np.nan))
            ntks.append(np.where(tracker.alive, ntk, np.nan))
    return {"train_loss": np.stack(losses), "ntk_eig": np.stack(ntks)}


def network_outcome(loss0, ntk0, eta, width, loss: str, steps: int, diverge_factor=np.inf,
                    kind: str = "classification") -> dict:
    """The stored reductions the exact map predicts (broadcast arrays): ``phase``, ``final_train_loss``,
    ``final_ntk_eig`` (NaN when diverged), ``loss_peak``, ``diverged_step`` ..."""
    f_sq, ntk, eta, width = _start(loss0, ntk0, eta, width, loss, kind)
    tracker = PhaseTracker(network_risk(f_sq, loss, kind), diverge_factor)
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            f_sq, ntk = network_step(f_sq, ntk, eta, width, loss)
            tracker.observe(network_risk(f_sq, loss, kind))
    out = tracker.outcome()
    out["final_ntk_eig"] = np.where(tracker.alive, ntk, np.nan)
    return out


def network_phase(loss0, ntk0, eta, width, loss: str, steps: int, diverge_factor=np.inf,
                  kind: str = "classification") -> np.ndarray:
    """The phase the exact map predicts (names, broadcast shape)."""
    return network_outcome(loss0, ntk0, eta, width, loss, steps, diverge_factor, kind)["phase"]


def final_ntk_bound(loss: str) -> float:
    """Theorem 2's bound on eta lambda_final for a run that converged to min R: 2 / c (2 exponential
    and mse, 8 logistic)."""
    _check(loss)
    return thresholds(loss).final


def first_rise_rate(loss0, ntk0, width, loss: str, kind: str = "classification"):
    """eta_1 = 4 / (q_0 (lambda_0 + sqrt(lambda_0^2 - 8 f_0^2 / m))): above it the loss rises at step 1,
    at or below it not (NaN where lambda_0^2 < 8 f_0^2 / m). mse: the uv eta_-."""
    f_sq = output_from_loss(loss0, loss, kind)
    ntk0 = np.asarray(ntk0, float)
    disc = ntk0 ** 2 - 8.0 * f_sq / np.asarray(width, float)
    with np.errstate(invalid="ignore"):
        return np.where(disc >= 0, 4.0 / (risk_gain(f_sq, loss) * (ntk0 + np.sqrt(np.maximum(disc, 0.0)))), np.nan)
