#!/usr/bin/env bash
# G_stack reproduction at toy scale: a 2-layer model trained briefly on fortunes, grown x4 in the
# same run (growth.at_tokens) to 8 layers and continued, against the 8-layer model from scratch with
# the same total tokens. Prints the tokens each needs to reach the scratch run's final validation
# loss (the grown run's count includes the small model's tokens).
# Usage: bash bench/gstack_repro.sh [build dir]   (about 3 minutes on one core)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CAIRN=$BUILD/cairn
OUT=runs/bench-gstack
STEPS=${STEPS:-800}          # total optimizer steps of both runs
SMALL_STEPS=${SMALL_STEPS:-200}
mkdir -p $OUT
[ -d out/fortunes ] || $CAIRN prepare --out out/fortunes
COMMON=(--config configs/tiny.toml --set data.train=out/fortunes --set model.dim=64 --set model.ffn_dim=176
        --set model.n_heads=4 --set model.seq_len=64 --set training.micro_batch=8 --set training.steps=$STEPS
        --set training.eval_every=25 --set training.eval_windows=128 --set training.log_every=50
        --set training.threads=${THREADS:-1} --set training.peak_flops=1e10 --set schedule.warmup=0.05
        --set output.plot=false)
TOKENS_PER_STEP=$((8 * 64))
$CAIRN train "${COMMON[@]}" --set model.n_layers=8 --set output.run_dir=$OUT/scratch > $OUT-scratch.log 2>&1 || { cat $OUT-scratch.log; exit 1; }
$CAIRN train "${COMMON[@]}" --set model.n_layers=2 --set growth.factor=4 \
    --set growth.at_tokens=$((SMALL_STEPS * TOKENS_PER_STEP)) --set output.run_dir=$OUT/grown > $OUT-grown.log 2>&1 || { cat $OUT-grown.log; exit 1; }
$CAIRN plot $OUT/scratch $OUT/grown --out $OUT/loss.png > /dev/null
python3 - "$OUT" "$((SMALL_STEPS * TOKENS_PER_STEP))" <<'PY'
import json, re, sys
out, small_tokens = sys.argv[1], int(sys.argv[2])
def mflop(log):  # training MFLOP per token from the startup line
    return float(re.search(r"([0-9.e+-]+) MFLOP per token", open(log).read()).group(1))
f_big, f_small = mflop(f"{out}-scratch.log"), mflop(f"{out}-grown.log")
def flops(run, tokens):
    if run == "scratch": return tokens * f_big * 1e6
    return (min(tokens, small_tokens) * f_small + max(0, tokens - small_tokens) * f_big) * 1e6
def evals(run):
    return [(r["total_tokens"], r["val_loss"]) for r in map(json.loads, open(f"{out}/{run}/metrics.jsonl")) if "val_loss" in r]
scratch, grown = evals("scratch"), evals("grown")
target = scratch[-1][1]
def reach(ev):
    return next((t for t, v in ev if v <= target), None)
print(f"target: scratch 8-layer final validation loss {target:.4f} after {scratch[-1][0]} tokens")
print("| run | final val loss | tokens to reach target | token saving | training FLOPs to target | FLOP saving |")
print("|---|---|---|---|---|---|")
base = reach(scratch)
for run, name, ev in (("scratch", "8 layers from scratch", scratch), ("grown", "2 layers, grown x4 at "
                      f"{small_tokens} tokens (G_stack)", grown)):
    t = reach(ev)
    if t is None:
        print(f"| {name} | {ev[-1][1]:.4f} | not reached | | | |")
        continue
    print(f"| {name} | {ev[-1][1]:.4f} | {t} | {100 * (1 - t / base):.1f}% | {flops(run, t):.3g} | "
          f"{100 * (1 - flops(run, t) / flops('scratch', base)):.1f}% |")
PY
echo "curves: $OUT/loss.png"
