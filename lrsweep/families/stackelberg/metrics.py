"""Seed 002's metrics of the body (the layers below a trained head): the curvature of the Stackelberg
objective Phi(body) (``phi_sharpness``) and a sketch of the body's weights (``body_sketch``), for
distances between runs. Registered in ``train.metrics`` through :mod:`lrsweep.registry`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from lrsweep import registry
from lrsweep.core import curvature
from lrsweep.core.losses import LOSSES
from lrsweep.core.metrics import Metric, MetricContext
from lrsweep.core.tasks import StepContext
from lrsweep.families.stackelberg import heads


def _body(ctx: MetricContext):
    """(theta, unravel): the body's weights W_1 .. W_{m-1} as one vector (seed 002's M)."""
    return ravel_pytree({name: ctx.params[name] for name in heads.body_names(ctx.spec.arch)})


def _body_size(spec) -> int:
    return sum(r * c for r, c in spec.arch.shapes[:-1])


def phi_sharpness_iters(spec) -> int:
    return min(spec.sharpness_iters, _body_size(spec))


def phi_sharpness_init(spec, params0, inst, key):
    """The Lanczos start at step 0: a random unit vector in the space of the body's weights."""
    del params0, inst
    return curvature.random_unit(key, _body_size(spec), jnp.result_type(float))


def phi_hvp_implicit(spec, theta, unravel, head_star, inst, batch):
    """v -> Hess Phi(M) v at the body theta by the implicit-function theorem, given the best response
    ``head_star``: with G = L + lambda/2 ||w||^2, dw*/dM v = -G_ww^{-1} G_wM v, and
    Hess Phi v = G_MM v + G_Mw (dw*/dM v) = d/de grad_M G(M + e v, w* + e dw*/dM v)."""
    name = heads.head_name(spec.arch)
    ridge = spec.head_ridge

    def objective(th, w):
        prob = heads.problem(spec, {**unravel(th), name: w}, inst, batch)
        return heads.loss_and_grad(spec, prob, w)[0] + 0.5 * ridge * jnp.sum(w * w)

    grad_w = jax.grad(objective, argnums=1)
    grad_body = jax.grad(objective, argnums=0)
    size = head_star.size
    hess_w = jax.hessian(objective, argnums=1)(theta, head_star).reshape(size, size)
    factor = jax.scipy.linalg.cho_factor(heads.shifted(hess_w, 0.0))  # the ridge is in the objective

    def hvp(v):
        _, mixed = jax.jvp(lambda th: grad_w(th, head_star), (theta,), (v,))
        dw = -jax.scipy.linalg.cho_solve(factor, mixed.reshape(-1)).reshape(head_star.shape)
        return jax.jvp(grad_body, (theta, head_star), (v, dw))[1]
    return hvp


def phi_sharpness(ctx: MetricContext, start):
    """The top eigenvalue of the Hessian of Phi(M) = min_w L(M, w) + lambda/2 ||w||^2 over the body's
    weights M (seed 002's Stackelberg objective, :mod:`lrsweep.families.stackelberg.heads`), at the current body whatever the
    current head: exact for mse through the closed form Phi = 1/2 (yy - b^T (A + lambda I)^{-1} b)
    differentiated twice; otherwise by the implicit-function theorem at the Newton best response
    (:func:`phi_hvp_implicit`). Lanczos as :func:`sharpness` (k = min(train.sharpness_iters, P_body)
    steps, warm-started). At a best-response head, Hess Phi = G_MM - G_Mw G_ww^{-1} G_wM <= G_MM in
    the Loewner order, so phi_sharpness <= sharpness there (Cauchy interlacing)."""
    spec = ctx.spec
    theta, unravel = _body(ctx)
    name = heads.head_name(spec.arch)
    head = ctx.params[name]
    batch = StepContext(ctx.t, ctx.key)
    iters = phi_sharpness_iters(spec)
    if LOSSES[spec.loss].quadratic:
        phi = lambda th: heads.phi(spec, heads.problem(spec, {**unravel(th), name: head}, ctx.inst, batch))
        return curvature.hessian_top_eig(phi, theta, start, iters)
    head_star = heads.best_response(spec, heads.problem(spec, ctx.params, ctx.inst, batch), head, 0)
    return curvature.top_eig(phi_hvp_implicit(spec, theta, unravel, head_star, ctx.inst, batch), start, iters)


def body_sharpness(ctx: MetricContext, start):
    """The top eigenvalue of L_MM: the Hessian of the train loss L(M, w) over the body's weights M at the
    current head w held fixed (the body block of the full Hessian whose top eigenvalue is ``sharpness``).
    The seed's "Phi is sharper than the loss" can be read against either: ``sharpness`` (body + head: the
    original objective's curvature) or this block (the same coordinates as Hess Phi, which at a best
    response is the Schur complement L_MM - G_Mw G_ww^{-1} G_wM <= L_MM). Lanczos as :func:`phi_sharpness`
    (same start, same number of steps)."""
    spec = ctx.spec
    theta, unravel = _body(ctx)
    name = heads.head_name(spec.arch)
    head = ctx.params[name]
    batch = StepContext(ctx.t, ctx.key)
    loss = lambda th: heads.loss_and_grad(spec, heads.problem(spec, {**unravel(th), name: head}, ctx.inst, batch),
                                          head)[0]
    return curvature.hessian_top_eig(loss, theta, start, phi_sharpness_iters(spec))


SKETCH_SALT = 0x534B  # the sketch's directions: fold_in(instance step key, salt), the same at every step


def body_sketch_size(spec) -> int:
    return min(spec.sketch_dim, _body_size(spec))


def body_sketch(ctx: MetricContext):
    """The body's weights M (all P_body of them when P_body <= k = train.sketch_dim), else S M with S
    (k, P_body) of N(0, 1/k) entries drawn from the instance's key: the same S for every student of an
    instance and every step, so ||S (M - M')|| estimates ||M - M'|| between two runs of one instance
    (Johnson-Lindenstrauss: relative standard deviation about 1/sqrt(2k))."""
    theta, _ = _body(ctx)
    k = body_sketch_size(ctx.spec)
    if k == theta.size:
        return theta
    key = jax.random.fold_in(ctx.inst["step_key"], SKETCH_SALT)
    return jax.random.normal(key, (k, theta.size), theta.dtype) @ theta / jnp.sqrt(jnp.asarray(k, theta.dtype))


def _phi_elements(spec) -> int:
    k, p, h = phi_sharpness_iters(spec), _body_size(spec), spec.arch.width
    samples = spec.task.n_train if spec.formulation == "autodiff" else spec.task.input_dim
    return (k + 4) * p + 2 * k * k + 4 * h * h + 4 * samples * h


registry.register_metric("phi_sharpness", Metric("phi_sharpness", phi_sharpness, per_layer=False,
                                                 init_state=phi_sharpness_init, elements=_phi_elements,
                                                 lanczos=True))
registry.register_metric("body_sharpness", Metric("body_sharpness", body_sharpness, per_layer=False,
                                                  init_state=phi_sharpness_init, elements=_phi_elements,
                                                 lanczos=True))
registry.register_metric("body_sketch", Metric("body_sketch", body_sketch, per_layer=False,
                                               elements=lambda spec: body_sketch_size(spec) * (_body_size(spec) + 1),
                                               size=body_sketch_size))
