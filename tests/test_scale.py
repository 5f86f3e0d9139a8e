"""Tests of tinyllm.scale: each formula against the real thing where there is one."""

from __future__ import annotations

import re

import pytest
import torch

from tinyllm import scale
from tinyllm.model import GPT, GPTConfig

CONFIGS = [
    GPTConfig(),  # the model of chapters 04-07
    GPTConfig(vocab_size=71, block_size=128, n_layer=4, n_head=4, n_embd=128),  # shakespeare-char
    GPTConfig(vocab_size=1024, block_size=128, n_layer=4, n_head=4, n_embd=128, mlp="relu", mlp_hidden=512),
    GPTConfig(vocab_size=37, block_size=16, n_layer=3, n_head=2, n_embd=24, bias=False),
    GPTConfig(vocab_size=50, block_size=20, n_layer=1, n_head=1, n_embd=8, mlp_hidden=13),
]

# Chapter 11's switches: the parameter and FLOP counts know them too (activations do not).
MODERN = [
    GPTConfig(norm="rmsnorm", pos="rope", mlp="swiglu", n_kv_head=2, bias=False),  # Llama-style
    GPTConfig(vocab_size=71, n_layer=2, n_head=6, n_embd=96, n_kv_head=3, qk_norm=True, mlp="relu2"),
    GPTConfig(vocab_size=40, n_layer=1, n_head=4, n_embd=32, n_kv_head=1, mlp="swiglu", mlp_hidden=40),
]

@pytest.mark.parametrize("config", CONFIGS + MODERN, ids=repr)
def test_param_count_equals_the_built_model(config):
    model = GPT(config)
    assert scale.param_count(config) == model.num_params()
    assert scale.param_count(config, non_embedding=True) == model.num_params(non_embedding=True)
    one_block = sum(p.numel() for p in model.transformer.h[0].parameters())
    assert scale.block_params(config) == one_block


@pytest.mark.parametrize("config", CONFIGS + MODERN, ids=repr)
def test_matrix_params_are_the_2d_weights_of_the_blocks(config):
    model = GPT(config)
    matrices = sum(p.numel() for p in model.transformer.h.parameters() if p.dim() == 2)
    assert scale.matrix_param_count(config) == matrices


def test_gpt2_124m_has_its_published_size():
    # 124,439,808: Hugging Face's "gpt2" (wte 50257 x 768, wpe 1024 x 768, 12 blocks).
    with torch.device("meta"):  # shapes only, no memory
        model = GPT(scale.GPT2_124M)
    assert scale.param_count(scale.GPT2_124M) == model.num_params() == 124_439_808


@pytest.mark.parametrize("config", CONFIGS + MODERN, ids=repr)
@pytest.mark.parametrize("T", [None, 7])
def test_flops_per_token_agree_with_the_model(config, T):
    assert scale.flops_per_token(config, T) == GPT(config).flops_per_token(T)


def test_state_bytes_per_param_by_optimizer_and_precision():
    def parts(w, g, m, o):
        return dict(weights=w, gradients=g, master=m, optimizer=o)

    assert scale.state_bytes_per_param("adamw", "float32") == parts(4, 4, 0, 8)
    assert scale.state_bytes_per_param("sgd", "float32") == parts(4, 4, 0, 4)
    assert scale.state_bytes_per_param("muon", "bfloat16") == parts(2, 2, 4, 4)
    assert scale.state_bytes_per_param("adamw", "bfloat16") == parts(2, 2, 4, 8)
    # ZeRO's 16 bytes per parameter for mixed-precision Adam, and the same in float32
    for precision in scale.PRECISIONS:
        assert sum(scale.state_bytes_per_param("adamw", precision).values()) == 16


def test_training_state_bytes_counts_muon_matrices_with_one_buffer():
    config = CONFIGS[1]
    n, m = scale.param_count(config), scale.matrix_param_count(config)
    adamw = scale.training_state_bytes(config, "adamw")
    assert adamw == dict(weights=4 * n, gradients=4 * n, master=0, optimizer=8 * n)
    muon = scale.training_state_bytes(config, "muon", "bfloat16")
    assert muon == dict(weights=2 * n, gradients=2 * n, master=4 * n, optimizer=4 * m + 8 * (n - m))


