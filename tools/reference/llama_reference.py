#!/usr/bin/env python3
"""PyTorch reference for cairn's LLaMA model: writes the golden files tests/golden/tiny_*.h5.

A self-contained LLaMA (no `transformers`) whose parameter names, shapes and conventions are the ones
cairn follows (see tools/reference/README.md). The golden values are computed in float64 from
float32 initial weights, so a comparison against cairn's fp32 run measures cairn's error alone.

Install (CPU is enough; the default PyPI wheel also pulls the CUDA packages, ~3 GB, which is harmless):
    pip install torch h5py numpy
Regenerate (one file per preset: the Pre-LN model, Mix-LN, LayerNorm Scaling, grouped-query
attention with an explicit head size and LLaMA-3 rope scaling):
    python3 tools/reference/llama_reference.py --preset tiny --out tests/golden/tiny_llama.h5
    python3 tools/reference/llama_reference.py --preset mix_ln --out tests/golden/tiny_mix_ln.h5
    python3 tools/reference/llama_reference.py --preset ln_scaling --out tests/golden/tiny_ln_scaling.h5
    python3 tools/reference/llama_reference.py --preset gqa_llama3 --out tests/golden/tiny_gqa_llama3.h5
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def llama3_inv_freq(inv_freq, factor, low_freq_factor, high_freq_factor, original_context):
    """LLaMA-3 frequency scaling (transformers' _compute_llama3_parameters): wavelengths above
    original_context / low_freq_factor divided by factor, below original_context / high_freq_factor
    kept, the band between interpolated."""
    wavelen = 2 * math.pi / inv_freq
    low_wavelen = original_context / low_freq_factor
    high_wavelen = original_context / high_freq_factor
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original_context / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def rope_tables(seq_len, head_size, theta, dtype, scaling=None):
    """cos, sin of shape [T, HS]: the [T, HS/2] angle table t·theta^(-2j/HS) (after llama3 scaling
    when `scaling` gives its parameters), concatenated twice."""
    j = torch.arange(0, head_size, 2, dtype=torch.float64)
    inv_freq = theta ** (-j / head_size)
    if scaling:
        inv_freq = llama3_inv_freq(inv_freq, *scaling)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


class Attention(nn.Module):
    """Grouped-query when n_kv_heads < n_heads: query head h attends with key/value head
    h // (n_heads / n_kv_heads) (transformers' repeat_kv)."""

    def __init__(self, dim, n_heads, use_sdpa, n_kv_heads=None, head_size=None):
        super().__init__()
        self.n_heads, self.use_sdpa = n_heads, use_sdpa
        self.n_kv_heads = n_kv_heads or n_heads
        self.head_size = head_size or dim // n_heads
        self.q_proj = nn.Linear(dim, n_heads * self.head_size, bias=False)
        self.k_proj = nn.Linear(dim, self.n_kv_heads * self.head_size, bias=False)
        self.v_proj = nn.Linear(dim, self.n_kv_heads * self.head_size, bias=False)
        self.o_proj = nn.Linear(n_heads * self.head_size, dim, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        HS = self.head_size
        # [B, T, heads·HS] -> [B, heads, T, HS]
        q = self.q_proj(x).view(B, T, self.n_heads, HS).transpose(1, 2)
        k, v = (p(x).view(B, T, self.n_kv_heads, HS).transpose(1, 2) for p in (self.k_proj, self.v_proj))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.n_heads // self.n_kv_heads
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        if self.use_sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(HS)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.n_heads * HS))


