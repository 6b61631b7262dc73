"""Trained quantization: k-means weight sharing with trainable centroids (Deep Compression, Sec. 3).

:func:`share_weights_` clusters the surviving (non-zero, unmasked) weights of every compressible
parameter (see :mod:`netsqueeze.nn.modules`) with 1-D k-means
(:class:`netsqueeze.core.kmeans1d.KMeans1D`) into ``k = 2 ** bits`` shared values -- 8 bits for
convolutions and 5 for every other weight by default, as in the paper -- and rewrites the layer
so that (shown for ``weight``; any parameter ``p`` gets ``p_centroids`` and ``p_index``, e.g.
``in_proj_weight_centroids`` or ``weight_ih_l0_index``; a Parameter tied under several names
gets one centroid Parameter and one index buffer, shared by all its modules):

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

from netsqueeze.core.ecsq import ECSQ1D, label_entropy
from netsqueeze.core.kmeans1d import KMeans1D, check_iteration_params
from netsqueeze.nn import prune as _prune
from netsqueeze.nn.modules import (
    FilterFn,
    compressible_layers,
    layer_kind,
    resolve_target,
    target_name,
)
from netsqueeze.nn.prune import check_patterns, match_pattern, strip_
from netsqueeze.nn.train import labels_tensor, to_tensor

__all__ = [
    "CENTROIDS",
    "INDEX",
    "INITS",
    "METHODS",
    "LayerCodebook",
    "LayerSharing",
    "ShareConfig",
    "ShareReport",
    "apply_codebooks_",
    "codebooks",
    "fisher_importance",
    "is_shared",
    "share_biases_",
    "share_layer_",
    "share_report",
    "share_weights_",
    "shared_params",
    "strip_",
]

#: Name of the centroid Parameter of a layer sharing weights.
CENTROIDS = "weight_centroids"
#: Name of the cluster-index buffer of a layer sharing weights.
INDEX = "weight_index"
INITS = ("linear", "density", "random", "k-means++")
METHODS = ("lloyd", "exact", "auto", "ecsq")
#: What ``ShareConfig.importance`` may name (estimated by the compress pipeline).
IMPORTANCES = ("fisher",)
MAX_BITS = 16
_BITS_ATTR = "_netsqueeze_bits"
_TIED_ATTR = "_netsqueeze_tied"


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
        Index bits of every other weight: linear layers (the paper: 5), embeddings, attention and
        RNN weights, raw Parameters.
    bits : int or dict {pattern: int}, optional
        An int overrides both defaults for every layer; a dict overrides them per layer, a key
        being a layer's qualified name or an :mod:`fnmatch` pattern (an exact name wins, then the
        first matching pattern).
    init : {"linear", "density", "random", "k-means++"}
        Centroid initialisation. ``"linear"`` (the default) spaces them evenly between the
        smallest and largest weight -- the paper's finding: it keeps the few large weights, which
        matter most, represented.
    method : {"lloyd", "exact", "auto", "ecsq"}
        Lloyd iterations, or the exact optimum by dynamic programming; ``"ecsq"``:
        entropy-constrained quantisation (:class:`~netsqueeze.core.ecsq.ECSQ1D`), at most
        ``2 ** bits`` values chosen for distortion + ``lambda`` x index code length.
    random_state : int or None
        Seed of ``"random"`` and ``"k-means++"``.
    max_iter : int
    tol : float
        Lloyd's stopping rule (see :class:`~netsqueeze.core.kmeans1d.KMeans1D`).
    target_bits : float, optional
        ``method="ecsq"``: rate of every layer's indices (zero-order entropy, bits per kept
        weight); ``lambda`` is found per layer by bisection.
    ecsq_lambda : float, optional
        ``method="ecsq"`` without ``target_bits``: the multiplier itself (0: weighted k-means).
    rate_delta : float >= 0, optional
        ``method="ecsq"``, instead of ``target_bits``: each layer's rate target is the rate of
        plain k-means (this config's ``init``, ``2 ** bits`` values) on its kept weights, minus
        this many bits per weight -- "this much cheaper than today's sharing", whatever the
        layer -- but never below half of k-means's rate, nor below 2 bits per weight (a
        layer whose k-means rate is lower keeps it: with 4 or fewer values there is too little
        to give up, and one bit of a two-value layer is all it has).
    importance : {"fisher"}, optional
        For the compress pipeline: estimate every weight's importance before sharing and cluster
        with it (:func:`fisher_importance`: squared gradients of the training loss, a diagonal
        Fisher estimate), so sensitive weights move less. ``share_weights_`` itself takes the
        estimate as its ``importance`` argument.
    bias_bits : int in [1, 16], optional
        Also share the biases of the shared layers: each layer's bias becomes ``2 **
        bias_bits`` 1-D k-means centres (:func:`share_biases_`), applied by the compress
        pipeline after fine-tuning (the file then stores them with a codebook). None (the
        default): biases stay as trained.
    """

    conv_bits: int = 8
    fc_bits: int = 5
    bits: int | dict[str, int] | None = None
    init: str = "linear"
    method: str = "lloyd"
    random_state: int | None = 0
    max_iter: int = 300
    tol: float = 1e-6
    target_bits: float | None = None
    ecsq_lambda: float | None = None
    rate_delta: float | None = None
    importance: str | None = None
    bias_bits: int | None = None

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
        if self.rate_delta is not None:
            d = self.rate_delta
            if isinstance(d, bool) or not isinstance(d, numbers.Real) or not (
                    math.isfinite(d) and d >= 0):
                raise ValueError(f"rate_delta must be a number of bits >= 0, got {d!r}")
            if self.target_bits is not None or self.ecsq_lambda is not None:
                raise ValueError("give one of rate_delta, target_bits and ecsq_lambda")
        if self.method == "ecsq":
            ECSQ1D(2, lam=self.ecsq_lambda, target_bits=self.target_bits)._check_params()
        elif (self.target_bits is not None or self.ecsq_lambda is not None
              or self.rate_delta is not None):
            raise ValueError("target_bits, ecsq_lambda and rate_delta need method='ecsq'")
        if self.importance is not None and self.importance not in IMPORTANCES:
            raise ValueError(f"importance must be None or one of {', '.join(IMPORTANCES)}; "
                             f"got {self.importance!r}")
        if self.bias_bits is not None:
            _check_bits("bias_bits", self.bias_bits)
            if self.bias_bits < 1:
                raise ValueError(f"bias_bits must be None or in 1..16, got {self.bias_bits!r}")
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
            "target_bits": self.target_bits,
            "ecsq_lambda": self.ecsq_lambda,
            "rate_delta": self.rate_delta,
            "importance": self.importance,
            "bias_bits": self.bias_bits,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> ShareConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {"conv_bits", "fc_bits", "bits", "init", "method", "random_state", "max_iter",
                 "tol", "target_bits", "ecsq_lambda", "rate_delta", "importance",
                 "bias_bits"}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown ShareConfig field(s) {sorted(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**dict(d))


# --------------------------------------------------------------------------------------------
# the rewritten layer
# --------------------------------------------------------------------------------------------


def centroids_name(param: str) -> str:
    """``weight`` -> ``weight_centroids``: the centroid Parameter of a shared parameter."""
    return f"{param}_centroids"


def index_name(param: str) -> str:
    """``weight`` -> ``weight_index``: the cluster-index buffer of a shared parameter."""
    return f"{param}_index"


def _materialise(module: nn.Module, param: str = "weight") -> torch.Tensor:
    c = module._parameters[centroids_name(param)]
    index = module._buffers[index_name(param)]
    table = torch.cat([c, c.new_zeros(1)])
    return table.index_select(0, index.reshape(-1)).view(index.shape)


def _make_property(param: str) -> property:
    def fget(self):
        return _materialise(self, param)

    def fset(self, value):
        raise AttributeError(
            f"{param} of {type(self).__name__} is computed from {centroids_name(param)} and "
            f"{index_name(param)}; change those, or call netsqueeze.nn.share.strip_(model) first"
        )

    return property(fget, fset)


class _SharedWeight:
    """Mixin of the classes :func:`share_layer_` swaps in: ``<p> = cat([c, 0])[index]`` for
    every shared parameter ``p`` (``_netsqueeze_params``)."""

    _netsqueeze_base: type[nn.Module]
    _netsqueeze_params: tuple[str, ...] = ()

    def __reduce_ex__(self, protocol):
        state = self.__getstate__()
        if isinstance(self, nn.RNNBase):
            # computed weights are not graph leaves: copy the list without them, rebuild after
            state = dict(state)
            state["_flat_weights"] = [
                None if n in self._netsqueeze_params else w
                for n, w in zip(self._flat_weights_names, state["_flat_weights"], strict=True)
            ]
        return (_new_shared_module, (self._netsqueeze_base, self._netsqueeze_params), state)

    def __setstate__(self, state):
        super().__setstate__(state)
        if isinstance(self, nn.RNNBase):
            self._init_flat_weights()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
        error_msgs,
    ):
        for param in self._netsqueeze_params:
            c = self._parameters.get(centroids_name(param))
            incoming = state_dict.get(prefix + centroids_name(param))
            if (
                c is not None
                and isinstance(incoming, torch.Tensor)
                and incoming.dim() == 1
                and incoming.shape != c.shape
            ):
                c.data = c.new_empty(incoming.shape)  # another codebook size: the stored one
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        for param in self._netsqueeze_params:
            index = self._buffers.get(index_name(param))
            c = self._parameters.get(centroids_name(param))
            if index is not None and c is not None and index.numel():
                lo, hi = int(index.min()), int(index.max())
                if lo < 0 or hi > c.numel():
                    error_msgs.append(
                        f"{prefix}{index_name(param)} holds indices in [{lo}, {hi}] but "
                        f"{prefix}{centroids_name(param)} has {c.numel()} entries (index "
                        f"{c.numel()} marks pruned weights)"
                    )


