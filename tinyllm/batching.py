"""Batches for chat fine-tuning: conversations of ``(ids, labels)`` into ``(B, T)`` tensors.

A conversation is encoded (``tinyllm.chat_data.encode_chat``) as token ids and labels of
the same length: ``labels[i]`` is ``ids[i]`` where the model must learn to write that token
(the assistant's words and the end-of-turn token that closes them) and ``IGNORE_INDEX``
(-100) elsewhere (the system prompt, the user's words, the template's markers). The
input is ``ids[:-1]`` and the target ``labels[1:]``: position ``t`` predicts token ``t + 1``,
and the loss counts only the positions whose next token is the assistant's.

Two ways to make rectangles of conversations of different lengths:

- ``"pad"``: one conversation per row, starting at position 0 (as in a chat, where the
  conversation starts the context), cut at ``block_size + 1`` tokens, filled up with
  ``pad_id`` whose targets are ignored. Nothing crosses a conversation boundary; the
  padding costs compute.
- ``"pack"``: every conversation concatenated into one stream, and random windows of
  ``block_size`` tokens cut from it, as for plain text. No compute is wasted, but a window
  may start in the middle of a conversation and holds the end of the previous one: the
  model attends across the boundary (it reads an unrelated conversation as context) and
  learns to start a new conversation after an ``<|im_end|>``. Targets stay correct: only
  the assistant's tokens are learned, whatever precedes them.
"""

from __future__ import annotations

import torch

from tinyllm.model import IGNORE_INDEX

MODES = ("pad", "pack")


class ChatBatches:
    """Random ``(x, y)`` batches ``(B, T)`` from ``examples``, a list of ``(ids, labels)``."""

    def __init__(self, examples, mode: str = "pad", pad_id: int = 0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not examples:
            raise ValueError("examples is empty: need at least one conversation")
        for k, (ids, labels) in enumerate(examples):
            if len(ids) != len(labels) or len(ids) < 2:
                raise ValueError(
                    f"conversation {k} has {len(ids)} ids and {len(labels)} labels; need equal lengths >= 2"
                )
        self.mode = mode
        self.pad_id = pad_id
        self.examples = [
            (torch.tensor(ids, dtype=torch.long), torch.tensor(labels, dtype=torch.long))
            for ids, labels in examples
        ]
        self.ids = torch.cat([i for i, _ in self.examples])
        self.labels = torch.cat([labels for _, labels in self.examples])

    def __len__(self) -> int:
        return len(self.examples)

    def num_learned(self) -> int:
        """How many tokens carry a label (the ones the loss counts)."""
        return int((self.labels != IGNORE_INDEX).sum())

    def get_batch(self, batch_size: int, block_size: int, generator: torch.Generator | None = None):
        """``x`` ids ``(B, T)`` and ``y`` targets ``(B, T)`` (``IGNORE_INDEX`` where not learned).

        ``T`` is ``block_size`` when packing; when padding it is the longest chosen
        conversation (at most ``block_size``), so short conversations cost less.
        """
        if self.mode == "pack":
            if len(self.ids) <= block_size:
                raise ValueError(
                    f"the conversations hold {len(self.ids)} tokens; packing needs more than block_size={block_size}"
                )
            starts = torch.randint(len(self.ids) - block_size, (batch_size,), generator=generator)
            x = torch.stack([self.ids[s : s + block_size] for s in starts])
            y = torch.stack([self.labels[s + 1 : s + 1 + block_size] for s in starts])
            return x, y
        rows = torch.randint(len(self.examples), (batch_size,), generator=generator).tolist()
        chosen = [self.examples[r] for r in rows]
        T = min(block_size, max(len(ids) - 1 for ids, _ in chosen))
        x = torch.full((batch_size, T), self.pad_id, dtype=torch.long)
        y = torch.full((batch_size, T), IGNORE_INDEX, dtype=torch.long)
        for b, (ids, labels) in enumerate(chosen):
            n = min(T, len(ids) - 1)  # longer conversations are cut at block_size + 1 tokens
            x[b, :n] = ids[:n]
            y[b, :n] = labels[1 : n + 1]
        return x, y


def unmasked(examples, ignore_ids=()):
    """GuppyLM-style labels: learn every token of the conversation (the user's words too),
    except ``ignore_ids`` (e.g. padding). Returns a new list of ``(ids, labels)``."""
    ignore = set(ignore_ids)
    return [(list(ids), [IGNORE_INDEX if i in ignore else i for i in ids]) for ids, _ in examples]
