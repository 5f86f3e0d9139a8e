"""Reading code without running it: what the call watch (:mod:`tinyllm.grading.watch`) knows
of functions and classes.

A copy of one of the package's functions keeps its :func:`fingerprint` wherever it runs from
(:func:`package_functions` holds the package's); a class's own functions are read from its
classes' dicts (:func:`class_codes`), through the getters of ``type`` itself, so that
nothing of the notebook's (a metaclass property, a descriptor) runs inside the watch.
"""

from __future__ import annotations

import copyreg
import ctypes
import os
import sys
import sysconfig
import types
from functools import cache
from gc import get_referents as _referents  # taken before any cell runs
from itertools import chain
from operator import attrgetter, is_, methodcaller
from pathlib import Path

from tinyllm.grading.libraries import (  # noqa: F401  (fingerprint, holds, type_module: the watch's)
    NOT_FINGERPRINTED,
    TORCH_PIECES,
    dotted,
    file_codes,
    fingerprint,
    holds,
    type_module,
)

# A function of fewer bytes of bytecode than this does next to nothing (a one-line forward, a
# property): anyone's may match it (torch's optimizers share such code), and a copy gains nothing.
MIN_BYTES = 64


@cache
def package_functions(package: str) -> dict[tuple, str]:
    """:func:`fingerprint` -> ``tinyllm.module.qualname`` of every function of the package
    (its folder, ending in ``/``) outside grading, compiled from its files, and each
    :func:`shape` alone, the quick first test. Worked out once (0.08 s of CPU) in the
    judges' warm process (:func:`tinyllm.grading.judge.warm_up`), before any notebook runs:
    a notebook's process forked from there inherits it; one in the sandbox reads it from there
    (:func:`known_code`) before the first cell runs (a cell could change what reading the files gives)."""
    found: dict[tuple, str] = {}
    for module, code in _package_code(package):
        _add_function(found, code, module)
    return found


@cache
def library_functions(torch_dir: str) -> dict[tuple, str]:
    """The same table for torch's pieces (:data:`tinyllm.grading.libraries.TORCH_PIECES`), so
    that a copy of one run from anywhere else is seen as the piece (0.07 s of CPU)."""
    found: dict[tuple, str] = {}
    for piece in TORCH_PIECES:
        place, _, only = piece.partition(":")
        if place in NOT_FINGERPRINTED:
            continue
        paths = sorted(Path(torch_dir + place).rglob("*.py")) if place.endswith("/") else [Path(torch_dir + place)]
        for path in paths:
            for code in file_codes(path):
                _add_function(found, code, dotted(str(path), torch_dir, "torch"), only)
    return found


def known_code(package: str, torch_dir: str, methods: frozenset) -> tuple:
    """The watch's tables: torch's pieces, the package's functions, every code of the package, the
    package's methods named in ``methods`` (see the four above). Plain data (:mod:`marshal`
    writes it): the grader hands its own to the sandbox (1 MB, read in 6 ms, against 0.22 s of
    CPU to make them there), before any cell runs."""
    return (library_functions(torch_dir), package_functions(package), package_codes(package),
            package_methods(package, methods))


@cache
def package_codes(package: str) -> dict[tuple, frozenset]:
    """:func:`fingerprint` -> the names of every function of the package outside grading,
    lambdas, comprehensions and one-liners included, compiled from its files: code that runs
    from the package's files with a fingerprint not here, or under another name, is not the
    package's own (a trampoline compiled under its file name, a lambda renamed)."""
    found: dict[tuple, set] = {}
    for _, code in _package_code(package):
        found.setdefault(fingerprint(code), set()).add(code.co_name)
    return {key: frozenset(names) for key, names in found.items()}


@cache
def package_methods(package: str, names: frozenset) -> dict[str, tuple]:
    """``tinyllm.module.Class.method`` -> :func:`fingerprint` of every method of the package
    whose name is in ``names``, whatever its size, compiled from its files: what the call
    watch compares a given object's method with before it lets the method run unflagged."""
    return {f"{module}.{code.co_qualname}": fingerprint(code) for module, code in _package_code(package)
            if code.co_name in names}


