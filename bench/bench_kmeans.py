"""Benchmark of netsqueeze's 1-D k-means against scikit-learn and the ``kmeans1d`` package.

Two tables, one function each (``table_targets``, ``table_grid``):

* ``targets``: normal weights (scale 0.05), ``n`` in {10**6, 10**7}, ``k`` in {16, 32, 64, 256},
  every method below (``kmeans1d_pkg`` only up to ``n = 10**6``): the speed targets.
* ``grid``: ``method="auto"`` beside scikit-learn (``n_init=1``) over three kinds of weights
  (normal 0.05, Laplace 0.02, and "pruned": normal 0.05 with every ``|w| <= 0.06`` removed,
  two modes with a gap), ``n`` from 10**4 to 10**8 in decades, ``k`` in {4, 16, 32, 64, 256}:
  is auto's SSE ever higher than scikit-learn's?

Data: float32, ``numpy.random.default_rng(0)``, generated in chunks; every method of one
``(kind, n)`` reads the same array (saved once to a temporary ``.npy`` file).

Methods:

* ``ours_auto``: ``KMeans1D(k, method="auto")``: the dynamic programme on the distinct values
  when cheap, else on a histogram of about 32 bins per cluster refined to full resolution
  (``method_`` in the results says which).
* ``ours_lloyd``: ``KMeans1D(k, init="linear", method="lloyd")`` (defaults: max_iter=300,
  tol=1e-6), the paper's initialisation.
* ``ours_exact``: ``KMeans1D(k, method="exact")``: the optimum on the distinct values when there
  are at most 65536 of them, else the global optimum certified at full resolution by branch and
  bound over nested histograms (up to ``MAX_CERTIFIED_N = 2**24`` values; beyond, a
  16384-bin histogram refined to full resolution, ``method_ == "histogram"``, whose
  ``lower_bound`` is a certified lower bound on the optimal SSE).
* ``sklearn_n1``: ``sklearn.cluster.KMeans(k, n_init=1, algorithm="lloyd", random_state=0)`` on
  ``x.reshape(-1, 1)`` (float32 kept). With k-means++ init this *is* scikit-learn's default
  (``n_init="auto"`` means 1 run).
* ``sklearn_n10``: the same with ``n_init=10`` (the default before scikit-learn 1.4).
* ``kmeans1d_pkg``: ``kmeans1d.cluster(x.tolist(), k)``, the exact ``O(kn)`` SMAWK algorithm in
  C++ (its input is a Python sequence; the ``tolist()`` is timed as part of the call).

Each case runs in a fresh subprocess, one at a time, all with the same threads (the
environment's; scikit-learn uses OpenMP on every core). Measured there:

* ``seconds``: wall time of the fit (plus producing labels), ``time.perf_counter``;
* ``peak_mib``: extra peak resident memory of the fit: the resident-set high-water mark
  (``VmHWM``, reset through ``/proc/self/clear_refs`` just before the fit) minus the resident
  set after importing the libraries and loading the data, so the data themselves (``4 n``
  bytes) are not counted (``ru_maxrss`` differences where the reset is unavailable);
* ``sse``: the sum of squared errors recomputed the same way for every method, in float64, from
  the labels and centroids it returned.

A baseline is skipped (with the reason recorded) when its estimated time exceeds ``--timeout`` or
its estimated memory exceeds ``--max-mem-gib``, and killed if it runs past 1.5 x ``--timeout``.
Ratios compare ours to each baseline within the same run and the same data: ``speedup`` is
baseline seconds / our seconds, ``sse_ratio`` is our SSE / baseline SSE. The load average after
each case is recorded: on a machine shared with other work, times are inflated (scikit-learn's
threads more so than our single thread).

Usage::

    python bench/bench_kmeans.py --out bench/results/kmeans.json
    python bench/bench_kmeans.py --tables grid --ns 1e4 1e5 --quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info  # also puts the project root on sys.path

METHODS = ("ours_auto", "ours_lloyd", "ours_exact", "sklearn_n1", "sklearn_n10", "kmeans1d_pkg")
BASELINES = ("sklearn_n1", "sklearn_n10", "kmeans1d_pkg")
OURS = ("ours_auto", "ours_lloyd", "ours_exact")
KINDS = {"normal": 0.05, "laplace": 0.02, "pruned": 0.05}  # scale of each kind of weights
PRUNE_BELOW = 0.06  # "pruned": |w| <= this removed
SEED = 0
KMEANS1D_MAX_N = 10**6  # the package's k x n tables: above this it is not run


# -- data -------------------------------------------------------------------------------------


def make_data(n: int, kind: str = "normal", seed: int = SEED) -> np.ndarray:
    """``n`` float32 weights of one kind (see ``KINDS``), generated in chunks (no float64 copy
    of size n)."""
    rng = np.random.default_rng(seed)
    scale = KINDS[kind]
    out = np.empty(n, dtype=np.float32)
    step = 1 << 22
    filled = 0
    while filled < n:
        size = min(step, n - filled)
        if kind == "laplace":
            chunk = rng.laplace(0.0, scale, size=size)
        elif kind == "normal":
            chunk = rng.normal(0.0, scale, size=size)
        else:  # about 23 % of a normal survive |w| > 1.2 sigma
            chunk = rng.normal(0.0, scale, size=5 * size)
            chunk = chunk[np.abs(chunk) > PRUNE_BELOW][:size]
        out[filled : filled + chunk.size] = chunk
        filled += chunk.size
    return out


def sse_of(x: np.ndarray, centroids: np.ndarray, labels: np.ndarray) -> float:
    c = np.asarray(centroids, dtype=np.float64).reshape(-1)
    total = 0.0
    step = 1 << 20
    for lo in range(0, x.size, step):
        d = x[lo : lo + step].astype(np.float64) - c[labels[lo : lo + step]]
        total += float(np.einsum("i,i->", d, d))
    return total


# -- one case, in a subprocess ----------------------------------------------------------------


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak() -> tuple[str, int]:
    """Start a fresh peak-memory measurement; returns (how, baseline bytes)."""
    try:  # Linux: writing 5 resets the resident-set high-water mark (VmHWM) to the current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss = _proc_status_kib("VmRSS")
        if rss is not None:
            return "vmhwm", rss * 1024
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return "ru_maxrss", r if sys.platform == "darwin" else r * 1024


def _peak(how: str) -> int:
    if how == "vmhwm":
        return _proc_status_kib("VmHWM") * 1024
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def run_case(data_path: str, method: str, k: int) -> dict:
    """Fit one method on the saved data; runs inside the worker process."""
    if method.startswith("ours"):
        from netsqueeze.core.kmeans1d import KMeans1D
    elif method.startswith("sklearn"):
        from sklearn.cluster import KMeans
    else:
        import kmeans1d
    x = np.load(data_path)
    how, base = _reset_peak()
    extra: dict = {}
    t0 = time.perf_counter()
    if method == "ours_auto":
        km = KMeans1D(k, method="auto").fit(x)
    elif method == "ours_lloyd":
        km = KMeans1D(k, init="linear", method="lloyd").fit(x)
    elif method == "ours_exact":
        km = KMeans1D(k, method="exact").fit(x)
    elif method.startswith("sklearn"):
        n_init = 1 if method == "sklearn_n1" else 10
        km = KMeans(k, n_init=n_init, algorithm="lloyd", random_state=0).fit(x.reshape(-1, 1))
    else:
        res = kmeans1d.cluster(x.tolist(), k)
    seconds = time.perf_counter() - t0
    peak = _peak(how) - base
    if method.startswith("ours"):
        centroids, labels = km.centroids_, km.labels_
        extra = {
            "n_iter": int(km.n_iter_),
            "converged": bool(km.converged_),
            "method_": km.method_,
            "inertia_reported": km.inertia_,
            "lower_bound": km.inertia_lower_bound_,
        }
    elif method.startswith("sklearn"):
        centroids, labels = km.cluster_centers_, km.labels_
        extra = {"n_iter": int(km.n_iter_), "inertia_reported": float(km.inertia_)}
    else:
        centroids = np.asarray(res.centroids)
        labels = np.asarray(res.clusters, dtype=np.int64)
    return {
        "seconds": seconds,
        "peak_mib": max(peak, 0) / 2**20,
        "peak_measure": how,
        "sse": sse_of(x, centroids, labels),
        "k_found": int(np.unique(np.asarray(centroids)).size),
        **extra,
    }


# -- skipping rules ---------------------------------------------------------------------------


def estimate(method: str, n: int, k: int) -> tuple[float, float]:
    """Rough (seconds, bytes) of a baseline, from timings on this kind of machine."""
    if method == "sklearn_n1":
        return 0.3 + 6e-8 * n * k, 16.0 * n
    if method == "sklearn_n10":
        return 10 * (0.3 + 6e-8 * n * k), 16.0 * n
    if method == "kmeans1d_pkg":
        # C++ tables of k x n doubles and indices, plus the Python list of n floats
        return 2.2e-7 * n * k, 16.0 * n * k + 40.0 * n
    return 0.0, 0.0


def skip_reason(method: str, n: int, k: int, timeout: float, max_mem: float) -> str | None:
    if method == "kmeans1d_pkg" and n > KMEANS1D_MAX_N:
        return f"skipped: n > {KMEANS1D_MAX_N:.0e}"
    secs, mem = estimate(method, n, k)
    if secs > timeout:
        return f"skipped: estimated {secs:.0f} s > {timeout:.0f} s cap"
    if mem > max_mem:
        return f"skipped: estimated {mem / 2**30:.1f} GiB > {max_mem / 2**30:.1f} GiB cap"
    return None


def run_in_subprocess(data_path: str, method: str, k: int, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps([data_path, method, k])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"skipped": f"timeout: killed after {timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"skipped": f"failed (exit {proc.returncode}): {' | '.join(tail)}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- reporting --------------------------------------------------------------------------------


def ratios(cases: dict) -> dict:
    out = {}
    for ours in OURS:
        o = cases.get(ours, {})
        if "seconds" not in o:
            continue
        for base in BASELINES:
            b = cases.get(base, {})
            if "seconds" not in b:
                continue
            out[f"{ours}_vs_{base}"] = {
                "speedup": b["seconds"] / o["seconds"],
                "sse_ratio": o["sse"] / b["sse"] if b["sse"] > 0 else None,
                "peak_mib_ratio": o["peak_mib"] / b["peak_mib"] if b["peak_mib"] > 0 else None,
            }
    return out


def fmt_row(kind: str, n: int, k: int, cases: dict, methods) -> str:
    cells = []
    for m in methods:
        c = cases.get(m, {})
        if "seconds" in c:
            cells.append(f"{c['seconds']:.3g} s / {c['peak_mib']:.0f} MiB / {c['sse']:.6g}")
        else:
            cells.append(c.get("skipped", "-").split(":")[0])
    return f"| {kind} | {n:.0e} | {k} | " + " | ".join(cells) + " |"


def run_cases(kinds, ns, ks, methods, args, tmp: Path) -> list[dict]:
    """Every method on every (kind, n, k), one subprocess per case; prints a Markdown table."""
    max_mem = args.max_mem_gib * 2**30
    print("| kind | n | k | " + " | ".join(methods) + " |", flush=True)
    print("|---|---|---|" + "---|" * len(methods), flush=True)
    out = []
    for kind in kinds:
        for n in ns:
            path = tmp / f"{kind}{n}.npy"
            np.save(path, make_data(n, kind))
            for k in ks:
                cases = {}
                for m in methods:
                    reason = skip_reason(m, n, k, args.timeout, max_mem) if m in BASELINES else None
                    if reason:
                        cases[m] = {"skipped": reason}
                        continue
                    cases[m] = run_in_subprocess(str(path), m, k, 1.5 * args.timeout)
                out.append(
                    {
                        "kind": kind,
                        "n": n,
                        "k": k,
                        "results": cases,
                        "ratios": ratios(cases),
                        "loadavg_1min_after": os.getloadavg()[0],
                    }
                )
                print(fmt_row(kind, n, k, cases, methods), flush=True)
            path.unlink()
    return out


def _pick(given, default):
    return [type(default[0])(v) for v in given] if given else list(default)


def table_targets(args, tmp: Path) -> list[dict]:
    """Speed targets: normal weights, n in {1e6, 1e7}, k in {16, 32, 64, 256}, every method."""
    ns = _pick(args.ns, [10**6, 10**7])
    ks = _pick(args.ks, [16, 32, 64, 256])
    methods = args.methods or ["ours_auto", "ours_exact", "ours_lloyd", "sklearn_n1", "kmeans1d_pkg"]
    return run_cases(["normal"], [int(n) for n in ns], ks, methods, args, tmp)


def table_grid(args, tmp: Path) -> list[dict]:
    """Is auto ever worse than scikit-learn? Three kinds of weights, n 1e4..1e8, k 4..256."""
    ns = _pick(args.ns, [10**4, 10**5, 10**6, 10**7, 10**8])
    ks = _pick(args.ks, [4, 16, 32, 64, 256])
    kinds = args.kinds or list(KINDS)
    methods = args.methods or ["ours_auto", "sklearn_n1"]
    return run_cases(kinds, [int(n) for n in ns], ks, methods, args, tmp)


TABLES = {"targets": table_targets, "grid": table_grid}


# -- main -------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/kmeans.json", help="JSON result file")
    ap.add_argument("--tables", nargs="+", default=list(TABLES), choices=list(TABLES))
    ap.add_argument("--quick", action="store_true", help="small sweep: n <= 10**5, k in {4, 16}")
    ap.add_argument("--kinds", nargs="+", default=None, choices=list(KINDS))
    ap.add_argument("--ns", type=float, nargs="+", default=None, help="sizes (per-table default)")
    ap.add_argument("--ks", type=int, nargs="+", default=None, help="cluster counts")
    ap.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    ap.add_argument("--timeout", type=float, default=120.0, help="per-case time cap, seconds")
    ap.add_argument("--max-mem-gib", type=float, default=6.0, help="per-case memory cap")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.worker:
        data_path, method, k = json.loads(args.worker)
        print(json.dumps(run_case(data_path, method, int(k))))
        return {}
    if args.quick:
        args.ns = args.ns or [1e4, 1e5]
        args.ks = args.ks or [4, 16]

    started = time.perf_counter()
    result = {
        "benchmark": "kmeans1d",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine_info(("scikit-learn", "kmeans1d")),
        "threads": {
            v: os.environ.get(v)
            for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE")
        },
        "data": {kind: f"scale {s}, float32, numpy default_rng({SEED})" for kind, s in KINDS.items()},
        "measured": {
            "seconds": "wall time of fit (perf_counter), in a fresh subprocess per case",
            "peak_mib": "peak RSS of the fit (VmHWM reset before it) minus RSS after imports and"
            " data load, MiB",
            "sse": "float64 sum of squared errors from the returned labels and centroids",
        },
        "timeout_s": args.timeout,
        "max_mem_gib": args.max_mem_gib,
        "tables": {},
    }
    tmp = Path(tempfile.mkdtemp(prefix="bench_kmeans_"))
    try:
        for name in args.tables:
            print(f"\n## {name}", flush=True)
            result["tables"][name] = TABLES[name](args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["total_seconds"] = time.perf_counter() - started
    if args.out:
        from netsqueeze.core.fileio import atomic_write_json

        atomic_write_json(args.out, result)
        print(f"wrote {args.out} ({result['total_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main()
