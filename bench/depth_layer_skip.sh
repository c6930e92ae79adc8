#!/usr/bin/env bash
# "Do later layers contribute?": the validation-loss increase when one layer is skipped (its input
# passed through, `cairn eval --skip-layer each`), per layer, for the three runs of
# bench/depth_repro.sh (Pre-LN, Mix-LN, LayerNorm Scaling). The papers' claim to compare with: in
# Pre-LN the deeper layers matter least (small increases), and both methods raise the deeper
# layers' share. Prints the table and the mean increase over the first and the second half.
# Usage: [OUT=runs/bench-depth] bash bench/depth_layer_skip.sh [build dir]   (after bench/depth_repro.sh
# with the same OUT; a few minutes). THREADS defaults to 1, as in bench/depth_repro.sh: eval took all
# cores before it had --threads, and on a shared 2-core machine its OpenMP threads mostly waited.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
OUT=${OUT:-runs/bench-depth}
for run in pre mix lns; do
  [ -f $OUT/$run/model.h5 ] || { echo "no $OUT/$run/model.h5: run bench/depth_repro.sh first" >&2; exit 1; }
  $BUILD/cairn eval $OUT/$run --data out/fortunes --skip-layer each --windows ${WINDOWS:-256} \
      --micro-batch 16 --threads ${THREADS:-1} --json $OUT/$run-skip.json > /dev/null
done
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
runs = {"pre": "Pre-LN", "mix": "Mix-LN", "lns": "LN Scaling"}
delta = {}
for r in runs:
    res = json.load(open(f"{out}/{r}-skip.json"))["results"]
    whole = next(x["loss"] for x in res if "skipped_layer" not in x)
    delta[r] = [x["loss"] - whole for x in res if "skipped_layer" in x]
    print(f"{runs[r]}: validation loss {whole:.4f} with every layer")
L = len(delta["pre"])
print("\nloss increase when layer l (1-based) is skipped")
print("layer" + "".join(f"{n:>14}" for n in runs.values()))
for l in range(L):
    print(f"{l + 1:>5}" + "".join(f"{delta[r][l]:>14.4f}" for r in runs))
half = L // 2
for name, part in (("mean, layers 1..%d" % half, slice(0, half)), ("mean, layers %d..%d" % (half + 1, L), slice(half, L))):
    print(f"{name:<18}" + "".join(f"{sum(delta[r][part]) / len(delta[r][part]):>10.4f}    " for r in runs))
PY
