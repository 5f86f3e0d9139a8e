"""Phase 1 of grading, in the sandbox: run the notebook's cells, then answer calls.

Started by :mod:`tinyllm.grading.judge` (inside :mod:`tinyllm.grading.sandbox`)::

    python -m tinyllm.grading.serve CONFIG_JSON      # the channel's fds are in the config

It runs the notebook's code cells in an IPython shell (so ``%time`` and ``!ls`` work) and
says "ready". Every cell has a time limit: when it runs out, ``CellTimeout`` is raised where
the code is, the cell fails and the next one runs, so an infinite loop costs its own
question, not the whole notebook; the alarm re-arms itself every ``RETRY_SECONDS`` until
the cell ends (a cell that catches the first one is stopped too). What the notebook prints
goes to the grader, which keeps only its last lines (:func:`tinyllm.grading.judge.judge`).
Then it serves the grader: ``names`` (what the learner defined under the names a test
takes: a function, or its data as plain values) and ``call`` (call the learner's function
on the inputs sent, reply with the result and the inputs as they are after the call, both
as plain data, or the one-line failure). Callable inputs (the tests' lambdas) stay in the
grader: calling one here asks the grader to run it. After the last cell, the notebook's code
runs only inside the watch: a request is read with C functions taken before any cell ran
(:func:`tinyllm.grading.values.receive_request`), its inputs are unpickled once the call's
watch is on, names are looked up without running the notebook's code, every reply is
written while a watch is on (after it, only bytes and str methods run), the garbage
collector stays off, and a call's objects are freed when the next call's watch is on: no
finalizer of the notebook's runs between calls.

No test runs here and no expected value is ever sent here. Nothing this process says is
trusted: the grader reads every reply as plain data alone (:func:`tinyllm.grading.wire.loads`).
While a learner's function runs, :class:`tinyllm.grading.watch.Monitor` notes entries into
the package's own code (or a copy of it), other than the ``forward`` of a module it was given
or the ``encode``/``decode`` of a tokenizer it was given (a flag, see
:mod:`tinyllm.grading.flags`), and calls of the functions the question forbids.
"""

from __future__ import annotations

import gc
import importlib
import json
import marshal
import os
import random
import signal
import sys

import torch  # here, not in a function: an import statement reads the module's __spec__, which a cell can replace

from tinyllm.grading import checks, values
from tinyllm.grading.fingerprints import type_qualname, versions
from tinyllm.grading.watch import Monitor

REQUEST_FD, REPLY_FD = -1, -1  # set from the config: the channel to the grader
MAX_MESSAGE = 500
RETRY_SECONDS = 2.0
# The reply to a call made after the notebook changed the watch or what it runs (Monitor.tampered),
# made before any cell runs and written by a function taken then: nothing of the notebook's can
# run while it is sent, so nothing can rewrite it.
TAMPERED = ("the call was not made: the notebook changed the grader's watch of the calls or what it runs "
            "(tinyllm.grading's code in the sandbox, torch's function modes or serialization, Python's "
            "builtins): graded 0")
# Taken before any cell runs: a cell's signal.setitimer would run after the watch stops, up the stack
# from the reply it could rewrite.
_WRITE, _gc_disable, _dict_get = values.write, gc.disable, dict.get
_HELD: list = []  # the last call's objects (see call())
_setitimer, _REAL = signal.setitimer, signal.ITIMER_REAL


class CellTimeout(TimeoutError):
    """A cell, or a call of a learner's function, ran longer than the grader allows."""

# Errors that mean a cell hit one of the grader's limits, and what to tell the learner.
LIMIT_ERRORS = [
    ("MemoryError", "", "ran out of memory (the grader's memory limit)"),
    ("", "can't allocate memory", "ran out of memory (the grader's memory limit)"),
    ("", "File too large", "wrote a file larger than the grader allows"),
    ("", "No space left", "wrote more files than the grader allows"),
    ("", "Resource temporarily unavailable", "started more processes than the grader allows"),
    ("CellTimeout", "", "ran too long (the grader's time limit per cell)"),
]


def limit_note(exc: BaseException, number: int) -> str | None:
    name, value = type(exc).__name__, str(exc)
    for error, text, meaning in LIMIT_ERRORS:
        if (error and name == error) or (text and text in value):
            return f"cell {number} {meaning}: {name}: {value}"[:300]
    return None


class Callback:
    """A test's callable input: calling it asks the grader to run it (the test's code stays there)."""


    def __init__(self, index: int):
        self.index = index

    def __call__(self, *args, **kwargs):
        values.write(REPLY_FD, values.encode(("callback", self.index, values.pack((list(args), dict(kwargs)))))
                     + values.text_part(()))
        kind, payload = values.receive(REQUEST_FD, trusted=True)
        if kind != "value":
            raise RuntimeError(payload)
        return values.unpack(payload)


