"""How a packed value travels between the two grading processes: JSON, with tags for what JSON lacks.

A value made by :func:`tinyllm.grading.values.pack` (lists, tuples, dicts, str, int, float,
bool, None, ``torch.Size`` and tensors) becomes JSON text: a list stays a list; a tuple is
``{"t": [items]}``, a dict ``{"d": [key, value, key, value, ...]}`` (any packed key), a size
``{"S": [ints]}``, a tensor ``{"T": [dtype, shape, base64 of its bytes, requires_grad]}``.

The grader reads what the sandbox sends with :func:`loads` and nothing else: ``json.loads``
(C, which builds only lists, str-keyed dicts and scalars: no object, no reference shared
between two places, no pickle opcode) and a walk that rebuilds tuples, dicts, sizes and
tensors, each tensor from bytes whose length its dtype and shape must match, owning exactly
its memory, within a budget of tensor elements and of items. The grader's requests travel
the same way where that changes nothing (:func:`travels`), else as ``torch.save`` bytes.

It replaced ``torch.save`` and ``torch.load`` for these messages because in the sandbox they
run under the watch's profiler, which runs Python at every call: a reply of three (2, 8, 16)
tensors took 1,333 profiler events to write with torch.save and takes 95 here; reading a
request with those inputs and the random states, 903 with torch.load and 243 here.
"""

from __future__ import annotations

import binascii
import ctypes
import json
import json.encoder
import math
import sys
from typing import Any

import torch

MAX_DEPTH = 32  # nesting of a message (a packed value's own, 24, and the message around it)
_LARGEST = 1 << 62  # a dimension: what torch holds in an int64, with room for products
PLAIN = {bool, int, float, str, type(None)}  # scalars, written as they are (values.pack keeps them too)
OBJECT = "__tinyllm_object__"  # (OBJECT, type name, a module's packed state or None): not data
# Every dtype a tensor may travel in, by name; others travel as an object's name (see to_wire).
DTYPES = {str(d): d for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.complex64,
                              torch.complex128, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                              torch.bool)}
_STRICT = sys.version_info >= (3, 11)  # base64 with nothing but its alphabet
NAMES = {dtype: name for name, dtype in DTYPES.items()}
_GRADIENTS = {dtype for dtype in NAMES if dtype.is_floating_point or dtype.is_complex}


class NotPlain(ValueError):
    """What was read is not a packed value (the sandbox sent something else)."""


def _refuse(value):
    raise TypeError(f"a {type(value).__name__} is not plain data")


# One C encoder made at import (before any cell runs): dumping a message is one call, not json's Python.
_ENCODE = json.encoder.c_make_encoder(None, _refuse, json.encoder.encode_basestring_ascii, None, ":", ",",
                                      False, False, True) if json.encoder.c_make_encoder else None
# C functions (ctypes' own string_at, not its Python wrapper): in the sandbox each Python call is a profiler event.
_LOADS, _B64ENCODE, _B64DECODE, _STRING_AT = json.loads, binascii.b2a_base64, binascii.a2b_base64, ctypes._string_at


def dumps(value: Any) -> bytes:
    """``value`` (packed) as the ASCII bytes of its JSON."""
    wired = to_wire(value)
    return ("".join(_ENCODE(wired, 0)) if _ENCODE is not None else json.dumps(wired)).encode("ascii")


def to_wire(value: Any) -> Any:
    """``value`` with every tuple, dict, size and tensor replaced by its tag (see the module)."""
    kind = type(value)
    if kind is list:  # a list of scalars as it is: one step, not a call per item (the profiler's, in the sandbox)
        return value if set(map(type, value)) <= PLAIN else [to_wire(v) for v in value]
    if kind is tuple:
        return {"t": value if set(map(type, value)) <= PLAIN else [to_wire(v) for v in value]}
    if kind is dict:
        return {"d": [to_wire(x) for pair in value.items() for x in pair]}
    if kind is torch.Size:
        return {"S": [int(n) for n in value]}
    if kind is torch.Tensor:
        if value.dtype not in NAMES:
            return {"t": [OBJECT, f"{value.dtype} tensor", None]}
        if not value.is_contiguous() or value.is_conj() or value.is_neg():  # packed ones are not: their bytes as read
            value = value.resolve_conj().resolve_neg().contiguous()
        data = _STRING_AT(value.data_ptr(), value.nbytes) if value.nbytes else b""
        return {"T": [NAMES[value.dtype], [*value.shape], _B64ENCODE(data, newline=False).decode("ascii"),
                      value.requires_grad]}
    return value  # a scalar (the encoder refuses anything else)


