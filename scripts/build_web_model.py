"""Build the model files of the book page "Talk to the model" (book/talk_to_the_model.md).

    python scripts/build_web_model.py            # every web model, from the shipped checkpoints
    python scripts/build_web_model.py --checkpoint runs/chat --name chat   # one more

The page offers the shipped chat assistant first (``chat-cpu``, from
tinyllm/checkpoints/chat-cpu) and the Shakespeare character model second
(``shakespeare-char``). For each it writes into book/_vendor/model/ (served by the built
book as _static/model/):

- ``<name>.onnx``: the model as the KV-cached graph (``tinyllm.export_onnx.to_onnx_cached``,
  checked against PyTorch): each new token runs one position;
- ``<name>.int8.onnx``: the same with int8 weights (``tinyllm.export_onnx.quantize_int8``);
- ``<name>.json``: what the page needs besides the weights: the tokenizer's saved form,
  the model's shape (for the cache), the chat template and topic buttons (chat models),
  a starting prompt, file sizes, and the sha256 of the checkpoint's files, by which
  tests/test_web_page.py notices a web model older than its checkpoint.

The files are committed (a few MB), so ``make book`` needs no export step. When a shipped
checkpoint is retrained, run this script again and commit what it writes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "book" / "_vendor" / "model"
CHECKPOINTS = ROOT / "tinyllm" / "checkpoints"
# The page's models, in the order the page offers them: name -> shipped checkpoint folder.
WEB_MODELS = {"chat-cpu": CHECKPOINTS / "chat-cpu", "shakespeare-char": CHECKPOINTS / "shakespeare-char"}

# The chat template of the course's chat models (ChatML, tinyllm.chat_data.render): the
# markers are special token ids; the text between them is ordinary text (a message that
# spells "<|im_end|>" gets the tokens of those characters, never the marker).
CHAT_TEMPLATE = {
    "start": "<|im_start|>",
    "end": "<|im_end|>",
    "assistant_role": "assistant",
    # A reply ends at the first of these, as tinyllm.chat.stream_reply (raw=False) ends it.
    "stop": ["<|im_end|>", "<|endoftext|>", "<|im_start|>"],
}
# Messages behind the page's topic buttons: wordings of topics of the guppy persona's data.
TOPICS = ["hi guppy", "are you hungry?", "what do you eat?", "tell me a joke", "do you like your tank?"]


def lowercase_table() -> dict[str, str]:
    """Python's ``str.lower()`` of every character it changes, but the capital sigma: the page
    lower-cases the user's messages with it, so that it gives the ids tinyllm.chat gives. A
    browser's ``toLowerCase`` follows the Unicode of its own version (Chromium 156 lowers 55
    letters that this Python leaves as they are: U+A7CB, U+1C89, ...). Σ is σ, or ς at the end of
    a word, which the page decides as Python does (``talk.js``: ``lowerAsPython``)."""
    chars = (chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c < 0xE000)
    return {c: c.lower() for c in chars if c.lower() != c and c != "\u03a3"}


def tokenizer_state(tokenizer) -> dict:
    """The tokenizer as the page's JavaScript reads it (book/_vendor/talk/tokenizer.js)."""
    if hasattr(tokenizer, "merges") and hasattr(tokenizer, "pattern"):  # BPETokenizer
        # The page numbers byte b as id b and merge k as id 256 + k; a tokenizer.json made elsewhere
        # may number them its own way (tinyllm reads it so), which the page would misread.
        ours = tokenizer._byte_ids is None and all(i == 256 + k for k, i in enumerate(tokenizer.merges.values()))
        if not ours:
            raise ValueError("the page reads a BPE tokenizer whose bytes are ids 0..255 and whose merges follow "
                             "in order (tinyllm's own); this one numbers its ids its own way")
        return {
            "type": "bpe",
            "pattern": tokenizer.pattern,
            "merges": [list(pair) for pair in tokenizer.merges],  # in id order: 256, 257, ...
            "special_tokens": dict(tokenizer.special_tokens),
        }
    return tokenizer.to_dict()  # CharTokenizer: {"type": "char", "chars": [...]}


