"""Phase 1 of grading, inside the sandbox: run the notebook, record each question's calls.

Started by :mod:`tinyllm.grade` (through :mod:`tinyllm.grading.sandbox`)::

    python -m tinyllm.grading.runner CONFIG.json

It sets its resource limits first, starts a fresh kernel with nbclient, runs the notebook's
cells top to bottom (a failing cell does not stop it; the first cell installs
:mod:`tinyllm.grading.guard`), then runs one recording cell per question
(:func:`tinyllm.grading.record.record_question`), each writing ``record/QUESTION.pt``.
Nothing it writes is trusted: the grader replays the recordings in its own process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Errors that mean a cell hit one of the grader's limits, and what to tell the learner.
LIMIT_ERRORS = [
    ("MemoryError", "", "ran out of memory (the grader's memory limit)"),
    ("", "can't allocate memory", "ran out of memory (the grader's memory limit)"),
    ("", "File too large", "wrote a file larger than the grader allows"),
    ("", "Resource temporarily unavailable", "started more processes than the grader allows"),
    ("CellTimeout", "", "ran too long (the grader's time limit per cell)"),
]


def limit_notes(cell, number: int) -> list[str]:
    """One line per output of ``cell`` that shows it hit a limit."""
    notes = []
    for output in cell.get("outputs", []):
        if output.get("output_type") != "error":
            continue
        name, value = str(output.get("ename", "")), str(output.get("evalue", ""))
        for error, text, meaning in LIMIT_ERRORS:
            if (error and name == error) or (text and text in value):
                notes.append(f"cell {number} {meaning}: {name}: {value}"[:300])
                break
    return notes


def main(argv: list[str] | None = None) -> int:
    config = json.loads(Path((argv if argv is not None else sys.argv[1:])[0]).read_text(encoding="utf-8"))
    from tinyllm.grading.sandbox import apply_limits

    apply_limits(config["limits"])

    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    work = Path(config["work"])
    status_path = work / "status.json"
    nb = nbformat.read(config["notebook"], as_version=4)
    client = NotebookClient(
        nb, kernel_name=config["kernel_name"], timeout=None, allow_errors=True, startup_timeout=120,
        resources={"metadata": {"path": str(work)}},
    )
    status = {"error": None, "recorded": [], "notes": []}
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
                    notes = limit_notes(cell, index)  # index 0 is the guard
                    if notes:  # written at once: if the watchdog stops the run, they still count
                        status["notes"] += notes
                        (work / "notes.json").write_text(json.dumps(status["notes"]), encoding="utf-8")
            tests = json.dumps(config["tests"])
            load = nbformat.v4.new_code_cell(f"import json as _json\n_tinyllm_tests = _json.loads({tests!r})")
            nb.cells.append(load)
            client.execute_cell(load, len(nb.cells) - 1)
            for question in config["tests"]:
                out = str(work / "record" / f"{question}.pt")
                cell = nbformat.v4.new_code_cell(
                    "from tinyllm.grading.record import record_question as _tinyllm_record\n"
                    f"_tinyllm_record(_tinyllm_tests, {question!r}, {out!r}, {config['cell_seconds']!r})"
                )
                nb.cells.append(cell)
                client.execute_cell(cell, len(nb.cells) - 1)
                status["recorded"].append(question)
    except DeadKernelError:
        status["error"] = "the notebook's kernel died (did a cell end the process, e.g. os._exit?)"
    except Exception as exc:  # nbclient's own failures: report, never a traceback
        status["error"] = f"the notebook could not be run: {type(exc).__name__}: {exc}"[:500]
    status_path.write_text(json.dumps(status), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
