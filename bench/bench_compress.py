"""Deep Compression end to end on full MNIST: train -> compress -> pack -> load -> evaluate.

For each reference network this runs ``netsqueeze compress`` with its built-in recipe (or
``--recipe``), loads ``model.nsq`` back into a fresh network, checks it equals the compressed
model bit for bit and evaluates it on the whole test set; then it measures the baseline users
have today — ``torch.nn.utils.prune`` at the same per-layer sparsity, made permanent,
``torch.save`` and ``gzip -9`` — and sets everything beside the paper's Tables 1-3.

Each network runs in its own process, so peak memory is per network.

Targets (Han, Mao, Dally 2016, Table 1):

* LeNet-300-100: >= 92 % of weights pruned at top-1 error <= 1.6 % after retraining and after
  sharing; file >= 40x smaller than dense float32.
* LeNet-5: >= 92 % pruned at error <= 0.8 % (also after 8-bit conv / 5-bit fc sharing); file
  >= 39x smaller.
* The notebook CNN: accuracy within 0.2 pp of the trained model.
* Huffman streams within 1 % of their entropy bound plus at most 1 bit per symbol.

Usage::

    python bench/bench_compress.py --out bench/results/compress.json            # all three
    python bench/bench_compress.py --model lenet5 --out bench/results/lenet5.json
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import DEFAULT_MNIST, ROOT, machine_info, peak_rss_mb

from netsqueeze.core.container import read_nsq
from netsqueeze.core.fileio import atomic_write_json

MODELS = ("lenet-300-100", "lenet5", "notebook-cnn")

# Han, Mao, Dally (ICLR 2016), Tables 2 and 3: weights kept after pruning, bits of shared
# weights, and the whole model's compression ratio after pruning + quantization + Huffman.
PAPER = {
    "lenet-300-100": {
        "error_before_pct": 1.64, "error_after_pct": 1.58, "ratio": 40,
        "layers": {"fc1": {"kept": 0.08, "bits": 6}, "fc2": {"kept": 0.09, "bits": 6},
                   "fc3": {"kept": 0.26, "bits": 6}},
        "kept": 0.08,
    },
    "lenet5": {
        "error_before_pct": 0.80, "error_after_pct": 0.74, "ratio": 39,
        "layers": {"conv1": {"kept": 0.66, "bits": 8}, "conv2": {"kept": 0.12, "bits": 8},
                   "fc1": {"kept": 0.08, "bits": 5}, "fc2": {"kept": 0.19, "bits": 5}},
        "kept": 0.08,
    },
}
TARGETS = {
    "lenet-300-100": {"max_kept": 0.08, "max_error_pct": 1.6, "min_ratio": 40},
    "lenet5": {"max_kept": 0.08, "max_error_pct": 0.8, "min_ratio": 39},
    "notebook-cnn": {"max_drop_pp": 0.2},
}


def _torch_prune_baseline(trained_path: Path, compressed_path: Path, ds) -> dict:
    """torch.nn.utils.prune at our per-layer sparsity, made permanent, torch.save + gzip -9."""
    import torch
    from torch.nn.utils import prune

    from netsqueeze.models.checkpoint import load_checkpoint
    from netsqueeze.nn.train import evaluate

    ours, _ = load_checkpoint(compressed_path)
    model, _ = load_checkpoint(trained_path)
    amounts = {}
    for (name, mod), (_, ref) in zip(model.named_modules(), ours.named_modules(), strict=True):
        if isinstance(mod, torch.nn.Conv2d | torch.nn.Linear):
            n_zero = int((ref.weight == 0).sum())
            amounts[name] = n_zero
            prune.l1_unstructured(mod, "weight", amount=n_zero)
            prune.remove(mod, "weight")
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    raw = buf.getvalue()
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    dense = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    return {
        "what": "torch.nn.utils.prune.l1_unstructured per layer at the same number of zeros, "
                "prune.remove, torch.save(state_dict), gzip level 9; no retraining",
        "zeros_per_layer": amounts,
        "torch_save_bytes": len(raw),
        "gzip_bytes": len(packed),
        "ratio_to_dense": dense / len(packed),
        "accuracy_without_retraining": evaluate(model, ds.x_test, ds.y_test),
    }


def _huffman_check(nsq_path: Path) -> dict:
    """Every Huffman payload against its entropy bound: <= 1.01 x H + 1 bit per symbol."""
    worst, streams, ok = 0.0, 0, True
    payload_bits = descriptor_bits = entropy_bits = 0.0
    for rec in read_nsq(nsq_path).records:
        for st in rec.stats()["streams"].values():
            if st["coding"] != "huffman" or st["n_symbols"] == 0:
                continue
            streams += 1
            bound_bits = 1.01 * st["entropy_bits"] + st["n_symbols"]
            used_bits = 8 * st["payload_bytes"]
            ok &= used_bits <= bound_bits
            worst = max(worst, used_bits / bound_bits)
            payload_bits += used_bits
            descriptor_bits += 8 * (st["total_bytes"] - st["payload_bytes"])
            entropy_bits += st["entropy_bits"]
    return {"huffman_streams": streams, "all_within_bound": bool(ok),
            "worst_payload_over_bound": worst,
            "payload_over_entropy": payload_bits / entropy_bits - 1 if entropy_bits else None,
            "descriptor_bytes": descriptor_bits / 8,
            "bound": "payload bits <= 1.01 x entropy bits + 1 bit per symbol; the stream "
                     "descriptors (code lengths, block index) are counted separately"}


def run_one(model: str, recipe: str | None, data_dir: str, keep: str | None) -> dict:
    import torch

    from netsqueeze.data import load
    from netsqueeze.experiments.pipeline import CompressSpec, run_compress
    from netsqueeze.experiments.recipe import load_recipe
    from netsqueeze.models.checkpoint import load_checkpoint
    from netsqueeze.nn.export import load_compressed
    from netsqueeze.nn.train import evaluate

    rec = load_recipe(recipe or model)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(keep) if keep else Path(tmp)
        res = run_compress(CompressSpec(model=model, dataset="mnist", data_dir=data_dir),
                           rec, out, progress=False, log=lambda s: print(s, flush=True))
        t_pipeline = time.perf_counter() - t0
        ds = load("mnist", data_dir=data_dir, progress=False)
        t = time.perf_counter()
        loaded = load_compressed(out / "model.nsq")
        t_load = time.perf_counter() - t
        compressed, _ = load_checkpoint(out / "compressed.pt")
        exact = all(
            torch.equal(a, b)
            for a, b in zip(compressed.state_dict().values(), loaded.state_dict().values(),
                            strict=True)
        )
        acc_file = evaluate(loaded, ds.x_test, ds.y_test)
        baseline = _torch_prune_baseline(out / "trained.pt", out / "compressed.pt", ds)
        huff = _huffman_check(out / "model.nsq")
        pruned_stages = [s for s in res["stages"] if s["stage"].startswith("prune")]
        summary = res["summary"]
        file = res["file"]
        result = {
            "model": model,
            "recipe": res["recipe"],
            "seed": res["seed"],
            "n_test_images": res["n_test_images"],
            "stages": [{k: s[k] for k in ("stage", "accuracy", "kept", "distinct_nonzero",
                                          "seconds") if k in s}
                       | ({"accuracy_before_retrain": s["accuracy_before_retrain"]}
                          if "accuracy_before_retrain" in s else {})
                       for s in res["stages"]],
            "trained_error_pct": summary["trained_error_pct"],
            "pruned_error_pct": 100 * (1 - pruned_stages[-1]["accuracy"]) if pruned_stages
            else None,
            "final_error_pct": summary["final_error_pct"],
            "file_error_pct": 100 * (1 - acc_file),
            "kept_fraction": summary["kept_fraction"],
            "table": res["table"],
            "file": {"bytes": file["bytes"], "totals": file["totals"],
                     "baseline_gzip_of_same_model": file["baseline"]},
            "bit_exact_after_load": exact,
            "torch_prune_baseline": baseline,
            "huffman": huff,
            "paper": PAPER.get(model),
            "seconds": {"pipeline": t_pipeline, "load_nsq": t_load,
                        **{k: v for k, v in res["wall_times"].items()}},
            "peak_rss_mb": peak_rss_mb(),
        }
    tg = TARGETS[model]
    checks = {}
    if "max_kept" in tg:
        checks["pruned_at_least_92pct"] = result["kept_fraction"] <= tg["max_kept"] + 1e-9
        checks["error_after_pruning_ok"] = (result["pruned_error_pct"] or 100) <= tg[
            "max_error_pct"]
        checks["error_after_sharing_ok"] = result["final_error_pct"] <= tg["max_error_pct"]
        checks["file_ratio_ok"] = file["totals"]["ratio_to_dense"] >= tg["min_ratio"]
    else:
        drop = result["final_error_pct"] - result["trained_error_pct"]
        checks["within_0.2pp"] = drop <= tg["max_drop_pp"]
    checks["huffman_within_bound"] = huff["all_within_bound"]
    checks["bit_exact"] = exact
    result["targets"] = tg
    result["checks"] = checks
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="all", choices=("all", *MODELS))
    ap.add_argument("--recipe", default=None, help="recipe for a single --model")
    ap.add_argument("--data-dir", default=str(DEFAULT_MNIST))
    ap.add_argument("--out", default="bench/results/compress.json")
    ap.add_argument("--keep", default=None, help="keep the run folder of a single --model here")
    args = ap.parse_args(argv)

    if args.model == "all":
        results = {}
        for m in MODELS:
            part = Path(args.out).with_name(Path(args.out).stem + f"-{m}.json")
            subprocess.run([sys.executable, __file__, "--model", m, "--data-dir", args.data_dir,
                            "--out", str(part)], check=True, cwd=ROOT)
            results[m] = json.loads(part.read_text())
        atomic_write_json(args.out, {"machine": machine_info(), "models": results})
        print(f"wrote {args.out}")
        return 0

    res = run_one(args.model, args.recipe, args.data_dir, args.keep)
    res["machine"] = machine_info()
    res["command"] = " ".join(["python bench/bench_compress.py", *(argv or sys.argv[1:])])
    atomic_write_json(args.out, res)
    t = res["file"]["totals"]
    b = res["torch_prune_baseline"]
    print(f"{args.model}: error {res['trained_error_pct']:.2f} % trained -> "
          f"{res['pruned_error_pct'] if res['pruned_error_pct'] is not None else float('nan'):.2f}"
          f" % pruned -> {res['final_error_pct']:.2f} % shared; {100 * res['kept_fraction']:.1f} % "
          f"kept; model.nsq {t['file_bytes']:,} B = {t['ratio_to_dense']:.1f}x smaller than dense; "
          f"torch prune + gzip -9: {b['gzip_bytes']:,} B = {b['ratio_to_dense']:.1f}x; "
          f"peak {res['peak_rss_mb']:.0f} MiB; {res['seconds']['pipeline']:.0f} s")
    print("checks:", res["checks"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
