"""The watch of a learner's call, in the sandbox: which of the package's functions it enters.

:class:`Monitor` runs while :func:`tinyllm.grading.serve.call` calls a learner's function: a profiler
(``sys.setprofile``) notes entries into the package's own code, or into a copy of it, and calls of the functions a
question's statement forbids (with :class:`tinyllm.grading.checks.Forbidden`, a torch function mode); an audit hook
notes imports of the package and new processes. A check on shortcuts, not a boundary: it shares the process with the
learner's code (:meth:`Monitor.changed`). A note is a flag (:mod:`tinyllm.grading.flags`) or fails the call.
"""

from __future__ import annotations

import builtins
import gc
import os
import signal
import sys
import threading
import types

import torch

from tinyllm.grading import checks, values  # not imported in a call: an import reads a module's __spec__
from tinyllm.grading.fingerprints import (
    _function_code,
    _function_globals,
    _object_attribute,
    class_codes,
    differs,
    file_identity,
    fingerprint,
    holds,
    is_a,
    known_code,
    module_dict,
    names,
    parts,
    parts_changed,
    plain_keys,
    shape,
    snapshot,
    snapshot_changed,
    submodules,
    torch_parts,
    type_dict,
    type_module,
    type_mro,
    type_qualname,
    version_places,
    versions,
)
from tinyllm.grading.libraries import LIBRARY_VERSION, Libraries, _address, dotted, genuine_frame, local_names, text
from tinyllm.grading.unseen import FX_FILES, OTHER_INTERPRETER, TRACED, Unseen, graph_places, graph_runner

# The audit events of a new process, which the watch does not follow.
PROCESS_EVENTS = {"os.fork", "os.forkpty", "os.posix_spawn", "os.exec", "os.spawn", "os.system", "subprocess.Popen"}
# Raised by the C function that sets a profiler, however reached: sys.setprofile, cProfile, ctypes (3.12: all threads).
PROFILER_EVENTS = {"sys.setprofile", "sys._setprofileallthreads"}
# A trace function (sys.settrace, threading.settrace, a debugger) runs with the profiler off, unseen, and can rewrite
# any frame's locals, the sandbox's checks' included. Noted, set during a call (these events) or before (sys.gettrace).
TRACER_EVENTS = {"sys.settrace", "sys._settraceallthreads", "sys.monitoring.register_callback"}

# _thread's functions that start a thread: called by anything but the watch's starter (a second _thread), unwatched.
THREAD_STARTS = {"start_new_thread", "start_new", "start_joinable_thread"}
UNWATCHED_THREAD = "started a thread the watch does not follow (not through threading or _thread's watched starters)"

# Methods of the objects a test passes in that an answer may call ("run the module", "encode with the tokenizer").
ALLOWED_METHODS = {"forward", "encode", "encode_ordinary", "decode"}
# What gives a function other code in place, each set through a C setter that raises "object.__setattr__" first.
RECODING = {"__code__", "__defaults__", "__kwdefaults__"}
PAUSED = "switched the grader's call watch off during the call (its active flag)"
NOT_PLAIN_NAME = "ran code whose file name or name is not a plain string (its methods would run inside the watch)"
MAX_PLAIN_CODES = 100_000  # the profiler's table of code it let go (a notebook can make code without end)


