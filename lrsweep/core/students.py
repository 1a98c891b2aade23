"""Students: parameterizations and init schemes (seed 000, arXiv 2606.00340, Sec. 3 and App. F).

Parameters are a dict of trained matrices ``{"W1": W_1, ..., "Wm": W_m}`` (names and shapes from
:class:`lrsweep.core.architecture.Architecture`); a fixed readout (paper_deep's ``a``) lives with the data
of an instance, never in the trained pytree. Every function here is written for ONE student and
batched with ``vmap`` by the engine.

- ``paper_2nn``:  f(X) = X W_1 W_2 / h,                 W_1 (d, h), W_2 (h, h), output dim h.
- ``paper_deep``: f(X) = s(..s(s(X W_1) W_2)..W_m) a / sqrt(h), W_1 (d, h), W_l (h, h), readout a (h, 1)
  fixed, a ~ N(0, 1/h); ``n_layers`` = m + 1 counts the readout.
- ``standard``:   f(X) = s(..s(X W_1)..W_{m-1}) W_m, every layer trained, no extra scaling.
- ``ntk``:        the same times 1/sqrt(d h^(m-1)) (every pre-activation over sqrt(fan_in)), W_l ~ N(0, 1)
  (:class:`lrsweep.core.architecture.Architecture` says why one factor at the end is exact).
s is the identity (``linear``) or ReLU, applied after every hidden layer.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from lrsweep.core.architecture import Architecture


def _sign_fixed_q(q, r):
    """Q with the sign of diag(R) folded in, so (Q, R) is unique and Q is Haar distributed."""
    return q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[..., None, :]


@functools.lru_cache(maxsize=None)
def _blas_controller():
    import threadpoolctl
    return threadpoolctl.ThreadpoolController()


def _one_blas_thread():
    return _blas_controller().limit(limits=1, user_api="blas")


def _orthonormalize_host(g):
    """QR on the host (numpy LAPACK), batched over leading axes, for the CPU backend.

    XLA:CPU's batched LAPACK QR (jaxlib 0.10) splits the batch over the intra-op thread pool
    and blocks a pool thread until the pieces finish; when as many QRs run concurrently as the
    pool has threads (2 on a 2-core machine, e.g. W_1, W_2 and X of a vmapped instance), every
    thread waits on work no thread is left to run and the program never returns. numpy's QR
    does not touch that pool. Each matrix is factorized on its own, so the result does not
    depend on the batch it sits in.
    """
    return jax.pure_callback(_sign_fixed_q_host, jax.ShapeDtypeStruct(g.shape, g.dtype), g, vmap_method="expand_dims")


def _sign_fixed_q_host(a):
    """Q of a = QR (numpy), columns signed so that diag(R) > 0; batched over leading axes.

    One module-level function, not a closure per call: JAX caches the callback's program by the
    callback it calls, so the op-by-op instance generator (:func:`lrsweep.core.engine.make_instances`)
    compiles it once per shape instead of once per call (every chunk, every matrix)."""
    a = np.asarray(a)
    with _one_blas_thread():  # XLA's threads own the cores; BLAS threads would oversubscribe them
        q, r = np.linalg.qr(a)
    return (q * np.sign(np.diagonal(r, axis1=-2, axis2=-1))[..., None, :]).astype(a.dtype)


def _orthonormalize_device(g):
    return _sign_fixed_q(*jnp.linalg.qr(g))


def orthogonal(key, shape, dtype):
    """Matrix with orthonormal columns: QR of a Gaussian matrix, sign of diag(R) fixed (Haar)."""
    g = jax.random.normal(key, shape, dtype)
    return jax.lax.platform_dependent(g, cpu=_orthonormalize_host, default=_orthonormalize_device)


def init_params(key, arch: Architecture, init: str, scale, dtype) -> dict:
    """Trained matrices {W1..Wm}: orthogonal, or gaussian with W ~ N(0, 1/fan_in); times the layer's
    ``arch.init_gains`` (ntk: unit-variance entries) and ``scale``."""
    keys = jax.random.split(key, arch.n_trainable)
    if init == "orthogonal":
        mats = [orthogonal(k, s, dtype) for k, s in zip(keys, arch.shapes)]
    elif init == "gaussian":
        mats = [jax.random.normal(k, s, dtype) / math.sqrt(s[0]) for k, s in zip(keys, arch.shapes)]
    elif init == "zeros":
        return {name: jnp.zeros(s, dtype) for name, s in zip(arch.layer_names, arch.shapes)}
    else:
        raise ValueError(f"init: unknown '{init}'; allowed: orthogonal, gaussian, zeros")
    return {name: scale * (w if gain == 1.0 else gain * w)
            for name, w, gain in zip(arch.layer_names, mats, arch.init_gains)}


def layers(arch: Architecture, params: dict) -> list:
    """The trained matrices in order W1 .. Wm."""
    return [params[name] for name in arch.layer_names]


def init_readout(key, arch: Architecture, dtype):
    """paper_deep's fixed readout a ~ N(0, 1/h), shape (h, 1); an empty array otherwise."""
    if not arch.has_readout:
        return jnp.zeros((0,), dtype)
    return jax.random.normal(key, (arch.width, 1), dtype) / math.sqrt(arch.width)


def _act(arch: Architecture, z):
    return jax.nn.relu(z) if arch.activation == "relu" else z


def predict(arch: Architecture, params: dict, readout, x):
    """Student output for inputs x (n, d) -> (n, output_dim)."""
    z = x
    mats = layers(arch, params)
    last = len(mats) - 1
    for i, w in enumerate(mats):
        z = z @ w
        if not arch.last_layer_is_output or i < last:
            z = _act(arch, z)
    if arch.has_readout:
        z = z @ readout
    return z * arch.output_scale


def effective_weight(arch: Architecture, params: dict, readout):
    """Linear students: W_eff with f(X) = X W_eff, shape (d, output_dim).

    Multiplied right to left, so with paper_deep's vector readout every product is a
    matrix-vector product: O(m h^2) instead of O(m h^3).
    """
    if not arch.is_linear:
        raise ValueError("effective_weight is defined for linear students only")
    z = readout if arch.has_readout else None
    for w in reversed(layers(arch, params)):
        z = w if z is None else w @ z
    return z * arch.output_scale
