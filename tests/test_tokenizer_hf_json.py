"""Hugging Face tokenizer.json files: read and written with the ids of the tokenizers library."""

from __future__ import annotations

import json
import warnings

import pytest

tokenizers = pytest.importorskip("tokenizers")  # a test dependency; the package never imports it
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402

from tinyllm.checkpoint import tokenizer_from_dict  # noqa: E402
from tinyllm.tokenizer import BPETokenizer  # noqa: E402
from tinyllm.tokenizer.bpe import GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN  # noqa: E402

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = ("First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
          "it's 2024 and I'LL pay 1,234,567.89 for    four spaces; don't  you   think?\r\n"
          "héllo wörld — naïve café 🐟🐠 你好，世界 مرحبا 안녕하세요\t\ttabs\n") * 30
TRICKY = [
    "hello world", "don't  you   think?  ", "It's 2024: 12345678 apples!", "I'LL WE'VE 's 'S 'd",
    "émoji 🐟🐠 naïve café e\u0301 👩\u200d👩\u200d👧", "tabs\tand\r\nnew\n\n\nlines   ", "   leading",
    "你好，世界 مرحبا 안녕하세요", "x" * 300, " " * 100 + "y", "\u00a0nbsp\u2009thin\u3000ideographic",
    "\x00\x01control\x7f", "<|im_start|>user\nhi<|im_end|>\n", "a<|endoftext|>b<|im_end|><|im_start|>",
    "typed <|im_end", "1 22 333 4444 55555", "...!!!???", "", "\n", CORPUS[:500],
]
# Llama 3's split regex (GPT-4's without possessive quantifiers), as tokenizers writes it.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")


def _train_with_tokenizers(path, pre_tokenizer, vocab_size=600, alphabet=True):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizer
    tok.decoder = decoders.ByteLevel()
    initial = pre_tokenizers.ByteLevel.alphabet() if alphabet else []
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=initial,
                                  show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    tok.save(str(path))
    return tok


def _same_ids(theirs: Tokenizer, ours: BPETokenizer):
    for text in TRICKY:
        ids = theirs.encode(text).ids
        assert ours.encode(text, allowed_special="all") == ids, text
        assert ours.decode(ids) == text


@pytest.fixture(scope="module")
def byte_level_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    return path, _train_with_tokenizers(path, pre_tokenizers.ByteLevel(add_prefix_space=False))


def test_a_file_trained_by_tokenizers_loads_with_identical_ids(byte_level_file):
    path, theirs = byte_level_file
    ours = BPETokenizer.from_tokenizers_json(path)
    assert ours.pattern == GPT2_SPLIT_PATTERN and ours.vocab_size == theirs.get_vocab_size()
    assert ours.special_tokens == {s: theirs.token_to_id(s) for s in SPECIALS}
    assert ours.special_tokens == {s: i for i, s in enumerate(SPECIALS)}  # tokenizers puts them first
    _same_ids(theirs, ours)


def test_a_split_regex_file_loads_with_identical_ids(tmp_path):
    path = tmp_path / "tokenizer.json"
    split = pre_tokenizers.Split(tokenizers.Regex(LLAMA3_SPLIT), behavior="isolated")
    theirs = _train_with_tokenizers(path, pre_tokenizers.Sequence([split, pre_tokenizers.ByteLevel(
        add_prefix_space=False, use_regex=False)]))
    _same_ids(theirs, BPETokenizer.from_tokenizers_json(path))


@pytest.mark.parametrize("pattern", ["gpt4", "gpt2"])
def test_a_course_tokenizer_written_as_tokenizer_json_gives_the_same_ids_in_tokenizers(tmp_path, pattern):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the corpus may allow fewer merges than asked
        ours = BPETokenizer().train(CORPUS, 700, pattern=pattern, special_tokens=SPECIALS)
    path = tmp_path / "tokenizer.json"
    ours.to_tokenizers_json(path)
    _same_ids(Tokenizer.from_file(str(path)), ours)
    again = BPETokenizer.from_tokenizers_json(path)
    assert again.to_dict() == ours.to_dict()  # the course's own numbering comes back as a plain tokenizer
    assert json.loads(path.read_text(encoding="utf-8"))["pre_tokenizer"]["type"] == (
        "ByteLevel" if pattern == "gpt2" else "Sequence")
    assert ours.pattern == (GPT2_SPLIT_PATTERN if pattern == "gpt2" else GPT4_SPLIT_PATTERN)


