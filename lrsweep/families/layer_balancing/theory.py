r"""Expected test loss of the layer-balancing "signal-only" surrogate after one and two GD steps.

Implements the theory of seed 000 (Deng, Wang, Zhou, Pang, Kothapalli, Yang, "Balancing Learning
Rates Across Layers: Exact Two-Step Dynamics and Optimal Scaling in Linear Neural Networks",
arXiv 2606.00340, ICML 2026): Sec. 5 (orthogonal init: one- and two-step surrogate loss, Corollary 5.4
and the three-layer analogue) and App. E (Gaussian init, one step). Pure numpy; no jax, no engine.

Setting (the authors' code, github.com/TDCSZ327/Layer-Balancing)
------------------------------------------------------------------
Linear students, no label noise, test loss = population risk ``||W_eff - beta||_F^2`` (no 1/2),
train loss ``(0.5/n) ||X W_eff - y||^2`` with ``y = X beta``. ``p = eta_1 + eta_2``, ``q = eta_1 eta_2``.

* 2-NN (``paper_2nn``): ``W_eff = W1 W2 / h``; W1 (d x h), W2 (h x h).
* 3-NN (``paper_deep``, n_layers=3): ``W_eff = W1 W2 a / sqrt(h)``, fixed head ``a ~ N(0, I_h/h)``,
  target ``beta ~ N(0, I_d/h)`` (d x 1).

Orthogonal init uses the orthogonal design ``X^T X = n I`` and ``n = d = h``; Gaussian init
(App. E) uses ``X ~ N(0,1)^{n x d}``, ``W1 ~ N(0, 1/d)``, ``W2 ~ N(0, 1/h)``.

The gradient approximation (signal-only, seed Sec. 4-5; "A" part of the gradient ``G = B - A``)
replaces the residual ``X W_eff - y`` by ``-y``. With ``S = X^T X / n`` it reads

* 2-NN: ``W1 += (eta_1/h) S beta W2^T``,              ``W2 += (eta_2/h) W1^T S beta``;
* 3-NN: ``W1 += (eta_1/sqrt(h)) S beta a^T W2^T``,     ``W2 += (eta_2/sqrt(h)) W1^T S beta a^T``;

both layers from the same (old) weights; step 2 applies the same rule to the updated weights.

How the exact expectations were derived (orthogonal init)
---------------------------------------------------------
*Reduction to W1 = W2 = I.* The update is equivariant under ``W1 -> U W1 V``, ``W2 -> V^T W2 Q``,
``beta -> U beta Q`` (2-NN; for the 3-NN ``a -> Q^T a``), and the test loss is invariant. Choosing
``V = W1^T`` and ``Q = (U W1 W2)^T`` maps any orthogonal pair to ``(I, I)`` and beta to
``U beta (W1 W2)^T U^T``, which has the same law as beta (Gaussian and Haar-orthonormal targets are
bi-orthogonally invariant; for the 3-NN, ``Q^T a`` has the law of ``a``). So the expected loss does not
depend on W1, W2 at all (they need not even be Haar), and e.g. one 2-NN step gives
``W_eff = I/h + (p/h^2) beta + (q/h^3) beta^2``.

*Gaussian moments.* The loss is then a polynomial in the entries of beta (and a); its expectation is a
sum over Wick pairings. This was done symbolically by enumerating all pairings of the (up to 8 beta,
16 X) Gaussian letters of every trace word and counting index cycles (a scratch sympy script, not part
of lrsweep); the results below are exact rational functions of h, confirmed by Monte Carlo in
``tests/test_theory_layer_balancing.py``. For the Haar-orthonormal 2-NN target ``beta = V/sqrt(h)``
every word reduces to ``tr(V^m)``, and ``E tr(V^m) = h, 1, 0`` for ``m = 0``, even, odd (exact for all
h; Diaconis-Shahshahani/Rains).

Main findings (see also each function):

* 2-NN, authors' target ``beta = Q / sqrt(d)`` (orthonormal; what their orthogonal-init experiment code
  uses): the published two-step formula is EXACT; the published one-step formula misses ``+2q/h^5``.
* 2-NN, Gaussian target ``beta ~ N(0, 1/d^2)`` (what their Gaussian-init code uses, and the default
  here): one step adds ``+2q/h^5 + 2q^2/h^9``; two steps differ from the published formula already at
  leading order (e.g. ``-8pq/h^5`` instead of ``-4pq/h^5``, ``20 p^2 q^2/h^10`` instead of
  ``4 p^2 q^2/h^10``), because ``beta^T beta`` is Wishart, not ``I/h``.
* 3-NN: the published formulas are leading order in 1/h; the exact ones carry the factors
  ``E|a|^{2k} = (h+2)(h+4)...(h+2k-2)/h^(k-1)`` and extra ``q`` terms (one step: ``+2q(h+2)/h^4``).

References
----------
Seed 000 = arXiv 2606.00340 (machine-extracted text; most equations are garbled). Section/equation
numbers quoted below are the ones legible in that text; where a formula is garbled the docstring says so.
"""
from __future__ import annotations

