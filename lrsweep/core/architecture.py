"""The geometry of a student, in one place (no jax): trained layers, their names and shapes, output dim.

Seed 000 (arXiv 2606.00340), Sec. 3 and App. F. ``m`` trained matrices named ``W1 .. Wm``:

- ``paper_2nn``:  f(X) = X W1 W2 / h,                 W1 (d, h), W2 (h, h), output dim h.
- ``paper_deep``: f(X) = s(..s(X W1)..Wm) a / sqrt(h), W1 (d, h), Wl (h, h), fixed readout a (h, 1),
  output dim 1; ``n_layers`` = m + 1 counts the readout.
- ``standard``:   f(X) = s(..s(X W1)..W_{m-1}) Wm, every layer trained, Wm (h, output_dim).
- ``ntk``:        the NTK parameterization (seed 003 eq. 3; Lewkowycz et al. 2020): every layer's
  pre-activation divided by sqrt(fan_in), z_1 = X W1 / sqrt(d), z_l = s(z_{l-1}) Wl / sqrt(h),
  f = s(z_{m-1}) Wm / sqrt(h), entries of every Wl ~ N(0, 1), every layer trained. With two layers
  and d = 1 this is seed 003's one-hidden-layer network f = v^T U x / sqrt(m) (m = h; the extracted
  eq. 3 lost the input scaling, which d = 1 makes moot); with one layer, f = w^T x / sqrt(d).
  s is the identity or ReLU, both positively homogeneous (s(c z) = c s(z), c > 0), so the
  per-layer factors multiply out: f is the standard network of the same weights times
  c = 1 / sqrt(d h^(m-1)), which is how every path (autodiff, moments, lowrank, poly) computes it.

Every other module (config validation, init, the engine, the polynomial driver, the benchmarks)
asks this class; none recomputes a shape.
"""

from __future__ import annotations

import dataclasses
import functools
import math

from lrsweep.core.columns import field_value

PARAMETERIZATIONS = ("paper_2nn", "paper_deep", "standard", "ntk")


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
        get = functools.partial(field_value, p)
        par, h = get("model.parameterization"), int(get("model.width"))
        out = h if par == "paper_2nn" else 1 if par == "paper_deep" else int(get("model.output_dim"))  # standard, ntk
        return cls(par, int(get("model.n_layers")), h, int(get("task.input_dim")), out, get("model.activation"))

    @property
    def n_trainable(self) -> int:
        """m: paper_deep's readout is fixed."""
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
        if self.last_layer_is_output:
            shapes[-1] = (shapes[-1][0], self.output_dim)
        return tuple(shapes)

    @property
    def last_layer_is_output(self) -> bool:
        """standard and ntk: the last trained layer gives the output (no activation after it)."""
        return self.parameterization in ("standard", "ntk")

    @property
    def init_gains(self) -> tuple[float, ...]:
        """Per trained layer, the factor on the fan-in-scaled init: sqrt(fan_in) for ntk (entries
        N(0, 1)), 1 otherwise."""
        if self.parameterization == "ntk":
            return tuple(math.sqrt(rows) for rows, _ in self.shapes)
        return (1.0,) * self.n_trainable

    @property
    def output_scale(self) -> float:
        """c: 1/h (paper_2nn), 1/sqrt(h) (paper_deep), 1 (standard), prod_l 1/sqrt(fan_in_l) (ntk)."""
        if self.parameterization == "ntk":
            return 1.0 / math.sqrt(math.prod(rows for rows, _ in self.shapes))
        return {"paper_2nn": 1.0 / self.width, "paper_deep": 1.0 / math.sqrt(self.width)}.get(
            self.parameterization, 1.0)

    @property
    def has_readout(self) -> bool:
        """paper_deep's fixed readout vector a (not trained; seed 002's head is the trained last layer)."""
        return self.parameterization == "paper_deep"

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear"

    @property
    def n_params(self) -> int:
        return sum(r * c for r, c in self.shapes)
