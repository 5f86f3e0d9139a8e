"""Shared pytest set-up for tests/ and the nbval run over chapters/.

The tests carry the data they need: the canonical tinyshakespeare travels with them,
compressed, in tests/data/tinyshakespeare.txt.xz (364 KB for 1,115,394 bytes), so a fresh
clone with nothing beside it passes.
"""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
TINYSHAKESPEARE_XZ = ROOT / "tests" / "data" / "tinyshakespeare.txt.xz"

# Tests and notebook kernels must never reach the network for model files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Idle OpenMP threads sleep instead of spinning. Set before torch loads, here and in the
# notebook kernels (they inherit the environment; scripts/run_notebook.py sets it too):
# spinning threads burn processor time while they wait, which on a busy machine inflated
# the chapters' timings about 20 times and their run times many times over.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# PyTorch on one thread, here and in the notebook kernels (scripts/run_notebook.py too): the
# course's models are so small that a second thread costs processor time and saves none.
# Under nbval on this 2-core machine, one thread and two in turns: chapters 08 and 12 took 93
# and 75 s of CPU on one thread against 111 and 95 s on two (wall 93 and 76 s against 106 and
# 90); chapters 08 and 05, 52 and 51 s of CPU against 59 and 54 (wall 52 and 51 against 57 and
# 53). Tests that compare thread counts set their own; torchrun's workers get one thread anyway.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Each grading draws the hidden tests' random inputs anew (tinyllm/grade.py, grading_seed);
# the suite grades with one fixed seed, so its verdicts repeat. Another seed checks that the
# hidden tests hold for any draw: TINYLLM_GRADING_SEED=7 pytest tests/test_exercises.py
os.environ.setdefault("TINYLLM_GRADING_SEED", "20261203")


@pytest.fixture(scope="session")
def tinyshakespeare_bytes() -> bytes:
    """The canonical tinyshakespeare file, as the tests carry it (checked by tests/test_data.py)."""
    return lzma.decompress(TINYSHAKESPEARE_XZ.read_bytes())


@pytest.fixture(scope="session")
def tinyshakespeare_folder(tmp_path_factory, tinyshakespeare_bytes) -> Path:
    """A folder holding ``tinyshakespeare.txt``, as ``TINYLLM_DATA`` expects it."""
    folder = tmp_path_factory.mktemp("data")
    (folder / "tinyshakespeare.txt").write_bytes(tinyshakespeare_bytes)
    return folder


@pytest.fixture
def root() -> Path:
    return ROOT


# ---------------------------------------------------------------------------------------
# The intro promises that every chapter runs in under 90 s (book/intro.md). nbval reports
# one item per cell; their durations, summed per notebook, are the chapter's run time in
# a fresh kernel (its start included). The run fails when a chapter exceeds the budget.
# ---------------------------------------------------------------------------------------

CHAPTER_BUDGET_SECONDS = 90.0
_notebook_seconds: dict[str, float] = {}


def pytest_addoption(parser):
    parser.addoption(
        "--chapter-budget", type=float, default=CHAPTER_BUDGET_SECONDS,
        help="seconds a notebook may take under nbval before the run fails "
        f"(default {CHAPTER_BUDGET_SECONDS:.0f}, the intro's promise)",
    )


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] = _notebook_seconds.get(path, 0.0) + report.duration


def notebooks_over_budget(seconds: dict[str, float], budget: float) -> dict[str, float]:
    """The notebooks whose run time exceeds the budget, with their times."""
    return {path: s for path, s in seconds.items() if s > budget}


def pytest_sessionfinish(session, exitstatus):
    over = notebooks_over_budget(_notebook_seconds, session.config.getoption("chapter_budget"))
    if over and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, config):
    if not _notebook_seconds:
        return
    budget = config.getoption("chapter_budget")
    terminalreporter.section("chapter run times (nbval, fresh kernel)")
    for path, seconds in sorted(_notebook_seconds.items()):
        flag = "" if seconds <= budget else f"  OVER the {budget:.0f} s budget"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
    over = notebooks_over_budget(_notebook_seconds, budget)
    if over:
        terminalreporter.write_line(
            f"FAILED: {len(over)} notebook(s) ran longer than {budget:.0f} s, "
            "the run time the intro promises", red=True, bold=True,
        )


# ---------------------------------------------------------------------------------------
# The built book, shared: tests/test_book.py checks the build and its HTML, and
# tests/test_book_in_browser.py loads its pages; one build serves the whole session, also
# when the two files run in two pytest-xdist processes (make test): the first to ask builds
# the book, under a lock, and the other reads it (a build costs 20 s of CPU).
# ---------------------------------------------------------------------------------------


class BookBuild:
    """One strict ``jupyter-book build`` of the repository into a folder, or the one already there."""

    def __init__(self, folder: Path):
        import json
        import subprocess
        import sys

        self.html = folder / "_build" / "html"
        done = folder / "build.json"  # written last: the build is whole once it exists
        if done.is_file():
            result = json.loads(done.read_text())
        else:
            jupyter_book = Path(sys.executable).parent / "jupyter-book"
            command = [str(jupyter_book), "build", str(ROOT), "-W", "-n", "--keep-going",
                       "--path-output", str(folder)]
            run = subprocess.run(command, capture_output=True, text=True, timeout=900)
            result = {"returncode": run.returncode, "log": run.stdout[-6000:] + run.stderr[-6000:]}
            done.write_text(json.dumps(result))
        self.returncode, self.log = result["returncode"], result["log"]

    def pages(self) -> list[Path]:
        """Every HTML page of the book (not the theme's or the sources' files)."""
        skip = {"_static", "_sources", "_images"}
        return sorted(p for p in self.html.rglob("*.html") if not skip & set(p.relative_to(self.html).parts))


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> BookBuild:
    """The book built once for the session; a failed build fails every test that uses it."""
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the session's folder, above each worker's own
        from filelock import FileLock

        shared = tmp_path_factory.getbasetemp().parent
        with FileLock(shared / "book.lock"):
            (shared / "book").mkdir(exist_ok=True)
            build = BookBuild(shared / "book")
    else:
        build = BookBuild(tmp_path_factory.mktemp("book"))
    assert build.returncode == 0, f"strict book build failed:\n{build.log}"
    return build
