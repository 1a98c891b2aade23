"""Exact learning-rate polynomials (seed 000, Sec. 3-4): one coefficient computation per seed
serves a whole grid of learning rates.

- :mod:`lrsweep.poly.algebra`: the recursion on polynomial coefficients (jax) and its cost plan;
- :mod:`lrsweep.poly.numerics`: evaluation at learning rates, divergence, conditioning (numpy);
- :mod:`lrsweep.poly.stored`: the coefficient table and :func:`evaluate` of a stored run (no jax);
- :mod:`lrsweep.drivers.poly`: the driver that computes them in a run (``train.mode: poly``).

``lrsweep.poly.evaluate(run, lr_1=..., lr_2=..., step=...)`` imports neither the engine nor jax.
Other names resolve lazily from those modules (``lrsweep.poly.plan`` imports the algebra).
"""

import importlib

from lrsweep.poly.stored import evaluate

_HOMES = ("lrsweep.poly.numerics", "lrsweep.poly.stored", "lrsweep.poly.algebra", "lrsweep.drivers.poly")


def __getattr__(name):
    for home in _HOMES:
        module = importlib.import_module(home)
        if hasattr(module, name):
            return getattr(module, name)
    raise AttributeError(f"module 'lrsweep.poly' has no attribute {name!r}")


__all__ = ["evaluate"]
