"""Shared test fixtures. The canonical tinyshakespeare copy for tests lies in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"

# Notebook kernels and matplotlib must never try to open a window or reach the network.
os.environ.setdefault("MPLBACKEND", "Agg")
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
