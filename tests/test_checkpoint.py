"""Checkpoints: round trip, atomic writes, corruption and mismatch give clear errors, no pickle."""

from __future__ import annotations

import json
import os

import pytest
import torch
from helpers import checkpoint_step

from tinyllm import checkpoint as ck
from tinyllm.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from tinyllm.model import GPT, GPTConfig
from tinyllm.tokenizer import CharTokenizer

CONFIG = GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=16)


def _trained(steps: int = 2):
    torch.manual_seed(0)
    model = GPT(CONFIG)
    opt = model.configure_optimizers(0.1, 1e-2)
    for _ in range(steps):
        x = torch.randint(0, 11, (2, 8))
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _save(tmp_path, step=2, **kwargs):
    model, opt = _trained(step)
    rng = {"batches": torch.Generator().manual_seed(5).get_state()}
    save_checkpoint(tmp_path, model, step, opt, CharTokenizer("abcdefghijk"), rng, {"loss": [1.0, 0.5]}, **kwargs)
    return model, opt


def test_the_polled_step_is_the_saved_checkpoints(tmp_path):
    """tests/helpers.checkpoint_step, which the killed-run tests poll, agrees with load_checkpoint."""
    assert checkpoint_step(tmp_path) == 0  # no checkpoint yet
    _save(tmp_path, step=3)
    assert checkpoint_step(tmp_path) == load_checkpoint(tmp_path).step == 3


def test_round_trip_weights_optimizer_rng_tokenizer(tmp_path):
    model, opt = _save(tmp_path)
    loaded, tokenizer, cp = load_model(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    # Tied weights stay tied after loading.
    assert loaded.lm_head.weight.data_ptr() == loaded.transformer.wte.weight.data_ptr()
    assert tokenizer.itos == list("abcdefghijk")
    assert cp.step == 2 and cp.history == {"loss": [1.0, 0.5]}
    assert torch.equal(cp.rng["batches"], torch.Generator().manual_seed(5).get_state())
    full = load_checkpoint(tmp_path)
    fresh = GPT(CONFIG).configure_optimizers(0.1, 1e-2)
    fresh.load_state_dict(full.optimizer_state)
    for group_a, group_b in zip(opt.param_groups, fresh.param_groups):
        assert group_a["betas"] == group_b["betas"] and group_a["weight_decay"] == group_b["weight_decay"]
    saved, restored = opt.state_dict()["state"], fresh.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for i in saved:
        for key in saved[i]:
            assert torch.equal(saved[i][key], restored[i][key]), (i, key)


def test_files_are_safetensors_and_json_only(tmp_path):
    _save(tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "manifest.json" and len(names) == 4
    assert all(n.endswith((".safetensors", ".json")) for n in names)
    # Nothing a pickle loader would read: safetensors files start with an 8-byte header length.
    for path in tmp_path.glob("*.safetensors"):
        header_len = int.from_bytes(path.read_bytes()[:8], "little")
        json.loads(path.read_bytes()[8 : 8 + header_len])


def test_second_save_replaces_first_and_cleans_up(tmp_path):
    _save(tmp_path, step=1)
    _save(tmp_path, step=3)
    assert load_checkpoint(tmp_path).step == 3
    assert len(list(tmp_path.iterdir())) == 4, sorted(p.name for p in tmp_path.iterdir())


def test_crash_before_manifest_keeps_previous_checkpoint(tmp_path, monkeypatch):
    _save(tmp_path, step=1)
    real_replace = os.replace

    def crash_on_manifest(src, dst):
        if str(dst).endswith(ck.MANIFEST):
            raise KeyboardInterrupt("simulated crash")  # as if the process died here
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        _save(tmp_path, step=2)
    monkeypatch.setattr(os, "replace", real_replace)
    cp = load_checkpoint(tmp_path)  # the old checkpoint is intact and still the valid one
    assert cp.step == 1
    _save(tmp_path, step=3)  # the next save cleans the leftovers
    assert len(list(tmp_path.iterdir())) == 4


@pytest.mark.parametrize("kind", ["model", "optimizer", "state"])
def test_truncated_file_is_rejected(tmp_path, kind):
    _save(tmp_path)
    path = next(tmp_path.glob(f"{kind}-*"))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path)


def test_flipped_byte_fails_checksum(tmp_path):
    _save(tmp_path)
    path = next(tmp_path.glob("model-*"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_model(tmp_path)


def test_missing_and_garbled_manifest(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)


def test_json_nested_too_deep_is_a_malformed_file_for_every_reader(tmp_path):
    """[[[[... past Python's recursion limit raises RecursionError in json.loads; every reader of
    the package's files names the file instead, as for any other malformed JSON."""
    from tinyllm.data import load_conversations
    from tinyllm.tokenizer import BPETokenizer
    from tinyllm.tokenizer.hf_json import read

    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "manifest.json").write_text(deep)
    with pytest.raises(CheckpointError, match="manifest.json is not valid JSON: nested too deep"):
        load_checkpoint(tmp_path)
    (tmp_path / "deep.json").write_text(deep)
    (tmp_path / "deep.jsonl").write_text(deep + "\n")
    for reader in (BPETokenizer.load, CharTokenizer.load, lambda path: read(BPETokenizer, path)):
        with pytest.raises(ValueError, match="deep.json.*nested too deep"):
            reader(tmp_path / "deep.json")
    with pytest.raises(ValueError, match="deep.jsonl, line 1: not valid JSON .nested too deep"):
        load_conversations(tmp_path / "deep.jsonl")


def test_config_mismatch_names_the_fields(tmp_path):
    _save(tmp_path)
    cp = load_checkpoint(tmp_path)
    other = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))
    with pytest.raises(CheckpointError, match="n_layer: checkpoint has 1, asked for 2"):
        ck.load_model_state(other, cp)


