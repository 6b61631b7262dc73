"""``netsqueeze compress --max-drop / --max-error`` and ``netsqueeze sensitivity``.

The training set is split into training and validation (stratified, fixed by seed); the model
is trained (or loaded) on the training part only. Sensitivity, allocation, back-off and the
choice of the final model use validation only (:mod:`netsqueeze.auto`); the test set is measured
once for the trained model and once for the chosen one, for the report. The output folder gets
``results.json`` (which split decided what), ``recipe.toml`` (the chosen allocation as a recipe
for ``netsqueeze compress --recipe``), ``table.md``, ``sensitivity.json`` / ``.md`` / ``.png``,
``pareto.png``, ``model.nsq`` and ``compressed.pt``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from netsqueeze.core.fileio import atomic_write_json, atomic_write_text
from netsqueeze.errors import FormatError
from netsqueeze.experiments.common import check_images_fit, load_data
from netsqueeze.experiments.recipe import BUILTIN_RECIPES, load_recipe
from netsqueeze.nn.share import fisher_importance
from netsqueeze.nn.train import TrainConfig, evaluate, resolve_device, to_tensor, train

__all__ = [
    "PAPER_POINTS",
    "AutoSpec",
    "recipe_toml",
    "run_auto_cli",
    "run_auto_compress",
    "run_sensitivity",
]

#: Deep Compression (Han et al., 2016), Table 1: compressed size and top-1 *test* error.
PAPER_POINTS = {
    "lenet-300-100": {"label": "paper: 27 KB, 1.58 % (test)", "bytes": 27_000, "error_pct": 1.58},
    "lenet5": {"label": "paper: 44 KB, 0.74 % (test)", "bytes": 44_000, "error_pct": 0.74},
}


@dataclass
class AutoSpec:
    """What to compress, with which data, and the budget (one of max_drop / max_error)."""

    model: str = "lenet5"
    dataset: str = "default"
    data_dir: str | None = None
    download: bool = True
    checkpoint: str | None = None
    device: str = "auto"
    max_drop: float | None = None
    max_error: float | None = None
    time_budget: float | None = None
    val_fraction: float = 0.1
    confirm_fraction: float = 0.05
    seed: int = 0
    retrain_iterations: int | None = None
    finetune_iterations: int | None = None
    max_backoffs: int = 8
    max_rounds: int = 40
    margin: float = 0.2
    model_args: dict | None = None
    trust_checkpoint: bool = False

    def validate(self) -> AutoSpec:
        if self.max_drop is None and self.max_error is None:
            raise ValueError("give a budget: --max-drop PP or --max-error PCT")
        if self.max_drop is not None and not self.max_drop >= 0:
            raise ValueError(f"--max-drop must be >= 0 percentage points, got {self.max_drop}")
        if self.max_error is not None and not 0 < self.max_error < 100:
            raise ValueError(f"--max-error must be a percentage in (0, 100), got "
                             f"{self.max_error}")
        if self.time_budget is not None and not self.time_budget > 0:
            raise ValueError(f"--time-budget must be > 0 seconds, got {self.time_budget}")
        if isinstance(self.max_rounds, bool) or not isinstance(self.max_rounds, int) or (
                self.max_rounds < 0):
            raise ValueError(f"--max-rounds must be an integer >= 0, got {self.max_rounds!r}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"--val-fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.confirm_fraction < 1 - self.val_fraction:
            raise ValueError(f"--confirm-fraction must be in [0, 1 - --val-fraction), got "
                             f"{self.confirm_fraction}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _configs(model_name: str) -> tuple[TrainConfig, TrainConfig, TrainConfig, object]:
    """Training, retraining and fine-tuning settings: the built-in recipe's when there is one."""
    if model_name in BUILTIN_RECIPES:
        r = load_recipe(model_name)
        retrain = r.prune.retrain if r.prune is not None else dataclasses.replace(
            r.train, lr=r.train.lr / 10)
        fine = r.finetune or retrain
        return r.train, retrain, fine, r.storage
    from netsqueeze.experiments.recipe import StorageConfig

    t = TrainConfig()
    rt = dataclasses.replace(t, lr=t.lr / 10)
    return t, rt, rt, StorageConfig()


