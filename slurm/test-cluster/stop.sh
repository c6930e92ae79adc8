#!/usr/bin/env bash
# Stops a cluster started by start.sh DIR: cancels its jobs and waits for them to end (so no job
# process or slurmstepd outlives it), stops exactly the daemons listed in DIR/pids, by PID, removes
# the /etc/hosts line start.sh added, if any, and deletes DIR.
# usage: stop.sh DIR
set -uo pipefail
dir=${1:?usage: stop.sh DIR}
[ -f "$dir/pids" ] || { echo "stop.sh: '$dir' holds no cluster started by start.sh" >&2; exit 1; }
export SLURM_CONF=$dir/slurm.conf

alive() { kill -0 "$1" 2>/dev/null; }
ctld=$(awk '$1 == "slurmctld" {print $2}' "$dir/pids")
if [ -n "$ctld" ] && alive "$ctld"; then
  ids=$(squeue -h -o '%i' 2>/dev/null)
  # shellcheck disable=SC2086 # one argument per job ID
  [ -z "$ids" ] || scancel --quiet --full $ids 2>/dev/null
  deadline=$((SECONDS + 30))
  ended=' (COMPLETED|CANCELLED|FAILED|TIMEOUT|NODE_FAIL|PREEMPTED|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE)$'
  # (no grep -q: with pipefail, squeue killed by SIGPIPE would end the wait early)
  # shellcheck disable=SC2143
  unfinished() { [ -n "$(squeue -h -t all -o '%i %T' 2>/dev/null | grep -Ev "$ended")" ]; }
  while unfinished && [ $SECONDS -lt $deadline ]; do
    sleep 0.5
  done
fi

# Reverse order of start: slurmd, slurmctld, munged. TERM, then KILL whatever has not exited.
pids=$(tac "$dir/pids" | awk '{print $2}')
for pid in $pids; do alive "$pid" && kill -TERM "$pid"; done
deadline=$((SECONDS + 15))
for pid in $pids; do
  while alive "$pid" && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
  if alive "$pid"; then echo "stop.sh: pid $pid ignored SIGTERM, killing it" >&2; kill -KILL "$pid"; fi
done

if [ -f "$dir/hosts_line" ]; then
  line=$(cat "$dir/hosts_line")
  grep -vxF "$line" /etc/hosts >"$dir/hosts.new" && cat "$dir/hosts.new" >/etc/hosts
fi
rm -rf "$dir"
echo "stop.sh: cluster in $dir stopped"
