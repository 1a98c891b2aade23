"""Where the distance to the best-response run starts to fall like ratio^-1 (seed 002): predicted from the
best-response run alone (lrsweep.families.stackelberg.theory.linear_response_distance) against the onset measured
at finite ratios, on the settings of configs/stackelberg/ratio_{linear,relu}_cpu.yaml.

Plain float64 numpy, one student at a time (the engine's head rules equal numpy's to 1e-10:
tests/families/stackelberg/test_heads.py; the instances here are numpy's own draws of the configs' distributions,
not the engine's). Per setting and seed: simultaneous GD at body rate alpha and ratios 2^0..2^8 against the
best-response run; D(r) = max_t ||M_r(t) - M_BR(t)|| / ||M_BR(0)||; the onset is the first ratio whose local
slope to the next is <= -0.9 (theory.slope_onset), over the ratios up to 1 / (alpha a_max) (no seed's head
overshoots: beta a_max <= 1, a_max the head Hessian's top eigenvalue along the best-response run), measured on the seed-mean D and predicted on the seed-mean
linear-response D. Also printed: k = the drift-weighted ||dw*/dM||^2 along the best-response run (the onset of
one direction is 9 k: theory.onset_ratio) and the README's old lower window 1 / (alpha a_min T).

    python scripts/stackelberg_onset.py                 # the README table (about 2 minutes on one core)
    python scripts/stackelberg_onset.py --seeds 2 --steps 100 --configs ratio_linear --layers 2
    python scripts/stackelberg_onset.py --configs ratio_linear --layers 2 --lr-body 0.003 --steps 1200 --stride 20
    python scripts/stackelberg_onset.py --configs ratio_linear --layers 2 --lr-body 0.003 --head-at-best-response
"""
from __future__ import annotations

import argparse

import numpy as np

from lrsweep.families.stackelberg import theory as sb

RATIOS = 2.0 ** np.arange(0, 9)
SETTINGS = {  # the _cpu configs' tasks: input_dim 32, n_train 128, width 4, noise 0.1, gaussian init and design
    "ratio_linear": {"activation": "linear", "teacher": "linear", "ridge": 0.0},
    "ratio_relu": {"activation": "relu", "teacher": "relu", "ridge": 1e-4},
}


