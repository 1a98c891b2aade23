"""Exponents fitted from optimal schedules and best constant rates over horizons T, against seed 004's
statements (lrsweep.theory.random_features.statements): the README's table.

    python scripts/schedule_exponents.py                       # the README's settings (~2-4 min, CPU)
    python scripts/schedule_exponents.py --points 2.5,1.5 --n-features 500 --horizons 100,1000,10000

For each (a, b) it runs the same search as `lrsweep schedule` (optimal, constant, power, polynomial,
wsd at every horizon), then fits log-log slopes over T (lrsweep.theory.random_features_compare.
exponent_table) and prints one markdown row per quantity: fitted +- SE, the statement, its source,
and whether they agree within 0.1 + 3 SE.
"""
import argparse
import time

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from lrsweep.schedule_search import Search, search_point, tables  # noqa: E402
from lrsweep.theory.random_features_compare import exponent_table  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", nargs="+", default=["3.0,1.5", "2.5,2.0", "1.5,2.0", "1.5,2.5"], help="a,b pairs")
    p.add_argument("--n-features", type=int, default=2000)
    p.add_argument("--noise-std", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--horizons", default="100,10000,8", help="T_min,T_max,n (geometric) or a list T1,T2,...")
    args = p.parse_args()
    h = [float(v) for v in args.horizons.split(",")]
    horizons = tuple(sorted({int(round(v)) for v in np.geomspace(h[0], h[1], int(h[2]))})) if len(h) == 3 \
        else tuple(int(v) for v in h)
    search = Search(horizons, ("optimal", "constant", "power", "polynomial", "wsd"), {})
    summaries = []
    for pair in args.points:
        a, b = (float(v) for v in pair.split(","))
        point = {"a": a, "b": b, "input_dim": args.n_features, "noise_std": args.noise_std,
                 "batch_size": args.batch_size}
        start = time.perf_counter()
        _, summary = tables(point, horizons, search_point(point, search))
        print(f"# a={a:g}, b={b:g}: search {time.perf_counter() - start:.1f} s", flush=True)
        summaries.append(summary)
    import pandas as pd
    table = exponent_table(pd.concat(summaries, ignore_index=True))
    print(f"\nN = {args.n_features}, sigma = {args.noise_std:g}, batch {args.batch_size}, T = {horizons[0]} .. "
          f"{horizons[-1]} ({len(horizons)} horizons)\n")
    print("| a | b | phase | quantity | fitted | seed / derived | source | agrees |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for (a, b), g in table.groupby(["a", "b"], sort=False):
        phase = g.loc[g["quantity"] == "phase", "note"].iloc[0]
        for r in g[g["quantity"] != "phase"].itertuples(index=False):
            fitted = f"{r.fitted:.3f}" + (f" +- {r.se:.3f}" if np.isfinite(r.se) else "")
            print(f"| {a:g} | {b:g} | {phase} | {r.quantity} | {fitted} | {r.predicted:.3f} | "
                  f"{r.source} | {'yes' if r.agrees else 'no'} |")


if __name__ == "__main__":
    main()
