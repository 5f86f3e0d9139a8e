"""Training a GPT: the loop the course, its command line and the shipped models all use.

From a notebook::

    from tinyllm.train import TrainConfig, train
    history = train(TrainConfig(max_iters=200, out_dir=None))

From a shell (options named like nanoGPT's, presets for known recipes)::

    python -m tinyllm.train --preset nanogpt-cpu --dataset tinyshakespeare
    python -m tinyllm.train --preset chat-cpu --out_dir runs/chat-cpu   # a chat model, on a CPU
    python -m tinyllm.train --preset guppylm --out_dir runs/guppylm     # GuppyLM's size, CUDA + bfloat16
    python -m tinyllm.train --out_dir out --resume   # continue after a crash or Ctrl-C
    python -m torch.distributed.run --nproc_per_node 2 -m tinyllm.train --preset tiny   # torchrun, DDP

Each step: draw a random batch (in ``grad_accum_steps`` micro-batches, each process its
own share under torchrun), compute the cross-entropy, backpropagate, clip the
gradient norm, and take an AdamW step at the learning rate of the schedule (linear warmup,
then cosine decay to ``min_lr``). Every ``eval_interval`` steps the train and validation
losses are estimated on ``eval_iters`` fixed batches each and printed as
``step N: train loss X, val loss Y``.

Text (``--dataset shakespeare``) is cut into random windows. Conversations
(``--dataset chat``) come from :mod:`tinyllm.chat_data` with labels that are -100 except on
the assistant's tokens (``--mask_user false`` learns every token, as GuppyLM does), batched
by :mod:`tinyllm.batching`. The validation loss of a chat run is always measured on the
assistant's tokens only, so masked and unmasked runs are compared on the same thing.

Resuming is exact on the CPU: the checkpoint holds the weights, the optimizer's moments,
the batch sampler's random state and the global random state (dropout), so a run stopped
at any step and resumed ends with bit-identical weights to one that never stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import signal
import sys
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from tinyllm.batching import MODES, ChatBatches, unmasked
from tinyllm.checkpoint import (
    CheckpointError,
    check_config_matches,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
    tokenizer_from_dict,
)
from tinyllm.data import get_batch, load_text, train_val_split
from tinyllm.device import pick_device
from tinyllm.distributed import (
    StateView,
    all_reduce_sum,
    check_fsdp,
    device_for,
    env_dist,
    full_state,
    gather_objects,
    gradient_sync,
    load_optimizer_state,
    lost_peer,
    micro_batch_size,
    optimizer_names,
    process_group,
    tied_names,
    wrap_model,
)
from tinyllm.model import GPT, GPTConfig
from tinyllm.optim import OPTIMIZERS, build_optimizer, set_lr
from tinyllm.tokenizer import BPETokenizer, CharTokenizer

MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias", "mlp", "mlp_hidden",
                "norm", "pos", "n_kv_head", "qk_norm", "rope_theta")


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the ``cpu`` recipe on the embedded corpus."""

    # model
    n_layer: int = _opt(3, "transformer blocks")
    n_head: int = _opt(4, "attention heads per block")
    n_embd: int = _opt(128, "width of the residual stream")
    block_size: int = _opt(64, "context length in tokens")
    dropout: float = _opt(0.0, "dropout probability")
    bias: bool = _opt(True, "biases in Linear and LayerNorm layers, as GPT-2")
    mlp: str = _opt("gelu", "MLP: gelu (GPT-2), relu (GuppyLM), relu2 or swiglu")
    mlp_hidden: int | None = _opt(None, "MLP hidden width (default 4 * n_embd; swiglu: 8/3 * n_embd)")
    norm: str = _opt("layernorm", "layernorm (GPT-2) or rmsnorm")
    pos: str = _opt("learned", "positions: learned (a table, GPT-2) or rope (rotary)")
    n_kv_head: int | None = _opt(None, "key/value heads (default n_head; fewer: grouped-query attention)")
    qk_norm: bool = _opt(False, "RMSNorm on queries and keys")
    rope_theta: float = _opt(10000.0, "RoPE base")
    # optimization
    batch_size: int = _opt(16, "sequences per step (over every process and micro-step)")
    grad_accum_steps: int = _opt(1, "micro-steps per step: the batch is split, gradients added up")
    max_iters: int = _opt(1150, "training steps")
    lr: float = _opt(4e-3, "peak learning rate")
    min_lr: float = _opt(1e-4, "learning rate at the end of the cosine decay")
    warmup_iters: int = _opt(50, "steps of linear warmup")
    lr_decay_iters: int | None = _opt(None, "step where the decay ends (default max_iters)")
    weight_decay: float = _opt(0.1, "AdamW weight decay of the matrices")
    beta1: float = _opt(0.9, "AdamW beta1")
    beta2: float = _opt(0.99, "AdamW beta2")
    grad_clip: float = _opt(1.0, "clip the gradient norm to this (0: no clipping)")
    optimizer: str = _opt("adamw", "adamw, or muon (Muon for the blocks' matrices, AdamW for the rest)")
    muon_lr: float = _opt(0.02, "Muon's peak learning rate (scaled by the same schedule as lr)")
    # evaluation and checkpoints
    eval_interval: int = _opt(100, "steps between loss estimates (0: only at the end)")
    eval_iters: int = _opt(20, "batches per loss estimate")
    checkpoint_interval: int | None = _opt(None, "steps between checkpoints (default: at every estimate)")
    # data
    dataset: str = _opt("shakespeare", "corpus name, path of a .txt file, or chat")
    tokenizer: str = _opt("char", "char, bpe (trained on the training split) or a BPE .json path")
    vocab_size: int = _opt(512, "vocabulary size of a BPE tokenizer trained here (with special tokens)")
    val_fraction: float = _opt(0.1, "held-out fraction of a text corpus")
    persona: str = _opt("guppy", "chat data: the persona of tinyllm.chat_data")
    n_conversations: int = _opt(20000, "chat data: training conversations")
    mask_user: bool = _opt(True, "chat data: learn only the assistant's tokens (false: every token)")
    batching: str = _opt("pad", "chat data: pad (one conversation per row) or pack (a stream)")
    # system
    device: str = _opt("auto", "auto (cuda, then mps, then cpu), cpu, cuda, mps")
    dtype: str = _opt("auto", "float32, bfloat16, or auto (bfloat16 where the hardware is fast at it)")
    compile: bool = _opt(False, "torch.compile the model")
    fsdp: bool = _opt(False, "under torchrun: shard weights, gradients, optimizer with FSDP2 (else DDP)")
    dist_timeout: float = _opt(60.0, "under torchrun: seconds a rank waits for the others before failing")
    seed: int = _opt(1337, "seed of the weights, the batches and dropout")
    out_dir: str | None = _opt(None, "checkpoint folder (default: no checkpoints)")
    resume: bool = _opt(False, "continue from the checkpoint in out_dir")
    verbose: bool = _opt(True, "print eval lines and a progress bar")

    def __post_init__(self):
        for name in ("batch_size", "grad_accum_steps", "max_iters", "eval_iters", "n_conversations"):
            value = getattr(self, name)
            low = 0 if name == "max_iters" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        micro_batch_size(self.batch_size, 1, self.grad_accum_steps)  # ValueError if it cannot be split
        if not self.dist_timeout > 0:
            raise ValueError(f"dist_timeout must be > 0 seconds, got {self.dist_timeout}")
        if self.warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0 (0: only at the end), got {self.eval_interval}")
        if not 0 < self.lr or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 < lr and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            # float16 would need a gradient scaler against underflow; bfloat16 does not.
            raise ValueError(f"dtype must be float32, bfloat16 or auto, got {self.dtype!r}")
        if self.tokenizer not in ("char", "bpe") and not self.tokenizer.endswith(".json"):
            raise ValueError(f"tokenizer must be char, bpe or the path of a BPE .json file, got {self.tokenizer!r}")
        if self.dataset == "chat" and self.tokenizer == "char":
            raise ValueError("dataset 'chat' needs a tokenizer with special tokens: use --tokenizer bpe or a .json")
        if self.optimizer not in OPTIMIZERS:  # now, not after the data and a BPE tokenizer are made
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.batching not in MODES:
            raise ValueError(f"batching must be one of {MODES}, got {self.batching!r}")
        self.model_config(256)  # model settings are checked by GPTConfig

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_FIELDS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named recipes, each written as its differences from TrainConfig's defaults (the cpu recipe).
_RECIPES: dict[str, dict] = {
    # The default, TrainConfig's own values: nanoGPT's recipe re-balanced for a fixed time
    # budget. One layer fewer (each step 25% cheaper), so more steps fit; a 4x higher peak
    # learning rate (safe after warmup), a deeper cosine decay, slightly bigger batches,
    # bfloat16 where the CPU is fast at it. Chapter 08 explains the measurements.
    "cpu": {},
    # nanoGPT's README "I only have a macbook" recipe for shakespeare_char (val loss ~1.88).
    "nanogpt-cpu": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64, batch_size=12, max_iters=2000, lr=1e-3, min_lr=1e-4,
        warmup_iters=100, lr_decay_iters=2000, eval_interval=250, dtype="float32",
    ),
    # The model shipped in tinyllm/checkpoints/shakespeare-char (see its README.md).
    "shakespeare-char": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=128, max_iters=2500, lr=2e-3, min_lr=2e-4, warmup_iters=100,
        eval_interval=250,
    ),
    # GuppyLM's architecture exactly (8,726,016 parameters) and its GPU recipe (GuppyLM's
    # config.py: batch 32, lr 3e-4 -> 3e-5, warmup 200, 10,000 steps, dropout 0.1, weight decay
    # 0.1, clipping 1.0) on 60,000 conversations, in bfloat16 on a CUDA GPU.
    "guppylm": dict(
        n_layer=6, n_head=6, n_embd=384, block_size=128, mlp="relu", mlp_hidden=768, dropout=0.1,
        dataset="chat", tokenizer="bpe", vocab_size=4096, n_conversations=60000, batch_size=32,
        max_iters=10000, lr=3e-4, min_lr=3e-5, warmup_iters=200, beta2=0.95, eval_interval=200,
        device="cuda", dtype="bfloat16",
    ),
    # The chat model shipped in tinyllm/checkpoints/chat-cpu: GuppyLM's recipe scaled to fit
    # 20 minutes on 2 CPU cores (see its README.md).
    "chat-cpu": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=128, mlp="relu", mlp_hidden=512, dataset="chat",
        tokenizer="bpe", vocab_size=1024, n_conversations=20000, batch_size=16, max_iters=1000, lr=3e-3,
        min_lr=1e-4, warmup_iters=50, eval_interval=200, eval_iters=10, dtype="float32", device="cpu",
    ),
    # Chapter 11's CPU speedrun: tinyshakespeare val loss <= 1.88 in a quarter of nanogpt-cpu's
    # time. RMSNorm, RoPE, no biases and Muon for the matrices (which takes a much higher
    # learning rate) learn so much more per step that one layer fewer than the cpu recipe
    # (cheaper steps) still gets there; benchmarks/bench_speedrun.py measures it.
    "speedrun": dict(
        n_layer=2, n_head=4, n_embd=128, block_size=64, norm="rmsnorm", pos="rope", bias=False,
        optimizer="muon", muon_lr=0.03, batch_size=24, max_iters=320, lr=4e-3, min_lr=1e-4, warmup_iters=20,
        eval_interval=100,
    ),
    # A few seconds: for tests and quick experiments.
    "tiny": dict(
        n_layer=1, n_head=2, n_embd=32, block_size=16, batch_size=8, max_iters=20, lr=3e-3, min_lr=3e-4,
        warmup_iters=2, eval_interval=10, eval_iters=2, dtype="float32", device="cpu",
    ),
}


