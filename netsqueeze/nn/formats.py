"""The decoded model in other formats: safetensors and ONNX (optional dependencies).

* :func:`save_safetensors` writes a state_dict with the ``safetensors`` package (no pickle;
  readable from Python, Rust, JavaScript...). It needs no architecture.
* :func:`export_onnx` writes a model with :func:`torch.onnx.export` and
  :func:`compare_onnx` runs the file with onnxruntime on images and compares it to the PyTorch
  model: how many top-1 predictions agree and the largest absolute logit difference.

Install the packages with ``pip install 'netsqueeze[export]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netsqueeze.core.fileio import atomic_write_bytes

__all__ = ["compare_onnx", "export_onnx", "load_safetensors", "save_safetensors"]

_INSTALL = "install it with: pip install 'netsqueeze[export]'"


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"the {module.split('.')[0]} package is not installed; {_INSTALL}") \
            from None


def save_safetensors(state: Mapping[str, torch.Tensor], path: str | os.PathLike,
                     metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``state`` (name -> tensor) as a .safetensors file, atomically.

    Tensors are copied to contiguous CPU memory (safetensors refuses shared or strided
    storage). ``metadata`` values are turned into strings.
    """
    st = _need("safetensors.torch")
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in state.items()}
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, st.save(tensors, metadata=meta))
    return path


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """The tensors and the metadata of a .safetensors file."""
    st = _need("safetensors.torch")
    sf = _need("safetensors")
    tensors = st.load_file(str(path))
    with sf.safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata() or {})
    return tensors, meta


@contextlib.contextmanager
def _quiet_onnx():
    """torch.onnx's exporter logs progress and optional-package notices; keep the CLI quiet."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch._dynamo", "torch.export",
                                              "onnxscript")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull), \
                contextlib.redirect_stderr(devnull):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield
    finally:
        for lg, lv in zip(loggers, levels, strict=True):
            lg.setLevel(lv)


def _reason(exc: BaseException) -> str:
    """The innermost cause of an exporter error, as one short line without colour codes."""
    import re

    while exc.__cause__ is not None:
        exc = exc.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{type(exc).__name__}: {first[:200]}" if first else type(exc).__name__


def export_onnx(model: nn.Module, path: str | os.PathLike, *,
                input_shape: tuple[int, ...] | None = None, opset: int | None = None) -> dict:
    """Write ``model`` as an ONNX file with a dynamic batch size, atomically.

    Uses the ``torch.export``-based exporter (``dynamo=True``, torch's maintained one). There is
    no fall-back to the deprecated TorchScript tracer: tracing a model whose control flow depends
    on its input silently records one branch, and a file that computes something else is worse
    than a clear error.

    Parameters
    ----------
    model : nn.Module
        Evaluated in ``eval()`` mode on the CPU (a copy's state is not changed otherwise).
    path : path
    input_shape : tuple of int, optional
        Shape of one input without the batch dimension; default ``model.input_shape`` (the
        built-in networks have it).

    Returns
    -------
    dict
        ``exporter``, ``opset``, ``input_shape``, ``bytes``.

    Raises
    ------
    ValueError
        One line: no input shape known, onnx/onnxscript missing, or the model cannot be
        exported (with the exporter's reason).
    """
    onnx = _need("onnx")
    _need("onnxscript")  # the exporter's translator
    path = Path(path)
    shape = tuple(input_shape or getattr(model, "input_shape", ()) or ())
    if not shape:
        raise ValueError(f"{type(model).__name__} has no input_shape; give the shape of one "
                         "input (without the batch dimension)")
    was_training = model.training
    model = model.cpu().eval()
    example = (torch.zeros(2, *shape),)
    try:
        with tempfile.TemporaryDirectory(prefix="netsqueeze-onnx-") as tmpdir:
            tmp = Path(tmpdir) / "model.onnx"
            kw: dict = {"input_names": ["input"], "output_names": ["logits"],
                        "dynamic_shapes": ({0: torch.export.Dim("batch")},),
                        "external_data": False}
            if opset is not None:
                kw["opset_version"] = opset
            try:
                with _quiet_onnx(), torch.no_grad():
                    torch.onnx.export(model, example, str(tmp), dynamo=True, **kw)
            except Exception as exc:  # noqa: BLE001 - any exporter failure: one clear line
                raise ValueError(f"cannot export {type(model).__name__} to ONNX with "
                                 f"torch.onnx.export: {_reason(exc)}") from None
            m = onnx.load(str(tmp))  # external data (if any) is read back in
            data = m.SerializeToString()
    finally:
        model.train(was_training)
    atomic_write_bytes(path, data)
    opsets = {o.domain: o.version for o in m.opset_import}
    return {"exporter": "torch.onnx.export (dynamo)", "opset": opsets.get("", None),
            "input_shape": list(shape), "bytes": path.stat().st_size}


def compare_onnx(model: nn.Module, path: str | os.PathLike, images: np.ndarray, *,
                 batch_size: int = 1000) -> dict:
    """Run the ONNX file with onnxruntime on ``images`` and compare with ``model``.

    ``images`` are what the model takes (``uint8`` images are scaled to [0, 1] as in
    :func:`netsqueeze.nn.train.to_tensor`). Returns ``n``, ``top1_agree`` (images whose top-1
    class is the same), ``max_abs_diff`` (largest absolute logit difference) and ``provider``.
    """
    ort = _need("onnxruntime")
    from netsqueeze.nn.train import to_tensor

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    model = model.cpu().eval()
    n = int(images.shape[0])
    agree, worst = 0, 0.0
    with torch.no_grad():
        for i in range(0, n, batch_size):
            x = to_tensor(images[i:i + batch_size], "cpu")
            ref = model(x).numpy()
            got = sess.run(None, {name: x.numpy()})[0]
            if got.shape != ref.shape:
                raise ValueError(f"{path}: onnxruntime gives logits of shape {got.shape}, "
                                 f"PyTorch {ref.shape}")
            agree += int((got.argmax(1) == ref.argmax(1)).sum())
            worst = max(worst, float(np.abs(got.astype(np.float64) - ref).max()))
    return {"n": n, "top1_agree": agree, "max_abs_diff": worst,
            "provider": "onnxruntime CPUExecutionProvider"}
