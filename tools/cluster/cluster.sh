#!/usr/bin/env bash
# A multi-node cluster on one machine, for tests and experiments: K nodes (2-4) and a head node,
# each a network namespace with a veth into a bridge that lives in a switch namespace of its own,
# an address in one private /24, its own hostname (a persistent UTS namespace) and its own
# /etc/hosts naming every node (a persistent mount namespace that bind-mounts
# /etc/netns/NODE/hosts). Only these namespaces and loopback carry traffic. Root only.
# usage: cluster.sh up K [--rate MBIT]    start (or keep) the cluster; idempotent for the same K
#        cluster.sh down                  stop everything it started (also after a failed `up`)
#        cluster.sh status                nodes, addresses, link state and caps
#        cluster.sh exec NODE CMD...      run CMD on NODE (head, n1..nK or its full name), in the cwd
#        cluster.sh mpi CMD...            run CMD on the head node with Open MPI set up to start its
#                                         daemons on the nodes (rsh agent) and to talk over the subnet
#        cluster.sh hostfile PER_NODE [K] print an Open MPI hostfile of the nodes (K: the first K)
#        cluster.sh link NODE down|up     take a node's link down (the node is cut off) or back up
#        cluster.sh rate NODE MBIT|off    cap a node's link at MBIT Mbit/s each way, or remove the cap
#        cluster.sh local NODE DIR        DIR on NODE is node-local from now on (a private directory)
#        cluster.sh kill NODE             SIGKILL every process running on NODE (a node crash)
#        cluster.sh name NODE | addr NODE | subnet | iface   print one fact (for scripts)
# env:   CAIRN_CLUSTER_SUBNET  the cluster's /24, a private one (default 10.77.0.0/24)
#        CAIRN_CLUSTER_PREFIX  name prefix of its namespaces and hosts (default cairn): two clusters
#                              with different prefixes and subnets can run side by side
# Addresses: head .1, node k .(10+k); the node's interface is PREFIX0 (also the --net-if to give).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
subnet=${CAIRN_CLUSTER_SUBNET:-10.77.0.0/24}
prefix=${CAIRN_CLUSTER_PREFIX:-cairn}
fail() { echo "cluster.sh: error: $*" >&2; exit 1; }

# Only a private /24 (RFC 1918), only a short lowercase prefix (interface names have 15 bytes).
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
[[ $subnet =~ ^(10\.$octet\.$octet|172\.(1[6-9]|2[0-9]|3[01])\.$octet|192\.168\.$octet)\.0/24$ ]] ||
  fail "CAIRN_CLUSTER_SUBNET='$subnet' is not a private /24 (10.x.y.0/24, 172.16-31.x.0/24 or 192.168.x.0/24)"
[[ $prefix =~ ^[a-z][a-z0-9]{0,7}$ ]] || fail "CAIRN_CLUSTER_PREFIX='$prefix' must be 1-8 lowercase letters or digits, starting with a letter"
net=${subnet%.0/24}
state=/run/$prefix-cluster  # namespaces' bind files, the node count, the caps
iface=${prefix}0
sw=$prefix-sw

node_name() {  # head, n3, 3 or PREFIX-n3 -> PREFIX-head / PREFIX-n3
  case $1 in
    head | "$prefix-head") echo "$prefix-head" ;;
    n[1-4] | [1-4]) echo "$prefix-n${1#n}" ;;
    "$prefix"-n[1-4]) echo "$1" ;;
    *) fail "unknown node '$1': use head, n1..n4 or $prefix-n1..$prefix-n4" ;;
  esac
}
node_addr() {
  local n
  n=$(node_name "$1")
  case $n in *-head) echo "$net.1" ;; *) echo "$net.$((10 + ${n##*-n}))" ;; esac
}
node_count() { cat "$state/nodes" 2>/dev/null || echo 0; }
all_nodes() {  # head then n1..nK of the running cluster
  local k
  echo "$prefix-head"
  for ((k = 1; k <= $(node_count); k++)); do echo "$prefix-n$k"; done
}
need_root() { [ "$(id -u)" = 0 ] || fail "must run as root (it creates network namespaces)"; }
need_up() { [ -f "$state/nodes" ] || fail "no cluster '$prefix' is up: start it with 'cluster.sh up K'"; }

