"""Progress of a run: students done (fractional inside a long chunk), students/s, ETA, diverged.

What is counted is named by ``unit`` (default ``student``; ``lrsweep boundary``'s bisection counts
bisections, one per unit and boundary, and no divergences).

:class:`Progress` is created by :func:`lrsweep.core.runner.run` and handed to the drivers
(:class:`lrsweep.core.drivers.GroupContext`). The runner reports finished chunks (:meth:`Progress.update`);
inside a chunk trained in segments the engine calls the plain callback that :meth:`Progress.chunk`
returns, ``on_segment(steps_done, steps_total, n_diverged)``. On a terminal the display is a tqdm
bar; otherwise (a log file, a pipe, a notebook) it is plain lines, at most one every
``interval_s`` seconds and one when the run ends, with no carriage returns::

    lrsweep: 1200/5000 students (24%), 350 students/s, ETA 0:00:11, 12 diverged
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from typing import Callable, TextIO

from lrsweep.core.errors import ConfigError

INTERVAL_S = 30.0  # seconds between two plain lines; LRSWEEP_PROGRESS_EVERY overrides it
INTERVAL_ENV = "LRSWEEP_PROGRESS_EVERY"


def interval_from_env() -> float:
    """Seconds between plain lines: ``LRSWEEP_PROGRESS_EVERY`` if set, else :data:`INTERVAL_S`.
    Raises ConfigError if it is not a number >= 0."""
    value = os.environ.get(INTERVAL_ENV, "").strip()
    if not value:
        return INTERVAL_S
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also NaN
        raise ConfigError(INTERVAL_ENV, f"seconds between progress lines must be a number >= 0, got {value!r}")
    return seconds


class Progress:
    """Counts of a run and their display.

    Args:
      total: students in the run.
      initial: students that already have results (a resumed run).
      enabled: False shows nothing (``--quiet``).
      stream: where to write (default ``sys.stderr`` at creation); a tqdm bar if it is a terminal.
      interval_s: seconds between plain lines (default :data:`INTERVAL_S`, or the environment
        variable ``LRSWEEP_PROGRESS_EVERY``); 0 writes a line at every update.
      clock: seconds, monotonic (tests pass a fake one).
      unit: what ``total`` counts, singular (``student``; ``bisection``): the bar's and the lines' unit.
      diverged: whether to show the diverged count (students diverge; a bisection's rounds do not).
    """

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, stream: TextIO | None = None,
                 interval_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 unit: str = "student", diverged: bool = True):
        self.total, self.initial = int(total), int(initial)
        self.unit, self._show_diverged = unit, diverged
        self.done = self.initial          # students with results
        self.diverged = 0                 # diverged among the students trained since the start
        self._partial = 0.0               # students of the running chunk, scaled by its steps done
        self._partial_diverged = 0
        self._clock = clock
        self._start = clock()
        self._stream = sys.stderr if stream is None else stream
        self._interval = float(interval_s) if interval_s is not None else interval_from_env() if enabled else 0.0
        self._last_line = self._start
        self._last_counts = None          # (students, diverged) of the last plain line
        self._closed = not enabled
        self._bar = None
        if enabled and _isatty(self._stream):
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.total, initial=self.initial, unit=unit, dynamic_ncols=True,
                             file=self._stream)

    @property
    def students(self) -> float:
        """Students done, counting the running chunk's students by the fraction of its steps done."""
        return self.done + self._partial

    @property
    def n_diverged(self) -> int:
        return self.diverged + self._partial_diverged

    def rate(self) -> float:
        """Students per second since the start (0 before any progress)."""
        elapsed = self._clock() - self._start
        return (self.students - self.initial) / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The plain status line."""
        n, rate = self.students, self.rate()
        pct = int(100 * n / self.total) if self.total else 100
        eta = _dt.timedelta(seconds=round((self.total - n) / rate)) if rate > 0 else "?"
        units = f"{self.unit}s"
        return (f"lrsweep: {_count(n)}/{self.total} {units} ({pct}%), {_rate(rate)} {units}/s, ETA {eta}"
                + (f", {self.n_diverged} diverged" if self._show_diverged else ""))

    def set_description(self, text: str) -> None:
        """What is running (the group); shown by the bar only."""
        if self._bar is not None:
            self._bar.set_description(text)

    def chunk(self, n_students: int) -> Callable[[int, int, int], None]:
        """A chunk of ``n_students`` new students starts: its ``on_segment(steps_done, steps_total,
        n_diverged)`` callback (called by the engine after each segment of a long chunk)."""
        def on_segment(steps_done: int, steps_total: int, n_diverged: int) -> None:
            self._partial = n_students * steps_done / steps_total if steps_total else 0.0
            self._partial_diverged = int(n_diverged)
            self._show()
        return on_segment

    def update(self, n_students: int, n_diverged: int = 0) -> None:
        """A chunk finished: ``n_students`` more have results, ``n_diverged`` of them diverged."""
        self.done += int(n_students)
        self.diverged += int(n_diverged)
        self._partial, self._partial_diverged = 0.0, 0
        self._show()

    def close(self) -> None:
        """Final display (the bar closed, or a plain line unless the last one said the same); later
        calls do nothing."""
        if self._closed:
            return
        self._closed = True
        if self._bar is not None:
            self._refresh_bar()
            self._bar.close()
        elif self._last_counts != (self.students, self.n_diverged):
            self._write_line()

    def _show(self) -> None:
        if self._closed:
            return
        if self._bar is not None:
            self._refresh_bar()
        elif self._clock() - self._last_line >= self._interval:
            self._write_line()

    def _refresh_bar(self) -> None:
        self._bar.n = _round(self.students)
        postfix = {f"{self.unit}s/s": _rate(self.rate())}
        if self._show_diverged:
            postfix["diverged"] = self.n_diverged
        self._bar.set_postfix(postfix, refresh=False)
        self._bar.refresh()

    def _write_line(self) -> None:
        self._last_line = self._clock()
        self._last_counts = (self.students, self.n_diverged)
        print(self.line(), file=self._stream, flush=True)


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _round(n: float) -> float | int:
    """Whole counts as ints, fractional ones to 0.1 student."""
    r = round(n, 1)
    return int(r) if float(r).is_integer() else r


def _count(n: float) -> str:
    return str(_round(n))


def _rate(rate: float) -> str:
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"