import warnings

import numpy as np

__all__ = [
    "two_layer_loss",
    "two_layer_orthogonal_loss",
    "two_layer_gaussian_init_loss",
    "two_layer_loss_published",
    "two_layer_one_step_published",
    "two_layer_two_step_published",
    "three_layer_loss",
    "three_layer_orthogonal_loss",
    "three_layer_gaussian_init_loss",
    "three_layer_loss_published",
    "three_layer_one_step_published",
    "three_layer_two_step_published",
    "two_layer_criterion",
    "two_layer_critical_width",
    "two_layer_balanced_is_local_min",
    "three_layer_criterion",
    "three_layer_balanced_is_local_min",
    "balanced_curvature",
    "balanced_is_local_min",
]

TWO_LAYER_TARGETS = ("gaussian", "orthonormal")


def _pqh(eta_1, eta_2, h):
    eta_1, eta_2, h = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (eta_1, eta_2, h)))
    return eta_1 + eta_2, eta_1 * eta_2, h


def _check_steps(steps, allowed=(1, 2)):
    if steps not in allowed:
        raise ValueError(f"steps must be one of {allowed}, got {steps!r}")


# ----------------------------------------------------------------------------------------------
# 2-NN, orthogonal init
# ----------------------------------------------------------------------------------------------

def two_layer_orthogonal_loss(eta_1, eta_2, h, steps=1, target="gaussian"):
    r"""Exact expected test loss of the 2-NN signal-only surrogate, orthogonal init, ``n = d = h``.

    Seed 000 Sec. 5 (two-layer one- and two-step theorems; Fig. 1, 4, 5, 13 use them at h = 1000).
    With ``P = p/h^2``, ``Q = q/h^3``, ``e = 1/h`` (these are the natural scales: ``p ~ h^{3/2}``):

    ``target="gaussian"`` (``beta`` iid ``N(0, 1/d^2)``):

    * 1 step: ``1 + e - 2P + P^2 + 2 e^2 Q + (e + 2 e^3) Q^2``
      i.e. ``1 + 1/h - 2p/h^2 + p^2/h^4 + 2q/h^5 + q^2/h^7 + 2q^2/h^9``.
    * 2 steps: ``1 + e - 4P + 4P^2 + (4e + 8e^2) Q - (8 + 4e) PQ + (16 + 8e) P^2 Q
      + (24e + 34e^2 + 56e^3) Q^2 + (20 + 24e + 16e^2) P^2 Q^2 + (8e + 44e^2 + 80e^3 + 48e^4) Q^3
      + (4e + 4e^2 + 37e^3 + 40e^4 + 20e^5) Q^4``.

    ``target="orthonormal"`` (``beta = Q_d / sqrt(d)``, ``Q_d`` Haar; the authors' orthogonal-init code):

    * 1 step: ``1 + e - 2P + P^2 + 2 e^2 Q + e Q^2`` (published formula + ``2q/h^5``).
    * 2 steps: ``1 + e - 4P + 4P^2 + (4e + 8e^2) Q - 4PQ + 8 P^2 Q + (22e + 16e^2) Q^2 + 4 P^2 Q^2
      + (4e + 8e^2) Q^3 + e Q^4`` -- identical to the published formula
      (:func:`two_layer_two_step_published`).

    Derivation: with ``W1 = W2 = I`` (see module docstring) one step gives ``W1 = I + (eta_1/h) B``,
    ``W2 = I + (eta_2/h) B`` and ``W_eff = I/h + (p/h^2) B + (q/h^3) B^2``; two steps give
    ``h W_eff = I + 2(a+b) B + ab (4B^2 + B B^T + B^T B) + 2ab(a+b) B B^T B + a^2 b^2 B B^T B^T B``
    with ``a = eta_1/h``, ``b = eta_2/h``. The loss ``||W_eff - B||_F^2`` is averaged over B by Wick's
    theorem (Gaussian) or ``E tr(V^m)`` (Haar). Example: ``E||B^2||_F^2 = (h^3 + 2h)/h^4`` gives the
    ``q^2/h^7 + 2q^2/h^9`` of one step; ``2 E<I/h, B^2/h^3 q> = 2q/h^5`` is the cross term missing from
    the published one-step formula. Depends on (eta_1, eta_2) only through (p, q).

    Args:
      eta_1, eta_2: learning rates of W1 and W2 (broadcastable arrays).
      h: width ``h = d = n`` (broadcastable).
      steps: 1 or 2.
      target: ``"gaussian"`` or ``"orthonormal"`` (the engine's ``task.target`` names).

    Returns:
      float64 array, the expected test loss (exact in h).
    """
    _check_steps(steps)
    if target not in TWO_LAYER_TARGETS:
        raise ValueError(f"target must be one of {TWO_LAYER_TARGETS}, got {target!r}")
    p, q, h = _pqh(eta_1, eta_2, h)
    e, P, Q = 1.0 / h, p / h**2, q / h**3
    if steps == 1:
        out = 1 + e - 2 * P + P**2 + 2 * e**2 * Q + e * Q**2
        if target == "gaussian":
            out = out + 2 * e**3 * Q**2
        return out
    if target == "orthonormal":
        return (1 + e - 4 * P + 4 * P**2 + (4 * e + 8 * e**2) * Q - 4 * P * Q + 8 * P**2 * Q
                + (22 * e + 16 * e**2) * Q**2 + 4 * P**2 * Q**2 + (4 * e + 8 * e**2) * Q**3 + e * Q**4)
    return (1 + e - 4 * P + 4 * P**2 + (4 * e + 8 * e**2) * Q - (8 + 4 * e) * P * Q
            + (16 + 8 * e) * P**2 * Q + (24 * e + 34 * e**2 + 56 * e**3) * Q**2
            + (20 + 24 * e + 16 * e**2) * P**2 * Q**2
            + (8 * e + 44 * e**2 + 80 * e**3 + 48 * e**4) * Q**3
            + (4 * e + 4 * e**2 + 37 * e**3 + 40 * e**4 + 20 * e**5) * Q**4)


