"""The geometry of a student, in one place (no jax): trained layers, their names and shapes, output dim.

Seed 000 (arXiv 2606.00340), Sec. 3 and App. F. ``m`` trained matrices named ``W1 .. Wm``:

- ``paper_2nn``:  f(X) = X W1 W2 / h,                 W1 (d, h), W2 (h, h), output dim h.
- ``paper_deep``: f(X) = s(..s(X W1)..Wm) a / sqrt(h), W1 (d, h), Wl (h, h), fixed head a (h, 1),
  output dim 1; ``n_layers`` = m + 1 counts the head.
- ``standard``:   f(X) = s(..s(X W1)..W_{m-1}) Wm, every layer trained, Wm (h, output_dim).

Every other module (config validation, init, the engine, the polynomial driver, the benchmarks)
asks this class; none recomputes a shape.
"""

from __future__ import annotations

import dataclasses
import math

PARAMETERIZATIONS = ("paper_2nn", "paper_deep", "standard")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Static description of a student (hashable: it keys a compiled program)."""
    parameterization: str
    n_layers: int
    width: int
    input_dim: int
    output_dim: int
    activation: str

    @classmethod
    def from_fields(cls, p: dict) -> "Architecture":
        """From config values keyed by field path (``model.width``) or short name (``width``)."""
        get = lambda path: p[path] if path in p else p[path.split(".")[-1]]
        par, h = get("model.parameterization"), int(get("model.width"))
        out = h if par == "paper_2nn" else 1 if par == "paper_deep" else int(get("model.output_dim"))
        return cls(par, int(get("model.n_layers")), h, int(get("task.input_dim")), out, get("model.activation"))

    @property
    def n_trainable(self) -> int:
        """m: paper_deep's head is fixed."""
        return self.n_layers - 1 if self.parameterization == "paper_deep" else self.n_layers

    @property
    def layer_names(self) -> tuple[str, ...]:
        """``W1 .. Wm``: the keys of the params dict; layer l's rate is the traced ``lr_l``."""
        return tuple(f"W{l}" for l in range(1, self.n_trainable + 1))

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """(rows, columns) of W1 .. Wm."""
        d, h, m = self.input_dim, self.width, self.n_trainable
        shapes = [(d, h)] + [(h, h)] * (m - 1)
        if self.parameterization == "standard":
            shapes[-1] = (shapes[-1][0], self.output_dim)
        return tuple(shapes)

    @property
    def output_scale(self) -> float:
        """c: 1/h (paper_2nn), 1/sqrt(h) (paper_deep), 1 (standard)."""
        return {"paper_2nn": 1.0 / self.width, "paper_deep": 1.0 / math.sqrt(self.width)}.get(
            self.parameterization, 1.0)

    @property
    def has_head(self) -> bool:
        """paper_deep's fixed head a."""
        return self.parameterization == "paper_deep"

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear"

    @property
    def n_params(self) -> int:
        return sum(r * c for r, c in self.shapes)
