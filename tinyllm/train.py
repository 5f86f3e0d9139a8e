"""Training a GPT: the loop the course, its command line and the shipped model all use.

From a notebook::

    from tinyllm.train import TrainConfig, train
    history = train(TrainConfig(max_iters=200, out_dir=None))

From a shell (options named like nanoGPT's, presets for known recipes)::

    python -m tinyllm.train --preset nanogpt-cpu --dataset tinyshakespeare
    python -m tinyllm.train --out_dir out --resume   # continue after a crash or Ctrl-C

Each step: draw a random batch, compute the cross-entropy, backpropagate, clip the
gradient norm, and take an AdamW step at the learning rate of the schedule (linear warmup,
then cosine decay to ``min_lr``). Every ``eval_interval`` steps the train and validation
losses are estimated on ``eval_iters`` fixed batches each and printed as
``step N: train loss X, val loss Y``.

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
from dataclasses import dataclass
from pathlib import Path

import torch

from tinyllm.checkpoint import (
    CheckpointError,
    check_config_matches,
    has_checkpoint,
    load_checkpoint,
    save_checkpoint,
    tokenizer_from_dict,
)
from tinyllm.data import get_batch, load_text, train_val_split
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer

MODEL_FIELDS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "bias")


@dataclass
class TrainConfig:
    """Every setting of a run. Defaults are the ``cpu`` preset on the embedded corpus."""

    # model
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 64
    dropout: float = 0.0
    bias: bool = True
    # optimization
    batch_size: int = 16
    max_iters: int = 1150
    lr: float = 4e-3
    min_lr: float = 1e-4
    warmup_iters: int = 50
    lr_decay_iters: int | None = None  # None: decay until max_iters
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    # evaluation and checkpoints
    eval_interval: int = 100
    eval_iters: int = 20
    checkpoint_interval: int | None = None  # None: at every evaluation (and at the end)
    # data
    dataset: str = "shakespeare"  # a corpus name of tinyllm.data.load_text, or a .txt path
    tokenizer: str = "char"
    val_fraction: float = 0.1
    # system
    device: str = "cpu"
    dtype: str = "auto"  # float32 | bfloat16 | auto (bfloat16 where the hardware is fast at it)
    compile: bool = False
    seed: int = 1337
    out_dir: str | None = None  # None: no checkpoints
    resume: bool = False
    verbose: bool = True  # print eval lines and a progress bar

    def __post_init__(self):
        for name in ("batch_size", "max_iters", "eval_iters"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "max_iters" else 1):
                bound = ">= 0" if name == "max_iters" else ">= 1"
                raise ValueError(f"{name} must be an int {bound}, got {value!r}")
        if self.warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.eval_interval < 0:
            raise ValueError(f"eval_interval must be >= 0 (0: only at the end), got {self.eval_interval}")
        if not 0 < self.lr or not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"need 0 < lr and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.dtype not in ("float32", "bfloat16", "auto"):
            # float16 would need a gradient scaler against underflow; bfloat16 does not.
            raise ValueError(f"dtype must be float32, bfloat16 or auto, got {self.dtype!r}")
        if self.tokenizer != "char":
            raise ValueError(f"tokenizer {self.tokenizer!r} is not supported by the trainer yet; use 'char'")

    def model_config(self, vocab_size: int) -> GPTConfig:
        return GPTConfig(vocab_size=vocab_size, **{k: getattr(self, k) for k in MODEL_FIELDS})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# Named recipes. A preset fills in settings; options given explicitly override them.
PRESETS: dict[str, dict] = {
    # nanoGPT's README "I only have a macbook" recipe for shakespeare_char (val loss ~1.88).
    "nanogpt-cpu": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0, batch_size=12, max_iters=2000,
        lr=1e-3, min_lr=1e-4, warmup_iters=100, lr_decay_iters=2000, beta2=0.99, weight_decay=0.1,
        eval_interval=250, eval_iters=20, dtype="float32",
    ),
    # The default: nanoGPT's recipe re-balanced for a fixed time budget. One layer fewer (each
    # step 25% cheaper), so more steps fit; a 4x higher peak learning rate (safe after warmup)
    # and a deeper cosine decay; slightly bigger batches; bfloat16 matrix multiplies where the
    # CPU is fast at them. Chapter 08 explains the measurements behind each choice
    # (benchmarks/bench_train.py compares it with nanogpt-cpu).
    "cpu": dict(
        n_layer=3, n_head=4, n_embd=128, block_size=64, dropout=0.0, batch_size=16, max_iters=1150,
        lr=4e-3, min_lr=1e-4, warmup_iters=50, lr_decay_iters=None, beta2=0.99, weight_decay=0.1,
        eval_interval=100, eval_iters=20, dtype="auto",
    ),
    # The model shipped in tinyllm/checkpoints/shakespeare-char (see its README.md).
    "shakespeare-char": dict(
        n_layer=4, n_head=4, n_embd=128, block_size=128, dropout=0.0, batch_size=16, max_iters=2500,
        lr=2e-3, min_lr=2e-4, warmup_iters=100, lr_decay_iters=None, beta2=0.99, weight_decay=0.1,
        eval_interval=250, eval_iters=20, dtype="auto",
    ),
    # A few seconds: for tests and quick experiments.
    "tiny": dict(
        n_layer=1, n_head=2, n_embd=32, block_size=16, dropout=0.0, batch_size=8, max_iters=20,
        lr=3e-3, min_lr=3e-4, warmup_iters=2, lr_decay_iters=None, eval_interval=10, eval_iters=2,
        dtype="float32",
    ),
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


@torch.no_grad()
def estimate_loss(
    model: torch.nn.Module,
    splits: dict[str, torch.Tensor],
    batch_size: int,
    block_size: int,
    eval_iters: int,
    seed: int = 0,
    ctx=None,
) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split.

    One batch's loss is noisy; the mean of many is a steadier estimate. The batches come
    from their own generator seeded with ``seed``, so every evaluation sees the same batches
    (comparable figures) and the training batches are not disturbed.
    """
    was_training = model.training
    model.eval()
    out = {}
    try:
        for name, data in splits.items():
            generator = torch.Generator().manual_seed(seed)
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                x, y = get_batch(data, batch_size, block_size, generator=generator)
                with ctx or contextlib.nullcontext():
                    _, loss = model(x.to(_device_of(model)), y.to(_device_of(model)))
                losses[k] = loss.item()
            out[name] = losses.mean().item()
    finally:
        model.train(was_training)
    return out


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def prepare_data(text: str, val_fraction: float, tokenizer: CharTokenizer | None = None):
    """Tokenize ``text`` and split it: ``tokenizer, {"train": ids, "val": ids}``."""
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    ids = torch.tensor(tokenizer.encode(text), dtype=torch.long)
    train_ids, val_ids = train_val_split(ids, val_fraction)
    return tokenizer, {"train": train_ids, "val": val_ids}


