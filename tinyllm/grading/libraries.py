"""Other libraries' versions of the pieces the exercises ask for, seen by the call watch.

An answer that runs another library's version of the piece it asks for is flagged, as one
that runs the package's own is (:class:`tinyllm.grading.watch.Monitor`): libraries that
build language models (Colab has transformers), engines that run a graph of another
framework's operators (an ONNX graph of one ``Attention`` or ``LayerNormalization`` node, run by
onnxruntime or by onnx's own reference evaluator), and the parts of torch that are a whole
piece (its optimizers and schedules, gradient clipping, its transformer layers, its
multi-head attention, its probability distributions, its ONNX operators written in torch,
its quantization, its tests' reference functions) with their C++ kernels. torch's plain
functions are the learner's to use; those a statement forbids fail the call instead
(:class:`tinyllm.grading.checks.Forbidden`), with the other roads to them listed here:
torch's Python references of its operators, and :data:`NORMALIZATIONS`, the family a
statement that forbids one normalisation forbids.
"""

from __future__ import annotations

import inspect
import os
import sys
import types
from pathlib import Path

import torch
from torch.autograd import _make_grads, _tensor_or_tensors_to_tuple
from torch.autograd.graph import GradientEdge, _engine_run_backward

# Libraries that build models, whole: their pieces are the exercises' (timm's and diffusers' norms and attention,
# sentence-transformers' cos_sim, torchao's int8 quantization), and so are those of the other frameworks (Colab has
# jax, TensorFlow, Keras, scikit-learn: jax.nn.dot_product_attention is attention, sklearn's cosine_similarity 04's).
LIBRARIES = ("transformers", "tokenizers", "tiktoken", "sentencepiece", "minbpe", "litgpt", "torchtune",
             "xformers", "flash_attn", "flax", "keras_hub", "keras_nlp", "onnx", "onnxruntime",
             "timm", "diffusers", "sentence_transformers", "fastai", "torchao",
             "jax", "optax", "tensorflow", "tensorflow_probability", "keras", "sklearn")
# Folders and files of torch; "file:name" counts only the functions or class of that name.
TORCH_PIECES = ("optim/", "nn/utils/clip_grad.py", "nn/modules/transformer.py",
                "nn/modules/activation.py:MultiheadAttention", "nn/functional.py:multi_head_attention_forward",
                "ao/nn/quantizable/modules/activation.py:MultiheadAttention",  # a whole one in Python (bmm, softmax)
                "ao/nn/quantized/modules/activation.py:MultiheadAttention",
                "distributions/",  # a Categorical's log-softmax (its logits), its sampling
                # ONNX's Attention and RotaryEmbedding as eager torch code (attention_23 skips SDPA in its modes
                # 1-3), inductor's written-out attention patterns, the quantization observers and quantize ops
                "onnx/ops/", "_inductor/fx_passes/fuse_attention.py:_sfdp_pattern", "ao/quantization/",
                "testing/_internal/")  # torch's test references: reference_rms_norm, reference_layer_norm, ...
# Pieces seen when called but not fingerprinted for copies: torch's test helpers are 7,000 codes (0.8 s of CPU to
# compile in every warm process, and one file is Python 3.12's; a copy of their numpy reference is numpy written
# out), its quantization 1,000 (a table half as large again, read by every notebook's process).
NOT_FINGERPRINTED = ("testing/_internal/", "ao/quantization/")
# torch's C++ kernels that are a whole piece (nn.MultiheadAttention's fast path, a fused optimizer step), under every
# name an answer can reach one by: torch's function, and the operator table's entries (OpOverload._op has no name).
TORCH_KERNELS = ("_native_multi_head_attention", "_transformer_encoder_layer_fwd", "_triton_multi_head_attention",
                 "_fused_adam_", "_fused_adamw_", "_fused_adam", "_fused_adamw", "_fused_sgd_", "_fused_sgd",
                 "_fused_adagrad_", "_fused_adagrad",
                 # quantization (set 14): a quantized tensor's levels, or fake-quantize's rounding and clamping
                 "quantize_per_tensor", "quantize_per_tensor_dynamic", "quantize_per_channel",
                 "fake_quantize_per_tensor_affine", "fake_quantize_per_channel_affine",
                 "fake_quantize_per_tensor_affine_cachemask",
                 "_fake_quantize_per_tensor_affine_cachemask_tensor_qparams",
                 "fake_quantize_per_channel_affine_cachemask", "_fake_quantize_learnable_per_tensor_affine",
                 "_fake_quantize_learnable_per_channel_affine", "_make_per_tensor_quantized_tensor",
                 "_make_per_channel_quantized_tensor", "fused_moving_avg_obs_fake_quant",
                 "_fused_moving_avg_obs_fq_helper", "choose_qparams_optimized", "_choose_qparams_per_tensor")
