"""Training, fine-tuning and evaluation loops.

Images come in as numpy ``uint8`` arrays of shape ``(n, 28, 28)`` (what :mod:`netsqueeze.data`
returns); :func:`to_tensor` scales them to ``[0, 1]`` floats with a channel axis, once.

Training is resumable at epoch boundaries: pass ``checkpoint=path`` and an interrupted run started
again with the same arguments continues from the last completed epoch, with the same batches it
would have seen.
"""

from __future__ import annotations

import io
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from netsqueeze.core.fileio import atomic_write_bytes
from netsqueeze.errors import FormatError
from netsqueeze.progress import progress_bar

__all__ = [
    "TrainConfig",
    "TrainLog",
    "evaluate",
    "labels_tensor",
    "load_state",
    "predict_logits",
    "random_shift",
    "resolve_device",
    "save_state",
    "to_tensor",
    "train",
]

LOSSES = ("cross-entropy", "mse")
SCHEDULES = ("one-cycle", "cosine", "constant")
OPTIMIZERS = ("adam", "adamw", "sgd")


@dataclass
class TrainConfig:
    """How to train.

    Parameters
    ----------
    iterations : int
        Number of optimizer steps (mini-batches).
    lr : float
        Peak learning rate.
    batch_size : int
    seed : int
        Seeds the batch order (the model's initial weights are seeded by whoever builds it).
    loss : {"cross-entropy", "mse"}
        ``"mse"`` is squared error between the softmax output and one-hot labels (the
        notebook's option).
    schedule : {"one-cycle", "cosine", "constant"}
        Learning-rate schedule over ``iterations``: one-cycle warms up over the first 15 % then
        anneals; cosine anneals from ``lr`` to 0; constant keeps ``lr`` (the notebook's Adam).
    optimizer : {"adam", "adamw", "sgd"}
    weight_decay : float
    momentum : float
        SGD momentum (ignored by Adam).
    shift : int
        Data augmentation: move each training image by a random whole number of pixels, up to
        ``shift`` in each direction (0: no augmentation).
    """

    iterations: int = 2400
    lr: float = 2e-3
    batch_size: int = 100
    seed: int = 0
    loss: str = "cross-entropy"
    schedule: str = "one-cycle"
    optimizer: str = "adam"
    weight_decay: float = 0.0
    momentum: float = 0.9
    shift: int = 0

    def validate(self) -> TrainConfig:
        """Raise ``ValueError`` naming the bad field; return self."""
        if int(self.iterations) < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if not (float(self.lr) > 0 and math.isfinite(float(self.lr))):
            raise ValueError(f"lr must be a positive number, got {self.lr}")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or self.shift < 0:
            raise ValueError(f"shift must be an integer >= 0 (pixels), got {self.shift!r}")
        if float(self.weight_decay) < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        for name, value, allowed in (
            ("loss", self.loss, LOSSES),
            ("schedule", self.schedule, SCHEDULES),
            ("optimizer", self.optimizer, OPTIMIZERS),
        ):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainLog:
    """What a training run did: per-epoch mean loss, steps, wall time."""

    iterations: int = 0
    epochs: int = 0
    seconds: float = 0.0
    epoch_loss: list[float] = field(default_factory=list)
    resumed_from: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA GPU is available; use 'cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA GPUs "
                         "(numbered from 0)")
    return dev


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """``uint8`` images ``(n, h, w)`` or ``(n, c, h, w)`` -> float32 in ``[0, 1]``, ``(n, c, h, w)``."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    if x.ndim == 3:
        x = x.unsqueeze(1)
    x = x.to(device)
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def labels_tensor(y, device: torch.device | str | None = None) -> torch.Tensor:
    """Labels as a ``long`` tensor on ``device`` (default: where they are; CPU for arrays).

    A tensor is moved with ``.to`` and never goes through numpy, so labels already on a GPU work.
    """
    if isinstance(y, torch.Tensor):
        return y.to(device=device, dtype=torch.long)
    return torch.as_tensor(np.asarray(y), dtype=torch.long, device=device)



def _make_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def _lr_factor(cfg: TrainConfig) -> Callable[[int], float]:
    total = max(int(cfg.iterations), 1)
    if cfg.schedule == "constant":
        return lambda step: 1.0
    if cfg.schedule == "cosine":
        return lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))
    warm = max(1, int(0.15 * total))

    def one_cycle(step: int) -> float:
        if step < warm:
            return 0.04 + 0.96 * step / warm
        p = min(step - warm, total - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * p)) * (1 - 1e-4) + 1e-4

    return one_cycle


def random_shift(x: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Move each image of ``x`` (n, c, h, w) by its own random integer offset in
    ``[-max_shift, max_shift]`` along both axes, filling with zeros."""
    n, _, h, w = x.shape
    offsets = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator)
    pad = F.pad(x, (max_shift, max_shift, max_shift, max_shift))
    rows = (torch.arange(h).view(1, h) + max_shift - offsets[:, :1]).to(x.device)  # (n, h)
    cols = (torch.arange(w).view(1, w) + max_shift - offsets[:, 1:]).to(x.device)  # (n, w)
    idx_n = torch.arange(n, device=x.device).view(n, 1, 1)
    return pad.permute(0, 2, 3, 1)[idx_n, rows.view(n, h, 1), cols.view(n, 1, w)].permute(
        0, 3, 1, 2)


