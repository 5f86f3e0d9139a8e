"""The package's argument checks, each with one wording for its error: integer arguments
(:func:`check_int`) and the token ids a model reads (:func:`check_ids`).

It sits below every step of the data flow and imports nothing of the package.
"""

from __future__ import annotations

import operator

import torch


def check_int(name: str, value, low: int = 1, high: int | None = None) -> int:
    """Return ``value`` if it is an int in ``low..high`` (no upper bound if ``high`` is None);
    else raise ``ValueError``: ``"n_layer must be an int >= 1, got 0"``. A bool is not an
    int here, although Python counts ``True`` as 1: ``n_layer=True`` is a mistake."""
    in_range = isinstance(value, int) and low <= value and (high is None or value <= high)
    if isinstance(value, bool) or not in_range:
        bounds = f">= {low}" if high is None else f"in {low}..{high}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return value


def token_id(value, vocab_size: int) -> int:
    """``value`` as a token id in ``0..vocab_size-1``: an int, a numpy integer or a 0-d integer
    tensor (``tok.decode([y[0, t]])``); a float (2.7, or 2.0 from a float tensor) or a bool is a
    mistake upstream, not a token, and raises ``ValueError``."""
    try:
        if isinstance(value, bool) or getattr(value, "dtype", None) == torch.bool:
            raise TypeError
        index = operator.index(value)
    except TypeError:
        index = None
    if index is None or not 0 <= index < vocab_size:
        raise ValueError(f"token id {value!r} is outside the vocabulary (0..{vocab_size - 1})") from None
    return index


def check_ids(idx: torch.Tensor, vocab_size: int, targets: torch.Tensor | None = None) -> None:
    """Raise ``ValueError`` unless ``idx`` is a ``(B, T)`` tensor of ids in ``0..vocab_size-1``
    and ``targets``, if given, has its shape (a ``(T, B)`` or flattened batch would otherwise
    be flattened beside ``idx`` and scored against the wrong positions)."""
    if torch.compiler.is_compiling():
        return  # reading values back (.item()) would break the compiled graph
    if idx.dim() != 2:
        raise ValueError(f"idx must have shape (B, T), got {tuple(idx.shape)}")
    if targets is not None and targets.shape != idx.shape:
        raise ValueError(f"targets must have the shape of idx {tuple(idx.shape)}, got {tuple(targets.shape)}")
    if targets is not None and targets.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"targets must hold integer token ids, got dtype {targets.dtype}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"idx must hold integer token ids, got dtype {idx.dtype}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= vocab_size):
        bad = idx[(idx < 0) | (idx >= vocab_size)][0].item()
        raise ValueError(f"token id {bad} is outside the vocabulary (0..{vocab_size - 1})")
