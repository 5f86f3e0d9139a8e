"""Training on several processes with PyTorch's own engine: torchrun, DDP and FSDP2.

One command starts N copies of the training script, one per GPU (or per CPU process)::

    python -m torch.distributed.run --nproc_per_node 2 -m tinyllm.train --preset tiny

``torchrun`` gives each copy its ``RANK`` (0..N-1 over all machines), ``LOCAL_RANK`` (its
GPU on this machine) and ``WORLD_SIZE`` (N) in the environment. Each copy then:

- joins a *process group* (:func:`process_group`): gloo on CPUs, nccl on CUDA GPUs;
- wraps the model (:func:`wrap_model`): DistributedDataParallel keeps a full copy on every
  rank and averages the gradients with an all-reduce after ``backward``; FSDP2
  (``fully_shard``) keeps only a 1/N shard of every weight, gradient and AdamW moment per
  rank and gathers each block's weights just before it runs;
- draws its own batches, so N ranks see N different micro-batches per step;
- for a checkpoint, rank 0 writes the files: with DDP it holds everything already; with
  FSDP the shards are first gathered to it (:func:`full_state`).

The training loop asks all of this of one object, :class:`Ranks`; in one process (no
``WORLD_SIZE`` in the environment) its every method is the trivial one and the loop is
exactly the single-process loop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta

import torch
from torch import nn

from tinyllm.checkpoint import CheckpointError
from tinyllm.model import IGNORE_INDEX
from tinyllm.validate import check_int


@dataclass(frozen=True)
class Dist:
    """Where this process sits: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 prints, shows the progress bar and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or "WORLD_SIZE" in os.environ


SINGLE = Dist()


def env_dist() -> Dist:
    """The ranks torchrun put into the environment (one process: rank 0 of 1)."""
    if "WORLD_SIZE" not in os.environ:
        return SINGLE
    env = os.environ
    return Dist(int(env.get("RANK", 0)), int(env["WORLD_SIZE"]), int(env.get("LOCAL_RANK", 0)))


def backend_for(device: torch.device) -> str:
    """nccl talks GPU to GPU directly; gloo is the CPU backend (and works everywhere)."""
    return "nccl" if device.type == "cuda" else "gloo"


def micro_batch_size(batch_size: int, world: int, grad_accum_steps: int) -> int:
    """Sequences per forward pass: the step's ``batch_size`` split over ranks and micro-steps."""
    parts = world * grad_accum_steps
    if batch_size % parts:
        raise ValueError(
            f"batch_size={batch_size} cannot be split into {world} process(es) x {grad_accum_steps} "
            f"micro-step(s): it must be a multiple of {parts}"
        )
    return batch_size // parts


def check_fsdp(fsdp: bool, dist: Dist, optimizer: str = "adamw") -> None:
    """FSDP needs a process group and an optimizer that works on shards of a matrix."""
    if not fsdp:
        return
    if not dist.enabled:
        raise ValueError(
            "fsdp=True needs a process group: launch with "
            "python -m torch.distributed.run --nproc_per_node N -m tinyllm.train --fsdp"
        )
    if optimizer != "adamw":
        # AdamW is element-wise, so each rank can update its own shard; Muon orthogonalises
        # whole matrices (Newton-Schulz) and would need every shard at once.
        raise ValueError(f"fsdp=True shards the optimizer state: optimizer must be 'adamw', "
                         f"got {optimizer!r}")


def check_launch(fsdp: bool, optimizer: str, batch_size: int, grad_accum_steps: int) -> None:
    """Refuse, before any process starts waiting for the others, a run torchrun cannot do."""
    dist = env_dist()
    check_fsdp(fsdp, dist, optimizer)
    micro_batch_size(batch_size, dist.world_size, grad_accum_steps)


@contextlib.contextmanager
def process_group(device: torch.device, timeout: float = 60.0):
    """Join torchrun's process group for the duration of the block (yields a :class:`Dist`).

    ``timeout`` (seconds) bounds every collective: a rank that dies or hangs makes the
    others raise instead of waiting forever. Without torchrun this yields rank 0 of 1.
    """
    dist = env_dist()
    if not dist.enabled:
        yield dist
        return
    import torch.distributed as tdist

    if device.type == "cuda":
        torch.cuda.set_device(dist.local_rank)  # one GPU per process
    tdist.init_process_group(backend=backend_for(device), timeout=timedelta(seconds=timeout))
    try:
        yield dist
    finally:
        tdist.destroy_process_group()


