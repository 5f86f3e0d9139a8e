"""Helpers that the exercises' tests call on a learner's code.

Every check raises ``AssertionError`` with one sentence that says what is wrong ("`softmax`
returned None: replace the ... with your code"), never what the right answer is. Otter shows
that sentence to the learner as the test's failure message.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode, _get_current_function_mode_stack, _pop_mode

from tinyllm.grading import values  # at the top: an import in a call reads a module's __spec__, a cell's
from tinyllm.grading.libraries import AUTOGRAD_RUNS, NORMALIZATIONS, genuine_frame, run_watched, text  # noqa: F401

# Forbidden.check_on's C functions and places (it runs in the watch's callback: no Python of torch's).
_all_modes_off, _stack_length, _stack_at = (torch._C._is_torch_function_all_disabled,
                                            torch._C._len_torch_function_stack, torch._C._get_function_stack_at)
_TORCH, _STDLIB, _GRADING = (os.path.dirname(path) + "/" for path in (torch.__file__, os.__file__, __file__))
_LIBRARY = (_STDLIB, "<frozen ")  # Python's own modules, in files or frozen
MODES_OFF = "ran torch with the grader's function mode off"  # then a call from C (map) reaches no mode

BLANK_HINT = "replace the ... with your code and run the cell again"


# Set by the grader for each grading (0 elsewhere): the hidden tests' random inputs are new
# each time, so a table of answers to the published tests' inputs answers nothing.
SEED_SALT = 0


def seed(n: int) -> int:
    """The seed a test draws its inputs with: ``n`` itself outside a grading; in one, a hash of
    ``n`` and the grading's salt, so that the seed one call can read (``torch.initial_seed()``)
    tells nothing of another test's."""
    if SEED_SALT == 0:
        return n
    return int.from_bytes(hashlib.sha256(f"{SEED_SALT}/{n}".encode()).digest()[:7], "little")


def defined(**things: Any) -> None:
    """Fail if a name the exercise asks for is missing (otter passes ``None`` for it)."""
    for name, value in things.items():
        if value is None:
            raise AssertionError(f"`{name}` is not defined: run its cell, and keep the name the exercise gives it")


class LearnerFunction:
    """A learner's function that lives in the sandbox, as the tests (in the grader's own process,
    :mod:`tinyllm.grading.judge`) see it: only :func:`call` calls it, sending the inputs to the
    sandbox and bringing the result back as plain data."""

    def __init__(self, name: str, session: Any):
        self.name, self.session = name, session

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"the test called `{self.name}` outside checks.call: fix the test")


def call(name: str, fn: Callable | None, *args: Any, **kwargs: Any) -> Any:
    """Call the learner's ``fn``; an exception it raises becomes a one-line failure.

    The function must leave its inputs as they were: while grading, a call that changes
    them fails. Compute expected values from copies taken before the call.
    """
    if isinstance(fn, LearnerFunction):
        return fn.session.call(name, args, kwargs, inplace=False)
    before = values.pack((list(args), dict(kwargs)))
    value = direct_call(name, fn, *args, **kwargs)
    after = values.pack((list(args), dict(kwargs)))
    if not values.same(before, after):
        raise AssertionError(changed_inputs(name, before, after))
    return value


CHANGED_INPUTS = "`{name}` changed the inputs it was given: the exercise asks you to leave them as they are and "


def changed_inputs(name: str, before: Any, after: Any) -> str:
    """The failure of a call that changed its inputs (``before`` and ``after``: them packed):
    new tensors when it changed a tensor, new lists or dicts when it changed only those."""
    pairs = zip(values.leaves(before), values.leaves(after))
    if any(isinstance(a, torch.Tensor) and not values.same(a, b) for a, b in pairs):
        return CHANGED_INPUTS.format(name=name) + "compute the result into new tensors"
    return CHANGED_INPUTS.format(name=name) + ("build the result in new lists or dicts (copy one, as list(ids) "
                                               "does, before changing it)")


def call_new(name: str, fn: Callable | None, *args: Any, **kwargs: Any) -> Any:
    """:func:`call` for a function whose statement asks for a new list or new tensors: its
    result must not be (or hold) a list or dict it was given, nor a tensor that shares memory
    with one (``return ids`` when there is nothing to merge; a view of the input), and no two
    of its tensors may share memory (``[mean] * n``)."""
    if isinstance(fn, LearnerFunction):
        return fn.session.call(name, args, kwargs, new=True)
    given = values.given((list(args), dict(kwargs)))
    value = call(name, fn, *args, **kwargs)
    failure = not_new(name, value, given)
    if failure:
        raise AssertionError(failure)
    return value


