"""Measurements the benchmarks made, shipped as package data (so Colab has them too).

- ``ablation.json``, written by ``benchmarks/bench_ablation.py``: GPT-2's architecture (the
  ``cpu`` preset) and each of chapter 11's changes alone, then the best combination, each
  trained for the same wall-clock budget with several seeds.
- ``speedrun.json``, written by ``benchmarks/bench_speedrun.py``: the ``speedrun`` preset
  against nanoGPT's CPU recipe, measured in one process.
- ``chat_scaling.json``, written by ``benchmarks/bench_chat_scaling.py``: chat models of
  several shapes and training lengths on the ``chat-cpu`` data, each scored per category.
- ``chat_before.json``, written by ``benchmarks/bench_chat_eval.py``: the assistant shipped
  before the data of 60 topics and careless wordings, scored on today's evaluations, as
  written and in capitals.

``load(name)`` reads one; ``ablation_table(data)`` summarises the ablation per configuration
(mean and spread over seeds); ``check_ablation(data)`` raises ``ValueError`` on a malformed
file. Timings depend on the machine and its load: each file says where and how it was made.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

HERE = Path(__file__).resolve().parent
NAMES = ("ablation", "speedrun", "chat_scaling", "chat_before")
# What every run of the ablation records, with the type of each entry.
RUN_FIELDS = {"config": str, "switches": dict, "seed": int, "steps": int, "train_seconds": (int, float),
              "val_loss": (int, float)}
META_FIELDS = ("machine", "torch", "threads", "parallel", "load_average", "budget_seconds", "date")


def load(name: str) -> dict:
    """The measurement ``name`` (one of :data:`NAMES`) as a dict."""
    if name not in NAMES:
        raise ValueError(f"unknown measurement {name!r}; known: {', '.join(NAMES)}")
    return json.loads((HERE / f"{name}.json").read_text(encoding="utf-8"))


def check_ablation(data) -> None:
    """Raise ``ValueError`` naming the first problem of an ablation dict: missing metadata,
    a run without its fields or with wrong types, a loss that is not a finite number, one
    configuration with two sets of switches, or a seed run twice."""
    shaped = isinstance(data, dict) and isinstance(data.get("meta"), dict)
    if not (shaped and isinstance(data.get("runs"), list)):
        raise ValueError("an ablation must be a dict with a 'meta' dict and a 'runs' list")
    missing = [k for k in META_FIELDS if k not in data["meta"]]
    if missing:
        raise ValueError(f"the ablation's meta lacks {missing}")
    if not data["runs"]:
        raise ValueError("the ablation has no runs")
    switches, seeds = {}, {}
    for i, run in enumerate(data["runs"]):
        if not isinstance(run, dict):
            raise ValueError(f"run {i} is a {type(run).__name__}, not a dict")
        for key, kind in RUN_FIELDS.items():
            if key not in run:
                raise ValueError(f"run {i} lacks {key!r}")
            if isinstance(run[key], bool) or not isinstance(run[key], kind):
                raise ValueError(f"run {i}: {key} must be {kind}, got {run[key]!r}")
        if not math.isfinite(run["val_loss"]) or run["val_loss"] <= 0:
            raise ValueError(f"run {i}: val_loss must be a positive finite number, got {run['val_loss']!r}")
        if run["steps"] < 1 or not run["train_seconds"] > 0:
            raise ValueError(f"run {i}: steps and train_seconds must be positive, got {run['steps']}, "
                             f"{run['train_seconds']}")
        name = run["config"]
        if switches.setdefault(name, run["switches"]) != run["switches"]:
            raise ValueError(f"configuration {name!r} appears with two sets of switches")
        if run["seed"] in seeds.setdefault(name, set()):
            raise ValueError(f"configuration {name!r} has seed {run['seed']} twice")
        seeds[name].add(run["seed"])


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))  # sample std


def ablation_table(data: dict) -> list[dict]:
    """One row per configuration, in the file's order: ``name``, ``switches``, ``seeds``
    (how many), ``steps`` (mean), ``val_loss_mean``, ``val_loss_std`` (sample standard
    deviation over seeds), ``train_seconds`` (mean)."""
    check_ablation(data)
    groups: dict[str, list[dict]] = {}
    for run in data["runs"]:
        groups.setdefault(run["config"], []).append(run)
    rows = []
    for name, runs in groups.items():
        mean, std = _mean_std([r["val_loss"] for r in runs])
        rows.append({
            "name": name,
            "switches": runs[0]["switches"],
            "seeds": len(runs),
            "steps": sum(r["steps"] for r in runs) / len(runs),
            "val_loss_mean": mean,
            "val_loss_std": std,
            "train_seconds": sum(r["train_seconds"] for r in runs) / len(runs),
        })
    return rows
