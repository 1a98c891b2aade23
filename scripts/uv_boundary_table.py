"""The README's uv-model table: measured phase boundaries of `lrsweep boundary` against theory.

    lrsweep boundary configs/catapult/uv_width_cpu.yaml
    python scripts/uv_boundary_table.py results/uv_width_cpu/<run_id>

Per width m (median over seeds, in units of 1 / lambda_0): the measured lazy/catapult boundary
against the finite-width eta_- = 4 / (lambda_0 + sqrt(lambda_0^2 - 8 f_0^2 / m)) and the wide limit 2,
the measured catapult/divergent boundary against the exact recursion's rate for the run's T and
diverge_factor and the wide limit 4, and the largest |measured / predicted - 1| over seeds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from lrsweep.families.catapult import theory as catapult


def table(run: Path) -> str:
    b = pd.read_parquet(Path(run) / "boundaries.parquet")
    b = b[b["bracketed"]].copy()
    lam, loss0, m = b["initial_ntk_eig"].to_numpy(), b["initial_train_loss"].to_numpy(), b["width"].to_numpy()
    rise = b["boundary"] == "lazy/catapult"
    pred = np.where(rise, catapult.uv_lazy_boundary(loss0, lam, m), np.nan)
    for i in np.flatnonzero(~rise.to_numpy()):
        r = b.iloc[i]
        pred[i] = catapult.uv_divergence_boundary(r["initial_train_loss"], r["initial_ntk_eig"], r["width"],
                                                  int(r["steps"]), float(r["diverge_factor"]))
    b["measured"], b["predicted"] = b["lr"] * lam, pred * lam
    b["rho"] = 2 * loss0 / (m * lam ** 2)  # f_0^2 / (m lambda_0^2)
    b["err"] = (b["lr"] / pred - 1).abs()
    rows = ["| m | seeds | rho = f_0^2/(m lambda_0^2) | lazy/catapult: measured eta lambda_0 | eta_- lambda_0 (finite m) "
            "| max rel. error | catapult/divergent: measured eta lambda_0 | exact recursion | max rel. error |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for width, g in b.groupby("width"):
        lo, hi = g[g["boundary"] == "lazy/catapult"], g[g["boundary"] == "catapult/divergent"]
        rows.append(f"| {width} | {len(lo)} | {lo['rho'].median():.2e} | {lo['measured'].median():.4f} | "
                    f"{lo['predicted'].median():.4f} | {lo['err'].max():.1e} | {hi['measured'].median():.4f} | "
                    f"{hi['predicted'].median():.4f} | {hi['err'].max():.1e} |")
    return "\n".join(rows)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path)
    print(table(ap.parse_args().run))
