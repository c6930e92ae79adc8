#!/usr/bin/env bash
# cairn under Slurm on the one-machine cluster (tools/cluster/cluster.sh + slurm.sh: slurmctld on
# the head node, slurmd on each of 2 nodes), jobs through slurm/cairn.sbatch with the mpirun
# launcher over the cluster's subnet:
#   requeue  `sbatch -N2` (1 rank per node) gets the preemption signal (USR1) mid-run, checkpoints,
#            requeues itself, resumes and finishes; every step's loss equals, bit for bit, that of
#            the same 2 ranks under plain mpirun on one host.
#   loss     `sbatch -N2` with CAIRN_ON_NODE_LOSS=fail: node 2's link goes down mid-run; the job
#            ends FAILED, its log naming host and rank, within comm_timeout_s + probe window +
#            CAIRN_ABORT_GRACE (+10 s slack) of the loss; the latest checkpoint resumes.
#   loss-srun  the same with the srun launcher (srun --mpi=pmix) instead of mpirun.
#   fewer    `sbatch --nodes=1-2 --exclusive` (one rank per node; with --ntasks-per-node Slurm gives
#            the range's minimum): node 2's link goes down mid-run; the job requeues
#            once Slurm marks the node not responding, resumes on node 1 alone with grad_accum
#            raised to keep the global batch, and completes.
# usage: slurm_cluster_test.sh MODE SOURCE_DIR BUILD_DIR   (as root; otherwise exit 77: skipped)
set -euo pipefail
mode=$1 src=$(cd "$2" && pwd) build=$(cd "$3" && pwd)
cairn=$build/cairn
fail() { echo "slurm_cluster_test: FAIL: $*" >&2; exit 1; }
say() { echo "slurm_cluster_test: $*"; }
if [ "$(id -u)" != 0 ]; then echo "slurm_cluster_test: SKIP: needs root (namespaces, slurmctld, slurmd)"; exit 77; fi
for exe in nsenter unshare ip munged slurmctld slurmd; do
  command -v "$exe" >/dev/null || { echo "slurm_cluster_test: SKIP: no $exe"; exit 77; }
done
[ -x "$cairn" ] || fail "no $cairn: build the cairn target"
cl() { "$src/tools/cluster/cluster.sh" "$@"; }
sl() { "$src/tools/cluster/slurm.sh" run "$@"; }

work=$(mktemp -d /tmp/cairn-slurm-cluster-test.XXXXXX)
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; grep -av '^step ' "$f" | tail -n 40; }; done
    [ -f "/run/$(cl name head | sed 's/-head$//')-cluster/slurm/slurmctld.log" ] &&
      tail -n 30 "/run/$(cl name head | sed 's/-head$//')-cluster/slurm/slurmctld.log"
  fi
  "$src/tools/cluster/slurm.sh" down >/dev/null 2>&1 || true
  cl down >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cl down >/dev/null
# 20 Mbit/s links pace the tiny model's steps by its all-reduce (about 0.1 s each) rather than by
# this machine's cores: uncapped, 2 ranks ran 60 steps in 0.3 s and finished before the preemption
# or the node loss could reach them.
cl up 2 --rate 20
"$src/tools/cluster/slurm.sh" up
for i in $(seq 1 300); do echo "document $i: $((i * 7919 % 1009)) quick brown foxes jump over $((i % 13)) lazy dogs"; echo %; done >"$work/text"
"$cairn" prepare --out "$work/data" --input "$work/text" --split-on % >/dev/null
timeout_s=8 grace=8 probe=2
bound=$((timeout_s + probe + grace))
export CAIRN_HOME=$src CAIRN_BIN=$cairn CAIRN_LAUNCHER=mpirun CAIRN_NET_IF=$(cl subnet) CAIRN_ABORT_GRACE=$grace
unset OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
sets=(data.train="$work/data" training.log_every=1 training.eval_every=0 training.threads=1 output.plot=false
      training.peak_flops=1e9 model.seq_len=16 training.comm_timeout_s=$timeout_s)

