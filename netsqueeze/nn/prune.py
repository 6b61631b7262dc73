"""Magnitude pruning of any ``nn.Module``, with masks that survive training.

:func:`prune_` zeroes the smallest weights of the compressible parameters (every floating
Parameter of 2 or more dimensions: convolutions, linear layers, embeddings, attention and RNN
weights, raw Parameters; see :func:`netsqueeze.nn.modules.compressible_layers`) and records which
were zeroed in a boolean buffer ``<param>_mask`` beside each (``weight_mask`` for a layer's
weight; ``True`` keeps a weight), so the masks travel with ``state_dict()``. The Parameter object
itself is kept -- only its values change -- so an optimizer built before pruning still optimizes
the right tensors. A Parameter tied under several names is pruned once. Biases, normalisation
layers and other 1-D tensors are left alone (:func:`pruning_report` lists every parameter with
its coverage).

The masks are computed by :mod:`netsqueeze.core.prune` and keep every zero of the earlier mask:
iterative pruning is repeated calls, and a weight once pruned is never resurrected.

Keeping pruned weights exactly zero
-----------------------------------
Two mechanisms, each covering what the other cannot:

1. **A gradient hook** on the weight replaces the gradient by ``grad.masked_fill(~mask, 0)``.
   ``.grad`` is then exactly zero at pruned positions, so gradient clipping, logging and
   hand-written update loops (``w -= lr * w.grad``) never see the dead weights, and momentum or
   Adam moments built *after* pruning stay zero there.
2. **A global optimizer step post-hook**
   (:func:`torch.optim.optimizer.register_optimizer_step_post_hook`) re-applies the mask, after
   every ``optimizer.step()``, to the weights of pruned layers that this optimizer holds. This is
   what makes the hard cases exact: an optimizer whose momentum buffer or Adam moments were built
   *before* pruning keeps moving the pruned weights with zero gradient, and only re-masking after
   the step undoes that. The hook is global because the optimizer is usually created by someone
   else (see :func:`netsqueeze.nn.train.train`); it reads a weak registry of pruned modules, so it
   costs one set of parameter ids per step, does nothing when no pruned module is alive, and never
   keeps a module alive.

Re-masking uses ``masked_fill_`` rather than a multiplication, so pruned entries are ``+0.0`` bit
for bit (``-0.5 * 0`` would be ``-0.0``) and a NaN at a pruned position cannot survive.

A forward pre-hook was considered for re-masking (what ``torch.nn.utils.prune`` does) and not
used: writing into the weight in place during the forward pass bumps its version counter and
breaks gradient accumulation over several forward passes before one backward. The forward
pre-hook here only (re)installs the gradient hook and the registry entry when they are missing:
``copy.deepcopy`` and pickling drop tensor hooks but keep module hooks and buffers, so a copied
pruned model becomes fully guarded again on its first forward pass. A ``load_state_dict``
post-hook re-applies the mask after loading.

:func:`strip_` removes all of it (and the machinery of :mod:`netsqueeze.nn.share`), leaving a
plain model whose ``state_dict`` loads into a fresh instance of the architecture.

Examples
--------
>>> import torch
>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
>>> model = prune_(model, PruneConfig(sparsity=0.5))
>>> sorted(masks(model))
['0', '2']
>>> plain = strip_(model)
"""

from __future__ import annotations

import fnmatch
import math
import numbers
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from netsqueeze.core import prune as core_prune
from netsqueeze.nn.modules import (
    FilterFn,
    compressible_layers,
    layer_kind,
    resolve_target,
    target_name,
)

__all__ = [
    "SCHEDULE_KINDS",
    "SCOPES",
    "LayerPruning",
    "PruneConfig",
    "PruningReport",
    "SparsitySchedule",
    "apply_masks_",
    "effective_weights",
    "is_pruned",
    "masks",
    "prune_",
    "pruning_report",
    "strip_",
]

#: Name of the boolean mask buffer registered on every pruned module.
MASK_BUFFER = "weight_mask"
SCOPES = ("layer", "global")
SCHEDULE_KINDS = ("linear", "cubic")
_CRITERIA = ("sparsity", "quality", "threshold")


# --------------------------------------------------------------------------------------------
# name patterns (shared with netsqueeze.nn.share)
# --------------------------------------------------------------------------------------------


def match_pattern(patterns: Mapping[str, object], name: str):
    """The value of the pattern that applies to layer ``name``, or None.

    An exact name wins over every pattern; otherwise the first pattern (in the mapping's order)
    that matches ``name`` with :func:`fnmatch.fnmatchcase` wins.
    """
    if name in patterns:
        return patterns[name]
    for pattern, value in patterns.items():
        if fnmatch.fnmatchcase(name, pattern):
            return value
    return None


