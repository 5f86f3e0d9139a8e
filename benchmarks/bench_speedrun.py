"""The CPU speedrun: preset ``speedrun`` against nanoGPT's CPU recipe (a benchmark, never a test).

    python benchmarks/bench_speedrun.py [--threads N]

Trains ``nanogpt-cpu`` (nanoGPT's "I only have a macbook" recipe, val loss ~1.88) and
``speedrun`` (chapter 11's pieces) one after the other in this process, on
``load_text("tinyshakespeare")`` with the char tokenizer split 90/10, exactly as
``benchmarks/bench_train.py`` measures: the final validation loss is the mean over 200
fixed batches of the validation split, the time is ``history["train_time"]`` (training
steps only, evaluation excluded). Prints both losses and times and their ratio, and
writes ``tinyllm/measurements/speedrun.json``.
Targets: speedrun val loss <= 1.88 in at most 0.25 x nanogpt-cpu's training time.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch
from _common import apply_threads, measurement_options

from tinyllm.train import PRESETS, config_from_preset, train

OUT = Path(__file__).resolve().parent.parent / "tinyllm" / "measurements" / "speedrun.json"
TARGET_LOSS, TARGET_RATIO = 1.88, 0.25


def run(preset: str) -> dict:
    cfg = config_from_preset(preset, dataset="tinyshakespeare", eval_interval=0, eval_iters=200,
                             verbose=False)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    history = train(cfg)
    return {"preset": preset, "val_loss": round(history["val_loss"][-1], 4),
            "train_loss": round(history["train_loss"][-1], 4), "train_time": round(history["train_time"], 2),
            "wall": round(time.perf_counter() - t0, 1), "steps": cfg.max_iters, "batch": cfg.batch_size,
            "dtype": cfg.dtype, "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    measurement_options(parser, OUT)
    args = parser.parse_args()
    apply_threads(args)
    os.environ.setdefault("TINYLLM_DATA", "/work/shared/data")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.1f}")
    results = []
    for preset in ("nanogpt-cpu", "speedrun"):
        results.append(r := run(preset))
        print(f"{r['preset']:12} {r['steps']:>5} steps x batch {r['batch']:>3} ({r['dtype']:8}): "
              f"val loss {r['val_loss']:.4f} (train {r['train_loss']:.4f}), "
              f"training time {r['train_time']:.1f} s "
              f"(wall with evaluation {r['wall']:.1f} s), load average {r['load_average']}", flush=True)
    base, fast = results
    ratio = fast["train_time"] / base["train_time"]
    print(f"time ratio speedrun / nanogpt-cpu: {ratio:.3f} (target <= {TARGET_RATIO}): "
          f"{'ok' if ratio <= TARGET_RATIO else 'MISSED'}")
    print(f"speedrun val loss {fast['val_loss']:.4f} (target <= {TARGET_LOSS}): "
          f"{'ok' if fast['val_loss'] <= TARGET_LOSS else 'MISSED'}")
    meta = {
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "load_average": [base["load_average"][0], fast["load_average"][1]],
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "speedrun_preset": PRESETS["speedrun"], "note": args.note,
        "targets": {"val_loss": TARGET_LOSS, "ratio": TARGET_RATIO},
    }
    data = {"meta": meta, "runs": results, "ratio": round(ratio, 4)}
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
