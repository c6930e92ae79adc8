#!/usr/bin/env bash
# A Slurm cluster on the one-machine cluster of cluster.sh: slurmctld on the head node, one
# `slurmd -N NODE` on each node (NodeAddr its address), munged in the root namespace with a key and
# socket of its own. Everything lives in /run/PREFIX-cluster/slurm; `cluster.sh down` also ends it.
# usage: slurm.sh up          start it (the cluster must be up); returns once every node is idle
#        slurm.sh down        cancel its jobs and stop its daemons (by PID)
#        slurm.sh run CMD...  run a Slurm client (sbatch, squeue, scontrol, sinfo, ...) on the head
#                             node, pointed at this cluster
# env:   CAIRN_CLUSTER_SUBNET, CAIRN_CLUSTER_PREFIX (see cluster.sh); CAIRN_SLURMD_TIMEOUT seconds
#        before slurmctld marks a silent node DOWN (default 60: longer than a lost node takes to
#        end the job through cairn, so that cairn.sbatch decides, not Slurm)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cl() { "$here/cluster.sh" "$@"; }
fail() { echo "slurm.sh: error: $*" >&2; exit 1; }
prefix=${CAIRN_CLUSTER_PREFIX:-cairn}
state=/run/$prefix-cluster
dir=$state/slurm
export SLURM_CONF=$dir/slurm.conf

cmd_up() {
  [ "$(id -u)" = 0 ] || fail "must run as root"
  [ -f "$state/nodes" ] || fail "the cluster '$prefix' is not up: tools/cluster/cluster.sh up K first"
  for exe in munged slurmctld slurmd sinfo; do
    command -v "$exe" >/dev/null || fail "'$exe' not found: install slurm-wlm and munge (tools/setup.sh does)"
  done
  if [ -f "$dir/pids" ]; then echo "slurm.sh: already up in $dir"; return; fi
  local k nodes net head_addr
  nodes=$(cat "$state/nodes")
  head_addr=$(cl addr head)
  net=${head_addr%.1}
  mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
  chmod 700 "$dir"
  : >"$dir/pids"
  started=""
  trap '[ -n "$started" ] || { echo "slurm.sh: up failed; stopping what it started" >&2; cmd_down >&2; }' EXIT

  local munged_pid
  munged_pid=$("$here/../../slurm/test-cluster/start_munged.sh" "$dir")
  echo "munged $munged_pid" >>"$dir/pids"

  {
    cat <<EOF
# Written by tools/cluster/slurm.sh for the cluster '$prefix'. No accounting, no cgroups; jobs run
# as root. Each daemon listens in its own node's network namespace, so the default ports are free.
ClusterName=$prefix
SlurmctldHost=$prefix-head($head_addr)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket,cred_expire=5
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
# Per node: PMIx (srun --mpi=pmix) makes its directories under TmpFS, which all nodes share here.
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.%n.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
JobRequeue=1
ReturnToService=2
SlurmdTimeout=${CAIRN_SLURMD_TIMEOUT:-60}
MessageTimeout=5
KillWait=10
MinJobAge=300
SlurmdParameters=config_overrides
SchedulerParameters=sched_interval=2,bf_interval=2
EOF
    for ((k = 1; k <= nodes; k++)); do
      echo "NodeName=$prefix-n$k NodeAddr=$net.$((10 + k)) CPUs=2 RealMemory=1000 State=UNKNOWN"
    done
    echo "PartitionName=nodes Nodes=$prefix-n[1-$nodes] Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
  } >"$dir/slurm.conf"

  local deadline=$((SECONDS + ${CAIRN_SLURM_START_TIMEOUT:-60}))
  # slurmd through nsenter + a UTS namespace (cluster.sh exec), not `ip netns exec`, which remounts
  # /sys: slurmd then fails on its cgroup mount.
  # (cluster.sh itself, not the cl function: $! is then the daemon, which nsenter and unshare exec)
  "$here/cluster.sh" exec head slurmctld -D -f "$dir/slurm.conf" >"$dir/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >>"$dir/pids"
  for ((k = 1; k <= nodes; k++)); do
    mkdir -p "$dir/spool/$prefix-n$k" "$dir/tmp/$prefix-n$k"
    "$here/cluster.sh" exec "n$k" slurmd -D -f "$dir/slurm.conf" -N "$prefix-n$k" >"$dir/slurmd.$prefix-n$k.out" 2>&1 &
    echo "slurmd $!" >>"$dir/pids"
  done
  until [ "$(cl exec head sinfo -h -N -o '%T' 2>/dev/null | grep -cx idle)" = "$nodes" ]; do
    if ((SECONDS >= deadline)); then
      tail -n 20 "$dir"/*.log "$dir"/*.out >&2 2>/dev/null || true
      fail "not every node became idle: $(cl exec head sinfo -N 2>&1)"
    fi
    while read -r name pid; do
      kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir"/*.log "$dir"/*.out >&2 2>/dev/null || true; fail "$name (pid $pid) exited"; }
    done <"$dir/pids"
    sleep 0.5
  done
  started=1
  echo "slurm.sh: Slurm up on '$prefix': slurmctld on $prefix-head, slurmd on $prefix-n1..$prefix-n$nodes; clients: tools/cluster/slurm.sh run sbatch ..."
}

# Cancels the jobs and waits (briefly) for them to end, then stops the daemons by PID, newest first.
cmd_down() {
  [ -f "$dir/pids" ] || { rm -rf "$dir"; return 0; }
  local ctld ids pid
  ctld=$(awk '$1 == "slurmctld" {print $2}' "$dir/pids")
  if [ -n "$ctld" ] && kill -0 "$ctld" 2>/dev/null; then
    ids=$(cl exec head squeue -h -o '%i' 2>/dev/null || true)
    # shellcheck disable=SC2086
    [ -z "$ids" ] || cl exec head scancel --quiet --full $ids 2>/dev/null || true
    for _ in $(seq 1 20); do
      [ -z "$(cl exec head squeue -h -t running,completing -o '%i' 2>/dev/null || true)" ] && break
      sleep 0.5
    done
  fi
  for pid in $(tac "$dir/pids" | awk '{print $2}'); do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $(tac "$dir/pids" | awk '{print $2}'); do
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  # slurmstepd and job processes left on the nodes (a lost node's) go with the node namespaces.
  rm -rf "$dir"
  echo "slurm.sh: Slurm on '$prefix' stopped"
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  run) shift; [ $# -ge 1 ] || fail "usage: slurm.sh run CMD..."; exec "$here/cluster.sh" exec head env SLURM_CONF="$SLURM_CONF" "$@" ;;
  *) fail "usage: slurm.sh up|down|run CMD..." ;;
esac
