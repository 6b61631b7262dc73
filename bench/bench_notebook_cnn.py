"""The notebook's CNN: the most pruning and the fewest bits within 0.2 pp of its trained accuracy.

Trains the notebook CNN once (the zero-weights default training), then for each final sparsity
prunes gradually with retraining, and for each bit width shares the surviving weights with
k-means and fine-tunes the centroids, measuring accuracy on the whole MNIST test set at every
point. Chooses the largest sparsity, then the fewest bits, whose accuracy stays within
``--tolerance`` (0.2 pp) of the trained model, and sets the answer beside the notebook's (about
30 % of weights zeroable without loss; 156 distinct values) — which used neither retraining nor
fine-tuning.

Usage::

    python bench/bench_notebook_cnn.py --out bench/results/notebook_cnn.json
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_MNIST, machine_info, peak_rss_mb

from netsqueeze.core.fileio import atomic_write_json
from netsqueeze.data import load
from netsqueeze.models import build, count_weights
from netsqueeze.nn.export import compressed_report, save_compressed
from netsqueeze.nn.prune import SparsitySchedule, prune_, pruning_report
from netsqueeze.nn.share import ShareConfig, share_weights_
from netsqueeze.nn.train import TrainConfig, evaluate, train

SPARSITIES = (0.8, 0.9, 0.95, 0.97)
BITS = ((4, 4), (4, 3), (3, 3), (3, 2), (2, 2))  # (conv, fc)
# conv layers are small and sensitive: prune them less than the fully connected ones
LAYER_SHARE = {"conv1": 0.5, "conv2": 0.9, "fc1": 1.0, "fc2": 0.9}


def layer_targets(final: float) -> dict[str, float]:
    """Per-layer sparsity scaled so that the whole network reaches about ``final``."""
    return {name: round(min(0.99, final * f), 4) for name, f in LAYER_SHARE.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DEFAULT_MNIST))
    ap.add_argument("--out", default="bench/results/notebook_cnn.json")
    ap.add_argument("--tolerance", type=float, default=0.2, help="percentage points")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--retrain", type=int, default=400)
    ap.add_argument("--final-retrain", type=int, default=2400)
    ap.add_argument("--finetune", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t_all = time.perf_counter()
    ds = load("mnist", data_dir=args.data_dir, progress=False)
    train_cfg = TrainConfig(seed=args.seed)
    retrain = TrainConfig(iterations=args.retrain, lr=1e-3, seed=args.seed)
    final_retrain = TrainConfig(iterations=args.final_retrain, lr=1e-3, seed=args.seed)
    finetune = TrainConfig(iterations=args.finetune, lr=2e-4, seed=args.seed)

    import torch

    torch.manual_seed(args.seed)
    trained = build("notebook-cnn")
    t = time.perf_counter()
    train(trained, ds.x_train, ds.y_train, train_cfg, progress=False)
    t_train = time.perf_counter() - t
    base = evaluate(trained, ds.x_test, ds.y_test)
    print(f"trained: {base:.4f} ({t_train:.0f} s)", flush=True)
    floor = base - args.tolerance / 100
    points = []
    best = None
    for final in SPARSITIES:
        targets = layer_targets(final)
        model = copy.deepcopy(trained)
        sched = SparsitySchedule(targets, steps=args.steps, kind="cubic")
        t = time.perf_counter()
        for step in range(1, args.steps + 1):
            prune_(model, sched.config(step))
            cfg = final_retrain if step == args.steps else retrain
            train(model, ds.x_train, ds.y_train, cfg, progress=False)
        pruned_acc = evaluate(model, ds.x_test, ds.y_test)
        kept = pruning_report(model).kept / count_weights(model)
        t_prune = time.perf_counter() - t
        print(f"sparsity {final}: {100 * (1 - kept):.1f} % zero, accuracy {pruned_acc:.4f} "
              f"({t_prune:.0f} s)", flush=True)
        for conv_bits, fc_bits in BITS:
            shared = copy.deepcopy(model)
            share_weights_(shared, ShareConfig(conv_bits=conv_bits, fc_bits=fc_bits))
            acc_shared = evaluate(shared, ds.x_test, ds.y_test)
            train(shared, ds.x_train, ds.y_train, finetune, progress=False)
            acc = evaluate(shared, ds.x_test, ds.y_test)
            values = 2 * 2**conv_bits + 2 * 2**fc_bits
            point = {"sparsity_target": final, "layer_targets": targets, "zero_fraction": 1 - kept,
                     "pruned_accuracy": pruned_acc, "conv_bits": conv_bits, "fc_bits": fc_bits,
                     "max_distinct_weights": values, "accuracy_shared": acc_shared,
                     "accuracy": acc, "within_tolerance": acc >= floor}
            if acc >= floor:
                path = Path(args.out).with_suffix(".nsq")
                save_compressed(shared, path, arch="notebook-cnn")
                rep = compressed_report(path, baseline=False)["totals"]
                point["file_bytes"] = rep["file_bytes"]
                point["file_ratio_to_dense"] = rep["ratio_to_dense"]
                path.unlink()
                key = (1 - kept, -values)
                if best is None or key > (best["zero_fraction"], -best["max_distinct_weights"]):
                    best = point
            points.append(point)
            print(f"  {conv_bits}/{fc_bits} bits: {acc_shared:.4f} shared, {acc:.4f} fine-tuned"
                  f"{'  within tolerance' if acc >= floor else ''}", flush=True)
    out = {
        "benchmark": "notebook CNN: most pruning and fewest bits within the tolerance",
        "command": "python bench/bench_notebook_cnn.py",
        "machine": machine_info(),
        "seed": args.seed,
        "n_test_images": int(ds.n_test),
        "trained_accuracy": base,
        "tolerance_pp": args.tolerance,
        "schedule": {"steps": args.steps, "retrain": retrain.to_dict(),
                     "final_retrain": final_retrain.to_dict(), "finetune": finetune.to_dict(),
                     "layer_share": LAYER_SHARE},
        "points": points,
        "best": best,
        "notebook": {"zero_fraction_without_loss": 0.30, "distinct_values": 156,
                     "no retraining, no fine-tuning": True},
        "seconds": time.perf_counter() - t_all,
        "peak_rss_mb": peak_rss_mb(),
    }
    atomic_write_json(args.out, out)
    if best:
        print(f"best within {args.tolerance} pp: {100 * best['zero_fraction']:.1f} % zero, "
              f"{best['conv_bits']}/{best['fc_bits']} bits (at most "
              f"{best['max_distinct_weights']} distinct weights), accuracy {best['accuracy']:.4f} "
              f"vs trained {base:.4f}; file {best['file_ratio_to_dense']:.0f}x smaller")
    print(f"wrote {args.out} ({out['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
