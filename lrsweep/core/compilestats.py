"""How much of a run went to XLA compilation, and how much the persistent cache saved.

JAX reports every backend compilation (``/jax/core/compile/backend_compile_duration``: a real
compile, or a load from the persistent compilation cache) and every cache hit
(``/jax/compilation_cache/cache_hits``) through :mod:`jax.monitoring`. :class:`CompileStats`
listens while a run trains, so a run's meta.json says how many programs it needed, how many
came from the cache, and the seconds spent compiling the others: a repeated or resumed sweep
on the same machine and versions compiles nothing (``compiled == 0``).
"""

from __future__ import annotations

import dataclasses
import threading

BACKEND_COMPILE = "/jax/core/compile/backend_compile_duration"
CACHE_HIT = "/jax/compilation_cache/cache_hits"


@dataclasses.dataclass
class CompileStats:
    """Counters filled while :meth:`listening`: ``programs`` (backend compilations requested),
    ``cache_hits`` (of those, loaded from the persistent cache), ``compile_s`` (seconds compiling the
    rest), ``load_s`` (seconds loading the hits)."""
    programs: int = 0
    cache_hits: int = 0
    compile_s: float = 0.0
    load_s: float = 0.0
    compiled_names: dict = dataclasses.field(default_factory=dict)  # program name -> times compiled

    def __post_init__(self):
        self._hit = threading.local()

    @property
    def compiled(self) -> int:
        """Programs compiled by XLA (not found in the persistent cache)."""
        return self.programs - self.cache_hits

    def _on_event(self, event: str, **kwargs) -> None:
        if event == CACHE_HIT:
            self.cache_hits += 1
            self._hit.pending = True  # the duration event of the same compile request follows

    def _on_duration(self, event: str, duration: float, **kwargs) -> None:
        if event != BACKEND_COMPILE:
            return
        self.programs += 1
        if getattr(self._hit, "pending", False):
            self.load_s += duration
            self._hit.pending = False
        else:
            self.compile_s += duration
            name = str(kwargs.get("fun_name", "?"))
            self.compiled_names[name] = self.compiled_names.get(name, 0) + 1

    def listening(self):
        """Context manager: count the compilations inside it."""
        return _Listening(self)

    def as_dict(self) -> dict:
        return {"programs": self.programs, "cache_hits": self.cache_hits, "compiled": self.compiled,
                "compile_s": round(self.compile_s, 3), "load_s": round(self.load_s, 3),
                "compiled_names": dict(sorted(self.compiled_names.items()))}

    def line(self) -> str:
        """One line for the run summary."""
        if self.programs == 0:
            return "compile: nothing to compile (every program already in memory)"
        return (f"compile: {self.programs} program(s), {self.cache_hits} from the persistent cache "
                f"({self.load_s:.2f} s), {self.compiled} compiled ({self.compile_s:.2f} s)")


class _Listening:
    def __init__(self, stats: CompileStats):
        self.stats = stats

    def __enter__(self) -> CompileStats:
        from jax import monitoring
        monitoring.register_event_listener(self.stats._on_event)
        monitoring.register_event_duration_secs_listener(self.stats._on_duration)
        return self.stats

    def __exit__(self, *exc) -> None:
        from jax._src import monitoring as _monitoring  # the public module has no unregister
        for name, fn in (("unregister_event_listener", self.stats._on_event),
                         ("unregister_event_duration_listener", self.stats._on_duration)):
            unregister = getattr(_monitoring, name, None)  # private: a jax release may move it
            if unregister is None:
                continue  # the listener stays: it only counts, and this run's stats are already read
            try:
                unregister(fn)
            except (AssertionError, ValueError):  # already gone (e.g. cleared by another library)
                pass
