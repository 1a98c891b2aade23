"""Shared fixtures: float64 switch and a helper that trains a config through the engine."""
import contextlib
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("LRSWEEP_CACHE_DIR", "off")  # tests compile fresh: no state shared across runs
# XLA:CPU spends most of this suite's time in LLVM, optimizing programs that then run for
# milliseconds (the instance generator's threefry fusions: ~10 s per program at -O2, ~2 s without).
# JAX's switch for that (LLVM -O0, no expensive passes), for the session and the subprocesses it
# starts. Numbers change in the last bits only; JAX_DISABLE_MOST_OPTIMIZATIONS=0 runs the suite
# with the optimized code that users' runs get.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# XLA:CPU's fusion emitters (MLIR) take ~35% longer to compile this suite's programs than its older
# LLVM IR emitters, which compute the same to the last bits or so (x64: <= 3e-15 relative, against
# 5e-14 for the switch above). LRSWEEP_TEST_FUSION_EMITTERS=1 keeps the users' emitters.
# XLA aborts the process on a flag it does not know (jaxlib 0.11 and later have no LLVM IR emitters and no
# flag), so a child process tries it first; the answer goes into the environment the workers inherit.
_NO_EMITTERS = "--xla_cpu_use_fusion_emitters=false"


def _xla_knows(flag: str) -> bool:
    import subprocess
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip(), JAX_PLATFORMS="cpu")
    probe = "import jax; jax.devices()"
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


if os.environ.get("LRSWEEP_TEST_FUSION_EMITTERS", "0") != "1" and "fusion_emitters" not in os.environ.get("XLA_FLAGS", ""):
    if _xla_knows(_NO_EMITTERS):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _NO_EMITTERS).strip()
    else:
        os.environ["LRSWEEP_TEST_FUSION_EMITTERS"] = "1"  # this XLA has only the fusion emitters

import jax

