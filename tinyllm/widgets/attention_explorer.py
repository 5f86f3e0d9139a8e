"""Attention explorer: which earlier tokens does a token read from, in a given layer and head?

Two ways to look:

- :func:`render_attention` returns static HTML (the text, each token shaded by the weight
  the chosen token gives it). It needs no running kernel, so the book can show it.
- :class:`AttentionExplorer` is the interactive version for Jupyter and Colab: dropdowns
  for layer and head, a slider over token positions (plain ipywidgets cannot react to
  hovering, so you pick the token with the slider), a box to type any text, and a heat map
  of the whole head.

Both work with any :class:`tinyllm.model.GPT` and any tokenizer with ``encode`` and
``decode`` (the character tokenizer or BPE). They only read the model.
"""

from __future__ import annotations

import html

import matplotlib.pyplot as plt
import torch

from tinyllm.plots import display_token, html_token


def token_strings(tokenizer, ids: list[int]) -> list[str]:
    """Each id decoded on its own: the pieces the text is cut into."""
    return [tokenizer.decode([i]) for i in ids]


def attention_html(pieces: list[str], weights, query: int, title: str = "") -> str:
    """HTML of ``pieces`` where piece ``j`` is shaded by ``weights[j]`` (``query + 1`` values).

    The chosen token is outlined; the tokens after it are grey, because a causal model
    cannot look at them. Hovering a token shows its weight as a tooltip.
    """
    weights = [float(w) for w in weights]
    if not 0 <= query < len(pieces):
        raise ValueError(f"query position {query} is outside the text of {len(pieces)} tokens")
    if len(weights) != query + 1:
        raise ValueError(f"need {query + 1} weights for query position {query}, got {len(weights)}")
    top = max(weights) or 1.0
    spans = []
    for j, piece in enumerate(pieces):
        if j <= query:
            alpha = weights[j] / top  # scale to the strongest weight so small heads show too
            style = f"background: rgba(220, 50, 32, {alpha:.3f});"
            tip = f"position {j}: weight {weights[j]:.3f}"
        else:
            style = "color: #aaa;"
            tip = f"position {j}: in the future, not visible"
        if j == query:
            style += " outline: 2px solid #1f4e9a;"
        spans.append(
            f'<span title="{tip}" style="{style} padding: 1px 0; border-radius: 2px; '
            f'font-family: monospace; white-space: pre;">{html_token(piece)}</span>'
        )
    head = f'<div style="font-size: 0.9em; margin-bottom: 4px;">{html.escape(title)}</div>' if title else ""
    return f'<div style="line-height: 1.9;">{head}{"".join(spans)}</div>'


def _encode(model, tokenizer, text: str) -> tuple[list[int], torch.Tensor, str]:
    """The ids the model reads, as a batch of one, and a note when the text was cut."""
    ids = tokenizer.encode(text)
    if not ids:
        raise ValueError("the text is empty: type at least one character")
    block = model.config.block_size
    cut = "" if len(ids) <= block else \
        f"the model reads at most {block} tokens: the first {len(ids) - block} of {len(ids)} are left out"
    ids = ids[-block:]
    device = next(model.parameters()).device
    return ids, torch.tensor([ids], dtype=torch.long, device=device), cut


def render_attention(model, tokenizer, text: str, layer: int = 0, head: int = 0, query: int | None = None) -> str:
    """Static HTML: what token ``query`` (default: the last) attends to in ``layer``/``head``."""
    ids, idx, cut = _encode(model, tokenizer, text)
    _check_layer_head(model, layer, head)
    query = len(ids) - 1 if query is None else query
    if not 0 <= query < len(ids):
        raise ValueError(f"query must be a token position in 0..{len(ids) - 1}, got {query}")
    weights = model.attention_weights(idx)[layer, 0, head, query, : query + 1]
    pieces = token_strings(tokenizer, ids)
    title = f"layer {layer}, head {head}: token {query} {pieces[query]!r} attends to" + (f" ({cut})" if cut else "")
    return attention_html(pieces, weights.tolist(), query, title)


def _check_layer_head(model, layer: int, head: int) -> None:
    cfg = model.config
    if not 0 <= layer < cfg.n_layer:
        raise ValueError(f"layer {layer} does not exist: the model has layers 0..{cfg.n_layer - 1}")
    if not 0 <= head < cfg.n_head:
        raise ValueError(f"head {head} does not exist: each layer has heads 0..{cfg.n_head - 1}")


