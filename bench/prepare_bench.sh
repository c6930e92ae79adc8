#!/usr/bin/env bash
# Throughput of `cairn prepare` against SentencePiece's own spm_encode on the same text and the same
# number of threads, and peak memory on a large compressed corpus.
#   1. make_corpus.py writes MB megabytes of text as JSON Lines (for cairn) and as plain lines (for
#      spm_encode: the same texts), and a SentencePiece model (vocabulary 8000) is trained once.
#   2. For each thread count N: cairn prepare with the byte tokenizer and with the SentencePiece
#      model (--workers N), and spm_encode run as N processes on N equal line-splits of the text
#      (spm_encode has no threads). MB/s is text megabytes over wall time; per core divides by N.
#   3. With BIG_MB > 0: peak RSS (/usr/bin/time -v) of preparing BIG_MB megabytes of text as
#      zstd-compressed JSON Lines with the byte tokenizer, then the time of training's token check
#      over it, first and cached (the corpus and output are deleted after).
# Run it on a quiet machine (check `uptime`): the numbers are wall-clock.
# usage: bench/prepare_bench.sh BUILD_DIR [MB=50] [THREADS="1 2"] [BIG_MB=0]
set -euo pipefail
build=$(cd "${1:?usage: prepare_bench.sh BUILD_DIR [MB] [THREADS] [BIG_MB]}" && pwd)
mb=${2:-50} threads=${3:-1 2} big_mb=${4:-0}
here=$(cd "$(dirname "$0")" && pwd)
cairn=$build/cairn
command -v spm_encode >/dev/null || { echo "prepare_bench: spm_encode not found (Debian package sentencepiece)"; exit 1; }
work=$(mktemp -d /tmp/cairn-prepare-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "prepare_bench: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg), $mb MB of text"
python3 "$here/make_corpus.py" "$work/corpus.jsonl" "$mb" --text "$work/corpus.txt"
"$cairn" prepare --input /usr/share/games/fortunes --split-on % --tokenizer sentencepiece --vocab-size 8000 \
    --out "$work/tok" --workers "$(nproc)" >/dev/null
model=$work/tok/tokenizer.model
text_mb=$(python3 -c "import os; print(os.path.getsize('$work/corpus.txt') / 1e6)")

# seconds COMMAND...: wall seconds of COMMAND (its output discarded).
seconds() {
  local t0 t1
  t0=$(date +%s.%N)
  "$@" >/dev/null
  t1=$(date +%s.%N)
  python3 -c "print($t1 - $t0)"
}
prepare() {  # TOKENIZER N
  rm -rf "$work/out"
  "$cairn" prepare --input "$work/corpus.jsonl" --out "$work/out" --tokenizer "$1" --workers "$2"
}
spm_parallel() {  # N
  rm -f "$work"/split.*
  split -n "l/$1" -d "$work/corpus.txt" "$work/split."
  local pids=() f
  for f in "$work"/split.*; do
    spm_encode --model "$model" --output_format id <"$f" >/dev/null & pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p"; done
}
row() {  # NAME N SECONDS
  python3 -c "print(f'| {\"$1\":<32} | {$2:>7} | {$3:>8.2f} | {$text_mb / $3:>8.1f} | {$text_mb / $3 / $2:>13.1f} |')"
}

echo
echo "| tokenizer                        | threads |  seconds |     MB/s | MB/s per core |"
echo "|----------------------------------|---------|----------|----------|---------------|"
for n in $threads; do
  row "cairn prepare, byte" "$n" "$(seconds prepare byte "$n")"
  row "cairn prepare, sentencepiece" "$n" "$(seconds prepare "sentencepiece:$model" "$n")"
  row "spm_encode (N processes)" "$n" "$(seconds spm_parallel "$n")"
done

if [ "$big_mb" != 0 ]; then
  echo
  python3 "$here/make_corpus.py" "$work/big.jsonl.zst" "$big_mb"
  echo "compressed: $(du -h "$work/big.jsonl.zst" | cut -f1)"
  n=$(nproc)
  /usr/bin/time -v "$cairn" prepare --input "$work/big.jsonl.zst" --out "$work/big" --workers "$n" 2>"$work/time.txt"
  grep -E "Maximum resident|Elapsed \(wall" "$work/time.txt"
  echo "output: $(du -sh "$work/big" | cut -f1)"
  # The start-of-training token check over the whole dataset: read and hashed once, then cached.
  for run in first again; do
    CAIRN_CACHE_DIR=$work/cache "$cairn" train --config "$here/../configs/tiny-test.toml" --set data.train="$work/big" \
        --set training.steps=1 --set output.run_dir="$work/run-$run" --set output.plot=false \
        --set training.peak_flops=1e9 | grep "token check" | sed "s/^/$run: /"
  done
fi
