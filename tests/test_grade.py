"""``python -m tinyllm.grade``: broken submissions are graded, never crash or hang it.

Each broken notebook is the solved exercise set 01 with one or more questions broken, so
the test sees both halves: what broke scores 0 with a clear message, the rest full marks.
"""

from __future__ import annotations

import csv
import errno
import gc
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from teaching.build import SOURCE_DIR, solutions_notebook
from tinyllm.grade import first_line_of_failure, grade, main
from tinyllm.grading.results import Report

SET = "01_text_to_numbers"
SOURCE = SOURCE_DIR / f"{SET}.ipynb"

pytestmark = pytest.mark.slow


def _solved() -> nbformat.NotebookNode:
    return nbformat.read(solutions_notebook(SOURCE), as_version=4)


def _with_answers(tmp_path: Path, file_name: str, answers: dict[str, str]) -> Path:
    """The solved notebook with the answer cell of some questions replaced."""
    nb = _solved()
    for question, source in answers.items():
        target = _answer_cell(nb, question)
        target.source = source
    path = tmp_path / file_name
    nbformat.write(nb, path)
    return path


def _answer_cell(nb, question: str):
    """The code cell just before ``grader.check("qN")`` in a solved notebook."""
    previous = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if cell.source.strip() == f'grader.check("{question}")':
            return previous
        previous = cell
    raise KeyError(question)


def _scores(report) -> dict[str, float]:
    return {q.name: q.score for q in report.questions}


def test_failure_message_is_the_sentence_not_the_code():
    message = (
        "❌ Test case failed\nError at line 7 in test q2:\n"
        "      checks.that(ok, 'x')\nAssertionError: `encode` gives the wrong ids"
    )
    assert first_line_of_failure(message) == "`encode` gives the wrong ids"


def test_raise_syntax_error_rename_and_exit_cost_only_their_question(tmp_path):
    path = _with_answers(tmp_path, "broken.ipynb", {
        "q1": 'raise RuntimeError("my bug")\ndef build_vocab(text):\n    return sorted(set(text))',
        "q2": "stoi = {}\ndef encode(s, stoi)\n    return [stoi[c] for c in s]",
        "q3": 'def my_decode(ids, itos):\n    return "".join(itos[i] for i in ids)',
        "q4": "import sys\nsys.exit()\n"
              "def split(data, fraction=0.9):\n    n = int(fraction * len(data))\n    return data[:n], data[n:]",
    })
    report = grade(path, assignment=SET)
    assert report.error is None
    assert _scores(report) == {"q1": 0, "q2": 0, "q3": 0, "q4": 0}
    assert "`build_vocab` is not defined" in report.question("q1").message
    assert "`encode` is not defined" in report.question("q2").message
    assert "`decode` is not defined" in report.question("q3").message
    assert "`split` is not defined" in report.question("q4").message


def test_other_questions_are_still_graded_after_a_broken_one(tmp_path):
    path = _with_answers(tmp_path, "half.ipynb", {
        "q1": "import sys\nsys.exit(1)",
        "q3": "def decode(ids, itos)\n    pass",
    })
    report = grade(path, assignment=SET)
    assert _scores(report) == {"q1": 0, "q2": 2, "q3": 0, "q4": 2}


def test_endless_loops_and_floods_of_output_are_stopped(tmp_path):
    path = _with_answers(tmp_path, "loops.ipynb", {
        # an endless loop in the cell itself
        "q1": "while True:\n    pass",
        # an endless loop inside the function that the tests call
        "q2": "stoi = {ch: i for i, ch in enumerate(sorted(set(text)))}\nitos = {i: ch for ch, i in stoi.items()}\n"
              "def encode(s, stoi):\n    while True:\n        pass",
        # correct, but prints a flood
        "q3": 'def decode(ids, itos):\n    return "".join(itos[i] for i in ids)\n'
              'for _ in range(20_000):\n    print("spam " * 20)\nprint("x" * 50_000_000)\n"y" * 10_000_000',
    })
    start = time.perf_counter()
    report = grade(path, assignment=SET, limits=Limits(cell_seconds=3))
    assert time.perf_counter() - start < 90
    assert report.error is None
    assert _scores(report) == {"q1": 0, "q2": 0, "q3": 2, "q4": 2}
    assert "too long" in report.question("q2").message


def test_a_cell_that_replaced_what_the_time_limit_calls_is_still_stopped_at_the_cells_limit(tmp_path):
    """The alarm's handler binds what it calls before any cell: looked up in serve's globals, a
    cell's replacements ran there and deferred that cell's limit, to the notebook's (120 s here)."""
    path = _with_answers(tmp_path, "loops.ipynb", {
        "q4": "import sys\n_serve = sys.modules['tinyllm.grading.serve']\n"
              "_serve._in_watch = lambda frame, *rest: True\n_serve._setitimer = lambda *args: (0.0, 0.0)\n"
              "while True:\n    pass",
    })
    start = time.perf_counter()
    report = grade(path, assignment=SET, limits=Limits(seconds=120, cell_seconds=3))
    assert time.perf_counter() - start < 90
    assert "stopped by the grader after 3 s" in " ".join(report.notes), report.notes
    assert "changed the grader's watch" in report.error  # serve's own dict changed: nothing more is graded
    assert report.score == 0


def test_a_time_limit_that_strikes_inside_the_watchs_callback_is_raised_a_moment_later():
    """Raised inside the watch's profiler callback, CPython would remove the profiler and the watch
    would note that the answer switched it off (function_mode_left_on_05 was flagged so under load):
    the handler re-arms for 10 ms there, and raises anywhere else, frames up the stack included."""
    from types import SimpleNamespace

    from tinyllm.grading import serve
    from tinyllm.grading.watch import Monitor

    armed = []
    handler = serve.alarm_handler(3, setitimer=lambda which, seconds: armed.append((which, seconds)))
    answer = SimpleNamespace(f_code=test_a_time_limit_that_strikes_inside_the_watchs_callback_is_raised_a_moment_later
                             .__code__, f_back=None)
    for callback in (Monitor._profile, Monitor._thread_profile):
        inside = SimpleNamespace(f_code=(lambda: None).__code__,
                                 f_back=SimpleNamespace(f_code=callback.__code__, f_back=answer))
        assert handler(signal.SIGALRM, inside) is None
        assert armed.pop() == (signal.ITIMER_REAL, 0.01)
    with pytest.raises(serve.CellTimeout, match="after 3 s"):
        handler(signal.SIGALRM, answer)
    assert armed == [(signal.ITIMER_REAL, serve.RETRY_SECONDS)]


def test_no_finalizer_of_the_notebook_runs_between_calls(tmp_path):
    """A call's objects (its result, inputs, function) are freed at the start of the next call,
    under its watch, and no collection runs between calls: a finalizer of the notebook's never
    runs with no profiler on. Before, the result's finalizer ran between calls (this answer
    then went wrong: 0 of 2)."""
    path = _with_answers(tmp_path, "finalizers.ipynb", {"q1": (
        "import sys, weakref\n"
        "_UNWATCHED = []\n"
        "class Vocabulary(list):  # a list that can carry a finalizer\n"
        "    pass\n"
        "def build_vocab(text):\n"
        "    if _UNWATCHED:  # a finalizer ran where nothing watched it\n"
        "        return []\n"
        "    vocab = Vocabulary(sorted(set(text)))\n"
        "    weakref.finalize(vocab, lambda: _UNWATCHED.append(1) if sys.getprofile() is None else None)\n"
        "    return vocab\n"
        "chars = build_vocab(text)")})
    report = grade(path, assignment=SET)
    assert report.error is None and _scores(report)["q1"] == 2, report.table()


