"""The Deep Compression pipeline end to end, on any nn.Module.

train (or load) -> iterative prune + retrain -> share weights (k-means) -> fine-tune centroids,
evaluating on the whole test set after every stage. :func:`run_compress` writes into an output
folder:

* ``results.json`` — recipe, dataset, every stage's accuracy / sparsity / distinct values / time,
  the per-layer table, weight distributions, wall times and peak memory;
* ``table.md`` — the per-layer table in the paper's format;
* ``accuracy_stages.png`` and ``weight_distribution.png``;
* ``model.nsq`` — the compressed file (sparse indices + Huffman), with its measured sizes in
  ``results.json``; ``compressed.pt`` — the compressed network as a plain checkpoint (zeros and
  shared values baked in); ``trained.pt`` — the network before compression.

Progress is kept in ``.state/`` (see :mod:`netsqueeze.experiments.state`) from the start of a
run: each finished stage is committed by one write (its own model snapshot first, then the
progress record naming it), so ``resume=True`` continues after the last committed stage however
the run was stopped, and training inside a stage resumes from its last finished epoch. A resumed
run writes the same outputs as an uninterrupted one (besides wall times).

Called on every rank of an initialised process group (``netsqueeze compress --nproc N`` or
``torchrun``), the run retrains data-parallel (:mod:`netsqueeze.nn.distributed`): every rank
runs every stage on the same global batches and holds bit-identical tensors after it (checked);
rank 0 alone evaluates, shows progress, logs and writes (snapshots, progress, outputs) while the
other ranks wait at barriers; a resumed run loads the same snapshot on every rank.
"""

from __future__ import annotations

import copy
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from netsqueeze.core.fileio import atomic_write_json, atomic_write_text
from netsqueeze.core.sparse import paper_gap_counts
from netsqueeze.experiments.common import check_images_fit, load_data
from netsqueeze.experiments.recipe import Recipe
from netsqueeze.experiments.state import RunState, load_model_snapshot, save_model_snapshot
from netsqueeze.experiments.zero_weights import run_versions
from netsqueeze.models import MODELS
from netsqueeze.models.checkpoint import save_checkpoint
from netsqueeze.models.factory import build_model, load_weights
from netsqueeze.nn import distributed as ddp
from netsqueeze.nn.export import compressed_report, save_compressed
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.prune import effective_weights, prune_, pruning_report, strip_
from netsqueeze.nn.share import (
    fisher_importance,
    share_biases_,
    share_report,
    share_weights_,
)
from netsqueeze.nn.train import evaluate, resolve_device, to_tensor, train

__all__ = ["OUTPUTS", "CompressSpec", "check_nproc", "layer_table", "run_compress"]

#: The files :func:`run_compress` writes into its output folder.
OUTPUTS = ("results.json", "table.md", "model.nsq", "compressed.pt", "trained.pt",
           "accuracy_stages.png", "weight_distribution.png", "report.html")

HIST_BINS = 121


@dataclass
class CompressSpec:
    """What to compress and with which data (the recipe says how)."""

    model: str = "lenet5"
    dataset: str = "default"
    data_dir: str | None = None
    download: bool = True
    checkpoint: str | None = None
    device: str = "auto"
    overrides: dict = field(default_factory=dict)  # recipe knobs given on the command line
    model_args: dict | None = None
    trust_checkpoint: bool = False

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _weights(model: nn.Module) -> dict[str, tuple[str, np.ndarray]]:
    """Effective compressible weights (pruned, shared or plain): target name -> (kind, w)."""
    out = {}
    for name, (kind, w) in effective_weights(model).items():
        out[name] = (kind, w.float().cpu().numpy().copy())
    return out


