"""Tests of netsqueeze.core.sparse: relative gaps with fillers, the paper's counts, CSR."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netsqueeze import FormatError
from netsqueeze.core import sparse as S

FAST = settings(
    max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)


def test_hand_worked_two_bit_gaps():
    # M = 3. positions 0, 2, 12 in 16 elements:
    # d = 1 -> [1]; d = 2 -> [2]; d = 10 -> 3 fillers (9 positions) then [1];
    # after 12, 3 positions remain -> one trailing filler (cursor ends at 15)
    syms = S.gap_symbols([0, 2, 12], gap_bits=2, size=16)
    assert syms.tolist() == [1, 2, 0, 0, 0, 1, 0]
    assert S.gap_positions(syms, gap_bits=2, size=16).tolist() == [0, 2, 12]
    c = S.gap_counts([0, 2, 12], gap_bits=2, size=16)
    assert c == {
        "n_nonzero": 3,
        "n_fillers": 4,
        "n_trailing_fillers": 1,
        "n_symbols": 7,
        "bits": 14,
        "max_step": 3,
    }


def test_hand_worked_one_bit_gaps():
    # M = 1: symbol 1 = "the next position holds a weight", 0 = "skip one position"
    syms = S.gap_symbols([0, 3], gap_bits=1, size=5)
    assert syms.tolist() == [1, 0, 0, 1, 0]
    assert S.gap_positions(syms, gap_bits=1, size=5).tolist() == [0, 3]


def test_gap_exactly_max_step_needs_no_filler():
    # M = 7 for 3 bits: d = 7 is one symbol, d = 8 needs a filler
    assert S.gap_symbols([6], gap_bits=3).tolist() == [7]
    assert S.gap_symbols([7], gap_bits=3).tolist() == [0, 1]
    assert S.gap_symbols([13, 14], gap_bits=3).tolist() == [0, 7, 1]


def test_paper_counts_hand_worked():
    # 3-bit field spans 1..8 (the paper's Fig. 2): d = 1, 8, 9, 17 -> 0, 0, 1, 2 fillers
    pos = np.cumsum([1, 8, 9, 17]) - 1
    c = S.paper_gap_counts(pos, gap_bits=3, index_bits=5)
    assert c["n_fillers"] == 3
    assert c["n_entries"] == 7
    assert c["bits"] == 7 * (3 + 5)
    # our variant spans 1..7 but fillers carry no weight
    ours = S.gap_counts(pos, gap_bits=3)
    assert ours["n_fillers"] == 0 + 1 + 1 + 2
    assert ours["n_symbols"] * 3 + 4 * 5 < c["bits"]


def test_empty_all_zero_and_dense():
    assert S.gap_symbols([], gap_bits=4).tolist() == []
    assert S.gap_symbols([], gap_bits=4, size=0).tolist() == []
    # all-zero tensor of 40: only trailing fillers, until fewer than 15 positions remain
    z = S.gap_symbols([], gap_bits=4, size=40)
    assert z.tolist() == [0, 0]
    assert S.gap_positions(z, gap_bits=4, size=40).tolist() == []
    dense = S.gap_symbols(np.arange(10), gap_bits=2, size=10)
    assert dense.tolist() == [1] * 10
    assert S.gap_positions([], gap_bits=5, size=0).tolist() == []


def test_huge_gap():
    for b in (1, 8, 16):
        pos = np.array([0, 1_000_000, 1_000_001])
        syms = S.gap_symbols(pos, gap_bits=b, size=2_000_000)
        m = (1 << b) - 1
        assert syms.size == S.gap_counts(pos, gap_bits=b, size=2_000_000)["n_symbols"]
        assert syms.size == 3 + (999_999 // m) + (999_998 // m)
        assert S.gap_positions(syms, gap_bits=b, size=2_000_000).tolist() == pos.tolist()


@FAST
@given(
    shape=st.lists(st.integers(0, 40), min_size=0, max_size=3),
    density=st.floats(0, 1),
    gap_bits=st.integers(1, 16),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_random_masks(shape, density, gap_bits, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random(shape) < density
    pos = S.positions_from_mask(mask)
    size = mask.size
    syms = S.gap_symbols(pos, gap_bits=gap_bits, size=size)
    assert syms.dtype == (np.uint8 if gap_bits <= 8 else np.uint16)
    assert np.count_nonzero(syms) == pos.size
    counts = S.gap_counts(pos, gap_bits=gap_bits, size=size)
    assert counts["n_symbols"] == syms.size
    back = S.gap_positions(syms, gap_bits=gap_bits, size=size)
    assert np.array_equal(back, pos)
    # without a size: no trailing fillers, still a round trip
    assert np.array_equal(
        S.gap_positions(S.gap_symbols(pos, gap_bits=gap_bits), gap_bits=gap_bits), pos
    )
    # CSR
    indptr, idx = S.csr_from_positions(pos, mask.shape)
    assert np.array_equal(S.csr_to_positions(indptr, idx, mask.shape), pos)


def test_gap_positions_rejects_inconsistent_streams():
    with pytest.raises(FormatError, match="outside"):
        S.gap_positions(np.array([1, 9]), gap_bits=3)
    with pytest.raises(FormatError, match="reaches position"):
        S.gap_positions([1, 7], gap_bits=3, size=5)
    with pytest.raises(FormatError, match="trailing fillers missing"):
        S.gap_positions([1], gap_bits=3, size=100)


def test_argument_errors():
    with pytest.raises(ValueError, match="gap_bits"):
        S.gap_symbols([1], gap_bits=0)
    with pytest.raises(ValueError, match="gap_bits"):
        S.gap_symbols([1], gap_bits=17)
    with pytest.raises(TypeError, match="gap_bits"):
        S.gap_symbols([1], gap_bits=2.5)
    with pytest.raises(ValueError, match="strictly increasing"):
        S.gap_symbols([3, 3], gap_bits=2)
    with pytest.raises(ValueError, match="non-negative"):
        S.gap_symbols([-1], gap_bits=2)
    with pytest.raises(ValueError, match="outside a tensor"):
        S.gap_symbols([5], gap_bits=2, size=5)


def test_csr_hand_worked():
    mask = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 1]])
    pos = S.positions_from_mask(mask)
    indptr, idx = S.csr_from_positions(pos, mask.shape)
    assert indptr.tolist() == [0, 1, 1, 3]
    assert idx.tolist() == [1, 0, 3]
    # (3 + 1) row pointers of bits(3) = 2 bits; 3 columns of bits(3) = 2 bits
    assert S.csr_bits(mask.shape, 3) == 4 * 2 + 3 * 2
    # conv weights: rows = out channels, columns = everything else
    assert S.csr_bits((8, 3, 3, 3), 10) == 9 * 4 + 10 * 5
    assert S.csr_bits((), 1) == 2 * 1 + 1 * 1
    with pytest.raises(ValueError, match="nnz"):
        S.csr_bits((2, 2), 5)
