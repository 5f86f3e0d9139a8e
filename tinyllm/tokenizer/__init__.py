"""Tokenizers: text to integer ids and back.

``CharTokenizer`` (one token per character) is built in chapter 01; ``BPETokenizer``
(byte-level byte-pair encoding, as in GPT-2 and GPT-4) in chapter 03.
"""

from tinyllm.tokenizer.bpe import BPETokenizer
from tinyllm.tokenizer.char import CharTokenizer

__all__ = ["BPETokenizer", "CharTokenizer"]
