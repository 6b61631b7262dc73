"""One check for a machine with a CUDA GPU: the whole test suite, then both experiments on it.

Runs, from the repository root, each in its own process:

1. the whole test suite (``python -m pytest``; the end-to-end CLI tests use ``--device auto``,
   so the GPU), with full MNIST required;
2. ``netsqueeze zero-weights --device cuda`` on full MNIST;
3. ``netsqueeze compress --model lenet5 --device cuda`` on full MNIST;
4. ``netsqueeze evaluate`` of the file step 3 wrote, on the GPU.

Prints the wall time and the accuracy of each, and writes everything to ``OUT/gpu_check.json``
(plus each run's own outputs and logs under ``OUT``). Exits non-zero when a step fails, or
when no CUDA GPU is visible (a CPU run of this script checks nothing).

Usage::

    python bench/gpu_check.py [OUT]          # OUT defaults to $OUT, else bench/results/gpu
    python bench/gpu_check.py OUT --skip-tests --mnist PATH

Full MNIST is looked for in ``--mnist``, ``$NETSQUEEZE_TEST_MNIST``, ``../shared/data/mnist``
and ``shared/data/mnist``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


#: --quick: LeNet-5 through every stage with tiny budgets.
QUICK_RECIPE = """name = "quick-lenet5"
[train]
iterations = 60
[prune]
sparsity = { conv1 = 0.3, conv2 = 0.8, fc1 = 0.9, fc2 = 0.8 }
steps = 2
[prune.retrain]
iterations = 20
[share]
conv_bits = 8
fc_bits = 5
[finetune]
iterations = 20
"""


def find_mnist(given: str | None) -> Path | None:
    candidates = [given, os.environ.get("NETSQUEEZE_TEST_MNIST"),
                  ROOT.parent / "shared" / "data" / "mnist", ROOT / "shared" / "data" / "mnist"]
    for c in candidates:
        if c and all((Path(c) / f).is_file() for f in MNIST_FILES):
            return Path(c).resolve()
    return None


def gpu_info() -> dict:
    import torch

    info = {"torch": torch.__version__, "cuda_available": torch.cuda.is_available(),
            "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info


def run_step(name: str, cmd: list[str], out: Path, env: dict, timeout: float) -> dict:
    """Run ``cmd``, teeing its output to ``out/NAME.log``; return rc and wall time."""
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    log_path = out / f"{name}.log"
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        tail: list[str] = []
        try:
            for line in proc.stdout:
                log.write(line)
                tail = (tail + [line.rstrip("\n")])[-40:]
                if not line.startswith("\r"):
                    print(line, end="", flush=True)
            rc = proc.wait(timeout=max(1.0, timeout - (time.perf_counter() - t0)))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = -9
    seconds = time.perf_counter() - t0
    print(f"=== {name}: exit {rc} in {seconds:.1f} s", flush=True)
    return {"command": cmd, "rc": rc, "seconds": round(seconds, 2), "log": log_path.name,
            "tail": tail[-15:]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=os.environ.get("OUT") or "bench/results/gpu",
                    help="folder for gpu_check.json and the runs' outputs [$OUT, else "
                    "bench/results/gpu]")
    ap.add_argument("--mnist", default=None, help="folder with the four full-MNIST IDX files")
    ap.add_argument("--skip-tests", action="store_true", help="only the experiments")
    ap.add_argument("--tests", default="", help="pytest arguments instead of the whole suite")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per step [1800]")
    ap.add_argument("--device", default="cuda",
                    help="cuda, or cpu to try this script itself on a machine without a GPU")
    ap.add_argument("--dataset", default=None,
                    help="instead of full MNIST (e.g. mnist-sample, for a quick try of the script)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny training budgets and sweeps: checks that everything runs, "
                    "not the figures")
    args = ap.parse_args(argv)

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    info = gpu_info()
    print("gpu:", json.dumps(info), flush=True)
    report: dict = {"machine": info, "steps": {}}
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from common import machine_info

        report["machine"].update(machine_info())
    except Exception as exc:  # noqa: BLE001 - the check runs without it
        report["machine"]["machine_info_error"] = repr(exc)

    def save() -> None:
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")

    if args.device.startswith("cuda") and not info["cuda_available"]:
        report["error"] = "no CUDA GPU visible to torch"
        save()
        print("gpu_check: no CUDA GPU visible to torch; nothing checked", file=sys.stderr)
        return 1
    mnist = find_mnist(args.mnist)
    data = ["--dataset", args.dataset] if args.dataset else ["--data-dir", str(mnist or "")]
    if mnist is None and not (args.dataset and args.skip_tests):
        report["error"] = "full MNIST not found"
        save()
        print("gpu_check: full MNIST not found; give --mnist FOLDER", file=sys.stderr)
        return 1
    report["mnist"] = str(mnist)
    report["device"], report["dataset"] = args.device, args.dataset or "mnist"
    env = dict(os.environ, NETSQUEEZE_REQUIRE_MNIST="1",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if mnist is not None:
        env["NETSQUEEZE_TEST_MNIST"] = str(mnist)
    py = sys.executable
    failed = False

    if not args.skip_tests:
        cmd = [py, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               f"--junitxml={out / 'pytest.xml'}", *(args.tests.split() or [])]
        step = run_step("tests", cmd, out, env, args.timeout)
        summary = next((ln for ln in reversed(step["tail"])
                        if re.search(r"\d+ (passed|failed)", ln)), None)
        step["summary"] = summary
        report["steps"]["tests"] = step
        failed |= step["rc"] != 0
        save()

    ns = [py, "-m", "netsqueeze"]
    zw_dir, c_dir = out / "zero-weights", out / "lenet5"
    zw_extra, c_extra = [], []
    if args.quick:
        zw_extra = ["--iterations", "60", "--thresholds", "0.01", "0.09", "5",
                    "--cluster-steps", "3"]
        recipe = out / "quick-lenet5.toml"
        recipe.write_text(QUICK_RECIPE)
        c_extra = ["--recipe", str(recipe)]
    report["quick"] = args.quick
    step = run_step("zero_weights", ns + ["zero-weights", "--device", args.device, *data,
                                          *zw_extra, "-o", str(zw_dir), "-q"],
                    out, env, args.timeout)
    if step["rc"] == 0:
        res = json.loads((zw_dir / "results.json").read_text())
        a = res["answers"]
        step["result"] = {
            "device": res["device"], "n_test_images": res["n_test_images"],
            "trained_accuracy": res["train"]["accuracy"], "wall_times": res["wall_times"],
            "zero": a.get("zero"), "clusters_within_tolerance": a.get("clusters_within_tolerance"),
        }
    report["steps"]["zero_weights"] = step
    failed |= step["rc"] != 0
    save()

    step = run_step("compress_lenet5", ns + ["compress", "--model", "lenet5", "--device",
                                             args.device, *data, *c_extra, "-o", str(c_dir),
                                             "-q"],
                    out, env, args.timeout)
    if step["rc"] == 0:
        res = json.loads((c_dir / "results.json").read_text())
        s, f = res["summary"], res["file"]["totals"]
        step["result"] = {
            "device": res["device"], "n_test_images": res["n_test_images"],
            "trained_error_pct": s["trained_error_pct"], "final_error_pct": s["final_error_pct"],
            "kept_fraction": s["kept_fraction"], "file_bytes": f["file_bytes"],
            "ratio_to_dense": f["ratio_to_dense"], "wall_times": res["wall_times"],
        }
    report["steps"]["compress_lenet5"] = step
    failed |= step["rc"] != 0
    save()

    if (c_dir / "model.nsq").is_file():
        step = run_step("evaluate", ns + ["evaluate", str(c_dir / "model.nsq"), "--device",
                                          args.device, *data],
                        out, env, args.timeout)
        report["steps"]["evaluate"] = step
        failed |= step["rc"] != 0
        save()

    print("\n=== summary")
    for name, step in report["steps"].items():
        r = step.get("result") or {}
        what = step.get("summary") or ""
        if name == "zero_weights" and r:
            z = r.get("zero") or {}
            what = (f"trained accuracy {r['trained_accuracy']:.4f} on {r['n_test_images']:,}; "
                    f"{100 * (z.get('zero_fraction') or 0):.1f} % zeroable")
        elif name == "compress_lenet5" and r:
            what = (f"error {r['trained_error_pct']:.2f} % -> {r['final_error_pct']:.2f} %, "
                    f"{r['file_bytes']:,} bytes, {r['ratio_to_dense']:.1f}x")
        elif name == "evaluate":
            what = next((ln for ln in step["tail"] if "top-1 accuracy" in ln), "")
        print(f"{name:>16}: exit {step['rc']}, {step['seconds']:.0f} s; {what}")
    print(f"wrote {out / 'gpu_check.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
