"""Deep Compression of a large stack of float32 Linear layers: time and peak memory per stage.

The model is ``nn.Sequential`` of ``--layers`` square ``nn.Linear(width, width)`` layers, width
chosen so that the stack holds about ``--params`` parameters (default 1e9: 16 x 8192 x 8192 =
1.07e9 weights, 4.3 GB of float32). Layers are built one at a time, seeded, directly in float32
(torch's default initialisation, in place: no float64 copy). Nothing is retrained: this measures
the library's cost, not accuracy. In one process, stage by stage:

1. ``build``   -- the stack
2. ``prune``   -- ``prune_``: ``--sparsity`` (90 %) of every weight, per layer, by magnitude
3. ``share``   -- ``share_weights_``: k-means with ``--bits`` (5) bits per layer
4. ``save``    -- ``save_compressed`` to a ``.nsq`` file
5. ``load``    -- ``load_compressed`` into a fresh skeleton (allocated without initialisation)
6. ``verify``  -- ``strip_`` the compressed model in place, then ``torch.equal`` tensor by
   tensor against the loaded model (no second state dict is built), then the same outputs on
   a batch of 2 random inputs

Peak memory per stage is the kernel's ``VmHWM``, reset at every stage start through
``/proc/self/clear_refs`` (exact, not sampled; a psutil sampling thread where that is not
available), the same meter as ``bench/bench_vgg16.py``.

Targets: peak RSS below 2.5 x the model's float32 bytes and the whole run below 15 minutes.

Usage::

    python bench/bench_scale.py --params 1e8 --out bench/results/scale-1e8.json
    nice python bench/bench_scale.py --out bench/results/scale-1e9.json   # 1e9: heavy
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from bench_vgg16 import PeakMeter, finish, stage_runner
from common import machine_info
from torch import nn

from netsqueeze.nn.export import load_compressed, save_compressed
from netsqueeze.nn.prune import PruneConfig, prune_, strip_
from netsqueeze.nn.share import ShareConfig, share_weights_

GB = 1e9
TARGET_SECONDS = 15 * 60.0
TARGET_PEAK_FACTOR = 2.5


def build_stack(width: int, layers: int, *, seed: int, init: bool = True) -> nn.Sequential:
    """``layers`` x ``nn.Linear(width, width)``, float32 on the CPU, built one at a time.

    ``init=False`` allocates the tensors without initialising them (a skeleton to load into).
    """
    mods = []
    for i in range(layers):
        if init:
            torch.manual_seed(seed + i)
            mods.append(nn.Linear(width, width))
        else:
            mods.append(nn.Linear(width, width, device="meta").to_empty(device="cpu"))
    return nn.Sequential(*mods)


def _verify(compressed: nn.Module, loaded: nn.Module, seed: int, width: int) -> dict:
    """``torch.equal`` tensor by tensor (state_dict() holds views, not copies), then outputs."""
    a, b = compressed.state_dict(), loaded.state_dict()
    same_names = list(a) == list(b)
    mismatched = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    del a, b
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, width, generator=gen)
    with torch.inference_mode():
        ya = compressed.eval()(x)
        yb = loaded.eval()(x)
    out = {
        "same_names": same_names,
        "tensors_not_equal": mismatched,
        "tensors_equal": same_names and not mismatched,
        "outputs_equal": bool(torch.equal(ya, yb)),
    }
    out["bit_exact"] = out["tensors_equal"] and out["outputs_equal"]
    return out


def run(args) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    width = max(1, round(math.sqrt(args.params / args.layers)))
    meter = PeakMeter()
    stages: list[dict] = []
    t_all = time.perf_counter()

    stage = stage_runner(meter, stages)

    tmp = tempfile.TemporaryDirectory(dir=args.tmpdir)
    path = Path(args.keep) if args.keep else Path(tmp.name) / "stack.nsq"
    model = stage("build", lambda: build_stack(width, args.layers, seed=args.seed))
    n_params = sum(p.numel() for p in model.parameters())
    dense32 = sum(p.numel() * 4 for p in model.parameters())
    stage("prune", lambda: prune_(model, PruneConfig(sparsity=args.sparsity)))
    stage("share", lambda: share_weights_(model, ShareConfig(bits=args.bits)))
    summary = stage("save", lambda: save_compressed(
        model, path, meta={"what": "Linear stack, random weights", "seed": args.seed}))
    budget = 2 * summary["dense_bytes"] + (64 << 20)
    loaded = stage("load", lambda: load_compressed(
        path, model=build_stack(width, args.layers, seed=args.seed, init=False),
        max_bytes=budget))

    def _check():
        strip_(model)
        return _verify(model, loaded, args.seed, width)

    verify = stage("verify", _check)
    total = time.perf_counter() - t_all
    tmp.cleanup()
    peak = max(s["peak_rss_bytes"] for s in stages)
    return {
        "benchmark": "scale",
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "model": {
            "name": f"nn.Sequential of {args.layers} x nn.Linear({width}, {width}), float32",
            "layers": args.layers,
            "width": width,
            "parameters": n_params,
            "dense_float32_bytes": dense32,
            "seed": args.seed,
            "init": "torch's default Linear init, layer i seeded with seed + i",
        },
        "pipeline": {"sparsity": args.sparsity, "scope": "layer", "bits": args.bits,
                     "kmeans": "ShareConfig defaults (linear init, Lloyd)",
                     "save": "save_compressed defaults (gap bits 5 for fc, entropy auto)"},
        "measured": {
            "seconds": "wall time (time.perf_counter) of the stage",
            "peak_rss_bytes": meter.method,
            "load_average_1min_before": "os.getloadavg()[0] at the start of the stage",
        },
        "stages": stages,
        "total_seconds": total,
        "peak_rss_bytes": peak,
        "peak_over_float32": peak / dense32,
        "targets": {
            "seconds": TARGET_SECONDS,
            "peak_over_float32": TARGET_PEAK_FACTOR,
            "seconds_met": total < TARGET_SECONDS,
            "peak_met": peak < TARGET_PEAK_FACTOR * dense32,
        },
        "verify": verify,
        "size": {
            "file_bytes": summary["bytes"],
            "dense_float32_bytes": summary["dense_float32_bytes"],
            "ratio_to_dense_float32": summary["dense_float32_bytes"] / summary["bytes"],
        },
    }


def _print(res: dict) -> None:
    m = res["machine"]
    print()
    print(f"{res['model']['name']}: {res['model']['parameters']:,} parameters "
          f"({res['model']['dense_float32_bytes'] / GB:.2f} GB); {m['cpu_count']} CPUs, "
          f"torch {m['torch']}, numpy {m['numpy']}")
    print(f"{'stage':<10}{'seconds':>10}{'peak GB':>10}{'x f32':>8}{'load':>7}")
    d32 = res["model"]["dense_float32_bytes"]
    for s in res["stages"]:
        print(f"{s['stage']:<10}{s['seconds']:>10.2f}{s['peak_rss_bytes'] / GB:>10.2f}"
              f"{s['peak_rss_bytes'] / d32:>8.2f}{s['load_average_1min_before']:>7.2f}")
    print(f"{'total':<10}{res['total_seconds']:>10.2f}{res['peak_rss_bytes'] / GB:>10.2f}"
          f"{res['peak_over_float32']:>8.2f}")
    z = res["size"]
    print(f"file {z['file_bytes'] / 1e6:.2f} MB; ratio {z['ratio_to_dense_float32']:.1f}x")
    v = res["verify"]
    print(f"bit-exact: {v['bit_exact']} (tensors equal: {v['tensors_equal']}, outputs equal: "
          f"{v['outputs_equal']})")
    tg = res["targets"]
    print(f"targets: {'met' if tg['seconds_met'] else 'MISSED'} < {tg['seconds']:.0f} s, "
          f"{'met' if tg['peak_met'] else 'MISSED'} < {tg['peak_over_float32']} x float32; "
          f"load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--params", type=float, default=1e9, help="about this many parameters")
    p.add_argument("--layers", type=int, default=16, help="square Linear layers")
    p.add_argument("--out", help="write the results as JSON here (e.g. bench/results/...)")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--bits", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--keep", help="keep the .nsq file at this path")
    p.add_argument("--tmpdir", help="folder of the temporary .nsq file (default: the system's)")
    args = p.parse_args(argv)
    if args.params < args.layers or args.layers < 1:
        p.error("--params must be at least --layers, and --layers at least 1")
    return finish(run(args), args.out, _print)


if __name__ == "__main__":
    raise SystemExit(main())
