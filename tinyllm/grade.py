"""Grade exercise notebooks locally: ``python -m tinyllm.grade``.

::

    python -m tinyllm.grade 05_attention.ipynb                  # one notebook: a table + JSON beside it
    python -m tinyllm.grade alice.ipynb --set 05_attention      # the set, when the file name is not it
    python -m tinyllm.grade submissions/ --set 05_attention     # a folder: one CSV row each

The exercise set comes from the command line (``--set``, ``--source``) or the file's name,
never from the notebook; a notebook whose otter metadata names another set is an error.
The tests of every set ship with the package (``tinyllm/grading/assignments/``), so this
works from an installed package as from a clone; ``--source``/``--sources`` grade against
a teacher's own instructor sources instead.

Each notebook is graded by two processes (see :mod:`tinyllm.grading.judge`): the notebook
runs in a sandbox (:mod:`tinyllm.grading.sandbox`: bubblewrap where it exists) and only
answers calls of the learner's functions; the tests run in the grader's own process, which
imported all it needs before the notebook started and never runs learner code. Without
bubblewrap one's own notebook is still graded (the report says it was not isolated);
``--untrusted``, the default for a folder of several notebooks, refuses then.

A broken submission (a cell that raises, a syntax error, an endless loop, ``sys.exit()``,
a flood of output, a blank ``...``, a renamed function, a file that is not a notebook, a
runaway allocation) is graded, never crashes the command: what it broke scores 0 with a
message. Answers that use the package's own implementation are flagged.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tinyllm.files import write_atomic
from tinyllm.grading import GRADING_CELL_FIRST_LINE, GRADING_ENV, flags, sandbox, warm  # noqa: F401
from tinyllm.grading.flags import imported_answers  # noqa: F401  (part of the API)
from tinyllm.grading.results import QuestionResult, Report, first_line_of_failure, one_line  # noqa: F401
from tinyllm.grading.sandbox import Limits

JUDGE_MEMORY_BYTES = 2 * sandbox.GiB  # the grader's own process (phase 2): data memory


# ---------------------------------------------------------------------------------------
# In the learner's notebook
# ---------------------------------------------------------------------------------------


def otter_notebook(filename: str):
    """Otter's ``Notebook`` for an exercise, with its public tests, wherever it runs.

    Next to the notebook file (Jupyter, VS Code), otter reads the public tests from the
    file's metadata. In Colab the file is not on disk, so the public tests are written
    from the package's ``grading/public_tests.json`` into a folder and otter reads them there.
    While otter grades the notebook, its own hidden and public tests are used. While
    :func:`grade` runs it, ``grader.check`` does nothing: the grader's own process runs every
    test, and the notebook's process need not import otter.
    """
    if os.environ.get(GRADING_ENV):
        return _NotChecking()
    import otter

    if otter.Notebook._grading_mode or Path(filename).is_file():
        return otter.Notebook(filename)
    public = json.loads((Path(__file__).resolve().parent / "grading" / "public_tests.json").read_text("utf-8"))
    tests = public["tests"].get(Path(filename).stem)
    if tests is None:
        raise ValueError(f"no exercise set is named {Path(filename).stem!r}")
    folder = Path(tempfile.mkdtemp(prefix="tinyllm-public-tests-"))
    for question, source in tests.items():
        (folder / f"{question}.py").write_text(source, encoding="utf-8")
    notebook = otter.Notebook(tests_dir=str(folder))
    weakref.finalize(notebook, shutil.rmtree, folder, True)  # with the grader, or when the kernel stops
    return notebook


class _NotChecking:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


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
        results = Path.cwd() / f"{stem}.results.json"
        print(f"grading the notebook open in Colab ({stem}) against the hidden tests ...")
        # A temporary copy, removed once graded.
        with tempfile.TemporaryDirectory(prefix="tinyllm-colab-") as folder:
            path = Path(folder) / f"{stem}.ipynb"
            path.write_text(json.dumps(reply["ipynb"]), encoding="utf-8")
            report = grade(path, results_json=results)
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
    print(report.table())  # after everything the notebook printed (it ran elsewhere), total last
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


def assignment_of(notebook: Path, known: list[str]) -> str:
    """The set a notebook is graded as, from its file name (``05_attention``, ``05_attention-bob``)."""
    stem = Path(notebook).stem
    for name in sorted(known, key=len, reverse=True):
        if stem == name or (stem.startswith(name) and not stem[len(name)].isalnum()):
            return name
    raise GradingError(
        f"cannot tell which exercise set {Path(notebook).name} is: its name matches none this "
        f"package grades (known: {', '.join(known) or 'none'}); keep the exercise's file name "
        "or pass --set NAME"
    )


def find_tests(notebook: Path, assignment=None, source=None, source_dir=None):
    """(exercise set, its tests by question, package modules its own cells import)."""
    if source is None and source_dir is not None:
        known = sorted(p.stem for p in Path(source_dir).glob("*.ipynb"))
        source = Path(source_dir) / f"{assignment or assignment_of(notebook, known)}.ipynb"
        if not source.is_file():
            raise GradingError(f"{source_dir} has no source of {source.stem} (known: {', '.join(known) or 'none'})")
    if source is not None:
        from tinyllm.grading.assign import source_tests

        data = source_tests(Path(source))
        return Path(source).stem, data["tests"], data["provided_imports"]
    known = known_assignments()
    name = assignment or assignment_of(notebook, known)
    if name not in known:
        raise GradingError(f"no exercise set is named {name!r} (known: {', '.join(known)})")
    data = json.loads((ASSIGNMENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return name, data["tests"], data.get("provided_imports", [])


# What the packaged tests import besides torch and otter (a test checks the list is whole).
# torch._dynamo: a torch.optim optimizer's first step imports it (800 modules, about 1 s of
# CPU), which set 08's tests would otherwise pay at every grading.
WARM_MODULES = ["tinyllm.grading.judge", "tinyllm.model", "tinyllm.sampling", "tinyllm.tokenizer", "tinyllm.chat_data",
                "tinyllm.tokenizer.hf_json", "torch._dynamo"]


_STARTING = threading.Lock()


def _judges():
    """The processes that judge, forked from Python's forkserver: one warm process that
    imported torch, otter and what the tests import once, and never runs learner code."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(WARM_MODULES)
    # Started as `python -c`, which puts the current folder first on its path: a csv.py among the hand-ins would
    # be imported (PYTHONSAFEPATH). Its OpenMP threads wait without spinning, as the sandbox's do: two judges at
    # a time otherwise keep both cores busy between their operations.
    started = {"PYTHONSAFEPATH": "1", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}
    with _STARTING:
        saved = {name: os.environ.get(name) for name in started}
        os.environ.update(started)
        try:
            forkserver.ensure_running()
        finally:
            for name, value in saved.items():
                if value is None:
                    del os.environ[name]
                else:
                    os.environ[name] = value
    return context


