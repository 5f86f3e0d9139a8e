"""A learner's values as plain data, and how they travel between the two grading processes.

:func:`pack` turns a value into tagged tuples of tensors, numbers, strings and lists (a
module becomes its ``state_dict``, anything else "a <type>"); :func:`unpack` makes the
value again; :func:`same` compares two packed values; :func:`write_back` puts a packed
after-call state into the test's own objects.

:func:`send` and :func:`receive` frame messages on a pipe. What the sandbox sends is read
with ``torch.load(weights_only=True)`` (tensors and plain data, never objects) and then
checked by :func:`check_plain`: only plain types, and tensors that own exactly their
storage (contiguous, no offset, no stride-0 view of a small buffer), within an element
budget, so a forged message cannot make the grader allocate more than it read.
"""

from __future__ import annotations

import io
import os
import re
import select
import struct
import time
from typing import Any

import torch

MAX_DEPTH = 24  # nesting of a recorded value
MAX_ITEMS = 200_000  # list/dict items in one recorded value


class _Budget:
    def __init__(self):
        self.items = 0


def pack(value: Any, depth: int = 0, budget: _Budget | None = None):
    """``value`` as tagged plain data that ``torch.load(weights_only=True)`` can read."""
    budget = budget or _Budget()
    budget.items += 1
    if depth > MAX_DEPTH or budget.items > MAX_ITEMS:
        return ("other", "value too large to record")
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided or value.is_quantized or value.device.type == "meta":
            return ("other", f"{value.layout} tensor")
        t = value.detach().cpu().clone().contiguous()
        return ("tensor", t, bool(value.requires_grad))
    if value is None or isinstance(value, bool):
        return ("atom", value)
    if isinstance(value, int):
        return ("atom", int(value))
    if isinstance(value, float):
        return ("atom", float(value))
    if isinstance(value, str):
        return ("atom", str(value))
    if value is Ellipsis:
        return ("ellipsis",)
    if isinstance(value, torch.Size):
        return ("size", [int(n) for n in value])
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        return (kind, [pack(v, depth + 1, budget) for v in list(value)])
    if isinstance(value, dict):
        return ("dict", [[pack(k, depth + 1, budget), pack(v, depth + 1, budget)] for k, v in list(value.items())])
    if isinstance(value, torch.nn.Module):
        state = {str(k): v.detach().cpu().clone() for k, v in value.state_dict().items()}
        return ("module", type(value).__name__, state)
    return ("other", type(value).__name__)


def leaves(value):
    """Every item of nested lists, tuples and dicts that is none of them (dict values only)."""
    if isinstance(value, (list, tuple)):
        for v in value:
            yield from leaves(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from leaves(v)
    else:
        yield value


def _stand_in(type_name: str):
    """An object whose type has the recorded name (so "returned a generator" still reads)."""
    name = re.sub(r"\W", "_", str(type_name))[:60] or "object"
    if not name[0].isalpha():
        name = "x" + name
    return type(name, (), {"__repr__": lambda self: f"<{type_name}>"})()


def unpack(data):
    """The value that :func:`pack` recorded (a stand-in for what it could not)."""
    tag = data[0]
    if tag == "tensor":
        t = data[1].clone()
        if data[2] and t.is_floating_point():
            t.requires_grad_(True)
        return t
    if tag == "atom":
        return data[1]
    if tag == "ellipsis":
        return Ellipsis
    if tag == "size":
        return torch.Size(data[1])
    if tag == "list":
        return [unpack(v) for v in data[1]]
    if tag == "tuple":
        return tuple(unpack(v) for v in data[1])
    if tag == "dict":
        return {unpack(k): unpack(v) for k, v in data[1]}
    if tag == "module":
        return _stand_in(data[1])
    return _stand_in(data[1])


def same(a, b) -> bool:
    """Two packed values are the same (floats to a tiny tolerance, for thread counts)."""
    if not (isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) and a and b and a[0] == b[0]):
        return False
    tag = a[0]
    if tag == "tensor":
        x, y = a[1], b[1]
        if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
            return False
        if x.dtype != y.dtype or x.shape != y.shape:
            return False
        if torch.equal(x, y):
            return True
        return x.is_floating_point() and bool(torch.allclose(x, y, rtol=1e-5, atol=1e-7, equal_nan=True))
    if tag == "atom":
        x, y = a[1], b[1]
        if type(x) is not type(y):
            return False
        return x == y or (isinstance(x, float) and x != x and y != y)
    if tag in ("list", "tuple", "size"):
        return len(a[1]) == len(b[1]) and all(
            (same(x, y) if tag != "size" else x == y) for x, y in zip(a[1], b[1])
        )
    if tag == "dict":
        return len(a[1]) == len(b[1]) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a[1], b[1])
        )
    if tag == "module":
        return a[1] == b[1] and sorted(a[2]) == sorted(b[2]) and all(
            same(("tensor", a[2][k], False), ("tensor", b[2][k], False)) for k in a[2]
        )
    return tuple(a) == tuple(b)


