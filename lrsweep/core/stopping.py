"""A stop asked for by a signal (Ctrl-C, a scheduler's SIGTERM), kept even where Python loses it.

A signal handler runs at the next bytecode of the main thread, wherever that is. When that is
inside a garbage-collector callback or a ``__del__`` (JAX registers one, ``_xla_gc_callback``),
the ``KeyboardInterrupt`` it raises is printed as "Exception ignored" and dropped, and the run
would go on to the end. So the handler also sets a flag, and every long loop (the runner's chunks,
the bisection's batches, the schedule search's points) calls :func:`check` between units: a lost
interrupt stops the run at the next unit boundary, with everything finished before it stored.
"""
from __future__ import annotations

import contextlib
import signal
import threading

_requested = threading.Event()


def check() -> None:
    """Raise ``KeyboardInterrupt`` when a signal asked for a stop that nothing acted on yet."""
    if _requested.is_set():
        raise KeyboardInterrupt


def _handler(signum, frame):
    _requested.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def signals_stop():
    """Within: SIGTERM and SIGINT raise ``KeyboardInterrupt`` and leave the flag :func:`check` reads.
    Outside the main thread (where handlers cannot be installed) signals are left alone."""
    _requested.clear()
    try:
        old = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        _requested.clear()
