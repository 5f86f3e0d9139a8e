"""Byte-level BPE: exact merges (fast == simple), round trips, special tokens, files, bad input."""

import json
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyllm.tokenizer import BPETokenizer, CharTokenizer
from tinyllm.tokenizer.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN
from tinyllm.tokenizer.bpe_reference import train_merges_simple

EOT = "<|endoftext|>"

CORPUS = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
    "All:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\n"
) * 12 + (
    "Café crème brûlée, naïve façade. Ελληνικά και русский текст. 日本語のテキスト、中文文本。"
    " Emoji: 👋🏽 👨‍👩‍👧 🇫🇷 ✨✨✨ and numbers 12345 67.89 and    spaces\ttabs\r\n"
) * 4


@pytest.fixture(scope="module")
def tok():
    """One small tokenizer for the whole module, so the property tests stay fast."""
    return BPETokenizer().train(CORPUS, 400, special_tokens=[EOT])


# ---------------------------------------------------------------------------------------
# Exactness: the fast trainer gives the simple trainer's merges, tie-breaking included
# ---------------------------------------------------------------------------------------


def test_wikipedia_example_and_tie_breaking():
    # aaabdaaabac: "aa" is the most frequent pair (4 times, overlaps counted); then "Za" and
    # "ab" tie at 2 and the smaller pair (97, 98) = "ab" wins; then "ZY" -> "XdXac".
    merges = BPETokenizer().train("aaabdaaabac", 259).merges
    assert list(merges) == [(97, 97), (97, 98), (256, 257)]
    wiki = BPETokenizer().train("aaabdaaabac", 259)
    assert wiki.encode("aaabdaaabac") == [258, 100, 258, 97, 99]
    assert wiki.encode("aaa") == [256, 97]  # overlapping pairs merge from the left


@pytest.mark.parametrize("pattern", ["gpt2", "gpt4"])
def test_fast_training_equals_simple_training_on_real_text(pattern):
    fast = BPETokenizer().train(CORPUS, 256 + 120, pattern=pattern)
    simple = train_merges_simple(CORPUS, 120, {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}[pattern])
    assert list(fast.merges) == simple


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ab ab\naaé👍.", max_size=60), st.integers(0, 30))
def test_fast_training_equals_simple_training_on_repetitive_text(text, num_merges):
    # Runs such as "aaaa" and "abab" are where incremental pair counts go wrong.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny texts may run out of pairs
        for pattern in ("gpt4", r"(?s).+"):  # the second one does not split at all
            fast = BPETokenizer().train(text, 256 + num_merges, pattern=pattern)
            assert list(fast.merges) == train_merges_simple(text, num_merges, fast.pattern)


def test_training_is_deterministic_and_vocab_size_counts_everything(tok):
    again = BPETokenizer().train(CORPUS, 400, special_tokens=[EOT])
    assert again.merges == tok.merges
    assert tok.vocab_size == 400 == len(tok.vocab) == len(tok.token_strings())
    assert tok.special_tokens == {EOT: 399}
    assert len(tok.merges) == 400 - 256 - 1


def test_smaller_vocabulary_is_a_prefix_of_a_larger_one(tok):
    small = BPETokenizer().train(CORPUS, 300)
    assert list(small.merges) == list(tok.merges)[:44]
    prefix = BPETokenizer.from_merges(list(tok.merges)[:44])
    assert prefix.encode(CORPUS) == small.encode(CORPUS)


def test_encode_applies_merges_like_training_did(tok):
    # Encoding a training chunk must give the chunk's sequence after all merges: check by
    # applying the merges one by one with the simple merge function.
    from tinyllm.tokenizer.bpe_reference import merge

    for word in ["First", " Citizen", " resolved", ":\n", " 👋🏽", "aaaa"]:
        ids = list(word.encode("utf-8"))
        for pair, new_id in tok.merges.items():
            ids = merge(ids, pair, new_id)
        assert tok.encode(word) == ids, word