def write_back(target, data) -> Any:
    """Make ``target`` hold the packed ``data`` in place where it can; return the new value."""
    tag = data[0]
    if tag == "tensor" and isinstance(target, torch.Tensor):
        with torch.no_grad():
            if target.shape == data[1].shape and target.dtype == data[1].dtype:
                target.copy_(data[1])
            else:
                target.set_(data[1].clone())
        return target
    if tag == "list" and isinstance(target, list):
        if len(target) == len(data[1]):
            for i, item in enumerate(data[1]):
                target[i] = write_back(target[i], item)
        else:
            target[:] = unpack(data)
        return target
    if tag == "dict" and isinstance(target, dict):
        new = unpack(data)
        target.clear()
        target.update(new)
        return target
    if tag == "module" and isinstance(target, torch.nn.Module):
        with torch.no_grad():
            try:
                target.load_state_dict(data[2])
            except (RuntimeError, KeyError, TypeError):
                pass
        return target
    if tag == "tuple" and isinstance(target, tuple) and len(target) == len(data[1]):
        for item, packed in zip(target, data[1]):
            write_back(item, packed)
        return target
    return unpack(data) if tag not in ("other", "module") else target


# ---------------------------------------------------------------------------------------
# Messages between the grader (phase 2) and the sandbox (phase 1)
# ---------------------------------------------------------------------------------------

MAX_MESSAGE_BYTES = 64 << 20  # one message from the sandbox
CLOSED = "the other side closed the channel"
LATE = "no answer in time"


class ChannelError(Exception):
    """The other side sent nothing usable in time (it died, hung, or sent garbage)."""


def send(fd: int, message: Any) -> None:
    """Write ``message`` (``torch.save``d) with its length in front."""
    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    data = struct.pack("<Q", len(data)) + data
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _read_exactly(fd: int, n: int, deadline: float | None) -> bytes:
    chunks, left = [], n
    while left:
        if deadline is not None:
            wait = deadline - time.monotonic()
            if wait <= 0 or not select.select([fd], [], [], wait)[0]:
                raise ChannelError(LATE)
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise ChannelError(CLOSED)
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd: int, deadline: float | None = None, trusted: bool = False,
            max_elements: int = 1 << 24) -> Any:
    """Read one message; from the sandbox (``trusted=False``) only checked plain data."""
    (size,) = struct.unpack("<Q", _read_exactly(fd, 8, deadline))
    if not trusted and size > MAX_MESSAGE_BYTES:
        raise ChannelError(f"a message of {size:,} bytes (at most {MAX_MESSAGE_BYTES:,})")
    raw = io.BytesIO(_read_exactly(fd, size, deadline))
    if trusted:  # from the grader, inside the sandbox: modules and other objects too
        return torch.load(raw, weights_only=False)
    try:
        message = torch.load(raw, weights_only=True, map_location="cpu")
    except Exception as exc:
        raise ChannelError(f"an unreadable message ({type(exc).__name__})") from None
    check_plain(message, max_elements)
    return message


def check_plain(value: Any, max_elements: int) -> None:
    """Raise ChannelError unless ``value`` is plain data whose tensors own their storage."""
    seen: set[int] = set()
    budget = [max_elements, 1_000_000]  # tensor elements, other items

    def walk(v, depth):
        budget[1] -= 1
        if depth > MAX_DEPTH + 8 or budget[1] < 0:
            raise ChannelError("a value nested too deep or with too many items")
        if v is None or type(v) in (bool, int, float, str):
            return
        if type(v) in (list, tuple):
            for item in v:
                walk(item, depth + 1)
            return
        if type(v) is dict:
            for k, item in v.items():
                walk(k, depth + 1)
                walk(item, depth + 1)
            return
        if type(v) is torch.Tensor:
            if v.layout != torch.strided or v.device.type != "cpu" or v.is_quantized:
                raise ChannelError("a tensor that is not a plain CPU tensor")
            storage = v.untyped_storage()
            if not v.is_contiguous() or v.storage_offset() != 0 or storage.nbytes() != v.numel() * v.element_size():
                raise ChannelError("a tensor that does not own exactly its storage (a strided view)")
            if storage.data_ptr() in seen and v.numel():
                raise ChannelError("two tensors sharing one storage")
            seen.add(storage.data_ptr())
            budget[0] -= v.numel()
            if budget[0] < 0:
                raise ChannelError(f"more than {max_elements:,} tensor elements, far more than the tests use")
            return
        raise ChannelError(f"a {type(v).__name__}, which is not plain data")

    walk(value, 0)
