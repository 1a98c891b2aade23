"""The package version (a leaf, so the run metadata can read it without importing lrsweep)."""

__version__ = "0.1.0"
