#!/usr/bin/env python3
"""Writes a synthetic pre-training corpus for bench/prepare_bench.sh: JSON Lines records
{"id": i, "text": ...}, each text 1 to 8 fortunes of Debian's fortunes packages (English and
German, drawn with a seed) joined by blank lines, until SIZE_MB megabytes of text. The output is
compressed when its name ends in .zst or .gz (through the zstd/gzip programs). With --text FILE the
same texts are also written as plain lines (what spm_encode reads).

usage: make_corpus.py OUT SIZE_MB [--seed N] [--text FILE]
"""
import argparse
import json
import os
import random
import subprocess
import sys

FORTUNES = "/usr/share/games/fortunes"


def fortunes():
    docs = []
    for root, dirs, files in os.walk(FORTUNES):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(root, name)
            if name.endswith((".dat", ".u8")) or os.path.islink(path):
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                docs += [d.strip("\n") for d in f.read().split("\n%\n") if d.strip()]
    if not docs:
        sys.exit(f"make_corpus: no fortunes under {FORTUNES}: install the fortunes packages")
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("size_mb", type=float)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text")
    a = ap.parse_args()
    pool = fortunes()
    rng = random.Random(a.seed)
    compressor = {".zst": ["zstd", "-q", "-1", "-T0", "-f", "-o", a.out], ".gz": ["gzip", "-1"]}.get(
        os.path.splitext(a.out)[1])
    if compressor:
        sink = open(a.out, "wb") if compressor[0] == "gzip" else None
        proc = subprocess.Popen(compressor, stdin=subprocess.PIPE, stdout=sink)
        out = proc.stdin
    else:
        proc, out = None, open(a.out, "wb")
    text_out = open(a.text, "wb") if a.text else None
    target, written, i = int(a.size_mb * 1e6), 0, 0
    batch, text_batch = [], []
    while written < target:
        text = "\n\n".join(rng.choice(pool) for _ in range(rng.randint(1, 8)))
        batch.append(json.dumps({"id": i, "text": text}, ensure_ascii=False) + "\n")
        if text_out:
            text_batch.append(text + "\n")
        written += len(text.encode())
        i += 1
        if len(batch) == 4096:
            out.write("".join(batch).encode())
            if text_out:
                text_out.write("".join(text_batch).encode())
            batch, text_batch = [], []
    out.write("".join(batch).encode())
    if text_out:
        text_out.write("".join(text_batch).encode())
        text_out.close()
    out.close()
    if proc and proc.wait() != 0:
        sys.exit("make_corpus: the compressor failed")
    print(f"make_corpus: {i} documents, {written / 1e6:.1f} MB of text -> {a.out}")


if __name__ == "__main__":
    main()
