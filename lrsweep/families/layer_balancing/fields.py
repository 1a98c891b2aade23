"""Seed 000's learning-rate axis ``lr_line``: each value C stands for the authors' points on the line
eta_1 + ... + eta_m = C (:func:`authors_line_grid`; eta_1 from the grid, the other layers share the rest
equally). Stored as ``lr_line`` beside lr_1..lr_m."""

from __future__ import annotations

from lrsweep import registry
from lrsweep.core import config
from lrsweep.core.columns import is_layer_rate
from lrsweep.core.config import ConfigError

EXPANDED = ("lr_line", "lr_line_eta_1", "lr_line_rest")


def authors_line_grid(lr_total: float) -> list[tuple[float, float]]:
    """The authors' (eta_1, eta_2) points on the line eta_1 + eta_2 = C (seed 000 code).

    step = max(1, C // 20), N = int(C / step), eta_1 = i step, eta_2 = (N - i) step for
    i = 1 .. N-1. Note eta_1 + eta_2 = N step, which equals C when step divides C.
    """
    step = max(1, int(lr_total // 20))
    n = int(lr_total / step)
    return [(float(i * step), float((n - i) * step)) for i in range(1, n)]


def check_axes(names: list, axes: list) -> None:
    """lr_line sets every layer's rate itself: no other rate axis beside it."""
    others = [n for n in names if config.is_rate_axis(n) and n != "lr_line"]
    if "lr_line" in names and any(is_layer_rate(n) or n in ("lr_total", "lr_1_fraction", "lr") for n in others):
        raise ConfigError("grid.lr_line", "lr_line sets every layer's learning rate itself; do not combine it "
                                          "with lr, lr_total, lr_1_fraction or lr_1..lr_L")


def expand(names: tuple, values: list):
    """Each ``lr_line`` value C as its authors' points (names ``lr_line``, ``lr_line_eta_1``, ``lr_line_rest``)."""
    if names != ("lr_line",):
        return None
    points = []
    for (c,) in values:
        line = authors_line_grid(c)
        if not line:
            raise ConfigError("grid.lr_line", f"lr_line={c!r} gives no points (needs C >= 2)")
        points += [(c, e1, e2) for e1, e2 in line]
    return EXPANDED, points


def size(names: tuple, values: list):
    """Students of the axis: each C counts its points; None for another axis."""
    if names != ("lr_line",):
        return None
    return sum(len(authors_line_grid(c)) for (c,) in values)


def label(names: tuple, entry: tuple):
    return f"lr_line={entry[0]!r} (eta_1={entry[1]!r})" if names[0] == "lr_line" else None


def resolve(point: dict, m: int):
    """eta_1 from the authors' point, the rest shared equally by layers 2..m; None off a line grid."""
    if "lr_line_eta_1" not in point:
        return None
    eta_1, rest_total = point["lr_line_eta_1"], point["lr_line_rest"]
    return [eta_1] + [rest_total / (m - 1)] * (m - 1) if m > 1 else [eta_1]


def columns(point: dict, lrs: dict, m_row) -> dict:
    return {"lr_line": point["lr_line"].astype(float)} if "lr_line" in point else {}


def register() -> None:
    registry.register_rate_scheme(registry.RateScheme(
        "line", ("lr_line",), resolve, check_axes=check_axes, columns=columns, expand=expand, size=size,
        label=label, settings=("lr_line",)))
