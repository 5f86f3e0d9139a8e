"""Chromium for the tests that load pages (not a test file itself).

Debian's Chromium (/usr/bin/chromium, or TINYLLM_CHROMIUM), driven by Playwright; a
static web server on 127.0.0.1 for a folder; every request to any other address is
blocked and recorded. Without the browser a test is skipped with the reason, except where
TINYLLM_REQUIRE_BROWSER=1 (CI sets it in .ci/run): there a missing browser fails.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import pytest

CHROMIUM = os.environ.get("TINYLLM_CHROMIUM", "/usr/bin/chromium")
# Without the background-networking flags Chromium calls home (updates, sync, safe browsing).
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def browser_or_skip() -> None:
    if Path(CHROMIUM).is_file():
        return
    reason = f"no Chromium at {CHROMIUM} (install Debian's chromium, or set TINYLLM_CHROMIUM)"
    if os.environ.get("TINYLLM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"TINYLLM_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a browser that closes a page mid-download is not an error of the site


@contextlib.contextmanager
def serve(folder: Path):
    """``with serve(folder) as url``: ``folder`` served on 127.0.0.1 at ``url`` (no slash)."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    httpd = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def loopback_context(browser, blocked: Callable[[str], None], allow_files: bool = False, **options):
    """A new browser context whose requests reach 127.0.0.1 only (and ``file://`` pages where
    ``allow_files``); any other is aborted and its URL handed to ``blocked``. Routing every
    request also turns Playwright's HTTP cache off, so each visit loads afresh; service
    workers are blocked, since their requests would bypass the routing."""
    context = browser.new_context(service_workers="block", **options)

    def only_loopback(route):
        url = route.request.url
        if urlparse(url).hostname == "127.0.0.1" or (allow_files and url.startswith("file://")):
            route.continue_()
        else:
            blocked(url)
            route.abort()

    context.route("**/*", only_loopback)
    return context
