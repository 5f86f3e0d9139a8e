"""What a training run trains on: a tokenizer and its ``{"train", "val"}`` splits.

Text (``dataset="shakespeare"``, a corpus name or a ``.txt`` path) is tokenized whole and
split contiguously; a char tokenizer is read off the whole text, a BPE tokenizer is trained
on the training split only (it never sees the held-out text). Conversations
(``dataset="chat"``) come from :mod:`tinyllm.chat_data`, encoded with the chat template,
their labels masked except on the assistant's tokens, and batched by :mod:`tinyllm.batching`.
"""

from __future__ import annotations

import typing
from array import array

import torch

from tinyllm.batching import ChatBatches, unmasked
from tinyllm.data import conversation_splits, get_batch, is_conversation_file, load_text, train_val_split
from tinyllm.tokenizer import BPETokenizer, CharTokenizer

if typing.TYPE_CHECKING:
    from tinyllm.config import TrainConfig


def get_split_batch(split, batch_size: int, block_size: int, generator):
    """A batch ``(x, y)`` from a split: a 1-D tensor of ids (text) or :class:`ChatBatches`."""
    if isinstance(split, torch.Tensor):
        return get_batch(split, batch_size, block_size, generator=generator)
    return split.get_batch(batch_size, block_size, generator=generator)


def build_tokenizer(spec: str, text: str, vocab_size: int = 512, special_tokens=()):
    """``"char"``: the characters of ``text``; ``"bpe"``: BPE trained on ``text`` with
    ``special_tokens``; a ``.json`` path: the BPE tokenizer saved there."""
    if spec == "char":
        return CharTokenizer.from_text(text)
    if spec == "bpe":
        return BPETokenizer().train(text, vocab_size, special_tokens=list(special_tokens))
    tokenizer = BPETokenizer.load(spec)
    missing = [s for s in special_tokens if s not in tokenizer.special_tokens]
    if missing:
        raise ValueError(f"the tokenizer {spec} lacks the special tokens {missing}")
    return tokenizer


def prepare_data(text: str, val_fraction: float, tokenizer=None):
    """Tokenize ``text`` and split it: ``tokenizer, {"train": ids, "val": ids}``."""
    tokenizer = tokenizer or CharTokenizer.from_text(text)
    train_ids, val_ids = train_val_split(_ids(tokenizer, text), val_fraction)
    return tokenizer, {"train": train_ids, "val": val_ids}


def _ids(tokenizer, text: str) -> torch.Tensor:
    ids = tokenizer.encode(text)
    # Through an array of int64: torch.tensor reads a list of 4.5 million ints three times slower.
    return torch.frombuffer(array("q", ids), dtype=torch.long) if ids else torch.zeros(0, dtype=torch.long)


def prepare_chat(cfg: TrainConfig, tokenizer=None, conversations: dict | None = None):
    """Conversations to batches: ``tokenizer, {"train": ChatBatches, "val": ChatBatches}``.

    ``conversations`` ``{"train": [...], "val": [...]}`` (lists of message lists), default
    from :func:`tinyllm.chat_data.chat_dataset`. A BPE tokenizer is trained on the rendered
    training conversations unless one is given. Validation labels are always masked.
    """
    from tinyllm import chat_data

    if conversations is None:  # the data's own seed (0) is fixed: cfg.seed varies only the training
        conversations = chat_data.chat_dataset(persona=cfg.persona, n=cfg.n_conversations, n_unseen=0)
        conversations = {"train": conversations["train"], "val": conversations["val"]}
    if tokenizer is None:
        text = chat_data.corpus_text(conversations["train"])
        tokenizer = build_tokenizer(cfg.tokenizer, text, cfg.vocab_size, chat_data.SPECIAL_TOKENS)
    encoded = {split: [chat_data.encode_chat(tokenizer, c) for c in convs] for split, convs in conversations.items()}
    if not cfg.mask_user:
        encoded["train"] = unmasked(encoded["train"])
    pad_id = tokenizer.special_tokens.get(chat_data.ENDOFTEXT, tokenizer.special_tokens[chat_data.IM_END])
    batches = {split: ChatBatches(ex, cfg.batching, pad_id) for split, ex in encoded.items()}
    for split, held in batches.items():  # else every loss is a mean over nothing: NaN
        if held.num_learned() == 0:
            raise ValueError(f"the {split} conversations hold no assistant message to learn from")
    return tokenizer, batches


def prepare(cfg: TrainConfig, tokenizer=None, text: str | None = None, conversations: dict | None = None):
    """The run's ``tokenizer, splits``: conversations for ``dataset="chat"`` (or when
    ``conversations`` are given), else ``text`` (default: the corpus ``cfg.dataset``).
    ``tokenizer``: keep this one (a resumed run's) instead of making one."""
    if conversations is None and text is None and is_conversation_file(cfg.dataset):
        conversations = conversation_splits(cfg.dataset, cfg.val_dataset, cfg.val_fraction)
    if cfg.dataset == "chat" or conversations is not None:
        return prepare_chat(cfg, tokenizer, conversations)
    text = load_text(cfg.dataset) if text is None else text
    train_text, val_text = train_val_split(text, cfg.val_fraction)
    if tokenizer is None:  # BPE never sees the held-out text
        tokenizer = build_tokenizer(cfg.tokenizer, text if cfg.tokenizer == "char" else train_text, cfg.vocab_size)
    if isinstance(tokenizer, CharTokenizer):  # one id a character: the ids are cut where the text is
        return prepare_data(text, cfg.val_fraction, tokenizer)
    # A BPE id spans characters: cut the text, then encode each part on its own.
    return tokenizer, {"train": _ids(tokenizer, train_text), "val": _ids(tokenizer, val_text)}
