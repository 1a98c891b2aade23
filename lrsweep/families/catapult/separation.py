r"""Seed 003 Proposition 1 and Table 1: separable and non-separable data (Sec. 3.2; formulas lost in
extraction, re-derived here). Pure numpy / scipy.

*Proposition 1.* Linear predictor f = w . x on rows (x_i, y_i), R(w) = (1/n) sum_i ell(y_i w . x_i). Its
Hessian is (1/n) sum_i ell''(y_i w . x_i) x_i x_i^T. For the logistic loss ell'' = sigma(1 - sigma) <= 1/4
everywhere, so R is L-smooth with

    L = lambda_max(X^T X / n) / 4        (:func:`logistic_smoothness`),

on separable and non-separable data alike, and the descent lemma
R(w') <= R(w) - eta (1 - eta L / 2) |grad R|^2 gives: for eta < 2 / L (:func:`proposition1_rate`) GD never
increases the risk (part 1; on separable data it tends to 0, on non-separable data to the finite
minimum, part 2). The exponential loss has ell'' = e^{-z}, unbounded: it is L-smooth only on bounded
sets (the paper: "the estimated L ... vary across different finite bounded subspace"), so no global
rate is computed for it. Part 2's upper rate 2 / mu needs a global strong-convexity modulus, which
neither loss has (ell'' -> 0 as |z| grows); it is not checked.

*Table 1.* On linearly separable data (:func:`is_separable`) the risk's infimum 0 lies at infinity, so
there is no finite minimum for a catapult to land in: seed 003 marks no catapult for the exponential
and logistic losses there. Measured (issue 25): two-layer logistic students at very large rates can
rise and then fall below L_0 (``catapult`` by the phase rule), but their NTK eigenvalue ends far
*above* lambda_0 (e.g. 0.91 -> 45): not the catapult's flatter end. Table 1's statement as checked:
no separable-data student ends in the ``catapult`` phase with lambda_final < lambda_0.
"""

from __future__ import annotations

import re

import numpy as np


def parse_points(points) -> tuple[np.ndarray, np.ndarray]:
    """(X (n, d), y (n,)) from ``task.points`` as stored: rows [x_1, ..., x_d, y] (a list, or the text
    "(1.0, 1.0),(2.0, -1.0)" the students table holds)."""
    if isinstance(points, str):
        rows = [[float(v) for v in r.split(",")] for r in re.findall(r"\(([^()]*)\)", points)]
    else:
        rows = [[float(v) for v in r] for r in points]
    a = np.asarray(rows, float)
    return a[:, :-1], a[:, -1]


def is_separable(x, y) -> bool:
    """Assumption 1: some w has y_i w . x_i > 0 for every i (a linear program: y_i w . x_i >= 1)."""
    from scipy.optimize import linprog
    x, y = np.asarray(x, float), np.asarray(y, float)
    res = linprog(np.zeros(x.shape[1]), A_ub=-(y[:, None] * x), b_ub=-np.ones(len(y)),
                  bounds=[(None, None)] * x.shape[1], method="highs")
    return bool(res.status == 0)


def logistic_smoothness(x) -> float:
    """L = lambda_max(X^T X / n) / 4: the logistic risk's global smoothness constant."""
    x = np.asarray(x, float)
    return float(np.linalg.eigvalsh(x.T @ x / len(x))[-1]) / 4.0


def proposition1_rate(x, loss: str) -> float:
    """2 / L: below it GD on the linear predictor never increases the risk (logistic; NaN for the
    exponential, which has no global L)."""
    return 2.0 / logistic_smoothness(x) if loss == "logistic" else float("nan")
