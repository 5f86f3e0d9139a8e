"""Talk to a chat model: ``python -m tinyllm.chat``, or :func:`reply` from Python.

    python -m tinyllm.chat                          # the shipped assistant, interactive
    python -m tinyllm.chat --prompt "what do you eat?"
    python -m tinyllm.chat --greedy --prompt "hi"   # the most likely token every time
    python -m tinyllm.chat --eval                   # the scored evaluation, per category

From code written for an OpenAI client or GuppyLM's inference, :func:`chat_completion` takes
the same messages and returns the same kind of dict.

A conversation is a list of messages ``{"role", "content"}``. To answer, the messages are
encoded in the chat template (:func:`tinyllm.chat_data.encode_chat`) with the assistant's
turn opened: the template's markers are inserted as ids and every message's content is
encoded as ordinary text, so a user who types ``<|im_end|>`` cannot close a turn or forge
one. The model samples one token at a time (with a KV cache: each new token costs
one position, not the whole context) until it writes the end-of-turn token
``<|im_end|>``. The history must fit the context window (``block_size`` tokens, the
prompt plus the reply): :func:`trim_history` drops the oldest turns until it does.

A model trained on the course's persona data reads the user's messages lower-cased
(``lowercase_user=True``; :func:`reads_lower_case` tells from its checkpoint): that data is
written mostly in lower case, and "ARE YOU HUNGRY?" falls apart into other, rarer tokens than
"are you hungry?". The command line, :func:`chat_completion` and the book's page do it for
such a model; a model trained on one's own conversations reads them as typed.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import torch

from tinyllm.chat_data import ENDOFTEXT, IM_END, IM_START, check_messages, encode_chat
from tinyllm.checkpoint import CheckpointError, load_model
from tinyllm.data import is_conversation_file
from tinyllm.device import pick_device
from tinyllm.kv_cache import KVCache
from tinyllm.model import eval_mode
from tinyllm.sampling import check_sampling_args, sample_next
from tinyllm.validate import check_int

SHIPPED_CHAT_MODEL = Path(__file__).resolve().parent / "checkpoints" / "chat-cpu"
DEFAULTS = dict(max_new_tokens=48, temperature=0.8, top_k=40, top_p=0.95)


def _load_chat_checkpoint(out_dir, device):
    folder = SHIPPED_CHAT_MODEL if out_dir is None else out_dir
    model, tokenizer, checkpoint = load_model(folder, device)
    if IM_END not in getattr(tokenizer, "special_tokens", {}):
        raise CheckpointError(f"the model in {folder} is not a chat model: its tokenizer has no {IM_END} token")
    return model, tokenizer, checkpoint


def load_chat_model(out_dir=None, device: str | torch.device = "cpu"):
    """``model, tokenizer`` from a checkpoint folder (None: the shipped assistant), eval mode."""
    model, tokenizer, _ = _load_chat_checkpoint(out_dir, device)
    return model, tokenizer


def reads_lower_case(checkpoint) -> bool:
    """Whether the checkpoint's model should read the user's messages lower-cased: it was
    trained on the course's persona data (``dataset="chat"``, the shipped assistant), whose
    messages are mostly lower case. Not a model trained on one's own conversations."""
    return checkpoint.train_config.get("dataset") == "chat"


def prompt_ids(tokenizer, messages, lowercase_user: bool = False) -> list[int]:
    """The token ids of ``messages`` in the chat template, with the assistant's turn opened.

    Only the template's markers are special ids; special token strings inside a message
    are ordinary text (:func:`tinyllm.chat_data.encode_chat`). ``lowercase_user``: the
    user's messages are encoded lower-cased (see :func:`reads_lower_case`)."""
    check_messages(messages)
    if not messages:  # OpenAI's API refuses it too; the model would answer a question never asked
        raise ValueError("no messages: a reply needs at least one")
    if lowercase_user:
        messages = [{**m, "content": m["content"].lower()} if m["role"] == "user" else m for m in messages]
    return encode_chat(tokenizer, messages, add_generation_prompt=True)[0]


