"""The byte-level byte-pair encoding (BPE) tokenizer of GPT-2 and GPT-4, built in chapter 03.

Text is first turned into UTF-8 bytes, so the 256 byte values are the starting
vocabulary and any text at all can be encoded (no unknown tokens). Training then
repeats one step: find the most frequent adjacent pair of tokens and merge it into a new
token, id 256, 257, ... Encoding applies the learned merges in the order they were
learned; decoding concatenates the bytes of each token.

Before counting, a regex (the GPT-2 or GPT-4 "split pattern") cuts the text into chunks
such as ``"Hello"``, ``" world"``, ``"!"``; merges never cross a chunk boundary, so no token
glues the end of one word to the start of the next.

Tie-breaking: when several pairs share the highest count, the smallest pair ``(a, b)``
of token ids wins (compared as integers: first ``a``, then ``b``). The same text and
settings therefore always give the same merges, and the fast trainer
(:mod:`tinyllm.tokenizer.bpe_train`) gives exactly the merges of the simple one
(:mod:`tinyllm.tokenizer.bpe_reference`).

A Hugging Face ``tokenizers`` byte-level BPE file (``tokenizer.json``) is read and written
by :meth:`BPETokenizer.from_tokenizers_json` and :meth:`BPETokenizer.to_tokenizers_json`
(:mod:`tinyllm.tokenizer.hf_json`), with that library's ids.

The interface matches :class:`~tinyllm.tokenizer.char.CharTokenizer` (``vocab_size``,
``encode``, ``decode``, ``token_strings``, ``to_dict``, ``from_dict``, ``save``, ``load``) and minbpe (``train``,
``merges``, ``vocab``).
"""

from __future__ import annotations

import json
import numbers
import warnings
from collections import Counter
from pathlib import Path

import regex

from tinyllm.files import json_loads
from tinyllm.tokenizer import bpe_file
from tinyllm.tokenizer.bpe_reference import merge
from tinyllm.tokenizer.bpe_train import train_merges
from tinyllm.validate import token_id

# The split patterns of GPT-2 and GPT-4 (cl100k_base), as in tiktoken and minbpe.
GPT2_SPLIT_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT4_SPLIT_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]++[\r\n]*|\s*[\r\n]|\s+(?!\S)|\s+"""  # noqa: E501 (as tiktoken writes it)
SPLIT_PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}

_CACHE_LIMIT = 1 << 17  # chunks remembered by encode before the cache is emptied
_LONG_CHUNK = 64  # chunks longer than this (in tokens) are merged one whole pass at a time


def _compile_pattern(pattern: str):
    """Return ``(name, regex_text, compiled)`` for ``"gpt2"``, ``"gpt4"`` or a regex string."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern must be 'gpt2', 'gpt4' or a regex string, got {pattern!r}")
    text = SPLIT_PATTERNS.get(pattern, pattern)
    try:
        compiled = regex.compile(text)
    except regex.error as exc:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {exc}") from None
    return pattern if pattern in SPLIT_PATTERNS else None, text, compiled


def split_chunks(compiled, text: str) -> list[str]:
    """The pieces a split pattern cuts ``text`` into, as tokenizers' ``Split`` (``Isolated``)
    does: each whole match (also of a pattern with groups, where ``findall`` would give the
    groups) and each run of text between matches, so no text is lost."""
    if not compiled.groups:
        chunks = compiled.findall(text)  # in C: the GPT-2 and GPT-4 patterns match every character
        if sum(map(len, chunks)) == len(text):
            return chunks
    chunks, end = [], 0
    for match in compiled.finditer(text):
        if match.start() > end:
            chunks.append(text[end:match.start()])
        if match.end() > match.start():
            chunks.append(match.group(0))
        end = match.end()
    if end < len(text):
        chunks.append(text[end:])
    return chunks


