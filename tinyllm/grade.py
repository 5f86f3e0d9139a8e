"""Grade exercise notebooks locally, without Docker: ``python -m tinyllm.grade``.

::

    python -m tinyllm.grade 05_attention.ipynb               # one notebook: a table + JSON beside it
    python -m tinyllm.grade submissions/ --csv grades.csv    # a folder: one CSV row each

The tests of every exercise set ship with the package (``tinyllm/grading/assignments/``),
so this works from an installed package as from a clone; ``--source``/``--sources`` grade
against a teacher's own instructor sources instead. Each notebook is graded in two phases
(see :mod:`tinyllm.grading.record`): its cells and the tests' calls of the learner's
functions run in a sandboxed child process (:mod:`tinyllm.grading.sandbox`: time, memory,
disk and process limits, a fresh working folder); the recorded results are then judged by
the tests here, in a process the notebook never touched. A broken submission (a cell that
raises, a syntax error, an endless loop, ``sys.exit()``, a flood of output, a blank
``...``, a renamed function, a file that is not a notebook, a runaway allocation) is
graded, never crashes the command: what it broke scores 0 with a message.

Answer cells that import the package's own implementation of a piece are flagged.
In a notebook, :func:`otter_notebook` makes otter's ``grader`` (``grader.check("q1")``) and
:func:`grade_this` (the last cell of every exercise) grades the notebook it is in.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tinyllm.grading.flags import imported_answers  # noqa: F401  (part of the API)
from tinyllm.grading.results import QuestionResult, Report, first_line_of_failure  # noqa: F401
from tinyllm.grading.sandbox import Limits

CELL_SECONDS = 30.0  # per cell (a learner's cell or one question's tests)
NOTEBOOK_SECONDS = 240.0  # for the whole notebook, kernel start included
MAX_OUTPUT_CHARS = 20_000  # printed per cell
GRADING_CELL_FIRST_LINE = "# Grade this notebook against the hidden tests"
GRADING_ENV = "TINYLLM_GRADING"  # set inside a graded run: the grading cell does nothing there
KERNEL_NAME = "tinyllm-grading"


# ---------------------------------------------------------------------------------------
# In the learner's notebook
# ---------------------------------------------------------------------------------------


def otter_notebook(filename: str):
    """Otter's ``Notebook`` for an exercise, with its public tests, wherever it runs.

    Next to the notebook file (Jupyter, VS Code), otter reads the public tests from the
    file's metadata. In Colab the file is not on disk, so the public tests are written
    from :mod:`tinyllm.grading.public_tests` into a folder and otter reads them there.
    While otter grades the notebook, its own hidden and public tests are used.
    """
    import otter

    if otter.Notebook._grading_mode or Path(filename).is_file():
        return otter.Notebook(filename)
    from tinyllm.grading.public_tests import PUBLIC_TESTS

    tests = PUBLIC_TESTS.get(Path(filename).stem)
    if tests is None:
        raise ValueError(f"no exercise set is named {Path(filename).stem!r}")
    folder = Path(tempfile.mkdtemp(prefix="tinyllm-public-tests-"))
    for question, source in tests.items():
        (folder / f"{question}.py").write_text(source, encoding="utf-8")
    return otter.Notebook(tests_dir=str(folder))


def grade_this(filename: str) -> Report | None:
    """Grade this notebook against the hidden tests and print the per-question table.

    The last cell of every exercise notebook calls it. In Colab the notebook is not a file
    on disk: its current contents come from Colab's ``get_ipynb`` request. Elsewhere the
    saved file ``filename`` next to the kernel is graded (save the notebook first). The
    results JSON is written beside the notebook (in Colab, in the working folder).
    """
    if os.environ.get(GRADING_ENV):
        return None  # this notebook is being graded: do not grade it again inside itself
    stem = Path(filename).stem
    if "google.colab" in sys.modules:
        from google.colab import _message  # Colab's documented way to read the open notebook

        reply = _message.blocking_request("get_ipynb", request="", timeout_sec=120)
        if not isinstance(reply, dict) or not isinstance(reply.get("ipynb"), dict):
            raise RuntimeError("Colab did not give the notebook's contents; run this cell again")
        folder = Path(tempfile.mkdtemp(prefix="tinyllm-colab-"))
        path = folder / f"{stem}.ipynb"
        path.write_text(json.dumps(reply["ipynb"]), encoding="utf-8")
        results = Path.cwd() / f"{stem}.results.json"
        print(f"grading the notebook open in Colab ({stem}) against the hidden tests ...")
    else:
        path = Path(filename)
        if not path.is_file():
            raise FileNotFoundError(
                f"{filename} is not in {Path.cwd()}: keep the exercise's file name, or run "
                f"python -m tinyllm.grade PATH/TO/{filename}"
            )
        results = path.with_name(f"{stem}.results.json")
        print(f"grading the saved file {path.name} against the hidden tests (save it first) ...")
    report = grade(path, results_json=results)
    print(report.table())
    print(f"wrote {results}")
    return report


# ---------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------


class GradingError(Exception):
    """The notebook could not be graded at all (the message says why, for the learner)."""


ASSIGNMENTS_DIR = Path(__file__).resolve().parent / "grading" / "assignments"


def known_assignments(folder: Path = ASSIGNMENTS_DIR) -> list[str]:
    """The exercise sets this package can grade (their tests are package data)."""
    return sorted(p.stem for p in Path(folder).glob("[0-9][0-9]_*.json"))


def assignment_name(notebook: Path) -> list[str]:
    """The names a notebook may belong to: otter's assignment name, then its file name."""
    names = []
    try:
        meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})
        if isinstance(meta.get("otter", {}).get("assignment_name"), str):
            names.append(meta["otter"]["assignment_name"])
    except (OSError, ValueError, AttributeError):
        pass
    names.append(Path(notebook).stem)
    return names