KERNEL_NAMES = frozenset(TORCH_KERNELS)
LIBRARY_VERSION = "a library's own version of the piece"
# torch's operators written again in Python (primTorch's references, the decompositions): a function there named like
# a forbidden one is that operator, though torch's own wrapper calls it (``torch._refs.native_layer_norm``, the
# ``_decomp`` table's ``_log_softmax``). Elsewhere (inductor's, flex attention's) the answer calls it by its name.
OPERATOR_REFERENCES = ("_refs/", "_decomp/")
# torch's normalisations, for a question that asks for one (a layer norm, an RMS norm). Each gives the others from a
# changed input (an RMS norm of the centred x is its layer norm; an instance norm of [x, -x] is x's RMS norm; a local
# response norm whose window spans every channel is one too; weight norm's kernel g * v / |v| of a row with one more
# column, sqrt(C * eps), is an RMS norm; renorm makes rows unit length), so a statement that forbids one forbids them
# all, with their kernels of every suffix (``native_batch_norm``, ``_native_batch_norm_legit``).
NORMALIZATIONS = ("torch.nn.functional.layer_norm", "torch.nn.functional.rms_norm", "torch.nn.functional.group_norm",
                  "torch.nn.functional.instance_norm", "torch.nn.functional.batch_norm",
                  "torch.nn.functional.local_response_norm", "torch.nn.functional.normalize",
                  "torch.ops.aten.layer_norm*", "torch.ops.aten.native_layer_norm*", "torch.ops.aten.rms_norm*",
                  "torch.ops.aten._fused_rms_norm*", "torch.ops.aten.group_norm*", "torch.ops.aten.native_group_norm*",
                  "torch.ops.aten.instance_norm*", "torch.ops.aten.batch_norm*", "torch.ops.aten.native_batch_norm*",
                  "torch._weight_norm", "torch.ops.aten._weight_norm*", "torch.renorm", "torch.ops.aten.renorm*")


AUTOGRAD_RUNS = (torch.Tensor.backward, torch.autograd.backward, torch.autograd.grad)
_SIGNATURES = {run: inspect.signature(run) for run in AUTOGRAD_RUNS}  # made once: a call of inspect is many frames


def run_watched(mode, func, args: tuple, kwargs: dict):
    """``func``, one of :data:`AUTOGRAD_RUNS`, run by a :class:`tinyllm.grading.checks.Forbidden` mode's
    handler, where torch has the mode off. It is made with the mode on again: autograd's engine runs the hooks
    and backward functions a cell wrote (a ``functools.partial`` of SDPA as a gradient hook, C calling C; an
    ``autograd.Function``'s backward, which would run with the mode off), called past torch's own dispatch
    back to the mode."""
    run = _engine_run(func, args, kwargs)
    if run is None:
        return func(*args, **kwargs)
    with mode:
        return run()