def travels(value: Any, seen: set | None = None) -> bool:
    """Whether ``value`` (a call's inputs, in the grader) arrives as it is through :func:`dumps`: only
    exact lists, tuples, dicts, sizes, scalars and plain CPU tensors, no object in two places (JSON would
    make two). Else the request goes as ``torch.save`` bytes (modules, parameters, views, shared inputs)."""
    seen = set() if seen is None else seen
    kind = type(value)
    if kind in PLAIN:
        return True
    if id(value) in seen:
        return False
    seen.add(id(value))
    if kind is list or kind is tuple:  # scalars alone (a random state's 625 integers): one step
        return set(map(type, value)) <= PLAIN or all(travels(v, seen) for v in value)
    if kind is dict:
        return all(travels(k, seen) and travels(v, seen) for k, v in value.items())
    if kind is torch.Size:
        return True
    return kind is torch.Tensor and str(value.dtype) in DTYPES and value.layout == torch.strided \
        and value.device.type == "cpu" and value.grad_fn is None and value.is_contiguous() \
        and value.storage_offset() == 0 and not (value.is_conj() or value.is_neg()) \
        and value.untyped_storage().nbytes() == value.nbytes and value.untyped_storage().data_ptr() not in seen \
        and not seen.add(value.untyped_storage().data_ptr())


def loads(data: bytes, max_elements: int, max_items: int = 1_000_000) -> Any:
    """The packed value ``data`` holds, or :class:`NotPlain`; at most ``max_elements`` tensor elements
    and ``max_items`` other items (the grader's own messages, read in the sandbox: no limit)."""
    try:
        wired = _LOADS(data)
    except (ValueError, RecursionError) as exc:
        raise NotPlain(f"not JSON ({type(exc).__name__})") from None
    try:
        return _from_wire(wired, 0, [max_elements, max_items])
    except (TypeError, ValueError, RuntimeError, RecursionError, binascii.Error) as exc:
        raise NotPlain(f"not a packed value ({type(exc).__name__})") from None


def _from_wire(value, depth: int, budget: list) -> Any:
    """The packed value ``value`` (parsed JSON) stands for; raises on anything else."""
    budget[1] -= 1
    if depth > MAX_DEPTH or budget[1] < 0:
        raise NotPlain("a value nested too deep or with too many items")
    kind = type(value)
    if kind in PLAIN:
        return value
    if kind is list:
        return _scalars(value, budget) or [_from_wire(v, depth + 1, budget) for v in value]
    if kind is not dict or len(value) != 1:
        raise NotPlain("an object that is not one tag")
    ((tag, body),) = value.items()
    if type(body) is not list:
        raise NotPlain("a tag without a list")
    if tag == "t":
        return tuple(_scalars(body, budget) or [_from_wire(v, depth + 1, budget) for v in body])
    if tag == "d" and len(body) % 2 == 0:
        items = [_from_wire(v, depth + 1, budget) for v in body]
        made = {}
        for i in range(0, len(items), 2):  # one key at a time: values' alarm stops keys built to collide
            made[items[i]] = items[i + 1]
        return made
    if tag == "S" and all(type(n) is int and 0 <= n < _LARGEST for n in body):
        return torch.Size(body)
    if tag == "T" and len(body) == 4:
        return _tensor(*body, budget=budget)
    raise NotPlain(f"an unknown tag {str(tag)[:20]!r}")


def _scalars(items: list, budget: list) -> list | None:
    """``items`` if it holds scalars alone (read in one step, not a call each: the profiler's, in the
    sandbox), else None."""
    if not set(map(type, items)) <= PLAIN:
        return None
    budget[1] -= len(items)
    if budget[1] < 0:
        raise NotPlain("a value with too many items")
    return items


def _tensor(dtype: str, shape: list, text: str, requires_grad: bool, budget: list) -> torch.Tensor:
    if dtype not in DTYPES or type(shape) is not list or type(text) is not str or type(requires_grad) is not bool \
            or not all(type(n) is int and 0 <= n < _LARGEST for n in shape) or len(shape) > MAX_DEPTH:
        raise NotPlain("a tensor that is not described as one")
    count = math.prod(shape)
    budget[0] -= count
    if budget[0] < 0:
        raise NotPlain("more tensor elements than the grader reads, far more than the tests use")
    kind = DTYPES[dtype]
    if len(text) != 4 * -(-count * kind.itemsize // 3):  # base64's length for that many bytes, before decoding
        raise NotPlain("a tensor whose bytes do not match its shape")
    raw = bytearray(_B64DECODE(text, strict_mode=True) if _STRICT else _B64DECODE(text))
    if len(raw) != count * kind.itemsize:  # Python 3.10's decoder skips what is not base64
        raise NotPlain("a tensor whose bytes do not match its shape")
    tensor = torch.frombuffer(raw, dtype=kind).reshape(shape) if count else torch.empty(shape, dtype=kind)
    return tensor.requires_grad_(True) if requires_grad and kind in _GRADIENTS else tensor
