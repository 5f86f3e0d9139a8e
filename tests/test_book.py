"""The book builds strictly (any Sphinx warning, broken link or bad notebook fails), and its
HTML stays inside itself: links between its pages are relative, and no page loads from a
CDN. The build is the session's ``book`` fixture (conftest.py), shared with
tests/test_book_in_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlparse

import nbformat

from teaching.course import book_url

ROOT = Path(__file__).resolve().parent.parent
WIDGET_VIEW = 'type="application/vnd.jupyter.widget-view+json"'


def test_book_builds_strictly(book):
    html = book.html
    assert (html / "book" / "intro.html").exists() or (html / "index.html").exists()
    chapters = sorted((ROOT / "chapters").glob("[0-9][0-9]_*.ipynb"))
    for chapter in chapters:
        page = html / "chapters" / (chapter.stem + ".html")
        assert page.exists(), f"{page.name} was not rendered"
        text = page.read_text(encoding="utf-8")
        assert "<img" in text, f"{page.name} shows no figure"
    # The book reads offline: no page loads anything from a CDN; the widget manager and
    # MathJax come from the vendored copies.
    cdn = re.compile(r"""(?:src|href)=["']https?://[^"']*(?:jsdelivr|cdnjs|unpkg)""")
    for page in html.rglob("*.html"):
        found = cdn.findall(page.read_text(encoding="utf-8"))
        assert not found, f"{page.name} loads {found} from a CDN"
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()
    widget_pages = [p for p in (html / "chapters").glob("*.html")
                    if "application/vnd.jupyter.widget-view+json" in p.read_text(encoding="utf-8")]
    for page in widget_pages:
        text = page.read_text(encoding="utf-8")
        assert "_static/embed-amd.js" in text and "_static/require.js" in text, page.name
    assert (html / "_static" / "embed-amd.js").exists()


class _Links(HTMLParser):
    """Every href and src of a page, with the line it is on."""

    def __init__(self):
        super().__init__()
        self.links: list[tuple[int, str]] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.links.append((self.getpos()[0], value))


def page_links(page: Path) -> list[tuple[int, str]]:
    parser = _Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.links


def test_links_to_pages_of_the_book_are_relative(book):
    """No link leaves the book for a page it holds, whatever the notebooks hold: they keep
    absolute links to the published site (scripts/sync_notebooks.py) for Colab."""
    published = book_url()
    in_notebooks = sum(
        cell.source.count(published)
        for path in sorted((ROOT / "chapters").glob("*.ipynb"))
        for cell in nbformat.read(path, as_version=4).cells
        if cell.cell_type == "markdown"
    )
    assert in_notebooks > 10, "the chapters no longer link to the published site: test something else"
    leaving, broken, relative = [], [], 0
    for page in book.pages():
        name = page.relative_to(book.html).as_posix()
        for line, link in page_links(page):
            if link.startswith(published):
                # The bare address (the intro's "online at ...") names the site, not a page.
                target = urlparse(link).path[len(urlparse(published).path):]
                if target and (book.html / target).is_file():
                    leaving.append(f"{name}:{line}: {link}")
            elif not urlparse(link).scheme and not link.startswith(("#", "//", "data:")):
                target = urlparse(urljoin(f"http://book/{name}", link)).path.lstrip("/")
                if target.endswith(".html"):
                    relative += 1
                    if not (book.html / target).is_file():
                        broken.append(f"{name}:{line}: {link}")
    assert not leaving, f"{len(leaving)} links go to the published site for a page of this book:\n" + "\n".join(leaving)
    assert not broken, "relative links to pages that do not exist:\n" + "\n".join(broken)
    assert relative > 100  # the book's own navigation, and the rewritten links


def test_every_widget_says_it_is_live_only_in_a_notebook(book):
    """A widget drawn in the book has no kernel behind it: a note under each says so."""
    pages = {}
    for page in book.pages():
        text = page.read_text(encoding="utf-8")
        views = re.findall(rf"<script {re.escape(WIDGET_VIEW)}>[^<]*</script>"
                           r'(<p class="widget-static-note">[^<]*)?', text)
        if views:
            pages[page.relative_to(book.html).as_posix()] = views
    assert len(pages) >= 6, f"widgets on {sorted(pages)} only (chapters 03, 05, 08, 09, 10, 12 have them)"
    silent = {name: sum(1 for note in views if not note) for name, views in pages.items()}
    silent = {name: n for name, n in silent.items() if n}
    assert not silent, f"widgets without the note that they are live only in Jupyter or Colab: {silent}"
    for views in pages.values():
        assert all("live only when the notebook runs in Jupyter or Colab" in note for note in views)
