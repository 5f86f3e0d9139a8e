"""Record the learner's calls where the notebook ran; replay them where it never ran.

Every test calls the learner's functions only through :func:`tinyllm.grading.checks.call`,
with inputs it makes itself. Grading therefore runs each question's tests twice:

1. *record*, in the graded notebook's own kernel (see :mod:`tinyllm.grading.runner`): each
   ``checks.call`` calls the learner's function and keeps the call's inputs (before and,
   when the function changed them, after), and its result or its one-line failure. The
   question's calls are saved with ``torch.save`` as plain data (tensors, numbers, strings,
   lists, tuples, dicts; a module as its ``state_dict``; anything else as "a <type>").
2. *replay*, in the grader's own process, which never ran the notebook: the same tests run
   with :class:`Replayer` behind ``checks.call``. It checks that each call's name and inputs
   are the ones this clean run made, writes the recorded after-call state into the inputs
   (so tests that check for changes in place still see them), and returns the recorded
   result. Only this run's verdicts count.

Whatever the notebook does to its own process (replace ``checks.close``, ``torch.allclose``,
``builtins.isinstance``, otter), it changes only what phase 1 *records*: recorded outputs
are then compared by untouched code, so tampering earns nothing. A forged recording can
only claim outputs, and claimed outputs must still be right. The file is read with
``torch.load(weights_only=True)``, which builds tensors and plain data, never objects.

Before each test case both runs seed ``torch`` and ``random`` the same way, and the
recorder restores both generators after each learner call, so a test's inputs do not
depend on what the learner's code drew.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import torch

from tinyllm.grading.values import pack, same, unpack, write_back

SEED = 20_251_122
MAX_MESSAGE = 500  # characters of a recorded failure message

_local = threading.local()


def active():
    """The recording or replaying session of this thread, or None (a plain call)."""
    return getattr(_local, "session", None)


def seed() -> None:
    """The same random state before every test case, in both runs."""
    torch.manual_seed(SEED)
    random.seed(SEED)


# ---------------------------------------------------------------------------------------
# The two sessions behind checks.call
# ---------------------------------------------------------------------------------------


class Recorder:
    """Phase 1, in the notebook's kernel: call the learner's function and keep what it did."""

    def __init__(self, seconds: float, direct_call):
        self.calls: dict[str, list[dict]] = {}
        self.params: dict[str, dict] = {}
        self.case: str | None = None
        self.seconds_left = seconds  # for all the question's calls together
        self._direct_call = direct_call

    def start(self, case: str, params: list[str], env: dict) -> dict:
        """Begin a test case; the learner's names it takes, as the replay will see them."""
        self.case = case
        self.calls.setdefault(case, [])
        names, packed = {}, {}
        for name in params:
            value = env.get(name)
            if callable(value):  # a function: only ever called through checks.call
                names[name], packed[name] = value, ("other", "function")
            else:  # data the learner made (a vocabulary, ...): the test reads a copy
                packed[name] = pack(value)
                names[name] = unpack(packed[name])
        self.params[case] = packed
        return names

    def call(self, name: str, fn, args: tuple, kwargs: dict):
        import signal
        import time

        before = pack((list(args), dict(kwargs)))
        torch_state, python_state = torch.get_rng_state(), random.getstate()
        entry = {"name": str(name), "inputs": before, "after": None}
        if self.seconds_left <= 0:
            entry["failed"] = f"`{name}` was not run: the question's time limit was used up (an infinite loop?)"
        else:
            start = time.monotonic()
            can_alarm = hasattr(signal, "setitimer")
            try:
                if can_alarm:
                    signal.setitimer(signal.ITIMER_REAL, max(self.seconds_left, 0.05))
                try:
                    value = self._direct_call(name, fn, *args, **kwargs)
                finally:
                    if can_alarm:
                        signal.setitimer(signal.ITIMER_REAL, 0)
                entry["value"] = pack(value)
            except AssertionError as exc:
                entry["failed"] = str(exc)[:MAX_MESSAGE]
            except BaseException as exc:  # SystemExit, KeyboardInterrupt, a late alarm
                entry["failed"] = f"`{name}` raised {type(exc).__name__}: {exc}"[:MAX_MESSAGE]
            self.seconds_left -= time.monotonic() - start
        torch.set_rng_state(torch_state)
        random.setstate(python_state)
        after = pack((list(args), dict(kwargs)))
        if not same(before, after):
            entry["after"] = after
            write_back(list(args), after[1][0])  # already changed; keeps both runs alike
        self.calls[self.case].append(entry)
        if "failed" in entry:
            raise AssertionError(entry["failed"])
        # The test goes on with the recorded copy, exactly as the replay will.
        return unpack(entry["value"])