def test_a_pickle_is_never_loaded(tmp_path):
    # A torch.save pickle under the manifest's name (checksum made to match) is refused
    # by the safetensors parser instead of being executed.
    _save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    evil = tmp_path / manifest["files"]["model"]["name"]
    torch.save({"x": torch.zeros(1)}, evil)
    data = evil.read_bytes()
    manifest["files"]["model"].update(bytes=len(data), sha256=ck.sha256(data))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="not valid safetensors"):
        load_checkpoint(tmp_path)


def test_bad_step_is_rejected(tmp_path):
    model, _ = _trained(0)
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(tmp_path, model, -1)


def test_reading_while_a_trainer_replaces_the_checkpoint(tmp_path, monkeypatch):
    # A new save deletes the files the old manifest named; the reader must retry, not crash.
    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))
    tokenizer = CharTokenizer("abcde")
    save_checkpoint(tmp_path, model, 1, tokenizer=tokenizer)
    original_read = type(tmp_path).read_bytes
    fired = []

    def read_during_a_save(self):
        if self.name.startswith("state-000001") and not fired:
            fired.append(True)
            save_checkpoint(tmp_path, model, 2, tokenizer=tokenizer)
        return original_read(self)

    monkeypatch.setattr(type(tmp_path), "read_bytes", read_during_a_save)
    assert load_checkpoint(tmp_path).step == 2
    assert fired


def test_a_tokenizer_the_loader_cannot_rebuild_is_refused_at_save_time(tmp_path):
    class OtherTokenizer:
        def to_dict(self):
            return {"type": "wordpiece", "vocab": []}

    model = GPT(GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(TypeError, match="unknown tokenizer type 'wordpiece'"):
        save_checkpoint(tmp_path, model, 1, tokenizer=OtherTokenizer())
    assert not (tmp_path / "manifest.json").exists()


def test_a_bpe_tokenizer_with_special_tokens_round_trips_with_identical_logits(tmp_path):
    from tinyllm.tokenizer import BPETokenizer

    text = "<|im_start|>user\nwhat do you eat?<|im_end|>\n<|im_start|>assistant\ni eat flakes.<|im_end|>\n" * 20
    tokenizer = BPETokenizer().train(text, 280, special_tokens=["<|im_start|>", "<|im_end|>"])
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2, n_embd=16,
                          mlp="relu", mlp_hidden=24))
    save_checkpoint(tmp_path, model, 3, tokenizer=tokenizer)
    loaded, tok, checkpoint = load_model(tmp_path)
    assert isinstance(tok, BPETokenizer) and tok.special_tokens == tokenizer.special_tokens
    assert tok.merges == tokenizer.merges and tok.pattern == tokenizer.pattern
    assert loaded.config == model.config and isinstance(loaded.transformer.h[0].mlp.act, torch.nn.ReLU)
    ids = tokenizer.encode(text[:80], allowed_special="all")
    assert tok.encode(text[:80], allowed_special="all") == ids and tok.decode(ids) == text[:80]
    x = torch.tensor([ids[:32]])
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x, all_logits=True)[0], loaded(x, all_logits=True)[0])


