#!/usr/bin/env bash
# The prepared accelerator check: every family's benchmarks at GPU sizes (seed 000's engine, poly
# and scaling; seed 004's SGD; seed 003's curvature metrics and boundary; seed 002's head rules), in
# under 8 minutes on one GPU. Writes each script's output to OUT (default: $OUT if set, else
# results/device_check-<date>) and prints it. Run from the repository root:
#
#     bash scripts/device_check.sh [OUT]
#
# Each step has its own time limit, so one slow step cannot eat the others' time; a step that
# hits its limit leaves what it printed so far (marked TIMEOUT). Set LRSWEEP_DEVICE_CHECK_QUICK=1
# for the CPU-sized smoke run (the same scripts with --quick).
set -u
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-results/device_check-$(date +%Y%m%d-%H%M%S)}}"
mkdir -p "$OUT_DIR"
# The interpreter: $PYTHON, else the first of python3, python that imports jax (a GPU image may have jax, optax,
# flax, orbax-checkpoint, pandas and pyarrow in its python3 and lrsweep not installed: the checkout goes on PYTHONPATH).
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  for candidate in python3 python; do
    if "$candidate" -c "import jax" 2>/dev/null; then PY=$candidate; break; fi
  done
fi
[ -n "$PY" ] || { echo "device_check: no python3 or python here imports jax; set PYTHON" >&2; exit 1; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# The compile cache lies outside OUT: OUT holds only the seven text files (a lent machine sends back at most 8).
# Unbuffered, so a step stopped at its limit still leaves every line it printed.
export PYTHONUNBUFFERED=1
export LRSWEEP_CACHE_DIR="${LRSWEEP_CACHE_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/lrsweep-device-check-cache.XXXXXX")}"
# GPU sizes: h = 64 (the >= 20x over the per-student loop target, 1,000+ students) to h = 1024 (%peak of
# matmul); the scaling grid at h = 32, 100 steps. Quick: each script's own --quick sizes.
# SGD and catapult at h = 64 (features N = 64 for SGD) with >= 10^4 students (the >= 100x target).
ENGINE=(--widths 64 256 1024 --layers 2 --student-budget $((1 << 30)) --min-students 1024 --loop-students 32)
SCALING=(--width 32 --steps 100 --logs 8)
POLY=()
SGD=(--features 64 --students 16384 --steps 256 --loop-students 32 --no-schedule)
CATAPULT=(--width 64 --seeds 16 --rates 640 --steps 500 --loop-sample 32 --head-width 64)
if [ "${LRSWEEP_DEVICE_CHECK_QUICK:-0}" = "1" ]; then
  ENGINE=(--quick); SCALING=(--quick); POLY=(--quick); SGD=(--quick --no-schedule); CATAPULT=(--quick)
fi

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s): $*" | tee "$OUT_DIR/$name.txt"
  local t0=$SECONDS
  timeout --signal=INT "$limit" "$@" 2>&1 | tee -a "$OUT_DIR/$name.txt"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 124 ] && echo "TIMEOUT after ${limit}s" | tee -a "$OUT_DIR/$name.txt"
  echo "== $name: exit $rc, $((SECONDS - t0)) s" | tee -a "$OUT_DIR/$name.txt"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  "$PY" -c "import sys, jax, numpy, pandas, pyarrow, optax, flax, orbax.checkpoint, lrsweep
print('python', sys.version.split()[0], '| jax', jax.__version__, '| numpy', numpy.__version__, '| pandas',
      pandas.__version__, '| pyarrow', pyarrow.__version__, '| optax', optax.__version__, '| lrsweep from',
      lrsweep.__file__)
print('devices', jax.devices())"; } 2>&1 | tee "$OUT_DIR/device.txt"
if ! grep -q "^devices" "$OUT_DIR/device.txt"; then
  echo "device_check: the preflight import failed (above); nothing was benchmarked" >&2
  exit 1
fi

# The families never measured on a GPU first (seed 004, seed 002's head rules, seed 003's curvature and
# boundary), then seed 000's engine, poly and scaling; the heads are a step of their own so that a slow
# curvature step cannot cut them off. Limits sum to 455 s.
step bench_sgd 60 "$PY" scripts/bench_sgd.py "${SGD[@]}"
step bench_heads 60 "$PY" scripts/bench_catapult.py "${CATAPULT[@]}" --only heads
step bench_catapult 130 "$PY" scripts/bench_catapult.py "${CATAPULT[@]}" --only all-but-heads
step bench_engine 110 "$PY" scripts/bench_engine.py "${ENGINE[@]}"
step bench_poly 45 "$PY" scripts/bench_poly.py "${POLY[@]}"
step bench_scaling 50 "$PY" scripts/bench_scaling.py "${SCALING[@]}"
echo "outputs in $OUT_DIR"
