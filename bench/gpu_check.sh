#!/usr/bin/env bash
# The one GPU check, for a machine with an NVIDIA GPU, nvcc and CMake but none of cairn's Debian
# libraries (no MPI, HDF5, SentencePiece, toml++, GoogleTest; OpenBLAS optional): builds the
# CAIRN_CUDA_ONLY configuration, runs every CUDA-vs-CPU check (tests/cuda_cases.cpp) and the
# synthetic-data throughput benchmark (130M and 350M; bf16, TF32 and fp32). About 3-5 minutes on an H200.
#   bash bench/gpu_check.sh            # variables: BUILD, CUDA_ARCH (90), JOBS, BATCH (32), STEPS (10),
#                                      # MATH (bf16,tf32,fp32)
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build/gpu_check}
arch=${CUDA_ARCH:-90}
jobs=${JOBS:-$(nproc)}

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "nvidia-smi failed"
nvcc --version | tail -2
cmake --version | head -1
c++ --version | head -1

echo "== configure and build (CAIRN_CUDA_ONLY, sm_${arch})"
t0=$(date +%s)
cmake -S "$src" -B "$build" -DCAIRN_CUDA_ONLY=ON -DCAIRN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
      -DCMAKE_BUILD_TYPE=Release 2>&1 | grep -E "cairn features|Error|error" || true
if ! cmake --build "$build" -j"$jobs" --target cuda_check cuda_bench 2>&1 | grep -E "error|warning|Built target"; then
  echo "BUILD FAILED"
fi
[ -x "$build/tests/cuda_check" ] && [ -x "$build/bench/cuda_bench" ] || { echo "BUILD FAILED: no binaries"; exit 1; }
echo "build took $(( $(date +%s) - t0 )) s"

echo "== CUDA ops and model vs the CPU oracle"
timeout 300 "$build/tests/cuda_check"
check_rc=$?

echo "== throughput: forward + backward + clip + AdamW, synthetic tokens"
timeout 400 "$build/bench/cuda_bench" --batch "${BATCH:-32}" --steps "${STEPS:-10}" --math "${MATH:-bf16,tf32,fp32}"
bench_rc=$?

echo "== summary: cuda_check exit $check_rc (0 all passed, 1 failures, 77 no device), cuda_bench exit $bench_rc"
[ "$check_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
