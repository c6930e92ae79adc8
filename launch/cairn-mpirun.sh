#!/usr/bin/env bash
# Runs cairn on N data-parallel ranks with Open MPI's mpirun, outside Slurm (inside an allocation
# use slurm/launch.sh). Resolves the mpirun command line in one place: ranks, hostfile, ranks per
# node, binding, the network interface, and root's extra flags. mpirun runs under
# launch/cairn-supervise.sh, which ends the job when mpirun would wait forever for a lost node.
# usage: launch/cairn-mpirun.sh [-n RANKS] [--hostfile FILE] [--per-node R] [--net-if IF] [--bind core|none]
#                               [--] CAIRN_ARGS...      e.g. ... -n 2 -- train --config configs/tiny.toml
# env:   CAIRN_BIN (default: build/cairn beside this script), CAIRN_MPIRUN (default: mpirun)
#        CAIRN_ABORT_GRACE  seconds mpirun has to end after a rank aborted (default 30; see
#                        launch/cairn-supervise.sh; exit code 75 when a node or rank was lost)
#        CAIRN_PROGRESS  0 turns cairn's progress bar off; set to 0 here when this script's output is
#                        not a terminal (mpirun gives each rank a pty: the bar would fill the log)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ranks=2 hostfile="" per_node="" net_if="" bind=none
while [ $# -gt 0 ]; do
  case $1 in
    -n|--ranks) ranks=$2; shift 2 ;;
    --hostfile) hostfile=$2; shift 2 ;;
    --per-node) per_node=$2; shift 2 ;;
    --net-if) net_if=$2; shift 2 ;;
    --bind) bind=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: $0 [-n RANKS] [--hostfile F] [--per-node R] [--net-if IF] [--bind core|none] -- CAIRN_ARGS..." >&2; exit 2; }
bin=${CAIRN_BIN:-$here/build/cairn}
[ -x "$bin" ] || { echo "cairn-mpirun: $bin not found: build it with tools/setup.sh or set CAIRN_BIN" >&2; exit 2; }

[ -t 1 ] || export CAIRN_PROGRESS=0
cmd=("${CAIRN_MPIRUN:-mpirun}" -np "$ranks" --bind-to "$bind")
[ -n "${CAIRN_PROGRESS:-}" ] && cmd+=(-x CAIRN_PROGRESS)  # also to ranks on other hosts
[ "$(id -u)" = 0 ] && cmd+=(--allow-run-as-root)
# A single host with more ranks than cores is fine for cairn (it splits threads per rank).
[ -z "$hostfile" ] && cmd+=(--oversubscribe)
[ -n "$hostfile" ] && cmd+=(--hostfile "$hostfile")
[ -n "$per_node" ] && cmd+=(--map-by "ppr:$per_node:node")
[ -n "$net_if" ] && cmd+=(--mca btl_tcp_if_include "$net_if" --mca oob_tcp_if_include "$net_if")
# Which ranks each host gets (--map-by ppr fills the hosts in hostfile order), so a lost host's
# report can name its ranks.
layout=""
if [ -n "$hostfile" ] && [ -n "$per_node" ]; then
  first=0
  while read -r host _; do
    case $host in "" | "#"*) continue ;; esac
    ((first < ranks)) || break
    last=$((first + per_node - 1 < ranks - 1 ? first + per_node - 1 : ranks - 1))
    layout+="$host:$first-$last "
    first=$((last + 1))
  done <"$hostfile"
fi
echo "cairn-mpirun: ${cmd[*]} $bin $*" >&2
exec "$here/launch/cairn-supervise.sh" --layout "$layout" -- "${cmd[@]}" "$bin" "$@"
