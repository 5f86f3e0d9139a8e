"""Tests of tinyllm.model: GPT's shapes, loss, cache, generation, optimizer groups, bad input."""

import math

import pytest
import torch

from tinyllm.model import GPT, MLP, BigramLanguageModel, Block, CausalSelfAttention, GPTConfig, KVCache


def small_config(**overrides) -> GPTConfig:
    kwargs = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)
    kwargs.update(overrides)
    return GPTConfig(**kwargs)


def small_model(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    return GPT(small_config(**overrides)).eval()


def randomise(model: torch.nn.Module, seed: int = 1, scale: float = 0.3) -> torch.nn.Module:
    """Perturb every parameter (biases and layer-norm gains too), so tests see all of them."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)
    return model


def ids(B, T, V=37, seed=0):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------
# Config and bad input
# ---------------------------------------------------------------------------------------


def test_config_rejects_n_embd_not_divisible_by_n_head():
    with pytest.raises(ValueError, match=r"n_embd=30.*n_head=4"):
        GPTConfig(n_embd=30, n_head=4)


@pytest.mark.parametrize("name, value", [("vocab_size", 0), ("block_size", -1), ("n_layer", 2.5), ("n_head", True)])
def test_config_rejects_non_positive_ints(name, value):
    with pytest.raises(ValueError, match=name):
        small_config(**{name: value})


def test_config_rejects_bad_dropout():
    with pytest.raises(ValueError, match="dropout"):
        small_config(dropout=1.0)


def test_sequence_longer_than_block_size_is_refused():
    model = small_model()
    with pytest.raises(ValueError, match=r"length 17.*block_size=16"):
        model(ids(1, 17))
    with pytest.raises(ValueError, match=r"length 17.*block_size=16"):
        model.attention_weights(ids(1, 17))


def test_cache_cannot_grow_past_block_size():
    model = small_model()
    cache = KVCache(model.config.n_layer)
    model(ids(1, 16), kv_cache=cache)
    with pytest.raises(ValueError, match=r"length 17.*block_size=16"):
        model(ids(1, 1), kv_cache=cache)


@pytest.mark.parametrize("bad", [37, 100, -1])
def test_token_ids_outside_vocabulary_are_refused(bad):
    model = small_model()
    idx = ids(2, 5)
    idx[1, 3] = bad
    with pytest.raises(ValueError, match=rf"token id {bad} .*0\.\.36"):
        model(idx)
    with pytest.raises(ValueError, match=rf"token id {bad}"):
        model.generate(idx, 1)
    with pytest.raises(ValueError, match=rf"token id {bad}"):
        model.attention_weights(idx)


def test_idx_must_be_2d_integer_tensor():
    model = small_model()
    with pytest.raises(ValueError, match=r"shape \(B, T\)"):
        model(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="dtype"):
        model(torch.ones(1, 3))


def test_targets_must_match_idx_shape():
    model = small_model()
    with pytest.raises(ValueError, match=r"targets.*\(2, 5\).*\(2, 4\)"):
        model(ids(2, 5), targets=ids(2, 4))


def test_int32_targets_are_read_as_int32_ids_are_and_float_targets_refused():
    model = small_model()
    x, y = ids(2, 5), ids(2, 5)
    torch.testing.assert_close(model(x.int(), y.int())[1], model(x, y)[1])  # cross_entropy needed int64
    with pytest.raises(ValueError, match="targets must hold integer token ids, got dtype torch.float32"):
        model(x, y.float())


# ---------------------------------------------------------------------------------------
# Forward, loss, init
# ---------------------------------------------------------------------------------------


def test_forward_shapes():
    model = small_model()
    idx = ids(3, 10)
    logits, loss = model(idx)
    assert logits.shape == (3, 1, 37) and loss is None
    logits_all, _ = model(idx, all_logits=True)
    assert logits_all.shape == (3, 10, 37)
    torch.testing.assert_close(logits_all[:, -1:], logits)
    logits_t, loss = model(idx, targets=ids(3, 10, seed=1))
    assert logits_t.shape == (3, 10, 37) and loss.dim() == 0
    torch.testing.assert_close(logits_t, logits_all)


def test_loss_is_mean_cross_entropy_and_ignores_minus_100():
    model = randomise(small_model())
    idx, targets = ids(2, 8), ids(2, 8, seed=3)
    logits, loss = model(idx, targets)
    log_probs = logits.log_softmax(-1)
    manual = -log_probs.gather(-1, targets.unsqueeze(-1)).mean()
    torch.testing.assert_close(loss, manual)
    targets[:, :4] = -100  # IGNORE_INDEX: the user's tokens in chat fine-tuning
    _, loss_masked = model(idx, targets)
    manual_masked = -log_probs[:, 4:].gather(-1, targets[:, 4:].unsqueeze(-1)).mean()
    torch.testing.assert_close(loss_masked, manual_masked)


@pytest.mark.parametrize("vocab_size", [65, 500])
def test_loss_at_init_is_about_ln_vocab_size(vocab_size):
    torch.manual_seed(0)
    model = GPT(small_config(vocab_size=vocab_size))
    _, loss = model(ids(8, 16, V=vocab_size), ids(8, 16, V=vocab_size, seed=1))
    # A fresh model predicts nearly the uniform distribution: loss ln(V).
    assert abs(loss.item() - math.log(vocab_size)) < 0.05, (loss.item(), math.log(vocab_size))


def test_init_std_and_scaled_residual_projections():
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=300, block_size=64, n_layer=8, n_head=4, n_embd=128)
    model = GPT(cfg)
    params = dict(model.named_parameters())
    assert abs(params["transformer.wte.weight"].std().item() - 0.02) < 0.002
    assert abs(params["transformer.h.0.attn.c_attn.weight"].std().item() - 0.02) < 0.002
    scaled = 0.02 / math.sqrt(2 * cfg.n_layer)
    for name in ("transformer.h.3.attn.c_proj.weight", "transformer.h.3.mlp.c_proj.weight"):
        assert abs(params[name].std().item() - scaled) < 0.1 * scaled, name
    assert torch.all(params["transformer.h.0.attn.c_attn.bias"] == 0)
    assert torch.all(params["transformer.h.0.ln_1.weight"] == 1)


def test_output_head_is_tied_to_token_embedding():
    model = small_model()
    assert model.lm_head.weight is model.transformer.wte.weight


def test_causality_future_tokens_do_not_change_past_logits():
    model = randomise(small_model())
    idx = ids(2, 12)
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 37
    a, _ = model(idx, all_logits=True)
    b, _ = model(changed, all_logits=True)
    torch.testing.assert_close(a[:, :8], b[:, :8])
    assert not torch.allclose(a[:, 8:], b[:, 8:])


def test_bias_false_model_runs_and_has_no_biases():
    model = small_model(bias=False)
    assert not any(name.endswith("bias") for name, _ in model.named_parameters())
    _, loss = model(ids(2, 8), ids(2, 8, seed=1))
    loss.backward()


def test_dropout_acts_only_in_training_mode():
    model = randomise(small_model(dropout=0.5))
    idx = ids(2, 8)
    model.eval()
    torch.testing.assert_close(model(idx, all_logits=True)[0], model(idx, all_logits=True)[0])
    model.train()
    torch.manual_seed(0)
    a = model(idx, all_logits=True)[0]
    b = model(idx, all_logits=True)[0]
    assert not torch.allclose(a, b)


# ---------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------


def reference_attention(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """Causal multi-head attention written out head by head, with a Python loop."""
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    q, k, v = attn.c_attn(x).split(C, dim=2)
    heads = []
    for h in range(nh):
        sl = slice(h * hs, (h + 1) * hs)
        scores = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hs)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf"))
        heads.append(scores.softmax(-1) @ v[..., sl])
    return attn.c_proj(torch.cat(heads, dim=-1))


@pytest.mark.parametrize("need_weights", [False, True])
def test_attention_matches_a_head_by_head_reference(need_weights):
    torch.manual_seed(0)
    attn = randomise(CausalSelfAttention(small_config())).eval()
    x = torch.randn(2, 9, 32)
    y, w = attn(x, need_weights=need_weights)
    torch.testing.assert_close(y, reference_attention(attn, x))
    assert (w is not None) == need_weights


def test_attention_weights_are_causal_distributions():
    model = randomise(small_model())
    w = model.attention_weights(ids(3, 11))
    assert w.shape == (2, 3, 4, 11, 11)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 4, 11))
    assert torch.all(w >= 0)
    assert torch.all(w.triu(diagonal=1) == 0)
    assert w[..., 0, 0].eq(1).all()  # the first token can only look at itself


def test_attention_weights_agree_with_a_manual_first_layer():
    model = randomise(small_model())
    idx = ids(1, 7)
    block = model.transformer.h[0]
    x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(7))
    q, k, _ = block.attn.c_attn(block.ln_1(x)).split(32, dim=2)
    q, k = (t.view(1, 7, 4, 8).transpose(1, 2) for t in (q, k))
    scores = (q @ k.transpose(-2, -1) / math.sqrt(8)).masked_fill(torch.ones(7, 7).triu(1).bool(), float("-inf"))
    torch.testing.assert_close(model.attention_weights(idx)[0], scores.softmax(-1))


def test_attention_weights_leave_training_mode_and_ignore_dropout():
    model = randomise(small_model(dropout=0.5)).train()
    idx = ids(1, 8)
    a = model.attention_weights(idx)
    b = model.attention_weights(idx)
    assert model.training
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a.sum(-1), torch.ones_like(a.sum(-1)))


# ---------------------------------------------------------------------------------------
# KV cache and generation
# ---------------------------------------------------------------------------------------


def test_kv_cache_one_token_at_a_time_equals_full_recompute():
    model = randomise(small_model())
    idx = ids(2, 16)
    full, _ = model(idx, all_logits=True)
    cache = KVCache(model.config.n_layer)
    steps = [model(idx[:, t : t + 1], kv_cache=cache)[0] for t in range(16)]
    assert cache.length == 16
    assert cache.keys[1].shape == (2, 4, 16, 8)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_kv_cache_in_chunks_equals_full_recompute():
    model = randomise(small_model())
    idx = ids(2, 16)
    full, _ = model(idx, all_logits=True)
    cache = KVCache(model.config.n_layer)
    chunks = [model(idx[:, a:b], kv_cache=cache, all_logits=True)[0] for a, b in [(0, 5), (5, 6), (6, 13), (13, 16)]]
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)


def test_generate_with_and_without_cache_agree_greedy():
    model = randomise(small_model(), scale=0.5)
    prompt = ids(2, 3)
    # Within block_size both ways see the same context.
    a = model.generate(prompt, 13, greedy=True, use_cache=True)
    b = model.generate(prompt, 13, greedy=True, use_cache=False)
    assert a.shape == (2, 16)
    assert torch.equal(a, b)
    assert torch.equal(a[:, :3], prompt)


def test_generate_past_block_size_and_restores_training_mode():
    model = randomise(small_model()).train()
    out = model.generate(ids(1, 20), 30, top_k=5, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 50)
    assert model.training
    out2 = model.generate(ids(1, 20), 30, top_k=5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, out2)  # seeded generator: reproducible
    assert model.generate(ids(1, 20), 30, use_cache=False, top_p=0.9).shape == (1, 50)


def test_generate_first_token_sees_a_full_block_with_cache():
    model = randomise(small_model(), scale=1.0)
    prompt = ids(32, 40)
    a = model.generate(prompt, 1, greedy=True, use_cache=True)
    b = model.generate(prompt, 1, greedy=True, use_cache=False)
    assert torch.equal(a, b)


def test_generate_zero_tokens_returns_prompt():
    model = small_model()
    prompt = ids(1, 4)
    assert torch.equal(model.generate(prompt, 0), prompt)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_new_tokens=-1), "max_new_tokens"),
        (dict(max_new_tokens=2.0), "max_new_tokens"),
        (dict(max_new_tokens=True), "max_new_tokens"),
        (dict(max_new_tokens=2, temperature=0.0), "temperature"),
        (dict(max_new_tokens=2, temperature=-1.0), "temperature"),
        (dict(max_new_tokens=2, top_k=0), "top_k"),
        (dict(max_new_tokens=2, top_k=True), "top_k must be an int >= 1, got True"),
        (dict(max_new_tokens=2, top_p=0.0), "top_p"),
        (dict(max_new_tokens=2, top_p=1.5), "top_p"),
    ],
)
def test_generate_validates_arguments(kwargs, message):
    model = small_model()
    with pytest.raises(ValueError, match=message):
        model.generate(ids(1, 3), **kwargs)


def test_generate_needs_a_prompt():
    with pytest.raises(ValueError, match="at least one token"):
        small_model().generate(torch.zeros(1, 0, dtype=torch.long), 3)


# ---------------------------------------------------------------------------------------
# Counting: parameters, optimizer groups, FLOPs
# ---------------------------------------------------------------------------------------


def count_by_hand(V, T, L, C, bias=True):
    b = 1 if bias else 0
    per_block = (
        2 * C * (1 + b)  # two layer norms: gain (and bias)
        + C * 3 * C + b * 3 * C  # c_attn
        + C * C + b * C  # attention c_proj
        + C * 4 * C + b * 4 * C  # c_fc
        + 4 * C * C + b * C  # mlp c_proj
    )
    return V * C + T * C + L * per_block + C * (1 + b)  # wte (= head), wpe, blocks, ln_f


@pytest.mark.parametrize("bias", [True, False])
def test_num_params_counts_the_tied_head_once(bias):
    model = small_model(bias=bias)
    assert model.num_params() == count_by_hand(37, 16, 2, 32, bias)
    assert model.num_params(non_embedding=True) == count_by_hand(37, 16, 2, 32, bias) - 16 * 32
    unique = {p.data_ptr(): p.numel() for p in model.parameters()}
    assert model.num_params() == sum(unique.values())


def test_gpt2_small_has_124m_parameters():
    with torch.device("meta"):  # no memory, no init work: only shapes
        model = GPT(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    assert model.num_params() == 124_439_808


def test_configure_optimizers_decays_only_matrices():
    model = small_model()
    opt = model.configure_optimizers(weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    assert isinstance(opt, torch.optim.AdamW)
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "transformer.wte.weight" in decayed and "transformer.h.0.mlp.c_fc.weight" in decayed
    assert not any(n.endswith(("bias", "ln_1.weight", "ln_2.weight", "ln_f.weight")) for n in decayed)
    # Every parameter exactly once (the tied head is not a second copy).
    all_ids = [id(p) for g in opt.param_groups for p in g["params"]]
    assert len(all_ids) == len(set(all_ids)) == len(list(model.parameters()))
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.9, 0.95)


def test_one_training_step_lowers_the_loss():
    model = small_model().train()
    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.95), "cpu")
    idx, targets = ids(4, 16), ids(4, 16, seed=1)
    losses = []
    for _ in range(5):
        _, loss = model(idx, targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1


def test_flops_per_token():
    model = small_model()
    n = model.num_params(non_embedding=True)
    assert model.flops_per_token(10) == 6 * n + 12 * 2 * 32 * 10
    assert model.flops_per_token() == 6 * n + 12 * 2 * 32 * 16
    # 0 was read as "the default", a negative length gave negative FLOPs, a length past the context counted
    for T, message in ((0, r"T must be an int in 1\.\.16, got 0"), (-100, "got -100"), (17, "got 17")):
        with pytest.raises(ValueError, match=message):
            model.flops_per_token(T)


# ---------------------------------------------------------------------------------------
# Building blocks and the bigram model
# ---------------------------------------------------------------------------------------


def test_block_is_pre_norm_residual():
    torch.manual_seed(0)
    block = randomise(Block(small_config())).eval()
    x = torch.randn(2, 5, 32)
    a = x + block.attn(block.ln_1(x))[0]
    expected = a + block.mlp(block.ln_2(a))
    torch.testing.assert_close(block(x)[0], expected)


def test_mlp_expands_four_times_with_exact_gelu():
    torch.manual_seed(0)
    mlp = MLP(small_config())
    assert mlp.c_fc.out_features == 128 and mlp.c_proj.in_features == 128
    x = torch.randn(3, 32)
    h = mlp.c_fc(x)
    exact = 0.5 * h * (1 + torch.erf(h / math.sqrt(2)))
    torch.testing.assert_close(mlp(x), mlp.c_proj(exact))


def test_bigram_model_shapes_loss_and_generate():
    torch.manual_seed(0)
    model = BigramLanguageModel(11)
    idx = torch.randint(0, 11, (2, 6))
    logits, loss = model(idx, idx)
    assert logits.shape == (2, 6, 11) and loss.dim() == 0
    assert model.generate(idx, 4).shape == (2, 10)
    with pytest.raises(ValueError, match="token id 11"):
        model(torch.tensor([[11]]))


# ---------------------------------------------------------------------------------------
# The MLP's activation and width (GuppyLM's architecture)
# ---------------------------------------------------------------------------------------


def test_guppylm_preset_has_guppylms_published_parameter_count():
    # 6 layers, width 384, 6 heads, ReLU MLP of 768, vocabulary 4,096, context 128, tied
    # head, GPT-2's biases: 8,726,016 counts every parameter, the position table included.
    from tinyllm.train import config_from_preset

    model = GPT(config_from_preset("guppylm").model_config(4096))
    c = model.config
    assert (c.n_layer, c.n_embd, c.n_head, c.mlp, c.hidden_size, c.block_size) == (6, 384, 6, "relu", 768, 128)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.num_params() == 8_726_016


def test_relu_mlp_of_chosen_width():
    torch.manual_seed(0)
    mlp = MLP(small_config(mlp="relu", mlp_hidden=48))
    assert isinstance(mlp.act, torch.nn.ReLU) and mlp.c_fc.out_features == 48 and mlp.c_proj.in_features == 48
    x = torch.randn(3, 32)
    torch.testing.assert_close(mlp(x), mlp.c_proj(mlp.c_fc(x).clamp(min=0)))
    assert isinstance(MLP(small_config()).act, torch.nn.GELU)  # GPT-2's default stays


@pytest.mark.parametrize("bad", [dict(mlp="swish"), dict(mlp_hidden=0), dict(mlp_hidden=2.5), dict(mlp_hidden=True)])
def test_bad_mlp_options_are_refused(bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        small_config(**bad)


def test_chat_cpu_preset_fits_in_10_mb():
    from tinyllm.train import config_from_preset

    cfg = config_from_preset("chat-cpu")
    model = GPT(cfg.model_config(cfg.vocab_size))
    assert model.num_params() * 4 < 10 * 1024 * 1024  # float32 weights


def test_config_prints_the_mlp_options_only_when_they_differ_from_gpt2():
    assert "mlp" not in repr(small_config())  # as chapters print it
    assert repr(small_config(mlp="relu", mlp_hidden=48)).endswith("bias=True, mlp='relu', mlp_hidden=48)")


# ---------------------------------------------------------------------------------------
# Chapter 11's switches (the layers themselves are compared with references in test_layers)
# ---------------------------------------------------------------------------------------

SWITCH_GRID = [
    dict(norm=norm, pos=pos, mlp=mlp, n_kv_head=n_kv, qk_norm=qk, bias=(i % 2 == 0))
    for i, (norm, pos, mlp, n_kv, qk) in enumerate(
        (norm, pos, mlp, n_kv, qk)
        for norm in ("layernorm", "rmsnorm")
        for pos in ("learned", "rope")
        for mlp in ("gelu", "relu2", "swiglu")
        for n_kv in (None, 2, 1)
        for qk in (False, True)
    )
]


def _name(switches: dict) -> str:
    return "-".join(f"{v}" for v in switches.values())


@pytest.mark.parametrize("switches", SWITCH_GRID, ids=_name)
def test_every_switch_combination_caches_exactly(switches):
    model = randomise(small_model(**switches))
    idx = ids(2, 16)
    full, _ = model(idx, all_logits=True)
    cache = KVCache(model.config.n_layer)
    chunks = [model(idx[:, a:b], kv_cache=cache, all_logits=True)[0] for a, b in [(0, 5), (5, 6), (6, 13), (13, 16)]]
    assert cache.keys[1].shape == (2, model.config.kv_heads, 16, 8)  # only the kv heads are kept
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, atol=1e-5, rtol=1e-5)
    a = model.generate(ids(2, 3), 20, greedy=True, use_cache=True)  # past block_size too
    b = model.generate(ids(2, 3), 20, greedy=True, use_cache=False)
    assert torch.equal(a[:, :16], b[:, :16])


def test_defaults_are_gpt2_no_new_modules_or_weights():
    model = small_model()
    names = set(model.state_dict())
    assert "transformer.wpe.weight" in names
    assert not any(k in n for n in names for k in ("c_gate", "q_norm", "k_norm"))
    assert isinstance(model.transformer.h[0].ln_1, torch.nn.LayerNorm)
    assert model.transformer.h[0].attn.c_attn.out_features == 3 * 32
    torch.manual_seed(0)
    same = GPT(small_config(norm="layernorm", pos="learned", n_kv_head=None, qk_norm=False, rope_theta=10000.0))
    torch.testing.assert_close(same.state_dict(), small_model().state_dict(), atol=0, rtol=0)


def test_switched_models_have_the_named_modules():
    model = small_model(norm="rmsnorm", pos="rope", mlp="swiglu", n_kv_head=2, qk_norm=True, bias=False)
    names = set(model.state_dict())
    assert not any("wpe" in n for n in names)
    block = model.transformer.h[0]
    assert block.attn.c_attn.out_features == (4 + 2 * 2) * 8
    assert block.mlp.c_gate.weight.shape == block.mlp.c_fc.weight.shape == (88, 32)
    assert block.attn.q_norm.weight.shape == (8,) and "transformer.h.1.attn.k_norm.weight" in names
    assert not any(n.endswith(".bias") for n in names)
    assert model.num_params(non_embedding=True) == model.num_params()  # no position table


def test_gqa_with_one_kv_head_per_query_head_is_multi_head_attention():
    torch.manual_seed(0)
    mha = randomise(GPT(small_config(pos="rope")).eval())
    gqa = GPT(small_config(pos="rope", n_kv_head=4)).eval()
    gqa.load_state_dict(mha.state_dict())
    torch.testing.assert_close(gqa(ids(2, 16), all_logits=True)[0], mha(ids(2, 16), all_logits=True)[0],
                               atol=0, rtol=0)


def test_gqa_equals_mha_whose_query_heads_share_copied_kv_heads():
    gqa = randomise(small_model(n_kv_head=2))
    mha = small_model()
    state = gqa.state_dict()
    C, hs = 32, 8
    for layer in range(2):
        for kind in ("weight", "bias"):
            name = f"transformer.h.{layer}.attn.c_attn.{kind}"
            q, k, v = state[name].split([C, 2 * hs, 2 * hs])
            # query head j reads kv head j // 2: repeat each kv head twice in a row
            k, v = (t.unflatten(0, (2, hs)).repeat_interleave(2, dim=0).flatten(0, 1) for t in (k, v))
            state[name] = torch.cat([q, k, v])
    mha.load_state_dict(state)
    torch.testing.assert_close(gqa(ids(2, 16), all_logits=True)[0], mha(ids(2, 16), all_logits=True)[0])


def test_rope_model_scores_depend_on_relative_positions_only():
    """A text of one repeated token: in layer 0 every position holds the same vector, so
    with RoPE the score of query i for key j is f(i - j), and att[i, i - d] / att[i, i]
    is the same for every i. A learned position table breaks that."""
    for pos, relative in (("rope", True), ("learned", False)):
        model = randomise(small_model(pos=pos, qk_norm=pos == "rope"))
        w = model.attention_weights(torch.full((1, 16), 3))[0, 0]  # layer 0: (nh, T, T)
        ratios = [w[:, i, i - d] / w[:, i, i] for d in (1, 4) for i in range(d, 16)]
        firsts = [w[:, d, 0] / w[:, d, d] for d in (1, 4) for i in range(d, 16)]
        same = all(torch.allclose(r, f, rtol=1e-4) for r, f in zip(ratios, firsts))
        assert same == relative, pos


def test_kv_cache_bytes_per_token_counts_kv_heads():
    c = small_config()  # 2 layers, 4 heads of 8
    assert c.kv_cache_bytes_per_token() == 2 * 2 * 4 * 8 * 4
    assert small_config(n_kv_head=1).kv_cache_bytes_per_token(2) == 2 * 2 * 1 * 8 * 2
    model = small_model(n_kv_head=2)
    cache = KVCache(2)
    model(ids(1, 10), kv_cache=cache)
    stored = sum(t.numel() * t.element_size() for t in cache.keys + cache.values)
    assert stored == 10 * model.config.kv_cache_bytes_per_token()


def test_swiglu_hidden_width_keeps_gpt2s_mlp_parameter_count():
    for C in (32, 128, 384):
        H = GPTConfig(n_embd=C, n_head=4, mlp="swiglu").hidden_size
        assert H % 8 == 0 and abs(3 * C * H - 8 * C * C) <= 3 * C * 4
    assert GPTConfig(mlp="swiglu", mlp_hidden=100).hidden_size == 100


def test_swiglu_and_relu2_mlps_compute_their_formulas():
    from tinyllm.layers import swiglu

    torch.manual_seed(0)
    mlp = MLP(small_config(mlp="swiglu", bias=False))
    x = torch.randn(3, 32)
    torch.testing.assert_close(mlp(x), swiglu(x, mlp.c_gate.weight, mlp.c_fc.weight, mlp.c_proj.weight))
    mlp = randomise(MLP(small_config(mlp="relu2")))
    torch.testing.assert_close(mlp(x), mlp.c_proj(mlp.c_fc(x).clamp(min=0) ** 2))


@pytest.mark.parametrize("bad, message", [
    (dict(norm="batchnorm"), r"norm must be one of \['layernorm', 'rmsnorm'\], got 'batchnorm'"),
    (dict(pos="alibi"), r"pos must be one of \['learned', 'rope'\], got 'alibi'"),
    (dict(mlp="geglu"), r"mlp must be one of \['gelu', 'gelu_tanh', 'relu', 'relu2', 'swiglu'\], got 'geglu'"),
    (dict(n_kv_head=3), r"n_head=4 is not divisible by n_kv_head=3.*\[1, 2, 4\]"),
    (dict(n_kv_head=0), "n_kv_head must be an int >= 1, got 0"),
    (dict(pos="rope", n_embd=36, n_head=12), "pos='rope' needs an even head size, got n_embd // n_head = 3"),
    (dict(qk_norm=1), "qk_norm must be True or False, got 1"),
    (dict(rope_theta=0.0), "rope_theta must be a positive finite number, got 0.0"),
    (dict(rope_theta=float("nan")), "rope_theta must be a positive finite number, got nan"),  # NaN angles
    (dict(rope_theta=float("inf")), "rope_theta must be a positive finite number, got inf"),
    (dict(bias="False"), "bias must be True or False, got 'False'"),  # a non-empty string is true
    (dict(bias=2), "bias must be True or False, got 2"),
])
def test_bad_switches_are_refused_by_name(bad, message):
    with pytest.raises(ValueError, match=message):
        small_config(**bad)


def test_config_prints_new_switches_only_when_set():
    assert repr(small_config()) == (
        "GPTConfig(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32, dropout=0.0, bias=True)"
    )
    assert repr(small_config(pos="rope", n_kv_head=2)).endswith("bias=True, pos='rope', n_kv_head=2)")


def test_eval_mode_puts_back_the_mode_the_model_was_in_even_after_an_error():
    from tinyllm.model import eval_mode

    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8, dropout=0.1))
    for training in (True, False):
        model.train(training)
        with eval_mode(model):
            assert not model.training and not model.transformer.h[0].attn.training
        assert model.training is training
    model.train()
    with pytest.raises(RuntimeError, match="inside"), eval_mode(model):
        raise RuntimeError("inside")
    assert model.training
    model.transformer.h[0].eval()  # a frozen block (no dropout there) stays as it was left
    model.generate(torch.tensor([[1, 2]]), 2)
    assert model.training and not model.transformer.h[0].training and not model.transformer.h[0].attn.training


def test_the_integer_check_refuses_bools_floats_and_values_out_of_bounds():
    from tinyllm.validate import check_int

    assert check_int("n", 3) == 3 and check_int("k", 5, 1, 5) == 5
    for value, low, high, message in ((True, 1, None, "n must be an int >= 1, got True"),
                                      (2.0, 1, None, "n must be an int >= 1, got 2.0"),
                                      (-1, 0, None, "n must be an int >= 0, got -1"),
                                      (6, 1, 5, r"n must be an int in 1\.\.5, got 6")):
        with pytest.raises(ValueError, match=message):
            check_int("n", value, low, high)
    with pytest.raises(ValueError, match="n_layer must be an int >= 1, got True"):
        GPTConfig(n_layer=True)
