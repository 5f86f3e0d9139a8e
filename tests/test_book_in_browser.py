"""Every page of the built book in a real browser (Chromium, driven by Playwright).

The session's book build (conftest.py ``book``) is served on 127.0.0.1 and every page is
loaded once, as a first visit (no HTTP cache, storage cleared), in a window 1280 px wide; every
request to any other address is blocked. Checks: no console error, no uncaught exception
and no failed or blocked request on any page; every widget is drawn; code and printed
outputs fit the text column at 1280 px (no sideways scrolling), and so would a line of 80
characters; a table in an output wraps instead of running past the column; the widget
manager finds its icon fonts whichever of its modules asks for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from browser import CHROMIUM, CHROMIUM_ARGS, browser_or_skip, loopback_context, serve

ROOT = Path(__file__).resolve().parent.parent
EMBED_AMD = ROOT / "book" / "_vendor" / "embed-amd.js"
WIDTH = 1280
CODE_WIDTH = 80  # characters: the longest code or output line a chapter may hold
PROBE_PAGE = "chapters/01_text_to_numbers.html"
REDIRECT = re.compile(r"""<meta http-equiv="Refresh" content="0; url=([^"]+)" """)
WIDGET_VIEWS = 'script[type="application/vnd.jupyter.widget-view+json"]'

# What one page shows: its boxes that scroll sideways (with their first line), its widgets
# and the widgets drawn, the tables in outputs wider than their output box.
MEASURE = """(widgetViews) => {
  const scrolls = (e) => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1;
  const firstLine = (e) => e.textContent.split("\\n")[0].slice(0, 60);
  const boxes = (selector) => [...document.querySelectorAll(selector)].filter(scrolls).map(firstLine);
  return {
    code: boxes(".cell_input pre, article div.highlight pre:not(.cell_output pre)"),
    outputs: boxes(".cell_output pre"),
    widgets: document.querySelectorAll(widgetViews).length,
    drawn: [...document.querySelectorAll(".widget-subarea")].filter(e => e.children.length).length,
    wideTables: [...document.querySelectorAll(".cell_output table")]
      .filter(t => t.getBoundingClientRect().width > t.closest(".cell_output").clientWidth + 1)
      .map(t => t.textContent.slice(0, 60)),
  };
}"""
# Every widget view has been drawn by the widget manager (or there is none).
ALL_DRAWN = """(widgetViews) => document.querySelectorAll(widgetViews).length
  <= [...document.querySelectorAll(".widget-subarea")].filter(e => e.children.length).length"""

# The folder require.js places each widget-manager module in: the module loads its icon
# fonts from there.
MODULE_FOLDERS = """(names) => names.map((name) => {
  const url = new URL(window.require.toUrl(name), document.baseURI);
  return url.pathname.slice(0, url.pathname.lastIndexOf("/") + 1);
})"""

# Boxes made up in a chapter page, measured, removed: a code box and a printed output
# each holding a line of CODE_WIDTH characters, and an output holding a table of long
# unbreakable cells.
PROBE = """(width) => {
  const fits = (box) => {
    const line = box.cloneNode(false);
    line.textContent = "x".repeat(width);
    box.parentElement.appendChild(line);
    const fit = line.scrollWidth <= line.clientWidth;
    line.remove();
    return fit;
  };
  const lineFits = fits(document.querySelector(".cell_input pre"));
  const printedLineFits = fits(document.querySelector(".cell_output pre"));
  const output = document.querySelector(".cell_output");
  const table = document.createElement("table");
  const cell = '<td style="white-space: nowrap">' + "tokens per second ".repeat(4) + "</td>";
  table.innerHTML = "<tr>" + cell.repeat(5) + "</tr>";
  output.appendChild(table);
  const tableFits = table.getBoundingClientRect().width <= output.clientWidth + 1;
  table.remove();
  return {lineFits, printedLineFits, tableFits};
}"""


@dataclass
class Visit:
    problems: list[str] = field(default_factory=list)  # console errors, failed requests
    shown: dict = field(default_factory=dict)  # MEASURE's answer
    probe: dict | None = None  # PROBE's answer (on PROBE_PAGE only)
    module_folders: list[str] = field(default_factory=list)  # on pages with widgets


