#!/usr/bin/env bash
# The one GPU check, sized for one 10-minute device command (the sections' time limits add up to
# BUDGET, 500 s by default; a section that would not fit in what is left is skipped and said so).
# It runs what bench/gpu_bundle.sh built and packed on the CPU machine (gpu_bundle/bundle.tar.xz:
# cairn, libcairn_cuda.so, cuda_check, cuda_ops_test, cuda_bench, their Debian libraries, a
# dataset), so nothing is compiled on the device; without the bundle it builds the CAIRN_CUDA_ONLY
# configuration there first (minutes: then only the checks and benchmarks run, not the trainer).
#   1. cuda_check: every op, model, training and step check of the CUDA backend against the CPU
#   2. cuda_ops_test: the trainer's GPU checkpoint tests (resume bit for bit, CPU -> GPU -> CPU),
#      the one-rank NCCL smoke test, the module and memory report
#   3. cuda_bench at seq 1024, bf16, 350M and 130M at micro-batch BATCH: tokens/s, MFU against the
#      device's datasheet peak, device memory in use
#   4. cairn train on the GPU: tiny bf16 and fp32; gradient accumulation + ZeRO-1; SLTrain; GaLore;
#      the 350M shape at seq 1024 in bf16 (the real trainer's throughput)
#   5. compute-sanitizer: memcheck over the whole check table, racecheck and synccheck over the
#      own kernels that share memory, each with a short time limit
#   6. last, what a short budget skips first: 350M seq 1024 without CUDA graphs (their gain, and a
#      fallback: CAIRN_CUDA_GRAPHS=0 turns them off for every run should they fail), at micro-batch
#      32 (memory), seq 256 in bf16/TF32/fp32, Fira with its projection refresh, a per-op profile
# Then ONE results table, printed and written to $OUT/results.txt (logs beside it, at most 8 files).
# Exit status: 0 every check passed, 1 something failed, 77 no CUDA device (every section says so).
#   run(command="bash bench/gpu_check.sh", carry=["gpu_bundle", "third_party/cudnn_frontend"], timeout_s=600)
#   variables: BUDGET (500), BATCH (16: 350M at seq 1024), SANITIZE (1), CUDA_ARCH (90), JOBS, CUDNN_ROOT
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
start=$(date +%s)
budget=${BUDGET:-500}
out=${OUT:-$src/build/gpu_check_out}
mkdir -p "$out"
results="$out/results.txt"
rows=()      # "name|status|detail"
failed=0
row() {      # row NAME STATUS DETAIL
  rows+=("$1|$2|$3")
  [ "$2" = FAIL ] && failed=1
  printf '%-58s %-6s %s\n' "$1" "$2" "$3"
}
left() { echo $(( budget - ($(date +%s) - start) )); }
# fits SECONDS NAME: false (and a SKIP row) when the section's limit exceeds what is left.
fits() {
  if [ "$(left)" -lt "$1" ]; then row "$2" SKIP "not enough time left ($(left) s of $budget)"; return 1; fi
}

echo "== machine"
has_gpu=0
if nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null; then has_gpu=1; fi
[ "$has_gpu" = 1 ] || echo "no CUDA device here (nvidia-smi fails): every section reports 'no device'"
command -v nvcc > /dev/null && nvcc --version | tail -1
echo "glibc: $(ldd --version | head -1)"

cudnn_root=${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)}
nvidia_libs=$(python3 -c 'import os, nvidia
print(":".join(os.path.join(r, d, "lib") for r in nvidia.__path__ for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, "lib"))))' 2>/dev/null)
# The module's libraries by name: CUDA's, and cuDNN/NCCL from PyTorch's wheels where they live.
export LD_LIBRARY_PATH="/usr/local/cuda/lib64${nvidia_libs:+:$nvidia_libs}${cudnn_root:+:$cudnn_root/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

# ---- the binaries: from the bundle, else built here ---------------------------------------------
bin="" data="" trainer=0
if [ -f "$src/gpu_bundle/bundle.tar.xz" ]; then
  b=$(mktemp -d)
  tar -C "$b" -xJf "$src/gpu_bundle/bundle.tar.xz"
  export LD_LIBRARY_PATH="$b/lib:$LD_LIBRARY_PATH"
  export CAIRN_CUDA_MODULE="$b/bin/libcairn_cuda.so"
  bin="$b/bin" data="$b/data/fortunes"
  if "$bin/cairn" --help > /dev/null 2>&1; then
    trainer=1
    row "bundle" ok "prebuilt: $(cat "$b/BUILD_INFO" 2>/dev/null)"
  else
    row "bundle" FAIL "cairn does not start here (a library is missing, or glibc older than the bundle's 2.36): $("$bin/cairn" --help 2>&1 | head -1)"
    bin=""
  fi
