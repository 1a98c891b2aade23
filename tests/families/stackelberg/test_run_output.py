"""`lrsweep run` of a Stackelberg config, in-process: no pandas PerformanceWarning from the ``body_sketch``
columns (one per sketch direction, inserted one at a time fragmented the students frame), and the best-rates
table named by the config's rate axes (lr_body, lr_head, lr_ratio), not lr_1 / lr_2 (issue 24)."""
import warnings

import pandas as pd
import pytest
import yaml
from conftest import cli_main

# 16 x 16 body: 256 weights, sketched to 128 columns (more than pandas' 100 blocks before it warns)
CFG = {"name": "sketch", "seeds": [0, 1], "task": {"input_dim": 16, "n_train": 32},
       "model": {"parameterization": "standard", "n_layers": 2, "width": 16}, "init": "gaussian",
       "train": {"steps": 2, "metrics": ["body_sketch"], "sketch_dim": 128},
       "grid": {"lr_body": [0.01], "lr_ratio": [1.0]}}


@pytest.fixture(scope="module")
def sketch_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sketch")
    path = tmp / "sketch.yaml"
    path.write_text(yaml.safe_dump(CFG))
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        rc, out, err = cli_main(["run", path, "--out", tmp / "out", "--quiet"])
    return rc, out, err


def test_body_sketch_run_has_no_fragmentation_warning(sketch_run):
    rc, _, err = sketch_run
    assert rc == 0, err
    assert "PerformanceWarning" not in err


def test_best_rates_table_uses_the_configs_rate_names(sketch_run):
    rc, out, err = sketch_run
    assert rc == 0, err
    header = next(line for line in out.splitlines() if line.split()[-3:] == ["mean", "n_seeds", "n_diverged"])
    assert header.split()[:3] == ["lr_body", "lr_head", "lr_ratio"], header
    assert "lr_1" not in header and "lr_2" not in header
