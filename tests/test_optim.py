"""tinyllm.optim: Newton-Schulz, Muon + AdamW as one optimizer, the learning-rate setter."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from helpers import TEXT, one_thread  # noqa: F401 (one_thread: an autouse fixture)

from tinyllm.checkpoint import load_checkpoint, load_model_state, save_checkpoint
from tinyllm.model import GPT, GPTConfig
from tinyllm.optim import AdamW, Muon, MuonAdamW, build_optimizer, newton_schulz, set_lr
from tinyllm.train import config_from_preset, train


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def small_model(**overrides):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=16, **overrides))


def _steps(model, opt, seeds):
    for s in seeds:
        x = torch.randint(0, 20, (4, 8), generator=torch.Generator().manual_seed(s))
        _, loss = model(x, x)
        opt.zero_grad()
        loss.backward()
        opt.step()


# ---------------------------------------------------------------------------------------
# Newton-Schulz
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(32, 32), (16, 48), (48, 16)])
def test_newton_schulz_makes_singular_values_near_one_and_keeps_the_singular_vectors(shape):
    # an ill-conditioned matrix: singular values spread over 2 orders of magnitude
    U, _ = torch.linalg.qr(randn(shape[0], shape[0]))
    V, _ = torch.linalg.qr(randn(shape[1], shape[1], seed=1))
    k = min(shape)
    S = torch.logspace(0, -2, k)
    G = U[:, :k] @ torch.diag(S) @ V[:, :k].T
    before = G.clone()
    X = newton_schulz(G).float()
    assert torch.equal(G, before)  # the input is left alone
    s = torch.linalg.svdvals(X)
    assert s.min() > 0.5 and s.max() < 1.3  # Keller Jordan's quintic: roughly U(0.7, 1.2)
    M = U[:, :k].T @ X @ V[:, :k]  # diagonal if X has G's singular vectors
    assert (M - torch.diag(M.diagonal())).abs().max() < 0.05


def test_newton_schulz_with_zero_steps_only_normalises_and_more_steps_converge():
    G = randn(24, 24)
    torch.testing.assert_close(newton_schulz(G, steps=0).float(), G / G.norm(), atol=1e-2, rtol=1e-2)
    s1 = torch.linalg.svdvals(newton_schulz(G, steps=1).float())
    s5 = torch.linalg.svdvals(newton_schulz(G, steps=5).float())
    assert (s5 - 1).abs().max() < (s1 - 1).abs().max()


def test_newton_schulz_equals_torch_muons_own_step():
    """One Muon step on one matrix: p - lr * sqrt(max(1, rows/cols)) * NS(nesterov momentum)."""
    p = torch.nn.Parameter(randn(40, 24))
    p0 = p.detach().clone()
    grad = randn(40, 24, seed=1)
    lr, momentum = 0.05, 0.9
    opt = torch.optim.Muon([p], lr=lr, momentum=momentum, weight_decay=0.0, nesterov=True)
    p.grad = grad.clone()
    opt.step()
    buf = (1 - momentum) * grad  # the momentum buffer after one step
    update = grad + momentum * (buf - grad)  # Nesterov: look ahead along the momentum
    expected = p0 - lr * math.sqrt(40 / 24) * newton_schulz(update).float()
    torch.testing.assert_close(p.detach(), expected, atol=2e-3, rtol=0)
    assert (p.detach() - p0).abs().max() > 0.01  # the step is not negligible


@pytest.mark.parametrize("adjust", [None, "match_rms_adamw"])
def test_muon_without_fast_bfloat16_is_torchs_muon_in_float32(monkeypatch, adjust):
    """Muon(fast_bfloat16=False) takes torch.optim.Muon's steps (momentum, Nesterov, decay, the
    learning-rate scale, tall and wide matrices), its Newton-Schulz in float32: equal to torch's
    own with that one function made float32; with fast_bfloat16=True it is torch's, exactly."""
    def run(make, steps=3):
        params = [torch.nn.Parameter(randn(40, 24, seed=2)), torch.nn.Parameter(randn(16, 48, seed=3))]
        opt = make(params)
        for step in range(steps):
            for i, p in enumerate(params):
                p.grad = randn(*p.shape, seed=10 * step + i)
            opt.step()
        return [p.detach().clone() for p in params]

    options = dict(lr=0.05, momentum=0.9, weight_decay=0.1, nesterov=True, adjust_lr_fn=adjust)
    ours = run(lambda ps: Muon(ps, fast_bfloat16=False, **options))
    bfloat16 = run(lambda ps: torch.optim.Muon(ps, **options))
    for a, b in zip(run(lambda ps: Muon(ps, fast_bfloat16=True, **options)), bfloat16):
        assert torch.equal(a, b)
    monkeypatch.setattr(torch.Tensor, "bfloat16", lambda t: t.float())  # torch's NS converts with it
    float32 = run(lambda ps: torch.optim.Muon(ps, **options))
    monkeypatch.undo()
    for a, b, c in zip(ours, float32, bfloat16):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        assert (a - c).abs().max() > 1e-5  # bfloat16's rounding is another step: the test tells them apart


