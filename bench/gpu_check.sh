#!/usr/bin/env bash
# The one GPU check, sized for one 10-minute device command (the sections' time limits add up to
# BUDGET, 500 s by default; a section that would not fit in what is left is skipped and said so).
# It runs what bench/gpu_bundle.sh built and packed on the CPU machine (gpu_bundle/bundle.tar.xz:
# cairn, libcairn_cuda.so, cuda_check, cuda_ops_test, cuda_bench, their Debian libraries, a
# dataset), so nothing is compiled on the device; when the bundle is missing or its libraries do not
# resolve there (ldd), it builds the CAIRN_CUDA_ONLY configuration there first (minutes: then only
# the checks and benchmarks run, not the trainer).
#   0. the machine: GPU, driver, and the CUDA, cuBLAS, cuDNN and NCCL versions the module loads
#   1. cuda_check: every op, model, training and step check of the CUDA backend against the CPU;
#      when a graph check fails, every later section runs with CAIRN_CUDA_GRAPHS=0
#   2. cuda_ops_test: the trainer's GPU checkpoint tests (resume bit for bit, CPU -> GPU -> CPU),
#      the one-rank NCCL smoke test, the module and memory report
#   3. cuda_bench at seq 1024, bf16, 350M and 130M at micro-batch BATCH: tokens/s, MFU against the
#      device's datasheet peak, device memory in use; then 350M without CUDA graphs (their gain)
#   4. cairn train on the GPU: tiny bf16 and fp32; gradient accumulation + ZeRO-1; SLTrain; GaLore;
#      the 350M shape at seq 1024 in bf16 (the real trainer's throughput)
#   5. compute-sanitizer: racecheck and synccheck over the own kernels that share memory, memcheck
#      over the own kernels, then over the whole check table, each with a short time limit
#   6. last, what a short budget skips first: 350M at micro-batch 32 (memory), seq 256 in
#      bf16/TF32/fp32, Fira with its projection refresh, a per-op profile
# Every program runs under `timeout -k` (cairn train finishes its step and checkpoints on SIGTERM;
# a hung kernel ignores it) with line-buffered output, and each results row is appended to
# $OUT/results.txt as soon as it is known, so a run cut short keeps what it measured. Logs beside
# it (at most 8 files). Exit status: 0 every check passed, 1 something failed, 77 no CUDA device
# (nvidia-smi fails; every section says so). A program's exit 77 while nvidia-smi sees a GPU fails.
#   run(command="bash bench/gpu_check.sh", carry=["gpu_bundle", "third_party/cudnn_frontend"], timeout_s=600)
#   variables: BUDGET (500), BATCH (16: 350M at seq 1024), SANITIZE (1), CUDA_ARCH (90), JOBS, CUDNN_ROOT
#   DRY_RUN=1: the whole script on the CPU, with tests/gpu_check/'s stand-ins for nvidia-smi, ldd,
#   compute-sanitizer and the programs (recorded outputs; tests/gpu_check/dry_run_test.sh);
#   TIME_SCALE=N divides every time limit and the budget by N (the dry run's hung programs).
set -uo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/gpu_check_lib.sh
source "$src/bench/gpu_check_lib.sh"
start=$(date +%s)
scale=${TIME_SCALE:-1}
secs() { local s=$(( $1 / scale )); echo $(( s < 1 ? 1 : s )); }  # a time limit, scaled
budget=$(( ${BUDGET:-500} / scale ))
out=${OUT:-$src/build/gpu_check_out}
mkdir -p "$out"
results="$out/results.txt"
failed=0
ran=0        # rows of sections that ran (ok or FAIL), after the machine and library rows
setup=1
dry=${DRY_RUN:-0}
if [ "$dry" = 1 ]; then
  export PATH="$src/tests/gpu_check/path:$PATH"  # nvidia-smi, ldd, compute-sanitizer stand-ins
  export GPU_CHECK_LOGS="$src/tests/gpu_check/logs"
