"""Layer explorer: what does the model guess after each layer, and where does each head look?

Pick a text and a position. Two views of that position:

- the **logit lens**: the top next-token guesses (with probabilities) read from the
  residual stream after the embeddings and after each block (``tinyllm.trace.logit_lens``);
  the last row is the model's real prediction;
- the **heads**: one strip per head, each earlier token shaded by the attention the chosen
  position gives it.

:func:`render_layer_explorer` returns static HTML (the book shows it without a kernel);
:class:`LayerExplorer` is the interactive version for Jupyter and Colab (a text box, a
position slider and a slider for how many guesses). Both only read the model.
"""

from __future__ import annotations

import html

import torch

from tinyllm.plots import html_token
from tinyllm.trace import check_index, encode, logit_lens, trace
from tinyllm.validate import check_int

WINDOW = 32  # the strips show at most this many tokens up to the chosen position


def _cell(piece: str, alpha: float, tip: str, outline: bool = False) -> str:
    border = " outline: 2px solid #1f4e9a;" if outline else ""
    return (f'<span title="{html.escape(tip)}" style="background: rgba(220, 50, 32, {alpha:.3f});'
            f'{border} font-family: monospace; white-space: pre; padding: 1px 1px;">'
            f"{html_token(piece)}</span>")


def lens_table_html(probs: torch.Tensor, ids: torch.Tensor, tokens: list[str]) -> str:
    """A table: one row per depth (embeddings, after block 0, ...), the top guesses in columns."""
    rows = []
    for depth in range(probs.size(0)):
        name = "embeddings" if depth == 0 else f"after block {depth - 1}"
        cells = "".join(
            f'<td style="padding: 1px 6px;">{_cell(tokens[i], float(p), f"{p:.3f}")}'
            f' <span style="font-size: 0.85em;">{float(p):.2f}</span></td>'
            for p, i in zip(probs[depth].tolist(), ids[depth].tolist())
        )
        rows.append(f'<tr><td style="padding: 1px 6px; white-space: nowrap;">{name}</td>{cells}</tr>')
    return f'<table style="border-collapse: collapse; font-size: 0.9em;">{"".join(rows)}</table>'


def heads_html(pieces: list[str], attn: list[torch.Tensor], position: int) -> str:
    """One strip per (layer, head): the tokens up to ``position`` shaded by its attention.

    ``attn`` holds one ``(nh, T, T)`` map per layer (batch row already chosen).
    """
    start = max(0, position - WINDOW + 1)
    lines = []
    for layer, maps in enumerate(attn):
        for head in range(maps.size(0)):
            row = maps[head, position, : position + 1]
            top = float(row.max()) or 1.0
            cells = "".join(
                _cell(pieces[j], float(row[j]) / top, f"position {j}: weight {float(row[j]):.3f}",
                      outline=(j == position))
                for j in range(start, position + 1)
            )
            lines.append(f'<div style="white-space: nowrap;"><span style="display: inline-block; '
                         f'width: 4.5em; font-size: 0.85em;">{layer}.{head}</span>{cells}</div>')
    more = f"(the last {WINDOW} tokens) " if start else ""
    head = (f'<div style="font-size: 0.9em; margin: 6px 0 2px;">attention of each head '
            f"(layer.head) from position {position} {more}- darker = more weight</div>")
    return head + "".join(lines)


def render_layer_explorer(model, tokenizer, text: str, position: int | None = None, k: int = 5) -> str:
    """Static HTML of the explorer for ``text`` at ``position`` (default: the last token)."""
    idx = encode(model, tokenizer, text)
    T = idx.size(1)
    position = T - 1 if position is None else position
    check_index("position", position, T, "the text has positions")
    tr = trace(model, idx)
    return _page(model, tokenizer, tr, idx[0].tolist(), position, k)


def _page(model, tokenizer, tr, ids: list[int], position: int, k: int) -> str:
    pieces = [tokenizer.decode([i]) for i in ids]
    tokens = [tokenizer.decode([i]) for i in range(model.config.vocab_size)]
    probs, top = logit_lens(model, tr, position, k)
    context = "".join(pieces[max(0, position - 40): position + 1])
    title = (f'<div style="font-size: 0.9em;">next-token guesses after '
             f'<code style="white-space: pre;">{html_token(context)}</code> (position {position})</div>')
    return (f"<div>{title}{lens_table_html(probs, top, tokens)}"
            f"{heads_html(pieces, [a[0] for a in tr.attn], position)}</div>")


class LayerExplorer:
    """``LayerExplorer(model, tokenizer, text)``, then display it.

    Controls (ipywidgets): ``text`` (Textarea), ``position`` (IntSlider over the text's
    positions), ``k`` (IntSlider, how many guesses per layer). ``probs`` and ``ids`` hold
    the logit lens shown, ``(n_layer + 1, k)`` each; ``info`` shows a readable message for
    bad input (an unknown character, empty or too long text) and the last good view stays.
    """

    def __init__(self, model, tokenizer, text: str, position: int | None = None, k: int = 5):
        import ipywidgets as w  # only the interactive explorer needs ipywidgets

        self.model, self.tokenizer = model, tokenizer
        V = model.config.vocab_size
        check_int("k", k, 1, min(V, 10))
        self.text = w.Textarea(value=text, description="text", layout=w.Layout(width="95%", height="4em"))
        self.position = w.IntSlider(value=0, min=0, max=0, description="position", continuous_update=False)
        self.k = w.IntSlider(value=k, min=1, max=min(V, 10), description="guesses")
        self.info = w.HTML()
        self.html = w.HTML()
        self._trace = None
        self.probs = self.ids = None
        self.text.observe(lambda change: self._set_text(change["new"], None), names="value")
        self.position.observe(lambda change: self.refresh(), names="value")
        self.k.observe(lambda change: self.refresh(), names="value")
        self._set_text(text, position)
        self.widget = w.VBox([self.text, w.HBox([self.position, self.k]), self.info, self.html])

    def _set_text(self, text: str, position: int | None) -> None:
        try:
            idx = encode(self.model, self.tokenizer, text)
            if position is not None:
                check_index("position", position, idx.size(1), "the text has positions")
        except ValueError as exc:  # say what is wrong, keep the last good view
            self.info.value = f"<b style='color: #b00'>{html.escape(str(exc))}</b>"
            return
        self._ids = idx[0].tolist()
        self._trace = trace(self.model, idx)
        before = self.position.value
        with self.position.hold_trait_notifications():
            self.position.max = len(self._ids) - 1
            self.position.value = len(self._ids) - 1 if position is None else position
        if self.position.value == before:  # otherwise the slider's observer has just redrawn
            self.refresh()

    def refresh(self) -> None:
        if self._trace is None:
            return
        q = self.position.value
        self.probs, self.ids = logit_lens(self.model, self._trace, q, self.k.value)
        guess = self.tokenizer.decode([int(self.ids[-1, 0])])
        self.info.value = (f"position {q} of 0..{len(self._ids) - 1}: the model's top guess is "
                           f"<code>{html.escape(repr(guess))}</code> ({float(self.probs[-1, 0]):.2f})")
        self.html.value = _page(self.model, self.tokenizer, self._trace, self._ids, q, self.k.value)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
