"""Sample text from a trained checkpoint: ``python -m tinyllm.generate``.

    python -m tinyllm.generate                                  # the shipped Shakespeare model
    python -m tinyllm.generate --start "ROMEO:" --temperature 0.8 --top_k 20
    python -m tinyllm.generate --out_dir out --num_samples 3 --max_new_tokens 300

Without ``--out_dir`` the model shipped with the package is used
(``tinyllm/checkpoints/shakespeare-char``), so this works offline right after installing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from tinyllm.checkpoint import CheckpointError, load_model
from tinyllm.device import pick_device
from tinyllm.validate import check_int

SHIPPED_MODEL = Path(__file__).resolve().parent / "checkpoints" / "shakespeare-char"


def load_shipped_model(device: str | torch.device = "cpu"):
    """The character-level Shakespeare model shipped with the package: ``model, tokenizer``."""
    model, tokenizer, _ = load_model(SHIPPED_MODEL, device)
    return model, tokenizer


def generate_text(
    model,
    tokenizer,
    start: str = "\n",
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    seed: int | None = None,
    num_samples: int = 1,
    use_cache: bool = True,
) -> list[str]:
    """``num_samples`` continuations of ``start`` (each includes ``start``)."""
    if not start:
        raise ValueError("start must hold at least one character to continue from (e.g. '\\n')")
    check_int("num_samples", num_samples)
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    idx = torch.tensor([tokenizer.encode(start)] * num_samples, dtype=torch.long, device=device)
    out = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                         greedy=greedy, generator=generator, use_cache=use_cache)
    return [tokenizer.decode(row.tolist()) for row in out]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tinyllm.generate", description="Sample text from a checkpoint.")
    parser.add_argument("--out_dir", default=str(SHIPPED_MODEL), help="checkpoint folder (default: the shipped model)")
    parser.add_argument("--start", default="\n", help="the prompt to continue (default: a newline)")
    parser.add_argument("--num_samples", type=int, default=1, help="how many samples (default 1)")
    parser.add_argument("--max_new_tokens", type=int, default=300, help="tokens to add (default 300)")
    parser.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    parser.add_argument("--top_k", type=int, default=None, help="sample among the k most likely tokens")
    parser.add_argument("--top_p", type=float, default=None, help="nucleus sampling threshold")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely token")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the sampling (default 1337)")
    parser.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda or mps")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        model, tokenizer, _ = load_model(args.out_dir, pick_device(args.device, verbose=False))
        samples = generate_text(model, tokenizer, args.start, args.max_new_tokens, args.temperature, args.top_k,
                                args.top_p, args.greedy, args.seed, args.num_samples)
    except (CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for i, text in enumerate(samples):
        if len(samples) > 1:
            print(f"--- sample {i + 1} ---")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
