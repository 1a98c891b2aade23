"""How far is the exact-gradient engine from the signal-only theory, as the width grows? (seed 000, Sec. 4)

The closed forms of lrsweep.families.layer_balancing.theories are exact expectations of the paper's *gradient approximation*
(signal-only update). This script trains exact-gradient students (x64) at the paper's learning-rate
scalings, eta ~ h^{3/2} for the 2-NN and eta ~ h^{2/3} for the 3-NN (orthogonal init and design,
h = d = n), and prints the relative gap (mean over seeds - theory) / theory per width and step as a
markdown table, next to the signal-only students' residual in standard errors at the same points
(which must be noise: that is the theory's own check). The headline gap pairs each exact-gradient
student with the signal-only student of the same seed, so Monte Carlo noise cancels.

    python scripts/gap_table.py                      # widths 64 128 256 512 1024 (~5 min on 2 cores)
    python scripts/gap_table.py --widths 64 128      # quicker
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import pandas as pd

from lrsweep import compare
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core import store

FAMILIES = {
    # name: (parameterization, n_layers, target, theory, alpha, line totals C / h^alpha)
    "2-NN": ("paper_2nn", 2, "orthonormal", "layer_balancing.two_layer_orthonormal_target", 1.5, [1.0, 2.0]),
    "3-NN": ("paper_deep", 3, "gaussian", "layer_balancing.three_layer", 2 / 3, [0.5, 1.0]),
}


def paired_gap(run, table: pd.DataFrame) -> pd.Series:
    """Per (step, point): seed mean of (exact-gradient loss - signal-only loss) of the SAME seed
    (same init and data), over the theory's prediction. Pairing removes the Monte Carlo noise of the
    heavy-tailed losses, leaving the approximation error of the surrogate."""
    curves = store.load(run)
    wide = curves.pivot_table(index=["seed", "step", "lr_1", "lr_2"], columns="gradient", values="test_loss")
    diff = (wide["exact"] - wide["signal_only"]).groupby(level=["step", "lr_1", "lr_2"]).mean()
    pred = table[table["gradient"] == "exact"].set_index(["step", "lr_1", "lr_2"])["prediction"]
    return (diff / pred.abs()).dropna()


def family_table(family: str, widths, seeds: int, out: str) -> pd.DataFrame:
    par, n_layers, target, theory, alpha, totals = FAMILIES[family]
    rows = []
    for h in widths:
        cfg = {"name": f"gap_{family}_{h}", "seeds": {"range": [0, seeds - 1, 1]},
               "task": {"input_dim": h, "n_train": h, "design": "orthogonal", "target": target},
               "model": {"parameterization": par, "n_layers": n_layers, "width": h},
               "init": "orthogonal", "train": {"steps": 2, "log_steps": [1, 2]},
               "grid": {"lr_total": [c * h ** alpha for c in totals], "lr_1_fraction": [0.25, 0.5, 0.75],
                        "gradient": ["exact", "signal_only"]}}
        t0 = time.perf_counter()
        summary = runner.run(config.load_config(cfg), out=out, x64=True, progress=False)
        table = compare.compare(summary.run_dir, [theory])
        paired = paired_gap(summary.run_dir, table)
        for step, g in table.groupby("step"):
            exact = g[g["gradient"] == "exact"]
            surrogate = g[g["gradient"] == "signal_only"]
            rows.append({"family": family, "h": h, "step": int(step),
                         "median_abs_paired_gap": float(paired.loc[step].abs().median()),
                         "max_abs_paired_gap": float(paired.loc[step].abs().max()),
                         "median_abs_rel_gap": float(exact["rel_gap"].abs().median()),
                         "max_abs_rel_gap": float(exact["rel_gap"].abs().max()),
                         "signal_only_max_abs_z": float(surrogate["z"].abs().max()),
                         "seconds": round(time.perf_counter() - t0, 1)})
    return pd.DataFrame(rows)


def markdown(df: pd.DataFrame, fmt=lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)) -> str:
    """A pandas frame as a GitHub markdown table (no extra dependency)."""
    df = df.reset_index()
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        table = pd.concat([family_table(f, args.widths, args.seeds, out) for f in args.families], ignore_index=True)
    print(f"exact-gradient engine vs signal-only theory, x64, {args.seeds} seeds, lines C = c h^alpha, "
          f"eta_1 / C in (0.25, 0.5, 0.75)\n")
    wide = table.pivot_table(index=["family", "step"], columns="h", values="median_abs_paired_gap")
    print("median over points of |E[exact-gradient loss - signal-only loss]| / theory, same seeds paired "
          "(rows: family, step; columns: width h)\n")
    print(markdown(wide.rename(columns=lambda h: f"h={h}"), lambda v: f"{v:.2e}" if isinstance(v, float) else str(v)))
    print("\nfull table\n")
    print(markdown(table.set_index("family")))
    # The gap should shrink with h: report the fitted power of h per (family, step).
    for (family, step), g in table.groupby(["family", "step"]):
        slope = np.polyfit(np.log(g["h"]), np.log(g["median_abs_paired_gap"]), 1)[0] if len(g) > 1 else float("nan")
        print(f"{family} step {step}: median paired gap ~ h^{slope:.2f}")


if __name__ == "__main__":
    main()
