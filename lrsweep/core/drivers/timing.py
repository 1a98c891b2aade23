"""Seconds, for ``train.mode: auto`` (:func:`lrsweep.core.drivers.poly.mode_report`): the compile
time of a program, and a small JSON store of the choices made.

The store is ``$LRSWEEP_CACHE_DIR/lrsweep-timing/timing.json`` (default ``~/.cache/lrsweep/jax``;
``off`` keeps it in memory for the process), keyed by the device kind, the dtype and the versions
of lrsweep and jax (:func:`device_key`), so what is measured is measured once per kind of machine
and a choice, once made, is the same for every later run of the same group there.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp

_MEMORY: dict = {}  # the store when LRSWEEP_CACHE_DIR is off, and a read-through copy otherwise


def store_path() -> Path | None:
    """The JSON file of measurements and choices, or None where LRSWEEP_CACHE_DIR is off."""
    cache = os.environ.get("LRSWEEP_CACHE_DIR", str(Path.home() / ".cache" / "lrsweep" / "jax"))
    if cache.lower() in ("", "off", "none"):
        return None
    return Path(cache) / "lrsweep-timing" / "timing.json"


def device_key(dtype=None) -> str:
    """What a measurement holds for: platform, device kind, dtype, lrsweep and jax versions."""
    from lrsweep._version import __version__
    dev = jax.devices()[0]
    dtype = jnp.dtype(dtype or jnp.result_type(float)).name
    return f"{dev.platform}|{dev.device_kind}|{dtype}|lrsweep {__version__}|jax {jax.__version__}"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def lookup(key: str):
    """The stored value of ``key``, or None."""
    if key in _MEMORY:
        return _MEMORY[key]
    path = store_path()
    value = _read(path).get(key) if path is not None else None
    if value is not None:
        _MEMORY[key] = value
    return value


def remember(key: str, value) -> None:
    """Store ``value`` under ``key`` (in the JSON file unless the cache is off; written atomically,
    a failure to write only loses the entry)."""
    _MEMORY[key] = value
    path = store_path()
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = _read(path)
        data[key] = value
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def forget() -> None:
    """Drop the in-memory copy (tests; the JSON file is left alone)."""
    _MEMORY.clear()


def compile_seconds(jitted, *args) -> float:
    """Seconds to lower and compile ``jitted`` for ``args`` (arrays or ShapeDtypeStructs), ahead of
    time. With the persistent compilation cache on (:func:`lrsweep.core.runner.setup_jax`) the
    program is stored, so a later call with arrays of these shapes loads it instead of compiling."""
    t0 = time.perf_counter()
    jitted.lower(*args).compile()
    return time.perf_counter() - t0