def _prepare(spec: AutoSpec, progress: bool, log: Callable[[str], None],
             open_state: Callable | None = None) -> dict:
    """Data, splits and the trained model. ``open_state(ds)``, when given, returns the run's
    :class:`~netsqueeze.experiments.state.RunState`: training then resumes from its checkpoint,
    and a model trained before is loaded from its snapshot instead of trained again."""
    from netsqueeze.auto import validation_split
    from netsqueeze.experiments.state import load_model_snapshot, save_model_snapshot
    from netsqueeze.models.factory import build_model, load_weights

    ds = load_data(spec.dataset, data_dir=spec.data_dir, download=spec.download,
                   progress=progress, log=log)
    state = None if open_state is None else open_state(ds)
    device = resolve_device(spec.device)
    if ds.x_val is not None:
        # the data set brings its own validation split: train on all of training
        tr = np.arange(ds.n_train)
        x_val, y_val = ds.x_val, ds.y_val
        split = {"source": "the data set's own x_val / y_val", "stratified": None}
        log(f"validation: the data set's own {len(y_val):,} images; training on all "
            f"{ds.n_train:,} training images")
    else:
        tr, va = validation_split(ds.y_train, spec.val_fraction, seed=spec.seed)
        x_val, y_val = ds.x_train[va], ds.y_train[va]
        split = {"source": f"{spec.val_fraction:g} of the training set, stratified, seed "
                 f"{spec.seed}", "stratified": True}
        log(f"validation: {va.size:,} of the {ds.n_train:,} training images (stratified, seed "
            f"{spec.seed}); training on the other {tr.size:,}")
    confirm = None
    if spec.confirm_fraction > 0:
        # the confirmation split: also out of training, never seen by the search's decisions
        keep, cf = validation_split(ds.y_train[tr], spec.confirm_fraction * ds.n_train / tr.size,
                                    seed=spec.seed + 1)
        confirm, tr = tr[cf], tr[keep]
        split["confirmation"] = (f"{spec.confirm_fraction:g} of the training set, stratified, "
                                 f"seed {spec.seed + 1}: {confirm.size:,} images")
        log(f"confirmation: {confirm.size:,} more training images held out for the final "
            f"choice; training on {tr.size:,}")
    train_cfg, retrain_cfg, fine_cfg, storage = _configs(spec.model)
    torch.manual_seed(train_cfg.seed)
    t = time.perf_counter()
    trained_how = (f"loaded {spec.checkpoint}" if spec.checkpoint else
                   "trained on the training part of the split")
    if state is not None and state.data.get("trained"):
        model = load_model_snapshot(state.named("trained"),
                                    build_model(spec.model, spec.model_args))
        log(f"resumed: the trained model from {state.named('trained')}")
        train_seconds = float(state.data.get("train_seconds", 0.0))
    elif spec.checkpoint:
        model, _ = load_weights(spec.checkpoint, build_model(spec.model, spec.model_args),
                                trust=spec.trust_checkpoint)
        log(trained_how)
    else:
        model = build_model(spec.model, spec.model_args)
        check_images_fit(ds, model, spec.model)
        ckpt = None if state is None else state.path("train-0.pt")
        train(model, ds.x_train[tr], ds.y_train[tr], train_cfg, device=device,
              progress=progress, desc="train", checkpoint=ckpt, keep_checkpoint=True)
    if state is not None and not state.data.get("trained"):
        # one write commits the trained model; its training checkpoint is then left over
        train_seconds = time.perf_counter() - t
        save_model_snapshot(model, state.path("trained.pt"))
        state.data.update(trained="trained.pt", train_seconds=train_seconds)
        state.save()
        state.keep_only(["trained.pt"])
    elif state is None:
        train_seconds = time.perf_counter() - t
    check_images_fit(ds, model, spec.model)
    model.to(device)
    return {
        "state": state,
        "ds": ds, "device": device, "n_train": int(tr.size), "n_val": len(y_val),
        "split": split, "model": model,
        "train_cfg": train_cfg, "retrain_cfg": retrain_cfg, "fine_cfg": fine_cfg,
        "storage": storage, "trained_how": trained_how, "train_seconds": train_seconds,
        "x_tr": to_tensor(ds.x_train[tr], device),
        "y_tr": torch.as_tensor(ds.y_train[tr], dtype=torch.long, device=device),
        "x_va": to_tensor(x_val, device),
        "y_va": torch.as_tensor(y_val, dtype=torch.long, device=device),
        "n_confirm": 0 if confirm is None else int(confirm.size),
        "x_cf": None if confirm is None else to_tensor(ds.x_train[confirm], device),
        "y_cf": None if confirm is None else torch.as_tensor(ds.y_train[confirm],
                                                             dtype=torch.long, device=device),
    }


