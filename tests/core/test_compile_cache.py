"""Compile once: with the persistent compilation cache, a repeated sweep and a resumed one compile no
program again (counted by lrsweep.core.compilestats from JAX's own monitoring events, in fresh processes)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

import lrsweep

CFG = {"name": "cached", "seeds": [0, 1, 2],
       "task": {"input_dim": 8, "n_train": 8, "design": "orthogonal"},
       "model": {"parameterization": "standard", "n_layers": 2, "width": 4, "activation": "relu"},
       "init": "orthogonal", "train": {"steps": 3},
       "grid": {"lr": [0.05, 0.1]}}

# A run that crashes after its first chunk is written, in a fresh process (so nothing is in memory).
CRASHING = """
import sys
from lrsweep.core import runner
real, calls = runner._write_chunk, []
def write_then_crash(*args, **kwargs):
    if calls:
        raise SystemExit(3)
    calls.append(1)
    return real(*args, **kwargs)
runner._write_chunk = write_then_crash
from lrsweep.cli import main
sys.exit(main(sys.argv[1:]))
"""
CLI = "import sys; from lrsweep.cli import main; sys.exit(main(sys.argv[1:]))"
# Programs JAX never stores in its cache by design (they hold a Python callback: the CPU's host QR).
UNCACHEABLE = {"jit(pure_callback)"}


def lrsweep_cli(code, *argv, cache):
    env = {**os.environ, "PYTHONPATH": str(Path(lrsweep.__file__).parent.parent), "LRSWEEP_CACHE_DIR": str(cache)}
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], env=env, capture_output=True, text=True,
                          timeout=300)


def compile_stats(run: Path) -> dict:
    return json.loads((run / "meta.json").read_text())["compile"]


def test_repeated_and_resumed_sweeps_compile_nothing(tmp_path):
    cfg = tmp_path / "cached.yaml"
    cfg.write_text(yaml.safe_dump(CFG, sort_keys=False))
    cache, out = tmp_path / "cache", tmp_path / "out"
    common = ["run", cfg, "--out", out, "--quiet", "--chunk-size", "2"]

    first = lrsweep_cli(CLI, *common, "--run-id", "first", cache=cache)
    assert first.returncode == 0, first.stderr[-2000:]
    stats = compile_stats(out / "cached" / "first")
    assert stats["compiled"] >= 2 and set(stats["compiled_names"]) - UNCACHEABLE  # the training programs
    assert "compile: " in first.stdout

    again = lrsweep_cli(CLI, *common, "--run-id", "again", cache=cache)
    assert again.returncode == 0, again.stderr[-2000:]
    stats = compile_stats(out / "cached" / "again")
    assert set(stats["compiled_names"]) <= UNCACHEABLE, stats
    assert stats["cache_hits"] >= 2

    crashed = lrsweep_cli(CRASHING, *common, "--run-id", "crashed", cache=cache)
    assert crashed.returncode == 3, crashed.stderr[-2000:]
    resumed = lrsweep_cli(CLI, "run", "--resume", out / "cached" / "crashed", "--quiet", cache=cache)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    stats = compile_stats(out / "cached" / "crashed")
    assert set(stats["compiled_names"]) <= UNCACHEABLE, stats
    assert stats["cache_hits"] >= 1


def test_listening_ends_cleanly_where_jax_has_no_unregister(monkeypatch):
    """The unregister functions are private to jax (``jax._src.monitoring``) and a release may move them:
    leaving the listening context must not raise then, and the counts taken inside stay."""
    import jax
    import jax.numpy as jnp
    from jax._src import monitoring
    from lrsweep.core.compilestats import CompileStats
    monkeypatch.delattr(monitoring, "unregister_event_listener")
    monkeypatch.delattr(monitoring, "unregister_event_duration_listener")
    stats = CompileStats()
    with stats.listening():
        jax.jit(lambda v: v * 3.0 + 1.0)(jnp.arange(7.0)).block_until_ready()  # a program no test compiles
    assert stats.programs >= 1
    monkeypatch.undo()  # then take the listeners off, as the context would have
    monitoring.unregister_event_listener(stats._on_event)
    monitoring.unregister_event_duration_listener(stats._on_duration)