Callback.__name__ = Callback.__qualname__ = "function"  # packed like the test's own callable


def plain(value, depth: int = 0) -> bool:
    """Whether ``value`` is plain data by exact types alone (``isinstance`` could read a
    ``__class__`` of the notebook's): it can be packed without running anything of the notebook's."""
    kind = type(value)  # compared by identity: `in` would call a metaclass's __eq__ or __hash__
    if kind is bool or kind is int or kind is float or kind is str or value is None or kind is torch.Tensor:
        return True
    if depth > values.MAX_DEPTH or not (kind is list or kind is tuple or kind is dict):
        return False
    for item in (list(value.keys()) + list(value.values())) if kind is dict else value:
        if not plain(item, depth + 1):
            return False
    return True


def _with_callbacks(value):
    def leaf(v):
        if isinstance(v, str) and v.startswith(values.CALLBACK):
            return Callback(int(v[len(values.CALLBACK):]))
        return v

    return values.mapped(value, leaf)


def without_tqdm_monitor() -> None:
    """tqdm's monitor thread is not started here: every thread alive at a call is the notebook's."""
    try:
        import tqdm
    except ImportError:
        return
    tqdm.tqdm.monitor_interval = 0


def call(namespace: dict, monitor: Monitor, request: tuple, refusal: bytes, failed: bytes, baseline: tuple) -> None:
    """One call of a learner's function, and its reply sent (``request``: its header and its
    inputs' bytes; ``refusal``: the reply written instead when the notebook changed the watch,
    before the call or during it; ``failed``: a failed call's, its message in the text part).
    Both are encoded before any cell runs."""
    header, payload = request
    if monitor.tampered(True, baseline):  # before anything of the notebook's runs (a changed part would run here)
        _WRITE(REPLY_FD, refusal)
        return
    name, new = header["name"], bool(header.get("new"))
    _setitimer(_REAL, max(header["seconds"], 0.05))
    watched = monitor.start(None, header.get("forbidden", ()))  # in this frame's fast locals: see changed()
    watching = True  # see call_running
    _HELD.clear()  # the last call's objects: their finalizers run watched, counted against this call
    # Everything from here to the reply can run the learner's code, so it is watched and on
    # the clock: reading the inputs (unpickling runs a class's __setstate__ and reads modules'
    # attributes, which a cell could have replaced), looking the name up (a namespace a cell
    # replaced with a mapping of its own), functions a cell replaced (torch.set_rng_state),
    # packing the value (a tensor subclass's __torch_function__, a list's __iter__).
    inputs: tuple = ((), ())
    reply, failure = failed, "the grader could not finish the call"  # until the call gets further
    try:
        try:
            request = values.load_payload(payload)
            args, kwargs = request["args"], request["kwargs"]
            if header.get("callbacks"):
                args, kwargs = _with_callbacks(args), _with_callbacks(kwargs)
            # Taken before the learner's function runs, into values it cannot change from up the
            # stack (through this frame's `request`, `args` or `kwargs`): the check of a new result,
            # and the inputs read back after the call.
            inputs = (tuple(args), tuple(kwargs.items()))
            given = values.given((args, kwargs)) if new else None
            monitor.given((args, kwargs))
            given_ids = frozenset(monitor.allowed_selves)  # for given_by_test: a cell can edit the watch's table
            fn = namespace.get(name)
            torch.set_rng_state(request["rng"][0])
            random.setstate(request["rng"][1])
            torch.set_grad_enabled(header["grad"])
            torch.set_default_dtype(torch.float32)
            result = fn(*args, **kwargs)
            outcome = ("value", values.pack(result))
            if request.get("grads") is not None:  # checks.call_grad: the gradients are taken here too
                grads, why = checks.gradients(name, result, (args, kwargs), request["grads"][0])
                outcome = ("failed", why) if why else ("value", values.pack((result, grads)))
            stale = checks.not_new(name, result, given) if new else None
            if stale:
                outcome = ("failed", stale)
        except AssertionError as exc:
            outcome = ("failed", f"`{name}` failed one of its own asserts: {exc}")
        except BaseException as exc:  # SystemExit, KeyboardInterrupt, the time limit
            outcome = ("failed", f"`{name}` raised {type(exc).__name__}: {exc}")
        try:
            after = values.pack((list(inputs[0]), dict(inputs[1])))
        except BaseException as exc:
            after, outcome = None, ("failed", f"`{name}` left inputs that cannot be read: {type(exc).__name__}")
        # This call's objects are held until the next call's watch is on (freed after it, they would
        # run their finalizers between calls); whatever the notebook put in _HELD goes now, watched,
        # before the reply is written and checked.
        _HELD[:] = [locals()]
        # The reply is written while the watch is on: packing and json run Python a cell could have
        # replaced or hooked (a tensor's methods, a function mode left on), which would
        # run unwatched after it. The checks below come after it: it may run such code too.
        try:
            reply = values.encode(("done", outcome, after))
        except BaseException as exc:
            outcome = ("failed", f"`{name}` returned a value the grader could not write ({type(exc).__name__})")
        try:
            forbidden = monitor.forbidden.failure(name) if monitor.forbidden is not None else None
            if forbidden:
                outcome = ("failed", forbidden)
            if monitor.changed(watched, baseline):
                outcome = ("failed", f"`{name}` ran after the notebook changed the grader's watch of the calls "
                                     "(tinyllm.grading's code in the sandbox): graded 0")
        except BaseException as exc:
            outcome = ("failed", f"`{name}` broke the grader's watch of the call ({type(exc).__name__}): graded 0")
        if outcome[0] == "failed":  # its text goes in the text part: no encoding (the notebook's code) from here
            reply, failure = failed, " ".join(outcome[1].split())[:MAX_MESSAGE]
    finally:
        stopping = True  # see call_running
        entered = monitor.stop()
        _setitimer(_REAL, 0)
    # After the watch, the reply is only framed (bytes and str methods); a part of the watch changed
    # during the call (seen by changed() above, or since) gets the refusal instead.
    if monitor.tampered(True, baseline):
        _WRITE(REPLY_FD, refusal)
        return
    # The failure first ("" if none), then the watch's notes, which went on its record already: sent
    # twice because a cell can shut the record (os.dup2 over its socket) during the call, and the
    # reply is the one channel a refusal guards.
    _WRITE(REPLY_FD, reply + values.text_part([failure, *entered]))


