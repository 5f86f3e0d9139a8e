"""Phase 2 of grading: the tests, run in a process that never runs learner code.

Each grading is a process forked from Python's forkserver (:func:`tinyllm.grade._judges`),
which has imported torch, otter, the grading helpers and every module the packaged tests
import; it never runs a notebook, so each fork starts as clean as a fresh ``python`` would,
without paying for those imports again.

A forked judge sets its own memory and CPU limits, imports whatever else the set's tests import
and compiles them before the notebook runs; then it starts the notebook in the sandbox
(:mod:`tinyllm.grading.serve`, :mod:`tinyllm.grading.sandbox`, :mod:`tinyllm.grading.warm`)
and runs each question's otter tests here. A test's ``checks.call(name, fn, ...)`` becomes a
request: the inputs go to the sandbox, the learner's function runs there, and its result
comes back as checked plain data. Expected values, hidden tests and a teacher's own tests
never leave this process.

A call that changes its inputs in place fails (the exercises forbid it) unless the test
says the function works in place (:func:`tinyllm.grading.checks.call_inplace`); then the
changed inputs are written into the test's own objects.
"""

from __future__ import annotations

import importlib
import os
import random
import resource
import select
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nbformat
import psutil  # noqa: F401  (the sandbox's watchdog)
import torch
from otter.test_files.abstract_test import TestCaseResult
from otter.test_files.exception_test import ExceptionTestFile

from tinyllm.grading import checks, flags, libraries, sandbox, values, warm
from tinyllm.grading.flags import NotGradable, prepared_notebook
from tinyllm.grading.results import QuestionResult, Report, first_line_of_failure
from tinyllm.grading.watch import PAUSED

SEED = 20_251_122


def compile_tests(tests: dict[str, str], imports: list[str] | None = None) -> dict[str, ExceptionTestFile]:
    """Every question's otter test file, with every module the tests import already imported
    (``imports``: :func:`tinyllm.grading.flags.imports_of_tests` of ``tests``, read by the caller once per set)."""
    for name in flags.imports_of_tests(tests) if imports is None else imports:
        importlib.import_module(name)
    return {q: ExceptionTestFile.from_string(s, path=f"{q}.py") for q, s in sorted(tests.items())}


