"""Drive the layer explorer: type text, move the position, check it shows the logit lens and
the heads' attention of that position, and a readable message for bad input."""

import re

import pytest
import torch
import torch.nn.functional as F

from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer
from tinyllm.trace import lens_logits, trace
from tinyllm.widgets.layer_explorer import LayerExplorer, render_layer_explorer

TEXT = "To be, or not to be: that is the question."


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = CharTokenizer.from_text(TEXT + "ROMEO\n")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=48, n_layer=2, n_head=3, n_embd=24))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))  # sharp, distinct guesses and heads
    return model.eval(), tok


def expected_lens(model, tok, text, position, k):
    """The top-k guesses after each depth, computed here from the trace's residual streams."""
    tr = trace(model, torch.tensor([tok.encode(text)]))
    streams = [tr.resid_pre[0]] + tr.resid_post
    probs = torch.stack([F.softmax(lens_logits(model, s[0, position]), -1) for s in streams])
    return probs.topk(k, dim=-1)


def test_explorer_shows_the_logit_lens_of_the_chosen_position(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ex = LayerExplorer(model, tok, TEXT, k=3)
    assert ex.position.max == len(TEXT) - 1 and ex.position.value == len(TEXT) - 1
    seen = []
    for position, k in [(len(TEXT) - 1, 3), (5, 3), (0, 3), (17, 5)]:
        ex.position.value, ex.k.value = position, k
        top = expected_lens(model, tok, TEXT, position, k)
        assert ex.probs.shape == ex.ids.shape == (3, k)  # embeddings + 2 blocks
        torch.testing.assert_close(ex.probs, top.values)
        assert torch.equal(ex.ids, top.indices)
        assert f"position {position} of 0..{len(TEXT) - 1}" in ex.info.value
        assert ex.html.value.count("<tr>") == 3 and "after block 1" in ex.html.value
        assert f"from position {position}" in ex.html.value
        # One strip per head: 2 layers x 3 heads, each over the tokens up to the position.
        strips = re.findall(r"<div style=\"white-space: nowrap;\">(.*?)</div>", ex.html.value)
        assert len(strips) == 6
        assert all(s.count("<span title=\"position") == min(position + 1, 32) for s in strips)
        seen.append(ex.html.value)
    assert len(set(seen)) == len(seen)  # every change re-rendered the view


def test_strips_shade_by_the_heads_weights(model_and_tokenizer):
    model, tok = model_and_tokenizer
    page = render_layer_explorer(model, tok, "to be or", position=4)
    weights = model.attention_weights(torch.tensor([tok.encode("to be or")]))[1, 0, 2, 4, :5]
    strips = re.findall(r"<div style=\"white-space: nowrap;\">(.*?)</div>", page)
    last = strips[-1]  # layer 1, head 2
    assert last.startswith('<span style="display: inline-block; width: 4.5em; font-size: 0.85em;">1.2<')
    for j in range(5):
        assert f"position {j}: weight {weights[j].item():.3f}" in last


def test_explorer_follows_new_text_and_reports_bad_input(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ex = LayerExplorer(model, tok, TEXT)
    ex.text.value = "ROMEO"
    assert ex.position.max == 4 and ex.position.value == 4
    top = expected_lens(model, tok, "ROMEO", 4, 5)
    assert torch.equal(ex.ids, top.indices)
    shown = ex.html.value
    ex.text.value = "ROMEO!"  # '!' is not in this vocabulary: a message, the old view stays
    assert "&#x27;!&#x27; at position 5 is not in the vocabulary" in ex.info.value
    assert "Traceback" not in ex.info.value
    assert ex.html.value == shown and ex.position.max == 4
    ex.text.value = ""
    assert "empty" in ex.info.value
    ex.text.value = "a" * 49
    assert "49 tokens long; the model reads 1..48" in ex.info.value
    ex.text.value = "to be"
    assert ex.position.max == 4 and "position 4 of 0..4" in ex.info.value


def test_bad_arguments_name_the_value_and_the_range(model_and_tokenizer):
    model, tok = model_and_tokenizer
    with pytest.raises(ValueError, match=r"position 8 is out of range: the text has positions 0\.\.7"):
        render_layer_explorer(model, tok, "to be or", position=8)
    with pytest.raises(ValueError, match="'!' at position 2 is not in the vocabulary"):
        render_layer_explorer(model, tok, "to!")
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.10, got 0"):
        LayerExplorer(model, tok, "to be", k=0)
    ex = LayerExplorer(model, tok, "to be", position=9)  # a readable message, not a traceback
    assert "position 9 is out of range: the text has positions 0..4" in ex.info.value


def test_long_text_shows_a_window_of_the_last_tokens(model_and_tokenizer):
    model, tok = model_and_tokenizer
    text = (TEXT + " ROMEO")[:48]
    page = render_layer_explorer(model, tok, text)
    assert "(the last 32 tokens)" in page
    assert page.count('<span title="position 16:') == 6 and 'title="position 15:' not in page