def test_training_state_matches_adamw_real_state():
    config = CONFIGS[3]
    torch.manual_seed(0)
    model = GPT(config)
    opt = model.configure_optimizers(0.1, 1e-3)
    _, loss = model(torch.zeros(2, 5, dtype=torch.long), torch.ones(2, 5, dtype=torch.long))
    loss.backward()
    opt.step()
    nbytes = sum(t.numel() * t.element_size() for s in opt.state.values() for t in s.values() if t.dim() > 0)
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters())
    expected = scale.training_state_bytes(config, "adamw")
    assert nbytes == expected["optimizer"] and grads == expected["gradients"]


def measured_activation_bytes(model: GPT, idx: torch.Tensor, targets: torch.Tensor) -> int:
    """Bytes of the tensors autograd saves for the backward pass, parameters left out.

    Views of one tensor share its storage: each storage is counted once.
    """
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, targets)
    return sum(saved.values())


# The formula leaves out only the loss's 4-byte float32 weight total (and any tensor a
# future PyTorch adds); it must agree within 1%.
ACTIVATION_TOLERANCE = 0.01


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
@pytest.mark.parametrize("B,T", [(3, None), (2, 5)])
def test_activation_bytes_match_what_autograd_saves(config, B, T):
    torch.manual_seed(0)
    model = GPT(config).train()
    T_ = T or config.block_size
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, config.vocab_size, (B, T_), generator=g)
    targets = torch.randint(0, config.vocab_size, (B, T_), generator=g)
    measured = measured_activation_bytes(model, idx, targets)
    formula = scale.activation_bytes(config, B, T)
    assert abs(formula - measured) <= ACTIVATION_TOLERANCE * measured, (formula, measured)


@pytest.mark.parametrize("config", CONFIGS[1:], ids=repr)
def test_bfloat16_activation_bytes_match_what_autocast_saves(config):
    torch.manual_seed(0)
    model = GPT(config).train()
    g = torch.Generator().manual_seed(1)
    idx = torch.randint(0, config.vocab_size, (3, config.block_size), generator=g)
    targets = torch.randint(0, config.vocab_size, (3, config.block_size), generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        measured = measured_activation_bytes(model, idx, targets)
    formula = scale.activation_bytes(config, 3, dtype="bfloat16")
    assert abs(formula - measured) <= ACTIVATION_TOLERANCE * measured, (formula, measured)
    assert formula < scale.activation_bytes(config, 3)


def test_n_kv_head_written_out_as_n_head_is_gpt2s_layout():
    # the same weights as n_kv_head=None: refused before, as if it were grouped-query attention
    written = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, n_kv_head=2)
    plain = GPTConfig(**{**vars(written), "n_kv_head": None})
    assert scale.activation_bytes(written, 2) == scale.activation_bytes(plain, 2)
    with pytest.raises(ValueError, match="kv_heads=1 is not counted"):
        scale.activation_bytes(GPTConfig(**{**vars(written), "n_kv_head": 1}), 2)


def test_activation_bytes_grow_linearly_with_the_batch():
    config = CONFIGS[1]
    a = [scale.activation_bytes(config, B) for B in (1, 2, 3)]
    assert a[2] - a[1] == a[1] - a[0] > 0  # only the positions (one row) do not grow with B
    assert scale.activation_bytes(config, 3, dtype="bfloat16") < a[2]