def _layer_list(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:40])
    return shown + (f", ... ({len(names)} in all)" if len(names) > 40 else "")


def check_patterns(patterns: Mapping[str, object], names: list[str], where: str) -> None:
    """Raise ``ValueError`` for a pattern that matches none of ``names``, listing the names."""
    for pattern in patterns:
        if pattern in names or any(fnmatch.fnmatchcase(n, pattern) for n in names):
            continue
        raise ValueError(
            f"{where}: pattern {pattern!r} matches no layer; the layers are "
            f"{_layer_list(names) or '(none)'}"
        )


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_value(field_name: str, value, *, fraction: bool, where: str) -> None:
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{where}{field_name} must be a finite number, got {value!r}")
    if fraction and not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{where}{field_name} must lie in [0, 1], got {value!r}")
    if not fraction and float(value) < 0:
        raise ValueError(f"{where}{field_name} must be >= 0, got {value!r}")


def _check_spec(field_name: str, spec, *, fraction: bool) -> None:
    """A float, or a non-empty mapping {pattern: float}."""
    if isinstance(spec, Mapping):
        if not spec:
            raise ValueError(
                f"{field_name} is an empty dict; give {{pattern: value}} pairs or a single number"
            )
        for pattern, value in spec.items():
            if not isinstance(pattern, str) or not pattern:
                raise ValueError(
                    f"{field_name}: patterns must be non-empty strings, got {pattern!r}"
                )
            _check_value(f"[{pattern!r}]", value, fraction=fraction, where=field_name)
    else:
        _check_value(field_name, spec, fraction=fraction, where="")


def _copy_spec(spec):
    return dict(spec) if isinstance(spec, Mapping) else spec


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------