@cache
def _package_code(package: str) -> tuple:
    """(``tinyllm.module``, code) of every code object of the package's files outside grading,
    compiled once for the three tables above."""
    return tuple((dotted(str(path), package, "tinyllm"), code) for path in sorted(Path(package).rglob("*.py"))
                 if not str(path).startswith(package + "grading/") for code in file_codes(path))


def _add_function(found: dict, code, module: str, only: str = "") -> None:
    if not code.co_name.startswith("<") and code.co_qualname.startswith(only) and len(code.co_code) >= MIN_BYTES:
        found[fingerprint(code)] = f"{module}.{code.co_qualname}"  # not a module, lambda or comprehension
        found[shape(code)] = ""


def names(caller, code) -> bool:
    """Whether the code ``caller`` runs names the function of ``code`` (a global, an attribute,
    a local or a closure's), or Python calls it for it (a dunder method of a class it names), or
    makes it (a lambda
    or comprehension of its own: one of another function's, rebuilt with a closure of the
    notebook's, would be a way into the package's code)."""
    name = code.co_name
    if name.startswith("<"):
        return any(const is code for const in caller.co_consts)
    if name.startswith("__") and name not in caller.co_names:  # called for it: its class is named there
        owner = code.co_qualname.rpartition(".")[0].rpartition(".")[2]
        return bool(owner) and (owner in caller.co_names or owner in caller.co_varnames)
    return name in caller.co_names or name in caller.co_varnames or name in caller.co_cellvars \
        or name in caller.co_freevars


def shape(code) -> tuple:
    """The quick first test of a copy, made without a Python call (at the limit of an answer's
    recursion one raises in the watch's callback, and Python takes the profiler off): a function
    of the notebook's whose sizes alone matched one of torch's quantization code was read further
    there, and an honest recursion was flagged as the watch switched off. Its names make a match
    by chance rare."""
    return "shape", code.co_argcount, code.co_nlocals, code.co_stacksize, len(code.co_code), code.co_names


# Read a class's parts without running anything of the notebook's (a metaclass property, a
# descriptor's __get__): the getters of `type` and of functions themselves.
type_mro, type_dict = type.__dict__["__mro__"].__get__, type.__dict__["__dict__"].__get__
_function_code = types.FunctionType.__dict__["__code__"].__get__
_function_globals = types.FunctionType.__dict__["__globals__"].__get__
_function_defaults = types.FunctionType.__dict__["__defaults__"].__get__
type_qualname = type.__dict__["__qualname__"].__get__
module_dict = types.ModuleType.__dict__["__dict__"].__get__


def class_codes(kind: type) -> types.MappingProxyType:
    """id -> code of every function the classes of ``kind`` hold (its MRO's dicts), read
    statically; :func:`holds` asks it (by identity: a code's hash is its constants')."""
    codes = {}
    for klass in type_mro(kind):
        for value in list(type_dict(klass).values()):
            if type(value) is staticmethod or type(value) is classmethod:
                value = value.__func__
            if type(value) is types.FunctionType:
                codes[id(_function_code(value))] = _function_code(value)
    return types.MappingProxyType(codes)


def is_a(kind: type, bases: tuple) -> bool:
    """``issubclass`` read from ``kind``'s MRO by identity, without its metaclass's say (``in`` asks its ``__eq__``)."""
    return any(k is base for k in type_mro(kind) for base in bases)


def parts(part) -> types.MappingProxyType | None:
    """A class's or module's names and what they hold, read through ``type``'s and modules' own
    getters; not Python's own caches: the record of warnings a module's code gave, and the slot
    names ``copyreg`` keeps on a class it pickled (``torch.Tensor``, at the first reply)."""
    names = own_names(part)
    return _proxy({k: v for k, v in names.items() if k != "__warningregistry__"
                   and k != "__slotnames__"}) if plain_keys(names) else None  # None differs from any mapping


def own_names(part):
    """The dict a class or module keeps its names in (the same object for its whole life)."""
    return type_dict(part) if issubclass(type(part), type) else module_dict(part)


_keys, _values, _proxy = methodcaller("keys"), methodcaller("values"), types.MappingProxyType  # before any cell


