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


def _cited_configs() -> dict[str, str]:
    """Every ``configs/....yaml`` path the help texts (``lrsweep``, every subcommand) and README.md cite:
    {path: where}."""
    import argparse
    import re
    cited = re.compile(r"configs/[\w./-]+?\.yaml")
    parser = cli.build_parser()
    texts = {"lrsweep --help": parser.format_help()}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            texts.update({f"lrsweep {name} --help": sub.format_help() for name, sub in action.choices.items()})
    texts["README.md"] = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    return {p: where for where, text in texts.items() for p in cited.findall(" ".join(text.split()))}


def test_help_texts_and_readme_cite_configs():
    assert "configs/quickstart.yaml" in _cited_configs()  # the parser finds them at all


@pytest.mark.parametrize("path", sorted(_cited_configs()))
def test_cited_config_exists_and_loads_from_any_directory(path, tmp_path, monkeypatch):
    """`lrsweep run configs/...` as the README and --help write it, from a directory without configs/
    (it failed outside the repository root; `lrsweep schedule --help` cited a file that does not exist)."""
    from lrsweep.core import runner
    monkeypatch.chdir(tmp_path)
    resolved = runner.resolve_config_path(path)
    assert resolved.is_file() and resolved.as_posix().endswith(path), (path, _cited_configs()[path])
    config.load_config(resolved)