def trim_history(tokenizer, messages, block_size: int, max_new_tokens: int, lowercase_user: bool = False):
    """Drop the oldest turns until the prompt plus ``max_new_tokens`` fits ``block_size``.

    Returns ``(messages, dropped)``: a new list and how many messages were dropped. System
    messages (each where it was) and the last message (the question to answer) are kept; a
    turn is a user message and the assistant's answer, dropped together. ValueError if even
    the last message alone does not fit (cut it first: :func:`cut_message`).
    """
    check_messages(messages)
    budget = block_size - max_new_tokens
    if budget < 1:
        raise ValueError(f"max_new_tokens={max_new_tokens} leaves no room for the prompt in block_size={block_size}")
    kept, dropped = list(messages), 0
    while len(prompt_ids(tokenizer, kept, lowercase_user)) > budget:
        rest = [i for i, m in enumerate(kept) if m["role"] != "system"]  # the droppable, oldest first
        if len(rest) <= 1:
            what = ("the system message and the last message take" if len(kept) > len(rest)
                    else "the last message alone takes")  # system messages are never dropped
            raise ValueError(
                f"{what} {len(prompt_ids(tokenizer, kept, lowercase_user))} tokens with the template; "
                f"the context has room for {budget} (block_size {block_size} - max_new_tokens {max_new_tokens})"
            )
        turn = len(rest) > 2 and kept[rest[0]]["role"] == "user" and kept[rest[1]]["role"] == "assistant"
        gone = set(rest[:2 if turn else 1])
        kept, dropped = [m for i, m in enumerate(kept) if i not in gone], dropped + len(gone)
    return kept, dropped


def cut_message(tokenizer, text: str, max_tokens: int, keep: str = "start") -> tuple[str, bool]:
    """``text`` cut to its first (``keep="start"``) or last (``"end"``) ``max_tokens`` tokens;
    ``(text, was_cut)``. The command line keeps the end: a question usually comes last.

    Special token strings typed by the user are ordinary text here, as they are when the
    message is encoded in the template (:func:`prompt_ids`).
    """
    if keep not in ("start", "end"):
        raise ValueError(f"keep must be 'start' or 'end', got {keep!r}")
    ids = tokenizer.encode(text, allowed_special="none")
    if len(ids) <= max_tokens:
        return text, False
    # The kept ids, decoded, can encode to more (a merge across the cut): keep fewer until they fit.
    for n in range(max_tokens, -1, -1):
        if keep == "start":
            cut = tokenizer.decode(ids[:n]).rstrip("\ufffd")
        else:
            cut = tokenizer.decode(ids[len(ids) - n:] if n else []).lstrip("\ufffd")
        if len(tokenizer.encode(cut, allowed_special="none")) <= max_tokens:
            return cut, True
    return "", True


@torch.no_grad()
def _reply_tokens(model, ids, max_new_tokens, temperature, top_k, top_p, greedy, seed, stop_ids):
    """Yield the ids the model writes after ``ids``, one at a time; an id of ``stop_ids`` is
    yielded last. Returns (as the generator's value) why it stopped: ``"stop"`` at a stop id,
    ``"length"`` after ``max_new_tokens`` ids or when the context is full."""
    check_sampling_args(temperature, top_k, top_p, greedy)
    check_int("max_new_tokens", max_new_tokens)
    block = model.config.block_size
    if len(ids) >= block:
        raise ValueError(f"the conversation takes {len(ids)} tokens, the context holds {block}: use trim_history")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    with eval_mode(model):  # put back when the reply ends or its reader stops early
        cache = KVCache(model.config.n_layer)
        logits, _ = model(torch.tensor([ids], device=device), kv_cache=cache)
        for _ in range(min(max_new_tokens, block - len(ids))):
            next_id = sample_next(logits[:, -1, :], temperature, top_k, top_p, greedy, generator)
            token = next_id.item()
            yield token
            if token in stop_ids:
                return "stop"
            if cache.length >= block:
                break  # the context is full: the reply stops here, unfinished
            logits, _ = model(next_id, kv_cache=cache)
        return "length"


def _stop_ids(tokenizer, raw: bool) -> set[int]:
    """The ids that end a reply: ``<|im_end|>``, ``<|endoftext|>``, and unless ``raw`` the
    ``<|im_start|>`` of a turn the model would start itself."""
    ends = {tokenizer.special_tokens[t] for t in (IM_END, ENDOFTEXT) if t in tokenizer.special_tokens}
    if not raw and IM_START in tokenizer.special_tokens:
        ends.add(tokenizer.special_tokens[IM_START])
    return ends


