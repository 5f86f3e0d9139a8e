"""The training loop: schedule, learning, exact resume after SIGKILL and Ctrl-C, the CLI."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from tinyllm.checkpoint import CheckpointError, load_checkpoint
from tinyllm.train import PRESETS, build_parser, config_from_preset, get_lr, train

TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n" * 60


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models train 10x faster on one thread than on two when the machine is busy.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def _cli(out_dir, corpus, *extra):
    return [
        sys.executable, "-m", "tinyllm.train", "--preset", "tiny", "--dataset", str(corpus), "--out_dir", str(out_dir),
        "--max_iters", "60", "--eval_interval", "20", "--checkpoint_interval", "1", "--quiet", *extra,
    ]


def test_sigkill_at_any_moment_then_resume_is_bit_identical(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # same threads in every run
    # The uninterrupted run and the one we kill, side by side.
    reference = subprocess.Popen(_cli(tmp_path / "ref", corpus), env=env)
    victim = subprocess.Popen(_cli(tmp_path / "run", corpus), env=env)
    manifest = tmp_path / "run" / "manifest.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if manifest.exists() and json.loads(manifest.read_text())["step"] >= 7:
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
    p = PRESETS["nanogpt-cpu"]
    assert (p["n_layer"], p["n_head"], p["n_embd"], p["block_size"], p["batch_size"]) == (4, 4, 128, 64, 12)
    assert (p["max_iters"], p["lr"], p["dropout"]) == (2000, 1e-3, 0.0)


def test_bad_settings_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown preset 'gpt5'"):
        config_from_preset("gpt5")
    with pytest.raises(ValueError, match="dtype"):
        config_from_preset("tiny", dtype="float8")
    with pytest.raises(ValueError, match="min_lr"):
        config_from_preset("tiny", lr=1e-3, min_lr=1e-2)


def test_float16_is_refused_without_loss_scaling():
    with pytest.raises(ValueError, match="dtype must be float32, bfloat16 or auto"):
        config_from_preset("tiny", dtype="float16")
