"""tinyllm's GPT is GPT-2's architecture (with the exact GELU, transformers' "gelu"): export it to
Hugging Face transformers and import it back, compare.

transformers is a test-only dependency (installed in CI), so it is imported directly: a
missing transformers must fail here, not skip.
"""

import json
import os
import subprocess
import sys
from functools import partial

import pytest
import torch
from helpers import random_model
from transformers import GPT2LMHeadModel

from tinyllm.export import from_transformers, gpt2_state_dict, to_transformers
from tinyllm.model import GPT

CONFIG = dict(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=64)


random_gpt = partial(random_model, CONFIG)


def tokens(B=3, T=32, seed=0):
    return torch.randint(0, CONFIG["vocab_size"], (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = random_gpt()
    folder = to_transformers(model, tmp_path_factory.mktemp("gpt2"))
    return model, folder


def test_export_writes_config_and_safetensors(exported):
    _, folder = exported
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert config["activation_function"] == "gelu"
    assert (config["n_positions"], config["n_layer"], config["n_head"], config["n_embd"]) == (32, 2, 4, 64)
    assert config["tie_word_embeddings"] is True


def test_transformers_gpt2_gives_the_same_logits(exported):
    model, folder = exported
    hf, info = GPT2LMHeadModel.from_pretrained(folder, output_loading_info=True)
    hf.eval()
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    assert hf.lm_head.weight.data_ptr() == hf.transformer.wte.weight.data_ptr()  # tied
    idx = tokens()
    with torch.no_grad():
        ours, _ = model(idx, all_logits=True)
        theirs = hf(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
    # The loss too: transformers shifts the labels itself (position t predicts labels[t+1]).
    with torch.no_grad():
        _, loss = model(idx[:, :-1], targets=idx[:, 1:])
        hf_loss = hf(idx, labels=idx).loss
    torch.testing.assert_close(loss, hf_loss, atol=1e-5, rtol=1e-5)


def test_the_comparison_is_sharp_enough_to_see_the_tanh_gelu(exported, tmp_path):
    """GPT-2's default activation is the tanh approximation of GELU; nn.GELU() is exact.
    Loading with the wrong one must break the 1e-5 agreement, or the test proves nothing."""
    model, folder = exported
    config = json.loads((folder / "config.json").read_text())
    config["activation_function"] = "gelu_new"
    (tmp_path / "config.json").write_text(json.dumps(config))
    (tmp_path / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    hf = GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    idx = tokens()
    with torch.no_grad():
        diff = (model(idx, all_logits=True)[0] - hf(idx).logits).abs().max().item()
    assert diff > 1e-5


def test_conv1d_weights_are_transposed():
    model = random_gpt()
    sd = gpt2_state_dict(model)
    assert sd["transformer.h.0.attn.c_attn.weight"].shape == (64, 192)  # (in, out)
    torch.testing.assert_close(sd["transformer.h.1.mlp.c_fc.weight"], model.transformer.h[1].mlp.c_fc.weight.t())
    assert "lm_head.weight" not in sd  # tied: stored once, as wte


def test_a_compiled_model_is_written_as_the_model_it_wraps(exported, tmp_path):
    """torch.compile's wrapper names every weight ``_orig_mod.*``: transformers would load none."""
    model, folder = exported
    to_transformers(torch.compile(model), tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="writes a tinyllm GPT, got Linear"):
        to_transformers(torch.nn.Linear(2, 2), tmp_path)


def test_bias_free_model_cannot_be_exported(tmp_path):
    with pytest.raises(ValueError, match="bias=False"):
        to_transformers(random_gpt(bias=False), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()


@pytest.mark.slow  # the offline process imports transformers
def test_loading_works_offline(exported, offline_hf):
    """With HF_HUB_OFFLINE=1 and a dead proxy, any attempt to download would fail."""
    model, folder = exported
    idx = tokens(B=1, T=16)
    with torch.no_grad():
        expected = model(idx, all_logits=True)[0]
    name, got = offline_hf(folder, idx)
    assert name == "GPT2LMHeadModel"
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


# --- the other way: Hugging Face GPT-2 -> tinyllm's GPT --------------------------------


def random_hf_gpt2(seed: int = 0, **overrides):
    """A randomly initialised transformers GPT-2 (no download), every parameter random."""
    from transformers import GPT2Config

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=CONFIG["vocab_size"], n_positions=CONFIG["block_size"], n_layer=CONFIG["n_layer"],
        n_head=CONFIG["n_head"], n_embd=CONFIG["n_embd"], **overrides,
    )
    hf = GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return hf.eval()


@pytest.mark.parametrize("activation", ["gelu_new", "gelu"])
def test_from_transformers_gives_identical_logits(activation):
    hf = random_hf_gpt2(activation_function=activation)
    model = from_transformers(hf)
    assert isinstance(model, GPT) and not model.training
    assert model.lm_head.weight is model.transformer.wte.weight  # tied, as in GPT-2
    idx = tokens()
    with torch.no_grad():
        ours, _ = model(idx, all_logits=True)
        theirs = hf(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_guppylm_style_relu_mlp_exports_exactly(tmp_path):
    # GuppyLM's MLP: ReLU and a hidden width that is not 4 * n_embd (here 3 * 64).
    model = random_gpt(seed=1, mlp="relu", mlp_hidden=192)
    folder = to_transformers(model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert (config["activation_function"], config["n_inner"]) == ("relu", 192)
    hf = GPT2LMHeadModel.from_pretrained(folder).eval()
    idx = tokens(seed=1)
    with torch.no_grad():
        ours, _ = model(idx, all_logits=True)
        theirs = hf(idx).logits
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_gpt2s_tanh_gelu_survives_a_checkpoint_and_a_new_export(tmp_path):
    """OpenAI's GPT-2 uses the tanh GELU: loaded, it is the config's mlp="gelu_tanh", so a
    checkpoint and the export back to transformers keep it (the exact GELU moved the logits
    by 7.5e-4)."""
    from tinyllm.checkpoint import load_checkpoint, load_model_state, save_checkpoint
    from tinyllm.model import GPTConfig

    hf = random_hf_gpt2(activation_function="gelu_new")
    model = from_transformers(hf)
    assert model.config.mlp == "gelu_tanh"
    idx = tokens()
    with torch.no_grad():
        expected = hf(idx).logits
    back = GPT2LMHeadModel.from_pretrained(to_transformers(model, tmp_path / "hf")).eval()
    assert back.config.activation_function == "gelu_new"
    save_checkpoint(tmp_path / "run", model, step=0)
    checkpoint = load_checkpoint(tmp_path / "run")
    loaded = GPT(GPTConfig(**checkpoint.config)).eval()
    load_model_state(loaded, checkpoint)
    with torch.no_grad():
        torch.testing.assert_close(back(idx).logits, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(loaded(idx, all_logits=True)[0], expected, atol=1e-5, rtol=1e-5)


def test_from_transformers_needs_the_right_gelu():
    """Loading GPT-2's tanh-GELU weights with the exact GELU must be visibly wrong."""
    hf = random_hf_gpt2(activation_function="gelu_new")
    model = from_transformers(hf)
    for block in model.transformer.h:
        block.mlp.act = torch.nn.GELU()  # what a forgotten activation would give
    idx = tokens()
    with torch.no_grad():
        diff = (model(idx, all_logits=True)[0] - hf(idx).logits).abs().max().item()
    assert diff > 1e-5


@pytest.mark.parametrize("mlp", [{}, dict(mlp="relu", mlp_hidden=192)], ids=["gpt2", "guppylm-mlp"])
def test_round_trip_through_transformers_is_exact(tmp_path, mlp):
    """tinyllm -> Hugging Face folder -> transformers -> tinyllm: the same weights."""
    model = random_gpt(seed=3, **mlp)
    hf = GPT2LMHeadModel.from_pretrained(to_transformers(model, tmp_path)).eval()
    back = from_transformers(hf)
    original, returned = model.state_dict(), back.state_dict()
    assert original.keys() == returned.keys()
    for name in original:
        assert torch.equal(original[name], returned[name]), name
    idx = tokens(seed=1)
    with torch.no_grad():
        assert torch.equal(back(idx, all_logits=True)[0], model(idx, all_logits=True)[0])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(activation_function="silu"), "activation_function='silu'"),
        (dict(scale_attn_by_inverse_layer_idx=True), "scale_attn_by_inverse_layer_idx"),
        (dict(layer_norm_epsilon=1e-6), "layer_norm_epsilon"),
        (dict(tie_word_embeddings=False), "an output head that is not the token embedding"),
    ],
)
def test_from_transformers_refuses_what_it_cannot_represent(overrides, message):
    with pytest.raises(ValueError, match=message):
        from_transformers(random_hf_gpt2(**overrides))


# --- chapter 11's pieces: RMSNorm + RoPE + SwiGLU is a Llama (a Qwen3 with qk_norm) ------

LLAMA = dict(norm="rmsnorm", pos="rope", mlp="swiglu")


# A fresh process that loads exported folders with every download made impossible: transformers
# reads HF_HUB_OFFLINE when it is imported, so this process is not the test's own. One per
# module: each request is a line of JSON (folder, token ids), each answer a line.
OFFLINE_SERVER = """
import json, sys, traceback, torch
from transformers import AutoModelForCausalLM
for line in sys.stdin:
    try:
        folder, idx = json.loads(line)
        hf, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
        hf.eval()
        assert not info["missing_keys"] and not info["unexpected_keys"], info
        with torch.no_grad():
            logits = hf(torch.tensor(idx)).logits
        print(json.dumps([type(hf).__name__, logits.tolist()]), flush=True)
    except Exception:
        print(json.dumps(["error", traceback.format_exc()]), flush=True)
"""


@pytest.fixture(scope="module")
def offline_hf():
    """``(folder, idx) -> (model class name, logits)`` of ``AutoModelForCausalLM.from_pretrained``,
    in the offline process."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    server = subprocess.Popen([sys.executable, "-c", OFFLINE_SERVER], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def logits(folder, idx):
        server.stdin.write(json.dumps([str(folder), idx.tolist()]) + "\n")
        server.stdin.flush()
        line = server.stdout.readline()
        assert line, f"the offline process ended (exit code {server.wait(5)})"
        name, value = json.loads(line)
        assert name != "error", value
        return name, torch.tensor(value)

    yield logits
    server.stdin.close()
    server.wait(30)


@pytest.mark.slow  # the offline process imports transformers
@pytest.mark.parametrize("overrides, architecture", [
    (dict(bias=False, n_kv_head=2), "LlamaForCausalLM"),
    (dict(bias=True), "LlamaForCausalLM"),
    (dict(bias=False, n_kv_head=1, rope_theta=500.0), "LlamaForCausalLM"),
    (dict(bias=False, n_kv_head=2, qk_norm=True), "Qwen3ForCausalLM"),
], ids=["gqa-no-bias", "mha-bias", "mqa-theta", "qwen3-qk-norm"])
def test_llama_like_models_export_with_the_same_logits_offline(tmp_path, offline_hf, overrides, architecture):
    model = random_gpt(seed=4, **LLAMA, **overrides)
    folder = to_transformers(model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == [architecture]
    assert config["num_key_value_heads"] == model.config.kv_heads
    idx = tokens(B=2, T=32, seed=2)
    with torch.no_grad():
        ours, _ = model(idx, all_logits=True)
    name, theirs = offline_hf(folder, idx)
    assert name == architecture
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=1e-4)


@pytest.mark.slow  # the offline process imports transformers
def test_the_llama_comparison_sees_a_wrong_rope_theta(tmp_path, offline_hf):
    """The check is sharp: the same weights read with another RoPE base disagree."""
    model = random_gpt(seed=4, **LLAMA, bias=False)
    folder = to_transformers(model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["rope_theta"] = 100.0
    config["rope_parameters"]["rope_theta"] = 100.0
    (folder / "config.json").write_text(json.dumps(config))
    idx = tokens(B=1, T=32, seed=2)
    with torch.no_grad():
        ours, _ = model(idx, all_logits=True)
    _, theirs = offline_hf(folder, idx)
    assert (theirs - ours).abs().max() > 1e-3


def test_llama_weights_are_cut_from_the_fused_attention_matrix():
    from tinyllm.export import llama_state_dict

    model = random_gpt(**LLAMA, n_kv_head=2)  # 4 heads of 16: q 64 rows, k and v 32 each
    sd = llama_state_dict(model)
    w = model.transformer.h[1].attn.c_attn.weight
    assert sd["model.layers.1.self_attn.q_proj.weight"].shape == (64, 64)
    torch.testing.assert_close(sd["model.layers.1.self_attn.k_proj.weight"], w[64:96])
    torch.testing.assert_close(sd["model.layers.1.self_attn.v_proj.weight"], w[96:])
    torch.testing.assert_close(sd["model.layers.0.mlp.gate_proj.weight"], model.transformer.h[0].mlp.c_gate.weight)
    assert "lm_head.weight" not in sd and "model.embed_tokens.weight" in sd


@pytest.mark.parametrize("overrides, message", [
    (dict(pos="rope"), "GPT-2's format cannot hold pos='rope'"),
    (dict(norm="rmsnorm", mlp="swiglu"), "GPT-2's format cannot hold mlp='swiglu', norm='rmsnorm'|"
                                         "GPT-2's format cannot hold norm='rmsnorm', mlp='swiglu'"),
    (dict(n_kv_head=2), "GPT-2's format cannot hold n_kv_head=2"),
    (dict(mlp="relu2"), "mlp='relu2'"),
    (dict(**LLAMA, qk_norm=True, bias=True), "Qwen3, whose MLP has no biases"),
])
def test_models_neither_format_holds_are_refused_by_name(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        to_transformers(random_gpt(**overrides), tmp_path)
    assert not (tmp_path / "model.safetensors").exists()
