import math

import pytest
import torch

from tinyllm.model import BigramLanguageModel


def test_bigram_shapes_and_loss_at_init():
    torch.manual_seed(0)
    model = BigramLanguageModel(10)
    idx = torch.randint(10, (4, 8))
    logits, loss = model(idx, idx)
    assert logits.shape == (4, 8, 10)
    assert loss.item() > 0
    logits, loss = model(idx)
    assert loss is None


def test_bigram_learns_a_deterministic_cycle():
    # Token i is always followed by i+1 (mod 5): a trained bigram model must be nearly certain.
    torch.manual_seed(0)
    data = torch.arange(500) % 5
    model = BigramLanguageModel(5)
    opt = torch.optim.AdamW(model.parameters(), lr=0.3)
    for _ in range(100):
        _, loss = model(data[None, :-1], data[None, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05 < math.log(5)
    out = model.generate(torch.tensor([[0]]), 9, generator=torch.Generator().manual_seed(0))
    assert out.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 3, 4]]


def test_bigram_rejects_bad_ids():
    model = BigramLanguageModel(5)
    with pytest.raises(ValueError, match="token id 5 is outside the vocabulary"):
        model(torch.tensor([[1, 5]]))
    with pytest.raises(ValueError, match="max_new_tokens"):
        model.generate(torch.tensor([[1]]), -1)
    # targets laid out (T, B) would be flattened beside idx and scored at the wrong positions
    with pytest.raises(ValueError, match=r"targets must have the shape of idx \(2, 3\), got \(3, 2\)"):
        model(torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))


def test_bigram_lives_in_its_own_module_and_model_still_exports_it():
    # Committed chapters import it from tinyllm.model: the re-export must stay the same class.
    from tinyllm import bigram, kv_cache, model

    assert model.BigramLanguageModel is bigram.BigramLanguageModel
    assert model.KVCache is kv_cache.KVCache


def test_bigram_generate_rejects_a_bool_token_count():
    model = BigramLanguageModel(5)
    with pytest.raises(ValueError, match="max_new_tokens must be an int >= 0, got True"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), True)
