"""Look inside a GPT: one forward pass with everything kept (chapter 10).

:func:`trace` runs :class:`tinyllm.model.GPT` once, through the model's own modules, and
returns a :class:`Trace`: the residual stream before, between and after the two halves of
every block, each block's attention weights per head, the heads' outputs, the MLP's hidden
activations (the "neurons") and the final logits. The model's code path for training is
not touched: hooks are added for the pass and removed after it.

On top of the trace:

- :func:`logit_lens` reads the residual stream after each layer with the model's final
  layer norm and output head: what the model would predict if it stopped there;
- :func:`attention_score` and the target builders measure what a head does (how much of
  its attention goes to the previous token, the first token, the start of the word, or
  the token after the earlier occurrence of the current one: induction);
- :func:`ablate` is a context manager that zeroes (or replaces by their mean) the outputs
  of chosen heads or MLPs while it is open, and restores the model exactly;
  :func:`ablated_loss` uses it.

Shapes: ``B`` batch, ``T`` positions, ``C`` = n_embd, ``nh`` heads of size ``hs``,
``H`` MLP hidden units (4C in GPT-2), ``V`` vocabulary, ``L`` = n_layer.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from tinyllm.model import eval_mode
from tinyllm.validate import check_int


@dataclass
class Trace:
    """Everything one forward pass computed. Lists are indexed by layer ``0..L-1``.

    ``resid_pre[l]`` is the input of block ``l`` (``resid_pre[0]`` = token + position
    embeddings), ``resid_mid[l]`` = ``resid_pre[l]`` + attention, ``resid_post[l]`` =
    ``resid_mid[l]`` + MLP = ``resid_pre[l + 1]``. All ``(B, T, C)``.
    """

    tokens: torch.Tensor  # (B, T)
    resid_pre: list[torch.Tensor]  # L x (B, T, C)
    resid_mid: list[torch.Tensor]  # L x (B, T, C)
    resid_post: list[torch.Tensor]  # L x (B, T, C)
    attn: list[torch.Tensor]  # L x (B, nh, T, T): row i = where query i reads from
    head_out: list[torch.Tensor]  # L x (B, nh, T, hs): each head's output before c_proj
    neurons: list[torch.Tensor]  # L x (B, T, H): the MLP's hidden activations
    final: torch.Tensor  # (B, T, C): ln_f of the last residual stream
    logits: torch.Tensor  # (B, T, V)

    @property
    def n_layer(self) -> int:
        return len(self.attn)

    def stream(self) -> torch.Tensor:
        """The residual stream at each depth, ``(L + 1, B, T, C)``: the embeddings, then
        after each block."""
        return torch.stack([self.resid_pre[0], *self.resid_post])


def check_index(name: str, value, size: int, what: str = "") -> int:
    """Return ``value`` if it is an int in ``0..size-1``, else raise a ``ValueError`` that names both."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int in 0..{size - 1}, got {value!r}")
    if not 0 <= value < size:
        raise ValueError(f"{name} {value} is out of range: {what or 'valid values are'} 0..{size - 1}")
    return value


def encode(model, tokenizer, text: str) -> torch.Tensor:
    """``text`` -> ``(1, T)`` ids on the model's device; ``ValueError`` for empty, too long or
    unknown characters (the tokenizer names the character)."""
    if not isinstance(text, str) or not text:
        raise ValueError("the text is empty: give at least one character")
    ids = tokenizer.encode(text)
    block = model.config.block_size
    if len(ids) > block:
        raise ValueError(f"the text is {len(ids)} tokens long; the model reads 1..{block}")
    device = next(model.parameters()).device
    return torch.tensor([ids], dtype=torch.long, device=device)


def _recorder(store: list):
    # A c_proj's input: the heads side by side (attention), or the activated hidden layer
    # (MLP), whatever the activation function is.
    def hook(module, args):
        store.append(args[0])
    return hook


