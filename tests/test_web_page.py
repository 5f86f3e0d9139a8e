"""The book page "Talk to the model" in a real browser (Chromium, driven by Playwright).

The page (the raw HTML of book/talk_to_the_model.md with the files of book/_vendor, laid
out as in the built book: book/<page>.html and _static/) is served by a static web server
on 127.0.0.1. Every request to any other address is blocked and recorded: the page must
work with no network. Checks: the JavaScript tokenizer gives the package's ids; greedy
generation gives exactly GPT.generate's ids; sampling honours top-k; readable messages
for a missing model file and a browser without WebAssembly.

Needs Debian's chromium (/usr/bin/chromium, or TINYLLM_CHROMIUM). Without it the tests
are skipped with the reason, except where TINYLLM_REQUIRE_BROWSER=1 (CI sets it in
.ci/run): there a missing browser fails.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import json
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from tinyllm.data import load_text
from tinyllm.generate import load_shipped_model
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer.bpe import BPETokenizer

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "talk_to_the_model.md"
VENDOR = ROOT / "book" / "_vendor"
CHROMIUM = os.environ.get("TINYLLM_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium calls home (updates, sync, safe browsing).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
N_TOKENS = 50
CHAT_SPECIALS = ["<|im_start|>", "<|im_end|>"]
# Strings for the JavaScript BPE: non-ASCII (accents, CJK, an emoji split across tokens),
# contractions of the GPT-4 pattern, runs of spaces and newlines, digits, special tokens.
BPE_TEXTS = [
    "", "ROMEO:\nWhat light through yonder window breaks?", "café naïve Zürich 東京 😀 façade",
    "I'LL don't WE'VE they're", "  lots   of\n\n\n spaces  \t\ttabs", "1234567 89 3.14",
    "<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n", "tab\there\r\nCRLF",
]


def _build_web_model():
    """scripts/build_web_model.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_web_model", ROOT / "scripts" / "build_web_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chat_tokenizer() -> BPETokenizer:
    """A small byte-level BPE with the chat special tokens, trained on a slice of the corpus."""
    text = load_text("shakespeare")[:60_000] + " " + " ".join(BPE_TEXTS[2:6])
    return BPETokenizer().train(text, 256 + 120 + len(CHAT_SPECIALS), special_tokens=CHAT_SPECIALS)


def chat_model(tokenizer) -> GPT:
    """An untrained GPT over that vocabulary (any weights will do to compare the ids)."""
    torch.manual_seed(14)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32)
    return GPT(config).eval()