def stream_reply(model, tokenizer, messages, *, max_new_tokens: int = DEFAULTS["max_new_tokens"],
                 temperature: float = DEFAULTS["temperature"], top_k: int | None = DEFAULTS["top_k"],
                 top_p: float | None = DEFAULTS["top_p"], greedy: bool = False, seed: int | None = None,
                 raw: bool = False, lowercase_user: bool = False) -> Iterator[str]:
    """Yield the reply to ``messages`` in pieces of text, as the tokens are sampled.

    Stops at ``<|im_end|>`` (the end of the turn), after ``max_new_tokens`` tokens, or when
    the context is full. ``raw=False`` (for people) also stops where the model would start
    a new turn itself (``<|im_start|>``) and never shows a special token. ``raw=True`` (for
    the evaluation) shows them as text: the ``<|im_end|>`` that ended the turn, and any
    ``<|im_start|>`` the model wrote. ``greedy``: the most likely token every time (the
    sampling settings are then ignored); ``seed``: the same reply for the same seed;
    ``lowercase_user``: the user's messages are read lower-cased (:func:`reads_lower_case`).
    """
    stop_ids = _stop_ids(tokenizer, raw)
    tokens = _reply_tokens(model, prompt_ids(tokenizer, messages, lowercase_user), max_new_tokens, temperature,
                           top_k, top_p, greedy, seed, stop_ids)
    # Tokens are bytes; a character may span two tokens, so decode incrementally.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with contextlib.closing(tokens):  # the model is back in its own mode even if we stop early
        for token in tokens:
            if token in stop_ids:
                if raw:
                    yield decoder.decode(b"", final=True) + tokenizer.decode([token])
                return
            piece = decoder.decode(tokenizer.decode_bytes([token]))
            if piece:
                yield piece
    tail = decoder.decode(b"", final=True)
    if tail:
        yield tail


def reply(model, tokenizer, messages, **kwargs) -> str:
    """The whole reply to ``messages`` as one string (arguments of :func:`stream_reply`)."""
    return "".join(stream_reply(model, tokenizer, messages, **kwargs))


_loaded: dict = {}  # out_dir -> (model, tokenizer, reads lower case): chat_completion loads a checkpoint once


def chat_completion(messages, *, model=None, tokenizer=None, out_dir=None, max_tokens: int | None = None,
                    lowercase_user: bool | None = None, trim: bool = True, **sampling) -> dict:
    """The reply to ``messages`` as an OpenAI-style chat completion::

        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "..."},
                      "finish_reason": "stop" | "length"}],
         "usage": {"prompt_tokens": 21, "completion_tokens": 9, "total_tokens": 30}}

    ``model`` and ``tokenizer`` (default: loaded once from ``out_dir``, default the shipped
    assistant); ``sampling``: the arguments of :func:`stream_reply` (``greedy``,
    ``temperature``, ``top_k``, ``top_p``, ``seed``, ``max_new_tokens``), and OpenAI's
    ``max_tokens`` for ``max_new_tokens``. ``lowercase_user`` (default: as the loaded
    checkpoint reads, :func:`reads_lower_case`; as typed for a ``model`` given). ``trim``: drop
    the oldest turns until the prompt leaves room for ``max_new_tokens`` (:func:`trim_history`,
    as the command line does); ``False``: the conversation as given, refused if it does not fit.
    ``finish_reason`` is ``"stop"`` when the model ended its turn (``<|im_end|>``, or the
    start of a turn of its own), ``"length"`` when the reply was cut by ``max_new_tokens``
    or the context. ``completion_tokens`` counts
    every token the model wrote, the one that ended the turn included; ``content`` is the
    reply :func:`reply` gives for the same arguments.
    """
    if (model is None) != (tokenizer is None):
        raise ValueError("chat_completion needs both model and tokenizer, or neither (then out_dir is loaded)")
    reads_lower = False
    if model is None:
        key = None if out_dir is None else str(out_dir)
        if key not in _loaded:
            model, tokenizer, checkpoint = _load_chat_checkpoint(out_dir, "cpu")
            _loaded[key] = model, tokenizer, reads_lower_case(checkpoint)
        model, tokenizer, reads_lower = _loaded[key]
    lowercase_user = reads_lower if lowercase_user is None else lowercase_user
    if max_tokens is not None:
        sampling["max_new_tokens"] = max_tokens
    settings = {**DEFAULTS, **sampling}
    unknown = sorted(set(settings) - {*DEFAULTS, "greedy", "seed"})
    if unknown:
        raise ValueError(f"chat_completion got unknown arguments {unknown}")
    if trim:
        messages, _ = trim_history(tokenizer, messages, model.config.block_size, settings["max_new_tokens"],
                                   lowercase_user)
    ids = prompt_ids(tokenizer, messages, lowercase_user)
    stop_ids = _stop_ids(tokenizer, raw=False)
    tokens = _reply_tokens(model, ids, settings["max_new_tokens"], settings["temperature"],
                           settings["top_k"], settings["top_p"], settings.get("greedy", False),
                           settings.get("seed"), stop_ids)
    written = []
    while True:
        try:
            written.append(next(tokens))
        except StopIteration as done:
            finish_reason = done.value
            break
    content_ids = written[:-1] if finish_reason == "stop" else written
    return {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": tokenizer.decode(content_ids)},
                     "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": len(ids), "completion_tokens": len(written),
                  "total_tokens": len(ids) + len(written)},
    }


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------


