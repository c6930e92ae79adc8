#!/usr/bin/env python3
"""Development check (not CI): a `cairn export --format hf` directory loads in Hugging Face
transformers as a plain LlamaForCausalLM (no custom code) and gives the same loss as `cairn eval`.

Takes the export directory, the cairn weights it came from and a token dataset; computes the mean
next-token loss of transformers' model on the first BATCHES x MICRO_BATCH windows of the split
(windows of seq_len + 1 tokens starting every seq_len tokens, in order: docs/formats.md), runs
`cairn eval` on the same windows, and prints both and the difference.

Tolerance: 1e-4 (absolute, nats) for an fp32 export — both sides compute in fp32 and differ only
in summation order; 2e-2 for a bf16 export, whose weights are rounded to 8-bit mantissas (transformers
then runs in fp32, cairn on the unrounded fp32 weights). Exit status 1 when the difference exceeds it.

For a SentencePiece export it also loads the tokenizer with AutoTokenizer (transformers converts
tokenizer.model, which needs `pip install sentencepiece protobuf`) and counts the validation
documents it encodes exactly as SentencePiece itself (cairn's tokenizer) does. Known difference:
text that starts with a space (transformers' converted Llama tokenizer folds it into the prefix).

Install: pip install torch transformers safetensors h5py numpy [sentencepiece protobuf]
Run:     python3 tools/reference/check_hf_export.py EXPORT_DIR WEIGHTS_OR_CKPT DATASET.h5 \
             [--cairn build/cairn] [--split val] [--batches 4] [--micro-batch 4]
"""
import argparse
import json
import subprocess
import sys
import tempfile

import h5py
import numpy as np
import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaForCausalLM


def windows(dataset, split, seq_len, count):
    """The first `count` windows [count, seq_len + 1] of the split, as cairn's sampler cuts them."""
    with h5py.File(dataset, "r") as f:
        tokens = f["tokens"]
        val_start = int(f.attrs["val_start"])
        first, n = (val_start, tokens.shape[0] - val_start) if split == "val" else (0, val_start)
        available = (n - 1) // seq_len
        count = min(count, available)
        rows = [tokens[first + i * seq_len: first + i * seq_len + seq_len + 1].astype(np.int64) for i in range(count)]
    return torch.from_numpy(np.stack(rows))


def hf_loss(export_dir, batch):
    try:
        model = LlamaForCausalLM.from_pretrained(export_dir, dtype=torch.float32, attn_implementation="eager")
    except TypeError:  # transformers < 4.56 calls it torch_dtype
        model = LlamaForCausalLM.from_pretrained(export_dir, torch_dtype=torch.float32, attn_implementation="eager")
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=batch[:, :-1]).logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), batch[:, 1:].reshape(-1)).item()


def cairn_loss(cairn, weights, dataset, split, batches, micro_batch):
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([cairn, "eval", weights, "--data", dataset, "--split", split, "--batches", str(batches),
                        "--micro-batch", str(micro_batch), "--json", out.name], check=True, stdout=subprocess.DEVNULL)
        result = json.load(open(out.name))["results"][0]
    return result["loss"], result["windows"]


def check_tokenizer(export_dir, dataset, count=200):
    """Documents of the validation split that transformers' tokenizer encodes like SentencePiece."""
    import sentencepiece
    from transformers import AutoTokenizer
    hf = AutoTokenizer.from_pretrained(export_dir)
    sp = sentencepiece.SentencePieceProcessor(model_file=f"{export_dir}/tokenizer.model")
    with h5py.File(dataset, "r") as f:
        offsets = f["doc_offsets"][:]
        first = int(np.searchsorted(offsets, int(f.attrs["val_start"])))
        docs = [f["tokens"][offsets[i]:offsets[i + 1] - 1].tolist() for i in range(first, min(first + count, len(offsets) - 1))]
    texts = [sp.decode(d) for d in docs]
    same = sum(hf.encode(t, add_special_tokens=False) == sp.encode(t) for t in texts)
    print(f"  tokenizer: {type(hf).__name__} encodes {same}/{len(texts)} validation documents exactly as SentencePiece")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir")
    ap.add_argument("weights", help="the cairn weights file or checkpoint the export came from")
    ap.add_argument("dataset")
    ap.add_argument("--cairn", default="build/cairn")
    ap.add_argument("--split", default="val", choices=["val", "train"])
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--micro-batch", type=int, default=4)
    args = ap.parse_args()

    config = json.load(open(f"{args.export_dir}/config.json"))
    tolerance = 2e-2 if config.get("torch_dtype") == "bfloat16" else 1e-4
    batch = windows(args.dataset, args.split, config["max_position_embeddings"], args.batches * args.micro_batch)
    theirs = hf_loss(args.export_dir, batch)
    ours, count = cairn_loss(args.cairn, args.weights, args.dataset, args.split, args.batches, args.micro_batch)
    if count != batch.shape[0]:
        sys.exit(f"cairn evaluated {count} windows, this script {batch.shape[0]}: the windows differ")
    diff = abs(theirs - ours)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}; {config.get('torch_dtype')} export; "
          f"{count} {args.split} windows of {config['max_position_embeddings']} tokens")
    print(f"  transformers LlamaForCausalLM loss: {theirs:.8f}")
    print(f"  cairn eval loss:                    {ours:.8f}")
    print(f"  |difference| = {diff:.3e}  (tolerance {tolerance:g}): {'OK' if diff <= tolerance else 'FAIL'}")
    try:
        import os
        if os.path.exists(f"{args.export_dir}/tokenizer.model"):
            check_tokenizer(args.export_dir, args.dataset)
    except ImportError as e:
        print(f"  tokenizer: not checked ({e}; pip install sentencepiece protobuf)")
    sys.exit(0 if diff <= tolerance else 1)


if __name__ == "__main__":
    main()
