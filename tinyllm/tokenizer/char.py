"""The character-level tokenizer: one token per distinct character of a text."""

from __future__ import annotations

import json
from pathlib import Path

from tinyllm.files import json_loads
from tinyllm.validate import token_id


class CharTokenizer:
    """Maps each character of a fixed vocabulary to an integer id and back.

    The vocabulary is the sorted set of characters of the training text, so the same
    text always gives the same ids. ``stoi`` (string to int) and ``itos`` (int to string)
    are the two lookup tables.
    """

    def __init__(self, chars):
        chars = list(chars)
        if len(set(chars)) != len(chars):
            raise ValueError("the vocabulary has repeated characters")
        if any(len(c) != 1 for c in chars):
            raise ValueError("every vocabulary entry must be exactly one character")
        self.itos: list[str] = chars
        self.stoi: dict[str, int] = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            # Find the first unknown character again to say where it is.
            position = next(i for i, c in enumerate(text) if c not in self.stoi)
            raise ValueError(
                f"character {text[position]!r} at position {position} is not in the "
                f"vocabulary of {self.vocab_size} characters"
            ) from None

    def decode(self, ids) -> str:
        if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
            ids = ids.tolist()
        return "".join(self.itos[token_id(i, self.vocab_size)] for i in ids)

    def token_strings(self) -> list[str]:
        """Each token as readable text, in id order."""
        return list(self.itos)

    def to_dict(self) -> dict:
        """The saved form, readable JSON: ``{"type": "char", "chars": [...]}``."""
        return {"type": "char", "chars": list(self.itos)}

    @classmethod
    def from_dict(cls, state) -> CharTokenizer:
        if not isinstance(state, dict) or state.get("type") != "char" or not isinstance(state.get("chars"), list):
            raise ValueError("not a character tokenizer (expected type 'char' and a list 'chars')")
        return cls(state["chars"])

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path) -> CharTokenizer:
        try:
            return cls.from_dict(json_loads(Path(path).read_text(encoding="utf-8")))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not a valid tokenizer file: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
