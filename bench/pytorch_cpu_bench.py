#!/usr/bin/env python3
"""PyTorch CPU baselines for cairn's training throughput, optionally interleaved with cairn itself.

One LLaMA (Hugging Face `transformers` LlamaForCausalLM with SDPA attention, or --impl reference:
tools/reference/llama_reference.py) with AdamW, trained under each requested setup:
  eager          fp32 eager
  compile        fp32 under torch.compile
  bf16           eager under torch.autocast("cpu", torch.bfloat16) (bf16 matmuls, fp32 weights)
  bf16-compile   torch.compile under the same autocast
With --cairn PATH (bench/train_bench), cairn runs beside them as `train_bench --serve 1` processes
(--cairn-precisions fp32,bf16), same model, batch and threads. Every setup is warmed up, then the
setups take turns one step at a time for --steps rounds (the order rotating each round), so that
load from other processes on a shared machine falls on all of them alike. Prints each setup's
median step and tokens/s, the ratios of cairn's medians to each PyTorch setup's, and `uptime`.

Model FLOPs per token = 6·N + 12·L·C·T, N = every matrix parameter (attention, MLP, lm_head).
Install: pip install torch transformers numpy
Run:     python3 bench/pytorch_cpu_bench.py --dim 512 --layers 8 --heads 8 --ffn 1376 --vocab 32000 \
             --seq 256 --batch 8 --steps 10 --threads 2 --setups eager,compile,bf16,bf16-compile \
             --cairn build/bench/train_bench
"""
import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
from llama_reference import Llama, make_optimizer  # noqa: E402

SETUPS = ("eager", "compile", "bf16", "bf16-compile")


def build_model(args):
    if args.impl == "reference":
        cfg = dict(vocab_size=args.vocab, dim=args.dim, n_layers=args.layers, n_heads=args.heads,
                   ffn_dim=args.ffn, seq_len=args.seq, batch=args.batch, norm_eps=1e-5, rope_theta=10000.0)
        model = Llama(cfg, use_sdpa=True)
        logits_of = lambda m, x: m(x)  # noqa: E731
    else:
        from transformers import LlamaConfig, LlamaForCausalLM
        cfg = LlamaConfig(vocab_size=args.vocab, hidden_size=args.dim, intermediate_size=args.ffn,
                          num_hidden_layers=args.layers, num_attention_heads=args.heads,
                          num_key_value_heads=args.heads, max_position_embeddings=args.seq,
                          rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False)
        cfg._attn_implementation = "sdpa"
        model = LlamaForCausalLM(cfg)
        logits_of = lambda m, x: m(input_ids=x, use_cache=False).logits  # noqa: E731
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
    return model, logits_of


class TorchSetup:
    """One way of running the shared model: eager or compiled, fp32 or bf16 autocast."""

    def __init__(self, name, model, logits_of, opt, args):
        self.name, self.model, self.opt, self.args = name, model, opt, args
        self.label = {"eager": "transformers eager fp32", "compile": "torch.compile fp32",
                      "bf16": "PyTorch bf16 autocast, eager",
                      "bf16-compile": "torch.compile + bf16 autocast"}[name]
        if args.impl == "reference":
            self.label = self.label.replace("transformers", "reference")
        fn = lambda x: logits_of(model, x)  # noqa: E731
        self.forward = torch.compile(fn) if name.endswith("compile") else fn
        self.autocast = name.startswith("bf16")

    def step(self):
        a = self.args
        batch = torch.randint(0, a.vocab, (a.batch, a.seq + 1))
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext()
        with ctx:
            logits = self.forward(batch[:, :-1])
        loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), batch[:, 1:].reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()
        loss.item()
        return time.perf_counter() - t0


