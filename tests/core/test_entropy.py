"""Tests of netsqueeze.core.entropy: Huffman code lengths, canonical codes, bit packing."""

from __future__ import annotations

import itertools
import math
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsqueeze import FormatError
from netsqueeze.core import entropy as E

FAST = settings(
    max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def bitstring(payload: bytes, n_bits: int) -> str:
    return "".join(format(b, "08b") for b in payload)[:n_bits]


def code_strings(lengths) -> dict[int, str]:
    codes = E.canonical_codes(lengths)
    return {s: format(int(codes[s]), f"0{int(n)}b") for s, n in enumerate(lengths) if n}


# -- entropy ----------------------------------------------------------------------------------


def test_entropy_bits_hand_worked():
    assert E.entropy_bits([1, 1]) == pytest.approx(2.0)
    assert E.entropy_bits([2, 1, 1]) == pytest.approx(6.0)  # 1.5 bits x 4 symbols
    assert E.entropy_bits([4, 4, 4, 4]) == pytest.approx(32.0)
    assert E.entropy_bits([5]) == 0.0
    assert E.entropy_bits([0, 7, 0]) == 0.0
    assert E.entropy_bits([]) == 0.0
    with pytest.raises(ValueError, match="non-negative"):
        E.entropy_bits([1, -1])


# -- code lengths -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ([5, 2, 1, 1], [1, 2, 3, 3]),
        ([45, 13, 12, 16, 9, 5], [1, 3, 3, 3, 4, 4]),  # CLRS 16.3
        ([1, 1], [1, 1]),
        ([3, 0, 3, 0], [1, 0, 1, 0]),
        ([1, 1, 1, 1], [2, 2, 2, 2]),
        ([0, 9, 0], [0, 1, 0]),  # one used symbol: a 1-bit code
        ([0, 0], [0, 0]),
        ([], []),
    ],
)
def test_code_lengths_hand_worked(counts, expected):
    assert E.huffman_code_lengths(counts).tolist() == expected


def test_canonical_codes_deflate_example():
    # RFC 1951, 3.2.2: lengths (3, 3, 3, 3, 3, 2, 4, 4) for A..H
    assert code_strings([3, 3, 3, 3, 3, 2, 4, 4]) == {
        0: "010",
        1: "011",
        2: "100",
        3: "101",
        4: "110",
        5: "00",
        6: "1110",
        7: "1111",
    }


def brute_force_cost(counts, max_length):
    """Least sum(c * l) over length vectors within max_length satisfying Kraft (tiny cases)."""
    c = sorted(counts, reverse=True)
    best = math.inf
    for ls in itertools.combinations_with_replacement(range(1, max_length + 1), len(c)):
        if sum(2.0**-x for x in ls) <= 1.0:
            best = min(best, sum(ci * li for ci, li in zip(c, ls, strict=True)))
    return best


@pytest.mark.parametrize("max_length", [3, 4, 5])
def test_length_limited_is_optimal_on_fibonacci_counts(max_length):
    counts = [1, 1, 2, 3, 5, 8, 13, 21]  # unconstrained Huffman needs 7 bits
    assert E.reference_huffman_lengths(counts).max() == 7
    lengths = E.huffman_code_lengths(counts, max_length=max_length)
    assert lengths.max() <= max_length
    assert E.kraft_sum(lengths) == 1.0
    assert E.huffman_payload_bits(counts, lengths) == brute_force_cost(counts, max_length)


def test_length_limit_default_on_steep_distribution():
    counts = np.array([2**i for i in range(30)], dtype=np.int64)  # would need 29-bit codes
    lengths = E.huffman_code_lengths(counts)
    assert lengths.max() == E.MAX_CODE_LENGTH
    assert E.kraft_sum(lengths) == 1.0
    free = E.reference_huffman_lengths(counts)
    limited = E.huffman_payload_bits(counts, lengths)
    assert limited >= E.huffman_payload_bits(counts, free)
    assert limited <= E.huffman_payload_bits(counts, free) * 1.001


def test_too_many_symbols_for_max_length():
    with pytest.raises(ValueError, match="raise max_length"):
        E.huffman_code_lengths(np.ones(9), max_length=3)
    with pytest.raises(ValueError, match="max_length"):
        E.huffman_code_lengths([1, 2], max_length=E.MAX_CODE_LENGTH + 1)