_CLASSES: dict[tuple, type] = {}


def _shared_class(base: type[nn.Module], params: tuple[str, ...] = ("weight",)) -> type:
    params = tuple(sorted(set(params)))
    cls = _CLASSES.get((base, params))
    if cls is None:
        attrs = {"_netsqueeze_base": base, "_netsqueeze_params": params, "__module__": __name__}
        attrs.update({p: _make_property(p) for p in params})
        # RNNs run on the list _flat_weights, refreshed from the attributes on every forward
        # (RNNBase._update_flat_weights), so they run on these computed weights too
        suffix = "" if params == ("weight",) else "_" + "_".join(params)
        cls = type(f"Shared{base.__name__}{suffix}", (_SharedWeight, base), attrs)
        _CLASSES[(base, params)] = cls
    return cls


def _new_shared_module(base: type[nn.Module], params=("weight",)) -> nn.Module:
    """Unpickling / deepcopy: an empty instance of the shared class of ``base``."""
    cls = _shared_class(base, tuple(params))
    return cls.__new__(cls)


def is_shared(module: nn.Module, param: str | None = None) -> bool:
    """Whether ``module`` shares weights (of ``param``, default: of any parameter)."""
    if not isinstance(module, _SharedWeight):
        return False
    return param is None or param in module._netsqueeze_params


