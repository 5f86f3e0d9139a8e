"""Drive the chat widget with fake reply functions: history, streaming, clear, errors, HTML."""

import pytest

from tinyllm.widgets.chat import ChatWidget, chat_html


def echo(messages):
    """A fake model: repeats the user's last message and how many messages it was given."""
    return f"you said {messages[-1]['content']} ({len(messages)} messages)<|im_end|>"


def test_typing_and_clicking_send_shows_both_turns():
    chat = ChatWidget(echo)
    chat.text.value = "hello fish"
    chat.send_button.click()
    assert chat.text.value == ""
    assert chat.messages == [
        {"role": "user", "content": "hello fish"},
        {"role": "assistant", "content": "you said hello fish (1 messages)"},
    ]
    assert "hello fish" in chat.history.value and "you said hello fish (1 messages)" in chat.history.value
    assert "im_end" not in chat.history.value
    chat.text.value = "again"
    chat.send_button.click()
    assert chat.messages[-1]["content"] == "you said again (3 messages)"  # the model sees the history


def test_streamed_pieces_appear_one_by_one():
    shown = []

    def stream(messages):
        yield "i eat"
        yield " flakes."
        yield "<|im_end|>"

    chat = ChatWidget(stream, assistant_name="guppy")
    chat.history.observe(lambda change: shown.append(change["new"]), names="value")
    assert chat.send("what do you eat?") == "i eat flakes."
    partial = [v for v in shown if "i eat" in v and "flakes" not in v]
    assert partial, "the first piece was never shown on its own"
    assert "guppy" in chat.history.value and "i eat flakes." in chat.history.value


def test_system_prompt_stays_and_clear_forgets_the_rest():
    seen = []
    chat = ChatWidget(lambda m: seen.append(m) or "ok", system_prompt="you are a fish.")
    chat.send("hi")
    assert seen[0][0] == {"role": "system", "content": "you are a fish."}
    chat.clear_button.click()
    assert chat.messages == [{"role": "system", "content": "you are a fish."}]
    assert "hi" not in chat.history.value.replace("you are a fish.", "")


def test_respond_gets_a_copy_and_empty_text_does_nothing():
    def greedy_trim(messages):
        messages.clear()  # a respond that trims its input must not change the widget's history
        return "fine"

    chat = ChatWidget(greedy_trim)
    assert chat.send("   ") == "" and chat.messages == []
    chat.send("one")
    chat.send("two")
    assert [m["content"] for m in chat.messages] == ["one", "fine", "two", "fine"]


def test_an_error_is_shown_and_the_turn_taken_back():
    def broken(messages):
        raise ValueError("the prompt is longer than the context (300 > 256 tokens)")

    chat = ChatWidget(broken)
    assert chat.send("hello") == ""
    assert chat.messages == [] and "longer than the context" in chat.history.value


def test_html_is_escaped_and_static_rendering_has_every_message():
    page = chat_html([
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "<script>alert(1)</script>"},
        {"role": "assistant", "content": "line one\nline two"},
    ], assistant_name="guppy", caption="a real conversation")
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "line one<br>line two" in page and "guppy" in page and "a real conversation" in page
    assert page.count("padding:6px") == 3
    with pytest.raises(ValueError, match="role"):
        chat_html([{"role": "fish", "content": "x"}])
    with pytest.raises(ValueError, match="respond"):
        ChatWidget("not a function")


def test_for_model_streams_a_real_models_reply():
    import torch

    from tinyllm import chat_data
    from tinyllm.chat import reply
    from tinyllm.model import GPT, GPTConfig
    from tinyllm.tokenizer import BPETokenizer

    text = chat_data.corpus_text(chat_data.make_conversations(n=50, seed=0))
    tok = BPETokenizer().train(text, 300, special_tokens=chat_data.SPECIAL_TOKENS)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    chat = ChatWidget.for_model(model, tok, system_prompt="be a fish.", max_new_tokens=8, seed=3)
    got = chat.send("hi")
    messages = [{"role": "system", "content": "be a fish."}, {"role": "user", "content": "hi"}]
    expected = reply(model, tok, messages, max_new_tokens=8, seed=3).strip()
    assert got == expected and chat.messages[-1] == {"role": "assistant", "content": expected}
    # A long chat: the widget keeps the whole history, and each reply reads what fits the
    # context (the oldest turns dropped), as the command line does; before, the sixth message
    # of a chat with the shipped assistant overran the context and every later one failed.
    for k in range(12):
        assert not chat.send(f"question number {k}, about the water?").startswith("the conversation takes")
    assert len(chat.messages) == 1 + 2 * 13 and "color:#b00" not in chat.history.value
