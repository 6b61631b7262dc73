"""Context-modelled rANS coding of symbol streams, vectorised with numpy.

Huffman spends a whole number of bits on every symbol and sees each symbol alone. This coder
removes both limits:

* **rANS** (Duda's asymmetric numeral systems, range variant) codes a symbol of probability
  ``f / 2**P`` in ``-log2(f / 2**P)`` bits, fractions included;
* **contexts**: the probabilities of a symbol depend on a *context*, made of the bucket of the
  previous symbol of the stream (buckets are ranges of symbols split at stored thresholds) and,
  optionally, an external context known to the decoder before the stream (for the cluster
  indices of a sparse layer: whether the previous element of the tensor is zero, which the
  positions tell).

The model is *semi-static*: the writer counts the symbols per context, quantises the counts to
frequencies summing to ``2**P`` and stores them (a compact table, below); the payload is then
coded with those fixed frequencies. So decoding needs no model updates and runs in lock-step
over *lanes*: the stream is cut into ``nl`` contiguous blocks of ``S = ceil(n / nl)`` symbols
(the last one may be shorter), every lane is an rANS coder of its own with a 32-bit state,
and the lanes share one stream of 16-bit words, read in lane order within each step. One numpy
step codes one symbol of every lane, so the Python overhead is ``S`` steps however long the
stream is (the writer uses ``S ~ 2 sqrt(n)``, 1,024 to 8,192); streams of at most 16 lanes are
decoded symbol by symbol in plain Python instead (cheaper than numpy steps of a few lanes).

The writer's model search (:func:`choose_rans`) counts the symbols once, by (external
context, previous symbol or a fine bucket of it, symbol), and reads every candidate model's
counts from that table; the encoder is vectorised across lanes (a float64 reciprocal for the
division, the emitted words compacted once at the end). Decoding builds per-slot tables only
when the stream has enough symbols to pay for them, otherwise it binary-searches the
frequency table, so its cost is bounded by the stream's bytes and its output, not by the
model it declares (:func:`decode_work_bytes` is what the decode budget charges).

rANS parameters (as in Giesen's ``rans_word``): state ``x`` in ``[2**16, 2**32)``; encoding
``s`` with frequency ``f`` and cumulative start ``c`` first renormalises (while
``x >= f * 2**(32 - P)``, at most once: emit ``x & 0xFFFF``, ``x >>= 16``), then sets
``x = (x // f) * 2**P + x % f + c``. Decoding inverts it: ``slot = x mod 2**P``, ``s`` is the
symbol whose range ``[c, c + f)`` holds ``slot``, ``x = f * (x >> P) + slot - c``, and if
``x < 2**16`` one word is shifted in. Encoders start at ``x = 2**16`` and end at the stored
states; a decoder that does not end at ``2**16`` in every lane, with every word consumed, has
read a corrupt stream.

The byte layout is specified in ``docs/FORMAT.md`` (coding 2). Everything the reader
allocates or loops over is bounded by the bytes of the stream: see :func:`read_fields`.
"""

from __future__ import annotations

import math
import struct
from bisect import bisect_right
from dataclasses import dataclass, field

import numpy as np

from netsqueeze.errors import FormatError

__all__ = [
    "MAX_CONTEXTS",
    "MAX_PROB_BITS",
    "RansStream",
    "choose_rans",
    "decode_work_bytes",
    "rans_decode",
    "rans_encode",
    "read_fields",
]

_L = 1 << 16  # lower bound of the state
#: Largest probability precision: frequencies sum to ``2**P``, ``P <= 15``.
MAX_PROB_BITS = 15
#: Largest number of previous-symbol buckets and of external contexts (each).
MAX_CONTEXTS = 8
#: An rANS stream must spend at least 1/64 bit per symbol on average (bounds ``n``).
MIN_BITS_PER_SYMBOL_INV = 64
#: Default symbols per lane: ``2 sqrt(n)`` clipped to 1,024..8,192 (lane states cost 32 bits
#: per lane; the decoder's Python steps are one per symbol of a lane).
LANE_SIZE = None


#: Most symbols per lane a file may declare (the decoder takes one numpy step per symbol of a
#: lane, so this bounds its Python-level work per stream).
MAX_LANE_SIZE = 8192


def default_lane_size(n: int) -> int:
    """Symbols per lane the writer uses for ``n`` symbols."""
    return int(min(8192, max(1024, 2 * math.isqrt(max(n, 0)))))
_LEN_BITS = 5  # bits of a stored frequency's bit length (0..16)


# --------------------------------------------------------------------------------------------
# bit packing of the frequency table
# --------------------------------------------------------------------------------------------


