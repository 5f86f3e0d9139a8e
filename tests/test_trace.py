"""The trace of one forward pass equals an independent computation (Hugging Face's GPT-2 on
the exported model), and the ablations change exactly what they say and nothing after."""

import copy
from functools import partial

import pytest
import torch
import torch.nn.functional as F
from helpers import random_model
from transformers import GPT2LMHeadModel

from tinyllm.export import to_transformers
from tinyllm.tokenizer import CharTokenizer
from tinyllm.trace import (
    ablate,
    ablated_loss,
    attention_score,
    encode,
    first_token_targets,
    induction_targets,
    last_separator_targets,
    lens_logits,
    logit_lens,
    previous_token_targets,
    trace,
    word_start_targets,
)

CONFIG = dict(vocab_size=41, block_size=24, n_layer=3, n_head=4, n_embd=32)


random_gpt = partial(random_model, CONFIG, scale=0.3)


def tokens(B=2, T=24, seed=0, V=CONFIG["vocab_size"]):
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def model():
    return random_gpt()


def test_trace_equals_hugging_face_hidden_states_and_attentions(model, tmp_path):
    folder = to_transformers(model, tmp_path / "gpt2")
    hf = GPT2LMHeadModel.from_pretrained(folder, attn_implementation="eager").eval()
    idx = tokens()
    tr = trace(model, idx)
    with torch.no_grad():
        out = hf(idx, output_hidden_states=True, output_attentions=True)
    L = model.config.n_layer
    assert len(out.hidden_states) == L + 1 and len(out.attentions) == L
    diffs = {}
    # HF's hidden_states: the embeddings, the output of blocks 0..L-2, then ln_f of the last.
    ours = [tr.resid_pre[0], *tr.resid_post[:-1], tr.final]
    for i, (a, b) in enumerate(zip(ours, out.hidden_states)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        diffs[f"hidden {i}"] = (a - b).abs().max().item()
    for layer, (a, b) in enumerate(zip(tr.attn, out.attentions)):
        assert a.shape == b.shape == (2, 4, 24, 24)
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        diffs[f"attention {layer}"] = (a - b).abs().max().item()
    torch.testing.assert_close(tr.logits, out.logits, atol=1e-5, rtol=1e-5)
    diffs["logits"] = (tr.logits - out.logits).abs().max().item()
    print("max |trace - HF|:", ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))


def test_trace_logits_equal_the_models_and_the_pieces_add_up(model):
    idx = tokens(seed=1)
    tr = trace(model, idx)
    with torch.no_grad():
        logits, _ = model(idx, all_logits=True)
    torch.testing.assert_close(tr.logits, logits, atol=1e-5, rtol=1e-5)
    B, T = idx.shape
    for layer, block in enumerate(model.transformer.h):
        assert torch.equal(tr.resid_pre[layer], tr.stream()[layer])
        if layer:
            assert torch.equal(tr.resid_pre[layer], tr.resid_post[layer - 1])
        with torch.no_grad():
            heads = tr.head_out[layer]
            assert heads.shape == (B, 4, T, 8)
            attn_out = block.attn.c_proj(heads.transpose(1, 2).reshape(B, T, -1))
            torch.testing.assert_close(tr.resid_pre[layer] + attn_out, tr.resid_mid[layer])
            # Each head's output is its attention weights times its values.
            _, _, v = block.attn.c_attn(block.ln_1(tr.resid_pre[layer])).split(32, dim=2)
            v = v.view(B, T, 4, 8).transpose(1, 2)
            torch.testing.assert_close(tr.attn[layer] @ v, heads)
            neurons = F.gelu(block.mlp.c_fc(block.ln_2(tr.resid_mid[layer])))
            assert tr.neurons[layer].shape == (B, T, 4 * 32)
            torch.testing.assert_close(tr.neurons[layer], neurons)
            torch.testing.assert_close(tr.resid_mid[layer] + block.mlp.c_proj(neurons), tr.resid_post[layer])