def instance(seed, n_layers, activation, teacher, d=32, n=128, h=4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    beta = rng.standard_normal(d) / np.sqrt(d)
    y = x @ beta
    y = (np.maximum(y, 0) if teacher == "relu" else y) + 0.1 * rng.standard_normal(n)
    body = [rng.standard_normal((d, h)) / np.sqrt(d)] + [rng.standard_normal((h, h)) / np.sqrt(h)
                                                          for _ in range(n_layers - 2)]
    return x, y, body, rng.standard_normal(h) / np.sqrt(h)


class Problem:
    """G(M, w) = 1/(2n) ||z(M) w - y||^2 + ridge/2 ||w||^2 with z(M) = s(..s(X W_1)..W_{m-1})."""

    def __init__(self, x, y, shapes, activation, ridge):
        self.x, self.y, self.shapes, self.relu, self.ridge = x, y, shapes, activation == "relu", ridge
        self.sizes = [a * b for a, b in shapes]

    def unravel(self, m):
        out, i = [], 0
        for (a, b), s in zip(self.shapes, self.sizes):
            out.append(m[i:i + s].reshape(a, b))
            i += s
        return out

    def forward(self, m):
        zs, z = [self.x], self.x
        for w in self.unravel(m):
            z = z @ w
            z = np.maximum(z, 0) if self.relu else z
            zs.append(z)
        return zs

    def w_star(self, m):
        z = self.forward(m)[-1]
        n = len(self.y)
        return np.linalg.solve(z.T @ z / n + self.ridge * np.eye(z.shape[1]), z.T @ self.y / n)

    def grad_body(self, m, w):
        """grad_M G(M, w) by backpropagation."""
        zs, ws = self.forward(m), self.unravel(m)
        g = np.outer((zs[-1] @ w - self.y) / len(self.y), w)
        grads = []
        for k in range(len(ws) - 1, -1, -1):
            if self.relu:
                g = g * (zs[k + 1] > 0)
            grads.append(zs[k].T @ g)
            g = g @ ws[k].T
        return np.concatenate([gk.ravel() for gk in grads[::-1]])

    def grad_head(self, m, w):
        z = self.forward(m)[-1]
        return z.T @ (z @ w - self.y) / len(self.y)

    def head_hessian_eigs(self, m):
        z = self.forward(m)[-1]
        return np.linalg.eigvalsh(z.T @ z / len(self.y) + self.ridge * np.eye(z.shape[1]))

    def grad_phi(self, m):
        return self.grad_body(m, self.w_star(m))

    def jacobian(self, m, eps=1e-6):
        cols = [(self.w_star(m + eps * e) - self.w_star(m - eps * e)) / (2 * eps) for e in np.eye(m.size)]
        return np.stack(cols, axis=1)

    def hessian_phi(self, m, eps=1e-5):
        cols = [(self.grad_phi(m + eps * e) - self.grad_phi(m - eps * e)) / (2 * eps) for e in np.eye(m.size)]
        hess = np.stack(cols, axis=1)
        return 0.5 * (hess + hess.T)


def run(prob, m0, w0, lr_body, ratio, steps):
    """Bodies M_0..M_T of simultaneous GD (ratio finite) or of the best-response run (ratio inf)."""
    m, w, bodies = m0.copy(), w0.copy(), [m0.copy()]
    for _ in range(steps):
        if np.isinf(ratio):
            w = prob.w_star(m)
            m = m - lr_body * prob.grad_body(m, w)
        else:
            m, w = m - lr_body * prob.grad_body(m, w), w - ratio * lr_body * prob.grad_head(m, w)
        if not np.all(np.isfinite(m)) or np.abs(m).max() > 1e6:
            return None
        bodies.append(m.copy())
    return np.array(bodies)


def setting(name, n_layers, lr_body, seeds, steps, stride, head_at_best_response=False):
    measured, predicted, ks, lower, upper = [], [], [], [], []
    for seed in range(seeds):
        s = SETTINGS[name]
        x, y, body, w0 = instance(seed, n_layers, s["activation"], s["teacher"])
        prob = Problem(x, y, [b.shape for b in body], s["activation"], s["ridge"])
        m0 = np.concatenate([b.ravel() for b in body])
        w0 = prob.w_star(m0) if head_at_best_response else w0
        ref = run(prob, m0, w0, lr_body, np.inf, steps)
        scale = np.linalg.norm(ref[0])
        dist = []
        for r in RATIOS:
            b = run(prob, m0, w0, lr_body, r, steps)
            dist.append(np.nan if b is None else np.sqrt(((b - ref) ** 2).sum(1)).max() / scale)
        grads, jacs, hesses, k_num, k_den, a_min, a_max = [], [], [], 0.0, 0.0, np.inf, 0.0
        for t in range(0, steps, stride):
            g, j = prob.grad_phi(ref[t]), prob.jacobian(ref[t])
            grads.append(g), jacs.append(j), hesses.append(prob.hessian_phi(ref[t]))
            jg = j @ g
            weight = np.linalg.norm(jg)
            if weight > 0:
                k_num += weight * (jg @ (j @ j.T) @ jg) / (jg @ jg)
                k_den += weight
            eigs = prob.head_hessian_eigs(ref[t])
            a_min, a_max = min(a_min, eigs[0]), max(a_max, eigs[-1])
        e0 = w0 - prob.w_star(m0)
        predicted.append(sb.linear_response_distance(RATIOS, lr_body, grads, jacs, hesses, e0, stride) / scale)
        measured.append(dist)
        ks.append(k_num / k_den)
        lower.append(1.0 / (lr_body * a_min * steps))
        upper.append(0.5 * float(sb.max_stable_ratio(lr_body, a_max)))
    measured, predicted = np.array(measured), np.array(predicted)
    # ratios at which no seed diverged and every head contracts without overshoot (beta a_max <= 1: above it the
    # head's GD oscillates about w* and the lag is no longer the quasi-static one, theory.head_lag_factor)
    ok = np.all(np.isfinite(measured), axis=0) & (RATIOS <= min(upper))
    d_meas, d_pred = measured[:, ok].mean(0), predicted[:, ok].mean(0)
    return {"ratios": RATIOS[ok], "measured": d_meas, "predicted": d_pred,
            "onset_measured": sb.slope_onset(RATIOS[ok], d_meas), "onset_predicted": sb.slope_onset(RATIOS[ok], d_pred),
            "k": float(np.mean(ks)), "onset_k": float(sb.onset_ratio(np.mean(ks))), "old_lower": float(np.mean(lower)),
            "no_overshoot": float(min(upper)),
            "slopes_measured": sb.local_slopes(RATIOS[ok], d_meas), "slopes_predicted": sb.local_slopes(RATIOS[ok], d_pred)}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=list(SETTINGS))
    p.add_argument("--layers", nargs="+", type=int, default=[2, 3])
    p.add_argument("--lr-body", nargs="+", type=float, default=[0.003, 0.01])
    p.add_argument("--seeds", type=int, default=4)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--stride", type=int, default=5)
    p.add_argument("--head-at-best-response", action="store_true", help="start the head at w*(M_0) (e_0 = 0)")
    a = p.parse_args(argv)
    print("| config | n_layers | lr_body | old lower 1/(α a_min T) | k = ‖dw*/dM‖² | 9k | onset predicted | "
          "onset measured | within 2x | ratios used (≤ 1/(α a_max)) | local slopes measured | local slopes predicted |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in a.configs:
        for layers in a.layers:
            for lr in a.lr_body:
                r = setting(name, layers, lr, a.seeds, a.steps, a.stride, a.head_at_best_response)
                within = sb_within(r["onset_predicted"], r["onset_measured"])
                fmt = lambda v: " ".join(f"{s:+.2f}" for s in v)
                print(f"| {name} | {layers} | {lr:g} | {r['old_lower']:.3g} | {r['k']:.3g} | {r['onset_k']:.3g} | "
                      f"{r['onset_predicted']:g} | {r['onset_measured']:g} | {'yes' if within else 'no'} | "
                      f"{r['ratios'][0]:g}-{r['ratios'][-1]:g} | "
                      f"{fmt(r['slopes_measured'])} | {fmt(r['slopes_predicted'])} |", flush=True)


def sb_within(predicted, measured, factor=2.0):
    from lrsweep.families.stackelberg.checks import onset_agrees
    return onset_agrees(predicted, measured, factor)


if __name__ == "__main__":
    main()
