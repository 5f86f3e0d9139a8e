import pytest
import torch

from tinyllm.tokenizer import BPETokenizer, CharTokenizer


def test_roundtrip_and_sorted_vocabulary():
    tok = CharTokenizer.from_text("hello world")
    assert tok.itos == sorted(set("hello world"))
    assert tok.vocab_size == 8
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode(tok.encode("world hello")) == "world hello"


def test_unknown_character_names_it_and_its_position():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match=r"character 'z' at position 2 is not in the vocabulary"):
        tok.encode("abzc")


def test_decode_rejects_ids_outside_the_vocabulary():
    tok = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError, match="token id 7 is outside the vocabulary"):
        tok.decode([0, 7])


@pytest.mark.parametrize("ids", [[0, 1.7], [0, 2.0], torch.tensor([0.0, 1.0]), [True]])
def test_decode_refuses_ids_that_are_not_integers(ids):
    # int(1.7) would have decoded token 1: a float id is a bug upstream, said at once
    for tok in (CharTokenizer.from_text("abc"), BPETokenizer()):
        with pytest.raises(ValueError, match="is outside the vocabulary"):
            tok.decode(ids)
    assert CharTokenizer.from_text("abc").decode(torch.tensor([2, 0])) == "ca"
    y = torch.tensor([[2, 0]])  # a list of 0-d integer tensors, as chapters 01 and 08 decode y[0, t]
    for tok in (CharTokenizer.from_text("abc"), BPETokenizer()):
        assert tok.decode([y[0, 0], y[0, 1]]) == tok.decode([2, 0])


def test_save_load_is_readable_json(tmp_path):
    tok = CharTokenizer.from_text("To be, or not to be\n")
    path = tmp_path / "tok.json"
    tok.save(path)
    assert '"type": "char"' in path.read_text()
    again = CharTokenizer.load(path)
    assert again.itos == tok.itos


@pytest.mark.parametrize("content", ["{not json", '{"type": "bpe"}', '{"type": "char", "chars": ["a", "a"]}', "[]"])
def test_load_rejects_malformed_files(tmp_path, content):
    path = tmp_path / "tok.json"
    path.write_text(content)
    with pytest.raises(ValueError):
        CharTokenizer.load(path)


def test_empty_text_has_no_vocabulary():
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.from_text("")