def _engine_run(func, args: tuple, kwargs: dict):
    """What ``torch.autograd.backward`` or ``grad`` does after its dispatch to the modes, as a function of no
    arguments; None for the forms this does not take apart (batched gradients, a dict of inputs)."""
    try:
        bound = _SIGNATURES[func].bind(*args, **kwargs)
    except TypeError:
        return None  # func raises it, with torch's own message
    bound.apply_defaults()
    given = dict(bound.arguments)
    if func is torch.Tensor.backward:
        given = {"tensors": given["self"], "grad_tensors": given["gradient"], **given}
    outputs, inputs = given.get("tensors", given.get("outputs")), given.get("inputs")
    outputs = (outputs,) if isinstance(outputs, (torch.Tensor, GradientEdge)) else outputs
    inputs = () if inputs is None else (inputs,) if isinstance(inputs, (torch.Tensor, GradientEdge)) else inputs
    if not (isinstance(outputs, (tuple, list)) and isinstance(inputs, (tuple, list))) or given.get("is_grads_batched") \
            or not all(issubclass(type(t), torch.Tensor) or type(t) is GradientEdge for t in (*outputs, *inputs)):
        return None  # (a tensor subclass's own __torch_function__ for backward is passed over: the engine's run is)
    outputs, inputs = tuple(outputs), tuple(inputs)
    grads = given.get("grad_tensors", given.get("grad_outputs"))
    grads = _make_grads(outputs, _tensor_or_tensors_to_tuple(grads, len(outputs)), is_grads_batched=False)
    create = given["create_graph"]
    retain = create if given["retain_graph"] is None else given["retain_graph"]
    if func is not torch.autograd.grad:
        def backward():
            _engine_run_backward(outputs, grads, retain, create, inputs, allow_unreachable=True, accumulate_grad=True)
        return backward
    if not inputs:
        return None  # grad raises it, with torch's own message
    materialize = given["materialize_grads"]
    unused = True if materialize else bool(given["allow_unused"])

    def grad():
        found = _engine_run_backward(outputs, grads, retain, create, inputs, unused, accumulate_grad=False)
        return tuple(torch.zeros_like(i) if g is None and materialize else g for g, i in zip(found, inputs))
    return grad