def two_layer_one_step_published(eta_1, eta_2, h):
    """Published one-step 2-NN formula (authors' theory code): ``1 + 1/h - 2p/h^2 + p^2/h^4 + q^2/h^7``.

    Exact value minus this: ``2q/h^5`` (orthonormal target) or ``2q/h^5 + 2q^2/h^9`` (Gaussian target).
    """
    p, q, h = _pqh(eta_1, eta_2, h)
    return 1 + 1 / h - 2 * p / h**2 + p**2 / h**4 + q**2 / h**7


def two_layer_two_step_published(eta_1, eta_2, h):
    """Published two-step 2-NN formula (authors' theory code; seed Sec. 5, two-step theorem).

    ``(1/h)(1 + q/h^3)^4 + 16 q^2/h^7 + (2p(q + h^3)/h^5 - 1)^2 + (1 + q/h^3)^2 8q/h^5``.
    Exact for the orthonormal target ``beta = Q/sqrt(d)``; NOT for the Gaussian target (see
    :func:`two_layer_orthogonal_loss`).
    """
    p, q, h = _pqh(eta_1, eta_2, h)
    r = 1 + q / h**3
    return r**4 / h + 16 * q**2 / h**7 + (2 * p * (q + h**3) / h**5 - 1) ** 2 + r**2 * 8 * q / h**5


def _published(one_step, two_step, eta_1, eta_2, h, steps):
    _check_steps(steps)
    return (one_step if steps == 1 else two_step)(eta_1, eta_2, h)


def two_layer_loss_published(eta_1, eta_2, h, steps=1):
    """Published 2-NN formulas (orthogonal init), dispatching on ``steps`` (1 or 2)."""
    return _published(two_layer_one_step_published, two_layer_two_step_published, eta_1, eta_2, h, steps)


# ----------------------------------------------------------------------------------------------
# 2-NN, Gaussian init (App. E)
# ----------------------------------------------------------------------------------------------

def _gaussian_args(eta_1, eta_2, h, n, d):
    """Broadcast float64 (eta_1, eta_2, h, n, d) with n, d defaulting to h, and m = d + n + 1
    (the Wishart moment factor E (X^T X)^2 = n m I of the Gaussian design, App. E)."""
    n = h if n is None else n
    d = h if d is None else d
    e1, e2, h, n, d = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (eta_1, eta_2, h, n, d)))
    return e1, e2, h, n, d, d + n + 1


