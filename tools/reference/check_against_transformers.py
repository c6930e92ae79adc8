#!/usr/bin/env python3
"""Self-check (not CI): the reference LLaMA in llama_reference.py follows Hugging Face's convention.

Loads the tiny model's float32 initial weights into transformers' LlamaForCausalLM (strict names),
runs both in float64 on the golden batch 0, and prints the max |diff| of logits and gradients.
Hugging Face rounds three intermediates to float32 even in a float64 model (the RoPE tables, the
RMSNorm normalisation, the eager softmax), so the check runs twice: stock (differences ~1e-8 from
those roundings) and with those three steps kept in float64, formulas unchanged (must be < 1e-10).

Install: pip install torch h5py numpy transformers
Run:     python3 tools/reference/check_against_transformers.py
"""
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.models.llama import modeling_llama

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_reference import ADAMW, TINY, Llama, init_weights  # noqa: E402

TOLERANCE = 1e-10


def rope_forward_float64(self, x, position_ids):
    """LlamaRotaryEmbedding.forward with the angles in float64 (as the golden file uses)."""
    inv_freq = self.inv_freq.to(torch.float64)
    freqs = position_ids[..., None].to(torch.float64) * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    return (emb.cos() * self.attention_scaling).to(x.dtype), (emb.sin() * self.attention_scaling).to(x.dtype)


def rmsnorm_forward_float64(self, hidden_states):
    """LlamaRMSNorm.forward without its cast to float32."""
    variance = hidden_states.pow(2).mean(-1, keepdim=True)
    return self.weight * (hidden_states * torch.rsqrt(variance + self.variance_epsilon))


def hf_model(cfg, state, float64):
    config = LlamaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["dim"], intermediate_size=cfg["ffn_dim"],
        num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
        num_key_value_heads=cfg["n_heads"], max_position_embeddings=cfg["seq_len"],
        rms_norm_eps=cfg["norm_eps"], rope_theta=cfg["rope_theta"], hidden_act="silu",
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        attention_dropout=0.0,
        # sdpa keeps the softmax in the input dtype; eager rounds it to float32
        attn_implementation="sdpa" if float64 else "eager")
    model = LlamaForCausalLM(config).to(torch.float64)
    model.load_state_dict(state, strict=True)
    rope = model.model.rotary_emb
    if float64:
        for module in model.modules():
            if isinstance(module, modeling_llama.LlamaRMSNorm):
                module.forward = rmsnorm_forward_float64.__get__(module)
        head_size = cfg["dim"] // cfg["n_heads"]
        j = torch.arange(0, head_size, 2, dtype=torch.float64)
        rope.inv_freq = 1.0 / (cfg["rope_theta"] ** (j / head_size))
        rope.forward = rope_forward_float64.__get__(rope)
    return model


def logits_and_grads(model, forward, tokens):
    logits = forward(tokens[:, :-1])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
    model.zero_grad(set_to_none=True)
    loss.backward()
    return logits.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def main():
    torch.set_num_threads(1)
    seed = 1337
    ours = Llama(TINY)
    init_weights(ours, seed)
    ours = ours.to(torch.float64)
    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, TINY["vocab_size"], (ADAMW["steps"], TINY["batch"], TINY["seq_len"] + 1),
                           generator=gen)[0]
    ref_logits, ref_grads = logits_and_grads(ours, ours, tokens)

    ok = True
    for float64 in (False, True):
        hf = hf_model(TINY, ours.state_dict(), float64)
        hf_logits, hf_grads = logits_and_grads(hf, lambda idx: hf(input_ids=idx).logits, tokens)
        assert set(hf_grads) == set(ref_grads), "parameter names differ"
        d_logits = (hf_logits - ref_logits).abs().max().item()
        d_grads = max((hf_grads[n] - ref_grads[n]).abs().max().item() for n in ref_grads)
        label = "float64 throughout" if float64 else "stock (float32 intermediates)"
        print(f"{label:30s} max|logits diff| {d_logits:.3e}  max|grad diff| {d_grads:.3e}")
        if float64:
            ok = d_logits < TOLERANCE and d_grads < TOLERANCE
    print(f"{'PASS' if ok else 'FAIL'}: logits and grads within {TOLERANCE:g} of "
          f"transformers {transformers.__version__} LlamaForCausalLM")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
