"""GPT (chapters 04-07): its config, attention, MLP, block and the model, in that order.

GPT follows GPT-2's architecture (and nanoGPT's names): token and position
embeddings, ``n_layer`` pre-norm transformer blocks of causal self-attention and an MLP,
a final layer norm and an output head that shares its weights with the token embedding.
One difference, as in nanoGPT: the MLP's GELU is the exact (erf) form, where GPT-2 used a
tanh approximation (they differ by less than 0.001); ``from_transformers`` switches to the
tanh form for weights that used it. ``tinyllm.export.to_transformers`` writes the model in
Hugging Face's GPT-2 format and a test checks that both give the same logits (to 1e-5).

Chapter 11's switches (``norm``, ``pos``, ``mlp``, ``n_kv_head``, ``qk_norm``) swap in the
pieces of :mod:`tinyllm.layers`; at their defaults the model is the GPT-2 above.

Shapes: ``B`` batch size, ``T`` sequence length (<= block_size), ``C`` = n_embd,
``V`` = vocab_size, ``nh`` = n_head, ``hs`` = C // nh (the head size).

Chapter 02's bigram model lives in :mod:`tinyllm.bigram` and the KV cache in
:mod:`tinyllm.kv_cache`; both can still be imported from here, as the chapters do.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tinyllm.bigram import BigramLanguageModel as BigramLanguageModel  # re-exported (chapter 02)
from tinyllm.kv_cache import KVCache
from tinyllm.layers import ReLU2, RMSNorm, apply_rope, repeat_kv, rope_angles
from tinyllm.optim import decay_groups
from tinyllm.sampling import check_sampling_args, sample_next
from tinyllm.validate import check_ids, check_int

# Targets with this value are left out of the loss (PyTorch's and Hugging Face's convention).
IGNORE_INDEX = -100

# The MLP's activations, by the name GPTConfig.mlp uses. nn.GELU() is the exact (erf) GELU;
# "swiglu" is a gated MLP (a third matrix, c_gate), not an activation of this table.
ACTIVATIONS = {"gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "relu": nn.ReLU, "relu2": ReLU2}
MLPS = (*ACTIVATIONS, "swiglu")
NORMS = ("layernorm", "rmsnorm")
POSITIONS = ("learned", "rope")
# Options added after GPT-2's, left out of repr at their defaults (configs print as before).
_NEW_DEFAULTS = {"mlp": "gelu", "mlp_hidden": None, "norm": "layernorm", "pos": "learned",
                 "n_kv_head": None, "qk_norm": False, "rope_theta": 10000.0}


@dataclass
class GPTConfig:
    vocab_size: int = 65
    block_size: int = 64  # the longest context the model can read
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2
    mlp: str = "gelu"  # "gelu" (exact, erf), "gelu_tanh" (OpenAI's GPT-2), "relu" (GuppyLM), "relu2", "swiglu"
    mlp_hidden: int | None = None  # the MLP's hidden width; None: see hidden_size
    norm: str = "layernorm"  # "layernorm" (GPT-2) or "rmsnorm"
    pos: str = "learned"  # "learned" (a wpe table, GPT-2) or "rope" (rotary, no table)
    n_kv_head: int | None = None  # key/value heads; None: n_head; fewer: grouped-query attention
    qk_norm: bool = False  # RMSNorm on each head's queries and keys before attention
    rope_theta: float = 10000.0  # RoPE's base: the slowest pair turns once in ~theta positions

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            check_int(name, getattr(self, name))
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"n_embd={self.n_embd} is not divisible by n_head={self.n_head}: each head gets "
                f"n_embd // n_head channels"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        for name, allowed in (("mlp", MLPS), ("norm", NORMS), ("pos", POSITIONS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")
        for name in ("mlp_hidden", "n_kv_head"):
            if getattr(self, name) is not None:  # None: the default width, one kv head per head
                check_int(name, getattr(self, name))
        if self.n_head % self.kv_heads:
            raise ValueError(
                f"n_head={self.n_head} is not divisible by n_kv_head={self.n_kv_head}: allowed "
                f"n_kv_head values are the divisors of n_head: {_divisors(self.n_head)}"
            )
        for name in ("bias", "qk_norm"):  # "False" or 2 would be taken for their truth
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.rope_theta, bool) or not isinstance(self.rope_theta, (int, float)) \
                or not 0 < self.rope_theta < math.inf:  # NaN fails too: the angles would be NaN
            raise ValueError(f"rope_theta must be a positive finite number, got {self.rope_theta!r}")
        if self.pos == "rope" and self.head_size % 2:
            raise ValueError(
                f"pos='rope' needs an even head size, got n_embd // n_head = {self.head_size}: "
                f"RoPE rotates pairs of channels"
            )

    def __repr__(self) -> str:
        # Options added after GPT-2 are not spelled out at their defaults: configs print as
        # they always did.
        fields = [f"{k}={v!r}" for k, v in asdict(self).items()
                  if not (k in _NEW_DEFAULTS and v == _NEW_DEFAULTS[k])]
        return f"GPTConfig({', '.join(fields)})"

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer: ``n_kv_head``, or one per query head."""
        return self.n_kv_head or self.n_head

    @property
    def hidden_size(self) -> int:
        """The MLP's hidden width: ``mlp_hidden``, else GPT-2's ``4 * n_embd``; for swiglu
        (three matrices, not two) the width with GPT-2's MLP parameter count, ``8/3 * n_embd``
        rounded to a multiple of 8."""
        if self.mlp_hidden:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            return max(8, 8 * round(8 * self.n_embd / 3 / 8))
        return 4 * self.n_embd

    def kv_cache_bytes_per_token(self, bytes_per_value: int = 4) -> int:
        """Bytes the KV cache holds per token: a key and a value of ``kv_heads`` heads per layer."""
        return 2 * self.n_layer * self.kv_heads * self.head_size * bytes_per_value

    def to_dict(self) -> dict:
        return asdict(self)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which each position sees only itself and the past."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv = config.kv_heads
        self.n_embd = config.n_embd
        self.layer = layer
        self.dropout = config.dropout
        self.rope_theta = config.rope_theta if config.pos == "rope" else None
        # Queries of all heads, keys and values of the kv heads in one matrix multiply.
        hs = config.head_size
        self.c_attn = nn.Linear(config.n_embd, (self.n_head + 2 * self.n_kv) * hs, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.qk_norm:
            self.q_norm, self.k_norm = RMSNorm(hs), RMSNorm(hs)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, need_weights: bool = False):
        """``x`` ``(B, T, C)`` -> ``(B, T, C)``, and the attention weights ``(B, nh, T, T_kv)``
        when ``need_weights`` (else None)."""
        B, T, C = x.shape
        hs, nh, n_kv = C // self.n_head, self.n_head, self.n_kv
        q, k, v = self.c_attn(x).split([nh * hs, n_kv * hs, n_kv * hs], dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, v = (t.view(B, T, n_kv, hs).transpose(1, 2) for t in (k, v))  # (B, n_kv, T, hs)
        if hasattr(self, "q_norm"):  # qk_norm: bounded scores whatever the weights' growth
            q, k = self.q_norm(q), self.k_norm(k)
        past = kv_cache.layer_length(self.layer) if kv_cache is not None else 0
        if self.rope_theta is not None:  # rotate by the absolute positions past .. past + T - 1
            cos, sin = rope_angles(T, hs, self.rope_theta, start=past, device=x.device)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            k, v = kv_cache.update(self.layer, k, v)
        # Grouped-query attention: each kv head serves nh // n_kv query heads.
        k, v = repeat_kv(k, nh // n_kv), repeat_kv(v, nh // n_kv)
        T_kv = k.size(2)
        weights = None
        if need_weights or (past > 0 and T > 1):
            # Explicit path: query i (absolute position past+i) sees keys 0..past+i.
            mask = torch.ones(T, T_kv, dtype=torch.bool, device=x.device).tril(diagonal=past)
            att = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            weights = att
            if self.training and self.dropout > 0:
                att = F.dropout(att, p=self.dropout)
            y = att @ v
        else:
            # Without a cache the mask is causal; one new query attends to every cached key,
            # so no mask is needed then. (``past == 0`` is a plain bool even when T is a
            # symbol, as in an ONNX export; a causal 1 x 1 mask changes nothing.)
            y = F.scaled_dot_product_attention(
                q, k, v,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=past == 0,
            )
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # re-assemble the heads side by side
        y = self.resid_dropout(self.c_proj(y))
        return y, (weights if need_weights else None)


class MLP(nn.Module):
    """Position-wise feed-forward network: expand to H (GPT-2: 4C), activate, project back.

    ``act`` is GELU (GPT-2), ReLU (GuppyLM) or ReLU squared, chosen by ``config.mlp``; H is
    ``config.hidden_size``. ``(B, T, C) -> (B, T, H) -> (B, T, C)``. With ``"swiglu"`` a
    third matrix ``c_gate`` gates the expansion: ``c_proj(silu(c_gate(x)) * c_fc(x))``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.hidden_size, bias=config.bias)
        if config.mlp == "swiglu":
            self.c_gate = nn.Linear(config.n_embd, config.hidden_size, bias=config.bias)
            self.act = nn.SiLU()
        else:
            self.act = ACTIVATIONS[config.mlp]()
        self.c_proj = nn.Linear(config.hidden_size, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "c_gate"):
            return self.dropout(self.c_proj(self.act(self.c_gate(x)) * self.c_fc(x)))
        return self.dropout(self.c_proj(self.act(self.c_fc(x))))


def make_norm(config: GPTConfig) -> nn.Module:
    """GPT-2's LayerNorm, or RMSNorm (no mean, no bias) with ``norm="rmsnorm"``."""
    if config.norm == "rmsnorm":
        return RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class Block(nn.Module):
    """A pre-norm transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig, layer: int = 0):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config, layer)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, kv_cache: KVCache | None = None, need_weights: bool = False):
        a, weights = self.attn(self.ln_1(x), kv_cache, need_weights)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class GPT(nn.Module):
    """A GPT-2 style decoder-only transformer language model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        modules = dict(wte=nn.Embedding(config.vocab_size, config.n_embd))
        if config.pos == "learned":  # RoPE needs no table: it rotates queries and keys instead
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        self.transformer = nn.ModuleDict(
            dict(
                **modules,
                drop=nn.Dropout(config.dropout),
                h=nn.ModuleList([Block(config, layer) for layer in range(config.n_layer)]),
                ln_f=make_norm(config),
            )
        )
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        # Weight tying: the output head scores token i with the same vector that embeds it.
        # It saves V*C parameters and helps small models (Press & Wolf, 2017).
        self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # Each block adds two residual projections to the stream; scaling their init by
        # 1/sqrt(2 * n_layer) keeps the stream's variance from growing with depth (GPT-2).
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied head counted once). ``non_embedding`` leaves out
        the position embedding, as GPT papers do when they count model size."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def embed(self, idx: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Token embeddings ``(B, T, C)``, plus the position embeddings of positions
        ``start ..`` when the model has a table (with RoPE, attention adds positions)."""
        x = self.transformer.wte(idx)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(torch.arange(start, start + idx.size(1), device=idx.device))
        return x

    def forward(
        self,
        idx: torch.Tensor,
        targets: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        all_logits: bool = False,
    ):
        """``idx`` ``(B, T)`` of token ids -> ``(logits, loss)``.

        With ``targets`` ``(B, T)``: logits ``(B, T, V)`` and the mean cross-entropy
        (targets equal to ``IGNORE_INDEX`` = -100 are not learned: chat fine-tuning marks
        the user's tokens and the padding that way). Without: only the last position's logits
        ``(B, 1, V)``, all that generation needs, unless ``all_logits`` asks for every one.
        With a ``kv_cache``, ``idx`` holds only the new tokens; positions continue after
        the cached ones.
        """
        check_ids(idx, self.config.vocab_size, targets)
        B, T = idx.shape
        start = kv_cache.length if kv_cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of length {start + T} is longer than block_size={self.config.block_size}"
            )
        x = self.transformer.drop(self.embed(idx, start))  # (B, T, C)
        for block in self.transformer.h:
            x, _ = block(x, kv_cache)
        x = self.transformer.ln_f(x)
        if targets is not None:
            logits = self.lm_head(x)
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1).long(),
                                   ignore_index=IGNORE_INDEX)
            return logits, loss
        logits = self.lm_head(x if all_logits else x[:, [-1], :])
        return logits, None

    @torch.no_grad()
    def attention_weights(self, idx: torch.Tensor) -> torch.Tensor:
        """Every layer's attention weights for ``idx`` ``(B, T)``: ``(n_layer, B, nh, T, T)``.

        Row ``i`` of a map is the distribution over positions ``0..i`` that query ``i``
        reads from: it sums to 1 and is zero above the diagonal. The model is run in eval
        mode (no dropout), as at inference, and left in the mode it was in.
        """
        check_ids(idx, self.config.vocab_size)
        T = idx.size(1)
        if T > self.config.block_size:
            raise ValueError(f"sequence of length {T} is longer than block_size={self.config.block_size}")
        with eval_mode(self):
            x = self.embed(idx)
            maps = []
            for block in self.transformer.h:
                x, w = block(x, need_weights=True)
                maps.append(w)
        return torch.stack(maps)

    def configure_optimizers(self, weight_decay: float, lr: float, betas=(0.9, 0.95), device_type: str = "cpu"):
        """AdamW that decays only matrices (weights of Linear and Embedding layers).

        Biases and layer-norm gains are vectors: decaying them toward zero only hurts.
        """
        groups = decay_groups([p for p in self.parameters() if p.requires_grad], weight_decay)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=(device_type == "cuda") or None)

    def flops_per_token(self, T: int | None = None) -> int:
        """Forward + backward FLOPs per token when training on sequences of length ``T``.

        The PaLM (appendix B) estimate that nanoGPT's MFU uses: ``6 N + 12 L C T``.

        - ``6 N``: each weight is used in one multiply-add (2 FLOPs) in the forward pass
          and two in the backward pass (gradient of the input and of the weight). ``N``
          leaves out the position table (a lookup, no multiply) but keeps the token table,
          because the tied output head multiplies by it.
        - ``12 L C T``: per layer, the scores ``q @ k.T`` and the mix ``att @ v`` each cost
          ``2 C T`` per token forward, times 3 for forward + backward. It counts the full
          ``T x T`` square, as PaLM does, although the causal mask makes half of it zeros.

        Layer norms, softmax, GELU and the optimizer are left out: they are a few percent.
        """
        cfg = self.config
        T = cfg.block_size if T is None else T
        check_int("T", T, 1, cfg.block_size)
        n = self.num_params(non_embedding=True)
        return 6 * n + 12 * cfg.n_layer * cfg.n_embd * T

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        greedy: bool = False,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Append ``max_new_tokens`` tokens to ``idx`` ``(B, T)``, one at a time.

        Each step reads at most the last ``block_size`` tokens. With ``use_cache`` the
        keys/values are kept in a :class:`KVCache`; when the cache is full it is rebuilt
        from the last ``block_size // 2`` tokens, so the context slides in halves rather
        than one token at a time. While the text fits in ``block_size`` both ways compute
        the same logits (to float rounding); beyond it the cached model sees between
        ``block_size // 2`` and ``block_size`` tokens of context.
        """
        check_int("max_new_tokens", max_new_tokens, 0)
        check_sampling_args(temperature, top_k, top_p, greedy)
        check_ids(idx, self.config.vocab_size)
        if idx.size(1) == 0:
            raise ValueError("idx must hold at least one token to continue from")
        with eval_mode(self):
            block = self.config.block_size
            cache = None
            for _ in range(max_new_tokens):
                if not use_cache:
                    logits, _ = self(idx[:, -block:])
                elif cache is None:
                    cache = KVCache(self.config.n_layer)
                    logits, _ = self(idx[:, -block:], kv_cache=cache)
                elif cache.length >= block:
                    # Full: start again from the last half, so the next block // 2 steps are cheap.
                    cache = KVCache(self.config.n_layer)
                    logits, _ = self(idx[:, -(block // 2 or 1):], kv_cache=cache)
                else:
                    logits, _ = self(idx[:, -1:], kv_cache=cache)
                next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, greedy, generator)
                idx = torch.cat([idx, next_id], dim=1)
        return idx


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Run the block with ``model`` in eval mode (no dropout), then put back the mode it was
    in: a function that evaluates or generates leaves a model in training still training."""
    modes = [(module, module.training) for module in model.modules()]  # each its own: a frozen block stays so
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training