class Session:
    """The grader's side of the channel to the sandbox; behind ``checks.call``."""

    def __init__(self, run: sandbox.Run | None, to_fd: int, from_fd: int, call_seconds: float,
                 record_fd: int | None = None):
        self.run, self.to_fd, self.from_fd, self.record_fd = run, to_fd, from_fd, record_fd
        # The watch's record (values.record), read as it comes (see read_record): its notes and the
        # forbidden functions called since the last take, and whether the notebook wrote there.
        self.recorded: tuple[set[str], set[str]] = (set(), set())
        self.tampered, self._record_lock = False, threading.Lock()
        self.call_seconds = call_seconds
        self.seconds_left = call_seconds
        self.dead: str | None = None
        self.entered: set[str] = set()
        self.forbidden: tuple[str, ...] = ()  # what the question's statement says not to call

    def fail(self, reason: str) -> None:
        """The sandbox cannot answer any more: end it, and say why from now on."""
        if self.dead is None:
            if self.run is not None:
                self.run.stop(reason)
                reason = self.run.stopped or reason
            self.dead = reason

    def send(self, message, deadline: float, why: str = "the notebook's process stopped reading the grader's requests",
             payload=None, request: bool = False):
        """Send to the sandbox by ``deadline``; one that does not read in time ends with ``why``.
        A ``request`` (a header of plain values, the inputs in ``payload``) is read there before
        any of the notebook's code can run (:func:`tinyllm.grading.values.receive_request`)."""
        try:
            if request:
                values.send_request(self.to_fd, message, payload, deadline)
            else:
                values.send(self.to_fd, message, deadline)
        except (values.ChannelError, OSError):
            self.fail(why)
            raise AssertionError(self.dead) from None

    def receive(self, deadline: float, max_elements: int = 1 << 24,
                late: str = "it did not answer in time") -> tuple[Any, list[str]]:
        """A message from the sandbox and its text part (:func:`tinyllm.grading.values.text_part`)."""
        try:
            message = (values.receive(self.from_fd, deadline, max_elements=max_elements),
                       values.receive_text(self.from_fd, deadline))
            self.read_record()  # what the watch sent before the reply is here by now
            if self.tampered:  # what is no record of the watch's: the notebook's own, to hide one
                self.fail("the notebook wrote on the grader's record of its watch: graded 0")
                raise AssertionError(self.dead)
            return message
        except values.ChannelError as exc:
            if str(exc) == values.LATE:
                self.fail(late)
            elif str(exc) == values.CLOSED:
                self.fail("the notebook's process ended (did a cell end it, os._exit, or move the watch's record?)")
            else:
                self.fail(f"the notebook's process sent no usable answer: {exc}")
            raise AssertionError(self.dead) from None

    def read_record(self) -> bool:
        """Read what the watch sent (:func:`tinyllm.grading.values.read_records`), as a thread does all
        along (:func:`_follow_record`: a call that notes much never waits); whether the sandbox's end is
        still open."""
        if self.record_fd is None:
            return False
        with self._record_lock:
            notes, forbidden, other, closed = values.read_records(self.record_fd)
            for kept, new in zip(self.recorded, (notes, forbidden)):
                kept.update(sorted(new)[:max(0, 100 - len(kept))])  # a flood of notes costs the grader nothing
            self.tampered |= other
        return not closed

    def take_recorded(self) -> tuple[set[str], set[str]]:
        """The watch's record read since the last take: (notes, forbidden functions called)."""
        with self._record_lock:
            taken, self.recorded = self.recorded, (set(), set())
        return taken

    def names(self, wanted: list[str]) -> dict:
        """The learner's values under ``wanted``: functions as stand-ins, data as plain values."""
        if self.dead:  # each call then says why it was not graded
            return {name: checks.LearnerFunction(name, self) for name in wanted}
        try:
            self.send({"kind": "names", "names": wanted}, time.monotonic() + 30, request=True)
            (kind, found), notes = self.receive(time.monotonic() + 30)
            if found is None:  # the notebook changed the watch: each call then says so
                self.fail("the notebook changed the grader's watch of the calls or what it runs")
                return {name: checks.LearnerFunction(name, self) for name in wanted}
            self.entered.update(str(e)[:200] for e in notes[:20] + sorted(self.take_recorded()[0])[:20])
            out = {}
            for name in wanted:
                kind, packed = found.get(name, ("missing", None))
                out[name] = (checks.LearnerFunction(name, self) if kind == "function"
                             else values.unpack(packed) if kind == "value" else None)
            return out
        except (AssertionError, values.ChannelError, OSError, TypeError, ValueError, KeyError, IndexError,
                AttributeError):
            self.fail(self.dead or "the notebook's process sent no usable answer")
            return {name: checks.LearnerFunction(name, self) for name in wanted}

    def call(self, name: str, args: tuple, kwargs: dict, inplace: bool = False, forbidden: tuple[str, ...] = (),
             new: bool = False, grads: tuple | None = None):
        """The learner's ``name`` called in the sandbox; ``grads``: ``(weights,)`` to get back
        ``(value, its gradients)`` (:func:`tinyllm.grading.checks.call_grad`)."""
        if self.dead:
            raise AssertionError(f"`{name}` was not graded: {self.dead}")
        if self.seconds_left <= 0:
            raise AssertionError(f"`{name}` was not run: the question's time limit was used up (an infinite loop?)")
        # Once a test names them, the forbidden functions hold for the question's later calls:
        # an answer that is the built-in loses the whole question, not one test.
        self.forbidden = forbidden = tuple(forbidden) or self.forbidden
        before = values.pack((list(args), dict(kwargs)))
        callbacks: list = []  # whether any: the sandbox looks for their markers; forbidden keys: it imports nothing
        inputs = sum(v.numel() if isinstance(v, torch.Tensor) else sum(t.numel() for t in v.state_dict().values())
                     for v in values.leaves((args, kwargs)) if isinstance(v, (torch.Tensor, torch.nn.Module)))
        seconds = min(self.seconds_left, self.call_seconds)
        payload = {"args": _wire(list(args), callbacks), "kwargs": _wire(dict(kwargs), callbacks),
                   "rng": (torch.get_rng_state(), random.getstate()), "grads": grads}
        request = {"kind": "call", "name": name, "grad": torch.is_grad_enabled(), "seconds": seconds, "new": new,
                   "callbacks": bool(callbacks), "forbidden": checks.forbidden_keys(forbidden)}
        start = time.monotonic()
        deadline = start + seconds + 5
        self.send(request, deadline, payload=payload, request=True)
        while True:
            message, notes = self.receive(deadline, max_elements=max(1 << 20, 64 * inputs),
                                   late=f"`{name}` did not return within {seconds:g} s and could not be stopped")
            if isinstance(message, tuple) and len(message) == 3 and message[0] == "callback":
                self._callback(callbacks, message, deadline)
                continue
            break
        self.seconds_left -= time.monotonic() - start
        recorded, called = self.take_recorded()  # what the notebook cannot take back (values.record)
        self.entered.update(note[:200] for note in sorted(recorded)[:20])
        try:
            kind, outcome, after = message
            assert kind == "done"
            # The text part: the failure's message first ("" when none: see serve.call), then the watch's notes.
            self.entered.update(str(e)[:200] for e in notes[1:21])
            failed = ((notes[0] if notes else "") or str(outcome[1])) if outcome[0] == "failed" else None
            failed = failed or checks.Forbidden.message(name, called) or (
                f"`{name}` ran while the notebook had switched the grader's watch of the calls off: graded 0"
                if PAUSED in recorded else None)  # the record's note: no cell takes it back
            changed = failed is None and not values.same(before, after)
            if changed and inplace:
                values.write_back(list(args), after[0])
                for key, packed in after[1].items():
                    if key in kwargs:
                        values.write_back(kwargs[key], packed)
            value = values.unpack(outcome[1]) if failed is None else None
        except Exception:
            raise AssertionError(f"the reply for `{name}` is damaged: graded 0") from None
        if failed is not None:
            raise AssertionError(" ".join(str(failed).split())[:500])
        if changed and not inplace:
            raise AssertionError(checks.changed_inputs(name, before, after))
        return value

    def _callback(self, callbacks: list, message, deadline: float) -> None:
        """The learner's function called one of the test's callable inputs: run it here."""
        try:
            index, (args, kwargs) = int(message[1]), values.unpack(message[2])
            reply = ("value", values.pack(callbacks[index](*args, **kwargs)))
        except Exception as exc:
            reply = ("error", f"{type(exc).__name__}: {exc}"[:300])
        # A sandbox that floods callbacks and reads no reply runs out of the call's time.
        self.send(reply, deadline, why="it asked for callbacks and did not read the answers")