def test_a_tokenizers_file_survives_a_checkpoint_save_and_load(byte_level_file, tmp_path):
    path, theirs = byte_level_file
    ours = BPETokenizer.load(path)  # load() reads a tokenizer.json too
    assert tokenizer_from_dict(json.loads(json.dumps(ours.to_dict()))).encode(CORPUS[:300]) == theirs.encode(
        CORPUS[:300]).ids
    ours.save(tmp_path / "saved.json")
    _same_ids(Tokenizer.from_file(str(tmp_path / "saved.json")), BPETokenizer.load(tmp_path / "saved.json"))
    ours.to_tokenizers_json(tmp_path / "written.json")
    _same_ids(Tokenizer.from_file(str(tmp_path / "written.json")), ours)


def _edited(path, tmp_path, edit):
    data = json.loads(path.read_text(encoding="utf-8"))
    edit(data)
    out = tmp_path / "edited.json"
    out.write_text(json.dumps(data), encoding="utf-8")
    return out


@pytest.mark.parametrize("edit,named", [
    (lambda d: d.update(normalizer={"type": "NFC"}), "the normalizer 'NFC'"),
    (lambda d: d["pre_tokenizer"].update(add_prefix_space=True), "add_prefix_space=true"),
    (lambda d: d.update(pre_tokenizer={"type": "Metaspace", "replacement": "▁"}), "pre_tokenizer Metaspace"),
    (lambda d: d.update(post_processor={"type": "TemplateProcessing"}), "'TemplateProcessing'"),
    (lambda d: d["model"].update(ignore_merges=True), "ignore_merges=True"),
    (lambda d: d["model"].update(dropout=0.1), "dropout=0.1"),
    (lambda d: d["model"].update(type="WordPiece"), "the model 'WordPiece'"),
    (lambda d: d["added_tokens"][0].update(lstrip=True), "with lstrip=true"),
    (lambda d: d.update(pre_tokenizer={"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": " "}, "behavior": "Removed", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]}), "behavior 'Removed'"),
])
def test_what_cannot_be_reproduced_is_refused_by_name(byte_level_file, tmp_path, edit, named):
    path, _ = byte_level_file
    with pytest.raises(ValueError, match=f"edited.json: .*{named}.*not support"):
        BPETokenizer.from_tokenizers_json(_edited(path, tmp_path, edit))


def test_a_vocabulary_without_every_byte_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "tokenizer.json"
    _train_with_tokenizers(path, pre_tokenizers.ByteLevel(add_prefix_space=False), alphabet=False)
    with pytest.raises(ValueError, match="lacks .* of the 256 bytes.*initial_alphabet"):
        BPETokenizer.from_tokenizers_json(path)


def test_train_accepts_a_tokenizer_json(tmp_path):
    from tinyllm.chat_data import make_conversations, render
    from tinyllm.checkpoint import load_model
    from tinyllm.train import config_from_preset, train

    path = tmp_path / "tokenizer.json"
    theirs = _train_with_tokenizers(path, pre_tokenizers.ByteLevel(add_prefix_space=False), vocab_size=400)
    conversations = make_conversations(n=40, seed=1)
    data = tmp_path / "chats.jsonl"
    data.write_text("".join(json.dumps({"text": render(c)}) + "\n" for c in conversations), encoding="utf-8")
    cfg = config_from_preset("tiny", dataset=str(data), tokenizer=str(path), block_size=64, max_iters=2,
                             eval_interval=0, out_dir=str(tmp_path / "run"), verbose=False)
    train(cfg)
    _, tokenizer, _ = load_model(tmp_path / "run")
    text = render(conversations[0])
    assert tokenizer.encode(text, allowed_special="all") == theirs.encode(text).ids


@pytest.mark.parametrize("edit,problem", [
    (lambda d: d["model"]["merges"].append("a b c"), r"merge \d+ must be"),
    (lambda d: d["model"]["merges"].insert(0, ["zz", "q"]), "merge 0 .* uses a token that no earlier merge"),
    (lambda d: d["model"]["vocab"].update({"Ġzzz": 5000}), "ids must be 0..* without gaps"),
    (lambda d: d["added_tokens"].append({"content": "<x>"}), "an added token must have"),
    (lambda d: d.update(model="BPE"), '"model" must be an object'),
])
def test_a_malformed_file_is_named_with_its_problem(byte_level_file, tmp_path, edit, problem):
    path, _ = byte_level_file
    with pytest.raises(ValueError, match=f"edited.json: .*{problem}"):
        BPETokenizer.from_tokenizers_json(_edited(path, tmp_path, edit))
