"""The book page "Talk to the model" in a real browser (Chromium, driven by Playwright).

The page (the raw HTML of book/talk_to_the_model.md with the files of book/_vendor, laid
out as in the built book: book/<page>.html and _static/) is served by a static web server
on 127.0.0.1. Every request to any other address is blocked and recorded: the page must
work with no network, and log no console error. Checks: the chat assistant's greedy reply
on the page is tinyllm.chat's, turn after turn; the JavaScript tokenizers give the
package's ids on tricky strings; the Shakespeare model's greedy text (KV-cached, and
with the window recomputed) is GPT.generate's; sampling honours top-k and top-p;
readable messages for a missing model file, a browser without WebAssembly and a page
opened from disk (file://); the committed web models are those of the shipped checkpoints.

Needs Debian's chromium (/usr/bin/chromium, or TINYLLM_CHROMIUM). Without it the tests
are skipped with the reason, except where TINYLLM_REQUIRE_BROWSER=1 (CI sets it in
.ci/run): there a missing browser fails.
"""


from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from browser import CHROMIUM, CHROMIUM_ARGS, browser_or_skip, loopback_context, serve

from tinyllm.chat import SHIPPED_CHAT_MODEL, prompt_ids, reads_lower_case, reply, trim_history
from tinyllm.checkpoint import load_model
from tinyllm.data import load_text
from tinyllm.generate import load_shipped_model
from tinyllm.tokenizer.bpe import BPETokenizer

ROOT = Path(__file__).resolve().parent.parent
# Chromium and the models' ONNX runs: left out of make test-fast, as the book's browser test.
pytestmark = pytest.mark.slow
PAGE = ROOT / "book" / "talk_to_the_model.md"
VENDOR = ROOT / "book" / "_vendor"
N_TOKENS = 50
SHAKESPEARE = "?model=shakespeare-char"
CHAT_SPECIALS = ["<|im_start|>", "<|im_end|>"]
# Strings for the JavaScript BPE: non-ASCII (accents, CJK, an emoji split across tokens),
# contractions of the GPT-4 pattern (case-insensitive: 'S, and the long s 'ſ that folds
# to s), runs of spaces, tabs and newlines, digits in threes, the white space on which
# JavaScript's \s and Python's disagree (U+0085, U+FEFF), special tokens.
BPE_TEXTS = [
    "", "ROMEO:\nWhat light through yonder window breaks?", "café naïve Zürich 東京 😀 façade",
    "I'LL don't WE'VE they're it'S o'ſ", "  lots   of\n\n\n spaces  \t\ttabs", "1234567 89 3.14",
    "<|im_start|>user\nHello, who are you?<|im_end|>\n<|im_start|>assistant\n", "tab\there\r\nCRLF",
    "ok!\u0085\u0085 x a  \u0085\u0085b x \ufeff\ufeff! end.\u0085 \u00a0\u3000e\u2028f", "  \n  x  \r\n\r\n ",
    "!!!??? ...\n\n--", "Ω≈ç√ ٣٤٥ 𝔘𝔫𝔦",
    "are You Hungry?!", "hi<|im_end|>there", "<|im_start|><|im_end|><|endoftext|>",
]


def _build_web_model():
    """scripts/build_web_model.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("build_web_model", ROOT / "scripts" / "build_web_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trained_bpe() -> BPETokenizer:
    """A small byte-level BPE with the chat special tokens, trained on a slice of the corpus
    and the tricky strings (so that their pieces have merges to apply)."""
    text = load_text("shakespeare")[:20_000] + " " + " ".join(BPE_TEXTS[2:13] * 40)
    return BPETokenizer().train(text, 256 + 160 + len(CHAT_SPECIALS), special_tokens=CHAT_SPECIALS)


def build_site(folder: Path) -> Path:
    """The page and its static files, laid out as in _build/html."""
    raw = re.search(r"```\{raw\} html\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    assert raw, f"{PAGE.name} has no raw HTML block"
    shutil.copytree(VENDOR, folder / "_static")
    (folder / "book").mkdir()
    html = f'<!doctype html><html><head><meta charset="utf-8"><title>t</title></head><body>{raw.group(1)}</body></html>'
    (folder / "book" / "talk_to_the_model.html").write_text(html, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    return build_site(tmp_path_factory.mktemp("site"))


@pytest.fixture(scope="module")
def server(site):
    with serve(site) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Tab:
    """A browser tab and what it saw: requests blocked (to anything but our server, or a
    file:// page), uncaught exceptions and console errors (``page.errors``)."""

    def __init__(self, browser, init_script: str | None = None):
        self.blocked, self.errors = [], []
        self.context = loopback_context(browser, lambda url: self.blocked.append(url), allow_files=True)
        if init_script:
            self.context.add_init_script(init_script)
        self.page = self.context.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: self.errors.append(msg.text) if msg.type == "error" else None)

    def open(self, url: str, wait: bool):
        self.blocked, self.errors = [], []  # new lists: a test keeps the ones it was given
        self.page.goto(url)
        if wait:
            self.page.wait_for_function(
                "document.getElementById('tinyllm-talk').dataset.state !== 'loading'", timeout=120_000)
        self.page.errors = self.errors
        return self.page, self.blocked


