# How bench/gpu_check.sh reads what its programs printed: each function reads one program's output
# (a file, complete or cut short by a time limit or a crash) and its exit status, and prints the
# results table's rows as "check|status|detail" lines. Every RESULT or PASS/FAIL line a program
# printed counts, whatever its exit status: a run killed after its first measurement keeps it.
# Sourced by bench/gpu_check.sh and by tests/gpu_check/parse_test.sh (recorded logs).
# has_gpu (1: nvidia-smi sees a GPU) must be set by the caller.

# A program's exit status as the table's status: 0 ok; 77 ("no CUDA device") is a SKIP only where
# no GPU is visible, and a FAIL where nvidia-smi sees one; anything else FAIL.
status_of() {
  case "$1" in
    0) echo ok ;;
    77) if [ "${has_gpu:-0}" = 1 ]; then echo FAIL; else echo SKIP; fi ;;
    *) echo FAIL ;;
  esac
}
why_of() {
  case "$1" in
    0) echo "exit 0" ;;
    77) if [ "${has_gpu:-0}" = 1 ]; then echo "exit 77 (no usable device) although nvidia-smi sees a GPU"; else echo "no device"; fi ;;
    124 | 137) echo "time limit" ;;
    134) echo "aborted (exit 134)" ;;
    139) echo "segmentation fault (exit 139)" ;;
    *) echo "exit $1" ;;
  esac
}

# kv KEY LINE: the value of KEY=value or KEY="quoted value" in a RESULT line.
kv() {
  local re_quoted=" $1=\"([^\"]*)\"" re_plain=" $1=([^ ]+)"
  if [[ $2 =~ $re_quoted ]]; then echo "${BASH_REMATCH[1]}"
  elif [[ $2 =~ $re_plain ]]; then echo "${BASH_REMATCH[1]}"; fi
}

# bench_rows NAME FILE RC: one row per cuda_bench RESULT line, then a row for the failure if it
# did not exit 0 (a time limit after two configurations keeps both).
bench_rows() {
  local name=$1 file=$2 rc=$3 line n=0 detail attention
  while IFS= read -r line; do
    n=$((n + 1))
    # RESULT kind=bench model=.. math=.. optimizer=.. B=.. T=.. tok_s=.. tflops=.. mfu=.. loss=.. memory=".." attention=".."
    detail=$(awk -v t="$(kv tok_s "$line")" -v f="$(kv tflops "$line")" -v m="$(kv mfu "$line")" -v l="$(kv loss "$line")" \
      'BEGIN {printf "%.0f tok/s, %.1f TFLOP/s, MFU %.1f%%, loss %s", t, f, 100 * m, l}')
    detail="$detail; $(kv memory "$line" | sed -e 's/^GPU [0-9]* ([^)]*): //')"
    attention=$(kv attention "$line")
    # In bf16, attention should be cuDNN's: the own fp32 kernel would read as a scaling problem.
    if [ "$(kv math "$line")" = cuda-bf16 ] && [ -n "$attention" ] && [ "${attention#cuDNN}" = "$attention" ]; then
      detail="$detail; ATTENTION FELL BACK: $attention"
    fi
    echo "$name: $(kv model "$line") $(kv math "$line") $(kv optimizer "$line") T=$(kv T "$line") B=$(kv B "$line")|ok|$detail"
  done < <(grep '^RESULT' "$file")
  if [ "$rc" != 0 ]; then
    local said
    said=$(grep -v '^RESULT' "$file" | grep -m1 -E 'cuda_bench:|SKIP|FAIL|rror|what\(\)|terminate' | cut -c1-160)
    echo "$name|$(status_of "$rc")|$(why_of "$rc")$( [ $n -gt 0 ] && echo " after $n result(s)")${said:+: $said}"
  fi
}

# The check table's key checks, each shown as its own row.
key_checks="copy_to_device_staging_ring model_graph_replay_fp32 model_graph_replay_bf16 \
model_graph_capture_failure_runs_eagerly attention_bf16_workspace_linear_in_T peak_flops"

