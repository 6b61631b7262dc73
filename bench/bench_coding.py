"""Benchmark of netsqueeze's symbol coding against general-purpose and reference coders.

Payloads (``--n`` symbols each, default 10**7; ``--quick``: 10**6):

* ``idx32`` / ``idx256``: cluster indices of pruned weights shared into 32 / 256 clusters.
  The weights that survive magnitude pruning of a Laplace-distributed layer are the Laplace
  tail ``|w| > t`` (drawn directly: ``t + Exponential``, random sign); the clusters come from
  1-D k-means with linear initialisation (the paper's choice), 10 Lloyd iterations.
* ``gaps8`` / ``gaps5``: relative-index gap symbols (8 and 5 bits, 0 = filler) of a tensor whose
  non-zeros are i.i.d. with density 0.1 (90 % sparse): gaps are geometric(0.1).
* ``ar16``: a correlated stream (a Gaussian AR(1) process with coefficient 0.9, quantised into
  16 equal-mass bins): its symbols depend on their predecessor, which contexts can use.

Coders, on the same symbols:

* ``ours_huffman``: :func:`netsqueeze.core.entropy.huffman_encode` / ``huffman_decode``; the size
  is everything written for the stream in an ``.nsq`` record (descriptor, code-length table,
  block offsets, payload).
* ``ours_fixed``: fixed-width bit packing (``pack_fixed`` / ``unpack_fixed``).
* ``entropy``: the Shannon bound of the symbol counts (no coder can do better with a static
  per-symbol model).
* ``dahuffman``: pure-Python Huffman. Its size is exact for the whole stream (its code table on
  the full counts, end-of-file symbol included); its speed is timed on a subsample
  (``--dahuffman-n``, default 200,000 symbols) and reported in symbols per second.
* ``zlib9``, ``zstd3``, ``zstd19``: general-purpose compressors on the fixed-width bytes (one
  byte per symbol, all payloads here have alphabets of at most 256).
* ``ans``: constriction's ANS coder with the categorical model of the counts (the model itself
  is not counted), for reference.
* ``ours_rans``: :func:`netsqueeze.core.rans.rans_encode` / ``rans_decode`` with one context
  (``P = 12``, or more when the alphabet needs it), lanes of 1,024 symbols; the size is everything
  written for the stream (model, lane states, words); encoding time includes counting and
  quantising the model.
* ``ours_rans_ctx``: the writer's rANS model choice (:func:`netsqueeze.core.rans.choose_rans`:
  one count of (previous symbol or its fine bucket, symbol) pairs, size estimates of up to 12
  context models x 3 precisions from it, then one encode), timed the same way.
* ``writer``: everything the ``.nsq`` writer does for the stream
  (:func:`netsqueeze.core.container.encode_stream` with ``entropy="auto"``: fixed width and
  Huffman sized and coded, the rANS model search and encode, the smallest kept); decoding is
  :meth:`StreamRecord.decode`. Its ``coding`` field says which coding won.

Throughputs are best of ``--repeat`` runs (1 run for the slow general-purpose levels) in
millions of symbols per second, by wall clock and by CPU time of this process (the second is
less sensitive to other work on the machine; the load average is recorded); the table printed
shows both. Ratios compare
sizes within the same run.

Usage::

    python bench/bench_coding.py --out bench/results/coding.json
    python bench/bench_coding.py --quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info  # also puts the project root on sys.path

from netsqueeze.core import entropy as E
from netsqueeze.core.container import encode_stream
from netsqueeze.core.fileio import atomic_write_json
from netsqueeze.core.sparse import gap_symbols

# -- payloads ---------------------------------------------------------------------------------


def cluster_indices(rng, n: int, k: int, keep: float = 0.1) -> np.ndarray:
    """Cluster index of each surviving weight of a pruned Laplace(0, 1) layer."""
    t = -np.log(keep)  # P(|w| > t) = keep for a unit Laplace
    w = (t + rng.exponential(size=n)) * rng.choice([-1.0, 1.0], size=n)
    c = np.linspace(w.min(), w.max(), k)  # linear initialisation
    sample = w[: min(n, 1_000_000)]
    for _ in range(10):  # Lloyd iterations on a sample
        labels = np.searchsorted((c[1:] + c[:-1]) / 2, sample)
        cnt = np.bincount(labels, minlength=k)
        sums = np.bincount(labels, weights=sample, minlength=k)
        c = np.sort(np.where(cnt > 0, sums / np.maximum(cnt, 1), c))
    return np.searchsorted((c[1:] + c[:-1]) / 2, w).astype(np.uint8 if k <= 256 else np.uint16)


def gap_payload(rng, n: int, bits: int, density: float = 0.1) -> np.ndarray:
    """The first n gap symbols of an i.i.d. mask with this density (n gaps give >= n symbols)."""
    d = rng.geometric(density, size=n)
    pos = np.cumsum(d) - 1
    syms = gap_symbols(pos, gap_bits=bits)
    return syms[:n]


def ar_payload(rng, n: int, k: int, rho: float = 0.9) -> np.ndarray:
    """A Gaussian AR(1) process quantised into k equal-mass bins (correlated neighbours)."""
    e = rng.standard_normal(n) * np.sqrt(1 - rho**2)
    x = np.empty(n)
    x[0] = rng.standard_normal()
    # x[i] = rho x[i-1] + e[i], by blocks of a scaled cumulative sum (no Python loop per value)
    b = 4096
    for s in range(0, n, b):
        seg = e[s : s + b]
        pw = rho ** np.arange(1, seg.size + 1)
        prev = x[s - 1] if s else x[0] / rho
        x[s : s + seg.size] = pw * (prev + np.cumsum(seg / pw))
    edges = np.quantile(x[: min(n, 10**6)], np.arange(1, k) / k)
    return np.searchsorted(edges, x).astype(np.uint8)


# -- timing ------------------------------------------------------------------------------------


def best_of(fn, repeat: int):
    """(best wall seconds, best CPU seconds of this process, result) over ``repeat`` runs."""
    best = best_cpu = float("inf")
    out = None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        best = min(best, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
    return best, best_cpu, out


def msym(n: int, seconds: float) -> float:
    return n / seconds / 1e6 if seconds > 0 else float("inf")


def speeds(n: int, enc, dec) -> dict:
    """Throughput fields from best_of results (wall clock, and CPU time of this process)."""
    return {
        "encode_msym_s": msym(n, enc[0]),
        "decode_msym_s": msym(n, dec[0]),
        "encode_msym_s_cpu": msym(n, enc[1]),
        "decode_msym_s_cpu": msym(n, dec[1]),
    }


# -- coders -----------------------------------------------------------------------------------


def run_ours(sym, alphabet, repeat):
    n = sym.size
    enc = best_of(lambda: E.huffman_encode(sym, alphabet), repeat)
    h = enc[2]
    dec = best_of(lambda: E.huffman_decode(h), repeat)
    assert np.array_equal(dec[2], sym), "ours: round trip failed"
    written = encode_stream(sym, alphabet, entropy="huffman")
    res = {
        "ours_huffman": {
            "bytes": written.nbytes,
            "payload_bytes": len(written.payload),
            "block_index_bits": written.index_bits,
            "block_size": h.block_size,
            "max_code_length": int(h.code_lengths.max()),
            **speeds(n, enc, dec),
        }
    }
    width = E.fixed_width(alphabet)
    enc = best_of(lambda: E.pack_fixed(sym, width), repeat)
    dec = best_of(lambda: E.unpack_fixed(enc[2], width, n), repeat)
    assert np.array_equal(dec[2], sym), "fixed: round trip failed"
    res["ours_fixed"] = {"bytes": len(enc[2]) + 22, "width": width, **speeds(n, enc, dec)}
    return res


def run_dahuffman(sym, alphabet, sub_n):
    try:
        import dahuffman
    except ImportError:
        return {"dahuffman": {"skipped": "dahuffman is not installed"}}
    counts = np.bincount(sym, minlength=alphabet)
    freqs = {int(s): int(c) for s, c in enumerate(counts) if c}
    codec = dahuffman.HuffmanCodec.from_frequencies(freqs)
    table = codec.get_code_table()
    bits = sum(int(c) * table[s][0] for s, c in freqs.items()) + table[codec._eof][0]
    sub = sym[:sub_n].tolist()
    enc = best_of(lambda: codec.encode(sub), 1)
    dec = best_of(lambda: codec.decode(enc[2]), 1)
    assert dec[2] == sub, "dahuffman: round trip failed"
    return {
        "dahuffman": {
            "bytes": (bits + 7) // 8,
            **speeds(len(sub), enc, dec),
            "timed_on_symbols": len(sub),
            "note": "size exact for the whole stream; speed timed on the subsample "
            "(symbols per second are rates, not scaled times)",
        }
    }


def run_general(sym, repeat):
    raw = sym.astype(np.uint8).tobytes()
    n = sym.size
    res = {}
    enc = best_of(lambda: zlib.compress(raw, 9), 1)
    dec = best_of(lambda: zlib.decompress(enc[2]), repeat)
    assert dec[2] == raw
    res["zlib9"] = {"bytes": len(enc[2]), **speeds(n, enc, dec), "input": "1 byte a symbol"}
    try:
        import zstandard
    except ImportError:
        res["zstd3"] = res["zstd19"] = {"skipped": "zstandard is not installed"}
        return res
    for level in (3, 19):
        cctx = zstandard.ZstdCompressor(level=level)
        dctx = zstandard.ZstdDecompressor()
        enc = best_of(lambda c=cctx: c.compress(raw), repeat if level < 10 else 1)
        dec = best_of(lambda d=dctx, c=enc[2]: d.decompress(c), repeat)
        assert dec[2] == raw
        res[f"zstd{level}"] = {
            "bytes": len(enc[2]),
            **speeds(n, enc, dec),
            "input": "1 byte a symbol",
        }
    return res


def run_ans(sym, alphabet, repeat):
    try:
        import constriction
    except ImportError:
        return {"ans": {"skipped": "constriction is not installed"}}
    counts = np.bincount(sym, minlength=alphabet).astype(np.float64)
    used = counts > 0
    probs = counts / counts.sum()
    # constriction needs non-zero probabilities for every symbol of the model
    probs = np.where(used, probs, 0)
    model = constriction.stream.model.Categorical(probs[used] / probs[used].sum(), perfect=False)
    remap = np.cumsum(used) - 1
    s = remap[sym].astype(np.int32)

    def enc():
        c = constriction.stream.stack.AnsCoder()
        c.encode_reverse(s, model)
        return c.get_compressed()

    e = best_of(enc, repeat)
    comp = e[2]
    d = best_of(lambda: constriction.stream.stack.AnsCoder(comp).decode(model, s.size), repeat)
    assert np.array_equal(d[2], s), "ans: round trip failed"
    return {"ans": {"bytes": int(comp.nbytes), **speeds(s.size, e, d), "note": "model not counted"}}


def run_rans(sym, alphabet, repeat):
    from netsqueeze.core import rans as R

    n = sym.size
    p = max(12, int(np.ceil(np.log2(max(2, int(np.count_nonzero(np.bincount(sym))))))))
    res = {}
    for name, fn in (
        ("ours_rans", lambda: R.rans_encode(sym, alphabet, prob_bits=min(p, R.MAX_PROB_BITS))),
        ("ours_rans_ctx", lambda: R.choose_rans(sym, alphabet)),
    ):
        enc = best_of(fn, repeat)
        st = enc[2]
        dec = best_of(lambda st=st: R.rans_decode(st), repeat)
        assert np.array_equal(dec[2], sym), f"{name}: round trip failed"
        res[name] = {
            "bytes": 13 + st.fields_size,
            "model_bytes": st.model_bytes,
            "lane_state_bytes": 4 * st.n_lanes,
            "buckets": st.n_buckets,
            "prob_bits": st.prob_bits,
            **speeds(n, enc, dec),
        }
    enc = best_of(lambda: encode_stream(sym, alphabet, entropy="auto"), repeat)
    rec = enc[2]
    dec = best_of(lambda: rec.decode(), repeat)
    assert np.array_equal(dec[2], sym), "writer: round trip failed"
    res["writer"] = {"bytes": rec.nbytes, "coding": rec.coding, **speeds(n, enc, dec)}
    return res


# -- main -------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="bench/results/coding.json", help="JSON result file")
    ap.add_argument("--quick", action="store_true", help="10**6 symbols, 1 repeat")
    ap.add_argument("--n", type=int, default=None, help="symbols per payload (default 10**7)")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--dahuffman-n", type=int, default=200_000, help="symbols timed with dahuffman")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--payloads", nargs="*", default=None,
                    help="only these payloads (idx32 idx256 gaps8 gaps5 ar16)")
    ap.add_argument("--skip-general", action="store_true",
                    help="skip dahuffman, zlib and zstd (the slow reference coders)")
    args = ap.parse_args(argv)
    n = args.n or (10**6 if args.quick else 10**7)
    repeat = 1 if args.quick else args.repeat
    rng = np.random.default_rng(args.seed)
    payloads = {
        "idx32": (cluster_indices(rng, n, 32), 32),
        "idx256": (cluster_indices(rng, n, 256), 256),
        "gaps8": (gap_payload(rng, n, 8), 256),
        "gaps5": (gap_payload(rng, n, 5), 32),
        "ar16": (ar_payload(rng, n, 16), 16),
    }
    result = {
        "benchmark": "coding",
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(("dahuffman", "zstandard", "constriction")),
        "args": {
            "n": n,
            "repeat": repeat,
            "dahuffman_n": args.dahuffman_n,
            "seed": args.seed,
            "quick": args.quick,
        },
        "payloads": {},
    }
    for name, (sym, alphabet) in payloads.items():
        if args.payloads and name not in args.payloads:
            continue
        counts = np.bincount(sym, minlength=alphabet)
        h_bits = E.entropy_bits(counts)
        res = {"entropy": {"bytes": h_bits / 8}}
        res.update(run_ours(sym, alphabet, repeat))
        if not args.skip_general:
            res.update(run_dahuffman(sym, alphabet, min(args.dahuffman_n, sym.size)))
            res.update(run_general(sym, repeat))
        res.update(run_ans(sym, alphabet, repeat))
        res.update(run_rans(sym, alphabet, repeat))
        ours = res["ours_huffman"]["bytes"]
        for r in res.values():
            if "bytes" in r:
                r["bits_per_symbol"] = r["bytes"] * 8 / sym.size
                r["ours_huffman_vs_this"] = ours / r["bytes"] if r["bytes"] else None
        res["ours_huffman"]["overhead_vs_entropy"] = ours * 8 / h_bits - 1 if h_bits else None
        result["payloads"][name] = {
            "n_symbols": int(sym.size),
            "alphabet_size": alphabet,
            "used_symbols": int(np.count_nonzero(counts)),
            "entropy_bits_per_symbol": h_bits / sym.size,
            "results": res,
        }
        print_table(name, result["payloads"][name])
    if hasattr(os, "getloadavg"):
        result["machine"]["load_average_at_end"] = list(os.getloadavg())
    out = Path(args.out)
    atomic_write_json(out, result)
    print(f"wrote {out}")
    return result


def print_table(name: str, p: dict) -> None:
    print(
        f"\n{name}: {p['n_symbols']:,} symbols, alphabet {p['alphabet_size']}, "
        f"H = {p['entropy_bits_per_symbol']:.4f} bits/symbol"
    )
    print(
        f"  {'coder':<14}{'bytes':>14}{'bits/sym':>10}{'enc Msym/s':>12}{'dec Msym/s':>12}"
        f"{'enc (CPU)':>11}{'dec (CPU)':>11}{'ours/this':>11}"
    )
    for coder, r in p["results"].items():
        if "bytes" not in r:
            print(f"  {coder:<14}{r.get('skipped', '')}")
            continue

        def fmt(v, w=12):
            return f"{v:{w}.1f}" if isinstance(v, float) else f"{'-':>{w}}"

        ratio = r.get("ours_huffman_vs_this")
        print(
            f"  {coder:<14}{r['bytes']:14,.0f}{r['bits_per_symbol']:10.4f}"
            f"{fmt(r.get('encode_msym_s'))}{fmt(r.get('decode_msym_s'))}"
            f"{fmt(r.get('encode_msym_s_cpu'), 11)}{fmt(r.get('decode_msym_s_cpu'), 11)}"
            f"{ratio:11.4f}"
        )


if __name__ == "__main__":
    main()
