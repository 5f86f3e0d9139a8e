"""The KV cache (chapter 09): the keys and values of the tokens already read, kept per layer.

:meth:`tinyllm.model.GPT.generate` and :mod:`tinyllm.chat` fill one as they go;
``from tinyllm.model import KVCache`` also works.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values of the tokens seen so far, one ``(B, n_kv, T, hs)`` pair per layer
    (``n_kv`` = ``config.kv_heads``: grouped-query attention caches fewer heads).

    With it, generating a token runs the model on that one token instead of the whole
    context: the keys and values of earlier positions never change (causal attention),
    so they are computed once and kept.
    """

    def __init__(self, n_layer: int):
        self.keys: list[torch.Tensor | None] = [None] * n_layer
        self.values: list[torch.Tensor | None] = [None] * n_layer

    @property
    def length(self) -> int:
        """How many positions are cached (in every layer, once a forward pass is done)."""
        return self.layer_length(0)

    def layer_length(self, layer: int) -> int:
        return 0 if self.keys[layer] is None else self.keys[layer].size(2)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Append this step's keys/values ``(B, n_kv, T, hs)``; return all cached ones."""
        if self.keys[layer] is not None:
            k = torch.cat([self.keys[layer], k], dim=2)
            v = torch.cat([self.values[layer], v], dim=2)
        self.keys[layer], self.values[layer] = k, v
        return k, v
