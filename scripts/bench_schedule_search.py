"""Time the seed-004 schedule search: every kind for 10 horizons T = 100..10,000 at N = 500 features.

    PYTHONPATH=. python scripts/bench_schedule_search.py [--a 2.0 --b 1.5 --noise 0.1 --x64 --momentum --batch]

Prints the wall time (compile included, then a second warm run) and the final expected loss per T and kind.
"""
import argparse
import time

import jax
import numpy as np


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=float, default=2.0)
    parser.add_argument("--b", type=float, default=1.5)
    parser.add_argument("--noise", type=float, default=0.1, help="sigma^2")
    parser.add_argument("--features", type=int, default=500)
    parser.add_argument("--horizons", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--x64", action="store_true")
    parser.add_argument("--batch", action="store_true", help="also optimise batch schedules (budget 4 T)")
    parser.add_argument("--momentum", action="store_true", help="also optimise momentum schedules")
    parser.add_argument("--repeat", type=int, default=2, help="runs (the first compiles)")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", args.x64)
    from lrsweep.families.schedules import theory as rf

    lam, target = rf.spectrum(args.features, args.a, args.b)
    horizons = np.unique(np.round(np.logspace(2, 4, args.horizons)).astype(int))
    kinds = ("optimal", "constant", "power", "polynomial", "wsd")
    kinds += ("optimal_batch",) * args.batch + ("optimal_momentum",) * args.momentum
    budget = 4 * horizons if args.batch else None
    for run in range(args.repeat):
        start = time.perf_counter()
        res = rf.search(lam, target ** 2, args.noise, horizons, kinds=kinds, iterations=args.iterations,
                        sample_budget=budget)
        print(f"run {run}: {time.perf_counter() - start:.1f} s  (N={args.features}, H={horizons.size}, "
              f"T_max={horizons.max()}, x64={args.x64}, iterations={args.iterations})", flush=True)
    st = rf.statements(args.a, args.b)
    print("statements:", {k: round(v["value"], 3) if isinstance(v["value"], float) else v["value"]
                          for k, v in st.items()})
    print("T      " + " ".join(f"{k:>16}" for k in kinds))
    for h, T in enumerate(horizons):
        print(f"{T:<6d} " + " ".join(f"{res[k]['loss'][h]:16.6g}" for k in kinds))
    for k in kinds:
        slope, err = rf.fit_exponent(horizons, res[k]["loss"])
        print(f"loss exponent {k:>16}: {-slope:.3f} +- {err:.3f}")
    prefactors = [rf.fit_decay(res["optimal"]["lr"][h, :T], T)["peak"] for h, T in enumerate(horizons)]
    print(f"xi from the optimal decay's prefactor: {-rf.fit_exponent(horizons, prefactors)[0]:.3f} "
          f"(statement {st['xi']['value']:.3f}; not asymptotic at these T: scripts/schedule_exponents.py)")


if __name__ == "__main__":
    main()