class Libraries:
    """Where the libraries' versions lie (found without importing a library), and the notes
    of a call into them that the notebook's own code makes (code outside the Python
    installation: a cell, a file beside the notebook), directly or through installed code that
    is no piece (``Module.__call__``, ``functools``); not a piece's calls inside itself or the
    package's, nor a method of an object the test passed in (still of the type it had)."""

    def __init__(self, torch_dir: str, package_dir: str):
        import importlib.util

        places = []  # (folder or file, its dotted name, the start of the names that count)
        for piece in TORCH_PIECES:
            path, _, only = piece.partition(":")
            places.append((torch_dir + path, "torch." + path.removesuffix("/").removesuffix(".py").replace("/", "."),
                           only))
        for name in LIBRARIES:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                continue
            places += [(str(folder).rstrip("/") + "/", name, "")
                       for folder in (spec and spec.submodule_search_locations or [])]
        self.pieces = tuple(places)
        self.places = tuple(place for place, _, _ in places)  # one tuple for str.startswith
        self.installed = installed_folders()
        self.package = package_dir  # the course's package: its calls are its watch's to note
        self.grading = package_dir + "grading/"
        self.references = tuple(torch_dir + place for place in OPERATOR_REFERENCES)  # for the forbidden functions
        self.kernels = torch_kernels()  # ((C function, its name), ...): a tuple, which no cell edits in place
        self.kernel_ids = frozenset(id(function) for function, _ in self.kernels)

    def piece(self, code) -> str | None:
        """The dotted module of the piece ``code`` belongs to, if it is one of :attr:`pieces`."""
        filename, qualname = text(code.co_filename), text(code.co_qualname)  # a caller's too: no str subclass
        return next((dotted(filename, place, name) for place, name, only in self.pieces
                     if filename.startswith(place) and qualname.startswith(only)), None)

    def _from_the_notebook(self, caller) -> bool:
        """Whether the call came from the notebook's own code: up the stack past installed code
        that is no piece (``Module.__call__`` running a forward, ``functools.singledispatch``, a
        trampoline compiled under an installed file's name), the first frame is the notebook's.
        A piece on the way made the call itself (AdamW's ``step`` calling ``adamw``)."""
        while caller is not None:
            filename = text(caller.f_code.co_filename)  # a str subclass's methods would run unseen
            if filename.startswith(self.grading):  # the grader calls no piece during a call: a
                return True  # frame named like its files is the notebook's (compile() takes any name)
            if filename.startswith(self.package):  # the package's own call: the package's watch notes it
                return False
            if not filename.startswith(self.installed):
                return True
            if filename.startswith(self.places) and self.piece(caller.f_code):
                return not genuine_frame(caller)  # a cell's code compiled under a piece's file name is its own
            caller = caller.f_back
        return False

    def entry(self, frame, given: dict[int, tuple], note) -> None:
        """Note ``frame`` (a Python call into one of :attr:`places`) if it is one that counts."""
        code = frame.f_code
        if code.co_name == "<module>":  # a piece's module run as a cell imports it; a comprehension or lambda of a
            return  # piece's is entered from the notebook only by a trick (LambdaLR's, with a closure of a cell's)
        module = self.piece(code)
        first = first_argument(frame)
        kind, _, codes = given.get(id(first), (None, False, {}))
        own = kind is type(first) and holds(codes, code)
        if module is None or own or not self._from_the_notebook(frame.f_back):
            return  # another function of a file with one piece (F.gelu beside F.multi_head_...)
        name = f"{module}.{code.co_qualname}"
        if "<locals>" in name:  # a decorator's wrapper (clip_grad_norm_'s, step's): name what it wraps
            local = local_names(frame, code)
            wrapped = [local.get(v) for v in code.co_freevars]
            name = next((f"{text(f.__module__)}.{f.__qualname__}" for f in wrapped if type(f) is types.FunctionType),
                        name)
        note(f"ran {name}, {LIBRARY_VERSION}")

    def compiled_call(self, frame, function, given: dict[int, tuple], note) -> None:
        """Note a call of a library's compiled code (tokenizers' Rust ``Tokenizer.encode``, a torch kernel that
        is a whole piece)."""
        owner = getattr(function, "__self__", None)  # a C function's own attributes: no code of the notebook's
        module = text(getattr(function, "__module__", None)) or text(type_module(type(owner)))
        # By name first, id() (a C call that checks the recursion limit) only for torch's unnamed operator entries: at
        # the limit of a learner's recursion, a C call here raises and the profiler goes off (set 03's wrong answers).
        name = getattr(function, "__name__", None)
        if module[:5] == "torch" and (name in KERNEL_NAMES or (name == "" and id(function) in self.kernel_ids)):
            for kernel, kernel_name in self.kernels:  # by identity: the operator table's entries have no name
                if kernel is function and self._from_the_notebook(frame):
                    note(f"ran torch.{kernel_name}, {LIBRARY_VERSION}")
            return
        if module.split(".")[0] in LIBRARIES and given.get(id(owner), (None,))[0] is not type(owner) and \
                self._from_the_notebook(frame):
            name = getattr(function, "__qualname__", None) or getattr(function, "__name__", "?")
            note(f"ran {module}.{name}, {LIBRARY_VERSION}")


def torch_kernels() -> tuple:
    """Each of :data:`TORCH_KERNELS` this torch has, as ``(C function, name)``: ``torch.name``, the
    operator packet's and each of its overloads' ``_op``."""
    found: dict[int, tuple] = {}
    for name in TORCH_KERNELS:
        functions = [getattr(torch, name, None), getattr(torch._C._VariableFunctions, name, None)]
        try:
            packet = getattr(torch.ops.aten, name)
        except (AttributeError, RuntimeError):  # not in this torch's operator table
            packet = None
        if packet is not None:
            functions += [packet._op, *(getattr(packet, overload)._op for overload in packet.overloads())]
        found.update((id(f), (f, name)) for f in functions if f is not None)
    return tuple(found.values())


def file_codes(path: Path, _compile=compile) -> list:
    """Every code object of a file: its module's, and each one it holds, all the way down."""
    found, stack = [], [_compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)]
    while stack:
        code = stack.pop()
        stack += [c for c in code.co_consts if isinstance(c, types.CodeType)]
        found.append(code)
    return found


