"""A stand-in for a CUDA device on a machine without one, to catch numpy/torch boundary mistakes.

Inside :func:`fake_cuda`, ``torch.cuda.is_available()`` is True and every tensor put on
``"cuda"`` (``.to("cuda")``, ``.cuda()``, ``device="cuda"`` in a factory, ``model.to("cuda")``)
is flagged as on the GPU: its data lives on the CPU, but it reports ``device == cuda:0`` and
behaves as a real CUDA tensor does where code usually goes wrong:

* ``np.asarray(t)``, ``t.numpy()`` and ``t.__array__`` raise ``TypeError: can't convert cuda:0
  device type tensor to numpy`` (the message PyTorch gives), until ``t.cpu()`` / ``t.to("cpu")``;
* an operation mixing it with a CPU tensor of one element or more raises ``RuntimeError:
  Expected all tensors to be on the same device`` (0-d CPU tensors are allowed, as in PyTorch);
  ``copy_`` and indexing with CPU indices are allowed, as in PyTorch;
* results of operations on it are on the fake device too.

It works through a :class:`torch.overrides.TorchFunctionMode`, so it sees factory functions as
well as tensor methods. It is slow (Python on every operation): use it on small runs.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

CUDA = torch.device("cuda", 0)
_FLAG = "_netsqueeze_test_on_cuda"


def on_cuda(t) -> bool:
    """Whether ``t`` is a tensor on the fake GPU."""
    return isinstance(t, torch.Tensor) and t.__dict__.get(_FLAG, False)


def _flag(t, value: bool = True):
    if isinstance(t, torch.Tensor):
        if value:
            t.__dict__[_FLAG] = True
        else:
            t.__dict__.pop(_FLAG, None)
    return t


def _flag_all(out):
    flat, _ = tree_flatten(out)
    for t in flat:
        _flag(t)
    return out


def _new_object(t: torch.Tensor) -> torch.Tensor:
    """A new tensor object on the same data (what a real device copy returns)."""
    with torch._C.DisableTorchFunction():
        return t.view_as(t)


def _is_cuda_device(dev) -> bool:
    if dev is None or isinstance(dev, bool):
        return False
    if isinstance(dev, int):
        return True  # a bare index means a CUDA device
    try:
        return torch.device(dev).type == "cuda"
    except (RuntimeError, TypeError):
        return False


def _is_cpu_device(dev) -> bool:
    try:
        return dev is not None and not isinstance(dev, int) and torch.device(dev).type == "cpu"
    except (RuntimeError, TypeError):
        return False


def _cpu_arg(a):
    return "cpu" if (isinstance(a, str | torch.device | int) and not isinstance(a, bool)
                     and _is_cuda_device(a)) else a


#: Operations where PyTorch accepts a CUDA tensor beside CPU tensors.
_MIXING_ALLOWED = {
    torch.Tensor.copy_,
    torch.Tensor.__getitem__,
    torch.Tensor.__setitem__,
    torch.Tensor.to,
    torch.Tensor.cpu,
    torch.Tensor.cuda,
    torch.Tensor.__repr__,
    torch.Tensor.__format__,
    torch.Tensor.__reduce_ex__,
    torch.Tensor.__deepcopy__,
    torch._has_compatible_shallow_copy_type,
}
_TO_NUMPY = {torch.Tensor.numpy, torch.Tensor.__array__}


def _target_device(args, kwargs):
    """The device asked for by ``t.to(...)``: (found, device)."""
    if kwargs.get("device") is not None:
        return True, kwargs["device"]
    for a in args[1:]:
        if isinstance(a, str | torch.device | int) and not isinstance(a, bool):
            return True, a
        if isinstance(a, torch.Tensor):
            return True, (CUDA if on_cuda(a) else a.device)
    return False, None


class FakeCudaMode(TorchFunctionMode):
    """The mode behind :func:`fake_cuda`."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        flat, _ = tree_flatten((args, kwargs))
        fake_in = any(on_cuda(a) for a in flat)

        if func == torch.Tensor.device.__get__:
            return CUDA if on_cuda(args[0]) else func(*args)
        if func == torch.Tensor.is_cuda.__get__:
            return on_cuda(args[0])
        if func == torch.Tensor.is_cpu.__get__:
            return not on_cuda(args[0])
        if func == torch.Tensor.data.__set__:
            func(*args)
            _flag(args[0], on_cuda(args[1]))
            return None
        if func == torch.Tensor.data.__get__:
            out = func(*args)
            return _flag(out, on_cuda(args[0]))

        if func in _TO_NUMPY and fake_in:
            raise TypeError(
                "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy "
                "the tensor to host memory first."
            )

        if func is torch.Tensor.cpu:
            out = func(*args, **kwargs)
            return _flag(_new_object(out) if (out is args[0] and fake_in) else out, False)
        if func is torch.Tensor.cuda:
            t = args[0]
            return t if on_cuda(t) else _flag(_new_object(t))

        if func is torch.Tensor.to:
            found, dev = _target_device(args, kwargs)
            src = args[0]
            if found and _is_cuda_device(dev):
                if "device" in kwargs:
                    kwargs["device"] = "cpu"
                new_args = [src] + [CUDA_TO_CPU(a) for a in args[1:]]
                out = func(*new_args, **kwargs)
                if out is src and not on_cuda(src):
                    out = _new_object(out)
                return _flag(out)
            out = func(*args, **kwargs)
            if found and _is_cpu_device(dev) and on_cuda(src):
                return _flag(_new_object(out) if out is src else out, False)
            return out

        to_fake = fake_in
        if kwargs.get("device") is not None and _is_cuda_device(kwargs["device"]):
            kwargs["device"] = "cpu"
            to_fake = True

        if fake_in and func not in _MIXING_ALLOWED:
            cpu = [a for a in flat if isinstance(a, torch.Tensor) and not on_cuda(a)
                   and a.dim() > 0]
            if cpu:
                raise RuntimeError(
                    "Expected all tensors to be on the same device, but found at least two "
                    f"devices, cuda:0 and cpu! (in {getattr(func, '__name__', func)})"
                )

        out = func(*args, **kwargs)
        name = getattr(func, "__name__", "")
        if func in (torch.Tensor.__reduce_ex__, torch.Tensor.__repr__, torch.Tensor.__format__):
            return out
        if name.endswith("_") and not name.startswith("__") or name in ("__setitem__",):
            return out  # in place: the result is the first argument, on its own device
        return _flag_all(out) if to_fake else out


def CUDA_TO_CPU(a):
    if isinstance(a, torch.Tensor):
        return a
    return _cpu_arg(a)


@contextlib.contextmanager
def fake_cuda(monkeypatch):
    """Run the body as if a CUDA GPU were present (see the module docstring)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    original_new = nn.Parameter.__new__

    def parameter_new(cls, data=None, requires_grad=True):
        p = original_new(cls, data, requires_grad)
        return _flag(p) if on_cuda(data) else p

    monkeypatch.setattr(nn.Parameter, "__new__", staticmethod(parameter_new))
    with FakeCudaMode():
        yield
