"""scripts/device_check.sh, the one prepared call on a lent GPU machine, on its plumbing: a stand-in python
records what each step was asked to run (no benchmark runs here; their CPU smoke run is
LRSWEEP_DEVICE_CHECK_QUICK=1, README "The device check")."""
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "device_check.sh"
STEPS = ("bench_sgd", "bench_heads", "bench_catapult", "bench_engine", "bench_poly", "bench_scaling")
SCRIPT_OF = {"bench_heads": "bench_catapult"}

# Answers the preflight (-c CODE) as the real one does when lrsweep imports, and otherwise prints its
# arguments and the environment a benchmark would see.
FAKE_PYTHON = """#!/usr/bin/env bash
if [ "$1" = "-c" ]; then
  case "$2" in *lrsweep*) [ -n "${FAKE_BROKEN:-}" ] && exit 1; echo "devices [FakeGpu(id=0)]";; esac
  exit 0
fi
echo "ran $* | cache=$LRSWEEP_CACHE_DIR | path=$PYTHONPATH"
"""


def fake_python(tmp_path: Path, name: str = "python3") -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / name
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    return bin_dir


def run_check(tmp_path: Path, out: Path, **env):
    env = {"PATH": f"{fake_python(tmp_path)}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path), **env}
    return subprocess.run(["bash", str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=60)


def test_every_step_runs_at_gpu_sizes_from_the_checkout_and_out_holds_only_the_text_files(tmp_path):
    out = tmp_path / "out"
    done = run_check(tmp_path, out)
    assert done.returncode == 0, done.stderr
    # what comes back from a lent machine: at most 8 files, so no compile cache in OUT
    assert sorted(p.name for p in out.iterdir()) == sorted(["device.txt", *(f"{s}.txt" for s in STEPS)])
    for step in STEPS:
        text = (out / f"{step}.txt").read_text()
        assert f"ran scripts/{SCRIPT_OF.get(step, step)}.py" in text and f"== {step}: exit 0" in text, text
        cache = text.split("cache=")[1].split(" |")[0]
        assert cache and not Path(cache).resolve().is_relative_to(out.resolve())
        assert text.split("path=")[1].splitlines()[0].split(":")[0] == str(ROOT)  # lrsweep from the checkout
    assert "--students 16384" in (out / "bench_sgd.txt").read_text()  # GPU sizes, not --quick
    assert "--quick" not in (out / "bench_catapult.txt").read_text()
    # seed 002's head rules run once, in a step of their own (a slow curvature step cannot cut them off)
    assert "--only heads" in (out / "bench_heads.txt").read_text()
    assert "--only all-but-heads" in (out / "bench_catapult.txt").read_text()
    # the never-measured families first, in this order
    log = done.stdout
    assert [log.index(f"== {s} (limit") for s in STEPS] == sorted(log.index(f"== {s} (limit") for s in STEPS)


def test_stops_before_any_benchmark_when_lrsweep_does_not_import(tmp_path):
    out = tmp_path / "out"
    done = run_check(tmp_path, out, FAKE_BROKEN="1")
    assert done.returncode == 1 and "preflight import failed" in done.stderr
    assert [p.name for p in out.iterdir()] == ["device.txt"]


def test_names_the_fix_when_no_python_imports_jax(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python3", "python"):  # found on PATH first, and neither imports jax
        stand_in = bin_dir / name
        stand_in.write_text("#!/usr/bin/env bash\nexit 1\n")
        stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    done = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "out")], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "no python3 or python here imports jax; set PYTHON" in done.stderr
    assert not list((tmp_path / "out").iterdir())  # nothing run, nothing written