def shared_params(module: nn.Module) -> tuple[str, ...]:
    """Names of the parameters of ``module`` that share weights."""
    return module._netsqueeze_params if isinstance(module, _SharedWeight) else ()


def _set_class(module: nn.Module, params: tuple[str, ...]) -> None:
    base = module._netsqueeze_base if isinstance(module, _SharedWeight) else type(module)
    module.__class__ = _shared_class(base, params) if params else base


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


def _as_index(index, shape: tuple[int, ...], k: int, where: str, *,
              copy: bool = True) -> np.ndarray:
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
    return a.astype(np.int32, copy=copy)


def _install(module: nn.Module, param: str, cent: nn.Parameter, index: torch.Tensor,
             bits, tied_to: str | None) -> None:
    _replace_param(module, param, centroids_name(param), cent)
    module.register_buffer(index_name(param), index)
    _set_class(module, shared_params(module) + (param,))
    module.__dict__.setdefault(_BITS_ATTR, {})[param] = bits
    if tied_to is not None:
        module.__dict__.setdefault(_TIED_ATTR, {})[param] = tied_to


def share_layer_(
    module: nn.Module, centroids, index, *, bits: int | None = None, param: str = "weight",
    aliases=(), name: str | None = None, _owned_index: bool = False,
) -> nn.Module:
    """Make one parameter share weights, with given centroids and assignments.

    Parameters
    ----------
    module : nn.Module
        A module holding the Parameter ``param`` (pruned or not).
    centroids : array-like of shape (k,)
        Shared values (stored in the weight's dtype).
    index : array-like of int, the weight's shape
        Cluster of every weight in ``[0, k)``; ``k`` marks a pruned (zero) weight. Where the
        parameter was pruned by :func:`netsqueeze.nn.prune.prune_`, ``k`` is forced.
    bits : int, optional
        Index bits asked for, kept for reports.
    param : str, default "weight"
        The parameter's attribute name.
    aliases : iterable of (module, attribute)
        Other places holding the same Parameter (a tied weight): they get the same centroid
        Parameter and index buffer objects, so the tie survives.
    name : str, optional
        Target name of the parameter, recorded on the aliases ("tied to").

    Returns
    -------
    nn.Module
        ``module`` itself, now an instance of ``Shared<Class>``.
    """
    w = module._parameters.get(param)
    if w is None:
        raise ValueError(
            f"{type(module).__name__} has no {param} Parameter to share"
            + (" (it shares weights already; strip_ it first)" if is_shared(module, param)
               else "")
        )
    c = _host(centroids).astype(np.float64 if w.dtype == torch.float64 else np.float32)
    if c.ndim != 1:
        raise ValueError(f"centroids must be 1-D, got shape {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("centroids hold NaN or infinite values")
    # an index array the caller hands over (_owned_index: share_weights_'s own) is not copied
    idx = _as_index(index, tuple(w.shape), c.size, type(module).__name__,
                    copy=not _owned_index)
    old_mask = _prune._detach_pruning(module, param, zero=False)  # the sentinel takes over
    if old_mask is not None:  # a pruned weight is never resurrected
        idx[~old_mask.cpu().numpy()] = c.size
    cent = nn.Parameter(
        torch.from_numpy(c.copy()).to(device=w.device, dtype=w.dtype), requires_grad=w.requires_grad
    )
    index_t = torch.from_numpy(idx).to(w.device)
    _install(module, param, cent, index_t, bits, None)
    for amod, aparam in aliases:
        if amod is module and aparam == param:
            continue
        if amod._parameters.get(aparam) is not w:
            continue
        _prune._detach_pruning(amod, aparam, zero=False)
        _install(amod, aparam, cent, index_t, bits, name if name is not None else param)
    return module


def _strip_shared(module: nn.Module, memo: dict | None = None) -> bool:
    """Give every shared parameter of ``module`` back a plain Parameter equal to
    ``centroids[index]`` (one Parameter per centroid object, so ties survive)."""
    if not is_shared(module):
        return False
    memo = {} if memo is None else memo
    params = shared_params(module)
    plain = {}
    for param in params:
        c = module._parameters[centroids_name(param)]
        w = memo.get(id(c))
        if w is None:
            with torch.no_grad():
                # index_select made a new tensor already: no clone (one weight less)
                w = nn.Parameter(_materialise(module, param).detach(),
                                 requires_grad=c.requires_grad)
            memo[id(c)] = w
            memo.setdefault("_keep", []).append(c)  # ids stay unique while the memo lives
        plain[param] = w
    _set_class(module, ())
    for param, w in plain.items():
        _replace_param(module, centroids_name(param), param, w)
        del module._buffers[index_name(param)]
    module.__dict__.pop(_BITS_ATTR, None)
    module.__dict__.pop(_TIED_ATTR, None)
    return True


def _shared_mask(module: nn.Module, param: str = "weight") -> torch.Tensor | None:
    if not is_shared(module, param):
        return None
    return module._buffers[index_name(param)] != module._parameters[centroids_name(param)].numel()


def _tied(module: nn.Module) -> dict:
    return dict(module.__dict__.get(_TIED_ATTR, {})) if is_shared(module) else {}


_prune._MASK_SOURCES.append(_shared_mask)
_prune._STRIPPERS.append(_strip_shared)
_prune._MANAGED.append(lambda m: list(shared_params(m)))
_prune._TIED.append(_tied)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _as_share_config(config) -> ShareConfig:
    if config is None:
        return ShareConfig()
    if isinstance(config, ShareConfig):
        return config
    if _is_int(config):
        return ShareConfig(bits=int(config))
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config must be a ShareConfig, a dict or bits (int), got {type(config).__name__}"
        )
    return ShareConfig.from_dict(config)


