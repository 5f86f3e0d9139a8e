"""Chat data you can read and change: personas, topics, templates, the chat template.

A conversation is a list of messages ``{"role": "system" | "user" | "assistant",
"content": str}``. This module makes them synthetically, the way GuppyLM made its data,
and you can see every step in this file:

1. A **persona** (:data:`PERSONAS`) is a name, a system prompt and word pools: what it
   eats, where it lives, who its friends are. ``make_conversations(persona="hamster")``
   swaps the personality in one argument.
2. A **topic** (:data:`TOPICS`) holds question templates (``ask``), answer templates
   (``say``), follow-ups that refer to the previous turn (``"why?"``, ``"and at night?"``)
   and the keywords an on-topic answer contains. ``{slot}`` in a template is filled from
   the persona's pool of that name, the same word for a whole question-and-answer pair
   (so "i eat flakes" is followed by "flakes are ..."). A verb in braces agrees with the
   slot next to it (:data:`VERBS`): ``"{friend} {is} my friend."`` gives "the other
   guppies are my friend.".
3. :func:`render` writes messages in the one chat template (ChatML, as in GuppyLM)::

       <|im_start|>user
       what do you eat?<|im_end|>
       <|im_start|>assistant
       i eat flakes. flakes are my favourite.<|im_end|>

   ``<|im_start|>`` and ``<|im_end|>`` are special tokens: each is one id that ordinary
   text can never produce (register :data:`SPECIAL_TOKENS` with the BPE tokenizer).
4. :func:`encode_chat` turns messages into token ids and labels, with ``-100`` (ignored by
   ``cross_entropy``) everywhere except the assistant's words and their closing
   ``<|im_end|>``: the model learns to answer and to stop, never to write the user's part.

Splits (:func:`chat_dataset`): every fourth question template of each topic is held out
("unseen": whole templates the model never trains on, to tell memorising from
generalising); the remaining conversations are split at random by a hash of their
questions into train and val, so that no val-bucket question appears verbatim in training.
The assistant's side is lower-case, as in GuppyLM's data; the user's side is written as
people type (:func:`vary_wording`: capitals, typos, no punctuation, polite or casual
phrases). Everything is deterministic for a seed. The tables (personas, topics, wordings)
live in :mod:`tinyllm.chat_topics`.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter

# the tables
from tinyllm.chat_topics import (  # noqa: F401
    FOLLOWUP_ALIASES,
    PERSONAS,
    SHARED_POOLS,
    TOPICS,
    USER_PREFIXES,
    WHY,
    WORDINGS,
)
from tinyllm.model import IGNORE_INDEX  # the label the loss skips
from tinyllm.validate import check_int

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
ENDOFTEXT = "<|endoftext|>"  # separates packed conversations; also a safe padding id
SPECIAL_TOKENS = [IM_START, IM_END, ENDOFTEXT]
ROLES = ("system", "user", "assistant")

HELD_OUT_EVERY = 4  # question template i of a topic is "unseen" when i % 4 == 3
VAL_BUCKETS = 10  # a question goes to val when crc32(question) % 10 == 0 (about 10%)


_SLOT = re.compile(r"\{(\w+)\}")


def persona_pools(persona: str) -> dict:
    """The slot pools of ``persona``: its own pools, the pools every persona shares
    (:data:`tinyllm.chat_topics.SHARED_POOLS`: tasks, news, user names, numbers), ``name`` and ``animal``."""
    if persona not in PERSONAS:
        raise ValueError(f"persona must be one of {sorted(PERSONAS)}, got {persona!r}")
    p = PERSONAS[persona]
    # "animal" and "name" are slots like the others; "thing2" is a second, different thing.
    return {**SHARED_POOLS, **p["pools"], "name": [p["name"]], "animal": [p["pools"]["kind"][0].split()[-1]]}


# A verb in braces agrees with the slot next to it: "{friend} {is} my friend." gives "the snail
# is my friend." and "the other guppies are my friend."; "{is} {floor} soft?" gives "are the
# pebbles soft?". The braces hold the singular form; a persona's "plural" list says which of
# its pool values take the plural one.
VERBS = {"is": "are", "was": "were", "has": "have", "does": "do", "gets": "get", "helps": "help",
         "looks": "look", "feels": "feel", "works": "work", "comes": "come", "makes": "make",
         "keeps": "keep", "scares": "scare", "stays": "stay", "tickles": "tickle", "moves": "move"}
PLURAL = frozenset(value for p in PERSONAS.values() for value in p["plural"])
_SLOT_BEFORE = re.compile(r"\{(\w+)\} $")
_SLOT_AFTER = re.compile(r" \{(\w+)\}")


def fill_template(template: str, values: dict) -> str:
    """``template`` with every ``{slot}`` replaced by ``values[slot]`` (a :class:`SlotValues`
    draws a missing slot from its pool) and every verb slot (:data:`VERBS`) agreeing with the
    slot just before it, or else just after it."""
    def fill(m):
        name = m.group(1)
        if name not in VERBS:
            return values[name]
        subject = (_SLOT_BEFORE.search(template, 0, m.start())
                   or _SLOT_AFTER.match(template, m.end()))
        if subject is None or subject.group(1) in VERBS:
            raise ValueError(f"the verb {{{name}}} in {template!r} stands next to no slot")
        return VERBS[name] if values[subject.group(1)] in PLURAL else name
    return _SLOT.sub(fill, template)


class SlotValues(dict):
    """Slot values for a question, its answer and its follow-ups: each slot is drawn from
    its pool the first time a template uses it, then stays the same ("thing2" is a second
    thing, different from "thing")."""

    def __init__(self, rng: random.Random, pools: dict):
        super().__init__()
        self.rng, self.pools = rng, pools

    def __missing__(self, slot: str) -> str:
        if slot == "thing2":
            value = self.rng.choice([t for t in self.pools["thing"] if t != self["thing"]])
        else:
            value = self.rng.choice(self.pools[slot])
        self[slot] = value
        return value


def expand_slots(key: str, pools: dict) -> list[str]:
    """A keyword as a list of words: ``"{food}"`` is the whole food pool, a word is itself."""
    slot = _SLOT.fullmatch(key)
    return list(pools[slot.group(1)]) if slot else [key]


# Slots the user fills and the answer must give back: to "call me kai", "hello, mei!" is no answer.
ECHOED = {"username"}


def topic_keywords(topic: str, persona: str, keys=None, values=None) -> list[str]:
    """The words an on-topic answer contains, with ``{slot}`` expanded to the whole pool, or,
    for a slot of :data:`ECHOED` that ``values`` (the question's :class:`SlotValues`) holds,
    to the value the user gave."""
    pools = persona_pools(persona)
    keys = TOPICS[topic]["keys"] if keys is None else keys
    words = set()
    for key in keys:
        slot = _SLOT.fullmatch(key)
        echoed = slot is not None and slot.group(1) in ECHOED and values is not None and slot.group(1) in values
        words |= {values[slot.group(1)]} if echoed else set(expand_slots(key, pools))
    return sorted(words)


def mentions(text: str, words) -> bool:
    """True if ``text`` contains one of ``words`` as whole words ("fin" is not in "finish")."""
    return any(re.search(r"(?<!\w)" + re.escape(w) + r"(?!\w)", text) for w in words)


def question_templates(topic: str, persona: str = "guppy") -> list[str]:
    """Every question template of ``topic`` for ``persona``: the topic's ``ask`` list (every
    fourth held out), then the persona's training-only wordings (:data:`WORDINGS`, never
    held out: more ways to ask, so that the model learns the topic rather than a few strings)."""
    return TOPICS[topic]["ask"] + WORDINGS.get(persona, {}).get(topic, [])


def is_held_out(topic: str, index: int) -> bool:
    """Question template ``index`` of ``topic`` is never used for training ("unseen"): every
    fourth of the topic's ``ask`` list; the training-only wordings after it never are."""
    return index < len(TOPICS[topic]["ask"]) and index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


