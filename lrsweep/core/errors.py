"""The errors lrsweep reports to a user: one line each, and ``lrsweep`` exits 2 on any of them.

Everything a user can fix (bad input, a run another process is writing, an unreadable file)
raises a subclass of :class:`LrsweepError`; the CLI prints ``lrsweep: <message>`` and exits 2.
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class LrsweepError(Exception):
    """Base of every user-facing error; ``str(e)`` is the whole one-line message."""

    prefix = ""  # printed before the message by the CLI (e.g. "config error: ")


class ConfigError(LrsweepError, ValueError):
    """A config field (or CLI option) is missing, unknown, of the wrong type or out of range."""

    prefix = "config error: "

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


class StoreError(LrsweepError, OSError):
    """A stored run cannot be read as it is: an unreadable or inconsistent file (named in the message)."""

    def __init__(self, path, message: str):
        self.path = path
        super().__init__(f"{path}: {message}")


class RunLockedError(LrsweepError):
    """Another process holds the run's write lock."""