@pytest.mark.parametrize("fast", [True, False])
def test_build_optimizer_takes_bfloat16_steps_only_where_the_cpu_is_fast_at_them(monkeypatch, fast):
    import tinyllm.device

    monkeypatch.setattr(tinyllm.device, "cpu_has_fast_bfloat16", lambda: fast)
    muon = build_optimizer(small_model(), "muon", lr=1e-3, muon_lr=0.02).optimizers[1]
    assert isinstance(muon, Muon) and muon.fast_bfloat16 is fast


@pytest.mark.parametrize("bad, message", [(randn(3), "matrix"), (randn(2, 2, 2), "matrix")])
def test_newton_schulz_rejects_non_matrices(bad, message):
    with pytest.raises(ValueError, match=message):
        newton_schulz(bad)


def test_newton_schulz_rejects_bad_steps():
    with pytest.raises(ValueError, match="steps must be an int >= 0, got -1"):
        newton_schulz(randn(3, 3), steps=-1)


# ---------------------------------------------------------------------------------------
# build_optimizer and set_lr
# ---------------------------------------------------------------------------------------


def test_adamw_has_the_groups_of_configure_optimizers():
    model = small_model()
    ours = build_optimizer(model, "adamw", lr=1e-3, weight_decay=0.1, betas=(0.9, 0.99))
    theirs = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    assert isinstance(ours, torch.optim.AdamW)
    for a, b in zip(ours.param_groups, theirs.param_groups, strict=True):
        assert [id(p) for p in a["params"]] == [id(p) for p in b["params"]]
        assert a["weight_decay"] == b["weight_decay"] and a["betas"] == b["betas"] and a["lr"] == b["lr"]


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = small_model(bias=True)
    opt = build_optimizer(model, "muon", lr=1e-3, muon_lr=0.03)
    assert isinstance(opt, MuonAdamW)
    adamw, muon = opt.optimizers
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    names = {id(p): n for n, p in model.named_parameters()}
    muon_names = {names[id(p)] for g in muon.param_groups for p in g["params"]}
    adamw_names = {names[id(p)] for g in adamw.param_groups for p in g["params"]}
    blocks = {n for n, p in model.named_parameters() if n.startswith("transformer.h.") and p.dim() == 2}
    assert muon_names == blocks
    assert "transformer.wte.weight" in adamw_names and "transformer.h.0.attn.c_attn.bias" in adamw_names
    assert not muon_names & adamw_names
    assert len(muon_names | adamw_names) == len(list(model.parameters()))
    assert [g["base_lr"] for g in opt.param_groups] == [1e-3, 1e-3, 0.03]


def test_set_lr_scales_every_group_from_its_own_peak():
    opt = build_optimizer(small_model(), "muon", lr=1e-3, muon_lr=0.02)
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 5e-4, 0.01]
    assert [g["lr"] for g in opt.optimizers[1].param_groups] == [0.01]  # the real optimizer sees it
    set_lr(opt, 1.0)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-3, 0.02]


def test_unknown_optimizer_is_refused_by_name():
    with pytest.raises(ValueError, match=r"optimizer must be one of \['adamw', 'muon'\], got 'sgd'"):
        build_optimizer(small_model(), "sgd")


def test_learning_rates_must_be_finite_and_muons_counts_only_for_muon():
    from tinyllm.config import TrainConfig

    for name, settings in (("lr", {"lr": math.inf}), ("muon_lr", {"muon_lr": math.inf}), ("muon_lr", {"muon_lr": -1})):
        with pytest.raises(ValueError, match=f"{name} must be > 0 and finite"):  # inf made the weights NaN at step 1
            build_optimizer(small_model(), "muon", **settings)
    build_optimizer(small_model(), "adamw", muon_lr=0)  # Muon's rate is unused by AdamW
    with pytest.raises(ValueError, match="muon_lr must be > 0 and finite, got -1"):  # before the data is prepared
        TrainConfig(optimizer="muon", muon_lr=-1)
    TrainConfig(optimizer="adamw", muon_lr=-1)


