#!/usr/bin/env bash
# Mix-LN and LayerNorm Scaling at toy scale: a deep, narrow model (16 layers, width 64) trained on
# the fortunes corpus with Pre-LN, Mix-LN (alpha 0.25: 4 Post-LN layers) and LayerNorm Scaling, the
# same seed, data order and tokens. Prints each run's validation loss along the way and at the end.
# The papers' claim to compare with: both methods end below Pre-LN at equal tokens.
# Usage: [SEED=42] [OUT=runs/bench-depth] bash bench/depth_repro.sh [build dir]
# (STEPS=1200: 2 to 6 minutes a run on one core.) The trained runs stay in $OUT for
# bench/depth_layer_skip.sh. THREADS defaults to 1: with other work on a 2-core machine, 2 OpenMP
# threads ran 20x slower (179 against 3.3k tokens/s).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CAIRN=$BUILD/cairn
OUT=${OUT:-runs/bench-depth}
STEPS=${STEPS:-1200}
LR=${LR:-1e-3}              # both papers' scripts: Adam, LR 1e-3, weight decay 0
mkdir -p $OUT
[ -d out/fortunes ] || $CAIRN prepare --out out/fortunes
COMMON=(--config configs/tiny.toml --set data.train=out/fortunes --set model.n_layers=16 --set model.dim=64
        --set model.ffn_dim=176 --set model.n_heads=4 --set model.seq_len=64 --set training.micro_batch=16
        --set training.steps=$STEPS --set training.eval_every=$((STEPS / 10)) --set training.eval_windows=512
        --set training.log_every=100 --set training.threads=${THREADS:-1} --set training.peak_flops=1e10
        --set schedule.lr=$LR --set schedule.warmup=0.1 --set optimizer.weight_decay=0
        --set training.seed=${SEED:-42} --set output.plot=false)
declare -A LAYOUT=([pre]="" [mix]="--set model.norm_layout=mix --set model.mix_ln_alpha=0.25"
                   [lns]="--set model.norm_scaling=true")
for run in pre mix lns; do
  rm -rf "${OUT:?}/$run"
  start=$(date +%s)
  # shellcheck disable=SC2086
  $CAIRN train "${COMMON[@]}" ${LAYOUT[$run]} --set output.run_dir=$OUT/$run > $OUT/$run.log 2>&1 || { cat $OUT/$run.log; exit 1; }
  echo "$run: trained in $(( $(date +%s) - start )) s"
done
$CAIRN plot $OUT/pre $OUT/mix $OUT/lns --out $OUT/loss.png > /dev/null
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
runs = {"pre": "Pre-LN", "mix": "Mix-LN (alpha 0.25)", "lns": "LayerNorm Scaling"}
evals = {r: [(x["tokens"], x["val_loss"]) for x in map(json.loads, open(f"{out}/{r}/metrics.jsonl")) if "val_loss" in x]
         for r in runs}
print(f"\nvalidation loss (fortunes, {len(evals['pre'])} evaluations; 16 layers, width 64)")
print("tokens      " + "".join(f"{n:>22}" for n in runs.values()))
for i, (tokens, _) in enumerate(evals["pre"]):
    print(f"{tokens:<12}" + "".join(f"{evals[r][i][1]:>22.4f}" for r in runs))
base = evals["pre"][-1][1]
for r, name in runs.items():
    final = evals[r][-1][1]
    print(f"{name:<22} final {final:.4f}  vs Pre-LN {final - base:+.4f}")
PY