def _epochs(n_train: int, batch: int, k: float) -> int:
    return max(1, int(round(k * n_train / batch)))  # noqa: RUF046


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {v!r} to TOML")


def _section(name: str, d: dict) -> str:
    return f"[{name}]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in d.items())


def recipe_toml(name: str, description: str, train_cfg: TrainConfig, sparsity: dict,
                bits: dict | None, *, steps: int, retrain_cfg: TrainConfig,
                fine_cfg: TrainConfig | None, storage, bias_bits: int | None = None,
                ecsq_delta: float | None = None, importance: str | None = None) -> str:
    """A recipe (see :mod:`netsqueeze.experiments.recipe`) holding a chosen allocation."""
    parts = [f"name = {json.dumps(name)}\ndescription = {json.dumps(description)}\n",
             _section("train", train_cfg.to_dict())]
    if any(v > 0 for v in sparsity.values()):
        parts.append(_section("prune", {"sparsity": {k: float(v) for k, v in sparsity.items()},
                                        "steps": max(1, int(steps)), "schedule": "cubic"}))
        parts.append(_section("prune.retrain", retrain_cfg.to_dict()))
    if bits:
        share = {"bits": {k: int(v) for k, v in bits.items()}}
        if ecsq_delta is not None:
            share.update(method="ecsq", rate_delta=float(ecsq_delta))
            if importance:
                share["importance"] = importance
        if bias_bits:
            share["bias_bits"] = int(bias_bits)
        parts.append(_section("share", share))
        if fine_cfg is not None and fine_cfg.iterations > 0:
            parts.append(_section("finetune", fine_cfg.to_dict()))
    parts.append(_section("storage", dataclasses.asdict(storage)))
    return "\n".join(parts)


def _layer_table_md(report: dict, file_layers: dict) -> str:
    rows = ["| layer | weights | kept | bits | file bytes | ratio |",
            "|---|---:|---:|---:|---:|---:|"]
    for name, s in report["sparsity"].items():
        fl = file_layers.get(name, {})
        b = (report["bits"] or {}).get(name, "32 (raw)")
        w = fl.get("weights", 0)
        nb = fl.get("bytes", 0)
        rows.append(f"| {name} | {w:,} | {100 * (1 - s):.2f} % | {b} | {nb:,} | "
                    f"{(4 * w / nb if nb else 0):.1f}x |")
    return "\n".join(rows) + "\n"


#: What a sensitivity run writes into its folder.
SENSITIVITY_OUTPUTS = ("sensitivity.json", "sensitivity.md", "sensitivity.png")


