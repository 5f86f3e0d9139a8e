"""Score one chat checkpoint on every evaluation, also in capitals (a benchmark, never a test).

    python benchmarks/bench_chat_eval.py [CHECKPOINT_DIR [OUT.json]] [--note "which model this is"]

Without CHECKPOINT_DIR it scores the shipped assistant; without OUT.json it only prints.
The tables read the messages as typed (the command reads them lower-cased for the shipped
assistant, ``tinyllm.chat.reads_lower_case``): the recased rows measure the model itself.

Runs :mod:`tinyllm.chat_eval`'s 64 generated cases and the hand-written messages, each as
written and with the user's messages recased (``generated-title``: Title Case;
``generated-upper`` and ``hand-written-upper``: CAPITALS), with the sampling settings of
``python -m tinyllm.chat --eval``, and writes the pass rates (all four checks) per category.
``tinyllm/measurements/chat_before.json`` is this script's output on the assistant shipped
before the data of 60 topics and careless wordings: chapter 12 compares it with today's.
"""

from __future__ import annotations

import argparse
import datetime
import json

import torch

from tinyllm import chat_eval
from tinyllm.chat import DEFAULTS, load_chat_model, reply

SETTINGS = {**DEFAULTS, "seed": 0}


def scores(folder) -> dict:
    model, tokenizer = load_chat_model(folder)
    fn = lambda messages: reply(model, tokenizer, messages, raw=True, **SETTINGS)  # noqa: E731
    generated, hand = chat_eval.eval_cases("guppy"), chat_eval.handwritten_cases("guppy")
    sets = {"generated": generated, "hand-written": hand,
            "generated-title": chat_eval.recase(generated, "title"),
            "generated-upper": chat_eval.recase(generated, "upper"),
            "hand-written-upper": chat_eval.recase(hand, "upper")}
    out = {}
    for name, cases in sets.items():
        report = chat_eval.run_eval(fn, cases)
        out[name] = {"rows": {r["category"]: round(r["passed"], 4) for r in report["rows"]},
                     "total": round(report["total"]["passed"], 4)}
        print(f"{name}\n{chat_eval.format_table(report)}\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", nargs="?", default=None, help="default: the shipped assistant")
    parser.add_argument("out", nargs="?", default=None, help="a JSON file for the scores (default: none)")
    parser.add_argument("--note", default="", help="which model this is, stored in the file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    meta = {"model": args.note, "settings": SETTINGS, "date": datetime.date.today().isoformat()}
    measured = scores(args.checkpoint)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "scores": measured}, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