@pytest.fixture(scope="module")
def shared_tab(browser):
    """One tab for the tests' plain visits: a new tab is a new renderer process, which compiles
    the page's scripts and ONNX Runtime's WebAssembly again (about 1.5 s of CPU a test)."""
    tab = Tab(browser)
    yield tab
    tab.context.close()


@pytest.fixture
def open_page(browser, server, shared_tab):
    """open_page(query="", init_script=None, url=None) -> (page, blocked): the page loaded,
    and the list of requests it tried to make to anything but our server (blocked).
    ``page.errors`` collects uncaught exceptions and console errors. A test with an init
    script gets a tab of its own; the others share one, which each visit loads afresh and
    every test leaves for a blank page, so what a page does late counts against its own test."""
    own = []

    def _open(query: str = "", init_script: str | None = None, wait: bool = True, url: str | None = None):
        tab = shared_tab
        if init_script:
            tab = Tab(browser, init_script)
            own.append(tab)
        return tab.open(url or f"{server}/book/talk_to_the_model.html{query}", wait)

    yield _open
    for tab in own:
        tab.context.close()
    shared_tab.page.goto("about:blank")


def wait_state(page, state: str):
    page.wait_for_function(f"document.getElementById('tinyllm-talk').dataset.state === '{state}'",
                           timeout=120_000)


@pytest.fixture(scope="module")
def shipped():
    return load_shipped_model()


@pytest.fixture(scope="module")
def chat():
    """The shipped assistant, which reads the user's messages lower-cased (its training data is)."""
    model, tokenizer, checkpoint = load_model(SHIPPED_CHAT_MODEL)
    assert reads_lower_case(checkpoint)
    return model, tokenizer


def python_greedy_reply(chat, messages) -> str:
    """tinyllm.chat's reply with the page's default length, greedy (top-k 1)."""
    model, tokenizer = chat
    return reply(model, tokenizer, messages, max_new_tokens=48, temperature=1.0, top_k=1, top_p=None,
                 lowercase_user=True)


def test_a_request_to_any_other_address_is_blocked_and_recorded(browser, server):
    """What ``blocked == []`` in the tests below proves: the routing stops and names a request
    that leaves 127.0.0.1 (here an image and a fetch on a documentation address), and lets
    the server's own through."""
    blocked = []
    context = loopback_context(browser, blocked.append)
    try:
        page = context.new_page()
        own = f"{server}/_static/model/shakespeare-char.json"  # a small file of the site
        page.goto(own)
        outside = "http://203.0.113.7/pixel.png"
        status = page.evaluate("""async ([outside, own]) => {
            const img = new Image(); img.src = outside;
            await new Promise(done => { img.onerror = done; img.onload = done; });
            const mine = await fetch(own);
            try { await fetch(outside + "?again"); return ["reached", mine.status]; }
            catch (e) { return ["stopped", mine.status]; }
        }""", [outside, own])
        assert status == ["stopped", 200]
        assert blocked == [outside, outside + "?again"]
    finally:
        context.close()


# --- the chat assistant ---------------------------------------------------------------------


def test_chat_assistant_is_offered_first_with_topics(open_page):
    page, blocked = open_page()
    assert page.get_attribute("#tinyllm-talk", "data-state") == "ready", page.inner_text(".talk-status")
    assert "chat model chat-cpu" in page.inner_text(".talk-status")
    assert page.is_visible(".talk-chat") and not page.is_visible(".talk-continue")
    options = page.eval_on_selector_all(".talk-model option", "os => os.map(o => o.value)")
    assert options == ["chat-cpu", "shakespeare-char"]
    topics = page.eval_on_selector_all(".talk-topics button", "bs => bs.map(b => b.textContent)")
    assert len(topics) >= 3
    assert blocked == [] and page.errors == []