def contents(dicts: tuple) -> tuple:
    """Every name the dicts hold and every object, in their order."""
    return tuple(chain.from_iterable(map(_keys, dicts))), tuple(chain.from_iterable(map(_values, dicts)))


def parts_changed(made_of: tuple, live: tuple) -> bool:
    """Whether a part's names, or what one holds, differ from ``made_of`` (each part and
    :func:`parts` of it). ``live`` (the parts' own dicts and their :func:`contents` then) answers
    at once when nothing at all changed, in C functions alone: the profiler the watch asks under
    sees no step of it (24 parts, 2,168 names: 0.05 ms). Else each part is compared by name:
    Python's caches may have been added (see :func:`parts`), which change nothing."""
    dicts, keys, held = live
    if sum(map(len, dicts)) == len(held) and all(map(is_, chain.from_iterable(map(_values, dicts)), held)) \
            and all(map(is_, chain.from_iterable(map(_keys, dicts)), keys)):
        return False
    for kind, was in made_of:
        if differs(parts(kind), was):
            return True
    return False


def plain_keys(names: dict) -> bool:
    """Whether every key of ``names`` is an exact str: comparing a key of the notebook's (a str
    subclass) would run its ``__eq__`` inside the watch's checks, where nothing is watched."""
    for key in names:
        if type(key) is not str:
            return False
    return True


def differs(now: dict, was: tuple, more: bool = False) -> bool:
    """Whether a name of ``was`` (its (name, object) pairs: a tuple, which no cell can edit as it
    could a dict it found) holds another object in ``now``, or (unless ``more``) ``now`` has other
    names. No call per name (not even ``dict.get``): the watch asks under its profiler."""
    if (type(now) is not dict and type(now) is not _proxy) or (not more and len(now) != len(was)):
        return True
    for key, value in was:
        if key not in now or now[key] is not value:
            return True
    return False


def functions_of(dicts) -> tuple:
    """Every function the dicts hold: their code and defaults cannot be set through Python while the
    watch is on (``f.__code__ = ...``: :meth:`tinyllm.grading.watch.Monitor._audit` refuses it);
    set through ``ctypes``, they are seen by :func:`snapshot_changed`."""
    return tuple(f for names in dicts for f in names.values() if type(f) is types.FunctionType)


def held_by(functions: tuple) -> list:
    """What ``functions`` hold (code, defaults, closure, globals, names), which ``ctypes`` can
    replace without the audit event the setters raise. Read in one C call (``gc.get_referents``:
    one audit event for all, where ``f.__code__`` and ``id`` raise one each)."""
    return _referents(*functions)


def same_objects(now: list, was: list) -> bool:
    """Whether two lists hold the same objects, by identity alone and with C functions (``==``
    could run an ``__eq__`` of the notebook's; ``id`` raises an audit event)."""
    return len(now) == len(was) and all(map(is_, now, was))


def reply_hooks() -> tuple:
    """What a cell can add to, without replacing anything, that runs when a reply is written (a
    call's is written watched, the others hold no code of the notebook's; a hook added is refused
    all the same): torch's storage taggers, and copyreg's reducers of the types a reply holds;
    (the registry, the table, the types, what they hold), read through references taken now."""
    import collections

    import torch

    registry, table = torch.serialization._package_registry, copyreg.dispatch_table
    kinds = (torch.Tensor, torch.Size, torch.dtype, torch.device, torch.UntypedStorage, collections.OrderedDict)
    return registry, table, kinds, tuple(registry) + tuple(table.get(kind) for kind in kinds)


def snapshot(made_of: tuple) -> tuple:
    """What :meth:`tinyllm.grading.watch.Monitor.tampered` compares besides the parts' names
    (``made_of``: each part and :func:`parts` of it): their functions' code and defaults, the
    reply's hooks, and the class of every module imported so far (a module given a class of the
    notebook's answers its attribute lookups with the notebook's code); last, what
    :func:`parts_changed` reads first."""
    functions = functions_of([dict(names) for _, names in made_of if names is not None])
    for function in functions:  # made when first read: made now, so that what they hold stays put
        function.__dict__, function.__annotations__  # noqa: B018
    for part, _ in made_of:  # Python's caches (see parts) made now: later, only a change is one
        if issubclass(type(part), type):
            copyreg._slotnames(part)
        else:
            module_dict(part).setdefault("__warningregistry__", {})
    modules = tuple(sys.modules.values())
    dicts = tuple(own_names(part) for part, _ in made_of)
    return (functions, tuple(held_by(functions)), reply_hooks(), modules, tuple(map(type, modules)),
            (dicts, *contents(dicts)))


