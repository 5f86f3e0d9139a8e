"""The sampling filters of tinyllm.sampling, on rows whose answers can be worked out by hand."""

from __future__ import annotations

import pytest
import torch

from tinyllm.sampling import check_sampling_args, sample_next, top_k_filter, top_p_filter

INF = float("inf")


def test_top_k_keeps_the_k_largest_and_every_tie_with_the_kth():
    logits = torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 2.0, 1.0, 0.0]])
    got = top_k_filter(logits, 2)
    assert got.tolist() == [[3.0, -INF, 2.0, 2.0, -INF], [3.0, 3.0, -INF, -INF, -INF]]
    assert torch.equal(logits, torch.tensor([[3.0, 1.0, 2.0, 2.0, 0.0], [3.0, 3.0, 2.0, 1.0, 0.0]]))


def test_top_p_keeps_the_smallest_set_that_reaches_p():
    logits = torch.zeros(1, 4)  # four tokens of probability 0.25: the sums 0.25, 0.5, 0.75 are exact
    kept = {p: int(torch.isfinite(top_p_filter(logits, p)).sum()) for p in (0.2, 0.25, 0.5, 0.6, 0.75, 1.0)}
    assert kept == {0.2: 1, 0.25: 1, 0.5: 2, 0.6: 3, 0.75: 3, 1.0: 4}


def test_top_p_of_1_is_filtering_off_even_where_the_top_token_rounds_to_1():
    """The package's convention (generation's default); set 09's exercise asks for the rule in floats."""
    logits = torch.tensor([[0.0, -200.0, -300.0]])  # in float32 the first token's probability is exactly 1
    assert logits.softmax(-1)[0, 0] == 1.0
    assert torch.equal(top_p_filter(logits, 1.0), logits)


@pytest.mark.parametrize("p", [0.0, -1.0, 1e-9])
def test_top_p_always_keeps_the_most_likely_token(p):
    logits = torch.tensor([[0.5, 2.0, -1.0], [1000.0, 999.0, 0.0]])
    got = top_p_filter(logits, p)
    assert torch.isfinite(got).sum(-1).tolist() == [1, 1]
    assert got[0, 1] == 2.0 and got[1, 0] == 1000.0


def test_sample_next_refuses_arguments_without_meaning():
    sensible = {"temperature": 1.0, "top_k": None, "top_p": None, "greedy": False}
    for wrong in ({"temperature": 0.0}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}):
        with pytest.raises(ValueError):
            check_sampling_args(**{**sensible, **wrong})
    logits = torch.tensor([[0.0, 5.0, 1.0]])
    assert sample_next(logits, greedy=True).tolist() == [[1]]


def test_a_tiny_temperature_or_half_precision_logits_pick_the_largest_without_overflow():
    """Dividing by a tiny temperature overflows (to inf, then NaN in the softmax): any positive
    temperature is allowed, so the largest logit of each row must simply win."""
    g = torch.Generator().manual_seed(0)
    logits = torch.tensor([[1.0, 2.0, 0.5], [3.0, -1.0, 2.5]])
    assert sample_next(logits, temperature=1e-40, generator=g).flatten().tolist() == [1, 0]
    half = torch.tensor([[10.0, 9.0, 0.0]], dtype=torch.float16)
    assert sample_next(half, temperature=1e-4, generator=g).item() == 0
    # an ordinary temperature draws exactly as before (float32 logits are not shifted)
    expected = torch.multinomial(torch.softmax(logits / 0.8, -1), 1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample_next(logits, 0.8, generator=torch.Generator().manual_seed(3)), expected)
