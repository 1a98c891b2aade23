r"""The power-law random-feature model of seed 004 as a set of modes, its stability bound, and the
seed's scaling statements (derived in :mod:`lrsweep.families.schedules.theory`, section 3).

A :class:`Modes` is what every recursion reads: mode j has eigenvalue ``lam[j]``, stands for
``weight[j]`` features of (nearly) that eigenvalue, starts at E e^2 = ``c0[j]`` per feature, and the
features left out contribute a frozen ``offset`` to the loss, L = sum_j weight_j lam_j C_j + offset.
:func:`exact_modes` is one mode per feature (weight 1, offset 0: the recursion is exact);
:func:`power_law_modes` keeps the first ``exact`` features and lumps the rest into bins of
eigenvalues within a factor ``bin_ratio^b``, up to N = infinity.

Lumping (derivation). Features k in a bin follow C_k' = a(lam_k) C_k + (eta^2/m) lam_k u with the
same scalar drive u = L + sigma^2. One mode with weight n (the bin's size), lam = sqrt(mean lam_k^2)
and c0 = sum_k lam_k c_k0 / (n lam) feeds back into L exactly what the bin does at t = 0 (its initial
loss sum lam_k c_k0) and through the noise (n lam^2 = sum lam_k^2); it differs from the bin only
through the spread of a(lam_k) within it, a relative error of order (ln bin_ratio)^2 (measured: 2e-8
at N = 10^5, T = 3000 with ratio 1.01 for the first 1000 features exact, against the unlumped
recursion; tests/test_theory_random_features.py checks 1e-5 at ratio 1.02). The features beyond
``max_features`` (N = infinity: eigenvalue below 1e-14, so lam_k sum_t eta_t < 1e-6 for any
horizon up to 10^7 steps at rates below 10) never move: their loss sum_{k > K} k^-a is the Hurwitz
zeta function zeta(a, K + 1) (finite for a > 1) and their share of the noise, of order K^(1-2b), is
dropped.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

FROZEN_EIGENVALUE = 1e-14   # N = infinity: features with lam_k below this are frozen (the offset)


class Modes(NamedTuple):
    """Modes of the recursion (numpy float64 arrays of one shape (K,)); see the module docstring."""
    lam: np.ndarray
    weight: np.ndarray
    c0: np.ndarray
    offset: float = 0.0

    @property
    def initial_loss(self) -> float:
        return float(np.sum(self.weight * self.lam * self.c0) + self.offset)


def _check_exponents(a, b, low=0.0):
    for name, value in (("a", a), ("b", b)):
        if isinstance(value, bool) or not (np.isscalar(value) and np.isfinite(value) and value > low):
            raise ValueError(f"{name}: a finite number > {low:g}, got {value!r}")


def spectrum(n_features, a, b):
    """lambda_k = k^-b and w*_k = k^((b-a)/2), k = 1..n_features (numpy float64)."""
    if not isinstance(n_features, (int, np.integer)) or isinstance(n_features, bool) or n_features < 1:
        raise ValueError(f"n_features: a positive integer, got {n_features!r}")
    _check_exponents(a, b)
    k = np.arange(1, n_features + 1, dtype=np.float64)
    return k ** -float(b), k ** ((float(b) - float(a)) / 2.0)


def exact_modes(lam, c0) -> Modes:
    """One mode per feature: the recursion on these is exact."""
    lam = np.asarray(lam, np.float64)
    c0 = np.asarray(c0, np.float64)
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError("lam: a non-empty 1-d array of positive finite eigenvalues")
    if c0.shape != lam.shape or not np.all(np.isfinite(c0)) or np.any(c0 < 0):
        raise ValueError(f"c0: non-negative finite initial second moments of shape {lam.shape}")
    return Modes(lam, np.ones_like(lam), c0, 0.0)


def as_modes(lam, c0=None) -> Modes:
    """A :class:`Modes` as given, or the exact modes of eigenvalues ``lam`` and initial moments ``c0``."""
    if isinstance(lam, Modes):
        return lam
    return exact_modes(lam, c0)


def power_law_modes(n_features, a, b, *, exact=1000, bin_ratio=1.02) -> Modes:
    """Seed 004's model with N = ``n_features`` (an int, or ``math.inf``): features 1..``exact`` one mode
    each, the rest lumped into bins [k, k bin_ratio) (module docstring); a, b > 1 for N = infinity."""
    infinite = isinstance(n_features, float) and math.isinf(n_features) and n_features > 0
    if not infinite and (not isinstance(n_features, (int, np.integer)) or isinstance(n_features, bool)
                         or n_features < 1):
        raise ValueError(f"n_features: a positive integer or inf, got {n_features!r}")
    _check_exponents(a, b, low=1.0 if infinite else 0.0)
    if not isinstance(exact, (int, np.integer)) or exact < 1:
        raise ValueError(f"exact: a positive integer, got {exact!r}")
    if not (np.isscalar(bin_ratio) and bin_ratio > 1):
        raise ValueError(f"bin_ratio: a number > 1, got {bin_ratio!r}")
    a, b = float(a), float(b)
    last = int(min(FROZEN_EIGENVALUE ** (-1.0 / b), 1e18)) if infinite else int(n_features)
    k = np.arange(1, min(exact, last) + 1, dtype=np.float64)
    lam, weight, c0 = [k ** -b], [np.ones_like(k)], [k ** (b - a)]
    edges = [min(exact, last) + 1]
    while edges[-1] <= last:
        edges.append(min(last + 1, max(edges[-1] + 1, int(math.floor(edges[-1] * bin_ratio)))))
    if len(edges) > 1:
        lo, hi = np.asarray(edges[:-1], np.float64), np.asarray(edges[1:], np.float64)
        count = hi - lo
        # sums over k in [lo, hi) of k^-s by Hurwitz zeta: zeta(s, lo) - zeta(s, hi)
        from scipy.special import zeta
        sum_lam2 = zeta(2 * b, lo) - zeta(2 * b, hi)
        sum_loss = zeta(a, lo) - zeta(a, hi) if a > 1 else np.array(
            [np.sum(np.arange(l, h) ** -a) for l, h in zip(lo, hi)])
        small = count <= 64      # short bins summed directly (zeta differences lose digits there)
        for i in np.nonzero(small)[0]:
            kk = np.arange(lo[i], hi[i])
            sum_lam2[i], sum_loss[i] = np.sum(kk ** (-2 * b)), np.sum(kk ** -a)
        bar = np.sqrt(sum_lam2 / count)
        lam.append(bar)
        weight.append(count)
        c0.append(sum_loss / (count * bar))
    offset = 0.0
    if infinite:
        from scipy.special import zeta
        offset = float(zeta(a, last + 1))
    return Modes(np.concatenate(lam), np.concatenate(weight), np.concatenate(c0), offset)


def stability_limit(modes, batch_size=1.0) -> float:
    """Largest stable constant SGD rate for batch m (section 2 of the package docstring): the root of
    F(eta) = sum_j w_j (eta lam_j / m) / (2 - ((m+1)/m) eta lam_j) = 1 with every a_j < 1."""
    if not isinstance(modes, Modes):       # eigenvalues alone
        modes = exact_modes(modes, np.ones_like(np.asarray(modes, np.float64)))
    lam, w = np.asarray(modes.lam, np.float64), np.asarray(modes.weight, np.float64)
    m = float(batch_size)
    if not m >= 1:
        raise ValueError(f"batch_size: >= 1, got {batch_size!r}")
    kappa = (m + 1.0) / m
    hi = 2.0 / (kappa * lam.max()) * (1 - 1e-12)

    def f(eta):
        return np.sum(w * eta * lam / m / (2.0 - kappa * eta * lam))

    if f(hi) < 1.0:
        return hi
    lo = 0.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if f(mid) < 1.0 else (lo, mid)
    return lo


# --------------------------------------------------------------------------------------- statements
SEED_EQ_82 = "seed eq. 82"
SEED_ABSTRACT = "seed abstract (shape); exponent derived here (sec. 3)"
DERIVED = "derived here (sec. 3)"


def statements(a, b):
    """The scaling predictions for exponents a, b (> 1), each {value, source}; the derivations are in
    section 3 of :mod:`lrsweep.families.schedules.theory`. Sources: ``seed eq. 82`` (the hard phase's
    WSD: delta = 2b - 1 and the window T - t_s ~ T^(1 - (b-a)/(2b-1))), the abstract (the easy
    phase's shape T^-xi (1 - t/T)^delta, whose exponents it does not give), or derived here."""
    _check_exponents(a, b, low=1.0)
    a, b = float(a), float(b)
    easy = a > b
    s = (a - 1) / b
    const = (a - 1) / (a - 1 + b)
    return {
        "phase": {"value": "easy" if easy else "hard", "source": DERIVED},
        "s": {"value": s, "source": DERIVED},
        "delta": {"value": 2 * b - 1, "source": SEED_ABSTRACT if easy else SEED_EQ_82},
        "window_exponent": {"value": 1.0 if easy else 1 - (b - a) / (2 * b - 1),
                            "source": DERIVED if easy else SEED_EQ_82},
        "xi": {"value": (a - b) / a if easy else 0.0, "source": SEED_ABSTRACT if easy else DERIVED},
        "loss_exponent_optimal": {"value": (a - 1) / a if easy else (a - 1) / b, "source": DERIVED},
        "constant_rate_exponent": {"value": const, "source": DERIVED},
        "loss_exponent_constant": {"value": const, "source": DERIVED},
        "loss_exponent_power": {"value": const, "source": DERIVED},
        "power_chi": {"value": s / (1 + s), "source": DERIVED},
    }