def fingerprint(code) -> tuple:
    """What a copy of a function keeps wherever it runs from, at whatever line and under
    whatever name: its bytecode, the names and local names it uses and its constants (its
    docstring too). Not its file, line or name (a code object can be given others with
    ``code.replace``): the same text retyped by hand has the same fingerprint only if it has
    the same docstring and local names."""
    return code.co_code, code.co_names, code.co_varnames, tuple(_constant(c) for c in code.co_consts)


def _constant(c):
    """A constant as text, by exact type (a code object's constants can be any object: its repr
    or hash would run the notebook's code inside the watch's callback)."""
    kind = type(c)
    if kind is types.CodeType:
        return c.co_name if type(c.co_name) is str else "<not a str>"
    if kind is tuple or kind is frozenset:
        return kind.__name__, tuple(_constant(x) for x in c)
    plain = kind is str or kind is int or kind is float or kind is bytes or kind is bool or kind is complex
    return repr(c) if plain or c is None or c is Ellipsis else "<object>"


_FILES: dict = {}  # a file's name -> {(qualified name, first line): fingerprints of its codes there}, or None
_KNOWN: dict = {}  # _address(code) -> (code, whether it is genuine)
_MODULES: dict = {}  # a module's file -> the namespace its code runs in, as first seen (before any cell)
_SCANNED = [0]  # how many modules sys.modules held at the last look


def remember_modules() -> None:
    """The namespaces of the modules loaded now, by file (:func:`genuine_frame`), first read before any cell
    runs (a module a cell swaps into ``sys.modules`` later is not taken for torch's): those ``sys.modules``
    holds, and the modules they hold (``torch.backends.opt_einsum`` is a stand-in that holds the module its
    functions run in). Looked at again when more modules are loaded (a library a cell imports)."""
    if len(sys.modules) == _SCANNED[0]:
        return
    _SCANNED[0] = len(sys.modules)
    for module in list(sys.modules.values()):
        if issubclass(type(module), types.ModuleType):  # torch's own kinds too; no __class__ of a cell's runs
            namespace = _module_dict(module)
            held = [_module_dict(v) for v in list(namespace.values()) if type(v) is types.ModuleType]
            if type(module) is not types.ModuleType:  # a stand-in (torch._VF's): its methods run in the module
                held += [_function_globals(v) for v in list(_type_dict(type(module)).values())
                         if type(v) is types.FunctionType]
            for space in (namespace, *held):
                filename = space.get("__file__")
                if type(filename) is str:
                    _MODULES.setdefault(filename, space)


def genuine_frame(frame) -> bool:
    """Whether ``frame`` runs the code its file holds (:func:`genuine`) in that module's own globals: torch's
    code run by ``exec`` with a cell's globals (its names then the cell's functions) is the cell's."""
    code = frame.f_code
    if not genuine(code):
        return False
    filename = text(code.co_filename)
    if filename not in _MODULES:
        remember_modules()
    return frame.f_globals is _MODULES.get(filename)


def file_table(filename: str) -> dict | None:
    """{(qualified name, first line): fingerprints of the codes there} of a file, compiled once; None if it
    cannot be (no such file, not text, another Python's syntax)."""
    if filename not in _FILES:
        try:
            table: dict | None = {}
            for c in file_codes(Path(filename)):
                table.setdefault((c.co_qualname, c.co_firstlineno), set()).add(fingerprint(c))
        except (OSError, ValueError, SyntaxError):
            table = None
        _FILES[filename] = table
    return _FILES[filename]


# The files whose frames the watch asks about in most gradings (torch's dispatch to the modes, a tensor's repr,
# autograd, a module's call, the grader's own): compiled in the warm processes the notebooks' are forked from,
# not in each (70 ms of CPU a notebook).
COMMON_FILES = ("overrides.py", "__init__.py", "_tensor.py", "_tensor_str.py", "functional.py", "autograd/graph.py",
                "autograd/__init__.py", "autograd/grad_mode.py", "nn/modules/module.py", "utils/_contextlib.py")


