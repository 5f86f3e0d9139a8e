"""The tokenizer explorer: driven like a user would, by setting the text and the toggle."""

import pytest

from tinyllm.tokenizer import BPETokenizer, CharTokenizer
from tinyllm.widgets.tokenizer_explorer import TokenizerExplorer, render_tokens_html, token_pieces

TEXT = "the cat sat on the mat. " * 20


@pytest.fixture(scope="module")
def tokenizers():
    bpe = BPETokenizer().train(TEXT, 265, special_tokens=["<|endoftext|>"])
    return {"character": CharTokenizer.from_text(TEXT), "BPE": bpe}


def test_typing_updates_tokens_ids_and_count(tokenizers):
    explorer = TokenizerExplorer(tokenizers, text="")
    explorer.choice.value = "BPE"
    explorer.text.value = "the cat"
    bpe = tokenizers["BPE"]
    assert explorer.ids == bpe.encode("the cat")
    assert explorer.count == len(explorer.ids) < len("the cat")
    assert "".join(explorer.pieces) == "the cat"
    assert explorer.view.value.count("<span") == explorer.count
    assert f"<b>{explorer.count} tokens</b>" in explorer.view.value
    assert "ids: [" + ", ".join(map(str, explorer.ids)) + "]" in explorer.view.value

    explorer.text.value = "the mat"
    assert explorer.ids == bpe.encode("the mat")


def test_toggle_switches_vocabulary(tokenizers):
    explorer = TokenizerExplorer(tokenizers, text="the cat")
    assert explorer.choice.value == "character"
    assert explorer.ids == tokenizers["character"].encode("the cat") and explorer.count == 7
    explorer.choice.value = "BPE"
    assert explorer.ids == tokenizers["BPE"].encode("the cat") and explorer.count < 7
    assert "BPE: vocabulary of 265 tokens" in explorer.summary.value


def test_unknown_character_shows_an_error_not_a_crash(tokenizers):
    explorer = TokenizerExplorer(tokenizers, text="the cat")
    explorer.text.value = "the 🐈"
    assert explorer.count == 0 and "cannot encode" in explorer.summary.value
    explorer.choice.value = "BPE"  # bytes: BPE encodes anything
    assert tokenizers["BPE"].decode(explorer.ids) == "the 🐈"


def test_special_tokens_and_split_characters_are_shown(tokenizers):
    bpe = tokenizers["BPE"]
    html = render_tokens_html("cat<|endoftext|>é", bpe)
    assert "&lt;|endoftext|&gt;" in html
    pieces = token_pieces(bpe, bpe.encode("🐈"))  # 4 bytes, no merges: 4 partial tokens
    assert [whole for _, whole in pieces] == [False] * 4 and pieces[0][0] == "\\xf0"


def test_static_html_escapes_and_shows_whitespace(tokenizers):
    html = render_tokens_html("<b>a\nb", tokenizers["BPE"])
    assert "<b>a" not in html.split("ids:")[0] and "&lt;" in html and "&gt;" in html
    assert "↵" in html
    with pytest.raises(ValueError):
        TokenizerExplorer({})
