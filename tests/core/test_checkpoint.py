"""Mid-chunk checkpoints (lrsweep.core.checkpoint, orbax): training in segments gives the numbers one
scan gives, and a run killed inside a long chunk resumes from the saved step to the results of
an uninterrupted run."""
import json

import jax
import numpy as np
from conftest import flat_result
import pandas as pd
import pytest

from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core.checkpoint import ChunkCheckpoints

LONG = {"name": "long", "seeds": [0, 1, 2],
        "task": {"input_dim": 8, "n_train": 12},
        "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 6},
        "train": {"steps": 11, "log_every": 2},
        "grid": {"lr_total": [0.5, 2.0, 400.0], "lr_1_fraction": [0.25, 0.75]}}


def _cfg(formulation="auto", schedule="constant", **model):
    cfg = json.loads(json.dumps(LONG))
    cfg["train"]["formulation"] = formulation
    cfg["train"]["schedule"] = schedule
    cfg["model"].update(model)
    return cfg


def _train(cfg, checkpoints=None, chunk_size=5):
    students, specs = runner.prepare(config.load_config(cfg))
    (spec,) = specs.values()
    out = {}
    for _, res in engine.iter_group(spec, students, chunk_size=chunk_size, checkpoints=checkpoints):
        for i, sid in enumerate(res["student_id"]):
            out[int(sid)] = flat_result(res, i)
    return students, out


@pytest.mark.parametrize("formulation,activation,schedule", [
    ("moments", "linear", "constant"), ("lowrank", "linear", "constant"), ("autodiff", "relu", "constant"),
    ("lowrank", "linear", "wsd")])
def test_segments_equal_one_scan(x64, tmp_path, formulation, activation, schedule):
    """Segments of 3 steps (saving after every one) == one scan over all 11 steps, bit for bit,
    diverging students (lr_total 400) included; a schedule continues at the right step."""
    cfg = _cfg(formulation, schedule, activation=activation)
    _, whole = _train(cfg)
    ck = ChunkCheckpoints(tmp_path / "ck", every_s=1e-9, segment_steps=3)
    saved = []
    real_save = ck.save
    ck.save = lambda ids, step, leaves: saved.append(step) or real_save(ids, step, leaves)
    _, seg = _train(cfg, checkpoints=ck)
    assert saved and set(saved) == {3, 6, 9}
    assert any(r["diverged"] for r in whole.values()) and not all(r["diverged"] for r in whole.values())
    assert whole.keys() == seg.keys()
    for sid, r in whole.items():
        for k in ("train_loss", "test_loss", "diverged", "diverged_step"):
            np.testing.assert_array_equal(seg[sid][k], r[k], err_msg=f"{sid} {k}")


def test_checkpoint_store_roundtrip_and_mismatch(tmp_path):
    ck = ChunkCheckpoints(tmp_path / "ck", every_s=1.0)
    ids = np.array([[0, 1], [2, -1]])
    leaves = [np.arange(6.0).reshape(2, 3), np.array([True, False]), np.array([[1, 2], [3, 4]], np.int32)]
    ck.save(ids, 4, leaves)
    ck.save(ids, 8, [2 * leaves[0], leaves[1], leaves[2]])  # replaces the step-4 checkpoint
    assert len(list((tmp_path / "ck").iterdir())) == 1
    like = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    step, got = ck.restore(ids, like)
    assert step == 8
    np.testing.assert_array_equal(got[0], 2 * leaves[0])
    np.testing.assert_array_equal(got[2], leaves[2])
    assert got[1].dtype == np.bool_
    assert ck.restore(np.array([[0, 1], [2, 3]]), like) is None  # other students
    assert ck.restore(np.array([[0, 2], [1, -1]]), like) is None  # same ids, other layout
    # a checkpoint left half-written by a crash (orbax's temporary directory) is never restored
    (tmp_path / "ck" / f"{ck.key(ids)}-t000000012.orbax-checkpoint-tmp-1").mkdir()
    assert ck.restore(ids, like)[0] == 8
    ck.remove(ids)
    assert ck.restore(ids, like) is None
    assert not (tmp_path / "ck").exists()  # half-written ones removed too, then the empty directory


class Crash(Exception):
    pass


@pytest.mark.parametrize("formulation", ["moments", "lowrank"])
def test_run_killed_inside_a_chunk_resumes_from_its_checkpoint(x64, tmp_path, monkeypatch, formulation):
    cfg = config.load_config(_cfg(formulation))
    ck_args = dict(checkpoint_every=1e-9, segment_steps=2, chunk_size=6, progress=False)
    real_save = ChunkCheckpoints.save
    saves = []

    def crash_at_step_10(self, ids, step, leaves):
        path = real_save(self, ids, step, leaves)
        saves.append(step)
        if len(saves) == 5:  # the first chunk saved steps 2, 4, 6, 8, 10 of 11: killed there
            raise Crash
        return path

    monkeypatch.setattr(ChunkCheckpoints, "save", crash_at_step_10)
    with pytest.raises(Crash):
        runner.run(cfg, tmp_path / "out", run_id="r", **ck_args)
    run = tmp_path / "out" / "long" / "r"
    assert len(list((run / "checkpoints").rglob("*-t*"))) == 1
    from conftest import cli_main
    rc, stdout, _ = cli_main(["ls", tmp_path / "out"])
    line = next(l for l in stdout.splitlines() if str(run) in l)
    assert " 0/18 " in line and line.rstrip().endswith(", 1 mid-chunk checkpoint(s)")  # killed inside the first chunk: its checkpoint
    monkeypatch.setattr(ChunkCheckpoints, "save", real_save)

    restored = []
    real_restore = ChunkCheckpoints.restore
    monkeypatch.setattr(ChunkCheckpoints, "restore",
                        lambda self, ids, like: restored.append(real_restore(self, ids, like)) or restored[-1])
    runner.run(resume=run, **ck_args)
    hits = [r[0] for r in restored if r is not None]
    assert hits == [10], restored  # the interrupted chunk continued from step 10, not from 0
    assert not (run / "checkpoints").exists()

    runner.run(cfg, tmp_path / "clean", run_id="c", **{**ck_args, "checkpoint_every": 0})
    for table, key in (("students", ["student_id"]), ("curves", ["student_id", "step"])):
        a = pd.read_parquet(run / table).sort_values(key).reset_index(drop=True)
        b = pd.read_parquet(tmp_path / "clean" / "long" / "c" / table).sort_values(key)
        b = b.reset_index(drop=True)
        cols = ["final_test_loss", "diverged"] if table == "students" else ["train_loss", "test_loss"]
        assert len(a) == len(b) == (18 if table == "students" else 18 * 7)
        pd.testing.assert_frame_equal(a[key + cols], b[key + cols])