def share_weights_(
    model: nn.Module,
    config: ShareConfig | Mapping | int | None = None,
    filter_fn: FilterFn | None = None,
    *,
    importance: Mapping[str, object] | None = None,
) -> nn.Module:
    """Share the compressible weights of ``model`` in place (k-means per parameter).

    Parameters
    ----------
    model : nn.Module
        Pruned with :func:`netsqueeze.nn.prune.prune_` or not.
    config : ShareConfig, dict or int, optional
        Default: ``ShareConfig()`` (8 bits for convolutions, 5 for every other weight, linear
        initialisation). An int ``b`` means ``ShareConfig(bits=b)``.
    filter_fn : callable ``(module, target_name) -> bool``, optional
        Narrows the targets (default: every floating >= 2-D Parameter not sharing weights
        already, see :func:`netsqueeze.nn.modules.compressible_layers`).
    importance : dict {layer name: tensor of the weight's shape}, optional
        Importance of every weight (e.g. squared gradients, a diagonal Fisher estimate): the
        clustering minimises the importance-weighted squared error, so sensitive weights move
        less. Layers not named get equal importance.

    Returns
    -------
    nn.Module
        ``model`` itself; see the module docstring for what each layer becomes. A Parameter
        tied under several names is clustered once and all its names share the same centroid
        Parameter.

    Raises
    ------
    ValueError
        For a bad config, a pattern that matches no target, or nothing to share.
    """
    config = _as_share_config(config)
    config.validate()
    layers = compressible_layers(model, filter_fn)
    if not layers:
        shared = [n for n, m in model.named_modules() if is_shared(m)]
        hint = (
            f" (layers {', '.join(map(repr, shared))} share weights already)"
            if shared
            else " (no floating-point parameter of 2 or more dimensions, after filter_fn)"
        )
        raise ValueError("no layer to share in this model" + hint)
    config.validate([ref.name for ref in layers])
    layers.reverse()
    while layers:
        # pop each reference: a weight is freed as soon as its layer shares weights, so a
        # large model never holds all its weights and all its index buffers at once
        ref = layers.pop()
        bits = config.bits_for(ref.name, ref.kind)
        w = ref.weight.detach().to(device="cpu", dtype=torch.float32).numpy()
        keep = w != 0
        old = _prune._module_mask(ref.module, ref.param)
        if old is not None:
            keep &= old.cpu().numpy()
        survivors = w[keep]
        if survivors.size == 0:
            centroids = np.zeros(0, np.float32)
            index = np.zeros(w.shape, np.int32)
        elif config.method == "ecsq" or (importance and ref.name in importance):
            centroids, labels = _cluster_weighted(config, bits, survivors, keep, importance,
                                                  ref.name)
            index = np.full(w.shape, centroids.size, np.int32)
            index[keep] = labels
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
        del w, keep, survivors, old
        share_layer_(ref.module, centroids, index, bits=bits, param=ref.param,
                     aliases=[(m, p) for _, m, p in ref.aliases], name=ref.name,
                     _owned_index=True)
        del ref, index
    return model


