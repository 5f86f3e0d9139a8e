"""Drive the sampling playground: knobs change the output, the seed makes it repeatable."""

import pytest
import torch

from tinyllm.generate import generate_text
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer
from tinyllm.widgets.sampling_playground import SamplingPlayground, samples_html, sampling_settings


@pytest.fixture(scope="module")
def model_and_tokenizer():
    tok = CharTokenizer.from_text("ROMEO:\nabcdefgh ijk")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(20)  # a peaked distribution, so greedy and sampling differ visibly
    return model.eval(), tok


def test_button_generates_with_the_chosen_settings(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pg = SamplingPlayground(model, tok, prompt="ROMEO:\n", length=30, seed=3)
    pg.button.click()
    first = pg.text
    assert first.startswith("ROMEO:\n") and len(first) == 37
    assert first == generate_text(model, tok, "ROMEO:\n", 30, temperature=0.8, seed=3)[0]
    assert "seed=3" in pg.output.value
    pg.button.click()
    assert pg.text == first  # same seed, same knobs: same text
    pg.seed.value = 4
    pg.button.click()
    assert pg.text != first
    pg.temperature.value, pg.top_k.value, pg.top_p.value = 1.5, 3, 0.9
    pg.length.value = 12
    pg.button.click()
    expected = generate_text(model, tok, "ROMEO:\n", 12, temperature=1.5, top_k=3, top_p=0.9, seed=4)[0]
    assert pg.text == expected and "top_k=3" in pg.output.value


def test_greedy_ignores_the_seed(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pg = SamplingPlayground(model, tok, prompt="ab", length=20, greedy=True)
    texts = set()
    for seed in range(3):
        pg.seed.value = seed
        texts.add(pg.generate())
    assert texts == {generate_text(model, tok, "ab", 20, greedy=True)[0]}


def test_bad_prompt_shows_a_message(model_and_tokenizer):
    model, tok = model_and_tokenizer
    pg = SamplingPlayground(model, tok, prompt="JULIET", length=5)
    assert pg.generate() == "" and "not in the vocabulary" in pg.output.value


def test_settings_and_static_html():
    assert sampling_settings(0.7, 0, 1.0, False) == {
        "temperature": 0.7, "top_k": None, "top_p": None, "greedy": False
    }
    assert sampling_settings(1.0, 5, 0.5, True)["top_k"] == 5
    page = samples_html("A<", ["A<b", "A<c"], caption="t=1")
    assert page.count("<pre") == 2 and "<b>A&lt;</b>b" in page and "t=1" in page
