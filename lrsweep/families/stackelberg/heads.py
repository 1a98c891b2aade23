"""Trainable heads: the last layer as the follower of a Stackelberg game (seed 002).

A ``standard`` or ``ntk`` student with m >= 2 trained layers is a body M = (W_1 .. W_{m-1}) and a
head w = W_m (h, o): f(X) = c z(X) w, with z(X) = s(..s(X W_1)..W_{m-1}) the body's features (n, h)
and c the output scale (:attr:`lrsweep.core.architecture.Architecture.output_scale`). Seed 002 reads
training as the Stackelberg problem

    min_M Phi(M) = G(M, w*(M)),   w*(M) = argmin_w G(M, w),   G = L + lambda/2 ||w||^2

(L the train loss, lambda = ``train.head_ridge``), and GD with a large head rate beta and a small body
rate alpha as two-time-scale GD on it. The seed's summary calls the final layer the leader, but its
convergence proof (App. B, Prop. B.2) tracks ||w_k - w*(M_k)||: the head *follows* its best
response to the body, and the body descends Phi, because grad Phi(M) = grad_M G(M, w*(M)) (the
envelope theorem: grad_w G = 0 at w*). That proof's reading is the one built here.

Head rules, chosen by ``train.head`` and ``train.update`` and run by :func:`prepare` before every
step's gradient (and before the last observation), on the dense weights:

- simultaneous gd: nothing; the optimizer moves body and head from the same weights, eta_head =
  lr_m (plain per-layer GD: the seed's algorithm, both gradients at (M_k, w_k));
- alternating gd: k = ``train.head_steps`` steps w <- w - eta_head s(t) grad_w L(M_t, w) at the current
  body, then the body's step at the moved head (Gauss-Seidel; k -> infinity is the best response);
- best_response: w <- w*(M_t). For mse, (A + lambda I) w = b with A = c^2 z^T D z, b = c z^T D y (D the
  sample weights 1/n; for an instance of data moments, z^T D z = B^T S B and z^T D y = B^T X^T y / n,
  B = W_1 .. W_{m-1}), solved by Cholesky (XLA:CPU's batched QR can deadlock: README, Known issues)
  with a dead ReLU unit (a zero row of A) given weight 0 (:func:`shifted`). For logistic and
  exponential, :func:`newton_minimiser` from the current head: damped Newton steps (each with a
  backtracking line search) until a full step is small, then chord steps reusing the last Hessian's
  Cholesky factor, to round-off (at most ``train.newton_steps`` Newton steps per phase, four times as
  many at step 0). On the whole training set in data form (not moments, not sampled batches) these
  solves run every REFACTOR_EVERY steps only, and an inverse P of the head's Hessian is carried by the
  engine (:attr:`HOOK`'s state); the steps between refine the previous heads with chord steps
  w <- w - P grad G(w) to round-off, without forming a Hessian (:func:`carried_head`).

In the last two rules the optimizer's step leaves the head alone (:func:`lrsweep.core.optim.gd`). The
logged train loss at step t is the loss at the head the body's step sees: for best_response, L at
w*(M_t), i.e. Phi(M_t) - lambda/2 ||w*(M_t)||^2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import cho_factor, cho_solve

from lrsweep import registry
from lrsweep.core import schedules
from lrsweep.core.losses import LOSSES
from lrsweep.core.students import layers
from lrsweep.core.tracing import varying_like
from lrsweep.core.tasks import TASKS

LINE_SEARCH = 10  # step sizes 1, 1/2, .., 2^-9 tried per Newton step
ARMIJO = 1e-4
NEAR = 1e-2  # a full Newton step this small (relative to 1 + |w|_max) hands over to the chord method
CHORD_STEPS = 32  # at most this many chord steps per best response
CHORD_TOL = 16.0  # the chord stops at a step below CHORD_TOL eps (1 + |w|_max)
STALL = 1e4  # a chord that stops at a step above STALL eps (1 + |w|_max) hands over to Newton again
REFACTOR_EVERY = 16  # the least-squares head's carried inverse is renewed at every step t with t % this == 0


def head_name(arch) -> str:
    """The head's key in the params dict: the last trained layer W_m."""
    return arch.layer_names[-1]


def body_names(arch) -> tuple[str, ...]:
    return arch.layer_names[:-1]