def _outermost_call(frame, call_code=call.__code__):
    """The outermost frame of :func:`call` up the stack from ``frame``, or None (an answer that
    runs call() itself is inside it). What it holds is read from its fast locals, which no cell can
    write."""
    found = None
    while frame is not None:
        if frame.f_code is call_code:
            found = frame
        frame = frame.f_back
    return found


def given_by_test(frame, key: int, outermost=_outermost_call) -> bool:
    """Whether ``key`` (an object's id) is one the test gave the call, as the outermost :func:`call`
    holds them: its ``given_ids`` (a cell can reach the watch's own table, ``Monitor.allowed_selves``,
    and add to it)."""
    found = outermost(frame)
    return found is not None and key in found.f_locals.get("given_ids", ())


def call_running(thread: int, frames=sys._current_frames, outermost=_outermost_call) -> bool:
    """Whether a call's watch is on in ``thread`` (the calls' own): the outermost :func:`call` on its
    stack has started it and not begun to stop it."""
    found = outermost(frames().get(thread))
    return found is not None and "watching" in (local := found.f_locals) and "stopping" not in local


def names(namespace: dict, monitor: Monitor, wanted: list[str], refused: bytes, baseline: tuple) -> bytes:
    """The reply to a request for what the notebook holds under ``wanted``, found without
    running anything of the notebook's: the namespace's own dict read with dict's getter, a
    value packed only if it is plain data by its exact types. It is written with the watch on
    (encoding runs Python a cell could have replaced); ``refused`` when the notebook
    changed the watch."""
    if monitor.tampered(True, baseline):  # each call is then refused, saying why
        return refused
    monitor.start(None)
    _HELD.clear()
    try:
        out = {}
        for name in wanted:
            value = _dict_get(namespace, name)
            out[name] = (("missing", None) if value is None else ("function", None) if callable(value)
                         else ("value", values.pack(value)) if plain(value)
                         else ("value", (values.OBJECT, type_qualname(type(value)), None)))
        reply = values.encode(("names", out))
    except BaseException:  # a value that cannot be written
        reply = None
    finally:
        entered = monitor.stop()
    return refused if reply is None or monitor.tampered(True, baseline) else reply + values.text_part(entered)


_WATCH_CALLBACKS = (Monitor._profile.__code__, Monitor._thread_profile.__code__)  # taken before any cell


def _in_watch(frame, callbacks=_WATCH_CALLBACKS) -> bool:
    """Whether ``frame`` runs inside the watch's profiler callback, where an exception (a time limit's)
    makes CPython remove the profiler: the watch would note that the answer switched it off."""
    while frame is not None:
        if frame.f_code is callbacks[0] or frame.f_code is callbacks[1]:
            return True
        frame = frame.f_back
    return False


