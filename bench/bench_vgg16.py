"""Deep Compression at scale: a VGG-16-sized model (138 M parameters) through the whole pipeline.

The network is :class:`netsqueeze.models.vgg.VGG16` with random weights (seeded; nothing is
downloaded) and nothing is retrained, so this measures the cost of the library, not accuracy.
In one process, stage by stage:

1. ``build``   -- VGG16(seed=...)
2. ``prune``   -- ``prune_``: 90 % of every conv / linear weight, per layer, by magnitude
3. ``share``   -- ``share_weights_``: k-means, 8 bits for convolutions, 5 for linear layers
4. ``save``    -- ``save_compressed``: sparse gap coding, codebooks, Huffman, packed to ``.nsq``
5. ``load``    -- ``load_compressed`` into a fresh skeleton (``VGG16(init=False)``)
6. ``verify``  -- ``strip_`` the compressed model; ``torch.equal`` on every tensor of it and of
   the loaded model, then identical outputs on a small random batch
7. ``report``  -- ``compressed_report`` of the file (without the torch.save + gzip baseline,
   which is a 552 MB gzip -9 pass and not part of the pipeline)

For every stage: wall time (``time.perf_counter``) and peak resident memory. Peak memory is
the kernel's high-water mark ``VmHWM`` of ``/proc/self/status``, reset at the start of every
stage by writing ``5`` to ``/proc/self/clear_refs`` (Linux), so each stage's figure is its own
peak, exact, not sampled. Where that reset is not available, a psutil thread samples the RSS
every 5 ms instead (the JSON says which method was used).

Targets (the issue): whole run under 5 minutes and peak RSS under 8 GB on a 2-core machine.

Usage::

    python bench/bench_vgg16.py --out bench/results/vgg16.json
    python bench/bench_vgg16.py --width-divisor 8 --out /tmp/vgg16-small.json   # quick run
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch
from common import machine_info

from netsqueeze.core.fileio import atomic_write_json
from netsqueeze.models.vgg import VGG16, vgg16_parameter_count
from netsqueeze.nn.export import compressed_report, load_compressed, save_compressed
from netsqueeze.nn.prune import PruneConfig, prune_, strip_
from netsqueeze.nn.share import ShareConfig, share_weights_

GB = 1e9
TARGET_SECONDS = 300.0
TARGET_PEAK_BYTES = 8 * GB
# Han, Mao, Dally (ICLR 2016), Table 1 / Table 5: VGG-16 552 MB -> 11.3 MB (49x) after pruning
# to 7.5 % of the weights with retraining, 8-bit conv / 5-bit fc sharing and Huffman coding.
PAPER = {"dense_mb": 552, "compressed_mb": 11.3, "ratio": 49, "kept": 0.075}


# --------------------------------------------------------------------------------------------
# memory
# --------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _can_reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_kib("VmHWM") is not None


class PeakMeter:
    """Peak RSS of a stretch of code, in bytes: VmHWM reset, or a psutil sampling thread."""

    def __init__(self):
        self.method = (
            "VmHWM of /proc/self/status, reset per stage via /proc/self/clear_refs"
            if _can_reset_hwm()
            else "psutil RSS sampled every 5 ms by a thread"
        )
        self._hwm = self.method.startswith("VmHWM")
        self._stop = threading.Event()
        self._thread = None
        self._peak = 0

    def _sample(self):
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self._peak = max(self._peak, proc.memory_info().rss)
            self._stop.wait(0.005)

    def start(self) -> int:
        """Begin a stage; return the RSS now."""
        if self._hwm:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            return _status_kib("VmRSS") * 1024
        import psutil

        self._peak = psutil.Process().memory_info().rss
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self._peak

    def stop(self) -> int:
        """End the stage; return its peak RSS."""
        if self._hwm:
            return _status_kib("VmHWM") * 1024
        self._stop.set()
        self._thread.join()
        return self._peak


# --------------------------------------------------------------------------------------------
# the run
# --------------------------------------------------------------------------------------------


def _verify(compressed: torch.nn.Module, loaded: torch.nn.Module, batch: int, size: int,
            seed: int) -> dict:
    """torch.equal on every tensor, then the same outputs on a random batch."""
    a, b = compressed.state_dict(), loaded.state_dict()
    names_equal = list(a) == list(b)
    mismatched = [k for k in a if k not in b or not torch.equal(a[k], b[k])]
    out = {
        "tensors": len(a),
        "same_names": names_equal,
        "tensors_not_equal": mismatched,
        "tensors_equal": names_equal and not mismatched,
    }
    if batch > 0:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(batch, 3, size, size, generator=gen)
        compressed.eval()
        loaded.eval()
        t0 = time.perf_counter()
        with torch.inference_mode():
            ya = compressed(x)
            yb = loaded(x)
        out.update({
            "forward_batch": [batch, 3, size, size],
            "forward_seconds_both_models": time.perf_counter() - t0,
            "outputs_equal": bool(torch.equal(ya, yb)),
            "output_abs_max": float(ya.abs().max()),
        })
    else:
        out.update({"forward_batch": None, "outputs_equal": None})
    out["bit_exact"] = bool(out["tensors_equal"] and out["outputs_equal"] is not False)
    return out


def run(args) -> dict:
    torch.set_num_threads(args.threads or torch.get_num_threads())
    meter = PeakMeter()
    stages: list[dict] = []
    state: dict = {}
    t_all = time.perf_counter()

    stage = stage_runner(meter, stages)

    tmp = tempfile.TemporaryDirectory()
    path = Path(args.keep) if args.keep else Path(tmp.name) / "vgg16.nsq"
    d = args.width_divisor

    model = stage("build", lambda: VGG16(width_divisor=d, seed=args.seed))
    n_params = sum(p.numel() for p in model.parameters())
    n_weights = sum(m.weight.numel() for m in model.modules()
                    if isinstance(m, torch.nn.Conv2d | torch.nn.Linear))
    stage("prune", lambda: prune_(model, PruneConfig(sparsity=args.sparsity)))
    stage("share", lambda: share_weights_(
        model, ShareConfig(conv_bits=args.conv_bits, fc_bits=args.fc_bits)))
    summary = stage("save", lambda: save_compressed(
        model, path, meta={"what": "VGG-16, random weights, no retraining", "seed": args.seed}))
    budget = 2 * summary["dense_bytes"] + (64 << 20)

    def _load():
        skeleton = VGG16(width_divisor=d, init=False)
        return load_compressed(path, model=skeleton, max_bytes=budget)

    state["loaded"] = stage("load", _load)

    def _check():
        strip_(model)
        return _verify(model, state.pop("loaded"), args.batch, args.image_size, args.seed)

    state["verify"] = stage("verify", _check)
    report = stage("report", lambda: compressed_report(path, baseline=False, max_bytes=budget))
    total = time.perf_counter() - t_all
    tmp.cleanup()

    t = report["totals"]
    peak = max(s["peak_rss_bytes"] for s in stages)
    file_bytes = summary["bytes"]
    dense32 = summary["dense_float32_bytes"]
    layers = [
        {k: x[k] for k in ("name", "kind", "weights", "nonzeros", "kept", "codebook_size",
                           "index_bits", "gap_bits", "bits_per_weight", "bytes", "ratio",
                           "entropy_bound_bytes", "paper_bytes")}
        for x in report["layers"] if x["kind"] is not None
    ]
    return {
        "benchmark": "vgg16",
        "command": "python " + " ".join(sys.argv),
        "machine": machine_info(),
        "model": {
            "name": "VGG-16 (configuration D), random weights, no retraining",
            "width_divisor": d,
            "parameters": n_params,
            "parameters_expected": vgg16_parameter_count(width_divisor=d),
            "conv_linear_weights": n_weights,
            "seed": args.seed,
            "init": "conv N(0, 2/fan_out), linear N(0, 0.01^2), biases 0 (seeded generator)",
        },
        "pipeline": {
            "sparsity": args.sparsity,
            "scope": "layer",
            "conv_bits": args.conv_bits,
            "fc_bits": args.fc_bits,
            "kmeans": "ShareConfig defaults (linear init, Lloyd)",
            "gap_bits": "save_compressed defaults (8 conv, 5 fc)",
        },
        "measured": {
            "seconds": "wall time (time.perf_counter) of the stage",
            "peak_rss_bytes": meter.method,
            "load_average_1min_before": "os.getloadavg()[0] at the start of the stage",
        },
        "stages": stages,
        "total_seconds": total,
        "peak_rss_bytes": peak,
        "targets": {
            "seconds": TARGET_SECONDS,
            "peak_rss_bytes": TARGET_PEAK_BYTES,
            "seconds_met": total < TARGET_SECONDS,
            "peak_met": peak < TARGET_PEAK_BYTES,
        },
        "verify": state["verify"],
        "size": {
            "file_bytes": file_bytes,
            "dense_bytes": summary["dense_bytes"],
            "dense_float32_bytes": dense32,
            "ratio_to_dense_float32": dense32 / file_bytes,
            "paper_formula_bytes": t["paper_bytes"],
            "file_over_paper_formula": file_bytes / t["paper_bytes"] if t["paper_bytes"] else None,
            "records_over_paper_formula": t["paper_vs_actual"],
            "bits_per_weight": t["bits_per_weight"],
            "kept": t["kept"],
            "stream_bytes": t["stream_bytes"],
            "entropy_bytes": t["entropy_bytes"],
            "entropy_overhead": t["entropy_overhead"],
            "entropy_bound_bytes": t["entropy_bound_bytes"],
            "file_over_entropy_bound": file_bytes / t["entropy_bound_bytes"],
            "huffman_saving": t["huffman_saving"],
            "paper_vgg16": PAPER,
        },
        "layers": layers,
    }


def _print(res: dict) -> None:
    m = res["machine"]
    print()
    print(f"VGG-16 /{res['model']['width_divisor']}: {res['model']['parameters']:,} parameters; "
          f"{m['cpu_count']} CPUs, torch {m['torch']}, numpy {m['numpy']}")
    print(f"{'stage':<10}{'seconds':>10}{'peak GB':>10}{'load':>7}")
    for s in res["stages"]:
        print(f"{s['stage']:<10}{s['seconds']:>10.2f}{s['peak_rss_bytes'] / GB:>10.2f}"
              f"{s['load_average_1min_before']:>7.2f}")
    print(f"{'total':<10}{res['total_seconds']:>10.2f}{res['peak_rss_bytes'] / GB:>10.2f}")
    z = res["size"]
    print(f"file {z['file_bytes'] / 1e6:.2f} MB; dense float32 {z['dense_float32_bytes'] / 1e6:.1f}"
          f" MB; ratio {z['ratio_to_dense_float32']:.1f}x; {z['bits_per_weight']:.2f} bits per "
          f"stored weight; file / paper formula {z['file_over_paper_formula']:.3f}; "
          f"Huffman streams {100 * z['entropy_overhead']:.2f} % above entropy")
    v = res["verify"]
    print(f"bit-exact: {v['bit_exact']} (tensors equal: {v['tensors_equal']}, outputs equal: "
          f"{v['outputs_equal']})")
    tg = res["targets"]
    print(f"targets: {'met' if tg['seconds_met'] else 'MISSED'} < {tg['seconds']:.0f} s, "
          f"{'met' if tg['peak_met'] else 'MISSED'} < {tg['peak_rss_bytes'] / GB:.0f} GB; "
          f"load average now {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


def stage_runner(meter: PeakMeter, stages: list):
    """``stage(name, fn)``: run ``fn``, append its wall time and peak memory to ``stages``."""

    def stage(name: str, fn):
        load_before = os.getloadavg()[0]
        rss0 = meter.start()
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        peak = meter.stop()
        stages.append({"stage": name, "seconds": seconds, "peak_rss_bytes": peak,
                       "rss_before_bytes": rss0, "load_average_1min_before": load_before})
        print(f"  {name:<8} {seconds:8.2f} s   peak {peak / 1e9:6.2f} GB", flush=True)
        return result

    return stage


def finish(res: dict, out: str | None, print_fn) -> int:
    """Print ``res``, write it to ``out`` (JSON), and the exit status: 0 when it was bit-exact
    and met both targets."""
    print_fn(res)
    if out:
        atomic_write_json(out, res)
        print(f"wrote {out}")
    ok = res["verify"]["bit_exact"] and res["targets"]["seconds_met"] and res["targets"][
        "peak_met"]
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="write the results as JSON here")
    p.add_argument("--width-divisor", type=int, default=1,
                   help="divide every channel count and hidden width (1: full VGG-16)")
    p.add_argument("--sparsity", type=float, default=0.9)
    p.add_argument("--conv-bits", type=int, default=8)
    p.add_argument("--fc-bits", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=2,
                   help="images in the forward-pass check (0: skip the forward pass)")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--keep", help="keep the .nsq file at this path")
    args = p.parse_args(argv)
    return finish(run(args), args.out, _print)


if __name__ == "__main__":
    raise SystemExit(main())
