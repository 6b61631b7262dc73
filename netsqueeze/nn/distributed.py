"""Data-parallel retraining on PyTorch's own ``torch.distributed``.

Nothing here schedules work: the processes are started by ``torchrun`` (or by :func:`spawn`,
which starts ``N`` local processes on ``127.0.0.1`` with ``torch.multiprocessing``), the
gradients are all-reduced by ``DistributedDataParallel`` (gloo on the CPU, nccl on GPUs), and
this module only holds the glue:

* :func:`init` / :func:`teardown` of the process group, from the environment ``torchrun`` sets
  (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``);
* :func:`active`, :func:`rank`, :func:`world_size`, :func:`is_main`, :func:`barrier`;
* :func:`shard` -- each rank's slice of one global batch, so that the ranks together see exactly
  the batch a single process would;
* :func:`broadcast_module` (rank 0's parameters and buffers to every rank),
  :func:`broadcast_json` (a small JSON-able value, without pickle), :func:`average_buffers`;
* :func:`check_identical` -- a check that every rank holds bit-identical tensors, naming the
  first tensor that differs.

:func:`netsqueeze.nn.train.train` uses these when a process group of more than one rank is
initialised; without one, nothing here runs and training is the single-process loop.

What is identical to a single process, and what is not
-------------------------------------------------------
Every rank draws the same batch order and takes its contiguous slice of each global batch. Its
loss is the *sum* over its slice divided by the global batch size (times the world size, which
DDP's averaging divides out), so the all-reduced gradient is the gradient of the global batch's
mean loss. Pruned weights get an exactly zero gradient on every rank (the gradient hook of
:mod:`netsqueeze.nn.prune` runs before DDP reads the gradient) and are re-zeroed after every
step; a shared layer's centroid gradient is the sum over its members on each rank (autograd),
then all-reduced. After the all-reduce every rank holds the same gradient bytes and takes the
same optimizer step, so the ranks stay **bit-identical** (checked after every pipeline stage).

Against a single process on the same global batches the result is **not** bit-identical: each
rank's backward pass sums over half the batch, and the halves are then added, which rounds
differently from one sum over the whole batch (in float32 the gradients differ in their last
bits, and the optimizer carries the difference on). The masks a retraining keeps and the index
assignments a fine-tuning keeps are identical by construction (training never changes them);
weights and centroids agree within float32 rounding (the tests state the tolerance) with a
single process that uses the ranks' thread count -- the thread count alone changes the sums as
much. Over many Adam steps such differences grow, so a later pruning step or the k-means
clustering, which read the retrained weights, can then choose differently (docs/SCALING.md
gives measurements).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import socket
import sys
from collections.abc import Callable

import torch
from torch import nn

__all__ = [
    "FAULT_ENV",
    "active",
    "average_buffers",
    "barrier",
    "broadcast_json",
    "broadcast_module",
    "check_identical",
    "env_world_size",
    "fault_point",
    "free_port",
    "init",
    "is_main",
    "rank",
    "shard",
    "spawn",
    "teardown",
    "world_size",
]

#: Test hook: ``"RANK:STEP"`` makes that rank leave at once (``os._exit(3)``) when it reaches
#: its STEP-th optimizer step of the process (counted over every training of the run), to
#: test that a run killed on any rank resumes.
FAULT_ENV = "NETSQUEEZE_DDP_EXIT_AT"

_steps_taken = 0


def _dist():
    import torch.distributed as dist

    return dist


def active() -> bool:
    """Whether a process group of more than one rank is initialised."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    dist = _dist()
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    dist = _dist()
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, and in a single process."""
    return rank() == 0


def barrier() -> None:
    """Wait for every rank (nothing when not distributed)."""
    if active():
        _dist().barrier()


def env_world_size() -> int | None:
    """``WORLD_SIZE`` when this process was started by ``torchrun`` (or :func:`spawn`)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    try:
        return int(os.environ["WORLD_SIZE"])
    except ValueError:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


def init(device: torch.device | str = "cpu", *, timeout_s: float = 1800.0) -> torch.device:
    """Join the process group described by the environment; return this rank's device.

    gloo on the CPU, nccl on CUDA (each rank then uses ``cuda:LOCAL_RANK``). Each rank uses
    ``cores / local ranks`` torch threads unless ``OMP_NUM_THREADS`` says otherwise, so that
    the ranks of one machine do not fight over its cores.
    """
    dist = _dist()
    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed; run without --nproc")
    dev = torch.device(device)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if dev.index is None:
            dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        backend = "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://",
                                timeout=datetime.timedelta(seconds=timeout_s))
    if "OMP_NUM_THREADS" not in os.environ:
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size()))
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, local_size)))
    return dev


