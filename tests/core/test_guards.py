"""Bad input stops before any compute or run directory, with exit 2 and one line naming the field or
option: repeated students and YAML keys, unparsable --set values, paths that are not what they should
be, runs without results, grids too large to plan, students too large for the device. A reader that
leaves stdout early (`| head`) gets no traceback. The examples in `run --help` and the quickstart run."""
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import cli_main, with_changes

from lrsweep import cli
from lrsweep.core import config
from lrsweep.core import engine
from lrsweep.core import runner
from lrsweep.core.drivers import grid as grid_driver

LRSWEEP = str(Path(sys.executable).parent / "lrsweep")
REPO = Path(__file__).resolve().parents[2]

TINY = {"name": "tiny", "seeds": [0, 1],
        "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
        "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
        "init": "orthogonal", "train": {"steps": 2},
        "grid": {"lr_total": [2, 4], "lr_1_fraction": [0.25, 0.75]}}
N_TINY = 8
HUGE = ["--set", "task.input_dim=100000", "--set", "task.n_train=100000", "--set", "model.width=100000"]


def write_cfg(path: Path, cfg=None, text=None) -> Path:
    path.write_text(text if text is not None else yaml.safe_dump(cfg or TINY, sort_keys=False))
    return path


def tiny_with(**changes) -> dict:
    return with_changes(TINY, **changes)