def not_new(name: str, value: Any, given: tuple[frozenset, frozenset]) -> str | None:
    """Why ``value`` is not new (see :func:`call_new`), if it is not; ``given``: what the call was
    given (:func:`tinyllm.grading.values.given`, taken before it). Run where the learner's
    function ran (the sandbox), since its result reaches the tests as a copy."""
    if values.shares(value, given):
        return (f"`{name}` returned what it was given (a list, or a tensor or a view of one, that the caller "
                "passed): the exercise asks for a new one, so that changing the result cannot change the caller's data")
    if values.shared_within(value):
        return (f"`{name}` returned tensors that share memory (one tensor twice, or overlapping views of one): "
                "the exercise asks for new ones, so that changing one cannot change another")
    return None


def call_inplace(name: str, fn: Callable | None, *args: Any, **kwargs: Any) -> Any:
    """:func:`call` for a function whose statement says it works in place (an optimizer step):
    the inputs it changed are written back into the test's own objects."""
    if isinstance(fn, LearnerFunction):
        return fn.session.call(name, args, kwargs, inplace=True)
    return direct_call(name, fn, *args, **kwargs)


def call_grad(weights: torch.Tensor | None, name: str, fn: Callable | None, *args: Any,
              **kwargs: Any) -> tuple[Any, list]:
    """:func:`call_with_shapes`, and the gradients of the result: ``(value, grads)``, for a
    statement that says the gradient must flow back to the inputs.

    The gradients are those of ``(value * weights).sum()`` (``value.sum()`` when ``weights``
    is None), taken where the function ran (the sandbox: its result reaches the tests as a
    copy, cut off from the inputs). ``grads`` holds one item per tensor or module among the
    inputs (in the order of :func:`tinyllm.grading.values.leaves`, other inputs left out): a
    tensor's gradient, or a dict of a module's parameters' gradients by name; ``None`` where
    the input does not require one, or none reached it (a detached piece, a result computed
    under ``torch.no_grad()`` or rebuilt from numbers). Compare them with torch's gradients of
    the test's own reference.
    """
    def grad_call(name, fn, *args, **kwargs):
        if isinstance(fn, LearnerFunction):
            reply = fn.session.call(name, args, kwargs, grads=(weights,))
            if not (type(reply) is tuple and len(reply) == 2 and type(reply[1]) is list):
                raise AssertionError(f"the reply for `{name}` is damaged: graded 0")
            return reply
        value = call(name, fn, *args, **kwargs)
        grads, failure = gradients(name, value, (list(args), dict(kwargs)), weights)
        if failure:
            raise AssertionError(failure)
        return value, grads

    return _naming_inputs(grad_call, name, fn, args, kwargs)


def gradients(name: str, value: Any, inputs: tuple[list, dict],
              weights: torch.Tensor | None) -> tuple[list, str | None]:
    """``(grads, why they could not be taken)`` for :func:`call_grad`: run where the learner's
    function ran, on ``inputs`` (its ``(args, kwargs)``) as they are after the call."""
    leaves = [v for v in values.leaves(inputs) if isinstance(v, (torch.Tensor, torch.nn.Module))]
    grads: list = [{n: None for n, p in v.named_parameters() if p.requires_grad} if isinstance(v, torch.nn.Module)
                   else None for v in leaves]
    wanted = [(i, None, v) for i, v in enumerate(leaves) if isinstance(v, torch.Tensor) and v.requires_grad]
    wanted += [(i, n, p) for i, v in enumerate(leaves) if isinstance(v, torch.nn.Module)
               for n, p in v.named_parameters() if p.requires_grad]
    if not (wanted and isinstance(value, torch.Tensor) and value.requires_grad and value.is_floating_point()):
        return grads, None
    if weights is not None and tuple(weights.shape) != tuple(value.shape):
        return grads, None  # the test fails on the shape of the value itself
    try:
        out = value.sum() if weights is None else (value * weights.to(value.dtype)).sum()
        found = torch.autograd.grad(out, [t for _, _, t in wanted], allow_unused=True)
    except Exception as exc:  # the learner's graph: a tensor the gradient needs, changed in place, ...
        why = str(exc).split(" Hint:")[0][:200]
        return grads, f"`{name}`'s result could not be differentiated: {type(exc).__name__}: {why}"
    for (i, key, _), grad in zip(wanted, found):
        if key is None:
            grads[i] = grad
        else:
            grads[i][key] = grad
    return grads, None