def lost_peer(exc: BaseException) -> bool:
    """True if ``exc`` says another rank died or hung, false for every other error.

    torch reports those as its ``DistError`` family (nccl, the rendezvous store) or a
    timeout; gloo, the CPU backend, raises a plain ``RuntimeError`` from its transport
    ("Connection reset by peer", "Timed out waiting 3000ms"), told apart by where it comes
    from. Anything else, an out-of-memory error included, is not a lost peer.
    """
    import torch.distributed as tdist

    if isinstance(exc, (tdist.DistError, TimeoutError)):
        return True
    return type(exc) is RuntimeError and "/gloo/transport/" in str(exc)


def device_for(device: torch.device, dist: Dist) -> torch.device:
    """Rank r on a machine uses GPU ``LOCAL_RANK``; CPU processes share the CPU."""
    if device.type == "cuda" and dist.enabled:
        return torch.device("cuda", dist.local_rank)
    return device


def wrap_model(model: nn.Module, device: torch.device, fsdp: bool = False) -> nn.Module:
    """DDP (a full copy per rank) or FSDP2 (a shard per rank); returns the module to call.

    FSDP2 shards each transformer block on its own, then the rest (embeddings, final norm,
    head) as the root: one block's weights are gathered at a time, so a rank never holds
    the whole model at once, and the next block's gather overlaps this one's compute.
    """
    if fsdp:
        from torch.distributed.fsdp import fully_shard

        for block in model.transformer.h:
            fully_shard(block)
        return fully_shard(model)  # the same object, its parameters now DTensor shards
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


