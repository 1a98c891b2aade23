"""A family is a plug-in: a toy paper in a package outside lrsweep (a field, a task, a metric, a check
and a figure), registered through :mod:`lrsweep.registry` and named in ``LRSWEEP_FAMILIES``, runs
through ``lrsweep run``, ``compare`` and ``plot`` with no file of lrsweep changed."""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import lrsweep

TOY = textwrap.dedent('''
    """A toy paper: y = scale * sum(x) on Gaussian inputs, a 1-layer linear student."""
    import jax
    import jax.numpy as jnp
    import pandas as pd

    from lrsweep import registry
    from lrsweep.core.config import Field, equals
    from lrsweep.core.metrics import Metric
    from lrsweep.core.tasks.base import Task, fixed_set_batch

    registry.register_field(Field("task.toy_scale", "float", 1.0, "toy: the teacher's scale", role="instance",
                                  applies=lambda t: equals(t["kind"], "toy_line")))

    def make_data(spec, keys, hp, dtype):
        x = jax.random.normal(keys["design"], (spec.task.n_train, spec.task.input_dim), dtype)
        x_test = jax.random.normal(keys["test"], (256, spec.task.input_dim), dtype)
        scale = hp["toy_scale"].astype(dtype)
        return {"x": x, "y": scale * x.sum(1, keepdims=True), "x_test": x_test,
                "y_test": scale * x_test.sum(1, keepdims=True)}

    def evaluate(spec, ctx):
        w = ctx.params[spec.arch.layer_names[0]]
        return {"test_loss": 0.5 * jnp.mean((ctx.inst["x_test"] @ w - ctx.inst["y_test"]) ** 2)}

    registry.register_task(Task("toy_line", make_data, evaluate, lambda spec: ("test_loss",), fixed_set_batch,
                                lambda spec: False))
    registry.register_task_rules("toy_line", registry.TaskRules())
    registry.register_metric("toy_weight_sum", Metric("toy_weight_sum", lambda ctx: sum(
        jnp.sum(w) for w in ctx.params.values()), per_layer=False))

    def loss_falls(students, curves):
        toy = curves[curves["kind"] == "toy_line"]
        if toy.empty:
            return pd.DataFrame()
        first = toy[toy["step"] == 0].set_index("student_id")["train_loss"]
        last = toy[toy["step"] == toy["step"].max()].set_index("student_id")["train_loss"]
        return pd.DataFrame({"configuration": ["all"], "n": [len(first)], "passed": [bool((last < first).all())],
                             "detail": [f"largest final/initial {float((last / first).max()):.3g}"]})

    registry.register_check("toy.loss_falls", loss_falls)

    def figures(run, name, curves):
        if "toy_weight_sum" not in curves:
            return []
        from matplotlib.figure import Figure
        fig = Figure()
        ax = fig.add_subplot()
        for sid, g in curves.groupby("student_id"):
            ax.plot(g["step"], g["toy_weight_sum"])
        return [("toy_weight_sum", fig)]

    registry.register_figures(figures)
''')

CONFIG = textwrap.dedent('''
    name: toy
    seeds: [0, 1]
    task: {kind: toy_line, input_dim: 4, n_train: 32, toy_scale: 0.5}
    model: {parameterization: standard, n_layers: 1, width: 4}
    init: gaussian
    train: {steps: 20, metrics: [toy_weight_sum]}
    grid: {lr: [0.05, 0.1, 0.2]}
''')


def lrsweep_cli(args, tmp_path):
    env = {**os.environ, "LRSWEEP_FAMILIES": "toyfam", "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), str(Path(lrsweep.__file__).resolve().parents[1])])}
    return subprocess.run([sys.executable, "-m", "lrsweep.cli", *args], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=600)


@pytest.fixture
def toy_run(tmp_path):
    (tmp_path / "toyfam").mkdir()
    (tmp_path / "toyfam" / "__init__.py").write_text(TOY)
    (tmp_path / "toy.yaml").write_text(CONFIG)
    proc = lrsweep_cli(["run", "toy.yaml", "--out", "results", "--run-id", "r1", "--x64"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp_path, tmp_path / "results" / "toy" / "r1", proc.stdout


def test_toy_family_runs_compares_and_plots(toy_run):
    root, run, _ = toy_run
    students = pd.read_parquet(run / "students")
    curves = pd.read_parquet(run / "curves")
    assert len(students) == 6 and set(students["toy_scale"]) == {0.5} and set(students["lr"]) == {0.05, 0.1, 0.2}
    assert curves["toy_weight_sum"].notna().all()
    # the toy task's data: train loss at step 0 is 0.5 mean (y - x w0)^2 with y = 0.5 sum(x): positive, finite
    assert (curves.loc[curves["step"] == 0, "train_loss"] > 0).all()
    proc = lrsweep_cli(["compare", str(run), "--strict"], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "toy.loss_falls: 1/1 configurations pass (6 students) -> PASSES" in proc.stdout
    proc = lrsweep_cli(["plot", str(run)], root)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "plots" / "toy_weight_sum.png").exists()


def test_toy_check_can_fail(tmp_path):
    """The toy check is a real check: at a rate past the stability bound the loss rises and it FAILS."""
    (tmp_path / "toyfam").mkdir()
    (tmp_path / "toyfam" / "__init__.py").write_text(TOY)
    (tmp_path / "toy.yaml").write_text(CONFIG.replace("lr: [0.05, 0.1, 0.2]", "lr: [0.05, 5.0]"))
    proc = lrsweep_cli(["run", "toy.yaml", "--out", "results", "--run-id", "r1"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = lrsweep_cli(["compare", str(tmp_path / "results" / "toy" / "r1"), "--strict"], tmp_path)
    assert proc.returncode == 1 and "toy.loss_falls: 0/1 configurations pass" in proc.stdout
