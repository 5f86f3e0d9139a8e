"""ONNX export: same logits as PyTorch for any batch size and length, int8 quantization,
clear errors, and the committed model file of the book page still matches the shipped model."""

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers import random_model

from tinyllm import export
from tinyllm.export_onnx import (
    max_logit_difference,
    onnx_generate,
    onnx_logits,
    onnx_validation_loss,
    quantize_int8,
    to_onnx,
)
from tinyllm.generate import load_shipped_model
from tinyllm.model import GPTConfig
from tinyllm.train import validation_loss

ROOT = Path(__file__).resolve().parent.parent
WEB_MODEL = ROOT / "book" / "_vendor" / "model" / "shakespeare-char.onnx"
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
    to_onnx(model, tmp_path / "m.onnx")
    assert model.training


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


def test_committed_book_model_is_the_shipped_model(shipped):
    """The page's model file (scripts/build_web_model.py) must be rebuilt when the shipped
    checkpoint changes: its logits must still be the checkpoint's."""
    model = shipped[0]
    assert WEB_MODEL.is_file(), f"{WEB_MODEL} is missing: run python scripts/build_web_model.py"
    assert max_logit_difference(model, WEB_MODEL, ids(2, 128, vocab_size=71, seed=9)) <= 1e-4
