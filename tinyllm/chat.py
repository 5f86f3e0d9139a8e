"""Talk to a chat model: ``python -m tinyllm.chat``, or :func:`reply` from Python.

    python -m tinyllm.chat                          # the shipped assistant, interactive
    python -m tinyllm.chat --prompt "what do you eat?"
    python -m tinyllm.chat --eval                   # the scored evaluation, per category

A conversation is a list of messages ``{"role", "content"}``. To answer, the messages are
written in the chat template (:func:`tinyllm.chat_data.render`) with the assistant's turn
opened, and the model samples one token at a time (with a KV cache: each new token costs
one position, not the whole context) until it writes the end-of-turn token
``<|im_end|>``. The history must fit the context window (``block_size`` tokens, the
prompt plus the reply): :func:`trim_history` drops the oldest turns until it does.
"""

from __future__ import annotations

import argparse
import codecs
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from tinyllm.chat_data import ENDOFTEXT, IM_END, IM_START, check_messages, render
from tinyllm.checkpoint import CheckpointError, load_model
from tinyllm.device import pick_device
from tinyllm.model import KVCache
from tinyllm.sampling import check_sampling_args, sample_next

SHIPPED_CHAT_MODEL = Path(__file__).resolve().parent / "checkpoints" / "chat-cpu"
DEFAULTS = dict(max_new_tokens=48, temperature=0.8, top_k=40, top_p=0.95)


def load_chat_model(out_dir=None, device: str | torch.device = "cpu"):
    """``model, tokenizer`` from a checkpoint folder (None: the shipped assistant), eval mode."""
    model, tokenizer, _ = load_model(SHIPPED_CHAT_MODEL if out_dir is None else out_dir, device)
    if IM_END not in getattr(tokenizer, "special_tokens", {}):
        raise CheckpointError(f"the model in {out_dir} is not a chat model: its tokenizer has no {IM_END} token")
    return model, tokenizer


def prompt_ids(tokenizer, messages) -> list[int]:
    """The token ids of ``messages`` in the chat template, with the assistant's turn opened."""
    return tokenizer.encode(render(messages, add_generation_prompt=True), allowed_special="all")


def trim_history(tokenizer, messages, block_size: int, max_new_tokens: int):
    """Drop the oldest turns until the prompt plus ``max_new_tokens`` fits ``block_size``.

    Returns ``(messages, dropped)``: a new list and how many messages were dropped. System
    messages and the last message (the question to answer) are kept; a turn is a user
    message and the assistant's answer, dropped together. ValueError if even the last
    message alone does not fit (cut it first: :func:`cut_message`).
    """
    check_messages(messages)
    budget = block_size - max_new_tokens
    if budget < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in block_size={block_size}")
    system = [m for m in messages if m["role"] == "system"]
    rest = [m for m in messages if m["role"] != "system"]
    dropped = 0
    while len(prompt_ids(tokenizer, system + rest)) > budget:
        if len(rest) <= 1:
            raise ValueError(
                f"the last message alone takes {len(prompt_ids(tokenizer, system + rest))} tokens with the template; "
                f"the context has room for {budget} (block_size {block_size} - max_new_tokens {max_new_tokens})"
            )
        n = 2 if rest[0]["role"] == "user" and len(rest) > 2 and rest[1]["role"] == "assistant" else 1
        rest, dropped = rest[n:], dropped + n
    return system + rest, dropped


def cut_message(tokenizer, text: str, max_tokens: int) -> tuple[str, bool]:
    """``text`` cut to its first ``max_tokens`` tokens; ``(text, was_cut)``.

    Special token strings typed by the user are ordinary text here, never template markers.
    """
    ids = tokenizer.encode(text, allowed_special="none")
    if len(ids) <= max_tokens:
        return text, False
    return tokenizer.decode(ids[:max_tokens]).rstrip("\ufffd"), True


