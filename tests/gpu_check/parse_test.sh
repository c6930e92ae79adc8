#!/usr/bin/env bash
# bench/gpu_check_lib.sh on recorded outputs (tests/gpu_check/logs/: written in the programs' exact
# formats, from their printf calls and GoogleTest's, since no GPU run exists yet): results rows come
# from whatever a program printed, also when a time limit killed it or it failed.
#   bash tests/gpu_check/parse_test.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
logs=$here/logs
# shellcheck source=bench/gpu_check_lib.sh
source "$here/../../bench/gpu_check_lib.sh"
fails=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect_eq() {  # expect_eq WHAT GOT WANT
  if [ "$2" != "$3" ]; then echo "FAIL $1"; echo "  got:  $2"; echo "  want: $3"; fails=$((fails + 1)); else echo "ok   $1"; fi
}
expect_has() {  # expect_has WHAT GOT PART
  if [[ "$2" != *"$3"* ]]; then echo "FAIL $1"; echo "  got:  $2"; echo "  lacks: $3"; fails=$((fails + 1)); else echo "ok   $1"; fi
}

has_gpu=1
rows=$(bench_rows "bench Fira" "$logs/bench_fira_killed.txt" 124)
expect_eq "a killed bench keeps its RESULT row" "$(echo "$rows" | head -1 | cut -d'|' -f1-2)" "bench Fira: 350m cuda-bf16 fira T=1024 B=16|ok"
expect_has "... with its numbers" "$(echo "$rows" | head -1)" "125070 tok/s, 281.3 TFLOP/s, MFU 28.4%, loss 10.5129; 21.4 GB in cairn's buffers"
expect_eq "... and a failure row for the kill" "$(echo "$rows" | sed -n 2p)" "bench Fira|FAIL|time limit after 1 result(s)"
expect_eq "a KILL after the grace period reads as the time limit too" "$(bench_rows x "$logs/bench_fira_killed.txt" 137 | sed -n 2p)" "x|FAIL|time limit after 1 result(s)"

rows=$(bench_rows "bench seq 1024" "$logs/bench_seq1024.txt" 0)
expect_eq "one row per RESULT line" "$(echo "$rows" | cut -d'|' -f1-2 | tr '\n' ' ')" \
  "bench seq 1024: 350m cuda-bf16 adamw T=1024 B=16|ok bench seq 1024: 130m cuda-bf16 adamw T=1024 B=16|ok "
expect_eq "cuDNN attention is not remarked on" "$(echo "$rows" | grep -c ATTENTION)" 0
expect_has "bf16 attention falling back to the own kernel is" "$(bench_rows b "$logs/bench_fallback.txt" 0)" \
  "ATTENTION FELL BACK: own fused kernel (fp32) because cuDNN 91000's deterministic backward wants a 1088 MiB workspace"

rows=$(bench_rows "bench" "$logs/bench_aborted.txt" 134)
expect_eq "an aborted bench keeps its RESULT row" "$(echo "$rows" | head -1 | cut -d'|' -f2)" ok
expect_eq "... and says why it died" "$(echo "$rows" | sed -n 2p)" \
  "bench|FAIL|aborted (exit 134) after 1 result(s): terminate called after throwing an instance of 'cairn::Error'"

echo "SKIP: no CUDA device (cudaGetDeviceCount: cudaErrorInsufficientDriver: CUDA driver version is insufficient)" > "$tmp/77.txt"
expect_eq "exit 77 with a visible GPU fails" "$(bench_rows b "$tmp/77.txt" 77)" \
  "b|FAIL|exit 77 (no usable device) although nvidia-smi sees a GPU: SKIP: no CUDA device (cudaGetDeviceCount: cudaErrorInsufficientDriver: CUDA driver version is insufficient)"
has_gpu=0
expect_eq "exit 77 without one is a skip" "$(bench_rows b "$tmp/77.txt" 77 | cut -d'|' -f1-2)" "b|SKIP"
has_gpu=1

rows=$(check_rows "$logs/check_killed.txt" 124)
expect_eq "cuda_check killed: what passed and where it stopped" "$(echo "$rows" | head -1)" \
  "cuda_check (all checks)|FAIL|time limit: 6 passed before it stopped; stopped in model_graph_replay_fp32"
expect_has "the check it stopped in fails" "$rows" "  model_graph_replay_fp32|FAIL|time limit while it ran"
expect_has "the key checks before it keep their rows" "$rows" "  copy_to_device_staging_ring|ok|upload 0 n=50000"
if graph_checks_failed "$logs/check_killed.txt"; then r=yes; else r=no; fi
expect_eq "stopped inside a graph check: graphs go off" "$r" yes

rows=$(check_rows "$logs/check_graph_fail.txt" 1)
expect_eq "cuda_check with a failed check" "$(echo "$rows" | head -1)" \
  "cuda_check (all checks)|FAIL|exit 1: 10 passed, 1 failed; failed: model_graph_replay_bf16 "
