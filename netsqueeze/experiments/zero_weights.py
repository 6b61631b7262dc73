"""The notebook experiment end to end: train, threshold sweep, cluster sweep, answers.

:func:`run_zero_weights` writes into an output folder:

* ``results.json`` — everything measured (spec, seed, dataset, test-set size, versions, wall
  times, both sweeps, both answers), written atomically at the end;
* ``zero_fraction.png``, ``threshold_accuracy.png``, ``cluster_accuracy.png`` — the notebook's
  three figures, redrawn from ``results.json`` by :func:`netsqueeze.experiments.plots.plot_zero_weights`;
* ``summary.md`` — the answers in words;
* ``model.pt`` — the trained network (a netsqueeze checkpoint), for ``compress --checkpoint``;
* with ``save_chosen``: ``threshold.nsq`` and ``clusters.nsq``, the model at the chosen threshold
  and at the chosen cluster step as compressed files, decoded and measured again (their sizes and
  accuracies go to ``results.json`` and ``summary.md``).

Progress is kept in ``.state/`` inside the folder from the start of a run (see
:mod:`netsqueeze.experiments.state`); ``resume=True`` continues an interrupted run from the last
finished epoch and sweep point, and writes the same outputs as an uninterrupted run (besides
wall times).
"""

from __future__ import annotations

import copy
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

import netsqueeze
from netsqueeze.core.fileio import atomic_write_json, atomic_write_text
from netsqueeze.core.kmeans1d import KMeans1D
from netsqueeze.experiments import sweeps
from netsqueeze.experiments.common import check_images_fit, load_data
from netsqueeze.experiments.report import zero_weights_summary
from netsqueeze.experiments.state import RunState, load_model_snapshot, save_model_snapshot
from netsqueeze.models import build, count_weights
from netsqueeze.models.checkpoint import save_checkpoint
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.train import TrainConfig, evaluate, resolve_device, to_tensor, train

__all__ = ["OUTPUTS", "ZeroWeightsSpec", "apply_clusters_", "apply_threshold_", "near_chance",
           "per_layer_zeroable", "run_versions", "run_zero_weights", "save_chosen_points"]

#: The files :func:`run_zero_weights` writes into its output folder (``threshold.nsq`` and
#: ``clusters.nsq`` with ``save_chosen``; ``report.html`` is written by the command).
OUTPUTS = ("results.json", "summary.md", "model.pt", "zero_fraction.png",
           "threshold_accuracy.png", "cluster_accuracy.png", "threshold.nsq", "clusters.nsq",
           "report.html")

#: Accuracy losses (percentage points) at which summary.md reports the zeroable fraction.
ZERO_TOLERANCES_PP = (0.0, 0.05, 0.1, 0.2, 0.5, 1.0)


@dataclass
class ZeroWeightsSpec:
    """Everything that defines a zero-weights run (stored in results.json)."""

    dataset: str = "default"
    data_dir: str | None = None
    download: bool = True
    model: str = "notebook-cnn"
    train: TrainConfig = field(default_factory=TrainConfig)
    threshold_start: float = 0.01
    threshold_stop: float = 0.09
    threshold_num: int = 50
    include_bias: bool = True
    cluster_starts: tuple[int, ...] = (30, 100, 500, 50)
    cluster_end: int = 4
    cluster_steps: int = 15
    bias_clusters: int | None = 2
    kmeans_init: str = "linear"
    kmeans_method: str = "lloyd"
    tolerance_pp: float = 0.5
    notebook_max_drop: float = 0.05
    device: str = "auto"
    save_chosen: bool = False

    def validate(self) -> ZeroWeightsSpec:
        """Check everything that can be checked before loading data or training; return self."""
        self.train.validate()
        if int(self.train.iterations) < 1:
            raise ValueError(
                "iterations must be >= 1: the sweeps of an untrained model measure nothing "
                "(the default trains for 2400)"
            )
        model = build(self.model)  # an unknown name is a ValueError naming the choices
        layers = compressible_layers(model)
        if len(self.cluster_starts) != len(layers):
            raise ValueError(
                f"cluster_starts has {len(self.cluster_starts)} counts but {self.model} has "
                f"{len(layers)} layers ({', '.join(r.name for r in layers)}); give one count "
                "per layer"
            )
        if any(int(c) < 1 for c in self.cluster_starts):
            raise ValueError(f"cluster_starts must all be >= 1, got {list(self.cluster_starts)}")
        if self.bias_clusters is not None and int(self.bias_clusters) < 1:
            raise ValueError(f"bias_clusters must be >= 1 or None, got {self.bias_clusters}")
        resolve_device(self.device)
        if self.threshold_num < 1:
            raise ValueError(f"threshold_num must be >= 1, got {self.threshold_num}")
        if not 0 <= self.threshold_start <= self.threshold_stop:
            raise ValueError(
                "thresholds must satisfy 0 <= start <= stop, got "
                f"{self.threshold_start}..{self.threshold_stop}"
            )
        if self.tolerance_pp < 0:
            raise ValueError(f"tolerance_pp must be >= 0, got {self.tolerance_pp}")
        if self.cluster_steps < 1 or self.cluster_end < 1:
            raise ValueError("cluster_steps and cluster_end must be >= 1")
        return self

    def thresholds(self) -> list[float]:
        return np.linspace(self.threshold_start, self.threshold_stop, self.threshold_num).tolist()

    def schedule(self) -> list[list[int]]:
        return sweeps.cluster_schedule(self.cluster_starts, self.cluster_end, self.cluster_steps)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cluster_starts"] = list(self.cluster_starts)
        return d