def features(arch, params: dict, x):
    """z(X) = s(..s(X W_1)..W_{m-1}): the body's output (n, h), before the head and the output scale."""
    z = x
    for w in layers(arch, params)[:-1]:
        z = z @ w
        z = jax.nn.relu(z) if arch.activation == "relu" else z
    return z


def problem(spec, params: dict, inst: dict, ctx) -> dict:
    """The head's objective at the body of ``params``: ``z, y, weights`` (features of the step's batch;
    weights None: 1/n) or, for an instance of data moments (a linear student under mse), ``gram`` =
    z^T z / n = B^T S B, ``cross`` = z^T y / n = B^T X^T y / n and ``yy`` = y^T y / n."""
    arch = spec.arch
    if "xx" in inst:
        body = None
        for w in layers(arch, params)[:-1]:
            body = w if body is None else body @ w
        return {"gram": body.T @ inst["xx"] @ body, "cross": body.T @ inst["xy"], "yy": inst["yy"]}
    x, y, weights = TASKS[spec.task.kind].batch(spec, inst, ctx)
    return {"z": features(arch, params, x), "y": y, "weights": weights}


def _sample_weights(prob: dict):
    """The sample weights D of the head's objective (data form): ``weights``, or 1/n each."""
    z = prob["z"]
    return (jnp.full((z.shape[0],), 1.0 / z.shape[0], z.dtype) if prob["weights"] is None
            else prob["weights"].astype(z.dtype))


def normal_equations(spec, prob: dict):
    """(A, b, yy) of the squared loss in the head: L(w) = 1/2 (w^T A w - 2 tr(w^T b) + yy), A = c^2 z^T D z,
    b = c z^T D y, yy = y^T D y (D: the sample weights)."""
    c = spec.arch.output_scale
    if "gram" in prob:
        return c * c * prob["gram"], c * prob["cross"], prob["yy"]
    z, y = prob["z"], prob["y"]
    d = _sample_weights(prob)
    dz = d[:, None] * z
    return c * c * (z.T @ dz), c * (dz.T @ y), jnp.sum(d[:, None] * y * y)


def shifted(a, ridge):
    """A + lambda I, and 1 on the diagonal where a row of A is exactly zero (a ReLU unit off on every input:
    a zero feature, so b is zero there too): that unit's weight is then 0, the minimum-norm least squares,
    where a Cholesky of the singular A returns NaN. Nothing changes for any other A."""
    dead = jnp.diagonal(a) == 0
    return a + jnp.diag(jnp.where(dead, 1.0, 0.0).astype(a.dtype)) + ridge * jnp.eye(a.shape[0], dtype=a.dtype)


def loss_and_grad(spec, prob: dict, w):
    """(L(w), grad_w L(w)) of the head at the fixed body of ``prob`` (no ridge)."""
    if "gram" in prob:
        a, b, yy = normal_equations(spec, prob)
        aw = a @ w
        return 0.5 * (jnp.sum(w * aw) - 2.0 * jnp.sum(w * b) + yy), aw - b
    c = spec.arch.output_scale
    value, cotangent = LOSSES[spec.loss].value_and_cotangent((prob["z"] @ w) * c, prob["y"], prob["weights"])
    return value, c * (prob["z"].T @ cotangent)


def _objective(spec, prob: dict, w, ridge):
    """G(w) = L(w) + ridge/2 ||w||^2 (data form)."""
    c = spec.arch.output_scale
    value, _ = LOSSES[spec.loss].value_and_cotangent((prob["z"] @ w) * c, prob["y"], prob["weights"])
    return value + 0.5 * ridge * jnp.sum(w * w)


def _margin_parts(spec, prob: dict, w):
    """(c z^T l', l'', c z w) at the head w: the loss's head gradient (no ridge), the per-sample second
    derivatives l'' (n, 1) (the derivative of the loss's cotangent along a vector of ones: the cotangent of
    sample i depends on its own output only) and the outputs."""
    c = spec.arch.output_scale
    z, y, weights = prob["z"], prob["y"], prob["weights"]
    cot_of = lambda pred: LOSSES[spec.loss].value_and_cotangent(pred, y, weights)[1]
    pred = (z @ w) * c
    cotangent, curvature = jax.jvp(cot_of, (pred,), (jnp.ones_like(pred),))
    return c * (z.T @ cotangent), curvature, pred


