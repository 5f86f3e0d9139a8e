"""Grade one prepared notebook with ``otter run`` and write the results as JSON.

Run as a separate process by :mod:`tinyllm.grade` (which can kill it and its kernel)::

    python -m tinyllm.grading.runner AUTOGRADER.zip NOTEBOOK.ipynb RESULTS.json

The JSON holds every test case, public and hidden, with its points and message, which is
more than otter's own Gradescope-style ``results.json`` shows for hidden tests.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile


def results_to_dict(results) -> dict:
    """Otter's ``GradingResults`` as plain data: questions -> test cases."""
    error = results.catastrophic_error
    questions = []
    for name in sorted(results.results):
        test_file = results.results[name]
        cases = [
            {
                "name": r.test_case.name,
                "hidden": bool(r.test_case.hidden),
                "points": float(r.test_case.points or 0),
                "passed": bool(r.passed),
                "message": r.message or "",
            }
            for r in test_file.test_case_results
        ]
        questions.append(
            {"name": name, "score": float(test_file.score), "possible": float(test_file.possible), "cases": cases}
        )
    return {"questions": questions, "error": None if error is None else f"{type(error).__name__}: {error}"}


def main(argv: list[str] | None = None) -> int:
    autograder, notebook, out = (argv if argv is not None else sys.argv[1:])
    import otter.run

    log = io.StringIO()
    with tempfile.TemporaryDirectory() as results_dir, contextlib.redirect_stdout(log):
        results = otter.run.main(notebook, autograder=autograder, output_dir=results_dir, no_logo=True)
    data = results_to_dict(results)
    data["log"] = log.getvalue()[-5000:]
    with open(out, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
