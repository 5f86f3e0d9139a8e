"""Saving and loading training checkpoints: safe to read, safe to crash.

A checkpoint is a folder ``out_dir`` holding:

- ``model-<step>-<hash>.safetensors``: the model's weights (tied weights stored once);
- ``optimizer-<step>-<hash>.safetensors``: the optimizer's moment estimates (optional);
- ``state-<step>-<hash>.json``: everything else, readable by a person: the model config,
  the tokenizer, the step, the random-number-generator states, the loss history and the
  training settings;
- ``manifest.json``: names the three files above with their sizes and sha256 checksums.

Why this layout:

- **No code is ever executed on load.** ``torch.load`` of a pickle can run arbitrary code;
  safetensors files hold only raw tensors and JSON holds only data.
- **A crash never leaves a checkpoint that reads as valid but is half-written.** Each save
  writes *new* files (their names carry the step and a hash of their content), each one to
  a temporary name first and then renamed with ``os.replace`` (atomic on POSIX). Only then is
  ``manifest.json`` replaced, also atomically: that rename is the moment the new checkpoint
  exists. The previous checkpoint's files are deleted after it. A process killed at any
  instant leaves either the old manifest (whose files are still there) or the new one.
- **Corruption is detected.** Loading checks every file's size and sha256 against the
  manifest before parsing anything; any bad file (corrupted, malformed, or named outside
  the folder: ``../x``, an absolute path, a link) raises :class:`CheckpointError` naming
  the file and the problem. A save deletes only files named as saves name them.
"""

from __future__ import annotations

import contextlib
import json
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from tinyllm.checkpoint_state import (
    optimizer_from_tensors,
    optimizer_to_tensors,
    rng_from_json,
    rng_to_json,
    typed,
    unique_state,
)
from tinyllm.files import fsync_dir, json_loads, sha256, write_atomic
from tinyllm.tokenizer import BPETokenizer, CharTokenizer
from tinyllm.validate import check_int

FORMAT = "tinyllm-checkpoint"
VERSION = 1
MANIFEST = "manifest.json"
# The files a save writes, ``kind-<step>-<10 hex of the sha256>.ext``, and their temporary
# files (``.<name>.<random>.tmp``, see tinyllm.files.write_atomic): all a save may delete.
_OWN_FILE = r"(?:(?:model|optimizer)-\d{6,}-[0-9a-f]{10}\.safetensors|state-\d{6,}-[0-9a-f]{10}\.json)"
_OWN_NAME = re.compile(_OWN_FILE)
_OWN_TEMPORARY = re.compile(rf"\.(?:{_OWN_FILE}|{re.escape(MANIFEST)})\.[^.]+\.tmp")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupted, or does not fit the model it is loaded into."""


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` returns. Tensors are on the CPU."""

    path: Path
    step: int
    config: dict  # GPTConfig fields
    tokenizer: dict | None  # e.g. {"type": "char", "chars": [...]}
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict | None = None  # a torch optimizer state_dict, or None
    rng: dict = field(default_factory=dict)  # name -> torch.ByteTensor (generator states)
    history: dict = field(default_factory=dict)
    train_config: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------
# Save
# ---------------------------------------------------------------------------------------