fi
if [ -z "$bin" ] && [ "$has_gpu" = 0 ]; then
  row "build (CAIRN_CUDA_ONLY)" SKIP "no device and no bundle: nothing to run it on (bench/gpu_bundle.sh makes the bundle)"
elif [ -z "$bin" ]; then
  build=${BUILD:-$src/build/gpu_check}
  echo "== no usable bundle: building CAIRN_CUDA_ONLY (sm_${CUDA_ARCH:-90}) in $build (log: $out/build.log)"
  t0=$(date +%s)
  if fits 300 "build (CAIRN_CUDA_ONLY)"; then
    if cmake -S "$src" -B "$build" -DCAIRN_CUDA_ONLY=ON -DCAIRN_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" \
         -DCMAKE_BUILD_TYPE=Release ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"} > "$out/build.log" 2>&1 &&
       timeout 300 cmake --build "$build" -j"${JOBS:-$(nproc)}" --target cuda_check cuda_bench >> "$out/build.log" 2>&1; then
      mkdir -p "$build/bin"
      ln -sf "$build/tests/cuda_check" "$build/bench/cuda_bench" "$build/bin/"
      bin="$build/bin"
      row "build (CAIRN_CUDA_ONLY)" ok "$(( $(date +%s) - t0 )) s; $(grep -o 'cairn features:.*' "$out/build.log" | head -1)"
    else
      row "build (CAIRN_CUDA_ONLY)" FAIL "see build.log: $(grep -m1 -E 'error|Error' "$out/build.log")"
    fi
  fi
fi
# exit status → table status: 0 ok, 77 no device, 124 time limit, else FAIL
status_of() { case "$1" in 0) echo ok ;; 77) echo SKIP ;; 124) echo FAIL ;; *) echo FAIL ;; esac; }
why_of() { case "$1" in 77) echo "no device" ;; 124) echo "time limit" ;; *) echo "exit $1" ;; esac; }

# ---- 1. the check table --------------------------------------------------------------------------
if [ -n "$bin" ] && fits 150 "cuda_check (all checks)"; then
  echo "== cuda_check: every check against the CPU (log: $out/check.log)"
  timeout 150 "$bin/cuda_check" > "$out/check.log" 2>&1
  rc=$?
  awk '/^(PASS|FAIL) /{fail = ($1 == "FAIL")} fail || /passed|SKIP|threw/' "$out/check.log" | head -60
  grep -E "^attention:" "$out/check.log" | sort -u
  row "cuda_check (all checks)" "$(status_of $rc)" \
    "$(tail -1 "$out/check.log") $( [ $rc = 0 ] || [ $rc = 77 ] || echo "$(why_of $rc); failed: $(awk '$1 == "FAIL" {printf "%s ", $2}' "$out/check.log")")"
  for c in copy_to_device_staging_ring model_graph_replay_bf16 attention_bf16_workspace_linear_in_T peak_flops; do
    line=$(grep -E "^(PASS|FAIL) $c\$" "$out/check.log")
    [ -n "$line" ] && row "  $c" "$( [ "${line%% *}" = PASS ] && echo ok || echo FAIL)" \
      "$(awk -v c="$c" '$2 == c {on = 1; next} /^(PASS|FAIL) / {on = 0} on' "$out/check.log" | head -2 | tr -s ' ' | tr '\n' ';')"
  done
fi

# ---- 2. trainer checkpoints, NCCL ----------------------------------------------------------------
if [ "$trainer" = 1 ] && fits 150 "cuda_ops_test"; then
  echo "== cuda_ops_test: CudaTrainTest, CudaNccl, CudaBackend (log: $out/train.log)"
  timeout 150 "$bin/cuda_ops_test" --gtest_filter='CudaTrainTest.*:CudaNccl.*:CudaBackend.*' > "$out/ops_test.txt" 2>&1
  rc=$?
  cat "$out/ops_test.txt" >> "$out/train.log"
  grep -E '^\[ +(OK|FAILED|SKIPPED) +\] [A-Za-z]' "$out/ops_test.txt" | sort -u | head -20
  for t in CudaTrainTest.ResumedGpuRunEqualsUninterruptedBitForBit CudaTrainTest.CheckpointMovesCpuToGpuToCpu \
           CudaNccl.OneRankCollectivesRunOnTheDevice; do
    if grep -q "\[       OK \] $t" "$out/ops_test.txt"; then row "  $t" ok ""
    elif grep -q "\[  SKIPPED \] $t" "$out/ops_test.txt"; then row "  $t" SKIP "$(grep -A2 "\[ RUN      \] $t" "$out/ops_test.txt" | tail -1 | cut -c1-80)"
    else row "  $t" FAIL "$(grep -m1 -A3 "\[ RUN      \] $t" "$out/ops_test.txt" | grep -m1 -E 'Failure|Error|error' | cut -c1-100)"; fi
  done
  rm -f "$out/ops_test.txt"
  if [ "$has_gpu" = 0 ] && [ $rc = 0 ]; then row "cuda_ops_test" SKIP "no device"; else row "cuda_ops_test" "$(status_of $rc)" "$(why_of $rc)"; fi