@torch.no_grad()
def trace(model, idx: torch.Tensor) -> Trace:
    """Run ``model`` once on ``idx`` ``(B, T)`` in eval mode and keep every intermediate.

    The blocks are run one by one with the model's own modules (``ln_1``, ``attn`` asked
    for its weights, ``ln_2``, ``mlp``); a forward pre-hook on each ``attn.c_proj`` and
    ``mlp.c_proj`` reads the heads' outputs and the neurons. The model is left in the
    mode it was in.
    """
    cfg = model.config
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2:
        raise ValueError(f"idx must be a (B, T) tensor of token ids, got {getattr(idx, 'shape', idx)!r}")
    B, T = idx.shape
    if not 1 <= T <= cfg.block_size:
        raise ValueError(f"idx has {T} positions; the model reads 1..{cfg.block_size}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= cfg.vocab_size):
        bad = idx[(idx < 0) | (idx >= cfg.vocab_size)][0].item()
        raise ValueError(f"token id {bad} is outside the vocabulary 0..{cfg.vocab_size - 1}")
    heads, neurons, handles = [], [], []
    for block in model.transformer.h:
        handles.append(block.attn.c_proj.register_forward_pre_hook(_recorder(heads)))
        handles.append(block.mlp.c_proj.register_forward_pre_hook(_recorder(neurons)))
    pre, mid, post, attn = [], [], [], []
    with eval_mode(model):
        try:
            x = model.embed(idx)  # tokens (+ positions, unless the model uses RoPE)
            for block in model.transformer.h:
                pre.append(x)
                a, weights = block.attn(block.ln_1(x), need_weights=True)
                x = x + a
                mid.append(x)
                x = x + block.mlp(block.ln_2(x))
                post.append(x)
                attn.append(weights)
            final = model.transformer.ln_f(x)
            logits = model.lm_head(final)
        finally:
            for h in handles:
                h.remove()
    nh = cfg.n_head
    head_out = [y.view(B, T, nh, -1).transpose(1, 2) for y in heads]  # (B, nh, T, hs)
    return Trace(idx, pre, mid, post, attn, head_out, neurons, final, logits)


@torch.no_grad()
def lens_logits(model, resid: torch.Tensor) -> torch.Tensor:
    """The logits the model would give if the residual stream ``resid`` ``(..., C)`` were
    its last: ``lm_head(ln_f(resid))``, ``(..., V)``."""
    return model.lm_head(model.transformer.ln_f(resid))


def logit_lens(model, tr: Trace, position: int, k: int = 5, batch: int = 0):
    """Top-``k`` next-token guesses at ``position`` after each depth (embeddings, then each
    block): ``(probs, ids)``, each ``(L + 1, k)``. The last row is the model's own
    prediction."""
    B, T = tr.tokens.shape
    check_index("position", position, T, "the text has positions")
    check_index("batch", batch, B, "the batch has rows")
    V = tr.logits.size(-1)
    check_int("k", k, 1, V)
    probs = F.softmax(lens_logits(model, tr.stream()[:, batch, position]), dim=-1)  # (L + 1, V)
    top = probs.topk(k, dim=-1)
    return top.values, top.indices


# ---------------------------------------------------------------------------------------
# What a head does: how much of its attention lands on a chosen position per query
# ---------------------------------------------------------------------------------------


def attention_score(attn: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean attention weight that each head gives to a target position, ``(nh,)``.

    ``attn`` ``(B, nh, T, T)``; ``targets`` ``(B, T)`` holds, for each query, the key
    position to score, or -1 to leave that query out. The mean is over the scored
    queries of all rows.
    """
    B, nh, T, _ = attn.shape
    if targets.shape != (B, T):
        raise ValueError(f"targets must have shape {(B, T)}, got {tuple(targets.shape)}")
    keep = targets >= 0  # (B, T)
    if not keep.any():
        raise ValueError("no query has a target (all targets are -1)")
    picked = attn.gather(-1, targets.clamp_min(0)[:, None, :, None].expand(B, nh, T, 1))[..., 0]
    return (picked * keep[:, None]).sum((0, 2)) / keep.sum()


def previous_token_targets(tokens: torch.Tensor) -> torch.Tensor:
    """Query ``t`` -> ``t - 1`` (position 0 has no previous token: -1)."""
    B, T = tokens.shape
    t = torch.arange(T, device=tokens.device) - 1
    return t.expand(B, T).clone()


def first_token_targets(tokens: torch.Tensor) -> torch.Tensor:
    """Query ``t`` -> position 0 (query 0 left out: it can only see itself)."""
    out = torch.zeros_like(tokens)
    out[:, 0] = -1
    return out


def word_start_targets(tokens: torch.Tensor, separators) -> torch.Tensor:
    """Query ``t`` -> the first token of the word it is in (after the last separator at or
    before ``t``); -1 where ``t`` is itself a separator or is that first token."""
    sep = torch.zeros_like(tokens, dtype=torch.bool)
    for s in separators:
        sep |= tokens == s
    B, T = tokens.shape
    out = torch.full_like(tokens, -1)
    for b in range(B):
        start = 0
        for t in range(T):
            if sep[b, t]:
                start = t + 1
            elif t > start:
                out[b, t] = start
    return out


def last_separator_targets(tokens: torch.Tensor, separators) -> torch.Tensor:
    """Query ``t`` -> the last separator (e.g. space or newline) at or before ``t``: the
    boundary where the current word began; -1 before the first separator."""
    sep = torch.zeros_like(tokens, dtype=torch.bool)
    for s in separators:
        sep |= tokens == s
    where = torch.arange(tokens.size(1), device=tokens.device).expand_as(tokens)
    return torch.where(sep, where, -1).cummax(dim=1).values


def induction_targets(tokens: torch.Tensor) -> torch.Tensor:
    """Query ``t`` -> the position just after the latest earlier occurrence of token ``t``
    (the token that came next last time: what an induction head copies); -1 if none."""
    T = tokens.size(1)
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T, T): [t, j] token t == token j
    earlier = torch.ones(T, T, dtype=torch.bool, device=tokens.device).tril(diagonal=-2)  # j < t - 1
    where = torch.arange(T, device=tokens.device).expand_as(same)
    latest = torch.where(same & earlier, where, -1).max(dim=-1).values  # (B, T)
    return torch.where(latest >= 0, latest + 1, -1)


# ---------------------------------------------------------------------------------------
# Ablation: switch parts off and see what the loss does
# ---------------------------------------------------------------------------------------


def _replace(x: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "zero":
        return torch.zeros_like(x)
    return x.mean(dim=(0, 1), keepdim=True).expand_as(x)  # over batch and positions


@contextlib.contextmanager
def ablate(model, heads=(), mlps=(), mode: str = "zero"):
    """While open, the outputs of ``heads`` (``(layer, head)`` pairs) and of the MLPs of
    ``mlps`` (layer numbers) are replaced: by zeros (``mode="zero"``) or by their mean over
    the batch and positions of the current input (``mode="mean"``).

    Done with hooks on ``attn.c_proj`` (its input holds the heads side by side) and on
    ``mlp``; they are removed on exit, so the model computes exactly what it did before.
    """
    cfg = model.config
    if mode not in ("zero", "mean"):
        raise ValueError(f"mode must be 'zero' or 'mean', got {mode!r}")
    by_layer: dict[int, list[int]] = {}
    for pair in heads:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"heads must be (layer, head) pairs, got {pair!r}")
        layer = check_index("layer", pair[0], cfg.n_layer, "the model has layers")
        head = check_index("head", pair[1], cfg.n_head, "each layer has heads")
        by_layer.setdefault(layer, []).append(head)
    mlps = [check_index("layer", layer, cfg.n_layer, "the model has layers") for layer in mlps]

    def head_hook(chosen):
        def hook(module, args):
            y = args[0]
            B, T, C = y.shape
            y = y.view(B, T, cfg.n_head, C // cfg.n_head).clone()
            for h in chosen:
                y[:, :, h] = _replace(y[:, :, h], mode)
            return (y.view(B, T, C),)
        return hook

    def mlp_hook(module, args, output):
        return _replace(output, mode)

    handles = []
    try:
        for layer, chosen in by_layer.items():
            attn = model.transformer.h[layer].attn
            handles.append(attn.c_proj.register_forward_pre_hook(head_hook(chosen)))
        for layer in mlps:
            handles.append(model.transformer.h[layer].mlp.register_forward_hook(mlp_hook))
        yield model
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def ablated_loss(model, idx, targets, heads=(), mlps=(), mode: str = "zero") -> float:
    """Mean cross-entropy of ``model`` on ``idx``/``targets`` ``(B, T)`` with the chosen heads
    and MLPs ablated (see :func:`ablate`); with none, the plain loss. Eval mode."""
    with eval_mode(model), ablate(model, heads, mlps, mode):
        _, loss = model(idx, targets)
    return loss.item()
