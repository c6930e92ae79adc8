#!/usr/bin/env bash
# cairn's CPU training speed beside PyTorch's, one command: the GEMM libraries on the model's shapes
# (gemm_bench), then cairn fp32 and bf16 interleaved step by step with transformers eager,
# torch.compile, and both under bf16 autocast (bench/pytorch_cpu_bench.py), same model, batch and
# threads; medians, ratios and the machine's load before and after.
# Usage: bench/train_bench.sh [build dir]
#   PRESETS="m60 tiny" (default m60), THREADS (2), STEPS (timed rounds, 10), PYTHON (python3 with
#   torch and transformers), SETUPS (eager,compile,bf16,bf16-compile).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${THREADS:-2}
steps=${STEPS:-10}
python=${PYTHON:-python3}
setups=${SETUPS:-eager,compile,bf16,bf16-compile}
tiny="--dim 128 --layers 4 --heads 4 --ffn 352 --vocab 257 --seq 128 --batch 16"
m60="--dim 512 --layers 8 --heads 8 --ffn 1376 --vocab 32000 --seq 256 --batch 8"
# MFU against GEMM peaks measured now, in this run's conditions, not a cached one from another day.
export XDG_CACHE_HOME=$(mktemp -d)
trap 'rm -rf "$XDG_CACHE_HOME"' EXIT
echo "load: $(uptime)"
for preset in ${PRESETS:-m60}; do
  args=${!preset}
  echo "== $preset: $args threads $threads"
  "$build/bench/gemm_bench" $args --threads "$threads"
  "$build/bench/train_bench" $args --threads "$threads" --steps 3 --warmup 1 --precision fp32
  "$build/bench/train_bench" $args --threads "$threads" --steps 3 --warmup 1 --precision bf16
  if "$python" -c "import torch, transformers" 2>/dev/null; then
    "$python" bench/pytorch_cpu_bench.py $args --threads "$threads" --steps "$steps" --setups "$setups" \
      --cairn "$build/bench/train_bench"
  else
    echo "  ($python lacks torch or transformers: pip install torch transformers; or set PYTHON)"
  fi
done