def two_layer_gaussian_init_loss(eta_1, eta_2, h, n=None, d=None):
    r"""Exact expected test loss after ONE signal-only step, 2-NN, Gaussian init and Gaussian design.

    Seed 000 App. E.2.1 (two-layer, Gaussian init; Corollary E.5; Fig. 6). The seed's formulas are lost
    in extraction; this one is derived here. Setting: ``X ~ N(0,1)^{n x d}``, ``W1 ~ N(0,1/d)^{d x h}``,
    ``W2 ~ N(0,1/h)^{h x h}``, ``beta ~ N(0,1/d^2)^{d x h}``, ``S = X^T X/n`` (Wishart), ``R = W1 W2``:

    ``W_eff = R/h + (eta_2/h^2) W1 W1^T S beta + (eta_1/h^2) S beta W2^T W2 + (q/h^3) S beta R^T S beta``.

    Only pairs of terms with even degree in each of W1, W2, beta survive; Wick's theorem over X, W1,
    W2, beta (up to 8 X letters) gives, with ``m = d + n + 1``:

    ``L = h/d + 1/h - 2 eta_1/(d h) - 2 eta_2/d^2
         + eta_1^2 (2h + 1) m/(d h^4 n) + eta_2^2 (d + h + 1) m/(d^3 h^2 n)
         + 2 eta_1 eta_2 (h + 1) m/(d^2 h^3 n) + eta_1^2 eta_2^2 K/(d^4 h^5 n^3)``,

    ``K = h (d^3 n + 2d^2 n^2 + 2d^2 n + 8d^2 + d n^3 + 2d n^2 + 21 d n + 20 d + 8n^2 + 20n + 20)
         + 2 (d^3 + 6d^2 n + 6d^2 + 6d n^2 + 17 d n + 21 d + n^3 + 6n^2 + 21n + 20)``.

    At ``n = d = h``: ``1 + 1/h - 2p/h^2 + (2h+1)^2 (p^2 - 2q)/h^6 + 2(h+1)(2h+1) q/h^6
    + q^2 (4h^5 + 4h^4 + 65h^3 + 98h^2 + 104h + 40)/h^12``, i.e. to leading order
    ``1 + 1/h - 2p/h^2 + 4p^2/h^4 - 4q/h^4 + 4q^2/h^7``: the Wishart design quadruples the
    ``p^2`` and ``q^2`` terms of the orthogonal case. For ``d != h`` the loss is not symmetric in
    (eta_1, eta_2).

    Args:
      eta_1, eta_2, h: broadcastable arrays.
      n, d: number of training samples and input dimension (default ``h``).

    Returns:
      float64 array (exact in n, d, h).
    """
    e1, e2, h, n, d, m = _gaussian_args(eta_1, eta_2, h, n, d)
    K = (h * (d**3 * n + 2 * d**2 * n**2 + 2 * d**2 * n + 8 * d**2 + d * n**3 + 2 * d * n**2
              + 21 * d * n + 20 * d + 8 * n**2 + 20 * n + 20)
         + 2 * (d**3 + 6 * d**2 * n + 6 * d**2 + 6 * d * n**2 + 17 * d * n + 21 * d + n**3
                + 6 * n**2 + 21 * n + 20))
    return (h / d + 1 / h - 2 * e1 / (d * h) - 2 * e2 / d**2
            + e1**2 * (2 * h + 1) * m / (d * h**4 * n)
            + e2**2 * (d + h + 1) * m / (d**3 * h**2 * n)
            + 2 * e1 * e2 * (h + 1) * m / (d**2 * h**3 * n)
            + e1**2 * e2**2 * K / (d**4 * h**5 * n**3))


def two_layer_loss(eta_1, eta_2, h, steps=1, init="orthogonal", target="gaussian", n=None, d=None):
    """Exact expected 2-NN surrogate test loss; dispatches on ``init``.

    ``init="orthogonal"``: :func:`two_layer_orthogonal_loss` (steps 1 or 2, ``n = d = h``).
    ``init="gaussian"``: :func:`two_layer_gaussian_init_loss` (steps 1 only, Gaussian target/design).
    """
    if init == "orthogonal":
        if n is not None or d is not None:
            raise ValueError("orthogonal init assumes n = d = h; do not pass n or d")
        return two_layer_orthogonal_loss(eta_1, eta_2, h, steps, target)
    if init == "gaussian":
        _check_steps(steps, (1,))
        if target != "gaussian":
            raise ValueError("Gaussian init is derived for the Gaussian target only")
        return two_layer_gaussian_init_loss(eta_1, eta_2, h, n, d)
    raise ValueError(f"init must be 'orthogonal' or 'gaussian', got {init!r}")


# ----------------------------------------------------------------------------------------------
# 3-NN, orthogonal init
# ----------------------------------------------------------------------------------------------

