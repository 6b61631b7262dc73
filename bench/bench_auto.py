"""Automatic compression under an accuracy budget, no recipe: the three targets on full MNIST.

For each network: ``netsqueeze compress --model M --max-error / --max-drop B`` with default
options (the built-in recipe's training settings, a 10 % stratified validation split, one epoch
of retraining per round), bounded by ``--time-budget`` (default 19 min, so that the run with its
writes stays under 20 min). Records the test error, the real ``.nsq`` bytes and ratio, the
search's frontier (every model it finished: bytes and validation accuracy), the per-layer file
bytes (which layer and which part of the file limits), wall time and peak memory, and whether
the target was met.

Targets (the issue's): LeNet-300-100 ``--max-error 1.6`` >= 64x; LeNet-5 ``--max-error 0.8``
>= 100x; notebook CNN ``--max-drop 0.2`` >= 40x (drop measured on the test set).

Usage::

    python bench/bench_auto.py --only lenet-300-100 --out bench/results/auto.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_MNIST, machine_info, peak_rss_mb

from netsqueeze.core.fileio import atomic_write_json

TARGETS = {
    "lenet-300-100": {"max_error": 1.6, "ratio": 64.0},
    "lenet5": {"max_error": 0.8, "ratio": 100.0},
    "notebook-cnn": {"max_drop": 0.2, "ratio": 40.0},
}


def run_one(model: str, data_dir: str, out_dir: Path, time_budget: float, seed: int = 0) -> dict:
    import torch

    from netsqueeze.experiments.auto_compress import AutoSpec, run_auto_compress
    from netsqueeze.nn.export import compressed_report

    t = TARGETS[model]
    spec = AutoSpec(model=model, dataset="mnist", data_dir=data_dir, download=False,
                    max_error=t.get("max_error"), max_drop=t.get("max_drop"),
                    time_budget=time_budget, device="cpu", seed=seed)
    t0 = time.perf_counter()
    res = run_auto_compress(spec, out_dir / model, progress=False)
    wall = time.perf_counter() - t0
    s = res["summary"]
    if "max_error" in t:
        accuracy_ok = s["final_error_pct"] <= t["max_error"]
    else:
        accuracy_ok = s["drop_pp"] <= t["max_drop"]
    rep = compressed_report(out_dir / model / "model.nsq", baseline=False)
    layers = [{k: la.get(k) for k in ("name", "kind", "weights", "nonzeros", "values",
                                      "index_bits", "gap_bits", "bytes", "ratio")}
              for la in rep["layers"]]
    return {
        "model": model,
        "seed": seed,
        "target": t,
        "met": bool(accuracy_ok and s["ratio"] >= t["ratio"] and wall < 1200),
        "accuracy_within_target": bool(accuracy_ok),
        "ratio": s["ratio"],
        "file_bytes": s["file_bytes"],
        "trained_test_error_pct": s["trained_error_pct"],
        "final_test_error_pct": s["final_error_pct"],
        "drop_pp_test": s["drop_pp"],
        "val_accuracy": [s["trained_val_accuracy"], s["final_val_accuracy"]],
        "sparsity": s["sparsity"],
        "bits": s["bits"],
        "backoffs": s["backoffs"],
        "stopped_by": s["stopped_by"],
        "frontier": [{"phase": r["phase"], "file_bytes": r["file_bytes"],
                      "val_accuracy": r["accuracy"], "meets_budget": r["meets_budget"]}
                     for r in res["search"]["rounds"]],
        "file_layers": layers,
        "file_totals": rep["totals"],
        "wall_seconds": wall,
        "wall_times": res["wall_times"],
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(DEFAULT_MNIST))
    ap.add_argument("--out", default="bench/results/auto.json")
    ap.add_argument("--runs", default="bench/results/auto-runs",
                    help="folder for each run's outputs")
    ap.add_argument("--only", choices=sorted(TARGETS), action="append",
                    help="run only this network (repeatable)")
    ap.add_argument("--time-budget", type=float, default=1140.0,
                    help="seconds per network, training included [%(default)s]")
    ap.add_argument("--threads", type=int, default=None, help="torch threads")
    ap.add_argument("--seed", type=int, default=0,
                    help="seed of the validation and confirmation splits (the default option "
                    "is 0; others show how much the result depends on the split) [%(default)s]")
    args = ap.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    results = {"benchmark": "auto", "machine": machine_info(), "runs": []}
    for model in args.only or list(TARGETS):
        r = run_one(model, args.data_dir, Path(args.runs), args.time_budget, args.seed)
        results["runs"].append(r)
        results["peak_rss_mb"] = peak_rss_mb()
        atomic_write_json(args.out, results)
        print(f"{model}: test error {r['trained_test_error_pct']:.2f} % -> "
              f"{r['final_test_error_pct']:.2f} %, {r['file_bytes']:,} bytes, {r['ratio']:.1f}x "
              f"(target {r['target']}), {r['wall_seconds']:.0f} s -> "
              f"{'met' if r['met'] else 'missed'}", flush=True)
    results["peak_rss_mb"] = peak_rss_mb()
    atomic_write_json(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
