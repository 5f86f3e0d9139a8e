"""Ship a finished training run as a model of the package: weights, measured scores, README.

    python scripts/ship.py RUN_DIR DEST [--compare OTHER_RUN] [--command "how RUN_DIR was made"]

Copies the checkpoint in RUN_DIR to DEST without the optimizer state (a third of the
size; only needed to continue training), keeps its training history and settings
(``state-*.json``), measures the model and writes DEST/README.md with the figures and the
command that made it.

- A text model: its validation loss (float32, fixed batches; ``tinyllm.train.validation_loss``).
- A chat model: the scored evaluation (``tinyllm.chat_eval``) per category, with fixed
  sampling settings and seed; ``--compare OTHER_RUN`` also scores another run (the
  unmasked one) and puts both in the README. ``tests/test_chat.py`` re-runs the eval on
  the shipped model and checks the stated total.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tinyllm.chat import DEFAULTS
from tinyllm.checkpoint import export_model, load_model

EVAL_SETTINGS = {**DEFAULTS, "seed": 0}  # what python -m tinyllm.chat --eval uses

TEXT_COMMAND = ("OMP_NUM_THREADS=1 python -m tinyllm.train --preset shakespeare-char --out_dir runs/shakespeare-char"
                " && python scripts/ship.py runs/shakespeare-char tinyllm/checkpoints/shakespeare-char")
CHAT_COMMAND = (  # the model, then shipping it with its scores
    "OMP_NUM_THREADS=1 python -m tinyllm.train --preset chat-cpu --out_dir runs/chat-cpu\n"
    "python scripts/ship.py runs/chat-cpu tinyllm/checkpoints/chat-cpu --notes scripts/chat_cpu_notes.md"
)



def _size(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.iterdir()) / 1e6


def ship_text(out_dir, dest, command: str = TEXT_COMMAND) -> float:
    """Ship a text model with its measured validation loss; returns it."""
    from tinyllm.train import validation_loss

    model, tokenizer, checkpoint = load_model(out_dir)
    cfg = checkpoint.train_config
    settings = {"dataset": cfg["dataset"], "val_fraction": cfg["val_fraction"], "eval_iters": 50,
                "batch_size": 32, "seed": 0}
    val_loss = validation_loss(model, tokenizer, **settings)
    export_model(out_dir, dest, extra={"validation": {"val_loss": val_loss, **settings}})
    c, h = checkpoint.config, checkpoint.history
    corpus = {"shakespeare": "the embedded corpus", "tinyshakespeare": "the canonical tinyshakespeare file"}.get(
        cfg["dataset"], "the text file")
    Path(dest, "README.md").write_text(f"""# {Path(dest).name}: the course's character-level Shakespeare model

A GPT of {model.num_params():,} parameters ({c['n_layer']} layers, {c['n_head']} heads, n_embd {c['n_embd']},
context of {c['block_size']} characters, vocabulary of {c['vocab_size']} characters), trained for
{checkpoint.step:,} steps of batch {cfg['batch_size']} on {corpus} `load_text("{cfg['dataset']}")`
(first {1 - cfg['val_fraction']:.0%} of the text; the last {cfg['val_fraction']:.0%} is held out, `train_val_split`).
Files: {_size(Path(dest)):.1f} MB (weights as safetensors, float32; no optimizer state).

**Validation loss: {val_loss:.3f}** nats per character (float32, {settings['eval_iters']} batches of
{settings['batch_size']} x {c['block_size']} characters from the held-out split, drawn with seed {settings['seed']};
`tinyllm.train.validation_loss`). `tests/test_generate.py` checks this figure to 0.01.
Last estimate during training: train loss {h['train_loss'][-1]:.3f},
val loss {h['val_loss'][-1]:.3f}; training time {h['train_time'] / 60:.1f} minutes
on a shared 2-core CPU (settings in `state-*.json`, `train_config`).

Made with (from the repository root):

```
{command}
```

