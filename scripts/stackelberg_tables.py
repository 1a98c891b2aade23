"""Markdown tables of seed 002's comparisons (the README's tables), from stored runs and the width-1 model.

For each run given: the distance to the best-response run against the head/body ratio (seed mean; the
exponent over the largest half of the ratios, mean of the seeds' slopes +- SE), phi_sharpness beside
sharpness early and late, and the equal-budget steps to target, as far as the run has the students for
each (lrsweep.families.stackelberg.checks). ``--width-one`` prints the exact width-1 model's steps to target
against the init scale (lrsweep.families.stackelberg.theory: GD's saddle escape against the best response).

    python scripts/stackelberg_tables.py results/ratio_linear_cpu/<run_id> results/curvature_cpu/<run_id>
    python scripts/stackelberg_tables.py --width-one
"""
from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

from lrsweep.core import store
from lrsweep.families.stackelberg import theory as sb
from lrsweep.families.stackelberg import checks as sc


def markdown(df: pd.DataFrame) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, (float, np.floating)) else str(v)
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def distance_table(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """Rows: configuration and body rate; columns: the ratios (seed-mean distance, "div" where a seed
    diverged), the exponent and whether the distance decreases."""
    summary = sc.distance_summary(students, curves)
    fits = sc.distance_fits(students, curves).set_index(["configuration", "lr_body"])
    rows = []
    for (config, body), g in summary.groupby(["configuration", "lr_body"], sort=True):
        metric = g["metric"].iloc[0]
        row = {"configuration": config, "lr_body": body, "distance": metric.replace("_distance", "")}
        for _, r in g.iterrows():
            row[f"r={r['lr_ratio']:g}"] = "div" if r["n_diverged"] else float(r[metric])
        fit = fits.loc[(config, body)]
        row["exponent"] = (f"{fit['slope']:+.2f} ± {fit['se']:.2f} (r ≥ {fit['fit_ratios'][0]:g})"
                           if np.isfinite(fit["slope"]) else "n/a")
        row["decreasing"] = {True: "yes", False: f"no (r={fit['first_rise']:g})", None: "n/a"}[fit["decreasing"]]
        rows.append(row)
    return pd.DataFrame(rows)


def curvature_table(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    s = sc.curvature_summary(students, curves)
    table = s[["configuration", "n_seeds", "early_steps", "phi_early", "sharpness_early", "ratio_early", "phi_late",
               "sharpness_late", "ratio_late"]].rename(columns={"early_steps": "early: t ≤"})
    if s["body_ratio_early"].notna().any():  # the run logged body_sharpness: phi against the body block L_MM too
        table = table.assign(body_sharpness_early=s["body_sharpness_early"], body_ratio_early=s["body_ratio_early"],
                             body_ratio_late=s["body_ratio_late"], **init_ratios(s, curves))
    return table


def init_ratios(summary: pd.DataFrame, curves: pd.DataFrame) -> dict:
    """Per configuration of ``summary``: phi_sharpness / sharpness and phi_sharpness / body_sharpness at step 0,
    "min-max" over the seeds."""
    c = curves[curves["step"] == 0]
    c = c.assign(configuration=sc._labels(curves, rates=True).loc[c.index])
    span = lambda v: f"{np.nanmin(v):.3g}-{np.nanmax(v):.3g}"
    full, body = [], []
    for config in summary["configuration"]:
        g = c[c["configuration"] == config]
        full.append(span(g["phi_sharpness"] / g["sharpness"]))
        body.append(span(g["phi_sharpness"] / g["body_sharpness"]))
    return {"init ratio (full)": full, "init ratio (body)": body}


def budget_table(students: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    s = sc.equal_budget_summary(students, curves)
    rows = []
    for (config, total), g in s.groupby(["configuration", "lr_total"], sort=True):
        row = {"configuration": config, "lr_total": total, "target": float(g["target"].iloc[0])}
        for _, r in g.iterrows():
            row[f"r={r['lr_ratio']:g}"] = float(r["median_steps"])
        row["first"] = f"r={g['winner'].iloc[0]:g}"
        row["uniform loses"] = {True: "yes", False: "no", None: "n/a"}[g["uniform_loses"].iloc[0]]
        rows.append(row)
    return pd.DataFrame(rows)


SCALES = [1.0, 0.3, 0.1, 0.03, 0.01, 1e-3, 1e-4]


def width_one_table(lr_body=0.05, theta=1.3, steps=20000) -> pd.DataFrame:
    """Steps to 1% of b^2 / 2 (b = 1) from u0 = s (cos theta, sin theta), w0 = s / 2, by the exact recursion."""
    direction = (math.cos(theta), math.sin(theta))
    runs = [("gd, r=1", "simultaneous", 1.0, 0.0), ("gd, r=10", "simultaneous", 10.0, 0.0),
            ("alternating, r=10", "alternating", 10.0, 0.0), ("best response", "best_response", 0.0, 0.0),
            ("best response, ridge 0.01", "best_response", 0.0, 0.01)]
    rows = []
    for name, rule, ratio, ridge in runs:
        hit = sb.width_one_steps_to_target(1.0, direction, 0.5, SCALES, lr_body, lr_body * ratio, steps, 0.005, rule,
                                           ridge)
        rows.append({"run": name, **{f"s={s:g}": (f"> {steps}" if math.isinf(h) else int(h)) for s, h in zip(SCALES, hit)}})
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="*", help="run directories (or sweep directories: their latest runs)")
    parser.add_argument("--width-one", action="store_true", help="the width-1 model's steps to target vs init scale")
    args = parser.parse_args(argv)
    if args.width_one:
        print("### Width-1 model: steps to target against the init scale s (alpha = 0.05)\n")
        print(markdown(width_one_table()) + "\n")
    for run in args.runs:
        students, curves = store.load(run, "students"), store.load(run)
        for title, build in (("Distance to the best-response run", distance_table),
                             ("phi_sharpness and sharpness", curvature_table),
                             ("Equal budget: median steps to target", budget_table)):
            table = build(students, curves)
            if not table.empty:
                print(f"### {title}: {run}\n\n{markdown(table)}\n")


if __name__ == "__main__":
    main()
