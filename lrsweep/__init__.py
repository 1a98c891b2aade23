"""lrsweep: learning-rate research at scale in JAX.

Write one config, train a grid of thousands of small students at once (``jit(vmap(scan))``),
store them as Parquet, and compare them with closed-form learning-rate theory.

    >>> import lrsweep
    >>> summary = lrsweep.run(lrsweep.load_config("configs/quickstart.yaml"))  # doctest: +SKIP
    >>> df = lrsweep.load("results/quickstart")                                # doctest: +SKIP
"""

from lrsweep._version import __version__

from lrsweep.core.config import ConfigError, load_config, expand_grid
from lrsweep.core.store import load
from lrsweep import families as _families

_families.load()  # every paper registers its fields, tasks, theories, figures and commands


def run(cfg, out="results", **kwargs):
    """Train every student of ``cfg`` (see :func:`lrsweep.core.runner.run`)."""
    from lrsweep.core.runner import run as _run
    return _run(cfg, out, **kwargs)


def __getattr__(name):
    """``lrsweep.poly`` (exact learning-rate polynomials, e.g. ``lrsweep.poly.evaluate``) imported on first use."""
    if name == "poly":
        import importlib
        return importlib.import_module("lrsweep.core.poly")
    raise AttributeError(f"module 'lrsweep' has no attribute {name!r}")


__all__ = ["ConfigError", "load_config", "expand_grid", "load", "run", "poly", "__version__"]
