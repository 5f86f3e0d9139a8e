"""Grade exercise notebooks locally, without Docker: ``python -m tinyllm.grade``.

::

    python -m tinyllm.grade exercises/05_attention.ipynb        # one notebook: a table + JSON
    python -m tinyllm.grade submissions/ --csv grades.csv       # a folder: one CSV row each

For each notebook the grader finds its instructor source (by the assignment name otter
stored in the notebook, else by the file name), builds the autograder archive once
(cached in ``_build/grading``), and runs ``otter run`` on a copy of the notebook in a
separate process. The copy starts with :mod:`tinyllm.grading.guard`, which limits each
cell's time and printed output; the whole run has a time limit too. A broken submission
(a cell that raises, a syntax error, an endless loop, ``sys.exit()``, a flood of output,
a blank ``...``, a renamed function, a file that is not a notebook) is graded, never
crashes the command: what it broke scores 0 with a message, the rest is graded as usual.

In a notebook, :func:`otter_notebook` makes otter's ``grader`` (``grader.check("q1")``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

CELL_SECONDS = 30.0  # per cell (a learner's cell or one question's tests)
NOTEBOOK_SECONDS = 240.0  # for the whole notebook, kernel start included
MAX_OUTPUT_CHARS = 20_000  # printed per cell


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


# ---------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------


@dataclass
class QuestionResult:
    name: str
    score: float
    possible: float
    public_passed: bool
    hidden_passed: bool
    message: str = ""  # the first failing test's message, empty when all passed
    cases: list[dict] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.public_passed and self.hidden_passed


@dataclass
class Report:
    notebook: str
    assignment: str | None
    questions: list[QuestionResult]
    error: str | None = None  # set when the notebook could not be graded at all
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return sum(q.score for q in self.questions)

    @property
    def possible(self) -> float:
        return sum(q.possible for q in self.questions)

    def question(self, name: str) -> QuestionResult:
        return next(q for q in self.questions if q.name == name)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, possible=self.possible)
        return data

    def table(self) -> str:
        """A per-question table: question, points, passed/failed, first failing message."""
        rows = [("question", "points", "result", "first failing message")]
        for q in self.questions:
            if not q.cases:
                result = "not graded"
            elif q.passed:
                result = "passed"
            else:
                result = "failed (public)" if not q.public_passed else "failed (hidden)"
            rows.append((q.name, f"{q.score:g} / {q.possible:g}", result, q.message))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows]
        lines.insert(1, "-" * max(len(line) for line in lines))
        lines.append(f"total: {self.score:g} / {self.possible:g}")
        if self.error:
            lines.append(f"note: {self.error}")
        return "\n".join(lines)


def first_line_of_failure(message: str) -> str:
    """The learner-facing sentence of an otter failure message (not the test's code)."""
    lines = [line for line in message.splitlines() if line.strip()]
    # Otter's message: "❌ Test case failed", "Error at line N in test q1:", the test's
    # line of code (indented), then "ExceptionType: what went wrong".
    for line in reversed(lines):
        if not line.startswith(" "):
            text = line.strip()
            return text.removeprefix("AssertionError: ")
    return message.strip()


# ---------------------------------------------------------------------------------------
# Grading
# ---------------------------------------------------------------------------------------


class GradingError(Exception):
    """The notebook could not be graded at all (the message says why, for the learner)."""


def find_source(notebook: Path, source_dir: Path | None = None) -> Path:
    """The instructor source of a learner notebook: by otter's assignment name, else file name."""
    from tinyllm.grading.build import SOURCE_DIR

    source_dir = Path(source_dir or SOURCE_DIR)
    names = []
    try:
        meta = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})
        if isinstance(meta.get("otter", {}).get("assignment_name"), str):
            names.append(meta["otter"]["assignment_name"])
    except (OSError, ValueError, AttributeError):
        pass
    names.append(Path(notebook).stem)
    for name in names:
        candidate = source_dir / f"{name}.ipynb"
        if candidate.is_file():
            return candidate
    known = ", ".join(p.stem for p in sorted(source_dir.glob("*.ipynb"))) or "none"
    raise GradingError(
        f"cannot tell which exercise set {Path(notebook).name} is: its name matches no source in "
        f"{source_dir} (known: {known}); keep the exercise's file name or pass --source"
    )


def questions_of(autograder: Path) -> list[QuestionResult]:
    """Every question of an autograder archive, scored 0 (for notebooks that cannot run)."""
    import zipfile

    from otter.nbmeta_config import NBMetadataConfig
    from otter.test_files import create_test_file

    out = []
    with tempfile.TemporaryDirectory() as tmp, zipfile.ZipFile(autograder) as zf:
        zf.extractall(tmp)
        for path in sorted(Path(tmp, "tests").glob("*.py")):
            test_file = create_test_file(str(path), NBMetadataConfig())
            out.append(QuestionResult(test_file.name, 0.0, float(test_file.possible), False, False))
    return out


