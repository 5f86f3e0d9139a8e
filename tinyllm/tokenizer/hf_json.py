"""Hugging Face ``tokenizers`` files (``tokenizer.json``) for the byte-level BPE tokenizer.

A ``tokenizers`` byte-level BPE file holds the same things as :class:`BPETokenizer`, written
differently:

- ``model.vocab`` maps each token to its id, the token written with GPT-2's byte alphabet
  (:func:`bytes_to_unicode`: each of the 256 bytes is one printable character, a space is
  ``"Ġ"``). Its ids are in any order (a trained file puts the special tokens first);
- ``model.merges`` lists the merged pairs in the order learned, as ``"a b"`` or ``["a", "b"]``;
- ``added_tokens`` are the special tokens, each with its id;
- ``pre_tokenizer`` is the split pattern: ``ByteLevel`` with ``use_regex`` splits with
  GPT-2's regex; a ``Split`` regex (``Isolated``) followed by ``ByteLevel`` without regex
  splits with that regex (GPT-4, Llama 3, Qwen files; the course's files).

Reading keeps the file's ids: the merges are applied in the file's order (BPE's ranks),
and each token gets the file's id. What this tokenizer cannot reproduce exactly is refused
with a ValueError that names it: a normalizer, ``add_prefix_space``, a post-processor that
adds tokens, BPE dropout, ``ignore_merges``, a vocabulary without all 256 bytes. This module
reads JSON only; the ``tokenizers`` library is not needed (the tests compare against it).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from tinyllm.files import json_loads
from tinyllm.tokenizer.bpe import GPT2_SPLIT_PATTERN, SPLIT_PATTERNS


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte alphabet: printable bytes stand for themselves, the others (space,
    control bytes, ...) for the characters from U+0100 on, in byte order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def _to_text(token: bytes) -> str:
    alphabet = bytes_to_unicode()
    return "".join(alphabet[b] for b in token)


def _to_bytes(text: str) -> bytes | None:
    """A vocabulary string back to bytes (None if a character is outside the alphabet)."""
    decoder = _byte_decoder()
    try:
        return bytes(decoder[ch] for ch in text)
    except KeyError:
        return None


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    return {ch: b for b, ch in bytes_to_unicode().items()}


# ---------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------


def read(cls, path):
    """``cls`` (BPETokenizer) from the ``tokenizer.json`` at ``path``; ValueError naming it."""
    try:
        data = json_loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not a readable tokenizer.json: {exc}") from None
    try:
        return from_json(cls, data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _unsupported(what: str) -> ValueError:
    return ValueError(f"this tokenizer.json uses {what}, which tinyllm's BPETokenizer does not support")


def _pattern(pre) -> str:
    """The split regex a ``pre_tokenizer`` entry stands for."""
    def byte_level(step, use_regex):
        if step.get("add_prefix_space"):
            raise _unsupported("the ByteLevel pre-tokenizer with add_prefix_space=true")
        if bool(step.get("use_regex", True)) != use_regex:
            flag = str(not use_regex).lower()
            raise _unsupported(f"the ByteLevel pre-tokenizer with use_regex={flag} here")

    if not isinstance(pre, dict):
        raise _unsupported(f"the pre_tokenizer {pre!r} (a byte-level BPE needs ByteLevel)")
    if pre.get("type") == "ByteLevel":
        byte_level(pre, True)
        return GPT2_SPLIT_PATTERN
    steps = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if not steps or len(steps) != 2 or steps[0].get("type") != "Split" or steps[1].get("type") != "ByteLevel":
        kinds = [s.get("type") for s in steps] if steps else pre.get("type")
        raise _unsupported(f"the pre_tokenizer {kinds} (supported: ByteLevel, Sequence [Split, ByteLevel])")
    split = steps[0]
    byte_level(steps[1], False)
    regex = split.get("pattern", {}).get("Regex")
    if regex is None:
        raise _unsupported(f"a Split pre-tokenizer on a plain string {split.get('pattern')!r}")
    if split.get("behavior") != "Isolated" or split.get("invert"):
        raise _unsupported(f"a Split pre-tokenizer with behavior {split.get('behavior')!r} "
                           f"and invert={split.get('invert')} (supported: Isolated, invert=false)")
    if regex in SPLIT_PATTERNS.values():
        return regex
    # The text between two matches is a piece of its own in tokenizers; findall would drop it.
    return f"(?:{regex})|(?:(?!(?:{regex}))[\\s\\S])+"


def _check_parts(data: dict) -> dict:
    model = data.get("model")
    if not isinstance(model, dict):
        raise ValueError(f"\"model\" must be an object, got {model!r}")
    if model.get("type", "BPE") != "BPE":
        raise _unsupported(f"the model {model['type']!r} (not BPE)")
    def kind(part):
        return part.get("type") if isinstance(part, dict) else part

    if data.get("normalizer") is not None:
        raise _unsupported(f"the normalizer {kind(data['normalizer'])!r}")
    post = data.get("post_processor")
    if post is not None and kind(post) != "ByteLevel":
        raise _unsupported(f"the post_processor {kind(post)!r} (it adds tokens)")
    decoder = data.get("decoder")
    if decoder is not None and kind(decoder) != "ByteLevel":
        raise _unsupported(f"the decoder {kind(decoder)!r}")
    for key, harmless in (("dropout", (None,)), ("continuing_subword_prefix", (None, "")),
                          ("end_of_word_suffix", (None, "")), ("byte_fallback", (None, False)),
                          ("ignore_merges", (None, False))):
        if model.get(key) not in harmless:
            raise _unsupported(f"BPE {key}={model[key]!r}")
    return model


def from_json(cls, data):
    """``cls`` from the parsed JSON of a ``tokenizer.json``."""
    if not isinstance(data, dict):
        raise ValueError("a tokenizer.json holds a JSON object")
    model = _check_parts(data)
    pattern = _pattern(data.get("pre_tokenizer"))
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not all(isinstance(i, int) for i in vocab.values()):
        raise ValueError("model.vocab must map strings to ids")
    added = {}
    for entry in data.get("added_tokens") or []:
        if not isinstance(entry, dict) or not isinstance(entry.get("content"), str) or not isinstance(
                entry.get("id"), int):
            raise ValueError(f"an added token must have a string content and an int id, got {entry!r}")
        for flag in ("lstrip", "rstrip", "single_word"):
            if entry.get(flag):
                raise _unsupported(f"the added token {entry.get('content')!r} with {flag}=true")
        added[entry["content"]] = entry["id"]
    by_bytes: dict[bytes, int] = {}
    for text, i in vocab.items():
        token = _to_bytes(text)
        if text in added and added[text] == i:
            continue  # the same token as an added one (GPT-2's <|endoftext|>)
        if token is None:
            raise ValueError(f"the vocabulary token {text!r} (id {i}) is not in the byte-level alphabet")
        if token in by_bytes:
            raise ValueError(f"the vocabulary has two ids for the bytes {token!r}")
        by_bytes[token] = i
    missing = [b for b in range(256) if bytes([b]) not in by_bytes]
    if missing:
        shown = ", ".join(repr(bytes_to_unicode()[b]) for b in missing[:5])
        raise ValueError(f"the vocabulary lacks {len(missing)} of the 256 bytes ({shown}...): a byte-level "
                         "BPE needs them all (train it with "
                         "initial_alphabet=pre_tokenizers.ByteLevel.alphabet())")
    byte_ids = [by_bytes[bytes([b])] for b in range(256)]
    canonical = {bytes([b]): b for b in range(256)}  # bytes -> tinyllm's id (byte, then 256 + k)
    merges, merge_ids = [], []
    for k, entry in enumerate(model.get("merges") or []):
        pair = entry.split(" ") if isinstance(entry, str) else entry
        if not isinstance(pair, (list, tuple)) or len(pair) != 2 or not all(isinstance(t, str) for t in pair):
            raise ValueError(f"merge {k} must be \"a b\" or [\"a\", \"b\"], got {entry!r}")
        left, right = pair
        a, b = _to_bytes(left), _to_bytes(right)
        if a not in canonical or b not in canonical:
            raise ValueError(f"merge {k} {entry!r} uses a token that no earlier merge makes")
        if a + b in canonical:
            raise ValueError(f"merge {k} {entry!r} makes {a + b!r}, which an earlier merge already makes "
                             "(tinyllm gives every merge its own id)")
        if a + b not in by_bytes:
            raise ValueError(f"merge {k} {entry!r} makes a token that is not in the vocabulary")
        merges.append((canonical[a], canonical[b]))
        canonical[a + b] = 256 + k
        merge_ids.append(by_bytes[a + b])
    made = set(byte_ids) | set(merge_ids)
    extra = {i: token for token, i in by_bytes.items() if i not in made}
    specials = sorted(added, key=added.get)
    ids = {"bytes": byte_ids, "merges": merge_ids, "special": [added[s] for s in specials], "extra": extra,
           "source": data}
    first_special = 256 + len(merges)
    canonical_layout = (byte_ids == list(range(256)) and merge_ids == list(range(256, first_special))
                        and ids["special"] == list(range(first_special, first_special + len(specials)))
                        and not extra)
    name = next((n for n, p in SPLIT_PATTERNS.items() if p == pattern), pattern)
    tokenizer = cls.__new__(cls)
    tokenizer._set_state(name, merges, specials, None if canonical_layout else ids)
    return tokenizer


def renumber(merge_table, vocab, specials, ids):
    """Tinyllm's tables (bytes 0..255, merges 256.., special tokens after) with the ids of a
    file: ``merges, ranks, vocab, specials, byte_ids`` for :meth:`BPETokenizer._set_state`."""
    new = [*ids["bytes"], *ids["merges"], *ids["special"]]
    if len(new) != len(vocab):
        raise ValueError(f"{len(new)} ids for {len(vocab)} tokens")
    every = new + list(ids["extra"])
    if len(set(every)) != len(every):
        raise ValueError("two tokens share one id")
    if sorted(every) != list(range(len(every))):
        raise ValueError(f"the ids must be 0..{len(every) - 1} without gaps")
    merges = {(new[a], new[b]): new[c] for (a, b), c in merge_table.items()}
    ranks = {(new[a], new[b]): c for (a, b), c in merge_table.items()}
    renumbered = {new[i]: token for i, token in vocab.items()}
    renumbered.update(ids["extra"])
    return merges, ranks, renumbered, {s: new[i] for s, i in specials.items()}, list(ids["bytes"])


# ---------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------


def to_json(tokenizer) -> dict:
    """The ``tokenizer.json`` of a BPETokenizer, as a dict."""
    if tokenizer._source is not None:
        return tokenizer._source
    specials = set(tokenizer.special_tokens.values())
    vocab, seen = {}, {}
    for i, token in tokenizer.vocab.items():
        if i in specials:
            continue
        text = _to_text(token)
        if text in seen:
            raise ValueError(f"ids {seen[text]} and {i} are both the bytes {token!r}: a tokenizer.json has "
                             "one id per token")
        seen[text], vocab[text] = i, i
    merges = [[_to_text(tokenizer.vocab[a]), _to_text(tokenizer.vocab[b])] for a, b in tokenizer.merges]
    if tokenizer.pattern == GPT2_SPLIT_PATTERN:
        pre = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": tokenizer.pattern}, "behavior": "Isolated",
             "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False},
        ]}
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True}
             for s, i in sorted(tokenizer.special_tokens.items(), key=lambda item: item[1])]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added, "normalizer": None,
        "pre_tokenizer": pre, "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                  "ignore_merges": False, "vocab": vocab, "merges": merges},
    }


def write(tokenizer, path) -> None:
    """Write :func:`to_json` to ``path``."""
    text = json.dumps(to_json(tokenizer), ensure_ascii=False, indent=1)
    Path(path).write_text(text + "\n", encoding="utf-8")
