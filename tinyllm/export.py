"""Move a :class:`tinyllm.model.GPT` to and from Hugging Face's GPT-2 (and Llama) format.

``to_transformers(model, folder)`` writes two files, ``config.json`` and
``model.safetensors``, that ``transformers.GPT2LMHeadModel.from_pretrained(folder)``
loads from the local folder, with no download. The course's tests load the export and
check that both models give the same logits (to 1e-5; the config names the GELU form the
model uses): the proof that ``tinyllm.model.GPT`` is GPT-2's architecture. A model with
chapter 11's modern pieces (RMSNorm, RoPE and SwiGLU, any number of key/value heads) is
written as ``LlamaForCausalLM`` instead, or as ``Qwen3ForCausalLM`` with ``qk_norm``;
``AutoModelForCausalLM.from_pretrained(folder)`` loads any of them. Llama's names map one
to one, except that ``c_attn`` is cut into ``q_proj``, ``k_proj`` and ``v_proj``; both sides
use the same "half-split" RoPE layout (:func:`tinyllm.layers.rotate_half`), so no weight
needs permuting.

``from_transformers(hf_model)`` goes the other way: it builds a ``GPT`` holding the
weights of a ``transformers.GPT2LMHeadModel`` (OpenAI's ``gpt2`` or any model of that
shape), so the course's own code can run and inspect real GPT-2.

Only ``safetensors`` is needed here; ``transformers`` is needed only to load the result
(and to make the model ``from_transformers`` reads).

Two details of the format:

- GPT-2's original code stores its projections as ``Conv1D`` layers whose weight is
  ``(in_features, out_features)``: the transpose of ``nn.Linear``'s ``(out, in)``.
- GPT-2's config also has ``n_inner`` (the MLP's width) and ``activation_function``, so
  a model with ``mlp="relu"`` and ``mlp_hidden`` (GuppyLM's MLP) exports exactly too.
- ``nn.GELU()`` is the exact GELU ``x * Phi(x)`` (with the error function). GPT-2's
  default activation ``"gelu_new"`` is the tanh approximation; ``"gelu"`` is the exact one.
  ``from_transformers`` gives each block the activation the Hugging Face model uses.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from tinyllm.model import GPT, GPTConfig

# Weights that GPT-2's Conv1D stores transposed, by the name they end with.
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


# GPTConfig.mlp -> GPT2Config.activation_function. "gelu" is the exact erf GELU, as nn.GELU().
_HF_ACTIVATION = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
# The switches GPT-2's format can hold, with their allowed values.
_GPT2_SWITCHES = {"norm": ("layernorm",), "pos": ("learned",), "mlp": tuple(_HF_ACTIVATION),
                  "qk_norm": (False,)}


def gpt2_config(model: GPT) -> dict:
    """The ``config.json`` contents (a ``GPT2Config``) that describe ``model``."""
    cfg = model.config
    modern = {k: getattr(cfg, k) for k, gpt2 in _GPT2_SWITCHES.items() if getattr(cfg, k) not in gpt2}
    if cfg.kv_heads != cfg.n_head:
        modern["n_kv_head"] = cfg.n_kv_head
    if modern:
        raise ValueError(
            f"GPT-2's format cannot hold {', '.join(f'{k}={v!r}' for k, v in modern.items())}; "
            f"export GPT-2's pieces ({', '.join(f'{k} in {v}' for k, v in _GPT2_SWITCHES.items())}) "
            f"or Llama's (norm='rmsnorm', pos='rope', mlp='swiglu')"
        )
    if not cfg.bias:
        raise ValueError(
            "a model with bias=False cannot be exported to GPT-2: GPT-2's Linear and LayerNorm "
            "layers always have biases (build it with GPTConfig(..., bias=True))"
        )
    for module in model.modules():
        if isinstance(module, torch.nn.LayerNorm) and module.eps != 1e-5:
            raise ValueError(f"GPT-2 uses layer-norm eps 1e-5, the model has {module.eps}")
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.hidden_size,  # mlp_hidden (GuppyLM: 768), else 4 * n_embd
        "activation_function": _HF_ACTIVATION[cfg.mlp],
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "scale_attn_weights": True,  # divide scores by sqrt(head size)
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,  # lm_head.weight is wte.weight
        "bos_token_id": None,
        "eos_token_id": None,
        "torch_dtype": "float32",
    }


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """``model``'s weights under GPT-2's names, Conv1D weights transposed, float32.

    The tied output head is left out: GPT-2 re-ties it to ``transformer.wte.weight``
    on loading (``tie_word_embeddings``), and safetensors refuses two names for one tensor.
    """
    out = {}
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight":
            assert tensor.data_ptr() == model.transformer.wte.weight.data_ptr(), "the head must be tied"
            continue
        if name.endswith(_CONV1D):
            tensor = tensor.t()
        out[name] = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
    return out


# tinyllm's name (after "transformer.h.N.") -> Llama's (after "model.layers.N.")
_BLOCK_NAMES = {
    "ln_1": "input_layernorm",
    "ln_2": "post_attention_layernorm",
    "attn.c_proj": "self_attn.o_proj",
    "attn.q_norm": "self_attn.q_norm",
    "attn.k_norm": "self_attn.k_norm",
    "mlp.c_gate": "mlp.gate_proj",
    "mlp.c_fc": "mlp.up_proj",
    "mlp.c_proj": "mlp.down_proj",
}


def is_llama_like(cfg: GPTConfig) -> bool:
    """True for RMSNorm + RoPE + SwiGLU: the pieces Llama's format holds."""
    return (cfg.norm, cfg.pos, cfg.mlp) == ("rmsnorm", "rope", "swiglu")


