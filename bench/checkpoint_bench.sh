#!/usr/bin/env bash
# Checkpoint write and read throughput for the llama-60m and llama-130m presets (random init,
# vocabulary 32000) at 1 and 2 ranks, next to the raw sequential write speed of the same disk
# (1 GiB of random bytes written with dd and fsync). Write = all shards + model.h5 + fsyncs +
# hashes + renames; read = verifying every file's hash on rank 0, then every rank reading.
# usage: bench/checkpoint_bench.sh [BUILD_DIR] [WORK_DIR]   (WORK_DIR must be on the disk to measure)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build}
work=${2:-$root/bench_out/checkpoint}
cairn=$build/cairn
mpirun=(${MPIEXEC:-mpiexec} --allow-run-as-root --oversubscribe)
mkdir -p "$work"
echo "disk: $(df -h "$work" | tail -1)"

head -c $((1 << 30)) /dev/urandom > "$work/random.bin"
start=$(date +%s.%N)
dd if="$work/random.bin" of="$work/dd.bin" bs=4M conv=fsync status=none
raw=$(echo "1024 / ($(date +%s.%N) - $start)" | bc -l)
rm -f "$work/random.bin" "$work/dd.bin"
printf "raw sequential write (dd, 1 GiB, fsync): %.0f MB/s\n\n" "$raw"

for i in $(seq 1 300); do echo "document $i: $((i * 7919 % 1009)) quick brown foxes"; echo %; done > "$work/text"
"$cairn" prepare --out "$work/data" --input "$work/text" --split-on % > /dev/null

printf "%-6s %5s %10s %9s %9s %9s %9s %8s\n" preset ranks "size MB" "write s" "write MB/s" "read s" "read MB/s" "vs raw"
for preset in 60m 130m; do
  for np in 1 2; do
    run=$work/$preset-np$np
    rm -rf "$run" "$run-resumed"
    launch=("$cairn")
    [ "$np" -gt 1 ] && launch=("${mpirun[@]}" -np "$np" "$cairn")
    args=(train --config "$root/configs/llama-$preset.toml" --set "data.train=$work/data" --set training.steps=1
          --set training.micro_batch=1 --set training.grad_accum=1 --set model.seq_len=16 --set training.eval_every=0
          --set training.log_every=1 --set training.peak_flops=1e9 --set output.plot=false)
    "${launch[@]}" "${args[@]}" --set checkpoint.every=1 --set "output.run_dir=$run" > "$run.log" 2>&1
    ckpt=$run/checkpoints/step_00000001
    wsec=$(sed -n 's/.*(written in \([0-9.e+-]*\) s).*/\1/p' "$run.log")
    mb=$(echo "$(du -sb "$ckpt" | cut -f1) / 1000000" | bc -l)
    "${launch[@]}" "${args[@]}" --set "output.run_dir=$run-resumed" --resume "$ckpt" > "$run-resumed.log" 2>&1
    rsec=$(sed -n 's/.*verified and read in \([0-9.e+-]*\) s).*/\1/p' "$run-resumed.log")
    printf "%-6s %5d %10.1f %9.2f %9.0f %9.2f %9.0f %7.0f%%\n" "$preset" "$np" "$mb" "$wsec" \
      "$(echo "$mb / $wsec" | bc -l)" "$rsec" "$(echo "$mb / $rsec" | bc -l)" "$(echo "100 * $mb / $wsec / $raw" | bc -l)"
    rm -rf "$run" "$run-resumed"
  done
done
