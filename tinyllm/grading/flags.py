"""The hand-in, read before it runs: whether it can be graded at all (:func:`prepared_notebook`),
and answers that are not the learner's own (answer cells importing the package's implementation).

The first signal is behaviour: the sandbox notes every entry into the package's code while
a learner's function runs (:class:`tinyllm.grading.watch.Monitor`). This is the second: an
answer cell that imports a tinyllm module other than the course's grading helpers
(``import tinyllm.model``, ``from tinyllm import sampling``, ``__import__("tinyllm.model")``,
``importlib.import_module("tinyllm.model")`` with a literal name) is flagged for its
question. A flag costs nothing by default; the teacher decides (see book/grading.md).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from tinyllm.grading import GRADING_CELL_FIRST_LINE, SETUP_CELL_FIRST_LINE

ALLOWED_IMPORTS = ("tinyllm.grade", "tinyllm.grading")
MAX_NOTEBOOK_BYTES = 64 << 20  # a notebook with its outputs is a few MB


class NotGradable(Exception):
    """The notebook cannot be run at all (the message says why, for the learner)."""


def prepared_notebook(path: Path, assignment: str) -> tuple:
    """(the notebook as read, the JSON the sandbox runs: setup and grading cells left out)."""
    import nbformat  # here: tinyllm.grade, which every graded notebook imports, needs it not (90 ms)

    try:
        if Path(path).is_symlink():  # from a zip or tar of hand-ins: it would name a file to read
            raise NotGradable(f"{Path(path).name} is a link, not an ordinary file: hand in the saved notebook")
        if Path(path).is_file() and Path(path).stat().st_nlink > 1:  # a tar's hard link to a teacher's file
            raise NotGradable(f"{Path(path).name} is a link (a second name of another file), not an "
                              "ordinary file: hand in the saved notebook")
        if not Path(path).is_file():  # a pipe would hang the read, /dev/zero never end it
            raise NotGradable(f"{Path(path).name} is not an ordinary file: hand in the saved notebook")
        if Path(path).stat().st_size > MAX_NOTEBOOK_BYTES:
            raise NotGradable(f"{Path(path).name} is larger than {MAX_NOTEBOOK_BYTES >> 20} MB: clear its "
                              "outputs (Edit > Clear outputs of all cells), save it and hand it in again")
        text = Path(path).read_text(encoding="utf-8")
        json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise NotGradable(f"cannot read {path}: {exc}") from None
    except (ValueError, RecursionError) as exc:
        raise NotGradable(f"{Path(path).name} is not a valid notebook (not valid JSON: {exc}); "
                          "save it again from Jupyter or Colab") from None
    try:
        nb = nbformat.reads(text, as_version=4)
        if not isinstance(nb.cells, list) or not all(isinstance(c, dict) for c in nb.cells):
            raise ValueError("it has no list of cells")
        if not all(isinstance(c.get("source", ""), str) for c in nb.cells):
            raise ValueError("a cell has no source text")
    except Exception as exc:
        raise NotGradable(f"{Path(path).name} is not a valid notebook: {exc}") from None
    otter = nb.metadata.get("otter")
    claimed = otter.get("assignment_name") if isinstance(otter, dict) else None
    if isinstance(claimed, str) and claimed != assignment:
        raise NotGradable(
            f"{Path(path).name} is the notebook of exercise set {claimed[:60]!r} (its otter metadata), "
            f"but it is graded as {assignment}: hand in the notebook of {assignment}"
        )
    skip = (GRADING_CELL_FIRST_LINE, SETUP_CELL_FIRST_LINE)
    run = nbformat.reads(text, as_version=4)
    run.cells = [c for c in run.cells if not c.get("source", "").startswith(skip)]
    return nb, json.dumps(run)


def _imported_modules(code: str) -> list[str]:
    """Modules a cell imports: import statements, and __import__/import_module of a literal."""
    import ast

    try:  # IPython's own reading of a cell: `!ls`, `x = !ls`, `%time f()` become Python, indented or not
        from IPython.core.inputtransformer2 import TransformerManager

        code = TransformerManager().transform_cell(code)
    except Exception:
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):  # IPython does not run it either
        return []
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "tinyllm":  # from tinyllm import model: the submodule counts
                found += [f"tinyllm.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in ("__import__", "import_module") and isinstance(node.args[0].value, str):
                found.append(node.args[0].value)
    return found


def imports_of_tests(tests: dict[str, str]) -> list[str]:
    """The modules the tests import (absolute imports), in order: the judge imports them before any
    learner code runs. Read once per set by the grading process (each grading's judge is a new
    fork, where a cache would be lost: 20 ms a grading)."""
    return list(_imports_of_tests(tuple(tests.values())))


@functools.lru_cache(maxsize=64)
def _imports_of_tests(sources: tuple[str, ...]) -> tuple[str, ...]:
    import ast

    found: list[str] = []
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else []
            found += [name for name in names if name not in found]
    return tuple(found)


def package_modules(imports: list[str]) -> list[str]:
    """The package's modules among the tests' ``imports``: their objects come to the sandbox as
    inputs, and it imports them before any cell runs (an import while it reads a call's inputs,
    under the watch, would be an entry into the package's code)."""
    return sorted({n for n in imports if n.startswith("tinyllm") and not n.startswith("tinyllm.grad")})


def _is_package_implementation(module: str) -> bool:
    if module != "tinyllm" and not module.startswith("tinyllm."):
        return False
    return not any(module == a or module.startswith(a + ".") for a in ALLOWED_IMPORTS)


def package_imports(nb) -> list[str]:
    """The package modules a notebook's code imports (for a set's own, provided cells)."""
    found = set()
    for cell in nb.cells:
        if cell.get("cell_type") == "code":
            found.update(m for m in _imported_modules(cell.get("source", "")) if _is_package_implementation(m))
    return sorted(found)


def imported_answers(nb, provided: list[str] | tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Per question, the package modules its answer cells import (a flag, not a deduction).

    A cell belongs to the question whose ``grader.check`` comes next; ``from tinyllm import
    grade`` and the grading helpers are allowed, and so are the modules the exercise's own
    notebook imports (``provided``, e.g. ``tinyllm.model`` for the GPT set); any other tinyllm
    module is the package's own implementation of some piece.
    """
    out: dict[str, list[str]] = {}
    pending: list[str] = []
    question = None
    for cell in nb.cells:
        if cell.get("cell_type") != "code":
            continue
        code = cell.get("source", "")
        check = code.strip()
        if check.startswith('grader.check("') and check.count('"') >= 2:
            question = check.split('"')[1]
            if pending:
                out.setdefault(question, []).extend(pending)
            pending = []
            continue
        for module in _imported_modules(code):
            note = f"the answer imports {module}, the package's own implementation"
            if _is_package_implementation(module) and module not in provided and note not in pending:
                pending.append(note)
    if pending and question is not None:  # cells after the last question count for it
        out.setdefault(question, []).extend(pending)
    return out