def _run_judge(config: dict, reply, warm_process) -> None:  # in the forked judge
    from tinyllm.grading.judge import judge_child

    if warm_process is not None:  # the socket to the warm process the notebook's is forked from
        warm.use(warm_process)
    judge_child(config, reply)


def _judge(config: dict, seconds: float) -> tuple[dict | None, list[dict], str]:
    """Run one judge: (its report, or None; every question at 0 points, once it sent them; why)."""
    context = _judges()
    reader, writer = context.Pipe(duplex=False)
    warm_process = warm.connection() if config["isolated"] else None
    process = context.Process(target=_run_judge, args=(config, writer, warm_process), daemon=True)
    process.start()
    writer.close()
    deadline = time.monotonic() + seconds
    blank: list[dict] = []
    try:
        while True:
            if not reader.poll(max(0.0, deadline - time.monotonic())):  # out of time: end the judge
                return None, blank, f"the grader stopped after {seconds:g} s"  # (its sandbox dies with it)
            kind, data = reader.recv()
            if kind != "blank":
                break
            blank = data
    except EOFError:
        process.join(5)
        main = sys.modules.get("__main__")
        script = getattr(main, "__spec__", None) is None and getattr(main, "__file__", None)
        hint = (f"; from a script ({Path(script).name}), call grade() under if __name__ == \"__main__\": "
                "each grading process imports the script again") if script else ""
        return None, blank, f"the grader itself failed: it ended without a report (exit code {process.exitcode}){hint}"
    finally:
        process.kill()
        process.join()
        reader.close()
    return (data, blank, "") if kind == "report" else (None, blank, f"the grader itself failed: {data}")


