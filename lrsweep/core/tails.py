"""How heavy the upper tail of Monte Carlo samples is, and whether their mean can be trusted.

Near a learning rate's stability bound the final loss of SGD has a power-law upper tail: its higher
moments diverge before its mean does, so a mean over seeds converges slowly and its standard error
is no error bar. The tail index is measured as in Pareto-smoothed importance sampling (PSIS): fit a
generalized Pareto distribution (shape k, P(X > x) ~ x^(-1/k)) to the largest M = min(n/5, 3 sqrt(n))
samples above the next one, with the empirical-Bayes estimator of Zhang & Stephens (2009) and PSIS's
weakly informative prior on k; k >= 1/2 means no finite variance, k >= 1 no finite mean. A mean over
n samples is reliable when k < 1 - 1/log10(n), i.e. n > 10^(1/(1 - k)), and no practical n suffices
for k >= 0.7 (10^3.3 samples and growing fast).

References: Zhang, J. and Stephens, M. A. (2009), "A new and efficient estimation method for the
generalized Pareto distribution", Technometrics 51(3); Vehtari, A., Simpson, D., Gelman, A., Yao, Y.
and Gabry, J. (2024), "Pareto smoothed importance sampling", JMLR 25(72), sec. 3 (the k-hat
diagnostic and the minimum sample size).
"""
from __future__ import annotations

import math

import numpy as np

PRACTICAL_K = 0.7     # above this no practical number of samples makes the mean reliable (PSIS)


MIN_SAMPLES = 6  # the fewest samples whose tail holds the two exceedances a fit needs (tail_size(6) = 2)


def tail_size(n: int) -> int:
    """M = min(ceil(n/5), ceil(3 sqrt(n))): the samples the tail fit uses (PSIS, sec. 3)."""
    return int(min(math.ceil(0.2 * n), math.ceil(3 * math.sqrt(n))))


def gpd_shape(exceedances) -> float:
    """Shape k of a generalized Pareto fit to positive exceedances, by Zhang & Stephens (2009) with
    PSIS's prior (k shrunk towards 0.5 with weight 10 samples)."""
    x = np.sort(np.asarray(exceedances, np.float64))
    n = x.size
    if n < 2 or np.any(x <= 0) or not np.all(np.isfinite(x)):
        raise ValueError("exceedances: at least two positive finite values")
    m = 30 + int(math.sqrt(n))
    theta = 1 - np.sqrt(m / (np.arange(1, m + 1) - 0.5))
    theta = theta / (3.0 * x[int(n / 4 + 0.5) - 1]) + 1.0 / x[-1]
    k_of = np.log1p(-theta[:, None] * x).mean(axis=1)
    profile = n * (np.log(-theta / k_of) - k_of - 1)       # the profile log-likelihood of theta
    with np.errstate(over="ignore"):                        # exp(inf) = inf: a weight of 0
        weights = 1.0 / np.exp(profile - profile[:, None]).sum(axis=1)
    keep = weights >= 10 * np.finfo(float).eps
    theta, weights = theta[keep], weights[keep] / weights[keep].sum()
    k = np.log1p(-np.sum(theta * weights) * x).mean()
    return float((n * k + 10 * 0.5) / (n + 10))


def tail(samples) -> dict:
    """The upper tail of ``samples``: k (generalized Pareto shape of the largest M; inf when a sample
    is not finite, i.e. overflowed), M, n, the samples a reliable mean needs (10^(1/(1-k)); inf for
    k >= 1) and whether n suffices (``reliable``) or no practical n does (``hopeless``, k >= 0.7)."""
    x = np.asarray(samples, np.float64).ravel()
    n = x.size
    if n < MIN_SAMPLES:
        raise ValueError(f"samples: at least {MIN_SAMPLES} values for a tail fit, got {n}")
    if not np.all(np.isfinite(x)):
        k = math.inf
        size = 0
    else:
        size = tail_size(n)
        top = np.sort(x)[-(size + 1):]
        exceed = top[1:] - top[0]
        k = gpd_shape(exceed) if np.all(exceed > 0) else 0.0
    needed = math.inf if k >= 1 else 10 ** (1.0 / (1.0 - k)) if k > 0 else 1.0
    return {"k": k, "tail_size": size, "n": n, "needed": needed, "reliable": bool(n >= needed and k < PRACTICAL_K),
            "hopeless": bool(k >= PRACTICAL_K)}