class MLP(nn.Module):
    def __init__(self, dim, ffn_dim):
        super().__init__()
        self.gate_proj = nn.Linear(dim, ffn_dim, bias=False)
        self.up_proj = nn.Linear(dim, ffn_dim, bias=False)
        self.down_proj = nn.Linear(ffn_dim, dim, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def post_ln_layers(cfg):
    """Mix-LN: the first floor(alpha·L) layers are Post-LN (the official code's POST_NUM)."""
    if cfg.get("norm_layout", "pre") != "mix":
        return 0
    return math.floor(cfg["mix_ln_alpha"] * cfg["n_layers"] + 1e-9)


class Block(nn.Module):
    """Pre-LN: x += attn(s·norm1(x)); x += mlp(s·norm2(x)), s = 1/sqrt(layer + 1) with LayerNorm
    Scaling (the official 'LNS' branch), else 1.
    Post-LN (Mix-LN's first layers, the official 'post_pre' branch): h = post_attention_layernorm(x +
    attn(x)); x' = post_feedforward_layernorm(h + mlp(h))."""

    def __init__(self, cfg, layer, use_sdpa):
        super().__init__()
        self.post_ln = layer < post_ln_layers(cfg)
        self.scale = 1.0 / math.sqrt(layer + 1) if cfg.get("norm_scaling", 0) else 1.0
        if not self.post_ln:
            self.input_layernorm = RMSNorm(cfg["dim"], cfg["norm_eps"])
        self.self_attn = Attention(cfg["dim"], cfg["n_heads"], use_sdpa, cfg.get("n_kv_heads"), cfg.get("head_dim"))
        self.post_attention_layernorm = RMSNorm(cfg["dim"], cfg["norm_eps"])
        self.mlp = MLP(cfg["dim"], cfg["ffn_dim"])
        if self.post_ln:
            self.post_feedforward_layernorm = RMSNorm(cfg["dim"], cfg["norm_eps"])

    def forward(self, x, cos, sin):
        if self.post_ln:
            h = self.post_attention_layernorm(x + self.self_attn(x, cos, sin))
            return self.post_feedforward_layernorm(h + self.mlp(h))
        x = x + self.self_attn(self.scale * self.input_layernorm(x), cos, sin)
        return x + self.mlp(self.scale * self.post_attention_layernorm(x))


class Backbone(nn.Module):
    def __init__(self, cfg, use_sdpa):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], cfg["dim"])
        self.layers = nn.ModuleList(Block(cfg, i, use_sdpa) for i in range(cfg["n_layers"]))
        self.norm = RMSNorm(cfg["dim"], cfg["norm_eps"])


class Llama(nn.Module):
    """named_parameters() yields exactly the Hugging Face LLaMA names and [out, in] shapes."""

    def __init__(self, cfg, use_sdpa=False):
        super().__init__()
        self.cfg = cfg
        self.model = Backbone(cfg, use_sdpa)
        self.lm_head = nn.Linear(cfg["dim"], cfg["vocab_size"], bias=False)

    def forward(self, idx):
        """idx [B, T] int -> logits [B, T, V]."""
        T = idx.shape[1]
        c = self.cfg
        HS = c.get("head_dim") or c["dim"] // c["n_heads"]
        x = self.model.embed_tokens(idx)
        scaling = None
        if c.get("rope_type") == "llama3":
            scaling = (c["rope_factor"], c["rope_low_freq_factor"], c["rope_high_freq_factor"],
                       c["rope_original_context"])
        cos, sin = rope_tables(T, HS, c["rope_theta"], x.dtype, scaling)
        for block in self.model.layers:
            x = block(x, cos, sin)
        return self.lm_head(self.model.norm(x))

    def loss(self, tokens):
        """tokens [B, T+1]: mean next-token cross-entropy over all B·T positions."""
        logits = self(tokens[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))