class Monitor:
    """Which of the package's functions a learner's call enters (a flag, not a boundary).

    ``sys.setprofile`` sees every Python call while the learner's function runs: an entry into ``tinyllm`` (not
    ``tinyllm.grading``) from outside it is noted, except the ``forward`` of a module or the ``encode``/``decode``
    of a tokenizer the test passed in (while it keeps its type), and so is a copy of the package's code run under
    another file or name (the same code, names and docstring; an edited copy is not), a call of another library's
    version of a piece (:mod:`tinyllm.grading.libraries`), and what runs where the profiler cannot see
    (:mod:`tinyllm.grading.unseen`: threads and interpreters started before, TorchScript, a torch.fx graph, a
    tracer, a signal handler or collector callback of the notebook's). Threads the call starts are watched from
    their first line. The watch reads what it meets without running its code (no ``isinstance``, no attribute of a
    class the notebook made). An audit hook notes imports of the package, a profiler set or removed during the call
    (even if put back), and refuses the notebook's own hooks (Python runs a hook with the profiler paused, at every
    audited event). Each note is written to the grader's record at once (:func:`tinyllm.grading.values.record`). A
    call after the notebook replaced or switched off a part of the watch fails (:meth:`changed`).
    ``book/grading.md`` tells each trick this answers, with the cheat that holds it.
    """

    def __init__(self, package_dir: str, own_pids: bool = False, guarded: tuple = (), ledger: int | None = None,
                 given_by_test=None, call_running=None, tables: tuple | None = None):
        self.package = package_dir.rstrip("/") + "/"
        self.grading = self.package + "grading/"
        # The objects the test passed in (and their modules), by id: their type at the call's start, whether it is
        # the package's, its classes' functions' code then. One re-classed, or given a method, is not exempt.
        self.allowed_selves: dict[int, tuple[type, bool, frozenset]] = {}
        self.entered, self.active = set(), False  # the call's notes; whether a call is on
        # The grader's record of the notes (values.record): a socket, which nothing here can take back.
        self._ledger, self._ledger_file, self._forbidden_ledger = ledger, file_identity(ledger), self._record_forbidden
        # serve's check; the calls' thread and a note on the record: defaults, which no cell can change (_audit)
        Monitor._profile.__defaults__ = (given_by_test, (threading.get_ident(), threading.get_ident, values.record,
                                                         ledger, values.NOTE, PAUSED, self._ledger_file, call_running))
        self.forbidden = None  # what the statement of the function called forbids (checks.Forbidden)
        self.tensor, self.torch_dir = torch.Tensor, os.path.dirname(torch.__file__) + "/"
        self.modes_all_off = getattr(torch._C, "_is_torch_function_all_disabled", lambda: False)
        self.libraries = Libraries(self.torch_dir, self.package)
        self.module_type, self.ops = torch.nn.Module, (torch._ops.OpOverloadPacket, torch._ops.OpOverload)
        # The package's functions and torch's pieces, by what a copy keeps; made before any cell runs, as is each reader
        # of what a cell could change (sys.setprofile, TorchScript's registry; an empty Path.rglob would blind it).
        library, functions, self.codes, self.methods = tables or known_code(self.package, self.torch_dir,
                                                                            frozenset(ALLOWED_METHODS))
        self.copies = {**library, **functions}  # methods: as the package's files define them
        # What is a copy, read from a frozenset: a cell that edits the table up the stack takes none out.
        self._copy_keys, self._pristine_codes = frozenset(self.copies), {}  # _address(code) -> (code, _genuine)
        # _address(code) -> code, for code the profiler met outside the package that is no library's piece
        # nor a copy: a call of it is let go at once (torch.save's persistent_id, once per object written).
        self._graphs = graph_places(self.torch_dir)  # code that runs a traced graph (unseen.graph_runner)
        self._plain, self._noted_places = {}, (self.package, *self.libraries.places, FX_FILES,
                                              *(place for place, _, _ in self._graphs))
        self._starters = self._watch_threads()
        self._starter = self._starters[0][2].__code__  # the code that starts a thread it watches
        # The watch's own code that sets the profiler; from elsewhere in a call, the learner's switching it off (noted).
        self._switches = frozenset(f.__code__ for f in (Monitor.start, Monitor.stop, Monitor._thread_profile,
                                                         Monitor._arm_thread))
        # Set by the audit hook when a cell tried to give a function of the watch's parts other code.
        self._recoded, self._kept_functions = False, frozenset()
        from tinyllm.grading import fingerprints, libraries, unseen, wire
        # What runs where this watch cannot see, read before any cell; the grader's own ctypes readers of memory.
        self.unseen = Unseen(self.package, own_pids, (fingerprints.versions, wire.to_wire))
        sys.addaudithook(self._audit)
        self._collecting, self._starts = False, [0]  # whether the collector ran before the call; threads started
        # What the watch and the sandbox's checks are made of before any cell runs: see changed().
        self._made_of = tuple((part, tuple(parts(part).items())) for part in (
            Monitor, checks.Forbidden, Libraries, Unseen, checks, values, wire, sys.modules[__name__], libraries,
            fingerprints, unseen, threading, signal, *guarded, *torch_parts()))  # Unseen reads the last two
        self._outside = snapshot(self._made_of)  # see tampered()
        self._kept_functions = frozenset(map(id, self._outside[0]))  # held there: no other object takes these ids
        self._forbidden_lists: tuple[dict, dict] = ({}, {})  # its names and prefixes at the start
        # The tables the watch decides by (baseline()), and with them every dict it reads in a call (start()).
        decides_by = (self.copies, self.codes, self.methods, vars(self.libraries), self.unseen._handlers)
        self._tables = version_places(decides_by)
        read = (*self._outside[-1][0], _builtins, vars(self), vars(self.unseen))
        self._read_in_calls = version_places(read) + self._tables
        self._names = version_places((*self._outside[-1][0], _builtins))  # the parts' and builtins' (tampered())
        self._builtins = tuple(_builtins.items())  # tuples, as _fixed: a cell cannot write a change of its own here too
        fixed = {k: v for k, v in vars(self).items() if k not in ("allowed_selves", "entered", "active", "forbidden",
                 "_forbidden_lists", "_collecting", "_starts", "_recoded")}  # these fields never change
        self._fixed = tuple(fixed.items())
        self._own = frozenset(vars(self)) | {"_own"}

    def changed(self, watched: tuple = ((), ()), baseline: tuple | None = None, read=versions) -> bool:
        """Whether code of the notebook replaced a part of the watch (``checks.Forbidden.failure``,
        ``checks.not_new``, the forbidden-function mode's names) or switched it off (``active``), or
        changed a dict the watch reads since the call started, even if it put it back (``watched``: what
        :meth:`start` returned, by the dicts' versions; Python 3.14 keeps none). A notebook that also rewrites
        this check, blinds the watch before a call it should note (its notes are in the grader's record at once),
        changes the grader's code up the stack with ``ctypes`` or answers on the channel goes unseen."""
        mode, lists = self.forbidden, self._forbidden_lists
        mode = mode is not None and (not plain_keys(vars(mode)) or (mode.names, mode.prefixes) != lists
                                     or set(vars(mode)) != {"names", "prefixes", "seen", "ledger"}
                                     or mode.ledger is not self._forbidden_ledger)
        return self.tampered(False, baseline) or mode or not self.active or read(watched[0]) != watched[1]

    def baseline(self) -> tuple:
        """What :meth:`tampered` holds the watch to, kept where no cell writes (the sandbox loop's fast locals):
        its fields' record and names, the versions of the tables it decides by (copies, the package's codes and
        methods: one a cell edited, its own code added as the package's method, moved on even if put back), and of
        its parts' and builtins' dicts."""
        return self._fixed, self._own, self._tables, versions(self._tables), self._names, versions(self._names)

    def tampered(self, codes: bool = True, baseline: tuple | None = None, read=versions) -> bool:
        """Whether a part of the watch or of what it runs (the sandbox's checks, torch's function
        modes and serialization, Python's builtins, their functions' code) or this watch's fixed
        fields differ from before any cell ran. :func:`tinyllm.grading.serve.call` asks before a
        call starts and runs nothing of the notebook's: a cell's change (a builtins.getattr of
        its own) fails the call even if that code would put the part back while the call ran."""
        # Loops, not generators: changed() runs it under the profiler, which sees each step of one as a call (10 ms).
        # While no dict of a part nor builtins' was written (any write moves its version) no name there needs comparing.
        same = baseline is not None and baseline[4] != () and read(baseline[4]) == baseline[5]
        if self._recoded or (codes and snapshot_changed(self._outside)) \
                or (not same and parts_changed(self._made_of, self._outside[-1])):
            return True
        for module, name, ours in self._starters:
            if getattr(module, name, None) is not ours:
                return True
        if file_identity(self._ledger) != self._ledger_file:  # the record's socket closed, or another file put there
            return True
        replaced = not same and not (plain_keys(_builtins) and not differs(_builtins, self._builtins, more=True))
        return replaced or not plain_keys(vars(self)) or set(vars(self)) != self._own \
            or differs(vars(self), self._fixed, more=True) or (baseline is not None and (
                self._fixed is not baseline[0] or self._own is not baseline[1] or read(baseline[2]) != baseline[3]))

    def _watch_threads(self) -> tuple:
        """Every thread started from Python (``threading``, ``_thread.start_new_thread`` and its alias
        ``start_new``) gets the watch from its first line on, whatever profiler ``threading.setprofile`` names (a
        notebook can name None there). Returns (module, name, the watch's starter) of each: see :meth:`changed`."""
        import _thread

        def watching(start):
            def start_thread(function, *rest, **options):
                def watched(*a, **k):
                    self._arm_thread()
                    return function(*a, **k)

                ident = start(watched, *rest, **options)
                self._starts[0] += 1  # once started (a failed start takes no id): Unseen.started
                return ident

            return start_thread

        starters = []
        for module, name in ((_thread, "start_new_thread"), (_thread, "start_new"), (_thread, "start_joinable_thread"),
                             (threading, "_start_new_thread"), (threading, "_start_joinable_thread")):
            if hasattr(module, name):
                setattr(module, name, watching(getattr(module, name)))
                starters.append((module, name, getattr(module, name)))
        return tuple(starters)

    def _arm_thread(self) -> None:
        if self.active:
            _setprofile(self._thread_profile)

    def _copy_of(self, code) -> str | None:
        """The package's function or torch piece's ``code`` is a copy of, if it is one (cheap when
        it is not: the bytecode is read only for a function whose sizes match one of theirs)."""
        if shape(code) not in self._copy_keys or (found := fingerprint(code)) not in self._copy_keys:
            return None
        return self.copies.get(found) or "code whose name a cell took out of the grader's table"

    def _audit(self, event, args):
        if event == "sys.addaudithook":  # refused (Python then adds nothing): a hook of the notebook's
            raise RuntimeError("the grader's sandbox adds no audit hook")  # would run unwatched, even after a call
        if event == "object.__setattr__" and id(args[0]) in self._kept_functions and args[1] in RECODING:
            # Refused (Python sets nothing), and each later call: other code in a function of the watch's runs as it.
            self._recoded = True
            raise RuntimeError("the grader's sandbox keeps the code of its own functions and of torch's "
                               "serialization: the calls are not made")
        if self.active and event in PROCESS_EVENTS:
            self._note("started a process during the call, which the watch does not follow")
        if self.active and event == "cpython.PyInterpreterState_New":
            self._note(OTHER_INTERPRETER)
        if self.active and event in TRACER_EVENTS:
            self._note(TRACED)
        if self.active and event in PROFILER_EVENTS and _caller_code() not in self._switches:
            self._note("switched the grader's call watch off during the call (it set a profiler of its own), "
                       "so what ran then was not seen")
        if event.startswith("ctypes.") and (note := self.unseen.audited(event, _caller_code(), self.active)):
            self._note(note)  # _caller_code() only there: sys._getframe is an audited event too
        if self.active and event == "import" and args and type(args[0]) is str:  # no str of the notebook's
            name = args[0]
            if name.startswith("tinyllm") and not name.startswith(("tinyllm.grading", "tinyllm.grade")):
                if name not in _sys_modules:
                    self._note(f"imported {name}, the package's own code")

    def _ours(self, filename: str) -> bool:
        return filename.startswith(self.package) and not filename.startswith(self.grading)

    def _profile(self, frame, event, arg, given_by_test=None, calls=(None, None)):
        if not self.active:  # while a call runs, a cell's doing: stop() takes the calls' thread's profiler off first
            if calls[1] is None or (calls[1]() != calls[0] and not (calls[-1] and calls[-1](calls[0]))):
                return
            calls[2](*calls[3:-1])  # the note, with nothing of self's or the module's (a cell can swap them)
            return  # the judge fails the call (the record's note); at each event here: a cell can clear a mark
        if event == "call":  # f_code raises an audit event: read where needed. A name that is a str subclass
            code = frame.f_code  # (code.replace) would run its methods here: noted, and read as text() up the stack
            if type(code.co_filename) is not str or type(code.co_name) is not str or type(code.co_qualname) is not str:
                return self._note(NOT_PLAIN_NAME)
        if self.forbidden is not None and event in ("call", "c_call"):
            self._torch_call(frame, event, arg)
        if event == "c_call":
            if getattr(arg, "__name__", None) in THREAD_STARTS and text(getattr(arg, "__module__", None)) == "_thread" \
                    and frame.f_code is not self._starter:
                self._note(UNWATCHED_THREAD)  # _thread's own function, not the watch's starter
            self.libraries.compiled_call(frame, arg, self.allowed_selves, self._note)
        if event != "call":
            return
        # Met before, and plain: a cell can fill that cache up the stack, so a hit is checked (cheaply).
        if self._plain.get(_address(code)) is code and not code.co_filename.startswith(self._noted_places) \
                and shape(code) not in self._copy_keys:
            return
        if not self._ours(code.co_filename):
            library = code.co_filename.startswith(self.libraries.places)
            if library:
                self.libraries.entry(frame, self.allowed_selves, self._note)
            traced = graph_runner(code, self._graphs)
            if traced:
                self._note(traced)
            copied = self._copy_of(code)
            if not (copied or library or traced) and len(self._plain) < MAX_PLAIN_CODES:
                self._plain[_address(code)] = code  # all the checks above read the code alone: asked once
            if not copied or (frame.f_back is not None and self._copy_of(frame.f_back.f_code)):
                return
            if copied.startswith("tinyllm."):
                self._note(f"called a copy of {copied}, the package's own code")
            elif self.libraries.piece(frame.f_code) is None:  # not the piece itself, where it lies
                self._note(f"ran a copy of {copied}, {LIBRARY_VERSION}")
            return
        caller, code = frame.f_back, frame.f_code
        if caller is not None and self._ours(text(caller.f_code.co_filename)) and names(caller.f_code, code) \
                and self._genuine(code) and frame.f_globals is self._globals_of(code.co_filename):
            return  # inside the package already: only entry points count, and a function the package's
            # code does not name (the answer put in a given object's attribute) is one
        given = local_names(frame, code).get("self")
        kind, packaged, codes = self.allowed_selves.get(id(given), (None, False, {}))
        if code.co_name in ALLOWED_METHODS and kind is type(given) and packaged and holds(codes, code) \
                and self._pristine_method(kind, code) and (given_by_test is None or given_by_test(frame, id(given))):
            return  # the given object's own method (not another class's run on it, nor an object a cell added)
        module = dotted(code.co_filename, self.package, "tinyllm")
        self._note(f"called {module}.{code.co_qualname}, the package's own code")

    def _globals_of(self, filename: str) -> dict | None:  # run with others (changed), it is not the package's
        module = _sys_modules.get(dotted(filename, self.package, "tinyllm"))
        return module_dict(module) if type(module) is types.ModuleType else None

    def _genuine(self, code) -> bool:
        """Whether ``code`` is the package's own, under its own name (not renamed, nor compiled under its file)."""
        seen = self._pristine_codes.get(_address(code))
        if seen is None or seen[0] is not code:
            seen = (code, code.co_name in self.codes.get(fingerprint(code), ()))
            self._pristine_codes[_address(code)] = seen
        return seen[1]

    def _pristine_method(self, kind: type, code) -> bool:
        """Whether ``code`` is what the package's file defines as the method of that name of
        the class of ``kind`` that holds it, run with that module's globals: not a function a
        cell added under another name, nor other code (the package's ``generate``) stored or
        compiled under an allowed name."""
        for klass in type_mro(kind):
            held = type_dict(klass).get(code.co_name)
            if held is None:
                continue
            module = text(type_module(klass))
            if type(held) is not types.FunctionType or _function_code(held) is not code \
                    or type(_sys_modules.get(module)) is not types.ModuleType:
                return False
            where = f"{module}.{type_qualname(klass)}.{code.co_name}"
            return self.methods.get(where) == fingerprint(code) \
                and _function_globals(held) is module_dict(_sys_modules[module])
        return False

    def _torch_call(self, frame, event, arg) -> None:
        """A torch function called from the learner's own code counts against the forbidden
        list here too: the torch function mode misses calls made while torch has the modes
        off (``torch._C.DisableTorchFunction``, a tensor subclass's ``__torch_function__``)."""
        self.forbidden.check_on(frame)  # the learner's code may not run with the mode off
        if event == "c_call":  # a function written in C: torch's own, or a tensor's method
            if not (is_a(type(getattr(arg, "__self__", None)), (self.tensor,))  # no __class__ of the notebook's
                    or text(getattr(arg, "__module__", None)).startswith("torch")):
                return
            caller, name, reference = frame, getattr(arg, "__name__", ""), False
        else:
            code = frame.f_code
            if not code.co_filename.startswith(self.torch_dir):
                return
            caller, name, reference = frame.f_back, code.co_name, code.co_filename.startswith(self.libraries.references)
            if name == "__call__":  # torch.ops.aten.layer_norm(...): the operator's own name
                owner = local_names(frame, code).get("self")  # torch's operator, or an object of the notebook's
                ours = type(owner) is self.ops[0] or type(owner) is self.ops[1]  # by identity: `in` runs an __eq__
                name = text(_object_attribute(owner, "__dict__").get("__name__")) if ours else ""
        forbidden = self.forbidden.dotted(name)
        where = text(caller.f_code.co_filename) if caller is not None else ""
        if forbidden is None or caller is None or where.startswith(self.grading) and genuine_frame(caller):
            return
        # torch's own calls don't count (as for the mode), but with all modes off, a reference, or a cell's code renamed
        if not where.startswith(self.torch_dir) or reference or self.modes_all_off() or not genuine_frame(caller):
            self.forbidden.see(forbidden)

    def start(self, inputs, forbidden=()) -> tuple:  # inputs None: not read yet (given() names them)
        self.forbidden = checks.Forbidden(list(forbidden)) if forbidden else None
        self._forbidden_lists = (dict(self.forbidden.names), dict(self.forbidden.prefixes)) if forbidden else ({}, {})
        self.allowed_selves = {}
        if inputs is not None:
            self.given(inputs)
        self._starts, self.entered = [0], set()
        for note in self.unseen.at_start():
            self._note(note)
        if self.forbidden is not None:  # TorchScript runs its graphs in C++: look for the forbidden there
            self.forbidden.ledger = self._forbidden_ledger
            for found in {f for op in self.unseen.scripted_ops() if (f := self.forbidden.dotted(op))}:
                self.forbidden.see(found)
        # No automatic collection during the call: one started in the watch's callback would run finalizers there.
        self._collecting = _gc_isenabled()
        _gc_disable()
        self.active = True
        if self.forbidden is not None:
            self.forbidden.__enter__()
        # The dicts the watch reads during the call, by version (changed()): a name swapped and put back moves it.
        mode = () if self.forbidden is None else (vars(self.forbidden), self.forbidden.names, self.forbidden.prefixes)
        places = self._read_in_calls + version_places(mode)
        watched = (places, versions(places))
        _setprofile(self._profile)  # threads the call starts: see _watch_threads
        return watched

    def given(self, inputs) -> None:
        """The objects the test passes in, whose own methods the call may run."""
        given = [v for v in values.objects(inputs) if not is_a(type(v), (self.tensor, int, float, str))]
        given += [m for v in given if is_a(type(v), (self.module_type,)) for m in submodules(v)]
        kinds = {k: (text(type_module(k)).startswith("tinyllm."), class_codes(k)) for k in {type(v) for v in given}}
        self.allowed_selves.update({id(v): (type(v), *kinds[type(v)]) for v in given})  # in place: see start()

    def _thread_profile(self, frame, event, arg):
        """A thread the call started, at its first event: the forbidden-function mode (one a thread) goes there too."""
        if self.active and self.forbidden is not None:
            self.forbidden.__enter__()
        _setprofile(self._profile)
        self._profile(frame, event, arg)

    def stop(self) -> list[str]:
        profiler = _getprofile()
        removed = type(profiler) is not type(self._profile) or profiler.__self__ is not self
        if self.forbidden is not None:  # while watched: a mode of the notebook's it takes off is freed here
            self.forbidden.leave()
        _setprofile(None)
        self.active = False
        if removed:
            self._note("removed the grader's call monitor")
        if _gc_isenabled():
            self._note("switched the garbage collector on during the call, which can run code unseen in the watch")
        if self._collecting:
            _gc_enable()
        for note in self.unseen.now() | self.unseen.started(self._starts[0]):
            self._note(note)
        return sorted([note for note in self.entered if type(note) is str])  # no __lt__ of the notebook's

    def _note(self, text: str) -> None:
        """Note ``text``, in the grader's record at once too: emptying ``entered`` takes nothing back."""
        self.entered.add(text)
        values.record(self._ledger, values.NOTE, text, self._ledger_file)

    def _record_forbidden(self, dotted: str) -> None:  # checks.Forbidden's ledger, set by start()
        values.record(self._ledger, values.FORBIDDEN, dotted, self._ledger_file)


# Taken before any cell runs: a cell's sys.setprofile would switch the watch off, its builtins run inside its callback.
_setprofile, _getprofile, _getframe = sys.setprofile, sys.getprofile, sys._getframe
_builtins, _sys_modules = vars(builtins), sys.modules
_gc_isenabled, _gc_enable, _gc_disable = gc.isenabled, gc.enable, gc.disable


def _caller_code():
    """The code that raised the audit event being handled (None from a thread with no Python frame)."""
    try:
        return _getframe(2).f_code
    except ValueError:
        return None