fi
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
has_gpu=0
[ -n "$gpu_name" ] && has_gpu=1
{
  echo "cairn GPU check, $(date -u '+%Y-%m-%d %H:%M UTC'), ${gpu_name:-no GPU}$( [ "$dry" = 1 ] && echo ' (DRY RUN: recorded outputs)')"
  printf '%-66s | %-6s | %s\n' check status detail
  printf '%.0s-' {1..120}; echo
} > "$results"
row() {      # row NAME STATUS DETAIL: printed, and appended to results.txt at once
  [ "$2" = FAIL ] && failed=1
  [ "$setup" = 0 ] && { [ "$2" = ok ] || [ "$2" = FAIL ]; } && ran=$((ran + 1))
  printf '%-66s %-6s %s\n' "$1" "$2" "$3"
  printf '%-66s | %-6s | %s\n' "$1" "$2" "$3" >> "$results"
}
rows() { local n s d; while IFS='|' read -r n s d; do row "$n" "$s" "$d"; done; }  # "name|status|detail" lines
left() { echo $(( budget - ($(date +%s) - start) )); }
# fits LIMIT NAME: false (and a SKIP row) when the section's (scaled) limit exceeds what is left.
fits() {
  if [ "$(left)" -lt "$(secs "$1")" ]; then row "$2" SKIP "not enough time left ($(left) s of $budget)"; return 1; fi
}
# limited LIMIT CMD...: CMD with the (scaled) limit, killed 10 s after its SIGTERM if still running,
# stdout line-buffered, with the programs' libraries on LD_LIBRARY_PATH (not every tool's).
linebuf=()
command -v stdbuf > /dev/null && linebuf=(stdbuf -oL -eL)
limited() {
  local limit
  limit=$(secs "$1")
  shift
  LD_LIBRARY_PATH="$tool_libs" timeout -k "$(secs 10)" "$limit" "${linebuf[@]}" "$@"
}

echo "== machine"
if [ "$has_gpu" = 1 ]; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
else
  echo "no CUDA device here (nvidia-smi fails): every section reports 'no device'"
fi
command -v nvcc > /dev/null && nvcc --version | tail -1
echo "glibc: $(ldd --version | head -1)"

