"""The README's map of the package: module, lines, the chapter that builds it, its tests.

    python scripts/module_map.py            # print the table
    python scripts/module_map.py --write    # put it into README.md between its markers

The chapters and tests of each module are written here once; the line counts are
measured. tests/test_readme.py checks that the README's table lists every module with
this script's chapters and tests (line counts may lag: re-run with --write).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN, END = "<!-- module map: begin (scripts/module_map.py --write) -->", "<!-- module map: end -->"

# module (a file, or a folder counted as one) -> (chapters that build it, test files, what it is)
MAP: dict[str, tuple[str, str, str]] = {
    "data.py": ("00, 01", "test_data.py", "corpora (embedded Shakespeare, tinyshakespeare), splits, batches"),
    "tokenizer/char.py": ("01", "test_tokenizer_char.py", "the character tokenizer"),
    "tokenizer/bpe.py": ("03", "test_tokenizer_bpe.py", "byte-pair encoding with GPT-4's split pattern"),
    "tokenizer/bpe_file.py": ("03", "test_tokenizer_bpe.py", "the BPE tokenizer's saved form, checked when read back"),
    "tokenizer/bpe_train.py": ("03", "test_tokenizer_bpe.py", "training a BPE vocabulary"),
    "tokenizer/bpe_reference.py": ("03", "test_tokenizer_bpe.py", "the chapter's simple BPE, the reference"),
    "tokenizer/hf_json.py": ("03", "test_tokenizer_hf_json.py", "Hugging Face tokenizer.json files, read and written"),
    "bigram.py": ("02", "test_bigram.py", "the bigram model: a table of next-token logits"),
    "model.py": ("04-07", "test_model.py", "GPT: its config, attention, MLP, block, the model"),
    "train.py": ("08", "test_train.py", "the single-process training loop a reader holds, `python -m tinyllm.train`"),
    "config.py": ("08", "test_train.py", "`TrainConfig` (a `GPTConfig` plus the run's settings), presets, options"),
    "prepare.py": ("08, 12", "test_train.py", "what a run trains on: tokenizer and splits of text or chats"),
    "optim.py": ("11", "test_optim.py", "AdamW, Muon (Newton-Schulz written out), the learning-rate setter"),
    "distributed.py": ("13", "test_distributed.py", "torchrun: process group, DDP / FSDP2, gathered checkpoints"),
    "checkpoint.py": ("08", "test_checkpoint.py", "saving and loading a model with its tokenizer"),
    "checkpoint_state.py": ("08", "test_checkpoint.py",
                            "a checkpoint's contents as tensors and JSON, and back, type-checked"),
    "sampling.py": ("09", "test_model.py", "temperature, top-k, top-p (tested through `GPT.generate`)"),
    "kv_cache.py": ("09", "test_model.py", "the keys and values of the tokens already read, per layer"),
    "generate.py": ("09", "test_generate.py", "text generation with the KV cache, the command line"),
    "plots.py": ("00-09", "test_plots.py", "the chapters' figures"),
    "widgets/tokenizer_explorer.py": ("03", "test_widget_tokenizer.py", "type text, see its tokens"),
    "widgets/attention_explorer.py": ("05, 09", "test_widget_attention.py", "a model's attention weights"),
    "widgets/sampling_playground.py": ("09", "test_widget_sampling.py", "sampling knobs and their text"),
    "layers.py": ("11", "test_layers.py, test_model.py", "RMSNorm, RoPE, grouped-query KV, SwiGLU, ReLU squared"),
    "trace.py": ("10", "test_trace.py", "one forward pass kept whole: logit lens, head scores, ablation"),
    "widgets/layer_explorer.py": ("10", "test_widget_layer_explorer.py", "the logit lens and heads for a position"),
    "chat_data.py": ("12", "test_chat_data.py", "synthetic persona conversations, the chat template, loss mask"),
    "chat_topics.py": ("12", "test_chat_data.py", "the persona's topics and wordings: data, not code"),
    "batching.py": ("12", "test_batching.py", "chat batches by padding or packing"),
    "chat.py": ("12", "test_chat.py", "replies with the KV cache, history trimming, `python -m tinyllm.chat`"),
    "chat_eval.py": ("12", "test_chat_eval.py", "the scored chat evaluation"),
    "widgets/chat.py": ("12", "test_widget_chat.py", "a chat box for a model"),
    "export.py": ("07, 14", "test_export.py", "to and from Hugging Face GPT-2; Llama and Qwen3 for modern pieces"),
    "scale.py": ("13", "test_scale.py", "the arithmetic of big runs: bytes per rank, all-reduce, FLOPs, hours"),
    "export_onnx.py": ("14", "test_export_onnx.py, test_web_page.py",
                       "ONNX export with and without the KV cache, int8, greedy with onnxruntime"),
    "device.py": ("-", "test_device.py", "CPU, CUDA or MPS (`--device auto`), bfloat16 where it is fast"),
    "files.py": ("-", "test_checkpoint.py", "atomic writes, sha256 and JSON reading (below the data flow)"),
    "validate.py": ("-", "test_model.py, test_scale.py",
                    "the integer and token-id checks, one wording each (below the data flow)"),
    "grade.py": ("exercises", "test_grade.py, test_exercises.py", "`python -m tinyllm.grade`"),
    "grading/": ("exercises", "test_grade.py, test_exercises.py",
                 "a bubblewrap sandbox that answers calls under a watch, the tests in a process of their own, "
                 "checks, flags, a teacher's own sources"),
}


def modules(root: Path = ROOT) -> list[str]:
    """Every module of the package as the map names it (folders listed in MAP count once)."""
    folders = [key for key in MAP if key.endswith("/")]
    names = set()
    for path in (root / "tinyllm").rglob("*.py"):
        name = path.relative_to(root / "tinyllm").as_posix()
        if path.name == "__init__.py":
            continue
        names.add(next((f for f in folders if name.startswith(f)), name))
    return sorted(names)


def lines(name: str, root: Path = ROOT) -> int:
    path = root / "tinyllm" / name
    files = sorted(path.rglob("*.py")) if name.endswith("/") else [path]
    return sum(len(f.read_text(encoding="utf-8").splitlines()) for f in files)


def table(root: Path = ROOT) -> str:
    rows = ["| module | lines | built in chapter | tests | what it is |", "|---|---:|---|---|---|"]
    for name in [m for m in MAP if m in modules(root)]:
        chapters, tests, what = MAP[name]
        rows.append(f"| `tinyllm/{name}` | {lines(name, root)} | {chapters} | {tests} | {what} |")
    return "\n".join(rows)


def write(readme: Path = README) -> bool:
    text = readme.read_text(encoding="utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest or not tail and END not in rest:
        raise SystemExit(f"{readme} has no module map markers")
    new = f"{head}{BEGIN}\n{table()}\n{END}{tail}"
    readme.write_text(new, encoding="utf-8")
    return new != text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="update README.md")
    args = parser.parse_args(argv)
    missing = sorted(set(modules()) - set(MAP))
    if missing:
        raise SystemExit(f"modules missing from the map in scripts/module_map.py: {missing}")
    if args.write:
        print("README.md updated" if write() else "README.md already up to date")
    else:
        print(table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