def warm_up() -> None:
    """:func:`remember_modules` and the :data:`COMMON_FILES`' tables, before any notebook's process is forked."""
    remember_modules()
    torch_dir, grading = os.path.dirname(torch.__file__) + "/", Path(__file__).parent
    for filename in [torch_dir + name for name in COMMON_FILES] + sorted(map(str, grading.glob("*.py"))):
        file_table(filename)


def genuine(code) -> bool:
    """Whether ``code`` is the code its file holds (compiled from the file once, the first time it
    is asked): a cell can compile its own code under an installed file's name
    (``compile(source, torch_file, "exec")``), which is then the notebook's own, not torch's or a
    library's. Asked where a frame's file name would otherwise be trusted: a piece making a call,
    torch popping the grader's mode, torch calling a forbidden function."""
    known = _KNOWN.get(_address(code))
    if known is not None and known[0] is code:
        return known[1]
    table = file_table(text(code.co_filename))
    found = table is not None and fingerprint(code) in table.get((text(code.co_qualname), code.co_firstlineno), ())
    _KNOWN[_address(code)] = code, found  # the code kept, so that its address is not another's later
    return found


type_module = type.__dict__["__module__"].__get__  # a class's module, without its metaclass's say
_address = object.__hash__  # id() without its audit event (the watch's hook is Python): unique while the object lives
_module_dict = types.ModuleType.__dict__["__dict__"].__get__  # a module's namespace, without its class's say
_type_dict, _function_globals = type.__dict__["__dict__"].__get__, types.FunctionType.__dict__["__globals__"].__get__


def installed_folders() -> tuple[str, ...]:
    """The folders of the Python installation and its packages: code there is not the notebook's."""
    import site
    import sysconfig

    folders = {sys.prefix, sys.base_prefix, *sysconfig.get_paths().values(), *site.getsitepackages()}
    return tuple({f"{p.rstrip('/')}/" for f in folders for p in (f, os.path.realpath(f))})


def text(value) -> str:
    """``value`` if it is a str, else "": how the watch reads a name it did not make (a C function's
    ``__module__`` can be set to an object of the notebook's, whose ``__str__`` would run unseen)."""
    return value if type(value) is str else ""


def local_names(frame, code) -> dict:
    """The local variables of ``frame`` (running ``code``), where they are the frame's own: a
    function's (``CO_OPTIMIZED``), read into a dict Python makes. Other code (run by ``exec`` with a
    mapping, a class body under a metaclass's ``__prepare__``) keeps them in the mapping it was given,
    which can be the notebook's: reading ``f_locals`` there runs its methods inside the watch's
    callback, where nothing is watched. None is read there."""
    return frame.f_locals if code.co_flags & 0x01 else {}


def first_argument(frame):
    """What a function was called with first: the object whose method runs (``self``, or
    ``args[0]`` of a wrapper taking ``*args``, as torch's optimizers wrap ``step``)."""
    code = frame.f_code
    names, local = code.co_varnames, local_names(frame, code)
    if code.co_argcount:
        return local.get(names[0])
    if code.co_flags & 0x04:  # CO_VARARGS: *args comes after the named arguments
        args = local.get(names[code.co_kwonlyargcount])
        return args[0] if type(args) is tuple and args else None
    return None


def dotted(path: str, place: str, name: str) -> str:
    """The dotted module name of ``path`` in the library folder (or file) ``place`` called ``name``."""
    rest = path[len(place):].removesuffix(".py").removesuffix("/__init__").removesuffix("__init__")
    return ".".join([name, *(part for part in rest.split("/") if part)])


def holds(codes, code) -> bool:
    """Whether ``code`` is among ``codes`` (id -> code: :func:`tinyllm.grading.fingerprints.class_codes`),
    by identity: a code's hash is its constants', which can be objects of the notebook's."""
    return codes.get(id(code)) is code