job_field() { sl scontrol show job "$1" | grep -oE "(^|[[:space:]])$2=[^[:space:]]*" | head -n 1 | sed 's/.*=//'; }
wait_for() {  # SECONDS WHAT COMMAND...
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}
logged() { [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ]; }
job_ended() { case $(job_field "$1" JobState) in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL) ;; *) return 1 ;; esac; }
submit() {  # OUT SBATCH_OPTIONS... -- KEY=VALUE...
  local out=$1 opts=()
  shift
  while [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  sl sbatch --parsable "${opts[@]}" --output="$out" --chdir="$work" "$src/slurm/cairn.sbatch" \
     "$src/configs/tiny-test.toml" "$work/run" "${sets[@]}" "$@"
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.1f", b - a}'; }
losses() { sed -nE 's/.*"loss":([^,}]*).*"step":([0-9]+).*/\2 \1/p' "$1" | awk '{l[$1] = $2} END {for (s in l) print s, l[s]}' | sort -n; }

case $mode in
  requeue)
    steps=150
    jid=$(submit "$work/job.out" -N2 --ntasks-per-node=1 -- training.steps=$steps checkpoint.every=25)
    wait_for 180 "job $jid to log 30 steps" logged "$work/run" 30
    logged "$work/run" $steps && fail "the run finished before it could be preempted: raise steps"
    say "$(wc -l <"$work/run/metrics.jsonl") steps logged; sending SIGUSR1 to the batch script"
    sl scancel --signal=USR1 --batch "$jid"
    restarted() { [ "$(job_field "$jid" Restarts)" -ge 1 ]; }
    wait_for 90 "job $jid to requeue" restarted
    wait_for 240 "job $jid to end" job_ended "$jid"
    [ "$(job_field "$jid" JobState)" = COMPLETED ] || fail "job $jid ended $(job_field "$jid" JobState)"
    grep -q "resumed from .*: step [0-9]" "$work/job.out" || fail "the requeued job did not resume from a checkpoint"
    grep -c "^hosts: 2: .*-n1 (1 rank: 0), .*-n2 (1 rank: 1)" "$work/job.out" | grep -q 2 ||
      fail "not both starts ran on the two nodes"
    ref=(--config "$src/configs/tiny-test.toml" --set output.run_dir="$work/ref")
    for kv in "${sets[@]}" training.steps=$steps; do ref+=(--set "$kv"); done
    mpirun --allow-run-as-root --oversubscribe -np 2 "$cairn" train "${ref[@]}" >"$work/ref.out" 2>&1 || fail "the reference run failed"
    losses "$work/run/metrics.jsonl" >"$work/run.losses"
    losses "$work/ref/metrics.jsonl" >"$work/ref.losses"
    [ "$(wc -l <"$work/ref.losses")" = $steps ] || fail "the reference logged $(wc -l <"$work/ref.losses") steps"
    diff "$work/ref.losses" "$work/run.losses" >/dev/null || fail "per-step losses differ from the uninterrupted run"
    say "PASS: sbatch -N2 preempted, requeued, resumed at step $(grep -oE 'resumed from .*: step [0-9]+' "$work/job.out" | grep -oE '[0-9]+$' | head -n 1); $steps losses bit-identical to one host"
    ;;
  loss | loss-srun | fewer)
    [ "$mode" = loss-srun ] && export CAIRN_LAUNCHER=srun && mode=loss
    if [ "$mode" = loss ]; then
      jid=$(CAIRN_ON_NODE_LOSS=fail submit "$work/job.out" -N2 --ntasks-per-node=1 -- training.steps=100000 checkpoint.every=3)
    else
      jid=$(submit "$work/job.out" --nodes=1-2 --exclusive -- training.steps=60 checkpoint.every=3)
    fi
    wait_for 180 "job $jid to log 8 steps" logged "$work/run" 8
    grep -q "^hosts: 2: " "$work/job.out" || fail "job $jid did not start on 2 nodes: $(grep -E "^(hosts|launch.sh)" "$work/job.out")"
    cl link n2 down
    t0=$(now)
    lost_line() { grep -qE "cairn.sbatch: .*(ERROR: lost|lost rank)" "$work/job.out"; }
    wait_for 120 "the job log to report the lost node" lost_line
    ended=$(since "$t0")
    say "$(grep -m1 -E 'cairn.sbatch: .*lost rank' "$work/job.out")"
    say "the job reported the loss $ended s after it (bound $bound s + 10 s slack)"
    awk -v e="$ended" -v b=$((bound + 10)) 'BEGIN {exit !(e <= b)}' || fail "took $ended s, over the bound"
    grep -qE "lost rank 1 on host $(cl name n2)" "$work/job.out" || fail "the job log does not name rank 1 on $(cl name n2)"
    if [ "$mode" = loss ]; then
      wait_for 120 "job $jid to end" job_ended "$jid"
      state=$(job_field "$jid" JobState) restarts=$(job_field "$jid" Restarts)
      say "job $jid: $state after $(since "$t0") s (Slurm waits for the lost node before it calls the job ended), restarts $restarts"
      [ "$state" = FAILED ] || fail "job $jid ended $state, expected FAILED"
      [ "$restarts" = 0 ] || fail "job $jid was requeued"
      cl link n2 up
      latest=$(tr -d "[:space:]" <"$work/run/checkpoints/latest")
      step=$((10#${latest#step_}))
      mpirun --allow-run-as-root --oversubscribe -np 2 "$cairn" train --config "$src/configs/tiny-test.toml" \
        $(printf -- '--set %s ' "${sets[@]}") --set output.run_dir="$work/run" --set training.steps=$((step + 1)) \
        --resume auto >"$work/verify.out" 2>&1 || fail "the latest checkpoint ($latest) does not resume"
      say "PASS: node loss under Slurm: the job FAILED $ended s after the loss naming host and rank; $latest resumes"
    else
      restarted() { [ "$(job_field "$jid" Restarts)" -ge 1 ]; }
      wait_for 180 "job $jid to requeue" restarted
      say "requeued after $(since "$t0") s"
      wait_for 300 "job $jid to end" job_ended "$jid"
      state=$(job_field "$jid" JobState)
      [ "$state" = COMPLETED ] || fail "job $jid ended $state"
      grep -q "^hosts: 2: " "$work/job.out" || fail "no 2-node start"
      grep -qE "continuing on 1 ranks instead of 2: training.grad_accum 1 -> 2 keeps the global batch of 8 sequences" "$work/job.out" ||
        fail "the requeued job did not continue on 1 node with grad_accum 2"
      grep -q '"step":60,' "$work/run/COMPLETE" || fail "the run did not complete 60 steps"
      say "PASS: --nodes=1-2: node 2 lost, requeued after $(grep -oE 'Slurm has [^;]*' "$work/job.out" | head -n 1), finished on node 1 with grad_accum 2 after $(since "$t0") s"
    fi
    ;;
  *) fail "unknown mode '$mode': requeue, loss, loss-srun or fewer" ;;
esac