def snapshot_changed(saved: tuple) -> bool:
    functions, held, (registry, table, kinds, items), modules, classes, _ = saved
    if not same_objects(held_by(functions), held):
        return True
    now = tuple(registry) + tuple(table.get(kind) for kind in kinds)
    return not same_objects(now, items) or not same_objects(tuple(map(type, modules)), classes)


def file_identity(fd: int | None) -> tuple | None:
    """What file ``fd`` is open on (inode, device), or None: the watch's record socket, which a
    notebook that closed it or put another file in its place (``os.dup2``) no longer has."""
    try:
        found = _fstat(fd)
    except (OSError, TypeError):
        return None
    return found[1:3]  # as values.record reads it


_fstat = os.fstat  # taken before any cell runs


_object_attribute = object.__getattribute__  # taken before any cell runs (the watch's too)


def submodules(module) -> list:
    """``module.modules()`` read from the modules' ``_modules`` dicts (a cell can replace
    ``nn.Module.modules``, and its code would run here, where the call's inputs are within reach)."""
    found, stack = [], [module]
    while stack:
        current = stack.pop()
        if any(current is m for m in found):
            continue
        found.append(current)
        children = _object_attribute(current, "__dict__").get("_modules")
        stack += [m for m in dict.values(children) if m is not None] if type(children) is dict else []
    return found


def torch_parts() -> tuple:
    """The parts of torch the watch and the reply run, whose Python a cell could replace: the
    function modes (the forbidden-function watch), the tensor class and serialization (the reply)."""
    import pickle

    import torch.overrides
    import torch.serialization
    import torch.storage

    return (torch.overrides, torch.overrides.TorchFunctionMode, torch.serialization, torch.Tensor,
            sys.modules["torch._tensor"], torch.storage, torch.storage.UntypedStorage, torch._utils, pickle,
            copyreg, torch._C)


def _version_offset() -> int | None:
    """Where a dict keeps its version (CPython's ``ma_version_tag``, after the object's header and
    its count), if this Python keeps one that every change of the dict moves: not from 3.14, nor
    where the object header is another size (a free-threaded build)."""
    if sys.implementation.name != "cpython" or sysconfig.get_config_var("Py_GIL_DISABLED"):
        return None
    offset = 2 * ctypes.sizeof(ctypes.c_void_p) + ctypes.sizeof(ctypes.c_ssize_t)
    probe = {"a": 1}
    read = _version_at(id(probe) + offset)
    first = read.value
    probe["a"] = 2
    second = read.value
    probe["a"] = 1
    return offset if len({first, second, read.value}) == 3 else None


_version_at = ctypes.c_uint64.from_address  # taken before any cell runs
_VERSION_OFFSET = _version_offset()


def version_places(dicts) -> tuple:
    """Where each dict keeps its version (empty where this Python keeps none, see above): any
    change of a dict moves it, also one put back since (a name swapped and restored). Addresses,
    read afresh by :func:`versions`: no object that could write there is kept."""
    if _VERSION_OFFSET is None:
        return ()
    dicts = [_referents(d)[0] if type(d) is _proxy else d for d in dicts]  # a class's: the dict behind its proxy
    assert all(type(d) is dict for d in dicts)
    return tuple(id(d) + _VERSION_OFFSET for d in dicts)


def versions(places: tuple, _value=attrgetter("value"), _at=_version_at, _map=map, _tuple=tuple) -> tuple:
    """The versions at ``places`` (:func:`version_places`) now, with C functions alone, bound as
    defaults: a global swapped by a cell would read what it likes."""
    return _tuple(_map(_value, _map(_at, places)))
