"""Chat batches: padding and packing of (ids, labels), with -100 where nothing is learned."""

import pytest
import torch

from tinyllm.batching import ChatBatches, unmasked
from tinyllm.model import IGNORE_INDEX

N = IGNORE_INDEX
# Two conversations: ids, and labels that learn only some tokens (the "assistant's").
EXAMPLES = [([1, 2, 3, 4, 5], [N, N, 3, 4, 5]), ([6, 7, 8], [N, 7, 8])]


def test_padding_one_conversation_per_row_shifted_by_one():
    batches = ChatBatches(EXAMPLES, "pad", pad_id=0)
    x, y = batches.get_batch(8, 16, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 4)  # the longest chosen conversation minus one
    rows = {tuple(r) for r in torch.cat([x, y], 1).tolist()}
    assert rows == {(1, 2, 3, 4, N, 3, 4, 5), (6, 7, 0, 0, 7, 8, N, N)}  # pads are never learned


def test_padding_cuts_at_block_size():
    x, y = ChatBatches(EXAMPLES[:1], "pad").get_batch(2, 2)
    assert x.tolist() == [[1, 2]] * 2 and y.tolist() == [[N, 3]] * 2


def test_packing_cuts_windows_from_one_stream():
    batches = ChatBatches(EXAMPLES, "pack")
    x, y = batches.get_batch(16, 3, generator=torch.Generator().manual_seed(0))
    stream, labels = [1, 2, 3, 4, 5, 6, 7, 8], [N, N, 3, 4, 5, N, 7, 8]
    assert x.shape == y.shape == (16, 3)
    for xs, ys in zip(x.tolist(), y.tolist()):
        s = stream.index(xs[0])
        assert xs == stream[s : s + 3] and ys == labels[s + 1 : s + 4]
    assert batches.num_learned() == 5


def test_unmasked_learns_every_token_but_ignored_ones():
    assert unmasked(EXAMPLES, ignore_ids={0}) == [([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), ([6, 7, 8], [6, 7, 8])]
    assert unmasked([([0, 1], [N, 1])], ignore_ids={0}) == [([0, 1], [N, 1])]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="mode"):
        ChatBatches(EXAMPLES, "shuffle")
    with pytest.raises(ValueError, match="conversation 0 has 2 ids and 1 labels"):
        ChatBatches([([1, 2], [N])])
    with pytest.raises(ValueError, match="empty"):
        ChatBatches([])
