"""Shared fixtures: float64 switch and a helper that trains a config through the engine."""
import os
import sys
from pathlib import Path

os.environ.setdefault("LRSWEEP_CACHE_DIR", "off")  # tests compile fresh: no state shared across runs

import jax
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # so tests can `import reference`


@pytest.fixture
def x64():
    """Run the test in float64 (restored afterwards: other tests keep float32)."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


def train_config(cfg: dict, chunk_size=None, max_memory=None):
    """Train every student of a config dict in-process; return (students, {student_id: result})."""
    from lrsweep import config, engine, runner
    students, specs = runner.prepare(config.load_config(cfg))
    out = {}
    for gid, spec in specs.items():
        group = students[students["group_id"] == gid]
        for _, res in engine.iter_group(spec, group, chunk_size=chunk_size, max_memory=max_memory):
            for i, sid in enumerate(res["student_id"]):
                out[int(sid)] = {k: np.asarray(v[i]) for k, v in res.items() if k != "student_id"}
    return students, out


def cli_main(argv):
    """Run the CLI in-process; return (exit code, stdout, stderr). argparse errors exit via SystemExit."""
    import contextlib
    import io

    from lrsweep import cli
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main([str(a) for a in argv])
        except SystemExit as e:
            rc = e.code
    return rc, out.getvalue(), err.getvalue()
