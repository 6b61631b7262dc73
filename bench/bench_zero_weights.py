"""The default main job, ``netsqueeze zero-weights``, on full MNIST.

Records the wall time of every stage, the peak memory, the trained accuracy and both sweeps'
answers, and sets them beside the notebook's claims (about 30 % of weights zeroable without
loss; clusters [9, 24, 110, 13] = 156 distinct values instead of 48,912, 313x).

Targets: the whole run under 3 minutes on 2 cores; one sweep point under 1 s; both sweeps
together under 60 s.

Usage::

    python bench/bench_zero_weights.py --out bench/results/zero_weights.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_MNIST, machine_info, peak_rss_mb

from netsqueeze.core.fileio import atomic_write_json
from netsqueeze.experiments.zero_weights import ZeroWeightsSpec, run_zero_weights
from netsqueeze.nn.train import TrainConfig

NOTEBOOK = {
    "zero_fraction_without_loss": 0.30,
    "clusters": [9, 24, 110, 13],
    "distinct_values": 156,
    "reduction": 48_912 / 156,
    "accuracy_measured_on": "one random batch of 100 test images per point",
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DEFAULT_MNIST))
    ap.add_argument("--out", default="bench/results/zero_weights.json")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    spec = ZeroWeightsSpec(dataset="mnist", data_dir=args.data_dir,
                           train=TrainConfig(seed=args.seed))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_zero_weights(spec, tmp, progress=False, log=lambda s: print(s, flush=True))
    total = time.perf_counter() - t0
    thr, clu, ans = res["threshold_sweep"], res["cluster_sweep"], res["answers"]
    per_threshold = thr["seconds"] / len(thr["thresholds"])
    per_cluster = clu["seconds"] / len(clu["accuracy"])
    out = {
        "benchmark": "zero-weights main job, default settings, full MNIST",
        "command": "python bench/bench_zero_weights.py",
        "machine": machine_info(),
        "seed": args.seed,
        "n_test_images": res["n_test_images"],
        "wall_times": res["wall_times"],
        "total_seconds": total,
        "peak_rss_mb": peak_rss_mb(),
        "seconds_per_threshold_point": per_threshold,
        "seconds_per_cluster_step": per_cluster,
        "sweeps_seconds": thr["seconds"] + clu["seconds"],
        "trained_accuracy": res["train"]["accuracy"],
        "answers": ans,
        "threshold_sweep": {k: thr[k] for k in ("thresholds", "overall_zero_fraction",
                                                "accuracy", "baseline_accuracy")},
        "cluster_sweep": {k: clu[k] for k in ("clusters", "distinct_weights", "accuracy",
                                              "baseline_accuracy")},
        "notebook": NOTEBOOK,
        "targets": {
            "total_under_180_s": total < 180,
            "trained_accuracy_at_least_98.5": res["train"]["accuracy"] >= 0.985,
            "sweep_point_under_1_s": max(per_threshold, per_cluster) < 1.0,
            "both_sweeps_under_60_s": thr["seconds"] + clu["seconds"] < 60,
        },
    }
    atomic_write_json(args.out, out)
    z, c, nb = ans["zero"], ans["clusters_within_tolerance"], ans["clusters_notebook_rule"]
    print(f"total {total:.1f} s (train {res['wall_times']['train']:.1f} s, threshold sweep "
          f"{thr['seconds']:.1f} s = {per_threshold:.2f} s/point, cluster sweep "
          f"{clu['seconds']:.1f} s = {per_cluster:.2f} s/step), peak RSS {out['peak_rss_mb']:.0f} MiB")
    print(f"trained accuracy {res['train']['accuracy']:.4f} on {res['n_test_images']:,} images")
    if z:
        print(f"zeroable within {ans['tolerance_pp']} pp: {100 * z['zero_fraction']:.1f} % "
              f"(notebook: ~30 % without loss)")
    if c:
        print(f"fewest values within {ans['tolerance_pp']} pp: {c['clusters']} = "
              f"{c['distinct_weights']} values ({c['reduction']:.0f}x)")
    print(f"notebook rule: {nb['clusters']} = {nb['distinct_weights']} values, accuracy "
          f"{nb['accuracy']:.4f} (notebook: [9, 24, 110, 13] = 156 values, 313x)")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