# check_rows FILE RC: cuda_check's summary row (which checks failed; where a killed or crashed
# run was), then the key checks it reached.
check_rows() {
  local file=$1 rc=$2 summary passed failed running c line
  passed=$(grep -c '^PASS ' "$file")
  failed=$(awk '$1 == "FAIL" && NF == 2 {printf "%s ", $2}' "$file")
  # A RUN line with no PASS/FAIL after it: the check that was running when the program stopped.
  running=$(awk '$1 == "RUN" {r = $2} ($1 == "PASS" || $1 == "FAIL") && $2 == r {r = ""} END {print r}' "$file")
  summary=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$file" | tail -1)
  if [ -z "$summary" ] && [ "$passed" = 0 ] && [ -z "$running" ]; then summary="no check ran"
  elif [ -z "$summary" ]; then summary="$passed passed before it stopped"; fi
  if [ "$rc" = 0 ]; then
    echo "cuda_check (all checks)|ok|$summary"
  else
    echo "cuda_check (all checks)|$(status_of "$rc")|$(why_of "$rc"): $summary${failed:+; failed: $failed}${running:+; stopped in $running}$( \
      grep -m1 -E '^(FAIL|SKIP): ' "$file" | cut -c1-200 | sed 's/^/; /')"
  fi
  for c in $key_checks; do
    line=$(grep -E "^(PASS|FAIL) $c\$" "$file")
    if [ -n "$line" ]; then
      # Its comparisons (the failed ones when it failed), at most two.
      echo "  $c|$( [ "${line%% *}" = PASS ] && echo ok || echo FAIL)|$(awk -v c="$c" \
        '($1 == "PASS" || $1 == "FAIL") && $2 == c && NF == 2 {on = 1; next} /^(RUN|PASS|FAIL) / {on = 0} on && /^  /' "$file" |
        grep -E "$( [ "${line%% *}" = PASS ] && echo . || echo 'FAIL$')" | head -2 | tr -s ' ' | sed 's/^ //' |
        paste -s -d ';' | sed 's/;/; /g')"
    elif [ "$c" = "$running" ]; then
      echo "  $c|FAIL|$(why_of "$rc") while it ran"
    fi
  done
}

# graph_checks_failed FILE: true when a graph check failed, or the program stopped inside one.
graph_checks_failed() {
  grep -q -E '^FAIL model_graph_' "$1" && return 0
  local running
  running=$(awk '$1 == "RUN" {r = $2} ($1 == "PASS" || $1 == "FAIL") && $2 == r {r = ""} END {print r}' "$1")
  [ "${running#model_graph_}" != "$running" ]
}

# ops_test_rows FILE RC: the named GoogleTest cases of cuda_ops_test, then the program's row.
ops_test_rows() {
  local file=$1 rc=$2 t
  for t in CudaTrainTest.ResumedGpuRunEqualsUninterruptedBitForBit CudaTrainTest.CheckpointMovesCpuToGpuToCpu \
           CudaNccl.OneRankCollectivesRunOnTheDevice; do
    if grep -q "^\[       OK \] $t" "$file"; then echo "  $t|ok|"
    elif grep -q "^\[  SKIPPED \] $t" "$file"; then
      # GoogleTest prints "file:line: Skipped", then the reason.
      echo "  $t|$(status_of 77)|$(grep -A3 "^\[ RUN      \] $t" "$file" | grep -v -E '^\[|: Skipped$' | head -1 | cut -c1-100)"
    elif grep -q "^\[  FAILED  \] $t" "$file"; then
      echo "  $t|FAIL|$(awk -v t="$t" '$0 ~ "^\\[ RUN      \\] " t {on = 1; next} on && /Failure/ {print; getline; print; exit}' "$file" |
        tr -s ' ' | tr '\n' ' ' | cut -c1-160)"
    elif grep -q "^\[ RUN      \] $t" "$file"; then echo "  $t|FAIL|$(why_of "$rc") while it ran"
    fi
  done
  local status count
  status=$(status_of "$rc")
  [ "$rc" = 0 ] && [ "${has_gpu:-0}" = 0 ] && status=SKIP  # its GPU tests skip themselves without a device
  count() { grep -E "^\[ +$1 +\] [A-Za-z0-9_]+\.[A-Za-z0-9_]+ \(" "$file" | sort -u | wc -l; }
  echo "cuda_ops_test|$status|$(count OK) passed, $(count FAILED) failed, $(count SKIPPED) skipped$( \
    [ "$rc" = 0 ] || echo "; $(why_of "$rc")")"
}

