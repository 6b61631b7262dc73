"""The ``.nsq`` file: named numpy tensors, pruned, weight-shared and entropy coded.

A file holds a JSON header (architecture, arguments, free metadata) and one
:class:`TensorRecord` per tensor. Each record stores

* **positions**: ``dense`` (every element has a value) or ``sparse`` (relative gaps with
  fillers, :mod:`netsqueeze.core.sparse`, only the non-zero elements have a value);
* **values**: ``raw`` (the elements' bytes in the tensor's dtype) or ``codebook`` (sorted
  distinct values + one cluster index per stored value);
* every symbol stream (gaps, indices) coded ``fixed`` width, canonical ``huffman``
  (:mod:`netsqueeze.core.entropy`) or context-modelled ``rans`` (:mod:`netsqueeze.core.rans`,
  format version 2).

:func:`encode_tensor` picks the smallest combination, counting every byte that is written.
Decoding is exact: same dtype, shape and bits (zero means the all-zero bit pattern, so
``-0.0`` and NaN payloads survive), unless a narrower ``codebook_dtype`` was asked for.

The byte layout is specified in ``docs/FORMAT.md``. The reader never trusts a length: every
count is checked against the bytes that remain and against what the streams can produce
before anything is allocated, and every inconsistency raises :class:`~netsqueeze.FormatError`.
Valid files are bounded too: Huffman block sizes must be ones the writer chooses, decoding
time is linear in the symbols, and decoding a tensor is refused with
:class:`~netsqueeze.DecodeBudgetError` when it and the decoder's working memory would exceed
the decode budget.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from netsqueeze.core import entropy as _ent
from netsqueeze.core import rans as _rans
from netsqueeze.core import sparse as _sp
from netsqueeze.core.fileio import atomic_write_chunks
from netsqueeze.errors import DecodeBudgetError, FormatError

__all__ = [
    "DECODE_LIMIT_BYTES",
    "DECODE_LIMIT_RATIO",
    "FORMAT_VERSION",
    "MAGIC",
    "NSQFile",
    "StreamRecord",
    "TensorRecord",
    "decode_tensor",
    "default_decode_budget",
    "encode_stream",
    "encode_tensor",
    "information_floor_bits",
    "nsq_bytes",
    "paper_formula_bits",
    "prev_zero_context",
    "read_nsq",
    "write_nsq",
]

#: First 8 bytes of every ``.nsq`` file (PNG-style: catches text-mode and 7-bit transfers).
MAGIC = b"\x89NSQ\r\n\x1a\n"
#: The layout version this writer writes (2: adds the rANS stream coding).
FORMAT_VERSION = 2
#: Every version this reader reads.
READABLE_VERSIONS = (1, 2)
_END = b"NSQE"
_FIXED_HEAD = struct.Struct("<8sHHII")  # magic, version, flags, json length, record count
_TRAILER = struct.Struct("<4sI")  # end marker, CRC32 of everything before the CRC
MIN_FILE_SIZE = _FIXED_HEAD.size + _TRAILER.size

#: Default decode budget: a file (or a record decoded alone) may always decode to this many
#: bytes ...
DECODE_LIMIT_BYTES = 1 << 28
#: ... or to this many times its size, whichever is larger. Deep Compression reaches ~50x;
#: only trailing zeros and empty layers go further, so a larger claim from a small file is
#: refused unless the caller raises ``max_bytes``.
DECODE_LIMIT_RATIO = 256

_MAX_NDIM = 32
_MAX_NAME = 65535
_DTYPES = {
    1: "float32",
    2: "float16",
    3: "float64",
    4: "int8",
    5: "uint8",
    6: "int16",
    7: "uint16",
    8: "int32",
    9: "uint32",
    10: "int64",
    11: "uint64",
    12: "bool",
}
_DTYPE_CODES = {v: k for k, v in _DTYPES.items()}
_FLOATS = ("float16", "float32", "float64")
_CODINGS = {0: "fixed", 1: "huffman", 2: "rans"}
_CODING_CODES = {v: k for k, v in _CODINGS.items()}
_LEN_BITS = 5  # bits per stored Huffman code length (0..16)


# --------------------------------------------------------------------------------------------
# bit packing and bounded reading
# --------------------------------------------------------------------------------------------


def _uint_view(dtype: np.dtype) -> np.dtype:
    return np.dtype(f"u{np.dtype(dtype).itemsize}")


def _pack_uint(values: np.ndarray, width: int) -> bytes:
    """Pack small arrays of non-negative ints into ``width`` bits each (MSB first)."""
    if width == 0 or values.size == 0:
        return b""
    v = values.astype(np.uint64)
    shifts = np.arange(width - 1, -1, -1, dtype=np.uint64)
    bits = ((v[:, None] >> shifts[None, :]) & np.uint64(1)).astype(np.uint8)
    return np.packbits(bits.ravel()).tobytes()


def _unpack_uint(buf, width: int, n: int) -> np.ndarray:
    if width == 0 or n == 0:
        return np.zeros(n, np.int64)
    bits = np.unpackbits(np.frombuffer(buf, np.uint8))[: n * width].reshape(n, width)
    weights = np.left_shift(np.int64(1), np.arange(width - 1, -1, -1, dtype=np.int64))
    return bits.astype(np.int64) @ weights


def _nbytes_bits(bits: int) -> int:
    return (bits + 7) // 8


class _Cursor:
    """Bounded reader over a bytes buffer: every read is checked against what remains."""

    def __init__(self, data: memoryview, start: int, end: int, what: str):
        self.data = data
        self.pos = start
        self.end = end
        self.what = what

    @property
    def left(self) -> int:
        return self.end - self.pos

    def take(self, n: int, field: str) -> memoryview:
        if n < 0 or n > self.left:
            raise FormatError(
                f"{self.what}: {field} needs {n} bytes but only {self.left} remain "
                "(file truncated or a length field is corrupt)"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, field: str):
        s = struct.Struct("<" + fmt)
        return s.unpack(self.take(s.size, field))

    def u8(self, field: str) -> int:
        return self.unpack("B", field)[0]

    def u16(self, field: str) -> int:
        return self.unpack("H", field)[0]

    def u32(self, field: str) -> int:
        return self.unpack("I", field)[0]

    def u64(self, field: str) -> int:
        return self.unpack("Q", field)[0]


# --------------------------------------------------------------------------------------------
# streams
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class StreamRecord:
    """One coded symbol stream (gap symbols or cluster indices) as stored in a record.

    Attributes
    ----------
    coding : {"fixed", "huffman", "rans"}
    n_symbols : int
    alphabet_size : int
        Symbols are in ``[0, alphabet_size)``, ``1 <= alphabet_size <= 65536``.
    n_bits : int
        Payload length in bits.
    payload : bytes
        ``ceil(n_bits / 8)`` bytes, MSB first, zero padded.
    width : int
        Bits per symbol for ``fixed`` (``max(1, ceil(log2(alphabet_size)))``); 0 otherwise.
    code_lengths : ndarray of shape (alphabet_size,), uint8, or None
        Canonical Huffman code lengths (``huffman`` only).
    block_size : int
        Symbols per decoding lane (``huffman`` only).
    block_starts : ndarray of shape (n_blocks,), int64, or None
        Bit offset of every block (``huffman`` only).
    rans : RansStream or None
        Model, lane states and words (``rans`` only; ``payload`` is its states and words).
    """

    coding: str
    n_symbols: int
    alphabet_size: int
    n_bits: int
    payload: bytes
    width: int = 0
    code_lengths: np.ndarray | None = None
    block_size: int = 0
    block_starts: np.ndarray | None = None
    rans: _rans.RansStream | None = None

    @cached_property
    def _block_fields(self) -> tuple[int, int, np.ndarray]:
        """(base, width, deltas) of the block index: lengths of all blocks but the last."""
        starts = self.block_starts
        if starts is None or starts.size <= 1:
            return 0, 0, np.zeros(0, np.int64)
        lengths = np.diff(starts)
        base = int(lengths.min())
        deltas = lengths - base
        return base, int(deltas.max()).bit_length(), deltas

    @cached_property
    def _n_lengths(self) -> int:
        """Code lengths stored: up to the last non-zero one (at least 1)."""
        nz = np.flatnonzero(self.code_lengths)
        return int(nz[-1]) + 1 if nz.size else 1

    def header_bytes(self) -> bytes:
        """Everything of this stream but the payload, as written."""
        out = [
            struct.pack("<BQI", _CODING_CODES[self.coding], self.n_symbols, self.alphabet_size)
        ]
        if self.coding == "rans":
            out.append(self.rans.fields_bytes())
            return b"".join(out)
        if self.coding == "fixed":
            out.append(struct.pack("<B", self.width))
        else:
            nl = self._n_lengths
            out.append(struct.pack("<I", nl))
            out.append(_pack_uint(self.code_lengths[:nl], _LEN_BITS))
            base, width, deltas = self._block_fields
            out.append(struct.pack("<IQB", self.block_size, base, width))
            out.append(_pack_uint(deltas, width))
        out.append(struct.pack("<Q", self.n_bits))
        return b"".join(out)

    @cached_property
    def header_size(self) -> int:
        """Bytes of :meth:`header_bytes`."""
        if self.coding == "fixed":
            return 22
        if self.coding == "rans":
            return 13 + self.rans.model_bytes + 12
        _, width, deltas = self._block_fields
        return (
            13
            + 4
            + _nbytes_bits(self._n_lengths * _LEN_BITS)
            + 13
            + _nbytes_bits(deltas.size * width)
            + 8
        )

    @property
    def nbytes(self) -> int:
        """Bytes this stream occupies in the file (descriptor + payload)."""
        return self.header_size + len(self.payload)

    @property
    def index_bits(self) -> int:
        """Bits spent on the block offsets (0 for fixed-width streams; the lane states of an
        rANS stream)."""
        if self.coding == "rans":
            return 32 * self.rans.n_lanes
        if self.coding == "fixed":
            return 0
        _, width, deltas = self._block_fields
        return 13 * 8 + deltas.size * width

    def to_bytes(self) -> bytes:
        """Descriptor followed by the payload, as written in the file."""
        return self.header_bytes() + self.payload

    def decode(self, ext=None) -> np.ndarray:
        """The symbols.

        Parameters
        ----------
        ext : ndarray of shape (n_symbols,), optional
            External contexts of an rANS stream that uses them (see :func:`prev_zero_context`).

        Returns
        -------
        ndarray of shape (n_symbols,), uint8 or uint16

        Raises
        ------
        FormatError
            When the payload is inconsistent with the descriptor.
        """
        if self.coding == "fixed":
            out = _ent.unpack_fixed(self.payload, self.width, self.n_symbols)
            if out.size and int(out.max()) >= self.alphabet_size:
                raise FormatError(
                    f"fixed-width stream: symbol {int(out.max())} is outside the alphabet of "
                    f"{self.alphabet_size}"
                )
            return out
        if self.coding == "rans":
            return _rans.rans_decode(self.rans, ext=ext)
        stream = _ent.HuffmanStream(
            self.n_symbols,
            self.code_lengths,
            self.block_size,
            self.block_starts,
            self.n_bits,
            self.payload,
        )
        return _ent.huffman_decode(stream)


def _fixed_stream(s: np.ndarray, a: int) -> StreamRecord:
    w = _ent.fixed_width(a)
    return StreamRecord("fixed", int(s.size), a, int(s.size) * w, _ent.pack_fixed(s, w), width=w)


def _huffman_stream(s: np.ndarray, a: int, lengths: np.ndarray) -> StreamRecord:
    h = _ent.huffman_encode(s, a, code_lengths=lengths)
    return StreamRecord(
        "huffman",
        h.n_symbols,
        a,
        h.n_bits,
        h.payload,
        code_lengths=h.code_lengths,
        block_size=h.block_size,
        block_starts=h.block_starts,
    )


def _check_entropy(entropy: str) -> str:
    if entropy not in ("auto", "huffman", "fixed", "rans", "classic"):
        raise ValueError(
            f"entropy must be 'auto', 'huffman', 'fixed', 'rans' or 'classic', got {entropy!r}"
        )
    return entropy


def prev_zero_context(positions) -> np.ndarray:
    """External context of the cluster indices of a sparse tensor: 1 where the element before
    a stored value (in C order) is zero (or absent), 0 where it is stored too.

    Parameters
    ----------
    positions : ndarray of shape (k,), increasing
        Flat positions of the stored values.

    Returns
    -------
    ndarray of shape (k,), int64
    """
    pos = np.asarray(positions, np.int64).reshape(-1)
    out = np.ones(pos.size, np.int64)
    if pos.size > 1:
        out[1:] = np.diff(pos) != 1
    return out


def _rans_stream(s: np.ndarray, a: int, ext, n_ext: int) -> StreamRecord | None:
    r = _rans.choose_rans(s, a, ext=ext, n_ext=n_ext)
    if r is None:
        return None
    payload = r.payload()
    return StreamRecord("rans", r.n_symbols, a, 8 * len(payload), payload, rans=r)


def _classic_least(s: np.ndarray, a: int) -> int:
    """A lower bound of ``encode_stream(s, a, entropy="classic").nbytes`` from the counts:
    the fixed-width size, or the Huffman payload with the fixed fields and code-length table
    (block offsets left out), whichever is smaller."""
    counts = _ent.symbol_counts(s, int(a))
    lengths = _ent.huffman_code_lengths(counts)
    nl = int(np.flatnonzero(lengths)[-1]) + 1
    least = (_nbytes_bits(_ent.huffman_payload_bits(counts, lengths)) + 38
             + _nbytes_bits(nl * _LEN_BITS))
    return min(22 + _nbytes_bits(s.size * _ent.fixed_width(int(a))), least)


def encode_stream(
    symbols, alphabet_size: int, *, entropy: str = "auto", ext=None, n_ext: int = 1
) -> StreamRecord:
    """Code a symbol stream fixed-width, canonical Huffman or rANS, whichever is smallest.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
        Values in ``[0, alphabet_size)``.
    alphabet_size : int, 1..65536
    entropy : {"auto", "huffman", "fixed", "rans", "classic"}, default "auto"
        ``auto`` compares the written sizes (code-length table, block offsets, rANS model and
        lane states included); ``classic`` does so without rANS (files readable by format
        version 1 readers); ``rans`` takes rANS when it applies (else as ``classic``).
    ext : ndarray of shape (n,), optional
        External context of every symbol in ``[0, n_ext)``, for rANS (the decoder must be able
        to compute it before this stream: :func:`prev_zero_context` for the index stream of a
        sparse tensor).
    n_ext : int, default 1

    Returns
    -------
    StreamRecord
    """
    _check_entropy(entropy)
    if entropy in ("auto", "rans"):
        s = np.asarray(symbols).reshape(-1)
        r = _rans_stream(s, int(alphabet_size), ext, n_ext) if s.size else None
        # the fixed/Huffman stream is coded only when it could be the smaller one
        if r is not None and (entropy == "rans" or r.nbytes < _classic_least(s, alphabet_size)):
            return r
        base = encode_stream(s, alphabet_size, entropy="classic")
        if r is not None and r.nbytes < base.nbytes:
            return r
        return base
    if entropy == "classic":
        entropy = "auto"
    s = np.asarray(symbols).reshape(-1)
    a = int(alphabet_size)
    counts = _ent.symbol_counts(s, a)
    if s.dtype != (np.uint8 if a <= 256 else np.uint16):
        s = s.astype(np.uint8 if a <= 256 else np.uint16)
    if entropy == "fixed" or s.size == 0:
        return _fixed_stream(s, a)
    lengths = _ent.huffman_code_lengths(counts)
    fixed_size = 22 + _nbytes_bits(s.size * _ent.fixed_width(a))
    if entropy == "auto":
        # smallest possible Huffman stream: payload + fixed fields + code-length table
        nl = int(np.flatnonzero(lengths)[-1]) + 1
        least = _nbytes_bits(_ent.huffman_payload_bits(counts, lengths)) + 38
        if least + _nbytes_bits(nl * _LEN_BITS) >= fixed_size:
            return _fixed_stream(s, a)
    h = _huffman_stream(s, a, lengths)
    if entropy == "auto" and fixed_size <= h.nbytes:
        return _fixed_stream(s, a)
    return h


def _read_stream(
    cur: _Cursor, what: str, alphabet: int, max_ext: int = 1, version: int = FORMAT_VERSION
) -> StreamRecord:
    coding_code = cur.u8(f"{what} coding")
    if coding_code not in _CODINGS or (coding_code == 2 and version < 2):
        raise FormatError(f"{cur.what}: {what} has unknown coding {coding_code}")
    coding = _CODINGS[coding_code]
    n = cur.u64(f"{what} symbol count")
    a = cur.u32(f"{what} alphabet size")
    if a != alphabet:
        raise FormatError(f"{cur.what}: {what} alphabet is {a}, expected {alphabet}")
    if coding == "rans":
        r = _rans.read_fields(cur, what, n, a, max_ext)
        payload = r.payload()
        return StreamRecord("rans", n, a, 8 * len(payload), payload, rans=r)
    # every symbol costs at least one bit: a count beyond the remaining bits is a lie
    if n > 8 * cur.left:
        raise FormatError(f"{cur.what}: {what} claims {n} symbols but only {cur.left} bytes remain")
    if coding == "fixed":
        width = cur.u8(f"{what} width")
        if width != _ent.fixed_width(a):
            raise FormatError(
                f"{cur.what}: {what} width {width} is not {_ent.fixed_width(a)} bits for an "
                f"alphabet of {a}"
            )
        n_bits = cur.u64(f"{what} bit count")
        if n_bits != n * width:
            raise FormatError(f"{cur.what}: {what} has {n_bits} bits, expected {n} x {width}")
        payload = bytes(cur.take(_nbytes_bits(n_bits), f"{what} payload"))
        return StreamRecord("fixed", n, a, n_bits, payload, width=width)
    nl = cur.u32(f"{what} code-length count")
    if not 1 <= nl <= a:
        raise FormatError(f"{cur.what}: {what} stores {nl} code lengths for an alphabet of {a}")
    raw = cur.take(_nbytes_bits(nl * _LEN_BITS), f"{what} code lengths")
    lengths = np.zeros(a, np.uint8)
    lengths[:nl] = _unpack_uint(raw, _LEN_BITS, nl)
    if int(lengths.max()) > _ent.MAX_CODE_LENGTH:
        raise FormatError(f"{cur.what}: {what} has a code longer than {_ent.MAX_CODE_LENGTH} bits")
    used = lengths[lengths > 0]
    if used.size == 0:
        raise FormatError(f"{cur.what}: {what} has no symbol with a code")
    kraft = int((np.int64(1) << (_ent.MAX_CODE_LENGTH - used.astype(np.int64))).sum())
    full = 1 << _ent.MAX_CODE_LENGTH
    if kraft > full or (kraft < full and not (used.size == 1 and used[0] == 1)):
        raise FormatError(f"{cur.what}: {what} code lengths are not a complete prefix code")
    block_size, base, width = cur.unpack("IQB", f"{what} block index")
    lo, hi = _ent.block_size_range(n)
    if not lo <= block_size <= hi:
        # other sizes decode too, but a tiny one costs a block offset and a decoding lane
        # per symbol or two: refused, as no writer of this format produces them
        raise FormatError(
            f"{cur.what}: {what} block size {block_size} is outside {lo}..{hi}, the block "
            f"sizes written for {n} symbols"
        )
    if width > 32:
        raise FormatError(f"{cur.what}: {what} block offsets are {width} bits wide (max 32)")
    n_blocks = -(-n // block_size)
    raw = cur.take(_nbytes_bits(max(0, n_blocks - 1) * width), f"{what} block offsets")
    min_len, max_len = int(used.min()), int(used.max())
    if n_blocks > 1 and not block_size * min_len <= base <= block_size * max_len:
        raise FormatError(f"{cur.what}: {what} block offsets are inconsistent")
    deltas = _unpack_uint(raw, width, max(0, n_blocks - 1))
    starts = np.zeros(n_blocks, np.int64)
    if n_blocks > 1:
        np.cumsum(deltas + base, out=starts[1:])
    n_bits = cur.u64(f"{what} bit count")
    if not n * min_len <= n_bits <= n * max_len:
        raise FormatError(
            f"{cur.what}: {what} has {n_bits} bits for {n} symbols of {min_len}..{max_len} bits"
        )
    if n_blocks and int(starts[-1]) > n_bits:
        raise FormatError(f"{cur.what}: {what} block offsets point past the payload")
    payload = bytes(cur.take(_nbytes_bits(n_bits), f"{what} payload"))
    return StreamRecord(
        "huffman",
        n,
        a,
        n_bits,
        payload,
        code_lengths=lengths,
        block_size=block_size,
        block_starts=starts,
    )


# --------------------------------------------------------------------------------------------
# tensor records
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class TensorRecord:
    """One tensor of an ``.nsq`` file, as stored.

    Attributes
    ----------
    name : str
    shape : tuple of int
    dtype : numpy.dtype
        dtype of the decoded tensor (native byte order).
    gap_bits : int or None
        ``None``: dense positions (a value for every element). Otherwise the width of the
        relative-gap field: only non-zero elements have a value.
    codebook : ndarray of shape (codebook_size,), or None
        ``None``: raw values. Otherwise the distinct values (sorted by value; stored in
        ``codebook.dtype``) and ``indices`` picks one per stored value.
    gaps : StreamRecord or None
        Gap symbols (sparse positions only).
    indices : StreamRecord or None
        Cluster index of each stored value (codebook only).
    raw : bytes or None
        Stored values, little-endian in ``dtype`` (raw values only).
    """

    name: str
    shape: tuple
    dtype: np.dtype
    gap_bits: int | None
    codebook: np.ndarray | None
    gaps: StreamRecord | None
    indices: StreamRecord | None
    raw: bytes | None

    # -- derived ---------------------------------------------------------------------------
    @property
    def positions(self) -> str:
        """``"dense"`` or ``"sparse"``."""
        return "dense" if self.gap_bits is None else "sparse"

    @property
    def values(self) -> str:
        """``"raw"`` or ``"codebook"``."""
        return "raw" if self.codebook is None else "codebook"

    @property
    def numel(self) -> int:
        """Number of elements of the tensor."""
        return math.prod(self.shape)

    @property
    def n_values(self) -> int:
        """Number of stored values (weights): all elements if dense, the non-zeros if sparse."""
        if self.indices is not None:
            return self.indices.n_symbols
        return len(self.raw) // self.dtype.itemsize

    def body_bytes(self) -> bytes:
        """The record body as written (without its length prefix and CRC)."""
        name = self.name.encode("utf-8")
        out = [struct.pack("<H", len(name)), name]
        out.append(struct.pack("<BB", _DTYPE_CODES[self.dtype.name], len(self.shape)))
        out.append(struct.pack(f"<{len(self.shape)}Q", *self.shape))
        out.append(struct.pack("<BB", 0 if self.gap_bits is None else 1, self.gap_bits or 0))
        if self.codebook is None:
            out.append(struct.pack("<BBI", 0, 0, 0))
        else:
            cb = self.codebook
            out.append(struct.pack("<BBI", 1, _DTYPE_CODES[cb.dtype.name], cb.size))
            out.append(cb.astype(cb.dtype.newbyteorder("<")).tobytes())
        if self.gaps is not None:
            out.append(self.gaps.to_bytes())
        if self.indices is not None:
            out.append(self.indices.to_bytes())
        if self.raw is not None:
            out.append(struct.pack("<Q", len(self.raw)))
            out.append(self.raw)
        return b"".join(out)

    def to_bytes(self) -> bytes:
        """Length prefix + body + CRC32 of the body, as written in the file."""
        body = self.body_bytes()
        return struct.pack("<I", len(body)) + body + struct.pack("<I", zlib.crc32(body))

    @cached_property
    def nbytes(self) -> int:
        """Bytes this record occupies in the file (length prefix and CRC included)."""
        n = 4 + 2 + len(self.name.encode("utf-8")) + 2 + 8 * len(self.shape) + 2 + 6 + 4
        if self.codebook is not None:
            n += self.codebook.nbytes
        for s in (self.gaps, self.indices):
            if s is not None:
                n += s.nbytes
        if self.raw is not None:
            n += 8 + len(self.raw)
        return n

    @cached_property
    def _symbols(self) -> dict:
        out = {}
        if self.gaps is not None:
            out["gaps"] = self.gaps.decode()
        if self.indices is not None:
            out["indices"] = self.indices.decode(ext=self._index_context(out.get("gaps")))
        return out

    @property
    def decode_bytes(self) -> int:
        """Memory that decoding this record needs, charged against the decode budget.

        The decoded tensor (``numel * itemsize``) plus an upper estimate of the decoder's
        working memory: decoded symbols, stored values, positions, lookup tables and ~64 bytes
        of bookkeeping per block of a Huffman stream.
        """
        return self.numel * self.dtype.itemsize + _work_bytes(self, self.n_values)

    def _index_context(self, gaps) -> np.ndarray | None:
        """External contexts of an rANS index stream that uses them (sparse records only)."""
        st = self.indices
        if st is None or st.rans is None or st.rans.n_ext == 1 or gaps is None:
            return None
        pos = _sp.gap_positions(gaps, gap_bits=self.gap_bits, size=self.numel)
        if pos.size != st.n_symbols:
            raise FormatError(
                f"tensor '{self.name}': the gap stream places {pos.size} values but "
                f"{st.n_symbols} are stored"
            )
        return prev_zero_context(pos)

    def decode(self, *, max_bytes: int | None = None) -> np.ndarray:
        """Same as :func:`decode_tensor` (``decode_tensor(self, max_bytes=...)``)."""
        return decode_tensor(self, max_bytes=max_bytes)

    def stats(self) -> dict:
        """Size accounting of this record, from what is written (decodes the streams).

        Returns
        -------
        dict
            ``name``, ``shape``, ``dtype``, ``numel``, ``nonzeros`` (non-zero elements of the
            decoded tensor), ``stored_weights`` (values stored), ``density``
            (``nonzeros / numel``), ``positions``, ``gap_bits``, ``fillers`` (our filler
            symbols, trailing included), ``paper_fillers`` (the paper's count for the same
            gap width), ``values``, ``codebook_size``, ``codebook_dtype``, ``codebook_bytes``,
            ``raw_bytes``, ``streams`` ({``"gaps"``, ``"indices"``} -> stream dict, see below),
            ``index_bits_per_weight`` and ``gap_bits_per_weight`` (stream bits, descriptors
            included, per stored weight), ``record_bytes``, ``original_bytes``
            (``numel * itemsize``), ``compression_ratio``, ``bits_per_weight`` (record bits per
            stored weight), ``entropy_bound_bytes`` (streams at their entropy bound + codebook
            + raw values), ``paper_bits`` (:func:`paper_formula_bits`), ``floor_bytes`` (the
            information floor of what is stored, :func:`information_floor_bits`: positions
            ``log2 C(numel, nonzeros)`` + values ``nonzeros x H0`` of the non-zero values (raw
            values: as written) + the non-zero codebook entries), ``floor_positions_bits``,
            ``floor_values_bits``, ``floor_codebook_bits``, ``above_floor``
            (``record_bytes / floor_bytes - 1``; negative when contexts beat the floor).

            Stream dict: ``coding``, ``n_symbols``, ``alphabet_size``, ``payload_bytes``,
            ``descriptor_bytes``, ``total_bytes``, ``bits_per_symbol`` (total), ``index_bits``
            (block offsets), ``fixed_width``, ``fixed_bytes`` (size as fixed-width),
            ``huffman_bytes`` (size as Huffman: exact when written so, else payload exact +
            code-length table + estimated block index), ``huffman_saving``
            (``1 - huffman_bytes / fixed_bytes``), ``entropy_bits``, ``entropy_bytes``.

        Raises
        ------
        FormatError
            When a stream of the record is corrupt.
        """
        try:
            return self._stats()
        except FormatError as e:
            raise _prefixed(e, f"tensor {self.name!r}") from None
        except (ValueError, TypeError, IndexError, OverflowError, MemoryError, KeyError) as e:
            raise FormatError(f"tensor {self.name!r}: malformed record ({e})") from None

    def _stats(self) -> dict:
        syms = self._symbols
        streams = {}
        for key in ("gaps", "indices"):
            st = getattr(self, key)
            if st is not None:
                streams[key] = _stream_stats(st, syms[key])
        numel = self.numel
        item = self.dtype.itemsize
        nv = self.n_values
        # non-zero elements of the decoded tensor
        if self.codebook is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                cb_bits = self.codebook.astype(self.dtype).view(_uint_view(self.dtype))
            if syms["indices"].size and int(syms["indices"].max()) >= self.codebook.size:
                raise FormatError(f"tensor {self.name!r}: a cluster index is outside the codebook")
            counts = np.bincount(syms["indices"], minlength=self.codebook.size)
            nonzeros = int(counts[cb_bits != 0].sum())
            floor_vals = _ent.entropy_bits(counts[cb_bits != 0])
            floor_cb = int(np.count_nonzero(cb_bits)) * 8 * self.codebook.dtype.itemsize
        else:
            raw = np.frombuffer(self.raw, _uint_view(self.dtype).newbyteorder("<"))
            nonzeros = int(np.count_nonzero(raw))
            floor_vals = 8.0 * item * nonzeros
            floor_cb = 0
        fillers = 0
        paper_fillers = 0
        if self.gap_bits is not None:
            g = syms["gaps"]
            fillers = int(g.size - np.count_nonzero(g))
            pos = _sp.gap_positions(g, gap_bits=self.gap_bits)
            paper_fillers = _sp.paper_gap_counts(pos, gap_bits=self.gap_bits)["n_fillers"]
        cb_bytes = 0 if self.codebook is None else int(self.codebook.nbytes)
        raw_bytes = 0 if self.raw is None else len(self.raw)
        k = 0 if self.codebook is None else int(self.codebook.size)
        record_bytes = self.nbytes
        bound = cb_bytes + raw_bytes + sum(s["entropy_bytes"] for s in streams.values())
        floor_pos = information_floor_bits(numel, nonzeros)
        floor_bytes = (floor_pos + floor_vals + floor_cb) / 8
        return {
            "name": self.name,
            "shape": list(self.shape),
            "dtype": self.dtype.name,
            "numel": numel,
            "nonzeros": nonzeros,
            "stored_weights": nv,
            "density": nonzeros / numel if numel else 0.0,
            "positions": self.positions,
            "gap_bits": self.gap_bits,
            "fillers": fillers,
            "paper_fillers": paper_fillers,
            "values": self.values,
            "codebook_size": k,
            "codebook_dtype": None if self.codebook is None else self.codebook.dtype.name,
            "codebook_bytes": cb_bytes,
            "raw_bytes": raw_bytes,
            "streams": streams,
            "index_bits_per_weight": (
                streams["indices"]["total_bytes"] * 8 / nv if "indices" in streams and nv else 0.0
            ),
            "gap_bits_per_weight": (
                streams["gaps"]["total_bytes"] * 8 / nv if "gaps" in streams and nv else 0.0
            ),
            "record_bytes": record_bytes,
            "original_bytes": numel * item,
            "compression_ratio": numel * item / record_bytes,
            "bits_per_weight": record_bytes * 8 / nv if nv else 0.0,
            "entropy_bound_bytes": bound,
            "paper_bits": paper_formula_bits(
                nv + paper_fillers,
                index_bits=max(1, (k - 1).bit_length()) if k else 8 * item,
                gap_bits=self.gap_bits or 0,
                codebook_size=k,
                value_bits=8 * (self.codebook.dtype.itemsize if k else item),
            ),
            "floor_positions_bits": floor_pos,
            "floor_values_bits": floor_vals,
            "floor_codebook_bits": floor_cb,
            "floor_bytes": floor_bytes,
            "above_floor": record_bytes / floor_bytes - 1 if floor_bytes else None,
        }


def _stream_stats(st: StreamRecord, symbols: np.ndarray) -> dict:
    counts = (
        np.bincount(symbols, minlength=st.alphabet_size)
        if symbols.size
        else np.zeros(st.alphabet_size, np.int64)
    )
    h = _ent.entropy_bits(counts)
    w = _ent.fixed_width(st.alphabet_size)
    fixed_bytes = 22 + _nbytes_bits(st.n_symbols * w)
    if st.coding == "huffman":
        huff = st.nbytes
    elif st.n_symbols:
        lengths = _ent.huffman_code_lengths(counts)
        bits = _ent.huffman_payload_bits(counts, lengths)
        nz = np.flatnonzero(lengths)
        nl = int(nz[-1]) + 1 if nz.size else 1
        bs = _ent.choose_block_size(st.n_symbols, bits)
        n_blocks = -(-st.n_symbols // bs)
        huff = (
            13
            + 4
            + _nbytes_bits(nl * _LEN_BITS)
            + 13
            + _nbytes_bits((n_blocks - 1) * 12)
            + 8
            + _nbytes_bits(bits)
        )
    else:
        huff = fixed_bytes
    return {
        "coding": st.coding,
        "n_symbols": st.n_symbols,
        "alphabet_size": st.alphabet_size,
        "payload_bytes": len(st.payload),
        "descriptor_bytes": st.header_size,
        "total_bytes": st.nbytes,
        "bits_per_symbol": st.nbytes * 8 / st.n_symbols if st.n_symbols else 0.0,
        "index_bits": st.index_bits,
        "fixed_width": w,
        "fixed_bytes": fixed_bytes,
        "huffman_bytes": huff,
        "huffman_saving": 1.0 - huff / fixed_bytes,
        "entropy_bits": h,
        "entropy_bytes": h / 8,
    }


def information_floor_bits(numel: int, nonzeros: int) -> float:
    """``log2 C(numel, nonzeros)``: bits that name which ``nonzeros`` of ``numel`` positions
    hold a value, when every such set is equally likely (lgamma, exact to ~1e-9 relative).

    >>> information_floor_bits(4, 2) == math.log2(6)
    True
    """
    n, k = int(numel), int(nonzeros)
    if not 0 <= k <= n:
        raise ValueError(f"nonzeros must be in 0..numel, got {k} of {n}")
    if k in (0, n):
        return 0.0
    return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(2)


def paper_formula_bits(
    n_weights: int, *, index_bits: int, gap_bits: int, codebook_size: int, value_bits: int = 32
) -> int:
    """The paper's size estimate: ``n_weights * (index_bits + gap_bits) + codebook bits``.

    Parameters
    ----------
    n_weights : int
        Stored entries (non-zeros plus the paper's fillers for sparse layers).
    index_bits : int
        Bits per cluster index (``ceil(log2(codebook_size))``), or per raw value.
    gap_bits : int
        Bits per relative index (0 for dense storage).
    codebook_size : int
        Number of shared values.
    value_bits : int, default 32
        Bits per codebook entry.

    Returns
    -------
    int
    """
    for label, v in (
        ("n_weights", n_weights),
        ("index_bits", index_bits),
        ("gap_bits", gap_bits),
        ("codebook_size", codebook_size),
        ("value_bits", value_bits),
    ):
        if int(v) < 0:
            raise ValueError(f"{label} must be non-negative, got {v}")
    return int(n_weights) * (int(index_bits) + int(gap_bits)) + int(codebook_size) * int(value_bits)


# --------------------------------------------------------------------------------------------
# encoding
# --------------------------------------------------------------------------------------------


def _value_order(bits: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Stable order of bit patterns by the value they encode (NaNs last)."""
    if dtype.kind in "fi":
        return np.argsort(bits.view(dtype), kind="stable")
    return np.arange(bits.size)  # unsigned and bool: bit order is value order


def _codebook(bits: np.ndarray, dtype: np.dtype, max_codebook: int):
    """Distinct bit patterns sorted by value and each element's index; None if too many.

    Parameters
    ----------
    bits : ndarray of shape (n,), unsigned
        Bit patterns of the values.
    dtype : numpy.dtype
        What the patterns encode.
    max_codebook : int
        Largest codebook wanted.

    Returns
    -------
    (book, idx) or None
        ``book``: ndarray of shape (k,), same dtype as ``bits``; ``idx``: ndarray of shape (n,),
        uint16 (``k <= 65536``) or uint32, with ``book[idx] == bits``.
    """
    limit = max_codebook
    if bits.size == 0 or max_codebook <= 0:
        return None
    uniq = inv = None
    if bits.size > 8 * limit:
        # a strided sample settles "too many values" cheaply; when it holds every value,
        # a binary search into it replaces sorting the whole tensor
        sample = np.unique(bits[:: max(1, bits.size // (1 << 17))])
        if sample.size > limit:
            return None
        pos = np.minimum(np.searchsorted(sample, bits), sample.size - 1)
        if np.array_equal(sample[pos], bits):
            uniq, inv = sample, pos
    if uniq is None:
        uniq, inv = np.unique(bits, return_inverse=True)
        if uniq.size > limit:
            return None
    order = _value_order(uniq, dtype)
    rank = np.empty(uniq.size, np.int64)
    rank[order] = np.arange(uniq.size)
    idx = rank.astype(np.uint16 if uniq.size <= 65536 else np.uint32)[inv.reshape(-1)]
    return uniq[order], idx


def _with_zero(book: np.ndarray, idx: np.ndarray, nz_pos: np.ndarray, numel: int, dtype: np.dtype):
    """Dense codebook and indices from the codebook of the non-zeros (zero inserted)."""
    values = book.view(dtype)
    if dtype.kind in "fi":
        zr = int(np.searchsorted(values, np.zeros((), dtype), side="left"))
    else:
        zr = 0
    dense_book = np.insert(book, zr, 0)
    dt = np.uint16 if dense_book.size <= 65536 else np.uint32
    dense_idx = np.full(numel, zr, dt)
    dense_idx[nz_pos] = idx + (idx >= zr)
    return dense_book, dense_idx


def _check_tensor(values) -> np.ndarray:
    a = np.asarray(values)
    if a.dtype.name not in _DTYPE_CODES:
        raise ValueError(
            f"dtype {a.dtype} is not supported; convert the tensor to one of "
            f"{', '.join(sorted(_DTYPE_CODES))}"
        )
    if a.ndim > _MAX_NDIM:
        raise ValueError(f"tensors may have at most {_MAX_NDIM} dimensions, got {a.ndim}")
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    return a


def encode_tensor(
    name: str,
    values,
    *,
    gap_bits: int | None = 8,
    max_codebook: int = 65536,
    codebook_dtype: str | None = None,
    entropy: str = "auto",
) -> TensorRecord:
    """Encode a tensor as a :class:`TensorRecord`, choosing the smallest storage.

    Parameters
    ----------
    name : str
        Record name (e.g. ``"fc1.weight"``); at most 65,535 UTF-8 bytes.
    values : ndarray of any shape
        dtype float16/32/64, (u)int8/16/32/64 or bool.
    gap_bits : int or None, default 8
        Width of the relative-gap field for sparse positions, 1..16. Sparse storage is used
        when it is smaller than dense storage. ``None`` forces dense positions.
    max_codebook : int, default 65536
        Largest codebook; a tensor with more distinct (non-zero) values stores them raw.
        0 forces raw values.
    codebook_dtype : {None, "float16", "float32", "float64"}, default None
        dtype of stored codebook entries. ``None`` keeps the tensor's dtype (exact). A float
        dtype is allowed for float tensors only; when narrower than the tensor's, the
        decoded tensor equals the tensor with its codebook rounded to that dtype (and a
        value that rounds to zero decodes as zero). Raw storage, when smaller, stays exact.
    entropy : {"auto", "huffman", "fixed", "rans", "classic"}, default "auto"
        Coding of each symbol stream; ``auto`` takes the smallest written size of fixed,
        Huffman and rANS (:func:`encode_stream`); ``classic`` leaves rANS out.

    Returns
    -------
    TensorRecord
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    if not _utf8_ok(name):
        raise ValueError(
            f"tensor name {name!r} cannot be written as UTF-8 (it holds a lone surrogate); "
            "rename the tensor"
        )
    if len(name.encode("utf-8")) > _MAX_NAME:
        raise ValueError(f"name is longer than {_MAX_NAME} UTF-8 bytes; shorten it")
    _check_entropy(entropy)
    a = _check_tensor(values)
    if gap_bits is not None:
        _sp.max_step(gap_bits)  # validates
        gap_bits = int(gap_bits)
    if isinstance(max_codebook, bool) or not 0 <= int(max_codebook) <= _ent.MAX_ALPHABET:
        raise ValueError(f"max_codebook must be in 0..{_ent.MAX_ALPHABET}, got {max_codebook}")
    max_codebook = int(max_codebook)
    dtype = a.dtype
    if codebook_dtype is not None:
        if codebook_dtype not in _FLOATS:
            raise ValueError(
                f"codebook_dtype must be None or one of {_FLOATS}, got {codebook_dtype!r}"
            )
        if dtype.kind != "f":
            raise ValueError(
                f"codebook_dtype={codebook_dtype!r} needs a float tensor, '{name}' is {dtype}; "
                "leave codebook_dtype=None"
            )
        cb_dtype = np.dtype(codebook_dtype)
    else:
        cb_dtype = dtype
    shape = tuple(int(x) for x in a.shape)
    ubits = _uint_view(dtype)
    flat = np.ascontiguousarray(a).reshape(-1).view(ubits)
    numel = flat.size
    item = dtype.itemsize

    nz_pos = np.flatnonzero(flat)
    nz_bits = flat[nz_pos]
    sp_cb = _codebook(nz_bits, dtype, max_codebook)  # distinct non-zero values
    if sp_cb is None or nz_pos.size == numel:
        dense_cb = sp_cb
    else:
        dense_cb = _with_zero(*sp_cb, nz_pos, numel, dtype)
    candidates = []

    def values_options(cb, sel_bits, ext=None):
        """(size, codebook array, index stream, raw bytes) options for the stored values."""
        # raw values stay the selected bits until chosen: no copy of every candidate's values
        opts = [(8 + len(sel_bits) * item, None, None, sel_bits)]  # + the raw length field
        if cb is not None and 0 < cb[0].size <= max_codebook:
            book = cb[0].view(dtype)
            if cb_dtype != dtype:
                book = book.astype(cb_dtype)
            st = encode_stream(cb[1], cb[0].size, entropy=entropy, ext=ext,
                               n_ext=1 if ext is None else 2)
            opts.append((book.nbytes + st.nbytes, book, st, None))
        return opts

    # dense candidates
    for size, book, st, raw in values_options(dense_cb, flat):
        candidates.append((size, None, book, None, st, raw))

    # sparse candidates
    if gap_bits is not None and numel and nz_pos.size < numel:
        counts = _sp.gap_counts(nz_pos, gap_bits=gap_bits, size=numel)
        if counts["n_symbols"] < numel:
            gsyms = _sp.gap_symbols(nz_pos, gap_bits=gap_bits, size=numel)
            gst = encode_stream(gsyms, 1 << gap_bits, entropy=entropy)
            ext = prev_zero_context(nz_pos) if entropy in ("auto", "rans") else None
            for size, book, st, raw in values_options(sp_cb, nz_bits, ext):
                candidates.append((size + gst.nbytes, gap_bits, book, gst, st, raw))

    # smallest wins; ties keep the earlier (dense before sparse, raw before codebook)
    best = min(range(len(candidates)), key=lambda i: (candidates[i][0], i))
    _, gb, book, gst, ist, raw = candidates[best]
    return TensorRecord(
        name=name,
        shape=shape,
        dtype=dtype,
        gap_bits=gb,
        codebook=book,
        gaps=gst,
        indices=ist,
        raw=None if raw is None else raw.astype(ubits.newbyteorder("<")).tobytes(),
    )


# --------------------------------------------------------------------------------------------
# decoding
# --------------------------------------------------------------------------------------------


def default_decode_budget(nbytes: int) -> int:
    """Bytes that ``nbytes`` of file may decode to by default.

    ``max(DECODE_LIMIT_BYTES, DECODE_LIMIT_RATIO * nbytes)``: 256 MiB, or 256 times the size.
    """
    return max(DECODE_LIMIT_BYTES, DECODE_LIMIT_RATIO * int(nbytes))


def _decode_limit(record: TensorRecord, max_bytes: int | None) -> int:
    if max_bytes is not None:
        return int(max_bytes)
    return default_decode_budget(record.nbytes)


def _stream_work_bytes(st: StreamRecord) -> int:
    """Most bytes that decoding ``st`` allocates at once, its decoded symbols included.

    Counts what grows with the stream: the symbols (twice: the lock-step decoder transposes its
    lanes), 32-bit windows over the payload and its read-ahead padding, the lookup table, and
    ~64 bytes of bookkeeping per block (its offset, its lane's position and scratch values).
    """
    n = int(st.n_symbols)
    isz = 1 if st.alphabet_size <= 256 else 2
    payload = len(st.payload)
    if st.coding == "fixed":
        return n * isz + 5 * payload + 32 * min(n, _ent._CHUNK) + 64
    if st.coding == "rans":
        return _rans.decode_work_bytes(st.rans)
    lanes = 0 if st.block_starts is None else int(st.block_starts.size)
    tbits = int(st.code_lengths.max())
    pad = st.block_size * tbits // 8 + 8
    return (
        2 * (n + st.block_size) * isz
        + 5 * (payload + pad + 4)
        + (isz + 60) * (1 << tbits)  # numpy tables and their Python lists
        + 64 * lanes
        + 100 * st.block_size  # Python lists of one block (few-lane decoding)
    )


def _work_bytes(record: TensorRecord, n_values: int) -> int:
    """Most bytes that :func:`decode_tensor` allocates at once besides the tensor itself."""
    item = record.dtype.itemsize
    streams = [st for st in (record.indices, record.gaps) if st is not None]
    work = max((_stream_work_bytes(st) for st in streams), default=0)
    work += n_values * (item + 2)  # the values and their cluster indices
    if record.gaps is not None:
        # gap symbols, their advances and fill mask (9 bytes a symbol), the positions
        work += 11 * record.gaps.n_symbols + 8 * n_values
    return work


def decode_tensor(record: TensorRecord, *, max_bytes: int | None = None) -> np.ndarray:
    """Decode a record back into its tensor, exactly.

    Parameters
    ----------
    record : TensorRecord
    max_bytes : int, optional
        Refuse to decode when the tensor and the decoder's working memory
        (:attr:`TensorRecord.decode_bytes`) exceed this. Default:
        :func:`default_decode_budget` of the record's size (256 MiB, or 256 times the record
        size if larger), so that a small hostile file cannot claim gigabytes. Pass a larger
        value for a trusted file with more extreme compression.

    Returns
    -------
    ndarray of shape ``record.shape`` and dtype ``record.dtype``
        Bit-for-bit the encoded tensor (with the codebook rounded to its stored dtype, if a
        narrower ``codebook_dtype`` was used).

    Raises
    ------
    FormatError
        When the record is inconsistent (corrupt or hostile); the message names the tensor.
    DecodeBudgetError
        When decoding would exceed ``max_bytes`` (a ``FormatError`` and a ``MemoryError``).
    """
    try:
        return _decode_tensor(record, max_bytes)
    except FormatError as e:
        raise _prefixed(e, f"tensor {record.name!r}") from None
    except (ValueError, TypeError, IndexError, OverflowError, MemoryError, KeyError) as e:
        raise FormatError(f"tensor {record.name!r}: malformed record ({e})") from None


def _prefixed(exc: FormatError, prefix: str | None) -> FormatError:
    """``exc`` (same type) with ``prefix: `` in front of its message, unless already there."""
    if prefix is None or str(exc).startswith(f"{prefix}: "):
        return exc
    return type(exc)(f"{prefix}: {exc}")


def _decode_tensor(record: TensorRecord, max_bytes: int | None) -> np.ndarray:
    what = f"tensor {record.name!r}"
    dtype = np.dtype(record.dtype)
    ubits = _uint_view(dtype)
    numel = record.numel
    limit = _decode_limit(record, max_bytes)
    if numel * dtype.itemsize > limit:
        raise DecodeBudgetError(
            f"{what}: {record.shape} {dtype} would decode to {numel * dtype.itemsize:,} bytes "
            f"from a {record.nbytes:,}-byte record, which exceeds the decode budget of "
            f"{limit:,} bytes; pass max_bytes=... if the file is trusted"
        )
    # number of stored values, before decoding anything
    if record.codebook is not None:
        if record.indices is None or record.raw is not None:
            raise FormatError(f"{what}: codebook values need an index stream and no raw bytes")
        n_values = record.indices.n_symbols
    else:
        if record.raw is None or record.indices is not None:
            raise FormatError(f"{what}: raw values need raw bytes and no index stream")
        if len(record.raw) % dtype.itemsize:
            raise FormatError(f"{what}: raw values are not a whole number of {dtype} items")
        n_values = len(record.raw) // dtype.itemsize
    if record.gap_bits is None:
        if record.gaps is not None:
            raise FormatError(f"{what}: dense positions with a gap stream")
        if n_values != numel:
            raise FormatError(
                f"{what}: shape {record.shape} has {numel} elements but {n_values} values "
                "are stored"
            )
    else:
        if record.gaps is None:
            raise FormatError(f"{what}: sparse positions without a gap stream")
        m = _sp.max_step(record.gap_bits)
        if n_values > record.gaps.n_symbols or numel > (record.gaps.n_symbols + 1) * m:
            raise FormatError(
                f"{what}: {record.gaps.n_symbols} gap symbols cannot place {n_values} values "
                f"in {numel} elements"
            )
    work = _work_bytes(record, n_values)
    if numel * dtype.itemsize + work > limit:
        raise DecodeBudgetError(
            f"{what}: decoding needs about {numel * dtype.itemsize + work:,} bytes (the tensor "
            f"and {work:,} of working memory) from a {record.nbytes:,}-byte record, which "
            f"exceeds the decode budget of {limit:,} bytes; pass max_bytes=... if the file is "
            "trusted"
        )
    # positions first: they give the index stream's contexts
    pos = None
    if record.gap_bits is not None:
        pos = _sp.gap_positions(record.gaps.decode(), gap_bits=record.gap_bits, size=numel)
        if pos.size != n_values:
            raise FormatError(
                f"{what}: the gap stream places {pos.size} values but {n_values} are stored"
            )
    # values
    if record.codebook is not None:
        st = record.indices
        ext = None
        if st.rans is not None and st.rans.n_ext > 1:
            if pos is None:
                raise FormatError(f"{what}: index contexts need sparse positions")
            ext = prev_zero_context(pos)
        idx = st.decode(ext=ext)
        with np.errstate(over="ignore", invalid="ignore"):
            book = record.codebook.astype(dtype).view(ubits)
        if idx.size and int(idx.max()) >= book.size:
            raise FormatError(f"{what}: a cluster index is outside the codebook")
        vals = book[idx]
    else:
        vals = np.frombuffer(record.raw, ubits.newbyteorder("<")).astype(ubits)
    if record.gap_bits is None:
        out = vals
    else:
        out = np.zeros(numel, ubits)
        out[pos] = vals
    return out.view(dtype).reshape(record.shape)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NSQFile:
    """A parsed ``.nsq`` file.

    Attributes
    ----------
    header : dict
        The JSON header (architecture name and arguments, free metadata).
    records : list of TensorRecord
        In file order; names are unique.
    version : int
        Format version of the file.
    nbytes : int
        File size in bytes.
    max_bytes : int or None
        Decode budget of :meth:`arrays` for all tensors together (None:
        :func:`default_decode_budget` of the file size).
    source : str or None
        The path it was read from; errors of :meth:`arrays` and :meth:`stats` start with it.
    """

    header: dict
    records: list
    version: int
    nbytes: int
    max_bytes: int | None = None
    source: str | None = None

    def names(self) -> list[str]:
        """Record names in file order."""
        return [r.name for r in self.records]

    def __getitem__(self, name: str) -> TensorRecord:
        for r in self.records:
            if r.name == name:
                return r
        raise KeyError(f"no tensor named {name!r}; the file has {self.names()}")

    def __len__(self) -> int:
        return len(self.records)

    def arrays(self) -> dict[str, np.ndarray]:
        """Decode every tensor: ``{name: ndarray}`` in file order.

        Raises
        ------
        FormatError
            When a record is corrupt (the message names the file and the tensor).
        DecodeBudgetError
            When the tensors together, with the working memory of the one being decoded,
            exceed :attr:`max_bytes` (a ``FormatError`` and a ``MemoryError``).
        """
        return dict(self.iter_arrays())

    def iter_arrays(self):
        """Decode the tensors one at a time: ``(name, ndarray)`` pairs in file order.

        The same decoding, budget and errors as :meth:`arrays`, without holding every tensor:
        a caller that copies each one where it belongs and drops it needs the memory of one
        decoded tensor at a time (the budget still counts every tensor decoded so far).
        """
        left = default_decode_budget(self.nbytes) if self.max_bytes is None else self.max_bytes
        for r in self.records:
            try:
                a = decode_tensor(r, max_bytes=left)
            except FormatError as e:
                raise _prefixed(e, self.source) from None
            left -= a.nbytes
            yield r.name, a
            del a

    def stats(self) -> list[dict]:
        """:meth:`TensorRecord.stats` of every record."""
        try:
            return [r.stats() for r in self.records]
        except FormatError as e:
            raise _prefixed(e, self.source) from None


def _header_json(header) -> bytes:
    if header is None:
        header = {}
    if not isinstance(header, dict):
        raise TypeError(f"header must be a dict, got {type(header).__name__}")
    try:
        text = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"header must be JSON-serializable (str/int/float/bool/None/list/dict, no NaN): {e}"
        ) from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        field, value = _unencodable(header, "header") or ("header", header)
        raise ValueError(
            f"{field} = {value!r} cannot be written as UTF-8 (it holds a lone surrogate, as "
            "left by decoding bytes with errors='surrogateescape'); give plain text"
        ) from None


def _unencodable(obj, path: str):
    """(path, string) of the first string in a JSON-like object that UTF-8 cannot encode."""
    items = obj.items() if isinstance(obj, dict) else enumerate(obj)
    for key, value in items:
        where = f"{path}[{key!r}]"
        if isinstance(key, str) and not _utf8_ok(key):
            return f"{path} key", key
        if isinstance(value, str) and not _utf8_ok(value):
            return where, value
        if isinstance(value, (dict, list, tuple)):
            found = _unencodable(value, where)
            if found is not None:
                return found
    return None


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _nsq_chunks(records, header: dict | None):
    """Check ``records`` and ``header``, then return a generator of the file's bytes: the
    fixed head and JSON header, one record at a time, and the trailer with the checksum of
    everything before it (so that a writer holds one record's bytes at a time)."""
    records = list(records)
    names = set()
    for r in records:
        if not isinstance(r, TensorRecord):
            raise TypeError(f"records must be TensorRecord (from encode_tensor), got {r!r}")
        if r.name in names:
            raise ValueError(f"two records are named {r.name!r}; names must be unique")
        names.add(r.name)
    js = _header_json(header)
    if len(js) > 0xFFFFFFFF:
        raise ValueError("header is larger than 4 GiB")
    head = _FIXED_HEAD.pack(MAGIC, FORMAT_VERSION, 0, len(js), len(records)) + js

    def chunks():
        crc = zlib.crc32(head)
        yield head
        for r in records:
            data = r.to_bytes()
            crc = zlib.crc32(data, crc)
            yield data
            del data
        crc = zlib.crc32(_END, crc)
        yield _END + struct.pack("<I", crc)

    return chunks()


def nsq_bytes(records, *, header: dict | None = None) -> bytes:
    """The bytes of an ``.nsq`` file holding ``records`` (see :func:`write_nsq`)."""
    return b"".join(_nsq_chunks(records, header))


def write_nsq(path, records, *, header: dict | None = None) -> int:
    """Write an ``.nsq`` file atomically (temp file in the same folder, then rename).

    The records are serialised and written one at a time: the whole file is never held in
    memory.

    Parameters
    ----------
    path : str or os.PathLike
    records : iterable of TensorRecord
        Unique names.
    header : dict, optional
        JSON-serializable metadata (architecture name and arguments, ...).

    Returns
    -------
    int
        Bytes written.
    """
    try:
        chunks = _nsq_chunks(records, header)
    except ValueError as e:
        raise ValueError(f"cannot write {path}: {e}") from None
    return atomic_write_chunks(path, chunks)


def read_nsq(source, *, max_bytes: int | None = None) -> NSQFile:
    """Read and validate an ``.nsq`` file.

    Parameters
    ----------
    source : str, os.PathLike, bytes, bytearray or memoryview
        A path, or the file's bytes.
    max_bytes : int, optional
        Decode budget of :meth:`NSQFile.arrays`: all tensors together, plus the working
        memory of the one being decoded (:attr:`TensorRecord.decode_bytes`). Default:
        :func:`default_decode_budget` of the file size (256 MiB, or 256 times the file size
        if larger). Raise it for a trusted file with more extreme compression.

    Returns
    -------
    NSQFile

    Raises
    ------
    FormatError
        Wrong magic, unsupported version, bad checksum, truncation, or any inconsistent
        field (a Huffman block size no writer chooses, a codebook out of order included).
        Stream payloads are checked for consistency when decoded.
    FileNotFoundError
        When ``source`` is a path that does not exist.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = "nsq data"
    elif isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise FileNotFoundError(f"no .nsq file at {p}; check the path")
        data = p.read_bytes()
        label = str(p)
    else:
        raise TypeError(f"source must be a path or bytes, got {type(source).__name__}")
    try:
        nsq = _parse(data, label, max_bytes)
        if not isinstance(source, (bytes, bytearray, memoryview)):
            nsq = replace(nsq, source=label)
        return nsq
    except FormatError:
        raise
    except (
        ValueError,
        TypeError,
        IndexError,
        OverflowError,
        MemoryError,
        KeyError,
        struct.error,
        RecursionError,
        UnicodeDecodeError,
    ) as e:
        raise FormatError(f"{label}: malformed file ({type(e).__name__}: {e})") from None


def _parse(data: bytes, label: str, max_bytes: int | None) -> NSQFile:
    size = len(data)
    if data[: min(size, 8)] != MAGIC[: min(size, 8)]:
        raise FormatError(f"{label}: not an .nsq file (wrong magic bytes)")
    if size < MIN_FILE_SIZE:
        raise FormatError(
            f"{label}: truncated: {size} bytes, smaller than the smallest .nsq file "
            f"({MIN_FILE_SIZE} bytes)"
        )
    _, version, flags, json_len, n_records = _FIXED_HEAD.unpack_from(data, 0)
    if version not in READABLE_VERSIONS:
        newer = (
            " (written by a newer netsqueeze: upgrade to read it)"
            if version > FORMAT_VERSION
            else ""
        )
        raise FormatError(
            f"{label}: format version {version} is not supported; this reader reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}{newer}"
        )
    end_marker, crc = _TRAILER.unpack_from(data, size - _TRAILER.size)
    if end_marker != _END:
        raise FormatError(f"{label}: end marker missing: the file is truncated or corrupt")
    if zlib.crc32(memoryview(data)[: size - 4]) != crc:
        raise FormatError(f"{label}: file checksum mismatch: the file is corrupt")
    if flags != 0:
        raise FormatError(f"{label}: unknown flags {flags:#x} (written by a newer netsqueeze?)")
    view = memoryview(data)
    cur = _Cursor(view, _FIXED_HEAD.size, size - _TRAILER.size, label)
    js = cur.take(json_len, "JSON header")
    try:
        header = json.loads(bytes(js).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise FormatError(f"{label}: the JSON header is not valid UTF-8 JSON ({e})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{label}: the JSON header is not an object")
    min_record = 4 + 2 + 2 + 2 + 6 + 8 + 4  # length, name, dtype+ndim, positions, values, raw, crc
    if n_records > cur.left // min_record:
        raise FormatError(f"{label}: claims {n_records} records but only {cur.left} bytes remain")
    records = []
    names = set()
    for i in range(n_records):
        body_len = cur.u32(f"record {i} length")
        body = cur.take(body_len, f"record {i}")
        (rec_crc,) = cur.unpack("I", f"record {i} checksum")
        if zlib.crc32(body) != rec_crc:
            raise FormatError(f"{label}: record {i} checksum mismatch: the record is corrupt")
        rec = _parse_record(
            view, cur.pos - 4 - body_len, cur.pos - 4, f"{label}: record {i}", version
        )
        if rec.name in names:
            raise FormatError(f"{label}: two records are named {rec.name!r}")
        names.add(rec.name)
        records.append(rec)
    if cur.left:
        raise FormatError(f"{label}: {cur.left} unexpected bytes after the last record")
    return NSQFile(header, records, version, size, max_bytes)


def _sorted_by_value(book: np.ndarray) -> bool:
    """Whether ``book`` is non-decreasing by value, NaNs (floats) only at the end."""
    if book.dtype.kind == "f":
        nan = np.isnan(book)
        if nan.any():
            first = int(np.argmax(nan))
            if not nan[first:].all():
                return False
            book = book[:first]
    return bool(np.all(book[1:] >= book[:-1]))


def _parse_record(
    view: memoryview, start: int, end: int, what: str, version: int = FORMAT_VERSION
) -> TensorRecord:
    cur = _Cursor(view, start, end, what)
    name_len = cur.u16("name length")
    try:
        name = bytes(cur.take(name_len, "name")).decode("utf-8")
    except UnicodeDecodeError:
        raise FormatError(f"{what}: the name is not valid UTF-8") from None
    cur.what = what = f"{what} ({name!r})"
    dcode, ndim = cur.unpack("BB", "dtype and ndim")
    if dcode not in _DTYPES:
        raise FormatError(f"{what}: unknown dtype code {dcode}")
    dtype = np.dtype(_DTYPES[dcode])
    if ndim > _MAX_NDIM:
        raise FormatError(f"{what}: {ndim} dimensions (max {_MAX_NDIM})")
    shape = cur.unpack(f"{ndim}Q", "shape")
    numel = math.prod(shape)
    pcode, gap_bits = cur.unpack("BB", "positions")
    if pcode == 0:
        if gap_bits != 0:
            raise FormatError(f"{what}: dense positions with gap bits {gap_bits}")
        gbits = None
    elif pcode == 1:
        if not 1 <= gap_bits <= _sp.MAX_GAP_BITS:
            raise FormatError(f"{what}: gap bits {gap_bits} outside 1..{_sp.MAX_GAP_BITS}")
        gbits = gap_bits
    else:
        raise FormatError(f"{what}: unknown positions coding {pcode}")
    vcode, cb_code, k = cur.unpack("BBI", "values")
    codebook = None
    if vcode == 0:
        if cb_code or k:
            raise FormatError(f"{what}: raw values with a codebook")
    elif vcode == 1:
        if cb_code not in _DTYPES:
            raise FormatError(f"{what}: unknown codebook dtype code {cb_code}")
        cb_dtype = np.dtype(_DTYPES[cb_code])
        if cb_dtype != dtype and not (cb_dtype.kind == "f" and dtype.kind == "f"):
            raise FormatError(f"{what}: codebook dtype {cb_dtype} does not fit a {dtype} tensor")
        if not 1 <= k <= _ent.MAX_ALPHABET:
            raise FormatError(f"{what}: codebook size {k} outside 1..{_ent.MAX_ALPHABET}")
        raw_cb = cur.take(k * cb_dtype.itemsize, "codebook")
        codebook = np.frombuffer(raw_cb, cb_dtype.newbyteorder("<")).astype(cb_dtype)
        if not _sorted_by_value(codebook):
            raise FormatError(f"{what}: the codebook is not sorted by value")
    else:
        raise FormatError(f"{what}: unknown values coding {vcode}")
    gaps = (
        _read_stream(cur, "gap stream", 1 << gbits, 1, version) if gbits is not None else None
    )
    indices = (
        _read_stream(cur, "index stream", k, 2 if gbits is not None else 1, version)
        if codebook is not None
        else None
    )
    raw = None
    if codebook is None:
        raw_len = cur.u64("raw value length")
        if raw_len % dtype.itemsize:
            raise FormatError(f"{what}: raw values are not a whole number of {dtype} items")
        raw = bytes(cur.take(raw_len, "raw values"))
    if cur.left:
        raise FormatError(f"{what}: {cur.left} unexpected bytes at the end of the record")
    n_values = indices.n_symbols if indices is not None else len(raw) // dtype.itemsize
    if gbits is None and n_values != numel:
        raise FormatError(
            f"{what}: shape {shape} has {numel} elements but {n_values} values are stored"
        )
    if gbits is not None:
        m = (1 << gbits) - 1
        if n_values > gaps.n_symbols or numel > (gaps.n_symbols + 1) * m:
            raise FormatError(
                f"{what}: {gaps.n_symbols} gap symbols cannot place {n_values} values in "
                f"{numel} elements"
            )
    return TensorRecord(name, tuple(shape), dtype, gbits, codebook, gaps, indices, raw)