@dataclass
class PruneConfig:
    """What to prune: exactly one criterion, per layer or over all layers.

    Each criterion is a number applied to every chosen layer, or a dict ``{pattern: number}``
    where a pattern is a layer's qualified name (as in ``model.named_modules()``) or an
    :mod:`fnmatch` pattern over it (``"features.*"``, ``"fc?"``). An exact name wins over the
    patterns, otherwise the first matching pattern wins; layers no pattern matches are not pruned
    (end the dict with ``"*"`` for a default).

    Parameters
    ----------
    sparsity : float in [0, 1] or dict, optional
        Target fraction of zeroed weights of each layer, counting weights pruned before.
    quality : float >= 0 or dict, optional
        Han et al. (2015): zero ``|w| < quality * std``, the standard deviation taken over the
        layer's surviving weights.
    threshold : float >= 0 or dict, optional
        Zero ``|w| < threshold``.
    scope : {"layer", "global"}
        ``"global"`` makes one magnitude cut over all chosen layers together, so that
        ``sparsity`` (a float) of all their weights is zeroed; layers then end up with different
        sparsities.
    """

    sparsity: float | dict[str, float] | None = None
    quality: float | dict[str, float] | None = None
    threshold: float | dict[str, float] | None = None
    scope: str = "layer"

    def __post_init__(self):
        self.sparsity = _copy_spec(self.sparsity)
        self.quality = _copy_spec(self.quality)
        self.threshold = _copy_spec(self.threshold)

    @property
    def criterion(self) -> str:
        """Name of the criterion given (``"sparsity"``, ``"quality"`` or ``"threshold"``)."""
        self.validate()
        return next(c for c in _CRITERIA if getattr(self, c) is not None)

    def validate(self, layer_names: list[str] | None = None) -> PruneConfig:
        """Raise ``ValueError`` naming the bad field or pattern; return self.

        Parameters
        ----------
        layer_names : list of str, optional
            The layers the config will be applied to; when given, every pattern must match one.
        """
        given = [c for c in _CRITERIA if getattr(self, c) is not None]
        if len(given) != 1:
            raise ValueError(
                "PruneConfig needs exactly one of sparsity, quality, threshold; got "
                + (", ".join(given) if given else "none")
            )
        crit = given[0]
        spec = getattr(self, crit)
        _check_spec(crit, spec, fraction=crit == "sparsity")
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {self.scope!r}")
        if self.scope == "global" and (crit != "sparsity" or isinstance(spec, Mapping)):
            raise ValueError(
                "scope='global' makes one magnitude cut over all layers and needs sparsity as a "
                f"single number; got {crit}={spec!r}. Use scope='layer' for per-layer values"
            )
        if layer_names is not None and isinstance(spec, Mapping):
            check_patterns(spec, list(layer_names), f"PruneConfig.{crit}")
        return self

    def value_for(self, name: str) -> float | None:
        """The criterion's value for layer ``name`` (None: the layer is not pruned)."""
        spec = getattr(self, self.criterion)
        return match_pattern(spec, name) if isinstance(spec, Mapping) else spec

    def to_dict(self) -> dict:
        return {
            "sparsity": _copy_spec(self.sparsity),
            "quality": _copy_spec(self.quality),
            "threshold": _copy_spec(self.threshold),
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> PruneConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(d) - {"sparsity", "quality", "threshold", "scope"}
        if unknown:
            raise ValueError(
                f"unknown PruneConfig field(s) {sorted(unknown)}; "
                "known: sparsity, quality, threshold, scope"
            )
        return cls(**dict(d))


@dataclass
class SparsitySchedule:
    """Target sparsity of iterative pruning at each step: ``sparsity = schedule(step)``.

    Step 0 gives ``initial``, step ``steps`` (and later) gives ``final``. ``"linear"`` moves at
    a constant rate; ``"cubic"`` (Zhu and Gupta, 2017) prunes fast first and slowly at the end:
    ``final + (initial - final) * (1 - step / steps) ** 3``.

    Parameters
    ----------
    final : float in [0, 1] or dict {pattern: float}
        Sparsity reached at the last step (per layer pattern with a dict, as in PruneConfig).
    steps : int >= 1
        Number of pruning rounds.
    initial : float in [0, 1]
        Sparsity at step 0, at most ``final``.
    kind : {"linear", "cubic"}
    scope : {"layer", "global"}
        Passed to the PruneConfig that :meth:`config` builds.

    Examples
    --------
    >>> s = SparsitySchedule(0.9, steps=3)
    >>> [round(s(k), 2) for k in range(4)]
    [0.0, 0.3, 0.6, 0.9]
    """

    final: float | dict[str, float]
    steps: int
    initial: float = 0.0
    kind: str = "linear"
    scope: str = "layer"

    def __post_init__(self):
        self.final = _copy_spec(self.final)

    def validate(self) -> SparsitySchedule:
        """Raise ``ValueError`` naming the bad field; return self."""
        if not isinstance(self.steps, numbers.Integral) or isinstance(self.steps, bool) or (
            self.steps < 1
        ):
            raise ValueError(f"steps must be an integer >= 1, got {self.steps!r}")
        _check_value("initial", self.initial, fraction=True, where="")
        _check_spec("final", self.final, fraction=True)
        finals = self.final.values() if isinstance(self.final, Mapping) else [self.final]
        for v in finals:
            if float(v) < float(self.initial):
                raise ValueError(
                    f"final sparsity {v!r} is below initial {self.initial!r}; pruning cannot "
                    "lower the sparsity (a pruned weight is never resurrected)"
                )
        if self.kind not in SCHEDULE_KINDS:
            raise ValueError(
                f"kind must be one of {', '.join(SCHEDULE_KINDS)}; got {self.kind!r}"
            )
        PruneConfig(sparsity=self.final, scope=self.scope).validate()
        return self

    def fraction(self, step: int) -> float:
        """How far along the schedule is at ``step``: 0.0 at step 0, 1.0 from ``steps`` on."""
        self.validate()
        if not isinstance(step, numbers.Integral) or isinstance(step, bool) or step < 0:
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        t = min(int(step), int(self.steps)) / int(self.steps)
        return t if self.kind == "linear" else 1.0 - (1.0 - t) ** 3

    def __call__(self, step: int) -> float | dict[str, float]:
        """Target sparsity at ``step`` (a dict when ``final`` is one)."""
        f = self.fraction(step)

        def at(final: float) -> float:
            if f >= 1.0:
                return final
            return min(max(self.initial + (final - self.initial) * f, 0.0), 1.0)

        if isinstance(self.final, Mapping):
            return {p: at(v) for p, v in self.final.items()}
        return at(self.final)

    def config(self, step: int) -> PruneConfig:
        """The PruneConfig of step ``step``: ``prune_(model, schedule.config(step))``."""
        return PruneConfig(sparsity=self(step), scope=self.scope)

    def to_dict(self) -> dict:
        return {
            "final": _copy_spec(self.final),
            "steps": self.steps,
            "initial": self.initial,
            "kind": self.kind,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> SparsitySchedule:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        unknown = set(d) - {"final", "steps", "initial", "kind", "scope"}
        if unknown:
            raise ValueError(
                f"unknown SparsitySchedule field(s) {sorted(unknown)}; "
                "known: final, steps, initial, kind, scope"
            )
        return cls(**dict(d))


# --------------------------------------------------------------------------------------------
# the machinery that keeps pruned weights at zero
# --------------------------------------------------------------------------------------------

_PRUNED: weakref.WeakSet[nn.Module] = weakref.WeakSet()
_step_hook_handle = None


_KEEP_CACHE = "_netsqueeze_keep"


def mask_buffer(param: str) -> str:
    """Name of the mask buffer of parameter ``param`` (``weight`` -> ``weight_mask``)."""
    return f"{param}_mask"


def _keep_factor(module: nn.Module, param: str, mask: torch.Tensor,
                 like: torch.Tensor) -> torch.Tensor:
    """The mask as 1.0 / 0.0 in ``like``'s dtype and device, cached until the mask changes.

    Every training step masks the gradient and the weight; a multiplication by a float mask is
    several times faster on the CPU than ``masked_fill`` with a boolean one.
    """
    key = (id(mask), mask.data_ptr(), mask._version, like.dtype, str(like.device))
    caches = module.__dict__.setdefault(_KEEP_CACHE, {})
    cached = caches.get(param)
    if cached is None or cached[0] != key:
        cached = (key, mask.to(device=like.device, dtype=like.dtype))
        caches[param] = cached
    return cached[1]


def _pruned_params(module: nn.Module) -> list[str]:
    """Parameters of ``module`` that :func:`prune_` pruned (those with a mask buffer)."""
    found = _find_keeper(module)
    if found is None:
        return []
    return [p for p in found[1].params if mask_buffer(p) in module._buffers]


def _after_optimizer_step(optimizer, args, kwargs) -> None:
    """Global optimizer step post-hook: re-zero the pruned weights this optimizer holds."""
    if not _PRUNED:
        return
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    with torch.no_grad():
        for module in list(_PRUNED):
            for param in _pruned_params(module):
                w = module._parameters.get(param)
                mask = module._buffers.get(mask_buffer(param))
                if w is not None and mask is not None and id(w) in held and (
                    mask.shape == w.shape
                ):
                    # x * 0 keeps the sign of x; adding +0.0 turns -0.0 into +0.0
                    w.mul_(_keep_factor(module, param, mask, w)).add_(0.0)


def _ensure_step_hook() -> None:
    global _step_hook_handle
    if _step_hook_handle is None:
        _step_hook_handle = register_optimizer_step_post_hook(_after_optimizer_step)


def _release_step_hook_if_unused() -> None:
    global _step_hook_handle
    if _step_hook_handle is not None and not _PRUNED:
        _step_hook_handle.remove()
        _step_hook_handle = None


class _GradMask:
    """Tensor hook on a pruned weight: zero the gradient at pruned positions."""

    __slots__ = ("module_ref", "param")

    def __init__(self, module: nn.Module, param: str):
        self.module_ref = weakref.ref(module)
        self.param = param

    def __call__(self, grad: torch.Tensor):
        module = self.module_ref()
        mask = None if module is None else module._buffers.get(mask_buffer(self.param))
        if mask is None or mask.shape != grad.shape:
            return None
        return grad * _keep_factor(module, self.param, mask, grad)


class _PruneKeeper:
    """Forward pre-hook of a pruned module; owns the gradient hooks on its pruned parameters.

    Copies (``copy.deepcopy``, pickling) keep this object and the names of the pruned
    parameters but not tensor hooks, so it reinstalls the gradient hooks and the registry entry
    on the first forward pass of the copy.
    """

    def __init__(self, params=()):
        self.params: list[str] = list(params)
        self._refs: dict[str, weakref.ref] = {}
        self._handles: dict[str, object] = {}

    def __getstate__(self):
        return {"params": list(self.params)}

    def __setstate__(self, state):
        self.__init__(state.get("params", ["weight"]))

    def __call__(self, module: nn.Module, args):
        for param in self.params:
            w = module._parameters.get(param)
            ref = self._refs.get(param)
            if w is not None and (ref is None or ref() is not w):
                self.guard(module)
                return

    def guard(self, module: nn.Module) -> None:
        """Hook the current parameters and register the module for the step post-hook."""
        self.unhook()
        for param in self.params:
            w = module._parameters.get(param)
            if w is not None:
                if w.requires_grad:
                    self._handles[param] = w.register_hook(_GradMask(module, param))
                self._refs[param] = weakref.ref(w)
        _PRUNED.add(module)
        _ensure_step_hook()

    def unhook(self) -> None:
        for handle in self._handles.values():
            handle.remove()
        self._handles = {}
        self._refs = {}


def _mask_after_load(module: nn.Module, incompatible_keys) -> None:
    """``load_state_dict`` post-hook: the loaded weights obey the (loaded) masks."""
    for param in _pruned_params(module):
        w = module._parameters.get(param)
        mask = module._buffers.get(mask_buffer(param))
        if w is not None and mask is not None and mask.shape == w.shape:
            with torch.no_grad():
                w.masked_fill_(~mask.to(w.device), 0.0)


def _find_keeper(module: nn.Module) -> tuple[int, _PruneKeeper] | None:
    for key, hook in module._forward_pre_hooks.items():
        if isinstance(hook, _PruneKeeper):
            return key, hook
    return None


def is_pruned(module: nn.Module, param: str = "weight") -> bool:
    """Whether :func:`prune_` (or :func:`apply_masks_`) pruned this module's ``param``."""
    return param in _pruned_params(module)


def _install_mask(module: nn.Module, keep: torch.Tensor, param: str = "weight", *,
                  owned: bool = False) -> None:
    """Make ``keep`` (bool, the parameter's shape) its mask, zero the parameter, guard it.

    ``owned=True``: ``keep`` is a fresh tensor nobody else holds, kept as the buffer without
    a copy (one byte per weight less at the peak of pruning a large model).
    """
    w = module._parameters[param]
    buf = mask_buffer(param)
    given = keep
    keep = keep.to(device=w.device, dtype=torch.bool)
    owned = owned or keep is not given  # .to() made a copy already
    found = _find_keeper(module)
    if found is not None and param in found[1].params and buf not in module._buffers:
        _detach_pruning(module, param, zero=False)  # its mask buffer was removed by hand
        found = _find_keeper(module)
    if found is None or param not in found[1].params:
        if hasattr(module, buf):
            raise ValueError(
                f"{type(module).__name__} already has an attribute {buf!r} that "
                "netsqueeze did not create (torch.nn.utils.prune?); remove it before pruning"
            )
        module.register_buffer(buf, keep if owned else keep.clone())
        if found is None:
            keeper = _PruneKeeper([param])
            module.register_forward_pre_hook(keeper)
            module.register_load_state_dict_post_hook(_mask_after_load)
        else:
            keeper = found[1]
            keeper.params.append(param)
    else:
        keeper = found[1]
        old = module._buffers[buf]
        module._buffers[buf] = keep & old.to(keep.device)  # a new tensor
    mask = module._buffers[buf]
    with torch.no_grad():
        w.masked_fill_(~mask, 0.0)
        if w.grad is not None:
            w.grad.masked_fill_(~mask, 0.0)
    keeper.guard(module)


def _detach_pruning(module: nn.Module, param: str | None = None, *,
                    zero: bool = True) -> torch.Tensor | None:
    """Remove the pruning of ``param`` (default: of every parameter) of one module; return its
    mask (None if not pruned; with ``param=None`` the mask of ``weight``)."""
    found = _find_keeper(module)
    if found is None:
        return None
    key, keeper = found
    params = list(keeper.params) if param is None else [param]
    result = None
    for p in params:
        if p not in keeper.params:
            continue
        mask = module._buffers.get(mask_buffer(p))
        w = module._parameters.get(p)
        if zero and mask is not None and w is not None and mask.shape == w.shape:
            with torch.no_grad():
                w.masked_fill_(~mask.to(w.device), 0.0)
        module._buffers.pop(mask_buffer(p), None)
        keeper.params.remove(p)
        module.__dict__.get(_KEEP_CACHE, {}).pop(p, None)
        if param is not None or p == "weight":
            result = mask
    keeper.unhook()
    if keeper.params:
        keeper.guard(module)
        return result
    del module._forward_pre_hooks[key]
    module._forward_pre_hooks_with_kwargs.pop(key, None)
    for k in [k for k, h in module._load_state_dict_post_hooks.items() if h is _mask_after_load]:
        del module._load_state_dict_post_hooks[k]
    module.__dict__.pop(_KEEP_CACHE, None)
    _PRUNED.discard(module)
    _release_step_hook_if_unused()
    return result


# --------------------------------------------------------------------------------------------
# extensions: other techniques (weight sharing) plug their masks and strip into these functions
# --------------------------------------------------------------------------------------------

#: Functions ``(module, param) -> bool tensor or None`` giving the keep-mask of a parameter
#: that another technique (weight sharing) manages.
_MASK_SOURCES: list[Callable[[nn.Module, str], torch.Tensor | None]] = []
#: Functions ``(module, memo) -> bool`` that strip another technique's machinery from a module
#: and say whether there was any; ``memo`` (a dict shared over one strip_) keeps ties.
_STRIPPERS: list[Callable[[nn.Module, dict], bool]] = []
#: Functions ``module -> list of parameter names`` the technique manages (for reports); a
#: name is the original parameter's (``weight``), not the technique's own tensors.
_MANAGED: list[Callable[[nn.Module], list[str]]] = []
#: Functions ``module -> {param: target name}`` of parameters tied to another target.
_TIED: list[Callable[[nn.Module], dict]] = []


def _module_mask(module: nn.Module, param: str = "weight") -> torch.Tensor | None:
    if is_pruned(module, param):
        return module._buffers[mask_buffer(param)]
    for source in _MASK_SOURCES:
        m = source(module, param)
        if m is not None:
            return m
    return None


def _managed_params(module: nn.Module) -> list[str]:
    out = []
    for source in _MANAGED:
        out.extend(source(module))
    return out


def _tied_params(module: nn.Module) -> dict:
    out = {}
    for source in _TIED:
        out.update(source(module))
    return out


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def _weights_numpy(w: torch.Tensor) -> np.ndarray:
    return w.detach().to(device="cpu", dtype=torch.float32).numpy()


def _shared_names(model: nn.Module) -> list[str]:
    return [target_name(n, p) for n, m in model.named_modules() for p in _managed_params(m)]


def _as_prune_config(config) -> PruneConfig:
    if isinstance(config, PruneConfig):
        return config
    if _is_real(config):
        return PruneConfig(sparsity=float(config))
    if not isinstance(config, Mapping):
        raise TypeError(
            f"config must be a PruneConfig, a dict or a sparsity (float), got "
            f"{type(config).__name__}"
        )
    return PruneConfig.from_dict(config)


def prune_(
    model: nn.Module,
    config: PruneConfig | Mapping | float,
    filter_fn: FilterFn | None = None,
) -> nn.Module:
    """Prune the compressible weights of ``model`` in place.

    Parameters
    ----------
    model : nn.Module
    config : PruneConfig, dict or float
        What to prune (a dict goes through :meth:`PruneConfig.from_dict`; a float ``s`` means
        ``PruneConfig(sparsity=s)``).
    filter_fn : callable ``(module, target_name) -> bool``, optional
        Narrows the targets (default: every floating >= 2-D Parameter, see
        :func:`netsqueeze.nn.modules.compressible_layers`).

    Returns
    -------
    nn.Module
        ``model`` itself: its weights hold exact zeros at pruned positions, each pruned
        parameter ``p`` has a ``<p>_mask`` buffer on its module (bool, the parameter's shape and
        device; ``weight_mask`` for a layer's weight), and pruned weights stay zero through
        training (see the module docstring). A Parameter tied under several names is pruned
        once (its mask lives on the module of its first name).

    Raises
    ------
    ValueError
        For a bad config, a pattern that matches no target, or a model with nothing to prune.
    """
    config = _as_prune_config(config)
    config.validate()
    layers = compressible_layers(model, filter_fn)
    if not layers:
        shared = _shared_names(model)
        hint = (
            f" (layers {_layer_list(shared)} share weights already: prune before "
            "share_weights_, or strip_ first)"
            if shared
            else " (no floating-point parameter of 2 or more dimensions, after filter_fn)"
        )
        raise ValueError("no layer to prune in this model" + hint)
    names = [ref.name for ref in layers]
    config.validate(names)
    crit = config.criterion
    weights = {ref.name: _weights_numpy(ref.weight) for ref in layers}
    olds = {
        ref.name: module_mask.cpu().numpy()
        for ref in layers
        if (module_mask := _module_mask(ref.module, ref.param)) is not None
    }
    if config.scope == "global":
        new = core_prune.global_sparsity_masks(weights, float(config.sparsity), masks=olds)
    else:
        rule = {
            "sparsity": core_prune.sparsity_mask,
            "quality": core_prune.std_mask,
            "threshold": core_prune.threshold_mask,
        }[crit]
        new = {}
        for name in names:
            value = config.value_for(name)
            if value is not None:
                new[name] = rule(weights[name], float(value), mask=olds.get(name))
    for ref in layers:
        if ref.name in new:
            # the per-layer rules return new arrays (never an old mask itself): the buffer
            # can hold one without a copy; global masks are views of one array, copied apart
            keep = torch.from_numpy(np.ascontiguousarray(new.pop(ref.name)))
            _install_mask(ref.module, keep, ref.param, owned=config.scope != "global")
            del keep
    return model


def _targets_with_weights(model: nn.Module) -> list[str]:
    return [target_name(n, p) for n, m in model.named_modules() for p, v in m._parameters.items()
            if v is not None and v.dim() >= 1]


def apply_masks_(model: nn.Module, masks: Mapping[str, torch.Tensor | np.ndarray]) -> nn.Module:
    """Prune ``model`` in place with given masks, e.g. read back from a pruned ``state_dict``.

    Parameters
    ----------
    model : nn.Module
    masks : mapping of target name to bool array of the parameter's shape
        ``True`` keeps a weight. Zeros of a mask already on the parameter stay zero. A target
        name is a layer's name for its ``weight``, else ``"<layer>.<parameter>"``.

    Returns
    -------
    nn.Module
        ``model`` itself.

    Examples
    --------
    To load a pruned checkpoint into a fresh model, attach its masks first::

        sd = torch.load(path)
        apply_masks_(model, {k.removesuffix(".weight_mask"): v for k, v in sd.items()
                             if k.endswith(".weight_mask")})
        model.load_state_dict(sd)
    """
    for name, keep in masks.items():
        found = resolve_target(model, name)
        w = None if found is None else found[0]._parameters.get(found[1])
        if w is None:
            raise ValueError(
                f"apply_masks_: {name!r} is not a layer with a weight Parameter; layers: "
                f"{_layer_list(_targets_with_weights(model))}"
            )
        module, param = found
        t = torch.as_tensor(np.asarray(keep) if not isinstance(keep, torch.Tensor) else keep)
        if tuple(t.shape) != tuple(w.shape):
            raise ValueError(
                f"apply_masks_: mask of {name!r} has shape {tuple(t.shape)} but its weight has "
                f"shape {tuple(w.shape)}"
            )
        _install_mask(module, t.to(torch.bool), param)
    return model


def _mask_items(model: nn.Module) -> Iterator[tuple[str, nn.Module, str, torch.Tensor]]:
    """(target name, module, parameter, keep-mask) of every pruned or shared parameter."""
    for name, module in model.named_modules():
        tied = _tied_params(module)
        params = list(dict.fromkeys(_pruned_params(module) + _managed_params(module)))
        for param in params:
            if param in tied:
                continue
            m = _module_mask(module, param)
            if m is not None:
                yield target_name(name, param), module, param, m


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Keep-masks of the pruned (and weight-shared) parameters, by target name.

    Returns
    -------
    dict of str to bool tensor of the parameter's shape (a copy; ``True`` keeps a weight)
    """
    return {name: m.detach().clone() for name, _, _, m in _mask_items(model)}


def strip_(model: nn.Module) -> nn.Module:
    """Remove netsqueeze's pruning and weight-sharing machinery; keep the weights' values.

    Pruned layers keep their Parameters (the same objects) with exact zeros; parameters
    sharing weights (:func:`netsqueeze.nn.share.share_weights_`) get a plain Parameter equal
    to ``centroids[index]`` -- one Parameter for all the names of a tied weight, so ties
    survive. All masks, indices, centroids and hooks go, so the ``state_dict`` loads into a
    fresh instance of the architecture with ``strict=True``.

    Returns
    -------
    nn.Module
        ``model`` itself.
    """
    memo: dict = {}
    for module in list(model.modules()):
        _detach_pruning(module)
        for strip in _STRIPPERS:
            strip(module, memo)
    return model


@dataclass
class LayerPruning:
    """One target of a :class:`PruningReport`."""

    name: str
    kind: str
    shape: tuple[int, ...]
    weights: int
    kept: int
    nonzero: int
    pruned: bool
    param: str = "weight"
    type: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def sparsity(self) -> float:
        """Fraction of the weights the mask removed."""
        return 1.0 - self.kept / self.weights if self.weights else 0.0

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "param": self.param,
            "aliases": list(self.aliases),
            "shape": list(self.shape),
            "weights": self.weights,
            "kept": self.kept,
            "nonzero": self.nonzero,
            "pruned": self.pruned,
            "sparsity": self.sparsity,
        }


@dataclass
class PruningReport:
    """Per-target counts of a (possibly pruned) model.

    Attributes
    ----------
    layers : list of LayerPruning
        Every compressible parameter, pruned or not (``kept`` counts the mask's ``True``
        entries, ``nonzero`` the weight's non-zero values).
    left_alone : list of str
        Parameters pruning does not touch: biases, normalisation, weights outside the filter
        (names tied to a compressed parameter are not listed: see ``coverage``).
    coverage : list of dict
        Every parameter name of the model: ``name``, ``shape``, ``coverage`` ("compressed",
        "dense" or "tied"), ``target``, ``tied_to``, ``reason`` (why dense, or the tie).
    """

    layers: list[LayerPruning] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    coverage: list[dict] = field(default_factory=list)

    @property
    def weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def kept(self) -> int:
        return sum(layer.kept for layer in self.layers)

    @property
    def sparsity(self) -> float:
        return 1.0 - self.kept / self.weights if self.weights else 0.0

    def to_dict(self) -> dict:
        return {
            "layers": [layer.to_dict() for layer in self.layers],
            "left_alone": list(self.left_alone),
            "coverage": [dict(c) for c in self.coverage],
            "weights": self.weights,
            "kept": self.kept,
            "sparsity": self.sparsity,
        }


def _report_layers(model: nn.Module, filter_fn):
    """(target, module, kind, param, value tensor, type, alias names) of every reported
    parameter, in registration order."""
    chosen = {(id(ref.module), ref.param): ref for ref in compressible_layers(model, filter_fn)}
    alias_of: dict[int, list[str]] = {}
    first: dict[int, str] = {}
    for key, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            alias_of.setdefault(id(p), []).append(key)
        else:
            first[id(p)] = key
    for name, module in model.named_modules():
        tied = _tied_params(module)
        managed = [p for p in _managed_params(module) if p not in tied]
        pruned = _pruned_params(module)
        for param in list(module._parameters):
            if (id(module), param) in chosen or param in pruned:
                w = module._parameters[param]
                aliases = tuple(alias_of.get(id(w), ()))
                yield (target_name(name, param), module, layer_kind(module, param), param,
                       w.detach(), type(module).__name__, aliases, [])
        for param in managed:
            w = getattr(module, param).detach()
            cent = module._parameters.get(f"{param}_centroids")
            aliases = tuple(alias_of.get(id(cent), ()))
            yield (target_name(name, param), module, layer_kind(module, param), param, w,
                   type(module).__name__, aliases, [])


def effective_weights(model: nn.Module) -> dict[str, tuple[str, torch.Tensor]]:
    """``{target name: (kind, weight)}`` of every compressible parameter (pruned, shared or
    plain), the weight detached as the model computes it; a tied Parameter once."""
    return {name: (kind, w) for name, _, kind, _, w, *_ in _report_layers(model, None)}


def pruning_report(model: nn.Module, filter_fn: FilterFn | None = None) -> PruningReport:
    """Weights, kept weights and sparsity of every compressible parameter; coverage of all.

    Parameters
    ----------
    model : nn.Module
    filter_fn : callable ``(module, target_name) -> bool``, optional
        The same filter given to :func:`prune_` (pruned parameters are reported either way).

    Returns
    -------
    PruningReport
        ``coverage`` lists every parameter name of the model: compressed (pruned or shared
        target), dense (why), or tied to another name.
    """
    report = PruningReport()
    covered: dict[int, str] = {}
    for name, module, kind, param, w, typ, aliases, _ in _report_layers(model, filter_fn):
        mask = _module_mask(module, param)
        n = int(w.numel())
        kept = n if mask is None else int(mask.sum())
        report.layers.append(
            LayerPruning(
                name=name,
                kind=kind,
                shape=tuple(int(s) for s in w.shape),
                weights=n,
                kept=kept,
                nonzero=int(torch.count_nonzero(w)),
                pruned=mask is not None and (is_pruned(module, param) or kept < n),
                param=param,
                type=typ,
                aliases=aliases,
            )
        )
        own = module._parameters.get(param)
        if own is None:
            own = module._parameters.get(f"{param}_centroids")
        covered[id(own)] = name
    first: dict[int, str] = {}
    for key, p in model.named_parameters(remove_duplicate=False):
        row = {"name": key, "shape": list(p.shape), "coverage": "dense", "target": None,
               "tied_to": None, "reason": None}
        if id(p) in first:
            row.update(coverage="tied", tied_to=first[id(p)],
                       reason=f"the same Parameter as {first[id(p)]}")
            if id(p) in covered:
                row["target"] = covered[id(p)]
        else:
            first[id(p)] = key
            if id(p) in covered:
                row["coverage"] = "compressed"
                row["target"] = covered[id(p)]
                if key.endswith("_centroids"):
                    row["reason"] = "shared weights: centroids of " + covered[id(p)]
            else:
                row["reason"] = (_dense_reason(p) or "excluded by the filter")
                report.left_alone.append(key)
        report.coverage.append(row)
    return report


def _dense_reason(p: torch.Tensor) -> str | None:
    if not p.is_floating_point():
        return f"{p.dtype} is not floating point"
    if p.dim() < 2:
        return f"{p.dim()}-D (biases, norms and other 1-D tensors stay dense)"
    return None