# train_row NAME FILE RC: cairn train's last logged step (loss, tok/s, MFU) and, on failure, its error.
train_row() {
  local name=$1 file=$2 rc=$3 last attention
  last=$(grep -E '^step ' "$file" | tail -1 | grep -o -E 'step [0-9]+|loss [0-9.]+|[0-9.]+[kM]? tok/s|MFU [0-9.]+%' | tr '\n' ' ')
  attention=$(grep -m1 -o -E 'attention: .*' "$file" | cut -c1-60)
  if [ "$rc" = 0 ]; then
    echo "$name|ok|$last$attention"
  else
    local error
    error=$(grep -m1 -E 'Error|error|what\(\)|terminate' "$file" | cut -c1-120)
    echo "$name|$(status_of "$rc")|$(why_of "$rc")${last:+ (last: ${last% })}${error:+: $error}"
  fi
}

# sanitizer_row NAME FILE RC: compute-sanitizer's verdict. Hazards fail; a time limit with none so
# far passes (what it checked, it checked); the sanitizer refusing the device or the program (its
# own "Error:" lines, or a run that never got to the checks) is a SKIP, not a failure of cairn.
sanitizer_row() {
  local name=$1 file=$2 rc=$3 hazards ran refused
  # memcheck and synccheck end with "ERROR SUMMARY: N errors", racecheck with "RACECHECK SUMMARY:
  # N hazards displayed (E errors, W warnings)"; without either (cut short), count the reports.
  hazards=$(sed -n -E -e 's/^========= ERROR SUMMARY: ([0-9]+) error.*/\1/p' \
    -e 's/^========= RACECHECK SUMMARY: .*\(([0-9]+) error.*/\1/p' "$file" | tail -1)
  [ -n "$hazards" ] || hazards=$(grep -c -E '^========= (Invalid|Error: Race|ERROR: Potential|Barrier error|Uninitialized|Program hit|Malloc/Free error|Leaked)' "$file")
  ran=$(grep -c -E '^(PASS|FAIL) ' "$file")
  refused=$(grep -m1 -E '^========= (Internal Sanitizer Error|Error: )' "$file" | grep -v 'Error: Race' | cut -c11-140)
  if [ "$hazards" != 0 ]; then
    echo "$name|FAIL|$hazards hazards ($(why_of "$rc"), $ran checks ran): $(grep -m1 -E '^========= (Invalid|Error: Race|ERROR|Barrier|Uninitialized|Program hit)' "$file" | cut -c11-130)"
  elif [ -n "$refused" ]; then
    echo "$name|SKIP|the sanitizer could not run here: $refused"
  elif [ "$ran" = 0 ]; then
    echo "$name|SKIP|no check ran under the sanitizer ($(why_of "$rc"))"
  elif [ "$rc" = 0 ]; then
    echo "$name|ok|no hazards; $(grep -E '^[0-9]+ passed' "$file" | tail -1)"
  elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "$name|ok|time limit reached, no hazards in the $ran checks done"
  else
    echo "$name|FAIL|$(why_of "$rc") without hazards: failed under the sanitizer: $(awk '$1 == "FAIL" && NF == 2 {printf "%s ", $2}' "$file")"
  fi
}

# unresolved_libs FILE...: "file: library" for each library ldd cannot resolve.
unresolved_libs() {
  local f
  for f in "$@"; do
    ldd "$f" 2>&1 | awk -v f="${f##*/}" '/not found/ {print f ": " $1}'
  done
}

# cuda_libs_of FILE: the CUDA libraries ldd resolves FILE's to, as the files they are (versions).
cuda_libs_of() {
  ldd "$1" 2>/dev/null | awk '$1 ~ /cudart|cublas|cudnn|nccl|cusolver|nvrtc/ && $3 ~ /^\// {print $3}' |
    while read -r lib; do real=$(readlink -f "$lib"); basename "${real:-$lib}"; done | sort -u | tr '\n' ' '
}
