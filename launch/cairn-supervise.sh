#!/usr/bin/env bash
# Runs a launcher (mpirun or srun) and makes sure the job ends once it has failed. A rank whose
# collective timed out prints why (cairn names the ranks and hosts that no longer answer) and calls
# MPI_Abort; mpirun then asks every node's daemon to kill its ranks and waits for all of them:
# forever when a node is lost, its daemon unreachable. This script passes the launcher's output
# through and watches its stderr: once a rank aborts, or the launcher reports a lost daemon or rank,
# the launcher has CAIRN_ABORT_GRACE seconds to end by itself; then this script ends it with SIGKILL
# (by then mpirun has already told every daemon it can reach to end its ranks; a SIGTERM only makes
# Open MPI 4.1's mpirun crash in PMIx_Finalize). USR1, TERM, INT and HUP are passed on to the launcher.
# So a job ends within training.comm_timeout_s + the probe window (comm_timeout_s / 4, within
# [2, 30] s) + CAIRN_ABORT_GRACE of losing a node (docs/cluster.md).
# usage: cairn-supervise.sh [--layout "HOST:RANKS HOST:RANKS ..."] -- LAUNCHER [ARGS...]
#        --layout names the ranks on each host (e.g. "n1:0-1 n2:2-3"), so a report that names only
#        a host (mpirun's lost daemon) also names its ranks.
# env:   CAIRN_ABORT_GRACE  seconds (default 30)
#        CAIRN_LOST_REPORT  a file to write the lost ranks and hosts to, one "rank R on host H" a line
# exit:  the launcher's code; 75 (EX_TEMPFAIL) when ranks or a node were lost (so a batch script can
#        requeue the job on the nodes that remain), with a last line "cairn-supervise: lost: ...".
set -uo pipefail
layout=""
while [ $# -gt 0 ]; do
  case $1 in
    --layout) layout=$2; shift 2 ;;
    --) shift; break ;;
    *) break ;;
  esac
done
[ $# -ge 1 ] || { echo "usage: cairn-supervise.sh [--layout L] -- LAUNCHER [ARGS...]" >&2; exit 2; }
grace=${CAIRN_ABORT_GRACE:-30}
[[ $grace =~ ^[0-9]+$ ]] || { echo "cairn-supervise: CAIRN_ABORT_GRACE='$grace' is not a whole number of seconds" >&2; exit 2; }
say() { echo "cairn-supervise: $*" >&2; }

notes=$(mktemp -d /tmp/cairn-supervise.XXXXXX)
trap 'rm -rf "$notes"' EXIT

ranks_on() {  # HOST -> "ranks 2-3 on HOST" from the layout, or "HOST"
  local entry ranks
  for entry in $layout; do
    [ "${entry%%:*}" = "$1" ] || continue
    ranks=${entry#*:}
    if [ "${ranks%-*}" = "${ranks#*-}" ]; then echo "rank ${ranks%-*} on host $1"; else echo "ranks $ranks on host $1"; fi
    return
  done
  echo "host $1"
}

# Reads the launcher's stderr, passes every line on, and notes the first abort and every loss.
watch() {
  local line host
  while IFS= read -r line || [ -n "$line" ]; do  # (also a last line without a newline)
    printf '%s\n' "$line" >&2
    case $line in
      *"aborting the job:"* | *"MPI_ABORT was invoked"* | *"lost communication with a remote daemon"* | \
      *"noticed that process rank"* | *"daemon"*"failed"* | *"Node failure on "*)
        [ -f "$notes/abort" ] || echo "$line" >"$notes/abort" ;;
    esac
    case $line in
      *"no answer within"*" from rank "*)  # cairn: "... no answer within 5 s from rank 3 on host n2, rank 2 ..."
        echo "${line#*no answer within * from }" | sed 's/ (their node.*//' >>"$notes/lost" ;;
      *"noticed that process rank"*" on node "*)  # mpirun: "... process rank 3 with PID 9 on node n2 exited on signal 9"
        echo "$line" | sed -E 's/.*process rank ([0-9]+) .* on node ([^ ]+) (.*)/rank \1 on host \2 (\3)/' >>"$notes/lost" ;;
      *"Remote daemon:"*" on node "*)  # mpirun: "  Remote daemon: [[1,0],2] on node n2"
        host=${line##*on node }
        ranks_on "${host%% *}" >>"$notes/lost" ;;
      *"Node failure on "*)  # srun: "srun: error: Node failure on n2"
        host=${line##*Node failure on }
        ranks_on "${host%% *}" >>"$notes/lost" ;;
    esac
  done
  touch "$notes/eof"
}

# In its own process group, so a Ctrl-C at the terminal reaches it only through forward(); stdin
# from /dev/null, since a background process group reading the terminal would be stopped (cairn
# reads no input).
set -m
"$@" </dev/null 2> >(watch) &
pid=$!
set +m
forward() { kill -s "$1" "$pid" 2>/dev/null; }
for sig in USR1 TERM INT HUP; do trap "forward $sig" "$sig"; done

abort_at="" ended_it=""
while kill -0 "$pid" 2>/dev/null; do
  if [ -z "$abort_at" ] && [ -f "$notes/abort" ]; then abort_at=$SECONDS; fi
  if [ -n "$abort_at" ] && ((SECONDS - abort_at >= grace)); then
    say "the launcher has not ended ${grace} s (CAIRN_ABORT_GRACE) after the job failed with \"$(cat "$notes/abort")\": ending it"
    ended_it=1
    kill -KILL "$pid" 2>/dev/null
    break
  fi
  sleep 0.5
done
wait "$pid" 2>/dev/null  # (not the shell's own "Killed" notice: the line above said it)
rc=$?
# The last lines of the launcher's stderr: until the watcher has read them all (at most 2 s: a lost
# node's daemon may hold the pipe open for good).
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -f "$notes/eof" ] && break; sleep 0.2; done
if [ -s "$notes/lost" ]; then
  say "lost: $(sort -u "$notes/lost" | paste -sd ';' | sed 's/;/; /g')"
  [ -z "${CAIRN_LOST_REPORT:-}" ] || sed 's/, rank /\nrank /g' "$notes/lost" | sort -u >"$CAIRN_LOST_REPORT"
  exit 75
fi
if [ -n "$ended_it" ] && [ "$rc" -eq 0 ]; then rc=1; fi
exit "$rc"
