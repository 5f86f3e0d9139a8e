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