def _loss(logits: torch.Tensor, y: torch.Tensor, kind: str, *,
          global_count: int | None = None) -> torch.Tensor:
    """Mean loss of the batch; with ``global_count``, this slice's share of the mean loss of a
    global batch of that many images (its sum divided by the global count)."""
    if global_count is None:
        if kind == "mse":
            target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
            return F.mse_loss(torch.softmax(logits, dim=1), target)
        return F.cross_entropy(logits, y)
    if kind == "mse":
        target = F.one_hot(y, logits.shape[1]).to(logits.dtype)
        total = F.mse_loss(torch.softmax(logits, dim=1), target, reduction="sum")
        return total / (global_count * logits.shape[1])
    return F.cross_entropy(logits, y, reduction="sum") / global_count


def save_state(obj, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (temp file, then rename).

    ``obj`` should hold only tensors and builtins (dicts, lists, str, numbers, None), so that
    :func:`load_state` can read it back without unpickling code.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(
    path: str | os.PathLike,
    map_location: str | torch.device | None = "cpu",
    *,
    what: str = "state file",
    fix: str = "delete it to start over",
):
    """Read what :func:`save_state` wrote, never executing code from the file.

    The file is read with ``torch.load(weights_only=True)``: tensors and builtins only, so a
    planted pickle that would run code is refused instead of run.

    Parameters
    ----------
    path : path
    map_location : device, optional
    what : str
        What the file is, for the error message ("training checkpoint").
    fix : str
        How to recover, for the error message.

    Raises
    ------
    FileNotFoundError
        No such file.
    FormatError
        Truncated, corrupt, or holding anything but tensors and builtins; the one-line message
        names the file and ``fix``.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such {what}; {fix}")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise FormatError(
            f"{p}: not a readable {what} (truncated, corrupt, or holding more than tensors "
            f"and plain values: {type(exc).__name__}: {first}); {fix}"
        ) from None


def train(
    model: nn.Module,
    x_train: np.ndarray | torch.Tensor,
    y_train: np.ndarray | torch.Tensor,
    config: TrainConfig | None = None,
    *,
    device: str | torch.device = "auto",
    progress: bool = True,
    desc: str = "train",
    checkpoint: str | os.PathLike | None = None,
    keep_checkpoint: bool = False,
    params: list[nn.Parameter] | None = None,
    on_epoch: Callable[[TrainLog], None] | None = None,
    distributed: bool | None = None,
) -> TrainLog:
    """Train ``model`` in place with mini-batches drawn without replacement, epoch by epoch.

    Parameters
    ----------
    model : nn.Module
        Trained in place (and moved to ``device``).
    x_train : ndarray of shape (n, 28, 28) uint8, or a float tensor (n, c, h, w)
    y_train : ndarray of shape (n,)
    config : TrainConfig, optional
    device : str or torch.device
        ``"auto"`` uses CUDA when available.
    progress : bool
        Show a progress bar (loss in the postfix).
    desc : str
        Label of the progress bar.
    checkpoint : path, optional
        Save model, optimizer and batch-order state there after every epoch (atomically), and
        resume from it when it exists; removed when training finishes. It holds tensors and
        builtins only and is read without unpickling code (:func:`load_state`).
    keep_checkpoint : bool
        Save the checkpoint after the last epoch too and leave it in place, for a caller that
        removes it once the trained model is saved elsewhere (a run killed in between then
        finds training finished instead of starting it over).
    params : list of Parameter, optional
        Parameters to optimize (default: every parameter that requires a gradient).
    on_epoch : callable ``(TrainLog) -> None``, optional
        Called after every epoch, once its checkpoint is saved.
    distributed : bool, optional
        Train data-parallel with ``DistributedDataParallel`` over the initialised process group
        (see :mod:`netsqueeze.nn.distributed`): every rank runs this same call, takes its slice
        of each global batch of ``batch_size`` images, and ends with bit-identical weights;
        only rank 0 shows the bar and writes the checkpoint (every rank reads it to resume).
        Default: when a process group of more than one rank is initialised.

    Returns
    -------
    TrainLog
    """
    cfg = (config or TrainConfig()).validate()
    from netsqueeze.nn import distributed as ddp

    dist_on = ddp.active() if distributed is None else bool(distributed)
    if dist_on and not ddp.active():
        raise ValueError("distributed=True needs an initialised process group of 2 or more "
                         "ranks (torchrun, or netsqueeze.nn.distributed.spawn)")
    main = not dist_on or ddp.is_main()
    dev = resolve_device(device)
    model.to(dev)
    x = x_train if isinstance(x_train, torch.Tensor) else to_tensor(x_train, dev)
    x = x.to(dev)
    y = labels_tensor(y_train, dev)
    n = x.shape[0]
    if n == 0:
        raise ValueError("the training set is empty")
    if y.shape[0] != n:
        raise ValueError(f"{n} training images but {y.shape[0]} labels")
    trainable = params if params is not None else [p for p in model.parameters() if p.requires_grad]
    opt = _make_optimizer(trainable, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(cfg))
    gen = torch.Generator().manual_seed(int(cfg.seed))
    log = TrainLog()
    step = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if dist_on:
        ddp.barrier()  # every rank sees the same checkpoint (rank 0 writes and removes it)
    if ckpt is not None and ckpt.exists():
        state = load_state(ckpt, dev, what="training checkpoint",
                           fix="delete it to start this training over")
        keys = ("config", "model", "optimizer", "scheduler", "generator", "step", "log")
        if not isinstance(state, dict) or any(k not in state for k in keys):
            raise FormatError(
                f"{ckpt}: not a training checkpoint (it needs {', '.join(keys)}); delete it to "
                "start this training over"
            )
        if state.get("config") != cfg.to_dict():
            raise ValueError(
                f"checkpoint {ckpt} was written with other training settings; delete it to "
                "start over, or resume with the settings it was written with"
            )
        try:
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"].cpu())
            step = int(state["step"])
            log = TrainLog(**state["log"])
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:160]
            raise FormatError(
                f"{ckpt}: does not fit this model and training ({type(exc).__name__}: {first}); "
                "delete it to start this training over"
            ) from None
        log.resumed_from = step
    batch = min(int(cfg.batch_size), n)
    per_epoch = math.ceil(n / batch)
    forward = model
    if dist_on:
        if batch < ddp.world_size():
            raise ValueError(f"batch_size {batch} is smaller than the {ddp.world_size()} "
                             "data-parallel processes; use a larger batch or fewer processes")
        from torch.nn.parallel import DistributedDataParallel

        # every rank starts from rank 0's weights (DDP broadcasts them); buffers such as masks
        # and indices never change, and floating ones are averaged once at the end
        forward = DistributedDataParallel(
            model, device_ids=[dev] if dev.type == "cuda" else None, forward_sync_buffers=False)
    t0 = time.perf_counter() - log.seconds
    model.train()
    bar = progress_bar(total=cfg.iterations, initial=step, desc=desc,
                       enabled=progress and main, unit="it")
    try:
        while step < cfg.iterations:
            perm = torch.randperm(n, generator=gen).to(dev)
            total_loss, seen = 0.0, 0
            for i in range(per_epoch):
                if step >= cfg.iterations:
                    break
                idx = perm[i * batch : (i + 1) * batch]
                if not dist_on:
                    xb = x[idx] if not cfg.shift else random_shift(x[idx], cfg.shift, gen)
                    loss = _loss(model(xb), y[idx], cfg.loss)
                else:
                    # the whole global batch is shifted (one draw from gen, as in one process)
                    # and this rank takes its slice; DDP averages over ranks, so the slice's
                    # share of the global mean loss is scaled by the number of ranks
                    part = ddp.shard(torch.arange(idx.shape[0], device=dev))
                    xb = x[idx] if not cfg.shift else random_shift(x[idx], cfg.shift, gen)
                    share = _loss(forward(xb[part]), y[idx][part], cfg.loss,
                                  global_count=idx.shape[0])
                    loss = share * ddp.world_size()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                step += 1
                if dist_on:
                    ddp.fault_point()
                    lv = float(share.detach())  # this rank's share; summed at the epoch's end
                else:
                    lv = float(loss.detach())
                total_loss += lv
                seen += 1
                bar.update(1)
                if step % 50 == 0:  # in several processes: rank 0's slice, as a mean
                    shown = lv * ddp.world_size() if dist_on else lv
                    bar.set_postfix(loss=f"{shown:.4f}")
            if dist_on:
                total = torch.tensor([total_loss], dtype=torch.float64, device=dev)
                torch.distributed.all_reduce(total)
                total_loss = float(total.item())
            log.epochs += 1
            log.epoch_loss.append(total_loss / max(seen, 1))
            log.iterations = step
            log.seconds = time.perf_counter() - t0
            if dist_on and step >= cfg.iterations:
                ddp.average_buffers(model)  # before the last checkpoint: it holds them
            if main and ckpt is not None and (step < cfg.iterations or keep_checkpoint):
                save_state(
                    {
                        "config": cfg.to_dict(),
                        "model": model.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "generator": gen.get_state(),
                        "step": step,
                        "log": log.to_dict(),
                    },
                    ckpt,
                )
            if on_epoch is not None:
                on_epoch(log)
    finally:
        bar.close()
    model.eval()
    log.iterations = step
    log.seconds = time.perf_counter() - t0
    if main and ckpt is not None and not keep_checkpoint:
        ckpt.unlink(missing_ok=True)
    if dist_on:
        ddp.barrier()
    return log


@torch.inference_mode()
def predict_logits(
    model: nn.Module, x: np.ndarray | torch.Tensor, *, batch_size: int = 5000
) -> torch.Tensor:
    """Logits for all of ``x``, in large batches, without building a graph."""
    dev = next(iter(model.parameters()), torch.empty(0)).device
    xt = x if isinstance(x, torch.Tensor) else to_tensor(x, dev)
    was_training = model.training
    model.eval()
    try:
        outs = [model(xt[i : i + batch_size].to(dev)) for i in range(0, xt.shape[0], batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray | torch.Tensor,
    *,
    batch_size: int = 5000,
) -> float:
    """Top-1 accuracy of ``model`` on every image of ``x`` (the whole test set, never a batch)."""
    logits = predict_logits(model, x, batch_size=batch_size)
    yt = labels_tensor(y, logits.device)
    if logits.shape[0] != yt.shape[0]:
        raise ValueError(f"{logits.shape[0]} images but {yt.shape[0]} labels")
    if yt.shape[0] == 0:
        raise ValueError("cannot evaluate on an empty test set")
    return float((logits.argmax(1) == yt).float().mean())