fi

# ---- 3. throughput, MFU and memory ---------------------------------------------------------------
bench() {  # bench NAME LIMIT ARGS...
  local name=$1 limit=$2
  shift 2
  fits "$limit" "$name" || return
  echo "== $name: cuda_bench $*" | tee -a "$out/bench.log"
  timeout "$limit" "$bin/cuda_bench" "$@" > "$out/bench.txt" 2>&1
  local rc=$?
  cat "$out/bench.txt" >> "$out/bench.log"
  grep -v '^RESULT' "$out/bench.txt"
  if [ $rc = 0 ]; then
    # RESULT kind=bench model=.. math=.. optimizer=.. B=.. T=.. tok_s=.. tflops=.. mfu=.. loss=.. memory="..."
    local line
    while IFS= read -r line; do
      field() { echo "$line" | grep -o -E " $1=[^ ]+" | cut -d= -f2; }
      row "$name: $(field model) $(field math) $(field optimizer) T=$(field T) B=$(field B)" ok \
        "$(awk -v t="$(field tok_s)" -v f="$(field tflops)" -v m="$(field mfu)" -v l="$(field loss)" \
             'BEGIN {printf "%.0f tok/s, %.1f TFLOP/s, MFU %.1f%%, loss %s", t, f, 100 * m, l}'); \
$(echo "$line" | sed -e 's/.*memory="//' -e 's/"$//' -e 's/^GPU [0-9]* ([^)]*): //')"
    done < <(grep '^RESULT' "$out/bench.txt")
  else
    row "$name" "$(status_of $rc)" "$(why_of $rc): $(grep -m1 -E 'cuda_bench:|SKIP' "$out/bench.txt")"
  fi
  rm -f "$out/bench.txt"
}
if [ -n "$bin" ]; then
  bench "bench seq 1024" 100 --models 350m,130m --seq 1024 --math bf16 --batch "${BATCH:-16}" --steps 8
fi

# ---- 4. the real trainer -------------------------------------------------------------------------
train() {  # train NAME LIMIT CONFIG ARGS...
  local name=$1 limit=$2 config=$3
  shift 3
  fits "$limit" "$name" || return
  if [ "$has_gpu" = 0 ]; then row "$name" SKIP "no device"; return; fi
  echo "== $name" >> "$out/train.log"
  timeout "$limit" "$bin/cairn" train --config "$src/configs/$config" --set device=cuda --set data.train="$data" \
    --set output.run_dir="$(mktemp -d)/run" --set output.plot=false "$@" > "$out/run.txt" 2>&1
  local rc=$?
  cat "$out/run.txt" >> "$out/train.log"
  local last
  last=$(grep -E '^step ' "$out/run.txt" | tail -1)
  if [ $rc = 0 ]; then
    row "$name" ok "$(echo "$last" | grep -o -E 'loss [0-9.]+|[0-9.]+[kM]? tok/s|MFU [0-9.]+%' | tr '\n' ' ')$(grep -m1 -o -E 'attention: .*' "$out/run.txt" | cut -c1-40)"
  else
    row "$name" FAIL "$(why_of $rc): $(grep -m1 -E 'Error|error|what' "$out/run.txt" | cut -c1-120)"
  fi
  rm -f "$out/run.txt"
}
if [ "$trainer" = 1 ]; then
  common=(--set training.log_every=50 --set training.eval_every=100)
  train "train tiny bf16 (200 steps)" 45 tiny.toml --set training.precision=bf16 --set training.steps=200 "${common[@]}"
  train "train tiny fp32 (200 steps)" 45 tiny.toml --set training.precision=fp32 --set training.steps=200 "${common[@]}"
  train "train tiny bf16, grad_accum 4 + ZeRO-1" 50 tiny.toml --set training.precision=bf16 --set training.steps=60 \
    --set training.grad_accum=4 --set training.micro_batch=4 --set training.zero1=true "${common[@]}"
  train "train tiny SLTrain bf16" 50 tiny-sltrain.toml --set training.precision=bf16 --set training.steps=100 "${common[@]}"
  train "train tiny GaLore bf16" 50 tiny.toml --set training.precision=bf16 --set training.steps=100 \
    --set optimizer.name=galore --set optimizer.rank=32 --set optimizer.update_gap=50 "${common[@]}"
  train "train 350M shape bf16 seq 1024 (20 steps)" 90 llama-350m.toml --set training.precision=bf16 \
    --set model.vocab_size=0 --set model.seq_len=1024 --set training.micro_batch="${BATCH:-16}" --set training.grad_accum=1 \
    --set training.steps=20 --set training.log_every=5 --set training.eval_every=20
