"""Turning a model's logits into the next token: temperature, top-k, top-p, greedy.

Pure functions on tensors of logits of shape ``(B, V)``; they know nothing about the model,
so the model's ``generate`` and the sampling chapter share them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tinyllm.validate import check_int


def check_sampling_args(temperature: float, top_k: int | None, top_p: float | None, greedy: bool) -> None:
    """Raise ``ValueError`` for arguments that have no meaning."""
    if not greedy and not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; for the most likely token every time, "
            "use greedy=True"
        )
    if top_k is not None:  # None: no top-k filter
        check_int("top_k", top_k)
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row, set the rest to ``-inf``. ``(B, V) -> (B, V)``.

    Logits equal to the k-th largest are all kept (as in nanoGPT), so a tie can keep more than k.
    """
    k = min(k, logits.size(-1))
    kth_largest = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth_largest, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filtering: keep the smallest set of tokens whose probabilities sum to ``>= p``.

    The most likely token is always kept, so the result is never empty. ``p >= 1`` keeps every
    token: filtering off, as generation's settings mean it (set 09's exercise asks instead for the
    rule in floats at ``p = 1`` too, where a token whose probability rounds to 1 alone reaches p).
    ``(B, V) -> (B, V)``.
    """
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Drop a token when the tokens before it already reach p (shift right by one).
    drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= p
    drop_sorted[..., 0] = False  # the most likely token stays, even for p <= 0
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Pick one next token per row of ``logits`` ``(B, V)``; returns ids of shape ``(B, 1)``."""
    check_sampling_args(temperature, top_k, top_p, greedy)
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()  # float32 first: half-precision logits overflow at small temperatures
    scaled = logits / temperature
    if scaled.isnan().any() or scaled.isposinf().any():  # so small a temperature that float32 overflows too:
        scaled = (logits - logits.amax(dim=-1, keepdim=True)) / temperature  # a row's softmax ignores a shift
    logits = scaled
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    probs = F.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)