def test_ddp_keeps_everything_on_every_rank_and_fsdp_a_shard():
    config = scale.GPT2_124M
    n = scale.param_count(config)
    one = scale.per_rank_bytes(config, 1, "ddp", batch_size=4)
    eight = scale.per_rank_bytes(config, 8, "ddp", batch_size=4)
    assert one == eight and one["weights"] == 4 * n and one["gathered"] == 0
    fsdp = scale.per_rank_bytes(config, 8, "fsdp", batch_size=4)
    for part in ("weights", "gradients", "master", "optimizer"):
        assert fsdp[part] == -(-one[part] // 8)  # a ceiling: no parameter is lost
    assert fsdp["gathered"] == 4 * scale.block_params(config)
    assert fsdp["activations"] == one["activations"] == scale.activation_bytes(config, 4)
    bf16 = scale.per_rank_bytes(config, 8, "fsdp", precision="bfloat16", batch_size=4)
    copies = scale.autocast_weight_copies(config)  # counted as the bfloat16 weights instead
    assert bf16["activations"] == scale.activation_bytes(config, 4, dtype="bfloat16") - copies
    assert fsdp["total"] == sum(v for k, v in fsdp.items() if k != "total")
    assert fsdp["total"] < one["total"]


def test_allreduce_bytes_of_a_ring():
    assert scale.allreduce_bytes(1000, 1) == 0
    assert scale.allreduce_bytes(1000, 2) == 1000
    assert scale.allreduce_bytes(1000, 4) == 1500
    assert scale.allreduce_bytes(1000, 1000) < 2000


def test_effective_batch_tokens():
    assert scale.effective_batch_tokens(8, 16) == 128
    assert scale.effective_batch_tokens(8, 16, grad_accum_steps=2, world_size=3) == 768
    # nanoGPT's GPT-2 recipe: 12 x 1024 x 40 accumulation steps on 1 GPU (or 5 on 8): ~0.5M
    eight_gpus = scale.effective_batch_tokens(12, 1024, 5, 8)
    assert eight_gpus == scale.effective_batch_tokens(12, 1024, 40, 1) == 491_520


def test_training_time():
    flops = scale.training_flops(scale.GPT2_124M, 10e9)
    assert flops == pytest.approx(scale.flops_per_token(scale.GPT2_124M) * 10e9)
    one = scale.training_hours(flops, 1, mfu=0.5)
    assert one == pytest.approx(flops / (scale.H100_BF16_DENSE_FLOPS * 0.5) / 3600)
    assert scale.training_hours(flops, 8, mfu=0.5) == pytest.approx(one / 8)
    assert scale.training_hours(flops, 1, mfu=0.25) == pytest.approx(2 * one)
    assert scale.H100_BF16_DENSE_FLOPS == 989e12


@pytest.mark.parametrize("call,name", [
    (lambda: scale.state_bytes_per_param("adam"), "'adam'"),
    (lambda: scale.state_bytes_per_param("adamw", "float16"), "'float16'"),
    (lambda: scale.param_count("gpt2"), "str"),
    (lambda: scale.activation_bytes(GPTConfig(), 0), "batch_size"),
    (lambda: scale.activation_bytes(GPTConfig(), 2, T=65), "T must be at most block_size=64, got 65"),
    (lambda: scale.activation_bytes(GPTConfig(), 2, dtype="float16"), "'float16'"),
    (lambda: scale.activation_bytes(GPTConfig(pos="rope"), 2), "pos='rope' is not counted"),
    (lambda: scale.per_rank_bytes(GPTConfig(), 0), "world_size must be an int >= 1, got 0"),
    (lambda: scale.per_rank_bytes(GPTConfig(), 2, "zero"), "'zero'"),
    (lambda: scale.allreduce_bytes(-1, 2), "got -1"),
    (lambda: scale.effective_batch_tokens(8, 16, grad_accum_steps=0), "grad_accum_steps"),
    (lambda: scale.training_flops(GPTConfig(), 0), "tokens"),
    (lambda: scale.training_hours(1e18, 1, mfu=1.5), "mfu must be in (0, 1], got 1.5"),
    (lambda: scale.training_hours(1e18, 0), "n_gpus"),
    (lambda: scale.flops_per_token(GPTConfig(), T=0), "T must be"),
    (lambda: scale.flops_per_token(GPTConfig(), T=65), "T must be an int in 1..64, got 65"),
    # dropout's masks are saved for backward too (26 % more at 0.1), and not counted
    (lambda: scale.activation_bytes(GPTConfig(dropout=0.1), 2), "dropout=0.1 is not counted"),
])
def test_bad_input_names_the_value(call, name):
    with pytest.raises(ValueError, match=re.escape(name)):
        call()
