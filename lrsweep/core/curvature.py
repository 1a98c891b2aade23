"""Curvature of one student at a point in weight space: the top Hessian eigenvalue (Lanczos on
Hessian-vector products) and the top eigenvalue of the empirical NTK (seed 003 Sec. 4.2 eq. 5-6).

Pure functions of a flat parameter vector theta (P,), written for ONE student and batched with
``vmap`` by the engine; they run in float32 and float64. :mod:`lrsweep.core.metrics` adapts them to a
student (its train loss, its outputs) and registers them as ``sharpness`` and ``ntk_eig``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lrsweep.core.tracing import varying_like


def random_unit(key, size: int, dtype):
    """A unit vector (size,) uniform on the sphere: the Lanczos start before there is a warm one."""
    v = jax.random.normal(key, (size,), dtype)
    return v / jnp.linalg.norm(v)


def hessian_top_eig(loss_fn, theta, start, iters: int):
    """The largest (algebraic) eigenvalue of the Hessian of ``loss_fn`` at ``theta`` by ``iters``
    steps of Lanczos with full reorthogonalisation (:func:`lanczos`) started at ``start``.

    Args:
      loss_fn: theta (P,) -> scalar, twice differentiable.
      theta: (P,) the point.
      start: (P,) unit start vector (e.g. the previous call's Ritz vector: a warm start).
      iters: k <= P Hessian-vector products (forward-over-reverse on one linearisation of the
        gradient); k = P gives the exact top eigenvalue (up to round-off).

    Returns:
      (top Ritz value, its unit Ritz vector (P,)); the vector is ``start`` where it is not finite.

    Cost: one linearisation of the gradient, k HVPs (each about a forward and backward pass), and
    O(k^2 P) for the reorthogonalisation (two reads of the basis per step); memory k P for the basis.

    Breakdown: once a Krylov subspace is (numerically) invariant, the residual is round-off (or
    exactly 0 and the next basis vector 0/0) and the vectors the recurrence goes on with are not
    orthogonal to the basis: their Ritz values can lie outside the spectrum. The basis is cut
    after the first beta_j <= sqrt(eps) max_{i<=j} ||H q_i|| (below it two Gram-Schmidt passes no
    longer give an orthogonal vector: Kahan and Parlett's "twice is enough"; Parlett, The
    Symmetric Eigenvalue Problem, 1998): the leading block's Ritz values are then
    eigenvalues of H up to beta_j (in practice beta_j^2 / gap), its top one the top eigenvalue
    of H wherever the start vector has a component along that eigenvector.
    """
    _, hvp = jax.linearize(jax.grad(loss_fn), theta)
    return top_eig(hvp, start, iters)


def top_eig(hvp, start, iters: int):
    """The largest eigenvalue of the symmetric operator ``hvp`` (P,) -> (P,) and its Ritz vector, by
    ``iters`` Lanczos steps from ``start``, with the breakdown cut of :func:`hessian_top_eig`."""
    basis, tridiag = lanczos(hvp, start, iters)
    kept = _unbroken(tridiag)
    both = kept[:, None] & kept[None, :]
    below = jnp.min(jnp.where(kept, jnp.diagonal(tridiag), jnp.inf)) - 1.0  # under every kept Ritz value
    tridiag = jnp.where(both, tridiag, 0.0) + jnp.diag(jnp.where(kept, 0.0, below))
    values, vectors = jnp.linalg.eigh(tridiag)
    ritz = jnp.sum(jnp.where(kept[:, None], basis, 0.0) * vectors[:, -1:], axis=0)
    ritz = ritz / jnp.linalg.norm(ritz)
    return values[-1], jnp.where(jnp.all(jnp.isfinite(ritz)), ritz, start)


def lanczos(hvp, start, iters: int):
    """``iters`` steps of Lanczos on the symmetric operator ``hvp`` from ``start`` (P,): the basis Q
    (iters, P), one row per Lanczos vector, and the tridiagonal T = Q H Q^T (iters, iters).

    Each step takes the three-term recurrence w = H q_j - alpha_j q_j - beta_{j-1} q_{j-1}
    (alpha_j = q_j . H q_j) and then one full Gram-Schmidt pass w <- w - Q^T (Q w) against every
    vector so far: the local step removes what is large (it is where the cancellation is), the
    full pass the round-off that older vectors pick up, so the pair is classical Gram-Schmidt
    applied twice (Kahan and Parlett's "twice is enough": Parlett 1998 as in :func:`hessian_top_eig`;
    Lanczos with complete reorthogonalisation as in Golub and Van Loan, Matrix Computations). Rows
    of Q not reached yet are 0, so the full pass needs no mask. Two reads of the basis per step
    where the two full passes of matfree's ``tridiag_sym`` take four. Matrix-vector products
    (``basis @ w``), not broadcast-and-reduce: under ``vmap`` in the engine XLA fused the latter
    with the HVP and ran seed 002's ``body_sharpness`` 5-8x slower than matfree (128 students).
    After an exact breakdown (beta_j = 0) the next vector is 0/0: see :func:`_unbroken`.
    """
    k = iters

    def step(j, carry):
        basis, alpha, beta, w, previous, length = carry
        q = w / length
        basis = jax.lax.dynamic_update_index_in_dim(basis, q, j, 0)
        w = hvp(q)
        a = jnp.dot(q, w)
        w = w - a * q - length * previous  # previous = 0 at j = 0
        w = w - (basis @ w) @ basis
        b = jnp.sqrt(jnp.dot(w, w))
        return basis, alpha.at[j].set(a), beta.at[j].set(b), w, q, b

    zeros = jnp.zeros((k,), start.dtype)
    carry = varying_like((jnp.zeros((k, start.size), start.dtype), zeros, zeros, start, jnp.zeros_like(start),
                          jnp.sqrt(jnp.sum(start * start))), start)
    basis, alpha, beta, *_ = jax.lax.fori_loop(0, k, step, carry)
    off = beta[:-1]
    return basis, jnp.diag(alpha) + jnp.diag(off, 1) + jnp.diag(off, -1)


def _unbroken(tridiag):
    """(k,) bool: the Lanczos vectors q_0..q_j up to the first breakdown (see :func:`hessian_top_eig`).

    ||H q_i||^2 = alpha_i^2 + beta_{i-1}^2 + beta_i^2 in exact arithmetic; a non-finite beta (the
    0/0 after an exact breakdown) counts as a breakdown."""
    alpha, beta = jnp.diagonal(tridiag), jnp.diagonal(tridiag, offset=1)
    zero = jnp.zeros((1,), alpha.dtype)
    column_norm = jnp.sqrt(alpha ** 2 + jnp.concatenate([zero, beta]) ** 2 + jnp.concatenate([beta, zero]) ** 2)
    scale = jax.lax.cummax(column_norm)
    going_on = jnp.abs(beta) > jnp.sqrt(jnp.finfo(alpha.dtype).eps) * scale[:-1]  # False for NaN
    return jnp.concatenate([jnp.ones((1,), bool), jnp.cumprod(going_on.astype(jnp.int32)) > 0])


def ntk_top_eig(outputs_fn, theta, weight):
    """The largest eigenvalue of ``weight`` J J^T, J = d outputs_fn / d theta (rows, P): the
    empirical NTK on the inputs ``outputs_fn`` evaluates (weight 1/n: seed 003's NTK normalised by
    the number of samples). For a single output it is weight |grad f|^2.

    Cost: the explicit Jacobian (min(rows, P) reverse or forward passes, rows x P memory) and a dense
    eigendecomposition of the smaller Gram matrix, J J^T or J^T J (same nonzero spectrum):
    O(rows P min(rows, P) + min(rows, P)^3). Meant for small training sets (rows up to a few hundred).
    """
    rows = jax.eval_shape(outputs_fn, theta).size
    flat_outputs = lambda th: outputs_fn(th).reshape(-1)
    jac = (jax.jacrev if rows <= theta.size else jax.jacfwd)(flat_outputs)(theta)  # (rows, P)
    gram = jac @ jac.T if rows <= theta.size else jac.T @ jac
    return weight * jnp.linalg.eigvalsh(gram)[-1]
