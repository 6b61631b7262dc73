"""A file written by the version-1 writer (tests/fixtures/v1.nsq) still decodes bit-exactly.

The fixture was written once, before later format versions existed; it must never be
regenerated. ``v1_expected.npz`` holds what it decoded to then.
"""

from pathlib import Path

import numpy as np

from netsqueeze.core.container import read_nsq

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def test_v1_fixture_decodes_bit_exactly():
    f = read_nsq(FIXTURES / "v1.nsq")
    assert f.version == 1
    assert f.header == {"arch": "fixture", "version_written": 1}
    got = f.arrays()
    with np.load(FIXTURES / "v1_expected.npz", allow_pickle=False) as exp:
        assert sorted(got) == sorted(exp.files)
        for name in exp.files:
            e = exp[name]
            assert got[name].dtype == e.dtype and got[name].shape == e.shape, name
            assert got[name].tobytes() == e.tobytes(), name
    # the fixture covers both codings and both position kinds
    codings = {(s.coding) for r in f.records for s in (r.gaps, r.indices) if s is not None}
    assert codings == {"fixed", "huffman"}
    assert {r.positions for r in f.records} == {"dense", "sparse"}
    assert {r.values for r in f.records} == {"raw", "codebook"}