def _distribution(weights: dict, ranges: dict) -> dict:
    """Per layer: a histogram of the non-zero weights, or exact values when there are few."""
    out = {}
    for name, (_, w) in weights.items():
        nz = w[w != 0]
        values, counts = np.unique(nz, return_counts=True)
        entry = {"nonzero": int(nz.size), "zeros": int(w.size - nz.size)}
        if values.size <= 512:
            entry["values"] = values.astype(float).tolist()
            entry["counts"] = counts.astype(int).tolist()
        lo, hi = ranges[name]  # the trained model's range, widened to hold every weight
        if nz.size:
            lo, hi = min(lo, float(nz.min())), max(hi, float(nz.max()))
        hist, edges = np.histogram(nz, bins=HIST_BINS, range=(lo, hi))
        entry["hist"] = hist.astype(int).tolist()
        entry["edges"] = [float(edges[0]), float(edges[-1])]
        out[name] = entry
    return out


def _summary(model: nn.Module) -> dict:
    w = _weights(model)
    total = sum(a.size for _, a in w.values())
    nonzero = sum(int(np.count_nonzero(a)) for _, a in w.values())
    distinct = sum(int(np.unique(a[a != 0]).size) for _, a in w.values())
    return {
        "weights": int(total),
        "nonzero": int(nonzero),
        "kept": nonzero / total if total else 0.0,
        "distinct_nonzero": distinct,
        "layers": {
            name: {"weights": int(a.size), "nonzero": int(np.count_nonzero(a)),
                   "distinct_nonzero": int(np.unique(a[a != 0]).size)}
            for name, (_, a) in w.items()
        },
    }


def layer_table(model: nn.Module, recipe: Recipe) -> list[dict]:
    """The paper's per-layer table (its Tables 2-3) for a compressed model.

    Per layer: weights, fraction kept, index bits of shared weights (32 when not shared), the
    gap bits of the sparse index, and the storage the paper's formula gives: every stored entry
    (kept weights plus filler zeros) costs ``index bits + gap bits``, plus the codebook at 32 bits
    per value. The file's measured sizes come from ``netsqueeze inspect``.
    """
    rows = []
    shared = {r.name: r for r in share_report(model)} if recipe.share is not None else {}
    for name, (kind, w) in _weights(model).items():
        flat = w.reshape(-1)
        positions = np.flatnonzero(flat)
        gap_bits = recipe.storage.gap_bits_for(kind)
        distinct = int(np.unique(flat[positions]).size)
        if name in shared:
            bits = int(shared[name].bits)
            codebook_bits = 32 * distinct
        else:
            bits, codebook_bits = 32, 0
        counts = paper_gap_counts(positions, gap_bits=gap_bits, index_bits=bits)
        est_bits = int(counts["bits"]) + codebook_bits
        rows.append({
            "layer": name,
            "kind": kind,
            "weights": int(flat.size),
            "kept": int(positions.size),
            "kept_fraction": positions.size / flat.size if flat.size else 0.0,
            "bits": bits,
            "distinct": distinct,
            "gap_bits": gap_bits,
            "fillers": int(counts["n_fillers"]),
            "estimated_bits": est_bits,
            "estimated_bytes": est_bits / 8,
            "dense_bytes": 4 * int(flat.size),
            "ratio": (32 * flat.size) / est_bits if est_bits else float("inf"),
        })
    return rows


def _stage_plan(recipe: Recipe, trained_here: bool) -> list[tuple[str, int]]:
    plan = [("train" if trained_here else "load", 0)]
    if recipe.prune is not None:
        plan += [("prune", i) for i in range(1, recipe.prune.steps + 1)]
    if recipe.share is not None:
        plan.append(("share", 0))
        if recipe.finetune is not None and recipe.finetune.iterations > 0:
            plan.append(("finetune", 0))
    return plan


def _file_summary(report: dict) -> dict:
    """The parts of :func:`compressed_report` that results.json keeps."""
    keep = ("kind", "weights", "nonzeros", "kept", "values", "codebook_size", "index_bits",
            "gap_bits", "gap_field_bits", "bits_per_weight", "huffman_saving", "bytes",
            "dense_bytes", "ratio", "entropy_bound_bytes", "paper_bytes")
    return {
        "path": "model.nsq",
        "bytes": report["file_bytes"],
        "totals": report["totals"],
        "baseline": report["baseline"],
        "layers": {layer["name"]: {k: layer.get(k) for k in keep} for layer in report["layers"]},
    }