class CairnSetup:
    """bench/train_bench --serve 1: one step per line written to it, answering "step <seconds>"."""

    def __init__(self, binary, precision, args):
        self.name = "cairn-" + precision
        self.label = f"cairn {precision}"
        cmd = [binary, "--dim", a(args.dim), "--layers", a(args.layers), "--heads", a(args.heads), "--ffn",
               a(args.ffn), "--vocab", a(args.vocab), "--seq", a(args.seq), "--batch", a(args.batch),
               "--threads", a(args.threads), "--precision", precision, "--serve", "1"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        ready = self.proc.stdout.readline()
        if "ready" not in ready:
            raise SystemExit(f"{' '.join(cmd)} did not start: {ready!r}")

    def step(self):
        self.proc.stdin.write("step\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line.startswith("step "):
            raise SystemExit(f"{self.label}: unexpected answer {line!r}")
        return float(line.split()[1])

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def a(v):
    return str(v)


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "(uptime unavailable)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--ffn", type=int, default=352)
    ap.add_argument("--vocab", type=int, default=257)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=10, help="timed steps (rounds) per setup, after --warmup")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--impl", choices=("transformers", "reference"), default="transformers")
    ap.add_argument("--setups", default="eager", help="comma-separated: " + ", ".join(SETUPS))
    ap.add_argument("--cairn", default="", help="path of bench/train_bench to interleave with")
    ap.add_argument("--cairn-precisions", default="fp32,bf16")
    args = ap.parse_args()
    names = [s for s in args.setups.split(",") if s]
    for s in names:
        if s not in SETUPS:
            raise SystemExit(f"--setups: unknown setup {s!r}; use {', '.join(SETUPS)}")

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    C, L, T, V, F_ = args.dim, args.layers, args.seq, args.vocab, args.ffn
    n_matrix = L * (4 * C * C + 3 * C * F_) + V * C
    flops_per_token = 6 * n_matrix + 12 * L * C * T
    tokens_per_step = args.batch * T
    print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), threads "
          f"{torch.get_num_threads()}, {args.impl}, dim {C} layers {L} heads {args.heads} ffn {F_} vocab {V} "
          f"seq {T} batch {args.batch}, {flops_per_token / 1e6:.1f} MFLOP/token")
    print("load before:", uptime(), flush=True)

    setups = []
    if args.cairn:
        setups += [CairnSetup(args.cairn, p, args) for p in args.cairn_precisions.split(",") if p]
    if names:
        model, logits_of = build_model(args)
        opt = make_optimizer(model, dict(lr=1e-4, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.1))
        setups += [TorchSetup(n, model, logits_of, opt, args) for n in names]
    for s in setups:  # warm-up (and compilation) outside the timed rounds
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            s.step()
        print(f"warmed up {s.label} in {time.perf_counter() - t0:.1f} s", flush=True)
    times = {s.name: [] for s in setups}
    for r in range(args.steps):
        order = setups[r % len(setups):] + setups[:r % len(setups)]
        for s in order:
            times[s.name].append(s.step())
        print(f"round {r}: " + "  ".join(f"{s.label} {times[s.name][-1] * 1e3:.0f} ms" for s in setups), flush=True)
    for s in setups:
        if isinstance(s, CairnSetup):
            s.close()
    print("load after:", uptime())

    median = {s.name: statistics.median(times[s.name]) for s in setups}
    print(f"\n| setup | median step | tokens/s | GFLOP/s (model FLOPs) |\n|---|---|---|---|")
    for s in setups:
        tps = tokens_per_step / median[s.name]
        print(f"| {s.label} | {median[s.name] * 1e3:.0f} ms | {tps:.0f} | {tps * flops_per_token / 1e9:.1f} |")
    cairns = [s for s in setups if isinstance(s, CairnSetup)]
    torches = [s for s in setups if isinstance(s, TorchSetup)]
    if cairns and torches:
        print("\nspeed ratios (tokens/s of the row over the column; medians of the interleaved steps):")
        print("| | " + " | ".join(t.label for t in torches) + " |\n|---|" + "---|" * len(torches))
        for c in cairns:
            print(f"| {c.label} | " + " | ".join(f"{median[t.name] / median[c.name]:.2f}x" for t in torches) + " |")


if __name__ == "__main__":
    main()
