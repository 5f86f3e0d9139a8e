"""Execute notebooks in place, top to bottom, each in a fresh kernel, as the book commits them.

    python scripts/run_notebook.py chapters/02_bigram_model.ipynb [more.ipynb ...]

Before running, the first code cell is set to the course's Colab setup cell (generated from
_config.yml, tagged to be left out of the book) and links between pages are made absolute,
as scripts/sync_notebooks.py does. The kernel runs with OMP_WAIT_POLICY=PASSIVE and
OMP_NUM_THREADS=1, as under pytest (conftest.py), so that the committed timings mean what the
chapters say. Prints each notebook's wall time and the kernel's peak memory, and fails if a
cell raises. Widget state is stored so the book can render widgets statically.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from scripts.sync_notebooks import sync  # noqa: E402
from teaching.course import apply_setup_cell, setup_kind  # noqa: E402


def prepare(nb, path: Path) -> None:
    """The setup cell (inserted if missing: the run renumbers the cells anyway) and links."""
    page = path.resolve().relative_to(ROOT).as_posix()
    apply_setup_cell(nb, setup_kind(page), insert=True)
    sync(nb, page)


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    prepare(nb, path)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    start = time.perf_counter()
    client = NotebookClient(
        nb, timeout=timeout, kernel_name="python3", store_widget_state=True,
        coalesce_streams=True,  # one box per stream of a cell, however the kernel flushed it
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()
    seconds = time.perf_counter() - start
    nb.metadata.pop("widgets", None) if not _has_widgets(nb) else None
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return seconds


def _has_widgets(nb) -> bool:
    return any(
        "application/vnd.jupyter.widget-view+json" in out.get("data", {})
        for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    # The kernel inherits this environment. Idle OpenMP threads sleep instead of spinning:
    # spinning threads burn processor time while they wait, which on a busy machine
    # inflates every timing and stretches a chapter's run many times over.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # One thread for PyTorch, as under pytest (conftest.py says why, with the figures).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    for path in args.notebooks:
        seconds = run(path, args.timeout)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{path}: {seconds:.1f} s, peak kernel memory so far {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