def _wire(value, callbacks: list):
    """The inputs as sent: test-made callables become markers the sandbox calls back."""
    def leaf(v):
        if isinstance(v, torch.Tensor):
            return v.detach().clone().requires_grad_(v.requires_grad and v.is_floating_point())
        if callable(v) and not isinstance(v, (torch.nn.Module, type)):
            callbacks.append(v)
            return f"{values.CALLBACK}{len(callbacks) - 1}"
        return v

    return values.mapped(value, leaf)


def run_question(test_file: ExceptionTestFile, session: Session) -> QuestionResult:
    """One question's tests, here, with the learner's functions behind the session."""
    import inspect

    results = []
    session.seconds_left, session.entered, session.forbidden = session.call_seconds, set(), ()
    for tc in test_file.test_cases:
        passed, message = True, "✅ Test case passed"
        try:
            params = list(inspect.signature(tc.body.test_func).parameters)
            env = session.names(params)
            # The CPU generator alone: torch.manual_seed queues a seeding of every other device's too,
            # a traceback taken for each (2 ms a test case); the tests run on the CPU.
            torch.default_generator.manual_seed(SEED)
            random.seed(SEED)
            torch.set_grad_enabled(True)
            tc.body.call_func(env)
        except Exception as exc:
            try:
                detail = test_file._generate_error_message(exc)
            except Exception:
                detail = f"{type(exc).__name__}: {exc}"
            passed, message = False, "❌ Test case failed\n" + detail
        results.append(TestCaseResult(test_case=tc, message=message, passed=passed))
    test_file.test_case_results = results
    cases = [{"name": r.test_case.name, "hidden": bool(r.test_case.hidden),
              "points": float(r.test_case.points or 0), "passed": bool(r.passed), "message": r.message or ""}
             for r in results]
    failing = [c for c in cases if not c["passed"]]
    return QuestionResult(
        test_file.name, float(test_file.score), float(test_file.possible),
        public_passed=all(c["passed"] for c in cases if not c["hidden"]),
        hidden_passed=all(c["passed"] for c in cases if c["hidden"]),
        message=first_line_of_failure(failing[0]["message"]) if failing else "",
        cases=cases, flags=[f"the answer {e}" for e in sorted(session.entered)],
    )


