"""Quality and speed of the training presets on tinyshakespeare (a benchmark, never a test).

    TINYLLM_DATA=/work/shared/data python benchmarks/bench_train.py [--threads N]

Trains nanoGPT's CPU recipe (preset ``nanogpt-cpu``: 4 layers, 128 channels, block 64,
batch 12, 2000 steps, lr 1e-3; nanoGPT reports val loss ~1.88) and the package's default
``cpu`` preset, one after the other in this process, on ``load_text("tinyshakespeare")``
split 90/10 like nanoGPT. Prints each final validation loss (200 fixed batches) and the
training wall-clock time (evaluation excluded), and the ratio of the two times.
Targets: nanogpt-cpu <= 1.89; cpu <= 1.88 in at most half nanogpt-cpu's time.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from tinyllm.train import config_from_preset, train


def run(preset: str, **overrides) -> dict:
    cfg = config_from_preset(preset, dataset="tinyshakespeare", eval_interval=0, eval_iters=200, verbose=False,
                             **overrides)
    t0 = time.perf_counter()
    history = train(cfg)
    wall = time.perf_counter() - t0
    return {"preset": preset, "val_loss": history["val_loss"][-1], "train_loss": history["train_loss"][-1],
            "train_time": history["train_time"], "wall": wall, "steps": cfg.max_iters, "batch": cfg.batch_size,
            "dtype": cfg.dtype}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("TINYLLM_DATA", "/work/shared/data")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f}")
    results = []
    for preset in ("nanogpt-cpu", "cpu"):
        results.append(r := run(preset))
        print(f"{r['preset']:12} {r['steps']:>5} steps x batch {r['batch']:>3} ({r['dtype']:8}): "
              f"val loss {r['val_loss']:.4f} (train {r['train_loss']:.4f}), "
              f"training time {r['train_time']:.1f} s (wall with evaluation {r['wall']:.1f} s)", flush=True)
    base, fast = results
    ratio = fast["train_time"] / base["train_time"]
    print(f"time ratio cpu / nanogpt-cpu: {ratio:.2f} (target <= 0.50)")
    verdict = "ok" if base["val_loss"] <= 1.89 else "MISSED"
    print(f"nanogpt-cpu val loss {base['val_loss']:.4f} (target <= 1.89): {verdict}")
    print(f"cpu val loss {fast['val_loss']:.4f} (target <= 1.88): {'ok' if fast['val_loss'] <= 1.88 else 'MISSED'}; "
          f"speed: {'ok' if ratio <= 0.5 else 'MISSED'}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