def three_layer_orthogonal_loss(eta_1, eta_2, h, steps=1):
    r"""Exact expected test loss of the 3-NN signal-only surrogate, orthogonal init, ``n = d = h``.

    Seed 000 Sec. 5 / App. (three-layer one- and two-step theorems; Fig. 2, 7, 12). Head
    ``a ~ N(0, I/h)`` fixed, target ``beta ~ N(0, I/h)``.

    Derivation: with ``W1 = W2 = I`` (module docstring) and ``c_i = eta_i/sqrt(h)``, ``A = |a|^2``,
    ``B = |beta|^2``, ``C = a.beta``, one step gives
    ``sqrt(h) W_eff = a + (p/sqrt(h)) A beta + (q/h) A C beta``; two steps give
    ``W1 = I + 2c_1 beta a^T + c_1 c_2 A beta beta^T``, ``W2 = I + 2c_2 beta a^T + c_1 c_2 B a a^T`` and
    ``sqrt(h) W_eff = (1 + c_1c_2 AB) a + (2(c_1+c_2) A + 5 c_1c_2 AC + 2c_1c_2(c_1+c_2) A^2 B
    + c_1^2c_2^2 A^2 BC) beta``. The loss is a polynomial in (A, B, C) whose moments are exact
    (``E A^k = (h+2)...(h+2k-2)/h^{k-1}``, Wick for C). Results:

    * 1 step: ``1 + 1/h - 2p/h + p^2 (h+2)/h^3 + 2q (h+2)/h^4 + q^2 (h+2)^2 (h+4)/h^7``.
      Published: ``1 + 1/h - 2p/h + p^2/h^2 + q^2/h^4`` (leading order; misses
      ``2p^2/h^3 + 2q(h+2)/h^4 + 4q^2(2h^2+5h+4)/h^7``).
    * 2 steps: ``(h+1)/h - 4p (h^3 + h^2 q + 4hq + 4q)/h^4 + 2q (h+2)(h+5)/h^4
      + q^2 (h+2)^2 (h+4)(h+37)/h^7
      + 4p^2 (h+2)(h^6 + 2h^5 q + h^4 q^2 + 12h^4 q + 16h^3 q^2 + 16h^3 q + 92h^2 q^2 + 224h q^2
      + 192 q^2)/h^9 + 12 q^3 (h+2)^2 (h+4)^2 (h+6)/h^10 + q^4 (h+2)^2 (h+4)^2 (h+6)^2 (h+8)/h^13``.
      Its leading order in 1/h (at ``p ~ h^{2/3}``) is the published formula; e.g. the published
      ``10q/h^3`` is ``14q/h^3`` exactly, ``37q^2/h^4`` is ``45q^2/h^4``.

    Depends on (eta_1, eta_2) only through (p, q).

    Args:
      eta_1, eta_2, h: broadcastable arrays; steps: 1 or 2.

    Returns:
      float64 array (exact in h).
    """
    _check_steps(steps)
    p, q, h = _pqh(eta_1, eta_2, h)
    if steps == 1:
        return (1 + 1 / h - 2 * p / h + p**2 * (h + 2) / h**3 + 2 * q * (h + 2) / h**4
                + q**2 * (h + 2) ** 2 * (h + 4) / h**7)
    h2, h4, h6 = h + 2, h + 4, h + 6
    poly_p2 = (h**6 + 2 * h**5 * q + h**4 * q**2 + 12 * h**4 * q + 16 * h**3 * q**2 + 16 * h**3 * q
               + 92 * h**2 * q**2 + 224 * h * q**2 + 192 * q**2)
    return ((h + 1) / h
            - 4 * p * (h**3 + h**2 * q + 4 * h * q + 4 * q) / h**4
            + 2 * q * h2 * (h + 5) / h**4
            + q**2 * h2**2 * h4 * (h + 37) / h**7
            + 4 * p**2 * h2 * poly_p2 / h**9
            + 12 * q**3 * h2**2 * h4**2 * h6 / h**10
            + q**4 * h2**2 * h4**2 * h6**2 * (h + 8) / h**13)


def three_layer_one_step_published(eta_1, eta_2, h):
    """Published one-step 3-NN formula (authors' code): ``1 + 1/h - 2p/h + p^2/h^2 + q^2/h^4``."""
    p, q, h = _pqh(eta_1, eta_2, h)
    return 1 + 1 / h - 2 * p / h + p**2 / h**2 + q**2 / h**4


def three_layer_two_step_published(eta_1, eta_2, h):
    """Published two-step 3-NN formula (authors' code), leading order in 1/h.

    ``(2p(h + q)/h^2 - 1)^2 + 1/h + 2q/h^2 + 10q/h^3 + 37q^2/h^4 + 12q^3/h^5 + q^4/h^6 + q^2/h^3``.
    """
    p, q, h = _pqh(eta_1, eta_2, h)
    return ((2 * p * (h + q) / h**2 - 1) ** 2 + 1 / h + 2 * q / h**2 + 10 * q / h**3
            + 37 * q**2 / h**4 + 12 * q**3 / h**5 + q**4 / h**6 + q**2 / h**3)


def three_layer_loss_published(eta_1, eta_2, h, steps=1):
    """Published 3-NN formulas (orthogonal init), dispatching on ``steps`` (1 or 2)."""
    return _published(three_layer_one_step_published, three_layer_two_step_published, eta_1, eta_2, h, steps)


# ----------------------------------------------------------------------------------------------
# 3-NN, Gaussian init (App. E.2.2)
# ----------------------------------------------------------------------------------------------

