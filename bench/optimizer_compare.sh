#!/usr/bin/env bash
# Issue 6's loss comparison: AdamW, GaLore and Fira on the tiny preset, same data, steps and
# tokens; prints the final validation loss and the optimizer-state memory of each. (Step times
# and the 60M state memory: build/bench/optimizer_bench.)
# Usage: bench/optimizer_compare.sh [build dir] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-400}
data=out/fortunes
[ -f "$data" ] || "$build/cairn" prepare --out "$data" >/dev/null
printf "%-8s %8s %10s %14s\n" optimizer lr val_loss "state MB"
for opt in adamw galore fira; do
  dir=$(mktemp -d)
  if [ "$opt" = adamw ]; then cfg=(--config configs/tiny.toml --set schedule.lr=3e-3); lr=3e-3
  else cfg=(--config configs/tiny-fira.toml --set optimizer.name=$opt); lr=1e-2; fi
  "$build/cairn" train "${cfg[@]}" --set data.train=$data --set training.steps=$steps \
      --set training.eval_every=$steps --set training.log_every=$steps --set output.plot=false \
      --set output.progress=false --set output.run_dir=$dir > "$dir/log.txt"
  mem=$(grep -o "optimizer state ($opt[^)]*) [0-9.e+]*" "$dir/log.txt" | awk '{print $NF}')
  val=$(python3 -c "import json,sys; print(round([json.loads(l) for l in open('$dir/metrics.jsonl')][-1]['val_loss'],4))")
  printf "%-8s %8s %10s %14s\n" "$opt" "$lr" "$val" "$mem"
  rm -rf "$dir"
done
