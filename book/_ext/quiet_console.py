"""Every inline script once per page, so that pages log no error in the console.

Sphinx 7.4 writes an inline script that an extension adds after the builder started
twice into every page: once from the builder's list (file name ``None``), once from the
registry (file name ``""``), which its duplicate check takes for two different scripts.
sphinx-thebe's ``const THEBE_JS_URL = ...`` then fails the second time ("Identifier
'THEBE_JS_URL' has already been declared"). Each page keeps the first copy of a script.
"""

from __future__ import annotations


def _key(script) -> tuple:
    return (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))


def scripts_once(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, kept = set(), []
    for script in scripts:
        if _key(script) not in seen:
            seen.add(_key(script))
            kept.append(script)
    scripts[:] = kept  # in place: later handlers add to this list (it is reset per page)


def setup(app):
    # Late, so that scripts other extensions add to this page are seen too.
    app.connect("html-page-context", scripts_once, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
