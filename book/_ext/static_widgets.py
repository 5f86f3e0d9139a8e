"""Say, next to every widget in the book, that its controls work only in a notebook.

The book draws each ipywidgets output from the state the notebook was saved with (the
HTML widget manager in ``book/_vendor``), but there is no Python kernel behind the page:
a slider moves and a button clicks without anything happening. A note under each widget
view says so, and points to the page that tells how to run the chapter.
"""

from __future__ import annotations

from docutils import nodes

WIDGET_VIEW = 'type="application/vnd.jupyter.widget-view+json"'
NOTE_CLASS = "widget-static-note"
HOW_TO_RUN = "book/how_to_run"
NOTE_TEXT = (
    "The controls above are live only when the notebook runs in Jupyter or Colab. "
    "Here they show the state the chapter was saved in and change nothing. "
)


def static_widget_notes(app, doctree, fromdocname: str) -> None:
    if app.builder.format != "html":
        return
    views = [n for n in doctree.findall(nodes.raw) if WIDGET_VIEW in n.astext()]
    for view in views:
        note = nodes.paragraph(classes=[NOTE_CLASS])
        note += nodes.Text(NOTE_TEXT)
        if HOW_TO_RUN in app.env.all_docs:
            uri = app.builder.get_relative_uri(fromdocname, HOW_TO_RUN)
            note += nodes.reference("", "How to run a chapter", refuri=uri, internal=True)
            note += nodes.Text(".")
        view.parent.insert(view.parent.index(view) + 1, note)


def setup(app):
    app.connect("doctree-resolved", static_widget_notes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
