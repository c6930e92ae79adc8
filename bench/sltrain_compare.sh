#!/usr/bin/env bash
# Validation loss of dense, low-rank and SLTrain weights after the same number of tokens: the tiny
# SLTrain preset trained with the real trainer on the default corpus (Debian fortunes, bytes), with
# only model.linear changed (same LR 3e-3, no weight decay, same seed and data order).
# Usage: bench/sltrain_compare.sh [build-dir] [steps]   (prints one table row per kind)
set -euo pipefail
build=${1:-build}
steps=${2:-150}
[ -d out/fortunes ] || "$build/cairn" prepare --out out/fortunes
mkdir -p runs
for kind in dense lowrank sltrain; do
  "$build/cairn" train --config configs/tiny-sltrain.toml --set model.linear="$kind" \
    --set training.steps="$steps" --set training.eval_every=$((steps / 3)) \
    --set output.run_dir="runs/sltrain-compare-$kind" > "runs/sltrain-compare-$kind.log" 2>&1 ||
    { echo "training $kind failed: see runs/sltrain-compare-$kind.log" >&2; exit 1; }
done
python3 - <<'PY'
import json, re
print(f"{'linear':8} {'params':>10} {'tokens':>9} {'train loss':>10} {'val loss':>9} {'tokens/s':>9}")
for kind in ["dense", "lowrank", "sltrain"]:
    recs = [json.loads(l) for l in open(f"runs/sltrain-compare-{kind}/metrics.jsonl")]
    last = [r for r in recs if "val_loss" in r][-1]
    tps = sorted(r["tokens_per_s"] for r in recs if "tokens_per_s" in r)[len(recs) // 2]
    params = next((re.search(r"(\d+) parameters", l).group(1) for l in open(f"runs/sltrain-compare-{kind}.log")
                   if l.startswith("model:")), "?")
    print(f"{kind:8} {params:>10} {last['tokens']:>9} {last['loss']:>10.4f} {last['val_loss']:>9.4f} {tps:>9.0f}")
PY