def run_versions() -> dict:
    """Versions of what ran (results.json's ``versions``)."""
    import matplotlib

    return {
        "netsqueeze": netsqueeze.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "torch": torch.__version__,
        "matplotlib": matplotlib.__version__,
        "platform": platform.platform(),
    }


def near_chance(accuracy: float, n_classes: int) -> str | None:
    """A warning when ``accuracy`` is below twice chance (1 / n_classes), or below halfway from
    chance to 100 % when that is lower (few classes); else None."""
    if n_classes < 2 or accuracy >= min(2.0 / n_classes, 0.5 + 0.5 / n_classes):
        return None
    return (f"the trained model is near chance (accuracy {accuracy:.4f}; chance is "
            f"{1 / n_classes:.2f} with {n_classes} classes): the fractions of zeroable weights "
            "and distinct values measured on it mean nothing; train longer (--iterations)")


def _answers(thr: sweeps.ThresholdSweepResult, clu: sweeps.ClusterSweepResult, spec, n_weights):
    tol = spec.tolerance_pp / 100.0
    out: dict = {"tolerance_pp": spec.tolerance_pp}
    out["zero_rule"] = ("first crossing: the largest threshold such that it and every smaller "
                        "threshold stay within the tolerance")
    for key, t, rule in (
        ("zero", tol, sweeps.select_first_crossing),
        ("zero_lossless", 0.0, sweeps.select_first_crossing),
        ("zero_max_anywhere", tol, None),
    ):
        if rule is None:  # the most zeroed at any threshold within tolerance (a second figure)
            i = sweeps.select_max_zeroed_within_tolerance(
                thr.accuracy, thr.overall_zero_fraction, thr.baseline_accuracy, t)
        else:
            i = rule(thr.accuracy, thr.thresholds, thr.baseline_accuracy, t)
        out[key] = None if i is None else {
            "index": i,
            "threshold": thr.thresholds[i],
            "zero_fraction": thr.overall_zero_fraction[i],
            "zero_fraction_per_layer": {n: thr.zero_fraction[n][i] for n in thr.layers},
            "accuracy": thr.accuracy[i],
            "drop_pp": 100.0 * (thr.baseline_accuracy - thr.accuracy[i]),
            "tolerance_pp": 100.0 * t,
        }
    out["zero_by_tolerance"] = []
    for tol_pp in ZERO_TOLERANCES_PP:
        i = sweeps.select_first_crossing(
            thr.accuracy, thr.thresholds, thr.baseline_accuracy, tol_pp / 100
        )
        out["zero_by_tolerance"].append({
            "tolerance_pp": tol_pp,
            "threshold": None if i is None else thr.thresholds[i],
            "zero_fraction": None if i is None else thr.overall_zero_fraction[i],
            "accuracy": None if i is None else thr.accuracy[i],
        })
    rules = (
        ("clusters_notebook_rule",
         sweeps.select_notebook_rule(clu.accuracy, spec.notebook_max_drop)),
        ("clusters_within_tolerance",
         sweeps.select_within_tolerance(clu.accuracy, clu.distinct_weights,
                                        clu.baseline_accuracy, tol)),
    )
    for key, i in rules:
        out[key] = None if i is None else {
            "index": i,
            "step": i + 1,
            "clusters": clu.clusters[i],
            "distinct_weights": clu.distinct_weights[i],
            "distinct_biases": clu.distinct_biases[i],
            "accuracy": clu.accuracy[i],
            "drop_pp": 100.0 * (clu.baseline_accuracy - clu.accuracy[i]),
            "baseline_distinct_weights": clu.baseline_distinct_weights,
            "reduction": clu.baseline_distinct_weights / max(1, clu.distinct_weights[i]),
        }
    out["clusters_notebook_rule"]["max_drop"] = spec.notebook_max_drop
    return out


