"""Per-layer sensitivity: how much validation accuracy each layer loses, alone, when it is
pruned harder or shares fewer values.

For every compressible parameter (Conv / Linear weights) the trained model is evaluated with only
that layer changed: pruned by magnitude at each sparsity of a grid, and separately weight-shared
(1-D k-means, linear initialisation, on its non-zero weights) at each bit width. The layer's
magnitudes are sorted once and each k-means runs once per bit width; the weights are changed in
place and restored, so no copy of the model is made unless a short retraining per point is asked
for (``retrain_fn``), which works on a copy.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from netsqueeze.core.kmeans1d import KMeans1D
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.train import predict_logits
from netsqueeze.progress import progress_bar

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_SPARSITIES",
    "LayerSensitivity",
    "SensitivityResult",
    "sensitivity",
]

#: 0 to 99.5 %, denser near the top where layers start to break.
DEFAULT_SPARSITIES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92,
                      0.94, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995)
DEFAULT_BITS = (1, 2, 3, 4, 5, 6, 7, 8)

EvalFn = Callable[[nn.Module], float]


@dataclass
class LayerSensitivity:
    """One layer's curves: accuracy (and loss, when data was given) at each grid point."""

    name: str
    kind: str
    weights: int
    sparsities: list[float]
    prune_accuracy: list[float]
    bits: list[int]
    share_accuracy: list[float]
    prune_loss: list[float] | None = None
    share_loss: list[float] | None = None


@dataclass
class SensitivityResult:
    """Per-layer sensitivity curves, measured on ``split`` (the validation set).

    ``prune_drop(name)`` and ``share_drop(name)`` give the drop in percentage points from the
    baseline accuracy, made monotone (a sparser layer or fewer bits is never predicted to do
    better than a denser one / more bits), which is what an allocation should trust.
    """

    baseline_accuracy: float
    baseline_loss: float | None
    split: str
    n_images: int | None
    layers: list[LayerSensitivity]
    retrain_iterations: int = 0
    seconds: float = 0.0
    evaluations: int = 0
    meta: dict = field(default_factory=dict)

    def layer(self, name: str) -> LayerSensitivity:
        for ls in self.layers:
            if ls.name == name:
                return ls
        raise KeyError(f"no layer {name!r} in this sensitivity result; layers: "
                       f"{', '.join(ls.name for ls in self.layers)}")

    def prune_drop(self, name: str) -> np.ndarray:
        """ndarray of shape (len(sparsities),): monotone predicted drop (pp) of pruning only
        ``name`` at each sparsity."""
        acc = np.asarray(self.layer(name).prune_accuracy, float)
        return np.maximum.accumulate(np.maximum(0.0, 100 * (self.baseline_accuracy - acc)))

    def share_drop(self, name: str) -> np.ndarray:
        """ndarray of shape (len(bits),): monotone predicted drop (pp) of sharing only ``name``
        with each bit width (bits in increasing order)."""
        ls = self.layer(name)
        order = np.argsort(ls.bits)
        acc = np.asarray(ls.share_accuracy, float)[order]
        d = np.maximum(0.0, 100 * (self.baseline_accuracy - acc))
        d = np.maximum.accumulate(d[::-1])[::-1]
        out = np.empty_like(d)
        out[order] = d
        return out

    def max_sparsity_within(self, name: str, drop_pp: float) -> float:
        """Largest sparsity of the grid whose measured drop stays within ``drop_pp``."""
        ls = self.layer(name)
        d = self.prune_drop(name)
        ok = [s for s, x in zip(ls.sparsities, d, strict=True) if x <= drop_pp + 1e-12]
        return max(ok) if ok else 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> SensitivityResult:
        d = dict(d)
        d["layers"] = [LayerSensitivity(**x) for x in d["layers"]]
        return cls(**d)

    def table_markdown(self, drops: Sequence[float] = (0.1, 0.5, 1.0)) -> str:
        """Per layer: weights, the largest sparsity and the fewest bits within each drop."""
        head = ["layer", "kind", "weights"]
        head += [f"zeroable <= {x:g} pp" for x in drops]
        head += [f"fewest bits <= {x:g} pp" for x in drops]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for ls in self.layers:
            row = [ls.name, ls.kind, f"{ls.weights:,}"]
            for x in drops:
                row.append(f"{100 * self.max_sparsity_within(ls.name, x):.1f} %")
            sd = self.share_drop(ls.name)
            for x in drops:
                ok = [b for b, v in zip(ls.bits, sd, strict=True) if v <= x + 1e-12]
                row.append(str(min(ok)) if ok else "-")
            lines.append("| " + " | ".join(row) + " |")
        base = f"{100 * self.baseline_accuracy:.2f} %"
        return (f"Baseline accuracy on the {self.split} set ({self.n_images or '?'} images): "
                f"{base}. One layer changed at a time"
                + (f", {self.retrain_iterations} retraining iterations per point" if
                   self.retrain_iterations else ", no retraining") + ".\n\n"
                + "\n".join(lines) + "\n")


def _data_eval(x, y) -> Callable[[nn.Module], tuple[float, float]]:
    yt = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y,
                         dtype=torch.long)

    def run(model: nn.Module) -> tuple[float, float]:
        logits = predict_logits(model, x).float()
        yy = yt.to(logits.device)
        acc = float((logits.argmax(1) == yy).float().mean())
        loss = float(F.cross_entropy(logits, yy))
        return acc, loss

    return run


def _kmeans_values(nz: np.ndarray, bits: int) -> np.ndarray:
    km = KMeans1D(2 ** int(bits), init="linear").fit(nz)
    return km.centroids_.astype(np.float32)[km.labels_]


