"""Speed of the book page's models with and without the KV cache (a benchmark, never a test).

    python benchmarks/bench_web.py [--tokens 100] [--repeats 3] [--no-browser]

For each web model of book/_vendor/model (the chat assistant and the Shakespeare model,
fp32, as scripts/build_web_model.py wrote them), greedy decoding from a short prompt:

- Python, onnxruntime (CPU, one thread): the KV-cached graph (each new token one
  position) against the graph without a cache (``tinyllm.export_onnx.to_onnx``, exported
  here, running the last block_size ids at every step);
- Chromium (Debian's /usr/bin/chromium through Playwright, onnxruntime-web, WebAssembly,
  one thread): the page's generateIds with its cache and with ``useCache: false`` (the
  same graph given the whole window at every step).

Both ways must produce the same ids (checked). Prints tokens per second, best of
``--repeats``, and the load average: on a shared machine the figures are lower and noisier
than on an idle one.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import importlib.util
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "book" / "_vendor" / "model"


def _test_web_page():
    """tests/test_web_page.py as a module: the page's layout and Chromium's flags live there."""
    spec = importlib.util.spec_from_file_location("test_web_page", ROOT / "tests" / "test_web_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def starts():
    """name -> (model, start ids): the prompt each model continues."""
    from tinyllm.chat import load_chat_model, prompt_ids
    from tinyllm.generate import load_shipped_model

    chat_model, chat_tokenizer = load_chat_model()
    char_model, char_tokenizer = load_shipped_model()
    question = [{"role": "user", "content": "are you hungry?"}]
    return {
        "chat-cpu": (chat_model, prompt_ids(chat_tokenizer, question)),
        "shakespeare-char": (char_model, char_tokenizer.encode("ROMEO:\n")),
    }


def best(repeats, fn, *args):
    """(best seconds, result) of ``repeats`` calls of ``fn(*args)``."""
    seconds, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args)
        seconds = min(seconds, time.perf_counter() - t0)
    return seconds, result


def python_rows(jobs, n, repeats):
    from tinyllm.export_onnx import onnx_generate, onnx_generate_cached, session, to_onnx

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (model, start) in jobs.items():
            cached = session(MODELS / f"{name}.onnx")
            plain = session(to_onnx(model, Path(tmp) / f"{name}.onnx"))
            block = model.config.block_size
            t_cached, ids_cached = best(repeats, onnx_generate_cached, cached, start, n, model.config)
            t_plain, ids_plain = best(repeats, onnx_generate, plain, start, n, block)
            # Within the window both see the same tokens; past it the cache slides in halves.
            if len(start) + n <= block:
                assert ids_cached == ids_plain, f"{name}: the cache changed the greedy ids"
            rows.append(("Python onnxruntime", name, n / t_cached, n / t_plain))
    return rows


GENERATE = ("async ([ids, n, useCache]) => "
            "await window.tinyllmTalk.generateIds(ids, n, {greedy: true, useCache})")
READY = "document.getElementById('tinyllm-talk').dataset.state === 'ready'"


def page_speeds(browser, url, start, n, repeats):
    """The page's best tokens/s and ids, with the cache and without: two dicts."""
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function(READY, timeout=120_000)
    out = []
    for use_cache in (True, False):
        results = [page.evaluate(GENERATE, [start, n, use_cache]) for _ in range(repeats)]
        out.append({"speed": max(r["tokensPerSecond"] for r in results), "ids": results[0]["ids"]})
    page.close()
    return out


def chromium_rows(jobs, n, repeats):
    page_module = _test_web_page()
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        site = page_module.build_site(Path(tmp))
        handler = functools.partial(page_module._QuietHandler, directory=str(site))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            url = f"http://127.0.0.1:{httpd.server_port}/book/talk_to_the_model.html"
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=page_module.CHROMIUM,
                                            args=page_module.CHROMIUM_ARGS)
                for name, (model, start) in jobs.items():
                    cached, plain = page_speeds(browser, f"{url}?model={name}", start, n, repeats)
                    if len(start) + n <= model.config.block_size:
                        assert cached["ids"] == plain["ids"], f"{name}: the cache changed the ids"
                    rows.append(("Chromium onnxruntime-web", name, cached["speed"], plain["speed"]))
                browser.close()
        finally:
            httpd.shutdown()
            httpd.server_close()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=100, help="new tokens per run (default 100)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="only the Python rows")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    jobs = starts()
    print(f"load average {os.getloadavg()[0]:.1f}; greedy, {args.tokens} new tokens, fp32, one thread, "
          f"best of {args.repeats}")
    rows = python_rows(jobs, args.tokens, args.repeats)
    chromium = _test_web_page().CHROMIUM
    if args.no_browser:
        pass
    elif not Path(chromium).is_file():
        print(f"no Chromium at {chromium}: the browser rows are left out")
    else:
        rows += chromium_rows(jobs, args.tokens, args.repeats)
    print(f"{'runtime':26} {'model':18} {'KV cache':>12} {'no cache':>12} {'speed-up':>9}")
    for runtime, name, cached, plain in rows:
        print(f"{runtime:26} {name:18} {cached:9.1f} t/s {plain:9.1f} t/s {cached / plain:8.1f}x")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