def call_without(forbidden: tuple[str, ...], name: str, fn: Callable | None, *args: Any, **kwargs: Any) -> Any:
    """:func:`call`, failing when the learner's function calls what its statement forbids.

    ``forbidden`` holds dotted names of torch functions (``torch.nn.functional.layer_norm``,
    ``torch.Tensor.log_softmax``); see :class:`Forbidden`. While grading, the sandbox watches the call.
    """
    if isinstance(fn, LearnerFunction):
        return fn.session.call(name, args, kwargs, forbidden=forbidden)
    watch = Forbidden(forbidden_keys(forbidden)).__enter__()
    try:
        value = call(name, fn, *args, **kwargs)
        failure = watch.failure(name)
    finally:
        watch.leave()
    if failure:
        raise AssertionError(failure)
    return value


def forbidden_keys(names: tuple[str, ...]) -> list[tuple[str, str, bool]]:
    """``(key, dotted name, is a prefix)`` for each forbidden dotted name: a function by its own
    name (``torch.special.log_softmax`` is ``special_log_softmax``), a family of kernels
    (``torch.ops.aten._scaled_dot_product_*``) by the start of theirs."""
    keys = []
    for dotted in names:
        if dotted.endswith("*"):
            keys.append((dotted.rsplit(".", 1)[-1][:-1].lstrip("_"), dotted, True))
            continue
        first, *rest = dotted.split(".")
        found = functools.reduce(getattr, rest, importlib.import_module(first))
        if isinstance(found, type):
            raise TypeError(f"{dotted} is a class: list the function its forward calls")
        keys.append((found.__name__.lstrip("_"), dotted, False))
    return keys


class Forbidden(TorchFunctionMode):
    """Which forbidden torch functions a call runs, however it reaches them.

    A torch function mode sees each torch function the answer calls itself (not those torch
    calls inside it), by its name: ``layer_norm`` is ``F.layer_norm``, ``torch.layer_norm``,
    ``torch.ops.aten.layer_norm`` or what ``nn.LayerNorm``'s forward calls; ``log_softmax`` is
    the tensor method too. A leading underscore does not hide a name (``aten._log_softmax``).
    A name ending in ``*`` forbids every function whose name starts so (a family of kernels).
    """

    def __init__(self, keys: list[tuple[str, str, bool]]):
        """``keys``: :func:`forbidden_keys` of the dotted names (worked out in the grader's
        process, so that the sandbox imports and looks up nothing to make this mode)."""
        super().__init__()
        self.names: dict[str, str] = {}
        self.prefixes: dict[str, str] = {}  # "torch.ops.aten._scaled_dot_product_*": a family of kernels
        for key, dotted, is_prefix in keys:
            (self.prefixes if is_prefix else self.names).setdefault(key, dotted)
        self.seen: set[str] = set()
        self.ledger: Callable[[str], None] | None = None  # in the sandbox: its record (values.record)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        dotted = self.dotted(getattr(func, "__name__", ""))
        if dotted:
            self.see(dotted)
        if func in AUTOGRAD_RUNS:  # run with this mode on again (a call more, for those alone: the watch sees each)
            return run_watched(self, func, args, kwargs or {})
        return func(*args, **(kwargs or {}))  # with this mode off: the learner's code torch runs is noted

    def see(self, dotted: str) -> None:
        """Note a forbidden call (or :data:`MODES_OFF`); in the sandbox, in its record at once too."""
        self.seen.add(dotted)
        if self.ledger is not None:
            self.ledger(dotted)

    def check_on(self, frame) -> None:
        """Note :data:`MODES_OFF` if the learner's ``frame`` runs with this mode off: all modes
        (``torch._C.DisableTorchFunction``: torch's own code never does, so any frame, whatever file
        it claims), or this one (``_pop_mode_temporarily``, or inside its handler, where torch runs
        a subclass's ``__torch_function__`` or a custom op's kernel; there, by file name)."""
        where, off = text(frame.f_code.co_filename), _all_modes_off()  # text(): no str subclass's methods run
        for index in range(0 if off else _stack_length()):  # first: the mode on, nothing more to read
            if _stack_at(index) is self:
                return
        if not off and where.startswith((_TORCH, _GRADING)) and genuine_frame(frame):  # not a cell's, renamed
            return
        if not off and where == "<string>" and frame.f_code.co_names == ("_tuple_new",) \
                and dict.get(frame.f_globals, "_tuple_new") is tuple.__new__:  # a namedtuple's __new__ (a tensor's
            return  # repr makes one): collections compiles it from a string; it makes a tuple and calls nothing
        caller = frame.f_back
        if not off and where.startswith(_LIBRARY):  # the standard library's, when torch or the grader called it
            while caller is not None and text(caller.f_code.co_filename).startswith(_LIBRARY):
                caller = caller.f_back
            if caller is not None and text(caller.f_code.co_filename).startswith((_TORCH, _GRADING)) \
                    and genuine_frame(caller):  # (the grader's own: libraries.run_watched binds with inspect)
                return
        self.see(MODES_OFF)

    def dotted(self, name: object) -> str | None:
        """The forbidden name a torch function called ``name`` is, if it is one (also asked by
        the sandbox's profiler, for calls made where torch has the modes off)."""
        stripped = str(name).split(".")[0].lstrip("_")
        found = self.names.get(stripped)
        if found is None and self.prefixes:  # a loop, not a generator: the sandbox's profiler sees each step of one
            for prefix, dotted in self.prefixes.items():
                if stripped.startswith(prefix):
                    return dotted
        return found

    def failure(self, name: str) -> str | None:
        """Why the call fails, if it does; asked while the watch is on, before :meth:`leave`."""
        stack = _get_current_function_mode_stack()
        return self.message(name, self.seen | {MODES_OFF} if not stack or stack[-1] is not self else self.seen)

    @staticmethod
    def message(name: str, seen: set[str]) -> str | None:
        """Why a call that ran what ``seen`` holds fails (the grader asks it of the sandbox's record)."""
        named = ", ".join(sorted(seen - {MODES_OFF}))  # a forbidden function seen says more than the modes
        if named:
            return f"`{name}` calls {named}, which the exercise asks you not to use: write that part yourself"
        return (f"`{name}` changed torch's function modes (or switched them off), which the grader uses to watch "
                "the call") if MODES_OFF in seen else None

    def leave(self) -> None:
        """Take the watch off this thread, with any mode the answer left above it."""
        stack = _get_current_function_mode_stack()
        ours = next((i for i, mode in enumerate(stack) if mode is self), len(stack))
        for _ in stack[ours:]:
            _pop_mode()


