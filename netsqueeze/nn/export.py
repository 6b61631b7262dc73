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
import gzip
import io
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
from netsqueeze.nn import share as _share  # registers the weight-sharing stripper
from netsqueeze.nn.prune import MASK_BUFFER, strip_

__all__ = [
    "DEFAULT_GAP_BITS",
    "HEADER_FORMAT",
    "compressed_report",
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
_DENSE_COUNTS = "every tensor at its dtype's size, 4 bytes per float32 element, no headers"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _kind(module: nn.Module) -> str | None:
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, nn.Linear):
        return "fc"
    return None


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
                f"gap_bits: pattern {pattern!r} matches no convolution or linear layer; the "
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
    checkpoint saved before stripping): ``<layer>.weight_centroids`` and ``<layer>.weight_index``
    become ``<layer>.weight = cat([centroids, 0])[index]`` (in the centroids' place), and
    ``<layer>.weight_mask`` is dropped after zeroing the weight where it is False.

    Parameters
    ----------
    state_dict : mapping of str to Tensor

    Returns
    -------
    OrderedDict
        A new mapping; the input is not changed.
    """
    cent, index = _share.CENTROIDS, _share.INDEX
    out = OrderedDict()
    for key, value in state_dict.items():
        prefix = key[: -len(cent)] if key.endswith(cent) else None
        if (prefix is not None and isinstance(value, torch.Tensor)
                and isinstance(state_dict.get(prefix + index), torch.Tensor)):
            c = value.detach()
            idx = state_dict[prefix + index].detach().to(device=c.device, dtype=torch.long)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) > c.numel()):
                raise ValueError(
                    f"{prefix}{index} holds indices outside [0, {c.numel()}]: not a valid "
                    "weight-sharing state"
                )
            table = torch.cat([c.reshape(-1), c.new_zeros(1)])
            out[prefix + "weight"] = table[idx.reshape(-1)].reshape(idx.shape)
            continue
        if key.endswith(index) and isinstance(state_dict.get(key[: -len(index)] + cent),
                                              torch.Tensor):
            continue
        out[key] = value
    for key in [k for k in out if k.endswith(MASK_BUFFER)]:
        mask = out[key]
        wkey = key[: -len(MASK_BUFFER)] + "weight"
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


def save_compressed(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    gap_bits: int | Mapping[str, int | None] | None = None,
    codebook_dtype: str | None = None,
    meta: Mapping | None = None,
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
        None: 8 for convolutions and 5 for linear layers. An int applies to every layer. A dict
        maps ``"conv"`` / ``"fc"`` (the kind's default) and layer names or :mod:`fnmatch`
        patterns (``"features.*"``) to bits; an exact name wins, then the first matching
        pattern, then the layer's kind. Sparse positions are used only where they are smaller.
    codebook_dtype : {None, "float16", "float32", "float64"}
        dtype of the stored codebooks of conv/linear weights. None keeps each weight's dtype
        (exact); "float16" halves the codebooks and rounds the decoded weights to float16.
    meta : dict, optional
        Free JSON-serializable metadata stored in the header (accuracy, recipe, seed ...).

    Returns
    -------
    dict
        ``path``, ``bytes`` (file size), ``arch``, ``tensors`` (the count), ``dense_bytes``
        (every tensor at its dtype's size, no header), ``dense_float32_bytes`` (numel x 4 of the
        float32 tensors), ``ratio`` (``dense_bytes / bytes``), ``records``
        (:meth:`TensorRecord.stats` of every tensor, in file order).

    Raises
    ------
    ValueError
        A bad ``gap_bits`` / ``codebook_dtype``, a tensor of an unsupported dtype, ``meta`` that
        is not JSON, or an ``arch`` of ``MODELS`` whose tensors differ from the model's.
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
    plain = strip_(copy.deepcopy(model))
    layers = {}
    for name, module in plain.named_modules():
        kind = _kind(module)
        if kind is not None and isinstance(module._parameters.get("weight"), torch.Tensor):
            layers[name] = kind
    plan = _gap_plan(gap_bits, layers)
    state = plain.state_dict()
    if arch is None:
        arch = infer_arch(plain)
    elif arch in MODELS:
        reference = build(arch).state_dict()
        _compare(reference, {k: (tuple(v.shape), None) for k, v in state.items()},
                 what="save_compressed", got_label="the model",
                 expected_label=f"architecture {arch!r}",
                 hint="the model is not this architecture; check arch=", error=ValueError)
    weights = {_prefixed(name, "weight"): name for name in layers}
    records = []
    for key, value in state.items():
        array = _to_numpy(key, value)
        layer = weights.get(key)
        try:
            if layer is None:
                rec = encode_tensor(key, array, gap_bits=None)
            else:
                cbd = codebook_dtype if array.dtype.kind == "f" else None
                rec = encode_tensor(key, array, gap_bits=plan[layer], codebook_dtype=cbd)
        except ValueError as exc:
            raise ValueError(f"tensor {key!r}: {exc}") from None
        records.append(rec)
    header = {"format": HEADER_FORMAT, "arch": arch, "netsqueeze_version": __version__}
    if arch not in MODELS:
        header["model_class"] = f"{type(plain).__module__}.{type(plain).__qualname__}"
    header["layers"] = layers
    header.update(_plan_header(plan, layers))
    if codebook_dtype is not None:
        header["codebook_dtype"] = codebook_dtype
    header["meta"] = dict(meta) if meta is not None else {}
    nbytes = write_nsq(path, records, header=header)
    dense = sum(r.numel * r.dtype.itemsize for r in records)
    dense32 = sum(r.numel * 4 for r in records if r.dtype == np.float32)
    return {
        "path": str(path),
        "bytes": nbytes,
        "arch": arch,
        "tensors": len(records),
        "dense_bytes": dense,
        "dense_float32_bytes": dense32,
        "ratio": dense / nbytes,
        "records": [r.stats() for r in records],
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


def load_compressed(
    path,
    model: nn.Module | None = None,
    *,
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
        sharing machinery; its values do not matter). Default: built from the architecture
        named in the header (one of ``netsqueeze.models.MODELS``).
    map_location : str or torch.device, default "cpu"
        Device of a model built from the header. A given skeleton stays on its device.
    max_bytes : int, optional
        Decode budget for all tensors together (see :func:`netsqueeze.core.container.read_nsq`).

    Returns
    -------
    nn.Module
        ``model`` (or the built one) holding the file's tensors, in eval mode.

    Raises
    ------
    FileNotFoundError
        No such file.
    FormatError
        A corrupt or truncated file, or tensors whose names, shapes or dtypes differ from the
        model's (the message names the tensor).
    ValueError
        No skeleton given and the header names no known architecture.
    """
    nsq, label = _open(path, max_bytes)
    if model is None:
        arch = nsq.header.get("arch")
        if not isinstance(arch, str) or arch not in MODELS:
            cls = nsq.header.get("model_class")
            raise ValueError(
                f"{label}: the file's architecture {arch!r}"
                + (f" (class {cls})" if cls else "")
                + f" is not one netsqueeze can build ({', '.join(MODELS)}); pass model= a "
                "skeleton of the architecture (an instance with the same layers)"
            )
        model = build(arch).to(map_location)
    elif not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module or None, got {type(model).__name__}")
    expected = model.state_dict()
    got = {r.name: (r.shape, getattr(torch, r.dtype.name)) for r in nsq.records}
    hint = "the file was saved from another architecture"
    if any(k.endswith((MASK_BUFFER, _share.CENTROIDS, _share.INDEX)) for k in expected):
        hint = "strip_ the skeleton first (netsqueeze.nn.prune.strip_): it is pruned or shared"
    _compare(expected, got, what=label, got_label="the file", expected_label="the model",
             hint=hint)
    arrays = nsq.arrays()
    state = OrderedDict((k, torch.from_numpy(np.array(a, copy=True))) for k, a in arrays.items())
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise FormatError(f"{label}: {str(exc).splitlines()[0][:300]}") from None
    return model.eval()


# --------------------------------------------------------------------------------------------
# size report
# --------------------------------------------------------------------------------------------


def _gzip_baseline(nsq: NSQFile) -> dict:
    state = OrderedDict(
        (k, torch.from_numpy(np.array(a, copy=True))) for k, a in nsq.arrays().items()
    )
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


def _layer_of(name: str) -> str:
    return name.rpartition(".")[0]


def _ratio(a: float, b: float) -> float | None:
    return a / b if b else None


def _layer_entry(layer: str, stats: list[dict], kind: str | None, gap_field) -> dict:
    by_name = {s["name"]: s for s in stats}
    main = by_name.get(_prefixed(layer, "weight")) or max(stats, key=lambda s: s["numel"])
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
        "tensors": [s["name"] for s in stats],
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
        ``paper_vs_actual`` (``records_bytes / paper_bytes``);

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
        groups.setdefault(_layer_of(s["name"]), []).append(s)
    layers = []
    for layer, members in groups.items():
        kind = info.get(layer) if info.get(layer) in _KINDS else None
        gap = _requested_gap_bits(header, layer, kind) if kind else None
        layers.append(_layer_entry(layer, members, kind, gap))
    records_bytes = sum(s["record_bytes"] for s in stats)
    dense = sum(s["original_bytes"] for s in stats)
    dense32 = sum(s["numel"] * 4 for s in stats if s["dtype"] == "float32")
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
