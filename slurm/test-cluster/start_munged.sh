#!/usr/bin/env bash
# Starts munged for a throwaway Slurm cluster with everything in DIR/munge: a fresh key, socket, pid,
# log and seed (the system's /etc/munge untouched). Prints munged's PID once its socket exists.
# Used by start.sh and tools/cluster/slurm.sh.
# usage: start_munged.sh DIR [TIMEOUT_SECONDS (default 60)]
set -euo pipefail
dir=${1:?usage: start_munged.sh DIR [TIMEOUT]}
mkdir -p "$dir/munge"
dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$dir/munge/munge.key"
chmod 700 "$dir/munge"
munged --foreground --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
       --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
       --seed-file="$dir/munge/munged.seed" >/dev/null 2>&1 &
pid=$!
deadline=$((SECONDS + ${2:-60}))
until [ -S "$dir/munge/munge.socket" ]; do
  if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
    kill "$pid" 2>/dev/null
    echo "start_munged.sh: munged did not create its socket; its log: $(cat "$dir/munge/munged.log" 2>/dev/null)" >&2
    exit 1
  fi
  sleep 0.2
done
echo "$pid"
