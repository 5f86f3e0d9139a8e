"""Links to a page of this book stay inside the book.

The notebooks link to each other with absolute addresses on the published site (written
by ``scripts/sync_notebooks.py`` from ``_config.yml``), because a notebook opened alone in
Colab has no book around it. In the built book those links would leave it: read offline,
or from a copy served anywhere else, "Next" would go to the published site. So, once a
page's cross-references are resolved, every link to a page this book contains becomes a
relative link to that page; links to anything else are left as they are.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from docutils import nodes

# teaching/ (the repository's tooling, not installed) is imported from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from teaching.course import book_url  # noqa: E402

# href="..." in raw HTML (a notebook's markdown may hold <a href="...">).
_HREF = re.compile(r"""(href=["'])([^"']+)(["'])""")


def book_docname(url: str, base: str, docnames) -> tuple[str, str] | None:
    """``(docname, "#anchor" or "")`` when ``url`` is the published address of a page in
    ``docnames``; ``None`` for any other address."""
    if not url.startswith(base):
        return None
    path, _, anchor = url[len(base):].partition("#")
    path = path.split("?", 1)[0]
    if not path.endswith(".html"):
        return None
    docname = path[: -len(".html")]
    if docname not in docnames:
        return None
    return docname, f"#{anchor}" if anchor else ""


def relative_links(app, doctree, fromdocname: str) -> None:
    if app.builder.format != "html":
        return
    base = book_url(Path(app.srcdir) / "_config.yml")
    docnames = app.env.all_docs

    def relative(url: str) -> str | None:
        found = book_docname(url, base, docnames)
        if found is None:
            return None
        docname, anchor = found
        return app.builder.get_relative_uri(fromdocname, docname) + anchor

    for node in doctree.findall(nodes.reference):
        target = relative(node.get("refuri", ""))
        if target is not None:
            node["refuri"] = target
            node["internal"] = True
            node["classes"] = [c for c in node["classes"] if c != "external"]
    for node in doctree.findall(nodes.raw):
        if node.get("format") != "html" or base not in node.astext():
            continue
        text = _HREF.sub(lambda m: m.group(1) + (relative(m.group(2)) or m.group(2)) + m.group(3),
                         node.astext())
        node.replace_self(nodes.raw(node.rawsource, text, format="html"))


def setup(app):
    app.connect("doctree-resolved", relative_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
