"""The arithmetic of big runs: memory, communication, FLOPs and time, from a config alone.

Everything here is a formula on a :class:`~tinyllm.model.GPTConfig` (no model is built), so
it answers questions about models that would not fit this machine: how many bytes each GPU
holds while training GPT-2, what one all-reduce sends, how many hours a run takes.
Chapter 13 builds the pieces and checks them against the real thing: the parameter count
against ``GPT(config).num_params()``, the activation bytes against the tensors autograd
saves in a real step, the FLOPs against ``GPT.flops_per_token``.

Shapes: ``B`` batch size (per rank), ``T`` sequence length, ``C`` = n_embd, ``H`` the MLP's
hidden width, ``V`` = vocab_size, ``L`` = n_layer, ``nh`` = n_head, ``N`` world size.
"""

from __future__ import annotations

import math

from tinyllm.model import GPTConfig
from tinyllm.validate import check_int

# NVIDIA H100 SXM5, bfloat16 Tensor Core peak *without* sparsity: the datasheet's
# 1,979 TFLOPS is "with sparsity", dense is half of it (989 TFLOPS; nanoGPT and llm.c use
# 989e12 for their MFU). Source: NVIDIA H100 Tensor Core GPU datasheet (2023).
H100_BF16_DENSE_FLOPS = 989e12

# GPT-2 small as OpenAI released it (Radford et al. 2019; Hugging Face "gpt2"): 124M parameters.
GPT2_124M = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)

OPTIMIZERS = ("adamw", "sgd", "muon")
PRECISIONS = ("float32", "bfloat16")
STRATEGIES = ("ddp", "fsdp")

# Optimizer state per parameter, in float32 values: AdamW keeps two moments (m and v),
# SGD with momentum one buffer, Muon one momentum buffer for each matrix it trains.
_STATE_VALUES = {"adamw": 2, "sgd": 1, "muon": 1}


def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def _check_config(config, gpt2_layout: bool = False) -> None:
    if not isinstance(config, GPTConfig):
        raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
    if not gpt2_layout:
        return
    # The activation count follows the tensors autograd keeps in GPT-2's layout; chapter 11's
    # switches keep others (RoPE's rotated copies, SwiGLU's gate, RMSNorm's statistics).
    # n_kv_head equal to n_head is GPT-2's; dropout's masks are saved too and not counted.
    for name, gpt2 in (("norm", "layernorm"), ("pos", "learned"), ("kv_heads", config.n_head), ("qk_norm", False),
                       ("dropout", 0.0)):
        if getattr(config, name) != gpt2:
            raise ValueError(f"activation_bytes counts GPT-2's layout only: {name}={getattr(config, name)!r} "
                             f"is not counted (allowed: {gpt2!r})")
    _check_choice("config.mlp", config.mlp, ("gelu", "gelu_tanh", "relu"))


# ---------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------


def block_params(config: GPTConfig) -> int:
    """Parameters of one transformer block: ``4C^2 + 2CH`` in matrices (GPT-2), plus vectors.

    Two norms (a gain, and a bias if ``bias`` for LayerNorm; RMSNorm has a gain only), the
    fused q,k,v ``C x (nh + 2 n_kv) hs`` (``C x 3C`` when every head has its own keys and
    values) and the output ``C x C`` of attention, the MLP's ``C x H`` and ``H x C`` (SwiGLU
    adds a gate ``C x H``); biases on each Linear when ``bias``; ``qk_norm`` adds two gains of
    ``hs``. GPT-2 (H = 4C, biases): ``12 C^2 + 13 C``.
    """
    _check_config(config)
    C, H, b = config.n_embd, config.hidden_size, int(config.bias)
    hs, qkv = config.head_size, (config.n_head + 2 * config.kv_heads) * config.head_size
    norm = C if config.norm == "rmsnorm" else C + b * C
    attn = C * qkv + b * qkv + C * C + b * C + (2 * hs if config.qk_norm else 0)
    up = 2 if config.mlp == "swiglu" else 1
    mlp = up * (C * H + b * H) + H * C + b * C
    return 2 * norm + attn + mlp


def param_count(config: GPTConfig, non_embedding: bool = False) -> int:
    """Parameters of ``GPT(config)``, counted from the config: equals ``num_params()``.

    Token table ``V x C`` (shared with the output head: counted once), position table
    ``block_size x C`` (left out when ``non_embedding``, as ``num_params`` does), ``L``
    blocks and the final layer norm.
    """
    _check_config(config)
    C, b = config.n_embd, int(config.bias)
    final_norm = C if config.norm == "rmsnorm" else C + b * C
    n = config.vocab_size * C + config.n_layer * block_params(config) + final_norm
    table = config.block_size * C if config.pos == "learned" else 0  # RoPE has no table
    return n if non_embedding else n + table