elif [ -n "$bin" ]; then
  row "cairn train (trainer runs)" SKIP "no bundle: bench/gpu_bundle.sh on the CPU machine, carry gpu_bundle"
fi

# ---- 5. compute-sanitizer ------------------------------------------------------------------------
san=$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)
if [ "${SANITIZE:-1}" != 0 ] && [ -n "$bin" ]; then
  if [ "$has_gpu" = 0 ]; then
    row "compute-sanitizer" SKIP "no device"
  elif [ -z "$san" ]; then
    row "compute-sanitizer" SKIP "not installed"
  else
    # memcheck over every check (library kernels included, so slow: what finishes within the limit
    # counts); racecheck and synccheck over the own kernels with shared memory and barriers.
    for spec in "memcheck::60" "racecheck:attention_fp32:30" "synccheck:attention_fp32:20" \
                "racecheck:embedding_backward:15"; do
      IFS=: read -r tool filter limit <<< "$spec"
      name="sanitizer $tool ${filter:-(all checks)}"
      fits "$limit" "$name" || continue
      timeout "$limit" "$san" --tool "$tool" --error-exitcode 3 "$bin/cuda_check" $filter > "$out/san.txt" 2>&1
      rc=$?
      {
        echo "== $name: exit $rc"
        grep -E "^=========|passed|failed" "$out/san.txt" | head -40
      } >> "$out/sanitizer.log"
      hazards=$(grep -c -E "^========= (Invalid|Race|Barrier|Error|Uninitialized)" "$out/san.txt")
      case $rc in
        0) row "$name" ok "no hazards; $(grep -E 'passed' "$out/san.txt" | tail -1)" ;;
        124) row "$name" "$( [ "$hazards" = 0 ] && echo ok || echo FAIL)" "time limit ${limit} s reached, $hazards hazards by then" ;;
        *) row "$name" FAIL "exit $rc (3: hazards found, 1: a check failed): $hazards hazards" ;;
      esac
    done
    rm -f "$out/san.txt"
  fi
fi

# ---- 6. more measurements, last: what a short budget skips --------------------------------------
if [ -n "$bin" ]; then
  CAIRN_CUDA_GRAPHS=0 bench "bench seq 1024, no CUDA graphs" 50 --models 350m --seq 1024 --math bf16 \
    --batch "${BATCH:-16}" --steps 8
  bench "bench seq 1024, micro-batch 32" 60 --models 350m --seq 1024 --math bf16 --batch 32 --steps 4
  bench "bench seq 256" 90 --models 350m --seq 256 --math bf16,tf32,fp32 --batch 32 --steps 5
  bench "bench Fira (rank 256) + refresh" 60 --models 350m --seq 1024 --math bf16 --optimizer fira --batch "${BATCH:-16}" --steps 3
  if fits 50 "per-op profile" && [ "$has_gpu" = 1 ]; then
    echo "== per-op profile: 350M bf16 seq 1024, every op timed (bench.log)" | tee -a "$out/bench.log"
    timeout 50 "$bin/cuda_bench" --models 350m --seq 1024 --math bf16 --batch "${BATCH:-16}" --steps 2 --profile 1 2>&1 |
      grep -v '^RESULT' | tee -a "$out/bench.log" | tail -24
  fi
fi

# ---- the table ---------------------------------------------------------------------------------
{
  echo "cairn GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null || echo 'no GPU'), $(( $(date +%s) - start )) s"
  printf '%-58s | %-6s | %s\n' check status detail
  printf '%.0s-' {1..120}; echo
  for r in "${rows[@]}"; do
    IFS='|' read -r n s d <<< "$r"
    printf '%-58s | %-6s | %s\n' "$n" "$s" "$d"
  done
} > "$results"
echo
echo "== results ($results; logs: $(ls "$out" | tr '\n' ' '))"
cat "$results"
[ "$failed" = 1 ] && exit 1
[ "$has_gpu" = 0 ] && exit 77
exit 0
