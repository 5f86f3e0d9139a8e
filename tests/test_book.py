"""The book builds strictly: any Sphinx warning, broken link or bad notebook fails."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_book_builds_strictly(tmp_path):
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    command = [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going", "--path-output", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    log = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, f"strict book build failed:\n{log}"
    html = tmp_path / "_build" / "html"
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
    widget_pages = [p for p in (html / "chapters").glob("*.html") if "application/vnd.jupyter.widget-view+json" in p.read_text(encoding="utf-8")]
    for page in widget_pages:
        text = page.read_text(encoding="utf-8")
        assert "_static/embed-amd.js" in text and "_static/require.js" in text, page.name
    assert (html / "_static" / "embed-amd.js").exists()
