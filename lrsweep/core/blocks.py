"""Per-student functions that run, under ``vmap``, in blocks of students that stay in cache.

The engine vmaps a student's whole training over a chunk (``vmap(vmap(scan(step)))``): every op of
a step runs on the whole chunk. That suits a step's small working set; a logged metric with a large
one (a Lanczos basis, k x P per student) instead streams the chunk's working set from memory on
every pass (seed 003's ``sharpness``: ten passes over k x P per Lanczos step, 10 MB for 512 students
of m = 256). :func:`vmap_in_blocks` makes such a function run, under any number of nested vmaps, as a
``lax.map`` over blocks of about ``students_per_block`` students, each block vmapped: the same
per-student computation on smaller batches (values equal up to round-off), the chunk kept whole for
the training steps.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def vmap_in_blocks(fn, students_per_block: int):
    """``fn`` (written for one student; arguments and results pytrees of arrays, no closed-over
    tracers) that under vmap, nested or not, evaluates the batch as a ``lax.map`` over blocks of at
    most ``students_per_block`` students (at least one row of the innermost vmapped axis), each block
    vmapped. Without vmap it is ``fn``.

    Each vmap level is recorded by a :func:`jax.custom_batching.custom_vmap` rule (innermost first);
    the call that no vmap batches any more evaluates every recorded level at once
    (:func:`_evaluate`), so the blocks span the levels: e.g. 4 points x 8 instances per block.
    """
    return _with_levels(fn, students_per_block, ())


def _with_levels(fn, students_per_block: int, levels: tuple):
    """``fn`` with ``levels`` ((axis_size, in_batched), innermost first) already explicit in its
    arguments' leading axes (outermost first); another vmap adds a level."""

    @jax.custom_batching.custom_vmap
    def call(*args):
        return _evaluate(fn, students_per_block, levels, args)

    @call.def_vmap
    def rule(axis_size, in_batched, *args):
        out = _with_levels(fn, students_per_block, levels + ((axis_size, in_batched),))(*args)
        return out, jax.tree_util.tree_map(lambda _: True, out)

    return call


def _evaluate(fn, students_per_block: int, levels: tuple, args):
    """``fn`` over the explicit ``levels`` of ``args``: the outermost level in blocks of
    max(1, students_per_block // (students of the inner levels)) rows, each block a vmap of the
    inner levels' evaluation (with the budget that is left: students_per_block // block)."""
    if not levels:
        return fn(*args)
    (size, in_batched), inner = levels[-1], levels[:-1]
    block = max(1, min(size, students_per_block // math.prod(s for s, _ in inner)))
    flags = jax.tree_util.tree_leaves(in_batched)
    one = lambda *a: _evaluate(fn, max(1, students_per_block // block), inner, a)
    in_axes = tuple(jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(in_batched),
                                                 [0 if f else None for f in flags]))
    if block >= size:
        return jax.vmap(one, in_axes=in_axes)(*args)
    # one row per block: lax.map over the rows of `one` itself (a vmap of size 1 would add a batch
    # dimension to every dot, which XLA's CPU backend runs 2-4x slower)
    return _map_blocks(one if block == 1 else jax.vmap(one, in_axes=in_axes), size, block, flags, args)


def _map_blocks(block_fn, size: int, block: int, flags: list, args):
    """``block_fn`` over ceil(size / block) equal blocks of the leaves flagged in ``flags`` (batched on
    axis 0, length ``size``) by ``lax.map``; ``block_fn`` takes one row per batched leaf where
    block is 1, else a block of rows. The last block is padded with copies of the first rows, whose
    results are dropped."""
    n_blocks = math.ceil(size / block)
    block = math.ceil(size / n_blocks)
    pad = n_blocks * block - size
    leaves, tree = jax.tree_util.tree_flatten(args)
    batched = [x for x, f in zip(leaves, flags) if f]

    def split(x):
        x = jnp.concatenate([x, x[:pad]]) if pad else x
        return x if block == 1 else x.reshape(n_blocks, block, *x.shape[1:])

    def run_block(rows):
        rows = iter(rows)
        return block_fn(*jax.tree_util.tree_unflatten(tree, [next(rows) if f else x for x, f in zip(leaves, flags)]))

    out = jax.lax.map(run_block, [split(x) for x in batched])
    if block == 1:
        return jax.tree_util.tree_map(lambda y: y[:size], out)
    return jax.tree_util.tree_map(lambda y: y.reshape(n_blocks * block, *y.shape[2:])[:size], out)