def three_layer_gaussian_init_loss(eta_1, eta_2, h, n=None, d=None):
    r"""Exact expected test loss after ONE signal-only step, 3-NN, Gaussian init and Gaussian design.

    Seed 000 App. E.2.2 (three-layer, Gaussian init; Theorem E.6, formula lost in extraction; Fig. 8).
    Setting: ``X ~ N(0,1)^{n x d}``, ``W1 ~ N(0,1/d)^{d x h}``, ``W2 ~ N(0,1/h)^{h x h}``,
    ``a ~ N(0, I_h/h)``, ``beta ~ N(0, I_d/h)``, ``S = X^T X/n``. One step:

    ``sqrt(h) W_eff = W1 W2 a + (eta_2/sqrt(h)) |a|^2 W1 W1^T S beta
    + (eta_1/sqrt(h)) (a^T W2^T W2 a) S beta + (q/h) |a|^2 (a^T W2^T W1^T S beta) S beta``.

    Wick's theorem over X, W1, W2, a, beta gives, with ``m = d + n + 1``:

    ``L = (d+1)/h - 2 eta_2/h - 2 d eta_1/h^2 + eta_1^2 d (h+2)^2 m/(h^5 n)
         + eta_2^2 (h+2)(d+h+1) m/(d h^3 n) + 2 eta_1 eta_2 (h+1)(h+2) m/(h^4 n)
         + eta_1^2 eta_2^2 (d+2)(h+2)(h+4)(n+2)(d+n+3)(d+n+5)/(h^7 n^3)``.

    At ``n = d = h`` the leading order is ``1 + 1/h - 2p/h + 2p^2/h^2 + 8 q^2/h^4`` (orthogonal:
    ``p^2/h^2 + q^2/h^4``).

    Args:
      eta_1, eta_2, h: broadcastable arrays; n, d: default ``h``.

    Returns:
      float64 array (exact in n, d, h).
    """
    e1, e2, h, n, d, m = _gaussian_args(eta_1, eta_2, h, n, d)
    return ((d + 1) / h - 2 * e2 / h - 2 * d * e1 / h**2
            + e1**2 * d * (h + 2) ** 2 * m / (h**5 * n)
            + e2**2 * (h + 2) * (d + h + 1) * m / (d * h**3 * n)
            + 2 * e1 * e2 * (h + 1) * (h + 2) * m / (h**4 * n)
            + e1**2 * e2**2 * (d + 2) * (h + 2) * (h + 4) * (n + 2) * (d + n + 3) * (d + n + 5)
            / (h**7 * n**3))


def three_layer_loss(eta_1, eta_2, h, steps=1, init="orthogonal", n=None, d=None):
    """Exact expected 3-NN surrogate test loss; dispatches on ``init`` (Gaussian init: steps 1 only)."""
    if init == "orthogonal":
        if n is not None or d is not None:
            raise ValueError("orthogonal init assumes n = d = h; do not pass n or d")
        return three_layer_orthogonal_loss(eta_1, eta_2, h, steps)
    if init == "gaussian":
        _check_steps(steps, (1,))
        return three_layer_gaussian_init_loss(eta_1, eta_2, h, n, d)
    raise ValueError(f"init must be 'orthogonal' or 'gaussian', got {init!r}")


# ----------------------------------------------------------------------------------------------
# Local optimality of the balanced point eta_1 = eta_2
# ----------------------------------------------------------------------------------------------

def two_layer_criterion(h, alpha, form="paper"):
    r"""Left-hand side of the 2-NN two-step criterion at ``eta_1 = eta_2 = h^alpha``.

    ``form="paper"``: seed 000 eq. (85) (Corollary 5.4) without its ``(1 + o(1))`` factor,
    ``h^(1-a) + 16 h^(a-2) + 2 h^(-a) + 8 h^(a-3) + 6 h^(3a-6) - 2``; the balanced point is a local
    minimum of the two-step loss when this is negative (the paper adds ``h > 256`` for ``a = 3/2``).

    ``form="full"``: the same quantity without dropping terms, derived here from the published
    two-step formula (= exact for the orthonormal target). On the line ``p = C`` the loss depends on
    ``t = eta_1 - C/2`` only via ``q = C^2/4 - t^2``, so ``d^2L/dt^2 |_0 = -2 dL/dq`` and the balanced
    point is a local minimum iff ``dL/dq < 0``. At ``p = 2h^a, q = h^(2a)``, with ``x = h^(2a-3)``,
    ``dL/dq / (4 h^(a-5)) = h^(1-a) (1+x)^3 + 16 h^(a-2) + 8 h^(3a-5) + 2 h^(-a) (1+x)^2
    + 4 h^(a-3) + 4 h^(3a-6) - 2``. Expanded, this is eq. (85) with its ``(1 + o(1))`` made explicit:
    ``(1 + 3x + 11x^2 + x^3) h^(1-a) + 16 h^(a-2) + 2 h^(-a) + 8 h^(a-3) + 6 h^(3a-6) - 2``.
    The ``o(1) = 3x + 11x^2 + x^3`` vanishes as h grows only for ``a < 3/2``; at ``a = 3/2`` (x = 1)
    the full form is ``32 h^(-1/2) + 16 h^(-3/2) - 2``, negative iff ``h > 256.997`` (the paper's
    separate Case 1, ``h > 256``), while eq. (85) alone would give ``h* = 74.1``.

    Args:
      h: width (array); alpha: exponent (array); form: ``"paper"`` or ``"full"``.

    Returns:
      float64 array; negative means "balanced point is a local min after two steps".
    """
    h, a = np.broadcast_arrays(np.asarray(h, np.float64), np.asarray(alpha, np.float64))
    if form == "paper":
        return h ** (1 - a) + 16 * h ** (a - 2) + 2 * h ** (-a) + 8 * h ** (a - 3) + 6 * h ** (3 * a - 6) - 2
    if form == "full":
        x = h ** (2 * a - 3)
        return (h ** (1 - a) * (1 + x) ** 3 + 16 * h ** (a - 2) + 8 * h ** (3 * a - 5)
                + 2 * h ** (-a) * (1 + x) ** 2 + 4 * h ** (a - 3) + 4 * h ** (3 * a - 6) - 2)
    raise ValueError(f"form must be 'paper' or 'full', got {form!r}")


