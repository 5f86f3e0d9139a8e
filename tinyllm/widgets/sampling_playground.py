"""Sampling playground: type a prompt, turn the knobs of sampling, press Generate.

Knobs: temperature, top-k (0 = off), top-p (1.0 = off), greedy, length and seed. With the
same seed and knobs the same text comes back, so a reader can change one knob at a time
and see what it does. :func:`samples_html` renders generated samples as static HTML for
the book, where no kernel runs.
"""

from __future__ import annotations

import html

from tinyllm.generate import generate_text


def sampling_settings(temperature: float, top_k: int, top_p: float, greedy: bool) -> dict:
    """Widget values -> ``generate`` arguments (top-k 0 and top-p 1.0 mean "off")."""
    return {
        "temperature": temperature,
        "top_k": top_k if top_k > 0 else None,
        "top_p": top_p if top_p < 1.0 else None,
        "greedy": greedy,
    }


def samples_html(prompt: str, samples: list[str], caption: str = "") -> str:
    """Samples as HTML: the prompt in bold, the generated continuation after it."""
    blocks = []
    for text in samples:
        continuation = text[len(prompt):] if text.startswith(prompt) else text
        blocks.append(
            '<pre style="white-space: pre-wrap; border-left: 3px solid #1f4e9a; padding-left: 8px;">'
            f"<b>{html.escape(prompt)}</b>{html.escape(continuation)}</pre>"
        )
    head = f"<div><i>{html.escape(caption)}</i></div>" if caption else ""
    return head + "".join(blocks)


class SamplingPlayground:
    """``SamplingPlayground(model, tokenizer)``, then display it (or call :meth:`generate`).

    Controls (ipywidgets): ``prompt``, ``temperature``, ``top_k``, ``top_p``, ``greedy``,
    ``length``, ``seed`` and the ``button``. After each generation ``text`` holds the
    generated string (prompt included) and ``output`` shows it.
    """

    def __init__(self, model, tokenizer, prompt: str = "ROMEO:\n", temperature: float = 0.8, top_k: int = 0,
                 top_p: float = 1.0, length: int = 200, seed: int = 0, greedy: bool = False):
        import ipywidgets as w  # only the interactive playground needs ipywidgets

        self.model, self.tokenizer = model, tokenizer
        vocab = getattr(tokenizer, "vocab_size", 1000)
        wide = {"description_width": "initial"}  # labels in full, not cut to a fixed width
        self.prompt = w.Textarea(value=prompt, description="prompt", layout=w.Layout(width="95%", height="4em"))
        self.temperature = w.FloatSlider(value=temperature, min=0.05, max=2.0, step=0.05, description="temperature",
                                         style=wide)
        self.top_k = w.IntSlider(value=top_k, min=0, max=vocab, description="top-k (0=off)", style=wide)
        self.top_p = w.FloatSlider(value=top_p, min=0.05, max=1.0, step=0.05, description="top-p (1=off)", style=wide)
        self.greedy = w.Checkbox(value=greedy, description="greedy (always the most likely)", style=wide)
        self.length = w.IntSlider(value=length, min=1, max=1000, description="length", style=wide)
        self.seed = w.IntText(value=seed, description="seed", style=wide)
        self.button = w.Button(description="Generate", button_style="primary")
        self.output = w.HTML()
        self.text = ""
        self.button.on_click(lambda _: self.generate())
        self.widget = w.VBox([
            self.prompt,
            w.HBox([self.temperature, self.top_k, self.top_p]),
            w.HBox([self.length, self.seed, self.greedy]),
            self.button,
            self.output,
        ])

    def generate(self) -> str:
        """Generate with the current settings, show it, and return it ("" on bad input)."""
        settings = sampling_settings(self.temperature.value, self.top_k.value, self.top_p.value, self.greedy.value)
        try:
            (self.text,) = generate_text(self.model, self.tokenizer, self.prompt.value, self.length.value,
                                         seed=self.seed.value, **settings)
        except ValueError as exc:  # an unknown character or an empty prompt: say so, do not crash
            self.text = ""
            self.output.value = f"<b style='color: #b00'>{html.escape(str(exc))}</b>"
            return self.text
        knobs = ", ".join(f"{k}={v}" for k, v in settings.items() if v not in (None, False))
        self.output.value = samples_html(self.prompt.value, [self.text], f"{knobs}, seed={self.seed.value}")
        return self.text

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
