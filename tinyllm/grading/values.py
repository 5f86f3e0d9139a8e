"""A learner's values as plain data, and how they travel between the two grading processes.

:func:`pack` turns a value into plain data: tensors (detached copies), numbers, strings,
lists, tuples and dicts; a module becomes its type name and ``state_dict``, anything else
(a generator, ``...``) its type name. :func:`unpack` makes the value again (a stand-in
object for what was not data); :func:`same` compares two packed values; :func:`write_back`
puts a packed after-call state into the test's own objects; :func:`mapped` walks nested inputs.

:func:`send` and :func:`receive` frame messages on a pipe: a packed value as JSON
(:mod:`tinyllm.grading.wire`), its length in front. What the sandbox sends is read as
nothing but plain data, tensors that own exactly their memory, within an element budget
and within ``READ_SECONDS``, so a forged message cannot make the grader allocate more
than it read nor hold it. The grader's requests carry the call's inputs as JSON too where
that keeps them as they are, else (modules, parameters, views) as ``torch.save`` bytes, which
only the sandbox reads.
"""

from __future__ import annotations

import contextlib
import io
import marshal
import os
import re
import select
import signal
import struct
import threading
import time
from collections.abc import Callable
from itertools import compress
from operator import not_
from typing import Any

import torch

from tinyllm.grading import wire

MAX_DEPTH = 24  # nesting of a recorded value
MAX_ITEMS = 200_000  # list/dict items in one recorded value
OBJECT = wire.OBJECT  # (OBJECT, type name, a module's packed state or None): not data
CALLBACK = "__tinyllm_callback__:"  # + an index: a test's callable input, left in the grader
_PLAIN = wire.PLAIN  # items a list or tuple is packed as it is


