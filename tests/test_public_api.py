"""The short public API a newcomer starts from: ``from tinyllm import GPT, ...``."""

from __future__ import annotations

import subprocess
import sys

import tinyllm


def test_every_public_name_imports_and_is_the_modules_own():
    import importlib

    for name, module in tinyllm._PUBLIC.items():
        assert getattr(tinyllm, name) is getattr(importlib.import_module(module), name), name
    assert set(tinyllm.__all__) == set(tinyllm._PUBLIC)


def test_the_readme_example_runs():
    from tinyllm import GPT, BPETokenizer, GPTConfig

    tok = BPETokenizer()
    tok.train("to be or not to be, that is the question " * 20, vocab_size=280)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8))
    logits, loss = model(__import__("torch").tensor([tok.encode("to be")]))
    assert logits.shape[-1] == tok.vocab_size and loss is None


def test_an_unknown_name_is_an_attribute_error_and_import_stays_light():
    try:
        tinyllm.NotAThing  # noqa: B018
    except AttributeError as exc:
        assert "NotAThing" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")
    # Importing the package alone loads neither torch nor the model: the names load on use.
    code = "import sys, tinyllm; print('torch' in sys.modules, 'tinyllm.model' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
