"""Building a user's network from a name the user gives: ``--model SPEC``.

A spec is one of

* a built-in name (``lenet5``, ``lenet-300-100``, ``notebook-cnn``, see ``MODELS``);
* ``pkg.module:callable`` -- an importable module and an attribute of it (dots reach nested
  attributes: ``pkg.mod:Outer.build``), e.g. ``torchvision.models:resnet18``;
* ``path/to/file.py:callable`` -- a Python file, run as a module.

The callable is a class or a function returning an ``nn.Module``; it is called with no
arguments, or with the keyword arguments of a JSON object (``--model-args '{"classes": 4}'``).

Importing a module or running a file executes its code: netsqueeze does so only for a spec the
user passes (on the command line or to :func:`build_model`), never for a name read from a file.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sys
from collections.abc import Mapping
from pathlib import Path

from torch import nn

from netsqueeze.models import MODELS

__all__ = ["build_model", "describe_spec", "load_weights", "parse_model_args", "resolve_factory"]


def parse_model_args(text: str | None) -> dict:
    """``--model-args`` JSON -> dict (``None`` or empty -> ``{}``); ValueError naming the fix."""
    if text is None or not str(text).strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"--model-args is not valid JSON ({exc.msg} at character {exc.pos}); give an "
            "object such as '{\"classes\": 10}'"
        ) from None
    if not isinstance(value, dict):
        raise ValueError(  # noqa: TRY004
            f"--model-args must be a JSON object of keyword arguments, got {type(value).__name__}"
        )
    return value


def _load_file(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"--model: no such file {path}")
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"netsqueeze_user_{path.stem.replace('-', '_')}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"--model: {path} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # classes defined there pickle and deepcopy by this name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001
        sys.modules.pop(name, None)
        raise ValueError(
            f"--model: running {path} failed: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    return module


def resolve_factory(spec: str):
    """The callable a spec names (built-in names give the registered class).

    Raises
    ------
    ValueError
        A malformed spec, a module that cannot be imported, a missing attribute, or an
        attribute that is not callable (one line naming it).
    FileNotFoundError
        ``file.py:callable`` of a file that does not exist.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError("--model is empty; give a built-in name, pkg.module:callable or "
                         "path/to/file.py:callable")
    if spec in MODELS:
        return MODELS[spec]
    if ":" not in spec:
        raise ValueError(
            f"unknown model {spec!r}: not a built-in model ({', '.join(MODELS)}) nor of the "
            "form pkg.module:callable or path/to/file.py:callable"
        )
    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise ValueError(f"--model {spec!r}: give both sides of ':' (module or file, callable)")
    if where.endswith(".py") or "/" in where or "\\" in where:
        module = _load_file(Path(where))
        label = where
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ValueError(
                f"--model {spec!r}: cannot import module {where!r} ({exc}); check the name and "
                "that it is installed (or give path/to/file.py:callable)"
            ) from None
        except Exception as exc:  # noqa: BLE001
            raise ValueError(
                f"--model {spec!r}: importing {where!r} failed: {type(exc).__name__}: "
                f"{str(exc)[:200]}"
            ) from None
        label = f"module {where!r}"
    obj = module
    for part in attr.split("."):
        if not part.isidentifier() or not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))[:20]
            raise ValueError(
                f"--model {spec!r}: {label} has no attribute {attr!r}"
                + (f" (it has: {', '.join(public)})" if public else "")
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"--model {spec!r}: {attr!r} is a {type(obj).__name__}, not a class "  # noqa: TRY004
                         "or function")
    return obj


def build_model(spec: str, args: Mapping | None = None) -> nn.Module:
    """Build the network a spec names, called with ``args`` as keyword arguments.

    Raises
    ------
    ValueError
        As :func:`resolve_factory`, or the factory raised, or returned no ``nn.Module``.
    """
    factory = resolve_factory(spec)
    kwargs = dict(args or {})
    try:
        model = factory(**kwargs)
    except Exception as exc:  # noqa: BLE001
        what = f" with {json.dumps(kwargs)}" if kwargs else ""
        raise ValueError(
            f"--model {spec!r}: calling it{what} failed: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(  # noqa: TRY004
            f"--model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def describe_spec(spec: str) -> str:
    """``"builtin"``, ``"module"`` or ``"file"``: the kind of a spec (no import)."""
    if spec in MODELS:
        return "builtin"
    where = spec.rpartition(":")[0]
    return "file" if where.endswith(".py") or "/" in where else "module"


def load_weights(path, model: nn.Module, *, trust: bool = False, map_location="cpu"):
    """Load a checkpoint file into ``model``; return ``(model, meta)``.

    Accepts a plain ``state_dict`` (``torch.save(model.state_dict())``), a netsqueeze
    checkpoint (``{"format": "netsqueeze-checkpoint", "state_dict": ...}``), a state_dict with
    pruning or weight-sharing entries (``*_mask``, ``*_centroids`` + ``*_index``), and -- only
    with ``trust=True``, as it runs pickled code -- a whole pickled ``nn.Module``, whose
    tensors are then loaded into ``model``.

    Raises
    ------
    FileNotFoundError
        No such file.
    netsqueeze.FormatError
        Not a checkpoint (or a pickle without ``trust``), or tensors that do not fit ``model``
        (the message names the first tensor missing, unexpected or of another shape).
    """
    from pathlib import Path

    import torch

    from netsqueeze.errors import FormatError
    from netsqueeze.models.checkpoint import FORMAT

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file")
    meta: dict = {}
    try:
        obj = torch.load(p, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types for a non-checkpoint
        if not trust:
            raise FormatError(
                f"{p}: not a state_dict or netsqueeze checkpoint ({type(exc).__name__}); if it "
                "is a whole pickled model you trust, pass --trust-checkpoint (this runs code "
                "from the file)"
            ) from None
        try:
            obj = torch.load(p, map_location=map_location, weights_only=False)
        except Exception as exc2:  # noqa: BLE001
            raise FormatError(f"{p}: cannot be read ({type(exc2).__name__}: "
                              f"{str(exc2)[:200]})") from None
    if isinstance(obj, nn.Module):
        state = obj.state_dict()
    elif isinstance(obj, dict) and obj.get("format") == FORMAT:
        state = obj.get("state_dict")
        meta = dict(obj.get("meta") or {})
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj
    else:
        raise FormatError(f"{p}: holds a {type(obj).__name__}, not a state_dict, a netsqueeze "
                          "checkpoint or a model")
    if not isinstance(state, dict):
        raise FormatError(f"{p}: its state_dict is a {type(state).__name__}, not a dict")
    from netsqueeze.nn.export import plain_state_dict

    try:
        plain = plain_state_dict(state)
    except ValueError as exc:
        raise FormatError(f"{p}: {exc}") from None
    expected = model.state_dict()
    problem = None
    for k, t in expected.items():
        if k not in plain:
            problem = f"it has no tensor {k!r}"
            break
        if tuple(getattr(plain[k], "shape", ())) != tuple(t.shape):
            problem = (f"tensor {k!r} has shape {tuple(plain[k].shape)}, the model's has "
                       f"{tuple(t.shape)}")
            break
    if problem is None:
        extra = [k for k in plain if k not in expected]
        if extra:
            problem = f"it has a tensor {extra[0]!r} the model lacks"
    if problem is not None:
        raise FormatError(f"{p}: its tensors do not fit the model ({problem}); check "
                          "--model and --model-args")
    model.load_state_dict(plain, strict=True)
    return model, meta