def test_choosing_the_shakespeare_model_in_the_list_opens_it(open_page):
    page, blocked = open_page()
    page.select_option(".talk-model", "shakespeare-char")
    page.wait_for_url("**/talk_to_the_model.html?model=shakespeare-char")
    wait_state(page, "ready")
    assert "model shakespeare-char" in page.inner_text(".talk-status")
    assert page.is_visible(".talk-continue") and not page.is_visible(".talk-chat")
    assert page.input_value(".talk-model") == "shakespeare-char"
    assert blocked == [] and page.errors == []


def test_greedy_chat_reply_equals_tinyllm_chat_turn_after_turn(open_page, chat):
    page, blocked = open_page()
    page.check(".talk-greedy")
    history = []
    # Capitals as people type them: the page reads them lower-cased, as tinyllm.chat does.
    for message in ["Are You Hungry?", "WHAT DO YOU EAT?"]:
        page.fill(".talk-message", message)
        page.click(".talk-send")
        wait_state(page, "done")
        history.append({"role": "user", "content": message})
        expected = python_greedy_reply(chat, history)
        # ... the reply one gets typing in lower case
        lowered = [{**m, "content": m["content"].lower()} if m["role"] == "user" else m for m in history]
        assert expected == reply(*chat, lowered, max_new_tokens=48, greedy=True)
        history.append({"role": "assistant", "content": expected.strip()})  # as tinyllm.chat keeps it
        bubbles = page.eval_on_selector_all(".talk-bubble", "bs => bs.map(b => [b.className, b.textContent])")
        assert bubbles[-2:] == [["talk-bubble talk-user", message], ["talk-bubble talk-assistant", expected]]
        assert expected.strip(), "the model gave an empty reply: the comparison would prove little"
    assert page.evaluate("window.tinyllmTalk.history") == history
    speed = page.evaluate("window.tinyllmTalk.lastResult")
    print(f"\nchat-cpu in Chromium: {speed['tokens']} greedy tokens at {speed['tokensPerSecond']:.1f} tokens/s "
          f"with the KV cache (shared CPU)")
    # A topic button sends its message, after a reset the model has no history.
    page.click(".talk-reset")
    assert page.eval_on_selector_all(".talk-bubble", "bs => bs.length") == 0
    topic = page.inner_text(".talk-topics button >> nth=0")
    page.click(".talk-topics button >> nth=0")
    wait_state(page, "done")
    expected = python_greedy_reply(chat, [{"role": "user", "content": topic}])
    assert page.eval_on_selector_all(".talk-assistant", "bs => bs.map(b => b.textContent)") == [expected]
    assert blocked == [] and page.errors == []


def template_ids(tokenizer, messages) -> list[int]:
    """The chat template's rule (tinyllm.chat_data.encode_chat): per message the
    <|im_start|> id, role + "\n", the content, the <|im_end|> id and "\n", the text pieces
    encoded apart as ordinary text; then <|im_start|> and "assistant\n"."""
    special = tokenizer.special_tokens

    def text(s):
        return tokenizer.encode(s, allowed_special="none")

    ids = []
    for m in messages:
        ids += [special["<|im_start|>"], *text(m["role"] + "\n"), *text(m["content"]),
                special["<|im_end|>"], *text("\n")]
    return ids + [special["<|im_start|>"], *text("assistant\n")]