def save_checkpoint(
    out_dir,
    model: torch.nn.Module,
    step: int,
    optimizer: torch.optim.Optimizer | None = None,
    tokenizer=None,
    rng: dict[str, torch.Tensor] | None = None,
    history: dict | None = None,
    train_config: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint of ``model`` (and ``optimizer``) after ``step`` steps into ``out_dir``.

    ``model`` must have a ``config`` with ``to_dict()`` (like :class:`tinyllm.model.GPTConfig`).
    ``tokenizer`` may be a :class:`~tinyllm.tokenizer.CharTokenizer` or a
    :class:`~tinyllm.tokenizer.BPETokenizer` (others are refused); ``rng`` maps names to
    generator states (``torch.Generator.get_state()``).
    Returns the path of the manifest.
    """
    check_int("step", step, 0)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    model_tensors, tied = unique_state(model)
    files: dict[str, bytes] = {"model": st_save(model_tensors)}
    optimizer_meta = None
    if optimizer is not None:
        opt_tensors, optimizer_meta = optimizer_to_tensors(optimizer.state_dict())
        files["optimizer"] = st_save(opt_tensors)
    state = {
        "format": FORMAT,
        "version": VERSION,
        "step": step,
        "config": model.config.to_dict(),
        "tied_weights": tied,
        "tokenizer": _tokenizer_to_dict(tokenizer),
        "optimizer": optimizer_meta,
        "rng": rng_to_json(rng or {}),
        "history": history or {},
        "train_config": train_config or {},
        "extra": extra or {},
    }
    files["state"] = json.dumps(state, indent=1, ensure_ascii=False).encode("utf-8")

    manifest = {"format": FORMAT, "version": VERSION, "step": step, "files": {}}
    for kind, data in files.items():
        digest = sha256(data)
        ext = "json" if kind == "state" else "safetensors"
        name = f"{kind}-{step:06d}-{digest[:10]}.{ext}"
        # Same name means same content (the hash is in the name): a live file is not rewritten,
        # unless its bytes are no longer that content (damaged since).
        if not _holds(out_dir / name, data, digest):
            write_atomic(out_dir / name, data)
        manifest["files"][kind] = {"name": name, "bytes": len(data), "sha256": digest}
    fsync_dir(out_dir)
    # The commit point: after this rename the new checkpoint is the valid one.
    write_atomic(out_dir / MANIFEST, json.dumps(manifest, indent=1).encode("utf-8"))
    fsync_dir(out_dir)
    _remove_stale_files(out_dir, keep={f["name"] for f in manifest["files"].values()})
    return out_dir / MANIFEST


def _tokenizer_to_dict(tokenizer) -> dict | None:
    if tokenizer is None:
        return None
    if hasattr(tokenizer, "to_dict"):
        state = tokenizer.to_dict()
    else:
        raise TypeError(f"do not know how to save a tokenizer of type {type(tokenizer).__name__}")
    try:  # never write a checkpoint that load_model could not read back
        tokenizer_from_dict(state)
    except CheckpointError as exc:
        raise TypeError(f"cannot save this tokenizer in a checkpoint: {exc}") from None
    return state


TOKENIZERS = {"char": CharTokenizer, "bpe": BPETokenizer}  # the "type" a saved tokenizer names


def tokenizer_from_dict(state: dict | None):
    """Rebuild the tokenizer a checkpoint names (character or byte-level BPE)."""
    if state is None:
        return None
    kind = state.get("type") if isinstance(state, dict) else None
    if kind not in TOKENIZERS:
        raise CheckpointError(f"unknown tokenizer type {kind!r} in checkpoint; known: {sorted(TOKENIZERS)}")
    try:
        return TOKENIZERS[kind].from_dict(state)
    except ValueError as exc:
        raise CheckpointError(f"the checkpoint's tokenizer is malformed: {exc}") from None


def _remove_stale_files(out_dir: Path, keep: set[str]) -> None:
    """Delete files of earlier checkpoints and temporary files of interrupted saves.

    Only names a save writes match: ``model-notes.json`` or ``state-of-the-art.json`` of
    the user's are not checkpoint files and stay.
    """
    for path in out_dir.iterdir():
        ours = _OWN_NAME.fullmatch(path.name) or _OWN_TEMPORARY.fullmatch(path.name)
        if ours and path.name not in keep:
            try:
                path.unlink()
            except FileNotFoundError:
                pass


# ---------------------------------------------------------------------------------------
# Load
# ---------------------------------------------------------------------------------------


def has_checkpoint(out_dir) -> bool:
    return (Path(out_dir) / MANIFEST).is_file()


def _entry_path(out_dir: Path, entry: dict) -> Path:
    """The file a manifest entry names: a plain name of a file in ``out_dir`` itself."""
    name = typed(entry, "name", str)
    if name in ("", ".", "..") or Path(name).name != name or "\\" in name or "\x00" in name:
        raise ValueError(f"file name {name!r} is not a plain name of a file in the checkpoint's folder")
    path = out_dir / name
    if path.is_symlink():
        raise ValueError(f"file {name!r} is a symbolic link; a checkpoint holds only plain files")
    return path


def _holds(path: Path, data: bytes, digest: str) -> bool:
    try:
        return path.is_file() and not path.is_symlink() and path.stat().st_size == len(data) \
            and sha256(path.read_bytes()) == digest
    except OSError:
        return False


def _read_verified(out_dir: Path, entry: dict, kind: str) -> bytes:
    with _malformed(out_dir / MANIFEST):
        path = _entry_path(out_dir, entry)
        size, digest = typed(entry, "bytes", int), typed(entry, "sha256", str)
    try:
        found = path.stat()  # the kind and size first: a pipe is never done, a huge file fills the memory
        if not stat.S_ISREG(found.st_mode):
            raise CheckpointError(f"checkpoint {out_dir}: {path.name} is not a plain file")
        if found.st_size != size:
            raise CheckpointError(f"checkpoint {out_dir}: {path.name} has {found.st_size} bytes, the manifest says "
                                  f"{size} (truncated or overwritten file)")
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        # Also the case where a training run replaced the checkpoint while we read it:
        # load_checkpoint then reads the new manifest and tries again.
        raise CheckpointError(f"checkpoint {out_dir}: the {kind} file {path.name} named by {MANIFEST} "
                              "is missing") from None
    if len(data) != size:
        raise CheckpointError(
            f"checkpoint {out_dir}: {path.name} has {len(data)} bytes, the manifest says {size} "
            "(truncated or overwritten file)"
        )
    if sha256(data) != digest:
        raise CheckpointError(f"checkpoint {out_dir}: {path.name} does not match its sha256 checksum (corrupted file)")
    return data


@contextlib.contextmanager
def _malformed(path: Path):
    """Turn any parse error inside the block into a :class:`CheckpointError` naming ``path``."""
    try:
        yield
    except CheckpointError:
        raise
    except KeyError as exc:
        raise CheckpointError(f"{path} is malformed: the key {exc} is missing") from None
    except (TypeError, ValueError, AttributeError, IndexError, SafetensorError) as exc:
        raise CheckpointError(f"{path} is malformed: {exc}") from None


def load_checkpoint(out_dir, with_optimizer: bool = True) -> Checkpoint:
    """Read and verify the checkpoint in ``out_dir``. Raises :class:`CheckpointError`.

    A training run may replace the checkpoint while we read it (and delete the files the
    old manifest named); then the manifest has changed and we read it again.
    """
    for attempt in range(3):
        manifest_before = _manifest_bytes(out_dir)
        try:
            return _load_checkpoint(Path(out_dir), with_optimizer)
        except CheckpointError:
            if attempt == 2 or _manifest_bytes(out_dir) == manifest_before:
                raise
    raise AssertionError("unreachable")


# The settings of a training recipe: a run resumed with others would be another run (the learning rate, the
# batches, the optimizer's state). The length (max_iters, lr_decay_iters: a longer run's schedule, as nanoGPT
# resumes), the evaluations, the device and the paths may change.
RECIPE = ("batch_size", "grad_accum_steps", "lr", "min_lr", "warmup_iters", "weight_decay", "beta1", "beta2",
          "grad_clip", "optimizer", "muon_lr", "val_fraction", "persona", "n_conversations", "mask_user",
          "batching", "seed")


def resume_point(out_dir, settings: dict) -> Checkpoint:
    """The checkpoint a run of these training ``settings`` continues from. ValueError if it is past
    their ``max_iters`` (nothing to train); CheckpointError naming each :data:`RECIPE` setting
    that differs from the saved run's (the model's are checked by :func:`check_config_matches`)."""
    checkpoint = load_checkpoint(out_dir)
    if checkpoint.step > settings["max_iters"]:
        raise ValueError(f"the checkpoint in {out_dir} is at step {checkpoint.step}, past "
                         f"max_iters={settings['max_iters']}: nothing to train (raise --max_iters to continue it)")
    saved = checkpoint.train_config
    diffs = [f"{k}: checkpoint has {saved[k]!r}, asked for {settings[k]!r}" for k in RECIPE
             if k in saved and k in settings and saved[k] != settings[k]]
    if diffs:
        raise CheckpointError(f"the checkpoint in {out_dir} was trained with other settings: {'; '.join(diffs)} "
                              "(give the same to continue it, or train in a new out_dir)")
    return checkpoint


def _manifest_bytes(out_dir) -> bytes | None:
    try:
        return (Path(out_dir) / MANIFEST).read_bytes()
    except OSError:
        return None


def _load_checkpoint(out_dir: Path, with_optimizer: bool) -> Checkpoint:
    manifest_path = out_dir / MANIFEST
    if not manifest_path.is_file():
        raise CheckpointError(f"no checkpoint in {out_dir} (no {MANIFEST}); train one with python -m tinyllm.train")
    try:
        manifest = json_loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError; a number too long to read
        raise CheckpointError(f"{manifest_path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise CheckpointError(f"{manifest_path} is not a tinyllm checkpoint manifest")
    if manifest.get("version") != VERSION:
        raise CheckpointError(f"{manifest_path} has format version {manifest.get('version')}, expected {VERSION}")
    with _malformed(manifest_path):
        files = typed(manifest, "files", dict)
        for kind in ("model", "state"):
            if kind not in files:
                raise ValueError(f"it names no {kind} file")

    state_bytes = _read_verified(out_dir, files["state"], "state")  # its name checked there
    with _malformed(out_dir / files["state"]["name"]):
        return _parse(out_dir, files, json_loads(state_bytes.decode("utf-8")), with_optimizer)


def _parse(out_dir: Path, files: dict, state: dict, with_optimizer: bool) -> Checkpoint:
    """The checkpoint the verified state file describes (any error: a malformed file)."""
    model_state = _load_tensors(out_dir, files["model"], "model")
    for name, kept in typed(state, "tied_weights", dict, {}).items():
        if kept not in model_state:
            raise ValueError(f"tied weight {name!r} names {kept!r}, which the model file does not hold")
        model_state[name] = model_state[kept]
    optimizer_state = None
    optimizer_meta = typed(state, "optimizer", (dict, type(None)), None)
    if with_optimizer and "optimizer" in files and optimizer_meta is not None:
        tensors = _load_tensors(out_dir, files["optimizer"], "optimizer")
        optimizer_state = optimizer_from_tensors(tensors, optimizer_meta)
    step = typed(state, "step", int)
    if step < 0:
        raise ValueError(f"'step' must be >= 0, got {step}")
    return Checkpoint(
        path=out_dir,
        step=step,
        config=typed(state, "config", dict),
        tokenizer=typed(state, "tokenizer", (dict, type(None)), None),
        model_state=model_state,
        optimizer_state=optimizer_state,
        rng=rng_from_json(typed(state, "rng", dict, {})),
        history=typed(state, "history", dict, {}),
        train_config=typed(state, "train_config", dict, {}),
        extra=typed(state, "extra", dict, {}),
    )


def _load_tensors(out_dir: Path, entry: dict, kind: str) -> dict[str, torch.Tensor]:
    data = _read_verified(out_dir, entry, kind)
    with _malformed(out_dir / entry["name"]):
        try:
            return st_load(data)
        except SafetensorError as exc:  # only possible if the checksum matched a bad file
            raise ValueError(f"the {kind} file is not valid safetensors: {exc}") from None


def check_config_matches(checkpoint: Checkpoint, config: dict) -> None:
    """Raise :class:`CheckpointError` listing every field where ``config`` differs."""
    diffs = [
        f"{key}: checkpoint has {checkpoint.config.get(key)!r}, asked for {config.get(key)!r}"
        for key in sorted(set(checkpoint.config) | set(config))
        if checkpoint.config.get(key) != config.get(key)
    ]
    if diffs:
        raise CheckpointError(
            f"the checkpoint in {checkpoint.path} was trained with a different model config: "
            + "; ".join(diffs)
        )


def load_model_state(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's weights into ``model`` after checking the configs match."""
    check_config_matches(checkpoint, model.config.to_dict())
    expected = set(model.state_dict())
    found = set(checkpoint.model_state)
    if expected != found:
        raise CheckpointError(
            f"checkpoint {checkpoint.path} does not fit the model: missing {sorted(expected - found)}, "
            f"unexpected {sorted(found - expected)}"
        )
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    wrong = [f"{k} {tuple(v.shape)} (the model's {tuple(shapes[k])})" for k, v in checkpoint.model_state.items()
             if v.shape != shapes[k]]
    if wrong:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not fit the model: {'; '.join(wrong)}")
    model.load_state_dict(checkpoint.model_state)


