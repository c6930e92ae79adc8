#!/usr/bin/env bash
# cairn under a real Slurm: starts a throwaway single-node cluster (slurm/test-cluster), submits
# slurm/cairn.sbatch and checks what a user relies on.
#   requeue: a 2-rank run (mpirun launcher) gets the preemption signal mid-run, checkpoints, requeues
#            itself, resumes from its checkpoint and finishes; its loss at every step equals, bit for
#            bit, that of the same run under plain `mpirun -np 2` without Slurm.
#            Resubmitted, the finished run ends at once at the same training.steps and continues
#            from its last checkpoint with more.
#            Its job log carries no progress-bar escape codes.
#   sigterm: `scontrol requeue` (SIGTERM to the whole job, mpirun launcher) mid-run: the job log says
#            at which step and into which checkpoint cairn stopped (mpirun exits on SIGTERM and
#            takes the ranks' output with it: cairn.sbatch reports it from RUN_DIR/STOPPED), and the
#            requeued job resumes from that step.
#   error:   a missing config and an unwritable run directory (srun launcher) each end the job FAILED
#            with a clear message in its Slurm output and no requeue.
#   prepare: slurm/prepare.sbatch as a 3-task array job and its merge job give the dataset a
#            one-shot `cairn prepare` gives, and training runs on it.
# The jobs run as root without OMPI_ALLOW_RUN_AS_ROOT: launch.sh must pass mpirun its root flag.
# Every daemon the test starts is stopped by PID on exit, also on failure.
# usage: slurm_test.sh requeue|sigterm|error|prepare SOURCE_DIR BUILD_DIR   (as root; otherwise it exits 77: skipped)
set -euo pipefail
mode=$1 src=$(cd "$2" && pwd) build=$(cd "$3" && pwd)
cairn=$build/cairn
fail() { echo "slurm_test: FAIL: $*" >&2; exit 1; }
if [ "$(id -u)" != 0 ]; then echo "slurm_test: SKIP: needs root (it starts slurmctld and slurmd)"; exit 77; fi
[ -x "$cairn" ] || fail "no $cairn: build the cairn target"