def pack(value: Any, depth: int = 0, budget: list[int] | None = None):
    """``value`` as plain data (what :mod:`tinyllm.grading.wire` writes)."""
    budget = budget if budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if depth > MAX_DEPTH or budget[0] < 0:
        return (OBJECT, "value too large to record", None)
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized or value.device.type == "meta":
            return (OBJECT, f"{value.layout} tensor", None)
        copy = value.detach().cpu().as_subclass(torch.Tensor).clone().contiguous()  # a Parameter: a tensor
        return copy.requires_grad_(value.requires_grad and copy.is_floating_point())
    for kind in (bool, int, float, str):  # subclasses (an IntEnum, a numpy float) as the base type
        if isinstance(value, kind):
            return kind(value)
    if value is None:
        return None
    if isinstance(value, torch.Size):
        return torch.Size(int(n) for n in value)
    if type(value) in (list, tuple) and set(map(type, value)) <= _PLAIN and budget[0] >= len(value):
        budget[0] -= len(value)  # one step, not a call per item: in the sandbox this runs under the profiler
        return list(value) if type(value) is list else tuple(value)
    if isinstance(value, (list, tuple)):
        items = [pack(v, depth + 1, budget) for v in list(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        return {pack(k, depth + 1, budget): pack(v, depth + 1, budget) for k, v in list(value.items())}
    if isinstance(value, torch.nn.Module):
        return (OBJECT, type(value).__name__, {str(k): pack(v) for k, v in value.state_dict().items()})
    return (OBJECT, type(value).__name__, None)  # ..., a generator, a function


def _is_object(data) -> bool:
    return type(data) is tuple and len(data) == 3 and data[0] == OBJECT


def mapped(value, leaf: Callable):
    """``value`` with every item of its nested lists, tuples and dicts (values) put through ``leaf``."""
    if (type(value) is list or type(value) is tuple) and set(map(type, value)) <= _PLAIN:
        return type(value)(map(leaf, value))  # no container inside: no call of this per item (the profiler's)
    if isinstance(value, list):
        return [mapped(v, leaf) for v in value]
    if isinstance(value, tuple) and not isinstance(value, torch.Size):  # a named tuple: a tuple
        return tuple(mapped(v, leaf) for v in value)
    if isinstance(value, dict):
        return {k: mapped(v, leaf) for k, v in value.items()}
    return leaf(value)


def leaves(value) -> list:
    """Every item of nested lists, tuples and dicts that is none of them (dict values only)."""
    found: list = []
    mapped(value, found.append)
    return found


def objects(value) -> list:
    """The leaves of ``value`` that are not plain scalars (bool, int, float, str or None by exact
    type), picked out with C functions alone: the sandbox asks under its profiler."""
    found = leaves(value)
    return list(compress(found, map(not_, map(_PLAIN.__contains__, map(type, found)))))


def given(inputs: tuple[list, dict]) -> tuple[frozenset, frozenset]:
    """What a call was given (``inputs`` is ``(args, kwargs)``), for :func:`shares`: the lists
    and dicts passed as arguments, and the memory of every tensor passed. Taken before the
    call, and immutable: code that reaches the caller's frame cannot change it."""
    containers = frozenset(id(a) for a in [*inputs[0], *inputs[1].values()] if isinstance(a, (list, dict)))
    memory = frozenset(t.untyped_storage().data_ptr() for t in leaves(inputs)
                       if isinstance(t, torch.Tensor) and t.numel())
    return containers, memory


def shares(value, what: tuple[frozenset, frozenset]) -> bool:
    """Whether ``value`` is or holds a list or dict the call was given (``what``: see
    :func:`given`), or a tensor sharing memory with one given (itself, or a view): what a
    statement asking for a new list or new tensors rules out. The items of a new list may be
    the caller's own: a new list of the same messages is new."""
    containers, memory = what

    def held(v, depth: int) -> bool:
        if id(v) in containers or (isinstance(v, torch.Tensor) and v.numel() > 0
                                   and v.untyped_storage().data_ptr() in memory):
            return True
        if depth < MAX_DEPTH and isinstance(v, (list, tuple, dict)):
            return any(held(item, depth + 1) for item in list(v.values() if isinstance(v, dict) else v))
        return False

    return held(value, 0)


def shared_within(value) -> bool:
    """Whether two tensors held in ``value`` share memory: one tensor twice, or views of one whose
    spans of bytes overlap (two columns of a matrix count, though no element is in both). Rows of
    one new tensor (``stacked.unbind(0)``) are apart: changing one cannot change another
    (comparing their storage refused that right answer of set 13)."""
    spans = sorted((t.data_ptr(), t.data_ptr() + t.element_size() * (1 + sum((n - 1) * s for n, s in
                                                                             zip(t.shape, t.stride()))))
                   for t in leaves(value) if isinstance(t, torch.Tensor) and t.numel())
    return any(start < end for (_, end), (start, _) in zip(spans, spans[1:]))


def _stand_in(type_name: str):
    """An object whose type has the recorded name (so "returned a generator" still reads)."""
    name = re.sub(r"\W", "_", str(type_name))[:60] or "object"
    name = name if name[0].isalpha() else "x" + name
    return type(name, (), {"__repr__": lambda self: f"<{type_name}>"})()


def unpack(data):
    """The value that :func:`pack` recorded (a stand-in for what it could not)."""
    if _is_object(data):
        return Ellipsis if data[1] == "ellipsis" else _stand_in(data[1])
    if isinstance(data, list):
        return [unpack(v) for v in data]
    if type(data) is tuple:
        return tuple(unpack(v) for v in data)
    if isinstance(data, dict):
        return {unpack(k): unpack(v) for k, v in data.items()}
    return data


def same(a, b) -> bool:
    """Two packed values are the same (floats to a tiny tolerance, for thread counts)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        return torch.equal(a, b) or (a.is_floating_point() and
                                     bool(torch.allclose(a, b, rtol=1e-5, atol=1e-7, equal_nan=True)))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return len(a) == len(b) and all(same(ka, kb) and same(va, vb)
                                        for (ka, va), (kb, vb) in zip(a.items(), b.items()))
    return a == b or (isinstance(a, float) and a != a and b != b)


def write_back(target, data) -> Any:
    """Make ``target`` hold the packed ``data`` in place where it can; return the new value."""
    if isinstance(data, torch.Tensor) and isinstance(target, torch.Tensor):
        with torch.no_grad():
            if target.shape == data.shape and target.dtype == data.dtype:
                target.copy_(data)
            else:
                target.set_(data.detach().clone())
        return target
    if isinstance(data, list) and isinstance(target, list):
        if len(target) == len(data):
            for i, item in enumerate(data):
                target[i] = write_back(target[i], item)
        else:
            target[:] = unpack(data)
        return target
    if isinstance(data, dict) and isinstance(target, dict):
        new = unpack(data)
        target.clear()
        target.update(new)
        return target
    if _is_object(data):
        if isinstance(target, torch.nn.Module) and isinstance(data[2], dict):
            with torch.no_grad():
                try:
                    target.load_state_dict(data[2])
                except (RuntimeError, KeyError, TypeError):
                    pass
        return target
    if type(data) is tuple and isinstance(target, tuple) and len(target) == len(data):
        for item, packed in zip(target, data):
            write_back(item, packed)
        return target
    return unpack(data)


# ---------------------------------------------------------------------------------------
# Messages between the grader (phase 2) and the sandbox (phase 1)
# ---------------------------------------------------------------------------------------

MAX_MESSAGE_BYTES = 64 << 20  # one message from the sandbox
# Taken at import, before a notebook runs: a cell that replaces json's encoder or os.write does not send.
_SAVE, _WRITE, _SELECT, _PACK, _BUFFER = torch.save, os.write, select.select, struct.pack, io.BytesIO
_FSTAT, _EXIT, _DUMPS, _LOADS = os.fstat, os._exit, wire.dumps, wire.loads
# What the sandbox reads a request with: C functions taken before any cell runs (a cell's os.read
# would run before the call's watch is on, with the request's bytes within reach up the stack).
_READ, _UNPACK, _MARSHAL_LOADS, _MONOTONIC = os.read, struct.unpack, marshal.loads, time.monotonic
CLOSED = "the other side closed the channel"
LATE = "no answer in time"


class ChannelError(Exception):
    """The other side sent nothing usable in time (it died, hung, or sent garbage)."""


def send(fd: int, message: Any, deadline: float | None = None) -> None:
    """Write ``message`` (packed, as JSON) with its length in front; to a non-blocking ``fd``
    (the grader's end), give up at ``deadline``: a sandbox that stops reading cannot hold
    the grader."""
    write(fd, encode(message), deadline)


def encode(message: Any) -> bytes:
    """``message`` as :func:`send` writes it."""
    data = _DUMPS(message)
    return _PACK("<Q", data.__len__()) + data


MAX_TEXT_BYTES = 1 << 20  # the text part of a message from the sandbox


def text_part(lines) -> bytes:
    """The second part of every message from the sandbox: lines of text (the watch's notes, the
    cells' limit notes), UTF-8 with the length in front. Made with str and bytes methods alone:
    it is made after the watch stops, where :func:`encode` would run Python a cell could have
    replaced (json's, a tensor's), unwatched."""
    data = "\n".join(lines).encode("utf-8", "replace")
    return _PACK("<Q", data.__len__()) + data


def receive_text(fd: int, deadline: float | None = None) -> list[str]:
    """The text part after a message from the sandbox (:func:`text_part`)."""
    (size,) = struct.unpack("<Q", _read_exactly(fd, 8, deadline))
    if size > MAX_TEXT_BYTES:
        raise ChannelError(f"a text of {size:,} bytes (at most {MAX_TEXT_BYTES:,})")
    data = _read_exactly(fd, size, deadline).decode("utf-8", "replace")
    return data.split("\n") if data else []


# The watch's record: each note sent at once to the grader (a message of its own on a socket:
# unlike a pipe's, its end in the sandbox reads nothing back, and /proc/self/fd opens no other
# end), so that a notebook that empties the watch's notes from up the stack hides nothing.
RECORD, NOTE, FORBIDDEN = b"\x1e", b"N", b"F"  # a record: RECORD, its kind, a line of text


def record(fd: int | None, kind: bytes, text: str, identity: tuple | None = None) -> None:
    """In the sandbox: write one record (nothing without a record: a watch outside grading); the sandbox
    ends if ``fd`` is not the record's socket (``identity``): a cell could dup2 /dev/null there for a while."""
    try:  # no call of Python here: it runs in the forbidden-function mode's handler too, watched
        _WRITE(fd, RECORD + kind + text.encode("utf-8", "replace").replace(RECORD, b" ")[:400] + b"\n")
    except TypeError:  # no record: a watch outside grading. One the notebook broke raises: the sandbox ends
        return
    if identity is not None and _FSTAT(fd)[1:3] != identity:  # fingerprints.file_identity's (inode, device)
        _EXIT(3)


def read_records(fd: int) -> tuple[set[str], set[str], bool, bool]:
    """In the grader: every record sent so far (``fd`` does not block): (notes, forbidden names
    seen, whether anything but records was sent there, which only the notebook does, whether the
    sandbox's end is closed). Nothing to read yet is not the end: only an empty read is."""
    chunks, closed = [], False
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        closed = True
    first, *records = b"".join(chunks).split(RECORD)
    notes, forbidden, other = set(), set(), bool(first)
    for item in records:
        line, newline, rest = item[1:].partition(b"\n")
        other = other or item[:1] not in (NOTE, FORBIDDEN) or not newline or bool(rest)
        (forbidden if item[:1] == FORBIDDEN else notes).add(line.decode("utf-8", "replace")[:300])
    return notes, forbidden, other, closed


def write(fd: int, data: bytes, deadline: float | None = None) -> None:
    """Write ``data`` made by :func:`encode` (see :func:`send`)."""
    view = memoryview(data)
    while view:
        try:
            view = view[_WRITE(fd, view):]
        except BlockingIOError:  # no deadline: wait until the pipe takes more
            wait = None if deadline is None else max(deadline - time.monotonic(), 0)
            if not _SELECT([], [fd], [], wait)[1]:
                raise ChannelError(LATE) from None


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - _MONOTONIC()
            if wait <= 0 or not _SELECT([fd], [], [], wait)[0]:
                raise ChannelError(LATE)
        chunk = _READ(fd, left if left < 1 << 20 else 1 << 20)
        if not chunk:
            raise ChannelError(CLOSED)
        chunks.append(chunk)
        left -= chunk.__len__()
    return b"".join(chunks)


def send_request(fd: int, header: dict, payload: Any = None, deadline: float | None = None) -> None:
    """To the sandbox: ``header`` (plain values: what is asked) as ``marshal`` writes it, and
    ``payload`` (the call's inputs) inside it: JSON where it arrives as it is (:func:`wire.travels`),
    else (modules, parameters, views, shared inputs) ``torch.save`` bytes."""
    if payload is None:
        data = b""
    elif wire.travels(payload):
        data = b"J" + wire.dumps(payload)
    else:
        buffer = _BUFFER()
        _SAVE(payload, buffer)
        data = b"P" + buffer.getvalue()
    body = marshal.dumps((header, data))
    write(fd, _PACK("<Q", body.__len__()) + body, deadline)


def receive_request(fd: int) -> tuple[dict, bytes]:
    """In the sandbox: (header, payload bytes), read with C functions alone. The payload is
    read (:func:`load_payload`) only once the call's watch is on: unpickling runs Python
    (a class's ``__setstate__``, a module's attribute) that a cell could have replaced."""
    (size,) = _UNPACK("<Q", _read_exactly(fd, 8, None))
    return _MARSHAL_LOADS(_read_exactly(fd, size, None))


def load_payload(data: bytes) -> Any:
    if data[:1] == b"J":
        return _LOADS(data[1:], 1 << 40, 1 << 40)
    return torch.load(_BUFFER(data[1:]), weights_only=False)


def receive(fd: int, deadline: float | None = None, trusted: bool = False,
            max_elements: int = 1 << 24) -> Any:
    """Read one message (:func:`encode`): packed plain data; from the sandbox (``trusted=False``)
    at most ``MAX_MESSAGE_BYTES`` and ``max_elements`` tensor elements, read within ``READ_SECONDS``."""
    (size,) = struct.unpack("<Q", _read_exactly(fd, 8, deadline))
    if not trusted and size > MAX_MESSAGE_BYTES:
        raise ChannelError(f"a message of {size:,} bytes (at most {MAX_MESSAGE_BYTES:,})")
    data = _read_exactly(fd, size, deadline)
    if trusted:  # from the grader, inside the sandbox
        return wire.loads(data, 1 << 40, 1 << 40)
    try:
        with _time_limit(READ_SECONDS):
            return wire.loads(data, max_elements)
    except wire.NotPlain as exc:
        raise ChannelError(f"an unreadable message: {exc}") from None


READ_SECONDS = 10.0  # reading an honest message of 64 MiB takes well under a second


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise ChannelError in the main thread after ``seconds``: a message can be built to take
    minutes to read (a dict of integers that all hash alike), and :func:`tinyllm.grading.wire.loads`
    builds its dicts in Python, so the alarm stops it between two keys."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def too_slow(signum, frame):
        raise ChannelError(f"a message that takes more than {seconds:g} s to read")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
