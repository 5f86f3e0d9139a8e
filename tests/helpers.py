"""Helpers shared by several test files (not a test file itself)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tinyllm.model import GPT, GPTConfig


def random_model(config: dict, seed: int = 0, scale: float = 0.1, **overrides) -> GPT:
    """A GPT in eval mode whose every parameter (biases, layer-norm gains too) is random.

    A freshly initialised model has zero biases and unit gains, which would let a wrong
    mapping of those parameters go unnoticed; random noise of ``scale`` on all of them
    makes every part visible to a comparison.
    """
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**config, **overrides}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
    return model.eval()


# A short text the training tests train on (a few seconds per run).
TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 60


def checkpoint_step(out_dir) -> int:
    """The step of the checkpoint in ``out_dir``, 0 before the first one, read from its manifest
    alone: tests poll it every few milliseconds while a run trains, and load_checkpoint
    (checksums, torch.load) at that rate would take a processor from the run it waits for."""
    manifest = Path(out_dir) / "manifest.json"  # replaced atomically: never half written
    return json.loads(manifest.read_text())["step"] if manifest.exists() else 0


@pytest.fixture(autouse=True)  # for each test module that imports it
def one_thread():
    """Train on one thread: tiny models train 10x faster on one thread than on two when the
    machine is busy, and torchrun's workers run with OMP_NUM_THREADS=1 too."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
