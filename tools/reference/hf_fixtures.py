#!/usr/bin/env python3
"""Small Hugging Face LLaMA checkpoints for cairn's import tests: tests/golden/hf/<name>/.

Each model is a transformers LlamaForCausalLM with random weights (norm gains too, so a misplaced
gain shows), written by transformers' own save_pretrained, with golden logits in logits.safetensors:
"input_ids" [B, T] (F32, small integers, exact) and "logits" [B, T, V] (F32), computed by
transformers in float64 from the saved weights (a bf16 checkpoint's values, upcast exactly), so a
comparison measures cairn's fp32 error alone. cairn's C++ tests read only these files: CI needs no
Python.

| name              | what it covers                                                            |
|-------------------|---------------------------------------------------------------------------|
| mha               | n_kv_heads = n_heads, untied head, fp32, rope_theta 10000                 |
| gqa_tied          | GQA 4:1 (8 query heads, 2 key/value), tied embeddings, fp32               |
| gqa_llama3_bf16   | GQA 2:1, head_dim 16 != hidden/heads, llama3 rope scaling, bf16 weights,  |
|                   | with a tokenizer (tokenizer.json, generation_config.json EOS) for prepare |
| sharded           | mha's architecture in fp16, split by max_shard_size into several shards   |
|                   | with model.safetensors.index.json                                         |

Install: pip install torch transformers safetensors
Run:     python3 tools/reference/hf_fixtures.py --out tests/golden/hf
"""
import argparse
import json
import os
import shutil

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "..", "tests", "golden", "hf_llama3_style.json")
B, T = 2, 12


def tokenizer_vocab(path):
    j = json.load(open(path))
    ids = list(j["model"]["vocab"].values()) + [t["id"] for t in j["added_tokens"]]
    eos = next(t["id"] for t in j["added_tokens"] if t["content"] == "<|end_of_text|>")
    return max(ids) + 1, eos


def presets():
    vocab, eos = tokenizer_vocab(TOKENIZER)
    common = dict(hidden_act="silu", attention_bias=False, mlp_bias=False, initializer_range=0.2,
                  max_position_embeddings=256)
    return {
        "mha": (dict(vocab_size=257, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=10000.0,
                     tie_word_embeddings=False, **common), torch.float32, None),
        "gqa_tied": (dict(vocab_size=257, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                          num_attention_heads=8, num_key_value_heads=2, rms_norm_eps=1e-5, rope_theta=500000.0,
                          tie_word_embeddings=True, **common), torch.float32, None),
        "gqa_llama3_bf16": (dict(vocab_size=vocab, hidden_size=48, intermediate_size=64, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5,
                                 rope_theta=500000.0, tie_word_embeddings=False, bos_token_id=eos, eos_token_id=eos,
                                 rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                                   high_freq_factor=4.0, original_max_position_embeddings=64),
                                 **common), torch.bfloat16, "tokenizer"),
        "sharded": (dict(vocab_size=257, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=10000.0,
                         tie_word_embeddings=False, **common), torch.float16, "shards"),
    }


def make(name, kwargs, dtype, extra, out, seed):
    torch.manual_seed(seed)
    config = LlamaConfig(**kwargs)
    model = LlamaForCausalLM(config).to(torch.float32)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
    model = model.to(dtype)
    target = os.path.join(out, name)
    shutil.rmtree(target, ignore_errors=True)
    model.save_pretrained(target, max_shard_size="60KB" if extra == "shards" else "1GB")
    if extra == "tokenizer":
        shutil.copy(TOKENIZER, os.path.join(target, "tokenizer.json"))
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|end_of_text|>"},
                  open(os.path.join(target, "tokenizer_config.json"), "w"), indent=2)

    # Golden logits from the saved files themselves, in float64.
    reloaded = LlamaForCausalLM.from_pretrained(target, torch_dtype=torch.float32).to(torch.float64).eval()
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, config.vocab_size, (B, T), generator=g)
    with torch.no_grad():
        logits = reloaded(input_ids=ids).logits
    save_file({"input_ids": ids.to(torch.float32).contiguous(), "logits": logits.to(torch.float32).contiguous()},
              os.path.join(target, "logits.safetensors"))
    size = sum(os.path.getsize(os.path.join(target, f)) for f in os.listdir(target))
    print(f"{name}: {sorted(os.listdir(target))}, {size / 1e3:.0f} kB")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(HERE, "..", "..", "tests", "golden", "hf"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    for i, (name, (kwargs, dtype, extra)) in enumerate(presets().items()):
        make(name, kwargs, dtype, extra, args.out, 100 + 10 * i)


if __name__ == "__main__":
    main()
