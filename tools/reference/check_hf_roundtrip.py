#!/usr/bin/env python3
"""CTest hf_roundtrip_loads_in_transformers: each checkpoint of tests/golden/hf/ goes through
`cairn import` and `cairn export`, and transformers loads the export as a plain LlamaForCausalLM
whose logits, in float64 on the fixture's golden input ids, equal the original checkpoint's
(every weight came back exactly, so the two must agree to rounding: 1e-10 absolute). Also checks
that the export keeps the original's dtype and config (heads, key/value heads, head size, rope).

Exit 77 (skipped) when transformers or torch is missing: CI has no Python packages.
Run: python3 tools/reference/check_hf_roundtrip.py build/cairn tests/golden/hf WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

try:
    import torch
    from transformers import LlamaForCausalLM
except ImportError as e:
    print(f"skipped: {e} (pip install torch transformers)")
    sys.exit(77)
from safetensors.torch import load_file

FIXTURES = ["mha", "gqa_tied", "gqa_llama3_bf16", "sharded"]
KEYS = ["num_attention_heads", "num_key_value_heads", "head_dim", "hidden_size", "intermediate_size",
        "num_hidden_layers", "vocab_size", "tie_word_embeddings", "rms_norm_eps"]


def rope_of(cfg):
    """(theta, scaling) from either spelling: top-level rope_theta/rope_scaling or rope_parameters."""
    params = cfg.get("rope_parameters") or {}
    theta = params.get("rope_theta", cfg.get("rope_theta"))
    scaling = cfg.get("rope_scaling") or params
    kind = scaling.get("rope_type", scaling.get("type", "default")) if scaling else "default"
    extra = {k: scaling[k] for k in ("factor", "low_freq_factor", "high_freq_factor",
                                     "original_max_position_embeddings") if kind == "llama3"}
    return theta, kind, extra


def logits_of(path, ids):
    model = LlamaForCausalLM.from_pretrained(path, torch_dtype=torch.float32).to(torch.float64).eval()
    with torch.no_grad():
        return model(input_ids=ids).logits


def main():
    cairn, fixtures, work = sys.argv[1:4]
    torch.set_num_threads(1)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    failed = False
    for name in FIXTURES:
        src = os.path.join(fixtures, name)
        weights, export = os.path.join(work, name + ".h5"), os.path.join(work, name)
        dtype = {"mha": "fp32", "gqa_tied": "fp32", "gqa_llama3_bf16": "bf16", "sharded": "fp16"}[name]
        subprocess.run([cairn, "import", "hf:" + src, "--out", weights], check=True, stdout=subprocess.DEVNULL)
        tok = ["--tokenizer-from", "hf:" + src] if os.path.exists(os.path.join(src, "tokenizer.json")) else []
        subprocess.run([cairn, "export", weights, "--format", "hf", "--out", export, "--dtype", dtype] + tok,
                       check=True, stdout=subprocess.DEVNULL)
        a, b = json.load(open(os.path.join(src, "config.json"))), json.load(open(os.path.join(export, "config.json")))
        for k in KEYS:
            if a.get(k) != b.get(k) and not (k == "head_dim" and a.get(k) is None):
                print(f"{name}: config {k} {a.get(k)} -> {b.get(k)}")
                failed = True
        if rope_of(a) != rope_of(b):
            print(f"{name}: rope {rope_of(a)} -> {rope_of(b)}")
            failed = True
        ids = load_file(os.path.join(src, "logits.safetensors"))["input_ids"].to(torch.int64)
        diff = (logits_of(src, ids) - logits_of(export, ids)).abs().max().item()
        ok = diff <= 1e-10
        failed |= not ok
        print(f"{name}: transformers logits of the export vs the original: max |diff| {diff:.3e}"
              f" {'ok' if ok else 'FAILED'}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
