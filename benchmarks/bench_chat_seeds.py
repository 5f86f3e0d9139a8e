"""Compare chat checkpoints over several sampling seeds (a benchmark, never a test).

    python benchmarks/bench_chat_seeds.py [CHECKPOINT_DIR ...] [--seeds 5]

One seed of sampling moves a score by a case or two, as much as two models differ. This
counts, for each checkpoint (default: the shipped assistant), the cases passing every check
(:mod:`tinyllm.chat_eval`) summed over ``--seeds`` sampling seeds, with the settings of
``python -m tinyllm.chat --eval`` and the user's messages read as the command reads them
(lower-cased for a model trained on the persona data): the 64 generated cases by category,
the hand-written messages (``tinyllm/chat_handwritten.json``) and the probe messages
(``benchmarks/chat_probe.json``, written to compare models trained on different data). The
last column adds up the two sets people wrote. ``--every-unseen`` adds every held-out question
template of every topic, filled twice (282 cases, against the eval's 24 unseen ones: one case
there is 4 points).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tinyllm import chat_eval
from tinyllm.chat import DEFAULTS, SHIPPED_CHAT_MODEL, reads_lower_case, reply
from tinyllm.checkpoint import load_model

PROBE = Path(__file__).resolve().parent / "chat_probe.json"
CATEGORIES = ("seen", "unseen", "multi-turn", "hand-written", "probe", "every-unseen")


def case_sets(every_unseen: bool = False) -> dict[str, list[dict]]:
    sets = {"generated": chat_eval.eval_cases("guppy"), "hand-written": chat_eval.handwritten_cases("guppy"),
            "probe": chat_eval.handwritten_cases("guppy", path=PROBE)}
    return {**sets, "every-unseen": chat_eval.every_unseen_cases("guppy")} if every_unseen else sets


def counts(folder, sets: dict[str, list[dict]], seeds: int) -> dict[str, int]:
    """Cases passing every check, per category, summed over sampling seeds 0 .. seeds-1."""
    model, tokenizer, checkpoint = load_model(folder or SHIPPED_CHAT_MODEL)
    lower = reads_lower_case(checkpoint)  # as the command reads them
    total = dict.fromkeys(CATEGORIES, 0)
    for seed in range(seeds):
        settings = {**DEFAULTS, "seed": seed}
        fn = lambda m: reply(model, tokenizer, m, raw=True, lowercase_user=lower, **settings)  # noqa: B023, E731
        for name, cases in sets.items():
            for row in chat_eval.run_eval(fn, cases)["rows"]:
                category = "probe" if name == "probe" else row["category"]
                total[category] += round(row["passed"] * row["cases"])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="*", default=[None], help="default: the shipped assistant")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--every-unseen", action="store_true", help="also every held-out template (282 cases)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    sets = case_sets(args.every_unseen)
    sizes = dict.fromkeys(CATEGORIES, 0)
    for name, cases in sets.items():
        for case in cases:
            sizes["probe" if name == "probe" else case["category"]] += 1
    of = ", ".join(f"{args.seeds * n} {c}" for c, n in sizes.items())
    print(f"cases passing every check, summed over {args.seeds} seeds (of {of})")
    print(f"{'checkpoint':<40}" + "".join(f"{c:>14}" for c in CATEGORIES) + f"{'people':>10}")
    for folder in args.checkpoints:
        found = counts(folder, sets, args.seeds)
        people = found["hand-written"] + found["probe"]
        print(f"{str(folder or 'shipped'):<40}" + "".join(f"{found[c]:>14}" for c in CATEGORIES) + f"{people:>10}")


if __name__ == "__main__":
    main()