def _check_two_layer_alpha(alpha):
    a = np.asarray(alpha, np.float64)
    if np.any(a <= 1) or np.any(a > 1.5):
        raise ValueError(f"the two-layer criterion holds for 1 < alpha <= 3/2, got {alpha!r}")
    return a


def two_layer_critical_width(alpha, form="paper"):
    r"""Root ``h*`` of :func:`two_layer_criterion` in h (seed 000 eq. (85), Corollary 5.4).

    For ``1 < alpha <= 3/2`` every exponent in the criterion is negative, so it decreases in h from
    ``> 0`` to ``-2``: the root is unique. Solved by bisection in ``log h`` (vectorized over alpha).

    Returns:
      float64 array of ``h*`` (same shape as alpha).
    """
    a = _check_two_layer_alpha(alpha)
    lo = np.zeros_like(a)                 # log h
    hi = np.full_like(a, 200.0)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        pos = two_layer_criterion(np.exp(mid), a, form) > 0
        lo = np.where(pos, mid, lo)
        hi = np.where(pos, hi, mid)
    return np.exp(0.5 * (lo + hi))


def two_layer_balanced_is_local_min(h, alpha, steps, rule="paper"):
    r"""Whether ``eta_1 = eta_2 = h^alpha`` is a local minimum on the line ``eta_1 + eta_2 = const``.

    Seed 000 Corollary 5.4: after one step it is not (for the exact one-step loss ``dL/dq > 0``
    always, so the balanced point is a local *maximum* on the line, for every alpha); after two steps it
    is when ``h > max(h*, 256)`` (``rule="paper"``, ``1 < alpha <= 3/2``), or, with ``rule="full"``,
    when ``two_layer_criterion(h, alpha, "full") < 0`` (exact for the published two-step formula /
    the orthonormal target). For the Gaussian target use :func:`balanced_is_local_min` with
    :func:`two_layer_orthogonal_loss`.

    Returns:
      bool array.
    """
    _check_steps(steps)
    a = _check_two_layer_alpha(alpha)
    h, a = np.broadcast_arrays(np.asarray(h, np.float64), a)
    if steps == 1:
        return np.zeros(h.shape, dtype=bool)
    if rule == "paper":
        return h > np.maximum(two_layer_critical_width(a), 256.0)
    if rule == "full":
        return two_layer_criterion(h, a, "full") < 0
    raise ValueError(f"rule must be 'paper' or 'full', got {rule!r}")


def three_layer_criterion(h, alpha, coef=33.0):
    r"""Left-hand side of the 3-NN two-step criterion at ``eta_1 = eta_2 = h^alpha`` (seed 000 App. D).

    ``32h^(3a-2) + coef h^(a-1) + 74h^(a-2) + 2h^(-a) + 10h^(-a-1) + 36h^(3a-3) + 4h^(5a-4) - 8``;
    negative means local minimum after two steps (``0 < a < 2/3``).

    The seed prints ``coef = 33``. Differentiating the published two-step formula gives, exactly,
    ``dL/dq / h^(a-2) = 32h^(3a-2) + 34h^(a-1) + 74h^(a-2) + 2h^(-a) + 10h^(-a-1) + 36h^(3a-3)
    + 4h^(5a-4) - 8`` (the ``q^2/h^3`` term contributes ``2h^(a-1)``, the square ``32h^(a-1)``), so
    ``coef=34`` is the exact sign test for the published formula; 33 looks like a slip (harmless:
    the term is ``o(1)`` for ``a < 1``).
    """
    h, a = np.broadcast_arrays(np.asarray(h, np.float64), np.asarray(alpha, np.float64))
    return (32 * h ** (3 * a - 2) + coef * h ** (a - 1) + 74 * h ** (a - 2) + 2 * h ** (-a)
            + 10 * h ** (-a - 1) + 36 * h ** (3 * a - 3) + 4 * h ** (5 * a - 4) - 8)


