#!/usr/bin/env bash
# Measures raw TCP between two nodes of the running cluster with iperf3 (5 s, each direction with
# the client sending, then both directions at once as an all-reduce loads the link) and prints
# Mbit/s and the share of the link cap, to check the calibration of cluster.sh's caps
# (docs/cluster.md). Caps node 1's and node 2's links at MBIT first when given; without MBIT the
# cap is read from node 1's link (none: shares are not printed).
# usage: link_check.sh [MBIT]   (iperf3 3.7 or later: --bidir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cl() { "$here/cluster.sh" "$@"; }
command -v iperf3 >/dev/null || { echo "link_check.sh: iperf3 not found (tools/setup.sh installs it)" >&2; exit 1; }
cap=${1:-}
if [ -n "$cap" ]; then
  cl rate n1 "$cap"
  cl rate n2 "$cap"
else
  cap=$(cl status | awk '$1 ~ /-n1$/ { for (i = 1; i <= NF; ++i) if ($i == "rate") print $(i + 1) }')
  case $cap in *Gbit) cap=$(awk -v g="${cap%Gbit}" 'BEGIN { print g * 1000 }') ;; *Mbit) cap=${cap%Mbit} ;; *) cap="" ;; esac
fi
# FROM TO [iperf3 options]: the receivers' Mbit/s of FROM sending to TO (with --bidir, then of TO
# sending to FROM).
measure() {
  local from=$1 to=$2 to_addr
  shift 2
  to_addr=$(cl addr "$to")
  cl exec "$to" iperf3 -s -1 -B "$to_addr" >/dev/null 2>&1 &
  local server=$!
  sleep 0.5
  cl exec "$from" iperf3 -c "$to_addr" -t 5 -f m "$@" | awk '/receiver/ {print $(NF-2)}' | paste -sd' '
  wait "$server" 2>/dev/null || true
}
share() { [ -z "$cap" ] || awk -v m="$1" -v c="$cap" 'BEGIN {printf ", %.0f%% of the %s Mbit/s cap", 100 * m / c, c}'; }
for pair in "n1 n2" "n2 n1"; do
  read -r from to <<<"$pair"
  mbit=$(measure "$from" "$to")
  echo "one way, $from -> $to: $mbit Mbit/s$(share "$mbit")"
done
read -r forward reverse <<<"$(measure n1 n2 --bidir)"
echo "both ways at once, n1 -> n2: $forward Mbit/s$(share "$forward")"
echo "both ways at once, n2 -> n1: $reverse Mbit/s$(share "$reverse")"
