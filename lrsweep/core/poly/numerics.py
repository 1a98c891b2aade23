"""Evaluating loss polynomials at learning rates (numpy only: no jax, no engine).

A stored polynomial is coefficients (..., n_monomials) in u = eta / s and its monomials' exponents
(n_monomials, m) (:mod:`lrsweep.core.poly.algebra`); these functions evaluate them at points eta (P, m),
apply the engine's divergence rule, and bound the rounding of the evaluation.
"""

from __future__ import annotations

import numpy as np

from lrsweep.core import divergence


def evaluate_coefficients(coefs, monomials, lrs, scale):
    """sum_j coefs[..., j] prod_l (eta_l / scale)^{e_jl} at points ``lrs`` (P, m) -> (P, ...), float64."""
    coefs = np.asarray(coefs, np.float64)
    exps = np.asarray(monomials, np.int64)
    u = np.atleast_2d(np.asarray(lrs, np.float64)) / float(scale)
    v = np.ones((u.shape[0], len(exps)))
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(exps.shape[1]):
            powers = u[:, i:i + 1] ** np.arange(exps[:, i].max() + 1 if len(exps) else 1)
            v *= powers[:, exps[:, i]]
        return np.tensordot(v, coefs, axes=([1], [coefs.ndim - 1]))


def apply_divergence(train_all, test_all, log_steps, diverge_factor) -> dict:
    """The engine's rule (:mod:`lrsweep.core.divergence`) on losses at every step (P, steps + 1): the first t
    with a diverging train loss is ``diverged_step``; logged metrics at steps >= t are NaN."""
    train_all = np.asarray(train_all, np.float64)
    with np.errstate(invalid="ignore"):
        bad = divergence.exceeds(train_all, train_all[:, :1], diverge_factor, np)
    diverged = bad.any(axis=1)
    div_step = np.where(diverged, bad.argmax(axis=1), -1).astype(np.int32)
    logs = list(log_steps)
    alive = ~diverged[:, None] | (np.arange(train_all.shape[1])[None, :] < div_step[:, None])
    return {"train_loss": np.where(alive[:, logs], train_all[:, logs], np.nan),
            "test_loss": np.where(alive[:, logs], np.asarray(test_all, np.float64)[:, logs], np.nan),
            "diverged": diverged, "diverged_step": div_step}


def condition(coefs, monomials, lrs, scale, value=None):
    """kappa = sum_j |c_j u^e_j| / |sum_j c_j u^e_j| (P, ...): the evaluation amplifies the relative
    rounding of the coefficients (~eps of their dtype) by kappa. ``value``: the sum, if known."""
    value = evaluate_coefficients(coefs, monomials, lrs, scale) if value is None else value
    absolute = evaluate_coefficients(np.abs(coefs), monomials, np.abs(np.atleast_2d(lrs)), scale)
    with np.errstate(divide="ignore", invalid="ignore"):
        return absolute / np.abs(value)


def rtol_for(dtype) -> float:
    """Relative error allowed for a poly-mode loss: 1e-11 in float64, 1e-5 in float32."""
    return 1e-11 if np.dtype(dtype).itemsize >= 8 else 1e-5

