"""Plot helpers: they draw what they are given, with readable labels, and never fail on edge cases."""

from __future__ import annotations

from collections import Counter

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tinyllm.plots import (  # noqa: E402
    plot_bar_distribution,
    plot_loss_curves,
    plot_probability_table,
    plot_token_frequencies,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_token_frequencies_sorts_by_count_and_labels_whitespace_readably():
    counts = Counter("hello world\nhello")
    ax = plot_token_frequencies(counts)
    heights = [bar.get_height() for bar in ax.patches]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert heights == sorted(heights, reverse=True)
    assert len(heights) == len(counts) and sum(heights) == sum(counts.values())
    assert labels[0] == "l" and heights[0] == counts["l"]  # the most common character first
    assert "␣" in labels and "\\n" in labels  # space and newline are visible, escaped once
    assert " " not in labels and "\n" not in labels
    assert ax.get_yscale() == "log"


def test_token_frequencies_ties_are_ordered_by_token_and_linear_scale_is_optional():
    ax = plot_token_frequencies({"b": 2, "a": 2, "c": 5}, log=False, title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["c", "a", "b"]
    assert ax.get_yscale() == "linear" and ax.get_title() == "t"


def test_token_frequencies_draws_on_a_given_axes_and_rejects_empty_counts():
    _, ax = plt.subplots()
    assert plot_token_frequencies(Counter("aab"), ax=ax) is ax
    with pytest.raises(ValueError, match="empty"):
        plot_token_frequencies(Counter())


def test_probability_table_shape_is_checked():
    labels = ["a", "b", " "]
    ax = plot_probability_table(np.full((3, 3), 1 / 3), labels, annotate=True)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "␣"]
    with pytest.raises(AssertionError):
        plot_probability_table(np.ones((2, 3)), labels)


def test_loss_curves_and_bar_distribution_draw():
    ax = plot_loss_curves({"train": [3.0, 2.5, 2.4]}, steps=[0, 10, 20], reference={"counting": 2.45})
    assert len(ax.get_lines()) == 2  # the curve and the reference line
    ax = plot_bar_distribution([0.1, 0.6, 0.3], ["a", "b", "c"], top=2)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["b", "c"]


def test_html_token_makes_spaces_newlines_and_empty_pieces_visible():
    # The attention and layer explorers both draw tokens with it.
    from tinyllm.plots import html_token
    from tinyllm.widgets import attention_explorer, layer_explorer

    assert html_token("a <b>\n") == "a&nbsp;&lt;b&gt;&#8629;"
    assert html_token("") == "&#8203;"
    assert attention_explorer.html_token is layer_explorer.html_token is html_token