def _damped_newton(spec, prob: dict, w, ridge):
    """One damped Newton step on G(w) = L(w) + ridge/2 ||w||^2 for a loss of one output (data form):
    (w + size step, step, size, Cholesky factor of H).

    H = c^2 z^T diag(l'') z + ridge I. Step size: the largest of 1, 1/2, .., 2^-9 meeting Armijo's
    condition up to round-off (64 eps |G|: near the minimiser the full step is taken, so the convergence is
    quadratic to round-off); none: stay. The trial outputs are c z w + s (c z step): one product with z
    for all ten sizes."""
    c = spec.arch.output_scale
    z, y, weights = prob["z"], prob["y"], prob["weights"]
    grad_loss, curvature, pred = _margin_parts(spec, prob, w)
    grad = grad_loss + ridge * w
    factor = cho_factor(shifted(c * c * (z.T @ (curvature * z)), ridge))
    step = -cho_solve(factor, grad)
    dpred = (z @ step) * c
    objective = lambda s: (LOSSES[spec.loss].value_and_cotangent(pred + s * dpred, y, weights)[0]
                           + 0.5 * ridge * jnp.sum((w + s * step) ** 2))
    value = objective(jnp.zeros((), w.dtype))
    sizes = 0.5 ** jnp.arange(LINE_SEARCH, dtype=w.dtype)
    values = jax.vmap(objective)(sizes)
    slack = 64.0 * jnp.finfo(w.dtype).eps * (1.0 + jnp.abs(value))
    ok = values <= value + ARMIJO * sizes * jnp.sum(grad * step) + slack
    size = jnp.where(jnp.any(ok), sizes[jnp.argmax(ok)], 0.0)
    return w + size * step, step, size, factor


def newton_step(spec, prob: dict, w, ridge):
    """One damped Newton step on G(w) = L(w) + ridge/2 ||w||^2 (:func:`_damped_newton`'s new head)."""
    return _damped_newton(spec, prob, w, ridge)[0]


def _max_abs(a):
    return jnp.max(jnp.abs(a))


def chord(step_of, w0):
    """(w, stalled, steps, last): the chord method w <- w + step_of(w) from ``w0`` to round-off, ``step_of`` a
    fixed approximate inverse applied to the residual (-H_k^{-1} grad G(w)). It stops at a step of at most
    CHORD_TOL eps (1 + |w|_max), or at a step that does not halve the previous one (round-off reached, or
    too poor an inverse: that step is not taken), at most CHORD_STEPS. ``stalled``: it stopped at a step
    above STALL eps (1 + |w|_max), so w is not the fixed point to round-off; ``last``: the last step taken's
    max |.| (inf: none, the first step was not finite). Under vmap the loop runs as long as its slowest
    student, the others frozen."""
    eps = jnp.finfo(w0.dtype).eps
    scale = lambda w: 1.0 + _max_abs(w)

    def body(state):
        w, last, _, _, k = state
        step = step_of(w)
        size = _max_abs(step)
        halved = size <= 0.5 * last  # False for NaN
        tiny = size <= CHORD_TOL * eps * scale(w)
        take = halved | tiny
        stop = ~halved | tiny
        return jnp.where(take, w + step, w), jnp.where(take, size, last), stop, ~take, k + 1

    state = varying_like((w0, jnp.array(jnp.inf, w0.dtype), jnp.array(False), jnp.array(False), jnp.array(0)), w0)
    w, last, _, rejected, k = jax.lax.while_loop(lambda s: ~s[2] & (s[4] < CHORD_STEPS), body, state)
    return w, (rejected | (k >= CHORD_STEPS)) & ~(last <= STALL * eps * scale(w)), k, last


