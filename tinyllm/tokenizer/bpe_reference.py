"""The simple byte-pair encoding trainer of chapter 03: re-count every pair after every merge.

This is the obvious algorithm, kept as the oracle that the fast trainer in
:mod:`tinyllm.tokenizer.bpe_train` must agree with exactly (tests and the benchmark
import it; the chapter writes the same few lines itself):

1. split the text into chunks with the regex pattern and turn each chunk into its UTF-8 bytes;
2. count every adjacent pair of ids inside every chunk;
3. merge the most frequent pair everywhere into a new id (256, 257, ...);
4. repeat until there are ``num_merges`` merges (or no pair is left).

Ties between pairs with the same count go to the smallest pair ``(a, b)`` (compared as
integers, first ``a`` then ``b``): ``min(stats, key=lambda p: (-stats[p], p))``.
"""

from __future__ import annotations

import regex


def get_stats(ids, counts=None):
    """Count adjacent pairs: ``[1, 2, 3, 1, 2] -> {(1, 2): 2, (2, 3): 1, (3, 1): 1}``."""
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + 1
    return counts


def merge(ids, pair, idx):
    """Replace every occurrence of ``pair`` (left to right, without overlap) by ``idx``."""
    new_ids = []
    i = 0
    while i < len(ids):
        if i < len(ids) - 1 and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            new_ids.append(idx)
            i += 2
        else:
            new_ids.append(ids[i])
            i += 1
    return new_ids


def train_merges_simple(text: str, num_merges: int, pattern: str) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges from ``text``; returns them in order (pair k -> id 256 + k)."""
    chunks = [list(chunk.encode("utf-8")) for chunk in regex.findall(pattern, text)]
    merges = []
    for k in range(num_merges):
        stats = {}
        for chunk_ids in chunks:
            get_stats(chunk_ids, stats)
        if not stats:
            break  # every chunk is a single token: nothing left to merge
        pair = min(stats, key=lambda p: (-stats[p], p))
        chunks = [merge(chunk_ids, pair, 256 + k) for chunk_ids in chunks]
        merges.append(pair)
    return merges