def test_trace_leaves_the_model_as_it_found_it():
    model = random_gpt(seed=2).train()
    before = copy.deepcopy(model.state_dict())
    trace(model, tokens(seed=2))
    assert model.training
    for module in model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_logit_lens_ends_with_the_models_prediction(model):
    idx = tokens(B=1, seed=3)
    tr = trace(model, idx)
    probs, ids = logit_lens(model, tr, position=7, k=3)
    assert probs.shape == ids.shape == (model.config.n_layer + 1, 3)
    final = F.softmax(tr.logits[0, 7], dim=-1).topk(3)
    torch.testing.assert_close(probs[-1], final.values)
    assert torch.equal(ids[-1], final.indices)
    # Row 1 reads the stream after block 0 with ln_f and the head.
    after_block0 = F.softmax(lens_logits(model, tr.resid_post[0][0, 7]), dim=-1).topk(3)
    assert torch.equal(ids[1], after_block0.indices)
    assert (probs[:, :-1] >= probs[:, 1:]).all()  # sorted, most likely first


def test_bad_positions_layers_and_heads_are_named(model):
    tr = trace(model, tokens(B=1, T=10))
    with pytest.raises(ValueError, match=r"position 10 is out of range: the text has positions 0\.\.9"):
        logit_lens(model, tr, position=10)
    with pytest.raises(ValueError, match=r"position -1 is out of range"):
        logit_lens(model, tr, position=-1)
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.41, got 0"):
        logit_lens(model, tr, position=0, k=0)
    with pytest.raises(ValueError, match=r"layer 3 is out of range: the model has layers 0\.\.2"):
        ablated_loss(model, tokens(), tokens(seed=9), heads=[(3, 0)])
    with pytest.raises(ValueError, match=r"head 4 is out of range: each layer has heads 0\.\.3"):
        ablated_loss(model, tokens(), tokens(seed=9), heads=[(0, 4)])
    with pytest.raises(ValueError, match=r"layer 7 is out of range"):
        ablated_loss(model, tokens(), tokens(seed=9), mlps=[7])
    with pytest.raises(ValueError, match="mode must be 'zero' or 'mean', got 'max'"):
        ablated_loss(model, tokens(), tokens(seed=9), heads=[(0, 0)], mode="max")
    with pytest.raises(ValueError, match=r"idx has 25 positions; the model reads 1\.\.24"):
        trace(model, tokens(T=25))
    with pytest.raises(ValueError, match=r"token id 41 is outside the vocabulary 0\.\.40"):
        trace(model, torch.tensor([[1, 41]]))


def test_encode_names_an_unknown_character_and_checks_the_length(model):
    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ,.ABCDEFGHIJKL")
    assert tok.vocab_size == 41
    assert encode(model, tok, "abc").tolist() == [tok.encode("abc")]
    with pytest.raises(ValueError, match="'!' at position 3 is not in the vocabulary"):
        encode(model, tok, "abc!")
    with pytest.raises(ValueError, match=r"the text is 25 tokens long; the model reads 1\.\.24"):
        encode(model, tok, "a" * 25)
    with pytest.raises(ValueError, match="empty"):
        encode(model, tok, "")


def test_attention_score_on_patterns_made_by_hand():
    T = 5
    prev = torch.zeros(T, T)
    prev[0, 0] = 1.0
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1.0
    uniform = torch.tril(torch.ones(T, T))
    uniform = uniform / uniform.sum(-1, keepdim=True)
    attn = torch.stack([prev, uniform])[None]  # (1, 2, T, T)
    toks = torch.tensor([[3, 1, 4, 1, 5]])
    score = attention_score(attn, previous_token_targets(toks))
    expected_uniform = sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    torch.testing.assert_close(score, torch.tensor([1.0, expected_uniform]))
    torch.testing.assert_close(attention_score(attn, first_token_targets(toks)),
                               torch.tensor([0.25, expected_uniform]))
    with pytest.raises(ValueError, match=r"targets must have shape \(1, 5\)"):
        attention_score(attn, torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="no query has a target"):
        attention_score(attn, torch.full((1, T), -1))


