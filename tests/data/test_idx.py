"""IDX reading and writing: round trips, the exact byte layout, and every kind of bad file."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from netsqueeze import FormatError
from netsqueeze.data.idx import is_gzip, read_idx, write_idx

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


def idx_bytes(code: int, dims: tuple[int, ...], data: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + data


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip_images_and_labels(tmp_path, gz):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    suffix = ".gz" if gz else ""
    pi = write_idx(tmp_path / f"images{suffix}", images)
    pl = write_idx(tmp_path / f"labels{suffix}", labels)
    assert is_gzip(pi) is gz and is_gzip(pl) is gz
    for path, want in ((pi, images), (pl, labels)):
        got = read_idx(path)
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.writeable and got.flags.c_contiguous


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gz", [True, False])
def test_round_trip_other_dtypes(tmp_path, dtype, gz):
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    a = np.array([[info.min, -1 if info.min < 0 else 0, 1], [info.max, 7, 0]], dtype=dtype)
    got = read_idx(write_idx(tmp_path / "a.idx", a, compress=gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


@settings(max_examples=60, deadline=None)
@given(
    a=hnp.arrays(
        dtype=st.sampled_from(DTYPES),
        shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
        elements={"allow_nan": False},
    ),
    gz=st.booleans(),
)
def test_round_trip_any_array(tmp_path_factory, a, gz):
    path = tmp_path_factory.mktemp("idx") / "a"
    got = read_idx(write_idx(path, a, compress=gz))
    assert got.shape == a.shape and got.dtype == a.dtype
    np.testing.assert_array_equal(got, a)


def test_layout_is_the_idx_format_byte_for_byte(tmp_path):
    a = np.array([[1, 2, 3], [4, 5, 255]], dtype=np.uint8)
    raw = write_idx(tmp_path / "a", a).read_bytes()
    assert raw == bytes.fromhex("00000802 00000002 00000003 010203 0405ff")
    b = np.array([1, -2], dtype=np.int16)
    raw = write_idx(tmp_path / "b", b).read_bytes()
    assert raw == bytes.fromhex("00000b01 00000002 0001 fffe")  # big-endian values
    c = np.array([1.5], dtype=np.float32)
    assert write_idx(tmp_path / "c", c).read_bytes() == bytes.fromhex("00000d01 00000001 3fc00000")


def test_compression_follows_the_name_unless_told(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    assert is_gzip(write_idx(tmp_path / "a.gz", a))
    assert not is_gzip(write_idx(tmp_path / "a", a))
    assert not is_gzip(write_idx(tmp_path / "b.gz", a, compress=False))
    assert is_gzip(write_idx(tmp_path / "b", a, compress=True))


def test_compression_is_detected_by_content_not_name(tmp_path):
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    gz_named_raw = write_idx(tmp_path / "x-idx3-ubyte", a, compress=True)
    raw_named_gz = write_idx(tmp_path / "x-idx3-ubyte.gz", a, compress=False)
    np.testing.assert_array_equal(read_idx(gz_named_raw), a)
    np.testing.assert_array_equal(read_idx(raw_named_gz), a)


def test_gzip_output_is_deterministic(tmp_path):
    a = np.arange(1000, dtype=np.int32)
    first = write_idx(tmp_path / "1.gz", a).read_bytes()
    assert first == write_idx(tmp_path / "2.gz", a).read_bytes()


def test_reads_gzip_written_by_other_tools(tmp_path):
    data = idx_bytes(0x08, (2, 2), b"\x01\x02\x03\x04")
    path = tmp_path / "f.gz"
    path.write_bytes(gzip.compress(data, compresslevel=9))
    np.testing.assert_array_equal(read_idx(path), [[1, 2], [3, 4]])


def test_write_rejects_what_idx_cannot_hold(tmp_path):
    for bad in (np.arange(3, dtype=np.int64), np.array([True]), np.arange(3, dtype=np.uint16)):
        with pytest.raises(ValueError, match="IDX cannot store dtype"):
            write_idx(tmp_path / "bad", bad)
    with pytest.raises(ValueError, match="1 to 255 dimensions"):
        write_idx(tmp_path / "bad", np.uint8(3))
    assert list(tmp_path.iterdir()) == []  # nothing written, no temporary left


def test_write_replaces_atomically_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.gz"
    write_idx(path, np.zeros(5, np.uint8))
    write_idx(path, np.ones(3, np.uint8))
    np.testing.assert_array_equal(read_idx(path), [1, 1, 1])
    assert [p.name for p in tmp_path.iterdir()] == ["a.gz"]


def test_missing_file_raises_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------- bad files

GOOD = idx_bytes(0x08, (2, 3), bytes(range(6)))


def _check(path, *needles):
    with pytest.raises(FormatError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message
    assert "delete the file" in message
    for needle in needles:
        assert needle in message, message
    return message


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (b"", ["too short", "0 bytes"]),
        (b"\x00\x00", ["too short"]),
        (b"\x01\x02\x08\x01" + GOOD[4:], ["not an IDX file", "01 02 08 01"]),
        (b"hello world, not idx", ["not an IDX file"]),
        (idx_bytes(0x07, (2,), b"\x00\x00"), ["unknown IDX data type code 0x07"]),
        (idx_bytes(0x0A, (2,), b"\x00\x00"), ["unknown IDX data type code 0x0A"]),
        (b"\x00\x00\x08\x00", ["0 dimensions"]),
        (GOOD[:9], ["truncated inside its header"]),
        (GOOD[:-1], ["truncated", "2x3", "6 bytes", "only 5"]),
        (GOOD[:12], ["truncated", "only 0"]),
        (GOOD + b"\x00", ["1 unexpected trailing bytes"]),
        (GOOD + b"garbage!" * 100, ["800 unexpected trailing bytes"]),
        (idx_bytes(0x0C, (3,), b"\x00" * 11), ["truncated", "int32", "12 bytes"]),
        (idx_bytes(0x08, (0xFFFFFFFF, 0xFFFFFFFF), b""), ["implausibly large"]),
    ],
)
def test_bad_content_raises_format_error(tmp_path, gz, content, needles):
    path = tmp_path / ("bad.gz" if gz else "bad")
    path.write_bytes(gzip.compress(content) if gz else content)
    _check(path, *needles)


def test_truncated_gzip(tmp_path):
    pixels = np.arange(78400, dtype=np.uint8).tobytes()
    packed = gzip.compress(idx_bytes(0x08, (100, 28, 28), pixels))
    path = tmp_path / "cut.gz"
    for cut in (len(packed) // 2, len(packed) - 4, 3):
        path.write_bytes(packed[:cut])
        _check(path, "gzip")


def test_corrupt_gzip_stream(tmp_path):
    payload = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    packed = bytearray(gzip.compress(idx_bytes(0x08, (5000,), payload)))
    packed[len(packed) // 2] ^= 0xFF
    packed[len(packed) // 2 + 1] ^= 0x55
    path = tmp_path / "corrupt.gz"
    path.write_bytes(bytes(packed))
    _check(path, "gzip")


def test_gzip_with_bad_checksum(tmp_path):
    packed = bytearray(gzip.compress(GOOD))
    packed[-8] ^= 0xFF  # the CRC32 in the trailer
    path = tmp_path / "crc.gz"
    path.write_bytes(bytes(packed))
    _check(path, "gzip")


def test_gzip_with_trailing_garbage(tmp_path):
    path = tmp_path / "tail.gz"
    path.write_bytes(gzip.compress(GOOD) + b"this is not gzip")
    _check(path)


def test_bad_file_never_leaks_a_low_level_exception(tmp_path):
    """Random bytes behind a valid-looking start: only FormatError, whatever they are."""
    rng = np.random.default_rng(5)
    path = tmp_path / "noise"
    for i in range(200):
        body = rng.integers(0, 256, int(rng.integers(0, 64)), dtype=np.uint8).tobytes()
        head = [b"\x00\x00", b"\x1f\x8b", b""][i % 3]
        path.write_bytes(head + body)
        try:
            read_idx(path)
        except FormatError as e:
            assert str(path) in str(e)