def alarm_handler(seconds: float, in_watch=_in_watch, setitimer=_setitimer, real=_REAL, retry=RETRY_SECONDS,
                  timeout=CellTimeout):
    """The SIGALRM handler of a cell's time limit (``seconds``). What it calls is bound here, when this
    module is imported, before any cell: looked up in the module's globals when the alarm strikes, a
    cell's replacement would run there (the watch notes serve's changed dict, but the cell's own limit
    would be deferred). A cell can still switch its own alarm off; the notebook's whole limit
    (Limits.seconds, kept by the grader outside) stops it then."""

    def on_alarm(signum, frame):
        if in_watch(frame):  # raised there, CPython would take the watch off: read as the answer's doing
            setitimer(real, 0.01)  # so it strikes a moment later, in the answer's own code
            return
        setitimer(real, retry)
        raise timeout(f"stopped by the grader after {seconds:g} s: this runs too long (an infinite loop?)")

    return on_alarm


def settled(monitor: Monitor, baseline: tuple, read=versions) -> tuple:
    """``baseline`` (:meth:`Monitor.baseline`) with its parts' and builtins' dicts' versions read now, if the
    watch finds nothing changed now; else as it was. IPython writes builtins at each cell (its builtin trap adds
    ``get_ipython`` and puts back what was there): from the baseline taken before the cells, every call's check
    would compare their names one by one. The versions are read first, then the whole check: a write after the
    reading moves them again."""
    now = (*baseline[:5], read(baseline[4]))
    return baseline if monitor.tampered(True, baseline) else now


def main(argv: list[str] | None = None) -> int:
    global REQUEST_FD, REPLY_FD
    config = json.loads((argv if argv is not None else sys.argv[1:])[0])
    REQUEST_FD, REPLY_FD, record_fd = config["fds"]  # the last: the watch's record (values.record)
    this = sys.modules[__name__]  # before IPython's shell, which puts a module of its own as __main__
    assert vars(this) is globals()

    # Imported before any time limit (torch at the top): an import cut short by the alarm would
    # leave it half-initialised and break every later question.
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    shell_config = Config()
    shell_config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=shell_config)
    seconds = config["cell_seconds"]

    signal.signal(signal.SIGALRM, alarm_handler(seconds))
    shell.events.register("pre_run_cell", lambda *_, arm=_setitimer, real=_REAL: arm(real, seconds))
    shell.events.register("post_run_cell", lambda *_, arm=_setitimer, real=_REAL: arm(real, 0))
    for name in config.get("preload", []):  # the modules of the objects a call may be given
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    torch.ones(256, 256) @ torch.ones(256, 256)  # torch's threads start now, not in a call (Unseen.started)
    # This module is guarded too: its functions and globals (_WRITE) write every reply, after the watch.
    tables = None
    if config.get("tables") is not None:  # the grader's (sandbox.known_code): made there, read before any cell
        with os.fdopen(config["tables"], "rb") as file:
            tables = marshal.load(file)
    monitor = Monitor(config["package_dir"], own_pids=config.get("own_pids", False), guarded=(this,), ledger=record_fd,
                      given_by_test=given_by_test, call_running=call_running, tables=tables)
    baseline = monitor.baseline()  # in this frame's fast locals, which no cell writes: see Monitor.tampered
    # Encoded before any cell runs: after the watch, nothing may encode a message (see call()).
    refusal = values.encode(("done", ("failed", TAMPERED), None)) + values.text_part(())
    failed = values.encode(("done", ("failed", ""), None))  # a failed call's: its message in the text part
    ready, names_refused = values.encode(("ready",)), values.encode(("names", None)) + values.text_part(())
    answer, named, receive, settle = call, names, values.receive_request, settled  # as they are before any cell
    namespace = shell.user_ns  # a cell that puts a mapping of its own there defines nothing in this one
    assert type(namespace) is dict
    without_tqdm_monitor()
    with open(config["notebook"], encoding="utf-8") as f:
        cells = [c for c in json.load(f)["cells"] if c.get("cell_type") == "code"]
    notes = []
    for number, cell in enumerate(cells, start=1):
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        result = shell.run_cell(source, store_history=False, silent=False)
        error = result.error_in_exec
        note = limit_note(error, number) if error is not None else None
        if note:
            notes.append(note)
        sys.stdout.flush()
    _setitimer(_REAL, 0)
    # From here on the notebook's code runs only inside the watch: no collection (and no finalizer
    # of the notebook's) between calls, while a request is read.
    _gc_disable()
    baseline = settle(monitor, baseline)
    _WRITE(REPLY_FD, ready + values.text_part(notes))
    while True:
        try:
            request = receive(REQUEST_FD)
        except values.ChannelError:
            return 0
        if request[0]["kind"] == "names":
            _WRITE(REPLY_FD, named(namespace, monitor, request[0]["names"], names_refused, baseline))
        elif request[0]["kind"] == "call":
            answer(namespace, monitor, request, refusal, failed, baseline)
        else:
            return 0


if __name__ == "__main__":
    os._exit(main())
