#!/usr/bin/env python3
"""cairn's tokenizer.json reader against the `tokenizers` package: encoding speed on one core and
id-for-id agreement, on the same documents.

Trains (locally, nothing is downloaded) a GPT-2-style and a LLaMA-3-style byte-level BPE with
--vocab tokens on Debian's fortune files (tools/reference/hf_tokenizer_golden.py), then encodes
  fortunes  every fortune (English and German, documents split on "%" as `cairn prepare` does)
  fuzz      random documents of letters, marks, CJK, emoji, digits of many scripts, apostrophes
            and every kind of Unicode whitespace (agreement only; --fuzz-docs of them)
with build/bench/hf_tokenizer_bench (cairn, one thread) and with `tokenizers` restricted to one
thread (RAYON_NUM_THREADS=1): encode() per document and encode_batch() over all of them. Prints
MB/s (best of --reps) and the number of documents whose ids differ (0 expected).

Run: python3 bench/hf_tokenizer_bench.py [--bench build/bench/hf_tokenizer_bench] [--vocab 32000]
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"  # before tokenizers starts its thread pool
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse
import glob
import random
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "reference"))
import hf_tokenizer_golden as golden  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

SEPARATOR = "%"


def split_documents(text, split_on):
    """data/prepare.cpp's split_documents: pieces between lines equal to split_on, blank ones dropped."""
    docs, cur = [], []
    pos = 0
    while pos < len(text):
        nl = text.find("\n", pos)
        end = len(text) if nl < 0 else nl + 1
        line = text[pos:(len(text) if nl < 0 else nl)]
        if line.endswith("\r"):
            line = line[:-1]
        if line == split_on:
            doc = "".join(cur)
            if doc.strip(" \t\n\v\f\r"):
                docs.append(doc)
            cur = []
        else:
            cur.append(text[pos:end])
        pos = end
    doc = "".join(cur)
    if doc.strip(" \t\n\v\f\r"):
        docs.append(doc)
    return docs


def fortunes_text():
    parts = []
    for d in ("/usr/share/games/fortunes", "/usr/share/games/fortunes/de"):
        for p in sorted(glob.glob(os.path.join(d, "*"))):
            if os.path.isfile(p) and not os.path.islink(p) and not p.endswith((".dat", ".u8")):
                with open(p, encoding="utf-8", errors="replace", newline="") as f:
                    parts.append(f.read().rstrip("\n"))
    return "\n%\n".join(parts) + "\n"


FUZZ_RANGES = [(0x41, 0x5a), (0x61, 0x7a), (0xc0, 0x24f), (0x300, 0x36f), (0x370, 0x3ff), (0x400, 0x4ff),
               (0x590, 0x6ff), (0x900, 0x97f), (0xe00, 0xe7f), (0x1100, 0x11ff), (0x3040, 0x30ff), (0x4e00, 0x4fff),
               (0xac00, 0xad00), (0xff00, 0xffef), (0x1f300, 0x1f6ff), (0x1f900, 0x1f9ff), (0x10000, 0x1007f)]
FUZZ_SPECIAL = (list("0123456789'’\"!?.,;:-_()[]{}<>#@$%^&*+=/\\|~`") + ["'s", "'S", "'t", "'ll", "'LL", "'re", "'ve", "'d", "'m",
                "\u0660", "\u0669", "\u0966", "\u096f", "\uff10", "\uff19", "\u00b2", "\u2167", "\u200d", "\ufe0f"]
                + [" ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u0085", "\u1680", "\u2000", "\u2009", "\u200a",
                   "\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\u180e", "\x0b", "\x0c", "\x1c", "\x1f"])


def fuzz_text(n_docs, seed=5):
    rng = random.Random(seed)
    docs = []
    for _ in range(n_docs):
        out = []
        for _ in range(rng.randrange(1, 120)):
            if rng.random() < 0.35:
                out.append(rng.choice(FUZZ_SPECIAL))
            else:
                lo, hi = rng.choice(FUZZ_RANGES)
                out.append(chr(rng.randint(lo, hi)) * rng.choice([1, 1, 1, 2, 5]))
        doc = "".join(out).replace("\r", "")  # prepare strips a CR before a separator line; keep docs simple
        docs.append(doc)
    return "".join(d + "\n" + SEPARATOR + "\n" for d in docs)


def read_ids(path):
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        out.append(list(struct.unpack_from(f"<{n}I", data, pos + 4)))
        pos += 4 + 4 * n
    return out


def best_of(reps, fn):
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(bench, tok_path, text, reps, tmp, name, speed):
    text_path = os.path.join(tmp, f"{name}.txt")
    with open(text_path, "w", encoding="utf-8", newline="") as f:
        f.write(text)
    ids_path = os.path.join(tmp, f"{name}.ids")
    r = subprocess.run([bench, tok_path, text_path, "--split-on", SEPARATOR, "--reps", str(reps if speed else 1),
                        "--ids", ids_path], check=True, capture_output=True, text=True)
    cairn_line = r.stdout.strip()
    cairn_ids = read_ids(ids_path)
    docs = split_documents(text, SEPARATOR)
    tok = Tokenizer.from_file(tok_path)
    tok.encode_special_tokens = True
    hf_ids = [e.ids for e in tok.encode_batch(docs, add_special_tokens=False)]
    mismatches = [i for i in range(len(docs)) if i >= len(cairn_ids) or cairn_ids[i] != hf_ids[i]]
    print(f"  {name}: {len(docs)} documents, {sum(len(d.encode()) for d in docs) / 1e6:.2f} MB; "
          f"documents whose ids differ: {len(mismatches)}" + (f" (cairn has {len(cairn_ids)} documents)" if len(cairn_ids) != len(docs) else ""))
    for i in mismatches[:3]:
        print(f"    doc {i}: {docs[i]!r}\n      cairn {cairn_ids[i] if i < len(cairn_ids) else None}\n      tokenizers {hf_ids[i]}")
    if not speed:
        return
    mb = sum(len(d.encode()) for d in docs) / 1e6
    t_single = best_of(reps, lambda: [tok.encode(d, add_special_tokens=False) for d in docs])
    t_batch = best_of(reps, lambda: tok.encode_batch(docs, add_special_tokens=False))
    print(f"    {cairn_line}")
    print(f"    tokenizers {tok_version()}: encode() per document {mb / t_single:.2f} MB/s, "
          f"encode_batch() {mb / t_batch:.2f} MB/s (one thread)")
    if hasattr(tok, "encode_batch_fast"):
        t_fast = best_of(reps, lambda: tok.encode_batch_fast(docs, add_special_tokens=False))
        print(f"    tokenizers encode_batch_fast() (no offsets) {mb / t_fast:.2f} MB/s (one thread)")


def tok_version():
    import tokenizers
    return tokenizers.__version__


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="build/bench/hf_tokenizer_bench")
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fuzz-docs", type=int, default=20000)
    args = ap.parse_args()
    fortunes, fuzz = fortunes_text(), fuzz_text(args.fuzz_docs)
    with tempfile.TemporaryDirectory() as tmp:
        for style, make in (("gpt2_style", golden.gpt2_style), ("llama3_style", golden.llama3_style)):
            t0 = time.perf_counter()
            tok = make(args.vocab)
            path = os.path.join(tmp, f"{style}.json")
            tok.save(path)
            print(f"{style}: vocabulary {tok.get_vocab_size()} (trained in {time.perf_counter() - t0:.0f} s)")
            run(args.bench, path, fortunes, args.reps, tmp, "fortunes", True)
            run(args.bench, path, fuzz, args.reps, tmp, "fuzz", False)


if __name__ == "__main__":
    main()
