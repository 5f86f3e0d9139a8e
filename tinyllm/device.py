"""Choose where tensors live: a CUDA GPU, then Apple's MPS, then the CPU.

The command-line tools take ``--device auto`` (or ``cpu``, ``cuda``, ``cuda:1``, ``mps``)
and pass it here; in a notebook, ``pick_device()`` says which device it chose.
"""

from __future__ import annotations

import torch


def _mps_available() -> bool:
    return hasattr(torch.backends, "mps") and torch.backends.mps.is_available()


def pick_device(preferred: str | None = None, verbose: bool = True) -> torch.device:
    """Return ``preferred`` if given, else the fastest available device, and say which."""
    if preferred is not None and preferred != "auto":
        try:
            device = torch.device(preferred)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {preferred!r}"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for but no CUDA GPU is available")
        if device.type == "mps" and not _mps_available():
            raise ValueError("device 'mps' was asked for but MPS is not available")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    elif _mps_available():
        device = torch.device("mps")
    else:
        device = torch.device("cpu")
    if verbose:
        if device.type == "cuda":
            detail = torch.cuda.get_device_name(device)
        else:
            detail = f"{torch.get_num_threads()} threads"
        print(f"using device: {device.type} ({detail})")
    return device
