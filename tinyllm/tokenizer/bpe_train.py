"""Fast byte-pair encoding training: the same merges as the simple trainer, without re-counting.

The simple trainer (:mod:`tinyllm.tokenizer.bpe_reference`) re-counts every pair of the
whole text after every merge. Three observations make it fast while giving *exactly* the
same merges:

1. **Unique chunks.** The regex splits the text into chunks (words, spaces, punctuation)
   and merges never cross a chunk boundary, so a chunk that occurs 3,000 times can be
   stored once with the count 3,000. Tinyshakespeare has 263k chunks but 15k unique ones.
2. **Incremental counts.** Merging ``(a, b) -> X`` only changes the pairs that touch a
   merged position: ``(left, a)`` becomes ``(left, X)`` and ``(b, right)`` becomes
   ``(X, right)``. Every other pair keeps its count, so only those are updated.
3. **An index and a heap.** ``where[pair]`` holds the chunks that contain ``pair`` (so a
   merge visits only them), and a heap of ``(-count, pair)`` gives the most frequent pair
   in ``O(log n)``. Python compares tuples item by item, so the heap's smallest entry is
   the highest count and, among equal counts, the smallest pair: the same tie-breaking as
   the simple trainer. Entries whose count has changed since they were pushed are stale;
   they are skipped when popped (lazy deletion).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping


def train_merges(
    chunk_counts: Mapping[bytes, int],
    num_merges: int,
    on_merge: Callable[[int, tuple[int, int], int], None] | None = None,
) -> list[tuple[int, int]]:
    """Learn up to ``num_merges`` merges from chunks given as ``{utf8_bytes: count}``.

    Returns the merged pairs in order: pair ``k`` becomes token id ``256 + k``. Stops early
    when no chunk has two tokens left. ``on_merge(k, pair, count)`` is called after each
    merge (for a progress bar). Ties between equal counts go to the smallest pair.
    """
    words = [list(chunk) for chunk in chunk_counts]  # bytes -> list of ints in 0..255
    counts = list(chunk_counts.values())
    stats: dict[tuple[int, int], int] = {}
    where: dict[tuple[int, int], set[int]] = {}
    for i, (word, count) in enumerate(zip(words, counts)):
        for pair in zip(word, word[1:]):
            stats[pair] = stats.get(pair, 0) + count
            where.setdefault(pair, set()).add(i)
    heap = [(-count, pair) for pair, count in stats.items()]
    heapq.heapify(heap)

    merges: list[tuple[int, int]] = []
    for k in range(num_merges):
        # Pop until an entry matches the pair's current count (the others are stale).
        while heap:
            neg_count, pair = heapq.heappop(heap)
            if stats.get(pair) == -neg_count:
                break
        else:
            break  # no pair left anywhere
        best_count = -neg_count
        a, b = pair
        new_id = 256 + k
        changed: set[tuple[int, int]] = set()

        for i in where.pop(pair):
            word = words[i]
            if a not in word:  # stale index entry: an earlier merge consumed this pair
                continue
            count = counts[i]
            new_word: list[int] = []
            n = len(word)
            j = 0
            last_end = -2  # index (in word) of the b of the previous merge in this word
            while j < n:
                if word[j] == a and j + 1 < n and word[j + 1] == b:
                    # The pairs that vanish: (left, a) and (b, right). (a, b) itself is
                    # dropped wholesale below. If the previous merge ended just before,
                    # the pair between the two merges was already taken away as its right.
                    if j > 0 and last_end != j - 1:
                        p = (word[j - 1], a)
                        stats[p] -= count
                        changed.add(p)
                    if j + 2 < n:
                        p = (b, word[j + 2])
                        stats[p] -= count
                        changed.add(p)
                    # The pair that appears on the left: (left, X), where left may be an X too.
                    if new_word:
                        p = (new_word[-1], new_id)
                        stats[p] = stats.get(p, 0) + count
                        changed.add(p)
                        where.setdefault(p, set()).add(i)
                    new_word.append(new_id)
                    last_end = j + 1
                    j += 2
                else:
                    token = word[j]
                    # The pair that appears on the right of an X: (X, token).
                    if new_word and new_word[-1] == new_id:
                        p = (new_id, token)
                        stats[p] = stats.get(p, 0) + count
                        changed.add(p)
                        where.setdefault(p, set()).add(i)
                    new_word.append(token)
                    j += 1
            words[i] = new_word

        stats.pop(pair, None)
        changed.discard(pair)
        for p in changed:
            count = stats[p]
            assert count >= 0, f"pair {p} has a negative count {count}"
            if count:
                heapq.heappush(heap, (-count, p))
            else:
                del stats[p]
        merges.append(pair)
        if on_merge is not None:
            on_merge(k, pair, best_count)
    return merges