def _pack_var(values: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Bits (uint8 0/1) of ``values`` in ``widths`` bits each, MSB first, concatenated."""
    total = int(widths.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    ends = np.cumsum(widths)
    owner = np.repeat(np.arange(values.size), widths)
    # bit j of value i (from the MSB) sits at ends[i] - widths[i] + j; its shift is the rest
    shift = ends[owner] - 1 - np.arange(total)
    return ((values[owner].astype(np.int64) >> shift) & 1).astype(np.uint8)


def _unpack_var(bits: np.ndarray, start: int, widths: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_pack_var` on ``bits[start:]``."""
    out = np.zeros(widths.size, np.int64)
    total = int(widths.sum())
    if total == 0:
        return out
    ends = np.cumsum(widths)
    owner = np.repeat(np.arange(widths.size), widths)
    shift = ends[owner] - 1 - np.arange(total)
    contrib = bits[start : start + total].astype(np.int64) << shift
    # sums of distinct powers of two below 2**53: exact in float64
    return np.bincount(owner, weights=contrib, minlength=widths.size).astype(np.int64)


def _table_bits(freqs: np.ndarray) -> np.ndarray:
    """The frequency table as bits: a used flag per context, then 5-bit lengths, then
    mantissas (every frequency ``f`` as ``bit_length(f)`` and the bits below its leading 1)."""
    used = freqs.sum(axis=1) > 0
    f = freqs[used].reshape(-1).astype(np.int64)
    bl = np.zeros(f.size, np.int64)
    nz = f > 0
    bl[nz] = np.floor(np.log2(f[nz])).astype(np.int64) + 1
    mant_w = np.maximum(bl - 1, 0)
    mant = np.where(nz, f - (np.int64(1) << mant_w), 0)
    return np.concatenate(
        [used.astype(np.uint8), _pack_var(bl, np.full(bl.size, _LEN_BITS)), _pack_var(mant, mant_w)]
    )


# --------------------------------------------------------------------------------------------
# the stream
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class RansStream:
    """A context-modelled rANS stream (everything but the common stream prefix).

    Attributes
    ----------
    n_symbols : int
    alphabet_size : int
    prob_bits : int
        ``P``: every used context's frequencies sum to ``2**P``.
    thresholds : ndarray of shape (C - 1,), int64
        Previous-symbol buckets: ``bucket(s) = #{t <= s}``; strictly increasing in
        ``1..alphabet_size-1``. The first symbol of a lane has previous symbol 0.
    n_ext : int
        External contexts ``E`` (1: none).
    freqs : ndarray of shape (E * C, n_used), int64
        Frequencies of symbols ``0..n_used-1`` in context ``e * C + bucket``; all-zero rows
        are unused contexts.
    states : ndarray of shape (n_lanes,), int64
        Final encoder state of every lane (the decoder's start).
    words : ndarray of shape (n_words,), uint16
        The shared word stream, in decoding order.
    """

    n_symbols: int
    alphabet_size: int
    prob_bits: int
    thresholds: np.ndarray
    n_ext: int
    freqs: np.ndarray
    states: np.ndarray
    words: np.ndarray
    _table: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_buckets(self) -> int:
        return int(self.thresholds.size) + 1

    @property
    def n_lanes(self) -> int:
        return int(self.states.size)

    def table_bits(self) -> np.ndarray:
        return self._table if self._table is not None else _table_bits(self.freqs)

    def fields_bytes(self) -> bytes:
        """The coding-specific fields before the payload, as written (see docs/FORMAT.md)."""
        tb = self.table_bits()
        c = self.n_buckets
        out = [
            struct.pack("<BB", self.prob_bits, c),
            struct.pack(f"<{c - 1}H", *self.thresholds.tolist()),
            struct.pack("<BI", self.n_ext, self.freqs.shape[1]),
            struct.pack("<I", tb.size),
            np.packbits(tb).tobytes(),
            struct.pack("<IQ", self.n_lanes, self.words.size),
        ]
        return b"".join(out)

    def payload(self) -> bytes:
        """Lane states (u32 each) then the words (u16 each), little-endian."""
        return self.states.astype("<u4").tobytes() + self.words.astype("<u2").tobytes()

    @property
    def payload_bytes(self) -> int:
        """Bytes of states and words."""
        return 4 * self.n_lanes + 2 * self.words.size

    @property
    def model_bytes(self) -> int:
        """Bytes of the model: precision, buckets, contexts and the frequency table."""
        return 2 + 2 * (self.n_buckets - 1) + 5 + 4 + (self.table_bits().size + 7) // 8

    @property
    def fields_size(self) -> int:
        """Bytes of :meth:`fields_bytes` plus the payload."""
        return self.model_bytes + 12 + self.payload_bytes


# --------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------


def _quantise(counts: np.ndarray, p: int) -> np.ndarray:
    """Frequencies summing to ``2**p``, every present symbol at least 1."""
    total = int(counts.sum())
    f = np.zeros(counts.size, np.int64)
    if total == 0:
        return f
    m = 1 << p
    present = counts > 0
    f[present] = np.maximum(1, (counts[present] * m) // total)
    diff = m - int(f.sum())
    if diff > 0:
        # hand the remainder out by largest fractional loss (deterministic)
        frac = counts * m / total - f
        frac[~present] = -1
        order = np.argsort(-frac, kind="stable")
        k = int(present.sum())
        f[present] += diff // k
        f[order[: diff % k]] += 1
    while diff < 0:
        i = int(np.argmax(f))
        take = min(-diff, int(f[i]) - 1)
        f[i] -= take
        diff += take
    return f


def _buckets(prev: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    return np.searchsorted(thresholds, prev, side="right")


def _contexts(s: np.ndarray, ext, thresholds: np.ndarray, c: int, lane: int) -> np.ndarray:
    """Context of every symbol (the previous symbol restarts at 0 on every lane)."""
    prev = np.empty_like(s)
    if s.size:
        prev[0] = 0
        prev[1:] = s[:-1]
        prev[::lane] = 0
    ctx = _buckets(prev, thresholds) if c > 1 else np.zeros(s.size, np.int64)
    if ext is not None:
        ctx = ctx + np.asarray(ext, np.int64) * c
    return ctx


def _lanes(n: int, lane_size: int) -> tuple[int, int]:
    """(n_lanes, S) for ``n`` symbols: ``S = ceil(n / n_lanes)``, no empty lane."""
    if n == 0:
        return 0, 0
    nl = max(1, -(-n // lane_size))
    s = -(-n // nl)
    nl = -(-n // s)
    return nl, s


# --------------------------------------------------------------------------------------------
# encode / decode
# --------------------------------------------------------------------------------------------


def rans_encode(
    symbols,
    alphabet_size: int,
    *,
    ext=None,
    n_ext: int = 1,
    thresholds=(),
    prob_bits: int = 12,
    lane_size: int | None = LANE_SIZE,
) -> RansStream:
    """Code ``symbols`` with a semi-static context model.

    Parameters
    ----------
    symbols : array_like of int, shape (n,)
        In ``[0, alphabet_size)``.
    alphabet_size : int, 1..65536
    ext : array_like of int, shape (n,), optional
        External context of every symbol, in ``[0, n_ext)``; the decoder must be given the same.
    n_ext : int, 1..8
    thresholds : sequence of int
        Previous-symbol bucket boundaries (at most 7, strictly increasing, in
        ``1..alphabet_size-1``).
    prob_bits : int, 1..15
        Precision ``P``; must allow every present symbol of a context a frequency >= 1.
    lane_size : int, optional
        Symbols per lane ``S`` (about); default :func:`default_lane_size`.

    Returns
    -------
    RansStream
    """
    s = np.asarray(symbols).reshape(-1)
    if s.dtype.kind not in "iu":
        s = s.astype(np.int64)
    a = int(alphabet_size)
    n = s.size
    th = np.asarray(thresholds, np.int64).reshape(-1)
    bad_th = th.size and (np.any(np.diff(th) <= 0) or th[0] < 1 or th[-1] >= a)
    if th.size >= MAX_CONTEXTS or bad_th:
        raise ValueError(f"thresholds must be < {MAX_CONTEXTS} increasing values in 1..{a - 1}")
    if not 1 <= n_ext <= MAX_CONTEXTS:
        raise ValueError(f"n_ext must be in 1..{MAX_CONTEXTS}, got {n_ext}")
    if not 1 <= prob_bits <= MAX_PROB_BITS:
        raise ValueError(f"prob_bits must be in 1..{MAX_PROB_BITS}, got {prob_bits}")
    if n and (s.min() < 0 or s.max() >= a):
        raise ValueError(f"symbols must be in [0, {a})")
    c = th.size + 1
    if ext is not None:
        ext = np.asarray(ext, np.int64).reshape(-1)
        if ext.size != n or (n and (ext.min() < 0 or ext.max() >= n_ext)):
            raise ValueError(f"ext must hold {n} contexts in [0, {n_ext})")
    n_used = int(s.max()) + 1 if n else 1
    nl, lane = _lanes(n, min(lane_size or default_lane_size(n), MAX_LANE_SIZE))
    nctx = c * n_ext
    if c == 1 and ext is None:
        key = s
    else:
        key = _contexts(s, ext, th, c, max(lane, 1)) * n_used + s
    counts = np.bincount(key, minlength=nctx * n_used).reshape(nctx, n_used)
    if int((counts > 0).sum(axis=1).max(initial=0)) > (1 << prob_bits):
        raise ValueError(f"prob_bits={prob_bits} is too small for the symbols of a context")
    freqs = np.stack([_quantise(row, prob_bits) for row in counts]) if nctx else counts
    if n == 0:
        return RansStream(0, a, prob_bits, th, n_ext, freqs, np.zeros(0, np.int64),
                          np.zeros(0, np.uint16))
    states, words = _encode_keys(key, freqs.reshape(-1), _starts(freqs).reshape(-1),
                                 prob_bits, nl, lane)
    return RansStream(n, a, prob_bits, th, n_ext, freqs, states, words)


def _starts(freqs: np.ndarray) -> np.ndarray:
    """Cumulative start of every symbol's range in its context's row."""
    cum = np.zeros_like(freqs)
    cum[:, 1:] = np.cumsum(freqs, axis=1)[:, :-1]
    return cum


#: Steps of the encoder whose keys are widened to numpy's index type at once.
_KEY_BLOCK = 128


def _encode_scalar(key: np.ndarray, fk, ck, p: int, nl: int, lane: int):
    """:func:`_encode_keys` for few lanes, with Python integers (same steps and words)."""
    n = key.size
    f = np.asarray(fk, np.int64)[key].tolist()
    c = np.asarray(ck, np.int64)[key].tolist()
    shift = 32 - p
    x = [_L] * nl
    emitted = []  # in reverse reading order: steps backwards, lanes backwards in a step
    last_len = n - (nl - 1) * lane
    for t in range(lane - 1, -1, -1):
        for i in range((nl if t < last_len else nl - 1) - 1, -1, -1):
            j = i * lane + t
            fj = f[j]
            xs = x[i]
            if xs >= fj << shift:
                emitted.append(xs & 0xFFFF)
                xs >>= 16
            q, r = divmod(xs, fj)
            x[i] = (q << p) + r + c[j]
    emitted.reverse()
    return np.array(x, np.int64), np.array(emitted, np.uint16)


def _encode_keys(key: np.ndarray, fk: np.ndarray, ck: np.ndarray, p: int, nl: int, lane: int):
    """Lane states and words of symbols given by their keys: symbol ``i`` has frequency
    ``fk[key[i]]`` and start ``ck[key[i]]``. They are coded in ``nl`` lanes of ``lane``
    symbols (the last one may be shorter).

    One numpy step encodes one symbol of every lane, backwards. Per step and lane: the word
    that renormalisation may emit is stored (with a flag) in an ``(S, nl)`` buffer, which is
    compacted once at the end (row-major order is the decoder's reading order: steps forward,
    lanes in order within a step); the division ``x // f`` is ``floor(x * (1 + 2**-40) / f)``
    in float64, exact for ``x < 2**32`` and ``f <= 2**15`` (the factor lifts exact quotients
    above the rounding error, and ``(x / f + 1) * 2**-40 < 1 / f`` keeps the others below the
    next integer), and ``x // f * 2**P + x % f + c = x + c + (x // f) * (2**P - f)``. The keys
    of a block of steps are transposed and widened to numpy's index type at once.
    """
    if nl <= _SCALAR_LANES:
        return _encode_scalar(key, fk, ck, p, nl, lane)
    fk = np.asarray(fk, np.int64)
    xmax = fk << (32 - p)  # renormalise while x >= f * 2**(32 - P) (at most once)
    inv = (1.0 + 2.0**-40) / np.maximum(fk, 1).astype(np.float64)
    cmpl = float(1 << p) - fk.astype(np.float64)
    start = np.asarray(ck, np.float64)
    full = key[: (nl - 1) * lane].reshape(nl - 1, lane)  # every lane but the last
    tail = key[(nl - 1) * lane :]
    last_len = tail.size
    x = np.full(nl, _L, np.int64)
    low = np.empty((lane, nl), np.uint16)
    emit = np.zeros((lane, nl), bool)
    q = np.empty(nl, np.float64)
    b0 = lane
    kb = None
    for t in range(lane - 1, -1, -1):
        if t < b0:
            b1, b0 = t + 1, max(0, t - _KEY_BLOCK + 1)
            kb = np.zeros((b1 - b0, nl), np.intp)
            kb[:, : nl - 1] = full[:, b0:b1].T
            if b0 < last_len:
                kb[: min(b1, last_len) - b0, nl - 1] = tail[b0 : min(b1, last_len)]
        na = nl if t < last_len else nl - 1
        xa = x[:na]
        k = kb[t - b0, :na]
        m = np.greater_equal(xa, xmax[k], out=emit[t, :na])
        np.bitwise_and(xa, 0xFFFF, out=low[t, :na], casting="unsafe")
        np.right_shift(xa, 16, out=xa, where=m)
        qa = np.multiply(xa, inv[k], out=q[:na])
        np.floor(qa, out=qa)
        qa *= cmpl[k]
        qa += start[k]
        np.add(xa, qa, out=xa, casting="unsafe")
    return x, low[emit]


#: Slots a stream may build a per-slot decoding table for without decoding as many symbols.
_SLOT_TABLE_FREE = 1 << 12


def slot_tables(stream: RansStream) -> bool:
    """Whether the decoder builds per-slot tables (``n_contexts * 2**P`` entries: one lookup
    a symbol) rather than searching the contexts' cumulative frequencies (``n_contexts *
    n_used`` entries, a binary search a symbol). Per-slot tables are built when they are
    no larger than twice the symbols plus 4,096, so that building them costs no more than
    decoding does: a stream of a few symbols that declares ``P = 15`` and 16 contexts gets
    the small table (its cost is bounded by the frequency table's bits, which are in the file).
    """
    return (int(stream.freqs.shape[0]) << stream.prob_bits) <= 2 * stream.n_symbols + _SLOT_TABLE_FREE


def decode_work_bytes(stream: RansStream) -> int:
    """Most bytes :func:`rans_decode` allocates at once for ``stream``, its output included:
    the decoding tables, and either the numpy lock-step buffers (symbols in the lane layout
    and transposed, the words as int64, the scaled external contexts, lane states) or, for
    streams of few lanes, the Python lists of the scalar decoder (a pointer per symbol, word,
    context and table entry, and an int object per word, entry and large symbol), plus a
    fixed 16 KiB for array headers and small objects."""
    n = int(stream.n_symbols)
    isz = 1 if stream.alphabet_size <= 256 else 2
    nw = int(stream.words.size)
    nl = int(stream.n_lanes)
    ext = 8 * n * (stream.n_ext > 1)
    fixed = 16 << 10
    if 0 < nl <= _SCALAR_LANES:
        nctx, n_used = stream.freqs.shape
        slots = (nctx << stream.prob_bits) <= n
        entries = nctx << stream.prob_bits if slots else nctx * n_used
        big = 28 * n if stream.alphabet_size > 256 else 0
        # symbols: the list (8 bytes a slot of nl * S <= n + nl), its int objects when
        # large, the array; contexts: the list of small ints
        return (8 * (n + nl) + big + (n + nl) * isz + 36 * nw + ext + 36 * 3 * entries
                + decode_table_bytes(stream, slots) + fixed)
    return 2 * n * isz + 8 * nw + 48 * nl + ext + decode_table_bytes(stream) + fixed


def decode_table_bytes(stream: RansStream, slots: bool | None = None) -> int:
    """Bytes of the decoding tables :func:`rans_decode` builds for ``stream`` (per slot, or
    per (context, symbol) entry; ``slots``: which, default as the numpy decoder chooses)."""
    nctx, n_used = stream.freqs.shape
    if slot_tables(stream) if slots is None else slots:
        # uint16 symbol, frequency and offset a slot, and one row's int64 temporaries
        return (6 * nctx + 32) << stream.prob_bits
    # the rows (copied), their starts and a temporary, then per non-zero entry its context
    # and symbol indices, frequency, start and key (int64 each)
    return 72 * nctx * n_used


def _decode_rows(freqs: np.ndarray, p: int) -> np.ndarray:
    """The frequency rows the decoder uses: an unused context (no symbol was coded in it, so
    a valid stream never reaches it) gets all ``2**P`` slots on symbol 0, which leaves the
    state unchanged; a corrupt stream that reaches it fails the end-state check."""
    used = freqs.sum(axis=1) > 0
    if used.all():
        return freqs
    rows = freqs.copy()
    rows[~used, 0] = 1 << p
    return rows


def _decode_tables(freqs: np.ndarray, p: int):
    """Per (context, slot): symbol, frequency and ``slot - start`` (built a context at a
    time, so the temporaries are one row's)."""
    nctx, n_used = freqs.shape
    m = 1 << p
    rows = _decode_rows(freqs, p)
    # uint16 (symbols < 2**16, frequencies and offsets <= 2**15): 6 bytes per slot, at most
    # 16 contexts x 2**15 slots = 3 MiB for the largest model a stream may declare
    sym = np.zeros((nctx, m), np.uint16)
    fr = np.ones((nctx, m), np.uint16)
    bias = np.zeros((nctx, m), np.uint16)
    slots = np.arange(m)
    for i in range(nctx):
        row = rows[i]
        s = np.repeat(np.arange(n_used), row)
        start = np.cumsum(row) - row
        sym[i] = s
        fr[i] = row[s]
        bias[i] = slots - start[s]
    return sym.reshape(-1), fr.reshape(-1), bias.reshape(-1)


def _search_tables(freqs: np.ndarray, p: int):
    """Per (context, symbol) entry of non-zero frequency, in context-major order: its start
    plus ``context * 2**P`` (increasing over all entries), symbol and frequency. The symbol
    of slot ``v`` of context ``j`` is the last entry whose key is ``<= j * 2**P + v``."""
    rows = _decode_rows(freqs, p)
    ctx, sym = np.nonzero(rows)
    fr = rows[ctx, sym]
    keys = (ctx.astype(np.int64) << p) + (np.cumsum(rows, axis=1) - rows)[ctx, sym]
    return keys, sym.astype(np.int64), fr.astype(np.int64)


#: Streams of at most this many lanes are decoded symbol by symbol in Python: a numpy step
#: costs several microseconds whatever its width, one symbol in Python well under one.
_SCALAR_LANES = 16


def _decode_scalar(stream: RansStream, bucket_base, e, lane: int, out_dt) -> np.ndarray:
    """:func:`rans_decode` for a stream of few lanes, with Python integers and lists (same
    steps, same order of word reads, same checks). Per-slot tables only when the stream has
    at least as many symbols as slots (building them as lists would cost more than the
    decoding otherwise); else a binary search in the contexts' cumulative frequencies."""
    n, p, nl = stream.n_symbols, stream.prob_bits, stream.n_lanes
    nctx = int(stream.freqs.shape[0])
    slots = (nctx << p) <= n
    if slots:
        sym, fr, bias = (t.tolist() for t in _decode_tables(stream.freqs, p))
    else:
        keys, sym, fr = (t.tolist() for t in _search_tables(stream.freqs, p))
    base = bucket_base.tolist() if bucket_base is not None else None
    ext = e.tolist() if e is not None else None  # lane-major, like out (small ints)
    ctx_offset = [k * (stream.n_buckets << p) for k in range(stream.n_ext)]
    words = stream.words.tolist()
    nw = len(words)
    ptr = 0
    x = [int(v) for v in stream.states]
    out = [0] * (nl * lane)
    prev = [0] * nl
    mask = (1 << p) - 1
    last_len = n - (nl - 1) * lane
    for t in range(lane):
        for i in range(nl if t < last_len else nl - 1):
            xs = x[i]
            idx = xs & mask
            if base is not None:
                idx += base[prev[i]]
            if ext is not None:
                idx += ctx_offset[ext[i * lane + t]]
            if slots:
                s = sym[idx]
                xs = fr[idx] * (xs >> p) + bias[idx]
            else:
                j = bisect_right(keys, idx) - 1
                s = sym[j]
                xs = fr[j] * (xs >> p) + idx - keys[j]
            if xs < _L:
                if ptr >= nw:
                    raise FormatError("rANS stream: the words ran out (truncated or corrupt)")
                xs = (xs << 16) | words[ptr]
                ptr += 1
            x[i] = xs
            out[i * lane + t] = s
            prev[i] = s
    if ptr != nw or any(v != _L for v in x):
        raise FormatError("rANS stream: corrupt payload (the decoder did not end where it began)")
    return np.array(out, out_dt)[:n]


def rans_decode(stream: RansStream, ext=None) -> np.ndarray:
    """Decode the symbols of ``stream``.

    Parameters
    ----------
    stream : RansStream
    ext : array_like of int, shape (n,), optional
        The external contexts the encoder was given (required when ``stream.n_ext > 1``).

    Returns
    -------
    ndarray of shape (n_symbols,), uint8 (alphabets up to 256) or uint16

    Raises
    ------
    FormatError
        When the words run out, are left over, or a lane does not end in the start state.
    """
    n = stream.n_symbols
    out_dt = np.uint8 if stream.alphabet_size <= 256 else np.uint16
    if n == 0:
        return np.zeros(0, out_dt)
    p = stream.prob_bits
    c = stream.n_buckets
    nl = stream.n_lanes
    lane = -(-n // max(nl, 1))
    if nl < 1 or (nl - 1) * lane >= n:
        raise FormatError(f"rANS stream: {nl} lanes do not fit {n} symbols")
    if stream.n_ext > 1:
        if ext is None:
            raise FormatError("rANS stream needs external contexts that the record lacks")
        e = np.asarray(ext, np.int64).reshape(-1)
        if e.size != n or int(e.min()) < 0 or int(e.max()) >= stream.n_ext:
            raise FormatError("rANS stream: external contexts do not match the stream")
    else:
        e = None
    bucket_base = None
    if c > 1:
        bucket_base = _buckets(np.arange(stream.freqs.shape[1]), stream.thresholds) << p
    if nl <= _SCALAR_LANES:
        return _decode_scalar(stream, bucket_base, e, lane, out_dt)
    e2 = None
    if e is not None:
        # (S, nl) layout like the symbols, scaled to a context's slot offset
        e2 = np.zeros((lane, nl), np.int64)
        e2.T[: nl - 1] = e[: (nl - 1) * lane].reshape(nl - 1, lane)
        e2[: n - (nl - 1) * lane, nl - 1] = e[(nl - 1) * lane :]
        e2 *= c << p
    if slot_tables(stream):
        sym, fr, bias = _decode_tables(stream.freqs, p)
        skeys = None
    else:
        skeys, sym, fr = _search_tables(stream.freqs, p)
    words = stream.words.astype(np.int64)
    nw = words.size
    ptr = 0
    x = stream.states.astype(np.int64).copy()
    out = np.zeros((lane, nl), out_dt)
    last_len = n - (nl - 1) * lane
    mask = (1 << p) - 1
    zeros = np.zeros(nl, out_dt)  # the previous symbol of a lane's first
    for t in range(lane):
        na = nl if t < last_len else nl - 1
        xa = x[:na]  # updated in place
        idx = xa & mask
        if bucket_base is not None:
            idx += bucket_base[(out[t - 1] if t else zeros)[:na]]
        if e2 is not None:
            idx += e2[t, :na]
        xa >>= p
        if skeys is None:
            out[t, :na] = sym[idx]
            xa *= fr[idx]
            xa += bias[idx]
        else:
            j = np.searchsorted(skeys, idx, side="right")
            j -= 1
            out[t, :na] = sym[j]
            xa *= fr[j]
            idx -= skeys[j]
            xa += idx
        m = xa < _L
        k = int(np.count_nonzero(m))
        if k:
            if ptr + k > nw:
                raise FormatError("rANS stream: the words ran out (truncated or corrupt)")
            xa[m] = (xa[m] << 16) | words[ptr : ptr + k]
            ptr += k
    if ptr != nw or np.any(x != _L):
        raise FormatError("rANS stream: corrupt payload (the decoder did not end where it began)")
    return out.T.reshape(-1)[:n]


# --------------------------------------------------------------------------------------------
# choosing a model
# --------------------------------------------------------------------------------------------


def _quantile_thresholds(counts: np.ndarray, nb: int) -> np.ndarray:
    """``nb - 1`` thresholds splitting the symbols into buckets of similar mass."""
    a = counts.size
    cdf = np.cumsum(counts) / max(1, int(counts.sum()))
    th = np.searchsorted(cdf, np.arange(1, nb) / nb, side="right")
    th = np.unique(np.clip(th, 1, a - 1))
    return th


def _estimate(counts: np.ndarray, p: int, c: int, nl: int) -> float:
    """Bytes of an rANS stream with these context counts: ideal code lengths of the quantised
    frequencies (rANS with a 32-bit state stays within ~0.01 % of them), lane states, model."""
    freqs = np.stack([_quantise(row, p) for row in counts])
    nz = counts > 0
    bits = float((counts[nz] * (p - np.log2(freqs[nz]))).sum())
    model = 2 + 2 * (c - 1) + 5 + 4 + (_table_bits(freqs).size + 7) // 8
    return bits / 8 + 4 * nl + model + 12


#: Largest (external context, previous symbol, symbol) table the model search counts directly.
_JOINT_MAX = 1 << 20


def _bucket_options(counts: np.ndarray, a: int) -> list[np.ndarray]:
    """Thresholds of the candidate previous-symbol buckets: none, then 2, 3, 4, 6 and 8
    buckets of similar mass (duplicates dropped)."""
    opts = [np.zeros(0, np.int64)]
    if a > 1:
        for nb in (2, 3, 4, 6, 8):
            th = _quantile_thresholds(counts, nb)
            if th.size and not any(np.array_equal(th, o) for o in opts):
                opts.append(th)
    return opts


def _small_uint(n: int):
    return np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.int64


def choose_rans(
    symbols, alphabet_size: int, *, ext=None, n_ext: int = 1, lane_size: int | None = LANE_SIZE
) -> RansStream | None:
    """The smallest of a few context models (buckets of the previous symbol: 1, 2, 3, 4, 6, 8;
    with and without ``ext``; precision 10, 12 or 14 bits), or None when rANS does not apply
    (empty stream, or the rule "at least 1/64 bit per symbol" would fail). Sizes are estimated
    from the counts (:func:`_estimate`); only the best model is encoded.

    The counts of every model come from one count of (external context, fine bucket of the
    previous symbol, symbol) triples: the fine buckets are the previous symbol itself when
    that table has at most ``2**20`` cells and not many more than the symbols, else the
    buckets cut at the union of all the models' thresholds. Each model's buckets are unions of fine buckets, so its counts are
    sums of rows of that table (exactly the counts a pass over the symbols would give, so the
    choice does not depend on how they were obtained), and the encoder reads the chosen
    model's frequencies through the triples' keys.
    """
    s = np.asarray(symbols).reshape(-1)
    if s.dtype.kind not in "iu":
        s = s.astype(np.int64)
    a = int(alphabet_size)
    n = s.size
    if n == 0:
        return None
    if int(s.min()) < 0 or int(s.max()) >= a:
        raise ValueError(f"symbols must be in [0, {a})")
    use_ext = ext is not None and n_ext > 1
    ne = n_ext if use_ext else 1
    if use_ext:
        e = np.asarray(ext, np.int64).reshape(-1)
        if e.size != n or e.min() < 0 or e.max() >= n_ext:
            raise ValueError(f"ext must hold {n} contexts in [0, {n_ext})")
    lane_size = min(lane_size or default_lane_size(n), MAX_LANE_SIZE)
    nl, lane = _lanes(n, lane_size)
    n_used = int(s.max()) + 1
    # Every model's context is (external context, bucket of the previous symbol), the
    # previous symbol restarting at 0 on every lane. Count (external context, fine bucket of
    # the previous symbol, symbol) once: fine buckets are the previous symbol itself when the
    # table is small, else the buckets cut at the union of every model's thresholds.
    per_symbol = ne * n_used * n_used <= min(_JOINT_MAX, max(1 << 12, 2 * n))
    if per_symbol:
        counts0 = None
        nf = n_used
        fine_lo = np.arange(n_used)
        prev = s
    else:
        counts0 = np.bincount(s, minlength=a)
        bucket_opts = _bucket_options(counts0, a)
        fine_th = np.unique(np.concatenate(bucket_opts)).astype(np.int64)
        nf = fine_th.size + 1
        fine_lo = np.concatenate([[0], fine_th])
        prev = _buckets(np.arange(n_used), fine_th).astype(_small_uint(nf))[s] if nf > 1 else None
    nkeys = ne * nf * n_used
    kdt = np.int32 if nkeys < 2**31 else np.int64
    key = np.empty(n, kdt)
    if prev is not None:
        key[0] = 0
        key[1:] = prev[:-1]
        key[::lane] = 0
        key *= n_used
        key += s
    else:
        key[:] = s
    if use_ext:
        key += (e * (nf * n_used)).astype(kdt)
    joint = np.bincount(key, minlength=nkeys).reshape(ne, nf, n_used)
    if counts0 is None:
        counts0 = np.zeros(a, np.int64)
        counts0[:n_used] = joint.sum(axis=(0, 1))
        bucket_opts = _bucket_options(counts0, a)
    present = int(np.count_nonzero(counts0))
    ext_opts = [(None, 1), (ext, n_ext)] if use_ext else [(None, 1)]
    p_min = max(1, math.ceil(math.log2(max(present, 2))))
    best = None
    for th in bucket_opts:
        c = th.size + 1
        bmap = _buckets(fine_lo, th)  # the model's bucket of every fine bucket
        for e_opt, ne_opt in ext_opts:
            grid = joint if e_opt is not None else joint.sum(axis=0, keepdims=True)
            counts = np.zeros((ne_opt, c, n_used), np.int64)
            np.add.at(counts, (slice(None), bmap), grid)
            counts = counts.reshape(ne_opt * c, n_used)
            for p in sorted({min(MAX_PROB_BITS, max(p_min, q)) for q in (10, 12, 14)}):
                if int((counts > 0).sum(axis=1).max()) > (1 << p):
                    continue
                size = _estimate(counts, p, c, nl)
                if best is None or size < best[0]:
                    best = (size, th, e_opt, ne_opt, p, bmap, counts)
    if best is None:
        return None
    _, th, e_opt, ne_opt, p, bmap, counts = best
    c = th.size + 1
    freqs = np.stack([_quantise(row, p) for row in counts])
    # the chosen model's row of every (external context, fine bucket, symbol) key
    ctx = np.arange(ne)[:, None] * (c if e_opt is not None else 0) + bmap[None, :]
    lut = (ctx[:, :, None] * n_used + np.arange(n_used)[None, None, :]).reshape(-1)
    states, words = _encode_keys(key, freqs.reshape(-1)[lut], _starts(freqs).reshape(-1)[lut],
                                 p, nl, lane)
    best = RansStream(n, a, p, th, ne_opt, freqs, states, words)
    size = best.fields_size + 13
    if n > MIN_BITS_PER_SYMBOL_INV * 8 * size or -(-n // best.n_lanes) > 8 * size:
        return None
    return best


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------


def read_fields(cur, what: str, n: int, a: int, max_ext: int) -> RansStream:
    """Parse the coding-specific fields of an rANS stream from a bounded cursor.

    ``cur`` has ``take(n, field)``, ``u8``, ``u32``, ``u64``, ``left`` and ``what`` (the
    container's reader). Checks, before allocating: precision and context counts in range,
    thresholds increasing, the table's bit count within the bytes left and at least one bit per
    stored entry, every used context's frequencies summing to ``2**P``, ``1 <= n_lanes`` with
    no empty lane and ``ceil(n / n_lanes) <= 8 * stream bytes``, states in ``[2**16, 2**32)``,
    and ``n <= 512 * stream bytes`` (at least 1/64 bit per symbol).
    """
    start_left = cur.left + 13  # the common prefix (coding, n, alphabet) was 13 bytes
    p, c = cur.unpack("BB", f"{what} precision")
    if not 1 <= p <= MAX_PROB_BITS:
        raise FormatError(f"{cur.what}: {what} precision {p} outside 1..{MAX_PROB_BITS}")
    if not 1 <= c <= MAX_CONTEXTS:
        raise FormatError(f"{cur.what}: {what} has {c} buckets (1..{MAX_CONTEXTS})")
    th = np.array(cur.unpack(f"{c - 1}H", f"{what} thresholds"), np.int64)
    if th.size and (np.any(np.diff(th) <= 0) or th[0] < 1 or th[-1] >= a):
        raise FormatError(f"{cur.what}: {what} bucket thresholds are not increasing in 1..{a - 1}")
    n_ext, n_used = cur.unpack("BI", f"{what} contexts")
    if not 1 <= n_ext <= max_ext:
        raise FormatError(f"{cur.what}: {what} has {n_ext} external contexts (1..{max_ext})")
    if not 1 <= n_used <= a:
        raise FormatError(f"{cur.what}: {what} models {n_used} symbols of an alphabet of {a}")
    tbits = cur.u32(f"{what} table length")
    nctx = c * n_ext
    if tbits > 8 * cur.left or tbits < nctx:
        raise FormatError(f"{cur.what}: {what} frequency table of {tbits} bits is impossible")
    bits = np.unpackbits(np.frombuffer(cur.take((tbits + 7) // 8, f"{what} table"), np.uint8))
    used = bits[:nctx].astype(bool)
    n_entries = int(used.sum()) * n_used
    if n_entries == 0 or nctx + _LEN_BITS * n_entries > tbits:
        raise FormatError(f"{cur.what}: {what} frequency table is inconsistent")
    bl = _unpack_var(bits, nctx, np.full(n_entries, _LEN_BITS))
    if int(bl.max()) > p + 1:
        raise FormatError(f"{cur.what}: {what} has a frequency above 2**{p}")
    mant_w = np.maximum(bl - 1, 0)
    if nctx + _LEN_BITS * n_entries + int(mant_w.sum()) != tbits:
        raise FormatError(f"{cur.what}: {what} frequency table length is inconsistent")
    mant = _unpack_var(bits, nctx + _LEN_BITS * n_entries, mant_w)
    f = np.where(bl > 0, (np.int64(1) << mant_w) + mant, 0)
    freqs = np.zeros((nctx, n_used), np.int64)
    freqs[used] = f.reshape(-1, n_used)
    if np.any(freqs[used].sum(axis=1) != (1 << p)):
        raise FormatError(f"{cur.what}: {what} frequencies do not sum to 2**{p}")
    nl, nw = cur.unpack("IQ", f"{what} lane and word counts")
    if 4 * nl + 2 * nw > cur.left:
        raise FormatError(
            f"{cur.what}: {what} claims {nl} lanes and {nw} words but only {cur.left} bytes remain"
        )
    if n == 0:
        if nl != 0:
            raise FormatError(f"{cur.what}: {what} has lanes but no symbols")
    else:
        lane = -(-n // nl) if nl else 0
        if nl < 1 or (nl - 1) * lane >= n:
            raise FormatError(f"{cur.what}: {what} has {nl} lanes for {n} symbols")
    if 4 * nl > cur.left:
        raise FormatError(f"{cur.what}: {what} claims {nl} lanes but only {cur.left} bytes remain")
    states = np.frombuffer(cur.take(4 * nl, f"{what} states"), "<u4").astype(np.int64)
    if np.any(states < _L):
        raise FormatError(f"{cur.what}: {what} has a lane state below 2**16")
    if nw > cur.left // 2:
        raise FormatError(f"{cur.what}: {what} claims {nw} words but only {cur.left} bytes remain")
    words = np.frombuffer(cur.take(2 * nw, f"{what} words"), "<u2").astype(np.uint16)
    size = start_left - cur.left
    if n > MIN_BITS_PER_SYMBOL_INV * 8 * size:
        raise FormatError(f"{cur.what}: {what} claims {n} symbols in {size} bytes")
    if n and -(-n // nl) > MAX_LANE_SIZE:
        raise FormatError(f"{cur.what}: {what} lanes of {-(-n // nl)} symbols (max {MAX_LANE_SIZE})")
    if n and -(-n // nl) > 8 * size:
        raise FormatError(f"{cur.what}: {what} lanes of {-(-n // nl)} symbols in {size} bytes")
    return RansStream(n, a, p, th, n_ext, freqs, states, words)
