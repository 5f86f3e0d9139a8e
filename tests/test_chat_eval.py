"""Chat eval: held-out cases, checks that pass on good replies and fail on bad ones, the table."""

import random
import re
from pathlib import Path

import pytest

from tinyllm import chat_data as cd
from tinyllm import chat_eval as ce

END = cd.IM_END
PROBE = Path(__file__).resolve().parent.parent / "benchmarks" / "chat_probe.json"


@pytest.fixture(scope="module", params=sorted(cd.PERSONAS))
def persona(request):
    return request.param


@pytest.fixture(scope="module")
def cases(persona):
    return ce.eval_cases(persona)


def data_reply(case, seed=0):
    """What the training data would answer: a filled answer template of the case's topic."""
    spec = cd.TOPICS[case["topic"]]
    pools = cd.persona_pools(case["persona"])
    values = cd.SlotValues(random.Random(seed), pools)
    for slot in cd.ECHOED:  # the answer gives back what the user said: the case's one keyword
        given = [w for w in case["keywords"] if w in pools[slot]]
        if given:
            values[slot] = given[0]
    if case["category"] == "multi-turn":
        follow = case["messages"][-1]["content"]
        answers = next(a for asked, a, _ in spec["follow"]
                       if follow in cd.FOLLOWUP_ALIASES.get(asked, [asked]))
    else:
        answers = spec["say"]
    return cd.fill_template(answers[seed % len(answers)], values) + END


def test_at_least_60_cases_in_three_categories_same_every_time(persona, cases):
    assert len(cases) >= 60
    counts = {c: sum(case["category"] == c for case in cases) for c in ce.CATEGORIES}
    assert counts == ce.CASES_PER_CATEGORY
    assert len({case["id"] for case in cases}) == len(cases)
    assert cases == ce.eval_cases(persona)
    for case in cases:
        assert case["messages"][-1]["role"] == "user" and case["keywords"] and case["off_persona"]


def test_no_eval_prompt_appears_in_training(persona, cases):
    data = cd.chat_dataset(persona, n=20_000, seed=0, multi_turn=0.5)
    train = {m["content"] for c in data["train"] for m in c if m["role"] == "user"}
    for case in cases:
        first = case["messages"][0]["content"]
        assert first not in train, case["id"]  # the opening question is never trained on
    unseen_topics = {case["topic"] for case in cases if case["category"] == "unseen"}
    assert len(unseen_topics) == ce.CASES_PER_CATEGORY["unseen"]


def test_every_unseen_case_fills_each_held_out_template_and_holds_the_eval_s_sample(cases):
    every = ce.every_unseen_cases("guppy")
    assert every == ce.every_unseen_cases("guppy")
    held = [(t, i) for t in cd.TOPICS for i in range(len(cd.TOPICS[t]["ask"])) if cd.is_held_out(t, i)]
    assert len(held) == 141 and len(every) == 2 * len(held) and {c["category"] for c in every} == {"every-unseen"}
    # each case is a greeting and a held-out template filled: its topic's held-out wordings, none trained on
    for case in every:
        question = case["messages"][0]["content"]
        assert any(re.fullmatch(_template_pattern(p + cd.TOPICS[case["topic"]]["ask"][i]), question)
                   for t, i in held if t == case["topic"] for p in set(cd.USER_PREFIXES)), question
    assert {c["topic"] for c in cases if c["category"] == "unseen"} <= {c["topic"] for c in every}


def _template_pattern(template: str) -> str:
    """A template as a regular expression: each {slot} any text."""
    return re.sub(r"\\\{\w+\\\}", ".+", re.escape(template))


def test_multi_turn_cases_ask_about_the_previous_turn(cases):
    multi = [c for c in cases if c["category"] == "multi-turn"]
    follow_ups = {q for spec in cd.TOPICS.values() for asked, _, _ in spec["follow"]
                  for q in cd.FOLLOWUP_ALIASES.get(asked, [asked])}
    for case in multi:
        roles = [m["role"] for m in case["messages"]]
        assert roles == ["user", "assistant", "user"]
        assert case["messages"][-1]["content"] in follow_ups


def test_answers_from_the_training_data_pass_every_check(cases):
    for seed in range(3):
        remaining = iter(cases)  # run_eval asks for the cases in order
        report = ce.run_eval(lambda messages, s=seed, it=remaining: data_reply(next(it), s), cases)
        assert report["total"]["passed"] == 1.0, [r for r in report["results"] if not r["passed"]][:3]


def test_a_reply_must_give_back_the_name_the_user_gave(persona, cases):
    named = [c for c in cases if "{username}" in " ".join(cd.TOPICS[c["topic"]]["keys"])]
    for case in named:
        said = " ".join(m["content"] for m in case["messages"] if m["role"] == "user")
        assert len(case["keywords"]) == 1 and case["keywords"][0] in said, case
    values = cd.SlotValues(random.Random(0), cd.persona_pools(persona))
    values["username"] = "kai"
    case = {"messages": [{"role": "user", "content": "call me kai"}], "off_persona": [],
            "keywords": cd.topic_keywords("user_name", persona, values=values)}
    assert case["keywords"] == ["kai"]
    assert ce.score(case, "hello, kai! nice to meet you." + END)["passed"]
    assert not ce.score(case, "hello, mei! nice to meet you." + END)["on_topic"]
    assert "mei" in cd.topic_keywords("user_name", persona)  # without the question's values: any name


