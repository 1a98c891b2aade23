"""Seed 004's exponents measured on searched schedules up to long horizons, and whether they converge
to the statements (lrsweep.families.schedules.theory.statements): the README's exponent table and the
convergence figure.

    python scripts/schedule_exponents.py                        # the README's table (N = infinity, T <= 10^6)
    python scripts/schedule_exponents.py --points 2.5,2 --horizons 100,10000,7 --noise-var 10
    python scripts/schedule_exponents.py --n-features 10000 --points 1.5,2 --tag N1e4   # a finite N

For each (a, b) it searches every horizon at once (lrsweep.families.schedules.theory.search: the best
constant, power, polynomial, WSD and cosine schedules and the free optimum, every rate searched), in
blocks of max(1, r min(t, T - t)) steps (section 4 of that module; --resolution r) on the model with
--n-features features (inf: lumped modes and the frozen tail), in float32 with every reported loss
recomputed in float64. It measures per horizon what each statement is about
(lrsweep.families.schedules.theory.exponents), fits every exponent over all horizons (95% interval) and
over sliding windows of --window horizons (local exponents), and writes into --out:

- measurements.parquet (per point, T and schedule), exponents.parquet (per point and quantity),
  local_exponents.parquet (per point, quantity and window);
- local_exponents.png: each local exponent against T, one panel per quantity, the statement as a
  dashed line per point;
- a markdown table on stdout: stated value, local exponent near T = 10^4 and at the largest T, the
  whole-range fit, and the verdict.
"""
import argparse
import math
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

DEFAULT_POINTS = ["3,1.5", "2.5,2", "1.5,2", "1.5,2.5"]


def horizons_of(text: str) -> tuple:
    v = [float(x) for x in text.split(",")]
    if len(v) == 3:
        return tuple(sorted({int(round(h)) for h in np.geomspace(v[0], v[1], int(v[2]))}))
    return tuple(int(x) for x in v)


def measure_point(a, b, n_features, noise_var, batch, horizons, resolution, iterations):
    """Per kind and horizon: the summary columns of lrsweep schedule (a DataFrame), and the seconds."""
    from lrsweep.families.schedules.search import tables
    from lrsweep.families.schedules import theory as rf
    n = math.inf if n_features == "inf" else int(n_features)
    modes = rf.power_law_modes(n, a, b, exact=200, bin_ratio=1.05)
    start = time.perf_counter()
    kinds = ("optimal", "constant", "power", "polynomial", "wsd", "cosine")
    with jax.enable_x64(False):
        result = rf.search(modes, None, noise_var, horizons, kinds=kinds, batch_size=batch, resolution=resolution,
                           iterations=iterations)
    with jax.enable_x64(True):         # every reported loss in float64
        for res in result.values():
            res["curve"] = rf.block_loss_curves(modes, noise_var, res["lr"], res["sizes"], batch)
            res["loss"] = res["curve"][np.arange(len(horizons)), (res["sizes"] > 0).sum(axis=1)]
    point = {"a": a, "b": b, "n_features": float(n), "noise_std": math.sqrt(noise_var), "batch_size": batch}
    summary = tables(point, horizons, result)[1].assign(noise_var=noise_var)
    return summary, time.perf_counter() - start


def exponent_rows(measurements: pd.DataFrame, window: int):
    """(exponents rows, local exponent rows) of every point in ``measurements``."""
    from lrsweep.families.schedules.theory import exponents as rfx
    rows, local = [], []
    keys = ["a", "b", "n_features", "noise_var", "batch_size"]
    for point, g in measurements.groupby(keys, sort=False):
        horizons = np.sort(g["T"].unique())
        measurement = {kind: {c: k.set_index("T")[c].reindex(horizons).to_numpy(float)
                              for c in ("expected_loss", "lr_peak", "decay_prefactor", "plateau_rate",
                                        "decay_exponent", "decay_window")}
                       for kind, k in g.groupby("schedule")}
        for r in rfx.measure(horizons, measurement, point[0], point[1], window=window):
            near = np.nan
            if r["local_T"] is not None:
                i = int(np.argmin(np.abs(np.log(r["local_T"] / 1e4))))
                near = float(r["local_slopes"][i])
                local += [{**dict(zip(keys, point)), "quantity": r["quantity"], "words": r["words"], "T": float(t),
                           "local": float(v), "predicted": r["predicted"]} for t, v in zip(r["local_T"], r["local_slopes"])]
            rows.append({**dict(zip(keys, point)), **{k: v for k, v in r.items() if not k.startswith("local_")},
                         "local_1e4": near})
    return pd.DataFrame(rows), pd.DataFrame(local)


