"""Generation speed with and without the KV cache (a benchmark, never a test).

    python benchmarks/bench_generate.py [--new_tokens 500] [--threads N]

A GPT of the shipped model's width (4 layers, n_embd 128) but with a context of 640
tokens, so 500 new tokens after a 16-token prompt never overflow it and the cache never
resets. Random weights: speed does not depend on what the weights are. Greedy decoding,
best of 3 runs each; prints tokens/second and the speed-up (target >= 5x).
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tinyllm.model import GPT, GPTConfig


def best_seconds(model, prompt, n, use_cache, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = model.generate(prompt, n, greedy=True, use_cache=use_cache)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new_tokens", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    prompt_len = 16
    config = GPTConfig(vocab_size=71, block_size=640, n_layer=4, n_head=4, n_embd=128)
    assert config.block_size >= prompt_len + args.new_tokens, "the cache would reset"
    model = GPT(config).eval()
    prompt = torch.randint(0, config.vocab_size, (1, prompt_len))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    cached, out_cached = best_seconds(model, prompt, args.new_tokens, True)
    plain, out_plain = best_seconds(model, prompt, args.new_tokens, False)
    assert torch.equal(out_cached, out_plain), "cache and recompute must generate the same tokens"
    n = args.new_tokens
    print(f"{n} tokens with KV cache:    {cached:.2f} s ({n / cached:.0f} tokens/s)")
    print(f"{n} tokens without cache:    {plain:.2f} s ({n / plain:.0f} tokens/s)")
    print(f"speed-up: {plain / cached:.1f}x (target >= 5x); load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
