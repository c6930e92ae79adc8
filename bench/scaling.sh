#!/usr/bin/env bash
# Measured against predicted data-parallel scaling on the namespace cluster (tools/cluster/,
# docs/cluster.md): for each node count N, N independent one-rank runs at once give one rank's
# compute per step at this machine's core share (no communication); `cairn plan --nodes N
# --step-seconds S` predicts the step on N nodes with capped links; the run on N cluster nodes
# (1 rank each) measures it. On one machine the "nodes" share its cores, so each N gets its own
# compute measurement instead of the 1-rank one a real cluster would use.
# Node counts above this host's cores are skipped with the reason (the nodes would share cores).
# Usage (root, cluster up: tools/cluster/cluster.sh up K --rate MBIT):
#   bench/scaling.sh [build dir] [config] [steps] [node counts...]
#   e.g. bench/scaling.sh build configs/llama-60m.toml 4 1 2 4
# Environment: DATA (token dataset; default: prepared fortunes in a temporary directory),
# CLUSTER (cluster.sh path, default tools/cluster/cluster.sh), LINK_GBPS (default: the cap of n1),
# SET (--set overrides, space-separated; default training.grad_accum=1: the presets' 64 micro-steps
# would take hours here).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:-build}" && pwd)
config=${2:-configs/llama-60m.toml}
steps=${3:-4}
shift $(( $# < 3 ? $# : 3 ))
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2)
cluster=${CLUSTER:-tools/cluster/cluster.sh}
[ -x "$cluster" ] || { echo "scaling.sh: no cluster harness at $cluster (set CLUSTER)" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
data=${DATA:-$work/fortunes}
[ -e "$data" ] || "$build/cairn" prepare --out "$data" >/dev/null
if [ -z "${LINK_GBPS:-}" ]; then
  rate=$("$cluster" status | awk '$1 ~ /-n1$/ { for (i = 1; i <= NF; ++i) if ($i == "rate") print $(i + 1) }')
  case $rate in *Gbit) LINK_GBPS=${rate%Gbit} ;; *Mbit) LINK_GBPS=$(awk -v r="${rate%Mbit}" 'BEGIN { print r / 1000 }') ;;
    *) echo "scaling.sh: node 1's link has no cap: start the cluster with --rate, or set LINK_GBPS" >&2; exit 2 ;; esac
fi
args=(train --config "$config" --set data.train="$data" --set training.steps="$steps" --set training.log_every=1
      --set training.eval_every=0 --set training.check_every=0 --set output.plot=false --set output.progress=false)
SET=${SET:-training.grad_accum=1}
for s in $SET; do args+=(--set "$s"); done

# Median seconds per step over the records after the first (warm-up) step; with `compute`, less
# the step's wait for its all-reduces (comm_wait_s): the time a cluster rank computed.
step_seconds() {
  python3 - "$@" <<'PY'
import json, statistics, sys
recs = [json.loads(l) for l in open(sys.argv[1] + "/metrics.jsonl")][1:]
times = [r["elapsed_s"] for r in recs]
dt = [t1 - t0 - (r.get("comm_wait_s", 0) if len(sys.argv) > 2 else 0)
      for t0, t1, r in zip(times, times[1:], recs[1:])]
print(statistics.median(dt) if dt else times[0])
PY
}
# NODES COMPUTE_S: cairn plan's predicted step seconds and tokens/s.
predict() {
  "$build/cairn" plan --config "$config" $(for s in $SET; do printf -- '--set %s ' "$s"; done) \
    --nodes "$1" --link-gbps "$LINK_GBPS" --step-seconds "$2" | awk '/^  step / { print $2, $4 }'
}

printf "# %s, %s steps, links %s Gbit/s, load average %s at start\n" "$config" "$steps" "$LINK_GBPS" "$(cut -d' ' -f1 /proc/loadavg)"
# compute_s: one rank's step measured alone (N runs at once); rank_compute_s: the cluster ranks'
# step less their wait for the all-reduces, i.e. compute as the ranks ran it, beside the kernel's
# network work on the same cores; predicted from each, and measured against each.
printf "%5s %10s %11s %10s %10s %9s %8s %14s %13s %9s\n" nodes compute_s predicted_s measured_s "pred tok/s" \
  "meas/pred" overlap rank_compute_s "predicted_s'" "meas/pred'"
cores=$(nproc)
for n in "${counts[@]}"; do
  local_dir=$work/local$n cluster_dir=$work/cluster$n
  # The nodes share this machine's cores: as many compute threads in all as there are cores, in
  # both runs (a node would otherwise take every core for each of its ranks). With fewer cores than
  # ranks x threads, ranks would take turns on a core, and neither the compute measured alone nor
  # the cluster run would represent N nodes (4 one-thread ranks on 2 cores measured 0.63x the
  # prediction): skip, saying why.
  per_rank=$(( cores / n > 0 ? cores / n : 1 ))
  if (( n * per_rank > cores )); then
    printf "%5s skipped: %s ranks x %s thread need %s cores, this host has %s\n" "$n" "$n" "$per_rank" "$((n * per_rank))" "$cores"
    continue
  fi
  threads=(--set training.threads=$per_rank)
  # Compute alone at the same core share: N independent one-rank runs at once (no communication).
  pids=()
  for ((k = 0; k < n; ++k)); do
    "$build/cairn" "${args[@]}" "${threads[@]}" --set output.run_dir="$local_dir/$k" >/dev/null & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
  compute=$(for ((k = 0; k < n; ++k)); do step_seconds "$local_dir/$k"; done | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  read -r predicted pred_tps <<<"$(predict "$n" "$compute")"
  if [ "$n" = 1 ]; then
    measured=$compute overlap=- rank_compute=$compute
  else
    "$cluster" hostfile 1 "$n" >"$work/hosts$n"
    "$cluster" mpi mpirun --allow-run-as-root --hostfile "$work/hosts$n" -np "$n" "$build/cairn" "${args[@]}" \
      "${threads[@]}" --set output.run_dir="$cluster_dir" >/dev/null
    measured=$(step_seconds "$cluster_dir")
    overlap=$(python3 -c "import json; print('%.2f' % [json.loads(l) for l in open('$cluster_dir/metrics.jsonl')][-1]['comm_overlap'])")
    rank_compute=$(step_seconds "$cluster_dir" compute)
  fi
  read -r predicted2 _ <<<"$(predict "$n" "$rank_compute")"
  ratio() { awk -v m="$1" -v p="$2" 'BEGIN { printf "%.2f", m / p }'; }
  printf "%5s %10.3f %11.3f %10.3f %10s %9s %8s %14.3f %13.3f %9s\n" "$n" "$compute" "$predicted" "$measured" "$pred_tps" \
    "$(ratio "$measured" "$predicted")" "$overlap" "$rank_compute" "$predicted2" "$(ratio "$measured" "$predicted2")"
done
