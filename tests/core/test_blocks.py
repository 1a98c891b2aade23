"""lrsweep.core.blocks.vmap_in_blocks: a per-student function that under (nested) vmap runs as a
lax.map over blocks of students gives what plain vmap gives, and really runs in blocks."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lrsweep.core.blocks import vmap_in_blocks


def student(params, data, scale):
    """A per-student function with a pytree in and out: a few matrix-vector steps and a norm."""
    w = params["w"]
    for _ in range(3):
        w = jnp.tanh(data @ w) * scale + params["b"]
    return {"value": jnp.sum(w * w), "vector": w}


def inputs(u, p, rng):
    """Instances on the outer axis (their data shared by the points), points on the inner one."""
    params = {"w": rng.normal(size=(u, p, 5)), "b": rng.normal(size=(u, p, 5))}
    return params, rng.normal(size=(u, 5, 5)), rng.normal(size=(p,))


def nested(fn):
    """The engine's layout: points inner (data broadcast), instances outer (``scale`` per point only)."""
    return jax.jit(jax.vmap(jax.vmap(fn, in_axes=(0, None, 0)), in_axes=(0, 0, None)))


@pytest.mark.parametrize("per_block", [1, 2, 3, 7, 15, 100])
def test_blocks_equal_plain_vmap_under_nested_vmaps(x64, per_block):
    """3 instances x 5 points: blocks of single rows, padded blocks (2, 3, 7: 5 is not a multiple),
    blocks spanning instances (7, 15) and one block (100); equal to x64 round-off."""
    params, data, scale = inputs(3, 5, np.random.default_rng(0))
    want = nested(student)(params, data, scale)
    got = nested(vmap_in_blocks(student, per_block))(params, data, scale)
    for name in ("value", "vector"):
        assert got[name].shape == want[name].shape
        np.testing.assert_allclose(got[name], want[name], rtol=1e-13, atol=1e-15, err_msg=name)


def test_without_vmap_it_is_the_function(x64):
    params, data, scale = inputs(1, 1, np.random.default_rng(1))
    one = ({k: v[0, 0] for k, v in params.items()}, data[0], scale[0])
    got, want = vmap_in_blocks(student, 2)(*one), student(*one)
    np.testing.assert_allclose(got["vector"], want["vector"], rtol=1e-13)  # staged (one program) vs op by op


def test_blocks_are_lax_map_over_blocks_of_students():
    """6 instances x 8 points in blocks of 4: a loop over 6 instances, each a loop over 2 blocks of 4
    points (rows of (4, 5) weights); one block of everything: no loop."""
    params, data, scale = inputs(6, 8, np.random.default_rng(2))
    text = nested(vmap_in_blocks(student, 4)).lower(params, data, scale).as_text()
    assert text.count("stablehlo.while") == 2
    assert "tensor<2x4x5xf" in text  # the inner loop's blocks: 2 blocks of 4 points
    text = nested(vmap_in_blocks(student, 48)).lower(params, data, scale).as_text()
    assert "stablehlo.while" not in text