def grade(
    notebook: Path | str,
    *,
    assignment: str | None = None,
    source: Path | str | None = None,
    source_dir: Path | str | None = None,
    results_json: Path | str | None = None,
    limits: Limits | None = None,
    untrusted: bool = False,
    isolate: bool = True,
) -> Report:
    """Grade one notebook; never raises for a bad submission (see ``Report.error``).

    ``assignment`` names the set (default: from the file name); ``source`` (an instructor
    source) or ``source_dir`` (a folder of them) grade against a teacher's own tests.
    ``untrusted`` refuses to run without the sandbox; ``limits`` are the notebook's (time too).
    ``isolate=False`` grades one's own notebook without the sandbox even where there is one:
    its process is forked from the grader's, and it can read all the grader can (no faster now
    that the sandboxed process is forked from a warm one too: about 1 s of CPU each way for set
    05's solutions).
    From a script, call it under ``if __name__ == "__main__":``: the grading process comes
    from Python's forkserver, which imports the script again, as ``multiprocessing`` does.
    """
    start = time.perf_counter()
    notebook = Path(notebook)
    try:
        name, tests, provided = find_tests(notebook, assignment, source, source_dir)
        seed = grading_seed()
        isolated = isolate and sandbox.bwrap() is not None
        if isolate and not isolated and os.environ.get(sandbox.REQUIRE_ENV) == "1":
            raise GradingError(f"{sandbox.REQUIRE_ENV}=1 but bubblewrap cannot run here: {sandbox.REFUSED}")
        if not isolated and untrusted:
            raise GradingError(sandbox.REFUSED)
    except GradingError as exc:
        return _finish(Report(str(notebook), None, [], error=str(exc)), start, results_json)
    limits = limits or Limits()
    config = {"notebook": str(notebook.absolute()), "assignment": name, "tests": tests, "provided": provided,
              "imports": flags.imports_of_tests(tests),
              "limits": vars(limits), "isolated": isolated, "seed": seed,
              "notes": [] if isolated else [sandbox.NOT_ISOLATED if isolate else sandbox.NOT_ISOLATED_AS_ASKED]}
    seconds = limits.seconds + len(tests) * 6 * (limits.cell_seconds + 5) + 120
    config["judge_limits"] = [JUDGE_MEMORY_BYTES, seconds]
    try:
        data, blank, message = _judge(config, seconds)
        if data:
            report = Report.from_dict(data)
        else:  # every question still counts: 0 out of its points
            questions = [QuestionResult(**{**q, "message": message[:300]}) for q in blank]
            report = Report(str(notebook), name, questions, error=message[:500])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        report = Report(str(notebook), name, [], error=f"the grader itself failed: {exc}"[:500])
    report.seed = seed
    return _finish(report, start, results_json)


SEED_ENV = "TINYLLM_GRADING_SEED"


def grading_seed() -> int:
    """A new secret for each grading (the hidden tests ship with the package: with fixed inputs,
    a notebook could carry a table of their answers), or the one ``TINYLLM_GRADING_SEED`` names."""
    chosen = os.environ.get(SEED_ENV, "").strip()
    if chosen:
        try:
            return int(chosen) % (1 << 62)
        except ValueError:
            raise GradingError(f"{SEED_ENV} must be an integer, not {chosen[:40]!r}") from None
    return secrets.randbits(62)


def _finish(report: Report, start: float, results_json) -> Report:
    report.seconds = round(time.perf_counter() - start, 2)
    if results_json:  # a new file put in place: a link a hand-in planted at that name is replaced, not followed
        write_atomic(Path(results_json), json.dumps(report.to_dict(), indent=1).encode("utf-8"))
    return report