if os.environ.get("LRSWEEP_TEST_SESSION_CACHE", "1") == "1":
    # One compilation cache per test session (a fresh temporary directory: nothing is shared across
    # runs): the same XLA program built by different closures in different tests compiles once. The
    # controller makes it before pytest-xdist starts its workers, which inherit the variable and share it.
    import tempfile
    if "LRSWEEP_TEST_XLA_CACHE" not in os.environ:
        os.environ["LRSWEEP_TEST_XLA_CACHE"] = tempfile.mkdtemp(prefix="lrsweep-test-xla-")
    jax.config.update("jax_compilation_cache_dir", os.environ["LRSWEEP_TEST_XLA_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
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


_FUSION_EMITTERS = {"on": False}  # the users' emitters for this process's compiles (the `optimized` fixture)


def _emitters_switch(get_compile_options):
    """JAX's compile options with the fusion emitters back on while ``_FUSION_EMITTERS["on"]``: a
    per-compile XLA option (it overrides XLA_FLAGS, and the persistent cache keys on it)."""
    def with_emitters(*args, env_options_overrides=None, **kwargs):
        if _FUSION_EMITTERS["on"]:
            env_options_overrides = {**(env_options_overrides or {}), "xla_cpu_use_fusion_emitters": True}
        return get_compile_options(*args, env_options_overrides=env_options_overrides, **kwargs)
    return with_emitters


try:  # JAX's internal hook; without it, `optimized` tests keep the LLVM IR emitters (slower to run, same results)
    import inspect

    if _NO_EMITTERS not in os.environ.get("XLA_FLAGS", ""):
        raise ImportError("the fusion emitters are on already: nothing to switch")

    from jax._src import compiler as _jax_compiler
    if "env_options_overrides" in inspect.signature(_jax_compiler.get_compile_options).parameters:
        _jax_compiler.get_compile_options = _emitters_switch(_jax_compiler.get_compile_options)
except (ImportError, AttributeError):
    pass


@contextlib.contextmanager
def users_compiler():
    """Compile as users' runs do, XLA's optimizations and fusion emitters on (the suite turns them off: see
    the top of this file): for work whose time is spent running long scans (schedule searches), not
    compiling. The LLVM IR emitters ran seed 004's schedule searches 2.6x slower."""
    old = os.environ.get("JAX_DISABLE_MOST_OPTIMIZATIONS", "0").lower() in ("1", "true")
    jax.config.update("jax_disable_most_optimizations", False)
    _FUSION_EMITTERS["on"] = True
    try:
        yield
    finally:
        _FUSION_EMITTERS["on"] = False
        jax.config.update("jax_disable_most_optimizations", old)


@pytest.fixture
def optimized():
    """This test compiled as users' runs are (:func:`users_compiler`)."""
    with users_compiler():
        yield


def device_env(n_devices: int) -> dict:
    """The environment of a subprocess that simulates ``n_devices`` CPU devices, with this session's XLA flags."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n_devices}"
    return dict(os.environ, XLA_FLAGS=flags.strip())


def train_config(cfg: dict, chunk_size=None, max_memory=None):
    """Train every student of a config dict in-process; return (students, {student_id: result})."""
    from lrsweep.core import config
    from lrsweep.core import engine
    from lrsweep.core import runner
    students, specs = runner.prepare(config.load_config(cfg))
    out = {}
    for gid, spec in specs.items():
        group = students[students["group_id"] == gid]
        for _, res in engine.iter_group(spec, group, chunk_size=chunk_size, max_memory=max_memory):
            for i, sid in enumerate(res["student_id"]):
                out[int(sid)] = flat_result(res, i)
    return students, out


def flat_result(res: dict, i: int) -> dict:
    """Student i of a host result, its curves and reductions at the top level: {"test_loss": ..., ...}."""
    flat = {**res["curves"], **res["reductions"], "diverged": res["diverged"], "diverged_step": res["diverged_step"]}
    return {k: np.asarray(v[i]) for k, v in flat.items()}


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


def numpy_instance(students, sid):
    """The engine's initial weights and data of one student, float64 numpy: (spec, row, [W1..Wm], inst)."""
    import jax.numpy as jnp

    from lrsweep.core.spec import GroupSpec
    from lrsweep.core.tasks import make_instance
    row = students.set_index("student_id").loc[sid].to_dict()
    row["student_id"] = sid
    spec = GroupSpec.from_row(row)
    hp = {c: jnp.asarray(row[c], jnp.uint32 if c == "seed" else jnp.float64) for c in spec.instance_columns}
    params0, inst = make_instance(spec, hp, jnp.float64, moments=False)
    to_np = lambda a: np.asarray(a, np.float64)
    return spec, row, [to_np(params0[k]) for k in spec.arch.layer_names], {k: to_np(v) for k, v in inst.items()}


def with_changes(cfg: dict, **changes) -> dict:
    """A deep copy of a config dict with ``section__field=value`` (or ``section=value``) changes."""
    cfg = copy.deepcopy(cfg)
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            cfg[section][field] = value
        else:
            cfg[section] = value
    return cfg


def run_tables(run) -> dict:
    """{"students", "curves"} of a stored run, each sorted by its key with columns in name order (the
    column order follows the YAML), for comparing two runs bit for bit."""
    import lrsweep
    out = {}
    for table, key in (("students", ["student_id"]), ("curves", ["student_id", "step"])):
        df = lrsweep.load(run, table=table).drop(columns="run_id")
        out[table] = df[sorted(df.columns)].sort_values(key).reset_index(drop=True)
    return out


# --------------------------------------------------------------------------------------
# The quick tier: ``python -m pytest -m "not slow"`` (development; CI runs everything)
# --------------------------------------------------------------------------------------
DURATIONS = Path(__file__).parent / "durations.json"  # {nodeid: {"setup": s, "call": s}} of a full run
QUICK_LIMIT = 1.0  # seconds: a test, or a module fixture's setup, slower than this is `slow`


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test's setup and call seconds to {DURATIONS.name} (after a full run)")


def _recorded() -> dict:
    import json
    return json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}


def _module_fixtures(item) -> set:
    """(where, name) of the module-scoped fixtures an item uses (runs trained once, read by many tests)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    return {(d.baseid, name) for name, defs in info.name2fixturedefs.items() for d in defs if d.scope == "module"}


def pytest_collection_modifyitems(config, items):
    """Mark ``slow``: Monte Carlo tests, tests whose recorded call took over QUICK_LIMIT, and every
    test sharing a module fixture whose recorded setup did (a deselected first test would
    otherwise hand its fixture's cost to the next one). Tests not yet recorded count as quick."""
    recorded = _recorded()
    heavy = set()
    for item in items:
        if recorded.get(item.nodeid, {}).get("setup", 0.0) > QUICK_LIMIT:
            heavy |= _module_fixtures(item)
    for item in items:
        times = recorded.get(item.nodeid, {})
        if ("montecarlo" in item.keywords or times.get("call", 0.0) > QUICK_LIMIT
                or times.get("setup", 0.0) > QUICK_LIMIT or _module_fixtures(item) & heavy):
            item.add_marker(pytest.mark.slow)


_durations: dict = {}


def pytest_runtest_logreport(report):
    """Collect setup/call seconds (on the controller too: pytest-xdist forwards the workers' reports)."""
    if report.when in ("setup", "call"):
        _durations.setdefault(report.nodeid, {})[report.when] = round(report.duration, 3)


def pytest_sessionfinish(session):
    import json
    if session.config.getoption("--record-durations") and not hasattr(session.config, "workerinput"):
        merged = {**_recorded(), **_durations}
        lines = [f"{json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(merged.items())]
        DURATIONS.write_text("{\n" + ",\n".join(lines) + "\n}\n")  # one test a line: diffs stay readable
