"""The engine on the uv model (Lewkowycz et al. 2020, Sec. 2): f = v.u / sqrt(m), x = 1, label 0, mse.

GD on (u, v) gives, exactly (derived here from u' = u - eta f v / sqrt(m), v' = v - eta f u / sqrt(m)):
  f_{t+1} = (1 - eta lambda_t + eta^2 f_t^2 / m) f_t,
  lambda_{t+1} = lambda_t + (eta f_t^2 / m) (eta lambda_t - 4),   lambda = (|u|^2 + |v|^2) / m = |grad f|^2.
The engine's train loss f^2 / 2 and ``ntk_eig`` must follow them step by step to float64 round-off
in every phase, and its phase column must match seed 003's rules applied to the recursion.
"""

import numpy as np
import pytest
from conftest import numpy_instance, train_config

from lrsweep.core import runner
from lrsweep.core import config

WIDTH = 16
RATES = [0.3, 0.8, 1.05, 1.3, 1.7, 2.2, 3.0]  # lambda_0 ~ 2: lazy, catapult and divergent


def uv(steps=80):
    return {"name": "uv", "seeds": [0, 1, 2], "task": {"kind": "single_point"},
            "model": {"parameterization": "ntk", "n_layers": 2, "width": WIDTH, "activation": "linear",
                      "output_dim": 1},
            "init": "gaussian", "train": {"steps": steps, "log_every": 1, "metrics": ["ntk_eig", "phase"]},
            "grid": {"lr": RATES}}


def test_engine_follows_the_uv_recursions_in_every_phase(x64):
    students, results = train_config(uv())
    phases = set()
    for sid, res in results.items():
        eta = float(students.set_index("student_id").loc[sid, "lr_1"])
        _, _, (w1, w2), _ = numpy_instance(students, sid)
        u, v = w1.ravel(), w2.ravel()
        f2, lam = np.asarray(res["train_loss"]) * 2, np.asarray(res["ntk_eig"])
        assert f2[0] == pytest.approx((u @ v) ** 2 / WIDTH, rel=1e-13)
        assert lam[0] == pytest.approx((u @ u + v @ v) / WIDTH, rel=1e-13)
        alive = np.isfinite(f2) & np.isfinite(lam)
        t = np.flatnonzero(alive[:-1] & alive[1:])
        assert len(t) > 0
        pred_f2 = (1 - eta * lam[t] + eta ** 2 * f2[t] / WIDTH) ** 2 * f2[t]
        pred_lam = lam[t] + eta * f2[t] / WIDTH * (eta * lam[t] - 4)
        # a step's round-off: relative to |f_t|, plus the ulp of f = u.v / sqrt(m) itself, ~eps lambda_t
        # (near f = 0 the updates of u and v fall below their ulp and f stalls at ~1e-17)
        gap = np.abs(np.sqrt(f2[t + 1]) - np.sqrt(pred_f2))
        assert np.all(gap <= 1e-12 * np.sqrt(np.maximum(f2[t], f2[t + 1])) + 1e-14 * lam[t]), (sid, eta)
        np.testing.assert_allclose(lam[t + 1], pred_lam, rtol=1e-12)
        phases.add(str(res["phase"]))
    assert phases >= {"lazy", "catapult", "divergent"}


def test_phase_column_matches_the_recursion(x64, tmp_path):
    """The stored phase of each student is what seed 003's rules give on the exact recursion run in
    numpy from the student's own f_0 and lambda_0 (divergence: loss > 1e6 L_0 or non-finite)."""
    cfg = uv(steps=200)
    cfg["train"]["log_every"] = 200
    summary = runner.run(config.load_config(cfg), tmp_path, x64=True, progress=False)
    import lrsweep
    students = lrsweep.load(summary.run_dir, table="students")
    planned, _ = runner.prepare(config.load_config(cfg))
    for _, row in students.iterrows():
        _, _, (w1, w2), _ = numpy_instance(planned, int(row["student_id"]))
        u, v, eta = w1.ravel(), w2.ravel(), float(row["lr_1"])
        f2, lam = (u @ v) ** 2 / WIDTH, (u @ u + v @ v) / WIDTH
        losses, phase = [f2 / 2], None
        for _ in range(200):
            f2, lam = (1 - eta * lam + eta ** 2 * f2 / WIDTH) ** 2 * f2, lam + eta * f2 / WIDTH * (eta * lam - 4)
            losses.append(f2 / 2)
            if not np.isfinite(losses[-1]) or losses[-1] > 1e6 * losses[0]:
                phase = "divergent"
                break
        if phase is None:
            phase = "lazy" if max(losses) <= losses[0] else "catapult" if losses[-1] < losses[0] else "oscillating"
        assert row["phase"] == phase, (row["seed"], eta)