_versions = run_versions  # the former private name


def per_layer_zeroable(model: torch.nn.Module, x, y, tolerance_pp: float, *,
                       progress: bool = False) -> dict:
    """Per layer, alone: the largest share of its weights that magnitude pruning can zero
    while accuracy on ``(x, y)`` stays within each tolerance (first crossing on the grid of
    :data:`netsqueeze.auto.sensitivity.DEFAULT_SPARSITIES`; the other layers untouched).

    A layer's grid is walked upwards and left at the first point that loses more than the
    largest tolerance: by the first-crossing rule no later point can change an answer, so
    ``accuracy`` lists only the points measured."""
    from netsqueeze.auto.sensitivity import DEFAULT_SPARSITIES
    from netsqueeze.progress import progress_bar

    tols = sorted({0.1, float(tolerance_pp), 1.0})
    grid = [float(v) for v in DEFAULT_SPARSITIES]
    model.eval()
    base = evaluate(model, x, y)
    layers = []
    refs = compressible_layers(model)
    bar = progress_bar(total=len(refs) * len(grid), desc="per layer", enabled=progress,
                       unit="pt")
    try:
        for ref in refs:
            w = ref.weight
            orig = w.detach().clone()
            flat = orig.reshape(-1).cpu().numpy().astype(np.float32)
            order = np.argsort(np.abs(flat), kind="stable")
            accs: list[float] = []
            try:
                for sp in grid:
                    v = flat.copy()
                    v[order[: int(round(sp * flat.size))]] = 0.0  # noqa: RUF046
                    with torch.no_grad():
                        w.copy_(torch.from_numpy(v).reshape(w.shape).to(w.device, w.dtype))
                    accs.append(evaluate(model, x, y))
                    bar.update(1)
                    if 100 * (base - accs[-1]) > tols[-1] + 1e-12:
                        break
            finally:
                with torch.no_grad():
                    w.copy_(orig)
            bar.update(len(grid) - len(accs))
            zeroable = {}
            for t in tols:
                best = 0.0
                for sp, a in zip(grid, accs, strict=False):
                    if 100 * (base - a) > t + 1e-12:
                        break
                    best = sp
                zeroable[f"{t:g}"] = best
            layers.append({"name": ref.name, "kind": ref.kind, "weights": int(flat.size),
                           "accuracy": accs, "zeroable": zeroable})
    finally:
        bar.close()
    return {
        "rule": "one layer pruned at a time by weight magnitude, the others untouched; the "
                "largest sparsity of the grid such that it and every smaller one stay within "
                "the tolerance",
        "grid": grid,
        "baseline_accuracy": base,
        "tolerance_pp": float(tolerance_pp),
        "layers": layers,
    }


def apply_threshold_(model: torch.nn.Module, threshold: float, *,
                     include_bias: bool = True) -> torch.nn.Module:
    """Zero every conv / linear weight (and bias) with ``|w| < threshold``, in place.

    The same rule as the threshold sweep, so the model equals the sweep's point bit for bit.
    """
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold!r}")
    layers = compressible_layers(model)
    if not layers:
        raise ValueError("the model has no Conv or Linear layers to prune")
    with torch.no_grad():
        for ref in layers:
            targets = [ref.weight] + ([ref.bias] if include_bias and ref.bias is not None else [])
            for p in targets:
                p.copy_(torch.where(p.abs() < t, torch.zeros_like(p), p))
    return model


def _kmeans_values(values: np.ndarray, k: int, init: str, method: str) -> np.ndarray:
    km = KMeans1D(n_clusters=int(k), init=init, method=method, random_state=0).fit(values)
    return km.centroids_[km.labels_].astype(values.dtype).reshape(values.shape)


