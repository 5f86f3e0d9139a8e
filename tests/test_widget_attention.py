"""Drive the attention explorer: set layer, head and token, check it shows the model's weights."""

import pytest
import torch

from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer
from tinyllm.widgets.attention_explorer import AttentionExplorer, attention_html, render_attention

TEXT = "To be, or not to be: that is the question."


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = CharTokenizer.from_text(TEXT + "ROMEO\n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=4, n_embd=32))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # sharp, distinct heads
    return model.eval(), tok


def expected(model, tok, text, layer, head, token):
    ids = tok.encode(text)[-model.config.block_size :]
    return model.attention_weights(torch.tensor([ids]))[layer, 0, head, token, : token + 1]


def test_explorer_shows_the_models_weights_for_each_choice(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ex = AttentionExplorer(model, tok, TEXT, heatmap=False)
    # The text is longer than block_size: only its last 32 characters are read.
    assert ex.token.max == 31 and ex.token.value == 31
    assert "".join(ex.pieces) == TEXT[-32:]
    assert f"the first {len(TEXT) - 32} of {len(TEXT)} are left out" in ex.info.value
    assert "left out" in render_attention(model, tok, TEXT)
    assert "left out" not in render_attention(model, tok, TEXT[-32:])
    seen = []
    for layer, head, token in [(0, 0, 31), (1, 3, 5), (0, 2, 0), (1, 1, 17)]:
        ex.layer.value, ex.head.value, ex.token.value = layer, head, token
        torch.testing.assert_close(ex.weights, expected(model, tok, TEXT, layer, head, token))
        assert ex.weights.shape == (token + 1,)
        assert f"layer {layer}, head {head}" in ex.html.value
        seen.append(ex.html.value)
    assert len(set(seen)) == len(seen)  # every change re-rendered the view


def test_explorer_follows_new_text(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ex = AttentionExplorer(model, tok, TEXT, layer=1, head=2, heatmap=True)
    ex.text.value = "ROMEO"
    assert ex.pieces == list("ROMEO") and ex.token.max == 4 and ex.token.value == 4
    torch.testing.assert_close(ex.weights, expected(model, tok, "ROMEO", 1, 2, 4))
    ex.text.value = "ROMEO!"  # '!' is not in this vocabulary: a message, the old view stays
    assert "not in the vocabulary" in ex.info.value
    assert ex.pieces == list("ROMEO")


def test_static_rendering_shades_by_weight_and_greys_the_future(model_and_tokenizer):
    model, tok = model_and_tokenizer
    page = render_attention(model, tok, "to be or", layer=0, head=1, query=3)
    assert page.count("<span") == 8
    assert page.count("in the future") == 4
    w = expected(model, tok, "to be or", 0, 1, 3)
    assert f"weight {w[0].item():.3f}" in page
    with pytest.raises(ValueError, match="layer 5"):
        render_attention(model, tok, "to be", layer=5)
    with pytest.raises(ValueError, match="head 4"):
        AttentionExplorer(model, tok, "to be", head=4)


def test_attention_html_checks_its_input():
    with pytest.raises(ValueError, match="need 2 weights"):
        attention_html(["a", "b", "c"], [1.0], query=1)
    page = attention_html(["a", " ", "\n"], [0.2, 0.3, 0.5], query=2)
    assert "&nbsp;" in page and "&#8629;" in page


def test_static_rendering_rejects_a_query_outside_the_text(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ValueError, match="query must be a token position in 0..2, got 5"):
        render_attention(model, tok, "abe", query=5)
    # the slider would clamp it to 2 without a word
    with pytest.raises(ValueError, match="token must be a position in 0..2 of the text the model reads, got 5"):
        AttentionExplorer(model, tok, "abe", token=5, heatmap=False)


def test_each_change_draws_once(model_and_tokenizer, monkeypatch):
    model, tok = model_and_tokenizer
    draws = []
    original = AttentionExplorer.refresh
    monkeypatch.setattr(AttentionExplorer, "refresh", lambda self: (draws.append(1), original(self))[1])
    explorer = AttentionExplorer(model, tok, "To be", heatmap=False)
    assert len(draws) == 1
    explorer.text.value = "To be, or"
    assert len(draws) == 2
    explorer.head.value = 1
    assert len(draws) == 3