def direct_call(name: str, fn: Callable | None, *args: Any, **kwargs: Any) -> Any:
    """:func:`call` without recording: the learner's function, its failure in one line."""
    defined(**{name: fn})
    if not callable(fn):
        raise AssertionError(f"`{name}` should be a function, but it is {with_article(type(fn).__name__)}")
    try:
        return fn(*args, **kwargs)
    except AssertionError as exc:
        raise AssertionError(f"`{name}` failed one of its own asserts: {exc}") from None
    except Exception as exc:  # the learner's bug, reported in one line
        raise AssertionError(f"`{name}` raised {type(exc).__name__}: {exc}") from None


def returned(name: str, value: Any, kind: type | tuple[type, ...], what: str | None = None) -> Any:
    """Fail unless ``value`` is an instance of ``kind``; ``None`` means the blank was left."""
    if value is None or value is Ellipsis:
        raise AssertionError(f"`{name}` returned {value!r}: {BLANK_HINT}")
    if not isinstance(value, kind):
        expected = what or (kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind))
        got = with_article(type(value).__name__)
        raise AssertionError(f"`{name}` should return {with_article(expected)}, but returned {got}")
    return value


def with_article(noun: str) -> str:
    """``noun`` with its article: "a list", "an int"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def tensor(name: str, value: Any, shape: tuple[int, ...] | None = None, floating: bool | None = None) -> torch.Tensor:
    """Fail unless ``value`` is a tensor (of ``shape``, float or integer as asked)."""
    returned(name, value, torch.Tensor, "torch.Tensor")
    if shape is not None and tuple(value.shape) != tuple(shape):
        raise AssertionError(f"`{name}` returned a tensor of shape {tuple(value.shape)}, expected {tuple(shape)}")
    if floating is True and not value.is_floating_point():
        raise AssertionError(f"`{name}` should return floats, but its dtype is {value.dtype}")
    if floating is False and value.is_floating_point():
        raise AssertionError(f"`{name}` should return integers, but its dtype is {value.dtype}")
    return value


def close(actual: Any, expected: Any, message: str, atol: float = 1e-5, rtol: float = 1e-4) -> None:
    """Fail with ``message`` unless two numbers or tensors agree to a tolerance. A float tensor
    of more precision than the expected one fails too: float64 for float32 inputs is close in
    value, but it doubles the memory and breaks the next float32 layer (a reference computed
    in float64 accepts any float dtype)."""
    if isinstance(expected, torch.Tensor) and isinstance(actual, torch.Tensor) and expected.is_floating_point() \
            and actual.is_floating_point() and torch.finfo(actual.dtype).bits > torch.finfo(expected.dtype).bits:
        raise AssertionError(f"{message} (dtype {str(actual.dtype).removeprefix('torch.')}, expected "
                             f"{str(expected.dtype).removeprefix('torch.')}: keep the dtype of the inputs)")
    if isinstance(expected, torch.Tensor) or isinstance(actual, torch.Tensor):
        actual_t, expected_t = (torch.as_tensor(v, dtype=torch.float64) for v in (actual, expected))
        if actual_t.shape != expected_t.shape:
            raise AssertionError(f"{message} (shape {tuple(actual_t.shape)}, expected {tuple(expected_t.shape)})")
        # Equal infinities (masked logits) count as close; NaN never does.
        if not torch.allclose(actual_t, expected_t, atol=atol, rtol=rtol, equal_nan=False):
            raise AssertionError(message)
        return
    try:
        ok = math.isclose(float(actual), float(expected), rel_tol=rtol, abs_tol=atol)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise AssertionError(message)


def equal(actual: Any, expected: Any, message: str) -> None:
    """Fail with ``message`` unless ``actual == expected`` (tensors compared elementwise)."""
    if isinstance(actual, torch.Tensor) or isinstance(expected, torch.Tensor):
        a, e = torch.as_tensor(actual), torch.as_tensor(expected)
        ok = a.shape == e.shape and bool((a == e).all())
    else:
        ok = actual == expected
    if not ok:
        raise AssertionError(message)


def that(condition: Any, message: str) -> None:
    """Fail with ``message`` unless ``condition`` holds (a readable ``assert``)."""
    if not bool(condition):
        raise AssertionError(message)


# ---------------------------------------------------------------------------------------
# Messages that name the input: plurals, shapes, and calls that raise
# ---------------------------------------------------------------------------------------


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 key"``, ``"2 keys"``: a count with its noun in the right number."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


def describe(value: Any) -> str:
    """A few words for an input, for a message: a tensor's shape, a list's length, a number."""
    if isinstance(value, torch.Tensor):
        if value.dim() == 0:
            return f"a 0-d tensor ({value.item():g})" if value.is_floating_point() else "a 0-d tensor"
        return f"a tensor of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        kind = "list" if isinstance(value, list) else "tuple"
        if value and all(isinstance(v, torch.Tensor) for v in value):
            shapes = ", ".join(str(tuple(v.shape)) for v in value)
            return f"a {kind} of {plural(len(value), 'tensor')} of shape {shapes}"
        return f"a {kind} of {plural(len(value), 'item')}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 20 else f"a string of {plural(len(value), 'character')}"
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, torch.nn.Module):
        return f"a {type(value).__name__}"
    if callable(value):
        return "a function"
    return f"a {type(value).__name__}"


def call_with_shapes(name: str, fn: Callable | None, *args: Any, **kwargs: Any) -> Any:
    """:func:`call`, and when the learner's function raises, the message also says its inputs: a
    hidden test's (a 4-D tensor, another head count) are ones the learner has not seen."""
    return _naming_inputs(call, name, fn, args, kwargs)


def _naming_inputs(caller: Callable, name: str, fn: Callable | None, args: tuple, kwargs: dict) -> Any:
    """``caller(name, fn, *args, **kwargs)``; when the learner's function raises, the message
    also says its inputs (see :func:`call_with_shapes`)."""
    try:
        return caller(name, fn, *args, **kwargs)
    except AssertionError as exc:
        message = str(exc)
        if not (message.startswith(f"`{name}` raised ") or message.startswith(f"`{name}` failed one of its own")):
            raise
        first = (message.splitlines() or [""])[0]
        first = first if len(first) <= 300 else first[:297] + "..."
        shown = [describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()]
        raise AssertionError(f"{first} (called with {', '.join(shown)})") from None
