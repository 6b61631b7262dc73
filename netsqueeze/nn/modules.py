"""Finding the compressible parameters of any ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

__all__ = ["DEFAULT_LAYER_TYPES", "LayerRef", "compressible_layers", "layer_kind"]

#: Layer types whose ``weight`` is compressed by default.
DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.Linear,
)

FilterFn = Callable[[nn.Module, str], bool]


@dataclass(frozen=True)
class LayerRef:
    """One compressible layer: its qualified name, the module, and ``"conv"`` or ``"fc"``."""

    name: str
    module: nn.Module
    kind: str

    @property
    def weight(self) -> nn.Parameter:
        return self.module.weight

    @property
    def bias(self) -> nn.Parameter | None:
        return getattr(self.module, "bias", None)


def layer_kind(module: nn.Module) -> str:
    """``"conv"`` for convolutions, ``"fc"`` for everything else (linear layers)."""
    return "conv" if isinstance(module, nn.modules.conv._ConvNd) else "fc"


def compressible_layers(
    model: nn.Module,
    filter_fn: FilterFn | None = None,
    *,
    layer_types: tuple[type[nn.Module], ...] = DEFAULT_LAYER_TYPES,
) -> list[LayerRef]:
    """The layers whose weights are compressed, in registration order.

    Parameters
    ----------
    model : nn.Module
    filter_fn : callable ``(module, qualified_name) -> bool``, optional
        Narrows the choice further (torchao's convention); default: every layer of
        ``layer_types``.
    layer_types : tuple of module types
        Default: Conv1d/2d/3d and Linear.

    Returns
    -------
    list of LayerRef
    """
    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, layer_types):
            continue
        if not isinstance(getattr(mod, "weight", None), nn.Parameter):
            continue
        if filter_fn is not None and not filter_fn(mod, name):
            continue
        out.append(LayerRef(name=name, module=mod, kind=layer_kind(mod)))
    return out
