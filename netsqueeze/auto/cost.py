"""What a layer costs in the real file, priced by the coder itself.

For each layer and each (sparsity, bits) of a grid, the layer's own weights are pruned by
magnitude, shared with k-means (linear initialisation) and handed to
:func:`netsqueeze.core.container.encode_tensor` -- the function that writes ``.nsq`` records --
and the record's size in bytes is taken: positions (relative gaps with fillers), Huffman or
fixed-width indices, the codebook and the record's own header all included. The rest of the file
(JSON header, biases, other tensors) is priced once by writing the model with
:func:`netsqueeze.nn.export.save_compressed`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from netsqueeze.core.container import encode_tensor
from netsqueeze.core.kmeans1d import KMeans1D
from netsqueeze.nn.export import DEFAULT_GAP_BITS, save_compressed
from netsqueeze.nn.modules import compressible_layers

__all__ = ["CostModel", "cost_model", "layer_bytes"]


def layer_bytes(weights: np.ndarray, sparsity: float, bits: int | None, *, gap_bits: int,
                name: str = "w.weight", order: np.ndarray | None = None) -> int:
    """Bytes of the ``.nsq`` record of ``weights`` pruned to ``sparsity`` and shared at ``bits``.

    ``bits=None`` keeps the surviving values unshared (float32). ``order`` is
    ``argsort(|weights|)`` when the caller has it already.
    """
    flat = np.asarray(weights, np.float32).reshape(-1)
    if order is None:
        order = np.argsort(np.abs(flat), kind="stable")
    v = flat.copy()
    v[order[: int(round(float(sparsity) * flat.size))]] = 0.0  # noqa: RUF046
    nz = v != 0
    if bits is not None and nz.any():
        km = KMeans1D(2 ** int(bits), init="linear").fit(v[nz])
        v[nz] = km.centroids_.astype(np.float32)[km.labels_]
    rec = encode_tensor(name, v.reshape(np.shape(weights)), gap_bits=gap_bits)
    return int(rec.nbytes)


@dataclass
class CostModel:
    """Record bytes per layer on a (sparsity, bits) grid, plus the rest of the file.

    Attributes
    ----------
    sparsities : list of float
    bits : list of int
    layers : dict {name: ndarray of shape (len(sparsities), len(bits))}
        Bytes of the layer's weight record.
    kinds : dict {name: "conv" or "fc"}
    fixed_bytes : int
        Everything else in the file: header, biases and other tensors.
    dense_bytes : int
        float32 size of every tensor of the model (the compression ratio's numerator).
    """

    sparsities: list[float]
    bits: list[int]
    layers: dict[str, np.ndarray]
    kinds: dict[str, str]
    fixed_bytes: int
    dense_bytes: int

    def predict(self, sparsity: Mapping[str, float], bits: Mapping[str, int]) -> int:
        """Predicted file bytes of an allocation whose values lie on the grid."""
        total = self.fixed_bytes
        for name, table in self.layers.items():
            i = self.sparsities.index(float(sparsity[name]))
            j = self.bits.index(int(bits[name]))
            total += int(table[i, j])
        return int(total)

    def to_dict(self) -> dict:
        return {"sparsities": self.sparsities, "bits": self.bits,
                "layers": {k: v.astype(int).tolist() for k, v in self.layers.items()},
                "kinds": self.kinds, "fixed_bytes": self.fixed_bytes,
                "dense_bytes": self.dense_bytes}

    @classmethod
    def from_dict(cls, d: dict) -> CostModel:
        """What :meth:`to_dict` wrote; ``ValueError`` naming the field when it is not
        (``TypeError`` when ``d`` is not a dict)."""
        if not isinstance(d, dict):
            raise TypeError("a cost model is a JSON object")
        sp, bl = d.get("sparsities"), d.get("bits")
        if not (isinstance(sp, list) and sp and all(
                isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1
                for v in sp)):
            raise ValueError("'sparsities' must be a list of numbers in [0, 1)")
        if not (isinstance(bl, list) and bl and all(
                isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 16 for v in bl)):
            raise ValueError("'bits' must be a list of integers in 1..16")
        layers, kinds = d.get("layers"), d.get("kinds")
        if not isinstance(layers, dict) or not isinstance(kinds, dict) or (
                set(layers) != set(kinds)) or not layers:
            raise ValueError("'layers' and 'kinds' must name the same layers")
        tables = {}
        for name, rows in layers.items():
            if kinds[name] not in ("conv", "fc"):
                raise ValueError(f"'kinds' of {name!r} must be 'conv' or 'fc'")
            try:
                t = np.asarray(rows, dtype=np.int64)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"'layers' of {name!r} is not a table of integers") from None
            if t.shape != (len(sp), len(bl)) or (t < 0).any():
                raise ValueError(f"'layers' of {name!r} must be a {len(sp)} x {len(bl)} table "
                                 "of byte counts")
            tables[name] = t
        for key in ("fixed_bytes", "dense_bytes"):
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{key!r} must be an integer >= 0")
        return cls(sparsities=[float(v) for v in sp], bits=[int(v) for v in bl],
                   layers=tables, kinds={k: str(v) for k, v in kinds.items()},
                   fixed_bytes=int(d["fixed_bytes"]), dense_bytes=int(d["dense_bytes"]))


def _gap_for(gap_bits, kind: str) -> int:
    if gap_bits is None:
        return DEFAULT_GAP_BITS[kind]
    if isinstance(gap_bits, Mapping):
        return int(gap_bits.get(kind, DEFAULT_GAP_BITS[kind]))
    return int(gap_bits)


def cost_model(model: nn.Module, sparsities: Sequence[float], bits: Sequence[int], *,
               gap_bits: int | Mapping[str, int] | None = None, filter_fn=None) -> CostModel:
    """Price every compressible layer of ``model`` on the grid with the real coder.

    Parameters
    ----------
    model : nn.Module
        Trained (its weight distribution is what gets priced).
    sparsities, bits : sequences
        The grid (usually the sensitivity grid).
    gap_bits : int or {"conv": int, "fc": int}, optional
        Relative-index width, as for :func:`~netsqueeze.nn.export.save_compressed`
        (default 8 for convolutions, 5 for linear layers).
    """
    refs = compressible_layers(model, filter_fn)
    if not refs:
        raise ValueError("no compressible layer (Conv / Linear weight) in this model")
    sp = [float(s) for s in sparsities]
    bl = [int(b) for b in bits]
    layers, kinds = {}, {}
    for ref in refs:
        w = ref.weight.detach().float().cpu().numpy()
        order = np.argsort(np.abs(w.reshape(-1)), kind="stable")
        gb = _gap_for(gap_bits, ref.kind)
        table = np.zeros((len(sp), len(bl)), np.int64)
        for i, s in enumerate(sp):
            for j, b in enumerate(bl):
                table[i, j] = layer_bytes(w, s, b, gap_bits=gb, name=f"{ref.name}.weight",
                                          order=order)
        layers[ref.name] = table
        kinds[ref.name] = ref.kind
    with tempfile.TemporaryDirectory() as tmp:
        gap = {"conv": _gap_for(gap_bits, "conv"), "fc": _gap_for(gap_bits, "fc")}
        summary = save_compressed(model, Path(tmp) / "m.nsq",
                                  gap_bits=gap)
    weight_keys = {f"{name}.weight" for name in layers}
    weight_bytes = sum(r["record_bytes"] for r in summary["records"] if r["name"] in weight_keys)
    fixed = int(summary["bytes"]) - int(weight_bytes)
    return CostModel(sparsities=sp, bits=bl, layers=layers, kinds=kinds, fixed_bytes=fixed,
                     dense_bytes=int(summary["dense_float32_bytes"]))
