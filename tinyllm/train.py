"""Training a GPT: the loop the course, its command line and the shipped models all use.

From a notebook::

    from tinyllm.train import config_from_preset, train
    history = train(config_from_preset("cpu", max_iters=200))

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

The settings, presets and command-line options live in :mod:`tinyllm.config`; the data
(text cut into random windows, or chat conversations, generated or your own ``.jsonl``,
whose loss counts only the assistant's tokens) in :mod:`tinyllm.prepare`; everything torchrun needs (DDP, FSDP,
per-rank batch streams, gathered checkpoints) behind :class:`tinyllm.distributed.Ranks`.
This module is the loop.

Resuming is exact on the CPU: the checkpoint holds the weights, the optimizer's moments,
the batch sampler's random state and the global random state (dropout), so a run stopped
at any step and resumed ends with bit-identical weights to one that never stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import sys
import time

import torch
from tqdm.auto import tqdm

from tinyllm.checkpoint import (
    CheckpointError,
    check_config_matches,
    has_checkpoint,
    resume_point,
    save_checkpoint,
    tokenizer_from_dict,
)
from tinyllm.config import PRESETS, TrainConfig, build_parser, config_from_preset, overrides_from_args
from tinyllm.data import load_text
from tinyllm.device import autocast_context, pick_device, resolve_dtype
from tinyllm.distributed import Ranks, check_launch, device_for, env_dist, lost_peer, process_group
from tinyllm.model import GPT, eval_mode
from tinyllm.optim import build_optimizer, set_lr
from tinyllm.prepare import build_tokenizer, get_split_batch, prepare, prepare_chat, prepare_data

# What chapters, tests and scripts import from here (some live in config and prepare).
__all__ = ["PRESETS", "TrainConfig", "build_tokenizer", "config_from_preset", "estimate_loss", "get_lr", "main",
           "prepare_chat", "prepare_data", "train", "validation_loss"]

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


@torch.no_grad()
def estimate_loss(model, splits: dict, batch_size: int, block_size: int, eval_iters: int, seed: int = 0,
                  ctx=None) -> dict[str, float]:
    """Mean loss over ``eval_iters`` random batches of each split (ids or :class:`ChatBatches`).

    One batch's loss is noisy; the mean of many is a steadier estimate. The batches come
    from their own generator seeded with ``seed``, so every evaluation sees the same batches
    (comparable figures) and the training batches are not disturbed.
    """
    device = next(model.parameters()).device
    out = {}
    with eval_mode(model):
        for name, data in splits.items():
            generator = torch.Generator().manual_seed(seed)
            losses = torch.zeros(eval_iters)
            for k in range(eval_iters):
                x, y = get_split_batch(data, batch_size, block_size, generator)
                with ctx or contextlib.nullcontext():
                    _, loss = model(x.to(device), y.to(device))
                losses[k] = loss.item()
            out[name] = losses.nanmean().item()  # a chat batch with no answer in its windows has no loss
    return out


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
    check_launch(cfg.fsdp, cfg.optimizer, cfg.batch_size, cfg.grad_accum_steps)  # before any process waits
    device = pick_device(cfg.device, verbose=False)
    with process_group(device, cfg.dist_timeout) as dist:
        return _train(cfg, device_for(device, dist), dist, model, text, conversations, callback)


def _train(cfg: TrainConfig, device, dist, model, text, conversations, callback) -> dict:
    ctx = autocast_context(device.type, resolve_dtype(cfg.dtype, device.type))

    def say(message: str) -> None:
        if cfg.verbose and dist.is_main:
            tqdm.write(message)
            sys.stdout.flush()

    checkpoint = None
    if cfg.resume:
        if cfg.out_dir is None:
            raise ValueError("resume=True needs an out_dir to resume from")
        if has_checkpoint(cfg.out_dir):
            checkpoint = resume_point(cfg.out_dir, cfg.to_dict())  # every rank reads the same files
        elif dist.is_main:  # even when quiet: a mistyped out_dir would start over unseen
            print(f"no checkpoint in {cfg.out_dir} yet: starting from scratch", file=sys.stderr)

    tokenizer = tokenizer_from_dict(checkpoint.tokenizer) if checkpoint else None
    tokenizer, splits = prepare(cfg, tokenizer, text, conversations)
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
    ranks = Ranks(dist, model, device, cfg.fsdp, cfg.seed, cfg.batch_size, cfg.grad_accum_steps)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, (cfg.beta1, cfg.beta2), cfg.muon_lr,
                                device_type=device.type)
    history, step = _new_history(), 0
    if checkpoint is not None:
        ranks.restore(checkpoint, optimizer)
        history = {**_new_history(), **checkpoint.history, "interrupted": False}
        step = checkpoint.step
        say(f"resuming from step {step} of {cfg.out_dir}")

    forward = torch.compile(ranks.module) if cfg.compile else ranks.module
    decay_iters = cfg.lr_decay_iters or cfg.max_iters
    n_micro = cfg.grad_accum_steps

    def evaluate(tokens_per_sec: float) -> None:
        if not ranks.evaluates:
            return
        losses = estimate_loss(model, splits, cfg.batch_size, cfg.block_size, cfg.eval_iters, cfg.seed + 1, ctx)
        if not dist.is_main:
            return
        history["eval_step"].append(step)
        history["train_loss"].append(losses["train"])
        history["val_loss"].append(losses["val"])
        history["tokens_per_sec"].append(tokens_per_sec)
        say(f"step {step}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if callback is not None:
            callback(step, model, history, tokenizer)

    def save() -> None:
        state = ranks.checkpoint_state(optimizer) if cfg.out_dir is not None else None
        if state is not None:  # rank 0 writes
            model_state, optimizer_state, rng = state
            save_checkpoint(cfg.out_dir, model_state, step, optimizer_state, tokenizer, rng, history, cfg.to_dict())

    model.train()
    if step == 0 and cfg.eval_interval and cfg.max_iters:
        evaluate(0.0)
    checkpoint_interval = cfg.checkpoint_interval or cfg.eval_interval or cfg.max_iters
    tokens_since, time_since = 0, 0.0
    bar = tqdm(total=cfg.max_iters, initial=step, desc="training", unit="step", mininterval=0.5,
               disable=not (cfg.verbose and dist.is_main))
    with _StopFlag() as stop:
        while step < cfg.max_iters:
            if stop.requested:
                history["interrupted"] = True
                break
            t0 = time.perf_counter()
            lr = get_lr(step, cfg.lr, cfg.min_lr, cfg.warmup_iters, decay_iters)
            set_lr(optimizer, lr / cfg.lr)  # every group (AdamW's, Muon's) at its peak times this
            optimizer.zero_grad(set_to_none=True)
            losses, batches = [], [get_split_batch(splits["train"], ranks.micro_size, cfg.block_size, generator)
                                   for generator in ranks.generators]
            weights = ranks.loss_weights([y for _, y in batches])  # None: all hold as many learned tokens
            for micro, (x, y) in enumerate(batches):
                x, y = x.to(device), y.to(device)
                with ranks.sync(micro):  # under torchrun: gradients averaged after the last micro-step
                    with ctx:
                        _, loss = forward(x, y)
                    # Each micro-batch's loss is a mean over its learned tokens; weighted by their share
                    # (1 / micro-steps for text), the added-up gradient is that of the whole batch.
                    scaled = loss.nan_to_num() * weights[micro] if weights else loss / n_micro if n_micro > 1 else loss
                    scaled.backward()
                losses.append(loss.detach())
            if cfg.grad_clip > 0:
                # Rescale the whole gradient when its norm is large: one bad batch cannot
                # throw the weights far away. (On the averaged gradient: after the all-reduce.)
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            step += 1
            if weights:  # the weighted sum (mean_and_any adds the ranks' up); NaN where nothing was learned
                weighted = torch.stack(losses).nan_to_num() @ losses[0].new_tensor(weights)
                loss_value = weighted.item() if any(weights) else math.nan
            else:
                loss_value = (losses[0] if n_micro == 1 else torch.stack(losses).mean()).item()  # waits for the step
            loss_value, stop.requested = ranks.mean_and_any(loss_value, stop.requested)
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
# Command line (its options: tinyllm.config.build_parser)
# ---------------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_preset(args.preset, verbose=not args.quiet, **overrides_from_args(args))
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