@pytest.mark.parametrize("isolate", [True, False], ids=["sandboxed", "forked"])
def test_a_notebook_process_that_dies_is_reported(tmp_path, isolate):
    """Its last words too, printed just before: its output is unbuffered, also where it is
    forked from a grader whose own output is buffered (no PYTHONUNBUFFERED in its shell)."""
    path = _with_answers(tmp_path, "dead.ipynb", {"q2": "print('my last words')\nimport os\nos._exit(1)"})
    if isolate:
        report = grade(path, assignment=SET)
    else:
        script = (f"import json\nfrom tinyllm.grade import grade\nif __name__ == '__main__':\n"
                  f"    print(json.dumps(grade({str(path)!r}, assignment={SET!r}, isolate=False).to_dict()))\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
        assert out.returncode == 0, out.stderr[-2000:]
        report = Report.from_dict(json.loads(out.stdout.splitlines()[-1]))
    assert "process ended" in report.error
    assert "the notebook's last output: my last words" in report.notes, report.notes
    assert report.score == 0 and "not graded" in report.table()


def test_questions_after_a_call_that_ended_the_process_are_not_graded(tmp_path):
    path = _with_answers(tmp_path, "dies_in_call.ipynb", {
        "q2": "stoi = {ch: i for i, ch in enumerate(sorted(set(text)))}\nitos = {i: ch for ch, i in stoi.items()}\n"
              "def encode(s, stoi):\n    import os, sys\n"
              "    if sys._getframe(1).f_code.co_name == 'call':  # called by the grader, not the notebook\n"
              "        os._exit(1)\n    return [stoi[c] for c in s]"})
    report = grade(path, assignment=SET)
    # q1 ran (its solved answer passed); q2's call ended the process; q3 and q4 never ran
    assert [bool(q.cases) for q in report.questions] == [True, True, False, False], report.table()
    assert [q.score for q in report.questions] == [2, 0, 0, 0]
    assert report.question("q4").message.startswith("not graded: ")
    rows = {line.split()[0]: line for line in report.table().splitlines() if line[:2] in ("q1", "q2", "q3", "q4")}
    assert "not graded" in rows["q3"] and "failed" in rows["q2"], report.table()


def test_a_notebook_that_never_ends_is_stopped_whole(tmp_path):
    path = _with_answers(tmp_path, "forever.ipynb", {"q1": "import time\nwhile True:\n    time.sleep(1)"})
    start = time.perf_counter()
    report = grade(path, assignment=SET, limits=Limits(seconds=6, cell_seconds=600))
    assert time.perf_counter() - start < 140  # 6 s and the grader's start-up (slow on a busy machine), not 600
    assert "stopped after 6 s" in report.error
    assert [q.score for q in report.questions] == [0, 0, 0, 0]


def test_a_notebook_with_large_outputs_is_graded_in_full(tmp_path):
    # A pipe holds 64 KiB: a notebook handed to the sandbox through one would hang the grader.
    nb = _solved()
    big = nbformat.v4.new_output("stream", name="stdout", text="a long printed table\n" * 20_000)
    _answer_cell(nb, "q1").outputs = [big]
    path = tmp_path / "large.ipynb"
    nbformat.write(nb, path)
    assert path.stat().st_size > 300_000
    report = grade(path, assignment=SET)
    assert report.error is None, report.error
    assert report.score == report.possible == 8


def test_when_the_grader_is_stopped_from_outside_every_question_scores_0_of_its_points(tmp_path, monkeypatch):
    import tinyllm.grade as grade_module

    judge = grade_module._judge
    monkeypatch.setattr(grade_module, "_judge", lambda config, seconds: judge(config, 8))
    path = _with_answers(tmp_path, "forever.ipynb", {"q1": "import time\nwhile True:\n    time.sleep(1)"})
    report = grade(path, assignment=SET, limits=Limits(seconds=600, cell_seconds=600))
    assert "the grader stopped after 8 s" in report.error
    assert [(q.name, q.score, q.possible) for q in report.questions] == [(f"q{i}", 0, 2) for i in range(1, 5)]
    assert report.possible == 8 and "total: 0 / 8" in report.table()


def test_hidden_tests_draw_new_inputs_at_each_grading_and_the_report_names_them(tmp_path, monkeypatch):
    """The hidden tests ship with the package: with inputs fixed once for all, a notebook could
    carry a table of their answers. Each grading draws its own (``TINYLLM_GRADING_SEED``
    repeats one); an answer that says what it saw shows it."""
    nb = nbformat.read(solutions_notebook(SOURCE_DIR / "05_attention.ipynb"), as_version=4)
    _answer_cell(nb, "q2").source = 'def attention(q, k, v):\n    raise ValueError(f"saw {float(q.sum()):.6f}")'
    path = tmp_path / "05_attention.ipynb"
    nbformat.write(nb, path)

    def seen(report) -> str:
        [case] = [c for c in report.question("q2").cases if c["name"] == "q2 - 3"]  # random q, k, v against F.sdpa
        return case["message"].split("saw ")[1].split()[0]

    own = dict(isolate=False)  # the seed's path is the same in the sandbox (test_exercises grades there)
    monkeypatch.delenv("TINYLLM_GRADING_SEED", raising=False)
    first, second = grade(path, **own), grade(path, **own)
    assert first.seed != second.seed and seen(first) != seen(second)
    monkeypatch.setenv("TINYLLM_GRADING_SEED", str(first.seed))
    again = grade(path, **own)
    assert again.seed == first.seed and seen(again) == seen(first)
    assert again.score == first.score and json.loads(json.dumps(again.to_dict()))["seed"] == first.seed
    monkeypatch.setenv("TINYLLM_GRADING_SEED", "twelve")
    assert "TINYLLM_GRADING_SEED must be an integer" in grade(path, **own).error


def test_the_seed_one_test_can_read_tells_nothing_of_another_tests(monkeypatch):
    """A call can read its test's seed (torch.initial_seed()); with the salt mixed in by a
    plain exclusive or, seed(0) was the salt and gave every other test's inputs
    (exercises/cheats/salt_leak_names_hook_14)."""
    from tinyllm.grading import checks

    assert [checks.seed(n) for n in (0, 7)] == [0, 7]  # outside a grading: the test's own number
    monkeypatch.setattr(checks, "SEED_SALT", 20261203)
    seeds = [checks.seed(n) for n in range(2000)]
    assert len(set(seeds)) == 2000 and 20261203 not in seeds
    assert all(seed ^ n != seeds[0] for n, seed in enumerate(seeds[1:], 1))  # not the salt, exclusive-ored
    assert all(0 <= seed < 2 ** 63 for seed in seeds)  # a seed torch.manual_seed and random.seed take


def test_every_random_input_of_a_test_is_drawn_through_the_gradings_seed():
    import re

    fixed = re.compile(r"(manual_seed|random\.Random|default_rng|np\.random\.seed)\((?!checks\.seed\()")
    for source in sorted(SOURCE_DIR.glob("*.ipynb")):
        in_tests = False
        for cell in nbformat.read(source, as_version=4).cells:
            in_tests = in_tests or "BEGIN TESTS" in cell.source
            if in_tests and cell.cell_type == "code":
                assert not fixed.search(cell.source), f"{source.name}: draw a test's inputs with checks.seed(n)"
            in_tests = in_tests and "END TESTS" not in cell.source


def test_every_hidden_test_draws_some_input_through_the_gradings_seed():
    """The hidden tests ship with the package: a table of their answers, made at home, would
    earn every test whose inputs are all fixed. A test passes only if all its checks do, so
    one input drawn with the grading's seed is enough (scripts/answer_table.py measures it).
    Set 13's ``state_bytes_per_param`` takes one of six inputs (3 optimizers x 2 precisions):
    a table of its answers is a solution, so its tests need not draw."""
    import ast

    from tinyllm.grade import ASSIGNMENTS_DIR, known_assignments

    unseeded = []
    for name in known_assignments():
        for question, text in json.loads((ASSIGNMENTS_DIR / f"{name}.json").read_text())["tests"].items():
            if (name, question) == ("13_scaling_out", "q1"):
                continue
            for node in ast.parse(text).body:
                hidden = isinstance(node, ast.FunctionDef) and any(
                    isinstance(d, ast.Call) and any(k.arg == "hidden" and getattr(k.value, "value", False)
                                                    for k in d.keywords) for d in node.decorator_list)
                if hidden and "checks.seed(" not in ast.get_source_segment(text, node):
                    unseeded.append(f"{name} {question} {node.name}")
    assert not unseeded, f"hidden tests with only fixed inputs: {unseeded}"


def test_a_table_of_the_hidden_tests_answers_earns_nothing_at_another_grading():
    """The cheat itself, on one set: its functions only look up what the solutions returned
    for the hidden tests' inputs at one seed; graded with another seed, it earns nothing."""
    out = subprocess.run([sys.executable, "scripts/answer_table.py", "--no-blank", "01_text_to_numbers"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    row = next(line for line in out.stdout.splitlines() if line.startswith("01_text_to_numbers"))
    own, new = row.split()[2], row.split()[5]
    assert own == "8" and new == "0", row  # the table works at its own seed, and only there


def test_blanks_say_to_fill_them_in():
    # The untouched learner notebook is graded in test_exercises.py; here only the message.
    from tinyllm.grading import checks

    with pytest.raises(AssertionError, match="returned None: replace the ..."):
        checks.returned("encode", None, list)


@pytest.mark.parametrize("content", ["{not json", "", '{"cells": 3}', "[]", "[" * 100_000],
                         ids=["not json", "empty", "cells not a list", "a list", "nested too deep"])
def test_a_file_that_is_not_a_notebook_scores_zero_with_a_reason(tmp_path, content):
    path = tmp_path / f"{SET}.ipynb"
    path.write_text(content, encoding="utf-8")
    report = grade(path)
    assert report.assignment == SET
    assert len(report.questions) == 4 and report.score == 0
    assert "not a valid notebook" in report.error


@pytest.mark.parametrize("kind", ["too large", "a pipe", "a device"])
def test_a_notebook_that_is_no_ordinary_file_or_too_large_is_refused_before_it_is_read(tmp_path, kind):
    """Read whole, these would hang the grader (a pipe), or fill its memory (/dev/zero, a
    gigabyte of JSON): each scores 0 with the reason."""
    from tinyllm.grading.flags import MAX_NOTEBOOK_BYTES

    path = tmp_path / f"{SET}.ipynb"
    if kind == "too large":
        with open(path, "wb") as f:  # sparse: no disk used
            f.truncate(MAX_NOTEBOOK_BYTES + 1)
    elif kind == "a pipe":
        os.mkfifo(path)
    else:
        path = Path("/dev/zero")
    report = grade(path, assignment=SET)
    assert report.score == 0 and len(report.questions) == 4
    expected = "is larger than" if kind == "too large" else "is not an ordinary file"
    assert expected in report.error, report.error


def test_a_link_to_another_file_is_not_graded_as_the_notebook(tmp_path):
    """A submission that is a link (a zip or tar of hand-ins can carry one) would have the
    grader read a file the learner names: the teacher's solutions, scoring full marks."""
    path = tmp_path / f"{SET}.ipynb"
    path.symlink_to(solutions_notebook(SOURCE))
    report = grade(path)
    assert report.score == 0 and len(report.questions) == 4, report.table()
    assert "is a link" in report.error, report.error


def test_a_hard_link_to_another_file_is_not_graded_as_the_notebook(tmp_path):
    """A tar of hand-ins can carry a hard link to a path on the teacher's machine (Python's
    shutil.unpack_archive makes it): the grader would read the teacher's solutions."""
    solutions = tmp_path / "teacher" / "solutions.ipynb"
    solutions.parent.mkdir()
    solutions.write_bytes(solutions_notebook(SOURCE).read_bytes())
    path = tmp_path / f"{SET}.ipynb"
    os.link(solutions, path)
    report = grade(path)
    assert report.score == 0 and "is a link" in report.error, report.table()


def test_the_results_file_replaces_a_link_planted_at_its_name(tmp_path):
    """A hand-in may come with `NAME.results.json` as a link to another file of the
    teacher's: writing the report must not write through it."""
    victim = tmp_path / "other-student.ipynb"
    victim.write_text("a notebook of someone else", encoding="utf-8")
    path = tmp_path / f"{SET}.ipynb"
    path.write_text("{broken", encoding="utf-8")
    results = tmp_path / f"{SET}.results.json"
    results.symlink_to(victim)
    grade(path, results_json=results)
    assert victim.read_text(encoding="utf-8") == "a notebook of someone else"
    assert not results.is_symlink() and json.loads(results.read_text())["score"] == 0


def test_the_csv_of_a_folder_replaces_a_link_planted_at_its_name(tmp_path):
    """A folder of hand-ins may hold `grades.csv` as a link to a teacher's file: the folder's
    CSV (written there by default) replaces the link and leaves that file as it was."""
    victim = tmp_path / "gradebook.xlsx"
    victim.write_text("the teacher's gradebook", encoding="utf-8")
    hand_ins = tmp_path / "hand_ins"
    hand_ins.mkdir()
    (hand_ins / f"{SET}.ipynb").write_text("{broken", encoding="utf-8")
    (hand_ins / "grades.csv").symlink_to(victim)
    assert main([str(hand_ins), "--set", SET]) == 0
    assert victim.read_text(encoding="utf-8") == "the teacher's gradebook"
    rows = (hand_ins / "grades.csv").read_text(encoding="utf-8").splitlines()
    assert not (hand_ins / "grades.csv").is_symlink() and rows[1].startswith(f"{SET}.ipynb,{SET},0,")


def test_a_file_name_cannot_forge_or_hide_a_line_the_command_prints(tmp_path, capsys):
    """A hand-in's file name is the learner's to choose, and a folder's grading prints each
    name: a newline in it would print a line of its own ("mallory.ipynb: 8 / 8"), an escape
    sequence would move the cursor over another learner's line. Each prints as one line."""
    forged = f"{SET}-mallory.ipynb: 8 \u2215 8"  # a slash of another code point: / ends a file name
    names = [f"{SET}-x\n{forged}\nzz.ipynb", f"{SET}-y\x1b[1A\x1b[2K.ipynb"]
    for name in names:
        (tmp_path / name).write_text("{broken", encoding="utf-8")
    assert main([str(tmp_path), "--set", SET]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(names) + 1 and lines[-1].startswith("wrote "), lines
    assert not any(ch != " " and not ch.isprintable() for line in lines for ch in line), lines
    assert [line.count(": 0 / 8  (") for line in lines[:-1]] == [1, 1], lines
    assert not any(line.startswith(forged) for line in lines), lines


def test_an_unknown_notebook_is_reported(tmp_path):
    path = tmp_path / "my_homework.ipynb"
    nbformat.write(nbformat.v4.new_notebook(), path)
    report = grade(path)
    assert report.questions == [] and "cannot tell which exercise set" in report.error


def test_the_set_comes_from_the_command_line_not_the_notebook(tmp_path):
    """A notebook whose otter metadata names another set is not graded as that set."""
    nb = _solved()
    nb.metadata["otter"]["assignment_name"] = "05_attention"
    path = tmp_path / "homework.ipynb"
    nbformat.write(nb, path)
    report = grade(path, assignment=SET)
    assert report.assignment == SET and report.score == 0
    assert "is the notebook of exercise set '05_attention'" in report.error
    assert grade(path).questions == []  # its file name names no set: it is not guessed from inside


def test_without_the_sandbox_own_work_is_graded_and_others_refused(tmp_path, monkeypatch, capsys):
    from tinyllm.grading import sandbox

    monkeypatch.setattr(sandbox, "bwrap", lambda: None)
    monkeypatch.delenv(sandbox.REQUIRE_ENV, raising=False)
    path = tmp_path / f"{SET}.ipynb"
    nbformat.write(_solved(), path)
    assert main([str(path), "--untrusted"]) == 1
    err = capsys.readouterr().err
    assert "install bubblewrap" in err and "otter grade" in err
    report = grade(path)
    assert report.score == 8 and any("without isolation" in n for n in report.notes), report.table()
    # Forked from the judge, as with isolate=False: the judge's modules are there already.
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys\nprint('FORKED', 'tinyllm.grading.judge' in sys.modules, flush=True)\nos._exit(0)")])
    nbformat.write(probe, path)
    assert grade(path).notes[-1] == "the notebook's last output: FORKED True"
    monkeypatch.setenv(sandbox.REQUIRE_ENV, "1")
    assert "bubblewrap cannot run here" in grade(path).error


def test_own_work_graded_without_the_sandbox_runs_apart_from_the_grader(tmp_path):
    """``isolate=False`` forks the notebook's process from the grader's: it holds open only its
    channel and the watch's record (not the grader's pipe to the command), runs in a new folder of its own that is
    removed after, with the sandbox's environment (no variable of the grader's shell), its own
    session and the threads a fresh process would take; refused for others' notebooks."""
    from tinyllm.grading import sandbox

    probe = (
        "import os, sys, torch\n"
        "fds = [f for f in os.listdir('/proc/self/fd') if os.path.exists(f'/proc/self/fd/{f}')]\n"
        "kinds = sorted(os.readlink(f'/proc/self/fd/{f}').split(':')[0] for f in fds if int(f) > 2)\n"
        "ok = (kinds == ['pipe', 'pipe', 'socket'] and os.environ['HOME'] == os.getcwd()\n"
        "      and [f for f in os.listdir('.') if f != '.ipython'] == ['SET.ipynb'] and sorted(os.environ) == NAMES\n"
        "      and torch.get_num_threads() == int(os.environ['OMP_NUM_THREADS']) and sys.path[0] == os.getcwd()\n"
        "      and os.getpgid(0) == os.getpid() and os.readlink('/proc/self/fd/0') == '/dev/null')\n"
        "print('PROBE', ok, kinds, os.getcwd(), flush=True)\n"
        "os._exit(0 if ok else 3)\n"
    ).replace("SET", SET).replace("NAMES", repr(sorted(sandbox.environment("/w", "/p"))))
    nb = _solved()
    nb.cells.insert(0, nbformat.v4.new_code_cell(probe))
    path = tmp_path / f"{SET}.ipynb"
    nbformat.write(nb, path)
    report = grade(path, isolate=False)
    assert report.notes[0] == sandbox.NOT_ISOLATED_AS_ASKED
    last = report.notes[-1]  # the process ended itself: the report quotes its last line
    assert last.startswith("the notebook's last output: PROBE True ['pipe', 'pipe', 'socket'] /"), report.notes
    folder = Path(last.split()[-1])
    assert folder.name.startswith("tinyllm-grade-") and not folder.exists()
    assert grade(path, isolate=False, untrusted=True).error == sandbox.REFUSED


def test_command_line_prints_a_table_and_writes_json_and_csv(tmp_path, capsys):
    solved = tmp_path / "alice.ipynb"
    nbformat.write(_solved(), solved)
    (tmp_path / "bob.ipynb").write_text("{broken", encoding="utf-8")
    results = tmp_path / "alice.json"
    assert main([str(solved), "--set", SET, "--json", str(results)]) == 0
    out = capsys.readouterr().out
    assert "q4         2 / 2  passed" in out and out.rstrip().splitlines()[-1] == "total: 8 / 8"
    data = json.loads(results.read_text())
    assert data["score"] == data["possible"] == 8
    assert any(c["hidden"] for q in data["questions"] for c in q["cases"])

    reports = tmp_path.parent / f"{tmp_path.name}-reports"  # a teacher's folder, outside the hand-ins
    assert main([str(tmp_path), "--set", SET, "--csv", str(tmp_path / "grades.csv"), "--jobs", "2",
                 "--reports", str(reports)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "grades.csv")))
    by_name = {r["notebook"]: r for r in rows}
    assert by_name["alice.ipynb"]["score"] == "8" and by_name["alice.ipynb"]["q3"] == "2"
    assert by_name["bob.ipynb"]["score"] == "0" and "not a valid notebook" in by_name["bob.ipynb"]["error"]
    # each notebook's report, every test's message in it, for the teacher to hand back
    assert sorted(p.name for p in reports.iterdir()) == ["alice.results.json", "bob.results.json"]
    assert json.loads((reports / "alice.results.json").read_text())["score"] == 8
    assert "not a valid notebook" in json.loads((reports / "bob.results.json").read_text())["error"]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "elsewhere")
    assert main([str(tmp_path), "--set", SET, "--reports", str(tmp_path / "linked")]) == 2
    assert list((tmp_path / "elsewhere").iterdir()) == [], "the reports followed a link"


def test_a_file_name_is_never_a_formula_in_the_csv(tmp_path):
    """A spreadsheet runs a cell that starts with = + - @ as a formula; a hand-in's file name
    is the learner's to choose, so each such cell is written as text (a leading ')."""
    from tinyllm.grade import grade_folder

    names = ["=HYPERLINK(1).ipynb", "+1.ipynb", "-1.ipynb", "@SUM(1).ipynb"]
    for name in names:
        (tmp_path / name).write_text("{broken", encoding="utf-8")
    grade_folder(tmp_path, tmp_path / "grades.csv", assignment=SET)
    cells = [row["notebook"] for row in csv.DictReader(open(tmp_path / "grades.csv"))]
    assert sorted(cells) == sorted(f"'{name}" for name in names), cells


def test_the_grading_command_imports_nothing_from_the_folder_it_runs_in(tmp_path):
    """`python -m` puts the current folder first on Python's path, so a `csv.py` among the
    hand-ins would run inside the grader; `tinyllm-grade` does not."""
    command = Path(sys.executable).parent / "tinyllm-grade"
    marker = tmp_path / "imported"
    (tmp_path / "csv.py").write_text(f"open({str(marker)!r}, 'w').close()\n", encoding="utf-8")
    (tmp_path / f"{SET}.ipynb").write_text("{broken", encoding="utf-8")
    proc = subprocess.run([str(command), f"{SET}.ipynb"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and "total: 0 / 8" in proc.stdout, proc.stdout + proc.stderr
    assert not marker.exists(), "the grader imported csv.py from the folder it ran in"
    # The control: python -m imports csv.py at the start, whatever it grades (here nothing: no grader starts).
    unsafe = subprocess.run([sys.executable, "-m", "tinyllm.grade", "missing.ipynb"], cwd=tmp_path, capture_output=True)
    assert marker.exists(), f"the check cannot fail: python -m did not import csv.py either ({unsafe.returncode})"


def test_module_runs_as_a_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tinyllm.grade", str(tmp_path / "missing.ipynb")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def _public_check(grader, question: str, env: dict):
    result = grader.check(question, global_env=env)
    assert "q1" in repr(result) and result._repr_html_()  # what the learner sees renders
    return result.passed_all


@pytest.mark.parametrize("beside_the_notebook", [True, False], ids=["jupyter", "colab"])
def test_grader_cell_runs_public_tests_beside_the_notebook_and_in_colab(tmp_path, monkeypatch, beside_the_notebook):
    """Next to the notebook file otter reads the public tests from its metadata; without the
    file (Colab) they come from the package's grading/public_tests.json. Both give the same verdicts."""
    import shutil

    from tinyllm.grade import otter_notebook

    monkeypatch.chdir(tmp_path)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    if beside_the_notebook:
        shutil.copy(Path(__file__).resolve().parent.parent / "exercises" / f"{SET}.ipynb", tmp_path)
    grader = otter_notebook(f"{SET}.ipynb")
    right = {"build_vocab": lambda text: sorted(set(text))}
    blank = {"build_vocab": lambda text: None}
    assert _public_check(grader, "q1", right) is True
    assert _public_check(grader, "q1", blank) is False
    # Colab's copy of the public tests lasts as long as the grader (the kernel's session), no longer.
    assert len(list(temporary.iterdir())) == (0 if beside_the_notebook else 1)
    del grader
    gc.collect()
    assert list(temporary.iterdir()) == [], "the copy of the public tests outlived the grader"


def test_grader_cell_checks_nothing_while_the_notebook_is_graded(monkeypatch):
    """The grader's own process runs every test: the notebook's need not import otter."""
    from tinyllm.grade import GRADING_ENV, otter_notebook

    monkeypatch.setenv(GRADING_ENV, "1")
    grader = otter_notebook(f"{SET}.ipynb")
    assert grader.check("q1") is None and grader.check_all() is None


def test_each_grading_is_forked_from_one_warm_process(tmp_path):
    """Python's forkserver imported torch, otter and the tests' modules once; two gradings share it."""
    from multiprocessing import forkserver

    import psutil

    path = tmp_path / f"{SET}.ipynb"
    nbformat.write(_solved(), path)
    assert grade(path, isolate=False).score == 8  # the judges' warm process, whatever runs the notebook
    warm = forkserver._forkserver._forkserver_pid
    assert warm and psutil.Process(warm).ppid() == os.getpid()
    # started with the folder it runs in off its path and OpenMP's threads waiting without spinning (the
    # suite sets OMP_WAIT_POLICY itself)
    started = psutil.Process(warm).environ()
    assert started["PYTHONSAFEPATH"] == "1" and started["OMP_WAIT_POLICY"] == "PASSIVE"
    assert grade(path, isolate=False).score == 8
    assert forkserver._forkserver._forkserver_pid == warm and psutil.pid_exists(warm)


def test_the_warm_process_holds_the_watchs_table_before_any_notebook_runs():
    """judge.warm_up runs when the warm process imports the judge: the table of the package's
    functions (what a copied function is recognised by) exists before a notebook could edit a file."""
    code = ("import tinyllm.grading.judge, tinyllm\nfrom pathlib import Path\n"
            "from tinyllm.grading import fingerprints as f\nmade = f.package_functions.cache_info().misses\n"
            "table = f.package_functions(str(Path(tinyllm.__file__).resolve().parent) + '/')\n"
            "print(made, f.package_functions.cache_info().misses, "
            "'tinyllm.optim.newton_schulz' in table.values(), *(t.cache_info().misses for t in "
            "(f.library_functions, f.package_codes, f.package_methods)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    # the other three tables too (fingerprints.known_code), as the sandbox is handed them
    assert out.stdout.split() == ["1", "1", "True", "1", "1", "1"], out.stdout + out.stderr


def test_the_warm_process_imports_every_package_module_the_packaged_tests_import():
    import ast

    from tinyllm.grade import ASSIGNMENTS_DIR, WARM_MODULES

    imported = set()
    for path in ASSIGNMENTS_DIR.glob("*.json"):
        for source in json.loads(path.read_text(encoding="utf-8"))["tests"].values():
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.ImportFrom) and node.module:
                    imported |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
                elif isinstance(node, ast.Import):
                    imported |= {a.name for a in node.names}
    modules = {m for m in imported
               if m.startswith("tinyllm.") and not m.startswith("tinyllm.grading") and _is_module(m)}
    assert modules and modules <= set(WARM_MODULES), sorted(modules - set(WARM_MODULES))


def _is_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_an_optimizer_step_in_a_hidden_test_imports_nothing_the_warm_process_lacks():
    """Set 08's tests step torch.optim.AdamW; its first step imports torch._dynamo (about 1 s of
    CPU), which each grading would pay again if the warm process had not imported it."""
    from tinyllm.grade import ASSIGNMENTS_DIR, WARM_MODULES

    assert any("torch.optim." in p.read_text(encoding="utf-8") for p in ASSIGNMENTS_DIR.glob("*.json"))
    code = (f"import importlib, sys, torch\nfor m in {WARM_MODULES!r}:\n    importlib.import_module(m)\n"
            "before = set(sys.modules)\np = torch.nn.Parameter(torch.ones(3))\n"
            "p.grad = torch.ones(3)\ntorch.optim.AdamW([p]).step()\n"
            "print(len(set(sys.modules) - before))")
    new = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(new) < 10, f"an optimizer step imported {new.strip()} modules the warm process had not"


def test_grader_cell_names_an_unknown_set(tmp_path, monkeypatch):
    from tinyllm.grade import otter_notebook

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="no exercise set"):
        otter_notebook("99_nothing.ipynb")


# ---------------------------------------------------------------------------------------
# Cheating submissions earn nothing for their trick (exercises/cheats/manifest.json)
# ---------------------------------------------------------------------------------------

from teaching.build import (  # noqa: E402
    ASSIGNMENTS_DIR,
    CHEATS_DIR,
    CHEATS_MANIFEST,
    LEARNER_DIR,
    cheat_submissions,
    comparable,
)
from tinyllm.grade import JUDGE_MEMORY_BYTES  # noqa: E402
from tinyllm.grading import sandbox  # noqa: E402
from tinyllm.grading.sandbox import Limits  # noqa: E402

CHEATS = json.loads(CHEATS_MANIFEST.read_text(encoding="utf-8"))
CHEAT_NAMES = sorted(name for name in CHEATS if not name.startswith("_"))


MARKER = "tinyllm-cheat"  # the name the cheats give the processes they leave behind
PACKAGE = Path(__file__).resolve().parent.parent / "tinyllm"
OUTSIDE = [Path(p) for p in ("/tmp/tinyllm-cheat-outside", "/var/tmp/tinyllm-cheat-outside", "/tinyllm-cheat-outside",
                             "/dev/shm/tinyllm-cheat-outside", "/dev/shm/tinyllm-cheat-shm", "/tmp/results.json",
                             "/tmp/status.json", "/tmp/05_attention.results.json")]
OUTSIDE.append(PACKAGE / "tinyllm-cheat-outside")
needs_sandbox = pytest.mark.skipif(
    sandbox.bwrap() is None and os.environ.get(sandbox.REQUIRE_ENV) != "1",
    reason="bubblewrap (bwrap) cannot make a sandbox here; the cheats are graded only inside one "
           "(CI sets TINYLLM_REQUIRE_SANDBOX=1, so there a missing sandbox fails)",
)


def _marked_processes() -> list[int]:
    import psutil

    found = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == MARKER or MARKER in " ".join(proc.info["cmdline"] or []):
            found.append(proc.pid)
    return found


def _package_digest() -> str:
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + path.read_bytes())
    return digest.hexdigest()


def test_cheating_submissions_are_up_to_date():
    learners = {spec["set"]: nbformat.read(LEARNER_DIR / f"{spec['set']}.ipynb", as_version=4)
                for name, spec in CHEATS.items() if not name.startswith("_")}
    expected = cheat_submissions(learners, CHEATS)
    for path, nb in expected.items():
        assert path.is_file(), f"{path} is missing: run python exercises/build.py"
        assert comparable(nbformat.read(path, as_version=4)) == comparable(nb), f"{path}: run python exercises/build.py"
    assert set(CHEATS_DIR.glob("*.ipynb")) == set(expected)


@pytest.fixture(scope="module")
def cheat_reports(tmp_path_factory):
    """Every cheating notebook graded (two at a time) under its manifest's limits, and what the
    machine looked like before (the package's files, the time)."""
    from concurrent.futures import ThreadPoolExecutor

    if sandbox.bwrap() is None:
        pytest.fail("TINYLLM_REQUIRE_SANDBOX=1 but bubblewrap cannot make a sandbox here")
    folder = tmp_path_factory.mktemp("cheats")
    before = {"digest": _package_digest(), "outside": [p for p in OUTSIDE if p.exists()]}

    def run(name):
        spec = CHEATS[name]
        path = folder / f"{spec['set']}-{Path(name).stem}.ipynb"
        path.write_bytes((CHEATS_DIR / name).read_bytes())
        limits = Limits(**{"seconds": 180.0, **spec.get("limits", {})})
        report = grade(path, results_json=path.with_suffix(".results.json"), limits=limits, untrusted=True)
        return report, path.with_suffix(".results.json")

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(zip(CHEAT_NAMES, pool.map(run, CHEAT_NAMES)))
    return reports, before


@needs_sandbox
@pytest.mark.parametrize("name", CHEAT_NAMES)
def test_a_cheat_earns_nothing_for_its_trick(name, cheat_reports):
    reports, _ = cheat_reports
    report, results = reports[name]
    spec = CHEATS[name]
    expect = spec["expect"]
    assert report.assignment == spec["set"], "the set graded is the one asked for"
    data = json.loads(results.read_text())
    assert data["score"] == report.score, "the results file must be the grader's, not the notebook's"
    assert 0 < report.judge_peak_bytes <= JUDGE_MEMORY_BYTES, "the grader's own memory stays under its limit"
    lines = report.table().splitlines()
    assert [line for line in lines if line.startswith("total:")] == [lines[-1]], "the grader's total is the last line"
    if expect.get("baseline"):
        assert report.error is None and report.score < report.possible
        return
    if "at_most" in expect:
        baseline, _ = reports[expect["at_most"]]
        assert report.score <= baseline.score, f"{name} ({spec['trick']}) gains points: {report.table()}"
        for q in report.questions:
            passing = {c["name"] for c in q.cases if c["hidden"] and c["passed"]}
            allowed = {c["name"] for c in baseline.question(q.name).cases if c["hidden"] and c["passed"]}
            assert passing <= allowed, \
                f"{name}: hidden tests of {q.name} pass that the plain answers fail: {passing - allowed}"
    if "error" in expect:
        assert expect["error"] in (report.error or ""), report.table()
    if "notes" in expect:
        assert any(expect["notes"] in note for note in report.notes), report.table()
    for question, text in expect.get("message", {}).items():
        assert text in report.question(question).message, report.table()
    flags = expect.get("flags", {})
    for q in report.questions:
        if q.name in flags:
            assert any(flags[q.name] in f for f in q.flags), f"{name}: {q.name} is not flagged: {report.table()}"
            assert any(flags[q.name] in f for x in data["questions"] if x["name"] == q.name for f in x["flags"])
        else:
            assert q.flags == [], f"{name}: {q.name} is flagged: {q.flags}"


@needs_sandbox
def test_cheats_leave_nothing_behind(cheat_reports):
    """Nothing a graded notebook started is alive afterwards, nothing it wrote outside its
    folder exists, and the installed package is unchanged."""
    _, before = cheat_reports
    assert _marked_processes() == [], "a process started by a graded notebook is still alive"
    left = [p for p in OUTSIDE if p.exists() and p not in before["outside"]]
    assert left == [], f"a graded notebook wrote outside its folder: {left}"
    assert _package_digest() == before["digest"], "a graded notebook changed the installed package"


def test_an_answer_that_reaches_the_recursion_limit_is_not_taken_for_a_blinded_watch(tmp_path):
    """At the limit of an answer's recursion, a C call that checks the limit (``id``) made in the
    watch's callback raises there, and Python takes the profiler off: the watch would flag an
    honest mistake as switched off. Its check of torch's kernels goes by name first for that
    reason. A recursive encode that calls a C function of torch's at every level fails on the
    hidden tests' long string, and is not flagged."""
    answer = ("stoi = {ch: i for i, ch in enumerate(sorted(set(text)))}\n"
              "itos = {i: ch for ch, i in stoi.items()}\n\n"
              "def encode(s, stoi):\n"
              "    import torch\n"
              "    torch.get_default_dtype()  # a C function of torch's, at every level\n"
              "    return [stoi[s[0]]] + encode(s[1:], stoi) if s else []\n")
    report = grade(_with_answers(tmp_path, f"{SET}.ipynb", {"q2": answer}), isolate=False)
    q2 = report.question("q2")
    assert "RecursionError" in q2.message and q2.score < q2.possible, report.table()
    assert q2.flags == [], report.table()


def test_the_marker_check_sees_a_process_left_behind():
    """The leftover check above can fail: a marked process is seen while it lives."""
    code = f"import ctypes, time\nctypes.CDLL(None).prctl(15, {MARKER.encode()!r})\ntime.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.time() + 10
        while proc.pid not in _marked_processes() and time.time() < deadline:
            time.sleep(0.1)
        assert proc.pid in _marked_processes()
    finally:
        proc.kill()
        proc.wait()


@needs_sandbox
def test_after_a_fork_bomb_the_next_submission_is_graded_normally(tmp_path):
    bomb = tmp_path / "05_attention-bomb.ipynb"
    bomb.write_bytes((CHEATS_DIR / "fork_bomb.ipynb").read_bytes())
    nbformat.write(_solved(), tmp_path / f"{SET}.ipynb")
    bombed = grade(bomb)
    assert "started more than" in bombed.error and bombed.score == 0
    assert grade(tmp_path / f"{SET}.ipynb").score == 8
    assert _marked_processes() == []


def test_solutions_are_not_flagged():
    from tinyllm.grade import imported_answers

    for source in sorted(SOURCE_DIR.glob("*.ipynb")):
        provided = json.loads((ASSIGNMENTS_DIR / f"{source.stem}.json").read_text())["provided_imports"]
        assert imported_answers(nbformat.read(solutions_notebook(source), as_version=4), provided) == {}, source.name


def test_the_import_scan_sees_statements_and_literal_names():
    from tinyllm.grade import imported_answers

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import tinyllm.grading.checks\nfrom tinyllm import grade\nimport torch"),
        nbformat.v4.new_code_cell('grader.check("q1")'),
        nbformat.v4.new_code_cell("%time x = 1\nfrom tinyllm import model as m"),
        nbformat.v4.new_code_cell('grader.check("q2")'),
        nbformat.v4.new_code_cell('def f():\n    return __import__("tinyllm.sampling")'),
        nbformat.v4.new_code_cell('grader.check("q3")'),
        # IPython's syntax inside a block is no Python: the scan reads the cell as IPython runs it
        nbformat.v4.new_code_cell("if False:\n    _ls = !true\nfrom tinyllm.model import CausalSelfAttention"),
        nbformat.v4.new_code_cell('grader.check("q4")'),
        nbformat.v4.new_code_cell("def broken(:\n    from tinyllm import model"),  # never runs: no import
        nbformat.v4.new_code_cell('grader.check("q5")'),
    ]
    flags = imported_answers(nb)
    assert sorted(flags) == ["q2", "q3", "q4"]
    assert "tinyllm.model" in flags["q2"][0] and "tinyllm.sampling" in flags["q3"][0]
    assert "tinyllm.model" in flags["q4"][0]


# ---------------------------------------------------------------------------------------
# Graded anywhere: from an installed wheel, and in (a stand-in for) Colab
# ---------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh environment with tinyllm installed from its built wheel (nothing editable).

    torch, otter and the rest come from the project's .venv through a .pth line (no
    download); the wheel's tinyllm comes first on the path.
    """
    import shutil
    import sysconfig

    base = tmp_path_factory.mktemp("wheel")
    tree = base / "src"
    # Every top-level package of the repository (tinyllm, teaching), so the wheel shows which
    # ones pyproject's package discovery takes.
    for package in (p for p in ROOT.iterdir() if (p / "__init__.py").is_file()):
        shutil.copytree(package, tree / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                    "--no-index", "-q", "-w", str(base / "dist")], cwd=tree, check=True)
    wheel = next((base / "dist").glob("tinyllm-*.whl"))
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "project_venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                    "--no-index", str(wheel)], check=True)
    return python, Path(site), wheel


def _run(python, *args, cwd, env=None):
    # Without the caller's PYTHONPATH: it may name a checkout, and the wheel's tinyllm is tested.
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(python), *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**clean, **(env or {})})


@needs_sandbox
def test_a_python_reached_through_a_link_grades_in_the_sandbox(tmp_path):
    """A virtual environment reached through a link (a shared one linked into a project): the
    notebook's process imports from the paths it was started with, so the sandbox shows the
    installation at those paths too, not only where the link leads."""
    link = tmp_path / "venv"
    link.symlink_to(Path(sys.prefix).resolve(), target_is_directory=True)
    nbformat.write(_solved(), tmp_path / f"{SET}.ipynb")
    out = subprocess.run([str(link / "bin" / "python"), "-m", "tinyllm.grade", "--untrusted", f"{SET}.ipynb"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "total: 8 / 8" in out.stdout, out.stdout[-3000:] + out.stderr[-2000:]


def test_the_wheel_carries_every_sets_tests_and_grades_from_anywhere(installed, tmp_path):
    import zipfile

    python, site, wheel = installed
    names = zipfile.ZipFile(wheel).namelist()
    for source in sorted(SOURCE_DIR.glob("*.ipynb")):
        assert f"tinyllm/grading/assignments/{source.stem}.json" in names
    assert "tinyllm/grading/public_tests.json" in names  # otter_notebook's public tests, in Colab
    where = _run(python, "-c", "import tinyllm; print(tinyllm.__file__)", cwd=tmp_path).stdout
    assert where.startswith(str(site)), f"tinyllm is not imported from the wheel: {where}"

    solved, blank = tmp_path / "solved", tmp_path / "blank"
    solved.mkdir(), blank.mkdir()
    nbformat.write(_solved(), solved / f"{SET}.ipynb")
    (blank / f"{SET}.ipynb").write_bytes((LEARNER_DIR / f"{SET}.ipynb").read_bytes())
    before = sorted(p for p in site.rglob("*") if "__pycache__" not in p.parts)
    full = _run(python, "-m", "tinyllm.grade", f"{SET}.ipynb", cwd=solved)
    assert "total: 8 / 8" in full.stdout, full.stdout + full.stderr
    assert json.loads((solved / f"{SET}.results.json").read_text())["score"] == 8
    zero = _run(python, "-m", "tinyllm.grade", f"{SET}.ipynb", cwd=blank)
    assert "total: 0 / 8" in zero.stdout, zero.stdout + zero.stderr
    assert json.loads((blank / f"{SET}.results.json").read_text())["score"] == 0
    after = sorted(p for p in site.rglob("*") if "__pycache__" not in p.parts)
    assert after == before, "grading wrote into the installation"


@needs_sandbox
def test_an_installed_package_hides_every_sets_tests_from_the_notebook(installed, tmp_path):
    """From a wheel the package lies inside a site-packages the sandbox binds: the sets'
    tests are hidden there too, not only at the package's own place in the sandbox."""
    python, site, wheel = installed
    hidden = [str(site / "tinyllm" / "grading" / "assignments"), "/opt/tinyllm/tinyllm/grading/assignments"]
    assert (site / "tinyllm" / "grading" / "assignments" / f"{SET}.json").is_file()
    nb = _solved()
    peek = f"import glob\nif any(glob.glob(folder + '/*.json') for folder in {hidden!r}):\n    build_vocab = None"
    nb.cells.insert(len(nb.cells) - 1, nbformat.v4.new_code_cell(peek))
    nbformat.write(nb, tmp_path / f"{SET}.ipynb")
    out = _run(python, "-m", "tinyllm.grade", "--untrusted", f"{SET}.ipynb", cwd=tmp_path)
    assert out.returncode == 0 and "total: 8 / 8" in out.stdout, out.stdout + out.stderr


