#!/usr/bin/env bash
# Issue 3's benchmark: training tokens/s of the tiny and 60M presets on 1 rank (all cores) and on
# 2 ranks (cores split) with the real trainer on the fortunes corpus, plus the fraction of
# gradient all-reduce time hidden behind backward. The Communicator's bus bandwidth against plain
# MPI_Allreduce is bench/allreduce_bench (run under mpirun -np 2).
# Usage: bench/dp_bench.sh [build dir] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
steps=${2:-8}
data=out/fortunes
[ -f "$data" ] || "$build/cairn" prepare --out "$data" >/dev/null
mpirun=(mpirun --oversubscribe --bind-to none); [ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
tiny=(--config configs/tiny.toml)
m60=(--config configs/llama-60m.toml --set training.grad_accum=1 --set model.vocab_size=32000)
printf "%-6s %5s %12s %14s %12s\n" preset ranks "tokens/s" "comm_overlap" "MFU"
for preset in tiny m60; do
  declare -n args=$preset
  for n in 1 2; do
    dir=$(mktemp -d)
    common=(train "${args[@]}" --set data.train=$data --set training.steps=$steps --set training.log_every=$((steps / 2))
            --set training.eval_every=0 --set output.plot=false --set output.progress=false --set output.run_dir=$dir)
    if [ "$n" = 1 ]; then "$build/cairn" "${common[@]}" >/dev/null; else "${mpirun[@]}" -np 2 "$build/cairn" "${common[@]}" >/dev/null; fi
    # The second record: steady state (the first includes warm-up).
    python3 - "$dir/metrics.jsonl" "$preset" "$n" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1])][-1]
print(f"{sys.argv[2]:<6} {sys.argv[3]:>5} {r['tokens_per_s']:>12.0f} {r.get('comm_overlap', float('nan')):>14.2f} {100*r['mfu']:>11.1f}%")
PY
    rm -rf "$dir"
  done
done