REPETITIVE = BPETokenizer().train("aaaa abab aaab bbba " * 20 + CORPUS[:2000], 300, pattern="gpt2")


def _encode_by_replaying_merges(tok, s):
    from tinyllm.tokenizer.bpe_reference import merge

    expected = []
    for chunk in tok._compiled.findall(s):
        ids = list(chunk.encode("utf-8"))
        for pair, new_id in tok.merges.items():
            ids = merge(ids, pair, new_id)
        expected += ids
    return expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="aab  \nFirstCizen:.é👋🏽", max_size=40), st.booleans())
def test_encode_equals_merging_in_training_order(tok, s, repetitive):
    tok = REPETITIVE if repetitive else tok
    assert tok.encode(s) == _encode_by_replaying_merges(tok, s)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["a", "b", "aaaa", "abab", "aab"]), min_size=30, max_size=150).map("".join))
def test_encode_long_chunks_equals_merging_in_training_order(s):
    # Chunks longer than 64 tokens take encode's other path (whole passes).
    for text in [s, " " + s + " a", "abab" * 30 + "aab" * 20, "a" * 5000]:
        assert REPETITIVE.encode(text) == _encode_by_replaying_merges(REPETITIVE, text)


# ---------------------------------------------------------------------------------------
# Round trips (property tests)
# ---------------------------------------------------------------------------------------

EMOJI = st.sampled_from(["👋", "👋🏽", "👨‍👩‍👧", "🇫🇷", "❤️", "🧑🏿‍🚀", "✨"])
COMBINING = st.sampled_from(["e\u0301", "a\u0308", "n\u0303", "\u0301", "\u0327c", "Z\u0336\u0335"])
ZWJ = st.sampled_from(["\u200d", "\u200b", "\u200c", "\ufeff", "a\u200db"])


@settings(max_examples=300, deadline=None)
@given(st.text())  # hypothesis's text() never produces surrogates
def test_roundtrip_arbitrary_unicode(tok, s):
    ids = tok.encode(s, allowed_special="none")
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == s


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(EMOJI, COMBINING, ZWJ, st.text(max_size=5)), max_size=20).map("".join))
def test_roundtrip_emoji_combining_marks_and_joiners(tok, s):
    assert tok.decode(tok.encode(s, allowed_special="none")) == s


@settings(max_examples=40, deadline=None)
@given(st.characters(exclude_categories=["Cs"]), st.integers(1, 3000))
def test_roundtrip_long_runs_of_one_character(tok, c, n):
    s = c * n
    assert tok.decode(tok.encode(s, allowed_special="none")) == s


def test_bpe_compresses_and_handles_text_char_level_cannot(tok):
    text = "Before we proceed any further, hear me speak."
    assert len(tok.encode(text)) < len(text.encode("utf-8")) / 2
    char = CharTokenizer.from_text("abc")
    with pytest.raises(ValueError):
        char.encode("👋")
    assert tok.decode(tok.encode("👋 日本")) == "👋 日本"


# ---------------------------------------------------------------------------------------
# Special tokens (tiktoken's semantics)
# ---------------------------------------------------------------------------------------


def test_special_tokens_allowed_all_set_and_none(tok):
    text = f"hear me{EOT}speak"
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(399) == 1 and tok.decode(ids) == text
    assert tok.encode(text, allowed_special={EOT}) == ids
    ordinary = tok.encode(text, allowed_special="none")
    assert 399 not in ordinary and tok.decode(ordinary) == text
    assert tok.encode("no special here") == tok.encode("no special here", allowed_special="all")


