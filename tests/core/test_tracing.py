"""lrsweep.core.tracing.varying_like: the same values, fewer batching passes over a loop's body."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsweep.core.tracing import varying_like


def counted_identity():
    """An identity whose vmap rule records each call: one per batching pass over a jaxpr holding it."""
    passes = []

    @jax.custom_batching.custom_vmap
    def identity(x):
        return x

    @identity.def_vmap
    def rule(axis_size, in_batched, x):
        passes.append(in_batched)
        return x, in_batched[0]

    return identity, passes


def halving_loop(prepare):
    """vmap of a while loop halving w until it is small, from a carry (w, done flag, counter) of which
    only w depends on the student; ``prepare(carry, w)`` is applied to the initial carry."""
    identity, passes = counted_identity()

    def one(w):
        def body(state):
            w, _, k = state
            w = identity(w) * 0.5
            return w, jnp.max(jnp.abs(w)) < 1e-3, k + 1

        state = prepare((w, jnp.array(False), jnp.array(0)), w)
        return jax.lax.while_loop(lambda s: ~s[1] & (s[2] < 60), body, state)

    out = jax.vmap(one)(jnp.array([[1.0, -2.0], [40.0, 3.0], [0.0, 0.0]]))
    return out, passes


def test_a_batched_initial_carry_batches_the_loop_body_once():
    """The plain carry takes three passes of while_loop's batching rule (w batched; then the flag; then,
    the predicate being batched, everything); through varying_like, one. The loop's results are the same
    (the counter differs per student: the loop ran under vmap with a per-student stop)."""
    plain, plain_passes = halving_loop(lambda carry, like: carry)
    varied, varied_passes = halving_loop(varying_like)
    assert len(plain_passes) == 3
    assert len(varied_passes) == 1
    for a, b in zip(plain, varied):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(varied[2]), [11, 16, 1])


@pytest.mark.parametrize("batched", [False, True])
def test_varying_like_changes_no_bit(x64, batched):
    """Every value comes back bit for bit, NaN payload, -0.0, inf and subnormals included, whether the
    reference array is NaN or not, outside vmap and under it (where the leaves come back batched)."""
    special = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 5e-324, -1.5, 1e308])
    tree = {"a": jnp.asarray(special), "k": jnp.array(7, jnp.int32), "flag": jnp.array(False)}
    likes = jnp.array([[1.0, 2.0], [np.nan, 0.0]])
    if batched:
        out = jax.vmap(lambda like: varying_like(tree, like))(likes)
        assert out["a"].shape == (2, special.size)
        rows = [jax.tree_util.tree_map(lambda x: x[i], out) for i in range(2)]
    else:
        rows = [varying_like(tree, like) for like in likes]
    for row in rows:
        assert np.asarray(row["a"]).tobytes() == special.tobytes()
        assert int(row["k"]) == 7 and not bool(row["flag"])