def test_target_builders():
    assert previous_token_targets(torch.zeros(2, 4)).tolist() == [[-1, 0, 1, 2]] * 2
    assert first_token_targets(torch.zeros(1, 3, dtype=torch.long)).tolist() == [[-1, 0, 0]]
    # "ab cd": 0=a 1=b 2=' ' 3=c 4=d; separator id 9
    assert word_start_targets(torch.tensor([[1, 2, 9, 3, 4]]), [9]).tolist() == [[-1, 0, -1, -1, 3]]
    # a b c a b c: query 3 ('a') -> 1 ('b' came after the first 'a'); 4 -> 2; 5 -> 3.
    assert induction_targets(torch.tensor([[1, 2, 3, 1, 2, 3]])).tolist() == [[-1, -1, -1, 1, 2, 3]]
    # A repeated token right after itself has no earlier "next token" to copy yet.
    assert induction_targets(torch.tensor([[7, 7, 7]])).tolist() == [[-1, -1, 1]]


def test_zero_ablation_equals_zeroing_the_heads_weights():
    model = random_gpt(seed=4)
    idx, targets = tokens(seed=4), tokens(seed=5)
    hs = 32 // 4
    edited = copy.deepcopy(model)
    with torch.no_grad():
        edited.transformer.h[1].attn.c_proj.weight[:, 2 * hs:3 * hs] = 0
        edited.transformer.h[0].attn.c_proj.weight[:, 0:hs] = 0
        edited.transformer.h[2].mlp.c_proj.weight.zero_()
        edited.transformer.h[2].mlp.c_proj.bias.zero_()
        _, expected = edited(idx, targets)
    got = ablated_loss(model, idx, targets, heads=[(1, 2), (0, 0)], mlps=[2])
    assert got == pytest.approx(expected.item(), abs=1e-5)
    assert got != pytest.approx(ablated_loss(model, idx, targets), abs=1e-3)


def test_mean_ablation_replaces_a_head_by_its_mean_output():
    model = random_gpt(seed=6)
    idx, targets = tokens(seed=6), tokens(seed=7)
    tr = trace(model, idx)
    layer, head, hs = 2, 1, 8
    mean = tr.head_out[layer][:, head].mean(dim=(0, 1))  # (hs,)
    edited = copy.deepcopy(model)
    with torch.no_grad():
        proj = edited.transformer.h[layer].attn.c_proj
        proj.bias += proj.weight[:, head * hs:(head + 1) * hs] @ mean
        proj.weight[:, head * hs:(head + 1) * hs] = 0
        _, expected = edited(idx, targets)
    got = ablated_loss(model, idx, targets, heads=[(layer, head)], mode="mean")
    assert got == pytest.approx(expected.item(), abs=1e-5)


def test_ablation_restores_the_model_bit_for_bit():
    model = random_gpt(seed=8)
    idx, targets = tokens(seed=8), tokens(seed=9)
    with torch.no_grad():
        before, _ = model(idx, targets)
    with ablate(model, heads=[(0, 1)], mlps=[1], mode="mean"):
        with torch.no_grad():
            inside, _ = model(idx, targets)
    assert not torch.equal(inside, before)
    with pytest.raises(RuntimeError, match="boom"):
        with ablate(model, heads=[(2, 3)]):
            raise RuntimeError("boom")
    with torch.no_grad():
        after, _ = model(idx, targets)
    assert torch.equal(after, before)
    for module in model.modules():
        assert not module._forward_pre_hooks and not module._forward_hooks


def test_last_separator_targets():
    # "ab cd\ne": separators ' ' (9) and '\n' (8)
    toks = torch.tensor([[1, 2, 9, 3, 4, 8, 5]])
    assert last_separator_targets(toks, [9, 8]).tolist() == [[-1, -1, 2, 2, 2, 5, 5]]
