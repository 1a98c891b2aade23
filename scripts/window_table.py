"""The README's catapult-window table: `lrsweep boundary` on the one-hidden-layer linear network on
degenerate data (seed 003 Theorem 2) against the exact scalar recursion, per loss, width m and init scale.

    lrsweep boundary configs/catapult/exponential_window_cpu.yaml --rtol 1e-4
    python scripts/window_table.py results/exponential_window_cpu/<run_id> [--per-unit]

Every output is the same f, so GD is a map of (f, lambda) (lambda = (|u|^2 + |v|^2) / m, the NTK
eigenvalue; seed 003 eqs. 7-8), with g = rho'(f) (rho = cosh: sinh f; logistic: tanh(f / 2) / 2):

    f' = f - eta lambda g + eta^2 g^2 f / m,      lambda' = lambda + (eta g / m)(eta g lambda - 4 f).

(u' = u - a v, v' = v - a u with a = eta g / sqrt(m), and u.v = sqrt(m) f.) In y = eta lambda and
k = eta^2 / m it reads f' = f - y g + k g^2 f, y' = y + k g (g y - 4 f): the phase depends on f_0,
eta lambda_0 and m lambda_0^2 only (k = (eta lambda_0)^2 / (m lambda_0^2)). Per unit the recursion
runs from the unit's own |f_0| (from L_0: theory.weight_from_loss) and lambda_0 with the run's T and
diverge_factor (:func:`lrsweep.families.catapult.theorem2.network_phase`), on a geometric grid of eta lambda_0
refined by bisection at the first change.
Columns: medians over seeds, [min, max] of the measured boundaries, and the largest |measured /
recursion - 1|.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep.families.catapult import theorem2, theory

GRID = {"exponential": np.geomspace(0.5, 20.0, 1001),  # eta lambda_0 scanned by the recursion (ratio 1.0037)
        "logistic": np.geomspace(0.5, 500.0, 2001)}


def recursion_boundaries(loss0, lam0, m, steps, loss, diverge_factor, iters=10):
    """(lazy/catapult, catapult/divergent) in eta lambda_0: the first rate of GRID[loss] whose phase is not
    lazy, resp. divergent, refined by bisection against its lower neighbour (NaN if none)."""
    out = []
    for crossed in (lambda p: p != "lazy", lambda p: p == "divergent"):
        grid = GRID[loss]
        hit = np.flatnonzero(crossed(theorem2.network_phase(loss0, lam0, grid / lam0, m, loss, steps, diverge_factor)))
        if not len(hit) or hit[0] == 0:
            out.append(np.nan)
            continue
        lo, hi = grid[hit[0] - 1], grid[hit[0]]
        for _ in range(iters):
            mid = np.sqrt(lo * hi)
            if crossed(theorem2.network_phase(loss0, lam0, np.array([mid / lam0]), m, loss, steps, diverge_factor)[0]):
                hi = mid
            else:
                lo = mid
        out.append(np.sqrt(lo * hi))
    return out


def measured(run: Path, recursion: bool = True) -> pd.DataFrame:
    """boundaries.parquet with eta_lambda0 (measured), f0, m_lambda0_sq, and where ``recursion``
    predicted (the exact recursion, in eta lambda_0) and err."""
    b = pd.read_parquet(Path(run) / "boundaries.parquet")
    b["eta_lambda0"] = np.where(b["bracketed"], b["lr"] * b["initial_ntk_eig"], np.nan)
    b["f0"] = [float(theory.weight_from_loss(l0, loss)) for l0, loss in zip(b["initial_train_loss"], b["loss"])]
    b["m_lambda0_sq"] = b["width"] * b["initial_ntk_eig"] ** 2
    b["predicted"] = np.nan
    if recursion:
        for _, u in b.drop_duplicates("unit_id").iterrows():
            pred = recursion_boundaries(u["initial_train_loss"], u["initial_ntk_eig"], u["width"], int(u["steps"]), u["loss"],
                                        float(u["diverge_factor"]))
            for name, value in zip(("lazy/catapult", "catapult/divergent"), pred):
                b.loc[(b["unit_id"] == u["unit_id"]) & (b["boundary"] == name), "predicted"] = value
    b["err"] = (b["eta_lambda0"] / b["predicted"] - 1).abs()
    return b


def per_unit(run: Path, recursion: bool = True) -> str:
    """One row per unit (loss, m, init scale, seed), sorted by |f_0|: the window measured (and by the
    recursion)."""
    b = measured(run, recursion)
    w = b.pivot(index="unit_id", columns="boundary", values=["eta_lambda0", "predicted"])
    w.columns = [f"{value} {boundary}" for value, boundary in w.columns]
    units = b.drop_duplicates("unit_id").set_index("unit_id")[["loss", "width", "init_scale", "seed", "f0",
                                                             "initial_ntk_eig", "m_lambda0_sq"]]
    units = units.join(w).sort_values(["loss", "width", "f0"])
    rows = ["| loss | m | init scale | seed | abs f_0 | lambda_0 | m lambda_0^2 | lazy/catapult measured | recursion "
            "| catapult/divergent measured | recursion |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for _, r in units.iterrows():
        rows.append(f"| {r['loss']} | {r['width']} | {r['init_scale']:g} | {r['seed']} | {r['f0']:.3g} | "
                    f"{r['initial_ntk_eig']:.3g} | {r['m_lambda0_sq']:.3g} | "
                    f"{r['eta_lambda0 lazy/catapult']:.4f} | {r['predicted lazy/catapult']:.4f} | "
                    f"{r['eta_lambda0 catapult/divergent']:.4f} | {r['predicted catapult/divergent']:.4f} |")
    return "\n".join(rows)


def table(run: Path) -> str:
    b = measured(run)
    rows = ["| loss | m | init scale | seeds | abs f_0 | lambda_0 | m lambda_0^2 | lazy/catapult eta lambda_0: measured "
            "[min, max] | recursion | max rel. err | catapult/divergent eta lambda_0: measured [min, max] | recursion "
            "| max rel. err |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    fmt = lambda s: "never" if s.isna().all() else (f"{s.median():.4f} [{s.min():.4f}, {s.max():.4f}]"
                                                   + (f" ({int(s.isna().sum())} never)" if s.isna().any() else ""))
    for (loss, m, scale), g in b.groupby(["loss", "width", "init_scale"]):
        lo, hi = g[g["boundary"] == "lazy/catapult"], g[g["boundary"] == "catapult/divergent"]
        err = lambda s: f"{s.max():.1e}" if s.notna().any() else "-"
        rows.append(f"| {loss} | {m} | {scale:g} | {len(lo)} | {lo['f0'].median():.3g} | "
                    f"{lo['initial_ntk_eig'].median():.3g} | {lo['m_lambda0_sq'].median():.3g} | {fmt(lo['eta_lambda0'])} | "
                    f"{lo['predicted'].median():.4f} | {err(lo['err'])} | {fmt(hi['eta_lambda0'])} | "
                    f"{hi['predicted'].median():.4f} | {err(hi['err'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    ap.add_argument("--per-unit", action="store_true", help="one row per unit (seed), sorted by |f_0|")
    ap.add_argument("--no-recursion", action="store_true", help="measured values only (--per-unit; fast)")
    args = ap.parse_args()
    print(per_unit(args.run, not args.no_recursion) if args.per_unit else table(args.run))
