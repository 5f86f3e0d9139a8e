"""How fast does the course's GPT train on this CPU, against what the CPU can do?

    python benchmarks/bench_model.py [--steps 30] [--skip-compile] [--curve-steps 150]

Measures, in one run:

1. the machine's fp32 matrix-multiply peak (the best of a few large ``torch.mm``), and the
   bf16 one;
2. a training step (forward, backward, AdamW) of the course model (n_layer=4, n_head=4,
   n_embd=128, block_size=64, batch 12, vocab 65): median step time and achieved GFLOP/s,
   counted as ``model.flops_per_token(T) * B * T`` (= 6 N per token for the weights plus
   12 L C T for attention), and the ratio to the peak;
3. variants that might close the gap: 1 vs 2 threads, foreach vs fused AdamW, a larger
   batch, ``torch.compile`` (if it works offline), bf16 autocast;
4. a short training run in fp32 and in bf16 autocast from the same init on the same
   batches, to show that the loss curves agree within noise.

It prints figures and never fails on time: timings depend on the machine and its load
(printed at the start).

On a shared, overloaded machine run it with ``OMP_WAIT_POLICY=PASSIVE``: by default
OpenMP threads spin while they wait for each other, and when other processes hold the
cores a 2-thread step can take ten times longer (measured here: 2.9 s instead of 0.3 s).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import platform
import statistics
import subprocess
import time

import torch

from tinyllm.model import GPT, GPTConfig

COURSE = dict(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128)


def load() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def cpu_flags() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown"
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f" {f}" in flags]
    return " ".join(found) or "none of avx2/avx512/amx"


def matmul_peak(dtype=torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Best GFLOP/s of an (n, n) @ (n, n) product: 2 n^3 FLOPs."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def batches(n: int, B: int, T: int, V: int, seed: int = 0):
    """Fixed random batches of a learnable sequence: a noisy periodic pattern, so the loss falls."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start = torch.randint(0, V, (B, 1), generator=g)
        seq = (start + torch.arange(T + 1) * 7) % V
        noise = torch.rand(B, T + 1, generator=g) < 0.1
        seq = torch.where(noise, torch.randint(0, V, (B, T + 1), generator=g), seq)
        out.append((seq[:, :-1].contiguous(), seq[:, 1:].contiguous()))
    return out


