"""Hostile but well-formed rANS streams: decoding costs what the file's bytes and its output
justify, whatever model and lanes a stream declares."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from netsqueeze import DecodeBudgetError, FormatError
from netsqueeze.core import container as C
from netsqueeze.core import rans as R
from netsqueeze.core import sparse as S
from tests.core.decode_timing import cpu_seconds, decode_everything, peak_bytes


def constant_stream(n, alphabet, symbol, n_lanes, n_buckets, n_ext=1, p=R.MAX_PROB_BITS):
    """A valid stream of ``n`` copies of ``symbol`` whose model declares every context used
    (``n_buckets`` x ``n_ext``), each with all ``2**p`` slots on ``symbol``: zero bits a
    symbol, no words, every lane state 2**16 throughout."""
    freqs = np.zeros((n_buckets * n_ext, symbol + 1), np.int64)
    freqs[:, symbol] = 1 << p
    r = R.RansStream(n, alphabet, p, np.arange(1, n_buckets, dtype=np.int64), n_ext, freqs,
                     np.full(n_lanes, 1 << 16, np.int64), np.zeros(0, np.uint16))
    payload = r.payload()
    return C.StreamRecord("rans", n, alphabet, 8 * len(payload), payload, rans=r)


BOOK = (np.arange(8, dtype=np.float32) - 3.5) / 4


def full_model_record(name, n):
    """A sparse record of ``n`` consecutive values: gap stream (8 buckets) and index stream
    (8 buckets x 2 external contexts) both at P = 15, one lane per symbol."""
    gaps = constant_stream(n, 16, 1, n, 8)  # gap 1 after gap 1: positions 0..n-1
    idx = constant_stream(n, 8, 0, n, 8, n_ext=2)
    return C.TensorRecord(name, (n,), np.dtype(np.float32), 4, BOOK, gaps, idx, None)


def few_lane_record(name, n_lanes, lane):
    """A dense record whose index stream has ``n_lanes`` lanes of ``lane`` symbols: as many
    lock-step decoding steps as the reader accepts for its bytes."""
    idx = constant_stream(n_lanes * lane, 8, 0, n_lanes, 1)
    return C.TensorRecord(name, (n_lanes * lane,), np.dtype(np.float32), None, BOOK, None, idx,
                          None)








def test_the_crafted_records_are_valid():
    r = full_model_record("w", 4)
    assert r.gaps.rans.freqs.shape == (8, 2) and r.indices.rans.freqs.shape == (16, 1)
    assert S.gap_positions(r.gaps.decode(), gap_bits=4, size=4).tolist() == [0, 1, 2, 3]
    out = C.read_nsq(C.nsq_bytes([r, few_lane_record("v", 17, 400)])).arrays()
    assert out["w"].tolist() == [BOOK[0]] * 4
    assert out["v"].tolist() == [BOOK[0]] * (17 * 400)


def test_many_tiny_streams_with_the_largest_model_decode_in_linear_time():
    """~100 KB of records of 4 values whose two streams declare the largest model they may
    (gaps: 8 contexts, indices: 16 contexts, all at 2**15 slots), one lane per symbol. Per-slot
    tables would be 3 MiB to build per index stream: 3.2 s of CPU for this file (read, decoded
    and inspected) before; about 0.3 s now that the decoder searches the frequency table."""
    records = [full_model_record(f"w{i}", 4) for i in range(400)]
    data = C.nsq_bytes(records)
    assert 90_000 < len(data) < 130_000
    seconds, result = cpu_seconds(lambda: decode_everything(data))
    assert not isinstance(result, Exception), result
    for r in records:
        assert np.all(result[r.name] == BOOK[0])
    assert seconds < 1.0, seconds
    small = C.nsq_bytes(records[:8])
    assert peak_bytes(lambda: decode_everything(small)) < 64 * len(small) + (1 << 20)


def test_the_most_lock_step_work_a_byte_allows_stays_linear():
    """Streams of 17 lanes (the fewest decoded with numpy steps) and as many steps as the
    reader accepts for their bytes (8 a byte): each step costs several microseconds whatever
    its width, so this is about the most decoding time a byte of file can ask for: ~26 us a
    byte for each decoding pass (1.35 s for this 26 KB file, read, decoded and inspected, at
    load 5 on 2 cores; the 2.2 M symbols decoded are within the 1/64-bit-a-symbol rule)."""
    one = few_lane_record("probe", R._SCALAR_LANES + 1, 1)
    steps = 8 * one.indices.nbytes  # the most the reader accepts: 8 a byte of the stream
    records = [few_lane_record(f"w{i}", R._SCALAR_LANES + 1, steps) for i in range(150)]
    data = C.nsq_bytes(records)
    assert 20_000 < len(data) < 30_000
    seconds, result = cpu_seconds(lambda: decode_everything(data))
    assert not isinstance(result, Exception), result
    for r in records:
        assert np.all(result[r.name] == BOOK[0])
    assert seconds < 4.0, seconds
    small = C.nsq_bytes(records[:8])
    # the output is ~340 x the file here (float32 values, within the decode budget for a file
    # this small); the working memory stays a fraction of it
    out_bytes = sum(4 * r.numel for r in records[:8])
    assert peak_bytes(lambda: decode_everything(small)) < 2 * out_bytes + (1 << 20)


def test_stream_lanes_beyond_what_its_bytes_allow_are_refused_quickly():
    one = few_lane_record("probe", 17, 1)
    steps = 8 * one.indices.nbytes + 1  # one step more than 8 a byte of the stream
    data = C.nsq_bytes([few_lane_record(f"w{i}", 17, steps) for i in range(50)])
    seconds, result = cpu_seconds(lambda: decode_everything(data))
    assert isinstance(result, FormatError) and "lanes of" in str(result)
    assert seconds < 0.2


def test_decode_budget_counts_the_rans_tables_really_built():
    """The working memory charged for an rANS stream (its decoding table: per slot, or per
    entry when the stream has too few symbols for a per-slot table) bounds what decoding
    allocates, on both lock-step paths."""
    rng = np.random.default_rng(3)
    records = [full_model_record("full", 40), few_lane_record("few", 17, 300)]
    for name, n, lane in (("many-lanes", 300_000, None), ("one-lane", 900, None),
                          ("slots", 60_000, 64)):
        v = rng.laplace(size=n).astype(np.float32)
        v[rng.random(n) < 0.7] = 0
        book = np.linspace(-3, 3, 16).astype(np.float32)
        v[v != 0] = book[np.searchsorted((book[1:] + book[:-1]) / 2, v[v != 0])]
        records.append(C.encode_tensor(name, v, gap_bits=3, entropy="rans"))
    paths = set()
    for r in C.read_nsq(C.nsq_bytes(records)).records:
        for st in (r.gaps, r.indices):
            if st is not None and st.rans is not None:
                paths.add((st.rans.n_lanes <= R._SCALAR_LANES, R.slot_tables(st.rans)))
        tracemalloc.start()
        a = C.decode_tensor(r)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert peak <= r.decode_bytes, (r.name, peak, r.decode_bytes)
        with pytest.raises(DecodeBudgetError):
            C.decode_tensor(r, max_bytes=r.decode_bytes - 1)
        assert C.decode_tensor(r, max_bytes=r.decode_bytes).tobytes() == a.tobytes()
    assert len(paths) >= 3, paths  # Python and numpy lock-step, per-slot and searched tables
