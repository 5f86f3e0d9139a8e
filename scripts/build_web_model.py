"""Build the model files of the book page "Talk to the model" (book/talk_to_the_model.md).

    python scripts/build_web_model.py                       # the shipped Shakespeare model
    python scripts/build_web_model.py --checkpoint runs/chat --name chat

Writes into book/_vendor/model/ (served by the built book as _static/model/):

- ``<name>.onnx``: the model, float32 (``tinyllm.export.to_onnx``, checked against PyTorch);
- ``<name>.int8.onnx``: the same with int8 weights (``tinyllm.export_onnx.quantize_int8``);
- ``<name>.json``: what the page needs besides the weights: the tokenizer's saved form,
  block_size, the chat template (for a chat model), a starting prompt, file sizes.

The files are committed (a few MB), so ``make book`` needs no export step; a test checks
that the committed ONNX file still gives the shipped checkpoint's logits.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "_vendor" / "model"

# The chat template of the course's chat model (ChatML): a chat model's tokenizer has
# these two special tokens; the page wraps the reader's message in them.
CHAT_TEMPLATE = {
    "user_prefix": "<|im_start|>user\n",
    "user_suffix": "<|im_end|>\n",
    "assistant_prefix": "<|im_start|>assistant\n",
    "stop": "<|im_end|>",
}


def tokenizer_state(tokenizer) -> dict:
    """The tokenizer as the page's JavaScript reads it (book/_vendor/talk/tokenizer.js)."""
    if hasattr(tokenizer, "merges") and hasattr(tokenizer, "pattern"):  # BPETokenizer
        return {
            "type": "bpe",
            "pattern": tokenizer.pattern,
            "merges": [list(pair) for pair in tokenizer.merges],  # in id order: 256, 257, ...
            "special_tokens": dict(tokenizer.special_tokens),
        }
    return tokenizer.to_dict()  # CharTokenizer: {"type": "char", "chars": [...]}


def write_web_model(model, tokenizer, name: str, out: Path = OUT, prompt: str = "ROMEO:") -> dict:
    """Write ``<name>.onnx``, ``<name>.int8.onnx`` and ``<name>.json`` into ``out``."""
    sys.path.insert(0, str(ROOT))
    from tinyllm.export_onnx import quantize_int8, to_onnx

    state = tokenizer_state(tokenizer)
    is_chat = {"<|im_start|>", "<|im_end|>"} <= set(state.get("special_tokens") or {})
    fp32 = to_onnx(model, Path(out) / f"{name}.onnx")
    int8 = quantize_int8(fp32, Path(out) / f"{name}.int8.onnx")
    manifest = {
        "name": name,
        "onnx": fp32.name,
        "onnx_int8": int8.name,
        "bytes": fp32.stat().st_size,
        "bytes_int8": int8.stat().st_size,
        "block_size": model.config.block_size,
        "vocab_size": model.config.vocab_size,
        "parameters": model.num_params(),
        "tokenizer": state,
        "chat": CHAT_TEMPLATE if is_chat else None,
        "prompt": "Hello! Who are you?" if is_chat else prompt,
    }
    text = json.dumps(manifest, ensure_ascii=False, indent=1) + "\n"
    (Path(out) / f"{name}.json").write_text(text, encoding="utf-8")
    return manifest


def build(checkpoint: Path | None, name: str, out: Path = OUT) -> dict:
    """Export the checkpoint in ``checkpoint`` (default: the shipped model) for the page."""
    sys.path.insert(0, str(ROOT))
    from tinyllm.checkpoint import load_model
    from tinyllm.generate import SHIPPED_MODEL

    model, tokenizer, _ = load_model(checkpoint or SHIPPED_MODEL)
    return write_web_model(model, tokenizer, name, out)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None, help="checkpoint folder (default: shipped model)")
    parser.add_argument("--name", default="shakespeare-char")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    manifest = build(args.checkpoint, args.name, args.out)
    print(f"{args.out / manifest['onnx']}: {manifest['bytes'] / 1e6:.2f} MB, "
          f"int8 {manifest['bytes_int8'] / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
