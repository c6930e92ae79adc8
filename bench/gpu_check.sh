#!/usr/bin/env bash
# The one GPU check, for a machine with an NVIDIA GPU, nvcc and CMake but none of cairn's Debian
# libraries (no MPI, HDF5, SentencePiece, toml++, GoogleTest; OpenBLAS optional): builds the
# CAIRN_CUDA_ONLY configuration, runs every CUDA-vs-CPU check (tests/cuda_cases.cpp) and the
# synthetic-data throughput benchmark (130M and 350M; bf16, TF32 and fp32; then 350M with Fira and
# a per-op profile, last). About 5-8 minutes on an H200.
# cuDNN attention (bf16 mode) is built when cuDNN is found (CUDNN_ROOT, else PyTorch's nvidia-cudnn
# wheel when python3 can import it, else next to the toolkit) and the cudnn_frontend headers are in
# third_party/cudnn_frontend/include (tools/setup.sh fetches them; carry that folder to the machine).
# With gpu_bundle/ carried (bench/gpu_bundle.sh, run on the CPU machine), it also runs the full
# cairn there: the trainer's GPU checkpoint tests and short real training runs.
#   bash bench/gpu_check.sh            # variables: BUILD, CUDA_ARCH (90), JOBS, BATCH (32), STEPS (10),
#                                      # MATH (bf16,tf32,fp32), CUDNN_ROOT, SANITIZE (1)
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$src/build/gpu_check}
arch=${CUDA_ARCH:-90}
jobs=${JOBS:-$(nproc)}
# Full logs go to files (on the device tool, $OUT comes back); stdout keeps what matters, since
# only the end of a long output is returned.
logs=${OUT:-$build/logs}
mkdir -p "$logs"

echo "== machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || echo "nvidia-smi failed"
nvcc --version | tail -2
cmake --version | head -1
c++ --version | head -1

cudnn_root=${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)}
if [ -n "$cudnn_root" ]; then
  echo "cuDNN root: $cudnn_root"
  export LD_LIBRARY_PATH="$cudnn_root/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"  # its sub-libraries load by name
fi
[ -f "$src/third_party/cudnn_frontend/include/cudnn_frontend.h" ] && echo "cudnn_frontend: $(cat "$src/third_party/cudnn_frontend/VERSION" 2>/dev/null)" \
  || echo "cudnn_frontend headers absent: bf16 attention will use the own kernel"

echo "== configure and build (CAIRN_CUDA_ONLY, sm_${arch})"
t0=$(date +%s)
cmake -S "$src" -B "$build" -DCAIRN_CUDA_ONLY=ON -DCAIRN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$arch" \
      -DCMAKE_BUILD_TYPE=Release ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"} > "$logs/build.log" 2>&1
grep -E "cairn features|CMake Error" "$logs/build.log"
cmake --build "$build" -j"$jobs" --target cuda_check cuda_bench >> "$logs/build.log" 2>&1 || echo "BUILD FAILED"
grep -E "error|warning" "$logs/build.log" | head -40
[ -x "$build/tests/cuda_check" ] && [ -x "$build/bench/cuda_bench" ] || { echo "BUILD FAILED: no binaries"; exit 1; }
echo "build took $(( $(date +%s) - t0 )) s"

echo "== CUDA ops and model vs the CPU oracle (every comparison: $logs/cuda_check.log)"
timeout 300 "$build/tests/cuda_check" > "$logs/cuda_check.log" 2>&1
check_rc=$?
# Failed checks in full, the others by name.
awk '/^(PASS|FAIL) /{fail = ($1 == "FAIL")} fail || /passed|SKIP|threw/' "$logs/cuda_check.log"
echo "passed: $(awk '$1 == "PASS" {printf "%s ", $2}' "$logs/cuda_check.log")"
grep -E "^attention:" "$logs/cuda_check.log" | sort -u

# The own attention kernels have never run: shared-memory races, bad barriers or shuffles, and
# out-of-bounds accesses in them, caught by name (SANITIZE=0 skips; at most 45 s per tool).
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ "${SANITIZE:-1}" != 0 ] && [ -n "$san" ]; then
  for tool in memcheck racecheck synccheck; do
    echo "== compute-sanitizer --tool $tool: cuda_check attention_fp32"
    timeout 45 "$san" --tool "$tool" --error-exitcode 3 "$build/tests/cuda_check" attention_fp32 > "$logs/sanitizer_$tool.log" 2>&1
    san_rc=$?
    grep -E "^=========|passed|failed" "$logs/sanitizer_$tool.log" | head -25
    echo "$tool exit $san_rc (0 clean, 3 hazards found, 1 a check failed, 124 timed out)"
  done