def verdict(row, tolerance=0.02) -> str:
    """converges: the local exponent at the largest T is within max(0.02, 10%) of the statement;
    approaches: closer there than near T = 10^4; else does not approach here."""
    slack = max(tolerance, 0.1 * abs(row["predicted"]))
    gap_end, gap_mid = abs(row["local"] - row["predicted"]), abs(row["local_1e4"] - row["predicted"])
    if gap_end <= slack:
        return "converges"
    if np.isfinite(gap_mid) and gap_end < gap_mid:
        return "approaches"
    return "does not approach here"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", nargs="+", default=DEFAULT_POINTS, help="a,b pairs")
    p.add_argument("--n-features", default="inf", help="N, or inf (default)")
    p.add_argument("--noise-var", type=float, default=1.0, help="sigma^2 (default 1)")
    p.add_argument("--batch", type=float, default=1.0)
    p.add_argument("--horizons", default="100,1000000,13", help="T_min,T_max,n (geometric) or a list T1,T2,...")
    p.add_argument("--resolution", type=float, default=0.02, help="block resolution r (default 0.02)")
    p.add_argument("--iterations", type=int, default=200, help="Adam steps of the free optimum")
    p.add_argument("--window", type=int, default=4, help="horizons per local exponent (default 4)")
    p.add_argument("--out", default="results/schedule_exponents", help="output folder")
    p.add_argument("--tag", default="", help="a name for this run's files (several settings in one folder)")
    p.add_argument("--from", dest="source", default=None, metavar="MEASUREMENTS",
                   help="no search: the table and figure of a measurements.parquet written before")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"_{args.tag}" if args.tag else ""
    if args.source:
        # tables written before schedule_summary took the config's names (input_dim, kind)
        measurements = pd.read_parquet(args.source).rename(columns={"input_dim": "n_features", "kind": "schedule"})
        horizons = tuple(int(T) for T in sorted(measurements["T"].unique()))
    else:
        horizons = horizons_of(args.horizons)
        rows = []
        for pair in args.points:
            a, b = (float(v) for v in pair.split(","))
            got, secs = measure_point(a, b, args.n_features, args.noise_var, args.batch, horizons, args.resolution,
                                      args.iterations)
            print(f"# a={a:g}, b={b:g}, N={args.n_features}, sigma^2={args.noise_var:g}: {len(horizons)} horizons "
                  f"{horizons[0]}..{horizons[-1]} in {secs:.0f} s", flush=True)
            rows.append(got)
        measurements = pd.concat(rows, ignore_index=True)
    table, local = exponent_rows(measurements, args.window)
    table["verdict"] = [verdict(r) for r in table.to_dict("records")]
    measurements.to_parquet(out / f"measurements{tag}.parquet")
    table.to_parquet(out / f"exponents{tag}.parquet")
    local.to_parquet(out / f"local_exponents{tag}.parquet")
    title = (f"seed 004: local exponents over {args.window} consecutive horizons, N = {args.n_features}, "
             f"sigma^2 = {args.noise_var:g}, batch {args.batch:g}, blocks r = {args.resolution:g}")
    from lrsweep.families.schedules.figures import local_exponents_figure
    local_exponents_figure(local, title).savefig(out / f"local_exponents{tag}.png", dpi=130, bbox_inches="tight")
    print(f"\nN = {args.n_features}, sigma^2 = {args.noise_var:g}, batch {args.batch:g}, T = {horizons[0]} .. "
          f"{horizons[-1]} ({len(horizons)} horizons), local exponents over {args.window} horizons; {out}\n")
    print("| a | b | quantity | stated | source | local near T = 10^4 | local at the largest T | "
          "whole range (95%) | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in table.itertuples(index=False):
        print(f"| {r.a:g} | {r.b:g} | {r.words} | {r.predicted:.3f} | {r.source} | {r.local_1e4:.3f} | "
              f"{r.local:.3f} | {r.fitted:.3f} ({r.lo:.3f}..{r.hi:.3f}) | {r.verdict} |")


if __name__ == "__main__":
    main()