def _cluster_weighted(config, bits, survivors, keep, importance, name):
    """Centroids and labels of a layer's kept weights by ECSQ or importance-weighted k-means."""
    h = None
    if importance and name in importance:
        t = importance[name]
        h = (t.detach().to("cpu", torch.float64).numpy() if torch.is_tensor(t)
             else np.asarray(t, np.float64))
        if h.shape != keep.shape:
            raise ValueError(f"importance[{name!r}] has shape {h.shape}, the weight {keep.shape}")
        h = h[keep]
        if not h.sum() > 0:
            h = None
    if config.method == "ecsq":
        target = config.target_bits
        if config.rate_delta is not None:
            km = KMeans1D(2**bits, init=config.init, max_iter=config.max_iter, tol=config.tol,
                          random_state=config.random_state).fit(survivors)
            rate = label_entropy(km.labels_)
            target = max(rate - float(config.rate_delta), rate / 2, min(rate, 2.0))
        est = ECSQ1D(2**bits, lam=config.ecsq_lambda, target_bits=target)
    else:
        est = KMeans1D(2**bits, init=config.init, method=config.method,
                       max_iter=config.max_iter, tol=config.tol,
                       random_state=config.random_state)
    est.fit(survivors, sample_weight=h)
    return est.centroids_.astype(np.float32), est.labels_