# Every preset in full (a setting for every field but the run's own: out_dir, resume, verbose).
# A preset fills in settings; options given explicitly override them.
PRESETS: dict[str, dict] = {
    name: {**{f.name: f.default for f in dataclasses.fields(TrainConfig)
              if f.name not in ("out_dir", "resume", "verbose")}, **recipe}
    for name, recipe in _RECIPES.items()
}


def config_from_preset(preset: str = "cpu", **overrides) -> TrainConfig:
    """A :class:`TrainConfig` with a preset's settings, then ``overrides`` on top."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known presets: {', '.join(PRESETS)}")
    unknown = set(overrides) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown training settings: {sorted(unknown)}")
    return TrainConfig(**{**PRESETS[preset], **overrides})


# ---------------------------------------------------------------------------------------
# Pieces of the loop
# ---------------------------------------------------------------------------------------


def get_lr(step: int, lr: float, min_lr: float, warmup_iters: int, lr_decay_iters: int) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, cosine decay, then ``min_lr``.

    Warmup: the first updates, made while Adam's moment estimates are still noise, are
    kept small. Cosine decay: large steps early to make progress, small steps late to settle
    into a minimum instead of bouncing around it.
    """
    if step < warmup_iters:
        return lr * (step + 1) / (warmup_iters + 1)
    if step >= lr_decay_iters:
        return min_lr
    progress = (step - warmup_iters) / max(1, lr_decay_iters - warmup_iters)
    assert 0.0 <= progress <= 1.0
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)


