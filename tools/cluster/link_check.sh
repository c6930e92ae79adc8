#!/usr/bin/env bash
# Measures raw TCP between two nodes of the running cluster with iperf3 (5 s, each direction with
# the client sending) and prints Mbit/s and the share of the link cap, to check the calibration of
# cluster.sh's caps (docs/cluster.md). Caps node 1's and node 2's links at MBIT first when given.
# usage: link_check.sh [MBIT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cl() { "$here/cluster.sh" "$@"; }
command -v iperf3 >/dev/null || { echo "link_check.sh: iperf3 not found (tools/setup.sh installs it)" >&2; exit 1; }
cap=${1:-}
if [ -n "$cap" ]; then cl rate n1 "$cap"; cl rate n2 "$cap"; fi
measure() {  # FROM TO: receiver Mbit/s of FROM sending to TO
  local to_addr
  to_addr=$(cl addr "$2")
  cl exec "$2" iperf3 -s -1 -B "$to_addr" >/dev/null 2>&1 &
  local server=$!
  sleep 0.5
  cl exec "$1" iperf3 -c "$to_addr" -t 5 -f m | awk '/receiver/ {print $(NF-2)}'
  wait "$server" 2>/dev/null || true
}
for pair in "n1 n2" "n2 n1"; do
  read -r from to <<<"$pair"
  mbit=$(measure "$from" "$to")
  if [ -n "$cap" ]; then
    echo "$from -> $to: $mbit Mbit/s, $(awk -v m="$mbit" -v c="$cap" 'BEGIN {printf "%.0f", 100 * m / c}')% of the $cap Mbit/s cap"
  else
    echo "$from -> $to: $mbit Mbit/s (no cap)"
  fi
done
