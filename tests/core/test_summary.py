"""End-of-run summary (summary_lib.summarize, best_rates; `lrsweep show`): one row per setting of every
varying non-rate axis, the best point among those with the fewest diverged seeds, and honest counts.

References are computed here from the students table with plain pandas / numpy."""
import shutil
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import cli_main

import lrsweep
from lrsweep.core import config
from lrsweep.core import runner
from lrsweep.core import summary as summary_lib
from lrsweep.core import store

OLD_RUN = Path(__file__).parent.parent / "data" / "v010_quickstart"  # written by lrsweep 0.1.0

# The quickstart student (paper_deep, L = 3) at h = d = n = 16 for 16 steps, 4 seeds, float64: with the
# exact gradient every seed converges; with the signal-only gradient, 3 of 4 seeds diverge at every
# split of C = 4 and all 4 at every split of C = 6.
TWO_GRADIENTS = {"name": "two_gradients", "seeds": [0, 1, 2, 3],
                 "task": {"input_dim": 16, "n_train": 16, "design": "orthogonal"},
                 "model": {"n_layers": 3, "width": 16, "parameterization": "paper_deep"},
                 "train": {"steps": 16}, "grid": {"lr_line": [4, 6], "gradient": ["exact", "signal_only"]}}
POINT = ["gradient", "lr_line", "lr_1", "lr_2"]


@pytest.fixture(scope="module")
def two_gradient_run(tmp_path_factory):
    old = jax.config.jax_enable_x64
    try:
        summary = runner.run(config.load_config(TWO_GRADIENTS), tmp_path_factory.mktemp("summary"), x64=True,
                             progress=False)
    finally:
        jax.config.update("jax_enable_x64", old)
    return summary.run_dir, lrsweep.load(summary.run_dir, table="students")


