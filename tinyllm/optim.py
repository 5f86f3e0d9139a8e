"""Optimizers for the training loop: AdamW (chapter 08) and Muon (chapter 11).

Muon (Keller Jordan, 2024) updates a weight matrix with its momentum *orthogonalised*: the
matrix with the same singular vectors but every singular value set to (about) 1. AdamW
scales each entry on its own; Muon makes every direction of the matrix move by the same
amount, so rare directions learn as fast as common ones, and it tolerates a much higher
learning rate. It is meant for the hidden matrices only: embeddings, the output head,
norm gains and biases keep AdamW.

- :func:`newton_schulz` writes out the quintic iteration that orthogonalises a matrix with
  matrix multiplies alone (no SVD), exactly as ``torch.optim.Muon`` does it.
- :func:`build_optimizer` returns AdamW (as :meth:`tinyllm.model.GPT.configure_optimizers`)
  or :class:`MuonAdamW`: :class:`Muon` (``torch.optim.Muon``, its Newton-Schulz steps in
  float32 where the hardware multiplies bfloat16 slowly) for the blocks' 2-D weights and
  AdamW for the rest, stepped together and saved as one ``state_dict`` (so ``--resume``
  stays exact).
- :func:`set_lr` sets every parameter group's learning rate to its own peak (``base_lr``)
  times the schedule's factor, so Muon's and AdamW's peaks follow one schedule.
"""

from __future__ import annotations

import math

import torch

from tinyllm.device import resolve_dtype
from tinyllm.validate import check_int