def sensitivity(
    model: nn.Module,
    data: tuple | None = None,
    *,
    eval_fn: EvalFn | None = None,
    sparsities: Sequence[float] = DEFAULT_SPARSITIES,
    bits: Sequence[int] = DEFAULT_BITS,
    retrain_fn: Callable[[nn.Module, int], object] | None = None,
    retrain_iterations: int = 0,
    filter_fn=None,
    device: str | torch.device | None = None,
    split: str = "validation",
    progress: bool = True,
) -> SensitivityResult:
    """Measure each compressible layer's sensitivity to pruning and to weight sharing.

    Parameters
    ----------
    model : nn.Module
        The trained model; returned unchanged (weights are restored after every point).
    data : (x, y), optional
        Validation images (uint8 ``(n, h, w)`` or a float tensor) and labels: accuracy and
        cross-entropy loss are measured on all of them.
    eval_fn : callable ``(model) -> accuracy``, optional
        The user's own metric instead of ``data`` (then no loss is recorded).
    sparsities : sequence of float in [0, 1)
        Pruning grid (default 0 to 99.5 %, denser near the top).
    bits : sequence of int in 1..16
        Weight-sharing grid (default 1 to 8).
    retrain_fn : callable ``(model, iterations)``, optional
        With ``retrain_iterations > 0``: each point is measured on a copy of the model pruned
        (or shared) with netsqueeze's masks and retrained this many iterations first.
    filter_fn : callable ``(module, name) -> bool``, optional
        Narrows the layers.
    device : str or torch.device, optional
        Move the model there first (default: where it is).
    split : str
        Name of the split ``data`` / ``eval_fn`` measures, recorded in the result.

    Returns
    -------
    SensitivityResult
    """
    if (data is None) == (eval_fn is None):
        raise ValueError("give exactly one of data=(x_val, y_val) or eval_fn=fn(model)->accuracy")
    sp = [float(s) for s in sparsities]
    if not sp or any(not 0.0 <= s < 1.0 for s in sp) or sp != sorted(sp):
        raise ValueError(f"sparsities must be increasing values in [0, 1), got {sparsities!r}")
    bl = [int(b) for b in bits]
    if any(not 1 <= b <= 16 for b in bl) or len(set(bl)) != len(bl):
        raise ValueError(f"bits must be distinct integers in 1..16, got {bits!r}")
    if retrain_iterations and retrain_fn is None:
        raise ValueError("retrain_iterations > 0 needs retrain_fn=fn(model, iterations)")
    if device is not None:
        model.to(device)
    if data is not None:
        measure = _data_eval(*data)
        n_images = len(data[1])
    else:

        def measure(m):
            return float(eval_fn(m)), None

        n_images = None
    t0 = time.perf_counter()
    layers = compressible_layers(model, filter_fn)
    if not layers:
        raise ValueError("no compressible layer (Conv / Linear weight) in this model")
    was_training = model.training
    model.eval()
    base_acc, base_loss = measure(model)
    evals = 1
    out = []
    total = len(layers) * (len(sp) + len(bl))
    bar = progress_bar(total=total, desc="sensitivity", enabled=progress, unit="pt")
    try:
        for ref in layers:
            w = ref.weight
            orig = w.detach().clone()
            flat = orig.reshape(-1).cpu().numpy().astype(np.float32)
            order = np.argsort(np.abs(flat), kind="stable")  # once per layer
            pa, pl, sa, sl = [], [], [], []
            for s in sp:
                k = int(round(s * flat.size))  # noqa: RUF046
                if retrain_iterations:
                    from netsqueeze.nn.prune import PruneConfig, prune_

                    m = copy.deepcopy(model)
                    prune_(m, PruneConfig(sparsity={ref.name: s}),
                           filter_fn=lambda _m, n, name=ref.name: n == name)
                    retrain_fn(m, retrain_iterations)
                    m.eval()
                    acc, loss = measure(m)
                    del m
                else:
                    v = flat.copy()
                    v[order[:k]] = 0.0
                    with torch.no_grad():
                        w.copy_(torch.from_numpy(v).view_as(w).to(w.device, w.dtype))
                    acc, loss = measure(model)
                pa.append(acc)
                pl.append(loss)
                evals += 1
                bar.update(1)
            nz_mask = flat != 0
            for b in bl:
                if retrain_iterations:
                    from netsqueeze.nn.share import ShareConfig, share_weights_

                    m = copy.deepcopy(model)
                    share_weights_(m, ShareConfig(bits={ref.name: b}),
                                   filter_fn=lambda _m, n, name=ref.name: n == name)
                    retrain_fn(m, retrain_iterations)
                    m.eval()
                    acc, loss = measure(m)
                    del m
                else:
                    v = flat.copy()
                    if nz_mask.any():
                        v[nz_mask] = _kmeans_values(flat[nz_mask], b)
                    with torch.no_grad():
                        w.copy_(torch.from_numpy(v).view_as(w).to(w.device, w.dtype))
                    acc, loss = measure(model)
                sa.append(acc)
                sl.append(loss)
                evals += 1
                bar.update(1)
            with torch.no_grad():
                w.copy_(orig)
            out.append(LayerSensitivity(
                name=ref.name, kind=ref.kind, weights=int(flat.size), sparsities=sp,
                prune_accuracy=pa, bits=bl, share_accuracy=sa,
                prune_loss=pl if data is not None else None,
                share_loss=sl if data is not None else None))
    finally:
        bar.close()
        model.train(was_training)
    return SensitivityResult(
        baseline_accuracy=base_acc, baseline_loss=base_loss, split=split, n_images=n_images,
        layers=out, retrain_iterations=int(retrain_iterations),
        seconds=time.perf_counter() - t0, evaluations=evals)