def test_each_check_fails_on_its_bad_reply():
    case = ce.eval_cases("guppy")[0]
    good = data_reply(case)
    assert ce.score(case, good)["passed"]
    answer = good[: -len(END)]
    bad = {
        "on_topic": "i like the colour of the sky." + END,
        "in_persona": answer + " i love my cage and my wheel." + END,
        "ended": answer,
        "no_user_turn": answer + "\n<|im_start|>user\nwhat else?" + END,
    }
    for check, reply in bad.items():
        result = ce.score(case, reply)
        assert not result[check] and not result["passed"], (check, result)
        assert all(result[c] for c in ce.CHECKS if c != check), (check, result)
    assert not ce.score(case, "as an ai language model, " + good)["in_persona"]
    assert not ce.score(case, answer + "\nuser: and you?" + END)["no_user_turn"]
    assert not ce.score(ce.eval_cases("hamster")[0], "hi, i am guppy." + END)["in_persona"]


def test_text_after_the_end_of_turn_is_not_the_answer():
    case = ce.eval_cases("guppy")[0]
    assert not ce.score(case, "la la." + END + data_reply(case))["on_topic"]


def test_run_eval_rows_are_fractions_per_category_and_total():
    cases = ce.eval_cases("guppy")
    seen = iter(cases)

    def reply_fn(messages):
        case = next(seen)
        messages.append({"role": "assistant", "content": "changed"})  # must not touch the cases
        return data_reply(case) if case["category"] == "seen" else "blub"

    report = ce.run_eval(reply_fn, cases)
    rows = {r["category"]: r for r in report["rows"]}
    assert list(rows) == list(ce.CATEGORIES)
    assert rows["seen"]["passed"] == 1.0 and rows["unseen"]["passed"] == 0.0
    assert rows["unseen"]["ended"] == 0.0 and rows["unseen"]["in_persona"] == 1.0
    assert report["total"]["cases"] == len(cases)
    assert report["total"]["passed"] == pytest.approx(24 / 64)
    assert cases == ce.eval_cases("guppy")
    table = ce.format_table(report)
    assert "total" in table and "38%" in table and "100%" in table
    assert len(table.splitlines()) == 2 + 3 + 2
    assert max(map(len, table.splitlines())) <= 80  # the passed column fits the book's column
    assert table.splitlines()[0].split() == ["category", "cases", *ce.CHECKS, "passed"]


def test_hand_written_cases_are_not_the_generators():
    hand = ce.handwritten_cases("guppy")
    assert len(hand) >= 40 and all(c["category"] == "hand-written" for c in hand)
    assert f"``hand-written``: {len(hand)} messages" in ce.__doc__  # the module says how many
    messages = [c["messages"][-1]["content"] for c in hand]
    assert len(set(messages)) == len(messages)
    # nor are the probe messages benchmarks/bench_chat_seeds.py compares models with
    probe = [c["messages"][-1]["content"] for c in ce.handwritten_cases("guppy", path=PROBE)]
    assert len(probe) == 39 and not set(probe) & set(messages)
    data = cd.chat_dataset("guppy", n=20_000, seed=0)
    words = lambda text: re.sub(r"[^a-z ]", "", text.lower()).split()  # noqa: E731
    generated = {tuple(words(m["content"])) for split in data.values() for c in split for m in c}
    assert not [m for m in messages + probe if tuple(words(m)) in generated]
    # written as people write: some with capitals, some without final punctuation
    assert sum(m != m.lower() for m in messages) >= 5
    assert sum(not m.endswith(("?", "!", ".")) for m in messages) >= 10
    assert all(c["keywords"] and c["off_persona"] for c in hand)
    assert "flakes" in hand[7]["keywords"]  # "{food}" stands for the whole pool
    report = ce.run_eval(lambda m: "blub" + END, hand)
    assert [r["category"] for r in report["rows"]] == ["hand-written"]
    assert len(ce.format_table(report).splitlines()) == 3  # one row, no total
    with pytest.raises(ValueError, match="guppy"):
        ce.handwritten_cases("hamster")


def test_recase_writes_the_users_messages_in_capitals():
    cases = ce.eval_cases("guppy")
    multi = next(c for c in cases if c["category"] == "multi-turn")
    upper = ce.recase([multi], "upper")[0]
    assert [m["content"] for m in upper["messages"]] == [
        multi["messages"][0]["content"].upper(), multi["messages"][1]["content"],
        multi["messages"][2]["content"].upper()]
    assert ce.recase([multi], "title")[0]["messages"][0]["content"][0].isupper()
    assert cases == ce.eval_cases("guppy")  # the originals are unchanged
    with pytest.raises(ValueError, match="style"):
        ce.recase(cases, "shouting")


def test_system_prompt_goes_first_in_every_case():
    cases = ce.eval_cases("hamster", system_prompt=True)
    assert all(c["messages"][0] == {"role": "system", "content": cd.PERSONAS["hamster"]["system"]}
               for c in cases)


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="persona"):
        ce.eval_cases("shark")
    with pytest.raises(ValueError, match="empty"):
        ce.run_eval(lambda m: "", [])
    with pytest.raises(ValueError, match="reply"):
        ce.score(ce.eval_cases()[0], None)
