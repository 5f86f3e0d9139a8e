"""Write a :class:`tinyllm.model.GPT` as an ONNX file, check it, and shrink it to int8.

ONNX is a file format for a computation graph plus its weights. Any ONNX runtime can run
it without PyTorch or Python: ``onnxruntime`` on a server, ``onnxruntime-web`` in a browser
(the book's page "Talk to the model" runs the course's models this way).

- ``to_onnx(model, path)`` writes the graph ``idx (B, T) int64 -> logits (B, T, V) float32``
  with the batch size ``B`` and the sequence length ``T`` left open (dynamic axes), and
  checks it against PyTorch with onnxruntime (largest logit difference <= ``atol``).
  It has no KV cache: a caller runs the last ``block_size`` tokens at every step (simple,
  and the graph chapter 14 studies).
- ``to_onnx_cached(model, path)`` writes the graph with a KV cache: it takes the new ids
  and, per layer, the keys and values of the positions seen so far (``past_key_<l>``,
  ``past_value_<l>``) and returns their logits and the keys and values with the new
  positions appended (``present_key_<l>``, ``present_value_<l>``). The first call passes
  caches of length 0 and the whole prompt; each later call passes one id, so a new token
  costs one position instead of the whole window (the page "Talk to the model" runs it).
  ``onnx_generate_cached`` is greedy decoding with it, slid as ``GPT.generate`` slides.
- ``quantize_int8(src, dst)`` stores the blocks' weight matrices as int8 and the embedding
  tables as uint8, each with a float scale (onnxruntime's dynamic quantization): the
  shipped models' files shrink 3.5x to 3.8x (the output head stays float).
- ``onnx_logits``, ``onnx_validation_loss`` and ``onnx_generate`` run an exported file,
  so the two versions can be compared with the PyTorch model on the same held-out text.

``onnx`` and ``onnxruntime`` are imported only when these functions run.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from dataclasses import fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tinyllm.data import get_batch, load_text
from tinyllm.layers import apply_rope, repeat_kv, rope_angles
from tinyllm.model import GPT, eval_mode
from tinyllm.prepare import prepare_data

# Every GPTConfig option the exported graph reproduces, with the values it supports
# (None: any value). A config option not listed here -- one a later chapter may add,
# such as another normalization or position encoding -- is refused by name rather
# than exported wrongly.
SUPPORTED_OPTIONS = {
    "vocab_size": None,
    "block_size": None,
    "n_layer": None,
    "n_head": None,
    "n_embd": None,
    "dropout": None,  # the export is in eval mode: dropout does nothing there
    "bias": (True, False),
    # Chapter 11's switches (the chat assistant uses GuppyLM's ReLU MLP): both graphs
    # call the model's own modules for them, and tests/test_export_onnx.py checks each.
    "mlp": None,
    "mlp_hidden": None,
    "norm": None,
    "pos": None,
    "n_kv_head": None,
    "qk_norm": None,
    "rope_theta": None,
}
OPSET = 18  # the lowest opset torch.onnx.export (dynamo) writes natively


def check_exportable(model) -> None:
    """Raise ``ValueError`` naming the first config option the ONNX export cannot handle."""
    if not isinstance(model, GPT):
        raise ValueError(f"to_onnx exports a tinyllm.model.GPT, got {type(model).__name__}")
    config = model.config
    defaults = {f.name: f.default for f in fields(config)}
    for name, value in vars(config).items():
        if name not in SUPPORTED_OPTIONS:
            if name in defaults and value == defaults[name]:
                continue  # a new option left at its default changes nothing we export
            raise ValueError(
                f"the ONNX export does not support the config option {name}={value!r}; "
                f"it supports {', '.join(SUPPORTED_OPTIONS)}"
            )
        allowed = SUPPORTED_OPTIONS[name]
        if allowed is not None and value not in allowed:
            raise ValueError(
                f"the ONNX export does not support {name}={value!r}; allowed values: {allowed}"
            )


@contextlib.contextmanager
def _quiet():
    """Hide the exporters' progress notes and advice (not errors) from the reader's output."""
    loggers = [logging.getLogger(name) for name in ("", "torch.onnx", "torch.export", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


class _AllLogits(torch.nn.Module):
    """``idx (B, T) -> logits (B, T, V)``: GPT.forward with every position's logits."""

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def forward(self, idx):
        return self.model(idx, all_logits=True)[0]