class _StateView:
    """What a rank other than 0 needs of rank 0's :class:`RunState`: its record and file names
    (it never writes)."""

    def __init__(self, out: Path, data: dict, resumed: bool):
        self.dir = out / ".state"
        self.data, self.resumed = data, resumed

    def path(self, name: str) -> Path:
        return self.dir / name

    def named(self, key: str) -> Path:
        return self.dir / self.data[key]  # rank 0 checked it before sending the record


def check_nproc(recipe: Recipe, nproc: int) -> None:
    """Refuse a recipe whose batches are smaller than the number of data-parallel processes."""
    for where, cfg in (("train", recipe.train),
                       ("prune.retrain", recipe.prune.retrain if recipe.prune else None),
                       ("finetune", recipe.finetune)):
        if cfg is not None and int(cfg.batch_size) < nproc:
            raise ValueError(f"recipe {where}.batch_size {cfg.batch_size} is smaller than the "
                             f"{nproc} data-parallel processes; use fewer processes")


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_compress(
    spec: CompressSpec,
    recipe: Recipe,
    out_dir: str | Path,
    *,
    progress: bool = True,
    resume: bool = False,
    plots: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Run the pipeline and write its outputs; return the results dict (see module docstring).

    On a rank other than 0 of a process group nothing is written or logged, and the return
    value is an empty dict.
    """
    out = Path(out_dir)
    nproc = ddp.world_size() if ddp.active() else 1
    main = ddp.is_main()
    if not main:
        progress, plots, log = False, False, (lambda _s: None)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    times: dict[str, float] = {}
    device = resolve_device(spec.device)
    if nproc > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())  # this rank's GPU
    # the model, its checkpoint and the recipe's layer patterns are checked before any data
    torch.manual_seed(recipe.train.seed)
    model = build_model(spec.model, spec.model_args)
    if spec.checkpoint:
        model, _meta = load_weights(spec.checkpoint, model, trust=spec.trust_checkpoint)
        log(f"loaded {spec.checkpoint}")
    layer_names = [ref.name for ref in compressible_layers(model)]
    recipe.validate(layer_names)
    if nproc > 1:
        check_nproc(recipe, nproc)
    t = time.perf_counter()
    if not main:
        ddp.barrier()  # rank 0 loads (and may download) the data first
    ds = load_data(spec.dataset, data_dir=spec.data_dir, download=spec.download,
                   progress=progress, log=log)
    if main:
        ddp.barrier()
    times["load_data"] = time.perf_counter() - t
    check_images_fit(ds, model, spec.model)
    fingerprint = {"spec": spec.to_dict(), "recipe": recipe.to_dict(), "dataset": ds.name,
                   "n_train": int(ds.n_train), "n_test": int(ds.n_test)}
    if nproc > 1:
        fingerprint["nproc"] = nproc  # the last bits of the weights depend on it
    plan = _stage_plan(recipe, trained_here=spec.checkpoint is None)
    if main:
        try:
            state = RunState(out, fingerprint, resume, {"stages": [], "distributions": {}},
                             outputs=OUTPUTS, log=log)
            done = len(state.data["stages"])
            snapshot = state.named("snapshot") if state.resumed and done else None
            if state.resumed:
                # what the record does not name was written after its last commit: not part
                # of it
                state.keep_only([f"train-{done}.pt"] + ([snapshot.name] if snapshot else []))
                state.check_files()
        except BaseException:
            ddp.broadcast_json(None)  # the other ranks stop too, without a word
            raise
        # every rank then reads the same snapshot and training checkpoint
        ddp.broadcast_json({"data": state.data, "resumed": state.resumed})
    else:
        got = ddp.broadcast_json()
        if got is None:
            raise ValueError("rank 0 could not start the run (it says why)")
        state = _StateView(out, got["data"], got["resumed"])
        done = len(state.data["stages"])
        snapshot = state.named("snapshot") if state.resumed and done else None
    if state.resumed:
        if snapshot is not None:
            load_model_snapshot(snapshot, model)
            log(f"resuming after stage {done} of {len(plan)} "
                f"({state.data['stages'][-1]['stage']})")
        else:
            log(f"resuming the first stage ({plan[0][0]}) from its last saved epoch"
                if state.path("train-0.pt").exists() else "resuming from the start")
    model.to(device)
    x_test = to_tensor(ds.x_test, device)
    y_test = torch.as_tensor(ds.y_test, dtype=torch.long, device=device)
    ranges: dict = state.data.get("ranges", {})

    for i in range(done, len(plan)):
        kind, step = plan[i]
        t0 = time.perf_counter()
        record: dict = {"stage": kind if not step else f"{kind} {step}/{recipe.prune.steps}"}
        ckpt = state.path(f"train-{i}.pt")
        if kind == "train":
            tl = train(model, ds.x_train, ds.y_train, recipe.train, device=device,
                       progress=progress, desc="train", checkpoint=ckpt, keep_checkpoint=True)
            record["train"] = tl.to_dict()
        elif kind == "prune":
            cfg = recipe.prune.config_for(step)
            prune_(model, cfg)
            record["target"] = cfg.to_dict()
            if main:
                record["accuracy_before_retrain"] = evaluate(model, x_test, y_test)
            rt = recipe.prune.retrain_for(step)
            if rt.iterations > 0:
                tl = train(model, ds.x_train, ds.y_train, rt, device=device, progress=progress,
                           desc=f"retrain {step}/{recipe.prune.steps}", checkpoint=ckpt,
                           keep_checkpoint=True)
                record["train"] = tl.to_dict()
        elif kind == "share":
            importance = None
            if recipe.share.importance == "fisher":
                t_imp = time.perf_counter()
                fisher = {"batches": 20, "batch_size": 256}
                importance = fisher_importance(model, ds.x_train, ds.y_train, **fisher,
                                               seed=recipe.train.seed, device=device)
                record["importance"] = {"kind": "fisher", **fisher,
                                        "seconds": time.perf_counter() - t_imp}
            share_weights_(model, recipe.share, importance=importance)
            record["share"] = [r.to_dict() for r in share_report(model)]
        elif kind == "finetune":
            tl = train(model, ds.x_train, ds.y_train, recipe.finetune, device=device,
                       progress=progress, desc="fine-tune centroids", checkpoint=ckpt,
                       keep_checkpoint=True)
            record["train"] = tl.to_dict()
        if kind in ("share", "finetune") and i == len(plan) - 1 and recipe.share.bias_bits:
            # after the last training: biases to k-means centres too (on every rank)
            record["bias_bits"] = recipe.share.bias_bits
            record["biases_shared"] = share_biases_(model, recipe.share.bias_bits)
        if nproc > 1:
            ddp.check_identical(model, f"after stage {record['stage']}")
        if not main:
            ddp.barrier()  # rank 0 evaluates and commits the stage
            continue
        record["accuracy"] = evaluate(model, x_test, y_test)
        record.update(_summary(model))
        record["seconds"] = time.perf_counter() - t0
        if kind == "train":
            save_checkpoint(model, out / "trained.pt", arch=spec.model,
                            meta={"dataset": ds.name, "accuracy": record["accuracy"],
                                  "seed": recipe.train.seed})
        if kind in ("train", "load"):
            ranges = {n: [float(-np.abs(w).max()), float(np.abs(w).max())]
                      for n, (_, w) in _weights(model).items()}
            state.data["ranges"] = ranges
        if kind in ("train", "load") or (kind == "prune" and step == recipe.prune.steps) or (
            i == len(plan) - 1 and kind in ("share", "finetune")
        ):
            label = {"train": "trained", "load": "trained", "prune": "pruned + retrained"}.get(
                kind, "shared" + (" + fine-tuned" if kind == "finetune" else ""))
            state.data["distributions"][label] = _distribution(_weights(model), ranges)
        extra = ""
        if "accuracy_before_retrain" in record:
            extra = f" (before retraining {record['accuracy_before_retrain']:.4f})"
        log(f"{record['stage']:>14}: accuracy {record['accuracy']:.4f}{extra}, "
            f"{100 * record['kept']:.1f} % of weights kept, "
            f"{record['distinct_nonzero']:,} distinct non-zero values "
            f"[{record['seconds']:.0f} s]")
        # commit the stage with one write: the snapshot under a new name, then the record
        # naming it (a kill in between leaves the previous record and its snapshot intact)
        snapshot = f"stage-{i}.pt"
        save_model_snapshot(model, state.path(snapshot))
        state.data["stages"].append(record)
        state.data["snapshot"] = snapshot
        state.save()
        state.keep_only([snapshot])  # the previous snapshot, this stage's training checkpoint
        ddp.barrier()

    if not main:
        return {}
    stages = state.data["stages"]
    times["stages"] = float(sum(s["seconds"] for s in stages))
    table = layer_table(model, recipe)
    stripped = strip_(copy.deepcopy(model)).cpu()
    trained_acc = stages[0]["accuracy"]
    final_acc = stages[-1]["accuracy"]
    results = {
        "kind": "compress",
        "spec": spec.to_dict(),
        "recipe": recipe.to_dict(),
        "seed": recipe.train.seed,
        "dataset": ds.to_dict(),
        "n_test_images": int(ds.n_test),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        **({"distributed": {"processes": nproc,
                            "backend": torch.distributed.get_backend()}} if nproc > 1 else {}),
        "versions": run_versions(),
        "stages": stages,
        "table": table,
        "distributions": state.data["distributions"],
        "pruning": pruning_report(model).to_dict(),
        "summary": {
            "trained_accuracy": trained_acc,
            "final_accuracy": final_acc,
            "trained_error_pct": 100 * (1 - trained_acc),
            "final_error_pct": 100 * (1 - final_acc),
            "drop_pp": 100 * (trained_acc - final_acc),
            "weights": int(sum(r["weights"] for r in table)),
            "kept": int(sum(r["kept"] for r in table)),
            "kept_fraction": sum(r["kept"] for r in table) / max(1, sum(r["weights"]
                                                                        for r in table)),
            "estimated_bytes": float(sum(r["estimated_bytes"] for r in table)),
            "dense_bytes": int(sum(r["dense_bytes"] for r in table)),
        },
        "wall_times": times,
    }
    s = results["summary"]
    s["estimated_ratio"] = s["dense_bytes"] / s["estimated_bytes"] if s["estimated_bytes"] else 0
    storage_meta = {"conv_gap_bits": recipe.storage.conv_gap_bits,
                    "fc_gap_bits": recipe.storage.fc_gap_bits}
    save_checkpoint(stripped, out / "compressed.pt", arch=spec.model,
                    meta={"storage": storage_meta, "recipe": recipe.name, "accuracy": final_acc,
                          "dataset": ds.name})
    t = time.perf_counter()
    builtin = spec.model in MODELS
    save_compressed(stripped, out / "model.nsq", arch=spec.model if builtin else None,
                    factory=None if builtin else spec.model,
                    factory_args=None if builtin else spec.model_args,
                    gap_bits={"conv": storage_meta["conv_gap_bits"],
                              "fc": storage_meta["fc_gap_bits"]},
                    meta={"recipe": recipe.name, "dataset": ds.name, "accuracy": final_acc,
                          "n_test_images": int(ds.n_test), "seed": recipe.train.seed})
    times["pack"] = time.perf_counter() - t
    results["file"] = _file_summary(compressed_report(out / "model.nsq", baseline=True))
    for row in table:
        layer = results["file"]["layers"].get(row["layer"])
        if layer is not None:
            row["file_bytes"] = layer["bytes"]
            row["file_ratio"] = row["dense_bytes"] / layer["bytes"] if layer["bytes"] else 0.0
    from netsqueeze.experiments.report import compress_table_markdown

    if plots:
        from netsqueeze.experiments.plots import plot_compress

        t = time.perf_counter()
        plot_compress(results, out)
        times["plots"] = time.perf_counter() - t
    times["total"] = time.perf_counter() - t_all
    results["peak_rss_mb"] = _peak_rss_mb()
    atomic_write_text(out / "table.md", compress_table_markdown(results))
    atomic_write_json(out / "results.json", results)
    state.clear()
    return results