def expect_bad(argv, out: Path, *words) -> str:
    """Run the CLI in-process: exit 2, exactly one line on stderr holding every word, no traceback,
    nothing under ``out``. Returns the line."""
    rc, stdout, err = cli_main(argv)
    assert rc == 2, (rc, stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrsweep: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert "Traceback" not in err
    assert not out.exists() or not any(out.iterdir()), list(out.rglob("*"))
    return lines[0]


def run_args(tmp_path, *args):
    return ["run", *args, "--out", tmp_path / "out", "--quiet"]


# --------------------------------------------------------------------------------------
# Repeated students: per axis (before expansion) and after expansion
# --------------------------------------------------------------------------------------

REPEATS = {
    "seeds": (tiny_with(seeds=[0, 0]), None, ["seeds", "value 0", "twice"]),
    "width": (tiny_with(grid={"lr": [1.0], "width": [4, 4]}), None, ["grid.width", "value 4", "twice"]),
    # 0.1 and 1e-1 are one number: YAML text, so the second is spelt as the user spells it
    "lr-same-number": (None, "name: t\ntask: {input_dim: 8, n_train: 8}\nmodel: {width: 4}\n"
                             "grid: {lr: [0.1, 1e-1]}\n", ["grid.lr", "value 0.1", "twice"]),
    "zip-row": (tiny_with(grid={"zip": {"lr_1": [1.0, 2.0, 1.0], "lr_2": [3.0, 4.0, 3.0]}}), None,
                ["grid.zip[0]", "lr_1=1.0", "lr_2=3.0", "entries 1 and 3"]),
    # the authors' lines C = 46 and 47 are the same points: step 2, N = int(C / 2) = 23, eta_1 = 2..44
    "lr-line-same-points": (tiny_with(grid={"lr_line": [46, 47]}), None,
                            ["grid", "lr_line=46.0", "lr_line=47.0", "same student"]),
    # null is the authors' teacher scale 1/sqrt(h) = 0.5 for h = 4
    "target-std-default": (tiny_with(grid={"lr": [1.0], "target_std": [None, 0.5]}), None,
                           ["grid", "target_std=None", "target_std=0.5", "same student"]),
    # one trainable layer (paper_deep, L = 2): every lr_1_fraction gives eta_1 = lr_total
    "fraction-one-layer": (tiny_with(model__n_layers=2), None,
                           ["grid", "lr_1_fraction=0.25", "lr_1_fraction=0.75", "same student"]),
}


@pytest.mark.parametrize("case", sorted(REPEATS))
def test_repeated_students_exit_2(tmp_path, case):
    cfg, text, words = REPEATS[case]
    path = write_cfg(tmp_path / "c.yaml", cfg, text)
    expect_bad(run_args(tmp_path, path), tmp_path / "out", *words)
    expect_bad(run_args(tmp_path, path, "--dry-run"), tmp_path / "out", *words)


def test_zip_may_repeat_a_value_in_one_column():
    """Rows (width 4, lr 1) and (width 4, lr 2) are different students."""
    df = config.expand_grid(config.load_config(tiny_with(grid={"zip": {"width": [4, 4], "lr": [1.0, 2.0]}})))
    assert sorted(df["lr_1"]) == [1.0, 1.0, 2.0, 2.0] and set(df["width"]) == {4}


DUPLICATE_KEYS = {
    "top-level": ("name: t\ninit: orthogonal\nmodel: {width: 4}\ntask: {input_dim: 8}\ninit: gaussian\n"
                  "grid: {lr: [1.0]}\n", ["config", "duplicate key 'init'", "line 5"]),
    "nested": ("name: t\ntask: {input_dim: 8}\nmodel: {width: 4}\ngrid:\n  lr: [1.0]\n  lr: [2.0]\n",
               ["config", "duplicate key 'lr'", "line 6"]),
    "flow-mapping": ("name: t\ntask: {input_dim: 8}\nmodel: {width: 4, width: 2}\ngrid: {lr: [1.0]}\n",
                     ["config", "duplicate key 'width'", "line 3"]),
}


@pytest.mark.parametrize("case", sorted(DUPLICATE_KEYS))
def test_duplicate_yaml_key_exit_2(tmp_path, case):
    text, words = DUPLICATE_KEYS[case]
    expect_bad(run_args(tmp_path, write_cfg(tmp_path / "c.yaml", text=text)), tmp_path / "out", *words)


def test_duplicate_key_in_set_value(tmp_path):
    good = write_cfg(tmp_path / "c.yaml")
    expect_bad(run_args(tmp_path, good, "--set", "model={width: 4, width: 2}"), tmp_path / "out",
               "--set", "duplicate key 'width'")


def test_yaml_merge_key_may_be_overridden():
    """`<<: *base` followed by one of its keys is how YAML overrides a merge, not a duplicate."""
    got = config.parse_yaml("a: &a {x: 1, y: 2}\nb: {<<: *a, x: 3}\n", "config")
    assert got == {"a": {"x": 1, "y": 2}, "b": {"x": 3, "y": 2}}


# --------------------------------------------------------------------------------------
# Messages instead of tracebacks
# --------------------------------------------------------------------------------------

def test_set_value_not_yaml(tmp_path):
    good = write_cfg(tmp_path / "c.yaml")
    expect_bad(run_args(tmp_path, good, "--set", "grid.lr_total=[10,20"), tmp_path / "out",
               "--set", "grid.lr_total=[10,20", "not valid YAML")


def test_config_path_is_a_directory(tmp_path):
    (tmp_path / "adir").mkdir()
    expect_bad(run_args(tmp_path, tmp_path / "adir"), tmp_path / "out", "config", "directory")


@pytest.mark.parametrize("below", ["", "sub"])
def test_out_is_a_file(tmp_path, below):
    good = write_cfg(tmp_path / "c.yaml")
    (tmp_path / "afile").write_text("keep me")
    out = tmp_path / "afile" / below if below else tmp_path / "afile"
    rc, _, err = cli_main(["run", good, "--out", out, "--quiet"])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--out" in err and str(tmp_path / "afile") in err and "file" in err
    assert (tmp_path / "afile").read_text() == "keep me"


@pytest.fixture
def crashed_run(tmp_path, monkeypatch):
    """A run that crashed before its first chunk: no results."""
    def crash(spec, students, ctx):
        raise RuntimeError("simulated crash")
        yield
    monkeypatch.setattr(grid_driver, "DRIVER", grid_driver.DRIVER._replace(iter_group=crash))
    with pytest.raises(RuntimeError, match="simulated"):
        runner.run(config.load_config(tiny_with(train={"steps": 2, "mode": "grid"})), tmp_path / "res",
                   progress=False, run_id="r")
    monkeypatch.undo()
    run = tmp_path / "res" / "tiny" / "r"
    assert (run / "meta.json").exists() and not (run / "students").exists()
    return run


@pytest.mark.parametrize("command", ["show", "plot", "compare"])
def test_run_without_results(crashed_run, command, tmp_path):
    expect_bad([command, crashed_run], tmp_path / "nothing", str(crashed_run), "no results yet",
               "status: failed", "simulated crash", f"lrsweep run --resume {crashed_run}")
    assert not (crashed_run / "plots").exists()


def _without_reader(argv, tmp_path) -> subprocess.CompletedProcess:
    """Run the console script with its stdout's reader gone (as `lrsweep ... | head` once head has quit)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LRSWEEP_CACHE_DIR": "off"}
    p = subprocess.Popen([LRSWEEP, *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         cwd=tmp_path)
    p.stdout.close()  # the reader leaves before the first line
    err = p.stderr.read().decode()
    return subprocess.CompletedProcess(p.args, p.wait(timeout=300), None, err)


def test_schema_into_a_closed_pipe_is_quiet(tmp_path):
    p = _without_reader(["schema"], tmp_path)
    assert p.stderr == "" and p.returncode == cli.EXIT_BROKEN_PIPE


def test_run_into_a_closed_pipe_stores_results(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml")
    p = _without_reader(["run", cfg, "--out", tmp_path / "out", "--quiet"], tmp_path)
    assert p.stderr == "" and p.returncode == cli.EXIT_BROKEN_PIPE
    (run,) = [m.parent for m in (tmp_path / "out").rglob("meta.json")]
    assert yaml.safe_load((run / "meta.json").read_text())["status"] == "complete"
    import pandas as pd
    assert sorted(pd.read_parquet(run / "students")["student_id"]) == list(range(N_TINY))


# --------------------------------------------------------------------------------------
# Grids too large to plan, students too large for the device
# --------------------------------------------------------------------------------------

def test_grid_size_counts_axes_before_expanding():
    """seeds 3 x lr_line (C = 30: 29 points, C = 45: step 2, N = 22, 21 points) x one zip of 2 rows."""
    cfg = config.load_config(tiny_with(seeds=[0, 1, 2], grid={
        "lr_line": [30, 45], "zip": {"gradient": ["exact", "signal_only"], "init": ["orthogonal", "gaussian"]}}))
    assert config.grid_size(cfg) == 3 * (29 + 21) * 2 == len(config.expand_grid(cfg))


def _never(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"{name} called: the guard must come before it")
    return fail


@pytest.mark.parametrize("dry", [True, False])
def test_grid_of_200_million_students_fails_fast(tmp_path, monkeypatch, dry):
    """Counted from the axes: the grid is never expanded (the old code spent 89 s and 11 GB on it)."""
    cfg = write_cfg(tmp_path / "c.yaml", tiny_with(seeds={"range": [0, 9999, 1]},
                                                   grid={"lr": {"linspace": [0.1, 10.0, 20000]}}))
    monkeypatch.setattr(config, "expand_grid", _never("expand_grid"))
    line = expect_bad(run_args(tmp_path, cfg, *(["--dry-run"] if dry else [])), tmp_path / "out",
                      "grid", "200,000,000 students", "--max-students")
    assert f"{config.DEFAULT_MAX_STUDENTS:,}" in line


def test_max_students_cap(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml")
    expect_bad(run_args(tmp_path, cfg, "--dry-run", "--max-students", N_TINY - 1), tmp_path / "out",
               "grid", f"{N_TINY} students", f"--max-students {N_TINY - 1}")
    rc, stdout, err = cli_main(run_args(tmp_path, cfg, "--dry-run", "--max-students", N_TINY))
    assert rc == 0, err


def _need_gib(line: str) -> float:
    return float(re.search(r"needs ~([0-9.]+)GiB", line).group(1))


@pytest.mark.parametrize("dry", [True, False])
def test_students_too_large_for_the_device(tmp_path, monkeypatch, dry):
    """h = d = n = 100000: the data X alone is n d = 1e10 floats (37.25 GiB in float32). Refused
    from the memory model: no instance is built, nothing is compiled."""
    monkeypatch.setattr(engine, "make_instances", _never("engine.make_instances"))
    monkeypatch.setattr(engine, "make_chunk_fn", _never("engine.make_chunk_fn"))
    line = expect_bad(run_args(tmp_path, *HUGE, *(["--dry-run"] if dry else [])), tmp_path / "out",
                      "task.input_dim", "task.n_train", "model.width", "host RAM")
    assert _need_gib(line) >= 1e10 * 4 / 2**30


def test_accelerator_bytes_limit_is_the_ceiling(tmp_path, monkeypatch):
    """Where the device reports a bytes_limit, the smallest chunk is checked against it, not the RAM.
    d = n = 2048: X (n, d) and X^T X (d, d) alone are 4 * 4M floats = 64 MiB in float32."""
    cfg = write_cfg(tmp_path / "c.yaml", tiny_with(task={"input_dim": 2048, "n_train": 2048}))
    monkeypatch.setattr(engine, "memory_limits", lambda: (48 << 20, 1 << 40))
    expect_bad(run_args(tmp_path, cfg, "--dry-run"), tmp_path / "out", "model.width", "48.0MiB")
    monkeypatch.setattr(engine, "memory_limits", lambda: (1 << 30, 1 << 40))
    rc, _, err = cli_main(run_args(tmp_path, cfg, "--dry-run"))
    assert rc == 0, err


def test_max_memory_below_the_smallest_chunk(tmp_path):
    cfg = write_cfg(tmp_path / "c.yaml")
    line = expect_bad(run_args(tmp_path, cfg, "--max-memory", "1KB"), tmp_path / "out",
                      "--max-memory", "1.0KiB", "at least")
    minimum = re.search(r"at least --max-memory (\S+)", line).group(1)
    rc, stdout, err = cli_main(run_args(tmp_path, cfg, "--dry-run", "--max-memory", minimum))
    assert rc == 0, err  # the minimum the message names is enough


def test_dry_run_prints_size_memory_and_check(tmp_path):
    rc, stdout, err = cli_main(run_args(tmp_path, write_cfg(tmp_path / "c.yaml"), "--dry-run"))
    assert rc == 0, err
    assert f"grid size {N_TINY}" in stdout
    assert re.search(r"chunks of \d+ instance\(s\) x \d+ student\(s\): ~[0-9.]+[KMG]iB each", stdout)
    assert "memory check: ok" in stdout
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------
# The examples the user is shown
# --------------------------------------------------------------------------------------

def test_run_help_example_runs(tmp_path):
    run_parser = cli.build_parser()._subparsers._group_actions[0].choices["run"]
    (set_help,) = [a.help for a in run_parser._actions if a.dest == "overrides"]
    example = re.findall(r"--set (\S+)", set_help)
    assert len(example) >= 2
    rc, stdout, err = cli_main(run_args(tmp_path, "--dry-run", *[x for v in example for x in ("--set", v)]))
    assert rc == 0, (example, err)


def test_quickstart_comment_commands_run(tmp_path):
    lines = (REPO / "configs" / "quickstart.yaml").read_text().splitlines()
    commands = [l.split("lrsweep run", 1)[1] for l in lines if l.startswith("#") and "lrsweep run quickstart" in l]
    assert len(commands) >= 2
    for command in commands:
        rc, _, err = cli_main(run_args(tmp_path, *shlex.split(command), "--dry-run"))
        assert rc == 0, (command, err)


def test_orthogonal_init_error_names_the_fields(tmp_path):
    expect_bad(run_args(tmp_path, "--set", "train.steps=16", "--set", "model.width=128"), tmp_path / "out",
               "init", "task.input_dim", "model.width", "task.n_train", "gaussian")


# --------------------------------------------------------------------------------------
# The grid built column by column equals a plain product of the axes
# --------------------------------------------------------------------------------------

def test_expand_grid_matches_a_plain_product():
    """seeds x n_layers (paper_deep: m = 2 or 3) x lr_total x target_std, with lr_1 = 1 given: the
    other layers share C - 1 equally; null target_std is 1/sqrt(h) = 0.5."""
    cfg = tiny_with(seeds=[0, 1], init="gaussian",
                    grid={"n_layers": [3, 4], "lr_total": [3.0, 6.0], "lr_1": [1.0], "target_std": [None, 0.3]})
    df = config.expand_grid(config.load_config(cfg))
    rows = []
    for seed in (0, 1):
        for n_layers in (3, 4):
            for total in (3.0, 6.0):
                for std in (0.5, 0.3):
                    m = n_layers - 1
                    lrs = [1.0] + [(total - 1.0) / (m - 1)] * (m - 1) + [np.nan] * (3 - m)
                    rows.append([seed, n_layers, m, std, *lrs, total])
    got = df[["seed", "n_layers", "n_trainable", "target_std", "lr_1", "lr_2", "lr_3", "lr_total"]].to_numpy(float)
    np.testing.assert_array_equal(got, np.array(rows, float))
    assert df["student_id"].tolist() == list(range(len(rows)))
    assert df["seed"].dtype == np.int64 and df["lr_1"].dtype == np.float64 and pd.api.types.is_string_dtype(df["init"])