work=$(mktemp -d /tmp/cairn-slurm-test.XXXXXX)
cluster=$work/cluster
cleanup() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    for f in "$work"/*.out; do [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }; done
    [ -f "$cluster/slurmctld.log" ] && { echo "--- slurmctld.log"; tail -n 30 "$cluster/slurmctld.log"; }
  fi
  [ -f "$cluster/pids" ] && "$src/slurm/test-cluster/stop.sh" "$cluster"
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$src/slurm/test-cluster/start.sh" "$cluster"
# shellcheck source=/dev/null
source "$cluster/env.sh"
unset OMPI_ALLOW_RUN_AS_ROOT OMPI_ALLOW_RUN_AS_ROOT_CONFIRM
export CAIRN_HOME=$src CAIRN_BIN=$cairn

job_field() { scontrol show job "$1" | grep -oE "(^|[[:space:]])$2=[^[:space:]]*" | head -n 1 | sed 's/.*=//'; }
# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  local limit=$1 what=$2 deadline=$((SECONDS + $1))
  shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out after ${limit}s waiting for $what"
    sleep 0.5
  done
}
# logged RUN_DIR N: the run has logged at least N steps.
logged() { [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ]; }
job_ended() {
  case $(job_field "$1" JobState) in COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY) ;; *) return 1 ;; esac
}

"$cairn" prepare --out "$work/data" --input /usr/share/games/fortunes/fortunes --split-on % >/dev/null
if [ "$mode" = requeue ]; then
  steps=4000
  sets=(data.train="$work/data" training.steps="$steps" training.log_every=1 training.eval_every=0
        checkpoint.every=50 output.plot=false training.peak_flops=1e9)
  t0=$SECONDS
  jid=$(CAIRN_LAUNCHER=mpirun sbatch --parsable --ntasks=2 --output="$work/job.out" --chdir="$work" \
        "$src/slurm/cairn.sbatch" "$src/configs/tiny-test.toml" "$work/run" "${sets[@]}")
  wait_for 120 "job $jid to log 40 steps" logged "$work/run" 40
  logged "$work/run" $steps && fail "the run finished before it could be preempted: raise steps"
  echo "slurm_test: $(wc -l <"$work/run/metrics.jsonl") steps logged after $((SECONDS - t0)) s; sending SIGUSR1 to the batch script"
  scancel --signal=USR1 --batch "$jid"
  restarted() { [ "$(job_field "$jid" Restarts)" -ge 1 ]; }
  wait_for 60 "job $jid to requeue" restarted
  wait_for 240 "job $jid to end" job_ended "$jid"
  echo "slurm_test: job ended after $((SECONDS - t0)) s"
  state=$(job_field "$jid" JobState) restarts=$(job_field "$jid" Restarts)
  [ "$state" = COMPLETED ] || fail "job $jid ended $state"
  [ "$restarts" = 1 ] || fail "job $jid restarted $restarts times, expected 1"
  grep -q "requeueing job $jid" "$work/job.out" || fail "no requeue line in the job's output"
  resumed=$(grep -oE 'resumed from .*: step [0-9]+' "$work/job.out" | grep -oE '[0-9]+$' | head -n 1) ||
    fail "cairn did not say it resumed from a checkpoint"
  ((resumed > 0 && resumed < steps)) || fail "resumed from step $resumed, expected one within (0, $steps)"
  echo "slurm_test: resumed from step $resumed; the job's own account:"
  grep -E '^(cairn.sbatch|launch.sh|mpirun)|resumed from|checkpoint|CANCELLED' "$work/job.out" | sed 's/^/  | /'
  [ -f "$work/run/COMPLETE" ] || fail "no $work/run/COMPLETE"
  ! grep -q $'\033' "$work/job.out" || fail "the job log holds terminal escape codes (the progress bar)"

  # The same run without Slurm, uninterrupted.
  ref_args=(--config "$src/configs/tiny-test.toml" --set output.run_dir="$work/ref")
  for kv in "${sets[@]}"; do ref_args+=(--set "$kv"); done
  timeout 300 mpirun --allow-run-as-root --oversubscribe -np 2 "$cairn" train "${ref_args[@]}" >"$work/ref.out" 2>&1 ||
    fail "the reference run failed"
  # step -> loss, the last record of each step (a resumed run may repeat the steps after its checkpoint).
  losses() { sed -nE 's/.*"loss":([^,}]*).*"step":([0-9]+).*/\2 \1/p' "$1" | awk '{l[$1] = $2} END {for (s in l) print s, l[s]}' | sort -n; }
  losses "$work/run/metrics.jsonl" >"$work/run.losses"
  losses "$work/ref/metrics.jsonl" >"$work/ref.losses"
  [ "$(wc -l <"$work/ref.losses")" = $steps ] || fail "the reference run logged $(wc -l <"$work/ref.losses") steps, not $steps"
  diff "$work/ref.losses" "$work/run.losses" >"$work/losses.diff" ||
    fail "per-step losses differ from the uninterrupted run (< reference, > preempted):$(echo; head -n 20 "$work/losses.diff")"
  echo "slurm_test: preempted at step ~$resumed, requeued once, resumed, finished; $steps per-step losses bit-identical"

  # Resubmitting the finished run: at the same training.steps the job ends at once, touching
  # nothing; with more steps it continues from the checkpoint of the last step.
  resubmit() {  # OUT KEY=VALUE...: submits the run again, waits for its end, which must be COMPLETED
    local out=$1 jid state
    shift
    jid=$(CAIRN_LAUNCHER=mpirun sbatch --parsable --ntasks=2 --output="$out" --chdir="$work" \
          "$src/slurm/cairn.sbatch" "$src/configs/tiny-test.toml" "$work/run" "${sets[@]}" "$@")
    wait_for 120 "job $jid (resubmitted) to end" job_ended "$jid"
    state=$(job_field "$jid" JobState)
    [ "$state" = COMPLETED ] || fail "resubmitted job $jid ended $state"
  }
  cp "$work/run/metrics.jsonl" "$work/metrics.before"
  resubmit "$work/same.out"
  grep -q "is already complete ($steps steps" "$work/same.out" || fail "the same-steps resubmission did not say it is complete"
  cmp -s "$work/metrics.before" "$work/run/metrics.jsonl" || fail "the same-steps resubmission changed metrics.jsonl"
  resubmit "$work/more.out" training.steps=$((steps + 20))
  grep -q "resumed from .*: step $steps," "$work/more.out" || fail "the resubmission with more steps did not resume from step $steps"
  grep -q "\"step\":$((steps + 20))," "$work/run/COMPLETE" || fail "COMPLETE is not at step $((steps + 20)): $(cat "$work/run/COMPLETE")"
  echo "slurm_test: PASS: also a resubmission with the same steps ends at once, one with 20 more continues to $((steps + 20))"
