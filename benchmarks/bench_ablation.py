"""What each of chapter 11's pieces buys, in about the same training time (a benchmark, never a test).

    python benchmarks/bench_ablation.py --budget 30 --seeds 3 --parallel 2

(about 11 minutes on an idle 2-core machine: 10 configurations x 3 seeds, two at a time,
30 s of training plus about 10 s of start-up and evaluation each.)

Trains the ``cpu`` preset's GPT-2 architecture (the baseline), each change alone, and the
best combination on tinyshakespeare (char tokenizer, 90/10 split). Every configuration
is given about the same training time: its step time is first measured with a few steps
(``--calib_steps``, all configurations under the same conditions), then
``max_iters = budget / step time`` so that the warmup and cosine schedule fit the budget.
That timing is noisy: in the committed runs the baseline got about a fifth more steps than
RMSNorm or no bias (chapter 11 reads the table with its steps column).
Each configuration is trained with ``--seeds`` seeds; ``--parallel`` trainings run at a
time, each with ``--threads`` threads (default 1). The final validation loss is the mean
over ``--eval_iters`` fixed batches of the validation split.

Writes ``tinyllm/measurements/ablation.json`` (or ``--out``): per run the configuration's
name, its switches, seed, steps, training seconds and final validation loss, and the
conditions (machine, torch version, threads, load average, budget, date).
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tinyllm" / "measurements" / "ablation.json"

# Each change alone, on top of the cpu preset's GPT-2 architecture, then all that helped.
CONFIGS: dict[str, dict] = {
    "baseline": {},
    "rmsnorm": {"norm": "rmsnorm"},
    "rope": {"pos": "rope"},
    "swiglu": {"mlp": "swiglu"},
    "relu2": {"mlp": "relu2"},
    "gqa": {"n_kv_head": 2},
    "qk_norm": {"qk_norm": True},
    "no_bias": {"bias": False},
    "muon": {"optimizer": "muon", "muon_lr": 0.03},
    # the speedrun preset's pieces
    "best": {"norm": "rmsnorm", "pos": "rope", "bias": False, "optimizer": "muon", "muon_lr": 0.03},
}


def _setup(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("TINYLLM_DATA", "/work/shared/data")


def _config(switches: dict, **overrides):
    from tinyllm.train import config_from_preset

    return config_from_preset("cpu", dataset="tinyshakespeare", eval_interval=0, verbose=False,
                              **switches, **overrides)


def calibrate(job: tuple) -> float:
    """Seconds per training step of one configuration (after 3 warm-up steps)."""
    name, switches, steps, threads = job
    _setup(threads)
    from tinyllm.train import train

    warm = train(_config(switches, max_iters=3, eval_iters=1))["train_time"]
    total = train(_config(switches, max_iters=3 + steps, eval_iters=1))["train_time"]
    return max(total - warm, 1e-6) / steps


def run(job: tuple) -> dict:
    name, switches, seed, max_iters, eval_iters, threads = job
    _setup(threads)
    from tinyllm.train import train

    warmup = max(1, min(50, max_iters // 10))  # the cpu preset's 50, fewer for short budgets
    cfg = _config(switches, seed=seed, max_iters=max_iters, warmup_iters=warmup, eval_iters=eval_iters)
    history = train(cfg)
    return {"config": name, "switches": switches, "seed": seed, "steps": max_iters,
            "train_seconds": round(history["train_time"], 2), "val_loss": round(history["val_loss"][-1], 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget", type=float, default=30.0, help="training seconds per run")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--parallel", type=int, default=2, help="trainings at a time")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--calib_steps", type=int, default=40, help="steps timed per configuration")
    parser.add_argument("--eval_iters", type=int, default=200)
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    parser.add_argument("--note", default="", help="a remark stored in the file's metadata")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    names = args.configs.split(",")
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configurations {unknown}; known: {', '.join(CONFIGS)}")
    import torch

    start, load_start = time.perf_counter(), os.getloadavg()
    print(f"torch {torch.__version__}, {args.parallel} x {args.threads} threads, budget {args.budget} s, "
          f"load average {load_start[0]:.1f}", flush=True)
    context = multiprocessing.get_context("spawn")
    with context.Pool(args.parallel, maxtasksperchild=1) as pool:
        step_times = pool.map(calibrate, [(n, CONFIGS[n], args.calib_steps, args.threads) for n in names])
        max_iters = {n: max(10, int(args.budget / t)) for n, t in zip(names, step_times)}
        for n, t in zip(names, step_times):
            print(f"{n:10} {1000 * t:6.1f} ms/step -> {max_iters[n]} steps", flush=True)
        jobs = [(n, CONFIGS[n], seed, max_iters[n], args.eval_iters, args.threads)
                for seed in range(args.seeds) for n in names]
        runs = []
        for r in pool.imap(run, jobs):
            runs.append(r)
            print(f"{r['config']:10} seed {r['seed']}: {r['steps']:5} steps, {r['train_seconds']:6.1f} s, "
                  f"val loss {r['val_loss']:.4f}", flush=True)
    order = {n: i for i, n in enumerate(names)}
    runs.sort(key=lambda r: (order[r["config"]], r["seed"]))
    meta = {
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}, {os.cpu_count()} CPUs",
        "torch": torch.__version__, "threads": args.threads, "parallel": args.parallel,
        "load_average": [round(x, 2) for x in (load_start[0], os.getloadavg()[0])],
        "budget_seconds": args.budget, "seeds": args.seeds, "eval_iters": args.eval_iters,
        "calib_ms_per_step": {n: round(1000 * t, 1) for n, t in zip(names, step_times)},
        "preset": "cpu", "dataset": "tinyshakespeare (char tokenizer, 90/10 split)",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.perf_counter() - start, 1), "note": args.note,
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "runs": runs}, indent=1) + "\n", encoding="utf-8")

    from tinyllm.measurements import ablation_table, load

    data = load("ablation") if Path(args.out) == OUT else json.loads(Path(args.out).read_text())
    for row in ablation_table(data):
        print(f"{row['name']:10} {row['steps']:7.0f} steps  val loss {row['val_loss_mean']:.4f} "
              f"+- {row['val_loss_std']:.4f} ({row['seeds']} seeds)")
    print(f"wrote {args.out} in {meta['wall_seconds']:.0f} s; load average now {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
