"""Compressed models on disk: ``save_compressed(model, path)`` / ``load_compressed(path)``.

:func:`save_compressed` writes every tensor of a model's ``state_dict`` -- parameters and
buffers (BatchNorm running statistics, ``num_batches_tracked``, ...) -- into one ``.nsq``
file (:mod:`netsqueeze.core.container`, specified in ``docs/FORMAT.md``):

* the ``weight`` of every convolution and linear layer is offered sparse positions (relative
  gaps of ``gap_bits`` bits with filler zeros, 8 bits for convolutions and 5 for fully
  connected layers by default, as in Deep Compression) and a codebook of its distinct values
  with Huffman-coded indices;
* every other tensor (biases, normalisation layers, buffers) is stored with dense positions.

The container then keeps, tensor by tensor, the smallest of the combinations it may use
(dense/sparse, raw/codebook, fixed-width/Huffman), counting every byte it writes. Decoding is
bit for bit (unless a narrower ``codebook_dtype`` is asked for), so :func:`load_compressed`
gives back a model whose tensors are ``torch.equal`` to the saved ones and whose outputs are
identical.

A model can be saved in any state: plain, pruned (:func:`netsqueeze.nn.prune.prune_`), sharing
weights (:func:`netsqueeze.nn.share.share_weights_`) or both, with the pruning and sharing
machinery attached or already stripped. The caller's model is never changed: a copy is
stripped, so the file holds the effective weights (pruned positions exactly ``+0.0``, shared
weights exactly their centroid) under the plain names that a fresh instance of the
architecture expects.

The JSON header holds ``format`` (``"netsqueeze-model"``), ``arch`` (a name of
``netsqueeze.models.MODELS``, or None), ``netsqueeze_version``, ``model_class`` (only when
``arch`` is not a known name), ``layers`` (``{layer name: "conv" or "fc"}``), the gap bits asked
for (``gap_bits`` by kind, or ``layer_gap_bits`` by layer when they differ within a kind),
``codebook_dtype`` (only when one was given) and the caller's ``meta``. The tensors are
stored in ``state_dict`` order, which is the order of the records; their names are not repeated
in the header, which is part of the file size.

:func:`compressed_report` accounts for the bytes of a file layer by layer, the way the paper's
tables do, against dense storage, ``torch.save`` + gzip, the entropy bound and the paper's
size formula.

Examples
--------
>>> import torch
>>> from netsqueeze.models import build
>>> from netsqueeze.nn.prune import PruneConfig, prune_
>>> model = prune_(build("lenet-300-100"), PruneConfig(sparsity=0.9))
>>> summary = save_compressed(model, "lenet.nsq")  # doctest: +SKIP
>>> restored = load_compressed("lenet.nsq")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import fnmatch
import functools
import gzip
import io
import json
import math
import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netsqueeze import __version__
from netsqueeze.core.container import NSQFile, encode_tensor, read_nsq, write_nsq
from netsqueeze.errors import FormatError
from netsqueeze.models import MODELS, build
from netsqueeze.nn import share as _share  # noqa: F401 - registers the weight-sharing stripper
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.prune import strip_

__all__ = [
    "DEFAULT_GAP_BITS",
    "HEADER_FORMAT",
    "compressed_report",
    "decoded_state",
    "infer_arch",
    "load_compressed",
    "plain_state_dict",
    "save_compressed",
]

#: ``format`` field of the JSON header of a model file.
HEADER_FORMAT = "netsqueeze-model"
#: Relative-index (gap) bits of sparse weights by layer kind, as in Deep Compression.
DEFAULT_GAP_BITS = {"conv": 8, "fc": 5}
_KINDS = ("conv", "fc")
_MAX_GAP_BITS = 16
#: Separator of the byte-plane records of a tensor (``"fc.bias#0"`` ... ``"fc.bias#3"``).
_PLANE_SEP = "#"
#: Name prefix of a record holding several dense tensors of one dtype, concatenated.
_PACK_PREFIX = "~packed."
#: Name of the group of packed dense tensors in :func:`compressed_report`.
PACKED_GROUP = "(dense tensors, packed)"
#: dtypes whose dense tensors may be stored as byte planes, and the numpy view they split.
_PLANE_DTYPES = {"float32": "<f4", "float16": "<f2", "float64": "<f8", "bfloat16": "<u2"}
#: Decoded bytes :func:`load_compressed` gathers before copying them into the model.
_LOAD_BATCH_BYTES = 64 << 20
_DENSE_COUNTS = "every tensor at its dtype's size, 4 bytes per float32 element, no headers"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _prefixed(layer: str, tensor: str) -> str:
    return f"{layer}.{tensor}" if layer else tensor


def _check_gap_value(where: str, v) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or not (
        1 <= int(v) <= _MAX_GAP_BITS
    ):
        raise ValueError(
            f"{where} must be an integer in 1..{_MAX_GAP_BITS} (or None for dense positions), "
            f"got {v!r}"
        )
    return int(v)


def _gap_plan(gap_bits, layers: dict[str, str]) -> dict[str, int | None]:
    """Gap bits of every compressible layer ``{name: kind}`` from the ``gap_bits`` argument."""
    if gap_bits is None:
        return {name: DEFAULT_GAP_BITS[kind] for name, kind in layers.items()}
    if not isinstance(gap_bits, Mapping):
        bits = _check_gap_value("gap_bits", gap_bits)
        return dict.fromkeys(layers, bits)
    by_kind = dict(DEFAULT_GAP_BITS)
    patterns: dict[str, int | None] = {}
    for key, value in gap_bits.items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"gap_bits: keys must be layer names, patterns, 'conv' or 'fc'; "
                             f"got {key!r}")
        checked = _check_gap_value(f"gap_bits[{key!r}]", value)
        if key in _KINDS:
            by_kind[key] = checked
        else:
            patterns[key] = checked
    names = list(layers)
    for pattern in patterns:
        if pattern not in layers and not fnmatch.filter(names, pattern):
            raise ValueError(
                f"gap_bits: pattern {pattern!r} matches no compressible parameter; the "
                f"layers are {', '.join(map(repr, names)) or '(none)'}"
            )
    plan = {}
    for name, kind in layers.items():
        if name in patterns:
            plan[name] = patterns[name]
            continue
        for pattern, value in patterns.items():
            if fnmatch.fnmatchcase(name, pattern):
                plan[name] = value
                break
        else:
            plan[name] = by_kind[kind]
    return plan


def _plan_header(plan: dict[str, int | None], layers: dict[str, str]) -> dict:
    """Header entries of the gap bits: ``gap_bits`` by kind when every layer of a kind has the
    same, else ``layer_gap_bits`` by layer name."""
    by_kind: dict[str, set] = {}
    for name, kind in layers.items():
        by_kind.setdefault(kind, set()).add(plan[name])
    if all(len(v) == 1 for v in by_kind.values()):
        return {"gap_bits": {kind: next(iter(v)) for kind, v in by_kind.items()}}
    return {"layer_gap_bits": dict(plan)}


def _requested_gap_bits(header: dict, layer: str, kind: str):
    by_layer = header.get("layer_gap_bits")
    if isinstance(by_layer, dict):
        return by_layer.get(layer)
    by_kind = header.get("gap_bits")
    return by_kind.get(kind) if isinstance(by_kind, dict) else None


def _to_numpy(name: str, value) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"state_dict entry {name!r} is a {type(value).__name__}, not a tensor; .nsq files "
            "store tensors only"
        )
    try:
        return value.detach().to("cpu").contiguous().numpy()
    except (TypeError, RuntimeError) as exc:
        raise ValueError(
            f"tensor {name!r} ({value.dtype}, layout {value.layout}) cannot be stored: {exc}; "
            "convert the model to a supported dtype first (e.g. model.float())"
        ) from None


def plain_state_dict(state_dict: Mapping[str, torch.Tensor]) -> OrderedDict:
    """A ``state_dict`` without netsqueeze's pruning and weight-sharing entries.

    What :func:`netsqueeze.nn.prune.strip_` does to a model, done to a ``state_dict`` (e.g. a
    checkpoint saved before stripping): ``<p>_centroids`` and ``<p>_index`` become
    ``<p> = cat([centroids, 0])[index]`` (in the centroids' place) for every shared parameter
    ``p`` (``fc.weight``, ``attn.in_proj_weight``, ``lstm.weight_ih_l0`` ...), and
    ``<p>_mask`` is dropped after zeroing ``p`` where it is False.

    Parameters
    ----------
    state_dict : mapping of str to Tensor

    Returns
    -------
    OrderedDict
        A new mapping; the input is not changed.
    """
    cent, index = "_centroids", "_index"
    out = OrderedDict()
    for key, value in state_dict.items():
        base = key[: -len(cent)] if key.endswith(cent) else None
        if (base and isinstance(value, torch.Tensor)
                and isinstance(state_dict.get(base + index), torch.Tensor)):
            c = value.detach()
            idx = state_dict[base + index].detach().to(device=c.device, dtype=torch.long)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) > c.numel()):
                raise ValueError(
                    f"{base}{index} holds indices outside [0, {c.numel()}]: not a valid "
                    "weight-sharing state"
                )
            table = torch.cat([c.reshape(-1), c.new_zeros(1)])
            out[base] = table[idx.reshape(-1)].reshape(idx.shape)
            continue
        if key.endswith(index) and isinstance(state_dict.get(key[: -len(index)] + cent),
                                              torch.Tensor):
            continue
        out[key] = value
    for key in [k for k in out if k.endswith("_mask")]:
        mask = out[key]
        wkey = key[: -len("_mask")]
        w = out.get(wkey)
        if (isinstance(w, torch.Tensor) and isinstance(mask, torch.Tensor)
                and mask.dtype == torch.bool and mask.shape == w.shape):
            out[wkey] = w.detach().masked_fill(~mask.to(w.device), 0)
            del out[key]
    return out


def infer_arch(model: nn.Module) -> str | None:
    """Name of the reference network (``netsqueeze.models.MODELS``) ``model`` is, or None."""
    for name, factory in MODELS.items():
        if isinstance(factory, type) and type(model) is factory:
            return name
    return None


def _compare(expected: Mapping[str, torch.Tensor], got: Mapping[str, tuple], *, what: str,
             got_label: str, expected_label: str, hint: str, error: type = FormatError) -> None:
    """Raise ``error`` naming the first tensor missing, unexpected, or of another shape/dtype.

    ``got`` maps names to ``(shape, torch dtype or None)``.
    """
    missing = [k for k in expected if k not in got]
    extra = [k for k in got if k not in expected]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise error(f"{what}: {got_label} has no tensor {missing[0]!r}{more}, which "
                    f"{expected_label} has; {hint}")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise error(f"{what}: {got_label} has a tensor {extra[0]!r}{more}, which "
                    f"{expected_label} lacks; {hint}")
    for k, t in expected.items():
        shape, dtype = got[k]
        if tuple(t.shape) != tuple(shape):
            raise error(
                f"{what}: tensor {k!r} has shape {tuple(shape)} in {got_label} but "
                f"{tuple(t.shape)} in {expected_label}; {hint}"
            )
        if dtype is not None and t.dtype != dtype:
            raise error(
                f"{what}: tensor {k!r} is {dtype} in {got_label} but {t.dtype} in "
                f"{expected_label}; convert the model (e.g. model.to({dtype})) before loading"
            )


# --------------------------------------------------------------------------------------------
# saving and loading
# --------------------------------------------------------------------------------------------


def _ties(model: nn.Module) -> dict[str, str]:
    """``{alias key: first key}`` of every tensor (parameter or buffer) of ``model`` that is
    reachable under several names of its ``state_dict``."""
    out = {}
    for named in (model.named_parameters, model.named_buffers):
        first: dict[int, str] = {}
        for key, t in named(remove_duplicate=False):
            if t is None:
                continue
            if id(t) in first:
                out[key] = first[id(t)]
            else:
                first[id(t)] = key
    return out


def _check_factory_spec(factory) -> str | None:
    if factory is None:
        return None
    if not isinstance(factory, str) or ":" not in factory or factory.startswith(":") or (
        factory.endswith(":")
    ):
        raise ValueError(
            f"factory must be a string 'pkg.module:callable' or 'path/to/file.py:callable', got "
            f"{factory!r}"
        )
    return factory


def _byte_planes(key: str, array: np.ndarray, entropy: str = "auto") -> list:
    """The tensor as one uint8 record per byte of its elements (little-endian order), each
    entropy coded by the container on its own (sign/exponent bytes are very predictable)."""
    le = array.astype(array.dtype.newbyteorder("<"), copy=False)
    b = le.reshape(-1).view(np.uint8).reshape(-1, array.dtype.itemsize)
    return [encode_tensor(f"{key}{_PLANE_SEP}{i}",
                          np.ascontiguousarray(b[:, i]).reshape(array.shape), gap_bits=None,
                          entropy=entropy)
            for i in range(array.dtype.itemsize)]


def _encode_dense(key: str, array: np.ndarray, dtype_name: str,
                  entropy: str = "auto") -> tuple[list, bool]:
    """Records of a tensor stored with dense positions: the container's choice, or its byte
    planes when those are smaller (counted with the header entry that names them)."""
    rec = encode_tensor(key, array, gap_bits=None, entropy=entropy)
    if dtype_name not in _PLANE_DTYPES or array.size < 16:
        return [rec], False
    planes = _byte_planes(key, array, entropy)
    header_cost = len(key) + len(dtype_name) + 6
    if sum(r.nbytes for r in planes) + header_cost < rec.nbytes:
        return planes, True
    return [rec], False


def _pack_dense(dtype_name: str, members: list, entropy: str = "auto"):
    """The records of a dtype's dense tensors: one record each, or -- when smaller, counting
    the header entry that lists them -- one record of them all concatenated (one codebook and
    one Huffman table, and one record's framing instead of many)."""
    separate = [r for *_, recs, _ in members for r in recs]
    if len(members) < 2:
        return separate, None
    cost = sum(r.nbytes for r in separate) + sum(
        len(key) + len(dtype_name) + 6 for key, _, _, split in members if split)
    name = f"{_PACK_PREFIX}{dtype_name}"
    flat = np.concatenate([a.reshape(-1) for _, a, _, _ in members])
    recs, split = _encode_dense(name, flat, dtype_name, entropy)
    listing = [[key, list(a.shape)] for key, a, _, _ in members]
    header_cost = len(json.dumps({name: listing}, separators=(",", ":"))) + (
        len(name) + len(dtype_name) + 6 if split else 0)
    if sum(r.nbytes for r in recs) + header_cost < cost:
        return recs, (name, listing, split)
    return separate, None


def _tensors_in(obj, depth: int = 0):
    """Tensors held in ``obj`` directly or inside dicts, lists and tuples (a few levels)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif depth < 3 and isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors_in(v, depth + 1)
    elif depth < 3 and isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors_in(v, depth + 1)


def _meta_like(t: torch.Tensor) -> torch.Tensor:
    m = torch.empty_like(t, device="meta")
    if isinstance(t, nn.Parameter):
        return nn.Parameter(m, requires_grad=t.requires_grad)
    return m


def _stripped_skeleton(model: nn.Module) -> nn.Module | None:
    """``strip_(copy.deepcopy(model))`` with every tensor on the meta device: the names,
    shapes, dtypes, ties and classes of the stripped model at no memory cost; None where the
    model holds tensors this cannot stand in for (then the caller copies it for real)."""
    memo: dict = {}
    for module in model.modules():
        found = list(module._parameters.values()) + list(module._buffers.values())
        for key, value in vars(module).items():
            if key not in ("_parameters", "_buffers", "_modules"):
                found.extend(_tensors_in(value))
        for t in found:
            if t is None or id(t) in memo:
                continue
            if type(t) not in (torch.Tensor, nn.Parameter) or t.layout != torch.strided or (
                t.is_quantized
            ):
                return None
            memo[id(t)] = _meta_like(t)
    try:
        return strip_(copy.deepcopy(model, memo))
    except (RuntimeError, NotImplementedError, TypeError):
        return None


def _plain_values(model: nn.Module) -> OrderedDict:
    """``{key: (callable, shape, dtype)}``: each callable computes one tensor of the stripped
    model's ``state_dict`` from ``model`` without changing it -- what
    :func:`plain_state_dict` gives, one tensor at a time (shared weights
    ``cat([centroids, 0])[index]``, pruned weights with exact zeros), so that saving a large
    model holds one materialised weight at a time."""
    state = model.state_dict()
    cent, index = "_centroids", "_index"
    out: OrderedDict = OrderedDict()

    def shared(c, idx):
        def value():
            with torch.no_grad():
                table = torch.cat([c.reshape(-1), c.new_zeros(1)])
                return table.index_select(0, idx.reshape(-1).to(c.device)).view(idx.shape)
        return value, tuple(idx.shape), c.dtype

    def masked(w, mask):
        def value():
            with torch.no_grad():
                return w.masked_fill(~mask.to(w.device), 0)
        return value, tuple(w.shape), w.dtype

    def plain(t):
        if not isinstance(t, torch.Tensor):
            return (lambda: t), None, None
        return (lambda: t), tuple(t.shape), t.dtype

    for key, v in state.items():
        base = key[: -len(cent)] if key.endswith(cent) else None
        if base and isinstance(v, torch.Tensor) and isinstance(state.get(base + index),
                                                               torch.Tensor):
            out[base] = shared(v, state[base + index])
        elif not (key.endswith(index) and isinstance(state.get(key[: -len(index)] + cent),
                                                     torch.Tensor)):
            out[key] = plain(v)
    for key in [k for k in out if k.endswith("_mask")]:
        mask = state.get(key)
        wkey = key[: -len("_mask")]
        w = state.get(wkey)
        if (isinstance(w, torch.Tensor) and isinstance(mask, torch.Tensor)
                and mask.dtype == torch.bool and mask.shape == w.shape and wkey in out):
            out[wkey] = masked(w, mask)
            del out[key]
    return out


def _stripped(model: nn.Module) -> tuple[nn.Module, OrderedDict]:
    """The stripped model (its structure) and ``{key: callable giving its tensor}``.

    The structure comes from a meta-device skeleton and the tensors are computed from
    ``model`` one at a time (:func:`_plain_values`); where the skeleton's keys, shapes or
    dtypes differ from those, a real ``strip_(copy.deepcopy(model))`` is used instead."""
    skeleton = _stripped_skeleton(model)
    if skeleton is not None:
        values = _plain_values(model)
        expected = skeleton.state_dict()
        if list(expected) == list(values) and all(
            isinstance(t, torch.Tensor) and (tuple(t.shape), t.dtype) == values[k][1:]
            for k, t in expected.items()
        ):
            return skeleton, OrderedDict((k, v[0]) for k, v in values.items())
    plain = strip_(copy.deepcopy(model))
    return plain, OrderedDict((k, functools.partial(_same, v))
                              for k, v in plain.state_dict().items())


def _same(value):
    return value


def save_compressed(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    gap_bits: int | Mapping[str, int | None] | None = None,
    codebook_dtype: str | None = None,
    meta: Mapping | None = None,
    factory: str | None = None,
    factory_args: Mapping | None = None,
    entropy: str = "auto",
) -> dict:
    """Write ``model`` (every tensor of its ``state_dict``) as a compressed ``.nsq`` file.

    Parameters
    ----------
    model : nn.Module
        Plain, pruned, sharing weights, or both; with netsqueeze's machinery attached or
        stripped. It is not changed.
    path : str or os.PathLike
        Written atomically (temporary file, then rename).
    arch : str, optional
        Architecture name stored in the header, so that :func:`load_compressed` can rebuild the
        model without a skeleton. Default: the name in ``netsqueeze.models.MODELS`` whose class
        ``model`` is, else None. A name of ``MODELS`` is checked against the model's tensors.
    gap_bits : int, dict or None
        Bits of the relative-index field of sparse weights (1..16; None: dense positions only).
        None: 8 for convolutions and 5 for every other compressible parameter. An int applies
        to every one. A dict maps ``"conv"`` / ``"fc"`` (the kind's default) and target names
        or :mod:`fnmatch` patterns (``"features.*"``, ``"lstm.weight_hh_*"``) to bits; an
        exact name wins, then the first matching pattern, then the kind. Sparse positions are
        used only where they are smaller.
    codebook_dtype : {None, "float16", "float32", "float64"}
        dtype of the stored codebooks of compressible weights. None keeps each weight's dtype
        (exact); "float16" halves the codebooks and rounds the decoded weights to float16.
    meta : dict, optional
        Free JSON-serializable metadata stored in the header (accuracy, recipe, seed ...).
    factory : str, optional
        How to rebuild the model, recorded in the header: ``"pkg.module:callable"`` or
        ``"path/to/file.py:callable"`` (a class or function returning the module).
        :func:`load_compressed` never imports it on its own: the caller passes the name again.
    factory_args : dict, optional
        JSON keyword arguments of the factory, recorded beside it.
    entropy : {"auto", "classic", "huffman", "fixed", "rans"}, default "auto"
        Coding of the symbol streams (:func:`netsqueeze.core.container.encode_tensor`):
        ``auto`` the smallest of fixed, Huffman and rANS with contexts; ``classic`` without
        rANS (the codings of format version 1).

    Returns
    -------
    dict
        ``path``, ``bytes`` (file size), ``arch``, ``tensors`` (the count of state_dict
        entries stored; tied names are stored once), ``dense_bytes`` (every tensor at its
        dtype's size, no header), ``dense_float32_bytes`` (numel x 4 of the float32 tensors),
        ``ratio`` (``dense_bytes / bytes``), ``records`` (:meth:`TensorRecord.stats` of every
        record, in file order), ``tied`` (alias -> stored name).

    Raises
    ------
    ValueError
        A bad ``gap_bits`` / ``codebook_dtype`` / ``factory``, a tensor of an unsupported dtype,
        ``meta`` that is not JSON, or an ``arch`` of ``MODELS`` whose tensors differ from the
        model's.
    TypeError
        ``model`` is not an ``nn.Module``, or its ``state_dict`` holds a non-tensor entry.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    if codebook_dtype is not None and codebook_dtype not in ("float16", "float32", "float64"):
        raise ValueError(
            f"codebook_dtype must be None, 'float16', 'float32' or 'float64', got "
            f"{codebook_dtype!r}"
        )
    if arch is not None and not isinstance(arch, str):
        raise TypeError(f"arch must be a str or None, got {type(arch).__name__}")
    factory = _check_factory_spec(factory)
    if factory_args is not None and not isinstance(factory_args, Mapping):
        raise ValueError(f"factory_args must be a dict, got {type(factory_args).__name__}")
    # the stripped model's structure (a meta-device skeleton) and its tensors computed one at
    # a time: a large model is never copied whole
    plain, values = _stripped(model)
    refs = compressible_layers(plain)
    layers = {ref.name: ref.kind for ref in refs}
    plan = _gap_plan(gap_bits, layers)
    state = plain.state_dict()
    tied = {k: v for k, v in _ties(plain).items() if k in state and v in state}
    if arch is None:
        arch = infer_arch(plain)
    elif arch in MODELS:
        reference = build(arch).state_dict()
        _compare(reference, {k: (tuple(v.shape), None) for k, v in state.items()},
                 what="save_compressed", got_label="the model",
                 expected_label=f"architecture {arch!r}",
                 hint="the model is not this architecture; check arch=", error=ValueError)
    weights = {ref.key: ref.name for ref in refs}
    slots: list = []  # per stored tensor, in state_dict order: records, or a dense group
    dtypes: dict[str, str] = {}
    planes: dict[str, str] = {}
    groups: dict[str, list] = {}  # dtype -> [(key, array, records, split)] of dense tensors
    dense = dense32 = 0
    for key in state:
        if key in tied:
            continue
        value = values[key]()
        if isinstance(value, torch.Tensor) and value.dtype == torch.bfloat16:
            array = value.detach().to("cpu").contiguous().view(torch.int16).numpy().view(
                np.uint16)
            dtypes[key] = "bfloat16"
        else:
            array = _to_numpy(key, value)
        dtype_name = dtypes.get(key, array.dtype.name)
        dense += array.nbytes
        dense32 += array.size * 4 if dtype_name == "float32" else 0
        layer = weights.get(key)
        try:
            if layer is None:
                recs, split = _encode_dense(key, array, dtype_name, entropy)
                if dtype_name not in groups:
                    slots.append(("group", dtype_name))
                groups.setdefault(dtype_name, []).append((key, array, recs, split))
            else:
                cbd = codebook_dtype if array.dtype.kind == "f" else None
                slots.append(("records", [encode_tensor(key, array, gap_bits=plan[layer],
                                                        codebook_dtype=cbd,
                                                        entropy=entropy)]))
        except ValueError as exc:
            raise ValueError(f"tensor {key!r}: {exc}") from None
        del value, array  # a dense tensor stays in its group; a weight lives in its record
    packed: dict[str, list] = {}
    records = []
    for kind, item in slots:
        if kind == "records":
            records.extend(item)
            continue
        members = groups[item]
        chosen, pack = _pack_dense(item, members, entropy)
        records.extend(chosen)
        if pack is not None:
            packed[pack[0]] = pack[1]
            for key, *_ in members:
                dtypes.pop(key, None)
            if item == "bfloat16":
                dtypes[pack[0]] = item
            if pack[2]:
                planes[pack[0]] = item
        else:
            planes.update({key: item for key, _, _, split in members if split})
    header = {"format": HEADER_FORMAT, "arch": arch, "netsqueeze_version": __version__}
    if arch not in MODELS:
        header["model_class"] = f"{type(plain).__module__}.{type(plain).__qualname__}"
    if factory is not None:
        header["factory"] = factory
        if factory_args:
            header["factory_args"] = dict(factory_args)
    header["layers"] = layers
    header.update(_plan_header(plan, layers))
    if tied:
        header["tied"] = tied
    if dtypes:
        header["dtypes"] = dtypes
    if planes:
        header["byte_planes"] = planes
    if packed:
        header["packed"] = packed
    if codebook_dtype is not None:
        header["codebook_dtype"] = codebook_dtype
    header["meta"] = dict(meta) if meta is not None else {}
    nbytes = write_nsq(path, records, header=header)
    stats = []
    for r in records:
        stats.append(r.stats())
        r.__dict__.pop("_symbols", None)  # decoded symbols that stats() caches
    return {
        "path": str(path),
        "bytes": nbytes,
        "arch": arch,
        "tensors": len(state) - len(tied),
        "dense_bytes": dense,
        "dense_float32_bytes": dense32,
        "ratio": dense / nbytes,
        "records": stats,
        "tied": tied,
    }


def _open(source, max_bytes: int | None) -> tuple[NSQFile, str]:
    if isinstance(source, NSQFile):
        return source, "nsq data"
    nsq = read_nsq(source, max_bytes=max_bytes)
    label = str(source) if isinstance(source, str | os.PathLike) else "nsq data"
    fmt = nsq.header.get("format")
    if fmt is not None and fmt != HEADER_FORMAT:
        raise FormatError(f"{label}: holds {fmt!r} data, not a model ({HEADER_FORMAT!r})")
    return nsq, label


def _str_map(header: dict, field: str, label: str) -> dict[str, str]:
    value = header.get(field, {})
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise FormatError(f"{label}: header field {field!r} is not a map of names")
    return value


def _fake_array(shape, dtype) -> np.ndarray:
    """An array of ``shape`` and ``dtype`` that occupies one element (every stride 0)."""
    return np.lib.stride_tricks.as_strided(np.zeros(1, dtype), shape=tuple(shape),
                                           strides=(0,) * len(shape), writeable=False)


def _iter_state(nsq: NSQFile, label: str, *, meta: bool = False):
    """The stored tensors of a model file, one ``(name, tensor)`` at a time, in the order of
    :func:`decoded_state` (tied aliases left out): byte planes joined, bfloat16 restored,
    packed tensors split (after the others). With ``meta=True`` nothing is decoded: the
    tensors are on the meta device (names, shapes and dtypes, with the same checks)."""
    planes = _str_map(nsq.header, "byte_planes", label)
    dtypes = _str_map(nsq.header, "dtypes", label)
    _str_map(nsq.header, "tied", label)
    packed = nsq.header.get("packed", {})
    packs = packed if isinstance(packed, dict) else {}
    held: dict = {}  # packed records, split at the end
    names: set = set()
    arrays = (((r.name, _fake_array(r.shape, r.dtype)) for r in nsq.records) if meta
              else nsq.iter_arrays())
    pending: dict[str, list] = {}

    def emit(name, value, dtype):
        t = _to_torch(value, dtype, meta=meta)
        if name in packs:
            held[name] = t
            return None
        names.add(name)
        return t

    for name, a in arrays:
        base, sep, idx = name.rpartition(_PLANE_SEP)
        if sep and base in planes:
            pending.setdefault(base, []).append((idx, a))
            dt = planes[base]
            item = np.dtype(_PLANE_DTYPES[dt]).itemsize if dt in _PLANE_DTYPES else 0
            parts = pending[base]
            if item and len(parts) == item:
                order = [p for _, p in sorted(parts, key=lambda t: t[0])]
                if [i for i, _ in sorted(parts)] != [str(i) for i in range(item)] or any(
                    p.dtype != np.uint8 or p.shape != order[0].shape for p in order
                ):
                    raise FormatError(f"{label}: byte planes of {base!r} do not fit together")
                native = np.dtype(_PLANE_DTYPES[dt]).newbyteorder("=")
                if meta:
                    value = _fake_array(order[0].shape, native)
                else:
                    joined = np.stack([p.reshape(-1) for p in order], axis=1).reshape(-1)
                    value = joined.view(np.dtype(_PLANE_DTYPES[dt]).newbyteorder("<"))
                    value = value.astype(native).reshape(order[0].shape)
                del pending[base], parts, order
                t = emit(base, value, dt)
                del value
                if t is not None:
                    yield base, t
            continue
        t = emit(name, a, dtypes.get(name))
        del a
        if t is not None:
            yield name, t
        del t
    if pending:
        raise FormatError(f"{label}: byte planes of {next(iter(pending))!r} are missing")
    missing = [k for k in planes if k not in names and k not in held]
    if missing:
        raise FormatError(f"{label}: the header names byte planes of {missing[0]!r}, which "
                          "the file lacks")
    if not isinstance(packed, dict):
        raise FormatError(f"{label}: header field 'packed' is not a map")
    for pname, listing in packed.items():
        flat = held.pop(pname, None)
        if flat is None or flat.dim() != 1:
            raise FormatError(f"{label}: packed tensors {pname!r} have no 1-D record")
        try:
            shapes = [(str(k), tuple(int(d) for d in shape)) for k, shape in listing]
        except (TypeError, ValueError):
            raise FormatError(f"{label}: the listing of packed tensors {pname!r} is not "
                              "[[name, shape], ...]") from None
        sizes = [math.prod(shape) for _, shape in shapes]
        if any(d < 0 for _, shape in shapes for d in shape) or sum(sizes) != flat.numel():
            raise FormatError(f"{label}: packed tensors {pname!r} hold {flat.numel()} elements "
                              f"but the listing needs {sum(sizes)}")
        for (key, shape), piece in zip(shapes, torch.split(flat, sizes), strict=True):
            if key in names:
                raise FormatError(f"{label}: tensor {key!r} is stored twice")
            names.add(key)
            yield key, piece.clone().reshape(shape)


def _check_ties(tied: Mapping[str, str], names, label: str) -> None:
    for alias, first in tied.items():
        if first not in names or alias in names:
            raise FormatError(f"{label}: tie {alias!r} -> {first!r} does not fit the records")


def decoded_state(source, *, max_bytes: int | None = None) -> OrderedDict:
    """Every tensor of a model file as a ``state_dict`` (torch tensors, bit for bit), with
    byte planes joined, bfloat16 restored and tied names filled in (sharing one tensor).

    Raises
    ------
    FormatError
        A corrupt file, or header entries (byte planes, dtypes, ties) that do not fit the
        records.
    """
    nsq, label = _open(source, max_bytes)
    out = OrderedDict(_iter_state(nsq, label))
    tied = _str_map(nsq.header, "tied", label)
    for alias, first in tied.items():
        _check_ties({alias: first}, out, label)
        out[alias] = out[first]
    return out


def _to_torch(a: np.ndarray, dtype: str | None, *, meta: bool = False) -> torch.Tensor:
    if dtype is None or dtype == a.dtype.name:
        target = None
    elif dtype == "bfloat16" and a.dtype == np.uint16:
        target = torch.bfloat16
    elif dtype in _PLANE_DTYPES and np.dtype(_PLANE_DTYPES[dtype]) == a.dtype:
        target = None
    else:
        raise FormatError(f"a tensor is stored as {a.dtype} but the header says {dtype}")
    if meta:
        return torch.empty(a.shape, dtype=target or torch.from_numpy(np.zeros(0, a.dtype)).dtype,
                           device="meta")
    # a decoded array is fresh and writable: no copy unless it is a read-only view
    t = torch.from_numpy(a if a.flags.writeable else np.array(a, copy=True))
    if target is torch.bfloat16:
        return t.view(torch.int16).view(torch.bfloat16)
    return t


def _tie_root(name: str, ties: Mapping[str, str]) -> str:
    """The stored tensor a tied name finally refers to (ties may chain)."""
    seen = set()
    while name in ties and name not in seen:
        seen.add(name)
        name = ties[name]
    return name


def _retie(model: nn.Module, tied: Mapping[str, str]) -> None:
    """Make every alias name of ``tied`` hold the same Parameter (or buffer) object as its
    first name, as in the model that was saved."""
    for alias, first in tied.items():
        amod_name, _, aname = alias.rpartition(".")
        fmod_name, _, fname = first.rpartition(".")
        amod = model.get_submodule(amod_name)
        fmod = model.get_submodule(fmod_name)
        if fname in fmod._parameters and aname in amod._parameters:
            target = fmod._parameters[fname]
            if amod._parameters[aname] is not target:
                setattr(amod, aname, target)
        elif fname in fmod._buffers and aname in amod._buffers:
            amod._buffers[aname] = fmod._buffers[fname]


def load_compressed(
    path,
    model: nn.Module | None = None,
    *,
    factory: str | None = None,
    factory_args: Mapping | None = None,
    map_location: str | torch.device = "cpu",
    max_bytes: int | None = None,
) -> nn.Module:
    """Decode an ``.nsq`` file into a model, bit for bit, in eval mode.

    Parameters
    ----------
    path : str, os.PathLike, bytes or NSQFile
        The file (or its bytes, or a parsed file).
    model : nn.Module, optional
        A skeleton to load into: an instance of the architecture (plain, without pruning or
        sharing machinery; its values do not matter).
    factory : str, optional
        Build the skeleton by calling this (``"pkg.module:callable"``, ``"path/to/file.py:fn"``
        or a built-in name), with ``factory_args`` as keyword arguments (default: none). A
        file is untrusted: the factory it records is never imported unless passed here.
    map_location : str or torch.device, default "cpu"
        Device of a model built from the header or a factory. A given skeleton stays on its
        device.
    max_bytes : int, optional
        Decode budget for all tensors together (see :func:`netsqueeze.core.container.read_nsq`).

    Returns
    -------
    nn.Module
        ``model`` (or the built one) holding the file's tensors, in eval mode; tied names hold
        the same Parameter object again.

    Raises
    ------
    FileNotFoundError
        No such file.
    FormatError
        A corrupt or truncated file, or tensors whose names, shapes or dtypes differ from the
        model's (the message names the tensor).
    ValueError
        No skeleton or factory given and the header names no built-in architecture (the
        message names the factory the file records, to pass explicitly).
    """
    nsq, label = _open(path, max_bytes)
    if model is not None and factory is not None:
        raise ValueError("give either model= (a skeleton) or factory=, not both")
    if model is None and factory is not None:
        from netsqueeze.models.factory import build_model

        model = build_model(factory, factory_args).to(map_location)
    if model is None:
        arch = nsq.header.get("arch")
        if not isinstance(arch, str) or arch not in MODELS:
            cls = nsq.header.get("model_class")
            recorded = nsq.header.get("factory")
            hint = (
                f"; it was saved with factory {recorded!r}: pass factory={recorded!r} (or "
                "--model on the command line) if you trust it -- netsqueeze never imports what "
                "a file names by itself"
                if isinstance(recorded, str) else
                "; pass model= a skeleton of the architecture (an instance with the same "
                "layers) or factory='pkg.module:callable'"
            )
            raise ValueError(
                f"{label}: the file's architecture {arch!r}"
                + (f" (class {cls})" if cls else "")
                + f" is not one netsqueeze can build ({', '.join(MODELS)})" + hint
            )
        model = build(arch).to(map_location)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
    # names, shapes and dtypes first, from the records alone (nothing decoded yet), so that a
    # file of another architecture leaves the model untouched
    got = {k: (tuple(t.shape), t.dtype) for k, t in _iter_state(nsq, label, meta=True)}
    ties = _str_map(nsq.header, "tied", label)
    for alias, first in ties.items():
        _check_ties({alias: first}, got, label)
        got[alias] = got[first]
    expected = model.state_dict()
    hint = "the file was saved from another architecture"
    if any(k.endswith(("_mask", "_centroids", "_index")) for k in expected if k not in got):
        hint = "strip_ the skeleton first (netsqueeze.nn.prune.strip_): it is pruned or shared"
    _compare(expected, got, what=label, got_label="the file", expected_label="the model",
             hint=hint)
    del expected
    # then decode a tensor at a time and copy it into the model, in batches of about
    # _LOAD_BATCH_BYTES: a large model never holds a second copy of its weights
    aliases: dict[str, list] = {}
    for alias, first in ties.items():
        aliases.setdefault(_tie_root(first, ties), []).append(alias)
    batch: dict = {}
    held = 0

    def flush():
        try:
            result = model.load_state_dict(batch, strict=False)
        except RuntimeError as exc:
            raise FormatError(f"{label}: {str(exc).splitlines()[0][:300]}") from None
        if result.unexpected_keys:
            raise FormatError(f"{label}: the model has no tensor {result.unexpected_keys[0]!r}")
        batch.clear()

    for name, t in _iter_state(nsq, label):
        batch[name] = t
        for alias in aliases.get(name, ()):
            batch[alias] = t
        held += t.numel() * t.element_size()
        del t
        if held >= _LOAD_BATCH_BYTES:
            flush()
            held = 0
    if batch:
        flush()
    tied = nsq.header.get("tied") or {}
    try:
        _retie(model, tied)
    except AttributeError as exc:
        raise FormatError(f"{label}: a tie names no module of the model ({exc})") from None
    return model.eval()


# --------------------------------------------------------------------------------------------
# size report
# --------------------------------------------------------------------------------------------


def _gzip_baseline(nsq: NSQFile) -> dict:
    state = decoded_state(nsq)
    buf = io.BytesIO()
    torch.save(state, buf)
    raw = buf.getvalue()
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    return {
        "what": "torch.save(state_dict) of the decoded model, then gzip level 9 (measured)",
        "torch_save_bytes": len(raw),
        "gzip_bytes": len(packed),
        "ratio": len(packed) / nsq.nbytes,
    }


def _base_name(record: str) -> str:
    """``"fc.bias#2"`` (a byte plane) -> ``"fc.bias"``."""
    base, sep, idx = record.rpartition(_PLANE_SEP)
    return base if sep and idx.isdigit() else record


def _layer_of(name: str, info: Mapping | None = None) -> str:
    """The group of a record in reports: its target (``"lstm.weight_ih_l0"``) when it is a
    compressible weight, else its module."""
    name = _base_name(name)
    if info and name in info:
        return name
    if name.startswith(_PACK_PREFIX):
        return PACKED_GROUP
    return name.rpartition(".")[0]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _above(nbytes: float, floor: float) -> float | None:
    """How far ``nbytes`` is above the information floor (negative: below it)."""
    return nbytes / floor - 1.0 if floor else None


def _layer_entry(layer: str, stats: list[dict], kind: str | None, gap_field) -> dict:
    by_name = {s["name"]: s for s in stats}
    main = (by_name.get(_prefixed(layer, "weight")) or by_name.get(layer)
            or max(stats, key=lambda s: s["numel"]))
    streams = [st for s in stats for st in s["streams"].values()]
    stream_bytes = sum(st["total_bytes"] for st in streams)
    fixed_bytes = sum(st["fixed_bytes"] for st in streams)
    entropy_bytes = sum(st["entropy_bytes"] for st in streams)
    nbytes = sum(s["record_bytes"] for s in stats)
    dense = sum(s["original_bytes"] for s in stats)
    nv = main["stored_weights"]
    if main["values"] == "codebook":
        value_bytes = main["codebook_bytes"] + main["streams"]["indices"]["total_bytes"]
        index_bits = main["index_bits_per_weight"]
    else:
        value_bytes = main["raw_bytes"]
        index_bits = None
    return {
        "name": layer,
        "kind": kind,
        "tensors": list(dict.fromkeys(_base_name(s["name"]) for s in stats)),
        "main_tensor": main["name"],
        "params": sum(s["numel"] for s in stats),
        "weights": main["numel"],
        "nonzeros": main["nonzeros"],
        "kept": main["density"],
        "positions": main["positions"],
        "gap_field_bits": main["gap_bits"],
        "requested_gap_bits": gap_field,
        "values": main["values"],
        "codebook_size": main["codebook_size"],
        "value_dtype": main["codebook_dtype"] or main["dtype"],
        "index_bits": index_bits,
        "value_bits": value_bytes * 8 / nv if nv else None,
        "gap_bits": main["gap_bits_per_weight"] if main["positions"] == "sparse" else None,
        "bits_per_weight": main["bits_per_weight"] if nv else None,
        "stream_bytes": stream_bytes,
        "fixed_stream_bytes": fixed_bytes,
        "huffman_saving": (1.0 - stream_bytes / fixed_bytes) if fixed_bytes else None,
        "entropy_bytes": entropy_bytes,
        "bytes": nbytes,
        "dense_bytes": dense,
        "ratio": _ratio(dense, nbytes),
        "entropy_bound_bytes": sum(s["entropy_bound_bytes"] for s in stats),
        "paper_bytes": main["paper_bits"] / 8,  # weights only, as the paper counts
        "floor_bytes": sum(s["floor_bytes"] for s in stats),
        "above_floor": _above(nbytes, sum(s["floor_bytes"] for s in stats)),
    }


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def compressed_report(source, *, baseline: bool = True, max_bytes: int | None = None) -> dict:
    """Where the bytes of an ``.nsq`` model file go, layer by layer (the paper's tables).

    Parameters
    ----------
    source : str, os.PathLike, bytes or NSQFile
    baseline : bool, default True
        Also measure ``torch.save(state_dict)`` + gzip level 9 of the decoded model.
    max_bytes : int, optional
        Decode budget (see :func:`netsqueeze.core.container.read_nsq`).

    Returns
    -------
    dict
        JSON-serializable, with keys:

        ``file`` (path or None), ``file_bytes``, ``format_version``, ``arch``,
        ``netsqueeze_version``, ``model_class``, ``meta`` (the header's), ``dense_counts``
        (what the dense size counts);

        ``layers``: one dict per layer (tensors grouped by module name, in file order):
        ``name``, ``kind`` ("conv", "fc" or None), ``tensors``, ``main_tensor`` (the layer's
        ``weight``, else its largest tensor; the per-weight columns describe it), ``params``
        (elements of all its tensors), ``weights`` (elements of the main tensor), ``nonzeros``,
        ``kept`` (``nonzeros / weights``), ``positions``, ``gap_field_bits`` (width of the gap
        field, None if dense), ``requested_gap_bits``, ``values`` ("raw" or "codebook"),
        ``codebook_size``, ``value_dtype``, ``index_bits`` (bits per stored weight of the index
        stream, None for raw values), ``value_bits`` (index stream + codebook, or raw values,
        per stored weight), ``gap_bits`` (bits per stored weight of the gap stream),
        ``bits_per_weight`` (whole main record per stored weight), ``stream_bytes``,
        ``fixed_stream_bytes`` (the same streams fixed-width), ``huffman_saving``
        (``1 - stream_bytes / fixed_stream_bytes``), ``entropy_bytes``, ``bytes`` (records of
        all its tensors), ``dense_bytes``, ``ratio``, ``entropy_bound_bytes``, ``paper_bytes``;

        ``totals``: ``tensors``, ``layers``, ``params``, ``weights`` and ``nonzeros`` (conv and
        linear weights), ``kept``, ``file_bytes``, ``records_bytes``, ``overhead_bytes`` (JSON
        header and file framing: ``file_bytes - records_bytes``), ``dense_bytes``,
        ``dense_float32_bytes`` (numel x 4 of the float32 tensors), ``ratio_to_dense``
        (``dense_bytes / file_bytes``), ``bits_per_weight`` (file bits per conv/linear weight
        stored), ``stream_bytes``, ``fixed_stream_bytes``, ``huffman_saving``, ``entropy_bytes``
        (symbol streams at their entropy bound), ``entropy_overhead`` (``stream_bytes /
        entropy_bytes - 1``), ``entropy_bound_bytes`` (records with streams at the bound:
        codebooks and raw values as written), ``paper_bytes`` (the paper's formula: stored
        entries x (index + gap bits) + codebooks, fillers counted the paper's way),
        ``paper_vs_actual`` (``records_bytes / paper_bytes``), ``floor_bytes`` (the information
        floor of what is stored: ``log2 C(N, k)`` for the positions of the ``k`` non-zeros among
        ``N`` elements + ``k`` x the zero-order entropy of the non-zero values + the codebooks;
        raw values as written) and ``above_floor`` (``records_bytes / floor_bytes - 1``;
        negative when the context coder goes below it); every layer has both too;

        ``baseline``: None, or ``what``, ``torch_save_bytes``, ``gzip_bytes``, ``ratio``
        (``gzip_bytes / file_bytes``);

        ``records``: :meth:`TensorRecord.stats` of every tensor.
    """
    nsq, _ = _open(source, max_bytes)
    header = nsq.header
    stats = _jsonable(nsq.stats())
    info = header.get("layers") if isinstance(header.get("layers"), dict) else {}
    groups: dict[str, list[dict]] = {}
    for s in stats:
        groups.setdefault(_layer_of(s["name"], info), []).append(s)
    layers = []
    packed = header.get("packed") if isinstance(header.get("packed"), dict) else {}
    for layer, members in groups.items():
        kind = info.get(layer) if info.get(layer) in _KINDS else None
        gap = _requested_gap_bits(header, layer, kind) if kind else None
        entry = _layer_entry(layer, members, kind, gap)
        if layer == PACKED_GROUP:  # the tensors stored together, not the records' names
            entry["tensors"] = [str(item[0]) for name in entry["tensors"]
                                for item in packed.get(name, []) if isinstance(item, list)]
        layers.append(entry)
    records_bytes = sum(s["record_bytes"] for s in stats)
    dense = sum(s["original_bytes"] for s in stats)
    planes = header.get("byte_planes") if isinstance(header.get("byte_planes"), dict) else {}
    dense32 = sum(s["numel"] * 4 for s in stats if s["dtype"] == "float32") + sum(
        s["numel"] for s in stats
        if s["name"] != _base_name(s["name"]) and planes.get(_base_name(s["name"])) == "float32"
    )
    compressible = [x for x in layers if x["kind"] is not None]
    weights = sum(x["weights"] for x in compressible)
    nonzeros = sum(x["nonzeros"] for x in compressible)
    stored = sum(
        s["stored_weights"] for x in compressible for s in stats if s["name"] == x["main_tensor"]
    )
    stream_bytes = sum(x["stream_bytes"] for x in layers)
    fixed_bytes = sum(x["fixed_stream_bytes"] for x in layers)
    entropy_bytes = sum(x["entropy_bytes"] for x in layers)
    paper = sum(x["paper_bytes"] for x in layers)
    totals = {
        "tensors": len(stats),
        "layers": len(layers),
        "params": sum(s["numel"] for s in stats),
        "weights": weights,
        "nonzeros": nonzeros,
        "kept": _ratio(nonzeros, weights),
        "file_bytes": nsq.nbytes,
        "records_bytes": records_bytes,
        "overhead_bytes": nsq.nbytes - records_bytes,
        "dense_bytes": dense,
        "dense_float32_bytes": dense32,
        "ratio_to_dense": dense / nsq.nbytes,
        "bits_per_weight": nsq.nbytes * 8 / stored if stored else None,
        "stream_bytes": stream_bytes,
        "fixed_stream_bytes": fixed_bytes,
        "huffman_saving": (1.0 - stream_bytes / fixed_bytes) if fixed_bytes else None,
        "entropy_bytes": entropy_bytes,
        "entropy_overhead": (stream_bytes / entropy_bytes - 1.0) if entropy_bytes else None,
        "entropy_bound_bytes": sum(x["entropy_bound_bytes"] for x in layers),
        "paper_bytes": paper,
        "paper_vs_actual": _ratio(records_bytes, paper),
        "floor_bytes": sum(x["floor_bytes"] for x in layers),
        "above_floor": _above(records_bytes, sum(x["floor_bytes"] for x in layers)),
    }
    report = {
        "file": str(Path(source)) if isinstance(source, str | os.PathLike) else None,
        "file_bytes": nsq.nbytes,
        "format_version": nsq.version,
        "arch": header.get("arch"),
        "netsqueeze_version": header.get("netsqueeze_version"),
        "model_class": header.get("model_class"),
        "meta": header.get("meta"),
        "dense_counts": _DENSE_COUNTS,
        "layers": layers,
        "totals": totals,
        "baseline": _gzip_baseline(nsq) if baseline else None,
        "records": stats,
    }
    return _jsonable(report)