def in_val(question: str) -> bool:
    """A fixed ~10% of questions (by a stable hash of their text) belong to val only."""
    return zlib.crc32(question.encode("utf-8")) % VAL_BUCKETS == 0


# ---------------------------------------------------------------------------------------
# How people really type: the same question, written carelessly
# ---------------------------------------------------------------------------------------

# Ways to wrap a question ("{q}" is the question); politeness, hesitation, emoticons.
WRAPPERS = ["can you tell me, {q}", "i wonder, {q}", "quick question: {q}", "{q} please", "{q} :)",
            "tell me: {q}", "{q} i want to know", "please, {q}", "hmm, {q}", "{q} lol", "um {q}",
            "i was wondering, {q}", "{q} just curious"]
# Texting shortcuts, whole words only.
SHORTHAND = {"you": "u", "your": "ur", "what is": "whats", "do not": "dont",
             "i am": "im", "please": "pls", "because": "cos"}
# Other spellings and slang, whole words only: one is picked for each word found.
SPELLINGS = {"favourite": ["fav", "favorite", "fave"], "colour": ["color"], "colourful": ["colorful"],
             "cosy": ["cozy"], "tomorrow": ["tmrw", "tomorow"], "thank you": ["thx", "ty", "thank u"],
             "see you": ["cya", "see ya"], "are": ["r"], "really": ["rly"], "people": ["ppl"],
             "tonight": ["tonite"], "little": ["lil"], "going to": ["gonna"], "want to": ["wanna"],
             "good": ["gud"], "food": ["grub"], "hello": ["hullo", "heyo"], "with": ["w/"]}