def test_disallowed_special_token_raises_and_names_it(tok):
    with pytest.raises(ValueError, match=r"special token '<\|endoftext\|>'"):
        tok.encode(f"a{EOT}b")
    with pytest.raises(ValueError, match="not special tokens"):
        tok.encode("a", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        tok.encode("a", allowed_special="some")


def test_training_never_merges_inside_special_tokens():
    text = f"hi there{EOT}" * 50
    tok = BPETokenizer().train(text, 262, special_tokens=[EOT])
    assert len(tok.merges) == 5  # "hi", " there" (4 merges), nothing from "<|endoftext|>"
    merged = [token for token in tok.vocab.values() if len(token) > 1 and token != EOT.encode()]
    assert not any(b"<" in token or b"|" in token for token in merged)
    assert tok.encode(text, allowed_special="all").count(261) == 50


# ---------------------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------------------


def test_decode_partial_sequence_gives_replacement_character(tok):
    ids = tok.encode("👋🏽")
    assert len(tok.decode_bytes(ids[:1])) < 4  # the emoji's bytes are split over tokens
    part = tok.decode(ids[:1])
    assert "\ufffd" in part
    assert tok.decode(ids[1:]).endswith("\ufffd") or "\ufffd" in tok.decode(ids[1:])
    assert tok.decode(list(range(128, 140))) == "\ufffd" * 12  # lone continuation bytes


def test_decode_rejects_ids_outside_the_vocabulary_naming_them(tok):
    with pytest.raises(ValueError, match="token id 400 is outside the vocabulary"):
        tok.decode([1, 400])
    with pytest.raises(ValueError, match="token id -1 is outside the vocabulary"):
        tok.decode([-1])
    with pytest.raises(ValueError, match="token id 'a'"):
        tok.decode(["a"])


def test_decode_accepts_tensors(tok):
    ids = tok.encode("speak, speak")
    assert tok.decode(torch.tensor(ids)) == "speak, speak"


def test_token_strings_are_readable(tok):
    strings = tok.token_strings()
    assert strings[ord("a")] == "a" and strings[399] == EOT
    assert tok.id_to_text(256) == strings[256] == tok.vocab[256].decode("utf-8", "replace")
    with pytest.raises(ValueError, match="token id 400"):
        tok.id_to_text(400)


# ---------------------------------------------------------------------------------------
# Bad training input
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vocab_size", [255, 0, -5, 256.0, "512", None, True])
def test_bad_vocab_size_raises(vocab_size):
    with pytest.raises(ValueError, match="vocab_size"):
        BPETokenizer().train("hello", vocab_size)


def test_vocab_size_must_leave_room_for_special_tokens():
    with pytest.raises(ValueError, match="at least 257"):
        BPETokenizer().train("hello", 256, special_tokens=[EOT])
    assert BPETokenizer().train("hello", 257, special_tokens=[EOT]).vocab_size == 257


def test_bad_pattern_and_special_tokens_raise():
    with pytest.raises(ValueError, match="pattern"):
        BPETokenizer().train("hello", 260, pattern="(unclosed")
    with pytest.raises(ValueError, match="special"):
        BPETokenizer().train("hello", 260, special_tokens=EOT)
    with pytest.raises(ValueError, match="repeated"):
        BPETokenizer().train("hello", 260, special_tokens=[EOT, EOT])


def test_running_out_of_pairs_warns_and_stops():
    with pytest.warns(UserWarning, match="only allows 3 merges"):
        tok = BPETokenizer().train("abcd", 300)
    assert tok.vocab_size == 259


def test_verbose_shows_a_progress_bar(capsys):
    BPETokenizer().train(CORPUS[:500], 270, verbose=True)
    assert "BPE merges" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def test_save_load_roundtrip_and_readable(tok, tmp_path):
    path = tmp_path / "bpe.json"
    tok.save(path)
    state = json.loads(path.read_text(encoding="utf-8"))
    assert state["type"] == "bpe" and state["vocab_size"] == 400
    assert state["merges"][0] == {"id": 256, "pair": list(next(iter(tok.merges))), "text": [
        tok.id_to_text(i) for i in next(iter(tok.merges))]}
    assert path.read_text(encoding="utf-8").count("\n") > len(tok.merges)  # one merge per line
    again = BPETokenizer.load(path)
    assert again.merges == tok.merges and again.special_tokens == tok.special_tokens
    assert again.vocab == tok.vocab and again.pattern == tok.pattern
    assert again.encode(CORPUS, allowed_special="all") == tok.encode(CORPUS, allowed_special="all")


def test_save_load_custom_pattern(tmp_path):
    tok = BPETokenizer().train("ab ab abab", 258, pattern=r"\S+|\s+")
    tok.save(tmp_path / "t.json")
    assert BPETokenizer.load(tmp_path / "t.json").pattern == r"\S+|\s+"


@pytest.mark.parametrize("pattern", [r"(\w+)|\s+|[^\w\s]+", r"\w+", r"(\w)(\w*)"],
                         ids=["a group", "gaps between matches", "two groups"])
def test_a_custom_pattern_loses_no_text_and_keeps_its_ids_through_tokenizer_json(tmp_path, pattern):
    """A pattern with groups, or one that leaves text between its matches: every piece of the
    text is still encoded (the gaps as pieces of their own, as tokenizers' Split cuts them), so a
    round trip gives the text back and the tokenizer.json export gives the same ids."""
    text = "hello, world  ok; tokens (and more)!"
    tok = BPETokenizer().train(text * 3, 270, pattern=pattern)
    assert tok.decode(tok.encode(text)) == text
    tok.to_tokenizers_json(tmp_path / "tokenizer.json")
    assert BPETokenizer.load(tmp_path / "tokenizer.json").encode(text) == tok.encode(text)


def _edit(state, key, value):
    state = json.loads(json.dumps(state))
    state[key] = value
    return json.dumps(state)


@pytest.fixture(scope="module")
def saved_state(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("bpe") / "bpe.json"
    tok.save(path)
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [
    "truncated", "empty", "not_object", "wrong_type", "wrong_version", "merge_uses_future_id",
    "merge_not_pair", "merge_wrong_id", "repeated_merge", "bad_special_ids", "bad_special_value",
    "bad_pattern", "vocab_size_mismatch", "merges_missing",
])
def test_load_rejects_malformed_files_clearly(tmp_path, saved_state, name):
    state = json.loads(saved_state)
    bad_merges = [dict(m) for m in state["merges"]]
    content = {
        "truncated": saved_state[: len(saved_state) // 2],
        "empty": "",
        "not_object": "[]",
        "wrong_type": _edit(state, "type", "char"),
        "wrong_version": _edit(state, "version", 99),
        "merge_uses_future_id": _edit(state, "merges", bad_merges[:1] + [{"id": 257, "pair": [300, 1]}]),
        "merge_not_pair": _edit(state, "merges", [{"id": 256, "pair": [1, 2, 3]}]),
        "merge_wrong_id": _edit(state, "merges", [{"id": 300, "pair": [1, 2]}]),
        "repeated_merge": _edit(state, "merges", [{"id": 256, "pair": [1, 2]}, {"id": 257, "pair": [1, 2]}]),
        "bad_special_ids": _edit(state, "special_tokens", {EOT: 5}),
        "bad_special_value": _edit(state, "special_tokens", {EOT: "399"}),
        "bad_pattern": _edit(state, "pattern", "(unclosed"),
        "vocab_size_mismatch": _edit(state, "vocab_size", 401),
        "merges_missing": _edit(state, "merges", None),
    }[name]
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match="bad.json is not a valid BPE tokenizer file"):
        BPETokenizer.load(path)


def test_failed_load_leaves_existing_tokenizer_untouched(tok, tmp_path):
    before = dict(tok.merges)
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe garbage")
    with pytest.raises(ValueError):
        BPETokenizer.load(path)
    assert tok.merges == before and tok.vocab_size == 400


def test_same_interface_as_char_tokenizer():
    for name in ["vocab_size", "encode", "decode", "token_strings", "save", "load"]:
        assert hasattr(CharTokenizer, name) and hasattr(BPETokenizer, name), name
