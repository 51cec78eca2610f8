#!/usr/bin/env python3
"""Peer of bench/embed.sh: writes the benchmark's texts, and times
sentence-transformers (the reference implementation of all-MiniLM-L6-v2)
embedding them.

  embed_peer.py gen OUT [--n N]        N texts, one per line, deterministic:
      40 % short queries (2-6 words), 40 % one or two sentences, 20 %
      paragraphs of 4-12 sentences (up to ~250 tokens).
  embed_peer.py st MODEL_DIR TEXTS [--runs N] [--threads T] [--batch-size B]
      SentenceTransformer(MODEL_DIR).encode(texts, batch_size=B) on T torch
      threads, after a warm-up; prints one line per run and the median texts/s
      alone on the last line.
"""

import argparse
import os
import random
import statistics
import sys
import time

WORDS = {
    "adj": "quick lazy bright dark old new small large quiet noisy red blue green "
    "heavy light cold warm fresh broken shiny remote local digital ancient modern "
    "busy empty rural urban careful strange famous hidden".split(),
    "noun": "dog cat river bridge city engine server table report invoice garden "
    "teacher student market train station kitchen window mountain forest ocean "
    "database query network printer contract budget museum library hospital "
    "airport customer driver recipe camera battery planet".split(),
    "verb": "crosses repairs visits reads sends builds watches cleans opens closes "
    "follows measures paints sorts updates prints signs moves checks finds "
    "explains approves rejects loads".split(),
    "place": ["the morning market", "the city centre", "a small village", "the north gate",
              "the office", "the old harbour", "the data centre", "the valley", "the lab",
              "the suburbs"],
}


def sentence(rng):
    w = WORDS
    return (
        f"The {rng.choice(w['adj'])} {rng.choice(w['noun'])} {rng.choice(w['verb'])} "
        f"the {rng.choice(w['adj'])} {rng.choice(w['noun'])} near "
        f"{rng.choice(w['place'])} after {rng.randint(2, 90)} minutes."
    )


def text(rng):
    kind = rng.random()
    if kind < 0.4:
        pool = WORDS["adj"] + WORDS["noun"] + WORDS["verb"]
        return " ".join(rng.choice(pool) for _ in range(rng.randint(2, 6)))
    n = rng.randint(1, 2) if kind < 0.8 else rng.randint(4, 12)
    return " ".join(sentence(rng) for _ in range(n))


def gen(a):
    rng = random.Random(20240518)
    with open(a.out, "w") as f:
        for _ in range(a.n):
            f.write(text(rng) + "\n")


def st(a):
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(a.threads)
    texts = open(a.texts).read().splitlines()
    model = SentenceTransformer(a.model_dir, device="cpu")
    model.encode(texts[:64], batch_size=a.batch_size)  # warm-up
    rates = []
    for run in range(1, a.runs + 1):
        t = time.perf_counter()
        v = model.encode(texts, batch_size=a.batch_size, convert_to_numpy=True)
        secs = time.perf_counter() - t
        assert v.shape == (len(texts), 384), v.shape
        rates.append(len(texts) / secs)
        print(f"run {run}: {len(texts)} texts in {secs:.2f} s = {rates[-1]:.1f} texts/s",
              file=sys.stderr, flush=True)
    print(f"{statistics.median(rates):.1f}")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("out")
    g.add_argument("--n", type=int, default=5000)
    s = sub.add_parser("st")
    s.add_argument("model_dir")
    s.add_argument("texts")
    s.add_argument("--runs", type=int, default=3)
    s.add_argument("--threads", type=int, default=os.cpu_count())
    s.add_argument("--batch-size", type=int, default=32)
    a = p.parse_args()
    gen(a) if a.cmd == "gen" else st(a)


if __name__ == "__main__":
    main()
