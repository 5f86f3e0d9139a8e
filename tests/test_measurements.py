"""The committed measurements (tinyllm/measurements/*.json) are well-formed and summarised right."""

from __future__ import annotations

import copy
import math

import pytest

from tinyllm.measurements import NAMES, ablation_table, check_ablation, load


def _runs(losses: dict[str, list[float]]) -> dict:
    runs = [{"config": name, "switches": {"norm": "rmsnorm"} if name != "baseline" else {}, "seed": seed,
             "steps": 100 + seed, "train_seconds": 10.0 + seed, "val_loss": loss}
            for name, values in losses.items() for seed, loss in enumerate(values)]
    meta = {"machine": "x", "torch": "2", "threads": 1, "parallel": 2, "load_average": [0.1, 0.2],
            "budget_seconds": 10, "date": "2026-01-01"}
    return {"meta": meta, "runs": runs}


def test_committed_ablation_is_well_formed_with_every_configuration_and_three_seeds():
    data = load("ablation")
    check_ablation(data)
    rows = ablation_table(data)
    names = [row["name"] for row in rows]
    assert names[0] == "baseline" and "best" in names
    for piece in ("rmsnorm", "rope", "swiglu", "relu2", "gqa", "qk_norm", "no_bias", "muon"):
        assert piece in names
    assert all(row["seeds"] >= 3 for row in rows)
    assert all(1.0 < row["val_loss_mean"] < 4.5 for row in rows)  # char-level losses, ln 65 = 4.17
    assert data["meta"]["budget_seconds"] > 0


def test_committed_speedrun_names_both_presets_and_its_ratio():
    data = load("speedrun")
    runs = {r["preset"]: r for r in data["runs"]}
    assert set(runs) == {"nanogpt-cpu", "speedrun"}
    ratio = runs["speedrun"]["train_time"] / runs["nanogpt-cpu"]["train_time"]
    assert data["ratio"] == pytest.approx(ratio, abs=1e-3)
    assert all(math.isfinite(r["val_loss"]) for r in runs.values())
    for key in ("machine", "torch", "threads", "load_average", "date"):
        assert key in data["meta"]


def test_ablation_table_means_and_sample_standard_deviations():
    rows = ablation_table(_runs({"baseline": [2.0, 2.2, 2.4], "rmsnorm": [1.9, 1.9, 1.9]}))
    assert [r["name"] for r in rows] == ["baseline", "rmsnorm"]
    assert rows[0]["val_loss_mean"] == pytest.approx(2.2)
    assert rows[0]["val_loss_std"] == pytest.approx(0.2)  # sample std (n - 1)
    assert rows[1]["val_loss_std"] == pytest.approx(0.0, abs=1e-12)
    assert rows[0]["seeds"] == 3 and rows[0]["steps"] == pytest.approx(101)
    assert rows[0]["train_seconds"] == 11.0
    assert rows[1]["switches"] == {"norm": "rmsnorm"}


def _broken(change) -> dict:
    data = _runs({"baseline": [2.0, 2.1], "rmsnorm": [1.9, 2.0]})
    data = copy.deepcopy(data)
    change(data)
    return data


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("meta"), "'meta' dict"),
    (lambda d: d["meta"].pop("budget_seconds"), "lacks \\['budget_seconds'\\]"),
    (lambda d: d["runs"].clear(), "no runs"),
    (lambda d: d["runs"][1].pop("val_loss"), "run 1 lacks 'val_loss'"),
    (lambda d: d["runs"][0].update(val_loss=float("nan")), "finite"),
    (lambda d: d["runs"][0].update(steps="100"), "steps must be"),
    (lambda d: d["runs"][0].update(seed=True), "seed must be"),
    (lambda d: d["runs"][3].update(switches={"pos": "rope"}), "'rmsnorm' appears with two sets of switches"),
    (lambda d: d["runs"][1].update(seed=0), "'baseline' has seed 0 twice"),
])
def test_check_ablation_names_what_is_malformed(change, message):
    with pytest.raises(ValueError, match=message):
        check_ablation(_broken(change))


def test_load_refuses_unknown_names():
    with pytest.raises(ValueError, match="unknown measurement 'speed'; known: ablation, speedrun, chat_"):
        load("speed")
    assert NAMES == ("ablation", "speedrun", "chat_scaling", "chat_before")


def test_committed_chat_measurements_hold_pass_rates_per_category():
    scaling = load("chat_scaling")
    assert scaling["runs"] and {"machine", "threads", "settings"} <= set(scaling["meta"])
    for run in scaling["runs"]:
        assert run["params"] > 0 and run["steps"] > 0 and run["train_seconds"] > 0
        assert run["wordings"] > 0 and run["conversations"] > 0  # the data it trained on
        for category in ("seen", "unseen", "multi-turn", "hand-written", "total"):
            assert 0.0 <= run[category] <= 1.0, (run, category)
    # The figure's point for the shipped assistant is the shipped assistant's stated eval.
    from tinyllm.chat import SHIPPED_CHAT_MODEL
    from tinyllm.checkpoint import load_model

    shipped = [r for r in scaling["runs"] if r.get("checkpoint") == "tinyllm/checkpoints/chat-cpu"]
    checkpoint = load_model(SHIPPED_CHAT_MODEL)[2]
    stated = {r["category"]: r["passed"] for r in checkpoint.extra["eval"]["rows"]}
    assert len(shipped) == 1 and shipped[0]["steps"] == checkpoint.step
    for category in ("seen", "unseen"):
        assert shipped[0][category] == round(stated[category], 4), category
    before = load("chat_before")["scores"]
    assert set(before) == {"generated", "hand-written", "generated-title", "generated-upper",
                           "hand-written-upper"}
    assert all(0.0 <= s["total"] <= 1.0 for s in before.values())


def test_the_chat_figures_written_in_prose_are_the_measured_ones():
    """Chapter 12 and the shipped README's history quote the shipped run and the run it
    replaced; the figures must be those of tinyllm/measurements/chat_scaling.json."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    runs = load("chat_scaling")["runs"]
    now = next(r for r in runs if r.get("checkpoint") == "tinyllm/checkpoints/chat-cpu")
    replaced = next(r for r in runs if "shipped assistant until" in r.get("note", ""))
    before = replaced.get("today", replaced)  # scored on the cases the shipped run was scored on
    pct = lambda x: f"{round(100 * x)} %"  # noqa: E731
    cells = json.loads((root / "chapters" / "12_make_it_talk.ipynb").read_text())["cells"]
    chapter = " ".join(" ".join("".join(c["source"]).split()) for c in cells if c["cell_type"] == "markdown")
    assert (f"on today's generator: {pct(now['unseen'])} of the unseen cases and {pct(now['hand-written'])} of the "
            "hand-written messages") in chapter
    assert f"the fourth assistant passed {pct(before['unseen'])} and {pct(before['hand-written'])}" in chapter
    assert f"wordings: {now['wordings']:,})" in chapter
    notes = " ".join((root / "scripts" / "chat_cpu_notes.md").read_text().split())
    assert (f"unseen {pct(now['unseen'])} ({pct(before['unseen'])}), hand-written {pct(now['hand-written'])} "
            f"({pct(before['hand-written'])})") in notes
    assert f"({now['wordings']:,} wordings to train on)" in notes
