"""The notebook's two sweeps, measured on the whole test set.

* :func:`threshold_sweep` zeroes every weight (and bias) with ``|w| < t`` for a range of
  thresholds and records, per layer, the fraction of zero weights and the test accuracy.
* :func:`cluster_sweep` replaces each layer's weights by k-means cluster centres for a schedule of
  cluster counts (:func:`cluster_schedule`) and records accuracy and the number of distinct values.

Every point starts from the trained weights, and the model is restored afterwards. The points are
independent: an :class:`~netsqueeze.run.Executor` runs them here (the default), on local worker
processes or on Ray, with identical results in the same order. Each layer is
sorted once per sweep (:class:`~netsqueeze.core.prune.MagnitudeIndex`), so zero fractions are
binary searches. The selection rules are plain functions over the recorded curves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from netsqueeze.core.kmeans1d import KMeans1D
from netsqueeze.core.prune import MagnitudeIndex
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.train import evaluate, labels_tensor, to_tensor
from netsqueeze.progress import progress_bar
from netsqueeze.run import Executor, InProcess

__all__ = [
    "ClusterSweepResult",
    "ThresholdSweepResult",
    "cluster_schedule",
    "cluster_sweep",
    "select_first_crossing",
    "select_max_zeroed_within_tolerance",
    "select_notebook_rule",
    "select_within_tolerance",
    "threshold_sweep",
]

PointCallback = Callable[[int, dict], None]


@dataclass
class ThresholdSweepResult:
    """Zero fractions and accuracy for each threshold.

    ``zero_fraction[layer][i]`` is the fraction of that layer's weights (biases excluded) that are
    zero at ``thresholds[i]``; ``overall_zero_fraction`` is the same over all weights;
    ``bias_zero_fraction`` over all biases (zeroed too when ``include_bias``).
    """

    thresholds: list[float]
    layers: list[str]
    layer_weights: list[int]
    zero_fraction: dict[str, list[float]]
    overall_zero_fraction: list[float]
    bias_zero_fraction: list[float]
    accuracy: list[float]
    baseline_accuracy: float
    n_test: int
    include_bias: bool = True
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ThresholdSweepResult:
        return cls(**d)


@dataclass
class ClusterSweepResult:
    """Accuracy and distinct values for each step of a cluster-count schedule.

    ``schedule[i][j]`` is the number of clusters asked for layer ``j`` at step ``i``;
    ``clusters[i][j]`` how many it got (fewer when a layer has fewer distinct values).
    ``distinct_weights[i]`` counts distinct weight values summed over layers (the notebook's
    count); ``distinct_biases[i]`` the same for biases.
    """

    layers: list[str]
    schedule: list[list[int]]
    clusters: list[list[int]]
    distinct_weights: list[int]
    distinct_biases: list[int]
    accuracy: list[float]
    inertia: list[list[float]]
    baseline_accuracy: float
    baseline_distinct_weights: int
    n_test: int
    bias_clusters: int | None = 2
    init: str = "linear"
    method: str = "lloyd"
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClusterSweepResult:
        return cls(**d)


def cluster_schedule(
    starts: Sequence[int] = (30, 100, 500, 50), end: int = 4, steps: int = 15
) -> list[list[int]]:
    """The notebook's schedule: per layer ``linspace(start, end, steps)`` truncated to integers.

    Returns
    -------
    list of ``steps`` lists, one cluster count per layer.

    Examples
    --------
    >>> cluster_schedule()[11]
    [9, 24, 110, 13]
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if end < 1 or any(int(s) < 1 for s in starts):
        raise ValueError("cluster counts must be >= 1")
    cols = [np.linspace(int(s), int(end), int(steps)).astype(int) for s in starts]
    return [[int(c[i]) for c in cols] for i in range(int(steps))]


def select_notebook_rule(accuracy: Sequence[float], max_drop: float = 0.05) -> int:
    """The notebook's rule: the last step before accuracy drops by more than ``max_drop``.

    Walks the steps in order and stops at the first step whose accuracy is more than
    ``max_drop`` below the previous step's; returns the step before it, or the last step when no
    such drop happens.
    """
    acc = list(accuracy)
    if not acc:
        raise ValueError("no accuracy values to choose from")
    for i in range(1, len(acc)):
        if acc[i - 1] - acc[i] > max_drop:
            return i - 1
    return len(acc) - 1


