"""The README runs as written: every command of its "Use" block, its Python snippets, its duckdb
line and its example config.

Commands run in-process (``lrsweep.cli.main``) in a fresh working directory with the repository's
``configs/`` linked in. Where a command names the user's own file (``my.yaml``, ``long.yaml``) a
tiny config of that name stands in. The built-in default (``lrsweep run``), the ``my.yaml`` runs,
``--resume``, compare, plot, ls, show and schema run for real; the other ``run`` commands (paper
configs take hours on a CPU) run with ``--dry-run``: validation and the plan, which is where a
wrong example fails (the old ``--set model.width=128`` example did, exit 2). A placeholder run
directory (``results/<name>/<run_id>``, ``results/my/2026...``) is the quickstart run the first
command made.
"""
import json
import re
import shlex
from pathlib import Path

import pytest
import yaml
from conftest import cli_main

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()

TINY = {"name": "my", "seeds": [0, 1],
        "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
        "model": {"parameterization": "paper_deep", "n_layers": 3, "width": 4},
        "init": "orthogonal", "train": {"steps": 4},
        "grid": {"lr_total": [1, 2], "lr_1_fraction": [0.25, 0.75]}}


def section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 4)
    return README[start: end if end > 0 else None]


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def use_commands() -> list[list[str]]:
    (bash,) = blocks(section("Use"), "bash")
    return [shlex.split(line, comments=True) for line in bash.splitlines() if line.strip()]


def run_ids(root: Path, name: str) -> list[Path]:
    return sorted(p.parent for p in (root / name).rglob("meta.json"))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("readme")
    (work / "configs").symlink_to(ROOT / "configs")
    for name in ("my", "long"):
        (work / f"{name}.yaml").write_text(yaml.safe_dump({**TINY, "name": name}, sort_keys=False))
    return work


def test_setup_commands_are_the_two_documented(workdir):
    """The set-up section gives exactly two commands: install + the default sweep, install + tests;
    the second is what CI runs (.ci/run)."""
    cmds = [b.strip() for b in blocks(section("Set up"), "bash")]
    assert cmds == ["python -m pip install -e . && lrsweep run",
                    "python -m pip install -e '.[test]' && python -m pytest"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install -e '.[test]'" in ci and "python -m pytest" in ci


def test_example_config_is_the_quickstart():
    """The Configs section's example is configs/quickstart.yaml (what `lrsweep run` runs)."""
    example = blocks(section("Configs"), "yaml")[0]
    assert yaml.safe_load(example) == yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())


def test_use_commands_and_snippets_run(workdir, monkeypatch):
    monkeypatch.chdir(workdir)
    commands = use_commands()
    assert commands[0] == ["lrsweep", "run"]  # the built-in default comes first: it makes the run the rest use
    quickstart = None
    for argv in commands:
        assert argv[0] == "lrsweep", argv
        args = argv[1:]
        if quickstart is not None:
            args = [str(quickstart) if ("<run_id>" in a or re.match(r"results/my/\d", a)) else a for a in args]
        if args[0] == "run" and args[1:2] != ["my.yaml"] and len(args) > 1 and "--resume" not in args:
            args.append("--dry-run")  # validation and the plan: where an example goes wrong (paper
            # configs take hours on a CPU; the built-in default and the user's tiny my.yaml run for real)
        if args[0] == "run" and "--quiet" not in args and "--dry-run" not in args:
            args.append("--quiet")
        if args[0] == "plot":
            args += ["--dense", "20"]
        if args[0] == "schedule":  # the search as written, on a small model and two short horizons
            args += ["--set", "task.n_features=16", "--set", "schedule_search.horizons=[20,40]",
                     "--set", "schedule_search.iterations=10", "--quiet"]
            args = [a if a != "64" else "8" for a in args]
        rc, stdout, err = cli_main(args)
        assert rc == 0, (argv, err[-2000:])
        if args == ["run", "--quiet"]:
            (quickstart,) = run_ids(workdir / "results", "quickstart")
            assert f"run directory: {quickstart.relative_to(workdir)}" in stdout

    # the Python snippets, with the runs they name made first (a poly-mode fig1 run: the CPU twin,
    # one seed, one line, under the paper config's name)
    rc, _, err = cli_main(["run", "configs/layer_balancing/fig1_2nn_orthogonal_cpu.yaml", "--mode", "poly",
                           "--set", "name=fig1_2nn_orthogonal", "--set", "seeds=[0]", "--set", "grid.lr_line=[1200]",
                           "--quiet"])
    assert rc == 0, err
    (fig1,) = run_ids(workdir / "results", "fig1_2nn_orthogonal")
    snippets = blocks(section("Use"), "python")
    assert snippets
    for code in snippets:
        code = code.replace("results/fig1_2nn_orthogonal/<run_id>", str(fig1))
        scope: dict = {}
        exec(compile(code, "README.md", "exec"), scope)
        if "df" in scope:  # the latest quickstart run, alone
            latest = max(run_ids(workdir / "results", "quickstart"), key=lambda r: json.loads((r / "meta.json").read_text())["started"])
            assert not scope["df"].empty and set(scope["df"]["run_id"]) == {latest.name}

    duck = re.search(r'`(duckdb\.sql\(.*?\)\.fetchall\(\))`', section("Results"), re.S).group(1)
    duck = re.sub(r"\s+", " ", duck)  # wrapped over lines in the README
    import duckdb
    rows = eval(duck.replace("RUN", str(quickstart)), {"duckdb": duckdb})
    assert len(rows) == 3  # steps 0, 1, 2 of the quickstart
