"""The intro's promise about run time: every chapter runs in under 90 seconds.

Two checks. The committed chapters: their execution metadata (written by
scripts/run_notebook.py) records when each cell started and finished; summed, that is
the run the reader sees, progress bars included. The live run: conftest.py sums nbval's
per-cell durations for each notebook and fails the session when one exceeds the budget;
a small notebook run under a tiny budget proves that it does.
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
INTRO = ROOT / "book" / "intro.md"


def intro_budget_seconds() -> float:
    """The number of seconds the intro promises, read from its text."""
    found = re.search(r"in under (\d+) seconds", INTRO.read_text(encoding="utf-8"))
    assert found, "the intro no longer states a chapter run time"
    return float(found.group(1))


def committed_seconds(path: Path) -> float:
    """Summed cell times of the committed run, from each cell's execution metadata."""
    total = 0.0
    for cell in nbformat.read(path, as_version=4).cells:
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "shell.execute_reply" in timing:
            start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
            end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
            total += (end - start).total_seconds()
    return total


def test_the_nbval_budget_is_the_intros_promise():
    from conftest import CHAPTER_BUDGET_SECONDS

    assert CHAPTER_BUDGET_SECONDS == intro_budget_seconds()


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_the_committed_run_kept_the_promise(path):
    seconds = committed_seconds(path)
    assert seconds > 0, f"{path.name} has no execution times: run scripts/run_notebook.py"
    assert seconds <= intro_budget_seconds(), (
        f"{path.name}: its committed cells took {seconds:.0f} s, "
        f"over the intro's {intro_budget_seconds():.0f} s"
    )


pytest_plugins = ["pytester"]

SLEEPY_NOTEBOOK = nbformat.v4.new_notebook(
    cells=[nbformat.v4.new_code_cell("import time\ntime.sleep(1.5)")],
    metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
)


@pytest.mark.parametrize("budget, code", [(1.0, 1), (120.0, 0)])
def test_a_notebook_over_the_budget_fails_the_run(pytester, budget, code):
    pytester.makeconftest((ROOT / "conftest.py").read_text(encoding="utf-8"))
    nbformat.write(SLEEPY_NOTEBOOK, pytester.path / "sleepy.ipynb")
    result = pytester.runpytest_subprocess(
        "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
        f"--chapter-budget={budget}", "sleepy.ipynb",
    )
    result.stdout.fnmatch_lines(["*chapter run times*", "*sleepy.ipynb*"])
    assert result.ret == code, result.stdout.str()
    over = "OVER the" in result.stdout.str()
    assert over == (code == 1)