class Visitor:
    """One browser tab that visits page after page, each as a first visit.

    A tab of its own per page cost about 1.5 s of CPU each (a new renderer process), 60 % of
    this file's time; one tab costs a navigation. Each visit still starts empty: routing every
    request turns Playwright's HTTP cache off, the page's storage is cleared before it is
    left, and it is left for a blank page before the next visit starts, so whatever a page
    reports after it settles is still counted against it.
    """

    def __init__(self, browser):
        self.found = Visit()
        context = loopback_context(browser, lambda url: self.found.problems.append(f"blocked request to {url}"),
                                   viewport={"width": WIDTH, "height": 900})
        self.page = page = context.new_page()
        page.on("console", lambda m: m.type == "error" and self.found.problems.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.found.problems.append(f"uncaught exception: {e}"))
        page.on("requestfailed", lambda r: self.found.problems.append(f"failed request: {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.found.problems.append(f"HTTP {r.status}: {r.url}"))

    def visit(self, url: str, name: str, html: str) -> Visit:
        found = self.found = Visit()
        page = self.page
        try:
            page.goto(f"{url}/{name}", wait_until="load")
            redirect = REDIRECT.search(html)
            if redirect:
                page.wait_for_url(f"**/{redirect.group(1)}")
            # fonts, the widget manager's modules, the Talk page's model: all requests done
            page.wait_for_load_state("networkidle")
            page.wait_for_function(ALL_DRAWN, arg=WIDGET_VIEWS, timeout=30_000)
        except Exception as exc:  # a page that never settles is a problem of that page
            found.problems.append(f"did not settle: {exc}")
        found.shown = page.evaluate(MEASURE, WIDGET_VIEWS)
        if found.shown["widgets"]:
            found.module_folders = page.evaluate(MODULE_FOLDERS, widget_modules())
        if name == PROBE_PAGE:
            found.probe = page.evaluate(PROBE, CODE_WIDTH)
        page.evaluate("() => { localStorage.clear(); sessionStorage.clear(); }")
        page.goto("about:blank")
        return found


def widget_modules() -> list[str]:
    """The modules the vendored widget manager defines (each with its own copy of the style)."""
    return re.findall(r'define\("(@jupyter-widgets/[^"]+)"', EMBED_AMD.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def visits(book):
    browser_or_skip()
    from playwright.sync_api import sync_playwright

    pages = {p.relative_to(book.html).as_posix(): p.read_text(encoding="utf-8") for p in book.pages()}
    with serve(book.html) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        visitor = Visitor(browser)
        found = {name: visitor.visit(url, name, html) for name, html in pages.items()}
        browser.close()
    return found


def test_every_page_loads_without_console_errors_or_failed_requests(visits):
    assert "book/talk_to_the_model.html" in visits and len(visits) > 30
    problems = [f"{name}: {problem}" for name, v in visits.items() for problem in dict.fromkeys(v.problems)]
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems)


def test_every_widget_is_drawn(visits):
    with_widgets = {name: v.shown for name, v in visits.items() if v.shown["widgets"]}
    assert len(with_widgets) >= 6
    undrawn = {name: f"{s['drawn']} of {s['widgets']}"
               for name, s in with_widgets.items() if s["drawn"] < s["widgets"]}
    assert not undrawn, f"widgets not drawn: {undrawn}"


def test_the_widget_manager_finds_its_fonts(visits, book):
    """Every module of the widget manager is placed in _static/html-manager/, which holds the
    fonts its style names (book/_static/widgets-setup.js); a module placed elsewhere would ask
    for fonts that are not there, on the pages where its style happens to come first."""
    fonts = set(re.findall(r"[0-9a-f]{20}\.woff2", EMBED_AMD.read_text(encoding="utf-8")))
    assert fonts and len(widget_modules()) >= 5
    missing = sorted(f for f in fonts if not (book.html / "_static" / "html-manager" / f).is_file())
    assert not missing, f"fonts of the widget manager not in the book: {missing}"
    folders = {name: set(v.module_folders) for name, v in visits.items() if v.shown["widgets"]}
    assert folders
    elsewhere = {name: f for name, f in folders.items() if f != {"/_static/html-manager/"}}
    assert not elsewhere, f"widget-manager modules placed outside _static/html-manager/: {elsewhere}"


def test_a_line_of_80_characters_fits_a_code_box(visits):
    probe = visits[PROBE_PAGE].probe
    assert probe["lineFits"], f"a code line of {CODE_WIDTH} characters scrolls at {WIDTH} px"
    assert probe["printedLineFits"], f"a printed line of {CODE_WIDTH} characters scrolls at {WIDTH} px"


def test_a_wide_table_in_an_output_wraps(visits):
    assert visits[PROBE_PAGE].probe["tableFits"], "a table of unbreakable cells runs past its output"
    wide = {name: v.shown["wideTables"] for name, v in visits.items() if v.shown["wideTables"]}
    assert not wide, f"tables wider than their output: {wide}"


def test_code_and_outputs_fit_the_column_at_1280px(visits):
    """Chapters and the book's own pages (the exercise pages are the exercise notebooks')."""
    found, total = [], 0
    for name, v in visits.items():
        if name.startswith("exercises/"):
            continue
        for kind in ("code", "outputs"):
            total += len(v.shown[kind])
            found += [f"{name}: {kind} box scrolls: {line}" for line in v.shown[kind]]
    assert not found, f"{total} boxes scroll sideways at {WIDTH} px:\n" + "\n".join(found)