def newton_minimiser(spec, prob: dict, w0, ridge, max_newton):
    """(w, (k1, k2, k3), U): argmin_w G(w), G = L(w) + ridge/2 ||w||^2 (a margin loss, one output), from
    ``w0``, to round-off, the steps each phase took, and the upper Cholesky factor U of the last Newton
    step's Hessian (the identity if none was taken).

    1. Damped Newton steps (:func:`_damped_newton`, at most ``max_newton``) until one takes the full step
       and moves the head by at most NEAR (1 + |w|_max): w is then in Newton's quadratic region.
    2. The chord method (:func:`chord`): w <- w - H_k^{-1} grad G(w) with the Cholesky factor of that last
       Newton step's Hessian H_k, kept (a step: two products with z and one two-triangle solve, no Hessian). Its fixed
       point is grad G = 0 whatever H_k; it contracts by ||I - H_k^{-1} H(w*)|| = O(|w_k - w*|), so each
       step shrinks by far more than half until round-off. It stops at a step of at most
       CHORD_TOL eps (1 + |w|_max), or at a step that does not halve the previous one (round-off reached:
       that step is not taken), at most CHORD_STEPS.
    3. A student whose chord stopped at a step above STALL eps (1 + |w|_max) (not round-off) takes damped
       Newton steps again (at most ``max_newton``), until a full step of at most sqrt(eps) (1 + |w|_max).

    Under vmap each phase's while loop runs as long as its slowest student, the others frozen; from a
    warm start (the previous body step's minimiser) phase 1 is one or two Newton steps and phase 3 does
    not run. The result is the minimiser to round-off, whatever the number of steps each phase took.
    """
    eps = jnp.finfo(w0.dtype).eps
    h = w0.shape[0]
    scale = lambda w: 1.0 + _max_abs(w)

    def damped(state, small):
        w, _, _, k = state
        new, step, size, factor = _damped_newton(spec, prob, w, ridge)
        return new, factor[0], (size == 1.0) & (_max_abs(step) <= small * scale(w)), k + 1

    eye = jnp.eye(h, dtype=w0.dtype)
    state = varying_like((w0, eye, jnp.array(False), jnp.array(0)), w0)
    w, factor, _, k1 = jax.lax.while_loop(lambda s: ~s[2] & (s[3] < max_newton),
                                          lambda s: damped(s, NEAR), state)

    w, stalled, k2, _ = chord(lambda w: -cho_solve((factor, False), _margin_parts(spec, prob, w)[0] + ridge * w), w)

    state = varying_like((w, factor, ~stalled, jnp.array(0)), w0)
    w, factor, _, k3 = jax.lax.while_loop(lambda s: ~s[2] & (s[3] < max_newton),
                                          lambda s: damped(s, jnp.sqrt(eps)), state)
    return w, (k1, k2, k3), factor


def _newton_budget(spec, t):
    """Damped Newton steps allowed per phase at step t: ``spec.newton_steps``, 4x as many at t = 0 (where the
    start is the initial head, not the previous step's best response)."""
    return jnp.where(jnp.asarray(t) == 0, 4 * spec.newton_steps, spec.newton_steps)


def best_response(spec, prob: dict, w0, t=0):
    """w*(M) = argmin_w L(M, w) + lambda/2 ||w||^2 at the body of ``prob``: ridge least squares by Cholesky
    for mse; :func:`newton_minimiser` from ``w0`` otherwise (at most ``spec.newton_steps`` damped Newton
    steps per phase, 4x as many at t = 0, where ``w0`` is the initial head and not the previous best
    response)."""
    ridge = spec.head_ridge
    if LOSSES[spec.loss].quadratic:
        a, b, _ = normal_equations(spec, prob)
        return cho_solve(cho_factor(shifted(a, ridge)), b)
    return newton_minimiser(spec, prob, w0, ridge, _newton_budget(spec, t))[0]


def phi(spec, prob: dict):
    """Phi at the body of ``prob`` in closed form for mse: min_w L + lambda/2 ||w||^2 =
    1/2 (yy - tr(b^T (A + lambda I)^{-1} b)) (differentiable in the body through A and b)."""
    a, b, yy = normal_equations(spec, prob)
    return 0.5 * (yy - jnp.sum(b * cho_solve(cho_factor(shifted(a, spec.head_ridge)), b)))


def _alternating(spec, hparams, params, inst, ctx):
    """k gradient steps of the head at the current body, rate lr_m s(t)."""
    from lrsweep.core import optim
    name = head_name(spec.arch)
    rate = hparams[f"lr_{spec.arch.n_trainable}"]
    schedule = optim.schedule_of(spec, hparams)
    if schedule is not None:
        rate = rate * schedules.lr_multiplier(schedule, ctx.t)
    prob = problem(spec, params, inst, ctx)
    step = lambda _, w: w - rate.astype(w.dtype) * loss_and_grad(spec, prob, w)[1]
    return {**params, name: jax.lax.fori_loop(0, spec.head_steps, step, params[name])}