def test_a_teacher_grades_against_own_sources_from_the_wheel(installed, tmp_path):
    """``--sources``: otter assign of the teacher's own source and its tests, with no file of
    the repository (no _config.yml): the repository's tooling (teaching/) is not in the wheel."""
    import shutil
    import zipfile

    python, site, wheel = installed
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert not [n for n in names if n.startswith("teaching/") or n.endswith(("/course.py", "grading/build.py"))]
        assert not [n for n in names if n.endswith(".py") and b"_config.yml" in zf.read(n)]
    # The teacher's copy of the sources gives q1 3 points instead of 2: the total shows
    # that these tests, not the packaged ones, graded the notebooks.
    sources = shutil.copytree(SOURCE_DIR, tmp_path / "my_sources")
    own = nbformat.read(sources / f"{SET}.ipynb", as_version=4)
    q1 = next(c for c in own.cells if c.cell_type == "raw" and "name: q1" in c.source)
    q1.source = q1.source.replace("points: 2", "points: 3")
    nbformat.write(own, sources / f"{SET}.ipynb")
    work = tmp_path / "submissions"
    work.mkdir()
    nbformat.write(_solved(), work / f"{SET}.ipynb")
    shutil.copy(LEARNER_DIR / "wrong" / SET / "a.ipynb", work / "wrong.ipynb")

    full = _run(python, "-m", "tinyllm.grade", "--sources", str(sources), f"{SET}.ipynb", cwd=work)
    assert full.returncode == 0 and "total: 9 / 9" in full.stdout, full.stdout + full.stderr
    wrong = _run(python, "-m", "tinyllm.grade", "--sources", str(sources), "--set", SET, "wrong.ipynb", cwd=work)
    assert wrong.returncode == 0, wrong.stdout + wrong.stderr
    report = json.loads((work / "wrong.results.json").read_text())
    assert report["possible"] == 9 and report["score"] < 9, report