def fisher_importance(model: nn.Module, x, y, *, batches: int = 20, batch_size: int = 256,
                      seed: int = 0, filter_fn: FilterFn | None = None,
                      device=None) -> dict[str, torch.Tensor]:
    """Squared gradients of the cross-entropy w.r.t. every compressible weight, summed over
    ``batches`` random batches of the training data: a diagonal Fisher estimate of each
    weight's importance, for ``share_weights_(..., importance=...)``.

    ``x`` / ``y``: training inputs and integer labels (numpy arrays or tensors; uint8 images
    are scaled as :func:`netsqueeze.nn.train.to_tensor` does). The model is evaluated in
    ``eval()`` mode and left there, its gradients cleared.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an integer >= 1, got {batches!r}")
    layers = compressible_layers(model, filter_fn)
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    out = {ref.name: torch.zeros_like(ref.weight) for ref in layers}
    n = len(y)
    if n == 0:
        raise ValueError("fisher_importance needs training data; got none")
    g = torch.Generator().manual_seed(seed)
    model.eval()
    for _ in range(batches):
        idx = torch.randint(0, n, (batch_size,), generator=g)
        if torch.is_tensor(x):
            xb = x[idx.to(x.device)].to(device)
        else:
            xb = to_tensor(np.asarray(x)[idx.numpy()], device)
        yb = labels_tensor(y[idx.to(y.device)] if torch.is_tensor(y)
                           else np.asarray(y)[idx.numpy()], device)
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(xb), yb).backward()
        for ref in layers:
            grad = ref.weight.grad
            if grad is not None:
                out[ref.name] += grad.detach() ** 2
    model.zero_grad()
    return out


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


def _shared_items(model: nn.Module):
    """(target name, module, param) of every shared parameter, tied names left out."""
    for name, module in model.named_modules():
        tied = _tied(module)
        for param in shared_params(module):
            if param not in tied:
                yield target_name(name, param), module, param


def codebooks(model: nn.Module) -> dict[str, LayerCodebook]:
    """Centroids, indices and masks of every parameter sharing weights, by target name (a
    tied Parameter once, under its first name)."""
    out = {}
    for name, module, param in _shared_items(model):
        c = module._parameters[centroids_name(param)].detach().cpu().numpy().copy()
        index = module._buffers[index_name(param)].detach().cpu().numpy().astype(np.int32)
        out[name] = LayerCodebook(c, index, index != c.size)
    return out


def _places_of(model: nn.Module, tensor) -> list[tuple[nn.Module, str]]:
    return [(m, p) for m in model.modules() for p, v in m._parameters.items() if v is tensor]


def apply_codebooks_(model: nn.Module, books: Mapping[str, object], *,
                     bits: Mapping[str, int] | None = None) -> nn.Module:
    """Make parameters share weights with given codebooks (e.g. decoded from a file).

    Parameters
    ----------
    model : nn.Module
    books : mapping of target name to ``(centroids, index)`` or ``(centroids, index, mask)``
        As returned by :func:`codebooks`; with a mask, positions where it is False get the
        pruned sentinel whatever ``index`` says there. A tied Parameter's other names follow.
    bits : mapping of target name to int, optional
        The index bits to record for these targets (as :func:`share_report` reports them);
        default: those the parameter had, if it was sharing weights already.

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    for name, book in books.items():
        found = resolve_target(model, name)
        if found is None:
            layers = [target_name(n, p) for n, m in model.named_modules()
                      for p in list(m._parameters) + list(shared_params(m))
                      if not p.endswith("_centroids")]
            raise ValueError(
                f"apply_codebooks_: {name!r} is not a layer with a weight; layers: "
                + ", ".join(map(repr, layers))
            )
        module, param = found
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
        given = None if bits is None else bits.get(name)
        bits_now = None
        if is_shared(module, param):
            bits_now = module.__dict__.get(_BITS_ATTR, {}).get(param)
            cent = module._parameters[centroids_name(param)]
            places = [(m, p) for m in model.modules() for p in shared_params(m)
                      if m._parameters.get(centroids_name(p)) is cent]
            memo: dict = {}
            for m, _ in places:
                _strip_shared(m, memo)
        w = module._parameters[param]
        share_layer_(module, centroids, index, bits=given if given is not None else bits_now,
                     param=param, aliases=_places_of(model, w), name=name)
    return model


