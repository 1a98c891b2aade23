"""The seed 002 checks of lrsweep.families.stackelberg.checks on students and curves frames written here
(where each must pass and where it must fail), and once through `lrsweep compare` on an engine run."""
import math

import numpy as np
import pandas as pd
import pytest

from conftest import cli_main
from lrsweep.families.stackelberg import checks as sc
from lrsweep import registry

T = 10  # logged steps 0..T


def student(sid, seed, ratio, run="r0", body=0.1, total=None, diverged=False, update="simultaneous"):
    head = body * ratio if total is None else total * ratio / (1 + ratio)
    body = body if total is None else total / (1 + ratio)
    return {"run_id": run, "student_id": sid, "seed": seed, "width": 4, "n_layers": 2, "loss": "mse",
            "steps": T, "head": "best_response" if math.isinf(ratio) else "gd", "update": update,
            "head_steps": 1, "n_trainable": 2, "lr_1": body, "lr_2": head, "lr_body": body, "lr_head": head,
            "lr_ratio": ratio, "lr_total": body + head if total is None else total, "diverged": diverged}


def join(students, rows):
    return pd.DataFrame(rows).merge(students, on=["run_id", "student_id"])


def distance_frames(ratios, distance, seeds=(0, 1), diverged=(), run="r0", sketch=True):
    """Students at body rate 0.1 and the given ratios plus their best-response twins (ratio inf); a gd
    student's body is its twin's shifted by distance(ratio, seed) t / T along the second sketch axis, its
    loss its twin's times 1 + the same."""
    srows, crows, sid = [], [], 0
    for seed in seeds:
        for ratio in [*ratios, math.inf]:
            srows.append(student(sid, seed, ratio, run, diverged=ratio in diverged))
            gap = 0.0 if math.isinf(ratio) else distance(ratio, seed)
            for t in range(T + 1):
                row = {"run_id": run, "student_id": sid, "step": t, "train_loss": math.exp(-t / 5) * (1 + gap * t / T)}
                if sketch:
                    row.update(body_sketch_1=1.0 + 0.1 * t, body_sketch_2=gap * t / T)
                crows.append(row)
            sid += 1
    students = pd.DataFrame(srows)
    return students, join(students, crows)


def test_checks_are_registered_strict_and_reported():
    names = ("distance_vs_ratio", "curvature_bound", "sharper_early", "equal_budget")
    assert all(f"stackelberg.{n}" in registry.CHECKS for n in names)
    assert {"stackelberg.sharper_early", "stackelberg.equal_budget"} <= registry.REPORTED
    assert not {"stackelberg.distance_vs_ratio", "stackelberg.curvature_bound"} & registry.REPORTED


def test_distance_vs_ratio_passes_on_one_over_ratio_and_reports_the_exponent():
    students, curves = distance_frames([1, 2, 4, 8, 16], lambda r, s: 0.5 / r * (1 + 0.01 * s))
    rows = sc.check_distance_vs_ratio(students, curves)
    assert len(rows) == 1 and rows["passed"].iloc[0] and rows["n"].iloc[0] == 10
    detail = rows["detail"].iloc[0]
    assert "body_distance" in detail and "decreasing" in detail and "over ratios 4, 8, 16" in detail
    fit = sc.distance_fits(students, curves).iloc[0]
    assert fit["slope"] == pytest.approx(-1.0, abs=1e-9)  # the per-seed factor is a constant offset in log
    np.testing.assert_allclose(fit["distances"], 0.5 / np.array([1, 2, 4, 8, 16]) * 1.005, rtol=1e-12)


def test_distance_vs_ratio_fails_where_the_distance_rises():
    students, curves = distance_frames([1, 2, 4, 8], lambda r, s: {1: 0.4, 2: 0.2, 4: 0.3, 8: 0.1}[r])
    rows = sc.check_distance_vs_ratio(students, curves)
    assert not rows["passed"].iloc[0]
    assert "not decreasing at ratio 4" in rows["detail"].iloc[0]


