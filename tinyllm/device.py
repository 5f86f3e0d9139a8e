"""Choose where tensors live (a CUDA GPU, then Apple's MPS, then the CPU) and in which
precision the matrix multiplies run there.

The command-line tools take ``--device auto`` (or ``cpu``, ``cuda``, ``cuda:1``, ``mps``)
and pass it here; in a notebook, ``pick_device()`` says which device it chose.
``--dtype auto`` picks bfloat16 where the hardware multiplies it fast (:func:`resolve_dtype`).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

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


def cpu_has_fast_bfloat16() -> bool:
    """True if the CPU multiplies bfloat16 matrices in hardware (Intel AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str, device_type: str) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, or ``"auto"``: bfloat16 where the device is fast at it."""
    if dtype == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device_type == "cpu" and cpu_has_fast_bfloat16() else torch.float32
    if dtype not in ("float32", "bfloat16"):
        raise ValueError(f"dtype must be 'float32', 'bfloat16' or 'auto', got {dtype!r}")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def autocast_context(device_type: str, dtype: torch.dtype):
    """Mixed precision: matrix multiplies in ``dtype``, weights and optimizer in float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)
