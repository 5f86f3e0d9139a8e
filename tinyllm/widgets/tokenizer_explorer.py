"""Tokenizer explorer: type text, see its tokens coloured by boundary, their ids and count.

Two ways to show it:

- :func:`render_tokens_html` returns plain HTML (show it with ``IPython.display.HTML``);
  it works everywhere, including the rendered book where widgets do not run.
- :class:`TokenizerExplorer` is an ipywidgets box (plain widgets, no custom JavaScript,
  so it runs in Jupyter and Colab): a text box, a toggle between the tokenizers you pass
  in (e.g. ``{"character": char_tok, "BPE": bpe_tok}``), the coloured tokens, the ids
  and the token count, all updated as you type.

A BPE token can hold part of a character (an emoji is 4 bytes and may be split over two
tokens); such a token is shown as its bytes, e.g. ``\\xf0\\x9f``, in italics.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

# Light colours so the black text stays readable; neighbours always differ.
PALETTE = ["#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6"]
_VISIBLE = {" ": "␣", "\n": "↵\n", "\t": "→", "\r": "␍"}


def encode_for_display(tokenizer, text: str) -> list[int]:
    """Encode ``text``; special tokens (if the tokenizer has them) are allowed."""
    if getattr(tokenizer, "special_tokens", None) is not None:
        return tokenizer.encode(text, allowed_special="all")
    return tokenizer.encode(text)


def token_pieces(tokenizer, ids) -> list[tuple[str, bool]]:
    """Each token's text and whether it is whole characters (``False``: part of a character,
    shown as escaped bytes instead)."""
    vocab = getattr(tokenizer, "vocab", None)  # BPE: id -> bytes
    pieces = []
    for i in ids:
        if vocab is None:
            pieces.append((tokenizer.decode([i]), True))
            continue
        raw = vocab[i]
        try:
            pieces.append((raw.decode("utf-8"), True))
        except UnicodeDecodeError:
            pieces.append(("".join(f"\\x{b:02x}" for b in raw), False))
    return pieces


def _piece_html(piece: str, whole: bool, token_id: int, k: int) -> str:
    shown = "".join(_VISIBLE.get(c, c) for c in piece) if whole else piece
    style = (f"background:{PALETTE[k % len(PALETTE)]};color:#000;border-radius:3px;"
             "padding:1px 0;margin:0 1px 0 0;line-height:1.9")
    if not whole:
        style += ";font-style:italic"
    return f'<span title="id {token_id}" style="{style}">{html.escape(shown)}</span>'


def render_tokens_html(text: str, tokenizer, ids: list[int] | None = None, max_ids: int = 200) -> str:
    """Static HTML: the tokens of ``text`` coloured by boundary, then the ids and the count.

    ``ids`` can be given if ``text`` is already encoded. Shows at most ``max_ids`` ids.
    """
    if ids is None:
        ids = encode_for_display(tokenizer, text)
    spans = "".join(_piece_html(piece, whole, i, k) for k, (i, (piece, whole)) in
                    enumerate(zip(ids, token_pieces(tokenizer, ids))))
    shown_ids = ", ".join(str(i) for i in ids[:max_ids]) + (", ..." if len(ids) > max_ids else "")
    n_bytes = len(text.encode("utf-8"))
    summary = (f"<b>{len(ids)} tokens</b> for {len(text)} characters ({n_bytes} bytes)"
               + (f", {n_bytes / len(ids):.2f} bytes per token" if ids else ""))
    mono = "font-family:monospace;font-size:13px"
    return (f'<div style="{mono};white-space:pre-wrap;word-break:break-all">{spans}</div>'
            f'<div style="{mono};color:#555;margin-top:6px">ids: [{shown_ids}]</div>'
            f'<div style="margin-top:4px">{summary}</div>')


class TokenizerExplorer(widgets.VBox):
    """A text box, a tokenizer toggle and the live token view.

    ``tokenizers`` maps a label to a tokenizer with ``encode``/``decode`` (CharTokenizer,
    BPETokenizer, ...). After any change, ``ids``, ``pieces`` and ``count`` hold what is
    shown; ``view`` (HTML) shows the coloured tokens and the count, ``summary`` the tokenizer
    chosen and its vocabulary's size, or an error.
    """

    def __init__(self, tokenizers: dict, text: str = "Hello world! Héllo wörld 👋"):
        if not tokenizers:
            raise ValueError("pass at least one tokenizer, e.g. {'BPE': tok}")
        self.tokenizers = dict(tokenizers)
        self.text = widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="95%", height="80px"))
        self.choice = widgets.ToggleButtons(options=list(self.tokenizers), description="tokenizer")
        self.view = widgets.HTML()
        self.summary = widgets.HTML()
        self.ids: list[int] = []
        self.pieces: list[str] = []
        super().__init__([self.text, self.choice, self.view, self.summary])
        self.text.observe(self._update, names="value")
        self.choice.observe(self._update, names="value")
        self._update()

    @property
    def count(self) -> int:
        return len(self.ids)

    def _update(self, change=None) -> None:
        tokenizer = self.tokenizers[self.choice.value]
        text = self.text.value
        try:
            ids = encode_for_display(tokenizer, text)
        except ValueError as exc:  # e.g. a character the character-level vocabulary lacks
            self.ids, self.pieces = [], []
            self.view.value = ""
            self.summary.value = f'<span style="color:#b00">cannot encode: {html.escape(str(exc))}</span>'
            return
        self.ids = ids
        self.pieces = [piece for piece, _ in token_pieces(tokenizer, ids)]
        self.view.value = render_tokens_html(text, tokenizer, ids)
        self.summary.value = f"{self.choice.value}: vocabulary of {tokenizer.vocab_size} tokens"


def tokenizer_explorer(tokenizers: dict, text: str = "Hello world! Héllo wörld 👋") -> TokenizerExplorer:
    """Build the explorer; show it by leaving it as the last expression of a cell."""
    return TokenizerExplorer(tokenizers, text)