def cpu_has_fast_bfloat16() -> bool:
    """True if the CPU multiplies bfloat16 matrices in hardware (Intel AMX or AVX512-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(dtype: str, device_type: str) -> torch.dtype:
    if dtype == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.bfloat16 if device_type == "cpu" and cpu_has_fast_bfloat16() else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]


def autocast_context(device_type: str, dtype: torch.dtype):
    """Mixed precision: matrix multiplies in ``dtype``, weights and optimizer in float32."""
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=dtype)


def _batch(data, batch_size: int, block_size: int, generator):
    """A batch from a 1-D tensor of ids (text) or from a :class:`ChatBatches`."""
    if isinstance(data, torch.Tensor):
        return get_batch(data, batch_size, block_size, generator=generator)
    return data.get_batch(batch_size, block_size, generator=generator)


@torch.no_grad()
def estimate_loss(model, splits: dict, batch_size: int, block_size: int, eval_iters: int, seed: int = 0,
                  ctx=None) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split (ids or :class:`ChatBatches`).

    One batch's loss is noisy; the mean of many is a steadier estimate. The batches come
    from their own generator seeded with ``seed``, so every evaluation sees the same batches
    (comparable figures) and the training batches are not disturbed.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = {}
    try:
        for name, data in splits.items():
            generator = torch.Generator().manual_seed(seed)
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                x, y = _batch(data, batch_size, block_size, generator)
                with ctx or contextlib.nullcontext():
                    _, loss = model(x.to(device), y.to(device))
                losses[k] = loss.item()
            out[name] = losses.mean().item()
    finally:
        model.train(was_training)
    return out


def build_tokenizer(spec: str, text: str, vocab_size: int = 512, special_tokens=()):
    """``"char"``: the characters of ``text``; ``"bpe"``: BPE trained on ``text`` with
    ``special_tokens``; a ``.json`` path: the BPE tokenizer saved there."""
    if spec == "char":
        return CharTokenizer.from_text(text)
    if spec == "bpe":
        return BPETokenizer().train(text, vocab_size, special_tokens=list(special_tokens))
    tokenizer = BPETokenizer.load(spec)
    missing = [s for s in special_tokens if s not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer {spec} lacks the special tokens {missing}")
    return tokenizer


def prepare_data(text: str, val_fraction: float, tokenizer=None):
    """Tokenize ``text`` and split it: ``tokenizer, {"train": ids, "val": ids}``."""
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, val_fraction)
    return tokenizer, {"train": train_ids, "val": val_ids}


def prepare_chat(cfg: TrainConfig, tokenizer=None, conversations: dict | None = None):
    """Conversations to batches: ``tokenizer, {"train": ChatBatches, "val": ChatBatches}``.

    ``conversations`` ``{"train": [...], "val": [...]}`` (lists of message lists), default
    from :func:`tinyllm.chat_data.chat_dataset`. A BPE tokenizer is trained on the rendered
    training conversations unless one is given. Validation labels are always masked.
    """
    from tinyllm import chat_data

    if conversations is None:  # the data's own seed (0) is fixed: cfg.seed varies only the training
        conversations = chat_data.chat_dataset(persona=cfg.persona, n=cfg.n_conversations, n_unseen=0)
        conversations = {"train": conversations["train"], "val": conversations["val"]}
    if tokenizer is None:
        text = chat_data.corpus_text(conversations["train"])
        tokenizer = build_tokenizer(cfg.tokenizer, text, cfg.vocab_size, chat_data.SPECIAL_TOKENS)
    encoded = {split: [chat_data.encode_chat(tokenizer, c) for c in convs] for split, convs in conversations.items()}
    if not cfg.mask_user:
        encoded["train"] = unmasked(encoded["train"])
    pad_id = tokenizer.special_tokens.get(chat_data.ENDOFTEXT, tokenizer.special_tokens[chat_data.IM_END])
    return tokenizer, {split: ChatBatches(ex, cfg.batching, pad_id) for split, ex in encoded.items()}


def validation_loss(model, tokenizer, dataset: str = "shakespeare", val_fraction: float = 0.1,
                    eval_iters: int = 50, batch_size: int = 32, seed: int = 0) -> float:
    """The model's mean cross-entropy on the held-out split of ``dataset`` (float32).

    The same fixed batches every time (``seed``), so the figure is reproducible: the
    shipped model states it and a test checks it.
    """
    _, splits = prepare_data(load_text(dataset), val_fraction, tokenizer)
    return estimate_loss(model, {"val": splits["val"]}, batch_size, model.config.block_size, eval_iters, seed)["val"]


class _StopFlag:
    """Turns Ctrl-C (SIGINT) into a request to stop after the current step.

    Stopping between steps, never inside one, means the saved checkpoint is always a
    consistent state (never weights half-updated by an interrupted optimizer step).
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handler(self, signum, frame):
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: Ctrl-C then raises KeyboardInterrupt as usual
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def _new_history() -> dict:
    return {
        "step": [], "loss": [], "lr": [],  # every training step
        "eval_step": [], "train_loss": [], "val_loss": [], "tokens_per_sec": [],  # every evaluation
        "train_time": 0.0,  # seconds spent in training steps (evaluation and saving excluded)
        "interrupted": False,
    }