class Replayer:
    """Phase 2, in a clean process: hand the tests the recorded results, in order."""

    def __init__(self, calls: dict[str, list[dict]] | None, missing: str, params: dict | None = None):
        self.calls = calls or {}
        self.params = params or {}
        self.missing = missing  # why a call has no recording (the notebook stopped, ...)
        self.case: str | None = None
        self.index = 0

    def start(self, case: str, params: list[str], env=None) -> dict:
        self.case, self.index = case, 0
        recorded = self.params.get(case) if isinstance(self.params.get(case), dict) else {}
        names = {}
        for name in params:
            packed = recorded.get(name)
            try:
                usable = packed is not None and packed[0] not in ("other", "module")
                names[name] = unpack(packed) if usable else _LearnerName(name)
            except Exception:
                names[name] = _LearnerName(name)
        return names

    def call(self, name: str, fn, args: tuple, kwargs: dict):
        entries = self.calls.get(self.case) or []
        if self.index >= len(entries):
            raise AssertionError(self.missing.format(name=name))
        entry = entries[self.index]
        self.index += 1
        try:
            recorded_name, inputs = entry["name"], entry["inputs"]
            after, value, failed = entry.get("after"), entry.get("value"), entry.get("failed")
        except (TypeError, KeyError):
            raise AssertionError("the grader's record of this test is damaged: graded 0") from None
        if recorded_name != name or not same(inputs, pack((list(args), dict(kwargs)))):
            raise AssertionError(
                f"the graded run called `{recorded_name}` on other inputs than this test makes: "
                "the notebook changed the tests, torch or the grader (tampering, graded 0)"
            )
        if after is not None:
            try:
                write_back(list(args), after[1][0])
                for key, packed in after[1][1][1]:
                    if unpack(key) in kwargs:
                        write_back(kwargs[unpack(key)], packed)
            except Exception:
                raise AssertionError("the grader's record of this test is damaged: graded 0") from None
        if failed is not None:
            raise AssertionError(str(failed)[:MAX_MESSAGE])
        try:
            return unpack(value)
        except Exception:
            raise AssertionError("the grader's record of this test is damaged: graded 0") from None


# ---------------------------------------------------------------------------------------
# Running a question's tests in either session
# ---------------------------------------------------------------------------------------


class _LearnerName:
    def __init__(self, name):
        self.name = name

    def __call__(self, *args, **kwargs):
        raise AssertionError(f"the test called `{self.name}` outside checks.call: fix the test")


def run_tests(source: str, question: str, env: dict | None, session):
    """Run one question's otter test file with ``session`` behind ``checks.call``.

    ``env`` is the learner's namespace (recording) or None (replay). Returns otter's
    ``ExceptionTestFile`` with its ``test_case_results`` filled in.
    """
    import inspect

    from otter.test_files.abstract_test import TestCaseResult
    from otter.test_files.exception_test import ExceptionTestFile

    test_file = ExceptionTestFile.from_string(source, path=f"{question}.py")
    results = []
    _local.session = session
    try:
        for tc in test_file.test_cases:
            passed, message = True, "✅ Test case passed"
            try:
                params = list(inspect.signature(tc.body.test_func).parameters)
                names = session.start(tc.name, params, env)
                seed()
                tc.body.call_func(names)
            except Exception as exc:
                try:
                    detail = test_file._generate_error_message(exc)
                except Exception:
                    detail = f"{type(exc).__name__}: {exc}"
                passed, message = False, "❌ Test case failed\n" + detail
            results.append(TestCaseResult(test_case=tc, message=message, passed=passed))
    finally:
        _local.session = None
    test_file.test_case_results = results
    return test_file


def record_question(tests: dict[str, str], question: str, out: str, seconds: float) -> None:
    """Phase 1 (in the kernel): run a question's tests on the learner's names; save the calls."""
    import os
    import signal

    from IPython import get_ipython

    from tinyllm.grading import checks

    if hasattr(signal, "setitimer"):
        signal.setitimer(signal.ITIMER_REAL, 0)  # the recorder times each call itself
    torch.set_default_dtype(torch.float32)
    torch.set_grad_enabled(True)
    recorder = Recorder(seconds, checks.direct_call)
    run_tests(tests[question], question, get_ipython().user_ns, recorder)
    tmp = f"{out}.tmp"
    torch.save({"question": question, "calls": recorder.calls, "params": recorder.params}, tmp)
    os.replace(tmp, out)


def load_recording(path: Path) -> tuple[dict, dict] | None:
    """(calls, learner data) recorded for one question, or None without a readable record."""
    import io

    from tinyllm.grading.sandbox import read_file

    raw = read_file(Path(path), 1 << 30)
    if raw is None:
        return None
    try:
        data = torch.load(io.BytesIO(raw), weights_only=True, map_location="cpu")
        calls, params = data["calls"], data.get("params", {})
        if not isinstance(calls, dict) or not isinstance(params, dict):
            return None
        return calls, params
    except Exception:
        return None