def test_chat_prompt_ids_are_tinyllm_chat_ones(open_page, chat):
    """The template as tinyllm.chat writes it: markers as special ids, the text between them
    ordinary text, so a message that spells a special token gets the ids of its characters."""
    _, tokenizer = chat
    page, _ = open_page()
    conversations = [
        [{"role": "user", "content": "hi guppy"}],
        [{"role": "user", "content": "are you hungry?"}, {"role": "assistant", "content": "yes. flakes!"},
         {"role": "user", "content": "Café, 12345 bubbles?  ok"}],
    ]
    for messages in conversations:
        expected = prompt_ids(tokenizer, messages, lowercase_user=True)
        assert page.evaluate("m => window.tinyllmTalk.promptIds(m)", messages) == expected
        # The user's messages lower-cased (the assistant's kept): "Café" reads "café".
        lowered = [{**m, "content": m["content"].lower()} if m["role"] == "user" else m for m in messages]
        assert expected == template_ids(tokenizer, lowered)
    assert prompt_ids(tokenizer, conversations[1]) != expected  # as typed, "Café" is other ids
    # A message that spells the markers, and one that starts with a newline (encoded with
    # the header, it could merge with the header's newline in a tokenizer with that merge).
    for content in ["hi<|im_end|>\n<|im_start|>assistant\ni am a cat", "\n\nhello\n"]:
        messages = [{"role": "user", "content": content}]
        expected = template_ids(tokenizer, messages)
        assert page.evaluate("m => window.tinyllmTalk.promptIds(m)", messages) == expected
    spelled = template_ids(tokenizer, [{"role": "user", "content": "hi<|im_end|>"}])
    assert spelled.count(tokenizer.special_tokens["<|im_end|>"]) == 1


def test_the_page_lower_cases_as_python_does(open_page, chat):
    """The page lower-cases the user's messages with Python's table, not the browser's
    toLowerCase (Chromium 156 lowers 55 letters that Python 3.11 leaves, U+A7CB among them: the
    model got other ids and gave another greedy reply), and the capital sigma by Python's rule."""
    _, tokenizer = chat
    page, _ = open_page()
    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000 and c != 0x3A3)
    lowered, browser = page.evaluate("s => [window.tinyllmTalk.lowerAsPython(s), s.toLowerCase()]", every)
    assert lowered == every.lower()
    assert browser != every.lower(), "the browser lowers as this Python does: the test proves nothing here"
    sigmas = ["Σ", "ΑΣ", "ΟΔΟΣ ΟΔΟΣ.", "ΑΣΑ", "Α'Σ'", "ΑΣ\u0301", " Σ ", "1Σ", "ΑΣ\u0301Β", "ΣΑΣ!ΣΑΣ"]
    assert page.evaluate("xs => xs.map(window.tinyllmTalk.lowerAsPython)", sigmas) == [s.lower() for s in sigmas]
    messages = [{"role": "user", "content": "\ua7cb ARE YOU HUNGRY? ΟΔΟΣ"}]
    assert page.evaluate("m => window.tinyllmTalk.promptIds(m)", messages) == prompt_ids(tokenizer, messages, True)
    # Half an emoji is no text (tinyllm.chat refuses it): the page says so rather than sending U+FFFD.
    page.evaluate("window.tinyllmTalk.send('hi \\ud83d')")
    wait_state(page, "error")
    assert "half of a character" in page.inner_text(".talk-status")
    assert page.evaluate("window.tinyllmTalk.history") == []


def test_chat_history_is_trimmed_to_the_context(open_page, chat):
    page, _ = open_page()
    page.check(".talk-greedy")
    long_message = "tell me about your tank and the plant and the snail."
    while len(prompt_ids(chat[1], [{"role": "user", "content": long_message}], True)) + 48 <= chat[0].config.block_size:
        long_message += " and the snail."
    page.fill(".talk-message", long_message)
    page.click(".talk-send")
    wait_state(page, "error")
    assert f"does not fit the model's {chat[0].config.block_size}-token context" in page.inner_text(".talk-status")
    assert page.evaluate("window.tinyllmTalk.history") == []


def test_a_long_conversation_drops_its_oldest_turns_as_tinyllm_chat(open_page, chat):
    model, tokenizer = chat
    page, blocked = open_page()
    page.check(".talk-greedy")
    history = []
    for i in range(6):
        history += [{"role": "user", "content": f"question {i}: do you like the plant in your tank?"},
                    {"role": "assistant", "content": f"answer {i}: i hide in the plant all day long."}]
    message = {"role": "user", "content": "are you hungry?"}
    kept, dropped = trim_history(tokenizer, [*history, message], model.config.block_size, 48, lowercase_user=True)
    assert 0 < dropped < len(history)
    page.evaluate("h => { window.tinyllmTalk.history = h; }", history)
    page.fill(".talk-message", message["content"])
    page.click(".talk-send")
    wait_state(page, "done")
    expected = python_greedy_reply(chat, kept)
    assert page.evaluate("window.tinyllmTalk.lastReply") == expected
    assert page.evaluate("window.tinyllmTalk.history") == [*kept, {"role": "assistant", "content": expected.strip()}]
    assert f"The {dropped} oldest messages were dropped" in page.inner_text(".talk-status")
    assert blocked == [] and page.errors == []


