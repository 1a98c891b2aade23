"""The papers, one package each, plugged into the core through :mod:`lrsweep.registry`.

:func:`load` imports every built-in family (``BUILTIN``) and every plug-in named in the environment
variable ``LRSWEEP_FAMILIES`` (comma-separated module names, e.g. a package of your own outside
lrsweep), once; importing a family registers its fields, tasks, metrics, step hooks, theories,
checks, figures, run kinds and commands. ``import lrsweep`` calls it, so the registry is complete
wherever lrsweep is used. Nothing outside this package imports a family module.
"""

from __future__ import annotations

import importlib
import os

BUILTIN = ("layer_balancing", "catapult", "schedules", "stackelberg")
PLUGINS_ENV = "LRSWEEP_FAMILIES"
LOADED: list[str] = []


def load(extra: tuple[str, ...] = ()) -> list[str]:
    """Import the built-in families, the plug-ins of ``$LRSWEEP_FAMILIES`` and ``extra`` (module names),
    each once; returns the names loaded so far."""
    plugins = [m.strip() for m in os.environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for name in [f"{__name__}.{b}" for b in BUILTIN] + plugins + list(extra):
        if name not in LOADED:
            importlib.import_module(name)
            LOADED.append(name)
    return list(LOADED)