def blank_result(test_file: ExceptionTestFile, message: str) -> QuestionResult:
    """A question that was not run: 0 of its points, no cases, and why."""
    return QuestionResult(test_file.name, 0.0, float(test_file.possible), False, False, message=message)


def blank_results(test_files: dict[str, ExceptionTestFile], message: str) -> list[QuestionResult]:
    return [blank_result(t, message) for t in test_files.values()]


def start(notebook_json: str, notebook_name: str, config: dict, output) -> tuple[sandbox.Run, int, int, int]:
    """Start the notebook's process (in the sandbox when there is one), what it prints going to
    ``output`` (a file or fd); (run, to fd, from fd, the watch's record fd)."""
    import tinyllm

    limits = sandbox.Limits(**config["limits"])
    package_dir = Path(tinyllm.__file__).resolve().parent
    to_read, to_write = os.pipe()
    from_read, from_write = os.pipe()
    record, sandbox_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # the watch's (values.record)
    record.shutdown(socket.SHUT_WR), sandbox_end.shutdown(socket.SHUT_RD)
    record.setblocking(False)
    record_read, record_write = record.detach(), sandbox_end.detach()
    serve_config = {"cell_seconds": limits.cell_seconds, "fds": [to_read, from_write, record_write],
                    "preload": flags.package_modules(config["imports"])}
    cpu = limits.seconds + 4 * limits.cell_seconds * max(len(config["tests"]), 1) + 60
    keep = [to_read, from_write, record_write]
    if config["isolated"]:
        serve_config.update(notebook=f"{sandbox.WORK}/{notebook_name}", package_dir=str(package_dir), own_pids=True)
        proc, notebook = warm.start_in_sandbox(notebook_json.encode("utf-8"), notebook_name, serve_config, limits,
                                               cpu, output if isinstance(output, int) else output.fileno())
        work = None
    else:
        work = Path(tempfile.mkdtemp(prefix="tinyllm-grade-"))
        (work / notebook_name).write_text(notebook_json, encoding="utf-8")
        serve_config.update(notebook=str(work / notebook_name), package_dir=str(package_dir))
        proc, notebook = sandbox.fork_unsandboxed(serve_config, work, output, limits, cpu), None
    for fd in keep:
        os.close(fd)
    os.set_blocking(to_write, False)  # every send to the sandbox has a deadline
    return sandbox.Run(proc, limits, work, notebook), to_write, from_read, record_read


def _follow_record(session: Session) -> None:
    """A thread: read the watch's record as it comes, until its end in the sandbox closes (an
    empty read; the reading after each reply goes on) or the session closes it. A read that finds
    nothing is not the end: the reading after a reply may have taken what select saw."""
    while True:
        try:
            if select.select([session.record_fd], [], [], 0.5)[0] and not session.read_record():
                return
        except (OSError, ValueError):
            return


def _keep_tail(fd: int, tail: bytearray, keep: int = 2000) -> None:
    with open(fd, "rb", buffering=0) as output:
        while chunk := output.read(1 << 16):
            tail[:] = (tail + chunk)[-keep:]


