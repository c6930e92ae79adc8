#!/usr/bin/env bash
# Open MPI's rsh agent for the one-machine cluster (tools/cluster/cluster.sh): where mpirun would
# ssh to HOST and run its daemon there, this enters HOST's namespaces and execs the daemon in it, so
# the daemon is mpirun's child and the node's processes are the daemon's. Only the cluster's own
# hosts (CAIRN_CLUSTER_PREFIX-head, -n1..-n4) are accepted.
# usage (by mpirun, via OMPI_MCA_plm_rsh_agent): rsh-agent.sh [ssh options] HOST COMMAND...
set -euo pipefail
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done  # ssh options Open MPI may add (-x)
[ $# -ge 2 ] || { echo "rsh-agent.sh: usage: rsh-agent.sh HOST COMMAND..." >&2; exit 2; }
host=$1
shift
# The command line is what a remote login shell would get: one string for sh -c.
exec "$(dirname "$0")/cluster.sh" exec "$host" /bin/sh -c "$*"