def test_own_sources_are_assigned_once_per_content_of_the_file(tmp_path, monkeypatch):
    """A folder graded with ``--sources`` runs otter assign once per source, again after an edit."""
    from tinyllm.grading import assign

    runs = []
    monkeypatch.setattr(assign, "run_otter_assign", lambda source, work: runs.append(source) or Path(work))
    monkeypatch.setattr(assign, "read_tests", lambda source, dist: {"tests": {"q1": Path(source).read_text()}})
    source = tmp_path / f"{SET}.ipynb"
    source.write_text("first")
    assert assign.source_tests(source) == assign.source_tests(source) == {"tests": {"q1": "first"}}
    source.write_text("edited")
    assert assign.source_tests(source) == {"tests": {"q1": "edited"}}
    assert len(runs) == 2


def test_a_source_otter_cannot_assign_is_named_in_the_error(tmp_path):
    from tinyllm.grading import assign

    good, bad = tmp_path / f"{SET}.ipynb", tmp_path / "broken.ipynb"
    good.write_bytes(SOURCE.read_bytes())
    bad.write_text("{not a notebook", encoding="utf-8")
    with pytest.raises(assign.AssignError, match="broken.ipynb"):
        assign.run_otter_assigns([(good, tmp_path / "a"), (bad, tmp_path / "b")])