def run_sensitivity(spec: AutoSpec, out_dir: str | Path, *, retrain_iterations: int = 0,
                    progress: bool = True, plots: bool = True,
                    log: Callable[[str], None] = print, executor=None,
                    resume: bool = False) -> dict:
    """Measure per-layer sensitivity on validation and write sensitivity.json / .md / .png
    (``executor``: where the points run without retraining; default in this process).

    Progress is kept in ``out_dir/.state``: training resumes from its epoch checkpoint, and
    ``resume=True`` after the curves were measured only writes the outputs. A run killed while
    measuring measures again from the trained model, to the same curves."""
    from netsqueeze.auto import SensitivityResult, sensitivity
    from netsqueeze.auto.plots import plot_sensitivity

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def open_state(ds):
        state = _open_state(out, {"kind": "sensitivity", "retrain_iterations":
                                  int(retrain_iterations)}, spec, ds, resume, {},
                            SENSITIVITY_OUTPUTS, log)
        if state.resumed:
            log(f"resuming from {state.file}")
        return state

    p = _prepare(spec, progress, log, open_state)
    state = p["state"]
    rt = p["retrain_cfg"]
    calls = [0]

    def retrain_fn(m, n):
        calls[0] += 1
        train(m, p["x_tr"], p["y_tr"], dataclasses.replace(rt, iterations=n,
              seed=rt.seed + calls[0]), device=p["device"], progress=False)

    res, _ = _kept(state, "sensitivity", "sensitivity curves", SensitivityResult.from_dict,
                   lambda: sensitivity(p["model"], (p["x_va"], p["y_va"]), retrain_fn=retrain_fn,
                                       retrain_iterations=retrain_iterations, progress=progress,
                                       executor=executor))
    res.meta = {"model": spec.model, "dataset": p["ds"].name, "seed": spec.seed,
                "val_fraction": spec.val_fraction, "validation": p["split"]["source"],
                "trained": p["trained_how"]}
    d = res.to_dict()
    atomic_write_json(out / "sensitivity.json", d)
    atomic_write_text(out / "sensitivity.md", res.table_markdown())
    if plots:
        plot_sensitivity(d, out / "sensitivity.png")
    state.clear()
    log(res.table_markdown())
    return d


def _open_state(out: Path, kind: dict, spec: AutoSpec, ds, resume: bool, empty: dict,
                outputs, log: Callable[[str], None], also_keep: Callable | None = None):
    """The run's :class:`~netsqueeze.experiments.state.RunState`, fingerprinted by ``kind``, the
    spec and the data set. A resumed state keeps only the files its record names: the trained
    model (or, before it, training's checkpoint) and ``also_keep(data)``; each is read once."""
    from netsqueeze.experiments.state import RunState

    fingerprint = {**kind, "spec": spec.to_dict(), "dataset": ds.name,
                   "n_train": int(ds.n_train), "n_test": int(ds.n_test)}
    state = RunState(out, fingerprint, resume, empty, outputs=outputs, log=log)
    if state.resumed:
        keep = ["trained.pt"] if state.data.get("trained") else ["train-0.pt"]
        state.keep_only(keep + (also_keep(state.data) if also_keep else []))
        state.check_files()
    return state


def _kept(state, key: str, what: str, from_dict: Callable, compute: Callable) -> tuple:
    """A stage's result and seconds: read back from the run's saved state when a resumed run
    has it, else computed, then saved there (one write) -- ``(value, seconds)``."""
    from netsqueeze.experiments.state import START_OVER

    if isinstance(state.data.get(key), dict):
        try:
            value = from_dict(state.data[key])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{state.file}: corrupt {what} ({exc}); {START_OVER}") from None
        return value, float(state.data.get(f"{key}_seconds", 0.0))
    t = time.perf_counter()
    value = compute()
    seconds = time.perf_counter() - t
    state.data.update({key: value.to_dict(), f"{key}_seconds": seconds})
    state.save()
    return value, seconds


#: What an automatic run writes into its folder.
OUTPUTS = ("results.json", "recipe.toml", "table.md", "sensitivity.json", "sensitivity.md",
           "sensitivity.png", "pareto.png", "model.nsq", "compressed.pt")