elif [ "$mode" = sigterm ]; then
  # More steps than the test waits for: it cancels the job once the requeued start has resumed.
  sets=(data.train="$work/data" training.steps=1000000 training.log_every=1 training.eval_every=0
        checkpoint.every=1000000 output.plot=false training.peak_flops=1e9)
  jid=$(CAIRN_LAUNCHER=mpirun sbatch --parsable --ntasks=2 --output="$work/job.out" --chdir="$work" \
        "$src/slurm/cairn.sbatch" "$src/configs/tiny-test.toml" "$work/run" "${sets[@]}")
  wait_for 120 "job $jid to log 20 steps" logged "$work/run" 20
  scontrol requeue "$jid"
  resumed() { grep -q "resumed from " "$work/job.out"; }
  wait_for 120 "job $jid to start again and resume" resumed
  scancel "$jid"
  wait_for 60 "job $jid to end" job_ended "$jid"
  line=$(grep -m1 -E '^cairn.sbatch: .*cairn: stopped by signal at step [0-9]+: checkpoint ' "$work/job.out") ||
    fail "no 'stopped by signal' line in the job log after scontrol requeue"
  stopped=$(echo "$line" | sed -E 's/.*at step ([0-9]+):.*/\1/')
  grep -q "resumed from .*/step_$(printf %08d "$stopped"): step $stopped," "$work/job.out" ||
    fail "the requeued job did not resume from step $stopped, where it said it stopped"
  echo "slurm_test: PASS: requeued (SIGTERM) at step $stopped, said so in the job log and resumed there"