@torch.no_grad()
def stream_reply(model, tokenizer, messages, *, max_new_tokens: int = DEFAULTS["max_new_tokens"],
                 temperature: float = DEFAULTS["temperature"], top_k: int | None = DEFAULTS["top_k"],
                 top_p: float | None = DEFAULTS["top_p"], seed: int | None = None, raw: bool = False) -> Iterator[str]:
    """Yield the reply to ``messages`` in pieces of text, as the tokens are sampled.

    Stops at ``<|im_end|>`` (the end of the turn), after ``max_new_tokens`` tokens, or when
    the context is full. ``raw=False`` (for people) also stops where the model would start
    a new turn itself (``<|im_start|>``) and never shows a special token. ``raw=True`` (for
    the evaluation) shows them as text: the ``<|im_end|>`` that ended the turn, and any
    ``<|im_start|>`` the model wrote. ``seed``: the same reply for the same seed.
    """
    check_sampling_args(temperature, top_k, top_p, False)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
    ids = prompt_ids(tokenizer, messages)
    block = model.config.block_size
    if len(ids) >= block:
        raise ValueError(f"the conversation takes {len(ids)} tokens, the context holds {block}: use trim_history")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    end_ids = {tokenizer.special_tokens[t] for t in (IM_END, ENDOFTEXT) if t in tokenizer.special_tokens}
    start_id = tokenizer.special_tokens.get(IM_START)
    # Tokens are bytes; a character may span two tokens, so decode incrementally.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    was_training = model.training
    model.eval()
    try:
        cache = KVCache(model.config.n_layer)
        logits, _ = model(torch.tensor([ids], device=device), kv_cache=cache)
        for _ in range(min(max_new_tokens, block - len(ids))):
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, False, generator)
            token = next_id.item()
            if token in end_ids or (token == start_id and not raw):
                if raw:
                    yield decoder.decode(b"", final=True) + tokenizer.decode([token])
                return
            piece = decoder.decode(tokenizer.decode_bytes([token]))
            if piece:
                yield piece
            if cache.length >= block:
                break  # the context is full: the reply stops here, unfinished
            logits, _ = model(next_id, kv_cache=cache)
        tail = decoder.decode(b"", final=True)
        if tail:
            yield tail
    finally:
        model.train(was_training)


def reply(model, tokenizer, messages, **kwargs) -> str:
    """The whole reply to ``messages`` as one string (arguments of :func:`stream_reply`)."""
    return "".join(stream_reply(model, tokenizer, messages, **kwargs))


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


class _Session:
    """The state of an interactive chat: the history and the settings."""

    def __init__(self, model, tokenizer, args, out):
        self.model, self.tokenizer, self.args, self.out = model, tokenizer, args, out
        self.history: list[dict] = []
        self.name = "assistant"
        # The room for one message: the context minus the reply and the template's markers.
        overhead = len(prompt_ids(tokenizer, [{"role": "user", "content": ""}]))
        self.max_message_tokens = max(1, model.config.block_size - args.max_new_tokens - overhead)

    def say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def answer(self, text: str) -> None:
        text, was_cut = cut_message(self.tokenizer, text, self.max_message_tokens)
        if was_cut:
            self.say(f"(your message was cut to its first {self.max_message_tokens} tokens to fit the context)\n")
        self.history.append({"role": "user", "content": text})
        block, n = self.model.config.block_size, self.args.max_new_tokens
        self.history, dropped = trim_history(self.tokenizer, self.history, block, n)
        if dropped:
            self.say(f"(dropped the {dropped} oldest message{'s' if dropped > 1 else ''} to fit the "
                     f"{block}-token context)\n")
        self.say(f"{self.name}> ")
        pieces = []
        try:
            for piece in stream_reply(self.model, self.tokenizer, self.history, max_new_tokens=n,
                                      temperature=self.args.temperature, top_k=self.args.top_k,
                                      top_p=self.args.top_p, seed=self.args.seed):
                pieces.append(piece)
                self.say(piece)
        finally:
            self.say("\n")
            self.history.append({"role": "assistant", "content": "".join(pieces).strip()})