def matrix_param_count(config: GPTConfig) -> int:
    """Parameters in the blocks' 2-D weight matrices: what Muon trains (the rest use AdamW)."""
    _check_config(config)
    C, H = config.n_embd, config.hidden_size
    qkv = (config.n_head + 2 * config.kv_heads) * config.head_size
    up = 2 if config.mlp == "swiglu" else 1
    return config.n_layer * (C * qkv + C * C + (up + 1) * C * H)


# ---------------------------------------------------------------------------------------
# Bytes of training state
# ---------------------------------------------------------------------------------------


def state_bytes_per_param(optimizer: str = "adamw", precision: str = "float32") -> dict[str, int]:
    """Bytes one parameter costs while training, by part: weights, gradients, master, optimizer.

    ``float32``: weights and gradients in float32 (4 + 4). ``bfloat16``: mixed precision
    with float32 master weights (2 + 2 + 4), as ZeRO (Rajbhandari et al. 2020) counts it.
    The optimizer's state is float32 either way (4 bytes per value): AdamW 8, SGD with
    momentum 4, Muon 4 (for a matrix parameter; Muon leaves the others to AdamW).
    Both precisions cost the same in total: mixed precision saves time and activation
    memory, not training state.
    """
    _check_choice("optimizer", optimizer, OPTIMIZERS)
    _check_choice("precision", precision, PRECISIONS)
    low = precision == "bfloat16"
    return {
        "weights": 2 if low else 4,
        "gradients": 2 if low else 4,
        "master": 4 if low else 0,
        "optimizer": 4 * _STATE_VALUES[optimizer],
    }


def training_state_bytes(config: GPTConfig, optimizer: str = "adamw",
                         precision: str = "float32") -> dict[str, int]:
    """The whole model's training state in bytes, by part (see :func:`state_bytes_per_param`).

    With ``muon`` the block matrices carry one buffer and every other parameter AdamW's two.
    """
    per = state_bytes_per_param(optimizer, precision)
    n = param_count(config)
    out = {part: n * per[part] for part in ("weights", "gradients", "master")}
    if optimizer == "muon":
        m = matrix_param_count(config)
        adamw = state_bytes_per_param("adamw", precision)["optimizer"]
        out["optimizer"] = m * per["optimizer"] + (n - m) * adamw
    else:
        out["optimizer"] = n * per["optimizer"]
    return out


def autocast_weight_copies(config: GPTConfig) -> int:
    """Bytes of the bfloat16 copies of the matrices (the head too) autocast keeps for backward."""
    _check_config(config)
    return 2 * (matrix_param_count(config) + config.vocab_size * config.n_embd)


def activation_bytes(config: GPTConfig, batch_size: int, T: int | None = None, dtype: str = "float32") -> int:
    """Bytes of the tensors one training step's forward pass keeps for the backward pass.

    Counted as PyTorch saves them for ``GPT`` with ``dropout=0`` and PyTorch's fused
    attention (which never stores the ``T x T`` weights), per block, in values:

    - ``2 BTC`` float32: the block's input and the stream after attention;
    - ``6 BTC``: ``ln_1``'s output, the fused q,k,v (``3 BTC``), the attention output and
      ``ln_2``'s output;
    - ``2 BTH``: the MLP's hidden layer before and after GELU (``1 BTH`` with ReLU, whose
      backward needs only its output, the very tensor the next Linear keeps);
    - ``4 BT`` float32 mean and inverse deviation of the layer norms, ``B nh T`` float32
      log-sum-exp of attention;

    and once: the final layer norm (``BTC + 2 BT`` float32, ``BTC`` output), the float32
    log-probabilities ``BTV`` the loss keeps, and the int64 token ids, targets and positions.
    ``dtype="bfloat16"``: autocast, as ``tinyllm.train --dtype bfloat16`` runs; the inputs of
    the matrix multiplies are kept in bfloat16 (2 bytes), with the bfloat16 copies of the
    weights (:func:`autocast_weight_copies`). ``float32``: 4 bytes for every value.
    GPT-2's layout only (chapter 11's switches raise ``ValueError``).
    """
    _check_config(config, gpt2_layout=True)
    check_int("batch_size", batch_size)
    T = config.block_size if T is None else T
    check_int("T", T)
    if T > config.block_size:
        raise ValueError(f"T must be at most block_size={config.block_size}, got {T}")
    _check_choice("dtype", dtype, PRECISIONS)
    low = 2 if dtype == "bfloat16" else 4
    B, C, H, V = batch_size, config.n_embd, config.hidden_size, config.vocab_size
    hidden = 1 if config.mlp == "relu" else 2  # a GELU keeps its input too; ReLU's output is c_proj's input
    per_block = 4 * (B * T * (2 * C + 4) + B * config.n_head * T) + low * B * T * (6 * C + hidden * H)
    once = 4 * B * T * (C + 2 + V) + low * B * T * C
    ids = 8 * (2 * B * T + T)
    copies = autocast_weight_copies(config) if dtype == "bfloat16" else 0
    return config.n_layer * per_block + once + ids + copies


