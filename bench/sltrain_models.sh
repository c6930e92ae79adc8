#!/usr/bin/env bash
# Parameters, peak RSS and tokens/s (forward+backward+AdamW) of the 60M and 130M presets with
# dense, low-rank and SLTrain weights; one process per model so each peak RSS is its own.
# Usage: [SIZES="60m 130m"] [KINDS="dense lowrank ..."] bench/sltrain_models.sh [build-dir] [steps]
set -euo pipefail
bin=${1:-build}/bench/sltrain_bench
steps=${2:-2}
"$bin" header
for size in ${SIZES:-60m 130m}; do
  for kind in ${KINDS:-dense lowrank sltrain-materialized sltrain-factored sltrain-auto}; do
    "$bin" model "$size" "$kind" "$steps"
  done
done
