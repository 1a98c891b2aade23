r"""Best schedules of seed 004's model through the exact recursion (section 5 of
:mod:`lrsweep.families.schedules.theory`): the best of each family, the free optimum, and batch and
momentum schedules.

Every search covers every rate whose expected loss stays finite unless the caller gives a bound
``eta_max`` (then every result says whether it touches it): a family's rate box starts at twice the
constant-rate stability bound and is moved up (and down) while the optimum sits in its edge cell, so
the reported optimum is interior to a box whose edge losses are worse. Families are searched on a
coarse grid over all their parameters, then by a pattern search (a small full grid around the
incumbent, its step shrunk when no point beats it) from the three best grid points (deterministic).
The free optimum is a multiplicative correction exp(W p) of the best family's schedule (p = 0
reproduces it exactly), optimised by Adam on log L_T through the adjoint of :mod:`.recursion` with the
best iterate kept: it is never worse than the best family.
"""
from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lrsweep.core import schedules

from .model import as_modes, stability_limit
from .recursion import SEGMENT, curves, log_final_loss, params, time_blocks

KINDS = ("optimal", "constant", "power", "polynomial", "wsd", "cosine", "optimal_batch", "optimal_momentum")
FAMILY_KINDS = ("constant", "power", "polynomial", "wsd", "cosine")
PARAMETERIZATIONS = ("segments", "piecewise_constant", "array")
RATE_SPAN = math.log(1e6)        # a family's rate box spans six decades below its top
MAX_MOVES = 8                    # times a box edge is moved before the search gives up on interiority
MAX_ROWS = 8192                  # candidate rows scanned together (memory: rows x blocks)
CHUNK = 32                       # candidates per horizon per evaluation: one compiled program per problem
                                 # shape serves every family, grid and pattern (the rows are padded to it)