def select_within_tolerance(
    accuracy: Sequence[float],
    cost: Sequence[float],
    reference: float,
    tolerance: float = 0.005,
) -> int | None:
    """The step of lowest ``cost`` whose accuracy is at least ``reference - tolerance``.

    Used with ``cost = distinct values``: the fewest distinct values that stay within the
    tolerance of the trained model. Ties in cost go to the higher accuracy, then the later step.
    Returns ``None`` when no step qualifies.
    """
    if len(accuracy) != len(cost):
        raise ValueError(f"{len(accuracy)} accuracy values but {len(cost)} costs")
    ok = [i for i, a in enumerate(accuracy) if a >= reference - tolerance - 1e-12]
    if not ok:
        return None
    return min(ok, key=lambda i: (cost[i], -accuracy[i], -i))


def select_first_crossing(
    accuracy: Sequence[float],
    thresholds: Sequence[float],
    reference: float,
    tolerance: float = 0.005,
) -> int | None:
    """The largest threshold such that it and every smaller threshold stay within tolerance.

    Walks the thresholds in increasing order and stops before the first one whose accuracy is
    below ``reference - tolerance``; returns the index of the last one before it (``None`` when
    even the smallest threshold is outside the tolerance). A larger threshold that happens to
    come back within the tolerance after a crossing is not chosen: a reader who asks "how far
    can I raise the threshold and stay within X pp" expects every smaller threshold to qualify.
    """
    if len(accuracy) != len(thresholds):
        raise ValueError(f"{len(accuracy)} accuracy values but {len(thresholds)} thresholds")
    best = None
    for i in sorted(range(len(thresholds)), key=lambda j: (thresholds[j], j)):
        if accuracy[i] < reference - tolerance - 1e-12:
            break
        best = i
    return best


def select_max_zeroed_within_tolerance(
    accuracy: Sequence[float],
    zero_fraction: Sequence[float],
    reference: float,
    tolerance: float = 0.005,
) -> int | None:
    """The point zeroing the most weights whose accuracy is at least ``reference - tolerance``,
    wherever it lies (smaller thresholds may fall outside the tolerance; see
    :func:`select_first_crossing` for the rule the answers use)."""
    return select_within_tolerance(
        accuracy, [-z for z in zero_fraction], reference, tolerance
    )


