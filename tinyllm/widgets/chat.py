"""A chat box for Jupyter and Colab: a history, a text box and a Send button.

``ChatWidget(respond)`` works with any function ``respond(messages)`` that returns the
assistant's reply as a string, or as an iterator of text pieces (then the reply appears
piece by piece, as it is generated). ``ChatWidget.for_model(model, tokenizer)`` builds
``respond`` from :mod:`tinyllm.chat` (history trimmed to the context, the KV cache,
streaming). :func:`chat_html` draws a conversation as static HTML for the book, where no
kernel runs.

Only widgets that exist in both ipywidgets 7.7.1 (Colab) and 8 are used: ``HTML``,
``Text``, ``Button``, ``HBox``, ``VBox``, ``Layout`` and ``on_click``.
"""

from __future__ import annotations

import html

from tinyllm.chat_data import IM_END, check_messages

_STYLE = {
    "user": "background:#e8eefc; margin-left:20%; border-radius:10px 10px 0 10px;",
    "assistant": "background:#eef7ec; margin-right:20%; border-radius:10px 10px 10px 0;",
    "system": "background:#f4f4f4; color:#555; font-style:italic; border-radius:6px;",
}
_WHO = {"user": "you", "system": "system"}


def chat_html(messages, assistant_name: str = "assistant", caption: str = "") -> str:
    """A conversation as HTML bubbles: the user's on the right, the assistant's on the left."""
    check_messages(messages)
    rows = []
    for m in messages:
        who = _WHO.get(m["role"], assistant_name)
        text = html.escape(m["content"]).replace("\n", "<br>")
        rows.append(
            f'<div style="{_STYLE[m["role"]]} padding:6px 10px; margin-top:6px; font-family:sans-serif;">'
            f'<div style="font-size:80%; color:#666;">{html.escape(who)}</div>{text}</div>'
        )
    head = f'<div style="font-size:90%; color:#555;"><i>{html.escape(caption)}</i></div>' if caption else ""
    return f'<div style="max-width:640px;">{head}{"".join(rows)}</div>'


class ChatWidget:
    """``ChatWidget(respond, system_prompt=None)``, then display it (or call :meth:`send`).

    Controls: ``text`` (what you type), ``send_button``, ``clear_button``; ``history``
    shows the conversation. ``messages`` holds it as ``{"role", "content"}`` dicts, the
    system prompt first if there is one.
    """

    def __init__(self, respond, system_prompt: str | None = None, assistant_name: str = "assistant",
                 placeholder: str = "say something and press Send"):
        import ipywidgets as w  # only the interactive widget needs ipywidgets

        if not callable(respond):
            raise ValueError(f"respond must be a function messages -> reply, got {type(respond).__name__}")
        self.respond = respond
        self.system_prompt = system_prompt
        self.assistant_name = assistant_name
        self.messages: list[dict] = []
        self.text = w.Text(value="", placeholder=placeholder, layout=w.Layout(width="70%"))
        self.send_button = w.Button(description="Send", button_style="primary")
        self.clear_button = w.Button(description="Clear")
        self.history = w.HTML()
        self.send_button.on_click(lambda _: self.send())
        self.clear_button.on_click(lambda _: self.clear())
        self.widget = w.VBox([self.history, w.HBox([self.text, self.send_button, self.clear_button])])
        self.clear()

    @classmethod
    def for_model(cls, model, tokenizer, system_prompt: str | None = None, assistant_name: str = "assistant",
                  **settings) -> ChatWidget:
        """A chat with a trained model; ``settings`` go to :func:`tinyllm.chat.stream_reply`
        (``max_new_tokens``, ``temperature``, ``top_k``, ``top_p``, ``seed``)."""
        from tinyllm.chat import DEFAULTS, stream_reply, trim_history  # the widget reads the chat engine

        def respond(messages):  # the whole history stays in the widget; each reply reads what fits
            fits, _ = trim_history(tokenizer, messages, model.config.block_size,
                                   settings.get("max_new_tokens", DEFAULTS["max_new_tokens"]),
                                   settings.get("lowercase_user", False))
            return stream_reply(model, tokenizer, fits, **settings)

        return cls(respond, system_prompt=system_prompt, assistant_name=assistant_name)

    def clear(self) -> None:
        """Forget the conversation (the system prompt stays)."""
        self.messages = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        self._show()

    def _show(self, partial: str | None = None) -> None:
        shown = self.messages + ([{"role": "assistant", "content": partial}] if partial is not None else [])
        self.history.value = chat_html(shown, self.assistant_name)

    def send(self, text: str | None = None) -> str:
        """Send ``text`` (default: the text box's), show the reply as it comes, return it.

        An empty message does nothing and returns ``""``. If ``respond`` raises
        ``ValueError`` the message is shown in red and the user's turn is taken back.
        """
        text = (self.text.value if text is None else text).strip()
        if not text:
            return ""
        self.text.value = ""
        self.messages.append({"role": "user", "content": text})
        self._show(partial="")
        try:
            result = self.respond([dict(m) for m in self.messages])  # a copy: respond may trim it
            if isinstance(result, str):
                reply = result
            else:
                reply = ""
                for piece in result:  # streaming: redraw after every piece
                    reply += piece
                    self._show(partial=reply.split(IM_END)[0])
        except ValueError as exc:
            self.messages.pop()
            self._show()
            self.history.value += f"<b style='color:#b00'>{html.escape(str(exc))}</b>"
            return ""
        reply = reply.split(IM_END)[0].strip()
        self.messages.append({"role": "assistant", "content": reply})
        self._show()
        return reply

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