def plot_attention_map(weights, pieces: list[str], ax=None, title: str = "", query: int | None = None):
    """Heat map of one head's ``(T, T)`` weights: row = query token, column = key token."""
    weights = torch.as_tensor(weights).detach().cpu()
    if ax is None:
        size = min(8.0, 2.0 + 0.22 * len(pieces))
        _, ax = plt.subplots(figsize=(size, size))
    ax.imshow(weights.numpy(), cmap="Reds", vmin=0.0)
    labels = [display_token(p) for p in pieces]
    ax.set_xticks(range(len(pieces)), labels, fontsize=7, rotation=90)
    ax.set_yticks(range(len(pieces)), labels, fontsize=7)
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query (attending)")
    if query is not None:
        ax.axhline(query, color="#1f4e9a", linewidth=1)
    ax.set_title(title)
    return ax


class AttentionExplorer:
    """Interactive attention viewer: ``AttentionExplorer(model, tokenizer, text)``, then display it.

    Controls (ipywidgets): ``text`` (Textarea), ``layer`` and ``head`` (Dropdowns),
    ``token`` (IntSlider over positions). ``weights`` holds what is shown: a tensor of
    ``token + 1`` weights, the chosen token's row of the chosen head.
    """

    def __init__(self, model, tokenizer, text: str, layer: int = 0, head: int = 0,
                 token: int | None = None, heatmap: bool = True):
        import ipywidgets as w  # only the interactive explorer needs ipywidgets

        self.model, self.tokenizer, self.show_heatmap = model, tokenizer, heatmap
        _check_layer_head(model, layer, head)
        cfg = model.config
        self.text = w.Textarea(value=text, description="text", layout=w.Layout(width="95%", height="4em"))
        self.layer = w.Dropdown(options=list(range(cfg.n_layer)), value=layer, description="layer")
        self.head = w.Dropdown(options=list(range(cfg.n_head)), value=head, description="head")
        self.token = w.IntSlider(value=0, min=0, max=0, description="token", continuous_update=False)
        self.info = w.HTML()
        self.html = w.HTML()
        self.plot = w.Output()
        self._maps = None
        self.text.observe(lambda change: self._set_text(change["new"], None), names="value")
        for control in (self.layer, self.head, self.token):
            control.observe(lambda change: self.refresh(), names="value")
        self._set_text(text, token)
        self.widget = w.VBox([self.text, w.HBox([self.layer, self.head, self.token]), self.info, self.html, self.plot])

    def _set_text(self, text: str, token: int | None) -> None:
        try:
            self.ids, idx, self._cut = _encode(self.model, self.tokenizer, text)
        except ValueError as exc:  # an unknown character, or empty text: say so, keep the last view
            self.info.value = f"<b style='color: #b00'>{html.escape(str(exc))}</b>"
            return
        if token is not None and not 0 <= token < len(self.ids):  # the slider would clamp it unseen
            raise ValueError(f"token must be a position in 0..{len(self.ids) - 1} of the text the model reads, "
                             f"got {token}")
        self.pieces = token_strings(self.tokenizer, self.ids)
        self._maps = self.model.attention_weights(idx)[:, 0]  # (n_layer, nh, T, T)
        last = len(self.ids) - 1
        before = self.token.value
        with self.token.hold_trait_notifications():
            self.token.max = last
            self.token.value = last if token is None else token
        if self.token.value == before:  # otherwise the slider's observer has just redrawn
            self.refresh()

    @property
    def weights(self) -> torch.Tensor:
        """The shown weights: row ``token`` of head ``head`` in layer ``layer``, ``(token + 1,)``."""
        q = self.token.value
        return self._maps[self.layer.value, self.head.value, q, : q + 1]

    def refresh(self) -> None:
        if self._maps is None:
            return
        q, layer, head = self.token.value, self.layer.value, self.head.value
        weights = self.weights
        strongest = int(weights.argmax())
        self.info.value = (
            f"token {q} <code>{html.escape(repr(self.pieces[q]))}</code> attends most to position "
            f"{strongest} <code>{html.escape(repr(self.pieces[strongest]))}</code> "
            f"(weight {weights[strongest]:.2f})" + (f"<br><i>{html.escape(self._cut)}</i>" if self._cut else "")
        )
        self.html.value = attention_html(self.pieces, weights.tolist(), q, f"layer {layer}, head {head}")
        if self.show_heatmap:
            self.plot.clear_output(wait=True)
            with self.plot:
                fig, ax = plt.subplots(figsize=(4.5, 4.5))
                plot_attention_map(self._maps[layer, head], self.pieces, ax=ax, query=q,
                                   title=f"layer {layer}, head {head}")
                plt.show()
                plt.close(fig)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
