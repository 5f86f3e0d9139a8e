"""The settings of a training run: :class:`TrainConfig`, the named presets, the command line.

A :class:`TrainConfig` *is* a :class:`~tinyllm.model.GPTConfig` (the model's settings,
with the model's own names and defaults) plus the run's: optimization, evaluation and
checkpoints, data, system. A preset is a known recipe written as its differences from
those defaults; :func:`config_from_preset` fills one in and lays overrides on top::

    from tinyllm.config import config_from_preset
    cfg = config_from_preset("nanogpt-cpu", max_iters=500)

The command line of ``python -m tinyllm.train`` (:func:`build_parser`) has one option per
field, named like nanoGPT's.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from tinyllm.batching import MODES
from tinyllm.data import is_conversation_file
from tinyllm.distributed import micro_batch_size
from tinyllm.model import GPTConfig
from tinyllm.optim import OPTIMIZERS
from tinyllm.validate import check_int

# The model's settings (every GPTConfig field but vocab_size, which the tokenizer decides).
MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size")
# The command line's help for them (GPTConfig documents them in comments).
MODEL_HELP = {
    "block_size": "context length in tokens",
    "n_layer": "transformer blocks",
    "n_head": "attention heads per block",
    "n_embd": "width of the residual stream",
    "dropout": "dropout probability",
    "bias": "biases in Linear and LayerNorm layers, as GPT-2",
    "mlp": "MLP: gelu (exact), gelu_tanh (OpenAI's GPT-2), relu (GuppyLM), relu2 or swiglu",
    "mlp_hidden": "MLP hidden width (default 4 * n_embd; swiglu: 8/3 * n_embd)",
    "norm": "layernorm (GPT-2) or rmsnorm",
    "pos": "positions: learned (a table, GPT-2) or rope (rotary)",
    "n_kv_head": "key/value heads (default n_head; fewer: grouped-query attention)",
    "qk_norm": "RMSNorm on queries and keys",
    "rope_theta": "RoPE base",
}


def _opt(default, help: str):
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig(GPTConfig):
    """Every setting of a run: the model's (inherited from GPTConfig, same defaults) and the
    run's own below. ``vocab_size`` is the size of a BPE vocabulary trained for the run; the
    model's vocabulary is always the tokenizer's."""

    vocab_size: int = _opt(512, "vocabulary size of a BPE tokenizer trained here (with special tokens)")
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
    dataset: str = _opt("shakespeare", "corpus name, path of a .txt file, chat, or a .jsonl file of conversations")
    val_dataset: str | None = _opt(None, "a .jsonl file of validation conversations (default: the end of --dataset)")
    tokenizer: str = _opt("char", "char, bpe (trained on the training split), or the .json of a saved BPE "
                          "or a Hugging Face tokenizer.json")
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
        super().__post_init__()  # the model's settings
        for name in ("batch_size", "grad_accum_steps", "max_iters", "eval_iters", "n_conversations"):
            check_int(name, getattr(self, name), 0 if name == "max_iters" else 1)
        micro_batch_size(self.batch_size, 1, self.grad_accum_steps)  # ValueError if it cannot be split
        if not self.dist_timeout > 0:
            raise ValueError(f"dist_timeout must be > 0 seconds, got {self.dist_timeout}")
        if self.warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0 (0: only at the end), got {self.eval_interval}")
        if not 0 < self.lr < math.inf or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 < lr and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.optimizer == "muon" and not 0 < self.muon_lr < math.inf:  # before the data is prepared
            raise ValueError(f"muon_lr must be > 0 and finite, got {self.muon_lr}")
        if not (self.grad_clip >= 0 and self.weight_decay >= 0):  # (a NaN fails both)
            raise ValueError(f"grad_clip and weight_decay must be >= 0 (grad_clip 0: no clipping), got "
                             f"grad_clip={self.grad_clip}, weight_decay={self.weight_decay}")
        for name in ("lr_decay_iters", "checkpoint_interval"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), 1)
        if self.out_dir is not None and Path(self.out_dir).exists() and not Path(self.out_dir).is_dir():
            raise ValueError(f"out_dir {self.out_dir} is a file: checkpoints need a folder")
        if self.tokenizer.endswith(".json") and not Path(self.tokenizer).is_file():
            raise ValueError(f"tokenizer file {self.tokenizer} does not exist")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            # float16 would need a gradient scaler against underflow; bfloat16 does not.
            raise ValueError(f"dtype must be float32, bfloat16 or auto, got {self.dtype!r}")
        if self.tokenizer not in ("char", "bpe") and not self.tokenizer.endswith(".json"):
            raise ValueError(f"tokenizer must be char, bpe or the path of a BPE .json file, got {self.tokenizer!r}")
        if (self.dataset == "chat" or is_conversation_file(self.dataset)) and self.tokenizer == "char":
            raise ValueError(f"dataset {self.dataset!r} needs a tokenizer with special tokens (it holds "
                             "conversations): use --tokenizer bpe or a .json")
        if self.val_dataset is not None and not (is_conversation_file(self.dataset) and is_conversation_file(
                self.val_dataset)):
            raise ValueError("val_dataset is for conversations: both dataset and val_dataset must be .jsonl files")
        if self.optimizer not in OPTIMIZERS:  # now, not after the data and a BPE tokenizer are made
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.batching not in MODES:
            raise ValueError(f"batching must be one of {MODES}, got {self.batching!r}")

    def model_config(self, vocab_size: int) -> GPTConfig:
        """The model's part of the settings, for a tokenizer of ``vocab_size`` tokens."""
        return GPTConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_FIELDS})


# Named recipes, each written as its differences from TrainConfig's defaults (which are
# GPTConfig's for the model).
_RECIPES: dict[str, dict] = {
    # The default: nanoGPT's recipe re-balanced for a fixed time budget. One layer fewer
    # (each step 25% cheaper), so more steps fit; a 4x higher peak learning rate (safe after
    # warmup), a deeper cosine decay, slightly bigger batches, bfloat16 where the CPU is
    # fast at it. Chapter 08 explains the measurements.
    "cpu": dict(n_layer=3),
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
    # 30 minutes on 2 CPU cores with one torch thread (see its README.md): 5,000 steps on 50,000
    # conversations of 67 topics, users' messages written carelessly (chat_data.vary_wording).
    # Width 192 rather than 128: at equal steps it answered more new wordings
    # (benchmarks/bench_chat_scaling.py, chapter 12's figure).
    "chat-cpu": dict(
        n_layer=4, n_head=6, n_embd=192, block_size=128, mlp="relu", mlp_hidden=768, dataset="chat",
        tokenizer="bpe", vocab_size=1024, n_conversations=50000, batch_size=16, max_iters=5000, lr=3e-3,
        min_lr=1e-4, warmup_iters=100, eval_interval=500, eval_iters=10, dtype="float32", device="cpu",
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
        help_text = f"{f.metadata.get('help') or MODEL_HELP[f.name]} (default: {PRESETS['cpu'].get(f.name, f.default)})"
        if kind is bool:
            # "--resume" alone means true; "--mask_user false" says it explicitly.
            parser.add_argument(f"--{f.name}", nargs="?", const=True, default=None, type=_bool, help=help_text)
        else:
            parser.add_argument(f"--{f.name}", type=kind, default=None, help=help_text)
    parser.add_argument("--quiet", action="store_true", help="no progress bar or eval lines")
    return parser


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The settings given on the command line (options left out keep the preset's)."""
    return {k: v for k, v in vars(args).items() if k not in ("preset", "quiet") and v is not None}
