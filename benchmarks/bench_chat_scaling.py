"""Chat models of several sizes, training lengths and data, scored (a benchmark, never a test).

    python benchmarks/bench_chat_scaling.py [--shapes 4x128 4x192 6x384] [--steps 1000 3000]
        [--seeds 0 1 2] [--conversations N] [--checkpoint runs/chat-cpu] [--threads N]

Each run is the ``chat-cpu`` preset (its data, tokenizer, batch and schedule) with another
model shape and number of steps: ``2x64`` (chapter 12's live demo), ``4x128`` (the course's
first assistant's shape), ``4x192`` (about twice its parameters, the shipped assistant's) and
``6x384`` (GuppyLM's, with this 1,024-id vocabulary). Every finished run is scored with
:mod:`tinyllm.chat_eval` (the 64 generated cases and the hand-written ones, the sampling
settings of ``python -m tinyllm.chat --eval``) and stored in
``tinyllm/measurements/chat_scaling.json`` with the data it trained on (how many question
wordings the generator had, how many conversations), merged with the runs already there (a
run is keyed by shape, steps, seed and wordings), so a long grid can be measured a piece at
a time. ``--checkpoint DIR`` scores a finished run of the preset instead of training one
(the shipped model's own run, say). Chapter 12 plots the file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

import torch
from _common import apply_threads, measurement_options

from tinyllm import chat_data, chat_eval
from tinyllm.chat import DEFAULTS, load_chat_model, reply
from tinyllm.chat_data import TOPICS, is_held_out, question_templates
from tinyllm.checkpoint import load_model
from tinyllm.train import config_from_preset, train

OUT = Path(__file__).resolve().parent.parent / "tinyllm" / "measurements" / "chat_scaling.json"
SHAPES = {
    "2x64": dict(n_layer=2, n_head=4, n_embd=64, mlp_hidden=256),
    "4x128": dict(n_layer=4, n_head=4, n_embd=128, mlp_hidden=512),
    "4x192": dict(n_layer=4, n_head=6, n_embd=192, mlp_hidden=768),
    "6x384": dict(n_layer=6, n_head=6, n_embd=384, mlp_hidden=768),
}
SETTINGS = {**DEFAULTS, "seed": 0}  # what python -m tinyllm.chat --eval uses


def score(model, tokenizer) -> dict:
    """Pass rates (all four checks) per category of both evaluations."""
    fn = lambda messages: reply(model, tokenizer, messages, raw=True, **SETTINGS)  # noqa: E731
    generated = chat_eval.run_eval(fn, chat_eval.eval_cases("guppy"))
    hand = chat_eval.run_eval(fn, chat_eval.handwritten_cases("guppy"))
    rates = {r["category"]: round(r["passed"], 4) for r in generated["rows"] + hand["rows"]}
    return {**rates, "total": round(generated["total"]["passed"], 4)}


def training_wordings() -> int:
    """How many question templates the generator trains on (held-out ones not counted)."""
    return sum(not is_held_out(topic, i) for topic in TOPICS
               for i in range(len(question_templates(topic, "guppy"))))


def run(shape: str, steps: int, seed: int, conversations: int | None) -> dict:
    extra = {} if conversations is None else {"n_conversations": conversations}
    cfg = config_from_preset("chat-cpu", **SHAPES[shape], max_iters=steps, seed=seed,
                             eval_interval=0, verbose=False, **extra)
    trained = {}
    load = os.getloadavg()[0]
    history = train(cfg, callback=lambda step, m, h, t: trained.update(model=m, tokenizer=t))
    model = trained["model"].eval()
    return {"shape": shape, "steps": steps, "seed": seed, "params": model.num_params(),
            "wordings": training_wordings(), "conversations": cfg.n_conversations,
            "train_seconds": round(history["train_time"], 1), "val_loss": round(history["val_loss"][-1], 4),
            "load_average": [round(load, 2), round(os.getloadavg()[0], 2)],
            **score(model, trained["tokenizer"])}


def from_checkpoint(folder: str) -> dict:
    model, tokenizer = load_chat_model(folder)
    _, _, checkpoint = load_model(folder)
    cfg, h = checkpoint.train_config, checkpoint.history
    shape = next(name for name, s in SHAPES.items() if all(cfg[k] == v for k, v in s.items()))
    return {"shape": shape, "steps": checkpoint.step, "seed": cfg["seed"], "params": model.num_params(),
            "wordings": training_wordings(), "conversations": cfg["n_conversations"],
            "train_seconds": round(h["train_time"], 1), "val_loss": round(h["val_loss"][-1], 4),
            "load_average": None, "checkpoint": str(folder), **score(model, tokenizer)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", nargs="*", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--steps", nargs="*", type=int, default=[1000, 3000])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--conversations", type=int, default=None,
                        help="training conversations (default: the preset's)")
    parser.add_argument("--without_wordings", action="store_true",
                        help="train without the training-only wordings (tinyllm/chat_wordings.json)")
    parser.add_argument("--checkpoint", default=None,
                        help="score this finished chat-cpu run instead of training")
    measurement_options(parser, OUT)
    args = parser.parse_args()
    apply_threads(args)
    if args.without_wordings:  # the generator as it was before them: the topics' ask lists only
        chat_data.WORDINGS = {}
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {"meta": {}, "runs": []}
    if args.checkpoint:
        todo = [lambda: from_checkpoint(args.checkpoint)]
    else:
        todo = [lambda s=s, n=n, k=k: run(s, n, k, args.conversations)
                for s in args.shapes for n in args.steps for k in args.seeds]

    def key(r: dict) -> tuple:  # one run of the grid
        return r["shape"], r["steps"], r["seed"], r["wordings"]

    for job in todo:
        result = job()
        print(json.dumps(result))
        data["runs"] = [r for r in data["runs"] if key(r) != key(result)] + [result]
        data["runs"].sort(key=lambda r: (r["wordings"], r["params"], r["steps"], r["seed"]))
        data["meta"] = {"machine": platform.machine(), "cpus": os.cpu_count(), "torch": torch.__version__,
                        "threads": torch.get_num_threads(), "settings": SETTINGS, "note": args.note,
                        "date": datetime.date.today().isoformat()}
        # written after every run: a long grid keeps what it has measured
        out.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