cudnn_root=${CUDNN_ROOT:-$(python3 -c 'import nvidia.cudnn, os; print(os.path.dirname(nvidia.cudnn.__file__))' 2>/dev/null)}
nvidia_libs=$(python3 -c 'import os, nvidia
print(":".join(os.path.join(r, d, "lib") for r in nvidia.__path__ for d in sorted(os.listdir(r)) if os.path.isdir(os.path.join(r, d, "lib"))))' 2>/dev/null)
# The module's libraries by name: CUDA's, and cuDNN/NCCL from PyTorch's wheels where they live.
cuda_libs="/usr/local/cuda/lib64${nvidia_libs:+:$nvidia_libs}${cudnn_root:+:$cudnn_root/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
tool_libs=$cuda_libs

# ---- the binaries: from the bundle if its libraries resolve here, else built here ---------------
bin="" data="" trainer=0
if [ "$dry" = 1 ]; then
  bin="$src/tests/gpu_check/bin" data="$src/tests/gpu_check" trainer=1
  row "bundle" ok "dry run: tests/gpu_check/bin (recorded outputs), not the bundle"
elif [ -f "$src/gpu_bundle/bundle.tar.xz" ]; then
  b=$(mktemp -d)
  tar -C "$b" -xJf "$src/gpu_bundle/bundle.tar.xz"
  export CAIRN_CUDA_MODULE="$b/bin/libcairn_cuda.so"
  bin="$b/bin" data="$b/data/fortunes" trainer=1
  tool_libs="$b/lib:$cuda_libs"
fi
if [ -n "$bin" ]; then
  # Everything the programs and the module load must resolve here (`cairn --help` alone would not
  # open the module, which is loaded lazily).
  missing=$(LD_LIBRARY_PATH="$tool_libs" unresolved_libs "$bin"/* | sort -u | tr '\n' ' ')
  if [ -n "$missing" ]; then
    row "bundle" FAIL "libraries that do not resolve here: $missing(glibc here: $(ldd --version | head -1 | grep -o '[0-9.]*$'), the bundle's: 2.36); building on the device instead"
    bin="" trainer=0 tool_libs=$cuda_libs
    unset CAIRN_CUDA_MODULE
  elif [ "$dry" != 1 ]; then
    row "bundle" ok "prebuilt, every library resolves: $(cat "$b/BUILD_INFO" 2>/dev/null)"
  fi
fi
if [ -z "$bin" ] && [ "$has_gpu" = 0 ]; then
  row "build (CAIRN_CUDA_ONLY)" SKIP "no device and no usable bundle: nothing to run it on (bench/gpu_bundle.sh makes the bundle)"
elif [ -z "$bin" ]; then
  build=${BUILD:-$src/build/gpu_check}
  echo "== building CAIRN_CUDA_ONLY (sm_${CUDA_ARCH:-90}) in $build (log: $out/build.log)"
  t0=$(date +%s)
  if fits 300 "build (CAIRN_CUDA_ONLY)"; then
    if LD_LIBRARY_PATH="$cuda_libs" timeout -k 10 60 cmake -S "$src" -B "$build" -DCAIRN_CUDA_ONLY=ON -DCAIRN_CUDA=ON \
         -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCH:-90}" -DCMAKE_BUILD_TYPE=Release ${cudnn_root:+-DCUDNN_ROOT="$cudnn_root"} \
         > "$out/build.log" 2>&1 &&
       timeout -k 10 "$(( $(left) < 300 ? $(left) : 300 ))" cmake --build "$build" -j"${JOBS:-$(nproc)}" \
         --target cuda_check cuda_bench >> "$out/build.log" 2>&1; then
      mkdir -p "$build/bin"
      ln -sf "$build/tests/cuda_check" "$build/bench/cuda_bench" "$build/bin/"
      bin="$build/bin"
      row "build (CAIRN_CUDA_ONLY)" ok "$(( $(date +%s) - t0 )) s; $(grep -o 'cairn features:.*' "$out/build.log" | head -1)"
    else
      row "build (CAIRN_CUDA_ONLY)" FAIL "see build.log: $(grep -m1 -E 'error|Error' "$out/build.log")"
    fi
  fi
fi

# ---- 0. the libraries the module loads -----------------------------------------------------------
if [ -n "$bin" ]; then
  limited 30 "$bin/cuda_check" --libraries > "$out/check.log" 2>&1
  rc=$?
  module=${CAIRN_CUDA_MODULE:-$(dirname "$(readlink -f "$bin/cuda_check")")/../libcairn_cuda.so}
  [ -e "$module" ] || module="$bin/libcairn_cuda.so"
  files=$(LD_LIBRARY_PATH="$tool_libs" cuda_libs_of "$module")
  versions=$(sed -n 's/^libraries: //p' "$out/check.log")
  if [ -n "$versions" ] && { [ $rc = 0 ] || [ $rc = 77 ]; }; then
    row "libraries loaded" "$( [ $rc = 0 ] && echo ok || status_of $rc)" "$versions; files: $files$( [ $rc = 0 ] || echo "; $(grep -m1 '^SKIP' "$out/check.log")")"
  else
    row "libraries loaded" FAIL "$(why_of $rc): $(grep -m1 -v '^libraries' "$out/check.log" | cut -c1-300)"
  fi
fi

setup=0

# ---- 1. the check table --------------------------------------------------------------------------
if [ -n "$bin" ] && fits 150 "cuda_check (all checks)"; then
  echo "== cuda_check: every check against the CPU (log: $out/check.log)"
  limited 150 "$bin/cuda_check" >> "$out/check.log" 2>&1
  rc=$?
  awk '/^(PASS|FAIL) /{fail = ($1 == "FAIL")} /^RUN /{next} fail || /passed|SKIP|threw/' "$out/check.log" | head -60
  grep -E "^attention:" "$out/check.log" | sort -u
  rows < <(check_rows "$out/check.log" $rc)
  if graph_checks_failed "$out/check.log"; then
    export CAIRN_CUDA_GRAPHS=0
    row "CUDA graphs" note "a graph check failed: every later section runs with CAIRN_CUDA_GRAPHS=0"
  fi
fi

# ---- 2. trainer checkpoints, NCCL ----------------------------------------------------------------
if [ "$trainer" = 1 ] && fits 150 "cuda_ops_test"; then
  echo "== cuda_ops_test: CudaTrainTest, CudaNccl, CudaBackend (log: $out/train.log)"
  limited 150 "$bin/cuda_ops_test" --gtest_filter='CudaTrainTest.*:CudaNccl.*:CudaBackend.*' > "$out/ops_test.txt" 2>&1
  rc=$?
  cat "$out/ops_test.txt" >> "$out/train.log"
  grep -E '^\[ +(OK|FAILED|SKIPPED) +\] [A-Za-z]' "$out/ops_test.txt" | sort -u | head -20
  rows < <(ops_test_rows "$out/ops_test.txt" $rc)
  rm -f "$out/ops_test.txt"
fi

# ---- 3. throughput, MFU and memory ---------------------------------------------------------------
bench() {  # bench NAME LIMIT ARGS...
  local name=$1 limit=$2
  shift 2
  fits "$limit" "$name" || return
  echo "== $name: cuda_bench $*" | tee -a "$out/bench.log"
  limited "$limit" "$bin/cuda_bench" "$@" > "$out/bench.txt" 2>&1
  local rc=$?
  cat "$out/bench.txt" >> "$out/bench.log"
  grep -v '^RESULT' "$out/bench.txt"
  rows < <(bench_rows "$name" "$out/bench.txt" $rc)
  rm -f "$out/bench.txt"
}
if [ -n "$bin" ]; then
  bench "bench seq 1024" 100 --models 350m,130m --seq 1024 --math bf16 --batch "${BATCH:-16}" --steps 8
  # Graphs' gain, and the fallback should they fail later: before the sanitizers, which may use up the budget.
  if [ "${CAIRN_CUDA_GRAPHS:-1}" = 0 ]; then
    row "bench seq 1024, no CUDA graphs" SKIP "graphs are already off for every section"
  else
    CAIRN_CUDA_GRAPHS=0 bench "bench seq 1024, no CUDA graphs" 50 --models 350m --seq 1024 --math bf16 \
      --batch "${BATCH:-16}" --steps 8
  fi
fi

# ---- 4. the real trainer -------------------------------------------------------------------------
train() {  # train NAME LIMIT CONFIG ARGS...
  local name=$1 limit=$2 config=$3
  shift 3
  fits "$limit" "$name" || return
  if [ "$has_gpu" = 0 ]; then row "$name" SKIP "no device"; return; fi
  echo "== $name" >> "$out/train.log"
  limited "$limit" "$bin/cairn" train --config "$src/configs/$config" --set device=cuda --set data.train="$data" \
    --set output.run_dir="$(mktemp -d)/run" --set output.plot=false "$@" > "$out/run.txt" 2>&1
  local rc=$?
  cat "$out/run.txt" >> "$out/train.log"
  rows < <(train_row "$name" "$out/run.txt" $rc)
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
# The own kernels (not cuBLAS's, cuDNN's or CUB's), so memcheck reaches them before its time limit.
own_kernels="attention_fp32 embedding_ rmsnorm_ rope_ swiglu_ crossentropy add_scale scatter_gather_add adam_direction \
norm_ratio_scale_by apply_update limit_norm_growth adamw sum_squares bf16_rounding"
if [ "${SANITIZE:-1}" != 0 ] && [ -n "$bin" ]; then
  if [ "$has_gpu" = 0 ]; then
    row "compute-sanitizer" SKIP "no device"
  elif [ -z "$san" ]; then
    row "compute-sanitizer" SKIP "not installed"
  else
    # API errors inside the libraries (their probing of the device) are not hazards: cairn checks
    # its own calls. Each: tool, label, time limit, filter.
    for spec in "racecheck|attention_fp32|30|attention_fp32" "synccheck|attention_fp32|20|attention_fp32" \
                "racecheck|embedding_backward|15|embedding_backward" "memcheck|own kernels|45|$own_kernels" \
                "memcheck|(all checks)|60|"; do
      IFS='|' read -r tool label limit filter <<< "$spec"
      name="sanitizer $tool $label"
      fits "$limit" "$name" || continue
      # shellcheck disable=SC2086  # the filter is a list of words
      limited "$limit" "$san" --tool "$tool" --error-exitcode 3 --report-api-errors no "$bin/cuda_check" $filter \
        > "$out/san.txt" 2>&1
      rc=$?
      {
        echo "== $name: exit $rc"
        grep -E "^=========|passed|failed" "$out/san.txt" | head -40
      } >> "$out/sanitizer.log"
      rows < <(sanitizer_row "$name" "$out/san.txt" $rc)
    done
    rm -f "$out/san.txt"
  fi
fi

# ---- 6. more measurements, last: what a short budget skips --------------------------------------
if [ -n "$bin" ]; then
  bench "bench seq 1024, micro-batch 32" 60 --models 350m --seq 1024 --math bf16 --batch 32 --steps 4
  bench "bench seq 256" 90 --models 350m --seq 256 --math bf16,tf32,fp32 --batch 32 --steps 5
  bench "bench Fira + refresh" 60 --models 350m --seq 1024 --math bf16 --optimizer fira --batch "${BATCH:-16}" --steps 3
  if [ "$has_gpu" = 1 ] && fits 50 "per-op profile"; then
    echo "== per-op profile: 350M bf16 seq 1024, every op timed (bench.log)" | tee -a "$out/bench.log"
    limited 50 "$bin/cuda_bench" --models 350m --seq 1024 --math bf16 --batch "${BATCH:-16}" --steps 2 --profile 1 \
      > "$out/bench.txt" 2>&1
    rc=$?
    grep -v '^RESULT' "$out/bench.txt" | tee -a "$out/bench.log" | tail -24
    top=$(awk '/time per op/ {on = 1; next} on && NF >= 6 {printf "%s %s, ", $1, $NF; if (++n == 3) exit}' "$out/bench.txt")
    row "per-op profile" "$(status_of $rc)" "$( [ $rc = 0 ] || echo "$(why_of $rc); ")largest shares: ${top%, } (bench.log)"
    rm -f "$out/bench.txt"
  fi
fi

# ---- the table ---------------------------------------------------------------------------------
if [ "$has_gpu" = 1 ] && [ "$ran" = 0 ]; then
  row "GPU check" FAIL "no section ran (BUDGET ${BUDGET:-500} s$( [ -n "$bin" ] || echo ', no programs')): nothing was checked"
fi
status=0
[ "$has_gpu" = 0 ] && status=77
[ "$failed" = 1 ] && status=1
echo "total $(( $(date +%s) - start )) s of a $budget s budget; exit status $status" >> "$results"
echo
echo "== results ($results; logs: $(ls "$out" | tr '\n' ' '))"
cat "$results"
exit $status