class _Session:
    """The state of an interactive chat: the history and the settings."""

    def __init__(self, model, tokenizer, args, out, lowercase_user: bool = False):
        self.model, self.tokenizer, self.args, self.out = model, tokenizer, args, out
        self.lowercase_user = lowercase_user
        self.history: list[dict] = []
        self.name = "assistant"
        # The room for one message: the context minus the reply and the template's markers.
        overhead = len(prompt_ids(tokenizer, [{"role": "user", "content": ""}]))
        self.max_message_tokens = max(1, model.config.block_size - args.max_new_tokens - overhead)

    def say(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()

    def answer(self, text: str) -> None:
        if self.lowercase_user:  # kept as the model reads it, and cut so: "İ" lower-cased is two letters
            text = text.lower()
        text, was_cut = cut_message(self.tokenizer, text, self.max_message_tokens, keep="end")
        if was_cut:
            self.say(f"(your message was cut to its last {self.max_message_tokens} tokens to fit the context)\n")
        self.history.append({"role": "user", "content": text})
        block, n = self.model.config.block_size, self.args.max_new_tokens
        try:
            self.history, dropped = trim_history(self.tokenizer, self.history, block, n)
        except ValueError as exc:  # the message, cut to its room, still does not fit: say so, go on
            self.history.pop()
            self.say(f"error: {exc}\n")
            return
        if dropped:
            self.say(f"(dropped the {dropped} oldest message{'s' if dropped > 1 else ''} to fit the "
                     f"{block}-token context)\n")
        self.say(f"{self.name}> ")
        pieces = []
        try:
            for piece in stream_reply(self.model, self.tokenizer, self.history, max_new_tokens=n,
                                      temperature=self.args.temperature, top_k=self.args.top_k,
                                      top_p=self.args.top_p, greedy=self.args.greedy, seed=self.args.seed):
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


def run_eval(model, tokenizer, args, persona: str, lowercase_user: bool = False) -> str:
    from tinyllm import chat_eval  # the evaluation is optional; the chat works without it

    def reply_fn(messages):
        return reply(model, tokenizer, messages, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                     top_k=args.top_k, top_p=args.top_p, greedy=args.greedy,
                     seed=0 if args.seed is None else args.seed, raw=True, lowercase_user=lowercase_user)

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
    parser.add_argument("--greedy", action="store_true",
                        help="always the most likely token (no sampling: the same reply every time)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the sampling (default: random)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps (default auto)")
    return parser


def main(argv=None, stdin=None, stdout=None) -> int:
    args = build_parser().parse_args(argv)
    stdin = stdin or sys.stdin.buffer
    out = stdout or sys.stdout
    try:
        check_sampling_args(args.temperature, args.top_k, args.top_p, args.greedy)
        check_int("max_new_tokens", args.max_new_tokens)
        model, tokenizer, checkpoint = _load_chat_checkpoint(args.out_dir, pick_device(args.device, False))
        if args.max_new_tokens >= model.config.block_size - 8:
            raise ValueError(f"max_new_tokens must be < {model.config.block_size - 8} for this model's "
                             f"{model.config.block_size}-token context, got {args.max_new_tokens}")
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    persona = checkpoint.train_config.get("persona", "guppy")
    own_data = is_conversation_file(checkpoint.train_config.get("dataset", ""))  # no persona of ours
    lower = reads_lower_case(checkpoint)
    if args.eval:
        out.write(run_eval(model, tokenizer, args, persona, lower) + "\n")
        return 0
    session = _Session(model, tokenizer, args, out, lower)
    session.name = "assistant" if own_data else persona
    if args.prompt is not None:
        if not args.prompt.strip():  # as the page: nothing to answer
            print("error: --prompt is empty: write a message", file=sys.stderr)
            return 1
        # Bytes of the command line that are not UTF-8 arrive as lone surrogates: U+FFFD, as in typed input
        session.answer(args.prompt.encode("utf-8", "surrogatepass").decode("utf-8", errors="replace"))
        return 0
    interactive = hasattr(stdin, "isatty") and stdin.isatty()
    if interactive:
        session.say(f"chatting with {session.name} ({model.num_params():,} parameters). "
                    "/reset, /quit, Ctrl-D to leave.\n")
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
