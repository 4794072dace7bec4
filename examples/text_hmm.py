"""A character-level hidden Markov model of a text file, as a pcc circuit with tied parameters.

    python examples/text_hmm.py PATH [--hidden 128] [--length 64]

Any UTF-8 text will do. One that ships with every Python is the text of its `help()` topics:

    python examples/text_hmm.py "$(python -c 'import pydoc_data.topics as t; print(t.__file__)')"

(`Lib/pydoc_data/topics.py` of CPython 3.11, ~750 KB of English prose and code samples.) The
text is cut into windows of --length characters, the first 80% of them for training, the next
10% for validation, the last 10% for test (contiguous blocks, in order); characters seen fewer
than 10 times become one rare-character symbol. The model is `pcc structure hmm` (one transition
matrix and one emission table shared by every position: `tie` statements), trained by EM with
the recipe `pcc train` uses for it (hidden states started from one k-means over character
contexts, online EM, then full-batch EM while validation improves). It prints the test bits per
character beside a unigram and a bigram model of the same windows (each window on its own: its
first character from the unigram, add-one smoothing), then generated text (exact samples) and a
window of test text with a hole filled in (conditional samples and the MPE completion).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections import Counter

import numpy as np
import torch

import pcc
from pcc.structures import hidden_markov_model
from pcc.train import TrainConfig, evaluate, fit

RARE = 10  # characters seen fewer times share one symbol
HOLE = "_"


def windows(text: str, length: int) -> tuple[np.ndarray, list[str]]:
    """Token ids [N, length] of the text's non-overlapping windows, and the symbol of each id."""
    counts = Counter(text)
    symbols = sorted(c for c, n in counts.items() if n >= RARE)
    rare = len(symbols)
    index = {c: i for i, c in enumerate(symbols)}
    ids = np.array([index.get(c, rare) for c in text], dtype=np.int64)
    n = len(ids) // length
    return ids[: n * length].reshape(n, length), symbols + ["\N{REPLACEMENT CHARACTER}"]


def bigram_bits(train: np.ndarray, test: np.ndarray, vocab: int) -> tuple[float, float]:
    """(unigram, bigram) bits per character of the test windows, fitted on train windows with
    add-one smoothing; each window's first character from the unigram."""
    unigram = np.bincount(train.reshape(-1), minlength=vocab) + 1.0
    unigram /= unigram.sum()
    pairs = np.ones((vocab, vocab))
    np.add.at(pairs, (train[:, :-1].reshape(-1), train[:, 1:].reshape(-1)), 1.0)
    pairs /= pairs.sum(1, keepdims=True)
    uni = -np.log2(unigram[test]).mean()
    bi = -(np.log2(unigram[test[:, 0]]).sum() + np.log2(pairs[test[:, :-1], test[:, 1:]]).sum())
    return float(uni), float(bi / test.size)


def as_text(row, symbols: list[str]) -> str:
    return "".join(HOLE if math.isnan(v) else symbols[int(v)] for v in row.tolist()) \
        .replace("\n", "\N{RETURN SYMBOL}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a UTF-8 text file")
    parser.add_argument("--hidden", type=int, default=128, help="hidden states (default 128)")
    parser.add_argument("--length", type=int, default=64, help="characters per window (default 64)")
    parser.add_argument("--epochs", type=int, help="online EM epochs (default: the recipe's)")
    parser.add_argument("--polish", type=int, help="full-batch EM iterations at most (default: "
                                                   "the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.manual_seed(args.seed)
    with open(args.path, encoding="utf-8", errors="replace") as f:
        ids, symbols = windows(f.read(), args.length)
    vocab = len(symbols)
    n = len(ids)
    train, valid, test = ids[: n * 8 // 10], ids[n * 8 // 10: n * 9 // 10], ids[n * 9 // 10:]
    print(f"{args.path}: {ids.size:,} characters in {n:,} windows of {args.length} "
          f"({len(train)} train, {len(valid)} valid, {len(test)} test); {vocab} symbols")
    model = pcc.compile(hidden_markov_model(args.length, args.hidden, vocab), seed=args.seed)
    started = time.perf_counter()
    fit(model, torch.from_numpy(train).float(), torch.from_numpy(valid).float(),
        TrainConfig(epochs=args.epochs, polish=args.polish, seed=args.seed), progress=False)
    seconds = time.perf_counter() - started
    hmm_bits = -evaluate(model, torch.from_numpy(test).float()).mean / args.length / math.log(2)
    uni, bi = bigram_bits(train, test, vocab)
    print(f"test bits per character: HMM ({args.hidden} states, trained in {seconds:.0f} s) "
          f"{hmm_bits:.3f}, bigram {bi:.3f}, unigram {uni:.3f}")

    gen = torch.Generator().manual_seed(args.seed)
    print("\ngenerated (exact samples):")
    for row in model.sample(3, generator=gen):
        print("  " + as_text(row, symbols))
    window = torch.from_numpy(test[0]).float()
    hole = slice(args.length // 3, args.length // 3 + max(1, args.length // 4))
    evidence = window.clone()
    evidence[hole] = math.nan
    print(f"\ninfilled (the hole: {HOLE}):\n  original  {as_text(window, symbols)}\n"
          f"  evidence  {as_text(evidence, symbols)}")
    for row in model.sample(3, evidence.unsqueeze(0), generator=gen):
        print(f"  sample    {as_text(row, symbols)}")
    print(f"  MPE       {as_text(model.mpe(evidence.unsqueeze(0))[0][0], symbols)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
