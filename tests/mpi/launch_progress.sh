#!/usr/bin/env bash
# launch/cairn-mpirun.sh with its output in a file: mpirun gives each rank a pty, so without
# CAIRN_PROGRESS=0 (which the script sets when its own output is not a terminal) the log would fill
# with the progress bar's escape codes. Checks a 2-rank run's log has none and still its step lines.
# usage: launch_progress.sh SOURCE_DIR CAIRN WORKDIR
set -euo pipefail
src=$1 cairn=$2 work=$3
rm -rf "$work" && mkdir -p "$work"
for i in $(seq 1 200); do echo "document $i: $((i * 7919 % 1009)) quick brown foxes"; echo %; done >"$work/text"
"$cairn" prepare --out "$work/data" --input "$work/text" --split-on % >/dev/null
CAIRN_BIN=$cairn "$src/launch/cairn-mpirun.sh" -n 2 -- train --config "$src/configs/tiny-test.toml" \
  --set "data.train=$work/data" --set training.steps=6 --set training.log_every=1 --set training.threads=1 \
  --set training.peak_flops=1e9 --set output.plot=false --set model.seq_len=16 --set "output.run_dir=$work/run" \
  >"$work/log" 2>&1 || { cat "$work/log"; exit 1; }
grep -q "step 6/6 |" "$work/log" || { cat "$work/log"; echo "launch_progress: FAIL: no step lines"; exit 1; }
if grep -q $'\033' "$work/log"; then
  echo "launch_progress: FAIL: the log holds terminal escape codes:"; grep -c $'\033' "$work/log"; exit 1
fi
echo "launch_progress: PASS: no escape codes in a log written through cairn-mpirun.sh"
