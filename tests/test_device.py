import pytest
import torch

from tinyllm.device import pick_device


def test_pick_device_says_what_it_picked(capsys):
    device = pick_device()
    assert isinstance(device, torch.device)
    assert f"using device: {device.type}" in capsys.readouterr().out


def test_explicit_cpu_and_unavailable_cuda():
    assert pick_device("cpu", verbose=False) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            pick_device("cuda", verbose=False)


def test_auto_is_the_same_as_no_preference_and_a_bad_name_is_a_value_error():
    assert pick_device("auto", verbose=False) == pick_device(verbose=False)
    message = "device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got 'gpu'"
    with pytest.raises(ValueError, match=message):
        pick_device("gpu", verbose=False)


def test_auto_dtype_is_bfloat16_only_where_the_cpu_multiplies_it_fast(monkeypatch):
    import contextlib

    from tinyllm import device

    assert device.resolve_dtype("float32", "cpu") == torch.float32
    assert device.resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert device.resolve_dtype("auto", "mps") == torch.float32
    with pytest.raises(ValueError, match="dtype must be 'float32', 'bfloat16' or 'auto', got 'float16'"):
        device.resolve_dtype("float16", "cpu")  # a KeyError before
    for fast, expected in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(device, "cpu_has_fast_bfloat16", lambda fast=fast: fast)
        assert device.resolve_dtype("auto", "cpu") == expected
    assert isinstance(device.autocast_context("cpu", torch.float32), contextlib.nullcontext)
    with device.autocast_context("cpu", torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16  # weights stay float32