def carries_inverse(spec) -> bool:
    """Whether the best response is solved from a carried inverse (:func:`carried_head`): on the whole training
    set (a sampled batch changes the objective every step) in data form (an instance of data moments, i.e.
    any formulation but autodiff, has A at O(h^2 d) and keeps its one Cholesky solve)."""
    return spec.head == "best_response" and not spec.stochastic and spec.formulation == "autodiff"


def least_squares_residual(spec, prob: dict, w, dead):
    """b - (A + lambda I + diag(dead)) w = c z^T D (y - c z w) - (lambda + dead) w (data form, as in
    :func:`shifted`), without forming A: two products with z, O(n h o)."""
    c = spec.arch.output_scale
    z = prob["z"]
    fit = _sample_weights(prob)[:, None] * (prob["y"] - c * (z @ w))
    # (fit^T z)^T rather than z^T fit: z is read in its own layout (XLA:CPU copied a transposed z per step)
    return c * (fit.T @ z).T - (spec.head_ridge + dead.astype(w.dtype)[:, None]) * w


def margin_gradient(spec, prob: dict, w):
    """grad G(w) = c z^T l'(c z w) + lambda w of a margin loss (data form): two products with z, O(n h)."""
    c = spec.arch.output_scale
    z = prob["z"]
    _, cotangent = LOSSES[spec.loss].value_and_cotangent((z @ w) * c, prob["y"], prob["weights"])
    return c * (cotangent.T @ z).T + spec.head_ridge * w  # z in its own layout, as least_squares_residual


def inverse_from_factor(u):
    """(U^T U)^{-1} = U^{-1} U^{-T} from an upper Cholesky factor U (h, h), in XLA: U^{-1} by back
    substitution, one row per step (LAPACK's triangular solve with h right-hand sides, one call per
    student on the CPU, is slow and erratic on a shared machine: 4-330 ms for 16 students at h = 64)."""
    u = jnp.triu(u)
    h = u.shape[0]
    eye = jnp.eye(h, dtype=u.dtype)

    def row(k, x):
        i = h - 1 - k
        return x.at[i].set((eye[i] - u[i] @ x) / u[i, i])

    x = jax.lax.fori_loop(0, h, row, varying_like(jnp.zeros_like(u), u))
    return x @ x.T


def _factored(spec, prob: dict, w0, t):
    """(w*, P): the best response by the uncarried rule (:func:`best_response`'s numbers: Cholesky for mse,
    :func:`newton_minimiser` from ``w0`` otherwise) and P, the inverse of A + lambda I (as :func:`shifted`)
    or of the last Newton step's Hessian."""
    if LOSSES[spec.loss].quadratic:
        a, b, _ = normal_equations(spec, prob)
        factor = cho_factor(shifted(a, spec.head_ridge), lower=False)
        return cho_solve(factor, b), inverse_from_factor(factor[0])
    w, _, u = newton_minimiser(spec, prob, w0, spec.head_ridge, _newton_budget(spec, t))
    return w, inverse_from_factor(u)


