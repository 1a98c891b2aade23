"""Progress (lrsweep.core.progress): plain lines when stderr is not a terminal, progress inside long
chunks (one engine callback per segment), and segmenting for progress changes no result."""
import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from conftest import cli_main
from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core.checkpoint import ChunkCheckpoints
from lrsweep.core.progress import Progress

LONG = {"name": "long", "seeds": [0, 1, 2],
        "task": {"input_dim": 8, "n_train": 12},
        "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 6},
        "train": {"steps": 12, "log_every": 3, "mode": "grid"},
        "grid": {"lr_total": [0.5, 2.0, 400.0], "lr_1_fraction": [0.25, 0.75]}}  # 18 students, 400 diverges
LINE = re.compile(r"^lrsweep: ([\d.]+)/(\d+) students \((\d+)%\), ([\d.e+]+) students/s, ETA (\S+), (\d+) diverged$")


def _lines(text: str) -> list[tuple]:
    """(students, total, percent, diverged) of every progress line; fails on any other line."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        assert m, repr(line)
        out.append((float(m[1]), int(m[2]), int(m[3]), int(m[6])))
    return out


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_plain_lines_every_interval_with_rate_eta_and_fractional_chunks():
    stream, clock = io.StringIO(), Clock()
    p = Progress(100, initial=10, stream=stream, interval_s=30, clock=clock)
    on_segment = p.chunk(40)
    clock.t += 10
    on_segment(250, 1000, 3)  # a quarter of a 40-student chunk: 10 students, too soon for a line
    assert stream.getvalue() == ""
    clock.t += 20             # 30 s after the start: 10 + 10 students, 10 in 30 s
    on_segment(500, 1000, 5)  # half the chunk: 10 + 20 students; 20 trained in 30 s = 0.667/s
    assert stream.getvalue() == "lrsweep: 30/100 students (30%), 0.667 students/s, ETA 0:01:45, 5 diverged\n"
    clock.t += 15
    p.update(40, n_diverged=7)  # chunk done: 50 students, 7 diverged; 15 s since the last line
    assert stream.getvalue().count("\n") == 1
    clock.t += 15
    p.set_description("group 2/2")  # the bar's only
    p.update(50, n_diverged=1)  # 100 students, 90 trained in 60 s
    p.close()
    p.close()
    lines = stream.getvalue().splitlines()
    assert lines[1:] == ["lrsweep: 100/100 students (100%), 1.5 students/s, ETA 0:00:00, 8 diverged"]
    assert "\r" not in stream.getvalue()


def test_interval_zero_writes_every_update_and_quiet_writes_nothing(monkeypatch):
    stream, clock = io.StringIO(), Clock()
    monkeypatch.setenv("LRSWEEP_PROGRESS_EVERY", "0")
    p = Progress(8, stream=stream, clock=clock)
    on_segment = p.chunk(8)
    for steps_done in (1, 2, 3, 4):
        clock.t += 1
        on_segment(steps_done, 4, steps_done // 2)
    clock.t += 1
    p.update(8, n_diverged=3)
    p.close()  # same counts as the last line: not repeated
    assert [(n, d) for n, _, _, d in _lines(stream.getvalue())] == [(2, 0), (4, 1), (6, 1), (8, 2), (8, 3)]
    quiet = io.StringIO()
    q = Progress(8, enabled=False, stream=quiet, interval_s=0)
    q.chunk(8)(2, 4, 1)
    q.update(8, 1)
    q.close()
    assert quiet.getvalue() == ""


def test_engine_calls_on_segment_after_every_segment(tmp_path):
    """12 steps in segments of 3: four calls, steps_done 3, 6, 9, 12, each with the students that
    diverged before that step (from the results' diverged_step)."""
    students, specs = runner.prepare(config.load_config(LONG))
    (spec,) = specs.values()
    calls, sizes = [], []

    def segment_callback(n_students):
        sizes.append(n_students)
        return lambda *args: calls.append(args)

    ck = ChunkCheckpoints(tmp_path / "ck", every_s=0, segment_steps=3)  # checkpoints off, segments of 3
    ((_, res),) = list(engine.iter_group(spec, students, chunk_size=18, checkpoints=ck,
                                         segment_callback=segment_callback))
    assert sizes == [18]
    assert [c[:2] for c in calls] == [(3, 12), (6, 12), (9, 12), (12, 12)]
    div_step = np.where(res["diverged"], res["diverged_step"], 10 ** 6)
    assert [c[2] for c in calls] == [int((div_step < t).sum()) for t in (3, 6, 9, 12)]
    assert 0 < calls[-1][2] < 18
    assert not (tmp_path / "ck").exists()  # segmenting for progress saves nothing


def test_cli_run_to_a_non_terminal_writes_plain_increasing_lines(tmp_path, monkeypatch):
    """stderr not a terminal: one plain line per segment (interval 0) inside the single chunk,
    no carriage returns, counts increasing to a last line at 100% with the stored diverged count;
    --quiet writes nothing."""
    path = tmp_path / "long.yaml"
    path.write_text(json.dumps(LONG))
    monkeypatch.setattr(runner, "SEGMENT_STEPS", 4)  # the CLI's segment length: 12 steps = 3 segments
    monkeypatch.setenv("LRSWEEP_PROGRESS_EVERY", "0")
    rc, _, err = cli_main(["run", path, "--out", tmp_path / "out", "--chunk-size", "18", "--checkpoint-every", "0"])
    assert rc == 0, err
    assert "\r" not in err
    lines = _lines(err)
    counts = [n for n, *_ in lines]
    assert counts[:3] == [6, 12, 18]  # a third of the chunk after each of its 3 segments
    assert all(a <= b for a, b in zip(counts, counts[1:]))
    (run,) = (tmp_path / "out" / "long").iterdir()
    n_div = int(pd.read_parquet(run / "students")["diverged"].sum())
    assert 0 < n_div < 18
    assert lines[-1] == (18, 18, 100, n_div)
    rc, _, err = cli_main(["run", path, "--out", tmp_path / "quiet", "--quiet", "--checkpoint-every", "0"])
    assert rc == 0 and err == ""


@pytest.mark.parametrize("precision", ["float32", "x64"])
def test_segmenting_for_progress_changes_no_result(request, tmp_path, monkeypatch, capsys, precision):
    """The same run with progress (12 steps in segments of 5, 5, 2) and with --quiet (one scan):
    every stored number equal bit for bit, diverging students included."""
    if precision == "x64":
        request.getfixturevalue("x64")
    monkeypatch.setenv("LRSWEEP_PROGRESS_EVERY", "0")
    cfg = config.load_config(LONG)
    args = dict(x64=precision == "x64", checkpoint_every=0, segment_steps=5, chunk_size=6)
    runner.run(cfg, tmp_path / "seg", run_id="r", progress=True, **args)
    lines = _lines(capsys.readouterr().err)
    assert len(lines) == 3 * 3 + 3  # 3 chunks of 3 segments, each also finished (3 lines at 6, 12, 18)
    runner.run(cfg, tmp_path / "one", run_id="r", progress=False, **args)
    assert capsys.readouterr().err == ""
    for table, key in (("students", ["student_id"]), ("curves", ["student_id", "step"])):
        a, b = (pd.read_parquet(tmp_path / d / "long" / "r" / table).sort_values(key)
                .reset_index(drop=True) for d in ("seg", "one"))
        assert len(a) == (18 if table == "students" else 18 * 5)
        if table == "students":
            assert 0 < a["diverged"].sum() < 18
        cols = [c for c in a.columns if pd.api.types.is_numeric_dtype(a[c]) or pd.api.types.is_bool_dtype(a[c])]
        for c in cols:
            np.testing.assert_array_equal(a[c].to_numpy(), b[c].to_numpy(), err_msg=f"{table}.{c}")


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_bad_progress_interval_fails_before_any_run_directory(tmp_path, monkeypatch, value):
    path = tmp_path / "long.yaml"
    path.write_text(json.dumps(LONG))
    monkeypatch.setenv("LRSWEEP_PROGRESS_EVERY", value)
    rc, _, err = cli_main(["run", path, "--out", tmp_path / "out"])
    assert rc == 2
    assert err.count("\n") == 1 and "LRSWEEP_PROGRESS_EVERY" in err and ">= 0" in err, err
    assert not (tmp_path / "out").exists()