class _Restore:
    """Snapshot of the parameters; restored on exit so a sweep never leaves the model changed."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.saved = {n: p.detach().clone() for n, p in model.named_parameters()}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for n, p in self.model.named_parameters():
                p.copy_(self.saved[n])
        return False


def _test_tensors(model, x_test, y_test):
    """Images and labels on the model's device, whether given as arrays or as tensors (on any
    device: a tensor is moved with ``.to``, never through numpy)."""
    dev = next(model.parameters()).device
    xt = x_test.to(dev) if isinstance(x_test, torch.Tensor) else to_tensor(x_test, dev)
    yt = labels_tensor(y_test, dev)
    return xt, yt


def _threshold_targets(model: nn.Module, include_bias: bool) -> list:
    layers = compressible_layers(model)
    return [ref.weight for ref in layers] + (
        [ref.bias for ref in layers if ref.bias is not None] if include_bias else [])


def _threshold_point(shared: dict, t: float) -> float:
    """One point of the threshold sweep: zero ``|w| < t`` in the trained weights, evaluate."""
    model = shared["model"]
    targets = _threshold_targets(model, shared["include_bias"])
    with torch.no_grad():
        for p, p0 in zip(targets, shared["originals"], strict=True):
            p.copy_(torch.where(p0.abs() < t, torch.zeros_like(p0), p0))
    return evaluate(model, shared["x"], shared["y"])


def threshold_sweep(
    model: nn.Module,
    x_test,
    y_test,
    thresholds: Sequence[float] = tuple(np.linspace(0.01, 0.09, 50)),
    *,
    include_bias: bool = True,
    progress: bool = True,
    done: Sequence[dict] = (),
    on_point: PointCallback | None = None,
    executor: Executor | None = None,
) -> ThresholdSweepResult:
    """Zero every weight (and bias) with ``|w| < t`` for each threshold and measure accuracy.

    Parameters
    ----------
    model : nn.Module
        Left unchanged on return.
    x_test, y_test : arrays
        The whole test set.
    thresholds : sequence of float
    include_bias : bool
        Zero small biases too (the notebook did).
    progress : bool
    done : sequence of dict
        Points already measured (``{"accuracy": ...}``) by an interrupted run, reused in order.
    on_point : callable ``(index, point) -> None``, optional
        Called after each new point, in order (to save progress).
    executor : netsqueeze.run.Executor, optional
        Where the points run (default: in this process); the results are the same.

    Returns
    -------
    ThresholdSweepResult
    """
    t0 = time.perf_counter()
    ts = [float(t) for t in thresholds]
    if not ts:
        raise ValueError("thresholds is empty")
    if any(not np.isfinite(t) or t < 0 for t in ts):
        raise ValueError("thresholds must be finite numbers >= 0")
    layers = compressible_layers(model)
    if not layers:
        raise ValueError("the model has no Conv or Linear layers to prune")
    xt, yt = _test_tensors(model, x_test, y_test)
    baseline = evaluate(model, xt, yt)
    weights = {ref.name: ref.weight.detach().cpu().numpy() for ref in layers}
    index = {name: MagnitudeIndex(w) for name, w in weights.items()}
    zf = {name: index[name].zero_fraction(ts).tolist() for name in weights}
    sizes = [int(w.size) for w in weights.values()]
    overall = (
        np.sum([np.asarray(zf[n]) * w.size for n, w in weights.items()], axis=0) / sum(sizes)
    ).tolist()
    biases = [ref.bias for ref in layers if ref.bias is not None]
    bias_index = MagnitudeIndex(
        np.concatenate([b.detach().cpu().numpy().reshape(-1) for b in biases])
        if biases
        else np.zeros(0)
    )
    bias_zf = bias_index.zero_fraction(ts).tolist() if include_bias else [0.0] * len(ts)
    targets = _threshold_targets(model, include_bias)
    shared = {"model": model, "x": xt, "y": yt, "include_bias": include_bias,
              "originals": [p.detach().clone() for p in targets]}
    acc = [float(p["accuracy"]) for p in list(done)[: len(ts)]]
    start = len(acc)
    ex = executor if executor is not None else InProcess()
    with _Restore(model):
        bar = progress_bar(desc="threshold sweep", enabled=progress, initial=len(acc),
                           total=len(ts), unit="pt")

        def record(i: int, a: float) -> None:
            acc.append(float(a))
            bar.set_postfix(t=f"{ts[i]:.4f}", acc=f"{a:.4f}")
            if on_point is not None:
                on_point(i, {"threshold": ts[i], "accuracy": float(a)})

        ex.map(_threshold_point, ts[start:], shared=shared, on_result=record,
               progress=bar.update, first=start)
        bar.close()
    return ThresholdSweepResult(
        thresholds=ts,
        layers=list(weights),
        layer_weights=sizes,
        zero_fraction=zf,
        overall_zero_fraction=overall,
        bias_zero_fraction=bias_zf,
        accuracy=acc,
        baseline_accuracy=baseline,
        n_test=int(yt.shape[0]),
        include_bias=include_bias,
        seconds=time.perf_counter() - t0,
    )


def _cluster(values: np.ndarray, k: int, init: str, method: str):
    km = KMeans1D(n_clusters=int(k), init=init, method=method, random_state=0).fit(values)
    return km.centroids_[km.labels_].astype(values.dtype).reshape(values.shape), km


def _cluster_point(shared: dict, ks_asked: Sequence[int]) -> dict:
    """One step of the cluster sweep: cluster the trained weights (and biases), evaluate."""
    model = shared["model"]
    init, method, bias_clusters = shared["init"], shared["method"], shared["bias_clusters"]
    ks, inertias, distinct_b = [], [], 0
    with torch.no_grad():
        for ref, w, b, k in zip(compressible_layers(model), shared["w0"], shared["b0"],
                                ks_asked, strict=True):
            new_w, km = _cluster(w, k, init, method)
            ref.weight.copy_(torch.from_numpy(new_w))
            ks.append(int(km.n_clusters_))
            inertias.append(float(km.inertia_))
            if b is not None and bias_clusters is not None:
                new_b, kb = _cluster(b, bias_clusters, init, method)
                ref.bias.copy_(torch.from_numpy(new_b))
                distinct_b += int(kb.n_clusters_)
            elif b is not None:
                distinct_b += int(np.unique(b).size)
    acc = evaluate(model, shared["x"], shared["y"])
    return {"clusters": ks, "inertia": inertias, "distinct_biases": distinct_b, "accuracy": acc}


def cluster_sweep(
    model: nn.Module,
    x_test,
    y_test,
    schedule: Sequence[Sequence[int]] | None = None,
    *,
    bias_clusters: int | None = 2,
    init: str = "linear",
    method: str = "lloyd",
    progress: bool = True,
    done: Sequence[dict] = (),
    on_point: PointCallback | None = None,
    executor: Executor | None = None,
) -> ClusterSweepResult:
    """Replace each layer's weights by k-means centres, step by step, and measure accuracy.

    Parameters
    ----------
    model : nn.Module
        Left unchanged on return.
    x_test, y_test : arrays
        The whole test set.
    schedule : list of per-layer cluster counts, one list per step
        Default: :func:`cluster_schedule` (the notebook's 15 steps for its 4 layers).
    bias_clusters : int or None
        Each layer's biases are clustered into this many values (the notebook used 2);
        ``None`` leaves biases alone.
    init, method : str
        Passed to :class:`~netsqueeze.core.kmeans1d.KMeans1D`.
    progress : bool
    done : sequence of dict
        Points already measured by an interrupted run (reused in order).
    on_point : callable ``(index, point) -> None``, optional
        Called after each new point, in order.
    executor : netsqueeze.run.Executor, optional
        Where the steps run (default: in this process); the results are the same.

    Returns
    -------
    ClusterSweepResult
    """
    t0 = time.perf_counter()
    layers = compressible_layers(model)
    if not layers:
        raise ValueError("the model has no Conv or Linear layers to cluster")
    steps = [list(map(int, s)) for s in (schedule if schedule is not None else cluster_schedule())]
    if not steps:
        raise ValueError("the cluster schedule is empty")
    for i, s in enumerate(steps):
        if len(s) != len(layers):
            raise ValueError(
                f"cluster schedule step {i} has {len(s)} counts but the model has "
                f"{len(layers)} layers ({', '.join(r.name for r in layers)}); give one count "
                "per layer"
            )
        if any(k < 1 for k in s):
            raise ValueError(f"cluster schedule step {i} has a count < 1: {s}")
    xt, yt = _test_tensors(model, x_test, y_test)
    baseline = evaluate(model, xt, yt)
    w0 = [ref.weight.detach().cpu().numpy().copy() for ref in layers]
    b0 = [ref.bias.detach().cpu().numpy().copy() if ref.bias is not None else None for ref in layers]
    base_distinct = int(sum(np.unique(w).size for w in w0))
    points = [dict(p) for p in list(done)[: len(steps)]]
    start = len(points)
    shared = {"model": model, "x": xt, "y": yt, "w0": w0, "b0": b0,
              "bias_clusters": bias_clusters, "init": init, "method": method}
    ex = executor if executor is not None else InProcess()
    with _Restore(model):
        bar = progress_bar(total=len(steps), initial=len(points), desc="cluster sweep",
                           enabled=progress, unit="step")

        def record(i: int, point: dict) -> None:
            points.append(point)
            bar.set_postfix(values=sum(point["clusters"]), acc=f"{point['accuracy']:.4f}")
            if on_point is not None:
                on_point(i, point)

        ex.map(_cluster_point, steps[start:], shared=shared, on_result=record,
               progress=bar.update, first=start)
        bar.close()
    return ClusterSweepResult(
        layers=[ref.name for ref in layers],
        schedule=steps,
        clusters=[p["clusters"] for p in points],
        distinct_weights=[int(sum(p["clusters"])) for p in points],
        distinct_biases=[int(p["distinct_biases"]) for p in points],
        accuracy=[float(p["accuracy"]) for p in points],
        inertia=[p["inertia"] for p in points],
        baseline_accuracy=baseline,
        baseline_distinct_weights=base_distinct,
        n_test=int(yt.shape[0]),
        bias_clusters=bias_clusters,
        init=init,
        method=method,
        seconds=time.perf_counter() - t0,
    )