def _check_special_tokens(special_tokens) -> list[str]:
    if special_tokens is None:
        return []
    if isinstance(special_tokens, str):
        raise ValueError(f"special_tokens must be a list of strings, got the string {special_tokens!r}")
    tokens = list(special_tokens)
    for token in tokens:
        if not isinstance(token, str) or not token:
            raise ValueError(f"every special token must be a non-empty string, got {token!r}")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"special tokens are repeated: {tokens}")
    return tokens


def render_bytes(token: bytes) -> str:
    """A token's bytes as readable text; bytes that are not whole UTF-8 characters become U+FFFD."""
    return token.decode("utf-8", errors="replace")


class BPETokenizer:
    """Byte-level BPE: ``train(text, vocab_size)``, then ``encode(text)`` and ``decode(ids)``.

    State (read it, do not change it by hand):

    - ``merges``: ``{(a, b): new_id}`` in the order learned (id 256 first);
    - ``vocab``: ``{id: bytes}`` for every id, special tokens included;
    - ``special_tokens``: ``{string: id}``; their ids come after the merges;
    - ``pattern``: the split regex (``pattern_name`` is ``"gpt2"``/``"gpt4"`` or ``None``).

    A new tokenizer has no merges: it encodes text as raw UTF-8 bytes (vocab_size 256),
    split with the GPT-4 pattern. ``train`` (or ``from_merges``, ``load``) sets everything.
    """

    def __init__(self):
        self._set_state("gpt4", [], [])

    # -- state -----------------------------------------------------------------------

    def _set_state(self, pattern: str, merges, special_tokens, ids: dict | None = None) -> None:
        """Build every table from the merges; the only place the state is assigned.

        By default byte ``b`` is id ``b``, merge ``k`` makes id ``256 + k`` and the special
        tokens follow. A file made elsewhere numbers its tokens its own way: ``ids`` then
        gives ``{"bytes": [256 ids], "merges": [an id per merge], "special": [an id per
        special token], "extra": {id: bytes} (tokens no merge makes, kept for decoding),
        "source": the file's JSON}``. Merges still apply in the order learned.
        """
        name, pattern_text, compiled = _compile_pattern(pattern)
        special_tokens = _check_special_tokens(special_tokens)
        merge_table: dict[tuple[int, int], int] = {}
        vocab = {i: bytes([i]) for i in range(256)}
        for k, pair in enumerate(merges):
            new_id = 256 + k
            a, b = pair
            assert a in vocab and b in vocab and pair not in merge_table, (k, pair)
            merge_table[(a, b)] = new_id
            vocab[new_id] = vocab[a] + vocab[b]
        specials = {}
        for k, token in enumerate(special_tokens):
            specials[token] = 256 + len(merge_table) + k
            vocab[specials[token]] = token.encode("utf-8")
        ranks, byte_ids = merge_table, None  # a merge's rank is its own id: the order learned
        if ids is not None:
            from tinyllm.tokenizer.hf_json import renumber

            merge_table, ranks, vocab, specials, byte_ids = renumber(merge_table, vocab, specials, ids)
        self.pattern_name = name
        self.pattern = pattern_text
        self._compiled = compiled
        self.merges = merge_table
        self._ranks, self._byte_ids, self._no_rank = ranks, byte_ids, 256 + len(ranks)
        self._source = None if ids is None else ids["source"]
        self.vocab = vocab
        self.special_tokens = specials
        self.inverse_special_tokens = {i: s for s, i in specials.items()}
        # Longest first, so that "<|end|>" never wins over "<|endoftext|>".
        ordered = sorted(specials, key=len, reverse=True)
        self._special_regex = regex.compile("(" + "|".join(regex.escape(s) for s in ordered) + ")") if ordered else None
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_merges(cls, merges, pattern: str = "gpt4", special_tokens=None) -> BPETokenizer:
        """A tokenizer from a list of merged pairs (pair ``k`` becomes id ``256 + k``).

        ``BPETokenizer.from_merges(list(tok.merges)[:k])`` is the tokenizer that training
        with ``vocab_size = 256 + k`` would have produced: BPE learns greedily, one merge at
        a time, so a smaller vocabulary is a prefix of a larger one.
        """
        merges = bpe_file.check_merges(merges)
        tokenizer = cls.__new__(cls)
        tokenizer._set_state(pattern, merges, special_tokens)
        return tokenizer

    @property
    def vocab_size(self) -> int:
        """Number of ids: 256 bytes + one per merge + one per special token."""
        return len(self.vocab)

    # -- training ----------------------------------------------------------------------

    def train(self, text: str, vocab_size: int, pattern: str = "gpt4", special_tokens=None, verbose: bool = False):
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from ``text``; returns ``self``.

        ``vocab_size`` counts every id: the 256 bytes, the merges and the special tokens.
        Special token strings found in ``text`` are cut out before counting, so no merge
        learns pieces of them. Stops early, with a warning, if no pair is left to merge.
        ``verbose`` shows a progress bar.
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(vocab_size, numbers.Integral) or isinstance(vocab_size, bool):
            raise ValueError(f"vocab_size must be an int, got {vocab_size!r}")
        special_tokens = _check_special_tokens(special_tokens)
        smallest = 256 + len(special_tokens)
        if vocab_size < smallest:
            raise ValueError(
                f"vocab_size must be at least {smallest} (256 bytes + {len(special_tokens)} special tokens), "
                f"got {vocab_size}"
            )
        _, _, compiled = _compile_pattern(pattern)
        num_merges = int(vocab_size) - smallest

        # Count unique chunks: merges never cross chunk boundaries, so each chunk is
        # trained on once, weighted by how often it occurs.
        chunk_counts: Counter[str] = Counter()
        pieces = [text]
        if special_tokens:
            ordered = sorted(special_tokens, key=len, reverse=True)
            pieces = regex.split("|".join(regex.escape(s) for s in ordered), text)
        for piece in pieces:
            chunk_counts.update(split_chunks(compiled, piece))
        by_bytes = {chunk.encode("utf-8"): count for chunk, count in chunk_counts.items()}

        progress = None
        if verbose:
            from tqdm.auto import tqdm

            progress = tqdm(total=num_merges, desc="BPE merges", unit="merge")
        try:
            merges = train_merges(by_bytes, num_merges, on_merge=(lambda *_: progress.update(1)) if progress else None)
        finally:
            if progress is not None:
                progress.close()
        if len(merges) < num_merges:
            warnings.warn(
                f"the text only allows {len(merges)} merges (asked for {num_merges}): "
                f"vocab_size is {256 + len(merges) + len(special_tokens)}, not {vocab_size}",
                stacklevel=2,
            )
        self._set_state(pattern, merges, special_tokens)
        return self

    # -- encoding ----------------------------------------------------------------------

    def _encode_chunk(self, chunk: str) -> list[int]:
        """Apply the merges to one chunk, lowest id (earliest learned) first, and cache it.

        Both loops below give the same ids as merging every occurrence of the earliest
        learned pair, left to right, until no pair is a merge (what training did).

        ``ranks[j]`` is the rank of the pair ``(ids[j], ids[j + 1])``: its merge id, or
        for a file made elsewhere its place in the file's merges (``missing`` if that pair
        is no merge). Merging the leftmost lowest pair and updating only its two neighbours'
        ranks gives the same result as merging every occurrence left to right (the new
        pairs hold the new token, so they always rank after the merge just made), without
        rebuilding the list in Python.
        """
        ids = list(chunk.encode("utf-8"))
        if self._byte_ids is not None:  # a file made elsewhere numbers the bytes its own way
            ids = [self._byte_ids[b] for b in ids]
        get = self._ranks.get
        missing = self._no_rank  # larger than every rank
        # A long chunk (a run of 10,000 spaces) would need thousands of single merges of
        # O(len) each; there one pass merges every occurrence of the best pair at once.
        while len(ids) > _LONG_CHUNK:
            pair = min(zip(ids, ids[1:]), key=lambda p: get(p, missing))
            if pair not in self.merges:
                break
            ids = merge(ids, pair, self.merges[pair])
        ranks = [get(pair, missing) for pair in zip(ids, ids[1:])]
        while ranks:
            rank = min(ranks)
            if rank == missing:
                break  # no pair of this chunk is a merge
            i = ranks.index(rank)
            new_id = self.merges[ids[i], ids[i + 1]]
            ids[i : i + 2] = [new_id]
            del ranks[i]
            if i < len(ranks):
                ranks[i] = get((new_id, ids[i + 1]), missing)
            if i > 0:
                ranks[i - 1] = get((ids[i - 1], new_id), missing)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[chunk] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode ``text`` treating special token strings as ordinary text."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        ids: list[int] = []
        cache = self._cache  # looked up here, not in _encode_chunk: most chunks are repeats
        for chunk in split_chunks(self._compiled, text):
            chunk_ids = cache.get(chunk)
            ids.extend(chunk_ids if chunk_ids is not None else self._encode_chunk(chunk))
        return ids

    def encode(self, text: str, allowed_special="none_raise") -> list[int]:
        """Text to token ids; special tokens are handled as in minbpe (tiktoken raises too, but
        takes ``allowed_special`` and ``disallowed_special=()`` instead).

        ``allowed_special``: ``"all"`` (every special token string becomes its id),
        ``"none"`` (special token strings are encoded as ordinary text), ``"none_raise"``
        (the default: raise ValueError if the text contains one), or a set of special
        tokens to allow (any other special token string in the text raises).
        """
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none":
            return self.encode_ordinary(text)
        elif allowed_special == "none_raise":
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            allowed = set(allowed_special)
            unknown = sorted(allowed - set(self.special_tokens))
            if unknown:
                raise ValueError(f"allowed_special names {unknown}, which are not special tokens of this tokenizer")
        else:
            raise ValueError(f"allowed_special must be 'all', 'none', 'none_raise' or a set, got {allowed_special!r}")
        for token in self.special_tokens:
            if token not in allowed and token in text:
                raise ValueError(
                    f"the text contains the special token {token!r}. Pass allowed_special={{{token!r}}} "
                    "(or 'all') to encode it as a special token, or allowed_special='none' to encode it "
                    "as ordinary text"
                )
        if not allowed:
            return self.encode_ordinary(text)
        ids: list[int] = []
        for i, piece in enumerate(self._special_regex.split(text)):
            # split() with one group alternates text, special, text, special, ...
            if i % 2 == 1 and piece in allowed:
                ids.append(self.special_tokens[piece])
            elif piece:
                ids.extend(self.encode_ordinary(piece))
        return ids

    # -- decoding ----------------------------------------------------------------------

    def decode_bytes(self, ids) -> bytes:
        """Token ids to the raw bytes they stand for."""
        if hasattr(ids, "tolist"):  # torch tensors and numpy arrays
            ids = ids.tolist()
        vocab = self.vocab
        try:
            if any(type(i) is not int for i in ids):  # 2.0 and True would find a token in the dict
                raise TypeError
            return b"".join(vocab[i] for i in ids)
        except (KeyError, TypeError):  # a float, a bool, an id outside, or a 0-d tensor (read as its int)
            ids = [token_id(i, self.vocab_size) for i in ids]
            missing = [i for i in ids if i not in vocab]  # a file made elsewhere may leave ids out
            if missing:
                last = self.vocab_size - 1
                raise ValueError(f"token id {missing[0]} is outside the vocabulary (0..{last})") from None
            return b"".join(vocab[i] for i in ids)

    def decode(self, ids) -> str:
        """Token ids to text. Bytes that do not form valid UTF-8 (e.g. half of an emoji's
        bytes, as a partial sequence of tokens can give) become U+FFFD, never an error."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    # -- looking at tokens ---------------------------------------------------------------

    def id_to_text(self, i: int) -> str:
        """One token as readable text (U+FFFD where it holds only part of a character)."""
        if i not in self.vocab:
            raise ValueError(f"token id {i!r} is outside the vocabulary (0..{self.vocab_size - 1})")
        return render_bytes(self.vocab[i])

    def token_strings(self) -> list[str]:
        """Each token as readable text, in id order."""
        return [render_bytes(self.vocab[i]) for i in range(self.vocab_size)]

    # -- saving --------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """The saved form (what :meth:`save` writes and checkpoints store): JSON-able data.

        Each merge is ``{"id": 256, "pair": [101, 32], "text": ["e", " "]}``: ``pair`` holds
        the ids that are merged (the truth); ``text`` shows them for people and is ignored
        when loading. A tokenizer read from a ``tokenizers`` file keeps that file whole
        (``"tokenizers_json"``), so its ids survive a checkpoint.
        """
        return bpe_file.to_dict(self)

    @classmethod
    def from_dict(cls, state) -> BPETokenizer:
        """Rebuild a tokenizer from :meth:`to_dict`'s output; ValueError says what is wrong."""
        bpe_file.check_header(state)
        if "tokenizers_json" in state:
            from tinyllm.tokenizer import hf_json

            return hf_json.from_json(cls, state["tokenizers_json"])
        pattern, merges, specials = bpe_file.parse(state)
        tokenizer = cls.__new__(cls)
        tokenizer._set_state(pattern, merges, specials)
        if state.get("vocab_size") != tokenizer.vocab_size:
            raise ValueError(f"'vocab_size' is {state.get('vocab_size')!r} but the file defines "
                             f"{tokenizer.vocab_size} ids")
        return tokenizer

    def save(self, path) -> None:
        """Save :meth:`to_dict` as readable JSON, one merge per line (a tokenizer read from a
        ``tokenizers`` file is saved as such a file)."""
        if self._source is not None:
            self.to_tokenizers_json(path)
            return
        Path(path).write_text(bpe_file.dumps(self.to_dict()), encoding="utf-8")

    @classmethod
    def load(cls, path) -> BPETokenizer:
        """Read a file written by :meth:`save`, or a ``tokenizers`` ``tokenizer.json``
        (:meth:`from_tokenizers_json`). Any problem raises ValueError naming the file;
        nothing is half-loaded because a new tokenizer is built only from a checked file."""
        try:
            state = json_loads(Path(path).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a valid BPE tokenizer file (truncated or not JSON?): {exc}") from None
        if isinstance(state, dict) and "model" in state and "type" not in state:
            return cls.from_tokenizers_json(path)
        try:
            return cls.from_dict(state)
        except ValueError as exc:
            raise ValueError(f"{path} is not a valid BPE tokenizer file: {exc}") from None

    @classmethod
    def from_tokenizers_json(cls, path) -> BPETokenizer:
        """Read a Hugging Face ``tokenizers`` byte-level BPE file (``tokenizer.json``).

        ``encode(text, allowed_special="all")`` then gives the ids ``tokenizers`` gives
        (its added tokens are this tokenizer's special tokens). What cannot be reproduced
        exactly (a normalizer, ``add_prefix_space``, merges that are skipped, ...) is a
        ValueError naming it. See :mod:`tinyllm.tokenizer.hf_json`.
        """
        from tinyllm.tokenizer import hf_json

        return hf_json.read(cls, path)

    def to_tokenizers_json(self, path) -> None:
        """Write this tokenizer as a ``tokenizers`` ``tokenizer.json`` with the same ids
        (the special tokens as added tokens, the split pattern as its pre-tokenizer)."""
        from tinyllm.tokenizer import hf_json

        hf_json.write(self, path)

    def __repr__(self) -> str:
        pattern = self.pattern_name or "custom"
        return (f"BPETokenizer(vocab_size={self.vocab_size}, merges={len(self.merges)}, "
                f"special_tokens={len(self.special_tokens)}, pattern={pattern!r})")

