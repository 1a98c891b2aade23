"""Exact learning-rate polynomials (seed 000, Sec. 3-4): one coefficient computation per seed
serves a whole grid of learning rates.

- :mod:`lrsweep.core.poly.algebra`: the recursion on polynomial coefficients (jax) and its cost plan;
- :mod:`lrsweep.core.poly.numerics`: evaluation at learning rates, divergence, conditioning (numpy);
- :mod:`lrsweep.core.poly.stored`: the coefficient table and :func:`evaluate` of a stored run (no jax);
- :mod:`lrsweep.core.drivers.poly`: the driver that computes them in a run (``train.mode: poly``).

``lrsweep.core.poly.evaluate(run, lr_1=..., lr_2=..., step=...)`` imports neither the engine nor jax.
Other names resolve lazily from those modules (``lrsweep.core.poly.plan`` imports the algebra).
"""

import importlib

from lrsweep.core.poly.stored import evaluate

_HOMES = ("lrsweep.core.poly.numerics", "lrsweep.core.poly.stored", "lrsweep.core.poly.algebra", "lrsweep.core.drivers.poly")


def __getattr__(name):
    for home in _HOMES:
        module = importlib.import_module(home)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module 'lrsweep.core.poly' has no attribute {name!r}")


__all__ = ["evaluate"]