# --------------------------------------------------------------------------------------- problem
class Problem:
    """The model, the horizons and their time blocks, and jitted evaluators of (H, G, B) rate tables.

    ``resolution`` None: one block per step (exact); a number: :func:`.recursion.time_blocks`. Blocks
    are padded to a common count B (a multiple of the adjoint's segment, at least ``n_blocks``) with
    empty blocks (exact: zero-rate steps), the identity, which the scans skip segment by segment
    (:func:`.recursion.log_final_loss`: a horizon costs its own steps). ``batch_size``: one number, or one per horizon.
    The horizons and batch sizes are data to the compiled evaluators: one program per (H, B).
    """

    def __init__(self, modes, noise_var, horizons, batch_size=1.0, resolution=None, n_blocks=0):
        self.modes = as_modes(modes)
        self.horizons = check_horizons(horizons)
        self.batch = check_batch(batch_size, self.horizons.size)
        self.batch_size = batch_size
        self.resolution = resolution
        self.p = params(self.modes, noise_var)
        self.noise_var = float(noise_var)
        blocks = [time_blocks(int(T), resolution) for T in self.horizons]
        self.n_blocks = int(math.ceil(max(max(len(b) for b in blocks), n_blocks) / SEGMENT) * SEGMENT)
        sizes = np.zeros((self.horizons.size, self.n_blocks))
        for h, b in enumerate(blocks):
            sizes[h, :len(b)] = b
        self.sizes_np = sizes
        starts = np.cumsum(sizes, axis=1) - sizes
        # a block's rate: the schedule at the block's middle step
        self.t_np = np.where(sizes > 0, starts + (sizes - 1) / 2, 0.0)
        self.mask_np = (sizes > 0).astype(float)
        dtype = jnp.result_type(float)
        self.sizes = jnp.asarray(sizes, dtype)
        self.t = jnp.asarray(self.t_np, dtype)
        self.mask = jnp.asarray(self.mask_np, dtype)
        self.exact = resolution is None
        self.horizons_data = jnp.asarray(self.horizons, dtype)
        self.batch_data = jnp.asarray(self.batch, dtype)

    def subset(self, index) -> "Problem":
        """The horizons ``index`` (repeats allowed), padded to this problem's block count (same program)."""
        index = np.asarray(index)
        return Problem(self.modes, self.noise_var, self.horizons[index], self.batch[index], self.resolution,
                       self.n_blocks)

    def _xs(self, lr, batch, momentum=None):
        """(xs, recursion): the per-step (per-block) inputs of the recursion that runs them (sgd, momentum, blocks)."""
        rows = lr.shape[0]
        xs = (lr.T, batch.T)
        if momentum is not None:
            return xs + (momentum.T,), "momentum"
        if self.exact:
            return xs, "sgd"
        sizes = jnp.broadcast_to(self.sizes[:, None, :], (self.horizons.size, rows // self.horizons.size,
                                                             self.n_blocks)).reshape(rows, -1)
        return xs + (sizes.T,), "blocks"

    def family_losses(self, kind, x, active=None):
        """L_T (H, G) of family candidates x (H, G, p) in search coordinates, in row chunks of at most
        MAX_ROWS, padded to a multiple of 8 candidates (one compiled shape per family and search phase).
        ``active`` (H, G) bool: the candidates to evaluate (default all); the others are not scanned (their
        rates are zeroed: :func:`.recursion.log_final_loss` skips them) and get an infinite loss."""
        x = _coordinates(x)
        n_h, n_g = x.shape[:2]
        on = np.ones((n_h, n_g)) if active is None else np.asarray(active, float)
        per = max(1, min(CHUNK, 1 << ((MAX_ROWS // n_h).bit_length() - 1)))
        out = []
        for start in range(0, n_g, per):
            part, part_on = x[:, start:start + per], on[:, start:start + per]
            g = part.shape[1]
            part = np.concatenate([part, np.repeat(part[:, -1:], per - g, axis=1)], axis=1)
            part_on = np.concatenate([part_on, np.repeat(part_on[:, -1:], per - g, axis=1)], axis=1)
            logs = _family_log_losses(self.p, FAMILY_KINDS.index(kind), jnp.asarray(part, self.t.dtype),
                                      self.horizons_data, self.t, self.mask, self.sizes, self.batch_data,
                                      jnp.asarray(part_on, self.t.dtype), exact=self.exact)
            out.append(np.asarray(logs, np.float64)[:, :g])
        losses = np.exp(np.concatenate(out, axis=1))
        return np.where(np.isfinite(losses) & (on > 0), losses, np.inf)

    def curves(self, lr, batch=None, momentum=None):
        """(H, B+1) losses at the block edges of (H, B) tables."""
        lr = jnp.asarray(lr, self.t.dtype) * self.mask
        batch = jnp.broadcast_to(self.batch_data[:, None], lr.shape) if batch is None else jnp.asarray(batch, lr.dtype)
        xs, recursion = self._xs(lr, batch, None if momentum is None else jnp.asarray(momentum, lr.dtype))
        return np.asarray(curves(self.p, xs, recursion))

    def final_of(self, curve):
        """The loss at T_h of (H, B+1) curves (the last real block's end)."""
        last = self.mask_np.sum(axis=1).astype(int)
        return curve[np.arange(self.horizons.size), last]


def check_horizons(horizons):
    horizons = np.asarray(horizons)
    if horizons.ndim != 1 or horizons.size == 0 or not np.issubdtype(horizons.dtype, np.integer) \
            or np.any(horizons < 1):
        raise ValueError(f"horizons: a non-empty 1-d list of positive integers, got {horizons.tolist()!r}")
    return horizons.astype(np.int64)


def check_batch(batch_size, n_horizons) -> np.ndarray:
    """(H,) batch sizes from one number >= 1 or one per horizon."""
    batch = np.asarray(batch_size, np.float64) if not isinstance(batch_size, bool) else np.asarray(np.nan)
    if batch.ndim > 1 or (batch.ndim == 1 and batch.size != n_horizons) or not np.all(batch >= 1) \
            or not np.all(np.isfinite(batch)):
        raise ValueError(f"batch_size: a number >= 1 or one per horizon, got {batch_size!r}")
    return np.broadcast_to(batch, (n_horizons,)).copy()


def check_bound(eta_max):
    if eta_max is None:
        return None
    if isinstance(eta_max, bool) or not (np.isscalar(eta_max) and np.isfinite(eta_max) and eta_max > 0):
        raise ValueError(f"eta_max: None (no bound) or a positive finite number, got {eta_max!r}")
    return float(eta_max)


def touches(lr, bound, rtol=1e-3):
    """(H,) whether each schedule's largest rate reaches ``bound`` (never without one)."""
    lr = np.asarray(lr, float)
    if bound is None:
        return np.zeros(lr.shape[0], bool)
    return lr.max(axis=1) >= bound * (1 - rtol)


# ---------------------------------------------------------------------------------------- families
class Family(NamedTuple):
    """A schedule family in search coordinates x: x[0] = log rate, then the shape coordinates.

    ``lower``/``upper``: the box of the shape coordinates; ``movable``: which shape upper edges may
    move (an unbounded parameter); ``grid``: coarse grid points per coordinate (rate first)."""
    names: tuple
    lower: tuple
    upper: tuple
    movable: tuple
    grid: tuple


FAMILIES = {
    "constant": Family(("eta",), (), (), (), (41,)),
    # chi in [0, 3] (moved up if it binds)
    "power": Family(("c", "chi"), (0.0,), (3.0,), (True,), (21, 9)),
    # u = log(1 + delta), delta in [0, 31] (moved up if it binds)
    "polynomial": Family(("eta_p", "delta"), (0.0,), (math.log(32.0),), (True,), (21, 11)),
    # v = -log(1 - f), f in [0, 0.999]; u = log(1 + delta)
    "wsd": Family(("eta_0", "stable_fraction", "delta"), (0.0, 0.0), (math.log(1000.0), math.log(32.0)),
                  (False, True), (11, 8, 7)),
    "cosine": Family(("eta_0", "floor"), (0.0,), (1.0,), (False,), (21, 6)),
}
DESCRIPTIONS = {"constant": "eta", "power": "c (1 + t)^-chi", "polynomial": "eta_p (1 - t/T)^delta",
                "wsd": "eta_0, then eta_0 ((1 - t/T)/(1 - f))^delta after t_s = f T (no warmup)",
                "cosine": "eta_0 (floor + (1 - floor)(1 + cos(pi t/T))/2)"}


def natural(kind, x):
    """Family parameters (rate, then shape) from search coordinates x (..., p)."""
    x = np.asarray(x, float)
    out = [np.exp(x[..., 0])]
    if kind in ("power", "cosine"):
        out.append(x[..., 1])
    elif kind == "polynomial":
        out.append(np.expm1(x[..., 1]))
    elif kind == "wsd":
        out += [-np.expm1(-x[..., 1]), np.expm1(x[..., 2])]
    return np.stack(out, axis=-1)


def family_rates(kind, x, horizon, t):
    """Rates (G, B) of ``kind`` for search coordinates x (G, p) at one horizon and steps t (B,), by the
    engine's shapes (:func:`lrsweep.core.schedules.lr_multiplier`)."""
    eta = jnp.exp(x[:, 0:1])
    if kind == "constant":
        shape = schedules.Schedule("constant", horizon, 0)
    elif kind == "power":
        shape = schedules.Schedule("power", horizon, 0, exponent=x[:, 1:2])
    elif kind == "polynomial":
        shape = schedules.Schedule("polynomial", horizon, 0, exponent=jnp.expm1(x[:, 1:2]))
    elif kind == "wsd":
        shape = schedules.Schedule("wsd", horizon, 0, stable_fraction=-jnp.expm1(-x[:, 1:2]),
                                   exponent=jnp.expm1(x[:, 2:3]))
    elif kind == "cosine":
        shape = schedules.Schedule("cosine", horizon, 0, floor=x[:, 1:2])
    else:
        raise ValueError(f"kind: one of {', '.join(FAMILY_KINDS)}, got {kind!r}")
    return eta * jnp.broadcast_to(schedules.lr_multiplier(shape, t), (x.shape[0], t.shape[-1]))


N_COORDINATES = max(len(f.grid) for f in FAMILIES.values())


def _coordinates(x):
    """Search coordinates (..., p) padded with zeros to (..., N_COORDINATES) (the other families' slots)."""
    x = np.asarray(x, np.float64)
    return np.concatenate([x, np.zeros(x.shape[:-1] + (N_COORDINATES - x.shape[-1],))], axis=-1)


def _rates_of_code(code, x, horizons, t):
    """(H, G, B) rates of the family FAMILY_KINDS[code] (traced) for x (H, G, N_COORDINATES), horizons
    (H,) and block steps t (H, B): a branch per family, only the one asked for computed."""
    def one(kind, xh, T, th):
        return family_rates(kind, xh[:, :len(FAMILIES[kind].grid)], T, th)

    def table(kind):
        return lambda: jax.vmap(functools.partial(one, kind))(x, horizons, t)
    return jax.lax.switch(code, [table(kind) for kind in FAMILY_KINDS])


@functools.partial(jax.jit, static_argnames=("exact",))
def _family_log_losses(model, code, x, horizons, t, mask, sizes, batch, on, *, exact):
    """log L_T (H, G) of candidates x (H, G, N_COORDINATES) of family FAMILY_KINDS[code]: the family's rates
    at the blocks' steps (times ``on`` (H, G): 1, or 0 for a candidate not to scan), then the scan. The
    family, the horizons (H,) and the batch sizes (H,) are data."""
    n_h, n_g = x.shape[:2]
    lr = _rates_of_code(code, x, horizons, t) * mask[:, None, :] * on[:, :, None]
    lr = lr.reshape(n_h * n_g, -1).T
    xs = (lr, jnp.broadcast_to(batch[:, None, None], (n_h, n_g, lr.shape[0])).reshape(n_h * n_g, -1).T)
    if not exact:
        xs = xs + (jnp.broadcast_to(sizes[:, None, :], (n_h, n_g, sizes.shape[1])).reshape(n_h * n_g, -1).T,)
    return log_final_loss(model, "sgd" if exact else "blocks", xs).reshape(n_h, n_g)


_rates_table = jax.jit(_rates_of_code)


def family_table(problem: Problem, kind, x):
    """(H, G, B) rates of candidates x (H, G, p)."""
    return _rates_table(FAMILY_KINDS.index(kind), jnp.asarray(_coordinates(x), problem.t.dtype),
                        problem.horizons_data, problem.t)


def _unit_grid(counts):
    axes = [np.linspace(0.0, 1.0, n) for n in counts]
    return np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)


PATTERNS = {1: (9, 0.25), 2: (5, 0.4), 3: (3, 0.5)}   # parameters: (points per axis, shrink)


def _pattern(p):
    """Offsets of a pattern search around the incumbent: a full grid of PATTERNS[p] points per axis in [-1, 1]
    (more points where there are few parameters: a round costs one scan of T steps however many rows)."""
    axis = np.linspace(-1.0, 1.0, PATTERNS[p][0])
    return np.stack([g.ravel() for g in np.meshgrid(*([axis] * p), indexing="ij")], axis=1)


def _first_twin(x, width, best):
    """(H, S) index of the first start of each horizon in the same state as start s: point x (H, S, p),
    width and incumbent loss (H, S) (s itself where none before it is)."""
    same = np.all(x[:, :, None, :] == x[:, None, :, :], axis=-1)
    for v in (width, best):
        same &= v[:, :, None] == v[:, None, :]
    return np.argmax(same, axis=2)


def _search_box(problem, kind, lower, upper, starts=3, min_width=1e-3, max_rounds=40):
    """Coarse grid on each horizon's box (lower, upper: (H, p)), then a pattern search from the ``starts``
    best grid points: a step of one grid cell, shrunk whenever no point of the pattern beats the
    incumbent, until below ``min_width`` cells. Returns (x (H, p), loss (H,))."""
    fam = FAMILIES[kind]
    n_h = problem.horizons.size
    grid = lower[:, None, :] + (upper - lower)[:, None, :] * _unit_grid(fam.grid)[None]     # (H, G, p)
    losses = problem.family_losses(kind, grid)
    order = np.argsort(losses, axis=1)[:, :starts]
    x = np.take_along_axis(grid, order[..., None], axis=1)                                   # (H, S, p)
    best = np.take_along_axis(losses, order, axis=1)                                         # (H, S)
    cell = ((upper - lower) / (np.asarray(fam.grid) - 1))[:, None, None, :]                 # (H, 1, 1, p)
    width = np.ones(best.shape)
    offsets = _pattern(len(fam.grid))
    for _ in range(max_rounds):
        if np.all(width < min_width):
            break
        # a start in the same state as an earlier one moves as that one does: not scanned, copied
        twin = _first_twin(x, width, best)
        cand = x[:, :, None, :] + width[..., None, None] * cell * offsets[None, None]
        cand = np.clip(cand, lower[:, None, None], upper[:, None, None])
        active = np.broadcast_to((twin == np.arange(twin.shape[1]))[..., None], cand.shape[:3])
        loss = problem.family_losses(kind, cand.reshape(n_h, -1, cand.shape[-1]),
                                     active.reshape(n_h, -1)).reshape(cand.shape[:3])
        idx = np.argmin(loss, axis=2)
        new = np.take_along_axis(loss, idx[..., None], axis=2)[..., 0]
        pick = new < best
        best = np.where(pick, new, best)
        x = np.where(pick[..., None], np.take_along_axis(cand, idx[..., None, None], axis=2)[:, :, 0], x)
        width = np.where(pick, width, width * PATTERNS[len(fam.grid)][1])
        x, best, width = (np.take_along_axis(v, twin.reshape(twin.shape + (1,) * (v.ndim - 2)), axis=1)
                          for v in (x, best, width))
    top = np.argmin(best, axis=1)
    return x[np.arange(n_h), top], best[np.arange(n_h), top]


def best_family(problem: Problem, kind, eta_max=None):
    """Coordinates x (H, p) of the best schedule of a family per horizon and their losses (H,).

    With ``eta_max`` the rate box is [eta_max e^-RATE_SPAN, eta_max]. Without, it starts at
    [2 eta_s e^-RATE_SPAN, 2 eta_s] (eta_s the constant rate's stability bound) and moves by half its
    span, per horizon, while the optimum sits in its top or bottom grid cell; an unbounded shape
    parameter's upper edge (delta, chi) grows the same way; at most MAX_MOVES moves."""
    fam = FAMILIES[kind]
    bound = check_bound(eta_max)
    n_h, n_p = problem.horizons.size, len(fam.grid)
    if bound is not None:
        top = np.full(n_h, math.log(bound))
    else:
        limits = {m: stability_limit(problem.modes, m) for m in np.unique(problem.batch)}
        top = np.log([2.0 * limits[m] for m in problem.batch])
    lower = np.column_stack([top - RATE_SPAN, np.tile(np.asarray(fam.lower, float), (n_h, 1))])
    upper = np.column_stack([top, np.tile(np.asarray(fam.upper, float), (n_h, 1))])
    grows_up = np.array([bound is None, *fam.movable])
    x, loss = np.zeros((n_h, n_p)), np.full(n_h, np.inf)
    todo = np.arange(n_h)
    for move in range(MAX_MOVES + 1):
        # the horizons left, repeated up to H: the same compiled program (the repeats are dropped)
        rows = np.concatenate([todo, np.repeat(todo[-1:], n_h - todo.size)])
        sub = problem if todo.size == n_h else problem.subset(rows)
        xs, ls = _search_box(sub, kind, lower[rows], upper[rows])
        xs, ls = xs[:todo.size], ls[:todo.size]
        better = ls < loss[todo]
        x[todo] = np.where(better[:, None], xs, x[todo])
        loss[todo] = np.where(better, ls, loss[todo])
        cell = (upper[todo] - lower[todo]) / (np.asarray(fam.grid) - 1)
        span = upper[todo] - lower[todo]
        at_top = (x[todo] >= upper[todo] - 0.999 * cell) & grows_up
        at_low = (x[todo] <= lower[todo] + 0.999 * cell) & (np.arange(n_p) == 0)
        binds = (at_top | at_low).any(axis=1)
        if move == MAX_MOVES or not binds.any():
            break
        shift = np.where(at_top, span / 2, 0.0) - np.where(at_low, span / 2, 0.0)
        # the rate box moves as a whole; a shape parameter's box only grows upwards
        upper[todo] += np.where(at_top | at_low, shift, 0.0) * (at_top | (np.arange(n_p) == 0))
        lower[todo] += np.where(np.arange(n_p) == 0, shift, 0.0)
        todo = todo[binds]
    return x, loss


def _family_result(problem: Problem, kind, eta_max):
    x, _ = best_family(problem, kind, eta_max)
    lr = np.asarray(family_table(problem, kind, x[:, None, :])[:, 0]) * problem.mask_np
    out = dict(zip(FAMILIES[kind].names, natural(kind, x).T))
    return out | _result(problem, lr, None, None, eta_max)


def _result(problem: Problem, lr, batch, momentum, eta_max):
    lr = np.asarray(lr, float) * problem.mask_np
    if eta_max is not None:              # a float32 search may round a rate at the bound above it
        lr = np.minimum(lr, eta_max)
    batch = np.broadcast_to(problem.batch[:, None], lr.shape).copy() if batch is None else np.asarray(batch, float)
    curve = problem.curves(lr, batch, momentum)
    return {"lr": lr, "batch": batch * problem.mask_np,
            "momentum": np.zeros_like(lr) if momentum is None else np.asarray(momentum, float) * problem.mask_np,
            "sizes": problem.sizes_np.copy(), "loss": problem.final_of(curve), "curve": curve,
            "bound": np.inf if eta_max is None else float(eta_max), "at_bound": touches(lr, check_bound(eta_max))}


def best_family_schedule(kind, lam, c0, noise_var, horizons, *, eta_max=None, batch_size=1.0, resolution=None):
    """The best schedule of a family (:data:`FAMILIES`) per horizon: dict of its parameters (H,) and
    lr, batch, momentum, sizes (H, B), loss (H,), curve (H, B + 1), bound, at_bound (H,)."""
    if kind not in FAMILIES:
        raise ValueError(f"kind: one of {', '.join(FAMILIES)}, got {kind!r}")
    return _family_result(Problem(as_modes(lam, c0), noise_var, horizons, batch_size, resolution), kind, eta_max)


# ------------------------------------------------------------------------------- free schedules
def _z(t, T):
    """z = log(1 - t/T) / log(1/T) in [0, 1): a polynomial decay's log-rate is linear in z."""
    T = float(T)
    return np.log1p(-np.minimum(t, T - 1) / T) / math.log(1.0 / T) if T > 1 else np.zeros_like(t)


def node_weights(problem: Problem, n_segments, constant=False):
    """(H, B, K) interpolation weights of schedule nodes at each block's step, linear in z (module
    docstring of :mod:`lrsweep.families.schedules.theory`, section 5): the nodes are equally spaced in z
    (``n_segments`` + 1, dense near T) and in t/T (``n_segments`` / 2, resolving a warm-up), merged.
    ``constant``: one-hot weights of the ``n_segments`` pieces of z a block falls in (no t/T nodes)."""
    n_h, n_b = problem.horizons.size, problem.n_blocks
    k_nodes = n_segments if constant else n_segments + 1 + n_segments // 2
    weights = np.zeros((n_h, n_b, k_nodes))
    for h, T in enumerate(problem.horizons):
        real = problem.mask_np[h] > 0
        z = _z(problem.t_np[h][real], T)
        if constant:
            piece = np.minimum(np.floor(z * n_segments).astype(int), n_segments - 1)
            weights[h, np.nonzero(real)[0], piece] = 1.0
            continue
        lin = np.linspace(0.0, 1.0, n_segments // 2, endpoint=False)
        nodes = np.concatenate([np.linspace(0.0, 1.0, n_segments + 1), _z(lin * T, T)])
        order = np.argsort(nodes, kind="stable")
        sorted_nodes = nodes[order]
        pos = np.clip(np.searchsorted(sorted_nodes, z, side="right") - 1, 0, k_nodes - 2)
        span = np.maximum(sorted_nodes[pos + 1] - sorted_nodes[pos], 1e-300)
        frac = np.clip((z - sorted_nodes[pos]) / span, 0.0, 1.0)
        rows = np.nonzero(real)[0]
        weights[h, rows, order[pos]] += 1.0 - frac
        weights[h, rows, order[pos + 1]] += frac
    return weights


def _logit(p):
    p = np.clip(p, 1e-12, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def _check_options(parameterization, n_segments, batch_size, momentum_max, iterations):
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization: one of {', '.join(PARAMETERIZATIONS)}, got {parameterization!r}")
    if not isinstance(n_segments, (int, np.integer)) or n_segments < 2:
        raise ValueError(f"n_segments: an integer >= 2, got {n_segments!r}")
    if not (0 <= momentum_max < 1):
        raise ValueError(f"momentum_max: in [0, 1), got {momentum_max!r}")
    if not isinstance(iterations, (int, np.integer)) or iterations < 0:
        raise ValueError(f"iterations: a non-negative integer, got {iterations!r}")


def optimize_schedules(lam, c0, noise_var, horizons, *, parameterization="segments", n_segments=32, eta_max=None,
                       batch_size=1, optimize_batch=False, sample_budget=None, optimize_momentum=False,
                       momentum_max=0.99, iterations=200, learning_rate=0.05, init_lr=None, resolution=None):
    """Minimise each horizon's final expected loss over schedules by Adam on log L_{T_h}.

    ``segments``: eta_t = start_t exp(sum_k W_tk p_k), W the linear interpolation of
    :func:`node_weights`, p = 0 at the start (the start schedule exactly); ``array``: one multiplier
    per step (block); ``piecewise_constant``: eta_t = exp(p_k) on the k-th piece of z. With ``eta_max``
    the rate is eta_max sigmoid(logit(start/eta_max) + W p) instead (never above the bound). Batches
    (``optimize_batch``): m_t = 1 + (B_h - T_h) softmax(z)_t, so sum m_t = B_h (``sample_budget``,
    default batch_size T_h). Momentum (``optimize_momentum``): beta_t = momentum_max sigmoid(u_t). All
    horizons in one program; the best iterate per horizon is returned (the start included).

    Args:
      lam, c0: eigenvalues and initial moments, or a :class:`~.model.Modes` as lam (c0 None).
      init_lr: (H, B) starting rates (default: the best constant rate per horizon).
      resolution: None (exact, one block per step) or the block resolution of :func:`.recursion.time_blocks`
        (SGD rates only).
    Returns:
      dict of numpy arrays: lr, batch, momentum, sizes (H, B), loss (H,), curve (H, B+1), bound, at_bound.
    """
    _check_options(parameterization, n_segments, batch_size, momentum_max, iterations)
    bound = check_bound(eta_max)
    problem = Problem(as_modes(lam, c0), noise_var, horizons, batch_size, resolution)
    if (optimize_batch or optimize_momentum) and not problem.exact:
        raise ValueError("resolution: batch and momentum schedules need the exact recursion (resolution None)")
    budget = _sample_budget(problem, batch_size, sample_budget)
    start = _start_rates(problem, init_lr, bound)
    weights, p0, start = _rate_parameters(problem, parameterization, n_segments, start, bound)
    base = _logit(start / bound) if bound is not None else np.log(start)
    init = {"lr": p0}
    if optimize_batch:
        init["batch"] = np.zeros_like(p0)
    if optimize_momentum:
        init["momentum"] = np.full_like(p0, -3.0)
    setting = _Setting(recursion="momentum" if optimize_momentum else "sgd" if problem.exact else "blocks",
                       per_block=parameterization == "array", absolute=parameterization == "piecewise_constant",
                       bounded=bound is not None, iterations=int(iterations), learning_rate=float(learning_rate))
    arrays = {"weights": weights, "base": base, "mask": problem.mask_np, "sizes": problem.sizes_np,
              "budget": budget, "horizons": problem.horizons.astype(float), "batch_size": problem.batch[:, None],
              "bound": bound if bound is not None else 1.0, "momentum_max": float(momentum_max)}
    to = functools.partial(jnp.asarray, dtype=problem.t.dtype)
    lr, batch, momentum = _adam(setting, problem.p, jax.tree_util.tree_map(to, init),
                                jax.tree_util.tree_map(to, arrays))
    return _result(problem, np.asarray(lr), np.asarray(batch), np.asarray(momentum) if optimize_momentum else None,
                   bound)


def _sample_budget(problem: Problem, batch_size, sample_budget) -> np.ndarray:
    """(H,) samples each horizon's batch schedule spends: ``sample_budget``, default batch_size T_h."""
    if sample_budget is None:
        return problem.batch * problem.horizons.astype(float)
    budget = np.broadcast_to(np.asarray(sample_budget, float), (problem.horizons.size,)).copy()
    if not np.all(budget >= problem.horizons):
        raise ValueError(f"sample_budget: at least one sample per step (>= {problem.horizons.tolist()})")
    return budget


def _start_rates(problem: Problem, init_lr, bound) -> np.ndarray:
    """(H, B) starting rates: ``init_lr``, default the best constant rate per horizon (1 on padding
    blocks), at most the bound."""
    if init_lr is None:
        init_lr = _family_result(problem, "constant", bound)["lr"]
    start = np.broadcast_to(np.asarray(init_lr, float), (problem.horizons.size, problem.n_blocks))
    start = np.where(problem.mask_np > 0, start, 1.0)
    if np.any(start <= 0) or not np.all(np.isfinite(start)):
        raise ValueError("init_lr: positive finite starting rates before each horizon")
    if bound is not None:
        start = np.minimum(start, bound)
    return start


def _rate_parameters(problem: Problem, parameterization, n_segments, start, bound):
    """(weights, p0, start): the interpolation weights of ``parameterization`` (:func:`node_weights`; one
    parameter per block for ``array``), the parameters at the start (0: the start schedule itself) and
    the start the parameters correct (for ``piecewise_constant`` the parameters are each piece's mean
    log start and the start becomes 1, or half the bound)."""
    n_h = problem.horizons.size
    if parameterization == "array":
        return np.eye(1)[None], np.zeros((n_h, problem.n_blocks)), start
    weights = node_weights(problem, n_segments, parameterization == "piecewise_constant")
    p0 = np.zeros((n_h, weights.shape[2]))
    if parameterization == "piecewise_constant":   # absolute log-rates: each piece's mean log start
        count = np.maximum(weights.sum(axis=1), 1.0)
        base = _logit(start / bound) if bound is not None else np.log(start)
        p0 = np.einsum("hbk,hb->hk", weights, base) / count
        start = np.full_like(start, 0.5 * bound if bound is not None else 1.0)
    return weights, p0, start


class _Setting(NamedTuple):
    """The static part of a free-schedule optimisation (one compiled program per setting and shape)."""
    recursion: str         # sgd, blocks or momentum (:data:`.recursion.STEPS`)
    per_block: bool        # one parameter per block (array), else node parameters expanded by weights
    absolute: bool         # the parameters are log-rates (piecewise_constant), else a correction of base
    bounded: bool          # eta_max sigmoid(.) instead of exp(.)
    iterations: int
    learning_rate: float


def _schedules_of(setting: _Setting, arr, p):
    """(lr, batch, momentum) (H, B) of parameters p (optimize_schedules' docstring)."""
    def expand(q):
        return q if setting.per_block else jnp.einsum("hbk,hk->hb", arr["weights"], q)

    mask = arr["mask"]
    y = expand(p["lr"]) + (0.0 if setting.absolute else arr["base"])
    lr = (arr["bound"] * jax.nn.sigmoid(y) if setting.bounded else jnp.exp(jnp.minimum(y, 50.0))) * mask
    if "batch" in p:
        logits = jnp.where(mask > 0, expand(p["batch"]), -jnp.inf)
        batch = 1.0 + (arr["budget"] - arr["horizons"])[:, None] * jax.nn.softmax(logits, axis=1)
    else:
        batch = jnp.broadcast_to(arr["batch_size"], lr.shape)
    momentum = arr["momentum_max"] * jax.nn.sigmoid(expand(p["momentum"])) * mask if "momentum" in p else None
    return lr, batch, momentum


@functools.partial(jax.jit, static_argnums=(0,))
def _adam(setting: _Setting, model, p, arr):
    """Adam on sum_h log L_{T_h} over ``setting.iterations`` steps (one scan), the best iterate per
    horizon kept (the start included); returns its (lr, batch, momentum)."""
    def xs_of(lr, batch, momentum):
        if setting.recursion == "momentum":
            return (lr.T, batch.T, momentum.T)
        if setting.recursion == "blocks":
            return (lr.T, batch.T, arr["sizes"].T)
        return (lr.T, batch.T)

    def objective(q):
        logs = log_final_loss(model, setting.recursion, xs_of(*_schedules_of(setting, arr, q)))
        return jnp.sum(jnp.where(jnp.isfinite(logs), logs, 1e3)), logs

    opt = optax.adam(optax.cosine_decay_schedule(setting.learning_rate, max(setting.iterations, 1), alpha=0.05))

    def keep_best(best_p, best, q, logs):
        improved = jnp.isfinite(logs) & (logs < best)
        best_p = jax.tree_util.tree_map(lambda b, v: jnp.where(improved[:, None], v, b), best_p, q)
        return best_p, jnp.where(improved, logs, best)

    def step(carry, _):
        q, state, best_p, best = carry
        (_, logs), grads = jax.value_and_grad(objective, has_aux=True)(q)
        best_p, best = keep_best(best_p, best, q, logs)
        updates, state = opt.update(jax.tree_util.tree_map(jnp.nan_to_num, grads), state, q)
        return (optax.apply_updates(q, updates), state, best_p, best), None

    n_h = arr["mask"].shape[0]
    carry = (p, opt.init(p), p, jnp.full((n_h,), jnp.inf, arr["mask"].dtype))
    (q, _, best_p, best), _ = jax.lax.scan(step, carry, None, length=setting.iterations)
    best_p, _ = keep_best(best_p, best, q, objective(q)[1])     # the last iterate is a candidate too
    lr, batch, momentum = _schedules_of(setting, arr, best_p)
    return lr, batch, jnp.zeros_like(lr) if momentum is None else momentum


# ------------------------------------------------------------------------------------------ search
def search(lam, c0, noise_var, horizons, kinds=("optimal", "constant", "power", "polynomial", "wsd"), *,
           eta_max=None, batch_size=1.0, parameterization="segments", n_segments=32, iterations=200,
           learning_rate=0.05, sample_budget=None, momentum_max=0.99, resolution=None):
    """Per-horizon best schedules of every kind in ``kinds`` (:data:`KINDS`).

    ``optimal`` starts from the best of every family (all of :data:`FAMILY_KINDS` are searched for it,
    reported or not), so it is never worse than any; ``optimal_batch`` and ``optimal_momentum`` start
    from ``optimal``. Returns {kind: dict of numpy arrays lr, batch, momentum, sizes (H, B), loss (H,),
    curve (H, B+1), bound, at_bound (H,), plus a family's parameters; ``optimal`` also ``start`` (H,),
    the family it started from}.
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ValueError(f"kinds: {unknown or 'empty'} not among {', '.join(KINDS)}")
    _check_options(parameterization, n_segments, batch_size, momentum_max, iterations)
    bound = check_bound(eta_max)
    problem = Problem(as_modes(lam, c0), noise_var, horizons, batch_size, resolution)
    wants_optimal = any(k.startswith("optimal") for k in kinds)
    families = [k for k in FAMILY_KINDS if k in kinds or wants_optimal]
    out = {kind: _family_result(problem, kind, bound) for kind in families}
    if wants_optimal:
        losses = np.stack([out[k]["loss"] for k in families])            # (F, H)
        pick = np.argmin(losses, axis=0)
        start = np.stack([out[k]["lr"] for k in families])[pick, np.arange(problem.horizons.size)]
        common = dict(eta_max=bound, batch_size=batch_size, parameterization=parameterization,
                      n_segments=n_segments, iterations=iterations, learning_rate=learning_rate)
        modes = problem.modes
        out["optimal"] = optimize_schedules(modes, None, noise_var, horizons, init_lr=start, resolution=resolution,
                                            **common)
        out["optimal"]["start"] = np.asarray(families)[pick]
        if "optimal_batch" in kinds:
            out["optimal_batch"] = optimize_schedules(modes, None, noise_var, horizons, init_lr=out["optimal"]["lr"],
                                                      optimize_batch=True, sample_budget=sample_budget, **common)
        if "optimal_momentum" in kinds:
            out["optimal_momentum"] = optimize_schedules(modes, None, noise_var, horizons,
                                                         init_lr=out["optimal"]["lr"], optimize_momentum=True,
                                                         momentum_max=momentum_max, **common)
    return {k: out[k] for k in kinds}


# ------------------------------------------------------------------------------------- batch ramps
def steps_to_reach(steps, losses, target):
    """The fewest steps at which a loss curve over increasing ``steps`` reaches ``target``: linear in
    log-log between the first grid point at or below the target and the one before it (inf where none
    reaches it; the first grid point where it already does)."""
    steps, losses = np.asarray(steps, float), np.asarray(losses, float)
    order = np.argsort(steps)
    steps, losses = steps[order], losses[order]
    below = np.nonzero(losses <= target)[0]
    if below.size == 0:
        return math.inf
    i = int(below[0])
    if i == 0:
        return float(steps[0])
    x0, x1, y0, y1 = np.log(steps[i - 1]), np.log(steps[i]), np.log(losses[i - 1]), np.log(losses[i])
    return float(np.exp(x0 + (np.log(target) - y0) * (x1 - x0) / (y1 - y0)))


def batch_ramp_steps(lam, c0, noise_var, sample_budget, steps, target=None, *, iterations=200, n_segments=32,
                     resolution=None):
    """Wall-clock (steps) to reach a target loss at a fixed number of samples B, constant batch against
    the optimal batch ramp (seed 004's batch-ramp statement: ramps save steps in the easy phase).

    For every T in ``steps`` (each dividing B): the optimal rate schedule with the constant batch
    m = B/T (:func:`search`'s ``optimal``), and the optimal rate and batch schedules together with
    sum_t m_t = B (:func:`optimize_schedules` with ``optimize_batch``, started from the constant
    batch, so never worse). ``target`` (default: 1.1 times the best loss at the largest T): the
    fewest steps reaching it for each (:func:`steps_to_reach`).

    Returns:
      dict: steps (K,), loss_constant, loss_ramp (K,), lr_ramp, batch_ramp (K, T_max) the ramps (real
      batch sizes: the recursion's; an engine run rounds them), target, steps_constant, steps_ramp
      (floats, inf where not reached), saving = steps_constant / steps_ramp.
    """
    budget = int(sample_budget)
    steps = np.asarray(sorted(int(T) for T in steps))
    if budget < 1 or steps.size < 2 or np.any(steps < 1) or np.any(budget % steps):
        raise ValueError(f"steps: two or more step counts that divide sample_budget = {sample_budget!r}, "
                         f"got {steps.tolist()!r}")
    modes = as_modes(lam, c0)
    # every T at once, its constant batch B/T as data (one program; each horizon's search is its own)
    res = search(modes, None, noise_var, steps, kinds=("optimal",), batch_size=(budget // steps).astype(float),
                 iterations=iterations, n_segments=n_segments, resolution=resolution)["optimal"]
    constant = [float(v) for v in res["loss"]]
    ramp = optimize_schedules(modes, None, noise_var, steps, init_lr=res["lr"], optimize_batch=True,
                              sample_budget=float(budget), iterations=iterations, n_segments=n_segments,
                              batch_size=1.0)
    ramp_loss = ramp["loss"]          # never above the constant batch's: it is the start (best iterate kept)
    if target is None:
        target = 1.1 * min(constant[-1], ramp_loss[-1])
    steps_constant = steps_to_reach(steps, constant, target)
    steps_ramp = steps_to_reach(steps, ramp_loss, target)
    return {"steps": steps, "loss_constant": np.asarray(constant), "loss_ramp": ramp_loss, "lr_ramp": ramp["lr"],
            "batch_ramp": ramp["batch"],
            "target": float(target), "steps_constant": steps_constant, "steps_ramp": steps_ramp,
            "saving": steps_constant / steps_ramp if np.isfinite(steps_ramp) else math.nan}
