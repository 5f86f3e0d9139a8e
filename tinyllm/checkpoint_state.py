"""What a checkpoint holds, in the forms its files store: tensors for safetensors, the
rest as JSON-able data, and back.

:mod:`tinyllm.checkpoint` writes and reads the files; this module only converts (a model's
state without repeats of tied tensors, an optimizer's state, random-number-generator
states) and checks the types of what it reads back (:func:`typed`).
"""

from __future__ import annotations

import base64

import torch


def unique_state(module: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The module's state dict without repeats of tied tensors.

    Returns ``(tensors, tied)`` where ``tied`` maps each dropped name to the kept name that
    shares its storage (GPT's ``lm_head.weight`` -> ``transformer.wte.weight``).
    safetensors refuses to store two names for one storage, and storing it once is smaller.
    """
    tensors, tied, seen = {}, {}, {}
    for name, tensor in module.state_dict().items():
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if tensor.numel() and key in seen:
            tied[name] = seen[key]
            continue
        seen[key] = name
        tensors[name] = tensor.detach().cpu().contiguous()
    return tensors, tied


def optimizer_to_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split a torch optimizer ``state_dict`` into tensors and JSON-able parameter groups."""
    tensors = {}
    for param_id, state in state_dict["state"].items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"optimizer state {param_id}.{key} is a {type(value).__name__}, not a tensor")
            tensors[f"state.{param_id}.{key}"] = value.detach().cpu().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()}
              for g in state_dict["param_groups"]]
    return tensors, {"param_groups": groups}


def optimizer_from_tensors(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for name, tensor in tensors.items():
        prefix, param_id, key = name.split(".", 2)  # ValueError if not state.<id>.<key>
        if prefix != "state":
            raise ValueError(f"optimizer tensor {name!r} is not named state.<id>.<key>")
        state.setdefault(int(param_id), {})[key] = tensor
    groups = typed(meta, "param_groups", list)
    for group in groups:
        typed(group, "params", list)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": groups}


def rng_to_json(rng: dict[str, torch.Tensor]) -> dict[str, str]:
    return {name: base64.b64encode(state.numpy().tobytes()).decode("ascii") for name, state in rng.items()}


def rng_from_json(rng: dict[str, str]) -> dict[str, torch.Tensor]:
    # validate=True: a character outside base64's alphabet is an error, not skipped.
    return {
        name: torch.frombuffer(bytearray(base64.b64decode(typed(rng, name, str), validate=True)),
                               dtype=torch.uint8).clone()
        for name in rng
    }


def typed(mapping: dict, key: str, kind: type | tuple, default=KeyError):
    """``mapping[key]`` (``default`` if given and absent), checked to be a ``kind``."""
    if not isinstance(mapping, dict):
        raise TypeError(f"expected a JSON object holding {key!r}, got {type(mapping).__name__}")
    if key not in mapping and default is not KeyError:
        return default
    value, kinds = mapping[key], kind if isinstance(kind, tuple) else (kind,)
    # JSON true is no count: a bool passes only where bool is asked for.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
        raise TypeError(f"{key!r} must be {names}, got {value!r}")
    return value