def apply_clusters_(model: torch.nn.Module, clusters, *, bias_clusters: int | None = 2,
                    init: str = "linear", method: str = "lloyd") -> torch.nn.Module:
    """Replace each conv / linear layer's weights by k-means centres, in place.

    Parameters
    ----------
    clusters : sequence of int
        One cluster count per layer, in the order of
        :func:`netsqueeze.nn.modules.compressible_layers` (the cluster sweep's order).
    bias_clusters : int or None
        Each layer's biases are clustered into this many values; ``None`` leaves them.
    init, method : str
        Passed to :class:`~netsqueeze.core.kmeans1d.KMeans1D` (seed 0, as in the sweep).
    """
    layers = compressible_layers(model)
    counts = [int(k) for k in clusters]
    if len(counts) != len(layers):
        raise ValueError(
            f"{len(counts)} cluster counts for {len(layers)} layers "
            f"({', '.join(r.name for r in layers)}); give one count per layer"
        )
    if any(k < 1 for k in counts):
        raise ValueError(f"cluster counts must be >= 1, got {counts}")
    if bias_clusters is not None and bias_clusters < 1:
        raise ValueError(f"bias_clusters must be >= 1 or None, got {bias_clusters}")
    with torch.no_grad():
        for ref, k in zip(layers, counts, strict=True):
            w = ref.weight.detach().cpu().numpy()
            ref.weight.copy_(torch.from_numpy(_kmeans_values(w, k, init, method)))
            if ref.bias is not None and bias_clusters is not None:
                b = ref.bias.detach().cpu().numpy()
                ref.bias.copy_(torch.from_numpy(_kmeans_values(b, bias_clusters, init, method)))
    return model


_FILE_LAYER_KEYS = ("kind", "weights", "nonzeros", "kept", "values", "codebook_size",
                    "index_bits", "gap_bits", "bits_per_weight", "huffman_saving", "bytes",
                    "dense_bytes", "ratio")


def _save_point(model, path: Path, arch: str, meta: dict, x_test, y_test) -> dict:
    """Write ``model`` as .nsq, decode it again and measure it: size, accuracy, per layer."""
    from netsqueeze.nn.export import compressed_report, load_compressed, save_compressed

    save_compressed(model, path, arch=arch, meta=meta)
    decoded = load_compressed(path)
    acc = evaluate(decoded, x_test, y_test)
    rep = compressed_report(path, baseline=False)
    t = rep["totals"]
    return {
        "path": path.name,
        "bytes": int(rep["file_bytes"]),
        "dense_bytes": int(t["dense_bytes"]),
        "ratio_to_dense": float(t["ratio_to_dense"]),
        "accuracy": float(acc),
        "layers": {x["name"]: {k: x.get(k) for k in _FILE_LAYER_KEYS} for x in rep["layers"]},
    }


def save_chosen_points(model: torch.nn.Module, spec: ZeroWeightsSpec, answers: dict,
                       out_dir: str | Path, x_test, y_test, *, dataset: str = "") -> dict:
    """Write ``threshold.nsq`` and ``clusters.nsq`` for the run's chosen points.

    ``model`` (the trained network) is not changed. The threshold file holds the model at
    ``answers["zero"]``; the cluster file the model at ``answers["clusters_within_tolerance"]``
    (or, when no step is within the tolerance, the notebook rule's step). Each file is decoded
    again and its accuracy measured on the whole test set.

    Returns
    -------
    dict
        ``{"threshold": {...}, "clusters": {...}}`` (a key is missing when there is no chosen
        point): path, setting, bytes, dense_bytes, ratio_to_dense, accuracy (of the decoded
        file), sweep_accuracy (what the sweep measured) and the per-layer breakdown.
    """
    out = Path(out_dir)
    base = copy.deepcopy(model).cpu()
    xt = x_test.cpu() if isinstance(x_test, torch.Tensor) else x_test
    yt = y_test.cpu() if isinstance(y_test, torch.Tensor) else y_test
    chosen: dict = {}
    z = answers.get("zero")
    if z is not None:
        m = apply_threshold_(copy.deepcopy(base), z["threshold"], include_bias=spec.include_bias)
        meta = {"dataset": dataset, "seed": spec.train.seed, "threshold": z["threshold"],
                "accuracy": z["accuracy"]}
        info = _save_point(m, out / "threshold.nsq", spec.model, meta, xt, yt)
        info.update(point="threshold", setting=f"threshold {z['threshold']:.4f}"
                    + (" (weights and biases)" if spec.include_bias else " (weights)"),
                    threshold=z["threshold"], zero_fraction=z["zero_fraction"],
                    sweep_accuracy=z["accuracy"])
        chosen["threshold"] = info
    rule = "clusters_within_tolerance"
    c = answers.get(rule)
    if c is None:
        rule = "clusters_notebook_rule"
        c = answers.get(rule)
    if c is not None:
        asked = spec.schedule()[c["index"]]
        m = apply_clusters_(copy.deepcopy(base), asked, bias_clusters=spec.bias_clusters,
                            init=spec.kmeans_init, method=spec.kmeans_method)
        meta = {"dataset": dataset, "seed": spec.train.seed, "accuracy": c["accuracy"],
                "clusters": ",".join(map(str, asked))}
        info = _save_point(m, out / "clusters.nsq", spec.model, meta, xt, yt)
        info.update(point="clusters", rule=rule, step=c["step"], clusters=list(asked),
                    setting=f"step {c['step']}: clusters {','.join(map(str, asked))}"
                    + (f", biases {spec.bias_clusters}" if spec.bias_clusters else ""),
                    sweep_accuracy=c["accuracy"])
        chosen["clusters"] = info
    return chosen


