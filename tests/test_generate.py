"""Sampling from checkpoints: the CLI, generate_text, and the shipped model's stated quality."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tinyllm.checkpoint import export_model, load_checkpoint, save_checkpoint
from tinyllm.generate import SHIPPED_MODEL, generate_text, load_shipped_model, main
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    tok = CharTokenizer.from_text("abcdefgh \n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=1, n_head=2, n_embd=16))
    opt = model.configure_optimizers(0.1, 1e-3)
    save_checkpoint(out, model, 3, opt, tok)
    return out, model, tok


def test_generate_text_is_seeded_and_keeps_the_prompt(tiny_checkpoint):
    _, model, tok = tiny_checkpoint
    a = generate_text(model, tok, "abc", max_new_tokens=40, seed=1, num_samples=2)
    b = generate_text(model, tok, "abc", max_new_tokens=40, seed=1, num_samples=2)
    c = generate_text(model, tok, "abc", max_new_tokens=40, seed=2, num_samples=2)
    assert a == b and a != c and len(a) == 2
    assert all(s.startswith("abc") and len(s) == 43 for s in a)
    # Longer than block_size, so the cache slides; cached and uncached samples agree.
    cached = generate_text(model, tok, "abc", max_new_tokens=40, greedy=True)
    plain = generate_text(model, tok, "abc", max_new_tokens=40, greedy=True, use_cache=False)
    assert cached == plain


def test_generate_text_rejects_bad_input(tiny_checkpoint):
    _, model, tok = tiny_checkpoint
    with pytest.raises(ValueError, match="start"):
        generate_text(model, tok, "")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        generate_text(model, tok, "xyz")
    with pytest.raises(ValueError, match="temperature"):
        generate_text(model, tok, "a", temperature=0.0)
    for bad in (True, 2.0, 0):  # True gave one sample, 2.0 a TypeError from deep inside
        with pytest.raises(ValueError, match=f"num_samples must be an int >= 1, got {bad!r}"):
            generate_text(model, tok, "a", num_samples=bad)


def test_cli_prints_samples(tiny_checkpoint, capsys):
    out, _, _ = tiny_checkpoint
    assert main(["--out_dir", str(out), "--start", "ab", "--num_samples", "2", "--max_new_tokens", "10"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("--- sample") == 2 and "\nab" in printed


def test_cli_reports_a_missing_checkpoint_without_traceback(tmp_path, capsys):
    assert main(["--out_dir", str(tmp_path)]) == 1
    assert "no checkpoint" in capsys.readouterr().err


def test_export_drops_the_optimizer(tiny_checkpoint, tmp_path):
    out, model, _ = tiny_checkpoint
    export_model(out, tmp_path / "shipped", extra={"note": "x"})
    cp = load_checkpoint(tmp_path / "shipped")
    assert cp.optimizer_state is None and cp.extra == {"note": "x"} and cp.step == 3
    for name, tensor in model.state_dict().items():
        assert torch.equal(cp.model_state[name], tensor)


# ---------------------------------------------------------------------------------------
# The shipped model
# ---------------------------------------------------------------------------------------


def test_shipped_model_loads_small_and_generates():
    model, tok = load_shipped_model()
    size = sum(p.stat().st_size for p in SHIPPED_MODEL.iterdir())
    assert size < 5_000_000, f"the shipped model takes {size:,} bytes"
    assert load_checkpoint(SHIPPED_MODEL).optimizer_state is None
    (text,) = generate_text(model, tok, "ROMEO:\n", max_new_tokens=100, seed=0)
    assert len(text) == 107


def test_shipped_model_has_its_stated_validation_loss():
    from tinyllm.train import validation_loss

    stated = load_checkpoint(SHIPPED_MODEL, with_optimizer=False).extra["validation"]
    readme = (SHIPPED_MODEL / "README.md").read_text()
    assert f"{stated['val_loss']:.3f}" in readme, "the README states the same figure"
    model, tok = load_shipped_model()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        measured = validation_loss(model, tok, **{k: v for k, v in stated.items() if k != "val_loss"})
    finally:
        torch.set_num_threads(threads)
    assert measured == pytest.approx(stated["val_loss"], abs=0.01)


def test_generate_module_runs_as_a_script():
    result = subprocess.run(
        [sys.executable, "-m", "tinyllm.generate", "--max_new_tokens", "20", "--start", "KING"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("KING") and len(result.stdout.strip()) >= 20