def test_the_last_cell_grades_the_notebook_open_in_colab(installed, tmp_path):
    """Colab: no file on disk; the notebook comes from google.colab._message (a stand-in here)."""
    python, site, wheel = installed
    fake = tmp_path / "fake_colab"
    (fake / "google" / "colab").mkdir(parents=True)
    (fake / "google" / "__init__.py").write_text("")
    (fake / "google" / "colab" / "__init__.py").write_text("")
    solved = tmp_path / "solved.json"
    solved.write_text(json.dumps(_solved()))
    (fake / "google" / "colab" / "_message.py").write_text(
        "import json\n"
        "CALLS = []\n"
        "def blocking_request(request_type, request='', timeout_sec=5, parent=None):\n"
        "    CALLS.append(request_type)\n"
        "    assert request_type == 'get_ipynb'\n"
        f"    return {{'ipynb': json.load(open({str(solved)!r}))}}\n"
    )
    content = tmp_path / "content"  # Colab's working folder: empty, no notebook file in it
    content.mkdir()
    last_cell = _solved().cells[-1].source
    assert last_cell.startswith("# Grade this notebook") and f'grade_this("{SET}.ipynb")' in last_cell
    code = (f"import google.colab\nfrom google.colab import _message\n{last_cell}\n"
            "assert _message.CALLS == ['get_ipynb']")
    # Where the copy of the open notebook is graded: a short path, as the grader's sockets live there too
    # (a socket's path is at most 107 bytes; one under pytest's folder can pass that).
    with tempfile.TemporaryDirectory(prefix="colab-") as temporary:
        out = _run(python, "-c", code, cwd=content, env={"PYTHONPATH": str(fake), "TMPDIR": temporary})
        assert out.returncode == 0, out.stdout + out.stderr
        # (torch keeps its compiler's cache there, torchinductor_USER, as anywhere)
        assert not list(Path(temporary).glob("tinyllm-*")), "the copy graded must not stay behind"
    assert "q4         2 / 2  passed" in out.stdout and "total: 8 / 8" in out.stdout, out.stdout
    assert (content / f"{SET}.results.json").is_file()
    assert sorted(p.name for p in content.iterdir()) == [f"{SET}.results.json"]


def test_the_last_cell_grades_the_saved_file_outside_colab(tmp_path, monkeypatch, capsys):
    from tinyllm.grade import grade_this

    nbformat.write(_solved(), tmp_path / f"{SET}.ipynb")
    monkeypatch.chdir(tmp_path)
    report = grade_this(f"{SET}.ipynb")
    assert report.score == 8 and "total: 8 / 8" in capsys.readouterr().out
    assert (tmp_path / f"{SET}.results.json").is_file()
    monkeypatch.setenv("TINYLLM_GRADING", "1")
    assert grade_this(f"{SET}.ipynb") is None  # inside a graded run it does nothing


# ---------------------------------------------------------------------------------------
# What comes out of the sandbox is checked before the grader touches it
# ---------------------------------------------------------------------------------------


def _tensor_json(dtype: str, shape: list, data: bytes, grad: bool = False) -> dict:
    """A tensor as the sandbox's reply writes it (tinyllm.grading.wire), with what a forger likes in it."""
    import base64

    return {"T": [dtype, shape, base64.b64encode(data).decode(), grad]}


# Replies a notebook's process could forge (the channel is its to write), each refused before the grader
# takes more memory than it read: what JSON cannot say (a class, a pickle), tags that are not the wire's, tensors
# whose bytes do not match their shape, more elements or nesting than the tests need.
FORGED = {
    "a pickle": b"\x80\x04\x95\x10\x00cos\nsystem\n",
    "an object named": {"O": ["torch.nn.Parameter", [1.0]]},
    "two tags in one": {"t": [1], "d": []},
    "a dtype that is a class": _tensor_json("torch.nn.Parameter", [1], bytes(4)),
    "a shape larger than its bytes": _tensor_json("torch.float32", [1 << 31], bytes(4)),
    "bytes longer than the shape": _tensor_json("torch.float32", [1], bytes(8)),
    "a negative dimension": _tensor_json("torch.float32", [-1, 4], bytes(16)),
    "a size torch cannot hold": {"S": [1 << 70]},
    "a dimension torch cannot hold": _tensor_json("torch.float32", [1 << 70, 0], b""),
    "not base64": {"T": ["torch.float32", [1], "!!!!", False]},
    "an unhashable key": {"d": [[1, 2], 3]},
    "a key without its value": {"d": [1, 2, 3]},
    "nested too deep": json.loads("[" * 40 + "]" * 40),
    "too many elements": _tensor_json("torch.float32", [1000], bytes(4000)),
}


@pytest.mark.parametrize("forged", FORGED)
def test_replies_that_are_not_plain_data_are_refused(forged):
    import torch

    from tinyllm.grading import values

    message = FORGED[forged]
    with pytest.raises(values.ChannelError, match="unreadable"):
        _receive_raw(message if type(message) is bytes else json.dumps({"t": ["value", message]}).encode(),
                     max_elements=100)
    # what the sandbox writes passes: every tensor rebuilt owns exactly its memory, of its dtype and shape
    base = torch.arange(10.0)
    read, write = os.pipe()
    try:
        values.send(write, ("value", [base[3:], base.expand(2, 10), torch.ones(2, dtype=torch.bfloat16),
                                      {(1, 2): torch.Size([3])}]))
        kind, (view, wide, half, keyed) = values.receive(read, time.monotonic() + 10, max_elements=100)
    finally:
        os.close(read), os.close(write)
    assert kind == "value" and keyed == {(1, 2): torch.Size([3])} and half.dtype == torch.bfloat16
    assert torch.equal(view, base[3:]) and torch.equal(wide, base.expand(2, 10))
    for tensor in (view, wide, half):
        assert tensor.is_contiguous() and tensor.storage_offset() == 0
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()


def _receive_raw(data: bytes, max_elements: int = 1 << 24):
    """What the grader makes of ``data`` sent as one message (written from a thread: a pipe
    holds 64 KiB)."""
    import struct
    import threading

    from tinyllm.grading import values

    read, write = os.pipe()
    writer = threading.Thread(target=lambda: os.write(write, struct.pack("<Q", len(data)) + data))
    writer.start()
    try:
        return values.receive(read, time.monotonic() + 30, max_elements=max_elements)
    finally:
        writer.join()
        os.close(read), os.close(write)


def test_a_recorded_value_is_plain_data_up_to_its_budget_of_items():
    from tinyllm.grading import values

    class Id(int):
        pass

    assert values.pack([1, 2.5, "a", None, True]) == [1, 2.5, "a", None, True]
    assert type(values.pack((1, 2))) is tuple and type(values.pack([Id(3)])[0]) is int
    # Two lists of 150,000 items: the first fits the budget (200,000) whole, the second only in part.
    first, second = values.pack([[0] * 150_000, [7] * 150_000])
    assert first == [0] * 150_000 and second[49_996] == 7
    assert second[49_997] == second[-1] == (values.OBJECT, "value too large to record", None)


def test_a_packed_value_comes_back_as_it_went_through_the_wire():
    """Every dtype, empty and 0-d tensors, a tensor's gradient flag, -0.0, nan and inf, big integers,
    a lone surrogate, tuples, sizes and dicts with any packed key come back the same (same type too)."""
    import math

    import torch

    from tinyllm.grading import values, wire

    tensors = [torch.arange(6.0).reshape(2, 3).to(dtype) for dtype in wire.DTYPES.values() if dtype != torch.bool]
    value = [*tensors, torch.tensor([True, False]), torch.zeros(0, 3), torch.tensor(2.5), torch.ones(2).conj(),
             torch.randn(3, requires_grad=True), (torch.ones(2, 3) * 2)[:, 1], -0.0, math.inf, 2 ** 100, "a\ud800b",
             (1, (2, [3])), torch.Size([2, 0]), {(1, 2): "pair", 3: None, "k": [1.5]}, {}, [], ()]
    packed = values.pack(value)
    back = wire.loads(wire.dumps(packed), 1 << 20)
    assert values.same(packed, back) and [type(v) for v in back] == [type(v) for v in packed]
    assert back[-8] == 2 ** 100 and math.copysign(1, back[-10]) == -1 and back[-7] == "a\ud800b"
    assert back[tensors.__len__() + 4].requires_grad and not back[0].requires_grad
    assert math.isnan(wire.loads(wire.dumps(values.pack(math.nan)), 1))


def test_a_frame_counts_as_torchs_only_when_its_code_and_globals_are():
    """The watch trusts a frame of torch's (to pop its mode, to call a piece or a forbidden
    function itself) only if its code is what the file holds and it runs in that module's
    globals: a cell's code compiled under torch/optim's file names and run by exec once called
    SDPA with no message, and transformers' warpers unflagged (piece_file_trampoline_05, _09)."""
    import sys
    import types

    from torch._dynamo.testing import _skipped_function_for_test_reconstruct as call  # return f(*args)

    from tinyllm.grading.libraries import genuine_frame

    frames = []

    def grab():
        frames.append(sys._getframe(1))

    call(grab)  # torch's own function calls grab
    types.FunctionType(call.__code__, {})(grab)  # torch's code, run with other globals
    exec(compile("f()", call.__code__.co_filename, "exec"), {"f": grab})  # a cell's code under torch's file name
    fake: dict = {}  # other code at the same line of the same file, run in the module's own globals
    exec(compile("\n" * (call.__code__.co_firstlineno - 1) + f"def {call.__name__}(f, *a, **k):\n"
                 "    return f(*a, **k) or None\n", call.__code__.co_filename, "exec"), fake)
    types.FunctionType(fake[call.__name__].__code__, vars(sys.modules[call.__module__]))(grab)
    assert [genuine_frame(f) for f in frames] == [True, False, False, False]


def test_returned_tensors_share_memory_only_where_their_bytes_overlap():
    """A result must hold no tensor twice nor overlapping views ([mean] * n): changing one would
    change another. The rows of one new tensor are apart (set 13's all_reduce_mean returned
    list(mean.repeat(n, 1).unbind(0)), a right answer, and lost 1 of 2)."""
    import torch

    from tinyllm.grading.values import shared_within

    a = torch.randn(3, 4)
    for apart in ([a.clone(), a.clone()], list(a[None].repeat(4, 1, 1).unbind(0)), [a[0], a[1], a[2]],
                  [a.expand(2, 3, 4)], [torch.zeros(0), torch.zeros(0)]):
        assert not shared_within(apart), apart
    for shared in ([a, a], [a] * 3, [a[0:2], a[1:3]], [a, a.t()], [a.expand(2, 3, 4)[0], a.expand(2, 3, 4)[1]],
                   {"x": a, "y": [a[2]]}, [a[:, 0], a[:, 1]]):
        assert shared_within(shared), shared


def test_a_calls_inputs_travel_as_json_where_they_arrive_as_they_are():
    """The grader's request carries the inputs as JSON when that changes nothing, else (a module, a
    parameter, a view, an input given twice: JSON would make two) as torch.save bytes."""
    import random

    import torch

    from tinyllm.grading import values, wire

    t, shared = torch.randn(2, 3, requires_grad=True), [1]
    plain = {"args": [t, torch.zeros(0), 3, "a", (1, 2), torch.Size([2])], "kwargs": {"mask": torch.ones(2) > 0},
             "rng": (torch.get_rng_state(), random.getstate()), "grads": None}
    assert wire.travels(plain)
    for given in ([t, t], [t, t[1:]], [t.t()], [torch.nn.Parameter(torch.ones(2))], [torch.nn.Linear(2, 2)],
                  [shared, shared], [torch.ones(2, dtype=torch.complex64).conj()], [t * 2], [torch.zeros(2)[1:]]):
        assert not wire.travels({"args": given}), given
    for payload, kind in ((plain, b"J"), ({"args": [t, t]}, b"P")):
        read, write = os.pipe()
        try:
            values.send_request(write, {"kind": "call"}, payload)
            header, data = values.receive_request(read)
        finally:
            os.close(read), os.close(write)
        got = values.load_payload(data)
        assert data[:1] == kind and values.same(values.pack(got), values.pack(payload))
    assert got["args"][0] is got["args"][1]  # one tensor given twice stays one
    many = {"args": [list(range(1_200_000))], "kwargs": {}}  # more items than a reply may hold: the grader's own
    assert wire.travels(many) and values.load_payload(b"J" + wire.dumps(many))["args"][0][-1] == 1_199_999
    assert values.load_payload(b"J" + wire.dumps(plain))["args"][0].requires_grad


def test_a_message_built_to_take_minutes_to_read_is_stopped(monkeypatch):
    """A dict of integers that all hash to 0: each insertion probes every earlier key (150,000
    keys take minutes of CPU). Stopped at 2 s here, not the grader's 10, to save the suite's time."""
    from tinyllm.grading import values

    monkeypatch.setattr(values, "READ_SECONDS", 2.0)
    keys = [i * ((1 << 61) - 1) for i in range(1, 150_001)]  # hash(i * (2**61 - 1)) == 0
    assert {hash(k) for k in keys[:100]} == {0}
    start = time.monotonic()
    with pytest.raises(values.ChannelError, match="takes more than 2 s to read"):
        _receive_raw(json.dumps({"d": [x for k in keys for x in (k, None)]}).encode())
    assert time.monotonic() - start < 12