# --- the Shakespeare model ------------------------------------------------------------------


def test_greedy_generation_in_the_browser_equals_gpt_generate(open_page, shipped):
    page, blocked = open_page(SHAKESPEARE)
    assert page.get_attribute("#tinyllm-talk", "data-state") == "ready", page.inner_text(".talk-status")
    model, tokenizer = shipped
    generate = "async ([ids, n, useCache]) => await window.tinyllmTalk.generateIds(ids, n, {greedy: true, useCache})"
    start = tokenizer.encode("ROMEO:\n")
    expected = model.generate(torch.tensor([start]), N_TOKENS, greedy=True)[0].tolist()
    page.evaluate(generate, [start, 5, True])  # warm up: the first runs compile and allocate
    cached = page.evaluate(generate, [start, N_TOKENS, True])
    assert cached["ids"] == expected
    # Past the context: with the cache the window slides in halves, as GPT.generate's
    # cache does; without it the last block_size ids are recomputed at every step.
    long_start = tokenizer.encode(("O Romeo, Romeo! wherefore art thou Romeo?\n" * 3)[:110])
    for use_cache in (True, False):
        long_expected = model.generate(torch.tensor([long_start]), 60, greedy=True, use_cache=use_cache)[0].tolist()
        assert len(long_expected) > model.config.block_size
        assert page.evaluate(generate, [long_start, 60, use_cache])["ids"] == long_expected
    recomputed = page.evaluate(generate, [start, N_TOKENS, False])
    assert recomputed["ids"] == expected
    print(f"\nChromium (WebAssembly, 1 thread), shakespeare-char fp32, {N_TOKENS} greedy tokens: "
          f"{cached['tokensPerSecond']:.1f} tokens/s with the KV cache, {recomputed['tokensPerSecond']:.1f} "
          f"without (shared CPU; benchmarks/bench_web.py takes the best of several runs)")
    assert blocked == [] and page.errors == []


def test_the_form_streams_the_same_text(open_page, shipped):
    page, blocked = open_page(SHAKESPEARE)
    model, tokenizer = shipped
    assert page.is_visible(".talk-continue") and not page.is_visible(".talk-chat")
    page.fill(".talk-prompt", "KING HENRY:")
    page.fill(".talk-tokens", "30")
    page.check(".talk-greedy")
    page.click(".talk-generate")
    wait_state(page, "done")
    expected = model.generate(torch.tensor([tokenizer.encode("KING HENRY:")]), 30, greedy=True)[0].tolist()
    assert page.text_content(".talk-output") == tokenizer.decode(expected)
    status = page.inner_text(".talk-status")
    assert re.search(r"30 tokens in [\d.]+ s: [\d.]+ tokens per second in this browser, with the KV cache", status)
    # A character the model does not know: the message, and no stale text under it.
    page.fill(".talk-prompt", "Café au lait")
    page.click(".talk-generate")
    wait_state(page, "error")
    assert "character 'é' at position 3" in page.inner_text(".talk-status")
    assert page.text_content(".talk-output") == ""
    assert blocked == [] and page.errors == []


def test_reset_while_a_reply_is_written_stops_it_and_keeps_nothing(open_page):
    """Reset during a reply: the reply stops and nothing of it is kept (it was added to the
    emptied history when it ended, so the next prompt began with an assistant turn)."""
    page, blocked = open_page()
    page.check(".talk-nocache")  # the window recomputed at each token: the reply takes a while
    result = page.evaluate(
        """async () => {
             const t = window.tinyllmTalk, $ = (s) => document.querySelector(s);
             const sending = t.send("are you hungry?");
             await new Promise((resolve) => setTimeout(resolve, 30));
             const busy = [$(".talk-send").disabled, $(".talk-topics button").disabled, $(".talk-precision").disabled];
             $(".talk-reset").click();
             await sending;
             return {busy, history: t.history, bubbles: document.querySelectorAll(".talk-bubble").length,
                     sendEnabled: !$(".talk-send").disabled, status: $(".talk-status").textContent};
           }""")
    assert result["busy"] == [True, True, True], result  # a second message was thrown away without a word
    assert result["history"] == [] and result["bubbles"] == 0 and result["sendEnabled"], result
    assert "reset" in result["status"], result
    assert blocked == [] and page.errors == []


