"""The pieces modern decoders changed in GPT-2 (chapter 11), as plain functions.

Each is a switch of :class:`tinyllm.model.GPTConfig`; the model calls these functions, and
the tests compare each with an independent implementation (Hugging Face's Llama code,
``torch.nn.RMSNorm``).

- :func:`rms_norm` (``norm="rmsnorm"``): LayerNorm without the mean and the bias. Scaling
  by the root mean square alone works as well and costs less (Zhang & Sennrich, 2019).
- :func:`rope_angles`, :func:`apply_rope` (``pos="rope"``): rotary position embeddings.
  Each pair of a query's (and key's) channels is rotated by an angle proportional to its
  position, so the score ``q_i . k_j`` depends on ``i - j`` only (Su et al., 2021).
- :func:`repeat_kv` (``n_kv_head``): grouped-query attention. Several query heads share one
  key/value head, so the KV cache shrinks by ``n_head / n_kv_head`` (Ainslie et al., 2023).
- :func:`swiglu`, :func:`relu2` (``mlp="swiglu"``, ``"relu2"``): a gated MLP (Shazeer, 2020)
  and the squared ReLU (So et al., 2021).

Shapes: ``B`` batch, ``T`` positions, ``hs`` head size, ``n_kv`` key/value heads.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm.validate import check_int


def rms_norm(x: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """``x / sqrt(mean(x**2) + eps) * weight`` over the last dimension ``(..., C)``.

    Computed in float32 at least (a bfloat16 mean of squares loses digits; float64 stays
    float64), returned in ``x``'s dtype (times ``weight``: in the two's promoted dtype).
    """
    h = x.to(torch.promote_types(x.dtype, torch.float32))
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    h = h.to(x.dtype)
    return h if weight is None else h * weight


class RMSNorm(nn.Module):
    """:func:`rms_norm` with a learned gain ``weight`` ``(C,)`` starting at ones (no bias)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rope_angles(T: int, head_size: int, theta: float = 10000.0, start: int = 0,
                device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cos, sin)``, each ``(T, head_size)``, for positions ``start .. start + T - 1``.

    Channel pair ``(m, m + hs/2)`` turns at frequency ``theta ** (-2m / hs)``: fast for the
    first pairs (fine position), slow for the last (coarse). The angles are written twice
    side by side, the "half-split" layout of Hugging Face's Llama.
    """
    if head_size % 2:
        raise ValueError(f"RoPE rotates channel pairs: head_size must be even, got {head_size}")
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_size, 2, device=device).float() / head_size))
    t = torch.arange(start, start + T, device=device).float()
    freqs = torch.outer(t, inv_freq)  # (T, hs/2): position times frequency
    emb = torch.cat((freqs, freqs), dim=-1)  # (T, hs)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """``(x1, x2) -> (-x2, x1)`` on the two halves of the last dimension: a 90 degree turn."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(..., T, hs)`` by the angles of :func:`rope_angles` ``(T, hs)``.

    Pair ``(x[m], x[m + hs/2])`` becomes its 2-D rotation by angle ``t * freq_m``.
    """
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """``(B, n_kv, T, hs)`` -> ``(B, n_kv * n_rep, T, hs)``: each key/value head ``n_rep``
    times in a row, so query head ``j`` reads key/value head ``j // n_rep``."""
    check_int("n_rep", n_rep)
    if n_rep == 1:
        return x
    B, n_kv, T, hs = x.shape
    return x[:, :, None].expand(B, n_kv, n_rep, T, hs).reshape(B, n_kv * n_rep, T, hs)


def swiglu(x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor) -> torch.Tensor:
    """``down(silu(x @ w_gate.T) * (x @ w_up.T))``; ``x`` ``(..., C)``, the weights stored as
    ``nn.Linear`` stores them: ``w_gate``, ``w_up`` ``(H, C)``, ``w_down`` ``(C, H)``.

    The gate decides, per hidden unit and per token, how much of the "up" value passes.
    """
    return F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)


def relu2(x: torch.Tensor) -> torch.Tensor:
    """``relu(x) ** 2``: zero for negatives, grows quadratically for positives."""
    return F.relu(x).square()


class ReLU2(nn.Module):
    """:func:`relu2` as a module (the MLP's ``act`` with ``mlp="relu2"``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return relu2(x)
