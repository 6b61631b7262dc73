"""Checkpoints of reference networks: a ``state_dict`` with the architecture's name beside it.

A netsqueeze checkpoint is ``torch.save({"format": "netsqueeze-checkpoint", "arch": name,
"state_dict": ..., "meta": {...}})``. Plain ``state_dict`` files (what ``torch.save(
model.state_dict())`` writes) are read too, given the architecture.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from netsqueeze.errors import FormatError
from netsqueeze.models import MODELS, build

__all__ = ["load_checkpoint", "read_checkpoint", "save_checkpoint"]

FORMAT = "netsqueeze-checkpoint"


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, arch: str | None,
                    meta: dict | None = None) -> Path:
    """Save ``model.state_dict()`` with its architecture name, atomically.

    Tensors are saved from the CPU, so a checkpoint written on a GPU loads on any machine.
    """
    from netsqueeze.nn.train import save_state

    state = {k: v.detach().cpu() if isinstance(v, torch.Tensor) else v
             for k, v in model.state_dict().items()}
    save_state({"format": FORMAT, "arch": arch, "state_dict": state,
                "meta": dict(meta or {})}, path)
    return Path(path)


def read_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> tuple[dict, str | None, dict]:
    """Read a checkpoint file without building a network: ``(state_dict, arch, meta)``.

    ``arch`` is the architecture a netsqueeze checkpoint names (None for a plain state_dict).

    Raises
    ------
    FileNotFoundError
        No such file.
    FormatError
        Not a checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a non-checkpoint
        raise FormatError(f"{p}: {_load_problem(exc)}; give a file written by netsqueeze or "
                          "by torch.save(model.state_dict())") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        state, arch, meta = obj.get("state_dict"), obj.get("arch"), dict(obj.get("meta") or {})
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state, arch, meta = obj, None, {}
    else:
        raise FormatError(f"{p}: holds a {type(obj).__name__}, not a state_dict")
    if not isinstance(state, dict):
        raise FormatError(f"{p}: its state_dict is a {type(state).__name__}, not a dict")
    return state, arch, meta


def _load_problem(exc: BaseException) -> str:
    """A short reason why ``torch.load(weights_only=True)`` refused a file, without PyTorch's
    long explanation of ``weights_only``."""
    import re

    text = str(exc)
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"holds Python objects other than tensors and plain values (it needs "
                f"{found.group(1)}), which netsqueeze does not unpickle")
    first = text.strip().splitlines()[0][:120] if text.strip() else ""
    if isinstance(exc, OSError | MemoryError):
        return f"cannot be read ({type(exc).__name__}: {first})"
    return "not a PyTorch checkpoint (torch.load cannot read it)"


def load_checkpoint(
    path: str | os.PathLike, *, arch: str | None = None, model: nn.Module | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[nn.Module, dict]:
    """Load a checkpoint into ``model`` (or a fresh ``arch`` network); return it and its meta.

    Raises
    ------
    FileNotFoundError
        No such file.
    FormatError
        Not a checkpoint, or its tensors do not fit the architecture.
    ValueError
        The architecture is unknown or not given for a plain ``state_dict``.
    """
    p = Path(path)
    state, saved_arch, meta = read_checkpoint(p, map_location)
    if saved_arch is not None:
        meta["arch"] = saved_arch
    if arch is None and model is None:
        arch = saved_arch
    if model is None:
        if arch is None:
            raise ValueError(
                f"{p} is a plain state_dict: say which network it belongs to with --model "
                f"({', '.join(MODELS)})"
            )
        model = build(arch)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(
            f"{p}: its tensors do not fit the {arch or type(model).__name__} network "
            f"({str(exc).splitlines()[0][:300]}); check --model"
        ) from None
    return model, meta
