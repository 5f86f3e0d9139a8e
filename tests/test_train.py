"""The training loop: schedule, learning, exact resume after SIGKILL and Ctrl-C, the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import TEXT, checkpoint_step, one_thread  # noqa: F401 (one_thread: an autouse fixture)

from tinyllm.checkpoint import CheckpointError, load_checkpoint
from tinyllm.config import build_parser
from tinyllm.train import PRESETS, config_from_preset, get_lr, train


def _cfg(**overrides):
    return config_from_preset("tiny", verbose=False, **overrides)


def test_lr_schedule_warmup_then_cosine():
    lrs = [get_lr(s, 1.0, 0.1, 10, 100) for s in range(120)]
    assert lrs[0] == pytest.approx(1 / 11) and lrs[9] == pytest.approx(10 / 11)
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11]))  # warmup rises
    assert lrs[10] == pytest.approx(1.0)  # the peak right after warmup
    assert all(a >= b for a, b in zip(lrs[10:100], lrs[11:101]))  # then decays
    assert lrs[55] == pytest.approx(0.1 + 0.5 * 0.9)  # half way down the cosine
    assert lrs[100:] == [0.1] * 20


def test_training_lowers_the_loss_and_fills_the_history():
    history = train(_cfg(max_iters=40, eval_interval=20), text=TEXT)
    assert history["eval_step"] == [0, 20, 40]
    assert history["step"] == list(range(1, 41)) and len(history["loss"]) == len(history["lr"]) == 40
    assert history["val_loss"][-1] < history["val_loss"][0] - 0.5
    assert history["val_loss"][0] == pytest.approx(math.log(len(set(TEXT))), abs=0.2)  # uniform at init
    assert history["train_time"] > 0 and history["interrupted"] is False


def test_same_seed_same_run_and_other_seed_differs():
    a = train(_cfg(max_iters=5), text=TEXT)
    b = train(_cfg(max_iters=5), text=TEXT)
    c = train(_cfg(max_iters=5, seed=7), text=TEXT)
    assert a["loss"] == b["loss"] and a["loss"] != c["loss"]


def test_ctrl_c_saves_and_resume_is_exact(tmp_path):
    reference = train(_cfg(max_iters=12, eval_interval=4, out_dir=str(tmp_path / "ref")), text=TEXT)

    def press_ctrl_c(step, model, history, tokenizer):
        if step == 4:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C in a terminal or notebook does

    run = tmp_path / "run"
    stopped = train(_cfg(max_iters=12, eval_interval=4, out_dir=str(run)), text=TEXT, callback=press_ctrl_c)
    assert stopped["interrupted"] and stopped["step"][-1] == 4
    assert load_checkpoint(run).step == 4
    resumed = train(_cfg(max_iters=12, eval_interval=4, out_dir=str(run), resume=True), text=TEXT)
    assert resumed["loss"] == reference["loss"] and resumed["val_loss"] == reference["val_loss"]
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(run)
    for name in a.model_state:
        assert torch.equal(a.model_state[name], b.model_state[name]), name


def test_resume_with_another_model_config_is_refused(tmp_path):
    train(_cfg(max_iters=2, out_dir=str(tmp_path)), text=TEXT)
    with pytest.raises(CheckpointError, match="n_embd: checkpoint has 32, asked for 64"):
        train(_cfg(max_iters=4, out_dir=str(tmp_path), resume=True, n_embd=64), text=TEXT)


def test_a_resume_that_would_train_nothing_or_start_over_says_so(tmp_path, capsys):
    """A checkpoint past max_iters trained nothing without a word; a mistyped out_dir started
    from scratch with its notice hidden by --quiet (verbose=False)."""
    train(_cfg(max_iters=4, out_dir=str(tmp_path / "run")), text=TEXT)  # _cfg: verbose=False
    with pytest.raises(ValueError, match="at step 4, past max_iters=2"):
        train(_cfg(max_iters=2, out_dir=str(tmp_path / "run"), resume=True), text=TEXT)
    capsys.readouterr()
    train(_cfg(max_iters=1, out_dir=str(tmp_path / "rnu"), resume=True), text=TEXT)
    assert "no checkpoint in" in capsys.readouterr().err
    # another recipe is another run: refused by name (the schedule, the batches would change)
    with pytest.raises(CheckpointError, match=r"batch_size: checkpoint has 8, asked for 2; lr: checkpoint has"):
        train(_cfg(max_iters=8, out_dir=str(tmp_path / "run"), resume=True, lr=1e-3, min_lr=1e-4, batch_size=2),
              text=TEXT)
    train(_cfg(max_iters=6, eval_interval=3, out_dir=str(tmp_path / "run"), resume=True), text=TEXT)  # these may


def _cli(out_dir, corpus, *extra):
    return [
        sys.executable, "-m", "tinyllm.train", "--preset", "tiny", "--dataset", str(corpus), "--out_dir", str(out_dir),
        "--max_iters", "60", "--eval_interval", "20", "--checkpoint_interval", "1", "--quiet", *extra,
    ]


@pytest.mark.slow  # three training processes
def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in every run
    # The uninterrupted run and the one we kill, side by side.
    reference = subprocess.Popen(_cli(tmp_path / "ref", corpus), env=env)
    victim = subprocess.Popen(_cli(tmp_path / "run", corpus), env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if checkpoint_step(tmp_path / "run") >= 7:
            break
        time.sleep(0.005)
    assert victim.poll() is None, "the run finished before it could be killed"
    victim.send_signal(signal.SIGKILL)  # no handler, no cleanup: as if the power went off
    assert victim.wait() == -signal.SIGKILL
    killed_at = load_checkpoint(tmp_path / "run").step
    assert 7 <= killed_at < 60
    assert subprocess.run(_cli(tmp_path / "run", corpus, "--resume"), env=env).returncode == 0
    assert reference.wait() == 0
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(tmp_path / "run")
    assert a.step == b.step == 60
    for name in a.model_state:
        assert torch.equal(a.model_state[name], b.model_state[name]), name
    assert a.history["loss"] == b.history["loss"] and a.history["val_loss"] == b.history["val_loss"]
    for i, state in a.optimizer_state["state"].items():
        for key, tensor in state.items():
            assert torch.equal(tensor, b.optimizer_state["state"][i][key])


def test_cli_options_are_named_like_nanogpt():
    options = {a.dest for a in build_parser()._actions}
    for name in ("n_layer n_head n_embd block_size batch_size max_iters lr min_lr warmup_iters eval_interval "
                 "eval_iters dropout dataset tokenizer device dtype out_dir resume seed compile preset").split():
        assert name in options, name
    args = build_parser().parse_args(["--preset", "nanogpt-cpu", "--n_layer", "2", "--resume"])
    assert args.n_layer == 2 and args.resume is True and args.lr is None


def test_nanogpt_preset_is_the_published_recipe():
    p = config_from_preset("nanogpt-cpu")
    assert (p.n_layer, p.n_head, p.n_embd, p.block_size, p.batch_size) == (4, 4, 128, 64, 12)
    assert (p.max_iters, p.lr, p.dropout, p.beta2, p.weight_decay) == (2000, 1e-3, 0.0, 0.99, 0.1)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown preset 'gpt5'"):
        config_from_preset("gpt5")
    with pytest.raises(ValueError, match="dtype"):
        config_from_preset("tiny", dtype="float8")
    with pytest.raises(ValueError, match="min_lr"):
        config_from_preset("tiny", lr=1e-3, min_lr=1e-2)
    # A typo in the optimizer is found in the config, before any data or tokenizer is made.
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adamw', 'muon'\], got 'adam'"):
        config_from_preset("tiny", optimizer="adam")
    # numbers without meaning, refused before any step (an infinite lr trained to a loss of nan)
    for name, value in [("lr", float("inf")), ("grad_clip", -1.0), ("weight_decay", -5.0), ("lr_decay_iters", -5),
                        ("checkpoint_interval", 0)]:
        with pytest.raises(ValueError, match=name):
            config_from_preset("tiny", **{name: value})


def test_an_out_dir_or_tokenizer_file_that_cannot_serve_is_refused_before_training(tmp_path):
    """Found at the first save, an --out_dir that is a file lost the work done until then; a
    --tokenizer file that is not there gave a traceback."""
    (tmp_path / "a_file").write_text("notes")
    with pytest.raises(ValueError, match="out_dir .*a_file is a file"):
        config_from_preset("tiny", out_dir=str(tmp_path / "a_file"))
    with pytest.raises(ValueError, match="tokenizer file .*missing.json does not exist"):
        config_from_preset("tiny", tokenizer=str(tmp_path / "missing.json"))


def test_float16_is_refused_without_loss_scaling():
    with pytest.raises(ValueError, match="dtype must be float32, bfloat16 or auto"):
        config_from_preset("tiny", dtype="float16")


# ---------------------------------------------------------------------------------------
# BPE tokenizers and chat data
# ---------------------------------------------------------------------------------------


def test_bpe_tokenizer_trained_on_the_training_split_or_loaded_from_a_file(tmp_path):
    from tinyllm.checkpoint import load_model
    from tinyllm.tokenizer import BPETokenizer

    text = TEXT + "zyxwv " * 50  # the held-out tail: BPE must never learn its pairs
    train(_cfg(max_iters=2, tokenizer="bpe", vocab_size=300, out_dir=str(tmp_path / "a")), text=text)
    _, tokenizer, _ = load_model(tmp_path / "a")
    assert isinstance(tokenizer, BPETokenizer) and tokenizer.vocab_size == 300
    assert len(tokenizer.encode("zyxwv")) == 5  # no merge learned from the validation text
    tokenizer.save(tmp_path / "tok.json")
    train(_cfg(max_iters=2, tokenizer=str(tmp_path / "tok.json"), out_dir=str(tmp_path / "b")), text=text)
    assert load_model(tmp_path / "b")[1].merges == tokenizer.merges


def _conversations(n, seed):
    from tinyllm.chat_data import make_conversations

    return make_conversations(n=n, seed=seed, multi_turn=0.5)


def test_chat_labels_are_masked_except_the_assistants_and_unmasked_on_request():
    from tinyllm.chat_data import encode_chat
    from tinyllm.model import IGNORE_INDEX
    from tinyllm.prepare import prepare_chat

    conversations = {"train": _conversations(40, 1), "val": _conversations(10, 2)}
    tokenizer, splits = prepare_chat(_cfg(dataset="chat", tokenizer="bpe", vocab_size=300), None, conversations)
    expected = [encode_chat(tokenizer, c) for c in conversations["train"]]
    assert splits["train"].labels.tolist() == [t for _, labels in expected for t in labels]
    assert 0 < splits["train"].num_learned() < len(splits["train"].labels)
    _, unmasked = prepare_chat(_cfg(dataset="chat", tokenizer="bpe", mask_user=False), tokenizer, conversations)
    assert torch.equal(unmasked["train"].labels, unmasked["train"].ids)
    assert torch.equal(unmasked["val"].labels, splits["val"].labels)  # val is always scored on the answers
    assert IGNORE_INDEX in splits["val"].labels.tolist()
    # conversations with no answer to learn: every loss would be a mean over nothing (NaN)
    questions_only = [[m for m in c if m["role"] != "assistant"] for c in conversations["val"]]
    with pytest.raises(ValueError, match="the val conversations hold no assistant message"):
        prepare_chat(_cfg(dataset="chat", tokenizer="bpe"), tokenizer, {**conversations, "val": questions_only})


def test_chat_training_learns_the_answers_and_saves_the_tokenizer(tmp_path):
    from tinyllm.chat_data import IM_END
    from tinyllm.checkpoint import load_model

    conversations = {"train": _conversations(200, 1), "val": _conversations(20, 2)}
    cfg = _cfg(dataset="chat", tokenizer="bpe", vocab_size=300, block_size=128, max_iters=40, eval_interval=20,
               out_dir=str(tmp_path))
    history = train(cfg, conversations=conversations)
    assert history["val_loss"][-1] < history["val_loss"][0] - 1.0
    model, tokenizer, checkpoint = load_model(tmp_path)
    assert IM_END in tokenizer.special_tokens and checkpoint.train_config["mask_user"] is True


def test_chat_needs_a_tokenizer_with_special_tokens():
    with pytest.raises(ValueError, match="dataset 'chat' needs a tokenizer with special tokens"):
        _cfg(dataset="chat", tokenizer="char")
    with pytest.raises(ValueError, match="batching must be one of"):
        _cfg(batching="stack")


def test_every_option_has_help_and_the_fields_type():
    parser = build_parser()
    for action in parser._actions:
        assert action.help, action.dest
    args = parser.parse_args(["--mlp_hidden", "768", "--mask_user", "false", "--lr_decay_iters", "5", "--lr", "0.1"])
    assert (args.mlp_hidden, args.mask_user, args.lr_decay_iters, args.lr) == (768, False, 5, 0.1)
    with pytest.raises(SystemExit):
        parser.parse_args(["--mlp_hidden", "wide"])


def test_ship_script_writes_the_model_without_optimizer_and_a_readme(tmp_path):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("ship", Path(__file__).parents[1] / "scripts" / "ship.py")
    ship = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 3)
    train(_cfg(max_iters=3, dataset=str(corpus), out_dir=str(tmp_path / "run")))
    val_loss = ship.ship_text(tmp_path / "run", tmp_path / "shipped", command="make it")
    checkpoint = load_checkpoint(tmp_path / "shipped")
    assert checkpoint.optimizer_state is None and checkpoint.extra["validation"]["val_loss"] == val_loss
    readme = (tmp_path / "shipped" / "README.md").read_text()
    assert f"**Validation loss: {val_loss:.3f}**" in readme and "make it" in readme


# -- your own conversations: --dataset file.jsonl ------------------------------------------


def _write_jsonl(path, conversations, chatml=False):
    from tinyllm.chat_data import render

    records = [{"text": render(c)} if chatml else {"messages": c} for c in conversations]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


@pytest.mark.parametrize("chatml", [False, True], ids=["openai", "chatml"])
def test_a_jsonl_file_trains_a_chat_model_that_tinyllm_chat_talks_with(tmp_path, capsys, chatml):
    from tinyllm.chat import main as chat_main
    from tinyllm.train import main

    path = _write_jsonl(tmp_path / "chats.jsonl", _conversations(60, 1), chatml)
    out = tmp_path / "run"
    argv = ["--preset", "tiny", "--dataset", str(path), "--tokenizer", "bpe", "--vocab_size", "300",
            "--block_size", "64", "--max_iters", "4", "--eval_interval", "2", "--out_dir", str(out), "--quiet"]
    assert main(argv) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.train_config["dataset"] == str(path) and "<|im_end|>" in checkpoint.tokenizer["special_tokens"]
    capsys.readouterr()
    assert chat_main(["--out_dir", str(out), "--greedy", "--max_new_tokens", "8", "--prompt", "hi"]) == 0
    assert capsys.readouterr().out.startswith("assistant> ")
    # One's own conversations are read as typed: their capitals are the data's, not lower-cased.
    from tinyllm.chat import reads_lower_case

    assert not reads_lower_case(checkpoint)


def test_a_jsonl_validation_file_is_used_and_a_bad_line_stops_before_training(tmp_path, capsys):
    from tinyllm.train import main

    train_file = _write_jsonl(tmp_path / "train.jsonl", _conversations(30, 1))
    val_file = _write_jsonl(tmp_path / "val.jsonl", _conversations(5, 2))
    cfg = _cfg(dataset=str(train_file), val_dataset=str(val_file), tokenizer="bpe", vocab_size=300, block_size=64,
               max_iters=2, eval_interval=0)
    assert len(train(cfg)["val_loss"]) == 1
    with val_file.open("a", encoding="utf-8") as f:
        f.write('{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "hello"}]}\n')
    out = tmp_path / "run"
    argv = ["--preset", "tiny", "--dataset", str(train_file), "--val_dataset", str(val_file), "--tokenizer", "bpe",
            "--out_dir", str(out), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "val.jsonl, line 6: message 1 has the unknown role 'bot'" in err and not out.exists()


def test_a_dataset_of_unknown_kind_is_refused_with_what_is_accepted(tmp_path, capsys):
    from tinyllm.train import main

    table = tmp_path / "a" / "b.csv"
    table.parent.mkdir()
    table.write_text("x,y\n1,2\n", encoding="utf-8")
    assert main(["--preset", "tiny", "--dataset", str(table), "--quiet"]) == 1
    assert "accepted:" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a tokenizer with special tokens"):
        _cfg(dataset="chats.jsonl", tokenizer="char")
    with pytest.raises(ValueError, match="val_dataset is for conversations"):
        _cfg(dataset="shakespeare", val_dataset="val.jsonl")


def test_under_torchrun_only_a_lost_peer_is_reported_as_one(monkeypatch, capsys):
    import torch.distributed as tdist

    import tinyllm.train as train_module

    def failing(error):
        def run(cfg):
            raise error
        return run

    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it
    args = ["--preset", "tiny", "--quiet"]
    # Out of memory (the allocator's own words) keeps its message and traceback.
    oom = RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory")
    monkeypatch.setattr(train_module, "train", failing(oom))
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        train_module.main(args)
    # gloo's words for a dead and for a hung peer, and torch's DistError family, are lost peers.
    for error in (
        RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error: Connection reset by peer"),
        RuntimeError("[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 3000ms"),
        tdist.DistBackendError("NCCL communicator was aborted"),
    ):
        monkeypatch.setattr(train_module, "train", failing(error))
        assert train_module.main(args) == 1
        assert "error: rank 0 of 2 lost contact with the other processes" in capsys.readouterr().err


def test_every_preset_resolves_to_the_settings_it_had_before_the_config_module():
    """The presets moved to tinyllm.config, and TrainConfig's model defaults became GPTConfig's:
    every preset still resolves to exactly its earlier settings (the file holds them; a
    deliberate change to a preset rewrites it: json.dump({name: config_from_preset(name).to_dict()
    for name in PRESETS}, file, indent=1, sort_keys=True))."""
    expected = json.loads((Path(__file__).parent / "data" / "presets_resolved.json").read_text())
    assert {name: config_from_preset(name).to_dict() for name in PRESETS} == expected


def test_train_config_takes_the_models_fields_and_defaults_from_gpt_config():
    from tinyllm.config import MODEL_FIELDS, TrainConfig
    from tinyllm.model import GPTConfig

    assert issubclass(TrainConfig, GPTConfig)
    model_defaults = {f.name: f.default for f in dataclasses.fields(GPTConfig) if f.name != "vocab_size"}
    assert set(MODEL_FIELDS) == set(model_defaults)
    assert {name: getattr(TrainConfig(), name) for name in MODEL_FIELDS} == model_defaults
    with pytest.raises(ValueError, match="n_embd=130 is not divisible by n_head=4"):  # GPTConfig's own check
        TrainConfig(n_embd=130)


def test_micro_batches_with_unequal_learned_tokens_add_up_to_the_whole_batchs_gradient():
    """Chat data learns only the answers, so micro-batches hold unequal numbers of learned
    tokens: weighting each micro-batch's mean loss by its share of the step's tokens gives the
    gradient of the whole batch (1 / micro-steps would overweight a sparse one), and the same
    share over ranks, where DDP averages. Equal counts (text) keep 1 / micro-steps."""
    from tinyllm.distributed import micro_loss_weights
    from tinyllm.model import GPT, IGNORE_INDEX, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
    x = torch.randint(0, 11, (2, 8))
    y = torch.randint(0, 11, (2, 8))
    y[0, :7] = IGNORE_INDEX  # row 0 learns 1 token, row 1 learns 8

    def grad_of(losses_and_weights):
        model.zero_grad()
        sum(loss * w for loss, w in losses_and_weights).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    whole = grad_of([(model(x, y)[1], 1.0)])
    counts = [int((y[i] != IGNORE_INDEX).sum()) for i in range(2)]
    weights = micro_loss_weights(counts, sum(counts), world_size=1)
    assert weights == [1 / 9, 8 / 9]
    split = grad_of([(model(x[i:i + 1], y[i:i + 1])[1], weights[i]) for i in range(2)])
    torch.testing.assert_close(split, whole)
    halves = grad_of([(model(x[i:i + 1], y[i:i + 1])[1], 0.5) for i in range(2)])
    assert not torch.allclose(halves, whole, atol=1e-4), "the check cannot fail: equal halves are right here too"
    # two ranks, one micro-batch each: DDP averages, so each rank's weight is its share times 2
    assert micro_loss_weights([1], 9, world_size=2) == [2 / 9]
    assert micro_loss_weights([4, 4], 16, world_size=2) is None  # equal counts: loss / micro-steps, as before
    assert micro_loss_weights([0, 8], 8, world_size=1) == [0.0, 1.0]  # nothing to learn: nothing added
    assert micro_loss_weights([0, 0], 0, world_size=1) == [0.0, 0.0]  # a step with no answer in its windows
    # and in the loop: chat training in two micro-steps logs the token-weighted loss, finite
    conversations = {"train": _conversations(40, 1), "val": _conversations(10, 2)}
    history = train(_cfg(dataset="chat", tokenizer="bpe", vocab_size=300, batch_size=4, grad_accum_steps=2,
                         block_size=128, max_iters=3, eval_interval=3, eval_iters=2), conversations=conversations)
    assert len(history["loss"]) == 3 and all(math.isfinite(v) for v in history["loss"])


def test_the_loss_estimate_leaves_out_a_batch_with_nothing_to_learn():
    """A chat batch whose windows hold no answer has no loss (a mean over nothing, NaN): the
    estimate is the mean of the batches that have one, not NaN."""
    from tinyllm.train import estimate_loss

    class Scripted(torch.nn.Module):  # the losses a model would give, one per batch
        def __init__(self):
            super().__init__()
            self.weight, self.losses = torch.nn.Parameter(torch.zeros(1)), iter([math.nan, 2.0, 4.0])

        def forward(self, x, y):
            return None, torch.tensor(next(self.losses))

    estimate = estimate_loss(Scripted(), {"val": torch.arange(100)}, batch_size=2, block_size=4, eval_iters=3)
    assert estimate == {"val": 3.0}


def test_a_bpe_text_run_holds_out_the_same_text_its_tokenizer_never_saw():
    """The text is cut by characters, the tokenizer trained on the first part, and each part
    encoded on its own: the validation ids are exactly the held-out text (cut by tokens
    instead, BPE's cut fell 252 characters inside the text it trained on)."""
    from tinyllm.prepare import prepare

    text = "".join(f"line {k}: the fish swims {'round ' * (k % 5)}and rests.\n" for k in range(400))
    cfg = _cfg(tokenizer="bpe", vocab_size=300, val_fraction=0.1)
    tokenizer, splits = prepare(cfg, text=text)
    cut = int(len(text) * 0.9)
    assert tokenizer.decode(splits["train"].tolist()) == text[:cut]
    assert tokenizer.decode(splits["val"].tolist()) == text[cut:]


def test_a_random_state_of_the_wrong_size_is_a_checkpoint_error(tmp_path):
    """A state file whose hashes match but whose batch stream is 3 bytes: a CheckpointError
    naming the stream, not PyTorch's traceback from Generator.set_state."""
    import base64

    from tinyllm import checkpoint as ck

    train(_cfg(max_iters=2, out_dir=str(tmp_path)), text=TEXT)
    state_file = next(tmp_path.glob("state-*.json"))
    state = json.loads(state_file.read_text())
    state["rng"]["batches"] = base64.b64encode(b"abc").decode()
    data = json.dumps(state).encode()
    state_file.write_bytes(data)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    manifest["files"]["state"].update(bytes=len(data), sha256=ck.sha256(data))
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="random state 'batches'"):
        train(_cfg(max_iters=4, out_dir=str(tmp_path), resume=True), text=TEXT)