def train_step_time(B: int = 12, steps: int = 30, threads: int | None = None, fused: bool = False,
                    bf16: bool = False, compile_model: bool = False, warmup: int = 5):
    """Median seconds per training step, and GFLOP/s."""
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        torch.manual_seed(0)
        cfg = GPTConfig(**COURSE)
        model = GPT(cfg)
        opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.95), "cpu")
        if fused:
            opt = torch.optim.AdamW(opt.param_groups, lr=1e-3, betas=(0.9, 0.95), fused=True)
        run = torch.compile(model) if compile_model else model
        data = batches(warmup + steps, B, cfg.block_size, cfg.vocab_size)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        times = []
        for i, (x, y) in enumerate(data):
            start = time.perf_counter()
            with autocast:
                _, loss = run(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i >= warmup:
                times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        flops = model.flops_per_token(cfg.block_size) * B * cfg.block_size
        return seconds, flops / seconds / 1e9
    finally:
        torch.set_num_threads(old_threads)


def loss_curves(steps: int, B: int = 12):
    """Train the same init on the same batches in fp32 and in bf16 autocast."""
    cfg = GPTConfig(**COURSE)
    data = batches(steps, B, cfg.block_size, cfg.vocab_size, seed=1)
    curves = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        model = GPT(cfg)
        opt = model.configure_optimizers(0.1, 3e-3, (0.9, 0.95), "cpu")
        losses = []
        for x, y in data:
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                _, loss = model(x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        curves[name] = losses
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per variant")
    parser.add_argument("--curve-steps", type=int, default=150, help="steps of the fp32 vs bf16 loss curves")
    parser.add_argument("--skip-compile", action="store_true", help="do not try torch.compile")
    parser.add_argument("--plot", default="", help="save the fp32/bf16 loss curves to this PNG")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"CPU flags: {cpu_flags()}")
    print(f"load average at start: {load()}")
    print(f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}")
    if "OMP_WAIT_POLICY" not in os.environ and os.getloadavg()[0] > (os.cpu_count() or 1):
        print("  the machine is busy: threads that spin while waiting slow down a lot; "
              "consider OMP_WAIT_POLICY=PASSIVE")

    peak32 = matmul_peak(torch.float32)
    peak16 = matmul_peak(torch.bfloat16)
    print(f"\nmatmul peak (2048^3, best of 5): fp32 {peak32:7.1f} GFLOP/s   bf16 {peak16:7.1f} GFLOP/s "
          f"({peak16 / peak32:.1f}x)")

    model = GPT(GPTConfig(**COURSE))
    print(f"\ncourse model: {model.num_params():,} parameters, "
          f"{model.flops_per_token(64) / 1e6:.2f} MFLOP per token (train), "
          f"{model.flops_per_token(64) * 12 * 64 / 1e9:.2f} GFLOP per step of 12 x 64 tokens")

    variants = [
        ("baseline: fp32, 2 threads, foreach AdamW, B=12", dict()),
        ("1 thread", dict(threads=1)),
        ("fused AdamW", dict(fused=True)),
        ("batch 48 (4x tokens per step)", dict(B=48)),
        ("bf16 autocast", dict(bf16=True)),
        ("bf16 autocast, batch 48", dict(bf16=True, B=48)),
    ]
    if not args.skip_compile:
        variants.append(("torch.compile", dict(compile_model=True)))
    results = []
    for name, kwargs in variants:
        try:
            results.append((name, *train_step_time(steps=args.steps, **kwargs)))
        except Exception as exc:  # torch.compile may need a compiler or network: report, go on
            results.append((name, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}", None))
    # The load of a shared machine changes during the run: measure the peak again and
    # compare with the higher of the two, so the ratio is never flattered by a slow moment.
    peak32_end = matmul_peak(torch.float32)
    peak = max(peak32, peak32_end)
    print(f"\nfp32 matmul peak again after the variants: {peak32_end:.1f} GFLOP/s; ratios use {peak:.1f}")
    print(f"\n{'variant':44} {'median step':>12} {'GFLOP/s':>9} {'of fp32 peak':>13}")
    for name, seconds, gflops in results:
        if gflops is None:
            print(f"{name:44} {seconds}")
        else:
            print(f"{name:44} {seconds * 1e3:9.1f} ms {gflops:9.1f} {gflops / peak:12.0%}")

    print(f"\nloss curves, {args.curve_steps} steps from the same init on the same batches:")
    curves = loss_curves(args.curve_steps)
    fp32, bf16 = curves["fp32"], curves["bf16"]
    for step in sorted({0, 10, 25, 50, 100, args.curve_steps - 1}):
        if step < args.curve_steps:
            print(f"  step {step:4}: fp32 {fp32[step]:.4f}   bf16 {bf16[step]:.4f}   "
                  f"diff {bf16[step] - fp32[step]:+.4f}")
    tail = min(20, args.curve_steps)
    diff = [b - a for a, b in zip(fp32[-tail:], bf16[-tail:])]
    noise = statistics.pstdev(fp32[-tail:])
    print(f"  last {tail} steps: mean fp32 {statistics.mean(fp32[-tail:]):.4f}, "
          f"bf16 {statistics.mean(bf16[-tail:]):.4f}, "
          f"mean |diff| {statistics.mean(abs(d) for d in diff):.4f} vs step-to-step noise (std of fp32) {noise:.4f}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        plt.figure(figsize=(6, 3.5))
        plt.plot(fp32, label="fp32")
        plt.plot(bf16, label="bf16 autocast", alpha=0.8)
        plt.xlabel("step")
        plt.ylabel("loss")
        plt.legend()
        plt.title("same init, same batches")
        plt.savefig(args.plot, dpi=100, bbox_inches="tight")
        print(f"  plot saved to {args.plot}")
    print(f"\nload average at end: {load()}")
    with contextlib.suppress(Exception):
        amx = subprocess.run(["lscpu"], capture_output=True, text=True).stdout.count("amx")
        print(f"lscpu mentions amx: {'yes' if amx else 'no'}")


if __name__ == "__main__":
    main()