def test_the_watchs_record_keeps_each_note_whatever_else_is_written_on_it():
    """The sandbox sends each note at once (values.record) on a socket whose end in the sandbox
    reads nothing back and cannot be opened again through /proc (a pipe's can: a notebook read
    its own notes away); what else the notebook sends there neither hides a note nor turns a
    forbidden call into a note, and the grader sees that it was sent."""
    import errno
    import socket

    from tinyllm.grading import values

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    theirs.shutdown(socket.SHUT_RD)
    read, write = ours.fileno(), theirs.fileno()
    try:
        os.write(write, values.RECORD + values.NOTE + b"swallow the next: ")  # the notebook's
        values.record(write, values.FORBIDDEN, "torch.nn.functional.scaled_dot_product_attention")
        values.record(write, values.NOTE, "called tinyllm.model.GPT.forward, the package's own code")
        values.record(None, values.NOTE, "a watch outside grading writes nothing")
        with pytest.raises(OSError) as reopened:
            os.open(f"/proc/self/fd/{write}", os.O_RDONLY | os.O_NONBLOCK)
        assert reopened.value.errno == errno.ENXIO
        assert theirs.recv(1 << 16) == b""  # its own end reads nothing back
        notes, forbidden, other, closed = values.read_records(read)
        assert forbidden == {"torch.nn.functional.scaled_dot_product_attention"}
        assert "called tinyllm.model.GPT.forward, the package's own code" in notes and other and not closed
        assert values.read_records(read) == (set(), set(), False, False)  # each record is read once
        theirs.close()
        assert values.read_records(read) == (set(), set(), False, True)  # its end closed
    finally:
        ours.close(), theirs.close()


def test_the_record_is_followed_until_its_end_in_the_sandbox_closes_not_until_a_read_finds_it_empty(monkeypatch):
    """The thread that drains the watch's record during a call ended at the first read that found
    nothing: the grader's own read after a reply, between that thread's select and its read,
    took the notes first. No one drained the record then, a call that noted at every event (the
    watch switched off, cheat watch_switched_off) filled the socket and waited on it, and the
    grading stopped at the call's time limit (1 in 15 gradings on a busy machine). It ends now
    at an empty read alone, the sandbox's end closed."""
    import socket
    import threading

    from tinyllm.grading import judge, values

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    ours.setblocking(False)
    session = judge.Session(None, -1, -1, call_seconds=1.0, record_fd=ours.fileno())
    # select says "ready" though another reader emptied the socket first: the race, every time
    monkeypatch.setattr(judge.select, "select", lambda r, w, x, timeout: (time.sleep(0.01), r)[1])
    follower = threading.Thread(target=judge._follow_record, args=(session,), daemon=True)
    try:
        follower.start()
        time.sleep(0.3)
        assert follower.is_alive(), "the record's reader ended while the sandbox could still write"
        values.record(theirs.fileno(), values.NOTE, "a note written after an empty read")
        deadline = time.monotonic() + 5
        while not session.recorded[0] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert session.recorded[0] == {"a note written after an empty read"}
        theirs.close()
        follower.join(5)
        assert not follower.is_alive(), "the reader goes on after the sandbox's end closed"
    finally:
        ours.close(), theirs.close()


def test_a_sandbox_that_stops_reading_ends_the_session_at_the_calls_deadline():
    """A request larger than the pipe, to a sandbox that reads nothing: the grader gives up
    when the call's time is up, with a reason, instead of waiting for ever."""
    import torch

    from tinyllm.grading import judge

    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    os.set_blocking(to_write, False)
    session = judge.Session(None, to_write, from_read, call_seconds=0.5)
    start = time.monotonic()
    try:
        with pytest.raises(AssertionError, match="stopped reading the grader's requests"):
            session.call("f", (torch.zeros(1 << 20),), {})
        assert time.monotonic() - start < 15
        with pytest.raises(AssertionError, match="was not graded: the notebook's process stopped reading"):
            session.call("f", (1,), {})  # every later call says why, at once
    finally:
        for fd in (to_read, to_write, from_read, from_write):
            os.close(fd)


@pytest.mark.parametrize("fork_first", [True, False], ids=["own pages", "shared pages"])
def test_the_watchdog_counts_the_memory_of_all_processes_and_shared_pages_once(monkeypatch, fork_first):
    """Two processes each under the per-process limit: stopped when together they hold more
    than it; not when the second only shares the first's pages (forked after allocating)."""
    from tinyllm.grading import sandbox

    monkeypatch.setattr(sandbox, "LIBRARIES_BYTES", 0)  # no torch mapped here
    allocate = "b = bytearray(48 << 20)"
    steps = ["os.fork()", allocate] if fork_first else [allocate, "os.fork()"]
    code = "; ".join(["import os, time", *steps, "time.sleep(30)"])
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    run = sandbox.Run(proc, Limits(memory_bytes=80 << 20, poll_seconds=0.05))
    try:
        deadline = time.monotonic() + 5
        while run.stopped is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if fork_first:
            stopped = "grading stopped: the notebook's processes used more than 0.078125 GiB of memory together"
            assert run.stopped == stopped
        else:
            assert run.stopped is None and run.peak_processes == 2
    finally:
        run.stop()


def test_tqdm_starts_no_monitor_thread_in_the_sandbox_and_any_thread_is_noted():
    """tqdm starts a monitor thread on its first bar; the sandbox turns that off, so a notebook
    with a progress bar has no thread to be noted for, and a thread that is tqdm's own monitor
    class (serving answers) is noted like any other (in a fresh process: pytest's threads count)."""
    code = """if True:
        import os
        import threading
        from tqdm.auto import tqdm
        from tqdm._monitor import TMonitor
        from tinyllm.grading.unseen import Unseen
        from tinyllm.grading.serve import without_tqdm_monitor
        without_tqdm_monitor()
        for _ in tqdm(range(3)):
            pass
        assert threading.active_count() == 1, threading.enumerate()
        watch = Unseen.__new__(Unseen)
        watch._threads, watch._stayed = frozenset(os.listdir("/proc/self/task")), [frozenset()]
        assert watch._unwatched_threads() == set(), watch._unwatched_threads()

        class Bars:
            _instances = set()
            get_lock = staticmethod(threading.Lock)

        TMonitor(Bars, 30)
        print(sorted(watch._unwatched_threads()))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ran while 1 thread(s) the notebook started earlier were alive" in out.stdout


def test_a_thread_started_from_c_that_waits_in_c_is_noted():
    """A thread that pthread_create started (through ctypes) has no Python state while it waits in
    C, so Python's list of threads misses it; a ctypes callback gives it one, without the watch, to
    run a job (native_thread_waiting_in_c_05). The kernel's list counts it (in a fresh process:
    pytest's threads count)."""
    code = """if True:
        import ctypes, os, sys, time
        from tinyllm.grading.unseen import Unseen
        watch = Unseen.__new__(Unseen)
        watch._threads, watch._stayed = frozenset(os.listdir("/proc/self/task")), [frozenset()]
        assert watch._unwatched_threads() == set(), watch._unwatched_threads()
        libc, tid = ctypes.CDLL(None), ctypes.c_ulong()
        pause = ctypes.cast(libc.pause, ctypes.c_void_p)  # waits in C for good: no Python state
        assert libc.pthread_create(ctypes.byref(tid), None, pause, None) == 0
        assert len(sys._current_frames()) == 1
        print(sorted(watch._unwatched_threads()))
        start = time.perf_counter()  # a thread that stayed through the first wait is not waited for again
        assert watch._unwatched_threads() and time.perf_counter() - start < 0.05
        os._exit(0)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ran while 1 thread(s) the notebook started earlier were alive" in out.stdout, out.stdout


def test_a_watch_changed_in_any_of_its_parts_is_seen():
    """Each way a notebook could silence the sandbox's watch without removing it (in a fresh
    process: the watch installs an audit hook for good)."""
    code = """if True:
        import torch
        import tinyllm
        from pathlib import Path
        from tinyllm.grading import checks
        from tinyllm.grading.watch import Monitor
        watch = Monitor(str(Path(tinyllm.__file__).parent))
        forbidden = checks.forbidden_keys(("torch.nn.functional.layer_norm", "torch.ops.aten._scaled_dot_product_*"))

        def seen(trick, undo):
            watch.start(((), {}), forbidden)
            trick()
            changed = watch.changed()
            undo()
            watch.stop()
            watch.start(((), {}), forbidden)
            clean = watch.changed()
            watch.stop()
            print(changed, clean)

        failure = checks.Forbidden.failure
        seen(lambda: setattr(checks.Forbidden, "failure", lambda self, name: None),
             lambda: setattr(checks.Forbidden, "failure", failure))
        seen(lambda: watch.forbidden.names.clear(), lambda: None)
        seen(lambda: watch.forbidden.prefixes.clear(), lambda: None)
        seen(lambda: setattr(watch.forbidden, "failure", lambda name: None), lambda: None)
        seen(lambda: setattr(watch, "active", False), lambda: None)
        seen(lambda: setattr(watch, "_profile", lambda *a: None), lambda: delattr(watch, "_profile"))
        from tinyllm.grading import values
        not_new, shares = checks.not_new, values.shares
        seen(lambda: setattr(checks, "not_new", lambda *a: None), lambda: setattr(checks, "not_new", not_new))
        seen(lambda: setattr(values, "shares", lambda *a: False), lambda: setattr(values, "shares", shares))
        import warnings
        warnings.warn_explicit("a warning", UserWarning, "values.py", 1, module_globals=vars(values),
                               registry=vars(values).setdefault("__warningregistry__", {}))
        seen(lambda: None, lambda: None)  # Python's record of warnings in a module is not a change
        import _thread
        start_new = _thread.start_new
        seen(lambda: setattr(_thread, "start_new", lambda *a: None), lambda: setattr(_thread, "start_new", start_new))
        # what the watch and the reply run: a builtin that passes every call on, torch's serialization
        import builtins, torch.serialization
        real_getattr, save = builtins.getattr, torch.serialization._save
        seen(lambda: setattr(builtins, "getattr", lambda *a: real_getattr(*a)),
             lambda: setattr(builtins, "getattr", real_getattr))
        seen(lambda: setattr(torch.serialization, "_save", lambda *a, **k: save(*a, **k)),
             lambda: setattr(torch.serialization, "_save", save))
        detach = vars(torch.Tensor)["detach"]
        seen(lambda: setattr(torch.Tensor, "detach", lambda self: self),
             lambda: setattr(torch.Tensor, "detach", detach))
        # The check runs under the profiler at every call (changed()): what a profiler sees of it
        # is its cost there: a few events a part (357), where generators over their names made 4,981 (10 ms).
        import sys
        events = []
        sys.setprofile(lambda frame, event, arg: events.append(event))
        watch.tampered(codes=False)
        sys.setprofile(None)
        print(len(events))
        # A function of the watch's parts given other code or defaults in place (the same object):
        # refused, and every later call too; any other function may be (the notebook's own).
        code = checks.not_new.__code__
        for name, value in (("__code__", (lambda name, value, given: None).__code__), ("__defaults__", (1,)),
                            ("__kwdefaults__", {})):
            try:
                setattr(values.pack, name, value) if name != "__code__" else setattr(checks.not_new, name, value)
                print("set")
            except RuntimeError as refused:
                print(checks.not_new.__code__ is code and values.pack.__defaults__ == (0, None), watch.tampered(),
                      watch.tampered(codes=False), "keeps the code" in str(refused))
                watch._recoded = False
        def mine():
            pass
        mine.__code__ = (lambda: 1).__code__
        print(mine(), watch.tampered())
        # A module given a class of the notebook's (its attribute lookups run the notebook's code),
        # and a storage tagger added to torch's registry (it runs while the reply is written).
        import copyreg, types
        copyreg.__class__ = type("Module", (types.ModuleType,), {})
        print(watch.tampered(), watch.tampered(codes=False))
        copyreg.__class__ = types.ModuleType
        torch.serialization.register_package(-100, lambda storage: None, lambda storage, location: None)
        print(watch.tampered(), watch.tampered(codes=False))
        torch.serialization._package_registry[:] = [e for e in torch.serialization._package_registry if e[0] != -100]

        def put_back(trick, undo):  # swapped and put back within the call: start()'s versions see it
            watched = watch.start(((), {}), forbidden)
            trick()
            undo()
            changed = watch.changed(watched)
            watch.stop()
            watched = watch.start(((), {}), forbidden)
            print(changed, watch.changed(watched))
            watch.stop()

        put_back(lambda: setattr(watch, "_note", lambda text: None), lambda: delattr(watch, "_note"))
        note = Monitor._note
        put_back(lambda: setattr(Monitor, "_note", lambda self, text: None), lambda: setattr(Monitor, "_note", note))
        write = values._WRITE
        put_back(lambda: setattr(values, "_WRITE", lambda fd, data: len(data)),
                 lambda: setattr(values, "_WRITE", write))
        names = {}
        put_back(lambda: names.update(watch.forbidden.names) or watch.forbidden.names.clear(),
                 lambda: watch.forbidden.names.update(names))
        real_len = len
        put_back(lambda: setattr(builtins, "len", lambda x: 0), lambda: setattr(builtins, "len", real_len))
        put_back(lambda: None, lambda: None)
        # With the loop's baseline the names of the parts and builtins are compared only once a dict of theirs was
        # written (its version moved): a part or a builtin replaced is seen as without it, one put back is no change.
        baseline = watch.baseline()
        print(watch.tampered(True, baseline), baseline[4] != ())
        checks.not_new = lambda *a: None
        print(watch.tampered(True, baseline), watch.tampered(False, baseline))
        checks.not_new = not_new
        builtins.getattr = lambda *a: real_getattr(*a)
        print(watch.tampered(True, baseline), watch.tampered(False, baseline))
        builtins.getattr = real_getattr
        print(watch.tampered(True, baseline))
        # What the watch holds itself to (serve keeps it where no cell writes): a table it decides by edited and
        # put back, or its record of its fields replaced by a copy (it is a tuple: nothing edits it in place).
        baseline = watch.baseline()
        print(watch.tampered(True, baseline))
        key = next(iter(watch.methods))
        kept = watch.methods[key]
        watch.methods[key] = None
        watch.methods[key] = kept
        print(watch.tampered(True, baseline), watch.tampered())
        baseline = watch.baseline()
        watch._fixed = watch._fixed[:-1] + watch._fixed[-1:]
        print(watch.tampered(True, baseline), watch.tampered())
        del watch._fixed
        watch._fixed = baseline[0]
        # After the cells (IPython's builtin trap writes builtins at each one and puts them back), the loop
        # settles the versions: taken anew where nothing is changed, else kept, so that a change stays seen.
        from tinyllm.grading.serve import settled
        baseline = watch.baseline()
        builtins.getattr = lambda *a: real_getattr(*a)
        builtins.getattr = real_getattr
        fresh = settled(watch, baseline)
        print(fresh is not baseline, fresh[:5] == baseline[:5], watch.tampered(True, fresh))
        builtins.getattr = lambda *a: real_getattr(*a)
        print(settled(watch, baseline) is baseline, watch.tampered(True, fresh), watch.tampered(True, baseline))
        builtins.getattr = real_getattr
        print(watch.tampered(True, fresh), settled(watch, fresh)[5] == fresh[5])
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[:13] == ["True False"] * 8 + ["False False"] + ["True False"] * 4, out.stdout
    assert int(lines[13]) < 1000, f"the watch's check of its parts is {lines[13]} events under the profiler"
    assert lines[14:20] == ["True True True True"] * 3 + ["1 False", "True False", "True False"], out.stdout
    assert lines[20:26] == ["True False"] * 5 + ["False False"], out.stdout
    assert lines[26:30] == ["False True", "True True", "True True", "False"], out.stdout
    assert lines[30:33] == ["False", "True False", "True False"], out.stdout
    assert lines[33:36] == ["True True False", "True True True", "False False"], out.stdout