elif [ "$mode" = error ]; then
  touch "$work/not-a-directory"
  # name|config|run dir|cairn's message, which the job output must contain (extended regex)
  for case in "missing config|$work/missing.toml|$work/run1|error: cannot read config file '.*/missing.toml'" \
              "unwritable run dir|$src/configs/tiny-test.toml|$work/not-a-directory/run|error: .*'[^']*/not-a-directory/run(/checkpoints)?'"; do
    IFS='|' read -r name config run_dir pattern <<<"$case"
    out=$work/error-${name// /-}.out
    jid=$(CAIRN_LAUNCHER=srun sbatch --parsable --ntasks=2 --output="$out" --chdir="$work" \
          "$src/slurm/cairn.sbatch" "$config" "$run_dir" data.train="$work/data" output.plot=false training.peak_flops=1e9)
    wait_for 90 "job $jid ($name) to end" job_ended "$jid"
    sleep 3  # a requeue would show by now: the job would be PENDING again with Restarts=1
    state=$(job_field "$jid" JobState) restarts=$(job_field "$jid" Restarts) code=$(job_field "$jid" ExitCode)
    [ "$state" = FAILED ] || fail "$name: job $jid is $state, expected FAILED"
    [ "$restarts" = 0 ] || fail "$name: job $jid was requeued ($restarts restarts)"
    [ "$code" != 0:0 ] || fail "$name: exit code $code"
    grep -q "ERROR: cairn failed with exit code" "$out" || fail "$name: no ERROR line from cairn.sbatch in $out"
    grep -q "Not requeueing" "$out" || fail "$name: the output does not say it will not requeue"
    grep -Eq -- "$pattern" "$out" || fail "$name: cairn's message naming '$pattern' is not in $out"
    echo "slurm_test: $name: job $jid FAILED (exit $code), not requeued: $(grep -Em1 -- "$pattern" "$out")"
  done

  # The requeue cap: with CAIRN_MAX_REQUEUES=0 a preempted job checkpoints, then fails instead of
  # requeueing. (This also takes the signal through srun to the ranks.)
  out=$work/error-requeue-cap.out
  jid=$(CAIRN_LAUNCHER=srun CAIRN_MAX_REQUEUES=0 sbatch --parsable --ntasks=2 --output="$out" --chdir="$work" \
        "$src/slurm/cairn.sbatch" "$src/configs/tiny-test.toml" "$work/run-cap" data.train="$work/data" \
        training.steps=4000 training.log_every=1 checkpoint.every=50 output.plot=false training.peak_flops=1e9)
  wait_for 90 "job $jid to log 20 steps" logged "$work/run-cap" 20
  scancel --signal=USR1 --batch "$jid"
  wait_for 90 "job $jid (requeue cap) to end" job_ended "$jid"
  sleep 3
  state=$(job_field "$jid" JobState) restarts=$(job_field "$jid" Restarts)
  [ "$state" = FAILED ] || fail "requeue cap: job $jid is $state, expected FAILED"
  [ "$restarts" = 0 ] || fail "requeue cap: job $jid was requeued ($restarts restarts)"
  grep -q "stopped by signal at step" "$out" || fail "requeue cap: cairn did not checkpoint on the signal"
  grep -q "CAIRN_MAX_REQUEUES=0" "$out" || fail "requeue cap: no message about the cap in $out"
  echo "slurm_test: requeue cap: job $jid checkpointed, then FAILED: $(grep -m1 'CAIRN_MAX_REQUEUES=0' "$out")"
  echo "slurm_test: PASS"
elif [ "$mode" = prepare ]; then
  # slurm/prepare.sbatch: a 3-task array prepares the parts, task 0's merge job joins them; the
  # merged dataset must hold what a one-shot `cairn prepare` of the same inputs holds.
  inputs=(--input /usr/share/games/fortunes/de --split-on % --shard-tokens 200000)
  "$cairn" prepare --out "$work/one" "${inputs[@]}" >/dev/null
  jid=$(sbatch --parsable --array=0-2 --output="$work/prepare-%a.out" --chdir="$work" \
        "$src/slurm/prepare.sbatch" "$work/parts" "${inputs[@]}")
  wait_for 180 "the merge job of array job $jid to write parts/manifest.json" test -f "$work/parts/manifest.json"
  for t in 0 1 2; do grep -q "part $t of 3 done" "$work/prepare-$t.out" || fail "task $t did not finish its part"; done
  totals() { python3 -c 'import json, sys
m = json.load(open(sys.argv[1]))
print(m["train_tokens"], m["val_tokens"], sum(s["documents"] for s in m["train"] + m["val"]))' "$1/manifest.json"; }
  [ "$(totals "$work/parts")" = "$(totals "$work/one")" ] ||
    fail "merged parts hold $(totals "$work/parts") (train tokens, val tokens, documents), one-shot $(totals "$work/one")"
  "$cairn" train --config "$src/configs/tiny-test.toml" --set data.train="$work/parts" --set training.steps=2 \
      --set output.run_dir="$work/run-parts" --set output.plot=false --set training.peak_flops=1e9 >"$work/train-parts.out" 2>&1 ||
    fail "training on the merged parts failed: $(tail -n 5 "$work/train-parts.out")"
  echo "slurm_test: PASS: 3 array tasks and the merge job give the one-shot dataset ($(totals "$work/one"))"
else
  fail "unknown mode '$mode': use requeue, sigterm, error or prepare"
fi