@contextlib.contextmanager
def gradient_sync(wrapped: nn.Module, sync: bool):
    """Reduce the gradients across ranks in this backward only if ``sync``.

    With ``grad_accum_steps`` micro-steps, the gradients add up locally and are reduced
    once, after the last micro-step: one all-reduce per step instead of one per micro-step.
    """
    if hasattr(wrapped, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(sync)
        yield
    elif hasattr(wrapped, "no_sync") and not sync:  # DDP
        with wrapped.no_sync():
            yield
    else:
        yield


def micro_loss_weights(counts: list[int], total: int, world_size: int) -> list[float] | None:
    """The weight of each micro-batch's mean loss (``counts``: its learned tokens; ``total``: the
    step's, over every rank) that makes the added-up gradient the mean over every learned token
    of the step: its share of them, times ``world_size`` since DDP averages over the ranks. None
    where every micro-batch of the step holds as many (text): then ``loss / micro-steps``. A step
    with no learned token at all (every answer past the window) adds nothing: weights 0."""
    if total and all(n * len(counts) * world_size == total for n in counts):
        return None
    return [n * world_size / total if total else 0.0 for n in counts]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Add ``values`` over every rank (one small collective)."""
    import torch.distributed as tdist

    dtype = torch.float64 if device.type == "cpu" else torch.float32  # mps has no float64
    tensor = torch.tensor(values, dtype=dtype, device=device)
    tdist.all_reduce(tensor)
    return tensor.tolist()


def gather_objects(obj, dist: Dist) -> list | None:
    """Every rank's ``obj`` on rank 0 (a list in rank order), ``None`` elsewhere."""
    import torch.distributed as tdist

    out = [None] * dist.world_size if dist.is_main else None
    tdist.gather_object(obj, out, dst=0)
    return out


def tied_names(model: nn.Module) -> dict[str, str]:
    """Parameter names that share a tensor with an earlier one (``lm_head.weight`` -> wte)."""
    first, tied = {}, {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            tied[name] = first[id(p)]
        else:
            first[id(p)] = name
    return tied


def _options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state(wrapped: nn.Module, optimizer, tied: dict[str, str]):
    """``(model_state, optimizer_state)`` gathered in full on rank 0 (empty dicts elsewhere).

    Every rank must call this (FSDP gathers the shards; it works for DDP too, but there
    rank 0 holds the whole state already and the loop saves it directly). The optimizer state is returned
    in the numbering of ``optimizer.state_dict()`` (parameters 0, 1, ... in group order),
    so a checkpoint written by N processes is the same file a single process writes.
    """
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    opts = _options(cpu_offload=True)
    model_state = get_model_state_dict(wrapped, options=opts)
    optim_state = get_optimizer_state_dict(wrapped, optimizer, options=opts)
    if not model_state:
        return {}, {}
    for name, kept in tied.items():  # one tensor for tied weights, as a single process stores it
        model_state[name] = model_state[kept]
    ids = {fqn: i for i, fqn in enumerate(fqn for g in optim_state["param_groups"] for fqn in g["params"])}
    state = {ids[fqn]: value for fqn, value in optim_state["state"].items()}
    groups = [{**g, "params": [ids[fqn] for fqn in g["params"]]} for g in optim_state["param_groups"]]
    return model_state, {"state": state, "param_groups": groups}


def load_optimizer_state(wrapped: nn.Module, optimizer, state: dict, names: list[str]) -> None:
    """Load a full, integer-numbered optimizer state (every rank passes the same one).

    ``names``: the parameter names in ``optimizer.state_dict()`` order. FSDP keeps only
    this rank's shard of each moment.
    """
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    by_name = {
        "state": {names[i]: value for i, value in state["state"].items()},
        "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]],
    }
    set_optimizer_state_dict(wrapped, optimizer, by_name, options=_options())


def optimizer_names(model: nn.Module, optimizer) -> list[str]:
    """Each optimizer parameter's name, in the order ``optimizer.state_dict()`` numbers them."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for g in optimizer.param_groups for p in g["params"]]


def run_torchrun(nproc: int, train_args: list[str], timeout: float = 300,
                 threads: int = 1) -> subprocess.CompletedProcess:
    """Run ``torchrun --nproc_per_node nproc -m tinyllm.train *train_args`` and capture its output.

    ``python -m torch.distributed.run`` is the ``torchrun`` command without needing it on
    PATH. Each worker gets ``threads`` torch threads (``OMP_NUM_THREADS``, whatever the
    caller's environment says): N processes share the machine's cores, and the order of
    every sum depends on the thread count, so a run compared bit for bit with one process
    (chapter 13) must know it. After ``timeout`` seconds the launcher and its workers are
    stopped (see :func:`_stop_launcher`) and ``subprocess.TimeoutExpired`` is raised.
    """
    check_int("nproc", nproc)
    check_int("threads", threads)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "tinyllm.train", *map(str, train_args)]
    # torchrun's agent leaves a torchelastic_* folder in the temporary folder after every run:
    # it gets one of its own, removed with all it holds when the run ends.
    with tempfile.TemporaryDirectory(prefix="tinyllm-torchrun-", ignore_cleanup_errors=True) as scratch:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TMPDIR": scratch}
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                              start_new_session=True) as launcher:
            try:
                stdout, stderr = launcher.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                stdout, stderr = _stop_launcher(launcher)
                raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
            except BaseException:  # Ctrl-C in the caller: the workers stop too
                _stop_launcher(launcher)
                raise
    return subprocess.CompletedProcess(command, launcher.returncode, stdout, stderr)


def _stop_launcher(launcher: subprocess.Popen, grace: float = 30.0) -> tuple[str, str]:
    """Stop torchrun and every worker; return what they printed.

    torchrun starts each worker in a session of its own, so killing the launcher's process
    group would miss them. SIGTERM makes torchrun stop its workers itself (it kills each
    worker's group, then waits for it); the launcher's own group (it runs in a session
    of its own) is killed after ``grace`` seconds in case torchrun does not stop.
    """
    launcher.send_signal(signal.SIGTERM)
    try:
        return launcher.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(launcher.pid, signal.SIGKILL)  # its group's id is its pid
        return launcher.communicate(timeout=grace)


def _stream_key(j: int) -> str:
    return "batches" if j == 0 else f"batches.{j}"  # stream 0 keeps a single process's name


class Ranks:
    """This process's part of a run over ``dist.world_size`` processes: all the training loop
    asks of torchrun, DDP and FSDP. In one process every method is the trivial one.

    - ``module``: the model to call (wrapped by DDP or FSDP under torchrun);
    - ``generators``: the random batch streams of this rank's micro-steps, ``micro_size``
      sequences each;
    - :meth:`sync`: average the gradients over the ranks in the last micro-step's backward;
    - :meth:`loss_weights`: how much each micro-batch's loss counts (its share of the learned tokens);
    - :meth:`mean_and_any`: the step's loss over every rank, and whether any got Ctrl-C;
    - :meth:`restore` and :meth:`checkpoint_state`: resume from and save a checkpoint that
      reads like a single process's.
    """

    def __init__(self, dist: Dist, model: nn.Module, device: torch.device, fsdp: bool, seed: int,
                 batch_size: int, grad_accum_steps: int):
        self.dist, self.model, self.device, self.fsdp = dist, model, device, fsdp
        self.tied = tied_names(model)
        self.module = wrap_model(model, device, fsdp) if dist.enabled else model
        self.micro_size = micro_batch_size(batch_size, dist.world_size, grad_accum_steps)
        # Micro-batch stream j = rank * grad_accum_steps + micro draws from its own generator
        # seeded seed + j: stream 0 is a single process's generator, and 2 ranks x 1 micro-step
        # draw exactly the batches of 1 rank x 2 micro-steps.
        self.streams = [dist.rank * grad_accum_steps + m for m in range(grad_accum_steps)]
        self.generators = [torch.Generator().manual_seed(seed + j) for j in self.streams]
        self._torch_key = "torch" if dist.is_main else f"torch.{dist.rank}"

    @property
    def evaluates(self) -> bool:
        """Whether this rank runs the evaluations. FSDP: every rank (each holds a shard of the
        weights the others gather), rank 0 keeps the figures. DDP: rank 0 alone, on its full
        copy; the others wait at the next collective (dist_timeout must cover it)."""
        return self.dist.is_main or self.fsdp

    def sync(self, micro: int):
        """The context of micro-step ``micro``'s backward (one all-reduce per step)."""
        return gradient_sync(self.module, micro == len(self.generators) - 1)

    def loss_weights(self, targets: list[torch.Tensor]) -> list[float] | None:
        """:func:`micro_loss_weights` of this rank's micro-batches (one small collective under torchrun)."""
        counts = [int((y != IGNORE_INDEX).sum()) for y in targets]
        total = int(all_reduce_sum([float(sum(counts))], self.device)[0]) if self.dist.enabled else sum(counts)
        return micro_loss_weights(counts, total, self.dist.world_size)

    def mean_and_any(self, loss: float, stop: bool) -> tuple[float, bool]:
        if not self.dist.enabled:
            return loss, stop
        total, stops = all_reduce_sum([loss, float(stop)], self.device)
        return total / self.dist.world_size, stops > 0

    def restore(self, checkpoint, optimizer) -> None:
        """Load the optimizer's moments and every random stream of ``checkpoint``."""
        saved = sorted(k for k in checkpoint.rng if k.startswith("batches"))
        if len(saved) != self.dist.world_size * len(self.generators):
            raise CheckpointError(
                f"the checkpoint in {checkpoint.path} has {len(saved)} batch stream(s), this run has "
                f"{self.dist.world_size} process(es) x grad_accum_steps {len(self.generators)}: "
                "resume with the same product"
            )
        if self.fsdp:  # each rank keeps its shard of the moments
            names = optimizer_names(self.model, optimizer)
            load_optimizer_state(self.module, optimizer, checkpoint.optimizer_state, names)
        else:  # one process, or DDP: every rank holds the whole state
            optimizer.load_state_dict(checkpoint.optimizer_state)
        states = [(generator.set_state, _stream_key(j)) for j, generator in zip(self.streams, self.generators)]
        key = self._torch_key if self._torch_key in checkpoint.rng else "torch"
        for set_state, name in [*states, (torch.set_rng_state, key)]:
            try:
                set_state(checkpoint.rng[name])
            except (RuntimeError, TypeError) as exc:  # a state of another size or kind: the file is damaged
                raise CheckpointError(f"the checkpoint in {checkpoint.path} holds a random state {name!r} "
                                      f"this PyTorch cannot use: {exc}") from None

    def checkpoint_state(self, optimizer):
        """``(model, optimizer, rng)`` for :func:`tinyllm.checkpoint.save_checkpoint` on rank 0,
        ``None`` on the others. Every rank must call it (FSDP gathers the shards, rank 0
        gathers every rank's batch streams)."""
        rng = {_stream_key(j): g.get_state() for j, g in zip(self.streams, self.generators)}
        rng[self._torch_key] = torch.get_rng_state()
        model_state, optim_state = self.model, optimizer  # one process, or DDP: rank 0 holds it all
        if self.fsdp:
            weights, moments = full_state(self.module, optimizer, self.tied)
            model_state, optim_state = StateView(weights, self.model.config), StateView(moments)
        if self.dist.enabled:
            parts = gather_objects(rng, self.dist)
            if not self.dist.is_main:
                return None
            rng = {k: v for part in parts for k, v in part.items()}
        return model_state, optim_state, rng


class StateView:
    """A gathered state dict in the shape :func:`tinyllm.checkpoint.save_checkpoint` reads:
    ``state_dict()`` and, for a model, ``config``."""

    def __init__(self, state: dict, config=None):
        self._state, self.config = state, config

    def state_dict(self) -> dict:
        return self._state
