"""Answers that are not the learner's own: answer cells importing the package's implementation.

The first signal is behaviour: the sandbox notes every entry into the package's code while
a learner's function runs (:class:`tinyllm.grading.watch.Monitor`). This is the second: an
answer cell that imports a tinyllm module other than the course's grading helpers
(``import tinyllm.model``, ``from tinyllm import sampling``, ``__import__("tinyllm.model")``,
``importlib.import_module("tinyllm.model")`` with a literal name) is flagged for its
question. A flag costs nothing by default; the teacher decides (see book/grading.md).
"""

from __future__ import annotations

ALLOWED_IMPORTS = ("tinyllm.grade", "tinyllm.grading")


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