def validation_loss(
    model: torch.nn.Module,
    tokenizer,
    dataset: str = "shakespeare",
    val_fraction: float = 0.1,
    eval_iters: int = 50,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """The model's mean cross-entropy on the held-out split of ``dataset`` (float32).

    The same fixed batches every time (``seed``), so the figure is reproducible: the
    shipped model states it and a test checks it.
    """
    _, splits = prepare_data(load_text(dataset), val_fraction, tokenizer)
    losses = estimate_loss(model, {"val": splits["val"]}, batch_size, model.config.block_size, eval_iters, seed)
    return losses["val"]


SHIP_COMMAND = (
    "OMP_NUM_THREADS=1 python -m tinyllm.train --preset shakespeare-char --out_dir runs/shakespeare-char "
    "--ship_to tinyllm/checkpoints/shakespeare-char"
)


def ship(out_dir, dest, command: str = SHIP_COMMAND) -> float:
    """Copy a finished run's model (no optimizer state) to ``dest`` with its measured
    validation loss and a README.md that states it and the command that made it.

    Returns the validation loss (float32, fixed batches: see :func:`validation_loss`).
    """
    from tinyllm.checkpoint import export_model, load_model

    model, tokenizer, checkpoint = load_model(out_dir)
    cfg = checkpoint.train_config
    settings = {"dataset": cfg["dataset"], "val_fraction": cfg["val_fraction"], "eval_iters": 50,
                "batch_size": 32, "seed": 0}
    val_loss = validation_loss(model, tokenizer, **settings)
    export_model(out_dir, dest, extra={"validation": {"val_loss": val_loss, **settings}})
    c = checkpoint.config
    corpus = {"shakespeare": "the embedded corpus", "tinyshakespeare": "the canonical tinyshakespeare file"}.get(
        cfg["dataset"], "the text file")
    size = sum(p.stat().st_size for p in Path(dest).iterdir())
    Path(dest, "README.md").write_text(
        f"""# {Path(dest).name}: the course's character-level Shakespeare model

A GPT of {model.num_params():,} parameters ({c['n_layer']} layers, {c['n_head']} heads, n_embd {c['n_embd']},
context of {c['block_size']} characters, vocabulary of {c['vocab_size']} characters), trained for
{checkpoint.step:,} steps of batch {cfg['batch_size']} on {corpus} `load_text("{cfg['dataset']}")`
(first {1 - cfg['val_fraction']:.0%} of the text; the last {cfg['val_fraction']:.0%} is held out, `train_val_split`).
Files: {size / 1e6:.1f} MB (weights as safetensors, float32; no optimizer state).

**Validation loss: {val_loss:.3f}** nats per character (float32, {settings['eval_iters']} batches of
{settings['batch_size']} x {c['block_size']} characters from the held-out split, drawn with seed {settings['seed']};
`tinyllm.train.validation_loss`). `tests/test_generate.py` checks this figure to 0.01.
Last estimate during training: train loss {checkpoint.history['train_loss'][-1]:.3f},
val loss {checkpoint.history['val_loss'][-1]:.3f}; training time {checkpoint.history['train_time'] / 60:.1f} minutes
on a shared 2-core CPU (settings in `state-*.json`, `train_config`).

Made with (from the repository root):

```
{command}
```

Load it with `tinyllm.generate.load_shipped_model()`, or sample from the shell:
`python -m tinyllm.generate --start "ROMEO:"`.
""",
        encoding="utf-8",
    )
    return val_loss


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


def train(
    config: TrainConfig | None = None,
    *,
    model: GPT | None = None,
    text: str | None = None,
    callback=None,
    **overrides,
) -> dict:
    """Train a GPT and return its history.

    ``config`` (default: the ``cpu`` preset) with ``overrides`` on top. ``model``: train this
    model in place instead of a new one (its config must match). ``text``: train on this
    string instead of ``config.dataset``. ``callback(step, model, history, tokenizer)`` is
    called after every evaluation (to plot or to print samples).

    The history holds per step ``step``, ``loss``, ``lr``; per evaluation ``eval_step``,
    ``train_loss``, ``val_loss``, ``tokens_per_sec``; ``train_time`` in seconds; and
    ``interrupted`` (True when Ctrl-C stopped the run; the checkpoint was saved first).
    """
    cfg = dataclasses.replace(config or config_from_preset("cpu"), **overrides)
    device = torch.device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device.type)
    ctx = autocast_context(device.type, dtype)
    log = _Logger(cfg.verbose)

    checkpoint = None
    if cfg.resume:
        if cfg.out_dir is None:
            raise ValueError("resume=True needs an out_dir to resume from")
        if has_checkpoint(cfg.out_dir):
            checkpoint = load_checkpoint(cfg.out_dir)
        else:
            log.write(f"no checkpoint in {cfg.out_dir} yet: starting from scratch")

    text = load_text(cfg.dataset) if text is None else text
    saved_tokenizer = tokenizer_from_dict(checkpoint.tokenizer) if checkpoint else None
    tokenizer, splits = prepare_data(text, cfg.val_fraction, saved_tokenizer)
    model_config = cfg.model_config(tokenizer.vocab_size)

    if model is None:
        torch.manual_seed(cfg.seed)  # the initial weights
        model = GPT(model_config)
    elif model.config.to_dict() != model_config.to_dict():
        raise ValueError(f"the model's config {model.config} does not match the training config {model_config}")
    model.to(device)
    optimizer = model.configure_optimizers(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type)
    generator = torch.Generator().manual_seed(cfg.seed)  # the training batches
    history, step = _new_history(), 0

    if checkpoint is not None:
        check_config_matches(checkpoint, model_config.to_dict())
        model.load_state_dict(checkpoint.model_state)
        if checkpoint.optimizer_state is None:
            raise CheckpointError(f"the checkpoint in {cfg.out_dir} has no optimizer state to resume from")
        optimizer.load_state_dict(checkpoint.optimizer_state)
        generator.set_state(checkpoint.rng["batches"])
        torch.set_rng_state(checkpoint.rng["torch"])
        history = {**_new_history(), **checkpoint.history, "interrupted": False}
        step = checkpoint.step
        log.write(f"resuming from step {step} of {cfg.out_dir}")

    forward = torch.compile(model) if cfg.compile else model
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    eval_seed = cfg.seed + 1

    def evaluate(tokens_per_sec: float) -> None:
        losses = estimate_loss(model, splits, cfg.batch_size, cfg.block_size, cfg.eval_iters, eval_seed, ctx)
        history["eval_step"].append(step)
        history["train_loss"].append(losses["train"])
        history["val_loss"].append(losses["val"])
        history["tokens_per_sec"].append(tokens_per_sec)
        log.write(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if callback is not None:
            callback(step, model, history, tokenizer)

    def save() -> None:
        if cfg.out_dir is None:
            return
        rng = {"batches": generator.get_state(), "torch": torch.get_rng_state()}
        save_checkpoint(cfg.out_dir, model, step, optimizer, tokenizer, rng, history, cfg.to_dict())

    model.train()
    if step == 0 and cfg.eval_interval and cfg.max_iters:
        evaluate(0.0)
    checkpoint_interval = cfg.checkpoint_interval or cfg.eval_interval or cfg.max_iters
    tokens_since, time_since = 0, 0.0
    bar = log.progress(total=cfg.max_iters, initial=step)
    with _StopFlag() as stop:
        while step < cfg.max_iters:
            if stop.requested:
                history["interrupted"] = True
                break
            t0 = time.perf_counter()
            lr = get_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, decay_iters)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = get_batch(splits["train"], cfg.batch_size, cfg.block_size, generator=generator)
            x, y = x.to(device), y.to(device)
            with ctx:
                _, loss = forward(x, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                # Rescale the whole gradient when its norm is large: one bad batch cannot
                # throw the weights far away.
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            loss_value = loss.item()  # waits for the step to finish (matters on GPUs)
            elapsed = time.perf_counter() - t0
            history["train_time"] += elapsed
            tokens_since += x.numel()
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
            log.write(f"interrupted at step {step}{where}")
    bar.close()
    return history


class _Logger:
    """Eval lines and a tqdm progress bar, or nothing when not verbose."""

    def __init__(self, verbose: bool):
        self.verbose = verbose

    def write(self, message: str) -> None:
        if self.verbose:
            from tqdm.auto import tqdm

            tqdm.write(message)
            sys.stdout.flush()

    def progress(self, total: int, initial: int):
        if not self.verbose:
            return _NoBar()
        from tqdm.auto import tqdm

        return tqdm(total=total, initial=initial, desc="training", unit="step", mininterval=0.5)


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tinyllm.train",
        description="Train a character-level GPT. A preset fills in every setting; options override it.",
        epilog="presets: " + "; ".join(
            f"{name} ({p['n_layer']} layers, n_embd {p['n_embd']}, {p['max_iters']} steps of batch {p['batch_size']})"
            for name, p in PRESETS.items()
        ),
    )
    parser.add_argument("--preset", default="cpu", choices=sorted(PRESETS), help="named recipe (default: cpu)")
    # Field types are strings here (from __future__ import annotations).
    types = {"int": int, "float": float, "str": str, "bool": _bool, "int | None": int, "str | None": str}
    for f in dataclasses.fields(TrainConfig):
        if f.name == "verbose":
            continue
        if f.name in ("resume", "compile"):
            parser.add_argument(f"--{f.name}", nargs="?", const=True, default=None, type=_bool,
                                help=f"(flag; default {f.default})")
            continue
        kind = types[f.type]
        parser.add_argument(f"--{f.name}", type=kind, default=None, help=f"(default: from the preset, else {f.default})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar or eval lines")
    parser.add_argument("--ship_to", default=None,
                        help="when the run is complete, copy the model (without optimizer state), its measured "
                             "validation loss and a README to this folder")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {k: v for k, v in vars(args).items() if k not in ("preset", "quiet", "ship_to") and v is not None}
    try:
        cfg = config_from_preset(args.preset, verbose=not args.quiet, **overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        history = train(cfg)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if history["interrupted"]:
        return 130  # the shell convention for "stopped by Ctrl-C"
    if history["val_loss"]:
        print(f"done: step {history['eval_step'][-1]}, val loss {history['val_loss'][-1]:.4f}, "
              f"training time {history['train_time']:.1f} s")
    if args.ship_to:
        if cfg.out_dir is None:
            print("error: --ship_to needs --out_dir", file=sys.stderr)
            return 2
        val_loss = ship(cfg.out_dir, args.ship_to)
        print(f"shipped to {args.ship_to}: validation loss {val_loss:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
