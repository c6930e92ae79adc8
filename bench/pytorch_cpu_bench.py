#!/usr/bin/env python3
"""PyTorch eager CPU baseline for cairn's training throughput: the reference LLaMA (fp32) with AdamW.

Prints tokens/s and achieved GFLOP/s with model FLOPs per token = 6·N + 12·L·C·T, N = every matrix
parameter (attention, MLP, lm_head; not the embedding lookup). Same architecture as
tools/reference/llama_reference.py; attention uses F.scaled_dot_product_attention (PyTorch's fastest).
Install: pip install torch h5py numpy
Run:     python3 bench/pytorch_cpu_bench.py --dim 512 --layers 8 --heads 8 --ffn 1376 --vocab 32000 \
             --seq 256 --batch 8 --steps 5 --threads 2
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
from llama_reference import Llama, make_optimizer  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=352)
    ap.add_argument("--vocab", type=int, default=257)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps, after --warmup untimed ones")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = dict(vocab_size=args.vocab, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
               ffn_dim=args.ffn, seq_len=args.seq, batch=args.batch, norm_eps=1e-5,
               rope_theta=10000.0)
    model = Llama(cfg, use_sdpa=True)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    opt = make_optimizer(model, dict(lr=1e-3, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1))

    C, L, T, V, F_ = args.dim, args.layers, args.seq, args.vocab, args.ffn
    n_matrix = L * (4 * C * C + 3 * C * F_) + V * C
    flops_per_token = 6 * n_matrix + 12 * L * C * T
    tokens_per_step = args.batch * T
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"threads {torch.get_num_threads()}, "
          f"params {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M "
          f"(matrix N {n_matrix / 1e6:.2f}M), {flops_per_token / 1e6:.1f} MFLOP/token")

    def step():
        batch = torch.randint(0, V, (args.batch, T + 1))
        opt.zero_grad(set_to_none=True)
        loss = model.loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    times = []
    for s in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
        print(f"step {s}: loss {loss:.4f}  {times[-1] * 1e3:.0f} ms")
    # The machine may be shared: the median is the typical step, the fastest the uncontended one.
    for label, dt in (("median", sorted(times)[len(times) // 2]), ("fastest", min(times))):
        tok_s = tokens_per_step / dt
        print(f"{label} step {dt * 1e3:.0f} ms: {tok_s:.0f} tokens/s, "
              f"{tok_s * flops_per_token / 1e9:.1f} GFLOP/s (model FLOPs)")


if __name__ == "__main__":
    main()
