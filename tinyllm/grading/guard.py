"""Limits installed inside the process of a notebook being graded (:mod:`tinyllm.grading.serve`).

:mod:`tinyllm.grading.serve` calls ``install(...)`` before it runs the notebook's cells. Then

- every cell (a learner's cell, or the cell in which a question's tests are recorded) has a
  time limit: when it runs out, ``CellTimeout`` is raised where the code is, the cell fails
  and grading goes on with the next one. The alarm re-arms itself every ``RETRY_SECONDS``
  until the cell ends, so a test that calls a looping function a second time is stopped too.
- printed output is capped per cell, so a ``print`` in a loop cannot flood the grader.

An infinite loop therefore costs its own question, not the whole notebook. Signals need the
main thread of a POSIX process (the shell runs cells there); elsewhere only the output cap
applies and the grader still ends a notebook that runs past its overall limit.
"""

from __future__ import annotations

import signal
import sys

RETRY_SECONDS = 2.0


class CellTimeout(TimeoutError):
    """A cell ran longer than the grader allows."""


class _CappedStream:
    """Wraps ``sys.stdout``/``sys.stderr``: passes the first ``limit`` characters of each cell."""

    def __init__(self, stream, limit: int):
        self._stream = stream
        self._limit = limit
        self._written = 0
        self._cut = False

    def reset(self) -> None:
        self._written, self._cut = 0, False

    def write(self, text):
        if self._cut:
            return len(text)
        room = self._limit - self._written
        self._written += len(text)
        if len(text) <= room:
            return self._stream.write(text)
        self._stream.write(text[: max(room, 0)])
        self._stream.write(f"\n[output cut by the grader: more than {self._limit:,} characters in one cell]\n")
        self._cut = True
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def install(cell_seconds: float = 30.0, max_output_chars: int = 20_000) -> None:
    """Set the per-cell time limit and output cap in the running IPython shell."""
    from IPython import get_ipython

    # Import the heavy modules now, before any time limit: an import cut short by the alarm
    # would leave torch half-initialised and break every later question.
    import tinyllm.grading.checks  # noqa: F401  (imports torch)

    ip = get_ipython()
    streams = [_CappedStream(sys.stdout, max_output_chars), _CappedStream(sys.stderr, max_output_chars)]
    sys.stdout, sys.stderr = streams

    # A gigantic value as a cell's last expression is cut the same way.
    compute = ip.displayhook.compute_format_data

    def capped_format_data(result):
        data, metadata = compute(result)
        text = data.get("text/plain")
        if isinstance(text, str) and len(text) > max_output_chars:
            data = {"text/plain": text[:max_output_chars] + "\n[output cut by the grader]"}
        return data, metadata

    ip.displayhook.compute_format_data = capped_format_data

    can_alarm = hasattr(signal, "setitimer")

    def on_alarm(signum, frame):
        signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)
        raise CellTimeout(
            f"stopped by the grader after {cell_seconds:g} s: this runs too long (an infinite loop?)"
        )

    def before_cell(*args):
        for stream in streams:
            stream.reset()
        if can_alarm:
            signal.setitimer(signal.ITIMER_REAL, cell_seconds)

    def after_cell(*args):
        if can_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)

    if can_alarm:
        signal.signal(signal.SIGALRM, on_alarm)
    ip.events.register("pre_run_cell", before_cell)
    ip.events.register("post_run_cell", after_cell)
