"""Chapter 11 prints what the committed measurements say.

The ablation table, its verdicts and the speedrun figures in the committed chapter are
computed from ``tinyllm/measurements/ablation.json`` and ``speedrun.json``. If a benchmark
re-measures and the chapter is not executed again, the printed outputs go stale: these tests
re-run the chapter's measurement cells on the committed data and compare with what the
chapter shows, and check the figures against the files directly (not through the chapter's
own formatting code).
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import nbformat
import pytest

from tinyllm.measurements import ablation_table, load

ROOT = Path(__file__).resolve().parent.parent
CHAPTER = ROOT / "chapters" / "11_modern_pieces.ipynb"


def _code_cells():
    return [c for c in nbformat.read(CHAPTER, as_version=4).cells if c.cell_type == "code"]


def _stdout(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs
                   if o.output_type == "stream" and o.name == "stdout")


def _measurement_cells():
    """The code cells from the one that loads the ablation to the one that loads the speedrun."""
    cells = _code_cells()
    start = next(i for i, c in enumerate(cells) if 'load("ablation")' in c.source)
    stop = next(i for i, c in enumerate(cells) if 'load("speedrun")' in c.source)
    return cells[start:stop + 1]


def _cell_printing(marker: str):
    return next(c for c in _code_cells() if marker in c.source)


@pytest.fixture(scope="module")
def rerun() -> list[tuple[str, str]]:
    """(committed stdout, stdout now) of each measurement cell, run in order on today's data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    namespace: dict = {"plt": plt}  # imported by the chapter's first cell
    out = []
    for cell in _measurement_cells():
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(compile(cell.source, "<chapter 11>", "exec"), namespace)  # noqa: S102
        plt.close("all")
        out.append((_stdout(cell), buffer.getvalue()))
    return out


def test_the_measurement_cells_print_what_the_committed_data_give(rerun):
    assert len(rerun) >= 3, "the ablation table, its figure and verdicts, the speedrun figures"
    for committed, now in rerun:
        assert committed == now, (
            "chapter 11 prints measurements that differ from tinyllm/measurements today: "
            "run scripts/run_notebook.py chapters/11_modern_pieces.ipynb"
        )


def test_the_ablation_table_is_computed_from_ablation_json():
    cell = _cell_printing('load("ablation")')
    assert "ablation_table(" in cell.source, "the table must be computed by ablation_table"
    printed = _stdout(cell).splitlines()
    table = ablation_table(load("ablation"))
    body = printed[1:1 + len(table)]
    assert printed[1 + len(table)].startswith("budget: "), "one line per configuration, then the budget"
    for line, row in zip(body, table):
        fields = line.split()
        assert fields[0] == row["name"]
        assert int(fields[1]) == row["seeds"]
        assert float(fields[3]) == pytest.approx(row["val_loss_mean"], abs=5e-4)
        assert float(fields[4]) == pytest.approx(row["val_loss_std"], abs=5e-4)


def test_the_best_configuration_named_is_the_best_in_the_data():
    table = ablation_table(load("ablation"))
    best = min(table, key=lambda r: r["val_loss_mean"])
    verdicts = _stdout(_cell_printing("def verdict(")).splitlines()
    assert verdicts[-1].startswith(f"lowest loss: {best['name']} at {best['val_loss_mean']:.3f}")


def test_the_speedrun_figures_are_those_of_speedrun_json():
    data = load("speedrun")
    printed = _stdout(_cell_printing('load("speedrun")'))
    for run in data["runs"]:
        line = next(x for x in printed.splitlines() if x.startswith(run["preset"] + " "))
        fields = line.split()
        assert int(fields[1]) == run["steps"] and int(fields[2]) == run["batch"]
        assert float(fields[4]) == pytest.approx(run["val_loss"], abs=5e-5)
        assert float(fields[5]) == pytest.approx(run["train_time"], abs=0.05)
    runs = {r["preset"]: r for r in data["runs"]}
    ratio = runs["speedrun"]["train_time"] / runs["nanogpt-cpu"]["train_time"]
    assert ratio == pytest.approx(data["ratio"], abs=1e-3)  # the file's ratio is its runs' ratio
    assert f"nanogpt-cpu: {ratio:.3f}" in printed  # printed as the chapter computes it
    assert data["meta"]["date"] in printed
