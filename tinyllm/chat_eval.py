"""Measured, not eyeballed: a scored evaluation of a chat model.

:func:`eval_cases` builds 64 held-out test conversations for a persona, in three
categories:

- ``seen``: a question from a template the model trained on, but worded so that it is
  in the val bucket (:func:`tinyllm.chat_data.in_val`): this exact text never appears in
  training. Passing it means the model learned the template, not one string.
- ``unseen``: a question from a held-out template (never in training). Passing it means
  the model generalises to new wordings of a topic it knows.
- ``multi-turn``: a first question and answer, then a follow-up that only makes sense with
  the first turn ("why?", "and at night?"). Passing it means the model reads the history.

:func:`handwritten_cases` adds a fourth category, ``hand-written``: 49 messages a person
wrote to the fish (``chat_handwritten.json``: typos, capitals, no punctuation, long and
short), not made by the generator and never tuned to a model. :func:`recase` writes the
user's messages in capitals, to measure whether "Are You Hungry?" gets what "are you
hungry?" gets.

:func:`score` runs four checks a program can decide on one reply:

- ``on_topic``: the answer contains one of the topic's keywords (the same lists the
  training answers are built to contain, so a perfect model passes);
- ``in_persona``: no word that belongs to another persona (a hamster's "cage" in the
  fish's mouth) and no assistant boilerplate ("as an ai", "language model");
- ``ended``: the model closed its turn with ``<|im_end|>``;
- ``no_user_turn``: it never wrote ``<|im_start|>`` (the start of the next turn, usually
  the user's) nor a line beginning with "user".

A reply is the text the model generated after the prompt, with the ``<|im_end|>`` it
produced kept (a reply without one did not end its turn). :func:`run_eval` asks a reply
function for every case and returns a row per category plus the total;
:func:`format_table` prints them.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from tinyllm.chat_data import (
    FOLLOWUP_ALIASES,
    IM_END,
    IM_START,
    PERSONAS,
    TOPICS,
    USER_PREFIXES,
    SlotValues,
    expand_slots,
    fill_template,
    in_val,
    is_held_out,
    mentions,
    persona_pools,
    topic_keywords,
)

CATEGORIES = ("seen", "unseen", "multi-turn")
HANDWRITTEN = Path(__file__).with_name("chat_handwritten.json")  # messages written by hand
CASES_PER_CATEGORY = {"seen": 24, "unseen": 24, "multi-turn": 16}
CHECKS = ("on_topic", "in_persona", "ended", "no_user_turn")
BOILERPLATE = ["as an ai", "language model", "i am an assistant", "i'm an ai", "chatgpt", "i am a human"]


def _off_persona_words(persona: str) -> list[str]:
    """Words that give another persona away: its markers and its name."""
    words = []
    for name, spec in PERSONAS.items():
        if name != persona:
            words += spec["markers"] + [spec["name"]]
    return sorted(set(words) - set(PERSONAS[persona]["markers"]) - {PERSONAS[persona]["name"]})


def _val_questions(persona: str, topic: str, pools: dict):
    """``(question, values)`` for every wording of a seen template of ``topic`` that lands in
    the val bucket, in a fixed order. Slot values are drawn from a seeded generator."""
    found = []
    prefixes = list(dict.fromkeys(USER_PREFIXES))  # unique, in order
    for i, template in enumerate(TOPICS[topic]["ask"]):
        if is_held_out(topic, i):
            continue
        for k in range(4):  # a few draws of the slots (templates without slots repeat)
            for prefix in prefixes:
                values = SlotValues(random.Random(f"{persona}/{topic}/{i}/{k}"), pools)
                question = fill_template(prefix + template, values)
                if in_val(question) and question not in (q for q, _ in found):
                    found.append((question, values))
    return found


def _case(persona, category, topic, messages, keywords, system_prompt):
    if system_prompt is not None:
        messages = [{"role": "system", "content": system_prompt}] + messages
    return {"id": f"{category}/{topic}", "category": category, "topic": topic, "persona": persona,
            "messages": messages, "keywords": keywords, "off_persona": _off_persona_words(persona)}


def eval_cases(persona: str = "guppy", system_prompt=None) -> list[dict]:
    """64 test cases (24 seen, 24 unseen, 16 multi-turn), the same list on every call.

    Each case is a dict: ``id``, ``category``, ``topic``, ``persona``, ``messages`` (the
    conversation so far, ending with the user's turn), ``keywords`` (one must appear in
    the reply) and ``off_persona`` (none may appear). ``system_prompt``: ``None``, ``True``
    (the persona's own) or a string, put first in every case's messages.
    """
    pools = persona_pools(persona)  # raises ValueError for an unknown persona
    if system_prompt is True:
        system_prompt = PERSONAS[persona]["system"]
    rng = random.Random(f"eval/{persona}")
    topics = list(TOPICS)
    cases = []

    # seen: val-bucket wordings of trained templates, one topic each
    with_val = [t for t in topics if _val_questions(persona, t, pools)]
    for topic in rng.sample(with_val, CASES_PER_CATEGORY["seen"]):
        question, values = _val_questions(persona, topic, pools)[0]
        cases.append(_case(persona, "seen", topic, [{"role": "user", "content": question}],
                           topic_keywords(topic, persona, values=values), system_prompt))

    # unseen: a held-out template of each topic, filled and prefixed at random
    for topic in rng.sample(topics, CASES_PER_CATEGORY["unseen"]):
        spec = TOPICS[topic]
        held = [i for i in range(len(spec["ask"])) if is_held_out(topic, i)]
        template = spec["ask"][rng.choice(held)]
        values = SlotValues(rng, pools)
        question = fill_template(rng.choice(USER_PREFIXES) + template, values)
        cases.append(_case(persona, "unseen", topic, [{"role": "user", "content": question}],
                           topic_keywords(topic, persona, values=values), system_prompt))

    # multi-turn: a val-bucket question, an answer from the data, then a follow-up
    for topic in rng.sample(with_val, CASES_PER_CATEGORY["multi-turn"]):
        candidates = _val_questions(persona, topic, pools)
        question, values = candidates[-1]  # another wording than the seen case's, where there is one
        answer = fill_template(rng.choice(TOPICS[topic]["say"]), values)
        asked, _, keys = rng.choice(TOPICS[topic]["follow"])
        follow = rng.choice(FOLLOWUP_ALIASES.get(asked, [asked]))
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer},
                    {"role": "user", "content": follow}]
        cases.append(_case(persona, "multi-turn", topic, messages,
                           topic_keywords(topic, persona, keys, values), system_prompt))
    return cases


def every_unseen_cases(persona: str = "guppy", fills: int = 2) -> list[dict]:
    """Every held-out question template of every topic, each filled ``fills`` times (slots and
    greeting drawn from a fixed seed) as :func:`eval_cases` fills its ``unseen`` ones: 141
    templates, 282 cases, category ``"every-unseen"``. The eval's 24 unseen cases are a sample
    of these (one case is 4 points); ``benchmarks/bench_chat_seeds.py --every-unseen`` scores all."""
    pools, rng = persona_pools(persona), random.Random(f"every-unseen/{persona}")
    cases = []
    for topic, spec in TOPICS.items():
        for i, template in enumerate(spec["ask"]):
            for _ in range(fills if is_held_out(topic, i) else 0):
                values = SlotValues(rng, pools)
                question = fill_template(rng.choice(USER_PREFIXES) + template, values)
                cases.append(_case(persona, "every-unseen", topic, [{"role": "user", "content": question}],
                                   topic_keywords(topic, persona, values=values), None))
    return cases


def handwritten_cases(persona: str = "guppy", system_prompt=None, path=HANDWRITTEN) -> list[dict]:
    """The hand-written test cases: messages a person wrote to the pet (typos, capitals, no
    punctuation, long and short), not produced by :mod:`tinyllm.chat_data`'s generator.

    Read from ``path`` (JSON: ``persona`` and ``cases``, each ``{"message", "keywords"}``;
    ``{slot}`` in a keyword stands for the persona's whole pool of that name). One case per
    message, category ``"hand-written"``, scored like the others by :func:`score`.
    ``system_prompt`` as in :func:`eval_cases`. ValueError if the file is for another persona.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data["persona"] != persona:
        raise ValueError(f"{path} holds messages to {data['persona']!r}, not to {persona!r}")
    pools = persona_pools(persona)
    if system_prompt is True:
        system_prompt = PERSONAS[persona]["system"]
    cases = []
    for i, item in enumerate(data["cases"]):
        keywords = sorted({w for k in item["keywords"] for w in expand_slots(k, pools)})
        case = _case(persona, "hand-written", str(i), [{"role": "user", "content": item["message"]}],
                     keywords, system_prompt)
        case["id"] = f"hand-written/{i}"
        cases.append(case)
    return cases


def recase(cases, style: str) -> list[dict]:
    """Copies of ``cases`` with every user message written in another case: ``"upper"``
    ("ARE YOU HUNGRY?"), ``"title"`` ("Are You Hungry?") or ``"sentence"`` ("Are you hungry?").
    Measures whether a model answers capitals as it answers lower case."""
    change = {"upper": str.upper, "title": str.title, "sentence": lambda t: t[:1].upper() + t[1:]}
    if style not in change:
        raise ValueError(f"style must be one of {sorted(change)}, got {style!r}")
    out = []
    for case in cases:
        messages = [{**m, "content": change[style](m["content"])} if m["role"] == "user" else dict(m)
                    for m in case["messages"]]
        out.append({**case, "messages": messages})
    return out


def answer_text(reply: str) -> str:
    """The assistant's answer in a reply: everything before its first ``<|im_end|>``."""
    return reply.split(IM_END, 1)[0].strip()


def score(case: dict, reply: str) -> dict:
    """Named booleans for one reply: the four :data:`CHECKS` and ``passed`` (all four)."""
    if not isinstance(reply, str):
        raise ValueError(f"reply must be the generated text (a str), got {type(reply).__name__}")
    answer = answer_text(reply)
    lowered = answer.lower()
    result = {
        "on_topic": mentions(lowered, case["keywords"]),
        "in_persona": not mentions(lowered, case["off_persona"])
        and not any(b in lowered for b in BOILERPLATE),
        "ended": IM_END in reply,
        "no_user_turn": IM_START not in reply and not re.search(r"(?m)^\s*user\b", answer),
    }
    result["passed"] = all(result.values())
    return result


def run_eval(reply_fn, cases) -> dict:
    """Ask ``reply_fn(messages) -> str`` (the raw reply, ``<|im_end|>`` kept) for every case.

    Returns ``{"rows": [...], "total": {...}, "results": [...]}``: one row per category
    and the total, each ``{"category", "cases", "on_topic", "in_persona", "ended",
    "no_user_turn", "passed"}`` with the fraction of cases that pass each check;
    ``results`` holds every case's id, category, reply and checks.
    """
    cases = list(cases)
    if not cases:
        raise ValueError("cases is empty: nothing to evaluate")
    results = []
    for case in cases:
        reply = reply_fn([dict(m) for m in case["messages"]])  # a copy: the case stays as it was
        results.append({"id": case["id"], "category": case["category"], "reply": reply, **score(case, reply)})

    def row(name, chosen):
        out = {"category": name, "cases": len(chosen)}
        for check in CHECKS + ("passed",):
            out[check] = sum(r[check] for r in chosen) / len(chosen)
        return out

    order = [c for c in CATEGORIES if any(r["category"] == c for r in results)]
    order += sorted({r["category"] for r in results} - set(order))
    rows = [row(c, [r for r in results if r["category"] == c]) for c in order]
    return {"rows": rows, "total": row("total", results), "results": results}


def format_table(report: dict) -> str:
    """The per-category rows and the total as a text table (79 characters wide: it fits the
    book's column), percentages of cases passing each check."""
    checks = CHECKS + ("passed",)
    width = {c: max(12, len(c) + 1) for c in checks}
    head = f"{'category':<12}{'cases':>6}" + "".join(f"{c:>{width[c]}}" for c in checks)
    lines = [head, "-" * len(head)]
    rows = report["rows"] + ([report["total"]] if len(report["rows"]) > 1 else [])
    for r in rows:
        if r is report["total"]:
            lines.append("-" * len(head))
        cells = "".join(f"{100 * r[c]:>{width[c] - 1}.0f}%" for c in checks)
        lines.append(f"{r['category']:<12}{r['cases']:>6}" + cells)
    return "\n".join(lines)