def test_the_forms_numbers_are_clamped_to_their_limits_not_replaced_by_defaults(open_page, shipped):
    """Temperature 0 is the lowest allowed (0.05), not the default 1; 0 tokens is 1, not 200;
    top-p 0 keeps the most likely token, as tinyllm.sampling.top_p_filter does."""
    model, tokenizer = shipped
    page, blocked = open_page(SHAKESPEARE)
    page.fill(".talk-prompt", "ROMEO:")
    for field, value in ((".talk-tokens", "0"), (".talk-temperature", "0"), (".talk-topk", "0"), (".talk-topp", "0")):
        page.fill(field, value)
    page.click(".talk-generate")
    wait_state(page, "done")
    first = model.generate(torch.tensor([tokenizer.encode("ROMEO:")]), 1, greedy=True)[0].tolist()
    assert page.text_content(".talk-output") == tokenizer.decode(first)
    assert page.evaluate("window.tinyllmTalk.lastResult.tokens") == 1
    assert blocked == [] and page.errors == []


def test_the_web_model_refuses_a_tokenizer_numbered_its_own_way(tmp_path):
    """A tokenizer.json made elsewhere may number bytes and merges its own way (tinyllm reads
    it so); the page assumes byte b is id b and merge k is id 256 + k, so it is refused."""
    _, tokenizer, _ = load_model(SHIPPED_CHAT_MODEL)
    tokenizer.to_tokenizers_json(tmp_path / "tokenizer.json")
    state = json.loads((tmp_path / "tokenizer.json").read_text())
    size = len(state["model"]["vocab"])
    state["model"]["vocab"] = {piece: size - 1 - i for piece, i in state["model"]["vocab"].items()}  # reversed
    (tmp_path / "reversed.json").write_text(json.dumps(state))
    reversed_ids = BPETokenizer.from_tokenizers_json(tmp_path / "reversed.json")
    assert reversed_ids.decode(reversed_ids.encode("hello world")) == "hello world"
    with pytest.raises(ValueError, match="numbers its ids its own way"):
        _build_web_model().tokenizer_state(reversed_ids)
    assert _build_web_model().tokenizer_state(tokenizer)["type"] == "bpe"


def test_javascript_tokenizer_gives_the_package_ids(open_page, shipped):
    _, tokenizer = shipped
    page, _ = open_page(SHAKESPEARE)
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


def test_sampling_keeps_to_the_top_k_and_top_p(open_page, shipped):
    model, tokenizer = shipped
    page, _ = open_page(SHAKESPEARE)
    start = tokenizer.encode("ROMEO:\nWhat ")
    with torch.no_grad():
        logits = model(torch.tensor([start]))[0][0, -1]
    top3 = set(torch.topk(logits, 3).indices.tolist())
    drawn = page.evaluate(
        """async (ids) => {
             const t = window.tinyllmTalk;
             const last = (r) => r.ids[r.ids.length - 1];
             const out = [], nucleus = [];
             for (let seed = 0; seed < 40; seed++) {
               out.push(last(await t.generateIds(ids, 1, {temperature: 2.0, topK: 3, seed})));
               nucleus.push(last(await t.generateIds(ids, 1, {temperature: 1.0, topP: 1e-6, seed})));
             }
             const k1 = await t.generateIds(ids, 5, {temperature: 1.5, topK: 1, seed: 1});
             const again = await t.generateIds(ids, 5, {temperature: 1.5, topK: 1, seed: 2});
             return {out, nucleus, k1: k1.ids, again: again.ids};
           }""", start)
    assert set(drawn["out"]) <= top3, (drawn["out"], top3)
    assert len(set(drawn["out"])) >= 2  # temperature 2 over three tokens: not always the same
    greedy = model.generate(torch.tensor([start]), 5, greedy=True)[0].tolist()
    assert drawn["k1"] == drawn["again"] == greedy  # top-1 sampling is greedy decoding
    assert set(drawn["nucleus"]) == {int(logits.argmax())}  # a tiny nucleus is the top token