def init_weights(model, seed):
    """normal(0, 0.02) for matrices, 1 + normal(0, 0.1) for norm gains, drawn in named_parameters()
    order from one generator, rounded to float32 (the stored initial weights)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                v = 1.0 + 0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            else:
                v = 0.02 * torch.randn(p.shape, generator=gen, dtype=torch.float64)
            p.copy_(v.to(torch.float32))


def make_optimizer(model, hp):
    """AdamW with weight decay on 2-D weights (embedding, projections, lm_head), none on norm gains."""
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": hp["weight_decay"]},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=hp["lr"], betas=(hp["beta1"], hp["beta2"]), eps=hp["eps"])


def run_reference(cfg, hp, seed, dtype):
    """Builds the model in `dtype` from the float32 initial weights and returns every golden value."""
    torch.manual_seed(seed)
    model = Llama(cfg)
    init_weights(model, seed)
    init_params = {n: p.detach().clone() for n, p in model.named_parameters()}
    model = model.to(dtype)

    gen = torch.Generator().manual_seed(seed + 1)
    tokens = torch.randint(0, cfg["vocab_size"], (hp["steps"], cfg["batch"], cfg["seq_len"] + 1),
                           generator=gen, dtype=torch.int64)

    out = {"params": init_params, "tokens": tokens.to(torch.int32)}
    with torch.no_grad():
        out["logits"] = model(tokens[0, :, :-1]).detach()
    loss0 = model.loss(tokens[0])
    loss0.backward()
    out["loss0"] = loss0.detach()
    out["grads"] = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)

    opt = make_optimizer(model, hp)
    losses, norms = [], []
    for s in range(hp["steps"]):
        opt.zero_grad(set_to_none=True)
        loss = model.loss(tokens[s])
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), hp["clip"]).detach())
        losses.append(loss.detach())
        opt.step()
    out["losses"] = torch.stack(losses)
    out["grad_norms"] = torch.stack(norms)
    out["final_params"] = {n: p.detach().clone() for n, p in model.named_parameters()}
    return out


TINY = dict(vocab_size=67, dim=32, n_layers=2, n_heads=4, ffn_dim=88, seq_len=16, batch=3,
            norm_eps=1e-5, rope_theta=10000.0, tied=0)
# The depth methods on 4 layers (Mix-LN's default alpha 0.25 gives one Post-LN layer), smaller
# widths so each file stays near 120 KB.
DEPTH = dict(vocab_size=32, dim=12, n_layers=4, n_heads=2, ffn_dim=20, seq_len=8, batch=2,
             norm_eps=1e-5, rope_theta=10000.0, tied=0)
PRESETS = {
    "tiny": TINY,
    "mix_ln": dict(DEPTH, norm_layout="mix", mix_ln_alpha=0.25),
    "ln_scaling": dict(DEPTH, norm_scaling=1),
    # GQA 4:1 with a head size (8) that is not dim / n_heads, and llama3 rope scaling whose
    # parameters put the four frequencies (wavelengths 6.3, 63, 628, 6283) in all three bands
    # (kept below 256/8 = 32, interpolated up to 256/1, divided by 8 above).
    "gqa_llama3": dict(DEPTH, n_layers=2, n_heads=4, n_kv_heads=1, head_dim=8, rope_theta=10000.0,
                       rope_type="llama3", rope_factor=8.0, rope_low_freq_factor=1.0, rope_high_freq_factor=8.0,
                       rope_original_context=256),
}
ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1, clip=1.0, steps=10)


def write_golden(path, cfg, hp, seed, ref):
    import h5py
    import numpy as np
    with h5py.File(path, "w") as f:  # default libver: readable by HDF5 1.10
        for k, v in cfg.items():
            # Strings as fixed-length ASCII: cairn's HDF5 reader converts to ASCII C strings.
            f.attrs[k] = np.bytes_(v) if isinstance(v, str) else np.int64(v) if isinstance(v, int) else np.float64(v)
        for k, v in hp.items():
            f.attrs[k] = np.int64(v) if isinstance(v, int) else np.float64(v)
        f.attrs["seed"] = np.int64(seed)
        f.attrs["precision"] = "inputs float32 (params) / int32 (tokens); outputs float64"
        for group in ("params", "grads", "final_params"):
            g = f.create_group(group)
            for name, t in ref[group].items():
                g.create_dataset(name, data=t.numpy())
        f.create_dataset("tokens", data=ref["tokens"].numpy())
        for key in ("logits", "loss0", "losses", "grad_norms"):
            f.create_dataset(key, data=ref[key].numpy())


def max_rel(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    ap.add_argument("--out", default="tests/golden/tiny_llama.h5")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--compare-fp32", action="store_true",
                    help="also run in float32 and print its deviation from the float64 reference "
                         "(what to expect from an fp32 implementation)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # fixed reduction order: regenerating gives the same bits

    cfg = PRESETS[args.preset]
    ref = run_reference(cfg, ADAMW, args.seed, torch.float64)
    write_golden(args.out, cfg, ADAMW, args.seed, ref)
    print(f"wrote {args.out}: loss0 {ref['loss0'].item():.6f}")
    print("losses     ", " ".join(f"{x:.5f}" for x in ref["losses"].tolist()))
    print("grad_norms ", " ".join(f"{x:.5f}" for x in ref["grad_norms"].tolist()))

    if args.compare_fp32:
        f32 = run_reference(cfg, ADAMW, args.seed, torch.float32)
        print("fp32 vs fp64 (max |diff| / max |ref| per tensor, worst over tensors):")
        print(f"  logits       {max_rel(f32['logits'], ref['logits']):.2e}")
        print(f"  loss0        {abs(f32['loss0'].item() - ref['loss0'].item()):.2e} (abs)")
        print(f"  grads        {max(max_rel(f32['grads'][n], ref['grads'][n]) for n in ref['grads']):.2e}")
        print(f"  losses       {(f32['losses'].double() - ref['losses']).abs().max().item():.2e} (abs)")
        print(f"  grad_norms   {max_rel(f32['grad_norms'], ref['grad_norms']):.2e}")
        print(f"  final_params {max(max_rel(f32['final_params'][n], ref['final_params'][n]) for n in ref['final_params']):.2e}")
        print(f"  final_params max abs {max((f32['final_params'][n].double() - ref['final_params'][n]).abs().max().item() for n in ref['final_params']):.2e}")


if __name__ == "__main__":
    main()