def test_distance_vs_ratio_leaves_out_ratios_where_a_seed_diverged():
    students, curves = distance_frames([1, 2, 4, 8], lambda r, s: 1.0 / r if r < 8 else 5.0, diverged=(8,))
    rows = sc.check_distance_vs_ratio(students, curves)
    assert rows["passed"].iloc[0] and "diverged at ratios 8" in rows["detail"].iloc[0]
    summary = sc.distance_summary(students, curves)
    assert summary.set_index("lr_ratio").loc[8.0, "n_diverged"] == 2


def test_distance_vs_ratio_reads_the_loss_without_a_body_sketch():
    students, curves = distance_frames([1, 2, 4], lambda r, s: 0.3 / r, sketch=False)
    rows = sc.check_distance_vs_ratio(students, curves)
    assert rows["passed"].iloc[0] and rows["detail"].iloc[0].startswith("loss_distance")


def test_distance_vs_ratio_keeps_runs_apart():
    """Two runs reuse student ids; each run's students are paired with their own twins (a rising run
    stays failing when joined with a decreasing one)."""
    s0, c0 = distance_frames([1, 2, 4], lambda r, s: 1.0 / r, run="r0")
    s1, c1 = distance_frames([1, 2, 4], lambda r, s: r / 10, run="r1")
    rows = sc.check_distance_vs_ratio(pd.concat([s0, s1]), pd.concat([c0, c1]))
    assert sorted(zip(rows["configuration"].str.contains("r1"), rows["passed"])) == [(False, True), (True, False)]


def curvature_frames(phi_over_sharpness, head="best_response", seeds=(0,), dtype=float):
    """One student per seed: sharpness 2 at every step, phi_sharpness = 2 * phi_over_sharpness(t)."""
    srows, crows = [], []
    for sid, seed in enumerate(seeds):
        srows.append(student(sid, seed, math.inf if head == "best_response" else 10.0))
        for t in range(T + 1):
            crows.append({"run_id": "r0", "student_id": sid, "step": t, "train_loss": 1.0,
                          "sharpness": dtype(2.0), "phi_sharpness": dtype(2.0 * phi_over_sharpness(t))})
    students = pd.DataFrame(srows)
    curves = join(students, crows)
    curves[["sharpness", "phi_sharpness"]] = curves[["sharpness", "phi_sharpness"]].astype(dtype)
    return students, curves


def test_curvature_bound_passes_at_and_below_the_bound_and_fails_above_it():
    students, curves = curvature_frames(lambda t: 1.0 if t == 3 else 0.5)
    assert sc.check_curvature_bound(students, curves)["passed"].all()
    students, curves = curvature_frames(lambda t: 1.00001 if t == 7 else 0.5)
    rows = sc.check_curvature_bound(students, curves)
    assert not rows["passed"].iloc[0] and "step 7" in rows["detail"].iloc[0]
    students, curves = curvature_frames(lambda t: 1.00001 if t == 7 else 0.5, dtype=np.float32)
    assert sc.check_curvature_bound(students, curves)["passed"].all()  # float32: within its rtol 1e-4
    students, curves = curvature_frames(lambda t: 3.0, head="gd")  # gd heads: not bound
    assert sc.check_curvature_bound(students, curves).empty


def test_sharper_early_holds_where_phi_is_sharper_early_and_not_elsewhere():
    students, curves = curvature_frames(lambda t: 2.0 - 0.15 * t, head="gd", seeds=(0, 1))
    rows = sc.check_sharper_early(students, curves)
    assert len(rows) == 1 and rows["passed"].iloc[0] and rows["n"].iloc[0] == 2
    assert "1.93 early (t <= 1:" in rows["detail"].iloc[0] and "higher early" in rows["detail"].iloc[0]
    summary = sc.curvature_summary(students, curves).iloc[0]
    assert summary["ratio_early"] == pytest.approx((2.0 + 1.85) / 2) and summary["ratio_late"] == pytest.approx(0.5)
    students, curves = curvature_frames(lambda t: 0.5 + 0.1 * t, head="gd")
    assert not sc.check_sharper_early(students, curves)["passed"].iloc[0]