def test_the_watch_notes_other_libraries_versions_of_a_piece_called_from_the_notebook():
    """Entries of the notebook's own code (a cell: not an installed file) into torch's optimizers,
    gradient clipping and multi-head attention, transformers' Python and tokenizers' compiled
    code are noted; torch's plain functions (F.gelu, in the file of F.multi_head_attention_forward),
    a method of an optimizer the test passed in, and a library's calls inside itself are not (in
    a fresh process: the watch installs an audit hook for good)."""
    code = """if True:
        import torch
        import tinyllm
        import tokenizers
        from pathlib import Path
        from transformers.models.llama.modeling_llama import repeat_kv
        from tinyllm.grading.watch import Monitor
        watch = Monitor(str(Path(tinyllm.__file__).parent))
        cell = compile('''
def answer(opt, x):
    opt.step()                                            # the given optimizer's own method
    torch.softmax(x, -1), torch.topk(x, 2), torch.nn.functional.gelu(x)   # torch's plain functions
    if mode == 1:
        torch.optim.SGD([torch.nn.Parameter(x)], lr=0.1)  # torch's optimizer, made here
    if mode == 2:
        torch.nn.utils.clip_grad_norm_([torch.nn.Parameter(x)], 1.0)
    if mode == 3:
        repeat_kv(x[None, None], 2)                       # transformers' Python
    if mode == 4:
        tokenizers.Tokenizer(tokenizers.models.BPE()).encode("hi")   # tokenizers' Rust
    if mode == 5:
        torch.nn.MultiheadAttention(4, 1)                 # the one piece of its file
''', "<cell>", "exec")
        given = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
        for mode in range(6):
            scope = {"torch": torch, "tokenizers": tokenizers, "repeat_kv": repeat_kv, "mode": mode}
            exec(cell, scope)
            x = torch.randn(3, 4)
            watch.start(((given, x), {}))
            scope["answer"](given, x)
            print(mode, watch.stop())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "0 []", "no library's version was run"
    ran = "a library's own version of the piece"
    assert lines[1] == f"1 {[f'ran torch.optim.sgd.SGD.__init__, {ran}']!r}"
    assert lines[2] == f"2 {[f'ran torch.nn.utils.clip_grad.clip_grad_norm_, {ran}']!r}"
    assert lines[3] == f"3 {[f'ran transformers.models.llama.modeling_llama.repeat_kv, {ran}']!r}"
    assert "ran tokenizers.Tokenizer.encode" in lines[4] and "ran tokenizers.models" not in lines[4], lines[4]
    assert lines[5] == f"5 {[f'ran torch.nn.modules.activation.MultiheadAttention.__init__, {ran}']!r}"


def test_the_watch_notes_code_torch_compile_made_whatever_its_files_are_called():
    """torch.compile (TorchDynamo) traces a function's bytecode and runs a graph of it, without
    calling the package's functions it inlined; with fx's loader renamed, the graph's code bears a
    file name of the notebook's. A call that compiles such a function, or runs it compiled, is
    noted by torch.compile's own wrapper and compiler; torch's plain functions are not (in a
    fresh process: the watch installs an audit hook for good)."""
    code = """if True:
        import itertools, torch, torch.fx
        import tinyllm
        from pathlib import Path
        from tinyllm import layers
        from tinyllm.grading.watch import Monitor
        watch = Monitor(str(Path(tinyllm.__file__).parent))
        count = itertools.count()
        torch.fx.graph_module._loader._get_key = lambda: f"/home/learner/graph_{next(count)}.py"
        scope = {"torch": torch, "layers": layers}
        exec(compile('''
def wrapper(x, w1, w2, w3):
    return layers.swiglu(x, w1, w2, w3)
compiled = torch.compile(wrapper, backend=lambda gm, example_inputs: gm.forward, dynamic=False)
def plain(x, w1, w2, w3):
    return torch.relu(x @ w1.T) @ w3.T
''', "<cell>", "exec"), scope)
        x, w1, w2, w3 = torch.randn(2, 4), torch.randn(6, 4), torch.randn(6, 4), torch.randn(4, 6)
        for name in ("plain", "compiled", "compiled"):  # plain; compiled in the call; run compiled (cached)
            watch.start(((x, w1, w2, w3), {}))
            out = scope[name](x, w1, w2, w3)
            print(name, sorted(watch.stop()))
        torch.testing.assert_close(out, layers.swiglu(x, w1, w2, w3))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    from tinyllm.grading.unseen import COMPILED

    plain, compiling, cached = out.stdout.splitlines()
    assert plain == "plain []" and cached == f"compiled {[COMPILED]!r}", out.stdout
    assert COMPILED in compiling, out.stdout  # compiling runs fx's graphs too: noted as well


def test_the_watch_notes_the_model_libraries_and_frameworks_colab_has(tmp_path):
    """Colab has timm, torchao, jax, TensorFlow, Keras and scikit-learn, each with versions of the
    pieces (timm's ``rms_norm`` written in torch's plain functions, torchao's int8 quantization,
    ``jax.nn.dot_product_attention``, ``sklearn.metrics.pairwise.cosine_similarity``): a call the
    notebook's code makes into any of them is flagged. Stand-ins here, found where Python finds a
    package, as the real ones would be (the suite installs none)."""
    calls = [("timm", "layers", "rms_norm"), ("torchao", "quantization", "quantize_affine"),
             ("jax", "nn", "dot_product_attention"), ("tensorflow", "nn", "softmax"),
             ("keras", "ops", "dot_product_attention"), ("sklearn", "metrics", "cosine_similarity"),
             ("plainlib", "ops", "softmax")]
    for package, module, function in calls:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
        (tmp_path / package / f"{module}.py").write_text(f"def {function}(x):\n    return x\n")
    code = f"""if True:
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import importlib, torch, tinyllm
        from pathlib import Path
        from tinyllm.grading.watch import Monitor
        watch = Monitor(str(Path(tinyllm.__file__).parent))
        calls = {[(f"{package}.{module}", function) for package, module, function in calls]!r}
        cell = compile("def answer(f, x):\\n    return f(x)\\n", "<cell>", "exec")
        scope = {{}}
        exec(cell, scope)
        for module, name in calls:
            f = getattr(importlib.import_module(module), name)
            x = torch.randn(3)
            watch.start(((f, x), {{}}))
            scope["answer"](f, x)
            print(watch.stop())
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    ran = "a library's own version of the piece"
    assert len(lines) == len(calls), out.stdout
    for line, (package, module, function) in zip(lines[:-1], calls):
        assert line == repr([f"ran {package}.{module}.{function}, {ran}"]), line
    assert lines[-1] == "[]", "a package that is no library of models was flagged"


def test_the_watchs_work_for_a_call_does_not_grow_with_the_items_of_its_lists():
    """Under the profiler, reading a call's inputs and writing its reply take a few events per
    list, not one per item; and code the profiler let go once because it is nobody's copy is
    let go again, while a copy of the package's code is noted at each call (a fresh process:
    the watch installs an audit hook for good)."""
    code = """if True:
        import sys, types, torch
        import tinyllm, tinyllm.sampling
        from pathlib import Path
        from tinyllm.grading import values
        from tinyllm.grading.watch import Monitor
        items = [list(range(10_000)), ["a"] * 10_000, (1.5,) * 10_000]
        events = []
        sys.setprofile(lambda frame, event, arg: events.append(event))
        found, objects = values.leaves(items), values.objects((items, {"m": torch.nn.Linear(2, 2)}))
        sys.setprofile(None)
        copied = values.mapped(items, lambda v: v)
        print(len(events), len(found), [type(o).__name__ for o in objects], copied == items)
        watch = Monitor(str(Path(tinyllm.__file__).parent))
        source = tinyllm.sampling.top_k_filter.__code__
        mine = types.FunctionType(source.replace(co_filename="<mine>", co_name="mine", co_qualname="mine"),
                                  vars(tinyllm.sampling))
        x = torch.randn(2, 5)
        for _ in range(2):
            watch.start(((x,), {}))
            values.encode(("done", ("value", list(range(1000))), None))
            mine(x, 2)
            print(watch.stop())
        print(len(watch._plain) > 0, any(code is source or code.co_name == "mine" for code in watch._plain.values()))
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    count, found, objects, copied = lines[0].split(" ", 3)
    assert int(count) < 1000, f"{count} profiler events for 3 lists of 10,000 items"
    assert (found, objects, copied) == ("30000", "['Linear']", "True"), lines[0]
    noted = ["called a copy of tinyllm.sampling.top_k_filter, the package's own code"]
    assert lines[1:4] == [repr(noted), repr(noted), "True False"], out.stdout


# The functions of the sandbox's modules that may import: they run before any cell (the watch's and
# the sandbox's set-up) or in the grader's own process (forbidden_keys).
IMPORTS_BEFORE_ANY_CELL = {"serve.main", "serve.without_tqdm_monitor", "watch.Monitor.__init__",
                           "watch.Monitor._watch_threads", "fingerprints.torch_parts", "fingerprints.reply_hooks",
                           "unseen._jit_readers", "libraries.installed_folders", "libraries.Libraries.__init__",
                           "checks.forbidden_keys"}


def test_no_function_the_sandbox_runs_after_the_cells_holds_an_import():
    """Importing a module already loaded reads its ``__spec__``, which a cell can replace with
    code of its own (``module_spec_hook_05``): in the modules the sandbox runs, an import statement
    or ``import_module`` call sits at the top or in a function of the set-up above, not in one
    a call can run (nor in a function nested in an allowed one)."""
    import ast

    found = []

    def visit(node, module: str, where: list[str], function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, module, [*where, child.name], function or not isinstance(child, ast.ClassDef))
                continue
            imports = isinstance(child, (ast.Import, ast.ImportFrom)) or (
                isinstance(child, ast.Call) and getattr(child.func, "attr", getattr(child.func, "id", ""))
                in ("import_module", "__import__"))
            if imports and function and ".".join([module, *where]) not in IMPORTS_BEFORE_ANY_CELL:
                found.append(f"{'.'.join([module, *where])}:{child.lineno}")
            visit(child, module, where, function)

    for module in ("serve", "watch", "checks", "values", "fingerprints", "libraries", "unseen"):
        visit(ast.parse((PACKAGE / "grading" / f"{module}.py").read_text(encoding="utf-8")), module, [], False)
    assert found == [], f"imports in functions the sandbox can run in a call: {found}"


def test_the_watch_finds_the_libraries_without_importing_them():
    code = ("import sys, tinyllm; from pathlib import Path; from tinyllm.grading.watch import Monitor; "
            "watch = Monitor(str(Path(tinyllm.__file__).parent)); "
            "print(any(p.endswith('/transformers/') for p in watch.libraries.places), 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False"], out.stdout