def test_muon_state_dict_round_trips_and_continues_identically():
    def run(steps, state=None):
        model = small_model()
        opt = build_optimizer(model, "muon", lr=1e-2, muon_lr=0.05)
        if state is not None:
            model.load_state_dict(state[0])
            opt.load_state_dict(state[1])
        _steps(model, opt, steps)
        return model, opt

    full, _ = run(range(6))
    half, opt = run(range(3))
    state = (half.state_dict(), opt.state_dict())
    assert len(state[1]["state"]) == len(list(half.parameters()))
    resumed, _ = run(range(3, 6), state)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_muon_training_resumes_exactly_through_a_checkpoint(tmp_path):
    def run(folder, **overrides):
        cfg = dict(optimizer="muon", muon_lr=0.05, eval_interval=4, verbose=False, max_iters=8)
        cfg = config_from_preset("tiny", out_dir=str(tmp_path / folder), **{**cfg, **overrides})
        return train(cfg, text=TEXT)

    reference = run("ref")
    run("run", max_iters=4, lr_decay_iters=8)  # stopped half way (same schedule)
    resumed = run("run", resume=True)
    assert resumed["loss"] == reference["loss"]
    a, b = load_checkpoint(tmp_path / "ref"), load_checkpoint(tmp_path / "run")
    for name in a.model_state:
        assert torch.equal(a.model_state[name], b.model_state[name]), name
    assert a.optimizer_state["param_groups"][-1]["momentum"] == 0.95  # Muon's group was saved


def test_muon_training_learns():
    history = train(config_from_preset("tiny", max_iters=30, optimizer="muon", verbose=False), text=TEXT)
    assert history["val_loss"][-1] < history["val_loss"][0] - 0.5


# ---------------------------------------------------------------------------------------
# Any torch-style state dict loads (not only one written by build_optimizer's optimizers)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [AdamW, torch.optim.AdamW], ids=["tinyllm", "torch"])
def test_cs336_checkpoint_pattern_with_a_plain_adamw(tmp_path, make):
    """Stanford CS336 assignment 1's checkpoint test, through tinyllm's checkpoint: train with
    a plain AdamW, save model and optimizer, load both into fresh ones, and continuing gives
    exactly the run that never stopped."""
    model = small_model()
    opt = make(model.parameters(), lr=1e-2, weight_decay=0.1)
    _steps(model, opt, range(3))
    save_checkpoint(tmp_path, model, 3, opt)

    checkpoint = load_checkpoint(tmp_path)
    fresh = small_model()
    torch.manual_seed(99)  # a fresh model whose weights differ until loaded
    fresh.apply(lambda m: torch.nn.init.normal_(m.weight) if isinstance(m, torch.nn.Linear) else None)
    fresh_opt = make(fresh.parameters(), lr=1e-2, weight_decay=0.1)
    load_model_state(fresh, checkpoint)
    fresh_opt.load_state_dict(checkpoint.optimizer_state)
    assert checkpoint.step == 3

    _steps(model, opt, range(3, 6))
    _steps(fresh, fresh_opt, range(3, 6))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    for i, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            assert torch.equal(value, fresh_opt.state_dict()["state"][i][key]), (i, key)


def test_muon_adamw_of_plain_torch_optimizers_loads_a_state_dict():
    def make():
        model = small_model()
        matrices = [p for n, p in model.named_parameters() if p.dim() == 2 and n.startswith("transformer.h.")]
        rest = [p for p in model.parameters() if all(p is not m for m in matrices)]
        return model, MuonAdamW(torch.optim.AdamW(rest, lr=1e-2), torch.optim.Muon(matrices, lr=0.05))

    model, opt = make()
    _steps(model, opt, range(2))
    fresh_model, fresh_opt = make()
    fresh_model.load_state_dict(model.state_dict())
    fresh_opt.load_state_dict(copy.deepcopy(opt.state_dict()))  # not the same moment tensors
    _steps(model, opt, range(2, 4))
    _steps(fresh_model, fresh_opt, range(2, 4))
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_peak_learning_rate_is_the_runs_own_after_loading():
    model = small_model()
    saved = build_optimizer(model, lr=1e-2).state_dict()
    opt = build_optimizer(model, lr=3e-3)
    opt.load_state_dict(saved)
    assert [g["base_lr"] for g in opt.param_groups] == [3e-3, 3e-3]