def budget_frames(rates, seeds=(0, 1), total=0.3, diverged=()):
    """Students at lr_total 0.3 and ratios ``rates`` (ratio -> decay rate k): loss exp(-k t) from 1, logged
    every step."""
    srows, crows = [], []
    for seed in seeds:
        for ratio, k in rates.items():
            sid = len(srows)
            srows.append(student(sid, seed, ratio, total=total, diverged=ratio in diverged))
            for t in range(T + 1):
                crows.append({"run_id": "r0", "student_id": sid, "step": t, "train_loss": math.exp(-k * t)})
    students = pd.DataFrame(srows)
    return students, join(students, crows)


def test_equal_budget_names_the_first_ratio_and_whether_uniform_loses():
    """Target max(0.1 L_0, sqrt(L_0 L_min)) = 0.1 here (L_min = exp(-10 * 0.8)): reached at t = ln(10) / k."""
    students, curves = budget_frames({1.0: 0.3, 4.0: 0.8, 16.0: 0.5})
    summary = sc.equal_budget_summary(students, curves).set_index("lr_ratio")
    np.testing.assert_allclose(summary["median_steps"], math.log(10) / np.array([0.3, 0.8, 0.5]), rtol=1e-12)
    assert summary["target"].iloc[0] == pytest.approx(0.1) and summary["winner"].iloc[0] == 4.0
    rows = sc.check_equal_budget(students, curves)
    assert rows["passed"].iloc[0] and "first: ratio 4" in rows["detail"].iloc[0]
    students, curves = budget_frames({1.0: 0.8, 4.0: 0.5})
    assert not sc.check_equal_budget(students, curves)["passed"].iloc[0]


def test_equal_budget_target_follows_a_noise_floor_and_diverged_students_never_arrive():
    students, curves = budget_frames({1.0: 0.1, 4.0: 0.2}, diverged=(4.0,))  # L_min = exp(-1) > 0.01
    summary = sc.equal_budget_summary(students, curves).set_index("lr_ratio")
    assert summary["target"].iloc[0] == pytest.approx(math.exp(-0.5))
    assert summary.loc[1.0, "median_steps"] == pytest.approx(5.0) and math.isinf(summary.loc[4.0, "median_steps"])
    assert summary.loc[4.0, "n_reached"] == 0 and not summary["uniform_loses"].iloc[0]


def test_equal_budget_ignores_grids_without_a_shared_total():
    students, curves = distance_frames([1, 2, 4], lambda r, s: 1.0 / r)  # lr_body x lr_ratio: totals differ
    assert sc.check_equal_budget(students, curves).empty


def test_compare_shows_the_checks_on_an_engine_run(tmp_path):
    """A width-1 linear student (x64): the body distance to the best-response run decreases over ratios 1..8
    (all below the head's stability limit), and phi_sharpness <= sharpness on the best-response run."""
    cfg = tmp_path / "sb.yaml"
    cfg.write_text("""
name: sb
task: {kind: linear_teacher, input_dim: 4, n_train: 8, noise_std: 0.0, design: orthogonal}
model: {parameterization: standard, n_layers: 2, width: 1, activation: linear}
init: gaussian
train: {steps: 20, log_every: 2, metrics: [body_sketch, sharpness, phi_sharpness], head_ridge: 0.01}
grid: {lr_body: [0.05], lr_ratio: [1, 2, 4, 8, .inf]}
""")
    rc, out, err = cli_main(["run", cfg, "--out", tmp_path, "--quiet", "--x64"])
    assert rc == 0, err
    (run,) = (tmp_path / "sb").iterdir()
    rc, out, err = cli_main(["compare", run])
    assert rc == 0, err
    assert "stackelberg.distance_vs_ratio: 1/1 configurations pass" in out
    assert "stackelberg.curvature_bound: 1/1 configurations pass" in out
    assert "stackelberg.sharper_early" in out


