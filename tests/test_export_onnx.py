"""ONNX export: same logits as PyTorch for any batch size and length, with and without the
KV cache, greedy ids equal to GPT.generate's, int8 quantization, clear errors, and the
committed model files of the book page still match the shipped models."""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import random_model

from tinyllm import export
from tinyllm.chat import load_chat_model, prompt_ids
from tinyllm.export_onnx import (
    empty_cache,
    max_cached_logit_difference,
    max_logit_difference,
    onnx_cached_step,
    onnx_generate,
    onnx_generate_cached,
    onnx_logits,
    onnx_validation_loss,
    quantize_int8,
    session,
    to_onnx,
    to_onnx_cached,
)
from tinyllm.generate import load_shipped_model
from tinyllm.model import GPTConfig
from tinyllm.train import validation_loss

ROOT = Path(__file__).resolve().parent.parent
# Every ONNX export costs seconds (the exporter traces the model): left out of make test-fast.
pytestmark = pytest.mark.slow
WEB_MODELS = ROOT / "book" / "_vendor" / "model"
CONFIG = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=64)


random_gpt = partial(random_model, CONFIG)


def ids(B, T, vocab_size=CONFIG["vocab_size"], seed=0):
    return torch.randint(0, vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = random_gpt()
    return model, to_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    model, tokenizer = load_shipped_model()
    folder = tmp_path_factory.mktemp("shipped")
    fp32 = to_onnx(model, folder / "fp32.onnx")
    return model, tokenizer, fp32, quantize_int8(fp32, folder / "int8.onnx")


@pytest.mark.parametrize("shape", [(1, 1), (1, 32), (5, 7), (2, 20), (8, 32)])
def test_onnx_logits_equal_pytorch_for_any_batch_and_length(exported, shape):
    model, path = exported
    idx = ids(*shape, seed=shape[0] * 100 + shape[1])
    with torch.no_grad():
        expected = model(idx, all_logits=True)[0].numpy()
    got = onnx_logits(path, idx.numpy())
    assert got.shape == (*shape, CONFIG["vocab_size"])
    assert np.abs(got - expected).max() <= 1e-4


def test_the_graph_has_dynamic_batch_and_length(exported):
    _, path = exported
    graph = onnx.load(str(path)).graph
    (idx,), (logits,) = graph.input, graph.output
    assert (idx.name, logits.name) == ("idx", "logits")
    dims = [d.dim_param or d.dim_value for d in idx.type.tensor_type.shape.dim]
    assert all(isinstance(d, str) and d for d in dims), f"idx has fixed dimensions {dims}"
    assert logits.type.tensor_type.shape.dim[2].dim_value == CONFIG["vocab_size"]


def test_the_check_notices_a_model_that_differs_from_the_file(exported):
    model, path = exported
    other = random_gpt(seed=1)
    assert max_logit_difference(model, path, ids(2, 16)) <= 1e-4
    assert max_logit_difference(other, path, ids(2, 16)) > 1e-2


def test_another_config_exports_too_no_bias_more_heads(tmp_path):
    model = random_gpt(seed=2, bias=False, n_head=8, n_layer=3, block_size=16, vocab_size=300)
    path = export.to_onnx(model, tmp_path / "m.onnx")  # the wrapper in tinyllm.export
    assert max_logit_difference(model, path, ids(3, 16, vocab_size=300, seed=3)) <= 1e-4


def test_unsupported_config_option_is_refused_by_name(tmp_path):
    @dataclass
    class ConfigWithRoPE(GPTConfig):
        rope: bool = False

    model = random_gpt()
    model.config = ConfigWithRoPE(**CONFIG, rope=True)
    with pytest.raises(ValueError, match=r"config option rope=True"):
        to_onnx(model, tmp_path / "m.onnx")
    model.config = ConfigWithRoPE(**CONFIG)  # left at its default: nothing changes
    to_onnx(model, tmp_path / "m.onnx", check=False)
    with pytest.raises(ValueError, match="tinyllm.model.GPT"):
        to_onnx(torch.nn.Linear(2, 2), tmp_path / "m.onnx")


def test_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        onnx_logits(tmp_path / "nope.onnx", np.zeros((1, 1), dtype=np.int64))
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        quantize_int8(tmp_path / "nope.onnx", tmp_path / "q.onnx")


def test_exporting_leaves_the_model_in_its_mode(tmp_path):
    model = random_gpt().train()
    path = to_onnx(model, tmp_path / "m.onnx")
    assert model.training
    max_logit_difference(model, path, ids(1, 8))  # measuring it put the model in eval mode for good
    assert model.training


def test_a_context_too_short_for_a_dynamic_length_is_refused_by_name(tmp_path):
    for block_size in (1, 2):  # torch.export failed with "Cannot create Dim with inconsistent min=2, max=2"
        with pytest.raises(ValueError, match=f"needs block_size >= 3, got {block_size}"):
            to_onnx(random_gpt(block_size=block_size), tmp_path / "m.onnx")


def test_shipped_model_exports_within_tolerance(shipped):
    model, _, fp32, _ = shipped
    idx = ids(4, 128, vocab_size=71, seed=7)
    diff = max_logit_difference(model, fp32, idx)
    print(f"shipped model: max |logit difference| PyTorch vs ONNX = {diff:.2e}")
    assert diff <= 1e-4


def test_int8_is_smaller_and_nearly_as_good(shipped):
    model, tokenizer, fp32, int8 = shipped
    fp32_mb, int8_mb = fp32.stat().st_size / 1e6, int8.stat().st_size / 1e6
    settings = dict(eval_iters=4, batch_size=16)
    torch_loss = validation_loss(model, tokenizer, **settings)
    fp32_loss = onnx_validation_loss(fp32, tokenizer, model.config.block_size, **settings)
    int8_loss = onnx_validation_loss(int8, tokenizer, model.config.block_size, **settings)
    print(f"size fp32 {fp32_mb:.2f} MB, int8 {int8_mb:.2f} MB; validation loss PyTorch {torch_loss:.4f}, "
          f"ONNX fp32 {fp32_loss:.4f}, ONNX int8 {int8_loss:.4f}")
    assert int8_mb < 0.4 * fp32_mb
    assert abs(fp32_loss - torch_loss) < 1e-4  # same batches, same model
    assert int8_loss != fp32_loss  # the weights really changed
    assert abs(int8_loss - fp32_loss) < 0.05


def test_onnx_greedy_generation_equals_gpt_generate(shipped):
    model, tokenizer, fp32, _ = shipped
    start = tokenizer.encode("JULIET:\n")
    expected = model.generate(torch.tensor([start]), 40, greedy=True)[0].tolist()
    assert onnx_generate(fp32, start, 40, model.config.block_size) == expected
    with pytest.raises(ValueError, match="at least one token"):
        onnx_generate(fp32, [], 3, 128)


# --- the KV-cached graph (the book page runs it) ------------------------------------------

# Chapter 11's switches, all at once in one model (each export costs 5 to 8 s of CPU): each
# changes what the graph computes. GPT-2's defaults are the fixture `cached`; the ReLU MLP is
# the chat assistant's, exported in `shipped_cached`.
MODERN = dict(mlp="swiglu", bias=False, norm="rmsnorm", pos="rope", n_kv_head=2, qk_norm=True)


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    model = random_gpt()
    return model, to_onnx_cached(model, tmp_path_factory.mktemp("cached") / "model.onnx")


@pytest.mark.parametrize("prompt", [1, 5, 32])
def test_cached_graph_gives_pytorch_logits_one_position_per_call(cached, prompt):
    """The prompt in one call, then one id per call, up to a full window: every position's
    logits are PyTorch's."""
    model, path = cached
    assert max_cached_logit_difference(model, path, ids(3, 32, seed=prompt), prompt) <= 1e-4


def test_cached_graph_inputs_and_outputs(cached):
    model, path = cached
    graph = onnx.load(str(path)).graph
    names = [f"{kind}_{layer}" for layer in range(CONFIG["n_layer"]) for kind in ("key", "value")]
    assert [i.name for i in graph.input] == ["idx", *(f"past_{n}" for n in names)]
    assert [o.name for o in graph.output] == ["logits", *(f"present_{n}" for n in names)]
    logits, cache = onnx_cached_step(path, ids(1, 4).numpy(), empty_cache(model.config))
    assert logits.shape == (1, 4, CONFIG["vocab_size"])
    assert {a.shape for a in cache.values()} == {(1, 4, 4, 16)}  # (B, heads, P + T, head size)
    _, cache = onnx_cached_step(path, ids(1, 1).numpy(), cache)
    assert {a.shape for a in cache.values()} == {(1, 4, 5, 16)}  # one position more per call


def test_both_graphs_export_chapter_11s_pieces(tmp_path):
    model = random_gpt(seed=4, **MODERN)
    plain = to_onnx(model, tmp_path / "plain.onnx")  # checks itself against PyTorch
    path = to_onnx_cached(model, tmp_path / "cached.onnx")
    assert max_logit_difference(model, plain, ids(2, 32, seed=5)) <= 1e-4
    assert max_cached_logit_difference(model, path, ids(2, 32, seed=6), prompt=7) <= 1e-4
    start = [3, 1, 4, 1, 5]
    expected = model.generate(torch.tensor([start]), 45, greedy=True)[0].tolist()  # slides past block_size
    assert onnx_generate_cached(path, start, 45, model.config) == expected


def test_the_cached_check_notices_a_wrong_mask(cached, monkeypatch):
    """The check runs past the prompt: a graph that let queries see later keys would fail it."""
    model, path = cached
    import tinyllm.export_onnx as export_onnx

    def no_mask(self, attn, x, past_k, past_v):
        B, T, C = x.shape
        q, k, v = attn.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))
        k, v = torch.cat([past_k, k], 2), torch.cat([past_v, v], 2)
        y = torch.softmax(q @ k.transpose(-2, -1) / (C // attn.n_head) ** 0.5, -1) @ v
        return attn.c_proj(y.transpose(1, 2).reshape(B, T, C)), k, v

    monkeypatch.setattr(export_onnx._CachedStep, "_attention", no_mask)
    with pytest.raises(RuntimeError, match="cached ONNX logits differ"):
        to_onnx_cached(model, path.parent / "wrong.onnx")


@pytest.fixture(scope="module")
def shipped_cached(tmp_path_factory):
    """Both shipped models, as the cached graph in fp32 and int8, with a start for each."""
    folder = tmp_path_factory.mktemp("shipped_cached")
    char_model, char_tokenizer = load_shipped_model()
    chat_model, chat_tokenizer = load_chat_model()
    out = {}
    question = [{"role": "user", "content": "are you hungry?"}]
    for name, model, start in [
        ("shakespeare-char", char_model, char_tokenizer.encode("JULIET:\n")),
        ("chat-cpu", chat_model, prompt_ids(chat_tokenizer, question)),
    ]:
        fp32 = to_onnx_cached(model, folder / f"{name}.onnx")
        out[name] = model, start, fp32, quantize_int8(fp32, folder / f"{name}.int8.onnx")
    return out


@pytest.mark.parametrize("name", ["shakespeare-char", "chat-cpu"])
def test_cached_onnx_greedy_ids_equal_gpt_generate(shipped_cached, name):
    """The KV-cached graph of each shipped model, one id per call, gives GPT.generate's
    greedy ids (for the character model past its 128-token window too)."""
    model, start, fp32, _ = shipped_cached[name]
    n = 160 if name == "shakespeare-char" else 60
    expected = model.generate(torch.tensor([start]), n, greedy=True)[0].tolist()
    assert onnx_generate_cached(fp32, start, n, model.config) == expected
    with pytest.raises(ValueError, match="at least one token"):
        onnx_generate_cached(fp32, [], 3, model.config)


@pytest.mark.parametrize("name", ["shakespeare-char", "chat-cpu"])
def test_cached_int8_graph_stays_close_to_pytorch(shipped_cached, name):
    """int8 weights change the logits (its greedy text drifts from fp32's after some tens of
    tokens, so ids are not compared): through the cache, along PyTorch's own greedy text,
    the int8 logits stay within 1 of PyTorch's and pick the same next token at >= 90 %
    of the positions."""
    model, start, _, int8 = shipped_cached[name]
    idx = model.generate(torch.tensor([start]), model.config.block_size - len(start), greedy=True)
    with torch.no_grad():
        expected = model(idx, all_logits=True)[0].numpy()
    int8_session = session(int8)  # one for every call: opening the file costs more than a step
    logits, cache = onnx_cached_step(int8_session, idx[:, : len(start)].numpy(), empty_cache(model.config))
    got = [logits]
    for t in range(len(start), idx.size(1)):
        logits, cache = onnx_cached_step(int8_session, idx[:, t : t + 1].numpy(), cache)
        got.append(logits)
    got = np.concatenate(got, axis=1)
    diff = float(np.abs(got - expected).max())
    agree = float((got.argmax(-1) == expected.argmax(-1)).mean())
    print(f"{name} int8 through the cache: max |logit difference| {diff:.3f}, same next token at {agree:.1%}")
    assert 1e-3 < diff < 1.0 and agree >= 0.9


@pytest.mark.parametrize("load", [load_shipped_model, load_chat_model], ids=["shakespeare-char", "chat-cpu"])
def test_committed_book_model_is_the_shipped_model(load):
    """The page's model files (scripts/build_web_model.py) must be rebuilt when a shipped
    checkpoint changes: their logits must still be the checkpoint's."""
    model = load()[0]
    name = "shakespeare-char" if load is load_shipped_model else "chat-cpu"
    path = WEB_MODELS / f"{name}.onnx"
    assert path.is_file(), f"{path} is missing: run python scripts/build_web_model.py"
    idx = ids(2, 128, vocab_size=model.config.vocab_size, seed=9)
    assert max_cached_logit_difference(model, path, idx, prompt=100) <= 1e-4