def find_source(notebook: Path, source_dir: Path | str) -> Path:
    """A teacher's instructor source of a learner notebook, in ``source_dir``."""
    source_dir = Path(source_dir)
    for name in assignment_name(notebook):
        candidate = source_dir / f"{name}.ipynb"
        if candidate.is_file():
            return candidate
    known = ", ".join(p.stem for p in sorted(source_dir.glob("*.ipynb"))) or "none"
    raise GradingError(
        f"cannot tell which exercise set {Path(notebook).name} is: its name matches no source in "
        f"{source_dir} (known: {known}); keep the exercise's file name or pass --source"
    )


def assignment_data(source: Path, build_dir: Path | str | None = None) -> str:
    """What the package ships for a set (its tests, ...), made from a teacher's own source."""
    from tinyllm.grading import build

    return build.assignment_data(Path(source), build.build(Path(source), Path(build_dir or build.BUILD_DIR)))


def find_tests(notebook: Path, source=None, source_dir=None, build_dir=None) -> tuple[str, dict, list[str]]:
    """(exercise set, its tests by question, package modules its own cells import).

    GradingError if the notebook's set is unknown.
    """
    if source is None and source_dir is not None:
        source = find_source(notebook, source_dir)
    if source is not None:
        data = json.loads(assignment_data(Path(source), build_dir))
        return Path(source).stem, data["tests"], data["provided_imports"]
    known = known_assignments()
    for name in assignment_name(notebook):
        if name in known:
            data = json.loads((ASSIGNMENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
            return name, data["tests"], data.get("provided_imports", [])
    raise GradingError(
        f"cannot tell which exercise set {Path(notebook).name} is: its name matches none this "
        f"package grades (known: {', '.join(known) or 'none'}); keep the exercise's file name"
    )


def questions_of(tests: dict[str, str]) -> list[QuestionResult]:
    """Every question of an exercise set, scored 0 (for notebooks that cannot run)."""
    from otter.test_files.exception_test import ExceptionTestFile

    out = []
    for question, source in sorted(tests.items()):
        test_file = ExceptionTestFile.from_string(source, path=f"{question}.py")
        out.append(QuestionResult(test_file.name, 0.0, float(test_file.possible), False, False))
    return out


def _prepare(notebook: Path, dest: Path, cell_seconds: float, max_output_chars: int) -> Any:
    """Copy ``notebook`` to ``dest`` with the guard as first cell; raise GradingError if unreadable.

    Returns the notebook as read (before the guard), for the import scan.
    """
    import nbformat

    try:
        text = Path(notebook).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GradingError(f"cannot read {notebook}: {exc}") from None
    try:
        json.loads(text)
    except ValueError as exc:
        raise GradingError(
            f"{Path(notebook).name} is not a valid notebook (not valid JSON: {exc}); "
            "save it again from Jupyter or Colab"
        ) from None
    try:
        nb = nbformat.reads(text, as_version=4)
        cells = nb.cells
        if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
            raise ValueError("it has no list of cells")
        for cell in cells:
            if not isinstance(cell.get("source", ""), str):
                raise ValueError("a cell has no source text")
    except Exception as exc:
        raise GradingError(f"{Path(notebook).name} is not a valid notebook: {exc}") from None
    original = copy.deepcopy(nb)
    # The grading cell would grade the notebook again inside its own grading, and the Colab
    # setup cell would install the package again: both are left out.
    from tinyllm.course import SETUP_CELL_FIRST_LINE

    skip = (GRADING_CELL_FIRST_LINE, SETUP_CELL_FIRST_LINE)
    nb.cells = [c for c in nb.cells if not c.get("source", "").startswith(skip)]
    guard = nbformat.v4.new_code_cell(
        "from tinyllm.grading.guard import install as _install_guard\n"
        f"_install_guard(cell_seconds={cell_seconds!r}, max_output_chars={max_output_chars!r})"
    )
    nb.cells.insert(0, guard)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"graded-{i}"  # ids may be missing or repeated in hand-edited files
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
    try:
        nbformat.write(nb, dest)
    except Exception as exc:
        raise GradingError(f"{Path(notebook).name} is not a valid notebook: {exc}") from None
    return original


_REPLAY_LOCK = threading.Lock()  # replays seed torch's global generator: one at a time


def replay(tests: dict[str, str], record_dir: Path, missing: str) -> dict[str, QuestionResult]:
    """Phase 2, here, in the grader's process: each question's tests on the recorded calls."""
    from tinyllm.grading.record import Replayer, load_recording, run_tests

    out = {}
    with _REPLAY_LOCK:
        torch_state, python_state = torch_rng_state()
        try:
            for question, source in sorted(tests.items()):
                recording = load_recording(record_dir / f"{question}.pt")
                if recording is None:
                    continue
                calls, params = recording
                test_file = run_tests(source, question, None, Replayer(calls, missing, params))
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
                failing = [c for c in cases if not c["passed"]]
                out[question] = QuestionResult(
                    test_file.name, float(test_file.score), float(test_file.possible),
                    public_passed=all(c["passed"] for c in cases if not c["hidden"]),
                    hidden_passed=all(c["passed"] for c in cases if c["hidden"]),
                    message=first_line_of_failure(failing[0]["message"]) if failing else "",
                    cases=cases,
                )
        finally:
            set_rng_state(torch_state, python_state)
    return out


def torch_rng_state():
    import random

    import torch

    return torch.get_rng_state(), random.getstate()


def set_rng_state(torch_state, python_state) -> None:
    import random

    import torch

    torch.set_rng_state(torch_state)
    random.setstate(python_state)


def grade(
    notebook: Path | str,
    *,
    source: Path | str | None = None,
    source_dir: Path | str | None = None,
    build_dir: Path | str | None = None,
    results_json: Path | str | None = None,
    cell_seconds: float = CELL_SECONDS,
    notebook_seconds: float = NOTEBOOK_SECONDS,
    max_output_chars: int = MAX_OUTPUT_CHARS,
    limits: Limits | None = None,
) -> Report:
    """Grade one notebook; never raises for a bad submission (see ``Report.error``).

    ``source`` (an instructor source) or ``source_dir`` (a folder of them) grade against a
    teacher's own tests; by default the tests packaged with tinyllm are used.
    """
    from tinyllm.grading import sandbox

    start = time.perf_counter()
    notebook = Path(notebook)
    try:
        assignment, tests, provided = find_tests(notebook, source, source_dir, build_dir)
    except GradingError as exc:
        return _finish(Report(str(notebook), None, [], error=str(exc)), start, results_json)
    blank = questions_of(tests)

    def failed(message: str, flags: dict | None = None) -> Report:
        for q in blank:
            q.message = message
            q.flags = (flags or {}).get(q.name, [])
        return Report(str(notebook), assignment, blank, error=message)

    limits = limits or Limits(seconds=notebook_seconds)
    work = Path(tempfile.mkdtemp(prefix="tinyllm-grade-"))
    try:
        # otter grades the notebook under its own name; the set's name keeps it simple.
        prepared = work / f"{assignment}.ipynb"
        try:
            original = _prepare(notebook, prepared, cell_seconds, max_output_chars)
        except GradingError as exc:
            return _finish(failed(str(exc)), start, results_json)
        flags = imported_answers(original, provided)
        env = sandbox.prepare(work, KERNEL_NAME, {GRADING_ENV: "1"})
        config = work / "config.json"
        config.write_text(json.dumps({
            "work": str(work), "notebook": str(prepared), "kernel_name": KERNEL_NAME,
            "tests": tests, "cell_seconds": cell_seconds,
            "limits": sandbox.child_limits(limits, sys.executable, work),
        }), encoding="utf-8")
        outcome = sandbox.run([sys.executable, "-m", "tinyllm.grading.runner", str(config)], work, env, limits)
        status = _read_status(work / "status.json")
        if not status["notes"]:
            status["notes"] = _read_status_notes(work / "notes.json")
        error = outcome.stopped or status.get("error")
        if error is None and outcome.returncode != 0:
            tail = " / ".join(outcome.log.strip().splitlines()[-3:])
            error = f"the notebook could not be graded: {tail or f'exit code {outcome.returncode}'}"
        if error is None and sandbox.read_file(work / "status.json", 1) is None:
            error = "the notebook could not be graded: the grading run ended without a result"
        if error:
            missing, not_called = error, error + " (`{name}` was not graded)"
        else:
            missing = ("the graded run made no record of this question's tests: the notebook "
                       "changed the grader or its tests, or hit a limit (graded 0)")
            not_called = ("the graded run has no record of this call of `{name}`: the notebook "
                          "changed the grader or its tests (graded 0)")
        graded = replay(tests, work / "record", not_called)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    questions = []
    for q in blank:
        q.flags = flags.get(q.name, [])
        if q.name in graded:
            graded[q.name].flags = q.flags
            questions.append(graded[q.name])
        else:
            q.message = missing
            questions.append(q)
    report = Report(str(notebook), assignment, questions, error=error, notes=status.get("notes", []))
    return _finish(report, start, results_json)


def _read_status(path: Path) -> dict:
    """The runner's status file (written by the sandbox: only its message is used)."""
    from tinyllm.grading.sandbox import read_file

    try:
        data = json.loads((read_file(path, 10_000) or b"{}").decode("utf-8", "replace"))
        error, notes = data.get("error"), data.get("notes") or []
        return {"error": str(error)[:500] if error else None, "notes": [str(n)[:300] for n in list(notes)[:10]]}
    except (OSError, ValueError, AttributeError, TypeError):
        return {"error": None, "notes": []}


def _read_status_notes(path: Path) -> list[str]:
    try:
        from tinyllm.grading.sandbox import read_file

        raw = (read_file(path, 10_000) or b"[]").decode("utf-8", "replace")
        return [str(n)[:300] for n in list(json.loads(raw))[:10]]
    except (OSError, ValueError, TypeError):
        return []


def _finish(report: Report, start: float, results_json) -> Report:
    report.seconds = round(time.perf_counter() - start, 2)
    if results_json:
        Path(results_json).write_text(json.dumps(report.to_dict(), indent=1), encoding="utf-8")
    return report


def grade_folder(folder: Path | str, csv_path: Path | str, jobs: int = 1, **kwargs) -> list[Report]:
    """Grade every ``.ipynb`` in ``folder``; write one CSV row per submission."""
    notebooks = sorted(Path(folder).glob("*.ipynb"))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        reports = list(pool.map(lambda nb: grade(nb, **kwargs), notebooks))
    names = []
    for report in reports:
        for q in report.questions:
            if q.name not in names:
                names.append(q.name)
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "assignment", "score", "possible", *names, "flags", "error"])
        for r in reports:
            scores = {q.name: f"{q.score:g}" for q in r.questions}
            flags = "; ".join(f"{q.name}: {flag}" for q in r.questions for flag in q.flags)
            writer.writerow(
                [Path(r.notebook).name, r.assignment or "", f"{r.score:g}", f"{r.possible:g}",
                 *(scores.get(n, "") for n in names), flags, r.error or ""]
            )
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyllm.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a learner notebook, or a folder of submissions")
    parser.add_argument("--json", help="where to write the results JSON (default: NAME.results.json beside the notebook)")
    parser.add_argument("--out", dest="json", help="the same as --json")
    parser.add_argument("--csv", help="the CSV file to write when grading a folder (default FOLDER/grades.csv)")
    parser.add_argument("--source", help="an instructor source to grade against (default: the packaged tests)")
    parser.add_argument("--sources", help="a folder of instructor sources, matched by name (a teacher's own tests)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (a folder)")
    parser.add_argument("--cell-seconds", type=float, default=CELL_SECONDS, help="time limit per cell")
    parser.add_argument("--notebook-seconds", type=float, default=NOTEBOOK_SECONDS, help="time limit per notebook")
    args = parser.parse_args(argv)
    limits = dict(cell_seconds=args.cell_seconds, notebook_seconds=args.notebook_seconds,
                  source=args.source, source_dir=args.sources)
    path = Path(args.path)
    if path.is_dir():
        csv_path = Path(args.csv or path / "grades.csv")
        reports = grade_folder(path, csv_path, jobs=args.jobs, **limits)
        for r in reports:
            print(f"{Path(r.notebook).name}: {r.score:g} / {r.possible:g}" + (f"  ({r.error})" if r.error else ""))
        print(f"wrote {csv_path}")
        return 0
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    results_json = Path(args.json) if args.json else path.with_name(f"{path.stem}.results.json")
    report = grade(path, results_json=results_json, **limits)
    print(f"{path.name} ({report.assignment or 'unknown exercise set'}), graded in {report.seconds:g} s")
    print(report.table())
    print(f"wrote {results_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