@FAST
@given(
    st.lists(st.integers(0, 10**6), min_size=0, max_size=300),
)
def test_code_lengths_optimal_and_complete(counts):
    lengths = E.huffman_code_lengths(counts)
    used = np.count_nonzero(counts)
    assert np.array_equal(lengths > 0, np.asarray(counts, dtype=np.int64) > 0)
    if used >= 2:
        assert E.kraft_sum(lengths) == 1.0
        ref = E.reference_huffman_lengths(counts)
        if ref.max() <= E.MAX_CODE_LENGTH:  # same optimum as the textbook algorithm
            assert E.huffman_payload_bits(counts, lengths) == E.huffman_payload_bits(counts, ref)


@FAST
@given(st.lists(st.integers(1, 1000), min_size=2, max_size=40))
def test_code_lengths_match_dahuffman_total(counts):
    import dahuffman
    # dahuffman always adds an end-of-file symbol: give it the same one (count 1)
    freqs = {i: c for i, c in enumerate(counts)}
    table = dahuffman.HuffmanCodec.from_frequencies(freqs, eof=-1).get_code_table()
    theirs = sum(c * table[i][0] for i, c in enumerate(counts)) + table[-1][0]
    ours_lengths = E.huffman_code_lengths([*counts, 1])
    assert E.huffman_payload_bits([*counts, 1], ours_lengths) == theirs


@FAST
@given(st.lists(st.integers(0, E.MAX_CODE_LENGTH), min_size=1, max_size=200))
def test_canonical_codes_are_prefix_free_and_ordered(lengths):
    lengths = np.asarray(lengths)
    if E.kraft_sum(lengths) > 1:
        with pytest.raises(ValueError, match="Kraft"):
            E.canonical_codes(lengths)
        return
    codes = code_strings(lengths)
    words = sorted(codes.values())
    for a, b in itertools.pairwise(words):
        assert not b.startswith(a)
    # canonical: ordered by (length, symbol) the codes are increasing as bit strings
    order = sorted(codes, key=lambda s: (len(codes[s]), s))
    vals = [int(codes[s], 2) << (E.MAX_CODE_LENGTH - len(codes[s])) for s in order]
    assert vals == sorted(vals)


# -- encode / decode --------------------------------------------------------------------------


def test_encode_hand_worked_bits():
    # counts 2, 1, 1 -> lengths 1, 2, 2 -> codes 0, 10, 11 (MSB first)
    s = E.huffman_encode([0, 1, 2, 0])
    assert s.code_lengths.tolist() == [1, 2, 2]
    assert s.n_bits == 6
    assert bitstring(s.payload, 6) == "010110"
    assert s.payload == bytes([0b01011000])
    assert E.huffman_decode(s).tolist() == [0, 1, 2, 0]


def test_single_symbol_and_empty_streams():
    s = E.huffman_encode([3] * 20, 5)
    assert s.code_lengths.tolist() == [0, 0, 0, 1, 0]
    assert s.n_bits == 20 and s.payload == bytes(3)
    out = E.huffman_decode(s)
    assert out.dtype == np.uint8 and out.tolist() == [3] * 20
    e = E.huffman_encode([], 7)
    assert e.n_symbols == 0 and e.payload == b"" and e.n_blocks == 0
    assert E.huffman_decode(e).shape == (0,)
    one = E.huffman_encode([0, 0, 0])  # alphabet of 1
    assert one.alphabet_size == 1 and E.huffman_decode(one).tolist() == [0, 0, 0]


@FAST
@given(
    n=st.integers(0, 3000),
    alphabet=st.integers(1, 300),
    skew=st.floats(0.05, 5.0),
    block=st.one_of(st.none(), st.integers(1, 700)),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_random_streams(n, alphabet, skew, block, seed):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(alphabet, skew))
    sym = rng.choice(alphabet, size=n, p=p)
    s = E.huffman_encode(sym, alphabet, block_size=block)
    assert s.n_bits == E.huffman_payload_bits(np.bincount(sym, minlength=alphabet), s.code_lengths)
    assert len(s.payload) == (s.n_bits + 7) // 8
    out = E.huffman_decode(s)
    assert out.dtype == (np.uint8 if alphabet <= 256 else np.uint16)
    assert np.array_equal(out, sym)


@pytest.mark.parametrize("alphabet", [2, 16, 32, 256, 1000, 65536])
def test_round_trip_larger_streams(alphabet):
    rng = np.random.default_rng(alphabet)
    w = rng.laplace(size=200_003)
    sym = np.clip(np.round(w * alphabet / 12 + alphabet / 2), 0, alphabet - 1).astype(np.int64)
    s = E.huffman_encode(sym, alphabet)
    assert np.array_equal(E.huffman_decode(s), sym)
    counts = np.bincount(sym, minlength=alphabet)
    h = E.entropy_bits(counts)
    assert h <= s.n_bits <= h + sym.size  # Huffman: H <= L < H + 1 bit a symbol


