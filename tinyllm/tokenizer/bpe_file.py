"""The saved form of :class:`~tinyllm.tokenizer.bpe.BPETokenizer`: a JSON object, checked.

:meth:`BPETokenizer.to_dict` / :meth:`~BPETokenizer.from_dict` and ``save`` / ``load`` go
through here: what the object holds, how it is checked when read back (every problem a
``ValueError`` that says what is wrong) and the readable file with one merge per line.
"""

from __future__ import annotations

import json
import numbers

FILE_TYPE = "bpe"
FILE_VERSION = 1


def to_dict(tokenizer) -> dict:
    """The saved form of ``tokenizer`` (see :meth:`BPETokenizer.to_dict`)."""
    if tokenizer._source is not None:
        return {"type": FILE_TYPE, "version": FILE_VERSION, "tokenizers_json": tokenizer._source}
    return {
        "type": FILE_TYPE,
        "version": FILE_VERSION,
        "pattern": tokenizer.pattern_name or tokenizer.pattern,
        "vocab_size": tokenizer.vocab_size,
        "special_tokens": dict(tokenizer.special_tokens),
        "merges": [
            {"id": new_id, "pair": [a, b], "text": [tokenizer.id_to_text(a), tokenizer.id_to_text(b)]}
            for (a, b), new_id in tokenizer.merges.items()
        ],
    }


def check_header(state) -> None:
    """Raise ``ValueError`` unless ``state`` is an object of this type and version."""
    if not isinstance(state, dict) or state.get("type") != FILE_TYPE:
        raise ValueError(f"expected a JSON object with \"type\": \"{FILE_TYPE}\"")
    if state.get("version") != FILE_VERSION:
        raise ValueError(f"unsupported version {state.get('version')!r} (this code reads {FILE_VERSION})")


def parse(state: dict) -> tuple[str | None, list[tuple[int, int]], list[str]]:
    """The pattern, checked merges and special tokens (in id order) of a saved form whose
    header :func:`check_header` accepted."""
    entries = state.get("merges")
    if not isinstance(entries, list):
        raise ValueError("'merges' must be a list")
    merges = []
    for k, entry in enumerate(entries):
        if not isinstance(entry, dict) or entry.get("id") != 256 + k:
            raise ValueError(f"merge number {k} must be an object with \"id\": {256 + k}, got {entry!r}")
        merges.append(entry.get("pair"))
    merges = check_merges(merges)
    specials = state.get("special_tokens")
    if not isinstance(specials, dict) or not all(
        isinstance(i, int) and not isinstance(i, bool) for i in specials.values()
    ):
        raise ValueError("'special_tokens' must be an object {string: id}")
    first = 256 + len(merges)
    if sorted(specials.values()) != list(range(first, first + len(specials))):
        raise ValueError(f"special token ids must be {first}..{first + len(specials) - 1}, got {specials}")
    return state.get("pattern"), merges, sorted(specials, key=specials.get)


def check_merges(merges) -> list[tuple[int, int]]:
    """Every merge is a pair of existing ids (bytes or earlier merges), none repeated."""
    checked: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for k, pair in enumerate(merges):
        if (
            not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(isinstance(i, numbers.Integral) and not isinstance(i, bool) for i in pair)
        ):
            raise ValueError(f"merge number {k} must be a pair of two ints, got {pair!r}")
        a, b = int(pair[0]), int(pair[1])
        if not (0 <= a < 256 + k and 0 <= b < 256 + k):
            raise ValueError(f"merge number {k} {pair!r} uses an id that does not exist yet (0..{255 + k})")
        if (a, b) in seen:
            raise ValueError(f"merge number {k} {pair!r} repeats an earlier merge")
        seen.add((a, b))
        checked.append((a, b))
    return checked


def dumps(state: dict) -> str:
    """``state`` as indented JSON with each merge on one line, so a person can read the
    merges in the order they were learned (``json.dumps(indent=...)`` would spread each
    over six lines)."""
    state = dict(state)
    lines = [json.dumps(entry, ensure_ascii=False) for entry in state.pop("merges")]
    head = json.dumps(state, ensure_ascii=False, indent=1)
    return head[:-2] + ',\n "merges": [\n  ' + ",\n  ".join(lines) + "\n ]\n}\n"