def _read_line(stream) -> str | None:
    """One line of input as text (None at the end of input). Bytes that are not UTF-8
    become U+FFFD instead of raising."""
    raw = stream.readline()
    if not raw:
        return None
    return raw.decode("utf-8", errors="replace").rstrip("\r\n")


def run_eval(model, tokenizer, args, persona: str) -> str:
    from tinyllm import chat_eval  # the evaluation is optional; the chat works without it

    def reply_fn(messages):
        return reply(model, tokenizer, messages, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                     top_k=args.top_k, top_p=args.top_p, seed=0 if args.seed is None else args.seed, raw=True)

    report = chat_eval.run_eval(reply_fn, chat_eval.eval_cases(persona=persona))
    text = chat_eval.format_table(report)
    if persona == "guppy":  # the hand-written messages are to the fish
        hand = chat_eval.run_eval(reply_fn, chat_eval.handwritten_cases(persona))
        text += "\n\n" + chat_eval.format_table(hand)
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinyllm.chat", description="Chat with a tiny chat model.",
                                     epilog="In the chat: an empty line is ignored; /reset forgets the "
                                            "conversation; /quit, Ctrl-D or Ctrl-C leaves.")
    parser.add_argument("--out_dir", default=None, help="checkpoint folder (default: the shipped assistant)")
    parser.add_argument("--prompt", default=None, help="answer this one message and exit")
    parser.add_argument("--eval", action="store_true", help="run the scored evaluation and print its table")
    parser.add_argument("--max_new_tokens", type=int, default=DEFAULTS["max_new_tokens"],
                        help=f"longest reply in tokens (default {DEFAULTS['max_new_tokens']})")
    parser.add_argument("--temperature", type=float, default=DEFAULTS["temperature"],
                        help=f"sampling temperature (default {DEFAULTS['temperature']})")
    parser.add_argument("--top_k", type=int, default=DEFAULTS["top_k"],
                        help=f"sample among the k most likely tokens (default {DEFAULTS['top_k']})")
    parser.add_argument("--top_p", type=float, default=DEFAULTS["top_p"],
                        help=f"nucleus sampling threshold (default {DEFAULTS['top_p']})")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sampling (default: random)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    return parser


def main(argv=None, stdin=None, stdout=None) -> int:
    args = build_parser().parse_args(argv)
    stdin = stdin or sys.stdin.buffer
    out = stdout or sys.stdout
    try:
        check_sampling_args(args.temperature, args.top_k, args.top_p, False)
        if args.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {args.max_new_tokens}")
        model, tokenizer, checkpoint = load_model(args.out_dir or SHIPPED_CHAT_MODEL, pick_device(args.device, False))
        if IM_END not in getattr(tokenizer, "special_tokens", {}):
            raise CheckpointError(f"{args.out_dir} holds no chat model (its tokenizer has no {IM_END} token)")
        if args.max_new_tokens >= model.config.block_size - 8:
            raise ValueError(f"max_new_tokens must be < {model.config.block_size - 8} for this model's "
                             f"{model.config.block_size}-token context, got {args.max_new_tokens}")
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    persona = checkpoint.train_config.get("persona", "guppy")
    if args.eval:
        out.write(run_eval(model, tokenizer, args, persona) + "\n")
        return 0
    session = _Session(model, tokenizer, args, out)
    session.name = persona
    if args.prompt is not None:
        session.answer(args.prompt)
        return 0
    interactive = hasattr(stdin, "isatty") and stdin.isatty()
    if interactive:
        session.say(f"chatting with {persona} ({model.num_params():,} parameters). /reset, /quit, Ctrl-D to leave.\n")
    try:
        while True:
            if interactive:
                session.say("you> ")
            line = _read_line(stdin)
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            if "\ufffd" in text:
                session.say("(some bytes of your message were not UTF-8 and were replaced by \ufffd)\n")
            if text == "/quit":
                break
            if text == "/reset":
                session.history = []
                session.say("(conversation reset)\n")
                continue
            session.answer(text)
    except KeyboardInterrupt:
        session.say("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