def test_full_alphabet_of_65536():
    sym = np.arange(65536).repeat(2)
    s = E.huffman_encode(sym)
    assert set(s.code_lengths.tolist()) == {16}
    assert np.array_equal(E.huffman_decode(s), sym)


def test_payload_close_to_entropy_with_block_index():
    from netsqueeze.core.container import encode_stream

    rng = np.random.default_rng(0)
    w = rng.laplace(size=1_000_000)
    edges = np.quantile(w, np.linspace(0, 1, 33)[1:-1]) * 0.3
    sym = np.searchsorted(edges, w)
    st_ = encode_stream(sym, 32, entropy="huffman")
    h = E.entropy_bits(np.bincount(sym, minlength=32))
    assert st_.n_bits < h + sym.size
    # everything written besides the payload (table, block offsets) is under 1 % of it
    assert (st_.nbytes - len(st_.payload)) * 8 < 0.01 * st_.n_bits
    assert st_.index_bits < 0.01 * st_.n_bits


def test_choose_block_size():
    assert E.choose_block_size(0, 0) == 1
    assert E.choose_block_size(10, 30) == 10
    big = E.choose_block_size(10**7, 4 * 10**7)
    assert 256 <= big <= 4096
    assert E.choose_block_size(10**9, 10**9) <= E.MAX_BLOCK_SIZE


def test_block_size_range_holds_every_block_size_the_encoder_chooses():
    ns = sorted(
        {1, 2, 3, 208, 209, 210, 3333, 3334, 3335, 3336, 3337, 3338, 10**5, 44_435_556,
         44_435_557, 10**9, 2**34 - 1, 2**34, 2**34 + 1, 10**12, 2**63}
        | {int(x) for x in np.logspace(0, 13, 200)}
    )
    for n in ns:
        lo, hi = E.block_size_range(n)
        assert 1 <= lo <= hi <= E.MAX_BLOCK_SIZE
        for bits in (1.0, 1.001, 1.5, 2.0, 3.3, 5.0, 8.0, 15.99, 16.0):
            chosen = E.choose_block_size(n, math.ceil(bits * n))
            for group in (1, 2, 3, 4):
                assert lo <= E._round_block_size(chosen, n, group) <= hi, (n, bits, group)
    # what the encoder writes, on real streams
    rng = np.random.default_rng(0)
    for n in (1, 5, 209, 210, 1000, 3334, 3335, 50_000):
        for alphabet in (2, 3, 7, 16, 17, 40, 41, 300):
            sym = rng.integers(0, alphabet, n)
            assert E.block_size_range(n)[0] <= E.huffman_encode(sym, alphabet).block_size
            assert E.huffman_encode(sym, alphabet).block_size <= E.block_size_range(n)[1]
    # the hostile block sizes fall outside
    lo, hi = E.block_size_range(65536)
    assert (lo, hi) == (209, 3337)
    assert E.block_size_range(0) == (1, E.MAX_BLOCK_SIZE)  # no block: any size is harmless


@pytest.mark.parametrize("serial_below", [0, 10**9], ids=["lock-step", "serial"])
@pytest.mark.parametrize("alphabet", [2, 5, 300])
@pytest.mark.parametrize("block", [1, 2, 3, 7, 100, 4999, 5000, 65536])
def test_both_decoders_decode_every_block_size(monkeypatch, serial_below, alphabet, block):
    monkeypatch.setattr(E, "_SERIAL_LANES", serial_below)
    rng = np.random.default_rng(block)
    sym = rng.choice(alphabet, size=5000, p=rng.dirichlet(np.full(alphabet, 0.3)))
    s = E.huffman_encode(sym, alphabet, block_size=block)
    out = E.huffman_decode(s)
    assert out.dtype == (np.uint8 if alphabet <= 256 else np.uint16)
    assert np.array_equal(out, sym)


def test_few_lanes_decode_fast():
    # one lane of 65,536 one-bit symbols: 65,536 numpy steps (about a second) before the
    # serial decoder; well under 0.3 s now even on a busy machine
    sym = np.random.default_rng(1).integers(0, 2, 65536)
    s = E.huffman_encode(sym, 2, block_size=65536)
    assert s.n_blocks == 1
    t0 = time.process_time()
    assert np.array_equal(E.huffman_decode(s), sym)
    assert time.process_time() - t0 < 0.3