def session(path):
    """An onnxruntime CPU session for the ONNX file at ``path`` (one thread: reproducible)."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX file at {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _session(model_or_path):
    return model_or_path if hasattr(model_or_path, "run") else session(model_or_path)


def onnx_logits(model_or_path, idx) -> np.ndarray:
    """Run an exported model (a path or a session) on ``idx`` ``(B, T)``: logits ``(B, T, V)``."""
    idx = np.asarray(idx, dtype=np.int64)
    if idx.ndim != 2:
        raise ValueError(f"idx must have shape (B, T), got {idx.shape}")
    return _session(model_or_path).run(["logits"], {"idx": idx})[0]


def max_logit_difference(model: GPT, path, idx) -> float:
    """Largest ``|PyTorch logit - ONNX logit|`` over every position of ``idx`` ``(B, T)``."""
    with torch.no_grad(), eval_mode(model):  # a model in training stays in training
        expected = model(torch.as_tensor(idx), all_logits=True)[0].numpy()
    return float(np.abs(onnx_logits(path, idx) - expected).max())


def to_onnx(model: GPT, path, atol: float = 1e-4, check: bool = True) -> Path:
    """Write ``model`` to the ONNX file ``path`` and check it; returns the path.

    The graph takes ``idx`` ``(B, T)`` int64 (1 <= T <= block_size) and returns ``logits``
    ``(B, T, V)`` float32, with ``B`` and ``T`` dynamic. With ``check`` the file is run with
    onnxruntime on three shapes and must give PyTorch's logits to ``atol``.
    Raises ``ValueError`` for a config option the export does not support.
    """
    check_exportable(model)
    cfg = model.config
    if cfg.block_size < 3:  # torch.export needs T's range to hold more than the example's size 2
        raise ValueError(f"the ONNX export needs block_size >= 3, got {cfg.block_size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with eval_mode(model):
        example = torch.zeros(2, min(8, cfg.block_size), dtype=torch.long)
        with _quiet():
            # torch.export traces with symbolic sizes; T is declared from 2 because an
            # example size of 1 would be specialised, and the graph is exact for T == 1 too.
            batch = torch.export.Dim("B", min=1, max=1024)
            length = torch.export.Dim("T", min=2, max=max(2, cfg.block_size))
            program = torch.onnx.export(
                _AllLogits(model), (example,), None,
                input_names=["idx"], output_names=["logits"],
                dynamic_shapes={"idx": {0: batch, 1: length}},
                opset_version=OPSET, dynamo=True, optimize=True, verbose=False,
            )
            program.save(str(path))
        if check:
            generator = torch.Generator().manual_seed(0)
            for shape in ((1, cfg.block_size), (3, max(1, cfg.block_size // 3)), (2, 1)):
                idx = torch.randint(cfg.vocab_size, shape, generator=generator)
                diff = max_logit_difference(model, path, idx)
                if not diff <= atol:
                    raise RuntimeError(f"ONNX logits differ from PyTorch by {diff:.2e} > {atol} on {shape}")
    return path


class _CachedStep(torch.nn.Module):
    """``(idx, past_key_0, past_value_0, ...) -> (logits, present_key_0, present_value_0, ...)``.

    GPT.forward with a KV cache, written for export: the cache is a graph input and output
    instead of a Python object, and the attention mask is built from the shapes (query
    ``i`` of ``T`` new positions sits at ``P + i`` and sees keys ``0 .. P + i``), so one
    graph serves the prompt (``P = 0``, ``T`` ids) and each new token (``T = 1``). The
    layers are the model's own modules; only the attention's arithmetic is spelled out
    here, as :class:`tinyllm.model.CausalSelfAttention` does on its explicit path.
    """

    def __init__(self, model: GPT):
        super().__init__()
        self.model = model

    def _attention(self, attn, x, past_k, past_v):
        B, T, C = x.shape
        nh, n_kv = attn.n_head, attn.n_kv
        hs = C // nh
        P = past_k.shape[2]
        q, k, v = attn.c_attn(x).split([nh * hs, n_kv * hs, n_kv * hs], dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k, v = (t.view(B, T, n_kv, hs).transpose(1, 2) for t in (k, v))  # (B, n_kv, T, hs)
        if hasattr(attn, "q_norm"):
            q, k = attn.q_norm(q), attn.k_norm(k)
        if attn.rope_theta is not None:
            cos, sin = rope_angles(T, hs, attn.rope_theta, start=P, device=x.device)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        k = torch.cat([past_k, k], dim=2)  # (B, n_kv, P + T, hs): the present
        v = torch.cat([past_v, v], dim=2)
        keys, values = repeat_kv(k, nh // n_kv), repeat_kv(v, nh // n_kv)
        query_pos = torch.arange(T, device=x.device)[:, None] + P
        key_pos = torch.arange(k.shape[2], device=x.device)[None, :]
        att = (q @ keys.transpose(-2, -1)) / math.sqrt(hs)
        att = att.masked_fill(key_pos > query_pos, float("-inf")).softmax(dim=-1)
        y = (att @ values).transpose(1, 2).reshape(B, T, C)
        return attn.c_proj(y), k, v

    def forward(self, idx, *past):
        transformer = self.model.transformer
        x = self.model.embed(idx, past[0].shape[2])
        present = []
        for layer, block in enumerate(transformer.h):
            a, k, v = self._attention(block.attn, block.ln_1(x), past[2 * layer], past[2 * layer + 1])
            x = x + a
            x = x + block.mlp(block.ln_2(x))
            present += [k, v]
        return (self.model.lm_head(transformer.ln_f(x)), *present)


def cache_names(n_layer: int, kind: str) -> list[str]:
    """``past_key_0, past_value_0, past_key_1, ...`` (``kind="past"``) or the ``present`` ones."""
    return [f"{kind}_{what}_{layer}" for layer in range(n_layer) for what in ("key", "value")]


def empty_cache(config, batch: int = 1) -> dict[str, np.ndarray]:
    """The ``past_*`` inputs of a first call: keys and values of length 0."""
    shape = (batch, config.kv_heads, 0, config.head_size)
    return {name: np.zeros(shape, dtype=np.float32) for name in cache_names(config.n_layer, "past")}


def onnx_cached_step(model_or_path, idx, cache: dict[str, np.ndarray]):
    """One call of a cached graph: ``(logits (B, T, V), next cache)``; ``cache`` holds the
    ``past_*`` arrays (:func:`empty_cache` at first)."""
    sess = _session(model_or_path)
    idx = np.asarray(idx, dtype=np.int64)
    n = len(cache) // 2
    outputs = sess.run(["logits", *cache_names(n, "present")], {"idx": idx, **cache})
    return outputs[0], dict(zip(cache_names(n, "past"), outputs[1:]))


def to_onnx_cached(model: GPT, path, atol: float = 1e-4, check: bool = True) -> Path:
    """Write ``model`` as the KV-cached graph (:class:`_CachedStep`) to ``path``; returns it.

    Inputs: ``idx`` ``(B, T)`` int64 and ``past_key_<l>``, ``past_value_<l>`` ``(B, n_kv,
    P, hs)`` float32 per layer; outputs: ``logits`` ``(B, T, V)`` and ``present_key_<l>``,
    ``present_value_<l>`` ``(B, n_kv, P + T, hs)``. ``B``, ``T`` and ``P`` are dynamic
    (``P + T <= block_size``). With ``check`` the file is run with onnxruntime on a prompt
    and then one id at a time, and must give PyTorch's logits to ``atol``.
    """
    check_exportable(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    if cfg.block_size < 4:
        raise ValueError(f"the cached export needs block_size >= 4, got {cfg.block_size}")
    with eval_mode(model):
        names = cache_names(cfg.n_layer, "past")
        # Example sizes 2 and 3 (not 0 or 1, which torch.export would specialise); the
        # graph is exact for P == 0 and T == 1 as well, which the check below runs.
        idx = torch.zeros(2, 2, dtype=torch.long)
        past = [torch.zeros(2, cfg.kv_heads, 2, cfg.head_size) for _ in names]
        batch = torch.export.Dim("B", min=1, max=1024)
        new = torch.export.Dim("T", min=1, max=cfg.block_size)
        seen = torch.export.Dim("P", min=0, max=cfg.block_size)
        shapes = {"idx": {0: batch, 1: new}, "past": tuple({0: batch, 2: seen} for _ in names)}
        with _quiet():
            program = torch.onnx.export(
                _CachedStep(model), (idx, *past), None,
                input_names=["idx", *names], output_names=["logits", *cache_names(cfg.n_layer, "present")],
                dynamic_shapes=shapes, opset_version=OPSET, dynamo=True, optimize=True, verbose=False,
            )
            program.save(str(path))
        if check:
            generator = torch.Generator().manual_seed(0)
            ids = torch.randint(cfg.vocab_size, (2, cfg.block_size), generator=generator)
            diff = max_cached_logit_difference(model, path, ids, prompt=cfg.block_size // 2)
            if not diff <= atol:
                raise RuntimeError(f"cached ONNX logits differ from PyTorch by {diff:.2e} > {atol}")
    return path


def max_cached_logit_difference(model: GPT, path, idx, prompt: int) -> float:
    """Largest ``|PyTorch logit - ONNX logit|`` when the cached graph reads the first
    ``prompt`` ids of ``idx`` ``(B, T)`` in one call and the rest one id per call."""
    with torch.no_grad(), eval_mode(model):
        expected = model(torch.as_tensor(idx), all_logits=True)[0].numpy()
    idx = np.asarray(idx, dtype=np.int64)
    sess = _session(path)
    logits, cache = onnx_cached_step(sess, idx[:, :prompt], empty_cache(model.config, idx.shape[0]))
    got = [logits]
    for t in range(prompt, idx.shape[1]):
        logits, cache = onnx_cached_step(sess, idx[:, t : t + 1], cache)
        got.append(logits)
    return float(np.abs(np.concatenate(got, axis=1) - expected).max())


def onnx_generate_cached(model_or_path, ids: list[int], max_new_tokens: int, config) -> list[int]:
    """Greedy decoding with a cached graph, each new id one position; returns all ids.

    The context slides as in ``GPT.generate(use_cache=True)``: the prompt's last
    ``block_size`` ids fill the cache; when it is full it is rebuilt from the last
    ``block_size // 2`` ids. So the ids equal ``GPT.generate``'s, beyond the window too.
    """
    if not ids:
        raise ValueError("ids must hold at least one token to continue from")
    sess = _session(model_or_path)
    block = config.block_size
    ids = list(ids)
    cache, step = None, None
    for _ in range(max_new_tokens):
        if cache is None or next(iter(cache.values())).shape[2] >= block:
            window = ids[-block:] if cache is None else ids[-(block // 2 or 1):]
            logits, cache = onnx_cached_step(sess, np.array([window]), empty_cache(config))
        else:
            logits, cache = onnx_cached_step(sess, np.array([[step]]), cache)
        step = int(np.argmax(logits[0, -1]))  # np.argmax returns the first maximum
        ids.append(step)
    return ids


def quantize_int8(src, dst) -> Path:
    """Write an int8 copy of the ONNX file ``src`` to ``dst`` (dynamic quantization).

    The weight matrices of the blocks' linear layers are stored as int8 with a float scale
    and run as integer products (``MatMulInteger``): at run time the activations are
    quantized on the fly, batch by batch. The token and position tables are stored as
    uint8 with a scale and a zero point and turned back into floats where they are read.
    The output head's MatMul, layer norms, softmax and GELU stay float.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise FileNotFoundError(f"no ONNX file at {src}")
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _quiet():
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
    return dst


