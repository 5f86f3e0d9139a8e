"""Helpers shared by several test files (not a test file itself)."""

from __future__ import annotations

import torch

from tinyllm.model import GPT, GPTConfig


def random_model(config: dict, seed: int = 0, scale: float = 0.1, **overrides) -> GPT:
    """A GPT in eval mode whose every parameter (biases, layer-norm gains too) is random.

    A freshly initialised model has zero biases and unit gains, which would let a wrong
    mapping of those parameters go unnoticed; random noise of ``scale`` on all of them
    makes every part visible to a comparison.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**config, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()
