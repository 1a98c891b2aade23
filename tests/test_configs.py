"""Every shipped config is valid, and the smallest CPU twins run end to end (run, compare, plot)."""
from pathlib import Path

import pytest

from lrsweep import cli
from lrsweep.core import config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))


def test_every_paper_config_has_a_cpu_twin():
    names = {p.stem for p in CONFIGS}
    papers = {p.stem for p in CONFIGS if p.parent.name not in ("configs", "examples") and not p.stem.endswith("_cpu")}
    assert len(papers) >= 14
    assert all(f"{n}_cpu" in names for n in papers), sorted(n for n in papers if f"{n}_cpu" not in names)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_is_valid(path):
    """Every config validates; a _cpu twin is small: its students' weights times steps, summed, at
    most 1.5e9 (seed 000's fig9 twin, ~1.2e9, runs in minutes on a 2-core CPU; the GPU configs are
    10-1000x more). Width alone is no measure: the uv model is cheap at m = 4096."""
    from lrsweep.core import runner
    students, specs = runner.prepare(config.load_config(path))
    assert len(students) > 0
    if path.stem.endswith("_cpu"):
        work = sum(spec.arch.n_params * spec.steps * int((students["group_id"] == g).sum())
                   for g, spec in specs.items())
        assert work <= 1.5e9, f"{path.stem}: {work:.2e} weight-steps"


@pytest.mark.parametrize("name", ["fig14_4nn_orthogonal_cpu", "fig15_3nn_relu_cpu"])
def test_smallest_twins_run_compare_plot(tmp_path, name, capsys):
    path = next(p for p in CONFIGS if p.stem == name)
    assert cli.main(["run", str(path), "--out", str(tmp_path), "--quiet"]) == 0
    (run,) = list((tmp_path / name).iterdir())
    assert (run / "students").is_dir() and (run / "curves").is_dir()
    assert cli.main(["compare", str(run)]) == 0
    assert cli.main(["plot", str(run)]) == 0
    pngs = list((run / "plots").glob("*.png"))
    assert pngs and all(p.stat().st_size > 10_000 for p in pngs)
    assert "theory verdict" in capsys.readouterr().out