fi

echo "== throughput: forward + backward + clip + AdamW, synthetic tokens"
timeout 400 "$build/bench/cuda_bench" --batch "${BATCH:-32}" --steps "${STEPS:-10}" --math "${MATH:-bf16,tf32,fp32}" 2>&1 |
  tee "$logs/cuda_bench.log"
bench_rc=${PIPESTATUS[0]}

# The full cairn (HDF5, checkpoints, the trainer), when bench/gpu_bundle.sh packed it on the CPU
# machine and gpu_bundle/ was carried: the trainer's GPU checkpoint tests and real training runs.
bundle_rc=0
if [ -f "$src/gpu_bundle/bundle.tar.xz" ]; then
  echo "== the full cairn on the GPU (gpu_bundle: Debian 12 build, needs glibc >= 2.36; here: $(ldd --version | head -1))"
  b=$(mktemp -d)
  tar -C "$b" -xJf "$src/gpu_bundle/bundle.tar.xz"
  nvidia_libs=$(python3 -c 'import os, nvidia
print(":".join(os.path.join(r, d, "lib") for r in nvidia.__path__ for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, "lib"))))' 2>/dev/null)
  export LD_LIBRARY_PATH="$b/lib:/usr/local/cuda/lib64${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  if "$b/bin/cairn" --help > /dev/null; then
    echo "-- cuda_ops_test: CudaTrainTest (GPU resume bit for bit, CPU -> GPU -> CPU checkpoints), CudaBackend"
    timeout 300 "$b/bin/cuda_ops_test" --gtest_filter='CudaTrainTest.*:CudaBackend.*' 2>&1 | tee -a "$logs/bundle.log" |
      grep -E '^\[|Failure|Expected|Which is|error' | tail -30
    bundle_rc=${PIPESTATUS[0]}
    data="$b/data/fortunes"
    for prec in bf16 fp32; do
      echo "-- cairn train: tiny preset, $prec, 300 steps on fortunes"
      timeout 200 "$b/bin/cairn" train --config "$src/configs/tiny.toml" --set device=cuda --set training.precision=$prec \
        --set data.train="$data" --set output.run_dir="$b/tiny_$prec" --set training.steps=300 \
        --set training.log_every=100 --set training.eval_every=300 --set output.plot=false 2>&1 | tee -a "$logs/bundle.log" |
        grep -E '^(device|compute|step|val|cairn|attention|Error|error)|tokens/s' | tail -12
      [ "${PIPESTATUS[0]}" -eq 0 ] || bundle_rc=1
    done
    echo "-- cairn train: 130M shape, bf16, micro-batch 32, 30 steps (throughput of the real trainer)"
    timeout 200 "$b/bin/cairn" train --config "$src/configs/llama-130m.toml" --set device=cuda --set training.precision=bf16 \
      --set data.train="$data" --set model.vocab_size=0 --set output.run_dir="$b/m130" --set training.steps=30 \
      --set training.micro_batch=32 --set training.grad_accum=1 --set training.log_every=10 --set training.eval_every=30 \
      --set output.plot=false 2>&1 | tee -a "$logs/bundle.log" | grep -E '^(device|compute|step|val|cairn|Error|error)|tokens/s' | tail -8
    [ "${PIPESTATUS[0]}" -eq 0 ] || bundle_rc=1
  else
    echo "gpu_bundle: cairn does not start here (a library above is missing or glibc is older than 2.36)"
    bundle_rc=1
  fi
else
  echo "== no gpu_bundle/bundle.tar.xz: the trainer's GPU runs are skipped (bench/gpu_bundle.sh makes it)"
fi

# Measurements after the checks: should the run meet the device tool's 10-minute limit, only these
# are lost.
echo "== Fira instead of AdamW (rank 256): 350M bf16, and the projection refresh"
timeout 120 "$build/bench/cuda_bench" --batch "${BATCH:-32}" --steps 5 --models 350m --math bf16 --optimizer fira 2>&1 |
  tee -a "$logs/cuda_bench.log"
echo "== where the time goes: 350M bf16, every op timed (bench/op_profile.h)"
timeout 120 "$build/bench/cuda_bench" --batch "${BATCH:-32}" --steps 3 --models 350m --math bf16 --profile 1 2>&1 |
  tee -a "$logs/cuda_bench.log" | tail -32

echo "== full logs: $logs ($(ls "$logs" | tr '\n' ' '))"
echo "== summary: cuda_check exit $check_rc (0 all passed, 1 failures, 77 no device), cuda_bench exit $bench_rc (77 no device), full cairn exit $bundle_rc"
[ "$check_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && [ "$bundle_rc" -eq 0 ]