def llama_config(model) -> dict:
    """The ``config.json`` of a ``LlamaForCausalLM`` (``Qwen3ForCausalLM`` with qk_norm)."""
    cfg = model.config
    if not is_llama_like(cfg):
        raise ValueError(
            f"Llama's format needs norm='rmsnorm', pos='rope', mlp='swiglu'; the model has "
            f"norm={cfg.norm!r}, pos={cfg.pos!r}, mlp={cfg.mlp!r}"
        )
    if cfg.qk_norm and cfg.bias:
        raise ValueError("qk_norm exports as Qwen3, whose MLP has no biases: build the model with bias=False")
    qwen = cfg.qk_norm
    return {
        "architectures": ["Qwen3ForCausalLM" if qwen else "LlamaForCausalLM"],
        "model_type": "qwen3" if qwen else "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.hidden_size,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": cfg.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": 1e-5,  # tinyllm.layers.rms_norm's default
        "rope_theta": cfg.rope_theta,  # older transformers read this ...
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},  # ... newer this
        "attention_bias": cfg.bias,
        **({} if qwen else {"mlp_bias": cfg.bias}),
        "attention_dropout": cfg.dropout,
        "tie_word_embeddings": True,
        "initializer_range": 0.02,
        "bos_token_id": None,
        "eos_token_id": None,
        "pad_token_id": None,
        "torch_dtype": "float32",
    }


def llama_state_dict(model) -> dict[str, torch.Tensor]:
    """``model``'s weights under Llama's names, float32; the tied head left out."""
    cfg = model.config
    hs, nh, n_kv = cfg.head_size, cfg.n_head, cfg.kv_heads
    out = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to(device="cpu", dtype=torch.float32)
        if name == "lm_head.weight":
            continue  # tied to the embedding: Llama re-ties it on loading
        if name == "transformer.wte.weight":
            out["model.embed_tokens.weight"] = tensor
        elif name == "transformer.ln_f.weight":
            out["model.norm.weight"] = tensor
        else:
            _, _, layer, rest = name.split(".", 3)  # transformer.h.<layer>.<rest>
            prefix = f"model.layers.{layer}."
            module, kind = rest.rsplit(".", 1)
            if module == "attn.c_attn":  # one matrix -> three
                q, k, v = tensor.split([nh * hs, n_kv * hs, n_kv * hs])
                for proj, part in (("q_proj", q), ("k_proj", k), ("v_proj", v)):
                    out[f"{prefix}self_attn.{proj}.{kind}"] = part
            else:
                out[f"{prefix}{_BLOCK_NAMES[module]}.{kind}"] = tensor
    return {k: v.contiguous().clone() for k, v in out.items()}


