"""What a notebook can set up that runs code where the call watch (:mod:`tinyllm.grading.watch`)
cannot see it: threads and processes started before the call, a second interpreter, functions
compiled by TorchScript, a trace function, a signal handler or a garbage-collector callback;
(:func:`graph_runner`) code that runs a graph traced by torch.fx or torch.compile; and
(:meth:`Unseen.audited`) ctypes reaching the process's memory, with which code can pause every profiler.

:class:`Unseen` reads them when a call starts and again when it ends, through functions taken
before any cell ran (a cell that replaced ``sys._current_frames`` would hide its threads).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
import time

from tinyllm.grading.libraries import _address, dotted

TRACED = "ran while a trace function the notebook set (sys.settrace) was on, whose code the watch does not see"
OTHER_INTERPRETER = ("ran while a second Python interpreter the notebook started in its process was alive, "
                     "which the watch does not see")
FROM_C = ("started a thread or process the watch does not follow (from C code: a starter called through map, "
          "ctypes)")
# ctypes reaching the process's memory or C functions: with them a cell can write CPython's thread state (its `tracing`
# count pauses every profiler, unseen) or torch's. Noted in a call, and at each call after a cell's use. Not loading a
# library (ctypes.dlopen): importing transformers does, and nothing is reached until a symbol is looked up.
RAW_MEMORY_EVENTS = {"ctypes.addressof", "ctypes.call_function", "ctypes.cdata", "ctypes.cdata/buffer",
                     "ctypes.dlsym", "ctypes.dlsym/handle", "ctypes.string_at", "ctypes.wstring_at"}
RAW_MEMORY = ("reached the process's memory or C functions through ctypes, with which code can switch the watch off "
              "unseen")
RAW_MEMORY_BEFORE = "ran after a cell " + RAW_MEMORY
# Code that runs a traced graph, not the functions it was traced from: what torch.fx writes for a traced function or
# module (a GraphModule's forward; also a GraphModule called as a module, whatever its loader named the file) and its
# Interpreter, which runs such a graph node by node (only torch operations, whatever the tracing went through); and
# torch.compile's (TorchDynamo's) wrapper of a compiled function or module and its compiler, which reads a function's
# bytecode to trace it, without calling the functions it inlines.
FX_FILES = "<eval_with_key>"  # the start of fx's file names (its loader's keys)
# (file, the qualified names that count: not its import's module and class bodies); a tuple, which no cell edits
GRAPH_RUNNERS = (("fx/interpreter.py", ("",)), ("fx/graph_module.py", ("_WrappedCall.",)),
                 ("_dynamo/convert_frame.py", ("ConvertFrame.__call__", "ConvertFrameAssert.__call__")),
                 ("_dynamo/eval_frame.py", ("_TorchDynamoContext.__call__", "OptimizedModule.")))
FX_GRAPH = ("ran a graph traced by torch.fx (its generated code or its Interpreter), which hides the functions it "
            "was traced from")
COMPILED = "ran code compiled by torch.compile (TorchDynamo), which runs the functions it traced without calling them"


def graph_places(torch_dir: str) -> tuple:
    """:data:`GRAPH_RUNNERS` under this torch, once: ``(file, names, note)``."""
    return tuple((torch_dir + place, names, FX_GRAPH if place.startswith("fx/") else COMPILED)
                 for place, names in GRAPH_RUNNERS)


def graph_runner(code, places: tuple) -> str | None:
    """The note for ``code`` if it runs a traced graph (its names are plain str: the watch checked);
    ``places``: :func:`graph_places`."""
    if code.co_filename.startswith(FX_FILES):
        return FX_GRAPH
    for place, names, note in places:
        if code.co_filename == place and code.co_qualname.startswith(names):
            return note
    return None


class Unseen:
    """Notes of what runs unseen, for a call of the notebook's run in ``package``'s watch."""

    def __init__(self, package: str, own_pids: bool = False, own_readers: tuple = ()):
        self.package = package  # its folder, ending in "/"
        # The grader's functions that read memory through ctypes (by their code's id): not the notebook's calls.
        self._own_raw = frozenset(_address(f.__code__) for f in own_readers)
        self._reached = [False]  # whether the notebook reached memory through ctypes (audited): noted at each call
        # In the sandbox the notebook's process has a pid namespace of its own: every thread or
        # process it starts takes the next id, however it is started (C code, ctypes).
        self._own_pids, self._pids_at_start = own_pids, None
        # There, the processes alive before any cell: the namespace's first (bubblewrap's), its
        # command (`cat`), this one; any other is the notebook's.
        self._before = frozenset(_listdir("/proc")) if own_pids else None
        # The signal handlers set before any cell ran (the grader's own time limit included): a
        # handler the notebook sets can be made to run inside the watch's callback, unseen.
        self._handlers = {s: _getsignal(s) for s in signal.valid_signals()}
        self._gc_callbacks = len(_gc_callbacks)  # the libraries' own, before any cell ran
        self._threads = frozenset(_listdir(TASKS))  # this process's threads before any cell (torch's included)
        self._stayed = [frozenset()]  # the threads beyond those found still there after a wait (see below)
        self._jit = _jit_readers()

    def at_start(self) -> set[str]:
        """Notes when a call starts: what was set up before it, which the watch cannot reach."""
        self._pids_at_start = _last_pid() if self._own_pids else None
        return self._unwatched_threads() | self._unwatched_processes() | self._other_interpreters() | self.now() \
            | ({RAW_MEMORY_BEFORE} if self._reached[0] else set())

    def audited(self, event: str, caller, in_call: bool) -> str | None:
        """The note for an audit ``event`` raised by ``caller`` (code) if it is ctypes reaching memory or C functions
        (:data:`RAW_MEMORY_EVENTS`) for the notebook: in a call, or a cell's first (the grader's record keeps it, were
        this object's memory of it wiped); remembered, so that each later call notes it too."""
        if event not in RAW_MEMORY_EVENTS or _address(caller) in self._own_raw:
            return None
        first, self._reached[0] = not self._reached[0], True
        return RAW_MEMORY if in_call else RAW_MEMORY_BEFORE if first else None

    def started(self, watched: int) -> set[str]:
        """At the call's end: a note if it started more threads and processes than the ``watched``
        ones (through the watch's starters), alive or not by now."""
        now = _last_pid() if self._pids_at_start is not None else None
        return {FROM_C} if now is not None and now - self._pids_at_start > watched else set()

    def now(self) -> set[str]:
        """What the notebook set up that runs code the watch cannot see, looked at both when a call
        starts and when it ends (it may be set up during the call)."""
        return self._scripted() | self._tracers() | self._handlers_and_collector()

    @staticmethod
    def _tracers() -> set[str]:
        """A note when a trace function is set for this thread or for the threads to come."""
        tools = _get_tool is not None and any(_get_tool(i) for i in range(6))  # 3.12: 0 to 5 are anyone's
        return {TRACED} if _gettrace() is not None or _threading_gettrace() is not None or tools else set()

    def _handlers_and_collector(self) -> set[str]:
        """A note when the notebook set a signal handler or a garbage-collector callback: both
        can be made to run inside the watch's callback (a signal left pending, a collection),
        where nothing is seen."""
        notes = set()
        if any(_getsignal(s) is not handler for s, handler in self._handlers.items()):
            notes.add("ran while a signal handler the notebook set was in place, which can run unseen inside the watch")
        if len(_gc_callbacks) > self._gc_callbacks:
            notes.add("ran while a garbage-collector callback the notebook registered was in place, which can run "
                      "unseen inside the watch")
        return notes

    def _unwatched_threads(self) -> set[str]:
        """A note when threads the notebook started earlier are alive: a profiler set now
        does not reach them (Python 3.11 sets it per thread), so a call could run the
        package's code there unseen. Every thread counts: tqdm runs without its monitor thread
        here (:func:`tinyllm.grading.serve.without_tqdm_monitor`): one that looks like it is the notebook's.
        Python's list sees the threads that hold a Python state now; the kernel's (``/proc/self/task``)
        also those started from C that wait in C between jobs (``pthread_create`` through ``ctypes``),
        each of which can take a new state, without the profiler, to run a job in Python."""
        others = [ident for ident in _current_frames()  # raw _thread threads too
                  if ident != _main_thread().ident]
        # A thread that a call just joined may still be ending in the kernel: a moment to go (once: one that
        # stays is not waited for again at each call).
        for _ in range(20):
            native = frozenset(_listdir(TASKS)) - self._threads
            if len(native) <= len(others) or native <= self._stayed[0]:
                break
            _sleep(0.005)
        else:
            self._stayed[0] = native
        count = max(len(others), len(native))
        if not count:
            return set()
        return {f"ran while {count} thread(s) the notebook started earlier were alive, "
                "which the watch does not see"}

    def _unwatched_processes(self) -> set[str]:
        """A note when processes the notebook started are alive (a worker could answer for it):
        in the sandbox's pid namespace, any not there before the first cell; without the
        sandbox (one's own work) no note."""
        if self._before is None:
            return set()
        others = [pid for pid in _listdir("/proc") if pid.isdigit() and pid not in self._before]
        if not others:
            return set()
        return {"ran while processes the notebook started were alive, which the watch does not follow"}

    @staticmethod
    def _other_interpreters() -> set[str]:
        """A note when the notebook started a second Python interpreter in its own process
        (``_xxsubinterpreters.create``): code there runs without the watch or its audit hook,
        and a function can hand it its inputs and read back the package's answer."""
        if _interpreters is None or len(_interpreters()) <= 1:
            return set()
        return {OTHER_INTERPRETER}

    def scripted_ops(self) -> set[str]:
        """The names of the operators in every graph TorchScript holds (``scaled_dot_product_attention``
        for ``aten::scaled_dot_product_attention``): a scripted or traced function runs them in C++,
        where neither the profiler nor torch's function modes see them."""
        if self._jit is None:
            return set()
        functions, _, graph, nodes, _, kind, blocks, block_nodes = self._jit
        ops, stack = set(), []
        try:
            for f in functions():
                stack += list(nodes(graph(f)))
                while stack:
                    node = stack.pop()
                    ops.add(kind(node).rsplit("::", 1)[-1])
                    for block in blocks(node):
                        stack += list(block_nodes(block))
        except Exception:
            return {"(TorchScript's graphs could not be read)"}
        return ops

    def _scripted(self) -> set[str]:
        """The package's functions the notebook compiled with TorchScript (they run in C++):
        compiled themselves (``torch.jit.script``), or inlined into a function of the
        notebook's own by ``torch.jit.trace``, whose graph keeps where each step came from."""
        if self._jit is None:  # TorchScript's registry is private: absent, it says nothing
            return set()
        functions, qualified_name, graph, nodes, source_range = self._jit[:5]
        try:
            functions = functions()
            names = {qualified_name(f).removeprefix("__torch__.") for f in functions}
            for f in functions:  # a traced step's source: "/.../tinyllm/layers.py(34): rms_norm"
                for where in {source_range(node).split("\n", 1)[0] for node in nodes(graph(f))}:
                    path, _, function = where.partition("): ")
                    path = path.rsplit("(", 1)[0]
                    if path.startswith(self.package) and not path.startswith(self.package + "grading/"):
                        names.add(dotted(path, self.package, "tinyllm") + f".{function}")
        except Exception:  # a registry that cannot be read hides what it holds
            return {"ran after TorchScript's registry of compiled functions was made unreadable"}
        return {f"ran after the notebook compiled {n}, the package's own code, with TorchScript"
                for n in names if n.startswith("tinyllm.") and not n.startswith("tinyllm.grading")}