# Runs a command on a node: its network and UTS (hostname) namespaces, a mount namespace of its
# own where /etc/hosts is the node's (/etc/netns/NODE/hosts) and the node's local directories
# (cluster.sh local) are mounted, in the caller's working directory. Not `ip netns exec`: that
# remounts /sys, and slurmd then fails on its cgroup mount.
on_node() {
  local n=$1
  shift
  exec nsenter --net="/run/netns/$n" --uts="$state/ns/$n.uts" --wd="$PWD" -- \
    unshare --mount --propagation slave -- /bin/sh -c '
      n=$1 local_dirs=$2
      shift 2
      mount --bind "/etc/netns/$n/hosts" /etc/hosts || exit 1
      if [ -f "$local_dirs" ]; then
        while read -r dir backing; do mount --bind "$backing" "$dir" || exit 1; done <"$local_dirs"
      fi
      exec "$@"' node-init "$n" "$state/local/$n" "$@"
}

# The subnet must not be in use by the machine itself or by another cluster of this harness.
check_subnet_free() {
  if ip -4 route show | grep -q "^$net\."; then fail "$subnet overlaps a route of this machine: pick another CAIRN_CLUSTER_SUBNET"; fi
  local other
  for other in /run/*-cluster/subnet; do
    [ -f "$other" ] && [ "$other" != "$state/subnet" ] || continue
    [ "$(cat "$other")" != "$subnet" ] || fail "$subnet is taken by the cluster in ${other%/subnet}: pick another CAIRN_CLUSTER_SUBNET"
  done
}

add_node() {  # NAME ADDR: namespace, veth to the bridge, hostname, hosts file
  local n=$1 addr=$2 port=${1#"$prefix"-}
  ip netns add "$n"
  ip -n "$n" link set lo up
  ip -n "$sw" link add "$port" type veth peer name "$iface" netns "$n"
  ip -n "$sw" link set "$port" master br0 up
  ip -n "$n" addr add "$addr/24" dev "$iface"
  ip -n "$n" link set "$iface" up
  mkdir -p "/etc/netns/$n"
  hosts_file >"/etc/netns/$n/hosts"
  touch "$state/ns/$n.uts"
  unshare --uts="$state/ns/$n.uts" hostname "$n"
}

reachable() {  # FROM ADDR
  local err
  err=$(nsenter --net="/run/netns/$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1) && return 0
  [[ $err == *refused* ]]
}

hosts_file() {
  local k
  echo "127.0.0.1 localhost"
  echo "$net.1 $prefix-head"
  for ((k = 1; k <= want; k++)); do echo "$net.$((10 + k)) $prefix-n$k"; done
}

cmd_up() {
  need_root
  want=${1:-}
  [[ $want =~ ^[2-4]$ ]] || fail "usage: cluster.sh up K [--rate MBIT], K in 2..4 nodes"
  shift
  local rate=""
  [ "${1:-}" != --rate ] || rate=${2:?--rate needs MBIT}
  if [ -f "$state/nodes" ]; then
    [ "$(node_count)" = "$want" ] || fail "cluster '$prefix' is up with $(node_count) nodes, not $want: 'cluster.sh down' first"
    [ "$(cat "$state/subnet")" = "$subnet" ] || fail "cluster '$prefix' is up on $(cat "$state/subnet"), not $subnet"
    echo "cluster.sh: '$prefix' is already up with $want nodes on $subnet"
  else
    for cmd in ip nsenter unshare tc; do command -v "$cmd" >/dev/null || fail "'$cmd' not found (iproute2, util-linux)"; done
    check_subnet_free
    # A half-built cluster of an earlier failed `up` (or anything else under our names) goes first.
    cmd_down >/dev/null
    # Whatever fails from here on (set -e), leave nothing behind.
    trap '[ -f "$state/nodes" ] || { echo "cluster.sh: up failed; removing what it made" >&2; cmd_down >&2; }' EXIT
    mkdir -p "$state/ns"
    # Persistent namespaces are bind mounts, which need a private mount to live on.
    mount --bind "$state/ns" "$state/ns"
    mount --make-private "$state/ns"
    echo "$subnet" >"$state/subnet"
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    add_node "$prefix-head" "$net.1"
    local k
    for ((k = 1; k <= want; k++)); do add_node "$prefix-n$k" "$net.$((10 + k))"; done
    echo "$want" >"$state/nodes"
    trap - EXIT
    # The head reaches every node: a TCP connection to a closed port is refused at once when the
    # node answers, and times out when it does not (no ping on these machines).
    for ((k = 1; k <= want; k++)); do
      reachable "$prefix-head" "$net.$((10 + k))" || { cmd_down >&2; fail "head cannot reach $prefix-n$k at $net.$((10 + k))"; }
    done
    echo "cluster.sh: '$prefix' up: head $net.1, nodes $prefix-n1..$prefix-n$want at $net.11..$net.$((10 + want)), interface $iface"
  fi
  if [ -n "$rate" ]; then
    for ((k = 1; k <= want; k++)); do cmd_rate "n$k" "$rate"; done
  fi
}

# Kills every process in the cluster's namespaces (by PID: all were started into them) and the
# munged of a Slurm cluster on it, then removes the namespaces, their bind files and hosts files. Safe to repeat; finds leftovers by name.
cmd_down() {
  need_root
  local n pids
  for n in $(ip netns list | awk '{print $1}' | grep -E "^$prefix-(sw|head|n[0-9]+)$" || true); do
    pids=$(ip netns pids "$n" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      kill -TERM $pids 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$n" 2>/dev/null || true)
        [ -n "$pids" ] || break
        sleep 0.3
      done
      [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    fi
    ip netns delete "$n" 2>/dev/null || true
  done
  # munged of a Slurm cluster on it (slurm.sh) runs in the root namespace: by its recorded PID.
  if [ -f "$state/slurm/pids" ]; then
    pids=$(awk '$1 == "munged" {print $2}' "$state/slurm/pids")
    [ -z "$pids" ] || kill -TERM $pids 2>/dev/null || true
  fi
  # Every mount under the state directory (namespace files, then the directory's own), deepest first.
  local m
  for m in $(findmnt -rn -o TARGET | grep "^$state/" | sort -r || true); do umount "$m" 2>/dev/null || true; done
  rm -rf "$state"
  for n in /etc/netns/"$prefix"-head /etc/netns/"$prefix"-n[0-9]*; do [ -e "$n" ] && rm -rf "$n"; done
  echo "cluster.sh: '$prefix' down"
}

cmd_status() {
  need_up
  local n
  echo "cluster '$prefix' on $subnet, $(node_count) nodes, interface $iface"
  for n in $(all_nodes); do
    local port=${n#"$prefix"-} qdisc
    qdisc=$(tc -n "$n" qdisc show dev "$iface" | awk '/tbf|htb/ {print; exit}')
    printf '%-14s %-12s link %-5s %s\n' "$n" "$(node_addr "$n")" \
      "$(ip -n "$sw" -br link show "$port" | awk '{print $2}')" "${qdisc:-no cap}"
  done
}

# One token bucket each way (node -> switch on the node's interface, switch -> node on the switch
# port). Calibrated (docs/cluster.md): a 4 ms latency, a burst of 64 KiB plus 1 ms of the rate, and
# no segmentation offloads (a 64 KiB GSO super-packet otherwise overflows the bucket).
cmd_rate() {
  need_root
  need_up
  local n port mbit=$2
  n=$(node_name "$1")
  port=${n#"$prefix"-}
  if [ "$mbit" = off ]; then
    tc -n "$n" qdisc del dev "$iface" root 2>/dev/null || true
    tc -n "$sw" qdisc del dev "$port" root 2>/dev/null || true
    return
  fi
  [[ $mbit =~ ^[0-9]+$ ]] && ((mbit >= 1 && mbit <= 100000)) || fail "rate '$mbit': give Mbit/s in 1..100000 or off"
  local burst=$((65536 + mbit * 1000 / 8))
  nsenter --net="/run/netns/$n" ethtool -K "$iface" tso off gso off gro off >/dev/null 2>&1 || true
  nsenter --net="/run/netns/$sw" ethtool -K "$port" tso off gso off gro off >/dev/null 2>&1 || true
  tc -n "$n" qdisc replace dev "$iface" root tbf rate "${mbit}mbit" burst "$burst" latency 4ms
  tc -n "$sw" qdisc replace dev "$port" root tbf rate "${mbit}mbit" burst "$burst" latency 4ms
}

cmd_link() {
  need_root
  need_up
  local n
  n=$(node_name "$1")
  case ${2:-} in
    up | down) ip -n "$sw" link set "${n#"$prefix"-}" "$2" ;;
    *) fail "usage: cluster.sh link NODE down|up" ;;
  esac
}

cmd_kill() {
  need_root
  need_up
  local n pids
  n=$(node_name "$1")
  pids=$(ip netns pids "$n")
  [ -z "$pids" ] || kill -KILL $pids
  echo "cluster.sh: killed $(echo $pids | wc -w) process(es) on $n"
}

# DIR on NODE becomes node-local storage: from now on every process started on NODE sees there a
# directory of its own (under the cluster's state) instead of the shared one (a node whose run
# directory is on a local disk). Takes effect for processes started afterwards.
cmd_local() {
  need_root
  need_up
  local n dir
  n=$(node_name "${1:?usage: cluster.sh local NODE DIR}")
  dir=$(cd "${2:?usage: cluster.sh local NODE DIR}" && pwd)
  mkdir -p "$state/local/$n.d$dir"
  echo "$dir $state/local/$n.d$dir" >>"$state/local/$n"
}

cmd_hostfile() {
  need_up
  local per=${1:?usage: cluster.sh hostfile PER_NODE [K]} k count=${2:-$(node_count)}
  ((count <= $(node_count))) || fail "the cluster has $(node_count) nodes, not $count"
  for ((k = 1; k <= count; k++)); do echo "$prefix-n$k slots=$per"; done
}

# Open MPI from the head node: daemons start through the rsh agent (no ssh), one from mpirun per
# node (no tree spawn: the nodes have no agent of their own), TCP and shared memory only, and both
# MPI and the runtime's own traffic on the cluster's subnet.
cmd_mpi() {
  need_up
  export OMPI_MCA_plm_rsh_agent=$here/rsh-agent.sh
  export OMPI_MCA_plm_rsh_no_tree_spawn=1
  export OMPI_MCA_btl=tcp,self,vader
  export OMPI_MCA_btl_tcp_if_include=$subnet OMPI_MCA_oob_tcp_if_include=$subnet
  # The nodes share this machine's cores, and each node's daemon binds its first rank to core 0:
  # ranks of different nodes would take turns on one core (a 2-node step measured 2x its compute).
  export OMPI_MCA_hwloc_base_binding_policy=none
  export CAIRN_CLUSTER_SUBNET=$subnet CAIRN_CLUSTER_PREFIX=$prefix
  on_node "$prefix-head" "$@"
}

[ $# -ge 1 ] || { sed -n '2,/^set -euo/p' "$0" | sed '$d;s/^# \{0,1\}//' >&2; exit 2; }
action=$1
shift
case $action in
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  exec) need_up; [ $# -ge 2 ] || fail "usage: cluster.sh exec NODE CMD..."; n=$(node_name "$1"); shift; on_node "$n" "$@" ;;
  mpi) [ $# -ge 1 ] || fail "usage: cluster.sh mpi CMD..."; cmd_mpi "$@" ;;
  hostfile) cmd_hostfile "$@" ;;
  link) cmd_link "$@" ;;
  rate) cmd_rate "$@" ;;
  kill) cmd_kill "$@" ;;
  local) cmd_local "$@" ;;
  name) node_name "${1:?usage: cluster.sh name NODE}" ;;
  addr) node_addr "${1:?usage: cluster.sh addr NODE}" ;;
  subnet) echo "$subnet" ;;
  iface) echo "$iface" ;;
  *) fail "unknown action '$action': up, down, status, exec, mpi, hostfile, link, rate, kill, local, name, addr, subnet, iface" ;;
esac
