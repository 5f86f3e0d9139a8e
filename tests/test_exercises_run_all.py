""""Run all" on an untouched exercise notebook runs to the end, so its last cell grades it.

A learner who opens an exercise set and runs every cell before writing anything must reach
the grading cell: an example line under a blank answer (``...`` returns ``None``) must not
raise. Every learner notebook runs top to bottom, each in a folder of its own (otter writes
a log beside the notebook). They run one after the other in one kernel, which forgets each
notebook before the next (``%reset -f``, its folder, torch's and matplotlib's global
settings put back): one kernel start instead of fourteen. The grading cell runs with
``TINYLLM_GRADING=1``, the switch a graded run sets, so it returns at once: grading the
untouched notebook itself is tests/test_exercises.py
(``test_untouched_learner_notebook_fails_every_hidden_test``).
"""

from __future__ import annotations

import os
import shutil

import nbformat
import pytest
from nbclient import NotebookClient

from teaching.build import LEARNER_DIR, sources
from tinyllm.grade import GRADING_CELL_FIRST_LINE, GRADING_ENV

NAMES = [s.stem for s in sources()]
FORGET = """%reset -f
import os as _os, sys as _sys
_os.chdir({folder!r})
if "torch" in _sys.modules:
    _sys.modules["torch"].set_default_dtype(_sys.modules["torch"].float32)
    _sys.modules["torch"].set_grad_enabled(True)
if "matplotlib.pyplot" in _sys.modules:
    _sys.modules["matplotlib.pyplot"].close("all")
del _os, _sys"""

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[str, list]:
    """Each set's cells as run, after a cell that makes the kernel forget the set before."""
    combined, sections = nbformat.v4.new_notebook(), {}
    for name in NAMES:
        folder = tmp_path_factory.mktemp(name)
        shutil.copy(LEARNER_DIR / f"{name}.ipynb", folder)
        nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
        combined.cells.append(nbformat.v4.new_code_cell(FORGET.format(folder=str(folder))))
        start = len(combined.cells)
        combined.cells += nb.cells
        sections[name] = (start, len(combined.cells))
    # After the last set, the kernel forgets it too: none of its names is left.
    combined.cells.append(nbformat.v4.new_code_cell(FORGET.format(folder=str(folder))))
    combined.cells.append(nbformat.v4.new_code_cell(
        f"left = [n for n in {sorted(_defined(nb))!r} if n in globals()]\nassert not left, left"))
    combined.metadata = nb.metadata
    client = NotebookClient(combined, timeout=120, kernel_name="python3", allow_errors=True)
    # The kernel inherits the switch of a graded run, and one thread is plenty for the examples.
    client.execute(env={**os.environ, GRADING_ENV: "1", "OMP_NUM_THREADS": "1"})
    forgotten = [o for o in combined.cells[-1].outputs if o.output_type == "error"]
    assert not forgotten, f"the kernel kept names of the set before: {forgotten[0].evalue}"
    return {name: combined.cells[start:end] for name, (start, end) in sections.items()}


def _defined(nb) -> set[str]:
    """Names the notebook's code assigns or defines at its top level (the grader, the answers)."""
    import ast

    names = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            python = [line for line in cell.source.splitlines() if not line.lstrip().startswith(("%", "!"))]
            tree = ast.parse("\n".join(python))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Assign):
                names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names


@pytest.mark.parametrize("name", NAMES)
def test_run_all_on_the_untouched_notebook_reaches_the_grading_cell(name, ran):
    cells = ran[name]
    assert cells[-1].source.startswith(GRADING_CELL_FIRST_LINE)
    for index, cell in enumerate(cells):
        error = next((o for o in cell.get("outputs", []) if o.output_type == "error"), None)
        if error is not None:
            pytest.fail(f"{name}: Run all stops at cell {index} on a blank answer, "
                        f"{error.ename}: {error.evalue}\n{cell.source}")
    code = [c for c in cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{name}: a cell did not run"
    assert code[-1].execution_count == max(c.execution_count for c in code)
