"""Is bfloat16 fast on this CPU? (a benchmark, never a test)

    python benchmarks/bench_bfloat16.py [--repeats 200]

Times one product of the size Muon orthogonalises in chapter 11 (128 x 128 by 128 x 512),
on one thread, in float32 and in bfloat16: first on this CPU as it is, then in a second
process where PyTorch's kernels are held to AVX2 (``ONEDNN_MAX_CPU_ISA=AVX2``,
``ATEN_CPU_CAPABILITY=avx2``), as on a CPU without AMX or AVX512-BF16. Prints milliseconds,
the ratio, and what ``tinyllm.device.cpu_has_fast_bfloat16`` says, which decides whether
``tinyllm.optim.Muon`` runs its steps in bfloat16 or in float32.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import torch

from tinyllm.device import cpu_has_fast_bfloat16

AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def product_ms(dtype: torch.dtype, repeats: int) -> float:
    """Best of five means over ``repeats`` products, in milliseconds."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(128, 128, generator=g).to(dtype)
    b = torch.randn(128, 512, generator=g).to(dtype)
    for _ in range(5):
        a @ b
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, (time.perf_counter() - start) / repeats)
    return best * 1e3


def measure(repeats: int) -> dict:
    torch.set_num_threads(1)
    return {"float32": product_ms(torch.float32, repeats), "bfloat16": product_ms(torch.bfloat16, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # the second process
    args = parser.parse_args()
    if args.json:
        print(json.dumps(measure(args.repeats)))
        return
    rows = {"this CPU": measure(args.repeats)}
    out = subprocess.run([sys.executable, __file__, "--json", "--repeats", str(args.repeats)],
                         env={**os.environ, **AVX2_ONLY}, capture_output=True, text=True, check=True)
    rows["held to AVX2"] = json.loads(out.stdout)
    print(f"128 x 128 by 128 x 512 product, 1 thread, torch {torch.__version__}, "
          f"{os.cpu_count()} CPUs; cpu_has_fast_bfloat16() = {cpu_has_fast_bfloat16()}")
    print(f"{'kernels':14} {'float32 ms':>11} {'bfloat16 ms':>12} {'bf16 / fp32':>12}")
    for name, ms in rows.items():
        print(f"{name:14} {ms['float32']:>11.3f} {ms['bfloat16']:>12.3f} {ms['bfloat16'] / ms['float32']:>11.1f}x")


if __name__ == "__main__":
    main()
