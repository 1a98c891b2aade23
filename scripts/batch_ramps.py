"""Seed 004's batch-ramp statement as it is made: at a fixed number of samples B, how many steps (wall-clock)
a constant batch and the optimal batch ramp need to reach a target loss, in the easy and the hard phase
(lrsweep.families.schedules.theory.batch_ramp_steps).

    python scripts/batch_ramps.py                      # the README's table
    python scripts/batch_ramps.py --budget 4096 --points 2.5,1.5 --noise-var 1 --target-factor 1.05

For each (a, b): for T = B, B/2, ..., B/2^k steps, the best loss with the constant batch B/T (the optimal
rate schedule) and with the optimal rate and batch schedules together (sum_t m_t = B); the fewest steps
reaching the target (1 + --target-factor - 1 above the best loss at T = B: batch 1) for each, interpolated
log-log; the saving is their ratio. Exact recursion, float64.
"""
import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--points", nargs="+", default=["2.5,1.5", "1.5,2.0"], help="a,b pairs")
    p.add_argument("--n-features", type=int, default=200)
    p.add_argument("--noise-var", type=float, default=1.0, help="sigma^2")
    p.add_argument("--budget", type=int, default=4096, help="samples B")
    p.add_argument("--halvings", type=int, default=7, help="steps B, B/2, ..., B/2^halvings")
    p.add_argument("--target-factor", type=float, default=1.1, help="target = factor x the loss at T = B")
    p.add_argument("--iterations", type=int, default=150)
    args = p.parse_args()
    from lrsweep.families.schedules import theory as rf
    steps = [args.budget // 2 ** k for k in range(args.halvings, -1, -1)]
    rows = []
    for pair in args.points:
        a, b = (float(v) for v in pair.split(","))
        lam, target = rf.spectrum(args.n_features, a, b)
        start = time.perf_counter()
        out = rf.batch_ramp_steps(lam, target ** 2, args.noise_var, args.budget, steps, iterations=args.iterations)
        out["target"] = args.target_factor * out["loss_ramp"][-1]
        out["steps_constant"] = rf.steps_to_reach(out["steps"], out["loss_constant"], out["target"])
        out["steps_ramp"] = rf.steps_to_reach(out["steps"], out["loss_ramp"], out["target"])
        phase = rf.statements(a, b)["phase"]["value"]
        print(f"# a={a:g}, b={b:g} ({phase}): {time.perf_counter() - start:.0f} s", flush=True)
        for T, lc, lr_ in zip(out["steps"], out["loss_constant"], out["loss_ramp"]):
            print(f"#   T = {T:6d} (constant batch {args.budget // T:4d}): constant {lc:.5g}, ramp {lr_:.5g} "
                  f"({lr_ / lc - 1:+.2%})")
        rows.append((a, b, phase, out))
    print(f"\nN = {args.n_features}, sigma^2 = {args.noise_var:g}, B = {args.budget} samples, target = "
          f"{args.target_factor:g} x the loss of batch 1 at T = B\n")
    print("| a | b | phase | target loss | steps, constant batch | steps, optimal ramp | saving |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for a, b, phase, out in rows:
        saving = out["steps_constant"] / out["steps_ramp"]
        print(f"| {a:g} | {b:g} | {phase} | {out['target']:.4g} | {out['steps_constant']:.0f} | "
              f"{out['steps_ramp']:.0f} | {saving:.2f}x |")


if __name__ == "__main__":
    main()