def carried_head(spec, prob: dict, w0, state, t):
    """(w*(M_t), state): the best response at step t (data form, :func:`carries_inverse`), and the state to
    carry: (P, w_prev), P an approximate inverse of the head's Hessian, w_prev the head before ``w0``.

    At t % REFACTOR_EVERY == 0 (the same steps for every student: a real branch under vmap) the head is
    solved as by :func:`best_response` (the same numbers: Cholesky for mse, :func:`newton_minimiser` from
    ``w0`` for margin losses) and P kept: (A + lambda I)^{-1}, or the inverse of the last Newton step's
    Hessian. At other steps the chord method (:func:`chord`) from the extrapolation 2 w0 - w_prev of the last two heads
    (``w0`` = w*(M_{t-1}); a dead unit, a zero feature column, starts at ``w0``): w <- w - P grad G(w)
    (mse: w + P r(w), :func:`least_squares_residual`; margin losses: :func:`margin_gradient`), O(n h) a
    step instead of the Hessian's O(n h^2) and the factor's O(h^3). Its fixed point is grad G = 0
    whatever P; it contracts by ||I - P H(w*)||, small while the body (and the head) moved little since P
    was formed. A student whose chord stalls (a step that does not halve, above round-off) is solved as
    at a renewal step, and its P renewed: a loop that runs only when some student needs it. Either way w is
    w*(M_t) to round-off. A non-finite body gives a NaN head, as the factorisation does.
    """
    inverse, w_prev = state
    renew = jnp.asarray(t) % REFACTOR_EVERY == 0

    def refine(_):
        z = prob["z"]
        dead = jnp.all(z == 0, axis=0) if prob["weights"] is None else jnp.all(
            prob["weights"].astype(z.dtype)[:, None] * z * z == 0, axis=0)
        if LOSSES[spec.loss].quadratic:
            step_of = lambda w: inverse @ least_squares_residual(spec, prob, w, dead)
        else:
            step_of = lambda w: -(inverse @ margin_gradient(spec, prob, w))
        w, stalled, _, last = chord(step_of, jnp.where(dead[:, None], w0, 2.0 * w0 - w_prev))
        finite = last < jnp.inf  # the first step is taken unless it is not finite: a non-finite body
        return w, stalled & finite, finite

    # at a renewal step every student is solved; the chord runs only between renewals
    w, need, finite = jax.lax.cond(renew, lambda _: (w0, jnp.array(True), jnp.array(True)), refine, None)

    def solve(carry):
        w, p, need = carry
        # the barrier ties the problem to the loop's state: XLA would otherwise hoist the whole
        # factorisation out of the loop (loop-invariant code motion) and run it at every step
        here, _ = jax.lax.optimization_barrier((prob, need))
        new_w, new_p = _factored(spec, here, w0, t)
        return jnp.where(need, new_w, w), jnp.where(need, new_p, p), jnp.zeros_like(need)

    w, p, _ = jax.lax.while_loop(lambda s: s[2], solve, varying_like((w, inverse, need), w0))
    return jnp.where(finite, w, jnp.nan), (p, jnp.where(jnp.asarray(t) == 0, w, w0))  # at t = 0, w0 is the initial head


def head_state_elements(spec) -> int:
    """Elements of :func:`head_state` per student: h^2 + h o where :func:`carries_inverse`, else 0."""
    h, o = spec.arch.shapes[-1]
    return h * h + h * o if carries_inverse(spec) else 0


def head_state(spec, params: dict, inst: dict):
    """The head rule's per-student state: (P (h, h), w_prev (h, o)) of :func:`carried_head`
    where :func:`carries_inverse`, else None (nothing carried)."""
    if not carries_inverse(spec):
        return None
    head = params[head_name(spec.arch)]
    return jnp.zeros((head.shape[0], head.shape[0]), head.dtype), jnp.zeros_like(head)


def _best_response(spec, hparams, params, inst, ctx, state):
    del hparams
    name = head_name(spec.arch)
    prob = problem(spec, params, inst, ctx)
    if state is None:
        return {**params, name: best_response(spec, prob, params[name], ctx.t)}, state
    head, state = carried_head(spec, prob, params[name], state, ctx.t)
    return {**params, name: head}, state


def move_head(spec, hparams: dict, params: dict, inst: dict, ctx, state) -> tuple[dict, object]:
    """The head's move at the current body before step ``ctx.t``'s gradient (see the module docstring),
    for a group where :func:`moves_head`; ``state``: :func:`head_state`'s, carried by the engine."""
    if spec.head == "best_response":
        return _best_response(spec, hparams, params, inst, ctx, state)
    return _alternating(spec, hparams, params, inst, ctx), state


def moves_head(spec) -> bool:
    """Whether a head rule moves the head outside the optimizer's step (all but simultaneous gd, which
    is plain per-layer GD)."""
    return not (spec.head == "gd" and spec.update == "simultaneous")


HOOK = registry.StepHook(
    move_head, moves_head, lambda spec: (head_name(spec.arch),),
    lambda spec: f"the head is moved outside the optimizer's step (train.head: {spec.head}, train.update: "
                 f"{spec.update})",
    lambda spec: f"head={spec.head}" + (f" update={spec.update} head_steps={spec.head_steps}"
                                        if spec.head == "gd" else ""),
    head_state, head_state_elements)
