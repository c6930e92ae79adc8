#!/usr/bin/env bash
# Continual pre-training at toy scale ("Simple and Scalable Strategies to Continually Pre-train
# LLMs"): train on English fortunes, then continue on German fortunes (both byte-level, one
# vocabulary) with (a) no re-warm (constant at the old minimum LR), (b) re-warm + cosine re-decay,
# (c) re-warm + 25% English replay, and (d) from scratch on the union with the same total tokens.
# Prints the final validation loss on both languages for each.
# Usage: bash bench/continual_repro.sh [build dir]   (about 4 minutes on one core)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CAIRN=$BUILD/cairn
OUT=runs/bench-continual
STAGE=${STAGE:-600}   # optimizer steps per stage
LR=3e-3
mkdir -p $OUT
[ -d out/fortunes ] || $CAIRN prepare --out out/fortunes
[ -d out/de ] || $CAIRN prepare --input /usr/share/games/fortunes/de --split-on % --out out/de
COMMON=(--config configs/tiny.toml --set model.dim=64 --set model.ffn_dim=176 --set model.n_layers=4
        --set model.seq_len=64 --set training.micro_batch=8 --set training.eval_every=50
        --set training.eval_windows=128 --set training.log_every=50 --set training.threads=${THREADS:-1}
        --set training.peak_flops=1e10 --set schedule.lr=$LR --set schedule.min_lr_ratio=0.1
        --set output.plot=false)
run() {  # name, then extra args
  local name=$1; shift
  $CAIRN train "${COMMON[@]}" --set output.run_dir=$OUT/$name "$@" > $OUT/$name.log 2>&1 || { cat $OUT/$name.log; exit 1; }
}
TOK=$((STAGE * 8 * 64))
run en --set data.train=out/fortunes --set data.validate='["out/de"]' --set training.steps=$STAGE --set schedule.warmup=0.05
GERMAN=(--set model.init_from=$OUT/en/model.h5 --set training.tokens_before=$TOK --set training.steps=$STAGE)
run a_no_rewarm "${GERMAN[@]}" --set data.train=out/de --set data.validate='["out/fortunes"]' \
    --set schedule.kind=constant --set schedule.lr=$(python3 -c "print($LR * 0.1)") --set schedule.warmup=0
run b_rewarm "${GERMAN[@]}" --set data.train=out/de --set data.validate='["out/fortunes"]' --set schedule.kind=rewarm
run c_rewarm_replay "${GERMAN[@]}" --set data.train= --set data.mixture='["out/de:0.75", "out/fortunes:0.25"]' --set schedule.kind=rewarm
# The union in proportion to the two corpora's sizes, for both stages' tokens.
run d_scratch_union --set data.train= --set data.mixture='["out/fortunes:2433352", "out/de:2797629"]' \
    --set training.steps=$((2 * STAGE)) --set schedule.warmup=0.05
$CAIRN plot $OUT/b_rewarm $OUT/c_rewarm_replay $OUT/a_no_rewarm --out $OUT/loss.png > /dev/null
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def last(run):
    recs = [r for r in map(json.loads, open(f"{out}/{run}/metrics.jsonl")) if "val_loss/de" in r]
    return recs[-1]
rows = [("English only (stage 1)", "en"), ("(a) German, no re-warm (constant 3e-4)", "a_no_rewarm"),
        ("(b) German, re-warm + re-decay", "b_rewarm"), ("(c) re-warm + 25% English replay", "c_rewarm_replay"),
        ("(d) scratch on the union, same total tokens", "d_scratch_union")]
print("| run | total tokens | val loss English | val loss German | mean |")
print("|---|---|---|---|---|")
for name, run in rows:
    r = last(run)
    en, de = r["val_loss/fortunes"], r["val_loss/de"]
    print(f"| {name} | {r['total_tokens']} | {en:.4f} | {de:.4f} | {(en + de) / 2:.4f} |")
PY
echo "curves: $OUT/loss.png"