OPTIMIZERS = ("adamw", "muon")
# The quintic's coefficients (Keller Jordan's, also torch.optim.Muon's defaults): chosen for
# the steepest slope at zero, so 5 steps push every singular value into about [0.7, 1.2].
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def decay_groups(params, weight_decay: float) -> list[dict]:
    """AdamW's two parameter groups: matrices (Linear and Embedding weights) decay toward
    zero by ``weight_decay``; vectors (biases, norm gains) do not, since decaying them only
    hurts. :meth:`tinyllm.model.GPT.configure_optimizers` and :func:`build_optimizer` use it."""
    params = list(params)
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def newton_schulz(G: torch.Tensor, steps: int = 5, eps: float = 1e-7, *,
                  coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """Approximately orthogonalise the matrix ``G`` ``(m, n)``: ``U S' V^T`` with ``S' ~ 1``
    where ``G = U S V^T``. Returned in bfloat16, as Muon computes it (or in ``dtype``).

    Each step maps ``X -> a X + b (X X^T) X + c (X X^T)^2 X``: an odd polynomial of ``X``,
    so it keeps the singular vectors and applies ``p(s) = a s + b s^3 + c s^5`` to each
    singular value. Dividing by the Frobenius norm first puts every ``s`` in [0, 1], where
    repeating ``p`` pushes them towards 1.
    """
    if G.dim() != 2:
        raise ValueError(f"newton_schulz needs a matrix (2-D tensor), got shape {tuple(G.shape)}")
    check_int("steps", steps, 0)
    a, b, c = coefficients
    X = G.to(dtype)  # bfloat16 is accurate enough: the result is only approximately orthogonal
    tall = G.size(0) > G.size(1)
    if tall:  # work with the smaller Gram matrix X X^T
        X = X.T
    X = X / X.norm().clamp(min=eps)  # spectral norm <= Frobenius norm = 1
    for _ in range(steps):
        A = X @ X.T
        B = b * A + c * (A @ A)
        X = a * X + B @ X
    return X.T if tall else X


def _load_keeping_peaks(optimizer, load, state_dict: dict) -> None:
    """``load(state_dict)``, then give each group back the peak learning rate (``base_lr``) it
    had: the peaks come from the run's config, not the checkpoint. Any torch-style state
    loads, with or without ``base_lr`` on either side (an optimizer built without
    :func:`build_optimizer`, a checkpoint written before ``base_lr`` existed)."""
    peaks = [group.get("base_lr") for group in optimizer.param_groups]
    load(state_dict)
    for group, peak in zip(optimizer.param_groups, peaks):
        if peak is not None:
            group["base_lr"] = peak


class AdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` whose groups keep their peak learning rate (``base_lr``) when a
    checkpoint's state is loaded (see ``_load_keeping_peaks``)."""

    def load_state_dict(self, state_dict: dict) -> None:
        _load_keeping_peaks(self, super().load_state_dict, state_dict)


class MuonAdamW:
    """Muon for some parameters and AdamW for the others, used as one optimizer.

    ``param_groups`` lists AdamW's groups, then Muon's; ``state_dict()`` numbers the
    parameters in that order, the way a single torch optimizer does, so
    :mod:`tinyllm.checkpoint` saves and loads it like any other.
    """

    def __init__(self, adamw: torch.optim.Optimizer, muon: torch.optim.Optimizer):
        self.optimizers = [adamw, muon]

    @property
    def param_groups(self) -> list[dict]:
        return [g for opt in self.optimizers for g in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def step(self) -> None:
        for opt in self.optimizers:
            opt.step()

    def state_dict(self) -> dict:
        out, offset = {"state": {}, "param_groups": []}, 0
        for opt in self.optimizers:
            sd = opt.state_dict()
            out["state"].update({i + offset: s for i, s in sd["state"].items()})
            out["param_groups"] += [{**g, "params": [i + offset for i in g["params"]]}
                                    for g in sd["param_groups"]]
            offset += sum(len(g["params"]) for g in sd["param_groups"])
        return out

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"the state has {len(groups)} parameter groups, "
                             f"this optimizer {len(self.param_groups)}")
        start, offset = 0, 0
        for opt in self.optimizers:
            own = groups[start:start + len(opt.param_groups)]
            n = sum(len(g["params"]) for g in own)
            sd = {
                "state": {i - offset: s for i, s in state_dict["state"].items() if offset <= i < offset + n},
                "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in own],
            }
            _load_keeping_peaks(opt, opt.load_state_dict, sd)
            start, offset = start + len(own), offset + n


class Muon(torch.optim.Muon):
    """``torch.optim.Muon``, whose Newton-Schulz steps run in bfloat16, except where the
    hardware multiplies bfloat16 slowly (``fast_bfloat16=False``): there the same steps run
    in float32. With PyTorch's kernels held to AVX2 (no AMX, no AVX512-BF16), a 128 x 128 by
    128 x 512 product takes 85 times longer in bfloat16 than in float32 on one thread
    (``benchmarks/bench_bfloat16.py``), and chapter 11's 40 speedrun steps took 21 s instead
    of 5 s on such a CPU. Same state (``momentum_buffer``), same update otherwise."""

    def __init__(self, params, *, fast_bfloat16: bool, **options):
        super().__init__(params, **options)
        self.fast_bfloat16 = fast_bfloat16

    @torch.no_grad()
    def step(self, closure=None):
        if self.fast_bfloat16:
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                buf = self.state[p].setdefault("momentum_buffer", torch.zeros_like(p.grad))
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = newton_schulz(update, group["ns_steps"], group["eps"],
                                       coefficients=group["ns_coefficients"], dtype=torch.float32)
                rows, cols = p.shape[:2]
                if group["adjust_lr_fn"] == "match_rms_adamw":
                    scale = 0.2 * math.sqrt(max(rows, cols))
                else:  # None or "original": Keller Jordan's
                    scale = math.sqrt(max(1, rows / cols))
                p.mul_(1 - lr * group["weight_decay"])
                p.add_(update, alpha=-lr * scale)
        return loss


def build_optimizer(model: torch.nn.Module, name: str = "adamw", lr: float = 6e-4, weight_decay: float = 0.1,
                    betas=(0.9, 0.95), muon_lr: float = 0.02, muon_momentum: float = 0.95,
                    device_type: str = "cpu", muon_weight_decay: float = 0.0):
    """The optimizer ``name`` for a :class:`tinyllm.model.GPT`, each group's peak in ``base_lr``.

    ``"adamw"``: AdamW that decays only matrices, as ``GPT.configure_optimizers``.
    ``"muon"``: :class:`Muon`, torch's (Nesterov momentum ``muon_momentum``, peak ``muon_lr``,
    scaled by ``sqrt(max(1, rows / cols))`` as in Keller Jordan's code) for every 2-D weight
    inside the blocks (attention and MLP matrices); AdamW (peak ``lr``) for the rest.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {name!r}")
    for arg, value in [("lr", lr)] + ([("muon_lr", muon_lr)] if name == "muon" else []):  # adamw's: unused
        if not 0 < value < math.inf:
            raise ValueError(f"{arg} must be > 0 and finite, got {value!r}")
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    # Matrices inside the blocks go to Muon; the (tied) embedding and head, norms, biases do not.
    matrices = {n for n, p in params.items()
                if name == "muon" and p.dim() == 2 and n.startswith("transformer.h.")}
    rest = [p for n, p in params.items() if n not in matrices]
    groups = [{**group, "base_lr": lr} for group in decay_groups(rest, weight_decay)]
    adamw = AdamW(groups, lr=lr, betas=betas, fused=(device_type == "cuda") or None)
    if name == "adamw":
        return adamw
    muon = Muon([{"params": [params[n] for n in params if n in matrices], "base_lr": muon_lr}],
                lr=muon_lr, momentum=muon_momentum, weight_decay=muon_weight_decay, nesterov=True,
                fast_bfloat16=resolve_dtype("auto", device_type) == torch.bfloat16)
    return MuonAdamW(adamw, muon)


def set_lr(optimizer, scale: float) -> None:
    """Set every group's learning rate to its peak ``base_lr`` times ``scale`` (the
    schedule's ``lr(step) / peak``)."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * scale
