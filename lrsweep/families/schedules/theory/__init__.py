r"""Expected test loss of SGD on a power-law random-feature model, and optimal schedules (seed 004).

Bordelon & Mori 2026, "Theory of Optimal Learning Rate Schedules and Scaling Laws for a Random
Feature Model" (arXiv 2602.04774). The seed's extraction keeps the abstract and eq. 82-83 (the hard
phase's schedule and its edge); everything else below is derived here, and every statement says
which (:func:`statements`).

Model. Features x in R^N with independent x_k ~ N(0, lambda_k), lambda_k = k^-b; target
w*_k = k^((b-a)/2) (lambda_k w*_k^2 = k^-a); labels y = w*.x + sigma xi. A linear student w, started
at 0, trained on 1/2 mean_batch (w.x - y)^2 with fresh samples every step. Test loss is the excess
risk L(w) = sum_k lambda_k (w_k - w*_k)^2 (no 1/2). Step t = 0..T-1 uses rate eta_t, batch m_t,
momentum beta_t; curves hold L before step t, t = 0..T (index T: after the last step).

1. Exact recursions (:mod:`.recursion`)
---------------------------------------
e = w - w*; one sample's gradient is g = x (x.e - sigma xi). Gaussian x has E x_k^4 = 3 lambda_k^2, so
E[x_k^2 (x.e)^2] = 2 lambda_k^2 e_k^2 + lambda_k sum_j lambda_j e_j^2, and for the mean of m samples

    E[g_k | e] = lambda_k e_k,
    E[g_k^2 | e] = ((m+1)/m) lambda_k^2 e_k^2 + (lambda_k / m)(sum_j lambda_j e_j^2 + sigma^2).

Cross-mode moments never enter a diagonal second moment, so C_k = E e_k^2 closes (L = sum_k lambda_k C_k):

    SGD:  C_k' = a_k C_k + (eta^2/m) lambda_k (L + sigma^2),  a_k = 1 - 2 eta lambda_k + ((m+1)/m) eta^2 lambda_k^2.

Heavy ball (optax.trace: v' = beta v + g, w' = w - eta v', v_0 = 0), per mode P = E e^2, Q = E e v,
R = E v^2 (P_0 = w*^2, Q_0 = R_0 = 0), using E[v g | e, v] = lambda v e:

    R' = beta^2 R + 2 beta lambda Q + ((m+1)/m) lambda^2 P + (lambda/m)(L + sigma^2)
    Q' = E[(e - eta v') v'] = beta Q + lambda P - eta R'
    P' = E[(e - eta v')^2] = P - 2 eta (beta Q + lambda P) + eta^2 R'.

beta = 0 gives back SGD. Both are exact (no large-N limit), linear in the state for a given schedule.
They are the exact expectation: a Monte Carlo mean over seeds converges to them, slowly where the
loss is heavy-tailed (a rate near the stability bound: :mod:`lrsweep.core.tails`).

2. Stability (:func:`stability_limit`)
--------------------------------------
For a constant rate and batch the SGD map is C' = A C + b, A = diag(a_k) + (eta^2/m) lambda lambda^T,
a_k > 0 (a_k = (1 - eta lambda_k)^2 + eta^2 lambda_k^2 / m). A is positive, so its Perron root is < 1
iff every a_k < 1 and F(eta) = sum_k (eta lambda_k / m) / (2 - ((m+1)/m) eta lambda_k) < 1. F increases
with eta; the largest stable constant rate eta_s is the root of F = 1 (bisection). It is not a bound
on schedules: over a finite horizon a rate above it can win (its growth has no time to act), so the
searches go past it (section 5).

3. Scaling statements (:func:`statements`; sigma > 0, N = infinity, large T)
---------------------------------------------------------------------------
Continuous time, dropping the eta^2 lambda^2 curvature term (slow modes) and writing the drive
L + sigma^2 as sigma^2 (the loss below the noise: at finite T it is not, see the README's causes):

    L(T) = sum_k k^-a e^{-2 lambda_k tau(0)} + (sigma^2/m) int_0^T eta(t)^2 K(tau(t)) dt,
    tau(t) = int_t^T eta,  K(u) = sum_k lambda_k^2 e^{-2 lambda_k u} ~ u^-(2-1/b) (u >> 1),  K(0) = zeta(2b).

The bias sum is ~ tau(0)^-s with s = (a-1)/b.

- Constant rate eta: the noise is (sigma^2/m) eta int_0^{eta T} K ~ (sigma^2/m) eta sum_k lambda_k / 2
  (K integrable, b > 1), so L ~ A (eta T)^-s + B eta: eta* ~ T^-s/(1+s) = T^-(a-1)/(a-1+b) and
  L* ~ T^-(a-1)/(a-1+b). A power law c (1+t)^-chi balances the same two terms at every t
  (chi -> s/(1+s)) and keeps the exponent.
- Polynomial eta_p (1 - t/T)^delta: with x = 1 - t/T, tau = eta_p T x^(delta+1)/(delta+1) and the noise is
  (sigma^2/m) eta_p^2 T int_0^1 x^(2 delta) K(tau) dx. Where tau >> 1 the integrand is
  ~ (eta_p T/(delta+1))^-(2-1/b) x^e, e = (delta+1)/b - 2, integrable at 0 iff delta > b - 1; then
  noise = B(delta) sigma^2 eta_p^(1/b) T^-(1-1/b), B(delta) = c (delta+1)^(2-1/b) / ((delta+1)/b - 1), and
  L ~ A (delta+1)^s (eta_p T)^-s + B(delta) sigma^2 eta_p^(1/b) T^-(1-1/b).
  Minimising over eta_p: eta_p^(s+1/b) ~ T^(1-1/b-s), and s + 1/b = a/b, so eta_p ~ T^-(a-b)/a:
  xi = (a - b)/a, and L* ~ (eta_p T)^-s ~ T^-(a-1)/a (easy phase, a > b, where xi > 0). delta only
  enters the prefactor A^(1/a) B^((a-1)/a); with y = delta + 1 its log is
  (2(a-1)/a) ln y - ((a-1)/a) ln(y/b - 1) + const, stationary at 2/y = 1/(y - b): y = 2b, delta* = 2b - 1
  (the value eq. 82 states for the hard phase; the easy phase's is derived here). It makes e = 0:
  every time contributes equally to the noise.
- a < b (hard phase): that eta_p would grow with T, so the rate stays at a T-independent value set by
  the finite-rate terms (stability, the loss in the drive): xi = 0, L* ~ (eta T)^-s = T^-(a-1)/b,
  and the schedule anneals only at the end (WSD, eq. 82). Window: a decay of width W at rate eta_0
  costs ~ s (W/T) T^-s of bias and leaves ~ sigma^2 (eta_0 W)^-(1-1/b) of noise; balancing the
  derivatives, W^(2-1/b) ~ T^(1+s): W ~ T^((a+b-1)/(2b-1)) = T^(1-(b-a)/(2b-1)), eq. 82's window, a
  vanishing fraction of T.

4. Long horizons and many features (:func:`.recursion.block_loss_curves`, :func:`.model.power_law_modes`)
--------------------------------------------------------------------------------------------------------
Blocks: n steps at one rate and batch. Each mode's recursion C_{j+1} = a C_j + lambda u_j, driven by
the scalar u_j = (eta^2/m)(L_j + sigma^2), is solved exactly for a drive linear in j over the block:
C_n = a^n C_0 + lambda (u_0 S0 + (u_n - u_0) S1/n), S0 = sum_{j<n} a^j = (1 - a^n)/(1 - a),
S1 = sum_{j<n} j a^(n-1-j) = (n - S0)/(1 - a) (series in n(1 - a) where these cancel). u_n depends on
L_n = sum_j w_j lambda_j C_n,j + offset linearly, so L_n solves one linear equation. For a constant rate
and n -> infinity its coefficient g sum lambda^2 S1/n -> F(eta) of section 2: the equation is
well posed exactly for stable rates. n = 1 is the exact step. Block lengths
max(1, floor(r min(t, T - t))) follow the scales on which the loss (t) and a decaying schedule (T - t)
change; the relative error of the loss falls about as r^1.5 (measured 2.5e-3, 5.3e-4, 8.7e-5 at
r = 0.1, 0.03, 0.01, T = 3000, against the exact recursion of the same block-constant schedule; tested).
Lumped modes: :mod:`.model` (N up to infinity in ~1,000-2,000 modes).

5. Searches (:mod:`.search`)
----------------------------
All horizons at once: one scan over (horizon, candidate) rows, rates masked to 0 (exact) or blocks
empty (blocks) past T_h. Families (constant, power, polynomial, wsd, cosine; shapes of
:mod:`lrsweep.core.schedules`): a coarse grid over all parameters, a full-dimensional zoom from the three
best points, the rate box moved while the optimum sits at its edge (no cap unless ``eta_max``).
Free schedules: Adam on log L_T through a hand-written adjoint of the recursion (checkpointed every
``SEGMENT`` steps; jax's own scan transpose is ~5x slower here), a log-rate correction of the best
family's schedule on nodes equally spaced in z = log(1 - t/T)/log(1/T) (where a polynomial decay is
a line) and in t/T (a warm-up), started at that schedule, the best iterate kept.

7. Fourth moments (:func:`.recursion.loss_moments`)
---------------------------------------------------
The spread of the loss over seeds, E L^2 = sum_kj lam_k lam_j D_kj, D_kj = E e_k^2 e_j^2, also closes.
e' = e - eta g is linear in e plus the label noise, so E[e'_k^2 e'_j^2 | e] is a quartic in e whose
Gaussian moments pair every feature index an even number of times: only e_k, e_j and
V = sum_l lam_l e_l^2 + sigma^2 survive. With the moments of g (the mean of m i.i.d. x u, u = x.e - sigma xi,
from its cumulants divided by m^(r-1)), expanded by computer algebra (sympy, once; the coefficients
are written out in :func:`.recursion.fourth_moment_step`):

    E[e'_k^2 e'_j^2 | e] = P_kj e_k^2 e_j^2 + Q_kj e_j^2 V + Q_jk e_k^2 V + c_kj V^2            (k != j)
    E[e'_k^4 | e]        = P_kk e_k^4 + 6 Q_kk e_k^2 V + 3 c_kk V^2
    P_kj = 1 - 2(h_k + h_j) + ((m+1)/m)(h_k^2 + 4 h_k h_j + h_j^2) - 2 ((m+1)(m+2)/m^2) h_k h_j (h_k + h_j)
           + ((m+1)(m+2)(m+3)/m^3) h_k^2 h_j^2,     h_k = eta lam_k,
    Q_kj = (eta^2 lam_k / m)(1 - 2 ((m+2)/m) h_j + ((m+2)(m+3)/m^2) h_j^2),   c_kj = eta^4 (m+2) lam_k lam_j / m^3,

and E[e_j^2 V] = sum_l lam_l D_jl + sigma^2 C_j, E V^2 = sum_kl lam_k lam_l D_kl + 2 sigma^2 L + sigma^4.
N = 1 gives E(1 - eta lam chi^2_m/m)^4 (tested), and a numpy Monte Carlo agrees (tested). O(N^2) per
step. Near the stability bound E L^2 grows exponentially with T (the top mode's fourth moment grows
by 1.5 per step at eta lam_1 = 1, batch 4) while the mean converges: the variance is then carried
by runs too rare to move a Monte Carlo mean, which is why :mod:`lrsweep.families.schedules.checks`
judges a mean by this spread where it is small and by the measured tail where it is not.

6. Fits (:mod:`.fit`)
---------------------
Log-log slopes over horizons with Student-t intervals, local slopes over sliding windows of
horizons, and a schedule's decay eta_p (1 - t/T)^delta fitted between its last near-peak step and the
eq. 83 edge (its prefactor eta_p, not the peak, carries xi: the optimum has a warm-up bump).
"""
from .fit import decay_region, decay_window, expand_blocks, fit_decay, fit_exponent, fit_exponent_ci, local_exponents
from .model import Modes, as_modes, exact_modes, power_law_modes, spectrum, stability_limit, statements
from .recursion import block_loss_curves, loss_curves, loss_moments, time_blocks
from .search import (DESCRIPTIONS, FAMILIES, FAMILY_KINDS, KINDS, PARAMETERIZATIONS, Problem, batch_ramp_steps,
                     best_family, best_family_schedule, node_weights, optimize_schedules, search, steps_to_reach)

__all__ = ["DESCRIPTIONS", "FAMILIES", "FAMILY_KINDS", "KINDS", "Modes", "PARAMETERIZATIONS", "Problem", "as_modes",
           "batch_ramp_steps", "steps_to_reach",
           "best_family", "best_family_schedule", "block_loss_curves", "decay_region", "decay_window", "exact_modes",
           "expand_blocks", "fit_decay", "fit_exponent", "fit_exponent_ci", "local_exponents", "loss_curves", "loss_moments",
           "node_weights", "optimize_schedules", "power_law_modes", "search", "spectrum", "stability_limit",
           "statements", "time_blocks"]
