"""Trained quantization: k-means weight sharing with trainable centroids (Deep Compression, Sec. 3).

:func:`share_weights_` clusters the surviving (non-zero, unmasked) weights of every compressible
layer with 1-D k-means (:class:`netsqueeze.core.kmeans1d.KMeans1D`) into ``k = 2 ** bits``
shared values -- 8 bits for convolutions and 5 for fully connected layers by default, as in the
paper -- and rewrites the layer so that:

* ``weight_centroids`` is an ``nn.Parameter`` of shape ``(k,)`` (the weight's dtype, float32
  normally), sorted ascending after clustering; ``k`` is smaller when the layer has fewer
  distinct surviving values;
* ``weight_index`` is an int32 buffer of the weight's shape: the cluster of every weight, and
  the sentinel ``k`` at pruned positions;
* ``module.weight`` is computed on every access as ``cat([centroids, 0])[index]`` (a read-only
  property), so pruned positions are exactly ``+0.0`` and belong to no cluster, and autograd
  gives each centroid the *sum* of its members' gradients (the paper's Fig. 3).

Fine-tuning therefore trains the centroids only, with the assignments fixed: build the optimizer
*after* sharing (``model.parameters()`` now yields ``weight_centroids`` instead of ``weight``).

How the layer is rewritten
--------------------------
The module's class is swapped for a subclass (``Linear`` becomes ``SharedLinear``, still an
instance of ``Linear``) whose ``weight`` is a property, the technique
``torch.nn.utils.parametrize`` uses. Compared with recomputing ``weight`` in a forward pre-hook
(``torch.nn.utils.prune``'s way) nothing stale or graph-attached is stored on the module, so the
weight is always current and differentiable, and ``copy.deepcopy``, pickling and ``.to(device)``
work at any time. Loading a ``state_dict`` whose codebook has another size resizes
``weight_centroids`` to it.

Pruning and sharing
-------------------
Sharing a layer pruned by :mod:`netsqueeze.nn.prune` subsumes its mask: pruned positions get the
sentinel index, and the pruning machinery (``weight_mask`` buffer, hooks) is removed -- the
sentinel keeps those positions exactly zero by construction, whatever the optimizer does.
:func:`netsqueeze.nn.prune.masks` and :func:`netsqueeze.nn.prune.pruning_report` still report the
mask (``weight_index != k``). Weights that are exactly zero in an unpruned layer count as pruned
too, so after sharing the zeros of a layer are exactly its sentinel positions.

Before saving a plain model call :func:`strip_` (the same function as
:func:`netsqueeze.nn.prune.strip_`): it materialises ``weight`` as a plain Parameter equal to
``centroids[index]``, so every value is bit for bit one of the float32 centroids or ``0.0``.
:func:`codebooks` hands the centroids and indices to an exporter without clustering again.

Examples
--------
>>> import torch
>>> from torch import nn
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
>>> model = share_weights_(model, ShareConfig(fc_bits=2))
>>> [len(book.centroids) for book in codebooks(model).values()]
[4, 4]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from netsqueeze.core.kmeans1d import KMeans1D, check_iteration_params
from netsqueeze.nn import prune as _prune
from netsqueeze.nn.modules import FilterFn, compressible_layers, layer_kind
from netsqueeze.nn.prune import check_patterns, match_pattern, strip_

__all__ = [
    "CENTROIDS",
    "INDEX",
    "INITS",
    "METHODS",
    "LayerCodebook",
    "LayerSharing",
    "ShareConfig",
    "apply_codebooks_",
    "codebooks",
    "is_shared",
    "share_layer_",
    "share_report",
    "share_weights_",
    "strip_",
]

#: Name of the centroid Parameter of a layer sharing weights.
CENTROIDS = "weight_centroids"
#: Name of the cluster-index buffer of a layer sharing weights.
INDEX = "weight_index"
INITS = ("linear", "density", "random", "k-means++")
METHODS = ("lloyd", "exact", "auto")
MAX_BITS = 16
_BITS_ATTR = "_netsqueeze_bits"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_bits(name: str, v) -> None:
    if not _is_int(v) or not 0 <= v <= MAX_BITS:
        raise ValueError(
            f"{name} must be an integer in [0, {MAX_BITS}] (k = 2**bits clusters), got {v!r}"
        )


@dataclass
class ShareConfig:
    """How to share weights.

    Parameters
    ----------
    conv_bits : int in [0, 16]
        Index bits of convolutions: ``2 ** conv_bits`` shared values (the paper: 8).
    fc_bits : int in [0, 16]
        Index bits of fully connected layers (the paper: 5).
    bits : int or dict {pattern: int}, optional
        An int overrides both defaults for every layer; a dict overrides them per layer, a key
        being a layer's qualified name or an :mod:`fnmatch` pattern (an exact name wins, then the
        first matching pattern).
    init : {"linear", "density", "random", "k-means++"}
        Centroid initialisation. ``"linear"`` (the default) spaces them evenly between the
        smallest and largest weight -- the paper's finding: it keeps the few large weights, which
        matter most, represented.
    method : {"lloyd", "exact", "auto"}
        Lloyd iterations, or the exact optimum by dynamic programming.
    random_state : int or None
        Seed of ``"random"`` and ``"k-means++"``.
    max_iter : int
    tol : float
        Lloyd's stopping rule (see :class:`~netsqueeze.core.kmeans1d.KMeans1D`).
    """

    conv_bits: int = 8
    fc_bits: int = 5
    bits: int | dict[str, int] | None = None
    init: str = "linear"
    method: str = "lloyd"
    random_state: int | None = 0
    max_iter: int = 300
    tol: float = 1e-6

    def __post_init__(self):
        if isinstance(self.bits, Mapping):
            self.bits = dict(self.bits)

    def validate(self, layer_names: list[str] | None = None) -> ShareConfig:
        """Raise ``ValueError`` naming the bad field or pattern; return self.

        Parameters
        ----------
        layer_names : list of str, optional
            The layers the config will be applied to; when given, every pattern of ``bits``
            must match one.
        """
        _check_bits("conv_bits", self.conv_bits)
        _check_bits("fc_bits", self.fc_bits)
        if isinstance(self.bits, Mapping):
            if not self.bits:
                raise ValueError("bits is an empty dict; give {pattern: bits} pairs or an int")
            for pattern, v in self.bits.items():
                if not isinstance(pattern, str) or not pattern:
                    raise ValueError(f"bits: patterns must be non-empty strings, got {pattern!r}")
                _check_bits(f"bits[{pattern!r}]", v)
            if layer_names is not None:
                check_patterns(self.bits, list(layer_names), "ShareConfig.bits")
        elif self.bits is not None:
            _check_bits("bits", self.bits)
        if self.init not in INITS:
            raise ValueError(f"init must be one of {', '.join(INITS)}; got {self.init!r}")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if self.random_state is not None and (not _is_int(self.random_state) or (
            self.random_state < 0
        )):
            raise ValueError(
                f"random_state must be None or an integer >= 0, got {self.random_state!r}"
            )
        check_iteration_params(self.max_iter, self.tol)
        return self

    def bits_for(self, name: str, kind: str) -> int:
        """Index bits of layer ``name`` of kind ``"conv"`` or ``"fc"``."""
        if isinstance(self.bits, Mapping):
            v = match_pattern(self.bits, name)
            if v is not None:
                return int(v)
        elif self.bits is not None:
            return int(self.bits)
        return int(self.conv_bits if kind == "conv" else self.fc_bits)

    def to_dict(self) -> dict:
        return {
            "conv_bits": self.conv_bits,
            "fc_bits": self.fc_bits,
            "bits": dict(self.bits) if isinstance(self.bits, Mapping) else self.bits,
            "init": self.init,
            "method": self.method,
            "random_state": self.random_state,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ShareConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {"conv_bits", "fc_bits", "bits", "init", "method", "random_state", "max_iter",
                 "tol"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown ShareConfig field(s) {sorted(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(d))


# --------------------------------------------------------------------------------------------
# the rewritten layer
# --------------------------------------------------------------------------------------------


def _materialise(module: nn.Module) -> torch.Tensor:
    c = module._parameters[CENTROIDS]
    index = module._buffers[INDEX]
    table = torch.cat([c, c.new_zeros(1)])
    return table.index_select(0, index.reshape(-1)).view(index.shape)


class _SharedWeight:
    """Mixin of the classes :func:`share_layer_` swaps in: ``weight = cat([c, 0])[index]``."""

    _netsqueeze_base: type[nn.Module]

    @property
    def weight(self) -> torch.Tensor:
        return _materialise(self)

    @weight.setter
    def weight(self, value) -> None:
        raise AttributeError(
            f"the weight of {type(self).__name__} is computed from {CENTROIDS} and {INDEX}; "
            "change those, or call netsqueeze.nn.share.strip_(model) first"
        )

    def __reduce_ex__(self, protocol):
        return (_new_shared_module, (self._netsqueeze_base,), self.__getstate__())

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
        error_msgs,
    ):
        c = self._parameters.get(CENTROIDS)
        incoming = state_dict.get(prefix + CENTROIDS)
        if (
            c is not None
            and isinstance(incoming, torch.Tensor)
            and incoming.dim() == 1
            and incoming.shape != c.shape
        ):
            c.data = c.new_empty(incoming.shape)  # another codebook size: take the stored one
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        index = self._buffers.get(INDEX)
        c = self._parameters.get(CENTROIDS)
        if index is not None and c is not None and index.numel():
            lo, hi = int(index.min()), int(index.max())
            if lo < 0 or hi > c.numel():
                error_msgs.append(
                    f"{prefix}{INDEX} holds indices in [{lo}, {hi}] but {prefix}{CENTROIDS} has "
                    f"{c.numel()} entries (index {c.numel()} marks pruned weights)"
                )


_CLASSES: dict[type, type] = {}


def _shared_class(base: type[nn.Module]) -> type[nn.Module]:
    cls = _CLASSES.get(base)
    if cls is None:
        cls = type(
            f"Shared{base.__name__}",
            (_SharedWeight, base),
            {"_netsqueeze_base": base, "__module__": __name__},
        )
        _CLASSES[base] = cls
    return cls


def _new_shared_module(base: type[nn.Module]) -> nn.Module:
    """Unpickling / deepcopy: an empty instance of the shared class of ``base``."""
    cls = _shared_class(base)
    return cls.__new__(cls)


def is_shared(module: nn.Module) -> bool:
    """Whether ``module`` shares weights (was rewritten by :func:`share_layer_`)."""
    return isinstance(module, _SharedWeight)


def _replace_param(module: nn.Module, old: str, new: str, value: nn.Parameter) -> None:
    """Put ``value`` under name ``new`` where ``old`` was in ``_parameters`` (order kept)."""
    items = [(new if k == old else k, value if k == old else v)
             for k, v in module._parameters.items()]
    module._parameters.clear()
    module._parameters.update(items)


def _host(a) -> np.ndarray:
    """An array from array-likes or tensors on any device (a GPU tensor is copied to the host)."""
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _as_index(index, shape: tuple[int, ...], k: int, where: str) -> np.ndarray:
    a = _host(index)
    if a.shape != shape:
        raise ValueError(f"{where}: index has shape {a.shape} but the weight has shape {shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{where}: index must hold integers, got dtype {a.dtype}")
    if a.size and (int(a.min()) < 0 or int(a.max()) > k):
        raise ValueError(
            f"{where}: index values must lie in [0, {k}] ({k} = len(centroids) marks a pruned "
            f"weight), got [{int(a.min())}, {int(a.max())}]"
        )
    return a.astype(np.int32)


def share_layer_(
    module: nn.Module, centroids, index, *, bits: int | None = None
) -> nn.Module:
    """Make one layer share weights, with given centroids and assignments.

    Parameters
    ----------
    module : nn.Module
        A layer with a ``weight`` Parameter (pruned or not).
    centroids : array-like of shape (k,)
        Shared values (stored in the weight's dtype).
    index : array-like of int, the weight's shape
        Cluster of every weight in ``[0, k)``; ``k`` marks a pruned (zero) weight. Where the
        layer was pruned by :func:`netsqueeze.nn.prune.prune_`, ``k`` is forced.
    bits : int, optional
        Index bits asked for, kept for reports.

    Returns
    -------
    nn.Module
        ``module`` itself, now an instance of ``Shared<Class>``.
    """
    w = module._parameters.get("weight")
    if w is None:
        raise ValueError(
            f"{type(module).__name__} has no weight Parameter to share"
            + (" (it shares weights already; strip_ it first)" if is_shared(module) else "")
        )
    c = _host(centroids).astype(np.float64 if w.dtype == torch.float64 else np.float32)
    if c.ndim != 1:
        raise ValueError(f"centroids must be 1-D, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("centroids hold NaN or infinite values")
    idx = _as_index(index, tuple(w.shape), c.size, type(module).__name__)
    old_mask = _prune._detach_pruning(module, zero=False)  # the sentinel takes over the mask
    if old_mask is not None:  # a pruned weight is never resurrected
        idx[~old_mask.cpu().numpy()] = c.size
    cent = nn.Parameter(
        torch.from_numpy(c.copy()).to(device=w.device, dtype=w.dtype), requires_grad=w.requires_grad
    )
    _replace_param(module, "weight", CENTROIDS, cent)
    module.register_buffer(INDEX, torch.from_numpy(idx).to(w.device))
    module.__class__ = _shared_class(type(module))
    module.__dict__[_BITS_ATTR] = bits
    return module


def _strip_shared(module: nn.Module) -> bool:
    """Give a shared layer back a plain ``weight`` Parameter equal to ``centroids[index]``."""
    if not is_shared(module):
        return False
    c = module._parameters[CENTROIDS]
    with torch.no_grad():
        w = _materialise(module).detach().clone()
    module.__class__ = module._netsqueeze_base
    _replace_param(module, CENTROIDS, "weight", nn.Parameter(w, requires_grad=c.requires_grad))
    del module._buffers[INDEX]
    module.__dict__.pop(_BITS_ATTR, None)
    return True


def _shared_mask(module: nn.Module) -> torch.Tensor | None:
    if not is_shared(module):
        return None
    return module._buffers[INDEX] != module._parameters[CENTROIDS].numel()


_prune._MASK_SOURCES.append(_shared_mask)
_prune._STRIPPERS.append(_strip_shared)
_prune._MANAGED.append(lambda m: [CENTROIDS] if is_shared(m) else [])


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def share_weights_(
    model: nn.Module,
    config: ShareConfig | Mapping | None = None,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Share the weights of ``model``'s compressible layers in place (k-means per layer).

    Parameters
    ----------
    model : nn.Module
        Pruned with :func:`netsqueeze.nn.prune.prune_` or not.
    config : ShareConfig or dict, optional
        Default: ``ShareConfig()`` (8 bits for convolutions, 5 for fully connected layers,
        linear initialisation).
    filter_fn : callable ``(module, qualified_name) -> bool``, optional
        Narrows the layers (default: every Conv1d/2d/3d and Linear layer not sharing weights
        already).

    Returns
    -------
    nn.Module
        ``model`` itself; see the module docstring for what each layer becomes.

    Raises
    ------
    ValueError
        For a bad config, a pattern that matches no layer, or no layer to share.
    """
    if config is None:
        config = ShareConfig()
    elif not isinstance(config, ShareConfig):
        if not isinstance(config, Mapping):
            raise TypeError(
                f"config must be a ShareConfig or a dict, got {type(config).__name__}"
            )
        config = ShareConfig.from_dict(config)
    config.validate()
    layers = compressible_layers(model, filter_fn)
    if not layers:
        shared = [n for n, m in model.named_modules() if is_shared(m)]
        hint = (
            f" (layers {', '.join(map(repr, shared))} share weights already)"
            if shared
            else " (Conv1d/2d/3d and Linear layers, narrowed by filter_fn)"
        )
        raise ValueError("no layer to share in this model" + hint)
    config.validate([ref.name for ref in layers])
    for ref in layers:
        bits = config.bits_for(ref.name, ref.kind)
        w = ref.weight.detach().to(device="cpu", dtype=torch.float32).numpy()
        keep = w != 0
        old = _prune._module_mask(ref.module)
        if old is not None:
            keep &= old.cpu().numpy()
        survivors = w[keep]
        if survivors.size == 0:
            centroids = np.zeros(0, np.float32)
            index = np.zeros(w.shape, np.int32)
        else:
            km = KMeans1D(
                2**bits,
                init=config.init,
                method=config.method,
                max_iter=config.max_iter,
                tol=config.tol,
                random_state=config.random_state,
            ).fit(survivors)
            centroids = km.centroids_.astype(np.float32)
            index = np.full(w.shape, centroids.size, np.int32)
            index[keep] = km.labels_
        share_layer_(ref.module, centroids, index, bits=bits)
    return model


class LayerCodebook(NamedTuple):
    """The codebook of one layer: ``weight == np.append(centroids, 0)[index]``.

    Attributes
    ----------
    centroids : ndarray of shape (k,), float32
    index : ndarray of int32, the weight's shape
        Cluster of every weight; ``k`` at pruned positions.
    mask : ndarray of bool, the weight's shape
        ``index != k``: the weights that survive.
    """

    centroids: np.ndarray
    index: np.ndarray
    mask: np.ndarray

    def decode(self) -> np.ndarray:
        """The weight, bit for bit as the layer computes it."""
        return np.append(self.centroids, self.centroids.dtype.type(0))[self.index]


def codebooks(model: nn.Module) -> dict[str, LayerCodebook]:
    """Centroids, indices and masks of every layer sharing weights, by qualified layer name."""
    out = {}
    for name, module in model.named_modules():
        if is_shared(module):
            c = module._parameters[CENTROIDS].detach().cpu().numpy().copy()
            index = module._buffers[INDEX].detach().cpu().numpy().astype(np.int32)
            out[name] = LayerCodebook(c, index, index != c.size)
    return out


def apply_codebooks_(model: nn.Module, books: Mapping[str, object]) -> nn.Module:
    """Make layers share weights with given codebooks (e.g. decoded from a file).

    Parameters
    ----------
    model : nn.Module
    books : mapping of layer name to ``(centroids, index)`` or ``(centroids, index, mask)``
        As returned by :func:`codebooks`; with a mask, positions where it is False get the
        pruned sentinel whatever ``index`` says there.

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    modules = dict(model.named_modules())
    for name, book in books.items():
        module = modules.get(name)
        if module is None or not (is_shared(module) or "weight" in module._parameters):
            layers = [n for n, m in modules.items()
                      if is_shared(m) or "weight" in m._parameters]
            raise ValueError(
                f"apply_codebooks_: {name!r} is not a layer with a weight; layers: "
                + ", ".join(map(repr, layers))
            )
        if not isinstance(book, tuple | list) or len(book) not in (2, 3):
            raise ValueError(
                f"apply_codebooks_: the codebook of {name!r} must be (centroids, index) or "
                "(centroids, index, mask)"
            )
        centroids = _host(book[0])
        index = _host(book[1])
        if len(book) == 3 and book[2] is not None:
            mask = _host(book[2]).astype(bool)
            if mask.shape != index.shape:
                raise ValueError(
                    f"apply_codebooks_: mask of {name!r} has shape {mask.shape} but the index "
                    f"has shape {index.shape}"
                )
            index = np.where(mask, index, centroids.size)
        bits = None
        if is_shared(module):
            bits = module.__dict__.get(_BITS_ATTR)
            _strip_shared(module)
        share_layer_(module, centroids, index, bits=bits)
    return model


@dataclass
class LayerSharing:
    """One layer of :func:`share_report`."""

    name: str
    kind: str
    bits: int
    k: int
    distinct: int
    weights: int
    kept: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "bits": self.bits,
            "k": self.k,
            "distinct": self.distinct,
            "weights": self.weights,
            "kept": self.kept,
        }


def share_report(model: nn.Module) -> list[LayerSharing]:
    """Per layer sharing weights: bits asked for, centroids used (``k``), distinct non-zero
    values of the weight, weights and surviving weights."""
    out = []
    for name, module in model.named_modules():
        if not is_shared(module):
            continue
        k = module._parameters[CENTROIDS].numel()
        bits = module.__dict__.get(_BITS_ATTR)
        if bits is None:
            bits = max(0, math.ceil(math.log2(k))) if k else 0
        with torch.no_grad():
            w = module.weight
            distinct = int(torch.unique(w[w != 0]).numel())
        index = module._buffers[INDEX]
        out.append(
            LayerSharing(
                name=name,
                kind=layer_kind(module),
                bits=int(bits),
                k=int(k),
                distinct=distinct,
                weights=int(index.numel()),
                kept=int((index != k).sum()),
            )
        )
    return out
