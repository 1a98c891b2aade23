"""One training point (Lewkowycz et al. 2020, arXiv 2003.02218, Sec. 2; seed 003 builds on it).

The input is x = 1 (``input_dim`` 1, ``n_train`` 1) with label y = ``task.label`` (default 0),
trained with mse: L = (f - y)^2 / 2. With the 2-layer ``ntk`` student f = v^T u / sqrt(m) this is
the *uv model*, whose loss f^2 / 2 and NTK eigenvalue lambda = (|u|^2 + |v|^2) / m follow closed
recursions (:mod:`lrsweep.families.catapult.theory`). There is no test set: the train loss is the
task's only loss.
"""

from __future__ import annotations

import jax.numpy as jnp

from lrsweep.core.tasks import base as tasks


def make_data(spec, keys, hp, dtype) -> dict:
    del keys
    out = spec.arch.output_dim
    return {"x": jnp.ones((1, 1), dtype), "y": jnp.full((1, out), hp["label"], dtype)}


TASK = tasks.Task("single_point", make_data, lambda spec, ctx: {}, lambda spec: (), tasks.fixed_set_batch,
                  lambda spec: False)
