"""One process against two on this machine, and what a GPU run holds in memory (a benchmark).

    python benchmarks/bench_distributed.py [--steps 60] [--skip-memory]

Step time (the ``cpu`` preset on the embedded corpus, the training time the run reports
divided by its steps):

- A: 1 process x 1 thread, batch B;
- B: 2 processes (torchrun, gloo, DDP) x 1 thread each, batch 2B: B per rank, the same
  per-rank work as A, so B / A is the cost of being two (1.0 = perfect weak scaling);
- C: 1 process x 2 threads, batch 2B: the same total work as B on the same two cores.

Plus the gloo all-reduce of one gradient (the model's parameter count in float32), timed
alone between two processes: the communication DDP adds to every step.

Memory (``--skip-memory`` leaves it out): bytes of training state per parameter and the
activations saved for the backward pass, measured with ``saved_tensors_hooks`` on a
forward pass under bfloat16 autocast, for the ``guppylm`` preset and GPT-2 124M.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time

import torch

from tinyllm.data import load_text
from tinyllm.distributed import run_torchrun
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer
from tinyllm.train import config_from_preset

BATCH = 16  # per rank


def step_time(nproc: int, threads: int, batch: int, steps: int) -> float:
    """Seconds per step of the ``cpu`` preset under torchrun (training time only)."""
    result = run_torchrun(nproc, ["--preset", "cpu", "--max_iters", str(steps), "--eval_interval", "0",
                                  "--eval_iters", "1", "--batch_size", str(batch), "--dtype", "float32",
                                  "--device", "cpu", "--quiet"], timeout=1200, threads=threads)
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    seconds = float(re.search(r"training time ([\d.]+) s", result.stdout)[1])
    return seconds / steps


def allreduce_worker(numel: int, repeats: int) -> None:
    """Run under torchrun: time a gloo all-reduce of ``numel`` float32 numbers."""
    import torch.distributed as dist

    dist.init_process_group("gloo")
    try:
        tensor = torch.ones(numel)
        for _ in range(3):  # warm up the connections
            dist.all_reduce(tensor)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(repeats):
            dist.all_reduce(tensor)
        elapsed = (time.perf_counter() - t0) / repeats
        if dist.get_rank() == 0:
            print(f"allreduce {elapsed:.6f}")
    finally:
        dist.destroy_process_group()


def allreduce_time(numel: int) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               __file__, "--allreduce-worker", str(numel)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-2000:])
    return float(re.search(r"allreduce ([\d.]+)", result.stdout)[1])


def saved_activation_bytes(config: GPTConfig, B: int, T: int) -> int:
    """Bytes of the tensors a training forward pass keeps for backward (bfloat16 autocast).

    Each storage is counted once; the weights are not activations and are left out.
    """
    torch.manual_seed(0)
    model = GPT(config).train()
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        seen.setdefault(t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        return t

    x = torch.randint(config.vocab_size, (B, T))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x, x)
    return sum(n for ptr, n in seen.items() if ptr not in weights)


def memory_table() -> None:
    gib = 2**30
    gpt2 = GPTConfig(vocab_size=50304, n_layer=12, n_head=12, n_embd=768, block_size=1024)
    guppy = config_from_preset("guppylm").model_config(4096)
    print("\nmemory of a GPU run (bfloat16 autocast: float32 weights, gradients and AdamW moments)")
    print("  state per parameter: weights 4 B + gradients 4 B + AdamW exp_avg 4 B + exp_avg_sq 4 B = 16 B")
    print("  activations: saved bytes of a batch of 2 minus a batch of 1 = one sequence's; what is left is")
    print("  the bfloat16 copies of the weights that autocast keeps for backward (2 B per parameter)")
    for name, config, micro, T in (("guppylm", guppy, 32, 128), ("GPT-2 124M", gpt2, 12, 1024)):
        n = GPT(config).num_params()
        one, two = saved_activation_bytes(config, 1, T), saved_activation_bytes(config, 2, T)
        per_seq, copies = two - one, 2 * one - two
        state, acts = 16 * n, per_seq * micro + copies
        print(f"  {name}: {n:,} parameters -> state {state / gib:.2f} GiB; "
              f"activations {per_seq / 2**20:.0f} MiB per sequence of {T} ({per_seq / T / 1024:.0f} KiB "
              f"per token) x micro-batch {micro} + weight copies {copies / 2**20:.0f} MiB "
              f"= {acts / gib:.2f} GiB; "
              f"total {(state + acts) / gib:.2f} GiB on one GPU;"
              f" with FSDP on 8 GPUs the state is {state / 8 / gib:.2f} GiB per GPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--skip-memory", action="store_true", help="only the step times")
    parser.add_argument("--skip-steps", action="store_true", help="only the memory table")
    parser.add_argument("--allreduce-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.allreduce_worker is not None:
        allreduce_worker(args.allreduce_worker, repeats=50)
        return
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    if not args.skip_steps:
        step_times(args.steps)
    if not args.skip_memory:
        memory_table()


def step_times(steps: int) -> None:
    a = step_time(1, 1, BATCH, steps)
    b = step_time(2, 1, 2 * BATCH, steps)
    c = step_time(1, 2, 2 * BATCH, steps)
    vocab = CharTokenizer.from_text(load_text("shakespeare")).vocab_size
    n = GPT(config_from_preset("cpu").model_config(vocab)).num_params()
    comm = allreduce_time(n)
    print(f"A 1 process  x 1 thread,  batch {BATCH:>2}:           {a * 1000:6.1f} ms/step")
    print(f"B 2 processes x 1 thread, batch {2 * BATCH:>2} ({BATCH} per rank): {b * 1000:6.1f} ms/step")
    print(f"C 1 process  x 2 threads, batch {2 * BATCH:>2}:           {c * 1000:6.1f} ms/step")
    print(f"gloo all-reduce of one gradient ({n:,} float32, {4 * n / 2**20:.1f} MiB) between 2 processes: "
          f"{comm * 1000:.1f} ms")
    print(f"ratio B / A = {b / a:.2f} (1.00: two ranks do twice the work in the same time); "
          f"B / C = {b / c:.2f} (below 1: two processes use the two cores better than two threads)")
    print("why: A and B do the same work per core, so B / A above 1 is the cost of being two: the "
          "all-reduce above (loopback TCP with gloo, once per step; on a CPU the same cores compute and "
          "communicate, so little of it overlaps the backward pass) and the two ranks waiting for each "
          "other. C splits every operation of a batch twice as big over 2 threads that must meet at its "
          "end: these matrices give each thread little work between meetings, and on a busy machine a "
          "thread waiting for a descheduled partner stalls every operation. On GPUs the all-reduce runs "
          "over NVLink with nccl and overlaps the backward pass.")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (the machine is shared: times are inflated)")


if __name__ == "__main__":
    main()
