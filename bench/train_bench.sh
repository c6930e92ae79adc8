#!/usr/bin/env bash
# Issue 2's benchmark: cairn vs PyTorch eager on the CPU, same model, batch and threads, for the
# tiny preset and the 60M preset, plus the machine's fp32 GEMM peak (printed by train_bench).
# Usage: bench/train_bench.sh [build dir]   (PyTorch: pip install torch; skipped if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${THREADS:-2}
tiny="--dim 128 --layers 4 --heads 4 --ffn 352 --vocab 257 --seq 128 --batch 16"
m60="--dim 512 --layers 8 --heads 8 --ffn 1376 --vocab 32000 --seq 256 --batch 8"
for preset in tiny m60; do
  args=${!preset}
  echo "== $preset: $args threads $threads"
  "$build/bench/train_bench" $args --threads "$threads" --steps 5
  if python3 -c "import torch" 2>/dev/null; then
    python3 bench/pytorch_cpu_bench.py $args --threads "$threads" --steps 5
  else
    echo "  (PyTorch not installed: pip install torch)"
  fi
done
