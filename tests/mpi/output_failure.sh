#!/usr/bin/env bash
# A failed output write under mpirun: rank 0's metrics.jsonl is /dev/full (every write: "No space
# left on device"). Both ranks must stop at the step of the failure, after writing a checkpoint of
# it, and exit non-zero without hanging and without MPI_Abort (they agree on the failure); the
# error names the file and the reason.
# usage: output_failure.sh CAIRN CONFIG WORKDIR MPIEXEC [MPIEXEC ARGS...] (without -np)
set -uo pipefail
cairn=$1 config=$2 work=$3
shift 3
mpirun=("$@")
[ -e /dev/full ] || { echo "skipped: no /dev/full"; exit 77; }
rm -rf "$work" && mkdir -p "$work/run"
for i in $(seq 1 300); do echo "document $i: $((i * 7919 % 1009)) quick brown foxes"; echo %; done > "$work/text"
"$cairn" prepare --out "$work/data.h5" --input "$work/text" --split-on % > /dev/null || exit 1
ln -s /dev/full "$work/run/metrics.jsonl"
timeout -k 10 120 "${mpirun[@]}" -np 2 "$cairn" train --config "$config" --set "data.train=$work/data.h5" \
    --set "output.run_dir=$work/run" --set training.steps=12 --set training.log_every=3 --set training.threads=1 \
    --set training.peak_flops=1e9 --set model.seq_len=16 --set output.progress=false > "$work/log" 2>&1
rc=$?
cat "$work/log"
fail() { echo "output_failure: FAIL: $*"; exit 1; }
[ "$rc" -ne 0 ] || fail "the run succeeded"
[ "$rc" -ne 124 ] || fail "the run hung and was stopped"
grep -q "cannot write '$work/run/metrics.jsonl': No space left on device; training stopped at step 3" "$work/log" ||
  fail "no error naming the file, the reason and the step"
grep -q "MPI_ABORT" "$work/log" && fail "the ranks did not agree on the failure (MPI_Abort)"
"$cairn" inspect "$work/run/checkpoints/step_00000003" > /dev/null || fail "no complete checkpoint of step 3"
echo "output_failure: both ranks stopped at step 3 after a checkpoint, exit code $rc"
