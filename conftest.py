"""Shared pytest set-up for tests/ and the nbval run over chapters/.

The canonical tinyshakespeare copy for tests lies in ../shared/data.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Tests and notebook kernels must never reach the network for model files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def shared_data() -> Path:
    """The folder that holds the canonical tinyshakespeare.txt for tests."""
    path = SHARED_DATA / "tinyshakespeare.txt"
    if not path.exists():
        pytest.fail(f"the test copy of tinyshakespeare is missing: expected {path}")
    return SHARED_DATA


@pytest.fixture
def root() -> Path:
    return ROOT


# ---------------------------------------------------------------------------------------
# A per-chapter run-time table at the end of the run (nbval reports one item per cell).
# Budgets are reported, never enforced as failures: times vary with machine load.
# ---------------------------------------------------------------------------------------

CHAPTER_BUDGET_SECONDS = 90
_notebook_seconds: dict[str, float] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if path.endswith(".ipynb"):
        _notebook_seconds[path] = _notebook_seconds.get(path, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    if not _notebook_seconds:
        return
    terminalreporter.section("chapter run times (nbval, fresh kernel)")
    for path, seconds in sorted(_notebook_seconds.items()):
        flag = "" if seconds <= CHAPTER_BUDGET_SECONDS else f"  over the {CHAPTER_BUDGET_SECONDS} s budget"
        terminalreporter.write_line(f"{seconds:7.1f} s  {path}{flag}")