# ---------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------


def train(config: TrainConfig | None = None, *, model: GPT | None = None, text: str | None = None,
          conversations: dict | None = None, callback=None, **overrides) -> dict:
    """Train a GPT and return its history.

    ``config`` (default: the ``cpu`` preset) with ``overrides`` on top. ``model``: train this
    model in place instead of a new one (its config must match). ``text``: train on this
    string instead of ``config.dataset``; ``conversations``: on these
    ``{"train": [...], "val": [...]}`` (with ``dataset="chat"``). ``callback(step, model,
    history, tokenizer)`` is called after every evaluation (to plot or to print samples).

    The history holds per step ``step``, ``loss``, ``lr``; per evaluation ``eval_step``,
    ``train_loss``, ``val_loss``, ``tokens_per_sec``; ``train_time`` in seconds; and
    ``interrupted`` (True when Ctrl-C stopped the run; the checkpoint was saved first).

    Under torchrun every process runs this function: it joins the process group, trains
    its share of each batch, and only rank 0 prints, evaluates for the log, calls
    ``callback`` and writes checkpoints (see :mod:`tinyllm.distributed`).
    """
    cfg = dataclasses.replace(config or config_from_preset("cpu"), **overrides)
    dist = env_dist()
    check_fsdp(cfg.fsdp, dist, cfg.optimizer)
    micro_batch_size(cfg.batch_size, dist.world_size, cfg.grad_accum_steps)  # before any process starts waiting
    device = pick_device(cfg.device, verbose=False)
    with process_group(device, cfg.dist_timeout) as dist:
        return _train(cfg, device_for(device, dist), dist, model, text, conversations, callback)