def load_model(out_dir, device: str | torch.device = "cpu"):
    """Load a GPT and its tokenizer from a checkpoint folder: ``model, tokenizer, checkpoint``.

    The model is in eval mode.
    """
    from tinyllm.model import GPT, GPTConfig  # the checkpoint comes after the model in the flow

    checkpoint = load_checkpoint(out_dir, with_optimizer=False)
    try:
        config = GPTConfig(**checkpoint.config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {out_dir} has an unknown model config: {exc}") from None
    # Options added later (e.g. ``mlp``) take their defaults in older checkpoints.
    checkpoint.config = config.to_dict()
    model = GPT(config)
    load_model_state(model, checkpoint)
    model.to(device).eval()
    return model, tokenizer_from_dict(checkpoint.tokenizer), checkpoint


def export_model(src, dst, extra: dict | None = None) -> Path:
    """Copy the checkpoint in ``src`` to ``dst`` without the optimizer state.

    For shipping a trained model: the optimizer's two moment estimates per weight would
    triple the size and are only needed to continue training.
    """
    model, tokenizer, checkpoint = load_model(src)
    return save_checkpoint(
        dst, model, checkpoint.step, None, tokenizer, None, checkpoint.history, checkpoint.train_config,
        {**checkpoint.extra, **(extra or {})},
    )