@dataclass
class LayerSharing:
    """One target of :func:`share_report`."""

    name: str
    kind: str
    bits: int
    k: int
    distinct: int
    weights: int
    kept: int
    param: str = "weight"
    type: str = ""
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "param": self.param,
            "aliases": list(self.aliases),
            "bits": self.bits,
            "k": self.k,
            "distinct": self.distinct,
            "weights": self.weights,
            "kept": self.kept,
        }


class ShareReport(list):
    """The list of :class:`LayerSharing` of :func:`share_report`, plus ``coverage``: every
    parameter name of the model with ``coverage`` "compressed", "dense" (and why) or "tied"."""

    coverage: list[dict]


def share_report(model: nn.Module) -> ShareReport:
    """Per parameter sharing weights: bits asked for, centroids used (``k``), distinct non-zero
    values of the weight, weights and surviving weights; ``.coverage`` lists every parameter."""
    out = ShareReport()
    aliases: dict[int, list[str]] = {}
    first: set[int] = set()
    for key, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases.setdefault(id(p), []).append(key.removesuffix("_centroids"))
        first.add(id(p))
    for name, module, param in _shared_items(model):
        cent = module._parameters[centroids_name(param)]
        k = cent.numel()
        bits = module.__dict__.get(_BITS_ATTR, {}).get(param)
        if bits is None:
            bits = max(0, math.ceil(math.log2(k))) if k else 0
        with torch.no_grad():
            w = _materialise(module, param)
            distinct = int(torch.unique(w[w != 0]).numel())
        index = module._buffers[index_name(param)]
        out.append(
            LayerSharing(
                name=name,
                kind=layer_kind(module, param),
                bits=int(bits),
                k=int(k),
                distinct=distinct,
                weights=int(index.numel()),
                kept=int((index != k).sum()),
                param=param,
                type=type(module).__name__,
                aliases=tuple(aliases.get(id(cent), ())),
            )
        )
    out.coverage = _prune.pruning_report(model).coverage
    return out


def share_biases_(model: nn.Module, bits: int, filter_fn=None) -> int:
    """Replace the bias of every compressible layer by ``2 ** bits`` 1-D k-means centres.

    Linear initialisation, as for weights. A bias with at most ``2 ** bits`` elements is left
    as it is. The biases stay ordinary parameters (training moves them off the centres again:
    apply this after the last training). Returns the number of biases changed.
    """
    _check_bits("bits", bits)
    if bits < 1:
        raise ValueError(f"bits must be in 1..16, got {bits!r}")
    changed = 0
    seen: set[int] = set()
    modules = [ref.module for ref in compressible_layers(model, filter_fn)]
    modules += [m for name, m in model.named_modules()  # layers that share weights already
                if shared_params(m) and (filter_fn is None or filter_fn(m, name))]
    for module in modules:
        bias = getattr(module, "bias", None)
        if not isinstance(bias, torch.Tensor) or bias.numel() <= 2 ** bits or id(bias) in seen:
            continue
        seen.add(id(bias))
        v = bias.detach().double().cpu().numpy().reshape(-1)
        km = KMeans1D(2 ** bits, init="linear").fit(v)
        q = torch.from_numpy(km.centroids_[km.labels_]).reshape(bias.shape)
        with torch.no_grad():
            bias.copy_(q.to(device=bias.device, dtype=bias.dtype))
        changed += 1
    return changed