def checkpoint_digest(folder: Path) -> dict:
    """``{file kind: sha256}`` of the files a checkpoint folder's manifest names, computed
    from the files themselves (the weights and the state, which holds the tokenizer)."""
    sys.path.insert(0, str(ROOT))
    from tinyllm.files import sha256

    files = json.loads((Path(folder) / "manifest.json").read_text(encoding="utf-8"))["files"]
    return {kind: sha256((Path(folder) / entry["name"]).read_bytes()) for kind, entry in sorted(files.items())}


def write_web_model(model, tokenizer, name: str, out: Path = OUT, prompt: str = "ROMEO:",
                    checkpoint: Path | None = None, lowercase_user: bool = False) -> dict:
    """Write ``<name>.onnx``, ``<name>.int8.onnx`` and ``<name>.json`` into ``out``;
    ``lowercase_user``: the page encodes the user's messages lower-cased, as tinyllm.chat
    does for this model (tinyllm.chat.reads_lower_case)."""
    sys.path.insert(0, str(ROOT))
    from tinyllm.export_onnx import cache_names, quantize_int8, to_onnx_cached

    state = tokenizer_state(tokenizer)
    is_chat = {"<|im_start|>", "<|im_end|>"} <= set(state.get("special_tokens") or {})
    fp32 = to_onnx_cached(model, Path(out) / f"{name}.onnx")
    int8 = quantize_int8(fp32, Path(out) / f"{name}.int8.onnx")
    cfg = model.config
    manifest = {
        "name": name,
        "onnx": fp32.name,
        "onnx_int8": int8.name,
        "bytes": fp32.stat().st_size,
        "bytes_int8": int8.stat().st_size,
        "block_size": cfg.block_size,
        "vocab_size": cfg.vocab_size,
        "parameters": model.num_params(),
        # The graph's cache inputs: past_key_<l>, past_value_<l> of shape (1, heads, P, head_size).
        "cache": {"inputs": cache_names(cfg.n_layer, "past"), "outputs": cache_names(cfg.n_layer, "present"),
                  "heads": cfg.kv_heads, "head_size": cfg.head_size},
        "tokenizer": state,
        "chat": dict(CHAT_TEMPLATE, topics=TOPICS, lowercase_user=lowercase_user,
                     lowercase=lowercase_table() if lowercase_user else None) if is_chat else None,
        "prompt": TOPICS[0] if is_chat else prompt,
        "checkpoint": None,
    }
    if checkpoint is not None:
        checkpoint = Path(checkpoint).resolve()
        where = checkpoint.relative_to(ROOT).as_posix() if checkpoint.is_relative_to(ROOT) else str(checkpoint)
        manifest["checkpoint"] = {"folder": where, "sha256": checkpoint_digest(checkpoint)}
    text = json.dumps(manifest, ensure_ascii=False, indent=1) + "\n"
    (Path(out) / f"{name}.json").write_text(text, encoding="utf-8")
    return manifest


def build(checkpoint: Path, name: str, out: Path = OUT) -> dict:
    """Export the checkpoint folder ``checkpoint`` for the page under ``name``."""
    sys.path.insert(0, str(ROOT))
    from tinyllm.chat import reads_lower_case
    from tinyllm.checkpoint import load_model

    model, tokenizer, loaded = load_model(checkpoint)
    return write_web_model(model, tokenizer, name, out, checkpoint=checkpoint, lowercase_user=reads_lower_case(loaded))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="a checkpoint folder to build (default: every shipped web model)")
    parser.add_argument("--name", default=None, help="its name on the page (with --checkpoint)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if (args.checkpoint is None) != (args.name is None):
        parser.error("--checkpoint and --name go together")
    jobs = {args.name: args.checkpoint} if args.checkpoint else WEB_MODELS
    for name, folder in jobs.items():
        manifest = build(folder, name, args.out)
        print(f"{args.out / manifest['onnx']}: {manifest['bytes'] / 1e6:.2f} MB, "
              f"int8 {manifest['bytes_int8'] / 1e6:.2f} MB ({manifest['parameters']:,} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