# Taken before any cell runs.
_listdir = os.listdir
TASKS = "/proc/self/task"
_sleep = time.sleep
_current_frames, _main_thread = sys._current_frames, threading.main_thread
_gettrace, _threading_gettrace = sys.gettrace, threading.gettrace
_getsignal = signal.getsignal
_gc_callbacks = gc.callbacks
_get_tool = getattr(getattr(sys, "monitoring", None), "get_tool", None)
try:  # the interpreters of this process (the module's name from Python 3.13: _interpreters)
    from _xxsubinterpreters import list_all as _interpreters
except ImportError:
    try:
        from _interpreters import list_all as _interpreters
    except ImportError:
        _interpreters = None


def _jit_readers() -> tuple | None:
    """TorchScript's registry and the readers of its functions' graphs, taken before any cell runs
    (each is a C++ method a cell could replace on its class)."""
    import torch

    try:
        function = torch._C.ScriptFunction
        return (torch.jit._state._python_cu.get_functions, function.__dict__["qualified_name"].__get__,
                function.__dict__["graph"].__get__, torch._C.Graph.nodes, torch._C.Node.sourceRange,
                torch._C.Node.kind, torch._C.Node.blocks, torch._C.Block.nodes)
    except (AttributeError, KeyError):
        return None


def _last_pid() -> int | None:
    """The last id the kernel gave a thread or process in this pid namespace (None if unreadable)."""
    try:
        fd = _open("/proc/sys/kernel/ns_last_pid", os.O_RDONLY)
        try:
            return int(_read(fd, 32))
        finally:
            _close(fd)
    except (OSError, ValueError):
        return None


_open, _read, _close = os.open, os.read, os.close  # taken before any cell runs
