#!/usr/bin/env bash
# Starts COMMAND on every rank of the current Slurm allocation: the one place where ranks, nodes and
# launcher are resolved (cairn.sbatch calls it; it also works from `salloc`). Replaces itself with
# launch/cairn-supervise.sh running the launcher, so a signal sent to this process reaches
# srun/mpirun, which forward it to every rank, and a lost node ends the job in bounded time (exit
# code 75 then, naming the lost hosts and ranks).
# usage: launch.sh COMMAND [ARGS...]
# env:   CAIRN_LAUNCHER      srun (default) or mpirun
#        CAIRN_RANKS         total ranks (default: SLURM_NTASKS, else nodes x SLURM_NTASKS_PER_NODE)
#        CAIRN_SRUN_MPI      srun's --mpi plugin (default pmix; the MPI cairn was built with must match)
#        CAIRN_SRUN_ARGS     extra srun arguments (word-split)
#        CAIRN_MPIRUN        the mpirun executable (default mpirun)
#        CAIRN_MPIRUN_ARGS   extra mpirun arguments (word-split), e.g. "--mca btl ^openib"
#        CAIRN_NET_IF        network interface(s) for MPI traffic, e.g. ib0 or eth0,eth1 (Open MPI)
#        CAIRN_ABORT_GRACE   seconds the launcher has to end after a rank aborted (default 30)
#        CAIRN_PROGRESS      0 turns cairn's progress bar off; set to 0 here when this script's output
#                            is not a terminal (mpirun gives each rank a pty: the bar would fill the log)
set -euo pipefail
fail() { echo "launch.sh: error: $*" >&2; exit 2; }
[ $# -ge 1 ] || fail "usage: launch.sh COMMAND [ARGS...]"
[ -n "${SLURM_JOB_ID:-}" ] || fail "not inside a Slurm allocation (run it from sbatch or salloc)"

nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
size=${CAIRN_RANKS:-${SLURM_NTASKS:-}}
if [ -z "$size" ]; then
  # SLURM_NTASKS_PER_NODE looks like "2" or "2(x3)" depending on the request.
  per_node=${SLURM_NTASKS_PER_NODE:-1}
  per_node=${per_node%%"("*}
  size=$((nodes * per_node))
fi
((size >= nodes)) || fail "$size ranks cannot cover $nodes nodes: ask for --ntasks-per-node >= 1"
((size % nodes == 0)) || fail "$size ranks do not divide evenly over $nodes nodes"
per_node=$((size / nodes))

if [ -n "${CAIRN_NET_IF:-}" ]; then
  export OMPI_MCA_btl_tcp_if_include=$CAIRN_NET_IF OMPI_MCA_oob_tcp_if_include=$CAIRN_NET_IF
fi

[ -t 1 ] || export CAIRN_PROGRESS=0

launcher=${CAIRN_LAUNCHER:-srun}
echo "launch.sh: $size ranks on $nodes node(s), $per_node per node, through $launcher"
# Ranks fill the nodes in allocation order, per_node each (srun's block distribution; mpirun's ppr).
layout="" first=0
for host in $(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null); do
  layout+="$host:$first-$((first + per_node - 1)) "
  first=$((first + per_node))
done
supervise=("$(cd "$(dirname "$0")/.." && pwd)/launch/cairn-supervise.sh" --layout "$layout" --)
case $launcher in
  srun)
    # shellcheck disable=SC2086 # extra arguments are meant to be word-split
    exec "${supervise[@]}" srun --mpi="${CAIRN_SRUN_MPI:-pmix}" --kill-on-bad-exit=1 --ntasks="$size" \
              --ntasks-per-node="$per_node" ${CAIRN_SRUN_ARGS:-} "$@" ;;
  mpirun)
    # Inside an allocation Open MPI reads the nodes from Slurm and starts its daemons through srun.
    mpirun_args=(-np "$size" --map-by "ppr:$per_node:node")
    [ -n "${CAIRN_PROGRESS:-}" ] && mpirun_args+=(-x CAIRN_PROGRESS)  # also to ranks on other nodes
    [ "$(id -u)" = 0 ] && mpirun_args+=(--allow-run-as-root)  # Open MPI refuses root without it
    # shellcheck disable=SC2086
    exec "${supervise[@]}" "${CAIRN_MPIRUN:-mpirun}" "${mpirun_args[@]}" ${CAIRN_MPIRUN_ARGS:-} "$@" ;;
  *) fail "CAIRN_LAUNCHER='$launcher': use srun or mpirun" ;;
esac