def _browser_or_skip():
    if Path(CHROMIUM).is_file():
        return
    reason = f"no Chromium at {CHROMIUM} (install Debian's chromium, or set TINYLLM_CHROMIUM)"
    if os.environ.get("TINYLLM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TINYLLM_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


def build_site(folder: Path) -> Path:
    """The page and its static files, laid out as in _build/html."""
    raw = re.search(r"```\{raw\} html\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert raw, f"{PAGE.name} has no raw HTML block"
    shutil.copytree(VENDOR, folder / "_static")
    (folder / "book").mkdir()
    html = f'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>{raw.group(1)}</body></html>'
    (folder / "book" / "talk_to_the_model.html").write_text(html, encoding="utf-8")
    return folder


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def chat(tmp_path_factory):
    tokenizer = chat_tokenizer()
    return tokenizer, chat_model(tokenizer)


@pytest.fixture(scope="module")
def server(tmp_path_factory, chat):
    site = build_site(tmp_path_factory.mktemp("site"))
    # A chat model (BPE tokenizer, chat template) next to the shipped one, as the
    # build script would write it for a chat checkpoint.
    _build_web_model().write_web_model(chat[1], chat[0], "chat-test", site / "_static" / "model")
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def open_page(browser, server, tmp_path):
    """open_page(query="", init_script=None) -> (page, blocked): the page loaded, and the
    list of requests it tried to make to anything but our server (blocked)."""
    contexts = []

    def _open(query: str = "", init_script: str | None = None, wait: bool = True):
        context = browser.new_context(service_workers="block")
        contexts.append(context)
        blocked, errors = [], []

        def only_loopback(route):
            host = urlparse(route.request.url).hostname
            if host == "127.0.0.1":
                route.continue_()
            else:
                blocked.append(route.request.url)
                route.abort()

        context.route("**/*", only_loopback)
        if init_script:
            context.add_init_script(init_script)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{server}/book/talk_to_the_model.html{query}")
        if wait:
            page.wait_for_function(
                "document.getElementById('tinyllm-talk').dataset.state !== 'loading'", timeout=120_000)
        page.errors = errors
        return page, blocked

    yield _open
    for context in contexts:
        context.close()


@pytest.fixture(scope="module")
def shipped():
    return load_shipped_model()


def test_greedy_generation_in_the_browser_equals_gpt_generate(open_page, shipped):
    page, blocked = open_page()
    assert page.get_attribute("#tinyllm-talk", "data-state") == "ready", page.inner_text(".talk-status")
    model, tokenizer = shipped
    start = tokenizer.encode("ROMEO:\n")
    expected = model.generate(torch.tensor([start]), N_TOKENS, greedy=True)[0].tolist()
    result = page.evaluate(
        "async ([ids, n]) => await window.tinyllmTalk.generateIds(ids, n, {greedy: true})", [start, N_TOKENS])
    assert result["ids"] == expected
    # Past the context: the page runs the last block_size ids at every step, as
    # GPT.generate does without its cache (the cache would slide in halves instead).
    long_start = tokenizer.encode(("O Romeo, Romeo! wherefore art thou Romeo?\n" * 3)[:110])
    long_expected = model.generate(torch.tensor([long_start]), 40, greedy=True, use_cache=False)[0].tolist()
    assert len(long_expected) > model.config.block_size
    long_result = page.evaluate(
        "async ([ids, n]) => await window.tinyllmTalk.generateIds(ids, n, {greedy: true})", [long_start, 40])
    assert long_result["ids"] == long_expected
    print(f"\nChromium (WebAssembly, 1 thread): {result['tokensPerSecond']:.1f} tokens/s "
          f"({N_TOKENS} greedy tokens, fp32 model, window recomputed each step; shared CPU)")
    assert blocked == [] and page.errors == []


def test_the_form_streams_the_same_text(open_page, shipped):
    page, blocked = open_page()
    model, tokenizer = shipped
    page.fill(".talk-prompt", "KING HENRY:")
    page.fill(".talk-tokens", "30")
    page.check(".talk-greedy")
    page.click(".talk-generate")
    page.wait_for_function("document.getElementById('tinyllm-talk').dataset.state === 'done'", timeout=120_000)
    expected = model.generate(torch.tensor([tokenizer.encode("KING HENRY:")]), 30, greedy=True)[0].tolist()
    assert page.text_content(".talk-output") == tokenizer.decode(expected)
    assert re.search(r"30 tokens in [\d.]+ s: [\d.]+ tokens per second", page.inner_text(".talk-status"))
    assert blocked == [] and page.errors == []


def test_javascript_tokenizer_gives_the_package_ids(open_page, shipped):
    _, tokenizer = shipped
    page, _ = open_page()
    texts = ["", "ROMEO:", "First Citizen:\nBefore we proceed any further, hear me speak.",
             "O—Romeo, Romeo! wherefore art thou Romeo?", "  \n\n  ", "$&'2468;?", "——"]
    got = page.evaluate("texts => texts.map(t => window.tinyllmTalk.encode(t))", texts)
    assert got == [tokenizer.encode(t) for t in texts]
    every_id = list(range(tokenizer.vocab_size))
    assert page.evaluate("ids => window.tinyllmTalk.decode(ids)", every_id) == tokenizer.decode(every_id)
    # Characters outside the vocabulary: both refuse with the same message, naming the
    # same character at the same position (code points, not UTF-16 units: the emoji is
    # one character in Python and here, not two halves).
    for text in ["café", "Romeo—é", "ROMEO: 😀"]:
        with pytest.raises(ValueError, match="at position") as info:
            tokenizer.encode(text)
        message = page.evaluate(
            "t => { try { window.tinyllmTalk.encode(t); return 'no error'; } catch (e) { return e.message; } }", text)
        assert message == str(info.value)


def test_sampling_keeps_to_the_top_k(open_page, shipped):
    model, tokenizer = shipped
    page, _ = open_page()
    start = tokenizer.encode("ROMEO:\nWhat ")
    with torch.no_grad():
        logits = model(torch.tensor([start]))[0][0, -1]
    top3 = set(torch.topk(logits, 3).indices.tolist())
    drawn = page.evaluate(
        """async (ids) => {
             const out = [];
             for (let seed = 0; seed < 40; seed++) {
               const r = await window.tinyllmTalk.generateIds(ids, 1, {temperature: 2.0, topK: 3, seed});
               out.push(r.ids[r.ids.length - 1]);
             }
             const k1 = await window.tinyllmTalk.generateIds(ids, 5, {temperature: 1.5, topK: 1, seed: 1});
             const again = await window.tinyllmTalk.generateIds(ids, 5, {temperature: 1.5, topK: 1, seed: 2});
             return {out, k1: k1.ids, again: again.ids};
           }""", start)
    assert set(drawn["out"]) <= top3, (drawn["out"], top3)
    assert len(set(drawn["out"])) >= 2  # temperature 2 over three tokens: not always the same
    greedy = model.generate(torch.tensor([start]), 5, greedy=True)[0].tolist()
    assert drawn["k1"] == drawn["again"] == greedy  # top-1 sampling is greedy decoding


def test_int8_weights_load_and_generate(open_page, shipped):
    _, tokenizer = shipped
    page, blocked = open_page("?precision=int8")
    status = page.inner_text(".talk-status")
    assert page.get_attribute("#tinyllm-talk", "data-state") == "ready", status
    assert "int8" in status
    result = page.evaluate("async () => await window.tinyllmTalk.generateIds([0], 20, {greedy: true})")
    text = tokenizer.decode(result["ids"])
    assert len(result["ids"]) == 21 and text.strip()
    assert blocked == []


def test_missing_model_file_shows_a_readable_message(open_page):
    page, blocked = open_page("?model=no-such-model")
    assert page.get_attribute("#tinyllm-talk", "data-state") == "error"
    status = page.inner_text(".talk-status")
    assert "is missing" in status and "no-such-model.json" in status and "HTTP 404" in status, status
    assert blocked == []


def test_browser_without_webassembly_shows_a_readable_message(open_page):
    page, _ = open_page(init_script="delete globalThis.WebAssembly;")
    assert page.get_attribute("#tinyllm-talk", "data-state") == "error"
    status = page.inner_text(".talk-status")
    assert "WebAssembly" in status and "lacks" in status, status


def test_page_text_states_the_true_sizes():
    manifest = json.loads((VENDOR / "model" / "shakespeare-char.json").read_text(encoding="utf-8"))
    text = PAGE.read_text(encoding="utf-8")
    assert f"{manifest['bytes'] / 1e6:.1f} MB" in text and f"{manifest['bytes_int8'] / 1e6:.1f} MB" in text
    assert f"{manifest['block_size']} characters" in text
    assert f"{manifest['vocab_size']} characters" in text
    assert (VENDOR / "model" / manifest["onnx"]).stat().st_size == manifest["bytes"]


def test_javascript_bpe_tokenizer_gives_the_package_ids(open_page, chat):
    tokenizer, _ = chat
    page, _ = open_page()
    state = _build_web_model().tokenizer_state(tokenizer)
    got = page.evaluate(
        """([state, texts]) => {
             const t = window.tinyllmTokenizer.fromDict(state);
             return texts.map((s) => { const ids = t.encode(s, "all"); return [ids, t.decode(ids)]; });
           }""", [state, BPE_TEXTS])
    for text, (ids, decoded) in zip(BPE_TEXTS, got):
        assert ids == tokenizer.encode(text, allowed_special="all"), text
        assert decoded == tokenizer.decode(ids) == text
    # Half of an emoji's bytes decodes to U+FFFD on both sides; special tokens in plain
    # text are refused on both sides.
    emoji = tokenizer.encode("😀")
    assert page.evaluate("([s, ids]) => window.tinyllmTokenizer.fromDict(s).decode(ids)",
                         [state, emoji[:1]]) == tokenizer.decode(emoji[:1])
    with pytest.raises(ValueError, match="special token"):
        tokenizer.encode("<|im_end|>")
    message = page.evaluate(
        """(s) => { try { window.tinyllmTokenizer.fromDict(s).encode("<|im_end|>"); return "no error"; }
                    catch (e) { return e.message; } }""", state)
    assert "special token '<|im_end|>'" in message


def test_chat_model_uses_the_chat_template(open_page, chat):
    tokenizer, model = chat
    page, blocked = open_page("?model=chat-test")
    assert page.get_attribute("#tinyllm-talk", "data-state") == "ready", page.inner_text(".talk-status")
    assert page.inner_text(".talk-prompt-label") == "Your message"
    assert "chat model" in page.inner_text(".talk-status")
    message = "Who are you?"
    page.fill(".talk-prompt", message)
    page.fill(".talk-tokens", "12")
    page.check(".talk-greedy")
    page.click(".talk-generate")
    page.wait_for_function("document.getElementById('tinyllm-talk').dataset.state === 'done'", timeout=120_000)
    prompt = tokenizer.encode(f"<|im_start|>user\n{message}<|im_end|>\n<|im_start|>assistant\n",
                              allowed_special="all")
    new = model.generate(torch.tensor([prompt]), 12, greedy=True)[0, len(prompt):].tolist()
    stop = tokenizer.special_tokens["<|im_end|>"]
    new = new[: new.index(stop)] if stop in new else new  # the reply ends at <|im_end|>
    assert page.text_content(".talk-output") == tokenizer.decode(new)
    # A message that spells a special token is refused in words, not silently obeyed.
    page.fill(".talk-prompt", "hi<|im_end|>")
    page.click(".talk-generate")
    page.wait_for_function("document.getElementById('tinyllm-talk').dataset.state === 'error'", timeout=60_000)
    assert "special token '<|im_end|>'" in page.inner_text(".talk-status")
    assert blocked == [] and page.errors == []
