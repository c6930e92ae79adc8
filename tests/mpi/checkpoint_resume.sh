#!/usr/bin/env bash
# Multi-rank resume: a 2-rank run checkpointed at step 6 of 12 is resumed at 2 ranks (must equal
# the uninterrupted run bit for bit), at 1 rank and at 4 ranks (same global batch through the
# micro-batch; must match within tolerance: the reduction order changes), at 1 rank with the
# same micro-batch (the run continued on fewer nodes: grad_accum is raised to keep the global
# batch, and it matches within tolerance); at 3 ranks with the same micro-batch no whole grad_accum
# keeps the batch: the resume must be refused naming the setting; with another micro-batch given
# by the user it must warn that the global batch changed. The dataset is cut into ~10 shards, so
# training windows cross shard boundaries.
# usage: checkpoint_resume.sh CAIRN COMPARE CONFIG WORKDIR MPIEXEC [MPIEXEC ARGS...] (without -np)
set -euo pipefail
cairn=$1 compare=$2 config=$3 work=$4
shift 4
mpirun=("$@")
rm -rf "$work" && mkdir -p "$work"
for i in $(seq 1 600); do echo "document $i: $((i * 7919 % 1009)) quick brown foxes jump over $((i % 13)) lazy dogs"; echo %; done > "$work/text"
"$cairn" prepare --out "$work/data" --input "$work/text" --split-on % --shard-tokens 4000 > /dev/null
common=(--config "$config" --set "data.train=$work/data" --set training.steps=12 --set training.log_every=1
        --set training.eval_every=0 --set training.threads=1 --set training.peak_flops=1e9 --set output.plot=false
        --set model.seq_len=16)
train() {  # NP MICRO_BATCH RUN_DIR [more args]
  local np=$1 mb=$2 run=$3
  shift 3
  "${mpirun[@]}" -np "$np" "$cairn" train "${common[@]}" --set training.micro_batch="$mb" \
      --set output.run_dir="$work/$run" "$@" > "$work/$run.log" 2>&1 || { cat "$work/$run.log"; exit 1; }
}
train 2 2 full --set checkpoint.every=6
ckpt=$work/full/checkpoints/step_00000006
"$cairn" inspect "$ckpt" | sed -n '1,12p'
check() {  # RUN_DIR TOLERANCE
  echo "== $1"
  grep -q "resumed from $ckpt" "$work/$1.log" || { echo "did not resume"; cat "$work/$1.log"; exit 1; }
  "$compare" "$work/full/metrics.jsonl" "$work/$1/metrics.jsonl" 6 "$2" "$work/full/model.h5" "$work/$1/model.h5"
}
train 2 2 resume2 --resume "$ckpt"
check resume2 0
train 1 4 resume1 --resume "$ckpt"
check resume1 1e-5
train 4 1 resume4 --resume "$ckpt"
check resume4 1e-5
train 1 2 fewer --resume "$ckpt"
check fewer 1e-5
grep -q "continuing on 1 ranks instead of 2: training.grad_accum 1 -> 2 keeps the global batch of 4 sequences" "$work/fewer.log" ||
  { echo "no note about the raised grad_accum"; cat "$work/fewer.log"; exit 1; }
# 3 ranks x micro-batch 2 cannot make 4 sequences: refused before anything is trained.
if "${mpirun[@]}" -np 3 "$cairn" train "${common[@]}" --set training.micro_batch=2 --set output.run_dir="$work/resume3" \
     --resume "$ckpt" >"$work/resume3.log" 2>&1; then echo "resuming on 3 ranks was not refused"; cat "$work/resume3.log"; exit 1; fi
grep -q "on 3 ranks no whole training.grad_accum keeps it" "$work/resume3.log" ||
  { echo "the refusal does not name training.grad_accum"; cat "$work/resume3.log"; exit 1; }
[ ! -f "$work/resume3/metrics.jsonl" ] || [ ! -s "$work/resume3/metrics.jsonl" ] || { echo "the refused resume trained"; exit 1; }
# The user's own micro-batch on 3 ranks changes the global batch (4 -> 3): allowed, with a warning.
train 3 1 resume3b --resume "$ckpt" --set training.steps=7
grep -q "WARNING: the checkpoint's global batch is 4 sequences per step (2 ranks x micro_batch 2 x grad_accum 1); this run's is 3" "$work/resume3b.log" ||
  { echo "no warning about the changed global batch"; cat "$work/resume3b.log"; exit 1; }
if grep -q "global batch is" "$work"/resume[124].log "$work/fewer.log"; then echo "warning where the batch is kept"; exit 1; fi
echo "all resumes match"
