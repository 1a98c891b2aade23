"""Optimizers as optax transforms whose hyperparameters are traced arrays.

A learning rate passed as a Python float would be baked into the compiled program; here every
rate is an array in the vmapped student axis, so one compiled program serves the whole grid.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def scale_by_layer(lr_per_layer: jax.Array) -> optax.GradientTransformation:
    """Multiply the l-th leaf of the update by -eta_l (per-layer GD, seed 000 eq. for W_l^{t+1}).

    Args:
      lr_per_layer: (m,) array, eta_1..eta_m, one per leaf of the params tuple (in order).
    """
    def init_fn(params):
        del params
        return optax.EmptyState()

    def update_fn(updates, state, params=None):
        del params
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        scaled = [-lr_per_layer[i].astype(g.dtype) * g for i, g in enumerate(leaves)]
        return jax.tree_util.tree_unflatten(treedef, scaled), state

    return optax.GradientTransformation(init_fn, update_fn)


def make_optimizer(name: str, lr_per_layer: jax.Array) -> optax.GradientTransformation:
    """The update rule named by ``train.optimizer`` with per-layer rates as data."""
    if name == "gd":
        return scale_by_layer(lr_per_layer)
    raise ValueError(f"train.optimizer: unknown '{name}'; allowed: gd")


def lr_array(lrs, dtype=None) -> jax.Array:
    return jnp.asarray(lrs, dtype=dtype)
