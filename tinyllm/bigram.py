"""Chapter 02's model: the bigram model, a table of next-token logits.

It reads one token and predicts the next; GPT (:mod:`tinyllm.model`) reads a whole context.
``from tinyllm.model import BigramLanguageModel`` also works (the chapters import it so).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm.sampling import sample_next
from tinyllm.validate import check_ids, check_int


class BigramLanguageModel(nn.Module):
    """Predicts the next token from the current one alone.

    Its only parameter is a ``(V, V)`` table: row ``i`` holds the logits of the token that
    follows token ``i``. Trained to convergence it learns the same table that counting
    pairs gives (up to smoothing).
    """

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_embedding_table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        """``idx`` ``(B, T)`` -> logits ``(B, T, V)`` and the mean cross-entropy or None."""
        check_ids(idx, self.vocab_size, targets)
        logits = self.token_embedding_table(idx)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, self.vocab_size), targets.reshape(-1).long())
        return logits, loss

    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, generator: torch.Generator | None = None):
        """Append ``max_new_tokens`` sampled tokens to ``idx`` ``(B, T)``."""
        check_int("max_new_tokens", max_new_tokens, 0)
        for _ in range(max_new_tokens):
            logits, _ = self(idx[:, -1:])
            next_id = sample_next(logits[:, -1, :], generator=generator)
            idx = torch.cat([idx, next_id], dim=1)
        return idx
