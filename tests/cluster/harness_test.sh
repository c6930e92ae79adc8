#!/usr/bin/env bash
# tools/cluster/cluster.sh itself.
#   refuses  (anyone): subnets that are not a private /24 and bad name prefixes are refused with a
#            message naming the variable, before anything is touched.
#   harness  (root): up is idempotent and refuses another node count while up; nodes have their
#            own hostnames and /etc/hosts; a node reaches another, not the machine's own network;
#            link down cuts a node off and link up restores it; a rate cap shows as tbf; local
#            gives one node a private directory; down leaves no namespace, mount or hosts file
#            behind and can be repeated.
# usage: harness_test.sh refuses|harness SOURCE_DIR
set -euo pipefail
mode=$1 src=$(cd "$2" && pwd)
cl() { "$src/tools/cluster/cluster.sh" "$@"; }
fail() { echo "harness_test: FAIL: $*" >&2; exit 1; }

refused() {  # SUBNET PREFIX PATTERN
  local out
  if out=$(CAIRN_CLUSTER_SUBNET=$1 CAIRN_CLUSTER_PREFIX=$2 cl up 2 2>&1); then fail "subnet '$1' prefix '$2' was accepted"; fi
  grep -qE "$3" <<<"$out" || fail "subnet '$1' prefix '$2': '$out' does not match /$3/"
}

if [ "$mode" = refuses ]; then
  for bad in 8.8.8.0/24 192.0.2.0/24 10.77.0.0/16 10.77.0.128/25 10.77.1.5/24 172.32.0.0/24 10.256.0.0/24 "10.77.0.0/24; rm"; do
    refused "$bad" cairn "CAIRN_CLUSTER_SUBNET='.*' is not a private /24"
  done
  for bad in Cairn 1cairn cairn-x toolongname; do
    refused 10.77.0.0/24 "$bad" "CAIRN_CLUSTER_PREFIX='.*' must be"
  done
  echo "harness_test: PASS: non-private or non-/24 subnets and bad prefixes are refused"
  exit 0
fi

[ "$mode" = harness ] || fail "unknown mode '$mode'"
if [ "$(id -u)" != 0 ]; then echo "harness_test: SKIP: needs root (it creates network namespaces)"; exit 77; fi
trap 'cl down >/dev/null 2>&1 || true' EXIT
prefix=${CAIRN_CLUSTER_PREFIX:-cairn}
reaches() {  # FROM ADDR: a TCP connection to a closed port is refused (reached) rather than timing out
  local err
  err=$(cl exec "$1" timeout 3 bash -c "exec 3<>/dev/tcp/$2/9" 2>&1) && return 0
  [[ $err == *refused* ]]
}

cl down >/dev/null
cl up 2 >/dev/null
cl up 2 | grep -q "already up" || fail "a second 'up 2' is not a no-op"
if cl up 3 2>/dev/null; then fail "'up 3' was accepted while 2 nodes are up"; fi
[ "$(cl exec n1 hostname)" = "$prefix-n1" ] || fail "node 1's hostname is $(cl exec n1 hostname)"
[ "$(cl exec n2 getent hosts "$prefix-n1" | awk '{print $1}')" = "$(cl addr n1)" ] || fail "node 2 does not resolve $prefix-n1"
reaches n1 "$(cl addr n2)" || fail "node 1 does not reach node 2"
root_addr=$(ip -4 -o addr show scope global | awk '{print $4}' | head -n 1)
if [ -n "$root_addr" ] && reaches n1 "${root_addr%/*}"; then fail "node 1 reaches the machine's own address ${root_addr%/*}"; fi
cl link n2 down
if reaches n1 "$(cl addr n2)"; then fail "node 1 still reaches node 2 with its link down"; fi
cl link n2 up
reaches n1 "$(cl addr n2)" || fail "node 1 does not reach node 2 after link up"
cl rate n1 100
cl status | grep -E "^$prefix-n1 .*tbf .*rate 100Mbit" >/dev/null || fail "no 100 Mbit/s tbf on node 1: $(cl status)"
dir=$(mktemp -d /tmp/cairn-harness-test.XXXXXX)
cl local n2 "$dir"
echo shared >"$dir/f"
[ "$(cl exec n1 cat "$dir/f")" = shared ] || fail "node 1 does not see the shared directory"
if cl exec n2 test -e "$dir/f"; then fail "node 2 sees the shared file in its node-local directory"; fi
rm -rf "$dir"
cl down >/dev/null
[ -z "$(ip netns list | awk '{print $1}' | grep -E "^$prefix-(sw|head|n[0-9]+)$" || true)" ] || fail "namespaces left after down"
[ -z "$(findmnt -rn -o TARGET | grep "^/run/$prefix-cluster" || true)" ] || fail "mounts left after down"
[ ! -e "/etc/netns/$prefix-n1" ] && [ ! -e "/run/$prefix-cluster" ] || fail "hosts files or state left after down"
cl down >/dev/null || fail "a second down failed"
echo "harness_test: PASS: idempotent up/down, hostnames, hosts files, isolation, link down/up, caps, node-local directories"
