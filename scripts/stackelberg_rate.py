"""The finite-time rate of seed 002's two-time-scale alternating GD (App. B; the O(k^-2/3) bound), measured on a
problem that meets the appendix's assumptions: a quadratic G(M, w) with G_ww > 0, Phi strongly convex, Lipschitz
gradients and unbiased Gaussian gradient noise (lrsweep.families.stackelberg.theory.two_time_scale_quadratic),
alpha_k = alpha0 / (k + 1), beta_k = beta0 / (k + 1)^(2/3).

Per seed: ||M_k - M*||^2 (body), ||w_k - w*(M_k)||^2 (head) and their sum; the exponent of the seed mean in k is
the least-squares slope of log mean against log k over log-spaced k in [K / 20, K]; the interval is the 2.5-97.5
percentiles of that slope over 1000 bootstrap resamples of the seeds. Verdict: checks.rate_verdict (the bound
holds where the interval reaches -2/3 or below; tight where it contains -2/3).

    python scripts/stackelberg_rate.py                    # the README table (about a minute on one core)
    python scripts/stackelberg_rate.py --steps 2000 --seeds 16
"""
from __future__ import annotations

import argparse

import numpy as np

from lrsweep.families.stackelberg import checks as sc
from lrsweep.families.stackelberg import theory as sb


def problem(n_body=4, n_head=3, seed=0):
    """H = Q diag(1 .. 1.5) Q^T (so G_ww, and the Schur complement Hess Phi, have eigenvalues in [1, 1.5]), g ~ N(0, I)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n_body + n_head, n_body + n_head)))
    return q @ np.diag(np.linspace(1.0, 1.5, n_body + n_head)) @ q.T, rng.standard_normal(n_body + n_head)


def fit(k, curves, rng, boot=1000):
    """(slope, low, high) of log mean(curves) against log k, the interval by bootstrap over the rows (seeds)."""
    x = np.log(k)
    slope = lambda rows: np.polyfit(x, np.log(rows.mean(0)), 1)[0]
    draws = [slope(curves[rng.integers(0, len(curves), len(curves))]) for _ in range(boot)]
    return slope(curves), *np.percentile(draws, [2.5, 97.5])


def measure(steps, seeds, sigma, alpha0, beta0, beta_power):
    h, g = problem()
    n_body = 4
    body, head = [], []
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        noise = sigma * rng.standard_normal((steps, h.shape[0]))
        run = sb.two_time_scale_quadratic(h, g, n_body, np.zeros(n_body), np.zeros(h.shape[0] - n_body), alpha0, beta0,
                                          noise, beta_power=beta_power)
        body.append(run["body"]), head.append(run["head"])
    body, head = np.array(body), np.array(head)
    k = np.unique(np.geomspace(steps // 20, steps, 30).astype(int))
    rng = np.random.default_rng(0)
    return {name: fit(k, c[:, k], rng) for name, c in (("body", body), ("head", head), ("sum", body + head))}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--seeds", type=int, default=32)
    p.add_argument("--sigma", type=float, nargs="+", default=[1.0, 0.1])
    a = p.parse_args(argv)
    print("| sigma | alpha_k | beta_k | quantity | exponent | 95% interval (bootstrap over seeds) | bound -2/3 holds | tight |")
    print("|---|---|---|---|---|---|---|---|")
    for sigma in a.sigma:
        for name, (slope, low, high) in measure(a.steps, a.seeds, sigma, 1.0, 1.0, 2.0 / 3.0).items():
            v = sc.rate_verdict(slope, low, high)
            print(f"| {sigma:g} | 1/(k+1) | (k+1)^-2/3 | {name} | {slope:+.3f} | [{low:+.3f}, {high:+.3f}] | "
                  f"{'yes' if v['holds'] else 'no'} | {'yes' if v['tight'] else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
