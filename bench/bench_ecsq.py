"""Entropy-constrained weight sharing (ECSQ) against k-means, on pruned LeNet layers.

Input: with ``--pruned-checkpoint``, ``RUN/compressed.pt`` of ``netsqueeze compress`` run
with a copy of the network's recipe that stops after pruning (no ``[share]`` / ``[finetune]``
tables): the recipe's own gradual pruning and retraining, the measure the issue asks for; or a
pruned model saved whole by ``torch.save`` (``--pruned``, a trusted file of your own: it is
unpickled); or, with ``--checkpoint``, a training checkpoint of the pipeline
(``RUN/.state/train-0.pt``, trusted too) that is pruned here in one shot to the recipe's final
sparsity and retrained ``--retrain`` iterations (a shortcut when the full recipe is too slow:
say so when reporting). Full MNIST gives the training batches of the importance estimate and
the test set.

Part 1, distortion at equal rate (no training). For every conv/linear layer, on its kept
weights ``w`` with importance ``h`` (the diagonal Fisher estimate: squared gradients of the
cross-entropy, summed over ``--fisher-batches`` batches of 256 training images):

* k-means (linear init, the paper's) with ``k = 2, 4, ..., 2**bits`` (``bits`` from the recipe):
  rate ``R`` = zero-order entropy of the labels (bits per kept weight), distortion
  ``D = sum (w - c)**2`` and weighted distortion ``Dh = sum h (w - c)**2``;
* ECSQ with at most ``2**bits`` values and ``target_bits = R`` of each k-means point, without
  and with the importance.

Part 2, bytes against test error after fine-tuning (``--finetune``): the model is shared by
k-means at the recipe's bits (today's pipeline) -- and, with ``--fewer-bits B ...``, at ``B``
bits fewer for every layer (k-means's own rate-accuracy curve) -- and by importance-weighted ECSQ with at most
as many values per layer at rates ``R_kmeans - delta`` for each ``--deltas``; each is
fine-tuned (the recipe's ``[finetune]``) and written with ``save_compressed`` twice: with the
version-1 codings (``entropy="classic"``) and with rANS allowed (``"auto"``). Every error is
measured on the 10,000 test images.

Usage::

    python bench/bench_ecsq.py --pruned l5_pruned.pt --model lenet5 --out bench/results/ecsq5.json
    python bench/bench_ecsq.py --pruned l5_pruned.pt --model lenet5 --finetune --deltas 0.5 1
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from common import DEFAULT_MNIST, machine_info  # also puts the project root on sys.path

from netsqueeze.core.ecsq import ECSQ1D, label_entropy
from netsqueeze.core.fileio import atomic_write_json
from netsqueeze.core.kmeans1d import KMeans1D
from netsqueeze.data import load
from netsqueeze.experiments.recipe import load_recipe
from netsqueeze.models import build
from netsqueeze.models.checkpoint import load_checkpoint
from netsqueeze.nn.export import save_compressed
from netsqueeze.nn.modules import compressible_layers
from netsqueeze.nn.prune import apply_masks_, prune_
from netsqueeze.nn.share import ShareConfig, fisher_importance, share_weights_
from netsqueeze.nn.train import evaluate, to_tensor, train


def kept_weights(model):
    out = {}
    for ref in compressible_layers(model):
        w = ref.weight.detach().cpu().numpy()
        out[ref.name] = (ref.kind, w, w != 0)
    return out


def part1(model, imp, share: ShareConfig, points: int) -> dict:
    res = {}
    for name, (kind, w, keep) in kept_weights(model).items():
        x = w[keep].astype(np.float64)
        h = imp[name].cpu().numpy()[keep].astype(np.float64)
        h = h / h.mean() if h.sum() > 0 else np.ones_like(x)
        bits = share.bits_for(name, kind)
        rows = []
        for b in range(max(1, bits - points + 1), bits + 1):
            km = KMeans1D(2**b, init="linear").fit(x)
            c = km.centroids_[km.labels_]
            rate = label_entropy(km.labels_)
            row = {"k": 2**b, "kmeans": {"rate": rate, "D": float(((x - c) ** 2).sum()),
                                         "Dh": float((h * (x - c) ** 2).sum()),
                                         "values": int(km.n_clusters_)}}
            for label, sw in (("ecsq", None), ("ecsq_fisher", h)):
                t = time.process_time()
                q = ECSQ1D(2**bits, target_bits=rate).fit(x, sample_weight=sw)
                cq = q.centroids_[q.labels_]
                row[label] = {"rate": q.rate_, "D": float(((x - cq) ** 2).sum()),
                              "Dh": float((h * (x - cq) ** 2).sum()), "values": q.n_clusters_,
                              "lambda": q.lambda_, "cpu_s": time.process_time() - t}
            rows.append(row)
        res[name] = {"kind": kind, "kept": int(keep.sum()), "bits": bits, "points": rows}
    return res


def _bytes(model, gap_bits, entropy) -> int:
    with tempfile.TemporaryDirectory() as d:
        return save_compressed(model, Path(d) / "m.nsq", gap_bits=gap_bits,
                               entropy=entropy)["bytes"]


def part2(model, imp, recipe, ds, deltas, device, fewer_bits=()) -> list:
    x_test = to_tensor(ds.x_test, device)
    y_test = torch.as_tensor(ds.y_test, dtype=torch.long, device=device)
    gap = {"conv": recipe.storage.conv_gap_bits, "fc": recipe.storage.fc_gap_bits}
    layers = kept_weights(model)
    km_rates = {}
    for name, (kind, w, keep) in layers.items():
        km = KMeans1D(2 ** recipe.share.bits_for(name, kind), init="linear").fit(w[keep])
        km_rates[name] = label_entropy(km.labels_)
    variants = ([("kmeans", None)] + [("kmeans_fewer_bits", b) for b in fewer_bits]
                + [("ecsq_fisher", d) for d in deltas])
    out = []
    for method, delta in variants:
        t0 = time.perf_counter()
        m = copy.deepcopy(model)
        if method == "kmeans":
            share_weights_(m, recipe.share)
        elif method == "kmeans_fewer_bits":  # the k-means curve: every layer `delta` bits less
            share_weights_(m, ShareConfig(bits={
                name: max(1, recipe.share.bits_for(name, kind) - int(delta))
                for name, (kind, _, _) in layers.items()}))
        else:
            for name, (kind, _, _) in layers.items():
                bits = recipe.share.bits_for(name, kind)
                cfg = ShareConfig(bits=bits, method="ecsq",
                                  target_bits=max(0.0, km_rates[name] - delta))
                share_weights_(m, cfg, filter_fn=lambda mod, n, name=name: n == name,
                               importance={name: imp[name]})
        acc_shared = evaluate(m, x_test, y_test)
        torch.manual_seed(recipe.train.seed)
        train(m, ds.x_train, ds.y_train, recipe.finetune, device=device, progress=False,
              desc="fine-tune")
        acc = evaluate(m, x_test, y_test)
        row = {
            "method": method, "delta_bits": delta,
            "accuracy_after_sharing": acc_shared, "accuracy": acc,
            "error_pct": 100 * (1 - acc), "n_test_images": int(ds.n_test),
            "bytes_classic": _bytes(m, gap, "classic"), "bytes_auto": _bytes(m, gap, "auto"),
            "seconds": time.perf_counter() - t0,
        }
        print(f"{method:12} delta {delta}: error {row['error_pct']:.2f} % "
              f"(after sharing {100 * (1 - acc_shared):.2f} %), {row['bytes_classic']:,} bytes "
              f"classic, {row['bytes_auto']:,} with rANS [{row['seconds']:.0f} s]", flush=True)
        out.append(row)
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--pruned", help="pruned model saved whole (torch.save)")
    src.add_argument("--checkpoint", help="training checkpoint to prune in one shot")
    src.add_argument("--pruned-checkpoint",
                     help="RUN/compressed.pt of a compress run whose recipe stops after pruning "
                          "(no [share]): its zeros become the masks again")
    ap.add_argument("--retrain", type=int, default=600, help="iterations after one-shot pruning")
    ap.add_argument("--finetune-iterations", type=int, default=None,
                    help="override the recipe's fine-tuning iterations")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--points", type=int, default=6,
                    help="part 1: k-means at the last this many bit widths up to the recipe's")
    ap.add_argument("--save-pruned", default=None, help="save the one-shot pruned model here")
    ap.add_argument("--model", default="lenet5", help="its recipe (built-in name or TOML)")
    ap.add_argument("--data-dir", default=str(DEFAULT_MNIST))
    ap.add_argument("--fisher-batches", type=int, default=20)
    ap.add_argument("--finetune", action="store_true", help="also run part 2 (fine-tuning)")
    ap.add_argument("--deltas", type=float, nargs="*", default=[0.5, 1.0])
    ap.add_argument("--fewer-bits", type=int, nargs="*", default=[],
                    help="part 2: also k-means with every layer this many bits below the recipe")
    ap.add_argument("--out", default="bench/results/ecsq.json")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    recipe = load_recipe(args.model)
    if args.finetune_iterations is not None:
        recipe.finetune = dataclasses.replace(recipe.finetune,
                                              iterations=args.finetune_iterations)
    ds = load("mnist", data_dir=args.data_dir, progress=False)
    prep = {}
    if args.pruned:
        model = torch.load(args.pruned, map_location="cpu", weights_only=False)
    elif args.pruned_checkpoint:
        model, _meta = load_checkpoint(args.pruned_checkpoint, arch=args.model)
        apply_masks_(model, {ref.name: ref.weight.detach() != 0
                             for ref in compressible_layers(model)})
        x_test = to_tensor(ds.x_test, "cpu")
        y_test = torch.as_tensor(ds.y_test, dtype=torch.long)
        prep["accuracy_pruned"] = evaluate(model, x_test, y_test)
        prep["source"] = f"{args.pruned_checkpoint} (the recipe's own pruning and retraining)"
        print(f"pruned model {args.pruned_checkpoint}: accuracy {prep['accuracy_pruned']:.4f}",
              flush=True)
    else:
        t = time.perf_counter()
        ck = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        if isinstance(ck, dict) and "model" in ck:  # a training checkpoint
            model = build(args.model)
            model.load_state_dict(ck["model"])
        else:  # a model checkpoint (RUN/trained.pt)
            model, _ = load_checkpoint(args.checkpoint, arch=args.model)
            ck = {"step": -1}
        x_test = to_tensor(ds.x_test, "cpu")
        y_test = torch.as_tensor(ds.y_test, dtype=torch.long)
        prep["checkpoint_step"] = int(ck.get("step", -1))
        prep["accuracy_trained"] = evaluate(model, x_test, y_test)
        prune_(model, recipe.prune.config_for(recipe.prune.steps))
        prep["accuracy_pruned"] = evaluate(model, x_test, y_test)
        rt = dataclasses.replace(recipe.prune.retrain_for(recipe.prune.steps),
                                 iterations=args.retrain)
        train(model, ds.x_train, ds.y_train, rt, device="cpu", progress=False)
        prep["accuracy_retrained"] = evaluate(model, x_test, y_test)
        prep["retrain_iterations"] = args.retrain
        prep["seconds"] = time.perf_counter() - t
        if args.save_pruned:
            torch.save(model, args.save_pruned)
        print(f"one-shot pruned {args.checkpoint} (step {prep['checkpoint_step']}): accuracy "
              f"{prep['accuracy_trained']:.4f} -> {prep['accuracy_pruned']:.4f} -> "
              f"{prep['accuracy_retrained']:.4f} after {args.retrain} iterations", flush=True)
    t = time.perf_counter()
    imp = fisher_importance(model, ds.x_train, ds.y_train, batches=args.fisher_batches)
    result = {
        "benchmark": "ecsq",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "args": vars(args),
        "recipe": recipe.name,
        "preparation": prep,
        "fisher_seconds": time.perf_counter() - t,
        "distortion": part1(model, imp, recipe.share, args.points),
    }
    for name, r in result["distortion"].items():
        print(f"{name} ({r['kept']:,} kept, up to {2 ** r['bits']} values): rate bits -> "
              "weighted distortion Dh  k-means | ECSQ | ECSQ+Fisher")
        for p in r["points"]:
            print(f"  k={p['k']:>3} R={p['kmeans']['rate']:.3f}  {p['kmeans']['Dh']:.4g} | "
                  f"{p['ecsq']['Dh']:.4g} (R={p['ecsq']['rate']:.3f}) | "
                  f"{p['ecsq_fisher']['Dh']:.4g} (R={p['ecsq_fisher']['rate']:.3f})")
    if args.finetune:
        result["rate_accuracy"] = part2(model, imp, recipe, ds, args.deltas, "cpu",
                                        args.fewer_bits)
    atomic_write_json(Path(args.out), result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
