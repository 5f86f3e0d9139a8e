""""Run all" on an untouched exercise notebook runs to the end, so its last cell grades it.

A learner who opens an exercise set and runs every cell before writing anything must reach
the grading cell: an example line under a blank answer (``...`` returns ``None``) must not
raise. Each learner notebook is executed top to bottom in one fresh kernel, in a copy of
its own (otter writes a log beside the notebook). The grading cell runs with
``TINYLLM_GRADING=1``, the switch a graded run sets, so it returns at once: grading the
untouched notebook itself is tests/test_exercises.py
(``test_untouched_learner_notebook_fails_every_hidden_test``).
"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from teaching.build import LEARNER_DIR, sources
from tinyllm.grade import GRADING_CELL_FIRST_LINE, GRADING_ENV

NAMES = [s.stem for s in sources()]

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", NAMES)
def test_run_all_on_the_untouched_notebook_reaches_the_grading_cell(name, tmp_path, monkeypatch):
    path = tmp_path / f"{name}.ipynb"
    shutil.copy(LEARNER_DIR / path.name, path)
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[-1].source.startswith(GRADING_CELL_FIRST_LINE)
    monkeypatch.setenv(GRADING_ENV, "1")  # the kernel inherits it
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    client = NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    try:
        client.execute()
    except CellExecutionError:
        index, error = next((i, o) for i, c in enumerate(nb.cells)
                            for o in c.get("outputs", []) if o.output_type == "error")
        pytest.fail(f"{name}: Run all stops at cell {index} on a blank answer, "
                    f"{error.ename}: {error.evalue}\n{nb.cells[index].source}")
    assert nb.cells[-1].execution_count == max(c.get("execution_count") or 0 for c in nb.cells)
