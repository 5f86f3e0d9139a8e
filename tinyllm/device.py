"""Choose where tensors live: a CUDA GPU, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch


def pick_device(preferred: str | None = None, verbose: bool = True) -> torch.device:
    """Return ``preferred`` if given, else the fastest available device, and say which."""
    if preferred is not None and preferred != "auto":
        device = torch.device(preferred)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
        if device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ValueError("device 'mps' was asked for but MPS is not available")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        detail = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"using device: {device.type} ({detail})")
    return device
