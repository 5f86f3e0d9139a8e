"""tinyllm.layers against independent implementations: Hugging Face's Llama code and torch.

transformers is a test dependency: a missing transformers fails here, not skips.
"""

import pytest
import torch
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import (
    LlamaMLP,
    LlamaRMSNorm,
    LlamaRotaryEmbedding,
    apply_rotary_pos_emb,
)
from transformers.models.llama.modeling_llama import repeat_kv as hf_repeat_kv

from tinyllm.layers import RMSNorm, apply_rope, relu2, repeat_kv, rms_norm, rope_angles, swiglu


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------
# RMSNorm
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [1e-5, 1e-2])
def test_rms_norm_equals_torch_and_llama(eps):
    x = randn(2, 5, 12) * 3 + 1  # a mean far from zero: RMSNorm must not subtract it
    w = randn(12, seed=1)
    torch_norm = torch.nn.RMSNorm(12, eps=eps)
    llama_norm = LlamaRMSNorm(12, eps=eps)
    with torch.no_grad():
        torch_norm.weight.copy_(w)
        llama_norm.weight.copy_(w)
    torch.testing.assert_close(rms_norm(x, w, eps), torch_norm(x))
    torch.testing.assert_close(rms_norm(x, w, eps), llama_norm(x))
    module = RMSNorm(12, eps=eps)
    with torch.no_grad():
        module.weight.copy_(w)
    torch.testing.assert_close(module(x), llama_norm(x))


def test_rms_norm_without_weight_has_unit_root_mean_square_and_keeps_the_mean():
    x = randn(4, 16) + 5
    y = rms_norm(x, eps=0.0)
    torch.testing.assert_close(y.pow(2).mean(-1), torch.ones(4))
    assert (y.mean(-1) > 0.5).all()  # unlike LayerNorm, the mean is not removed


def test_rms_norm_eps_matters_for_tiny_inputs():
    x = torch.full((1, 4), 1e-3)
    assert rms_norm(x, eps=1e-5).abs().max() < 0.5
    assert rms_norm(x, eps=0.0).abs().max() > 0.99


def test_rms_norm_keeps_bfloat16():
    x = randn(2, 8).bfloat16()
    assert rms_norm(x).dtype == torch.bfloat16
    assert rms_norm(x, torch.ones(8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def test_rms_norm_computes_in_float32_at_least_and_keeps_float64_digits():
    # Half precision is computed in float32 (its mean of squares would lose digits); a
    # float64 x stays float64 inside, as exercise set 11 asks of the learner's rms_norm.
    x = randn(4, 16).double() + 3
    exact = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert (rms_norm(x) - exact).abs().max() < 1e-12
    half = x.bfloat16()
    assert torch.equal(rms_norm(half), (half.float() / torch.sqrt(half.float().pow(2).mean(-1, keepdim=True)
                                                                    + 1e-5)).bfloat16())


# ---------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------


def hf_rope(T, hs, theta, start=0):
    config = LlamaConfig(hidden_size=hs * 2, num_attention_heads=2, head_dim=hs, rope_theta=theta,
                         max_position_embeddings=start + T)
    rotary = LlamaRotaryEmbedding(config)
    x = torch.zeros(1, T, hs)
    cos, sin = rotary(x, torch.arange(start, start + T)[None])
    return cos[0], sin[0]


@pytest.mark.parametrize("T, hs, theta, start", [(7, 8, 10000.0, 0), (5, 16, 500.0, 11), (1, 4, 10000.0, 3)])
def test_rope_angles_equal_llamas(T, hs, theta, start):
    cos, sin = rope_angles(T, hs, theta, start)
    ref_cos, ref_sin = hf_rope(T, hs, theta, start)
    assert cos.shape == (T, hs)
    torch.testing.assert_close(cos, ref_cos)
    torch.testing.assert_close(sin, ref_sin)


def test_apply_rope_equals_llamas_apply_rotary_pos_emb():
    q, k = randn(2, 3, 6, 8), randn(2, 1, 6, 8, seed=1)
    cos, sin = rope_angles(6, 8, start=4)
    ref_q, ref_k = apply_rotary_pos_emb(q, k, cos[None], sin[None])
    torch.testing.assert_close(apply_rope(q, cos, sin), ref_q)
    torch.testing.assert_close(apply_rope(k, cos, sin), ref_k)


def test_rope_is_a_rotation_norms_are_kept_and_position_zero_is_unchanged():
    x = randn(3, 10, 16)
    cos, sin = rope_angles(10, 16)
    y = apply_rope(x, cos, sin)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))
    torch.testing.assert_close(y[:, 0], x[:, 0])
    assert not torch.allclose(y[:, 1:], x[:, 1:])


def test_rope_scores_depend_only_on_the_relative_position():
    """q at position i and k at position j score the same as at i + s and j + s."""
    hs = 16
    q, k = randn(hs), randn(hs, seed=1)
    cos, sin = rope_angles(40, hs)

    def score(i, j):
        return apply_rope(q, cos[i], sin[i]) @ apply_rope(k, cos[j], sin[j])

    for i, j in [(5, 2), (9, 9), (3, 0)]:
        for shift in (1, 7, 30):
            torch.testing.assert_close(score(i + shift, j + shift), score(i, j), atol=1e-5, rtol=1e-5)
    assert not torch.isclose(score(5, 2), score(5, 3), atol=1e-3)  # another distance, another score


def test_rope_rejects_an_odd_head_size():
    with pytest.raises(ValueError, match="head_size must be even, got 7"):
        rope_angles(4, 7)


# ---------------------------------------------------------------------------------------
# Grouped-query attention: repeat_kv
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_kv, n_rep", [(1, 4), (2, 3), (3, 1)])
def test_repeat_kv_equals_llamas(n_kv, n_rep):
    x = randn(2, n_kv, 5, 4)
    out = repeat_kv(x, n_rep)
    assert out.shape == (2, n_kv * n_rep, 5, 4)
    torch.testing.assert_close(out, hf_repeat_kv(x, n_rep))
    for j in range(n_kv * n_rep):  # query head j reads kv head j // n_rep
        torch.testing.assert_close(out[:, j], x[:, j // n_rep])


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_repeat_kv_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match="n_rep must be an int >= 1"):
        repeat_kv(randn(1, 2, 3, 4), bad)


# ---------------------------------------------------------------------------------------
# MLPs: SwiGLU and ReLU squared
# ---------------------------------------------------------------------------------------


def test_swiglu_equals_llamas_mlp():
    config = LlamaConfig(hidden_size=12, intermediate_size=20, num_attention_heads=2, hidden_act="silu",
                         mlp_bias=False)
    mlp = LlamaMLP(config)
    with torch.no_grad():
        for seed, p in enumerate(mlp.parameters()):
            p.copy_(randn(*p.shape, seed=seed))
    x = randn(2, 5, 12, seed=3)
    out = swiglu(x, mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight)
    torch.testing.assert_close(out, mlp(x))
    # gate and up are not interchangeable: silu acts on the gate only
    swapped = swiglu(x, mlp.up_proj.weight, mlp.gate_proj.weight, mlp.down_proj.weight)
    assert not torch.allclose(swapped, out)


def test_relu2_is_relu_squared():
    x = torch.tensor([-2.0, -0.0, 0.5, 3.0])
    torch.testing.assert_close(relu2(x), torch.tensor([0.0, 0.0, 0.25, 9.0]))