def test_a_checkpoint_from_before_the_mlp_options_loads_with_gelu(tmp_path):
    model, _ = _save(tmp_path)
    state_file = next(tmp_path.glob("state-*.json"))
    state = json.loads(state_file.read_text())
    for key in ("mlp", "mlp_hidden"):
        del state["config"][key]  # what checkpoints written before these options hold
    data = json.dumps(state).encode()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["files"]["state"].update(bytes=len(data), sha256=ck.sha256(data))
    state_file.write_bytes(data)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded, _, checkpoint = load_model(tmp_path)
    assert checkpoint.config["mlp"] == "gelu" and isinstance(loaded.transformer.h[0].mlp.act, torch.nn.GELU)


# ---------------------------------------------------------------------------------------
# Malformed checkpoints: always CheckpointError, naming the file and the problem
# ---------------------------------------------------------------------------------------


def _edit_manifest(tmp_path, change) -> None:
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    change(manifest)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))


def _edit_state(tmp_path, change) -> str:
    """Rewrite the state file with ``change`` applied, its checksum made to match (so only the
    parse can notice). Returns the state file's name."""
    state_file = next(tmp_path.glob("state-*.json"))
    state = json.loads(state_file.read_text())
    change(state)
    data = json.dumps(state).encode()
    state_file.write_bytes(data)
    _edit_manifest(tmp_path, lambda m: m["files"]["state"].update(bytes=len(data), sha256=ck.sha256(data)))
    return state_file.name


@pytest.mark.parametrize("name", ["../outside.json", "/tmp/outside.json", "sub/state.json", "..", "", "state.json\x00"])
def test_a_manifest_entry_outside_the_folder_is_refused(tmp_path, name):
    folder = tmp_path / "ck"
    _save(folder)
    state_file = next(folder.glob("state-*.json"))
    # A consistent copy outside the folder: only the name check can refuse it.
    (tmp_path / "outside.json").write_bytes(state_file.read_bytes())
    (folder / "sub").mkdir()
    (folder / "sub" / "state.json").write_bytes(state_file.read_bytes())
    if name.startswith("/"):
        name = str(tmp_path / "outside.json")
    _edit_manifest(folder, lambda m: m["files"]["state"].update(name=name))
    with pytest.raises(CheckpointError, match=r"manifest\.json is malformed: .*not a plain name"):
        load_checkpoint(folder)


def test_a_manifest_entry_that_is_a_link_is_refused(tmp_path):
    folder = tmp_path / "ck"
    _save(folder)
    state_file = next(folder.glob("state-*.json"))
    (tmp_path / "outside.json").write_bytes(state_file.read_bytes())
    state_file.unlink()
    state_file.symlink_to(tmp_path / "outside.json")
    with pytest.raises(CheckpointError, match="symbolic link"):
        load_checkpoint(folder)


def _drop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.update({key: value})


@pytest.mark.parametrize("change, problem", [
    (_drop("step"), "the key 'step' is missing"),
    (_drop("config"), "the key 'config' is missing"),
    (_set("step", "12"), "'step' must be int"),
    (_set("step", True), "'step' must be int"),
    (_set("step", -3), "'step' must be >= 0"),
    (_set("config", [1, 2]), "'config' must be dict"),
    (_set("history", "long"), "'history' must be dict"),
    (_set("tokenizer", 5), "'tokenizer' must be dict or null"),
    (_set("rng", {"batches": "not base64!"}), "Non-base64|base64|Incorrect padding"),
    (_set("rng", {"batches": 7}), "'batches' must be str"),
    (_set("tied_weights", {"lm_head.weight": "no.such.weight"}), "no.such.weight"),
    (_set("optimizer", {"groups": []}), "the key 'param_groups' is missing"),
    (_set("optimizer", {"param_groups": [{"lr": 1}]}), "the key 'params' is missing"),
])
def test_a_malformed_state_file_raises_checkpoint_error_naming_it(tmp_path, change, problem):
    _save(tmp_path)
    name = _edit_state(tmp_path, change)
    with pytest.raises(CheckpointError, match=problem) as info:
        load_checkpoint(tmp_path)
    assert name in str(info.value) and "malformed" in str(info.value)