# Emoji people add to a message; emoji and other text outside ASCII must not throw the model off.
EMOJI = ["🙂", "😊", "😀", "😄", "😂", "🤣", "😍", "🥰", "😢", "😭", "🥺", "😴", "🤔", "😮", "👋", "👍", "🙏",
         "❤️", "💙", "✨", "🎉", "🐟", "🐠", "🐹", "🍕", "🌙", "☀️", "💧", "😎", "🙃"]
VARY = 0.6  # the fraction of user messages written carelessly in the generated data
TWO_IN_ONE = 0.06  # the fraction of questions that carry a second one ("... and where do you live?")
JOINERS = ["and", "also,", "oh and", "and also", "btw"]


def _typo(rng, text: str) -> str:
    """One slip of the finger in a word of 4+ letters: two letters swapped, one dropped or doubled."""
    words = [m for m in re.finditer(r"[a-z]{4,}", text)]
    if not words:
        return text
    w = rng.choice(words)
    i = rng.randrange(w.start(), w.end() - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return text[:i] + text[i + 1] + text[i] + text[i + 2:]
    if kind == 1:
        return text[:i] + text[i + 1:]
    return text[:i] + text[i] + text[i:]


def vary_wording(rng: random.Random, text: str) -> str:
    """``text`` as a person might type it: maybe wrapped in a polite or casual phrase, in
    texting shorthand or other spellings (:data:`SPELLINGS`), with a typo, without its final
    punctuation, in another case (sentence case, Title Case, CAPITALS), with an emoji. The
    assistant's answers stay lower-case; the user's side carries the capitals, so the model
    learns that "Are You Hungry?" asks what "are you hungry" asks.
    """
    if rng.random() < 0.25:
        text = rng.choice(WRAPPERS).format(q=text)
    if rng.random() < 0.15:
        for long, short in SHORTHAND.items():
            text = re.sub(rf"\b{long}\b", short, text)
    if rng.random() < 0.2:
        for word, others in SPELLINGS.items():
            text = re.sub(rf"\b{word}\b", lambda _, others=others: rng.choice(others), text)
    if rng.random() < 0.2:
        text = _typo(rng, text)
    r = rng.random()
    if r < 0.35:
        text = text.rstrip("?!.")
    elif r < 0.42:
        text = text.rstrip("?!.") + rng.choice(["??", "!!", "?!", "..."])
    r = rng.random()
    if r < 0.35:
        text = re.sub(r"\bi\b", "I", text[:1].upper() + text[1:])
    elif r < 0.45:
        text = text.title()
    elif r < 0.5:
        text = text.upper()
    if rng.random() < 0.12:  # an emoji after the message, or now and then before it
        emoji = rng.choice(EMOJI)
        text = f"{emoji} {text}" if rng.random() < 0.25 else f"{text} {emoji}"
    return text


# ---------------------------------------------------------------------------------------
# Making conversations
# ---------------------------------------------------------------------------------------


def _careless(rng, text, vary):
    return vary_wording(rng, text) if vary and rng.random() < VARY else text


def _turn(rng, persona, pools, topic, ask_index, vary=True):
    """A (question, answer, values) triple for one topic and question template."""
    values = SlotValues(rng, pools)
    template = question_templates(topic, persona)[ask_index]
    question = fill_template(rng.choice(USER_PREFIXES) + template, values)
    answer = fill_template(rng.choice(TOPICS[topic]["say"]), values)
    return _careless(rng, question, vary), answer, values


def _followup(rng, topic, values, vary=True):
    """A follow-up question on the previous turn's topic and its answer, same slot values."""
    asked, answers, _ = rng.choice(TOPICS[topic]["follow"])
    question = rng.choice(FOLLOWUP_ALIASES.get(asked, [asked]))
    return _careless(rng, question, vary), fill_template(rng.choice(answers), values)


def _conversation(rng, persona, pools, templates, multi_turn, system_prompt, vary=True):
    """One conversation and the question templates it used, as ``(messages, questions)``."""
    messages = []
    if system_prompt is not None:
        messages.append({"role": "system", "content": system_prompt})
    turns = rng.choice((2, 3)) if rng.random() < multi_turn else 1
    questions = []
    topic, values, followed = None, None, False
    for k in range(turns):
        if k > 0 and not followed and rng.random() < 0.7:  # most later turns refer back
            question, answer = _followup(rng, topic, values, vary)
            followed = True
        else:
            followed = False
            topic, ask_index = rng.choice(templates)
            question, answer, values = _turn(rng, persona, pools, topic, ask_index, vary)
            questions.append(question)
            if rng.random() < TWO_IN_ONE and not in_val(question):  # a second question in the same message
                other, other_index = rng.choice(templates)
                second, other_answer, _ = _turn(rng, persona, pools, other, other_index, vary)
                if not in_val(second):  # a val question never appears in training, not even as a part
                    question, answer = f"{question} {rng.choice(JOINERS)} {second}", f"{answer} {other_answer}"
                    questions[-1] = question
        messages.append({"role": "user", "content": question})
        messages.append({"role": "assistant", "content": answer})
    return messages, questions


def _templates(unseen: bool, persona: str) -> list[tuple[str, int]]:
    return [(topic, i) for topic in TOPICS for i in range(len(question_templates(topic, persona)))
            if is_held_out(topic, i) == unseen]


def _system(system_prompt, persona):
    if system_prompt is True:
        return PERSONAS[persona]["system"]
    if system_prompt is None or isinstance(system_prompt, str):
        return system_prompt
    raise ValueError(f"system_prompt must be None, True (the persona's) or a string, got {system_prompt!r}")


def _check(n, multi_turn):
    check_int("n", n, 0)
    if not 0.0 <= multi_turn <= 1.0:
        raise ValueError(f"multi_turn must be a fraction in [0, 1], got {multi_turn!r}")


def make_conversations(persona: str = "guppy", n: int = 1000, seed: int = 0, multi_turn: float = 0.4,
                       system_prompt=None, unseen: bool = False, vary: bool = True) -> list[list[dict]]:
    """``n`` synthetic conversations for ``persona``, the same list for the same arguments.

    ``multi_turn``: the fraction of conversations with 2 or 3 turns (the others have one
    question and one answer, like GuppyLM's). ``system_prompt``: ``None`` (no system
    message), ``True`` (the persona's own) or any string. ``unseen=True`` draws only from
    the held-out question templates, ``False`` only from the others. ``vary``: write a
    fraction :data:`VARY` of the user's messages carelessly (:func:`vary_wording`).
    """
    _check(n, multi_turn)
    pools = persona_pools(persona)
    rng = random.Random(seed)
    system = _system(system_prompt, persona)
    templates = _templates(unseen, persona)
    return [_conversation(rng, persona, pools, templates, multi_turn, system, vary)[0] for _ in range(n)]


def chat_dataset(persona: str = "guppy", n: int = 20_000, seed: int = 0, multi_turn: float = 0.4,
                 system_prompt=None, n_unseen: int | None = None, vary: bool = True) -> dict:
    """``{"train", "val", "unseen"}`` lists of conversations.

    ``n`` conversations come from the seen templates; those with a question in the val
    bucket (:func:`in_val`, a fixed ~10% of question texts) go to ``"val"``, the rest to
    ``"train"``, so no val-bucket question ever appears verbatim in training (the eval's
    "seen template" prompts are val-bucket questions). ``"unseen"`` has ``n_unseen`` (default ``n // 10``)
    conversations from the held-out templates only. ``vary`` as in :func:`make_conversations`.
    """
    _check(n, multi_turn)
    pools = persona_pools(persona)
    rng = random.Random(seed)
    system = _system(system_prompt, persona)
    templates = _templates(False, persona)
    split = {"train": [], "val": []}
    for _ in range(n):
        messages, questions = _conversation(rng, persona, pools, templates, multi_turn, system, vary)
        split["val" if any(in_val(q) for q in questions) else "train"].append(messages)
    n_unseen = n // 10 if n_unseen is None else n_unseen
    split["unseen"] = make_conversations(persona, n_unseen, seed + 1, multi_turn, system_prompt, unseen=True,
                                         vary=vary)
    return split


# ---------------------------------------------------------------------------------------
# The chat template and the loss mask
# ---------------------------------------------------------------------------------------


def check_messages(messages) -> None:
    """ValueError unless ``messages`` is a list of ``{"role", "content"}`` with known roles and
    contents that are text (a lone surrogate, as a JSON ``"\\ud83d"`` gives, is no UTF-8)."""
    if not isinstance(messages, (list, tuple)):
        raise ValueError(f"messages must be a list of {{'role', 'content'}} dicts, got {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise ValueError(f"message {i} must be a dict with role in {ROLES} and a str content, got {m!r}")
        try:
            m["content"].encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"message {i}'s content has a lone surrogate (U+{ord(m['content'][exc.start]):04X}) "
                             f"at character {exc.start}: it is not text") from None


def render(messages, add_generation_prompt: bool = False) -> str:
    """Messages in the ChatML template; ``add_generation_prompt`` opens the assistant's turn."""
    check_messages(messages)
    text = "".join(f"{IM_START}{m['role']}\n{m['content']}{IM_END}\n" for m in messages)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


def encode_chat(tokenizer, messages, add_generation_prompt: bool = False) -> tuple[list[int], list[int]]:
    """``(ids, labels)`` of one conversation in the chat template, both of length ``len(ids)``.

    Each message is encoded in five pieces: the ``<|im_start|>`` id, the header
    ``role + "\\n"``, the content, the ``<|im_end|>`` id and ``"\\n"``. The markers are
    inserted as ids; the header, the content and the newline are encoded as ordinary text
    (``allowed_special="none"``), so a message that contains the string ``<|im_end|>``
    gets the tokens of that text and can never close its turn or open a forged one.
    Encoding the pieces apart also keeps every header the same ids whatever content
    follows it. ``tokenizer.decode(ids) == render(messages, add_generation_prompt)``.

    ``labels[i]`` is ``ids[i]`` for the tokens of an assistant's content and its closing
    ``<|im_end|>``, and ``-100`` everywhere else (system prompt, user turns, the
    ``<|im_start|>role`` headers, the newlines between messages, the opened turn of
    ``add_generation_prompt``). Labels line up with the ids; the trainer shifts them by
    one, as it does for plain text.
    """
    check_messages(messages)
    specials = getattr(tokenizer, "special_tokens", {})
    if IM_START not in specials or IM_END not in specials:
        raise ValueError(f"the tokenizer lacks the special tokens {IM_START} and {IM_END} of the template")
    start, end = specials[IM_START], specials[IM_END]
    newline = tokenizer.encode("\n", allowed_special="none")
    ids: list[int] = []
    labels: list[int] = []
    for m in messages:
        header = tokenizer.encode(m["role"] + "\n", allowed_special="none")
        content = tokenizer.encode(m["content"], allowed_special="none")
        ids += [start, *header, *content, end, *newline]
        learned = content + [end] if m["role"] == "assistant" else [IGNORE_INDEX] * (len(content) + 1)
        labels += [IGNORE_INDEX] * (1 + len(header)) + learned + [IGNORE_INDEX] * len(newline)
    if add_generation_prompt:
        opened = [start, *tokenizer.encode("assistant\n", allowed_special="none")]
        ids += opened
        labels += [IGNORE_INDEX] * len(opened)
    return ids, labels


def corpus_text(conversations) -> str:
    """All conversations rendered and joined: the text to train a chat BPE tokenizer on."""
    return "".join(render(c) for c in conversations)


def stats(conversations, tokenizer=None) -> dict:
    """Counts: conversations, unique, duplicates, turns, characters, and tokens (given a tokenizer)."""
    rendered = [render(c) for c in conversations]
    counts = Counter(rendered)
    out = {
        "conversations": len(rendered),
        "unique": len(counts),
        "duplicates": len(rendered) - len(counts),
        "turns": sum(m["role"] == "user" for c in conversations for m in c),
        "characters": sum(map(len, rendered)),
    }
    if tokenizer is not None:
        out["tokens"] = sum(len(encode_chat(tokenizer, c)[0]) for c in conversations)
    return out