def test_encode_rejects_bad_input():
    with pytest.raises(ValueError, match="alphabet"):
        E.huffman_encode([0, 5], 5)
    with pytest.raises(ValueError, match="non-negative"):
        E.huffman_encode([0, -1])
    with pytest.raises(ValueError, match="integers"):
        E.huffman_encode([0.5])
    with pytest.raises(ValueError, match="alphabet"):
        E.huffman_encode([70000])
    with pytest.raises(ValueError, match="code length 0"):
        E.huffman_encode([0, 1], 2, code_lengths=[1, 0])
    with pytest.raises(ValueError, match="complete prefix code"):
        E.huffman_encode([0, 1], 3, code_lengths=[2, 2, 2])
    with pytest.raises(ValueError, match="complete prefix code"):
        E.huffman_encode([0, 1], 2, code_lengths=[1, 1 + 1])
    shared = E.huffman_encode([0, 1, 1], 3, code_lengths=[2, 2, 1])  # unused symbol 2
    assert E.huffman_decode(shared).tolist() == [0, 1, 1]
    with pytest.raises(ValueError, match="block_size"):
        E.huffman_encode([0, 1], block_size=0)


def corrupt(stream, **changes):
    fields = {
        f: getattr(stream, f)
        for f in ("n_symbols", "code_lengths", "block_size", "block_starts", "n_bits", "payload")
    }
    fields.update(changes)
    return E.HuffmanStream(**fields)


@pytest.mark.parametrize("serial_below", [0, 10**9], ids=["lock-step", "serial"])
def test_decode_rejects_inconsistent_streams(monkeypatch, serial_below):
    monkeypatch.setattr(E, "_SERIAL_LANES", serial_below)
    rng = np.random.default_rng(3)
    sym = rng.choice(8, size=5000, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.03, 0.01, 0.01])
    s = E.huffman_encode(sym, 8, block_size=100)
    bad = [
        {"payload": s.payload[:-1]},
        {"n_bits": s.n_bits + 1},
        {"n_symbols": s.n_symbols * 100},
        {"code_lengths": np.array([1, 1, 1, 3, 4, 5, 6, 6], np.uint8)},  # over-subscribed
        {"code_lengths": np.array([2, 2, 3, 3, 4, 5, 6, 7], np.uint8)},  # incomplete
        {"code_lengths": np.array([17] * 8, np.uint8)},
        {"block_starts": s.block_starts[:-1]},
        {"block_starts": s.block_starts + 1},
        {"block_starts": np.where(np.arange(s.n_blocks) == 3, s.block_starts + 1, s.block_starts)},
        {"block_size": 0},
        {"block_size": E.MAX_BLOCK_SIZE + 1},
        {"payload": bytes(len(s.payload))},
        {"payload": s.payload[:-1] + bytes([s.payload[-1] | 1]) if s.n_bits % 8 else b"\x00"},
    ]
    for change in bad:
        with pytest.raises(FormatError):
            E.huffman_decode(corrupt(s, **change))
    # a one-symbol code must come with zero bits
    one = E.huffman_encode([2] * 9, 3)
    with pytest.raises(FormatError, match="one-symbol"):
        E.huffman_decode(corrupt(one, payload=b"\x80\x00"))


# -- fixed width ------------------------------------------------------------------------------


def test_pack_fixed_hand_worked():
    assert E.pack_fixed([1, 0, 1, 1], 1) == bytes([0b10110000])
    assert E.pack_fixed([5, 3], 3) == bytes([0b10101100])
    assert E.pack_fixed([0xABC, 0x123], 12) == bytes([0xAB, 0xC1, 0x23])
    assert E.pack_fixed([1, 2], 8) == b"\x01\x02"
    assert E.pack_fixed([0x1234], 16) == b"\x12\x34"
    assert E.pack_fixed([], 5) == b""


@FAST
@given(width=st.integers(1, 16), n=st.integers(0, 2000), seed=st.integers(0, 2**32 - 1))
def test_fixed_round_trip(width, n, seed):
    sym = np.random.default_rng(seed).integers(0, 1 << width, size=n)
    payload = E.pack_fixed(sym, width)
    assert len(payload) == (n * width + 7) // 8
    assert np.array_equal(E.unpack_fixed(payload, width, n), sym)


def test_fixed_errors():
    with pytest.raises(ValueError, match="alphabet"):
        E.pack_fixed([4], 2)
    with pytest.raises(ValueError, match="width"):
        E.pack_fixed([1], 17)
    with pytest.raises(FormatError, match="payload"):
        E.unpack_fixed(b"\x00", 3, 5)
    with pytest.raises(FormatError, match="padding"):
        E.unpack_fixed(b"\x01", 3, 2)
    assert E.fixed_width(1) == 1 and E.fixed_width(2) == 1 and E.fixed_width(3) == 2
    assert E.fixed_width(256) == 8 and E.fixed_width(257) == 9 and E.fixed_width(65536) == 16