@pytest.mark.parametrize("change, problem", [
    (lambda m: m["files"]["state"].pop("bytes"), "the key 'bytes' is missing"),
    (lambda m: m["files"]["model"].pop("name"), "the key 'name' is missing"),
    (lambda m: m["files"]["model"].update(bytes="10"), "'bytes' must be int"),
    (lambda m: m.update(files=[m["files"]["model"], m["files"]["state"]]), "'files' must be dict"),
    (lambda m: m["files"].update(state="state.json"), "expected a JSON object"),
    (lambda m: m["files"].pop("model"), "names no model file"),
])
def test_a_malformed_manifest_raises_checkpoint_error_naming_it(tmp_path, change, problem):
    _save(tmp_path)
    _edit_manifest(tmp_path, change)
    with pytest.raises(CheckpointError, match=problem) as info:
        load_checkpoint(tmp_path)
    assert "manifest.json is malformed" in str(info.value)


def test_saving_keeps_the_users_files_that_merely_look_like_checkpoint_files(tmp_path):
    users = ["model-notes.json", "state-of-the-art.json", "optimizer-comparison.json",
             "model-1-abc.safetensors", "state-000001-ABCDEF0123.json", ".notes.txt.tmp"]
    for name in users:
        (tmp_path / name).write_text("mine")
    _save(tmp_path, step=1)
    stale = tmp_path / "state-000000-0123456789.json"  # an earlier save's file: ours, removed
    stale.write_text("{}")
    _save(tmp_path, step=2)
    assert not stale.exists()
    for name in users:
        assert (tmp_path / name).read_text() == "mine", name
    assert load_checkpoint(tmp_path).step == 2


def test_a_failed_rename_removes_the_temporary_file(tmp_path):
    from tinyllm.files import write_atomic

    (tmp_path / "target").mkdir()  # a file cannot be renamed over a folder
    with pytest.raises(OSError):
        write_atomic(tmp_path / "target", b"data")
    assert [p.name for p in tmp_path.iterdir()] == ["target"]


def test_saving_again_over_a_damaged_file_of_the_same_name_writes_it_afresh(tmp_path):
    """The name holds the content's hash, so a save skips a file already there, but only when
    its bytes still are that content: a damaged one is written again, and the checkpoint loads."""
    _save(tmp_path)
    path = next(tmp_path.glob("model-*"))
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    _save(tmp_path)  # the same weights, the same step: the same file name
    load_model(tmp_path)


@pytest.mark.parametrize("kind", ["huge", "fifo"])
def test_a_file_of_another_size_or_no_plain_file_is_refused_before_it_is_read(tmp_path, kind):
    """A file far larger than the manifest says would fill the memory if read first, and a pipe
    would never end: each is refused by its size and kind, unread."""
    _save(tmp_path)
    path = next(tmp_path.glob("model-*"))
    path.unlink()
    if kind == "huge":
        with open(path, "wb") as f:  # sparse: no disk used
            f.truncate(1 << 40)
    else:
        os.mkfifo(path)
    with pytest.raises(CheckpointError, match="bytes, the manifest says|not a plain file"):
        load_checkpoint(tmp_path)


def test_a_manifest_number_too_long_to_read_is_a_malformed_manifest(tmp_path):
    _save(tmp_path)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"step": 2', '"step": ' + "9" * 5000))
    with pytest.raises(CheckpointError, match="manifest.json"):
        load_checkpoint(tmp_path)


def test_weights_of_another_shape_are_a_checkpoint_error(tmp_path):
    """The names match, a shape does not (a damaged or edited checkpoint whose hashes were
    recomputed): a CheckpointError naming the tensor, not PyTorch's traceback."""
    from safetensors.torch import load_file, save_file

    _save(tmp_path)
    path = next(tmp_path.glob("model-*"))
    state = load_file(path)
    name = next(iter(state))
    state[name] = torch.zeros(3, 3)
    save_file(state, path)
    data = path.read_bytes()
    _edit_manifest(tmp_path, lambda m: m["files"]["model"].update(bytes=len(data), sha256=ck.sha256(data)))
    with pytest.raises(CheckpointError, match=name):
        load_model(tmp_path)
