#!/usr/bin/env bash
# The prepared accelerator check: engine, poly and scaling benchmarks at GPU sizes, in under
# 8 minutes on one GPU. Writes each script's output to OUT (default: $OUT if set, else
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
PY="${PYTHON:-python}"
export LRSWEEP_CACHE_DIR="${LRSWEEP_CACHE_DIR:-$OUT_DIR/jax-cache}"
# GPU sizes: h = 64 (the >= 20x over the per-student loop target, 1,000+ students) to h = 1024 (%peak of
# matmul); the scaling grid at h = 32, 100 steps. Quick: each script's own --quick sizes.
ENGINE=(--widths 64 256 1024 --layers 2 --student-budget $((1 << 30)) --min-students 1024 --loop-students 32)
SCALING=(--width 32 --steps 100 --logs 8)
if [ "${LRSWEEP_DEVICE_CHECK_QUICK:-0}" = "1" ]; then ENGINE=(--quick); SCALING=(--quick); fi

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
  "$PY" -c "import jax; print('jax', jax.__version__, jax.devices())"; } 2>&1 | tee "$OUT_DIR/device.txt"

step bench_engine 210 "$PY" scripts/bench_engine.py "${ENGINE[@]}"
step bench_poly 90 "$PY" scripts/bench_poly.py $([ "${ENGINE[0]}" = "--quick" ] && echo --quick)
step bench_scaling 150 "$PY" scripts/bench_scaling.py "${SCALING[@]}"
echo "outputs in $OUT_DIR"