def three_layer_balanced_is_local_min(h, alpha, steps, coef=33.0):
    """Paper's rule for the 3-NN (seed 000, three-layer corollary, ``0 < alpha < 2/3``).

    One step: never (exact one-step ``dL/dq > 0``). Two steps: ``three_layer_criterion(h, alpha) < 0``.

    Returns:
      bool array.
    """
    _check_steps(steps)
    a = np.asarray(alpha, np.float64)
    if np.any(a <= 0) or np.any(a >= 2 / 3):
        raise ValueError(f"the three-layer criterion holds for 0 < alpha < 2/3, got {alpha!r}")
    h, a = np.broadcast_arrays(np.asarray(h, np.float64), a)
    if steps == 1:
        return np.zeros(h.shape, dtype=bool)
    return three_layer_criterion(h, a, coef) < 0


def balanced_curvature(loss_fn, C, h, half_width=0.5, n_nodes=17, **loss_kwargs):
    r"""First and second derivative of ``t -> loss_fn(C/2 + t, C/2 - t, h)`` at ``t = 0``.

    Generic, from the loss formula itself: the loss is sampled at ``n_nodes`` Chebyshev nodes
    ``t in [-T, T]``, ``T = half_width * C/2`` (so both rates stay ``>= (1 - half_width) C/2``), and
    differentiated through its Chebyshev interpolant of degree ``n_nodes - 1``. Every formula in this
    module is a polynomial of degree <= 8 in t, so the result is exact up to float64 round-off.
    The round-off is that of the loss values (~1e-16 of the loss, which is ~1), so the curvature is
    resolved only while its effect over the interval, ``|d2| T^2 / 2``, is well above ~1e-13: e.g. for
    the 2-NN at ``eta = h^1.1`` this holds up to h ~ 1e5 (relative error 2e-7 there) and fails beyond.

    Args:
      loss_fn: ``loss_fn(eta_1, eta_2, h, **loss_kwargs)``, numpy-broadcasting.
      C: total learning rate ``eta_1 + eta_2`` (array); h: width (array).
      half_width: fraction of ``C/2`` spanned by the nodes; n_nodes: number of nodes.

    Returns:
      ``(d1, d2)``, float64 arrays of the broadcast shape of (C, h). Warns (RuntimeWarning) where
      ``|d2| T^2`` is below 1e-12 of the loss (sign still reliable, value to ~1e-4).
    """
    C, h = np.broadcast_arrays(np.asarray(C, np.float64), np.asarray(h, np.float64))
    k = np.arange(n_nodes)
    x = np.cos(np.pi * (k + 0.5) / n_nodes)                      # (K,), symmetric about 0
    T = half_width * C / 2
    t = x.reshape((-1,) + (1,) * C.ndim) * T                     # (K, *shape)
    L = np.asarray(loss_fn(C / 2 + t, C / 2 - t, h, **loss_kwargs), np.float64)
    L = np.broadcast_to(L, t.shape).reshape(n_nodes, -1)
    coef = np.polynomial.chebyshev.chebfit(x, L, n_nodes - 1)   # (K, M)
    d1 = np.polynomial.chebyshev.chebval(0.0, np.polynomial.chebyshev.chebder(coef, 1)).reshape(C.shape) / T
    d2 = np.polynomial.chebyshev.chebval(0.0, np.polynomial.chebyshev.chebder(coef, 2)).reshape(C.shape) / T**2
    if np.any(np.abs(d2) * T**2 < 1e-12 * np.abs(L).max(0).reshape(C.shape)):
        warnings.warn("balanced_curvature: the curvature's effect over the node interval is below ~1e-12 of "
                      "the loss; float64 cannot resolve it reliably (widen half_width?)", RuntimeWarning,
                      stacklevel=2)
    return d1, d2


def balanced_is_local_min(loss_fn, C, h, rtol=1e-7, **kwargs):
    r"""Whether ``eta_1 = eta_2 = C/2`` is a local minimum of ``loss_fn`` on the line ``eta_1 + eta_2 = C``.

    Uses :func:`balanced_curvature`: local minimum iff the first derivative vanishes (it does by
    symmetry for every loss that depends on (eta_1, eta_2) only through (p, q); here "vanishes" means
    ``|d1| T <= rtol |d2| T^2``, i.e. relative to the curvature's own effect over the node interval)
    and the second derivative is positive. For a (p, q) loss, ``d2 = -2 dL/dq``.

    Returns:
      bool array.
    """
    d1, d2 = balanced_curvature(loss_fn, C, h, **kwargs)
    T = kwargs.get("half_width", 0.5) * np.asarray(C, np.float64) / 2
    return (d2 > 0) & (np.abs(d1) * T <= rtol * np.abs(d2) * T**2)
