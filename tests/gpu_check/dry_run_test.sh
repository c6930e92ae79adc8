#!/usr/bin/env bash
# bench/gpu_check.sh end to end on the CPU (DRY_RUN=1: tests/gpu_check/'s stand-ins for nvidia-smi,
# ldd, compute-sanitizer and the programs replay recorded outputs), time limits divided by 10:
#   mixed   every kind of trouble: a failed graph check (later sections without graphs), a failed
#           GoogleTest case, a training run and a benchmark deaf to SIGTERM (killed by timeout -k,
#           their measurements kept), a refused and a racy sanitizer run, exit 77 with a GPU visible
#   pass    everything passes; the no-graphs benchmark runs with CAIRN_CUDA_GRAPHS=0
#   budget  BUDGET=0: every section skipped and said so, and that is a failure
#   killed  the script itself killed mid-run: the rows so far are in results.txt
# Each results table must equal tests/gpu_check/expected_<scenario>.txt (dates and seconds aside).
#   bash tests/gpu_check/dry_run_test.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
script=$here/../../bench/gpu_check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
check() {  # check WHAT CONDITION...
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
# The table without its date line, with seconds as N.
table() { tail -n +2 "$1" | sed -E 's/total [0-9]+ s of/total N s of/; s/time left \(-?[0-9]+ s of/time left (N s of/'; }
same_table() {  # same_TABLE SCENARIO
  if diff <(table "$tmp/$1/results.txt") "$here/expected_$1.txt" > "$tmp/$1.diff"; then return 0; fi
  cat "$tmp/$1.diff"
  return 1
}
scenario() {  # scenario NAME VARIABLES...: runs the script, echoes its exit status
  local name=$1
  shift
  env "$@" DRY_RUN=1 OUT="$tmp/$name" bash "$script" > "$tmp/$name.log" 2>&1
  echo $?
}

rc=$(scenario mixed GPU_CHECK_SCENARIO=mixed TIME_SCALE=10)
check "mixed: exit status 1" [ "$rc" = 1 ]
check "mixed: the results table" same_table mixed
total=$(sed -n -E 's/^total ([0-9]+) s of a ([0-9]+) s budget.*/\1 \2/p' "$tmp/mixed/results.txt")
check "mixed: within the budget ($total)" [ "${total% *}" -le "${total#* }" ]
check "mixed: every benchmark after the failed graph check ran without graphs" \
  [ "$(grep '^graphs:' "$tmp/mixed/bench.log" | sort -u)" = "graphs: CAIRN_CUDA_GRAPHS=0" ]
check "mixed: the hung trainer was told to stop, then killed" grep -q "SIGTERM: stopping after this step" "$tmp/mixed/train.log"
check "mixed: at most 8 files come back" [ "$(ls "$tmp/mixed" | wc -l)" -le 8 ]

rc=$(scenario pass GPU_CHECK_SCENARIO=pass TIME_SCALE=10)
check "pass: exit status 0" [ "$rc" = 0 ]
check "pass: the results table" same_table pass
check "pass: only the no-graphs benchmark ran without graphs" \
  [ "$(grep -A1 'no CUDA graphs: cuda_bench' "$tmp/pass/bench.log" | tail -1)" = "graphs: CAIRN_CUDA_GRAPHS=0" ] && \
  [ "$(grep -c '^graphs: CAIRN_CUDA_GRAPHS=0' "$tmp/pass/bench.log")" = 1 ]

rc=$(scenario budget GPU_CHECK_SCENARIO=pass BUDGET=0)
check "budget: exit status 1" [ "$rc" = 1 ]
check "budget: the results table" same_table budget

# Killed from outside while the 350M training run hangs (it starts after a few seconds and takes 9):
# every row until then is already in results.txt.
(exec env GPU_CHECK_SCENARIO=mixed TIME_SCALE=10 DRY_RUN=1 OUT="$tmp/killed" bash "$script" > "$tmp/killed.log" 2>&1) &
pid=$!
for _ in $(seq 60); do
  sleep 0.5
  grep -q '^train tiny GaLore' "$tmp/killed/results.txt" 2>/dev/null && break
done
kill -KILL "$pid"
wait "$pid" 2>/dev/null
check "killed: the rows before the kill are in results.txt" grep -q '^train tiny GaLore bf16 .* ok ' "$tmp/killed/results.txt"
check "killed: cuda_check's row too" grep -q '^cuda_check (all checks) .* FAIL ' "$tmp/killed/results.txt"
check "killed: no total line (the script did not finish)" bash -c "! grep -q '^total' '$tmp/killed/results.txt'"

echo "$fails failed"
[ "$fails" = 0 ]
