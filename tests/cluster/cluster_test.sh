#!/usr/bin/env bash
# cairn across nodes on the one-machine cluster (tools/cluster/cluster.sh), through
# launch/cairn-mpirun.sh as a user runs it (hostfile, --per-node, --net-if):
#   mpirun K P   K nodes x P ranks per node: losses, gradient norms and final weights bit-identical
#                to K*P ranks on this one host, and every node's interface sent at least half a
#                gradient per step (the gradient crossed the links, not shared memory). The start-up
#                report names the hosts, ranks per host, interface and transport.
#   loss-link    2 nodes x 2 ranks, node 2's link goes down mid-run: the job ends non-zero (75)
#                within comm_timeout_s + probe window + CAIRN_ABORT_GRACE (+10 s of slack for the
#                step in flight on this loaded machine), naming host cairn-n2 and its ranks; the
#                latest checkpoint resumes. Continuing on node 1 alone (--resume auto, 2 ranks)
#                raises grad_accum to keep the global batch and finishes the run.
#   loss-kill    2 nodes x 1 rank, node 2's ranks and daemon are SIGKILLed: the job ends within the
#                same bound naming the host and rank; the latest checkpoint resumes.
#   local-dir    2 nodes x 1 rank with the run directory node-local on node 2: the first checkpoint
#                fails with a message that the checkpoint directory is not shared, and none is left.
# The cluster is the one named by CAIRN_CLUSTER_PREFIX / CAIRN_CLUSTER_SUBNET (defaults cairn,
# 10.77.0.0/24): the test brings it up and takes it down again, also on failure.
# usage: cluster_test.sh MODE [K P] SOURCE_DIR BUILD_DIR COMPARE   (as root; otherwise exit 77: skipped)
#        COMPARE: tests/mpi's checkpoint_compare
set -euo pipefail
mode=$1
shift
nodes=2 per=1
if [ "$mode" = mpirun ]; then nodes=$1 per=$2; shift 2; fi
src=$(cd "$1" && pwd) build=$(cd "$2" && pwd) compare=$3
cairn=$build/cairn
fail() { echo "cluster_test: FAIL: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "cluster_test: SKIP: needs root (it creates network namespaces)"; exit 77; fi
for exe in nsenter unshare ip tc; do command -v "$exe" >/dev/null || { echo "cluster_test: SKIP: no $exe"; exit 77; }; done
[ -x "$cairn" ] || fail "no $cairn: build the cairn target"
cl() { "$src/tools/cluster/cluster.sh" "$@"; }

work=$(mktemp -d /tmp/cairn-cluster-test.XXXXXX)
cleanup() {
  local rc=$?
  cl down >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; grep -av '^step ' "$f" | tail -n 40; }; done
  fi
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cl down >/dev/null
cl up "$nodes"
for i in $(seq 1 300); do echo "document $i: $((i * 7919 % 1009)) quick brown foxes jump over $((i % 13)) lazy dogs"; echo %; done >"$work/text"
"$cairn" prepare --out "$work/data" --input "$work/text" --split-on % >/dev/null
common=(--config "$src/configs/tiny-test.toml" --set "data.train=$work/data" --set training.log_every=1
        --set training.eval_every=0 --set training.threads=1 --set training.peak_flops=1e9 --set output.plot=false
        --set model.seq_len=16)
subnet=$(cl subnet) iface=$(cl iface)
export CAIRN_BIN=$cairn

# on_cluster RANKS PER_NODE NODES LOG ARGS...: launch/cairn-mpirun.sh from the head node.
on_cluster() {
  local np=$1 pn=$2 k=$3 log=$4
  shift 4
  cl hostfile "$pn" "$k" >"$work/hosts"
  cl mpi "$src/launch/cairn-mpirun.sh" -n "$np" --hostfile "$work/hosts" --per-node "$pn" --net-if "$subnet" \
    -- train "${common[@]}" "$@" >"$log" 2>&1
}
# Bytes node K has sent over its interface (/proc/net/dev is per network namespace; /sys is not
# remounted on the nodes). Its 10th field is the transmitted bytes.
tx_bytes() { cl exec "n$1" cat /proc/net/dev | awk -v i="$iface:" '{sub(/^ +/, "")} $1 == i {print $10}'; }
now() { date +%s.%N; }
# The bound a lost node must be reported in: comm_timeout_s + the probe window + the grace.
timeout_s=8 grace=8
probe=$(awk -v t=$timeout_s 'BEGIN {w = t / 4; print (w < 2 ? 2 : (w > 30 ? 30 : w))}')
bound=$((timeout_s + ${probe%.*} + grace))
export CAIRN_ABORT_GRACE=$grace

# run_and_lose WHAT PER_NODE ACTION...: a 2-node run that checkpoints every 3 steps; once it has
# logged step 7, ACTION loses node 2. Sets elapsed (seconds from the loss to the job's end) and rc.
run_and_lose() {
  local what=$1 pn=$2
  shift 2
  rm -f "$work/$what.log"
  on_cluster $((2 * pn)) "$pn" 2 "$work/$what.log" --set training.steps=100000 --set checkpoint.every=3 \
    --set training.comm_timeout_s=$timeout_s --set "output.run_dir=$work/$what" &
  local pid=$! deadline=$((SECONDS + 180))
  until grep -q "^step 7/" "$work/$what.log" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || fail "$what: the run ended before the node could be lost"
    ((SECONDS < deadline)) || fail "$what: the run did not reach step 7 in 180 s"
    sleep 0.2
  done
  local t0
  t0=$(now)
  "$@"
  rc=0
  wait "$pid" || rc=$?
  elapsed=$(awk -v a="$t0" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}')
  echo "cluster_test: $what: the job ended with exit code $rc $elapsed s after the loss (bound ${bound} s + 10 s slack)"
  grep -a "cairn-supervise: lost:" "$work/$what.log" | sed 's/^/  | /' || true
}
# resumes RUN_DIR: the latest checkpoint loads (every file's size and hash verified) on this host.
check_latest_resumes() {
  local dir=$1 np=$2 step
  step=$(tr -d "[:space:]" <"$dir/checkpoints/latest")
  step=$((10#${step#step_}))
  ((step >= 3)) || fail "no checkpoint of step >= 3 in $dir/checkpoints"
  mpirun --allow-run-as-root --oversubscribe -np "$np" "$cairn" train "${common[@]}" --set "output.run_dir=$dir" \
    --set training.steps=$((step + 1)) --resume auto >"$work/verify.log" 2>&1 || fail "the latest checkpoint (step $step) does not resume"
  grep -q "resumed from .*step_$(printf %08d "$step"): step $step," "$work/verify.log" || fail "did not resume from step $step"
  echo "cluster_test: the latest checkpoint, step $step, resumes"
}

case $mode in
  mpirun)
    np=$((nodes * per)) steps=6
    declare -a tx0
    for ((k = 1; k <= nodes; k++)); do tx0[k]=$(tx_bytes "$k"); done
    on_cluster "$np" "$per" "$nodes" "$work/cluster.log" --set training.steps=$steps --set "output.run_dir=$work/cluster" ||
      fail "the run on $nodes nodes x $per ranks failed"
    mpirun --allow-run-as-root --oversubscribe -np "$np" "$cairn" train "${common[@]}" --set training.steps=$steps \
      --set "output.run_dir=$work/host" >"$work/host.log" 2>&1 || fail "the reference run on one host failed"
    "$compare" "$work/host/metrics.jsonl" "$work/cluster/metrics.jsonl" 0 0 "$work/host/model.h5" "$work/cluster/model.h5" ||
      fail "$nodes nodes x $per ranks differ from $np ranks on one host"
    gnorms() { grep -oE '"grad_norm":[^,}]*' "$1"; }
    [ "$(gnorms "$work/host/metrics.jsonl")" = "$(gnorms "$work/cluster/metrics.jsonl")" ] || fail "gradient norms differ"
    params=$(grep -oE ': [0-9]+ parameters' "$work/cluster.log" | grep -oE '[0-9]+' | head -n 1)
    [ -n "$params" ] || fail "no parameter count in the start-up report"
    min=$((params * 4 * steps / 2))
    for ((k = 1; k <= nodes; k++)); do
      sent=$(($(tx_bytes "$k") - tx0[k]))
      echo "cluster_test: node $k sent $sent bytes over $iface in $steps steps (gradient: $((params * 4)) bytes)"
      ((sent >= min)) || fail "node $k sent only $sent bytes, less than half a gradient per step ($min): the gradients did not cross its link"
    done
    grep -q "hosts: " "$work/cluster.log" || fail "the start-up report does not name the hosts"
    grep -E "^(hosts|network):" "$work/cluster.log" | sed 's/^/  | /'
    for ((k = 1; k <= nodes; k++)); do
      grep -E "^hosts: .*cairn-n$k \($per rank" "$work/cluster.log" >/dev/null || grep -qE "^hosts: .*-n$k \($per rank" "$work/cluster.log" ||
        fail "the start-up report does not give node $k with $per ranks"
    done
    grep -qE "^network: .*tcp.*$iface" "$work/cluster.log" || fail "the start-up report does not name TCP over $iface"
    echo "cluster_test: PASS: $nodes nodes x $per ranks = $np ranks on one host, bit for bit; the gradients crossed the links"
    ;;
  loss-link)
    run_and_lose loss-link 2 cl link n2 down
    [ "$rc" = 75 ] || fail "exit code $rc, expected 75 (a lost node)"
    awk -v e="$elapsed" -v b=$((bound + 10)) 'BEGIN {exit !(e <= b)}' || fail "took $elapsed s, over the bound"
    grep -aq "no answer within .* from rank [23] on host $(cl name n2)" "$work/loss-link.log" || fail "no rank named the lost host and rank"
    grep -aqE "cairn-supervise: lost: rank [23] on host $(cl name n2)" "$work/loss-link.log" || fail "the launcher's report does not name the lost host"
    cl link n2 up
    cl kill n2 >/dev/null  # the unreachable node's daemon, still waiting (a real node would be rebooted)
    check_latest_resumes "$work/loss-link" 4
    # Continue on node 1 alone: 2 ranks, grad_accum raised from 1 to 2 keeps the 4-rank global batch;
    # 4 steps past the latest checkpoint, wherever the lost run got to.
    rm -f "$work/loss-link/COMPLETE"
    latest=$(tr -d "[:space:]" <"$work/loss-link/checkpoints/latest")
    end=$((10#${latest#step_} + 4))
    on_cluster 2 2 1 "$work/fewer.log" --set "output.run_dir=$work/loss-link" --set training.steps=$end --resume auto ||
      fail "continuing on node 1 alone failed"
    grep -q "continuing on 2 ranks instead of 4: training.grad_accum 1 -> 2 keeps the global batch of 16 sequences" "$work/fewer.log" ||
      fail "continuing on fewer nodes did not raise grad_accum to keep the global batch"
    grep -q "\"step\":$end" "$work/loss-link/COMPLETE" || fail "the continued run did not finish at step $end"
    echo "cluster_test: PASS: link down: ended in $elapsed s (bound $bound + 10) naming the host and rank; continued on 1 node with grad_accum 2"
    ;;
  loss-kill)
    run_and_lose loss-kill 1 cl kill n2
    [ "$rc" = 75 ] || fail "exit code $rc, expected 75 (a lost node)"
    awk -v e="$elapsed" -v b=$((bound + 10)) 'BEGIN {exit !(e <= b)}' || fail "took $elapsed s, over the bound"
    grep -aqE "cairn-supervise: lost: .*rank 1 on host $(cl name n2)" "$work/loss-kill.log" || fail "the report does not name rank 1 on the lost host"
    check_latest_resumes "$work/loss-kill" 2
    echo "cluster_test: PASS: node killed: ended in $elapsed s naming the host and rank; the latest checkpoint resumes"
    ;;
  local-dir)
    mkdir -p "$work/local"
    cl local n2 "$work/local"
    if on_cluster 2 1 2 "$work/local.log" --set training.steps=8 --set checkpoint.every=4 --set "output.run_dir=$work/local/run"; then
      fail "a run whose checkpoint directory is node-local on node 2 succeeded"
    fi
    grep -aq "rank 1 on host $(cl name n2) does not see the checkpoint directory .*: checkpoint.dir .* must be on a file system that every node shares" "$work/local.log" ||
      fail "no message that the checkpoint directory is not shared"
    grep -q '"step":4,' "$work/local/run/metrics.jsonl" || fail "the run did not reach its first checkpoint"
    if grep -q '"step":5,' "$work/local/run/metrics.jsonl"; then fail "the run went on past the failed checkpoint"; fi
    left=$(find "$work/local/run/checkpoints" -maxdepth 1 -name 'step_*' | wc -l)
    [ "$left" = 0 ] || fail "$left checkpoint director(y/ies) left behind: $(ls "$work/local/run/checkpoints")"
    echo "cluster_test: PASS: $(grep -aom1 'rank 1 on host [^ ]* does not see the checkpoint directory' "$work/local.log")...; no checkpoint written"
    ;;
  *) fail "unknown mode '$mode': mpirun K P, loss-link, loss-kill or local-dir" ;;
esac