expect_has "the failed comparison is shown" "$rows" "  model_graph_replay_bf16|FAIL|loss 2 equals loss 0 bit for bit FAIL"
if graph_checks_failed "$logs/check_graph_fail.txt"; then r=yes; else r=no; fi
expect_eq "a failed graph check: graphs go off" "$r" yes
if graph_checks_failed "$logs/check_pass.txt"; then r=yes; else r=no; fi
expect_eq "all passed: graphs stay on" "$r" no
expect_eq "all passed" "$(check_rows "$logs/check_pass.txt" 0 | head -1)" "cuda_check (all checks)|ok|11 passed, 0 failed"

rows=$(ops_test_rows "$logs/ops_test_fail.txt" 1)
expect_has "a failed GoogleTest case shows its failure" "$rows" \
  "  CudaTrainTest.CheckpointMovesCpuToGpuToCpu|FAIL|/work/tests/cuda_ops_test.cpp:171: Failure The difference"
expect_eq "cuda_ops_test's counts" "$(echo "$rows" | tail -1)" "cuda_ops_test|FAIL|5 passed, 1 failed, 1 skipped; exit 1"
sed "/RUN      \] CudaNccl/q" "$logs/ops_test_pass.txt" > "$tmp/ops.txt"  # killed inside the NCCL test
expect_has "a GoogleTest case a kill interrupted fails" "$(ops_test_rows "$tmp/ops.txt" 124)" \
  "  CudaNccl.OneRankCollectivesRunOnTheDevice|FAIL|time limit while it ran"

printf '%s\n' '[ RUN      ] CudaNccl.OneRankCollectivesRunOnTheDevice' 'tests/cuda_ops_test.cpp:81: Skipped' \
  'built without NCCL' '[  SKIPPED ] CudaNccl.OneRankCollectivesRunOnTheDevice (0 ms)' > "$tmp/skipped.txt"
has_gpu=0
expect_eq "a skipped GoogleTest case shows its reason" "$(ops_test_rows "$tmp/skipped.txt" 0 | head -1)" \
  "  CudaNccl.OneRankCollectivesRunOnTheDevice|SKIP|built without NCCL"
echo "SKIP: no CUDA device (cudaGetDeviceCount: cudaErrorNoDevice: no CUDA-capable device is detected)" > "$tmp/77.txt"
expect_eq "cuda_check without a device" "$(check_rows "$tmp/77.txt" 77)" \
  "cuda_check (all checks)|SKIP|no device: no check ran; SKIP: no CUDA device (cudaGetDeviceCount: cudaErrorNoDevice: no CUDA-capable device is detected)"
has_gpu=1

expect_eq "a hung training run keeps its last step" "$(train_row "train 350M" "$logs/train_hung.txt" 124)" \
  "train 350M|FAIL|time limit (last: step 10 loss 8.9021 121.0k tok/s MFU 27.5%)"
expect_eq "a finished one" "$(train_row "train tiny" "$logs/train_ok.txt" 0)" \
  "train tiny|ok|step 200 loss 2.3021 12.2k tok/s MFU 0.3% attention: cuDNN SDPA (bf16)"

expect_eq "the sanitizer refusing is a skip" "$(sanitizer_row s "$logs/san_refused.txt" 1)" \
  "s|SKIP|the sanitizer could not run here: Error: Target application terminated before first instrumented API call"
expect_has "a race fails" "$(sanitizer_row s "$logs/san_race.txt" 3)" "s|FAIL|1 hazards (exit 3, 1 checks ran): Error: Race reported"
expect_eq "a sanitizer that ran nothing is no pass" "$(sanitizer_row s "$logs/san_nothing_ran.txt" 0)" \
  "s|SKIP|no check ran under the sanitizer (exit 0)"
expect_eq "a clean run passes" "$(sanitizer_row s "$logs/san_ok.txt" 0)" "s|ok|no hazards; 1 passed, 0 failed"
expect_eq "a time limit without hazards passes what it checked" "$(sanitizer_row s "$logs/check_killed.txt" 124)" \
  "s|ok|time limit reached, no hazards in the 6 checks done"

ldd() { cat "$logs/ldd_missing.txt"; }  # the module's ldd on a machine without cuDNN and NCCL
expect_eq "libraries that do not resolve" "$(unresolved_libs /x/libcairn_cuda.so | tr '\n' ' ')" \
  "libcairn_cuda.so: libcudnn.so.9 libcairn_cuda.so: libnccl.so.2 "
ldd() { cat "$logs/ldd_module.txt"; }
expect_eq "every library resolves" "$(unresolved_libs /x/libcairn_cuda.so)" ""
expect_eq "the CUDA libraries the module resolves to" "$(cuda_libs_of /x/libcairn_cuda.so)" \
  "libcublas.so.13 libcublasLt.so.13 libcudart.so.13 libcudnn.so.9 libcusolver.so.12 libnccl.so.2 libnvrtc.so.13 "

echo "$fails failed"
[ "$fails" = 0 ]
