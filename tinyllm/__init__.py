"""tinyllm: the supporting package of the tinyllm course.

Each module owns one step of the flow text -> tokenizer -> batches -> model -> loss ->
optimizer -> checkpoint -> generate / inspect. A chapter builds its piece from scratch,
checks it against the module here, and later chapters import the module.

Where to start reading (README.md, "Reading the code", lists each chapter's modules)::

    from tinyllm import GPT, GPTConfig, BPETokenizer, load_text
    tok = BPETokenizer(); tok.train(load_text(), vocab_size=512)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size))

The names below are loaded on first use, so ``import tinyllm.data`` (or the grader's
sandbox) does not pay for the model and the optimisers. Training and chat are modules of
their own (``from tinyllm.train import train``; ``python -m tinyllm.train``): a function
named like its module would hide the module the moment either is imported.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# The public API: name -> the module that defines it, in the order a reader meets them.
_PUBLIC = {
    "load_text": "tinyllm.data",  # chapter 01: the corpus
    "get_batch": "tinyllm.data",
    "CharTokenizer": "tinyllm.tokenizer",  # chapter 01
    "BPETokenizer": "tinyllm.tokenizer",  # chapter 03
    "GPTConfig": "tinyllm.model",  # chapters 04-07
    "GPT": "tinyllm.model",
    "TrainConfig": "tinyllm.config",  # chapter 08
    "save_checkpoint": "tinyllm.checkpoint",
    "load_model": "tinyllm.checkpoint",
    "generate_text": "tinyllm.generate",  # chapter 09
    "load_shipped_model": "tinyllm.generate",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'tinyllm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