def grade_folder(folder: Path | str, csv_path: Path | str, jobs: int = 1, reports_dir: Path | str | None = None,
                 **kwargs) -> list[Report]:
    """Grade every ``.ipynb`` in ``folder``; write one CSV row per submission, and each one's
    results JSON (every test's message) into ``reports_dir`` if given."""
    notebooks = sorted(Path(folder).glob("*.ipynb"))
    kwargs.setdefault("untrusted", len(notebooks) > 1)
    if reports_dir is not None:
        reports_dir = Path(reports_dir)
        if reports_dir.is_symlink():  # files are written in place of links, folders must not be one either
            raise GradingError(f"{reports_dir} is a link: name a folder of its own for the reports")
        reports_dir.mkdir(parents=True, exist_ok=True)

    def one(notebook: Path) -> Report:
        results = reports_dir / f"{notebook.stem}.results.json" if reports_dir is not None else None
        return grade(notebook, results_json=results, **kwargs)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        reports = list(pool.map(one, notebooks))
    names = []
    for report in reports:
        for q in report.questions:
            if q.name not in names:
                names.append(q.name)
    table = io.StringIO()
    writer = csv.writer(table)
    writer.writerow(["notebook", "assignment", "score", "possible", *names, "flags", "error"])
    for r in reports:
        scores = {q.name: f"{q.score:g}" for q in r.questions}
        flags = "; ".join(f"{q.name}: {flag}" for q in r.questions for flag in q.flags)
        row = [Path(r.notebook).name, r.assignment or "", f"{r.score:g}", f"{r.possible:g}",
               *(scores.get(n, "") for n in names), flags, r.error or ""]
        writer.writerow([_as_text(cell) for cell in row])
    write_atomic(Path(csv_path), table.getvalue().encode("utf-8"))  # a link among the hand-ins is replaced
    return reports


def _as_text(cell: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ would run as a formula,
    and a hand-in's file name is the learner's to choose."""
    return f"'{cell}" if cell[:1] in ("=", "+", "-", "@", "\t", "\r") else cell


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyllm.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a learner notebook, or a folder of submissions")
    parser.add_argument("--set", dest="assignment", help="the exercise set (default: from the file name)")
    parser.add_argument("--json",
                        help="where to write the results JSON (default: NAME.results.json beside the notebook)")
    parser.add_argument("--csv", help="the CSV file to write when grading a folder (default FOLDER/grades.csv)")
    parser.add_argument("--reports", help="grading a folder: a folder for each notebook's results JSON, with every "
                                          "test's message (outside the hand-ins, as a teacher's own)")
    parser.add_argument("--source", help="an instructor source to grade against (default: the packaged tests)")
    parser.add_argument("--sources", help="a folder of instructor sources, matched by set name (a teacher's own tests)")
    parser.add_argument("--untrusted", action="store_true", default=None,
                        help="others' notebooks: refuse to grade without the sandbox (default for a folder of several)")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (a folder)")
    parser.add_argument("--cell-seconds", type=float, default=Limits.cell_seconds, help="time limit per cell")
    parser.add_argument("--notebook-seconds", type=float, default=Limits.seconds, help="time limit per notebook")
    args = parser.parse_args(argv)
    options = dict(limits=Limits(seconds=args.notebook_seconds, cell_seconds=args.cell_seconds),
                   source=args.source, source_dir=args.sources, assignment=args.assignment)
    if args.untrusted is not None:
        options["untrusted"] = args.untrusted
    path = Path(args.path)
    if path.is_dir():
        csv_path = Path(args.csv or path / "grades.csv")
        try:
            reports = grade_folder(path, csv_path, jobs=args.jobs, reports_dir=args.reports, **options)
        except GradingError as exc:
            print(f"error: {one_line(str(exc))}", file=sys.stderr)
            return 2
        for r in reports:  # one line each: a hand-in's name is its author's, newlines and escapes too
            print(f"{one_line(Path(r.notebook).name)}: {r.score:g} / {r.possible:g}"
                  + (f"  ({one_line(r.error)})" if r.error else ""))
        also = f" and {len(reports)} reports in {one_line(args.reports, 1000)}" if args.reports else ""
        print(f"wrote {one_line(str(csv_path), 1000)}{also}")
        return 1 if any(r.error == sandbox.REFUSED for r in reports) else 0
    if not path.exists():
        print(f"error: {path} does not exist", file=sys.stderr)
        return 2
    results_json = Path(args.json) if args.json else path.with_name(f"{path.stem}.results.json")
    report = grade(path, results_json=results_json, **options)
    if report.error == sandbox.REFUSED:
        print(f"error: {one_line(report.error)}", file=sys.stderr)
        return 1
    print(f"wrote {one_line(str(results_json), 1000)}")
    print(report.table())  # last: after everything else, the total as the very last line
    return 0


if __name__ == "__main__":
    sys.exit(main())