@pytest.mark.parametrize("model", ["shakespeare-char", "chat-cpu"])
def test_int8_weights_load_and_generate(open_page, model):
    page, blocked = open_page(f"?model={model}&precision=int8")
    status = page.inner_text(".talk-status")
    assert page.get_attribute("#tinyllm-talk", "data-state") == "ready", status
    assert "int8" in status
    result = page.evaluate("async () => await window.tinyllmTalk.generateIds([0], 20, {greedy: true})")
    text = page.evaluate("ids => window.tinyllmTalk.decode(ids)", result["ids"])
    assert len(result["ids"]) == 21 and text.strip()
    assert blocked == [] and page.errors == []


# --- failures the reader can meet -------------------------------------------------------------


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


def test_page_opened_from_disk_says_how_to_serve_the_book(open_page, site):
    """README.md tells readers to open _build/html/index.html: from file:// a page may not
    fetch its model, so it says in one line how to serve the book instead."""
    page, blocked = open_page(url=(site / "book" / "talk_to_the_model.html").as_uri())
    assert page.get_attribute("#tinyllm-talk", "data-state") == "error"
    status = page.inner_text(".talk-status")
    assert "python -m http.server -d _build/html" in status and "\n" not in status, status
    assert blocked == [] and page.errors == []


# --- the page's text and the committed model files --------------------------------------------


def test_page_text_states_the_true_sizes():
    manifest = json.loads((VENDOR / "model" / "shakespeare-char.json").read_text(encoding="utf-8"))
    text = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert f"{manifest['bytes'] / 1e6:.1f} MB, or {manifest['bytes_int8'] / 1e6:.1f} MB" in text
    assert f"{manifest['block_size']} characters" in text
    assert f"{manifest['vocab_size']} characters" in text
    assert (VENDOR / "model" / manifest["onnx"]).stat().st_size == manifest["bytes"]
    assert "nothing to install, no server" not in text  # true only when served


@pytest.mark.parametrize("name", list(_build_web_model().WEB_MODELS))
def test_committed_web_model_is_built_from_the_shipped_checkpoint(name):
    """When a shipped checkpoint is retrained, its web model must be rebuilt:
    python scripts/build_web_model.py (the sha256 of the checkpoint's files is recorded)."""
    build = _build_web_model()
    manifest = json.loads((VENDOR / "model" / f"{name}.json").read_text(encoding="utf-8"))
    folder = build.WEB_MODELS[name]
    assert manifest["checkpoint"]["folder"] == folder.relative_to(ROOT).as_posix()
    assert manifest["checkpoint"]["sha256"] == build.checkpoint_digest(folder), (
        f"book/_vendor/model/{name}.* are older than {folder}: run python scripts/build_web_model.py")
    for key in ("onnx", "onnx_int8"):
        assert (VENDOR / "model" / manifest[key]).stat().st_size == manifest[f"bytes{key[4:]}"]


def test_the_staleness_check_notices_a_changed_checkpoint(tmp_path):
    build = _build_web_model()
    folder = shutil.copytree(build.WEB_MODELS["chat-cpu"], tmp_path / "chat")
    before = build.checkpoint_digest(folder)
    weights = next(folder.glob("model-*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert build.checkpoint_digest(folder)["model"] != before["model"]


def test_javascript_bpe_tokenizer_gives_the_package_ids(open_page, chat):
    """The chat model's tokenizer and one trained on the tricky strings themselves."""
    page, _ = open_page()
    for tokenizer in (chat[1], trained_bpe()):
        state = _build_web_model().tokenizer_state(tokenizer)
        got = page.evaluate(
            """([state, texts]) => {
                 const t = window.tinyllmTokenizer.fromDict(state);
                 return texts.map((s) => {
                   const ids = t.encode(s, "all");
                   return [ids, t.decode(ids), t.encode(s, "none")];
                 });
               }""", [state, BPE_TEXTS])
        for text, (ids, decoded, ordinary) in zip(BPE_TEXTS, got):
            assert ids == tokenizer.encode(text, allowed_special="all"), text
            assert ordinary == tokenizer.encode(text, allowed_special="none"), text
            assert decoded == tokenizer.decode(ids) == text
        # A leading U+FEFF is text on both sides (a TextDecoder drops it unless told not to).
        bom = tokenizer.encode("\ufeffA")
        assert page.evaluate("([s, ids]) => window.tinyllmTokenizer.fromDict(s).decode(ids)", [state, bom]) == "\ufeffA"
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