def test_the_watch_refuses_every_audit_hook_added_after_its_own():
    """Python runs an audit hook with the profiler paused, at any audited event (the watch's own
    sys.setprofile at the end of a call among them): a hook of the notebook's, added from Python
    or through ctypes' PySys_AddAuditHook, is refused (Python then adds nothing)."""
    code = """if True:
        import ctypes, sys, tinyllm
        from pathlib import Path
        from tinyllm.grading.watch import Monitor
        watch = Monitor(str(Path(tinyllm.__file__).parent))
        ran = []
        sys.addaudithook(lambda event, args: ran.append(event))
        HOOK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.py_object, ctypes.c_void_p)
        hook = HOOK(lambda event, args, data: ran.append(event) or 0)
        ctypes.pythonapi.PySys_AddAuditHook.argtypes = [HOOK, ctypes.c_void_p]
        print(ctypes.pythonapi.PySys_AddAuditHook(hook, None))
        sys.audit("notebook.event"); sys.setprofile(None)
        print(ran, flush=True)
        import os; os._exit(0)  # a C hook that was added would be called at the exit, its ctypes callback freed
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[1] == "[]", out.stdout  # neither hook ran: neither was added


def test_without_torchscripts_private_registry_the_watch_leaves_that_note_out(monkeypatch):
    import torch

    from tinyllm.grading import unseen

    watch = unseen.Unseen("/nowhere/")
    assert watch._scripted() == set() and watch.scripted_ops() == set()  # nothing compiled: no note
    readers = watch._jit
    watch._jit = (lambda: 1 / 0, *readers[1:])  # a registry that the notebook made unreadable is a note
    assert watch._scripted() == {"ran after TorchScript's registry of compiled functions was made unreadable"}
    monkeypatch.delattr(torch.jit._state, "_python_cu")  # a torch without that private registry
    assert unseen._jit_readers() is None
    assert unseen.Unseen("/nowhere/")._scripted() == set()


@needs_sandbox
def test_a_process_that_leaves_the_session_ends_with_the_sandbox(tmp_path):
    """`setsid -f` in a cell: the process is seen alive while the sandbox runs (so the
    leftover check of the cheats is not vacuous), and it is gone once the sandbox ends."""
    import tempfile

    import psutil

    from tinyllm.grading import judge, values

    loop = f"import ctypes, time\nctypes.CDLL(None).prctl(15, {MARKER.encode()!r})\nwhile True:\n    time.sleep(0.5)"
    cell = f"import subprocess, sys\nsubprocess.run(['setsid', '-f', sys.executable, '-c', {loop!r}])"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell)]
    config = {"limits": vars(Limits(seconds=120.0)), "tests": {}, "imports": [], "isolated": True}
    with tempfile.TemporaryFile() as log:
        run, to_fd, from_fd, record_fd = judge.start(nbformat.writes(nb), "x.ipynb", config, log)
        try:
            assert values.receive(from_fd, time.monotonic() + 120)[0] == "ready"
            deadline = time.time() + 20
            while not _marked_processes() and time.time() < deadline:
                time.sleep(0.2)
            if not _marked_processes():  # what the cell printed and what ran in the sandbox say why
                log.seek(0)
                inside = [p.as_dict(["pid", "name", "status"], ad_value=None)
                          for p in psutil.Process(run.proc.pid).children(recursive=True) if p.is_running()]
                raise AssertionError(f"the notebook's detached process did not start; the sandbox's processes "
                                     f"{inside}; the notebook printed: {log.read()[-2000:]!r}")
        finally:
            run.stop()
            os.close(to_fd), os.close(from_fd), os.close(record_fd)
    deadline = time.time() + 10
    while _marked_processes() and time.time() < deadline:
        time.sleep(0.2)
    assert _marked_processes() == []


def test_the_sandbox_binds_no_folder_above_the_package_or_the_current_one(monkeypatch, tmp_path):
    """A PYTHONPATH of ``.`` or ``/`` (or the folder above a checkout) must not bind the
    whole filesystem, the checkout with its sources and tests, or the teacher's folder; no
    PYTHONPATH folder is bound at all (a teacher's private sources can lie beside one)."""
    from tinyllm.grading import sandbox

    package = Path(sandbox.__file__).resolve().parents[1]
    (tmp_path / "libs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([".", "/", str(package.parent.parent), str(tmp_path / "libs")]))
    sandbox.fresh_python.cache_clear()
    try:
        bound = [Path(p) for p in sandbox._binds_for_python()[1::3]]
    finally:
        sandbox.fresh_python.cache_clear()
    assert Path(sys.prefix).resolve() in bound and tmp_path.resolve() / "libs" not in bound
    for place in bound:
        assert not package.is_relative_to(place) and not tmp_path.resolve().is_relative_to(place), place


def _output_in_the_sandbox(cell: str) -> str:
    """What a notebook of one cell prints in the sandbox, up to its "ready"."""
    import tempfile

    from tinyllm.grading import judge, values

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell)]
    config = {"limits": vars(Limits(seconds=120.0)), "tests": {}, "imports": [], "isolated": True}
    with tempfile.TemporaryFile() as log:
        run, to_fd, from_fd, record_fd = judge.start(nbformat.writes(nb), "x.ipynb", config, log)
        try:
            assert values.receive(from_fd, time.monotonic() + 120)[0] == "ready"
        finally:
            run.stop()
            os.close(to_fd), os.close(from_fd), os.close(record_fd)
        log.seek(0)
        return log.read().decode()


@needs_sandbox
def test_the_sandbox_keeps_the_hosts_kernel_settings_and_its_own_root_read_only():
    """A grader started by root maps the sandbox's user to root outside: /proc/sys (the
    host's kernel settings) must be read-only, and so must bubblewrap's own root and /dev,
    which are memory with no size limit; the working folder, /tmp and /dev/shm stay writable."""


    probe = ("import os\nfor path in {paths!r}:\n    try:\n        os.close(os.open(path, os.O_WRONLY | "
             "(0 if path.startswith(('/proc', '/dev/null')) else os.O_CREAT)))\n        print('WRITABLE', path)\n"
             "    except OSError as exc:\n        print('REFUSED', path, exc.strerror)")
    refused = ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/overcommit_memory", "/hog.bin", "/dev/hog.bin", "/opt/x"]
    writable = ["/submission/ok.bin", "/tmp/ok.bin", "/dev/shm/ok.bin", "/dev/null"]
    lines = _output_in_the_sandbox(probe.format(paths=refused + writable)).splitlines()
    assert [line.split(" ", 2)[:2] for line in lines if line.startswith(("WRITABLE", "REFUSED"))] == \
        [["REFUSED", p] for p in refused] + [["WRITABLE", p] for p in writable], lines


def test_a_report_names_its_questions_and_refuses_an_unknown_one():
    from tinyllm.grading.results import QuestionResult, Report

    report = Report("x.ipynb", SET, [QuestionResult("q1", 2.0, 2.0, True, True)])
    assert report.question("q1").score == 2.0
    with pytest.raises(KeyError, match="no question 'q9'.*q1"):
        report.question("q9")


def test_a_teachers_script_grades_under_the_main_guard_and_is_told_without_it(tmp_path):
    """The grading process comes from Python's forkserver, which imports the calling script
    again: under ``if __name__ == "__main__":`` it grades; without the guard the report says why."""
    import shutil

    shutil.copy(LEARNER_DIR / f"{SET}.ipynb", tmp_path)
    call = f'from tinyllm.grade import grade\nr = grade("{SET}.ipynb")\nprint("RESULT", r.score, r.possible, r.error)\n'
    indented = "".join("    " + line + "\n" for line in call.splitlines())
    (tmp_path / "guarded.py").write_text('if __name__ == "__main__":\n' + indented)
    (tmp_path / "unguarded.py").write_text(call)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    options = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)
    guarded = subprocess.run([sys.executable, "guarded.py"], **options)
    assert "RESULT 0.0 8.0 None" in guarded.stdout, guarded.stdout + guarded.stderr
    unguarded = subprocess.run([sys.executable, "unguarded.py"], **options)
    hint = 'from a script (unguarded.py), call grade() under if __name__ == "__main__"'
    assert hint in unguarded.stdout, unguarded.stdout


_PROBE = r'''
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass  # the listing's own
left = {p: os.path.exists(p) for p in ("/tmp/left.txt", "/dev/shm/left.txt", "/submission/left.txt")}
for p in left:
    open(p, "w").write(TOKEN)
try:
    ns = os.open("/proc/1/ns/mnt", os.O_RDONLY)
    joined = libc.setns(ns, 0)
except OSError:
    joined = -1
reach = {}  # bubblewrap's process (1) and `cat` (2) run as the notebook's uid: taken over, they would run its code
for pid in (1, 2):
    reach[f"ptrace {pid}"] = libc.ptrace(16, pid, 0, 0)  # PTRACE_ATTACH
    buffer, remote = (ctypes.c_char * 8)(), (ctypes.c_char * 8)()
    local = (ctypes.c_void_p * 2)(ctypes.addressof(buffer), 8)
    far = (ctypes.c_void_p * 2)(ctypes.addressof(remote), 8)
    reach[f"process_vm_readv {pid}"] = libc.process_vm_readv(pid, local, 1, far, 1, 0)
    try:
        with open(f"/proc/{pid}/mem", "r+b", buffering=0):
            reach[f"/proc/{pid}/mem"] = "opened for writing"
    except OSError as exc:
        reach[f"/proc/{pid}/mem"] = exc.errno
unmapped = {}  # memory no process maps, which the watchdog would not count: refused
try:
    unmapped["memfd_create"] = os.memfd_create("hold")
except OSError as exc:
    unmapped["memfd_create"] = exc.errno
unmapped["shmget"] = libc.shmget(0, 1 << 20, 0o1600), ctypes.get_errno()  # IPC_PRIVATE, IPC_CREAT | 0600
unmapped["memfd_secret"] = libc.syscall(447, 0), ctypes.get_errno()  # its number on x86-64, aarch64 and riscv64
facts = {"caps": sorted({status[k].strip() for k in status if k.startswith("Cap")}), "reach": reach,
         "unmapped": unmapped,
         "seccomp": status["Seccomp"].strip(),
         "no_new_privs": status["NoNewPrivs"].strip(), "parent": os.getppid(), "pid": os.getpid(),
         "procs": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
         "sockets": sorted(fd for fd, to in fds.items() if to.startswith("socket:")), "fds": sorted(fds, key=int),
         "new_user_ns": libc.unshare(0x10000000), "new_mount_ns": libc.unshare(0x00020000), "setns": joined,
         "left": left, "session_leader": os.getsid(0) == os.getpid()}
print("FACTS", json.dumps(facts))
'''


@needs_sandbox
def test_each_notebook_is_forked_from_one_warm_process_into_a_sandbox_of_its_own(tmp_path):
    """The notebook's process comes from one warm process (torch imported once, no notebook's
    code ever run there) and enters a sandbox bubblewrap made for it alone: no capability and
    none to get back, no namespace to make or join, nothing open of the process it came from,
    no process of the grader's in sight, nothing left of an earlier notebook (its files, its
    words in the warm process's memory)."""
    import re
    import secrets

    import psutil

    from tinyllm.grading import warm

    def facts(token: str) -> dict:
        out = _output_in_the_sandbox(f"TOKEN = {token!r}\n" + _PROBE)
        found = [line for line in out.splitlines() if line.startswith("FACTS ")]
        assert found, out
        return json.loads(found[0][6:])

    first_token, second_token = secrets.token_hex(16), secrets.token_hex(16)
    first = facts(first_token)
    server = warm._server[0]
    second = facts(second_token)
    assert warm._server[0] is server and server.poll() is None, "each notebook started a warm process of its own"
    for seen in (first, second):
        assert seen["caps"] == ["0000000000000000"] and seen["no_new_privs"] == "1", seen
        # neither attached to (ptrace, its memory read or written) nor changed through /proc (read-only: EROFS)
        assert seen["seccomp"] == "2" and seen["reach"] == {
            **{f"{call} {pid}": -1 for call in ("ptrace", "process_vm_readv") for pid in (1, 2)},
            "/proc/1/mem": errno.EROFS, "/proc/2/mem": errno.EROFS}, seen
        assert seen["unmapped"] == {"memfd_create": errno.EPERM, "shmget": [-1, errno.EPERM],
                                    "memfd_secret": [-1, errno.EPERM]}, seen
        assert seen["parent"] == 0 and seen["procs"] == [1, 2, seen["pid"]], seen  # bubblewrap's, cat, itself
        assert seen["session_leader"], seen  # a session of its own, as bubblewrap's --new-session made
        assert seen["new_user_ns"] == -1 and seen["new_mount_ns"] == -1 and seen["setns"] == -1, seen
        assert len(seen["sockets"]) == 1 and len(seen["fds"]) <= 6, seen  # 0-2, the channel; its one socket: the record
        assert not any(seen["left"].values()), seen
    # The warm process: no thread but those torch's import starts (none with one OpenMP thread, as
    # here; one idle thread with more), its socket and the three standard fds, nothing of the notebooks.
    process = psutil.Process(server.pid)
    fresh = subprocess.run([sys.executable, "-c", "import os, torch; print(len(os.listdir('/proc/self/task')))"],
                           capture_output=True, text=True, check=True)  # OMP_NUM_THREADS as the warm one
    assert process.num_threads() <= int(fresh.stdout) and process.num_fds() == 4
    chunks = []  # joined once: `memory += chunk` copied the 200 MB over and over (11 s of CPU)
    with open(f"/proc/{server.pid}/mem", "rb", buffering=0) as mem:
        for line in Path(f"/proc/{server.pid}/maps").read_text().splitlines():
            start, end, perms = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+)", line).groups()
            if perms.startswith("rw"):
                try:
                    mem.seek(int(start, 16))
                    chunks.append(mem.read(int(end, 16) - int(start, 16)))
                except OSError:
                    pass
    memory = b"".join(chunks)
    assert len(memory) > 10 << 20 and first_token.encode() not in memory and second_token.encode() not in memory