def _prepare(notebook: Path, dest: Path, cell_seconds: float, max_output_chars: int) -> None:
    """Copy ``notebook`` to ``dest`` with the guard as first cell; raise GradingError if unreadable."""
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
        if not isinstance(cells, list):
            raise ValueError("it has no list of cells")
    except Exception as exc:
        raise GradingError(f"{Path(notebook).name} is not a valid notebook: {exc}") from None
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


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the grading process and everything in its process group (POSIX)."""
    try:
        if hasattr(os, "killpg"):
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # Windows: no process groups; the kernel notices its parent is gone
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


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
) -> Report:
    """Grade one notebook; never raises for a bad submission (see ``Report.error``)."""
    from tinyllm.grading.build import BUILD_DIR, autograder_zip

    start = time.perf_counter()
    notebook = Path(notebook)
    try:
        source = Path(source) if source else find_source(notebook, source_dir)
    except GradingError as exc:
        report = Report(str(notebook), None, [], error=str(exc))
        return _finish(report, start, results_json)
    zip_path = autograder_zip(source, Path(build_dir or BUILD_DIR))
    assignment = source.stem
    blank = questions_of(zip_path)

    def failed(message: str) -> Report:
        for q in blank:
            q.message = message
        return Report(str(notebook), assignment, blank, error=message)

    with tempfile.TemporaryDirectory(prefix="tinyllm-grade-") as tmp:
        # otter grades the notebook under its own name; the source's name keeps it simple.
        prepared = Path(tmp) / f"{assignment}.ipynb"
        try:
            _prepare(notebook, prepared, cell_seconds, max_output_chars)
        except GradingError as exc:
            return _finish(failed(str(exc)), start, results_json)
        out = Path(tmp) / "results.json"
        proc = subprocess.Popen(
            [sys.executable, "-m", "tinyllm.grading.runner", str(zip_path), str(prepared), str(out)],
            cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,  # its own process group: the kernel dies with it
            env={**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"},
        )
        try:
            log, _ = proc.communicate(timeout=notebook_seconds)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            return _finish(
                failed(f"grading stopped after {notebook_seconds:g} s: the notebook runs too long"),
                start, results_json,
            )
        _kill_group(proc)  # a kernel left behind by a crash
        if proc.returncode != 0 or not out.is_file():
            tail = (log or "").strip().splitlines()[-3:]
            reason = " / ".join(tail) or f"exit code {proc.returncode}"
            if "DeadKernelError" in (log or "") or "Kernel died" in (log or ""):
                reason = "the notebook's kernel died (did a cell end the process, e.g. os._exit?)"
            return _finish(failed(f"the notebook could not be graded: {reason}"), start, results_json)
        data = json.loads(out.read_text(encoding="utf-8"))

    if data.get("error"):
        return _finish(failed(f"the notebook could not be graded: {data['error']}"), start, results_json)
    by_name = {q["name"]: q for q in data["questions"]}
    questions = []
    for q in blank:
        got = by_name.get(q.name)
        if got is None:
            q.message = "this question's tests did not run"
            questions.append(q)
            continue
        cases = got["cases"]
        failing = [c for c in cases if not c["passed"]]
        questions.append(
            QuestionResult(
                q.name, got["score"], got["possible"],
                public_passed=all(c["passed"] for c in cases if not c["hidden"]),
                hidden_passed=all(c["passed"] for c in cases if c["hidden"]),
                message=first_line_of_failure(failing[0]["message"]) if failing else "",
                cases=cases,
            )
        )
    return _finish(Report(str(notebook), assignment, questions), start, results_json)


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
        writer.writerow(["notebook", "assignment", "score", "possible", *names, "error"])
        for r in reports:
            scores = {q.name: f"{q.score:g}" for q in r.questions}
            writer.writerow(
                [Path(r.notebook).name, r.assignment or "", f"{r.score:g}", f"{r.possible:g}",
                 *(scores.get(n, "") for n in names), r.error or ""]
            )
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyllm.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a learner notebook, or a folder of submissions")
    parser.add_argument("--json", help="where to write the results JSON (default _build/grading/results/NAME.json)")
    parser.add_argument("--csv", help="the CSV file to write when grading a folder (default FOLDER/grades.csv)")
    parser.add_argument("--source", help="the instructor source to grade against (default: found by name)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (a folder)")
    parser.add_argument("--cell-seconds", type=float, default=CELL_SECONDS, help="time limit per cell")
    parser.add_argument("--notebook-seconds", type=float, default=NOTEBOOK_SECONDS, help="time limit per notebook")
    args = parser.parse_args(argv)
    limits = dict(cell_seconds=args.cell_seconds, notebook_seconds=args.notebook_seconds, source=args.source)
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
    if args.json:
        results_json = Path(args.json)
    else:
        from tinyllm.grading.build import BUILD_DIR

        results_json = BUILD_DIR / "results" / f"{path.stem}.json"
        results_json.parent.mkdir(parents=True, exist_ok=True)
    report = grade(path, results_json=results_json, **limits)
    print(f"{path.name} ({report.assignment or 'unknown exercise set'}), graded in {report.seconds:g} s")
    print(report.table())
    print(f"wrote {results_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