# ---------------------------------------------------------------------------------------
# Many ranks
# ---------------------------------------------------------------------------------------


def per_rank_bytes(config: GPTConfig, world_size: int = 1, strategy: str = "ddp", optimizer: str = "adamw",
                   precision: str = "float32", batch_size: int = 1, T: int | None = None) -> dict[str, int]:
    """What each of ``world_size`` ranks holds during a step, in bytes, by part, and the total.

    ``ddp``: every rank keeps a full copy of weights, gradients and optimizer state.
    ``fsdp`` (ZeRO-3, FSDP2's ``fully_shard`` of every block): each rank keeps 1/N of each
    (rounded up), plus ``gathered``: one block's full weights in the working precision,
    all-gathered just before the block runs and freed after it. Activations are each
    rank's own micro-batch of ``batch_size`` sequences either way.
    Not counted: DDP's gradient buckets, the allocator's slack, CUDA's own few hundred MB.
    """
    check_int("world_size", world_size)
    _check_choice("strategy", strategy, STRATEGIES)
    state = training_state_bytes(config, optimizer, precision)
    out = dict(state) if strategy == "ddp" else {k: math.ceil(v / world_size) for k, v in state.items()}
    working = state_bytes_per_param(optimizer, precision)["weights"]
    out["gathered"] = 0 if strategy == "ddp" else block_params(config) * working
    out["activations"] = activation_bytes(config, batch_size, T, precision)
    if precision == "bfloat16":  # the bfloat16 weights autocast would copy are counted above
        out["activations"] -= autocast_weight_copies(config)
    out["total"] = sum(out.values())
    return out


def allreduce_bytes(n_bytes: int, world_size: int) -> float:
    """Bytes each rank sends (and receives) to all-reduce ``n_bytes``: ``2 (N-1)/N x n_bytes``.

    A ring all-reduce cuts the data into N chunks: N-1 steps of reduce-scatter (each rank
    ends with one summed chunk), then N-1 steps of all-gather; each step moves one chunk.
    The cost per rank hardly grows with N: at most twice the data. One rank sends nothing.
    """
    check_int("n_bytes", n_bytes, 0)
    check_int("world_size", world_size)
    return 2 * (world_size - 1) / world_size * n_bytes


def effective_batch_tokens(batch_size: int, block_size: int, grad_accum_steps: int = 1,
                           world_size: int = 1) -> int:
    """Tokens in one optimizer step: micro-batch x sequence length x accumulation x ranks."""
    for name, value in (("batch_size", batch_size), ("block_size", block_size),
                        ("grad_accum_steps", grad_accum_steps), ("world_size", world_size)):
        check_int(name, value)
    return batch_size * block_size * grad_accum_steps * world_size


# ---------------------------------------------------------------------------------------
# FLOPs and time
# ---------------------------------------------------------------------------------------


def flops_per_token(config: GPTConfig, T: int | None = None) -> int:
    """Training FLOPs per token, ``6 N + 12 L C T``: the estimate of ``GPT.flops_per_token``.

    ``N`` the parameters without the position table; ``6 N`` forward + backward through
    every weight; ``12 L C T`` the attention scores and mix (PaLM, appendix B).
    """
    T = config.block_size if T is None else T
    check_int("T", T, 1, config.block_size)
    return 6 * param_count(config, non_embedding=True) + 12 * config.n_layer * config.n_embd * T


def training_flops(config: GPTConfig, tokens: int | float, T: int | None = None) -> float:
    """FLOPs to train on ``tokens`` tokens: ``flops_per_token x tokens`` (about 6 N D)."""
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or not tokens > 0:
        raise ValueError(f"tokens must be a number > 0, got {tokens!r}")
    return float(flops_per_token(config, T)) * tokens


def training_hours(flops: float, n_gpus: int = 1, peak_flops: float = H100_BF16_DENSE_FLOPS,
                   mfu: float = 0.4) -> float:
    """Hours to do ``flops`` on ``n_gpus`` GPUs that each reach ``mfu`` of ``peak_flops``.

    MFU, model FLOPs utilisation (PaLM, Chowdhery et al. 2022), is the fraction of the
    peak a run really uses: 0.3-0.5 is typical for well-tuned GPU training.
    """
    if isinstance(flops, bool) or not isinstance(flops, (int, float)) or not flops > 0:
        raise ValueError(f"flops must be a number > 0, got {flops!r}")
    check_int("n_gpus", n_gpus)
    if not peak_flops > 0:
        raise ValueError(f"peak_flops must be > 0, got {peak_flops!r}")
    if not 0 < mfu <= 1:
        raise ValueError(f"mfu must be in (0, 1], got {mfu!r}")
    return flops / (n_gpus * peak_flops * mfu) / 3600