def run_auto_compress(spec: AutoSpec, out_dir: str | Path, *, progress: bool = True,
                      plots: bool = True, references: list[dict] | None = None,
                      log: Callable[[str], None] = print, executor=None,
                      resume: bool = False) -> dict:
    """Compress ``spec.model`` under the budget with no recipe; write the outputs (module doc).

    Progress is kept in ``out_dir/.state`` (:mod:`netsqueeze.experiments.state`): the trained
    model, the sensitivity curves, the layer prices and the search's journal
    (:mod:`netsqueeze.auto.journal`: every measurement, and the weights of the models the search
    still holds). ``resume=True`` continues a run that was
    stopped at any point: the search replays its journal and goes on, to the outputs the run
    would have written; the time budget counts the time spent computing, not the time stopped.
    """
    from netsqueeze.auto import (
        CostModel,
        Journal,
        SensitivityResult,
        compress,
        cost_model,
        sensitivity,
    )
    from netsqueeze.auto.journal import weights_files
    from netsqueeze.experiments.state import START_OVER
    from netsqueeze.models.checkpoint import save_checkpoint
    from netsqueeze.nn.export import compressed_report, save_compressed
    from netsqueeze.nn.prune import strip_
    from netsqueeze.nn.share import is_shared

    spec.validate()
    t_all = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    def open_state(ds):
        state = _open_state(out, {"kind": "auto-compress"}, spec, ds, resume, {"journal": []},
                            OUTPUTS, log, also_keep=lambda data: weights_files(data["journal"]))
        if state.resumed:
            n = sum(1 for e in state.data["journal"]
                    if isinstance(e, dict) and e.get("kind") == "train")
            log(f"resuming from {state.file}: {n} retrainings of the search recorded")
        return state

    p = _prepare(spec, progress, log, open_state)
    state = p["state"]
    ds, device = p["ds"], p["device"]
    n_tr = p["n_train"]
    rt, ft = p["retrain_cfg"], p["fine_cfg"]
    retrain_its = spec.retrain_iterations
    if retrain_its is None:
        retrain_its = _epochs(n_tr, rt.batch_size, 1.0)
    fine_its = spec.finetune_iterations
    if fine_its is None:
        fine_its = _epochs(n_tr, ft.batch_size, 1.0)
    journal = Journal(state.data["journal"], state.dir, lambda _entries: state.save(),
                      fix=START_OVER)

    def train_fn(m, n):
        # the batch order follows the call number: a resumed search trains alike
        shared = any(is_shared(mod) for mod in m.modules())
        cfg = ft if shared else rt
        train(m, p["x_tr"], p["y_tr"], dataclasses.replace(cfg, iterations=n,
              seed=cfg.seed + journal.train_calls), device=device, progress=progress,
              desc="fine-tune shared" if shared else "retrain")

    def eval_fn(m):
        return evaluate(m, p["x_va"], p["y_va"])

    model = p["model"]

    def measure_sensitivity():
        # the one-layer points are independent: they may run on worker processes or Ray
        res = sensitivity(model, (p["x_va"], p["y_va"]), progress=progress, executor=executor)
        res.meta = {"model": spec.model, "dataset": ds.name}
        return res

    sens, sens_seconds = _kept(state, "sensitivity", "sensitivity curves",
                               SensitivityResult.from_dict, measure_sensitivity)
    gap = {"conv": p["storage"].conv_gap_bits, "fc": p["storage"].fc_gap_bits}
    # every layer priced by the real coder on the sensitivity grid
    costs, price_seconds = _kept(state, "cost", "layer prices", CostModel.from_dict,
                                 lambda: cost_model(model, sens.layers[0].sparsities,
                                                    sens.layers[0].bits, gap_bits=gap))
    # a safety margin of one standard error of the validation accuracy, so that a model that
    # just meets the budget on validation is likely to meet it on unseen data too
    n_val = p["n_val"]
    p_ref = 1 - spec.max_error / 100 if spec.max_error is not None else sens.baseline_accuracy
    margin_pp = 100 * (p_ref * (1 - p_ref) / n_val) ** 0.5
    min_acc = None if spec.max_error is None else 1 - spec.max_error / 100 + margin_pp / 100
    max_drop = None if spec.max_drop is None else max(0.0, spec.max_drop - margin_pp)
    log(f"validation margin: {margin_pp:.3f} pp (one standard error on {n_val:,} images)")
    # the confirmation refuses a model only when its drop passes the budget by more than half
    # the confirmation split's own standard error
    confirm_se = (p_ref * (1 - p_ref) / p["n_confirm"]) ** 0.5 if p["n_confirm"] else 0.0
    confirm_tol = confirm_se / 2
    budget_left = None
    if spec.time_budget is not None:
        # what training and sensitivity left, as computed (and kept) the first time
        budget_left = state.data.get("budget_left")
        if not isinstance(budget_left, int | float) or isinstance(budget_left, bool):
            budget_left = max(1.0, spec.time_budget - (time.perf_counter() - t_all))
            state.data["budget_left"] = budget_left
            state.save()
    best, rep = compress(model, train_fn, eval_fn, max_drop=max_drop,
                         min_accuracy=min_acc, sensitivity_result=sens, cost=costs,
                         retrain_iterations=retrain_its, finetune_iterations=fine_its,
                         final_retrain_iterations=3 * retrain_its,
                         margin=spec.margin, max_backoffs=spec.max_backoffs,
                         max_rounds=spec.max_rounds, time_budget=budget_left,
                         importance_fn=lambda m: fisher_importance(
                             m, p["x_tr"], p["y_tr"], seed=spec.seed, device=device),
                         confirm_fn=None if p["x_cf"] is None else (
                             lambda m: evaluate(m, p["x_cf"], p["y_cf"])),
                         # the drop the search may spend on validation (the default), for
                         # either kind of budget
                         confirm_tolerance=confirm_tol,
                         gap_bits=gap, journal=journal, progress=progress, log=log)
    report = rep.to_dict()
    # the test set: once for the trained model, once for the chosen one
    x_te = to_tensor(ds.x_test, device)
    y_te = torch.as_tensor(ds.y_test, dtype=torch.long, device=device)
    trained_test = evaluate(model, x_te, y_te)
    final_test = evaluate(best, x_te, y_te)
    stripped = strip_(copy.deepcopy(best)).cpu()
    save_compressed(stripped, out / "model.nsq", arch=spec.model, gap_bits=gap,
                    meta={"recipe": f"auto-{spec.model}", "dataset": ds.name,
                          "accuracy": final_test, "n_test_images": int(ds.n_test),
                          "seed": spec.seed})
    save_checkpoint(stripped, out / "compressed.pt", arch=spec.model,
                    meta={"storage": gap, "recipe": f"auto-{spec.model}",
                          "accuracy": final_test, "dataset": ds.name})
    fr = compressed_report(out / "model.nsq", baseline=False)
    file_layers = {la["name"]: la for la in fr["layers"]}
    budget_txt = (f"--max-drop {spec.max_drop}" if spec.max_drop is not None else "") + (
        f" --max-error {spec.max_error}" if spec.max_error is not None else "")
    toml = recipe_toml(
        f"auto-{spec.model}",
        f"chosen by netsqueeze compress {budget_txt.strip()} on {ds.name} (validation: "
        f"{p['split']['source']})",
        p["train_cfg"], report["sparsity"], report["bits"], steps=max(1, rep.prune_rounds),
        retrain_cfg=dataclasses.replace(rt, iterations=retrain_its),
        fine_cfg=dataclasses.replace(ft, iterations=fine_its), storage=p["storage"],
        bias_bits=report.get("bias_bits"), ecsq_delta=report.get("ecsq_delta"),
        importance="fisher" if report.get("importance") else None)
    atomic_write_text(out / "recipe.toml", toml)
    table = _layer_table_md(report, file_layers)
    refs = list(references or [])
    if spec.model in PAPER_POINTS:
        refs.insert(0, PAPER_POINTS[spec.model])
    file_bytes = int(fr["file_bytes"])
    results = {
        "kind": "auto-compress",
        "spec": spec.to_dict(),
        "dataset": ds.to_dict(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "split": {"validation_images": n_val, "training_images": n_tr,
                  "test_images": int(ds.n_test), "val_fraction": spec.val_fraction,
                  "confirmation_images": p["n_confirm"],
                  "confirm_fraction": spec.confirm_fraction,
                  "confirmation_source": p["split"].get("confirmation"),
                  "seed": spec.seed, "stratified": p["split"]["stratified"],
                  "validation_source": p["split"]["source"]},
        "decided_on": {**report["decided_on"], "training and retraining": "training part",
                       "reported accuracy": "test, measured once per finished model (trained "
                       "and chosen)"},
        "trained": p["trained_how"],
        "retrain_iterations": retrain_its,
        "final_retrain_iterations": 3 * retrain_its,
        "validation_margin_pp": margin_pp,
        "confirmation_tolerance_pp": 100 * confirm_tol,
        "finetune_iterations": fine_its,
        "summary": {
            "trained_val_accuracy": rep.baseline_accuracy,
            "final_val_accuracy": rep.accuracy,
            "trained_test_accuracy": trained_test,
            "final_test_accuracy": final_test,
            "trained_error_pct": 100 * (1 - trained_test),
            "final_error_pct": 100 * (1 - final_test),
            "drop_pp": 100 * (trained_test - final_test),
            "file_bytes": file_bytes,
            "dense_bytes": int(fr["totals"]["dense_bytes"]),
            "ratio": float(fr["totals"]["ratio_to_dense"]),
            "sparsity": report["sparsity"],
            "bits": report["bits"],
            "bias_bits": report.get("bias_bits"),
            "ecsq_delta": report.get("ecsq_delta"),
            "backoffs": rep.backoffs,
            "stopped_by": rep.stopped_by,
        },
        "search": {k: v for k, v in report.items() if k not in ("sensitivity", "cost")},
        "cost": report["cost"],
        "references": refs,
        # the search's time is what it computed, across a resume; "total" is this process's
        "wall_times": {"train": p["train_seconds"], "sensitivity": sens_seconds,
                       "pricing": price_seconds, "search": rep.seconds,
                       "total": time.perf_counter() - t_all},
        "resumed": state.resumed,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    atomic_write_json(out / "sensitivity.json", sens.to_dict())
    atomic_write_text(out / "sensitivity.md", sens.table_markdown())
    atomic_write_text(out / "table.md", table)
    if plots:
        from netsqueeze.auto.plots import plot_pareto, plot_sensitivity

        plot_sensitivity(sens.to_dict(), out / "sensitivity.png")
        plot_pareto(report, out / "pareto.png", refs)
    results["wall_times"]["total"] = time.perf_counter() - t_all
    atomic_write_json(out / "results.json", results)
    state.clear()
    return results


def run_auto_cli(args) -> int:
    """``netsqueeze compress --max-drop / --max-error``: run, then print where things are."""
    if args.recipe is not None:
        raise ValueError("--recipe and --max-drop / --max-error exclude each other: the "
                         "automatic search writes its own recipe.toml")
    if args.max_drop is None and args.max_error is None:
        raise ValueError("--time-budget needs a budget: add --max-drop PP or --max-error PCT")
    spec = AutoSpec(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                    download=args.download, checkpoint=args.checkpoint, device=args.device,
                    max_drop=args.max_drop, max_error=args.max_error,
                    time_budget=args.time_budget, val_fraction=args.val_fraction,
                    confirm_fraction=args.confirm_fraction, max_rounds=args.max_rounds,
                    model_args=getattr(args, "model_args_dict", None),
                    trust_checkpoint=bool(getattr(args, "trust_checkpoint", False))).validate()
    from netsqueeze.run import make_executor

    with make_executor(workers=getattr(args, "workers", None),
                       ray=getattr(args, "ray", None)) as executor:
        res = run_auto_compress(spec, args.out, progress=not args.quiet, executor=executor,
                                resume=bool(args.resume))
    s = res["summary"]
    out = Path(args.out)
    print(f"wrote {out / 'results.json'}, {out / 'recipe.toml'}, {out / 'table.md'}, "
          f"{out / 'model.nsq'} and figures in {res['wall_times']['total']:.0f} s")
    print(f"{args.model}: top-1 test error {s['trained_error_pct']:.2f} % -> "
          f"{s['final_error_pct']:.2f} % (validation decided: {100 * s['trained_val_accuracy']:.2f}"
          f" % -> {100 * s['final_val_accuracy']:.2f} %); model.nsq {s['file_bytes']:,} bytes, "
          f"{s['ratio']:.1f}x smaller than dense float32")
    return 0
