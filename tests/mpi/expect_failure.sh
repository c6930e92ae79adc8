#!/usr/bin/env bash
# Runs a command that must FAIL: asserts a non-zero exit within MAX_SECONDS and, when given, a line
# of output matching PATTERN (extended regex). Used for the communicator's failure tests, where a
# passing test means the job ended instead of hanging.
# usage: expect_failure.sh MAX_SECONDS PATTERN -- command [args...]
set -u
max_seconds=$1
pattern=$2
shift 3
log=$(mktemp)
start_ms=$(($(date +%s%N) / 1000000))
timeout -k 10 $((max_seconds + 30)) "$@" >"$log" 2>&1
rc=$?
elapsed_ms=$(($(date +%s%N) / 1000000 - start_ms))
cat "$log"
echo "expect_failure: exit code $rc after ${elapsed_ms} ms (limit ${max_seconds}s)"
status=0
if [ "$rc" -eq 0 ]; then echo "expect_failure: FAIL: the command succeeded"; status=1; fi
# 124: timeout(1) had to stop it. (137 is no sign of a hang: mpirun passes on a SIGKILLed rank's code.)
if [ "$rc" -eq 124 ]; then echo "expect_failure: FAIL: the command hung and was stopped"; status=1; fi
if [ "$elapsed_ms" -gt $((max_seconds * 1000)) ]; then
  echo "expect_failure: FAIL: took longer than ${max_seconds}s"; status=1
fi
if [ -n "$pattern" ] && ! grep -Eq "$pattern" "$log"; then
  echo "expect_failure: FAIL: no output line matches /$pattern/"; status=1
fi
rm -f "$log"
exit $status
