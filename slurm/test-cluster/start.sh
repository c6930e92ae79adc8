#!/usr/bin/env bash
# Starts a throwaway single-node Slurm cluster on loopback, as root, everything in DIR: munged with
# its own key and socket, slurmctld and slurmd in the foreground (-D) as background jobs of this
# script, their PIDs in DIR/pids. Returns once sinfo shows the node idle. DIR/env.sh sets SLURM_CONF
# for sbatch/squeue/scontrol; stop.sh DIR takes it all down again. If it fails, it stops what it
# started and removes DIR itself (after printing the daemons' last log lines).
# usage: start.sh DIR    (DIR must not exist or be empty)
# env:   CAIRN_SLURM_CTLD_PORT (the first free of 16817, 16819, ...), CAIRN_SLURM_SLURMD_PORT (+1), CAIRN_SLURM_CPUS (2),
#        CAIRN_SLURM_START_TIMEOUT seconds (60)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:?usage: start.sh DIR}
fail() { echo "start.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "must run as root (slurmd starts jobs as their users)"
for exe in munged slurmctld slurmd sinfo; do
  command -v "$exe" >/dev/null || fail "'$exe' not found: install slurm-wlm and munge (tools/setup.sh does)"
done
mkdir -p "$dir"
[ -z "$(ls -A "$dir")" ] || fail "'$dir' is not empty"
dir=$(cd "$dir" && pwd)
chmod 700 "$dir"
mkdir -p "$dir/munge" "$dir/state" "$dir/spool"
: >"$dir/pids"
# Whatever fails from here on, leave nothing running: stop what was started (its logs go with DIR).
started=""
trap '[ -n "$started" ] || "$here/stop.sh" "$dir" >&2' EXIT

# slurmctld only runs where gethostname() names SlurmctldHost, and that name must resolve: map it
# to loopback in /etc/hosts when it does not resolve at all (remembered so stop.sh removes it).
host=$(hostname -s)
if ! getent hosts "$host" >/dev/null; then
  line="127.0.0.1 $host # cairn slurm test-cluster $dir"
  echo "$line" >>/etc/hosts
  echo "$line" >"$dir/hosts_line"
fi

# munge: a fresh key, socket, pid, log and seed, all in DIR/munge (the system's /etc/munge untouched).
munged_pid=$("$here/start_munged.sh" "$dir" "${CAIRN_SLURM_START_TIMEOUT:-60}")
echo "munged $munged_pid" >>"$dir/pids"

mem_mb=$(awk '/^MemTotal:/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
# A free pair of loopback ports from 16817 up, so two test clusters on one machine do not collide.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ctld_port=${CAIRN_SLURM_CTLD_PORT:-}
if [ -z "$ctld_port" ]; then
  for ((p = 16817; p < 16917; p += 2)); do
    if port_free "$p" && port_free $((p + 1)); then ctld_port=$p; break; fi
  done
  [ -n "$ctld_port" ] || { echo "start.sh: no free port pair in 16817-16916" >&2; exit 1; }
fi
slurmd_port=${CAIRN_SLURM_SLURMD_PORT:-$((ctld_port + 1))}
sed -e "s|@DIR@|$dir|g" -e "s|@HOST@|$host|g" -e "s|@NODE@|$host|g" \
    -e "s|@CTLD_PORT@|$ctld_port|g" -e "s|@SLURMD_PORT@|$slurmd_port|g" \
    -e "s|@CPUS@|${CAIRN_SLURM_CPUS:-2}|g" -e "s|@MEM_MB@|$mem_mb|g" "$here/slurm.conf.in" >"$dir/slurm.conf"
echo "export SLURM_CONF=$dir/slurm.conf" >"$dir/env.sh"
export SLURM_CONF=$dir/slurm.conf

deadline=$((SECONDS + ${CAIRN_SLURM_START_TIMEOUT:-60}))

slurmctld -D -f "$dir/slurm.conf" >"$dir/slurmctld.out" 2>&1 &
echo "slurmctld $!" >>"$dir/pids"
slurmd -D -f "$dir/slurm.conf" -N "$host" >"$dir/slurmd.out" 2>&1 &
echo "slurmd $!" >>"$dir/pids"

until sinfo -h -N -o '%T' 2>/dev/null | grep -qx idle; do
  if [ $SECONDS -ge $deadline ]; then
    echo "start.sh: the node did not become idle; sinfo: $(sinfo -N 2>&1)" >&2
    tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/slurmctld.out "$dir"/slurmd.out >&2 2>/dev/null || true
    exit 1
  fi
  while read -r name pid; do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$dir/$name.log" "$dir/$name.out" >&2 2>/dev/null || true
      fail "$name (pid $pid) exited"
    fi
  done <"$dir/pids"
  sleep 0.5
done
started=1
echo "start.sh: cluster up in $dir (node $host idle); source $dir/env.sh to use it"
