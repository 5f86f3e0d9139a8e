"""Figures the chapters share. Plots only read what they are given; they never train.

Figures are at most ``PAGE_WIDTH`` inches wide, the width of the book's text column, so
they are printed at their own size and every label keeps its font size (8 points or more).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

PAGE_WIDTH = 7.6  # inches: at the inline backend's 100 dpi, the book's text column


def display_token(piece: str) -> str:
    """A token as a readable plot label: spaces as ``␣``, newlines and tabs escaped."""
    return "".join({"\n": "\\n", " ": "␣", "\t": "\\t"}.get(c, c) for c in piece)


def html_token(piece: str) -> str:
    """A token as HTML for a coloured box in the widgets: escaped, spaces and newlines made
    visible, and an empty piece still a box one can hover."""
    return html.escape(piece).replace(" ", "&nbsp;").replace("\n", "&#8629;") or "&#8203;"


def plot_loss_curves(
    history: Mapping[str, Sequence[float]],
    steps: Mapping[str, Sequence[int]] | Sequence[int] | None = None,
    ax=None,
    title: str = "loss",
    reference: Mapping[str, float] | None = None,
):
    """Plot one or more loss curves, e.g. ``{"train": [...], "val": [...]}``.

    ``steps`` gives the x values (one sequence for all curves, or one per curve);
    ``reference`` draws labelled horizontal lines such as ``{"counting model": 2.45}``.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    for name, values in history.items():
        if isinstance(steps, Mapping):
            xs = steps[name]
        elif steps is not None:
            xs = steps
        else:
            xs = range(len(values))
        ax.plot(list(xs), list(values), label=name)
    for name, value in (reference or {}).items():
        ax.axhline(value, linestyle="--", color="gray", linewidth=1)
        ax.annotate(f"{name}: {value:.3f}", xy=(0.99, value), xycoords=("axes fraction", "data"),
                    ha="right", va="bottom", fontsize=8, color="gray")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats)")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    return ax


def plot_probability_table(
    probs,
    labels: Sequence[str],
    ax=None,
    title: str = "P(next | current)",
    annotate: bool = False,
    cmap: str = "Blues",
):
    """Heat map of a square table: row = current token, column = next token.

    Cells are drawn taller than wide when there are many labels, so that every row label
    fits at 8 points within the page's width.
    """
    probs = np.asarray(probs, dtype=float)
    assert probs.ndim == 2 and probs.shape[0] == probs.shape[1] == len(labels), probs.shape
    if ax is None:
        width = min(PAGE_WIDTH, max(5.0, 0.16 * len(labels)))
        _, ax = plt.subplots(figsize=(width, max(width, 0.13 * len(labels) + 1.2)))
    ax.imshow(probs, cmap=cmap, aspect="auto")
    ticks = [display_token(c) for c in labels]
    ax.set_xticks(range(len(labels)), ticks, fontsize=8)
    ax.set_yticks(range(len(labels)), ticks, fontsize=8)
    ax.set_xlabel("next token")
    ax.set_ylabel("current token")
    ax.set_title(title)
    if annotate:
        for i in range(len(labels)):
            for j in range(len(labels)):
                if probs[i, j] >= 0.005:
                    ax.text(j, i, f"{probs[i, j]:.2f}", ha="center", va="center", fontsize=8,
                            color="white" if probs[i, j] > probs.max() / 2 else "black")
    return ax


def plot_bar_distribution(probs, labels: Sequence[str], ax=None, top: int = 15, title: str = ""):
    """Bar chart of the ``top`` most probable tokens of one distribution."""
    probs = np.asarray(probs, dtype=float)
    order = np.argsort(-probs)[:top]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    ax.bar(range(len(order)), probs[order])
    ax.set_xticks(range(len(order)), [display_token(labels[i]) for i in order], fontsize=8)
    ax.set_ylabel("probability")
    ax.set_title(title)
    return ax


def plot_token_frequencies(
    counts: Mapping[str, int],
    ax=None,
    log: bool = True,
    title: str = "How often each token occurs",
):
    """Bar chart of every token's count, most frequent first (chapter 01's corpus figure).

    ``counts`` maps each token (e.g. a character) to how often it occurs, as a
    ``collections.Counter`` of the text does. Whitespace is drawn readably (``␣``, ``\\n``).
    With ``log`` the y axis is logarithmic, so tokens seen once still show.
    """
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    if not items:
        raise ValueError("counts is empty: nothing to plot")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(PAGE_WIDTH, max(6.0, 0.19 * len(items))), 3.2))
    ax.bar(range(len(items)), [n for _, n in items], color="tab:blue")
    labels = [display_token(t) for t, _ in items]
    long_labels = max(len(label) for label in labels) > 1  # side by side only single characters
    ax.set_xticks(range(len(items)), labels, fontsize=8, rotation=90 if long_labels else 0)
    ax.set_xlim(-0.7, len(items) - 0.3)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("count" + (" (log scale)" if log else ""))
    ax.set_title(title)
    return ax