def test_equal_budget_ignores_totals_shared_by_coincidence():
    """An lr_body x lr_ratio grid where lr_body 0.01 at ratio 2 and lr_body 0.015 at ratio 1 both sum to 0.03:
    not an equal-budget comparison (the other ratios do not share that total)."""
    rows = []
    for sid, (body, ratio) in enumerate([(0.01, 1), (0.01, 2), (0.01, 4), (0.015, 1), (0.015, 2), (0.015, 4)]):
        rows.append(student(sid, 0, float(ratio), body=body))
    students = pd.DataFrame(rows)
    students["lr_total"] = students["lr_1"] + students["lr_2"]
    students.loc[students["lr_total"].sub(0.03).abs() < 1e-12, "lr_total"] = 0.03
    assert (students["lr_total"] == 0.03).sum() == 2
    curves = join(students, [{"run_id": "r0", "student_id": sid, "step": t, "train_loss": math.exp(-0.1 * t)}
                             for sid in students["student_id"] for t in range(T + 1)])
    assert sc.equal_budget_summary(students, curves).empty


def test_exponent_is_the_mean_of_the_seeds_slopes():
    """Seed 0: 1 / r, seed 1: 5 / sqrt(r): slope (-1 - 0.5) / 2 = -0.75 with SE 0.25 (sd of two slopes over
    sqrt 2); a pooled fit would mix the seeds' offsets into the slope."""
    students, curves = distance_frames([1, 2, 4, 8], lambda r, s: 0.1 / r if s == 0 else 0.5 / math.sqrt(r))
    fit = sc.distance_fits(students, curves).iloc[0]
    assert fit["slope"] == pytest.approx(-0.75, abs=1e-9) and fit["se"] == pytest.approx(0.25, abs=1e-9)
    assert list(fit["fit_ratios"]) == [4.0, 8.0]


def test_seeds_whose_best_response_run_diverged_are_left_out_and_named():
    """A twin that diverged (e.g. at step 0) leaves its seed without a reference: that seed is left out, not
    every ratio; with no reference at all the configuration fails, saying so."""
    students, curves = distance_frames([1, 2, 4], lambda r, s: 1.0 / r, seeds=(0, 1))
    students.loc[(students["seed"] == 1) & (students["head"] == "best_response"), "diverged"] = True
    curves = curves.drop(columns="diverged").merge(students[["student_id", "diverged"]], on="student_id")
    rows = sc.check_distance_vs_ratio(students, curves)
    assert rows["passed"].iloc[0] and "1 seeds left out" in rows["detail"].iloc[0]
    assert sc.distance_summary(students, curves)["n_seeds"].tolist() == [1, 1, 1]
    students.loc[students["head"] == "best_response", "diverged"] = True
    curves = curves.drop(columns="diverged").merge(students[["student_id", "diverged"]], on="student_id")
    rows = sc.check_distance_vs_ratio(students, curves)
    assert not rows["passed"].iloc[0] and "diverged in all 2 seeds" in rows["detail"].iloc[0]


def test_distance_table_and_steps_to_target_keep_runs_apart():
    """Frames of two runs (student ids reused) give each run's rows, each paired within its run."""
    s0, c0 = distance_frames([1, 2], lambda r, s: 1.0 / r, seeds=(0,), run="r0")
    s1, c1 = distance_frames([1, 2], lambda r, s: 4.0 / r, seeds=(0,), run="r1")
    table = sc.distance_table(pd.concat([s0, s1]), pd.concat([c0, c1]))
    got = sorted(zip(table["run_id"], table["lr_ratio"], table["final_body_distance"].round(12)))
    assert got == [("r0", 1.0, 1.0), ("r0", 2.0, 0.5), ("r1", 1.0, 4.0), ("r1", 2.0, 2.0)]
    reached = sc.steps_to_target(pd.concat([c0, c1]), math.exp(-1.0))  # the twin (gap 0) reaches it at t = 5
    assert reached.loc[("r0", 2)] == pytest.approx(5.0) and reached.loc[("r1", 2)] == pytest.approx(5.0)
    assert len(reached) == 6
