#!/usr/bin/env bash
# Continual pre-training of a Hugging Face model, end to end, at toy scale:
#   0. the "released" model: a small LLaMA (GQA 2:1, llama3 rope scaling, the LLaMA-3-style BPE of
#      tests/golden/hf_llama3_style.json) pre-trained on English fortunes and exported in bf16 —
#      re-saved by transformers' own save_pretrained when Python has it, so the import reads a
#      directory transformers wrote;
#   1. prepare German fortunes (the new domain) and English (replay) with the model's tokenizer
#      (--tokenizer hf:DIR);
#   2. continue from model.init_from = "hf:DIR" (the architecture from config.json) with re-warming
#      and re-decaying and 25% English replay;
#   3. export, load the export in transformers and evaluate it on both corpora (when Python has
#      torch and transformers), and cairn eval the imported and the continued model on both.
# Prints forgetting (English) and the new corpus's (German) loss against the imported model's.
# Usage: bash bench/continual_hf.sh [build dir]   (PYTHON=/path/to/python for the transformers steps)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
CAIRN=$BUILD/cairn
PY=${PYTHON:-python3}
OUT=runs/bench-continual-hf
STAGE=${STAGE:-400}   # optimizer steps per stage
THREADS=${THREADS:-1}
rm -rf $OUT && mkdir -p $OUT
TOKENIZER=hf:tests/golden/hf_llama3_style.json
$CAIRN prepare --tokenizer $TOKENIZER --out $OUT/en0 > /dev/null
COMMON=(--set model.seq_len=64 --set training.micro_batch=8 --set training.eval_every=50 --set training.eval_windows=128
        --set training.log_every=50 --set training.threads=$THREADS --set training.peak_flops=1e10
        --set schedule.min_lr_ratio=0.1 --set output.plot=false --set output.tensorboard=false)
run() {  # name, then extra args
  local name=$1; shift
  $CAIRN train "${COMMON[@]}" --set output.run_dir=$OUT/$name "$@" > $OUT/$name.log 2>&1 || { cat $OUT/$name.log; exit 1; }
}

# 0. The released model.
run base --set data.train=$OUT/en0 --set model.vocab_size=0 --set model.dim=64 --set model.n_layers=4 --set model.n_heads=4 \
    --set model.n_kv_heads=2 --set model.ffn_dim=176 --set model.rope_type=llama3 --set model.rope_original_context=32 \
    --set model.rope_theta=500000 --set training.steps=$STAGE --set schedule.lr=3e-3 --set schedule.warmup=0.05
$CAIRN export $OUT/base --format hf --dtype bf16 --out $OUT/released_cairn > /dev/null
RELEASED=$OUT/released_cairn
if "$PY" -c "import transformers, torch" 2> /dev/null; then
  "$PY" - "$OUT" <<'PY'
import sys
from transformers import AutoTokenizer, LlamaForCausalLM
out = sys.argv[1]
model = LlamaForCausalLM.from_pretrained(f"{out}/released_cairn")
model.save_pretrained(f"{out}/released")
for f in ("tokenizer.json", "tokenizer_config.json"):
    open(f"{out}/released/{f}", "w").write(open(f"{out}/released_cairn/{f}").read())
PY
  RELEASED=$OUT/released
fi

# 1. Both corpora with the model's own tokenizer and EOS.
$CAIRN prepare --input /usr/share/games/fortunes/de --split-on % --tokenizer hf:$RELEASED --out $OUT/de > /dev/null
$CAIRN prepare --tokenizer hf:$RELEASED --out $OUT/en > /dev/null
$CAIRN import hf:$RELEASED --out $OUT/imported.h5 --seq-len 64 > /dev/null

# 2. Continue: re-warm to the old peak, re-decay, 25% replay.
run continued --set model.init_from=hf:$RELEASED --set data.mixture='["'$OUT/de':0.75", "'$OUT/en':0.25"]' \
    --set schedule.kind=rewarm --set schedule.lr=3e-3 --set training.steps=$STAGE
$CAIRN export $OUT/continued --format hf --dtype bf16 --tokenizer-from hf:$RELEASED --out $OUT/continued_hf > /dev/null

# 3. Evaluate both models on both corpora (the same first 128 validation windows).
for m in imported.h5 continued; do
  $CAIRN eval $OUT/$m --data $OUT/en --data $OUT/de --windows 128 --json $OUT/eval_${m%.h5}.json > /dev/null
done
"$PY" - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def losses(name):
    rows = json.load(open(f"{out}/eval_{name}.json"))["results"]
    return {r["data"].rstrip("/").split("/")[-1]: r["loss"] for r in rows}
a, b = losses("imported"), losses("continued")
print("| model | val loss English | val loss German |")
print("|---|---|---|")
print(f"| imported (released) | {a['en']:.4f} | {a['de']:.4f} |")
print(f"| continued (re-warm, re-decay, 25% replay) | {b['en']:.4f} | {b['de']:.4f} |")
print(f"forgetting (English loss change): {b['en'] - a['en']:+.4f}; German loss change: {b['de'] - a['de']:+.4f}")
PY
# transformers on the continued export, the same validation windows as cairn eval (windows of
# seq_len + 1 tokens every seq_len tokens of the validation split, the first 128).
if "$PY" -c "import transformers, torch, h5py" 2> /dev/null; then
  "$PY" - "$OUT" <<'PY'
import json, sys
import h5py, numpy as np, torch, torch.nn.functional as F
from transformers import LlamaForCausalLM
out, T, count = sys.argv[1], 64, 128
model = LlamaForCausalLM.from_pretrained(f"{out}/continued_hf", dtype=torch.float32).eval()
for corpus in ("en", "de"):
    manifest = json.load(open(f"{out}/{corpus}/manifest.json"))
    tokens = np.concatenate([h5py.File(f"{out}/{corpus}/{s['file']}")["tokens"][:].astype(np.int64)
                             for s in manifest["val"]])
    n = min(count, (len(tokens) - 1) // T)
    w = torch.from_numpy(np.stack([tokens[i * T: i * T + T + 1] for i in range(n)]))
    with torch.no_grad():
        logits = model(input_ids=w[:, :-1]).logits
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), w[:, 1:].reshape(-1)).item()
    print(f"transformers LlamaForCausalLM, continued export, {corpus}: loss {loss:.4f} on {n} windows")
PY
fi
