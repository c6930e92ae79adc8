#!/usr/bin/env bash
# Issue 23's numbers in one run (docs/communication.md, docs/cluster.md), meant for a quiet machine
# (3-6 minutes there; up to 15 on a loaded one): brings up the namespace cluster with 4 nodes and
# capped links, then prints
#   1. the calibrated link: raw TCP one way and both ways at once, share of the cap
#      (tools/cluster/link_check.sh);
#   2. the all-reduce table: 1/4/16/64 MiB on 1 host x 2 ranks, 2 nodes x 1, 4 nodes x 1 and
#      2 nodes x 2, with vs_mpi and vs_link (bench/allreduce_bench);
#   3. comm_overlap and tokens/s of the 60M preset on 2 nodes (a few steps);
#   4. measured against predicted scaling (bench/scaling.sh; 4 nodes only with enough cores) at the
#      preset's micro-batch 8, where backward is long enough to hide the all-reduce;
# and takes the cluster down (also on failure or Ctrl-C). Root only (network namespaces).
# usage: bench/comm_report.sh [build dir]
# env:   RATE (link cap, Mbit/s; default 1000), SECONDS_PER_SIZE (bench time per size and algorithm;
#        default 2), OVERLAP_STEPS (default 4), SCALING_STEPS (default 4)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
rate=${RATE:-1000}
per_size=${SECONDS_PER_SIZE:-2}
cluster=tools/cluster/cluster.sh
fail() { echo "comm_report.sh: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (the cluster is made of network namespaces)"
for bin in bench/allreduce_bench cairn; do [ -x "$build/$bin" ] || fail "$build/$bin not found: build first"; done
build=$(cd "$build" && pwd)
work=$(mktemp -d)
trap '"$cluster" down >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

"$cluster" down >/dev/null
"$cluster" up 4 --rate "$rate" >/dev/null
link_gbps=$(awk -v r="$rate" 'BEGIN { print r / 1000 }')
echo "# comm_report: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), links capped at $rate Mbit/s, $(date -u '+%F %H:%M UTC')"

echo
echo "== 1. calibrated link (raw TCP, iperf3, 5 s each)"
tools/cluster/link_check.sh

echo
echo "== 2. all-reduce bandwidth (cairn's gradient path against a blocking MPI_Allreduce)"
bench() {  # LABEL HOSTFILE_ARGS... -- BENCH_ARGS...
  local label=$1
  shift
  local mpi=()
  while [ "$1" != -- ]; do mpi+=("$1"); shift; done
  shift
  echo "-- $label"
  "$cluster" mpi mpirun --allow-run-as-root "${mpi[@]}" "$build/bench/allreduce_bench" --min-bytes 1Mi \
    --max-bytes 64Mi --seconds "$per_size" --link-gbps "$link_gbps" "$@" | grep -v '^#'
}
"$cluster" hostfile 1 2 >"$work/hosts2x1"
"$cluster" hostfile 1 4 >"$work/hosts4x1"
"$cluster" hostfile 2 2 >"$work/hosts2x2"
bench "1 host, 2 ranks (shared memory)" --host "$("$cluster" name n1):2" -np 2 -- --algos flat,bf16
bench "2 nodes x 1 rank" --hostfile "$work/hosts2x1" -np 2 -- --algos flat,bf16
bench "4 nodes x 1 rank" --hostfile "$work/hosts4x1" -np 4 -- --algos flat,bf16
bench "2 nodes x 2 ranks" --hostfile "$work/hosts2x2" -np 4 -- --algos flat,hier,bf16,hier-bf16

echo
echo "== 3. overlap: configs/llama-60m.toml (micro-batch 8, grad_accum 1, no ZeRO-1), 2 nodes x 1 rank"
"$build/cairn" prepare --out "$work/fortunes" >/dev/null
preset=(--config configs/llama-60m.toml --set data.train="$work/fortunes" --set model.vocab_size=32000
        --set training.grad_accum=1 --set training.zero1=false --set training.steps="${OVERLAP_STEPS:-4}"
        --set training.log_every=1 --set training.eval_every=0 --set training.check_every=0
        --set output.plot=false --set output.progress=false)
"$cluster" mpi mpirun --allow-run-as-root --hostfile "$work/hosts2x1" -np 2 "$build/cairn" train "${preset[@]}" \
  --set output.run_dir="$work/overlap" >/dev/null
python3 - "$work/overlap/metrics.jsonl" <<'PY'
import json, sys
for r in map(json.loads, open(sys.argv[1])):
    print("step %d: comm_overlap %.3f, %.0f tokens/s" % (r["step"], r.get("comm_overlap", float("nan")), r["tokens_per_s"]))
PY

echo
echo "== 4. measured against predicted scaling (60M preset, micro-batch 8, grad_accum 1)"
DATA=$work/fortunes SET="training.grad_accum=1 training.zero1=false model.vocab_size=32000" \
  bench/scaling.sh "$build" configs/llama-60m.toml "${SCALING_STEPS:-4}" 1 2 4