def judge(config: dict, test_files: dict[str, ExceptionTestFile]) -> Report:
    notebook = Path(config["notebook"])
    assignment = config["assignment"]
    checks.SEED_SALT = config["seed"]
    notes = list(config["notes"])  # why it was graded without the sandbox, if it was
    try:
        original, notebook_json = prepared_notebook(notebook, assignment)
    except NotGradable as exc:
        return Report(str(notebook), assignment, blank_results(test_files, str(exc)), error=str(exc), notes=notes)
    literal = flags.imported_answers(original, config["provided"])
    sandbox.adopt_orphans()
    # What the notebook prints only matters for its last words: read as it comes, keep the end.
    output_r, output_w = os.pipe()
    tail = bytearray()
    try:
        run, to_fd, from_fd, record_fd = start(notebook_json, f"{assignment}.ipynb", config, output_w)
    finally:
        os.close(output_w)
    reader = threading.Thread(target=_keep_tail, args=(output_r, tail), daemon=True)
    reader.start()  # after the start: a process forked for the notebook gets no thread of this one
    session = Session(run, to_fd, from_fd, run.limits.cell_seconds, record_fd)
    follower = threading.Thread(target=_follow_record, args=(session,), daemon=True)
    follower.start()
    error = None
    try:
        try:
            late = f"grading stopped after {run.limits.seconds:g} s: the notebook runs too long"
            ready, cell_notes = session.receive(time.monotonic() + run.limits.seconds, late=late)
            if ready != ("ready",):
                raise TypeError("not a ready message")
            notes += [" ".join(n.split())[:300] for n in cell_notes[:10] + sorted(session.take_recorded()[0])[:10]]
        except AssertionError:
            error = session.dead
        except (TypeError, IndexError, KeyError, ValueError):
            session.fail("the notebook's process sent no usable answer")
            error = session.dead
        questions = []
        for test_file in [] if error else test_files.values():
            if session.dead:  # the sandbox ended during an earlier question: this one never ran
                questions.append(blank_result(test_file, f"not graded: {session.dead}"))
            else:
                questions.append(run_question(test_file, session))
        error = error or session.dead
    finally:
        run.stop()
        follower.join(5)  # it ends with the sandbox: a number closed under it could name the next file opened
        for fd in (to_fd, from_fd, record_fd):
            os.close(fd)
    reader.join(5)
    if error:  # the last words of the notebook's process say why, often
        last = [line for line in tail.decode("utf-8", "replace").splitlines() if line.strip()]
        if last:
            notes.append(f"the notebook's last output: {last[-1][:200]}")
    if not questions:
        questions = blank_results(test_files, error or "not graded")
    for q in questions:
        q.flags = literal.get(q.name, []) + q.flags
    return Report(str(notebook), assignment, questions, error=error, notes=notes)


def judge_child(config: dict, reply) -> None:
    """One grading, in a process forked for it: set its limits, judge, send the report."""
    memory, cpu_seconds = config["judge_limits"]  # memory soft, so the sandbox can get its own
    resource.setrlimit(resource.RLIMIT_DATA, (memory, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_seconds), resource.getrlimit(resource.RLIMIT_CPU)[1]))
    try:
        test_files = compile_tests(config["tests"], config["imports"])  # before any learner code runs
        # Every question at 0 first: what the report says if this process is stopped from outside.
        reply.send(("blank", [asdict(q) for q in blank_results(test_files, "not graded")]))
        data = judge(config, test_files).to_dict()
        data["judge_peak_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        reply.send(("report", data))
    except BaseException as exc:  # a bug of the grader's own, said in one line
        where = traceback.extract_tb(exc.__traceback__)[-1]
        reply.send(("failed", f"{type(exc).__name__}: {exc} ({Path(where.filename).name}:{where.lineno})"[:500]))


def warm_up() -> None:
    """What every grading would otherwise work out again in its own fork: the installation's
    import folders (a ``python`` started to ask), nbformat's compiled notebook schema and the
    watch's tables (:func:`tinyllm.grading.sandbox.known_code`): 0.3 s of CPU a grading."""
    sandbox.fresh_python(), nbformat.validator.get_validator(), sandbox.known_code()
    libraries.warm_up()  # the watch's table of genuine files, for a notebook forked from a judge (isolate=False)


warm_up()  # this module is imported once in the warm process every judge is forked from
