"""A set's solutions and its packaged tests, run in this process (repository tooling).

Grading runs the notebook in a sandbox and calls it through a channel, one grading at a
time; a question about the tests themselves ("does the reference pass every draw?", "what
does a table of the answers hold?") needs thousands of test runs, so here the solutions run
once in an IPython shell of this process and the tests call them directly, each with the
salt a grading would draw (``checks.SEED_SALT``). Used by ``scripts/audit_references.py``
and ``scripts/answer_table.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import random
import sys

import torch
from otter.test_files.exception_test import ExceptionTestFile

from teaching.build import ASSIGNMENTS_DIR, solutions_notebook, sources
from tinyllm.grading import GRADING_ENV, checks, flags, judge


def packaged_tests(name: str) -> dict[str, ExceptionTestFile]:
    """Every question's tests as the package ships them (what ``exercises/build.py`` wrote)."""
    data = json.loads((ASSIGNMENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return judge.compile_tests(data["tests"])


def solutions_namespace(name: str) -> dict:
    """The names the set's solutions define, from running its solutions notebook's cells here
    (as the sandbox runs them: setup and grading cells left out, the grading cell inert)."""
    from IPython.core.interactiveshell import InteractiveShell

    source = next(s for s in sources() if s.stem == name)
    _, notebook_json = flags.prepared_notebook(solutions_notebook(source), name)
    # Set while the cells run, as in the sandbox (the grading cell does nothing then), and put back
    # after: in a test run, a later test's grade_this() must grade.
    was = os.environ.get(GRADING_ENV)
    os.environ[GRADING_ENV] = "1"
    main_module = sys.modules["__main__"]  # the shell takes its place; the grader's forkserver needs it
    shell = InteractiveShell.instance()
    shell.user_ns.clear()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            for cell in json.loads(notebook_json)["cells"]:
                if cell["cell_type"] == "code":
                    result = shell.run_cell("".join(cell["source"]), store_history=False, silent=True)
                    if result.error_in_exec is not None:
                        raise RuntimeError(f"{name}: a solution cell failed: {result.error_in_exec!r}")
    finally:
        sys.modules["__main__"] = main_module
        if was is None:
            del os.environ[GRADING_ENV]
        else:
            os.environ[GRADING_ENV] = was
    return dict(shell.user_ns)


def parameter_names(test_files: dict[str, ExceptionTestFile]) -> list[str]:
    """The names the tests take from the notebook (otter passes them by parameter name)."""
    return sorted({p for t in test_files.values() for tc in t.test_cases
                   for p in inspect.signature(tc.body.test_func).parameters})


def run_case(case, namespace: dict, salt: int) -> Exception | None:
    """One test case against ``namespace`` with the inputs of the grading salt ``salt``, seeded as
    the grader seeds it (:func:`tinyllm.grading.judge.run_question`); its failure, or None."""
    checks.SEED_SALT = salt
    torch.manual_seed(judge.SEED)
    random.seed(judge.SEED)
    torch.set_grad_enabled(True)
    try:
        case.body.call_func({p: namespace.get(p) for p in inspect.signature(case.body.test_func).parameters})
    except Exception as exc:  # a failing test: an AssertionError, or a test's own bug
        return exc
    finally:
        checks.SEED_SALT = 0
    return None
