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

__all__ = ["build_model", "describe_spec", "parse_model_args", "resolve_factory"]


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
        raise ValueError(
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
    except Exception as exc:
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
            f"--model {spec!r} is not a built-in model ({', '.join(MODELS)}) nor of the form "
            "pkg.module:callable or path/to/file.py:callable"
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
        except Exception as exc:
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
        raise ValueError(f"--model {spec!r}: {attr!r} is a {type(obj).__name__}, not a class "
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
    except Exception as exc:
        what = f" with {json.dumps(kwargs)}" if kwargs else ""
        raise ValueError(
            f"--model {spec!r}: calling it{what} failed: {type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if not isinstance(model, nn.Module):
        raise ValueError(
            f"--model {spec!r} returned a {type(model).__name__}, not a torch.nn.Module"
        )
    return model


def describe_spec(spec: str) -> str:
    """``"builtin"``, ``"module"`` or ``"file"``: the kind of a spec (no import)."""
    if spec in MODELS:
        return "builtin"
    where = spec.rpartition(":")[0]
    return "file" if where.endswith(".py") or "/" in where else "module"