Load it with `tinyllm.generate.load_shipped_model()`, or sample from the shell:
`python -m tinyllm.generate --start "ROMEO:"`.
""", encoding="utf-8")
    return val_loss


def _score(out_dir) -> dict:
    from tinyllm import chat_eval
    from tinyllm.chat import reads_lower_case, reply

    model, tokenizer, checkpoint = load_model(out_dir)
    persona = checkpoint.train_config.get("persona", "guppy")
    lower = reads_lower_case(checkpoint)  # as python -m tinyllm.chat --eval reads the messages
    fn = lambda m: reply(model, tokenizer, m, raw=True, lowercase_user=lower, **EVAL_SETTINGS)  # noqa: E731
    cases = chat_eval.eval_cases(persona=persona)
    report = chat_eval.run_eval(fn, cases)
    scores = {"settings": EVAL_SETTINGS, "rows": report["rows"], "total": report["total"],
              "table": chat_eval.format_table(report)}
    # the same cases with the user's messages in Title Case and in CAPITALS, read as typed:
    # what the model itself makes of capitals (lower-cased, every case reads as its lower-case self)
    as_typed = lambda m: reply(model, tokenizer, m, raw=True, **EVAL_SETTINGS)  # noqa: E731
    scores["capitals"] = {style: chat_eval.run_eval(as_typed, chat_eval.recase(cases, style))["total"]["passed"]
                          for style in ("title", "upper")}
    if persona == "guppy":  # the hand-written messages are to the fish
        hand = chat_eval.run_eval(fn, chat_eval.handwritten_cases(persona))
        scores["hand-written"] = {"row": hand["rows"][0], "table": chat_eval.format_table(hand)}
    return scores


def ship_chat(out_dir, dest, compare=None, command: str = CHAT_COMMAND, timing: str = "",
              notes: str = "") -> dict:
    """Ship a chat model with its scored evaluation (and another run's, to compare)."""
    scores = _score(out_dir)
    other = _score(compare) if compare else None
    extra = {"eval": scores}
    if other:
        extra["eval_compared"] = {"run": load_model(compare)[2].train_config, **other}
    export_model(out_dir, dest, extra=extra)
    model, tokenizer, checkpoint = load_model(dest)
    c, cfg, h = checkpoint.config, checkpoint.train_config, checkpoint.history
    activation = {"relu": "ReLU", "gelu": "GELU"}[c["mlp"]]
    mask = "only the assistant's tokens (labels -100 elsewhere)" if cfg["mask_user"] else "every token"
    comparison = ""
    if other:
        o = extra["eval_compared"]["run"]
        comparison = f"""
The same recipe with `--mask_user {str(o['mask_user']).lower()}` ({o['max_iters']:,} steps; learns
{'only the answers' if o['mask_user'] else "every token, the user's too, as GuppyLM does"}), scored the same way:

```
{other['table']}
```

Validation loss on the assistant's tokens at the end: {h['val_loss'][-1]:.3f} (this model) against
{load_model(compare)[2].history['val_loss'][-1]:.3f} (the other run).
"""
    hand_written = ""
    if "hand-written" in scores:
        cases = scores["hand-written"]["row"]["cases"]
        hand_written = f"""
The hand-written eval (`tinyllm/chat_handwritten.json`: {cases} messages a person wrote to
the fish, not made by the generator, scored by the same checks; also printed by `--eval`):

```
{scores['hand-written']['table']}
```
"""
    Path(dest, "README.md").write_text(f"""# {Path(dest).name}: the course's chat assistant

A GPT of {model.num_params():,} parameters in GuppyLM's architecture, scaled down: {c['n_layer']} layers,
{c['n_head']} heads, n_embd {c['n_embd']}, a {activation} MLP of {c['mlp_hidden']}, a context of
{c['block_size']} tokens, a byte-level BPE vocabulary of {c['vocab_size']:,} tokens (special tokens
{', '.join(tokenizer.special_tokens)}) trained on the training conversations, tied output head.
It learned {mask}, on {cfg['n_conversations']:,} synthetic conversations of the `{cfg['persona']}`
persona (`tinyllm.chat_data.chat_dataset`, seed 0: the train split, the conversations whose
questions are outside the val bucket), for
{checkpoint.step:,} steps of batch {cfg['batch_size']} ({cfg['batching']} batching).
Files: {_size(Path(dest)):.1f} MB (weights as safetensors, float32, no optimizer state; the tokenizer,
the training settings and the whole training history are in `state-*.json`).

Final estimate: train loss {h['train_loss'][-1]:.3f}, val loss {h['val_loss'][-1]:.3f} (assistant's tokens
of the val conversations). Training time: {h['train_time'] / 60:.1f} minutes of training steps{timing}.

## Scores

`python -m tinyllm.chat --eval` with `{EVAL_SETTINGS}` (64 held-out cases; percent of cases
passing each check, `tinyllm.chat_eval`; `tests/test_chat.py` checks the total):

```
{scores['table']}
```
{hand_written}
The same 64 cases with the user's messages in Title Case pass {scores['capitals']['title']:.0%}, in
CAPITALS {scores['capitals']['upper']:.0%} (lower case: {scores['total']['passed']:.0%}) when the model reads them as
typed. `python -m tinyllm.chat`, `chat_completion` and the book's page read them lower-cased
(`tinyllm.chat.reads_lower_case`: the model was trained on the persona data), so there
capitals get what lower case gets; the scores above are read so too.
{comparison}
## Made with (from the repository root)

```
{command}
```

Talk to it with `python -m tinyllm.chat`, or from Python:
`tinyllm.chat.reply(*tinyllm.chat.load_chat_model(), [{{"role": "user", "content": "hi"}}])`.
{notes}""", encoding="utf-8")
    return extra


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python scripts/ship.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="the finished run's checkpoint folder")
    parser.add_argument("dest", help="where to ship it, e.g. tinyllm/checkpoints/chat-cpu")
    parser.add_argument("--compare", default=None, help="a chat run to score beside it (e.g. the unmasked one)")
    parser.add_argument("--command", default=None, help="the command that made the run, for the README")
    parser.add_argument("--timing", default="", help="a note on the machine's load, for the README")
    parser.add_argument("--notes", default=None, help="a Markdown file appended to the README (history, timing)")
    args = parser.parse_args(argv)
    _, tokenizer, checkpoint = load_model(args.run)
    if checkpoint.train_config.get("dataset") == "chat":
        notes = "\n" + Path(args.notes).read_text(encoding="utf-8") if args.notes else ""
        extra = ship_chat(args.run, args.dest, args.compare, args.command or CHAT_COMMAND, args.timing, notes)
        print(extra["eval"]["table"])
        if args.compare:
            print(extra["eval_compared"]["table"])
    else:
        print(f"validation loss {ship_text(args.run, args.dest, args.command or TEXT_COMMAND):.4f}")
    print(f"shipped to {args.dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