def _stream_key(j: int) -> str:
    return "batches" if j == 0 else f"batches.{j}"  # stream 0 keeps a single process's name


def _train(cfg: TrainConfig, device, dist, model, text, conversations, callback) -> dict:
    ctx = autocast_context(device.type, resolve_dtype(cfg.dtype, device.type))
    main = dist.is_main

    def say(message: str) -> None:
        if cfg.verbose and main:
            tqdm.write(message)
            sys.stdout.flush()

    checkpoint = None
    if cfg.resume:
        if cfg.out_dir is None:
            raise ValueError("resume=True needs an out_dir to resume from")
        if has_checkpoint(cfg.out_dir):
            checkpoint = load_checkpoint(cfg.out_dir)  # every rank reads the same files
        else:
            say(f"no checkpoint in {cfg.out_dir} yet: starting from scratch")

    tokenizer = tokenizer_from_dict(checkpoint.tokenizer) if checkpoint else None
    if cfg.dataset == "chat" or conversations is not None:
        tokenizer, splits = prepare_chat(cfg, tokenizer, conversations)
    else:
        text = load_text(cfg.dataset) if text is None else text
        if tokenizer is None:
            train_text = text[: int(len(text) * (1 - cfg.val_fraction))]  # BPE never sees the held-out text
            tokenizer = build_tokenizer(cfg.tokenizer, text if cfg.tokenizer == "char" else train_text, cfg.vocab_size)
        tokenizer, splits = prepare_data(text, cfg.val_fraction, tokenizer)
    model_config = cfg.model_config(tokenizer.vocab_size)

    if model is None:
        torch.manual_seed(cfg.seed)  # the initial weights (the same on every rank)
        model = GPT(model_config)
    elif model.config.to_dict() != model_config.to_dict():
        raise ValueError(f"the model's config {model.config} does not match the training config {model_config}")
    model.to(device)
    if checkpoint is not None:
        check_config_matches(checkpoint, model_config.to_dict())
        model.load_state_dict(checkpoint.model_state)  # before wrapping: FSDP then shards these weights
        if checkpoint.optimizer_state is None:
            raise CheckpointError(f"the checkpoint in {cfg.out_dir} has no optimizer state to resume from")
    tied = tied_names(model)
    wrapped = wrap_model(model, device, cfg.fsdp) if dist.enabled else model
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.muon_lr,
                                device_type=device.type)
    # Micro-batch stream j = rank * grad_accum_steps + micro draws from its own generator
    # seeded seed + j: stream 0 is a single process's generator, and 2 ranks x 1 micro-step
    # draw exactly the batches of 1 rank x 2 micro-steps.
    n_micro = cfg.grad_accum_steps
    micro_size = micro_batch_size(cfg.batch_size, dist.world_size, n_micro)
    streams = [dist.rank * n_micro + m for m in range(n_micro)]
    generators = [torch.Generator().manual_seed(cfg.seed + j) for j in streams]
    torch_key = "torch" if main else f"torch.{dist.rank}"
    history, step = _new_history(), 0

    if checkpoint is not None:
        saved = sorted(k for k in checkpoint.rng if k.startswith("batches"))
        if len(saved) != dist.world_size * n_micro:
            raise CheckpointError(
                f"the checkpoint in {cfg.out_dir} has {len(saved)} batch stream(s), this run has "
                f"{dist.world_size} process(es) x grad_accum_steps {n_micro}: resume with the same product"
            )
        if cfg.fsdp:  # each rank keeps its shard of the moments
            load_optimizer_state(wrapped, optimizer, checkpoint.optimizer_state, optimizer_names(model, optimizer))
        else:  # one process, or DDP: every rank holds the whole state
            optimizer.load_state_dict(checkpoint.optimizer_state)
        for j, generator in zip(streams, generators):
            generator.set_state(checkpoint.rng[_stream_key(j)])
        torch.set_rng_state(checkpoint.rng.get(torch_key, checkpoint.rng["torch"]))
        history = {**_new_history(), **checkpoint.history, "interrupted": False}
        step = checkpoint.step
        say(f"resuming from step {step} of {cfg.out_dir}")

    forward = torch.compile(wrapped) if cfg.compile else wrapped
    decay_iters = cfg.lr_decay_iters or cfg.max_iters

    def evaluate(tokens_per_sec: float) -> None:
        # FSDP: every rank must run the forward pass (each holds a shard of the weights that
        # the others gather), so all ranks evaluate the same batches and rank 0 keeps the
        # figures. DDP: rank 0 evaluates its full copy alone; the others wait at the next
        # collective (dist_timeout must cover an evaluation and a checkpoint).
        if not (main or cfg.fsdp):
            return
        losses = estimate_loss(model, splits, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 1, ctx)
        if not main:
            return
        history["eval_step"].append(step)
        history["train_loss"].append(losses["train"])
        history["val_loss"].append(losses["val"])
        history["tokens_per_sec"].append(tokens_per_sec)
        say(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if callback is not None:
            callback(step, model, history, tokenizer)

    def save() -> None:
        if cfg.out_dir is None:
            return
        rng = {_stream_key(j): g.get_state() for j, g in zip(streams, generators)}
        rng[torch_key] = torch.get_rng_state()
        model_state, optim_state = model, optimizer  # one process, or DDP: rank 0 holds it all
        if cfg.fsdp:  # every rank takes part in gathering the shards
            weights, moments = full_state(wrapped, optimizer, tied)
            model_state, optim_state = StateView(weights, model.config), StateView(moments)
        if dist.enabled:  # every rank's batch streams; rank 0 writes
            parts = gather_objects(rng, dist)
            if not main:
                return
            rng = {k: v for part in parts for k, v in part.items()}
        save_checkpoint(cfg.out_dir, model_state, step, optim_state, tokenizer, rng, history, cfg.to_dict())

    model.train()
    if step == 0 and cfg.eval_interval and cfg.max_iters:
        evaluate(0.0)
    checkpoint_interval = cfg.checkpoint_interval or cfg.eval_interval or cfg.max_iters
    tokens_since, time_since = 0, 0.0
    bar = tqdm(total=cfg.max_iters, initial=step, desc="training", unit="step", mininterval=0.5,
               disable=not (cfg.verbose and main))
    with _StopFlag() as stop:
        while step < cfg.max_iters:
            if stop.requested:
                history["interrupted"] = True
                break
            t0 = time.perf_counter()
            lr = get_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, decay_iters)
            set_lr(optimizer, lr / cfg.lr)  # every group (AdamW's, Muon's) at its peak times this
            optimizer.zero_grad(set_to_none=True)
            losses = []
            for micro, generator in enumerate(generators):
                x, y = _batch(splits["train"], micro_size, cfg.block_size, generator)
                x, y = x.to(device), y.to(device)
                # The gradients are averaged over the ranks once, after the last micro-step.
                with gradient_sync(wrapped, micro == n_micro - 1):
                    with ctx:
                        _, loss = forward(x, y)
                    # Each micro-batch's loss is a mean over its tokens; dividing by the
                    # number of micro-steps makes the added-up gradient that of the whole batch.
                    (loss / n_micro if n_micro > 1 else loss).backward()
                losses.append(loss.detach())
            if cfg.grad_clip > 0:
                # Rescale the whole gradient when its norm is large: one bad batch cannot
                # throw the weights far away. (On the averaged gradient: after the all-reduce.)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            loss_value = (losses[0] if n_micro == 1 else torch.stack(losses).mean()).item()  # waits for the step
            if dist.enabled:  # the whole batch's loss, and whether any rank got Ctrl-C
                total, stops = all_reduce_sum([loss_value, float(stop.requested)], device)
                loss_value, stop.requested = total / dist.world_size, stops > 0
            elapsed = time.perf_counter() - t0
            history["train_time"] += elapsed
            tokens_since += x.numel() * n_micro * dist.world_size
            time_since += elapsed
            history["step"].append(step)
            history["loss"].append(loss_value)
            history["lr"].append(lr)
            bar.update(1)
            bar.set_postfix(loss=f"{loss_value:.4f}", refresh=False)
            if (cfg.eval_interval and step % cfg.eval_interval == 0) or step == cfg.max_iters:
                evaluate(tokens_since / max(time_since, 1e-9))
                tokens_since, time_since = 0, 0.0
            if step % checkpoint_interval == 0 or step == cfg.max_iters:
                save()
        if history["interrupted"]:
            save()
            where = f"; checkpoint saved in {cfg.out_dir}, continue with --resume" if cfg.out_dir else ""
            say(f"interrupted at step {step}{where}")
    bar.close()
    return history


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """One option per :class:`TrainConfig` field, typed by the field's own annotation."""
    def describe(name):
        c = config_from_preset(name)
        return f"{name} ({c.n_layer} layers, n_embd {c.n_embd}, {c.max_iters} steps of batch {c.batch_size})"

    parser = argparse.ArgumentParser(
        prog="python -m tinyllm.train",
        description="Train a GPT on text or on chat conversations. A preset fills in every setting; "
                    "options override it.",
        epilog="presets: " + "; ".join(describe(name) for name in PRESETS),
    )
    parser.add_argument("--preset", default="cpu", choices=list(PRESETS), help="named recipe (default: cpu)")
    hints = typing.get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "verbose":
            continue
        kind = next(t for t in typing.get_args(hints[f.name]) or (hints[f.name],) if t is not type(None))
        help_text = f"{f.metadata['help']} (default: {f.default})"
        if kind is bool:
            # "--resume" alone means true; "--mask_user false" says it explicitly.
            parser.add_argument(f"--{f.name}", nargs="?", const=True, default=None, type=_bool, help=help_text)
        else:
            parser.add_argument(f"--{f.name}", type=kind, default=None, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or eval lines")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("preset", "quiet") and v is not None}
    try:
        cfg = config_from_preset(args.preset, verbose=not args.quiet, **overrides)
        history = train(cfg)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RuntimeError, TimeoutError) as exc:  # under torchrun: how a dead or hung rank shows
        dist = env_dist()
        if not (dist.enabled and lost_peer(exc)):
            raise  # any other error (out of memory, a bug) keeps its own message and traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"error: rank {dist.rank} of {dist.world_size} lost contact with the other processes ({first}): "
              f"one of them died or hung for more than dist_timeout={cfg.dist_timeout} s. "
              "Continue from the last checkpoint with --resume.", file=sys.stderr)
        return 1
    if history["interrupted"]:
        return 130  # the shell convention for "stopped by Ctrl-C"
    if history["val_loss"]:
        print(f"done: step {history['eval_step'][-1]}, val loss {history['val_loss'][-1]:.4f}, "
              f"training time {history['train_time']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
