"""Tracing aids: what makes a program quicker to build without changing what it computes."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def varying_like(tree, like):
    """``tree`` unchanged, but batched under ``vmap`` wherever the array ``like`` is.

    For a loop's initial carry. The batching rule of ``lax.while_loop``, ``fori_loop`` and ``scan``
    re-batches the loop's body until the set of batched carry components stops growing; a constant in
    the carry (a counter, a flag, a zero buffer) that the body makes per-student costs one more pass
    over the whole body, and a stopping flag read by the predicate yet another. Passes multiply through
    nested loops and ``cond`` (whose rule batches each branch twice): in the engine's twice-vmapped step
    the loops of seed 002's heads and the Lanczos were batched 3-6 times each. Starting from a carry
    that is batched already, the rule settles in one pass. Tracing only: the batched loop is the one the
    passes would reach, ``select(p, x, x)`` is ``x`` bit for bit whatever ``p`` (NaN included), and XLA
    folds it away.
    """
    first = jnp.ravel(like)[:1]
    varies = jnp.any(first != first)  # a scalar batched exactly where `like` is (its value is irrelevant)
    return jax.tree_util.tree_map(lambda x: jnp.where(varies, x, x), tree)
