"""Benchmark the byte-level BPE tokenizer on tinyshakespeare against Hugging Face `tokenizers`
and against the chapter's simple trainer. Prints figures and ratios; never fails on time.

    TINYLLM_DATA=/path/to/folder/with/tinyshakespeare python benchmarks/bench_tokenizer.py

Targets (issue 3): training 4096 tokens <= 3x the time of the Hugging Face byte-level BPE
trainer; 512 tokens >= 30x faster than the simple trainer; encoding >= 1 MB/s;
compression (bytes per token) at 4096 within 3% of Hugging Face's.

The Hugging Face trainer is configured like ours: byte-level (all 256 bytes in the initial
alphabet), the same split regex, the same vocabulary size, no minimum frequency, no special
tokens. It runs in Rust on all cores (RAYON threads); ours is pure Python on one.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if not os.environ.get("TINYLLM_DATA") and (ROOT.parent / "shared" / "data" / "tinyshakespeare.txt").exists():
    os.environ["TINYLLM_DATA"] = str(ROOT.parent / "shared" / "data")

from tinyllm.data import load_text  # noqa: E402
from tinyllm.tokenizer import BPETokenizer  # noqa: E402
from tinyllm.tokenizer.bpe import SPLIT_PATTERNS  # noqa: E402
from tinyllm.tokenizer.bpe_reference import train_merges_simple  # noqa: E402


def best_time(fn, repeats: int):
    """Run ``fn`` ``repeats`` times; return (fastest seconds, last result). The minimum is
    the least noisy figure on a shared machine."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def hf_train(text: str, vocab_size: int, pattern: str | None):
    """A Hugging Face byte-level BPE trainer; ``pattern=None`` is its stock GPT-2 ByteLevel."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if pattern is None:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=0, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[],
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of the fast runs (best is kept)")
    parser.add_argument("--simple-chars", type=int, default=0,
                        help="train the simple trainer on only this many characters (0 = the whole file)")
    args = parser.parse_args()

    text = load_text("tinyshakespeare")
    nbytes = len(text.encode("utf-8"))
    print(f"tinyshakespeare: {nbytes:,} bytes; load average before: {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores; best of {args.repeats} for the fast runs\n")
    rows = []

    # 1. Training 4096 tokens, ours vs Hugging Face, with both split patterns.
    for name in ("gpt4", "gpt2"):
        ours_s, ours = best_time(lambda name=name: BPETokenizer().train(text, 4096, pattern=name), args.repeats)
        # gpt2: HF's stock ByteLevel pre-tokenizer uses the GPT-2 regex itself.
        hf_pattern = SPLIT_PATTERNS[name] if name == "gpt4" else None
        hf_s, hf = best_time(lambda hf_pattern=hf_pattern: hf_train(text, 4096, hf_pattern), args.repeats)
        ours_bpt = nbytes / len(ours.encode(text))
        hf_bpt = nbytes / len(hf.encode(text).ids)
        assert hf.decode(hf.encode(text).ids) == text and ours.decode(ours.encode(text)) == text
        print(f"[{name}] train 4096: ours {ours_s:.2f} s, Hugging Face {hf_s:.2f} s "
              f"-> ratio {ours_s / hf_s:.2f}x (target <= 3x)")
        print(f"[{name}] bytes/token at 4096: ours {ours_bpt:.4f}, Hugging Face {hf_bpt:.4f} "
              f"-> difference {100 * (ours_bpt / hf_bpt - 1):+.2f}% (target within 3%)")
        rows.append((f"train 4096 [{name}] / HF", ours_s / hf_s, "<= 3", ours_s / hf_s <= 3))
        diff = abs(ours_bpt / hf_bpt - 1)
        rows.append((f"bytes/token diff [{name}] %", 100 * diff, "<= 3", diff <= 0.03))

    # 2. Encoding the whole file: a freshly loaded tokenizer (empty chunk cache), then again.
    tok = BPETokenizer().train(text, 4096)
    with tempfile.TemporaryDirectory() as folder:
        tok.save(Path(folder) / "bpe.json")
        fresh = BPETokenizer.load(Path(folder) / "bpe.json")
    start = time.perf_counter()
    ids = fresh.encode(text)
    cold = time.perf_counter() - start
    warm, _ = best_time(lambda: fresh.encode(text), args.repeats)
    decode_s, decoded = best_time(lambda: fresh.decode(ids), args.repeats)
    assert decoded == text
    print(f"\nencode (4096, gpt4): cold cache {cold:.2f} s = {nbytes / cold / 1e6:.2f} MB/s, "
          f"warm cache {warm:.2f} s = {nbytes / warm / 1e6:.2f} MB/s (target >= 1 MB/s); "
          f"decode {decode_s:.3f} s = {nbytes / decode_s / 1e6:.1f} MB/s; {len(ids):,} tokens")
    rows.append(("encode MB/s (cold cache)", nbytes / cold / 1e6, ">= 1", nbytes / cold / 1e6 >= 1))

    # 3. Training 512 tokens: fast vs the chapter's simple trainer (recount after every merge).
    simple_text = text[: args.simple_chars] if args.simple_chars else text
    fast_s, fast = best_time(lambda: BPETokenizer().train(simple_text, 512), args.repeats)
    print(f"\ntrain 512 on {len(simple_text):,} characters: fast {fast_s:.2f} s; "
          f"simple trainer running (minutes on the whole file) ...", flush=True)
    start = time.perf_counter()
    simple = train_merges_simple(simple_text, 256, SPLIT_PATTERNS["gpt4"])
    simple_s = time.perf_counter() - start
    assert simple == list(fast.merges), "the fast and simple trainers disagree"
    print(f"train 512: simple {simple_s:.1f} s, fast {fast_s:.2f} s -> fast is {simple_s / fast_s:.0f}x faster "
          "(target >= 30x); merges identical")
    rows.append(("train 512 simple / fast", simple_s / fast_s, ">= 30", simple_s / fast_s >= 30))

    print(f"\nload average after: {os.getloadavg()[0]:.2f}\n")
    print(f"{'figure':32s} {'value':>9s}  target  met")
    for name, value, target, met in rows:
        print(f"{name:32s} {value:9.2f}  {target:6s}  {'yes' if met else 'NO'}")


if __name__ == "__main__":
    main()