def chosen_files_markdown(chosen: dict) -> str:
    """The section of summary.md on the chosen-point files."""
    from netsqueeze.experiments.report import markdown_table

    if not chosen:
        return ""
    rows = [[f"`{c['path']}`", c["setting"], f"{c['bytes']:,}", f"{c['ratio_to_dense']:.1f}x",
             f"{c['accuracy']:.4f}", f"{c['sweep_accuracy']:.4f}"] for c in chosen.values()]
    return ("\n## The chosen points as files\n\n"
            + markdown_table(["file", "setting", "bytes", "vs dense float32",
                              "accuracy (decoded file)", "accuracy (sweep)"], rows, "llrrrr")
            + "\nAccuracy of each file measured by decoding it and evaluating on the whole test "
            "set. Use them with `netsqueeze evaluate`, `inspect` or `unpack`.\n")


def run_zero_weights(
    spec: ZeroWeightsSpec,
    out_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    plots: bool = True,
    log: Callable[[str], None] = print,
    executor=None,
) -> dict:
    """Run the notebook experiment and write its outputs; return the results dict.

    Parameters
    ----------
    spec : ZeroWeightsSpec
    out_dir : path
        Output folder (created).
    progress : bool
        Progress bars for training and each sweep.
    resume : bool
        Continue an interrupted run with the same spec from ``out_dir/.state``.
    plots : bool
        Draw the PNG figures.
    log : callable
        Receives the few lines of narration (dataset, accuracy, answers).
    executor : netsqueeze.run.Executor, optional
        Where the sweep points run (default: in this process); the results are the same.

    Returns
    -------
    dict
        What ``results.json`` holds.
    """
    spec.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    t_all = time.perf_counter()

    t = time.perf_counter()
    ds = load_data(spec.dataset, data_dir=spec.data_dir, download=spec.download,
                   progress=progress, log=log)
    times["load_data"] = time.perf_counter() - t

    torch.manual_seed(spec.train.seed)
    model = build(spec.model)
    check_images_fit(ds, model, spec.model)
    device = resolve_device(spec.device)
    measured = {k: v for k, v in spec.to_dict().items() if k != "save_chosen"}  # not a setting
    fingerprint = {"spec": measured, "dataset": ds.name, "source": ds.source,
                   "n_train": len(ds.y_train), "n_test": len(ds.y_test)}
    state = RunState(out, fingerprint, resume, {"threshold": [], "cluster": []},
                     outputs=OUTPUTS, log=log)
    trained = state.data.get("trained")
    if state.resumed:
        if trained is not None and not isinstance(trained, dict):
            trained = {}  # state.named reports it
        snapshot = state.named("snapshot") if trained is not None else None
        # what the record does not name was written after its last commit: not part of it
        state.keep_only([snapshot.name] if snapshot else ["train-checkpoint.pt"])
        state.check_files()

    t = time.perf_counter()
    if trained is not None:
        load_model_snapshot(state.named("snapshot"), model)
        model.to(device)
        train_log = dict(trained.get("log") or {})
        log("train: reusing the model trained by the interrupted run")
    else:
        if state.resumed and state.path("train-checkpoint.pt").exists():
            log("train: resuming from the last epoch saved by the interrupted run")
        tl = train(model, ds.x_train, ds.y_train, spec.train, device=device, progress=progress,
                   desc="train", checkpoint=state.path("train-checkpoint.pt"),
                   keep_checkpoint=True)
        train_log = tl.to_dict()
        # one write commits training: the snapshot first, then the record that names it
        save_model_snapshot(model, state.path("trained.pt"))
        state.data["trained"] = {"log": train_log}
        state.data["snapshot"] = "trained.pt"
        state.save()
        state.keep_only(["trained.pt"])
    times["train"] = time.perf_counter() - t

    x_test = to_tensor(ds.x_test, device)
    y_test = torch.as_tensor(ds.y_test.astype(np.int64), device=device)
    t = time.perf_counter()
    accuracy = evaluate(model, x_test, y_test)
    times["evaluate"] = time.perf_counter() - t
    log(f"trained {spec.model}: test accuracy {accuracy:.4f} on {len(ds.y_test):,} images "
        f"({train_log.get('iterations', 0)} iterations, seed {spec.train.seed})")
    warnings = []
    near = near_chance(accuracy, ds.n_classes)
    if near:
        warnings.append(near)
        log(f"warning: {near}")

    t = time.perf_counter()
    thr = sweeps.threshold_sweep(
        model, x_test, y_test, spec.thresholds(), include_bias=spec.include_bias,
        progress=progress, done=state.data["threshold"],
        on_point=lambda i, p: state.append("threshold", p), executor=executor,
    )
    times["threshold_sweep"] = time.perf_counter() - t

    t = time.perf_counter()
    clu = sweeps.cluster_sweep(
        model, x_test, y_test, spec.schedule(), bias_clusters=spec.bias_clusters,
        init=spec.kmeans_init, method=spec.kmeans_method, progress=progress,
        done=state.data["cluster"], on_point=lambda i, p: state.append("cluster", p),
        executor=executor,
    )
    times["cluster_sweep"] = time.perf_counter() - t

    t = time.perf_counter()
    per_layer = state.data.get("per_layer")
    if not isinstance(per_layer, dict):
        per_layer = per_layer_zeroable(model, x_test, y_test, spec.tolerance_pp,
                                       progress=progress)
        state.data["per_layer"] = per_layer
        state.save()
    times["per_layer"] = time.perf_counter() - t

    layers = compressible_layers(model)
    n_weights = count_weights(model)
    answers = _answers(thr, clu, spec, n_weights)
    answers["zero_per_layer"] = per_layer
    results = {
        "kind": "zero-weights",
        "spec": spec.to_dict(),
        "seed": spec.train.seed,
        "dataset": ds.to_dict(),
        "n_test_images": len(ds.y_test),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "versions": run_versions(),
        "model": {
            "name": spec.model,
            "weights": n_weights,
            "biases": int(sum(r.bias.numel() for r in layers if r.bias is not None)),
            "layers": [
                {"name": r.name, "kind": r.kind, "shape": list(r.weight.shape),
                 "weights": int(r.weight.numel())}
                for r in layers
            ],
        },
        "train": {"config": spec.train.to_dict(), "log": train_log, "accuracy": accuracy},
        "threshold_sweep": thr.to_dict(),
        "cluster_sweep": clu.to_dict(),
        "answers": answers,
        "warnings": warnings,
        "wall_times": times,
    }
    save_checkpoint(model, out / "model.pt", arch=spec.model,
                    meta={"dataset": ds.name, "accuracy": accuracy, "seed": spec.train.seed})
    if spec.save_chosen:
        t = time.perf_counter()
        results["chosen_files"] = save_chosen_points(model, spec, answers, out, x_test, y_test,
                                                     dataset=ds.name)
        times["save_chosen"] = time.perf_counter() - t
        for c in results["chosen_files"].values():
            log(f"wrote {out / c['path']}: {c['bytes']:,} bytes, accuracy {c['accuracy']:.4f} "
                f"decoded ({c['setting']})")
    if plots:
        from netsqueeze.experiments.plots import plot_zero_weights

        t = time.perf_counter()
        plot_zero_weights(results, out)
        times["plots"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_all
    atomic_write_text(out / "summary.md", zero_weights_summary(results)
                      + chosen_files_markdown(results.get("chosen_files") or {}))
    atomic_write_json(out / "results.json", results)
    state.clear()
    return results