def per_point(students: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Per learning-rate point: seeds, diverged seeds, and the mean final test loss of the survivors."""
    rows = []
    for key, g in students.groupby(keys):
        alive = ~g["diverged"].to_numpy(bool)
        loss = g["final_test_loss"].to_numpy(float)[alive]
        rows.append({**dict(zip(keys, key)), "n": len(g), "n_diverged": int((~alive).sum()),
                     "mean": float(np.mean(loss)) if alive.any() else np.nan})
    return pd.DataFrame(rows)


def test_one_row_per_gradient_and_line_and_the_exact_minimum(two_gradient_run):
    run, students = two_gradient_run
    best = summary_lib.summarize(run).best
    settings = sorted(set(zip(students["gradient"], students["lr_line"])))
    assert len(best) == len(settings) == 4
    assert sorted(zip(best["gradient"], best["lr_line"])) == settings
    points = per_point(students, POINT)
    exact = points[points["gradient"] == "exact"]
    assert exact["n_diverged"].sum() == 0  # the premise: the exact gradient never diverges here
    for C, line in exact.groupby("lr_line"):
        row = best[(best["gradient"] == "exact") & (best["lr_line"] == C)].iloc[0]
        want = line.loc[line["mean"].idxmin()]
        assert row["mean"] == pytest.approx(want["mean"], rel=1e-12)  # the same float64 losses, summed
        assert (row["lr_1"], row["lr_2"]) == (want["lr_1"], want["lr_2"])
        assert (row["n_seeds"], row["n_diverged"]) == (4, 0)


def test_diverged_counts_match_the_students_table(two_gradient_run):
    run, students = two_gradient_run
    best = summary_lib.summarize(run).best
    points = per_point(students, POINT)
    c4 = points[(points["gradient"] == "signal_only") & (points["lr_line"] == 4)]
    assert (c4["n_diverged"] == 3).all() and (c4["n"] == 4).all()  # premise: 3 of 4 seeds diverge at each split
    for _, row in best.iterrows():
        setting = points[(points["gradient"] == row["gradient"]) & (points["lr_line"] == row["lr_line"])]
        # eligible: the fewest diverged seeds in the setting
        assert row["n_diverged"] == setting["n_diverged"].min()
        if row["n_seeds"] == 0:  # every point of the setting diverged
            assert (setting["n_diverged"] == setting["n"]).all() and np.isnan(row["mean"])
            assert np.isnan(row["lr_1"]) and np.isnan(row["lr_2"])
            continue
        at = setting[(setting["lr_1"] == row["lr_1"]) & (setting["lr_2"] == row["lr_2"])].iloc[0]
        assert (row["n_seeds"], row["n_diverged"]) == (at["n"] - at["n_diverged"], at["n_diverged"])
        assert row["mean"] == pytest.approx(setting.loc[setting["n_diverged"] == at["n_diverged"], "mean"].min(),
                                            rel=1e-12)
    c4_best = best[(best["gradient"] == "signal_only") & (best["lr_line"] == 4)].iloc[0]
    assert (c4_best["n_seeds"], c4_best["n_diverged"]) == (1, 3)
    c6_best = best[(best["gradient"] == "signal_only") & (best["lr_line"] == 6)].iloc[0]
    assert (c6_best["n_seeds"], c6_best["n_diverged"]) == (0, 4)


def test_show_prints_every_setting_and_says_what_the_mean_is(two_gradient_run):
    run, _ = two_gradient_run
    rc, out, err = cli_main(["show", run])
    assert rc == 0, err
    assert "mean over the surviving (non-diverged) seeds" in out
    assert "fewest diverged seeds" in out and "final_test_loss" in out
    rows = {tuple(line.split()[:2]): line.split() for line in out.splitlines()
            if line.split()[:1] in (["exact"], ["signal_only"])}
    assert sorted(rows) == [("exact", "4"), ("exact", "6"), ("signal_only", "4"), ("signal_only", "6")]
    assert rows[("signal_only", "4")][-2:] == ["1", "3"]  # n_seeds, n_diverged
    assert " ".join(rows[("signal_only", "6")][-4:]) == "all diverged 0 4"


def write_run(root: Path, cfg: dict, loss) -> Path:
    """A stored run without training: the grid of ``cfg``, final losses ``loss(students)`` and
    ``diverged`` where the loss is NaN."""
    cfg = config.load_config(cfg)
    students = config.expand_grid(cfg)
    students["final_test_loss"] = loss(students)
    students["final_train_loss"] = students["final_test_loss"]
    students["diverged"] = students["final_test_loss"].isna()
    for col in ("metrics", "log_steps", "points"):  # list-valued fields are stored as text, as a run does
        students[col] = students[col].map(lambda v: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else None)
    run = root / cfg.name / "r0"
    store.write_yaml(cfg.to_dict(), run / "config.yaml")
    store.write_json({"status": "complete", "n_groups": 1, "wall_time_s": 1.0, "students_per_s": 1.0,
                      "n_students": len(students)}, run / "meta.json")
    store.write_table(students, run / "students.parquet")
    store.write_table(pd.DataFrame({"run_id": "r0", "student_id": students["student_id"], "step": 0,
                                    "train_loss": students["final_train_loss"]}), run / "curves.parquet")
    return run  # complete as `lrsweep ls` checks it: both tables, every student


def test_the_rule_prefers_points_without_diverged_seeds():
    """Hand-made table: the lowest mean over survivors loses to a point where no seed diverged."""
    rows = []
    for seed in range(4):
        rows += [{"noise_std": 0.0, "lr_1": 1.0, "final_test_loss": 2.0, "diverged": False, "seed": seed},
                 {"noise_std": 0.0, "lr_1": 2.0, "final_test_loss": np.nan if seed == 0 else 1.0,
                  "diverged": seed == 0, "seed": seed},
                 {"noise_std": 0.1, "lr_1": 1.0, "final_test_loss": np.nan if seed else 5.0, "diverged": seed > 0,
                  "seed": seed},
                 {"noise_std": 0.1, "lr_1": 2.0, "final_test_loss": np.nan, "diverged": True, "seed": seed},
                 {"noise_std": 0.2, "lr_1": 1.0, "final_test_loss": np.nan, "diverged": True, "seed": seed},
                 {"noise_std": 0.3, "lr_1": 1.0, "final_test_loss": [3.0, np.inf, 3.0, 3.0][seed],
                  "diverged": False, "seed": seed},
                 {"noise_std": 0.3, "lr_1": 2.0, "final_test_loss": 4.0, "diverged": False, "seed": seed}]
    best = summary_lib.best_rates(pd.DataFrame(rows)).set_index("noise_std")
    assert list(best.index) == [0.0, 0.1, 0.2, 0.3]
    assert best.loc[0.0, ["lr_1", "mean", "n_seeds", "n_diverged"]].tolist() == [1.0, 2.0, 4, 0]
    assert best.loc[0.1, ["lr_1", "mean", "n_seeds", "n_diverged"]].tolist() == [1.0, 5.0, 1, 3]
    assert np.isnan(best.loc[0.2, "lr_1"]) and best.loc[0.2, ["n_seeds", "n_diverged"]].tolist() == [0, 4]
    assert best.loc[0.3, ["lr_1", "mean"]].tolist() == [2.0, 4.0]  # a non-finite survivor's point is not best


def test_the_metric_present_is_used_where_final_test_loss_is_missing():
    students = pd.DataFrame({"loss": ["mse", "mse", "logistic", "logistic"], "lr_1": [1.0, 2.0, 1.0, 2.0],
                             "final_test_loss": [3.0, 1.0, np.nan, np.nan], "final_train_loss": [0.0, 9.0, 7.0, 6.0],
                             "diverged": False})
    best = summary_lib.best_rates(students).set_index("loss")
    assert best.loc["mse", ["lr_1", "metric", "mean"]].tolist() == [2.0, "final_test_loss", 1.0]
    assert best.loc["logistic", ["lr_1", "metric", "mean"]].tolist() == [2.0, "final_train_loss", 6.0]
    best = summary_lib.best_rates(students.drop(columns="final_test_loss"))
    assert set(best["metric"]) == {"final_train_loss"} and best["mean"].tolist() == [6.0, 0.0]


@pytest.mark.parametrize("grid, settings", [
    ({"lr_total": [2.0, 4.0], "lr_1_fraction": [0.25, 0.75]}, [2.0, 4.0]),  # each C is a setting
    ({"lr": [0.5, 1.0, 2.0]}, None),  # lr_total = 2 lr is a rate like lr_1, lr_2: one setting
])
def test_lr_total_is_a_setting_only_where_the_config_sweeps_it(tmp_path, grid, settings):
    cfg = {"name": "lines", "seeds": [0, 1], "model": {"n_layers": 3, "width": 8}, "task": {"input_dim": 8},
           "grid": grid}
    run = write_run(tmp_path, cfg, lambda s: (s["lr_1"] - 1.5) ** 2 + s["lr_total"] + 0.1 * s["seed"])
    best = summary_lib.summarize(run).best
    students = lrsweep.load(run, table="students")
    if settings is None:
        assert len(best) == 1 and "lr_total" not in best
        assert best["mean"].iloc[0] == pytest.approx(per_point(students, ["lr_1"])["mean"].min(), rel=1e-12)
    else:
        assert best["lr_total"].tolist() == settings
        for C, row in best.set_index("lr_total").iterrows():
            line = per_point(students[students["lr_total"] == C], ["lr_1"])
            assert row["mean"] == pytest.approx(line["mean"].min(), rel=1e-12)


def test_large_tables_print_twenty_rows_and_say_where_the_rest_is(tmp_path):
    noise = [round(0.01 * i, 2) for i in range(25)]
    run = write_run(tmp_path, {"name": "many", "grid": {"noise_std": noise, "lr": [0.5, 1.0]}},
                    lambda s: s["noise_std"] + s["lr_1"])
    rc, out, err = cli_main(["show", run])
    assert rc == 0, err
    table = [line for line in out.splitlines() if line.split()[-2:] == ["1", "0"]]  # n_seeds 1, n_diverged 0
    assert len(table) == 20
    assert f"5 more settings not shown; all 25: lrsweep show {run} --rows 25" in out
    rc, out, _ = cli_main(["show", run, "--rows", "25"])
    assert rc == 0 and len([line for line in out.splitlines() if line.split()[-2:] == ["1", "0"]]) == 25
    assert "more settings not shown" not in out


def test_run_of_version_0_1_0_is_summarized_and_left_unchanged(tmp_path):
    shutil.copytree(OLD_RUN, tmp_path / "old")
    run = next((tmp_path / "old").iterdir())
    before = sorted(p.name for p in run.iterdir())
    summary = summary_lib.summarize(run)
    students = lrsweep.load(run, table="students")
    assert summary.setting_columns == ["gradient"]  # lr_line is one line, C = 8
    points = per_point(students, ["gradient", "lr_1", "lr_2"])
    for gradient, rows in points.groupby("gradient"):
        row = summary.best.set_index("gradient").loc[gradient]
        assert row["mean"] == pytest.approx(rows["mean"].min(), rel=1e-6)  # float32 losses, float64 means
        assert (row["n_seeds"], row["n_diverged"]) == (2, 0)
    rc, out, err = cli_main(["show", run])
    assert rc == 0, err
    assert "exact" in out and "signal_only" in out
    assert sorted(p.name for p in run.iterdir()) == before  # show writes nothing
