"""Per-layer sensitivity: how much validation accuracy each layer loses, alone, when it is
pruned harder or shares fewer values.

For every compressible parameter (Conv / Linear weights) the trained model is evaluated with only
that layer changed: pruned by magnitude at each sparsity of a grid, and separately weight-shared
(1-D k-means, linear initialisation, on its non-zero weights) at each bit width. The layer's
magnitudes are sorted once and each k-means runs once per bit width; the weights are changed in
place and restored, so no copy of the model is made unless a short retraining per point is asked
for (``retrain_fn``), which works on a copy. Without retraining the points are independent and
run through an :class:`~netsqueeze.run.Executor` (in this process by default; on worker processes
or Ray with the same results).
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
from netsqueeze.run import Executor, InProcess

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


def _point(shared: dict, task: tuple[int, str, float]) -> tuple[float, float | None]:
    """One point without retraining: change one layer's weights, measure, restore them."""
    li, kind, value = task
    model = shared["model"]
    flat, order = shared["flat"][li], shared["order"][li]
    w = compressible_layers(model, shared["filter_fn"])[li].weight
    orig = w.detach().clone()
    v = flat.copy()
    if kind == "prune":
        v[order[: int(round(value * flat.size))]] = 0.0  # noqa: RUF046
    else:
        nz = flat != 0
        if nz.any():
            v[nz] = _kmeans_values(flat[nz], int(value))
    try:
        with torch.no_grad():
            w.copy_(torch.from_numpy(v).reshape(w.shape).to(w.device, w.dtype))
        return shared["measure"](model)
    finally:
        with torch.no_grad():
            w.copy_(orig)


class _FnEval:
    """The user's metric as a measure (no loss); picklable when ``fn`` is."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, model: nn.Module) -> tuple[float, None]:
        return float(self.fn(model)), None


class _DataEval:
    """Accuracy and cross-entropy on (x, y); a picklable object, so workers can run it."""

    def __init__(self, x, y):
        self.x = x
        self.y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y,
                                 dtype=torch.long)

    def __call__(self, model: nn.Module) -> tuple[float, float]:
        logits = predict_logits(model, self.x).float()
        yy = self.y.to(logits.device)
        return float((logits.argmax(1) == yy).float().mean()), float(F.cross_entropy(logits, yy))


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
    executor: Executor | None = None,
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
    executor : netsqueeze.run.Executor, optional
        Where the points run without retraining (default: in this process). Other processes
        need ``eval_fn`` and ``filter_fn`` to be picklable (module-level functions); ``data``
        always is.

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
    if retrain_iterations and executor is not None and not isinstance(executor, InProcess):
        raise ValueError("retraining per point runs in this process only; drop the executor "
                         "(--workers / --ray) or retrain_iterations")
    if data is not None:
        measure = _DataEval(*data)
        n_images = len(data[1])
    else:
        measure = _FnEval(eval_fn)
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
    flats = [ref.weight.detach().reshape(-1).cpu().numpy().astype(np.float32)
             for ref in layers]
    measured: dict[tuple[int, str, float], tuple] = {}
    try:
        if not retrain_iterations:
            tasks = [(li, "prune", s) for li in range(len(layers)) for s in sp] + \
                    [(li, "share", b) for li in range(len(layers)) for b in bl]
            shared = {"model": model, "flat": flats, "filter_fn": filter_fn, "measure": measure,
                      "order": [np.argsort(np.abs(f), kind="stable") for f in flats]}
            ex = executor if executor is not None else InProcess()
            results = ex.map(_point, tasks, shared=shared, progress=bar.update)
            measured = dict(zip(tasks, results, strict=True))
            evals += len(tasks)
        def retrained(name: str, how: str, value) -> tuple:
            """One point measured after compressing a copy of the model and retraining it."""
            from netsqueeze.nn.prune import PruneConfig, prune_
            from netsqueeze.nn.share import ShareConfig, share_weights_

            m = copy.deepcopy(model)
            only = lambda _m, n: n == name
            if how == "prune":
                prune_(m, PruneConfig(sparsity={name: value}), filter_fn=only)
            else:
                share_weights_(m, ShareConfig(bits={name: value}), filter_fn=only)
            retrain_fn(m, retrain_iterations)
            m.eval()
            bar.update(1)
            return measure(m)

        for li, ref in enumerate(layers):
            flat = flats[li]
            pa, pl, sa, sl = [], [], [], []
            for how, grid, accs, losses in (("prune", sp, pa, pl), ("share", bl, sa, sl)):
                for v in grid:
                    if retrain_iterations:
                        acc, loss = retrained(ref.name, how, v)
                        evals += 1
                    else:
                        acc, loss = measured[(li, how, v)]
                    accs.append(acc)
                    losses.append(loss)
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
