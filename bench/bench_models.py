"""Every layer kind: coverage, file size and cost of prune / share / save / load per test model.

For each model of ``tests/nn/zoo.py`` (random weights, seed 0): prune 90 % of every
compressible parameter, share 5 bits, then save and load back. Records the share of parameters
covered (prunable and shareable), the file's bytes against float32 (every parameter and buffer at
4 bytes per element) and against ``torch.save`` + gzip -9 of the same compressed model, the wall
time of each stage, whether the loaded model's outputs are bit-identical, and the peak resident
memory of the process (each model runs in a fresh subprocess, so the peak is that model's).

Usage::

    python bench/bench_models.py --out bench/results/models.json
"""

from __future__ import annotations

import argparse
import copy
import gzip
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, machine_info, peak_rss_mb

from netsqueeze.core.fileio import atomic_write_json


def one(name: str) -> dict:
    import torch

    from netsqueeze.nn.export import load_compressed, save_compressed
    from netsqueeze.nn.modules import param_coverage
    from netsqueeze.nn.prune import prune_
    from netsqueeze.nn.share import share_weights_, strip_
    from tests.nn.zoo import ZOO

    factory, inputs = ZOO[name]
    torch.manual_seed(0)
    model = factory().eval()
    x = inputs()
    rows = param_coverage(model)
    numel = {r["name"]: int(torch.Size(r["shape"]).numel()) for r in rows}
    total = sum(n for r, n in zip(rows, numel.values(), strict=True) if r["coverage"] != "tied")
    covered = sum(numel[r["name"]] for r in rows if r["coverage"] == "compressed")
    dense32 = 4 * (sum(p.numel() for p in model.parameters())
                   + sum(b.numel() for b in model.buffers()))
    times = {}
    t = time.perf_counter()
    prune_(model, 0.9)
    times["prune_s"] = time.perf_counter() - t
    t = time.perf_counter()
    share_weights_(model, 5)
    times["share_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.nsq"
        t = time.perf_counter()
        summary = save_compressed(model, path, factory=f"tests.nn.zoo:{factory.__name__}")
        times["save_s"] = time.perf_counter() - t
        t = time.perf_counter()
        loaded = load_compressed(path, factory=f"tests.nn.zoo:{factory.__name__}")
        times["load_s"] = time.perf_counter() - t
    with torch.no_grad():
        exact = bool(torch.equal(loaded(x), model(x)))
    buf = io.BytesIO()
    torch.save(strip_(copy.deepcopy(model)).state_dict(), buf)
    gz = len(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
    return {
        "model": name,
        "class": factory.__name__,
        "parameters": total,
        "covered": covered,
        "covered_pct": 100 * covered / total,
        "dense_tensors": [r["name"] for r in rows if r["coverage"] == "dense"],
        "tied": {r["name"]: r["tied_to"] for r in rows if r["coverage"] == "tied"},
        "file_bytes": summary["bytes"],
        "float32_bytes": dense32,
        "torch_save_bytes": len(buf.getvalue()),
        "torch_save_gzip_bytes": gz,
        "ratio_to_float32": dense32 / summary["bytes"],
        "ratio_to_gzip": gz / summary["bytes"],
        "outputs_bit_identical": exact,
        **times,
        "peak_rss_mb": peak_rss_mb(),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="bench/results/models.json")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one)))
        return 0
    sys.path.insert(0, str(ROOT))
    from tests.nn.zoo import ZOO

    results = []
    for name in ZOO:
        proc = subprocess.run([sys.executable, __file__, "--one", name], capture_output=True,
                              text=True, cwd=ROOT, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{name:13s} covered {r['covered_pct']:5.1f} %  file {r['file_bytes']:7,} B  "
              f"float32 {r['float32_bytes']:8,} B ({r['ratio_to_float32']:5.1f}x)  "
              f"save+gzip {r['torch_save_gzip_bytes']:7,} B ({r['ratio_to_gzip']:.2f}x)  "
              f"prune {r['prune_s']:.2f} s share {r['share_s']:.2f} s save {r['save_s']:.2f} s "
              f"load {r['load_s']:.2f} s  peak {r['peak_rss_mb']:.0f} MiB  "
              f"exact {r['outputs_bit_identical']}")
    import torch  # noqa: F401 - for machine_info's torch version and threads

    atomic_write_json(Path(args.out), {"machine": machine_info(), "models": results})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
