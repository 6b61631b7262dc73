"""Finding the compressible parameters of any ``nn.Module``.

A *target* is one weight tensor netsqueeze prunes and shares: by default every floating-point
Parameter of 2 or more dimensions that a module of the model holds -- the ``weight`` of
Conv1d/2d/3d, ConvTranspose1d/2d/3d, Linear (incl. ``NonDynamicallyQuantizableLinear``),
Bilinear, Embedding and EmbeddingBag; ``in_proj_weight`` and ``q/k/v_proj_weight`` of
``nn.MultiheadAttention``; ``weight_ih_l*`` / ``weight_hh_l*`` (and ``weight_hr_l*``) of
RNN/LSTM/GRU; and any other >= 2-D Parameter (a raw ``nn.Parameter`` of a custom module).
Biases, normalisation layers and other 1-D tensors stay dense.

A target is named like a layer: the module's qualified name when the parameter is its
``weight`` (``"features.0"``, ``"fc1"``), else ``"<module>.<parameter>"``
(``"attn.in_proj_weight"``, ``"lstm.weight_ih_l0"``, ``"pos_embedding"`` for a raw parameter of
the root). Its *kind*
(``"conv"`` for convolutions and transposed convolutions, ``"fc"`` for every other) decides the
default bits (8 and 5, as in Deep Compression).

A Parameter reachable under several names (a language model whose decoder weight *is* its
embedding weight) is one target, named after its first occurrence; the other names are its
``aliases``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = [
    "DEFAULT_LAYER_TYPES",
    "LayerRef",
    "compressible_layers",
    "layer_kind",
    "param_coverage",
    "resolve_target",
    "target_name",
]

#: Layer types whose ``weight`` was compressed by default before every >= 2-D parameter was
#: (kept for callers that pass ``layer_types=DEFAULT_LAYER_TYPES`` to narrow the choice).
DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
)

FilterFn = Callable[[nn.Module, str], bool]


def target_name(module_name: str, param: str) -> str:
    """Name of the target ``param`` of module ``module_name`` (the module's name for
    ``weight``)."""
    if param == "weight":
        return module_name
    return f"{module_name}.{param}" if module_name else param


def _qualified(module_name: str, param: str) -> str:
    return f"{module_name}.{param}" if module_name else param


@dataclass(frozen=True)
class LayerRef:
    """One compressible parameter.

    Attributes
    ----------
    name : str
        Target name (see the module docstring).
    module : nn.Module
        The module holding the parameter.
    kind : str
        ``"conv"`` or ``"fc"``.
    param : str
        The parameter's attribute name on ``module`` (``"weight"``, ``"in_proj_weight"``, ...).
    key : str
        Qualified parameter name, as in ``model.state_dict()``.
    type : str
        The holding module's class name (``"Parameter"`` style entries use it too).
    aliases : tuple of (str, nn.Module, str)
        Other ``(qualified name, module, attribute)`` places holding the same Parameter.
    """

    name: str
    module: nn.Module
    kind: str
    param: str = "weight"
    key: str = ""
    type: str = ""
    aliases: tuple = field(default=(), compare=False)

    @property
    def weight(self) -> nn.Parameter:
        return self.module._parameters[self.param]

    @property
    def bias(self) -> nn.Parameter | None:
        return getattr(self.module, "bias", None) if self.param == "weight" else None


def layer_kind(module: nn.Module, param: str = "weight") -> str:
    """``"conv"`` for the weight of a convolution (or transposed convolution), else ``"fc"``."""
    if isinstance(module, nn.modules.conv._ConvNd) and param in ("weight", "weight_centroids"):
        return "conv"
    return "fc"


def _candidate(p) -> str | None:
    """None when ``p`` is a compressible parameter, else why it is left dense."""
    if not isinstance(p, torch.Tensor):
        return "not a tensor"
    if not p.is_floating_point():
        return f"{p.dtype} is not floating point"
    if p.dim() < 2:
        return f"{p.dim()}-D (biases, norms and other 1-D tensors stay dense)"
    return None


def compressible_layers(
    model: nn.Module,
    filter_fn: FilterFn | None = None,
    *,
    layer_types: tuple[type[nn.Module], ...] | None = None,
) -> list[LayerRef]:
    """The compressible parameters of ``model``, each once, in registration order.

    Parameters
    ----------
    model : nn.Module
    filter_fn : callable ``(module, target_name) -> bool``, optional
        Narrows the choice (torchao's convention); default: every floating >= 2-D Parameter.
    layer_types : tuple of module types, optional
        Only parameters of modules of these types (default: any module).

    Returns
    -------
    list of LayerRef
        A Parameter held under several names appears once, with the other names in
        ``aliases``; a parameter the filter drops is left out with its aliases.
    """
    seen: dict[int, int] = {}
    out: list[LayerRef] = []
    aliases: dict[int, list] = {}
    for mname, mod in model.named_modules(remove_duplicate=False):
        for pname, p in mod._parameters.items():
            if p is None or _candidate(p) is not None:
                continue
            key = _qualified(mname, pname)
            if id(p) in seen:
                if seen[id(p)] >= 0:
                    aliases.setdefault(id(p), []).append((key, mod, pname))
                continue
            name = target_name(mname, pname)
            keep = layer_types is None or isinstance(mod, layer_types)
            if keep and filter_fn is not None:
                keep = bool(filter_fn(mod, name))
            if not keep:
                seen[id(p)] = -1
                continue
            # the same module reached twice under two names yields the same (mod, pname)
            seen[id(p)] = len(out)
            out.append(LayerRef(name=name, module=mod, kind=layer_kind(mod, pname), param=pname,
                                key=key, type=type(mod).__name__))
    result = []
    for ref in out:
        extra = tuple(a for a in aliases.get(id(ref.weight), ()) if a[0] != ref.key)
        if extra:
            ref = LayerRef(ref.name, ref.module, ref.kind, ref.param, ref.key, ref.type, extra)
        result.append(ref)
    return result


def resolve_target(model: nn.Module, name: str) -> tuple[nn.Module, str] | None:
    """The ``(module, attribute)`` that target ``name`` designates, or None."""
    modules = dict(model.named_modules())
    mod = modules.get(name)
    if mod is not None and ("weight" in mod._parameters or "weight_centroids" in mod._parameters):
        return mod, "weight"
    mname, _, pname = name.rpartition(".")
    mod = modules.get(mname)
    if mod is None or not pname:
        return None
    if pname in mod._parameters or f"{pname}_centroids" in mod._parameters:
        return mod, pname
    return None


def param_coverage(model: nn.Module, filter_fn: FilterFn | None = None) -> list[dict]:
    """Why each parameter of ``model`` is (or is not) compressed, before any compression.

    Returns
    -------
    list of dict
        One per qualified parameter name (tied names included): ``name``, ``shape``,
        ``coverage`` ("compressed", "dense" or "tied"), ``target`` (target name when
        compressed), ``tied_to`` (the first name of the same Parameter) and ``reason``.
    """
    chosen = {id(r.weight): r for r in compressible_layers(model, filter_fn)}
    first: dict[int, str] = {}
    rows = []
    for key, p in model.named_parameters(remove_duplicate=False):
        row = {"name": key, "shape": list(p.shape), "coverage": "dense", "target": None,
               "tied_to": None, "reason": None}
        if id(p) in first:
            row["coverage"] = "tied"
            row["tied_to"] = first[id(p)]
            row["reason"] = f"the same Parameter as {first[id(p)]}"
        else:
            first[id(p)] = key
            ref = chosen.get(id(p))
            if ref is not None:
                row["coverage"] = "compressed"
                row["target"] = ref.name
            else:
                row["reason"] = _candidate(p) or "excluded by the filter"
        rows.append(row)
    return rows