def to_transformers(model: GPT, folder) -> Path:
    """Write ``config.json`` and ``model.safetensors`` into ``folder``: ``GPT2LMHeadModel``
    for GPT-2's pieces, ``LlamaForCausalLM`` (``Qwen3ForCausalLM`` with ``qk_norm``) for
    RMSNorm + RoPE + SwiGLU.

    Returns the folder. Raises ``ValueError`` for a model neither can represent (GPT-2
    with ``bias=False``, a mix of old and new pieces). A ``torch.compile``'d model is written
    as the model it wraps (its weights' names carry no ``_orig_mod.``).
    """
    model = getattr(model, "_orig_mod", model)
    if not isinstance(model, GPT):
        raise ValueError(f"to_transformers writes a tinyllm GPT, got {type(model).__name__}")
    if is_llama_like(model.config):
        config, state = llama_config(model), llama_state_dict(model)
    else:
        config, state = gpt2_config(model), gpt2_state_dict(model)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


# Hugging Face's activation names -> GPTConfig.mlp.
_ACTIVATIONS = {
    "gelu": "gelu",  # exact, with the error function
    "gelu_new": "gelu_tanh",  # GPT-2's own, the tanh approximation
    "gelu_pytorch_tanh": "gelu_tanh",
    "relu": "relu",  # GuppyLM's MLP
}


def from_transformers(hf_model) -> GPT:
    """A ``GPT`` with the weights of ``hf_model``, a ``transformers.GPT2LMHeadModel``.

    The two give the same logits (float32, eval mode). If ``hf_model`` uses GPT-2's tanh
    GELU (``gelu_new``, as OpenAI's checkpoints do), the config says ``mlp="gelu_tanh"``, so a
    checkpoint and an export back keep it. Raises ``ValueError`` for a GPT-2 variant this
    model cannot represent (another activation, scaled or
    reordered attention, a layer-norm eps other than 1e-5, an output head of its own).
    """
    hf = hf_model.config
    problems = []
    if hf.activation_function not in _ACTIVATIONS:
        problems.append(f"activation_function={hf.activation_function!r} "
                        f"(allowed: {', '.join(sorted(_ACTIVATIONS))})")
    if getattr(hf, "scale_attn_by_inverse_layer_idx", False):
        problems.append("scale_attn_by_inverse_layer_idx=True (must be False)")
    if getattr(hf, "reorder_and_upcast_attn", False):
        problems.append("reorder_and_upcast_attn=True (must be False)")
    if not getattr(hf, "scale_attn_weights", True):
        problems.append("scale_attn_weights=False (must be True)")
    if hf.layer_norm_epsilon != 1e-5:
        problems.append(f"layer_norm_epsilon={hf.layer_norm_epsilon} (must be 1e-5)")
    head, embedding = hf_model.lm_head.weight, hf_model.transformer.wte.weight
    if head.shape != embedding.shape or not torch.equal(head, embedding):  # tinyllm's GPT ties them
        problems.append("an output head that is not the token embedding (tie_word_embeddings=False)")
    if problems:
        raise ValueError("this GPT-2 cannot be loaded into tinyllm's GPT: " + "; ".join(problems))
    config = GPTConfig(
        vocab_size=hf.vocab_size, block_size=hf.n_positions, n_layer=hf.n_layer,
        n_head=hf.n_head, n_embd=hf.n_embd, dropout=0.0, bias=True,
        mlp=_ACTIVATIONS[hf.activation_function], mlp_hidden=hf.n_inner,
    )
    with torch.device("meta"):  # shapes only: the weights come from hf_model
        model = GPT(config)
    state = {}
    for name, tensor in hf_model.state_dict().items():
        if name == "lm_head.weight" or name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # the tied head is wte; old checkpoints store the causal mask as a buffer
        if name.endswith(_CONV1D):
            tensor = tensor.t()  # Conv1D (in, out) -> nn.Linear (out, in)
        state[name] = tensor.detach().to(device="cpu", dtype=torch.float32).contiguous().clone()
    model.load_state_dict(state, strict=False, assign=True)
    model.lm_head.weight = model.transformer.wte.weight  # re-tie after assign
    missing = [n for n, p in model.named_parameters() if p.is_meta]
    missing += [n for n, b in model.named_buffers() if b.is_meta]
    if missing:
        raise ValueError(f"the Hugging Face model has no weights for {missing}")
    return model.eval()


def to_onnx(*args, **kwargs):
    """Write the model as an ONNX file: see :func:`tinyllm.export_onnx.to_onnx`."""
    from tinyllm.export_onnx import to_onnx as _to_onnx  # onnx is imported only when used

    return _to_onnx(*args, **kwargs)
