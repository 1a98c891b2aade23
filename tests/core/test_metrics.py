"""Metrics inside the scan (lrsweep.core.metrics): values against the numpy reference, and their columns in
the stored tables, readable by lrsweep.load, pyarrow, pandas and duckdb; runs of 0.1.0 still load."""
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

import lrsweep
import reference
from conftest import cli_main, train_config
from test_engine import instance_numpy, make_cfg

OLD_RUN = Path(__file__).parent.parent / "data" / "v010_quickstart"  # written by lrsweep 0.1.0 (commit 63adde0)


@pytest.mark.parametrize("formulation", ["moments", "lowrank", "autodiff"])
def test_weight_norm_and_loss_peak_match_reference(x64, formulation):
    """Per-layer Frobenius norms at every logged step (dense weights from any formulation, the
    lowrank state included) and the largest train loss with its first step."""
    cfg = make_cfg("paper_deep", 3, "linear", [1.0, 0.5], formulation, steps=5, noise_std=0.1)
    cfg["train"]["metrics"] = ["weight_norm", "loss_peak"]
    cfg["grid"] = {"lr_1": [0.5, 40.0], "lr_2": [0.25, 40.0]}  # the large rates overshoot: a real peak
    students, results = train_config(cfg)
    peaks_after_start = 0
    for sid, got in results.items():
        spec, row, params0, inst = instance_numpy(students, sid)
        ref = reference.reference_train(params0, inst["x"], inst["y"], lrs=[row["lr_1"], row["lr_2"]], steps=5,
                                        parameterization="paper_deep", readout=inst["readout"], beta=inst["beta"],
                                        weight_norms=True)
        alive = np.isfinite(got["train_loss"])
        for l in (1, 2):
            np.testing.assert_allclose(got[f"weight_norm_{l}"][alive], ref["weight_norm"][alive, l - 1], rtol=1e-10)
        last = int(got["diverged_step"]) if got["diverged"] else 6
        ref_losses = ref["train_loss"][:last]
        np.testing.assert_allclose(got["loss_peak"], ref_losses.max(), rtol=1e-10)
        assert int(got["loss_peak_step"]) == int(np.argmax(ref_losses))
        peaks_after_start += int(got["loss_peak_step"]) > 0
    assert peaks_after_start > 0  # some student's loss rose above its initial value


def _run(tmp_path, cfg):
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    rc, out, err = cli_main(["run", path, "--out", tmp_path / "results", "--quiet"])
    assert rc == 0, err
    return next((tmp_path / "results").rglob("meta.json")).parent


def test_metric_columns_in_every_reader(tmp_path):
    cfg = make_cfg("standard", 2, "relu", [0.2, 0.1], "autodiff", steps=3)
    cfg["name"] = "metrics"
    cfg["train"]["metrics"] = ["weight_norm", "loss_peak"]
    run = _run(tmp_path, cfg)
    want_curves = {"train_loss", "test_loss", "weight_norm_1", "weight_norm_2"}
    want_students = {"final_train_loss", "final_test_loss", "final_weight_norm_1", "final_weight_norm_2",
                     "loss_peak", "loss_peak_step"}
    curves = lrsweep.load(run)
    students = lrsweep.load(run, table="students")
    assert want_curves <= set(curves.columns) and want_students <= set(students.columns)
    assert want_curves <= set(pq.read_table(run / "curves").column_names)
    assert want_students <= set(pd.read_parquet(run / "students").columns)
    # the final_ column is the curve's last logged value
    last = curves[curves["step"] == 3].set_index("student_id")["weight_norm_2"]
    np.testing.assert_array_equal(students.set_index("student_id")["final_weight_norm_2"].loc[last.index], last)
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"select count(*), min(weight_norm_1) from read_parquet('{run / 'curves'}/*/*.parquet', "
                     f"hive_partitioning=true) where step = 0").fetchall()[0]
    assert got[0] == len(students) and got[1] == pytest.approx(curves[curves.step == 0]["weight_norm_1"].min())


def test_run_of_version_0_1_0_still_loads(tmp_path):
    """Tables written before metrics had their own columns load with today's readers and compare."""
    shutil.copytree(OLD_RUN, tmp_path / "v010_quickstart")
    run = next((tmp_path / "v010_quickstart").iterdir())
    curves = lrsweep.load(run)
    assert {"train_loss", "test_loss", "lr_1", "lr_2", "gradient"} <= set(curves.columns)
    assert len(curves) == 3 * len(lrsweep.load(run, table="students")) == 3 * 28  # 7 splits x 2 gradients x 2 seeds
    rc, out, err = cli_main(["compare", run])
    assert rc == 0, err
    assert "layer_balancing.three_layer: 14 exact points" in out
