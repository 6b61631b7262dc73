"""What the ``.nsq`` commands (pack, unpack, inspect, evaluate) share: reading their inputs."""

from __future__ import annotations

from pathlib import Path

#: File a compress run leaves in its output folder: the stripped compressed model.
RUN_CHECKPOINT = "compressed.pt"


def printable(value) -> str:
    """``str(value)`` with control and other non-printable characters escaped (``\\x1b``).

    Text read from a file (header strings, tensor names) goes through this before it reaches a
    terminal, so that a crafted file cannot send escape sequences to it.
    """
    text = str(value)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def check_decodes(path) -> None:
    """Decode every tensor of an ``.nsq`` file (within its decode budget), keeping none.

    Raises
    ------
    FileNotFoundError, netsqueeze.FormatError
        The message names the file (and the tensor that does not decode).
    """
    from netsqueeze.core.container import read_nsq

    read_nsq(path).arrays()


def human_bytes(n: int) -> str:
    """``35,282 bytes (34.5 KiB)``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n:,} bytes ({n / size:.1f} {unit})"
    return f"{n:,} bytes"


def checkpoint_path(src: str | Path) -> Path:
    """The checkpoint named by ``src``: the file itself, or a compress run's ``compressed.pt``."""
    p = Path(src)
    if p.is_dir():
        ckpt = p / RUN_CHECKPOINT
        if not ckpt.is_file():
            raise FileNotFoundError(
                f"{p} is a folder without {RUN_CHECKPOINT}; give a checkpoint file or the "
                "output folder of a finished compress run"
            )
        return ckpt
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such checkpoint file or run folder")
    return p


def load_source(src: str | Path, model_name: str | None, model_args: dict | None = None, *,
                trust: bool = False):
    """Load a checkpoint (or a run folder's ``compressed.pt``) into a plain model.

    A netsqueeze checkpoint names its architecture (``model_name`` overrides it); a plain
    ``state_dict`` needs ``model_name``: a built-in name or a ``--model`` spec
    (``pkg.module:callable``, ``file.py:callable``, built with ``model_args``). A whole pickled
    model is read only with ``trust``. Entries of pruning or weight-sharing machinery saved
    before stripping (``weight_mask``, ``weight_centroids`` + ``weight_index``) are turned into
    the plain weights they stand for.

    Returns
    -------
    (model, arch, meta, path)

    Raises
    ------
    FileNotFoundError, ValueError, netsqueeze.FormatError
        Missing file, unknown or missing architecture, not a checkpoint, tensors that do not
        fit the architecture.
    """
    from netsqueeze.errors import FormatError
    from netsqueeze.models import MODELS, build
    from netsqueeze.models.checkpoint import read_checkpoint
    from netsqueeze.nn.export import plain_state_dict

    path = checkpoint_path(src)
    if model_name is not None and model_name not in MODELS:
        from netsqueeze.models.factory import build_model, load_weights

        model = build_model(model_name, model_args)
        model, meta = load_weights(path, model, trust=trust)
        return model, model_name, meta, path
    state, saved_arch, meta = read_checkpoint(path)
    arch = model_name or saved_arch
    if arch is None or arch not in MODELS:
        raise ValueError(
            f"{path} does not say which built-in network it holds"
            + (f" (it names {arch!r})" if arch else "")
            + f": give --model ({', '.join(MODELS)}, pkg.module:callable or file.py:callable)"
        )
    model = build(arch)
    try:
        plain = plain_state_dict(state)
        problem = _misfit(model.state_dict(), plain)
        if problem is None:
            model.load_state_dict(plain, strict=True)
    except (RuntimeError, ValueError) as exc:
        problem = " ".join(str(exc).split())[:300]
    if problem is not None:
        raise FormatError(
            f"{path}: its tensors do not fit the {arch} network ({problem}); check --model"
        )
    return model, arch, meta, path


def _misfit(expected: dict, got: dict) -> str | None:
    """The first tensor missing from ``got``, unexpected in it, or of another shape."""
    for k, t in expected.items():
        if k not in got:
            return f"no tensor {k!r}"
        shape = tuple(getattr(got[k], "shape", ()))
        if shape != tuple(t.shape):
            return f"{k!r} has shape {shape}, the network's has {tuple(t.shape)}"
    extra = [k for k in got if k not in expected]
    return f"unexpected tensor {extra[0]!r}" if extra else None


def buildable_arch(header: dict, path, command: str) -> str:
    """The header's architecture, or a ValueError saying the file needs Python to load."""
    from netsqueeze.models import MODELS

    arch = header.get("arch")
    if isinstance(arch, str) and arch in MODELS:
        return arch
    cls = header.get("model_class")
    raise ValueError(
        f"{path} holds a model of architecture {arch!r}"
        + (f" (class {printable(cls)})" if cls else "")
        + f", which '{command}' cannot build (it knows {', '.join(MODELS)}); give --model "
        "pkg.module:callable or path/to/file.py:callable (in Python: "
        "load_compressed(path, model=an_instance))"
        + (f" (the file was saved with {header['factory']!r})"
           if isinstance(header.get("factory"), str) else "")
    )
