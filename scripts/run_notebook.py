"""Execute notebooks in place, top to bottom, each in a fresh kernel, as the book commits them.

    python scripts/run_notebook.py chapters/02_bigram_model.ipynb [more.ipynb ...]

Before running, the first cell is set to the course's Colab setup cell (generated from
_config.yml). Prints each notebook's wall time and the kernel's peak memory, and fails
if a cell raises. Widget state is stored so the book can render widgets statically.
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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tinyllm.course import colab_setup_source  # noqa: E402


def ensure_setup_cell(nb) -> None:
    source = colab_setup_source()
    first_code = next((c for c in nb.cells if c.cell_type == "code"), None)
    if first_code is not None and first_code.source.startswith("# Colab setup"):
        first_code.source = source
    else:
        index = 1 if nb.cells and nb.cells[0].cell_type == "markdown" else 0
        nb.cells.insert(index, nbformat.v4.new_code_cell(source))


def run(path: Path, timeout: int) -> float:
    nb = nbformat.read(path, as_version=4)
    ensure_setup_cell(nb)
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--timeout", type=int, default=600, help="seconds allowed per cell")
    args = parser.parse_args()
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    for path in args.notebooks:
        seconds = run(path, args.timeout)
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"{path}: {seconds:.1f} s, peak kernel memory so far {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