def teardown() -> None:
    """Leave the process group (nothing when there is none)."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawned(local_rank: int, fn: Callable, args: tuple, nproc: int, port: int) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                       "RANK": str(local_rank), "LOCAL_RANK": str(local_rank),
                       "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc)})
    fn(*args)
    # A rank that finished ends here rather than through the interpreter's exit, where the
    # C++ destructors of torch.distributed's threads can abort a process whose work is done
    # (rarely, "terminate called without an active exception"). Its files are closed by now.
    teardown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def spawn(fn: Callable, args: tuple, nproc: int) -> None:
    """Run ``fn(*args)`` in ``nproc`` new local processes forming one process group.

    Each process gets the environment ``torchrun`` would give it (``MASTER_ADDR=127.0.0.1``, a
    free port, ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``) and calls :func:`init` itself. ``fn``
    must be a module-level function. When one process fails the others are stopped and
    ``torch.multiprocessing.ProcessExitedException`` (or ``ProcessRaisedException``) is raised.
    """
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(fn, args, nproc, free_port()), nprocs=nproc, join=True)


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous slice of one global batch (all of it when not distributed)."""
    if not active():
        return indices
    return torch.tensor_split(indices, world_size())[rank()]


def _bytes_view(t: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A tensor a collective can carry (gloo has no bool), and whether it is a copy."""
    if t.dtype == torch.bool:
        return t.to(torch.uint8), True
    return t, False


@torch.no_grad()
def broadcast_module(model: nn.Module, src: int = 0) -> None:
    """Give every rank rank ``src``'s parameters and buffers (in place)."""
    if not active():
        return
    dist = _dist()
    for t in list(model.parameters()) + list(model.buffers()):
        carried, copied = _bytes_view(t.data)
        dist.broadcast(carried, src)
        if copied:
            t.data.copy_(carried.to(t.dtype))


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm statistics) over the ranks.

    Each rank's running mean is a moving average of its slices' means, which is linear, so
    the average over ranks is the moving average of the global batches' means; running
    variances are averaged too (an approximation: the variance between slices is left out).
    """
    if not active():
        return
    dist = _dist()
    for b in model.buffers():
        if b.is_floating_point():
            dist.all_reduce(b, op=dist.ReduceOp.SUM)
            b.div_(world_size())


def broadcast_json(value=None, src: int = 0):
    """Rank ``src``'s JSON-able ``value`` on every rank (as bytes of JSON, never pickle)."""
    if not active():
        return value
    dist = _dist()
    dev = _collective_device()
    if rank() == src:
        data = json.dumps(value).encode("utf-8")
        size = torch.tensor([len(data)], dtype=torch.int64, device=dev)
    else:
        data, size = b"", torch.zeros(1, dtype=torch.int64, device=dev)
    dist.broadcast(size, src)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=dev)
    if rank() == src:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    dist.broadcast(buf, src)
    return json.loads(bytes(buf.cpu().tolist()).decode("utf-8"))


def _collective_device() -> torch.device:
    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def _digest(t: torch.Tensor) -> bytes:
    a = t.detach().cpu().contiguous()
    return hashlib.sha256(a.view(torch.uint8).numpy().tobytes() if a.numel() else b"").digest()


def check_identical(model: nn.Module, what: str = "model") -> None:
    """Raise ``RuntimeError`` unless every rank holds bit-identical tensors in ``model``.

    Compares a SHA-256 digest of every ``state_dict`` entry (parameters, masks, centroids,
    indices, buffers) across the ranks; the message names the first entry that differs.
    """
    if not active():
        return
    dist = _dist()
    names, digests = [], []
    for name, t in model.state_dict().items():
        names.append(name)
        digests.append(torch.frombuffer(bytearray(_digest(t)), dtype=torch.uint8))
    mine = (torch.stack(digests) if digests else torch.zeros(0, 32, dtype=torch.uint8))
    dev = _collective_device()
    mine = mine.to(dev)
    gathered = [torch.zeros_like(mine) for _ in range(world_size())]
    dist.all_gather(gathered, mine)
    for r, other in enumerate(gathered):
        if not torch.equal(other, mine):
            bad = next(i for i in range(len(names)) if not torch.equal(other[i], mine[i]))
            raise RuntimeError(f"{what}: rank {r} and rank {rank()} hold different values of "
                               f"{names[bad]!r} (the ranks must stay bit-identical)")


def fault_point() -> None:
    """Count one optimizer step; leave at once where :data:`FAULT_ENV` asks (tests only)."""
    global _steps_taken
    _steps_taken += 1
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    who, _, at = spec.partition(":")
    if int(who) == rank() and int(at) == _steps_taken:
        os._exit(3)