def onnx_validation_loss(
    model_or_path,
    tokenizer,
    block_size: int,
    dataset: str = "shakespeare",
    val_fraction: float = 0.1,
    eval_iters: int = 50,
    batch_size: int = 32,
    seed: int = 0,
) -> float:
    """Mean cross-entropy of an exported model on the held-out text: the same batches
    as :func:`tinyllm.train.validation_loss` with the same arguments, so the two compare."""
    _, splits = prepare_data(load_text(dataset), val_fraction, tokenizer)
    sess = _session(model_or_path)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(eval_iters):
        x, y = get_batch(splits["val"], batch_size, block_size, generator=generator)
        logits = torch.from_numpy(onnx_logits(sess, x.numpy()))
        losses.append(F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1)).item())
    return float(torch.tensor(losses).mean())


def onnx_generate(model_or_path, ids: list[int], max_new_tokens: int, block_size: int) -> list[int]:
    """Greedy decoding with an exported model: at each step run the last ``block_size``
    ids and append the id of the largest logit (the lowest id on a tie). Returns all ids."""
    if not ids:
        raise ValueError("ids must hold at least one token to continue from")
    sess = _session(model_or_path)
    ids = list(ids)
    for _ in range(max_new_tokens):
        logits = onnx_logits(sess, np.array([ids[-block_size:]]))[0, -1]
        ids.append(int(np.argmax(logits)))  # np.argmax returns the first maximum
    return ids
