"""Canonical Huffman coding and the entropy bound, vectorised with numpy.

Everything here works on *symbol streams*: 1-D arrays of small non-negative integers
(cluster indices, sparse gap symbols) drawn from an alphabet of at most
:data:`MAX_ALPHABET` symbols.

Coding conventions
------------------
* Bits are packed **most significant bit first**: the first bit of the stream is bit 7 of
  byte 0. The last byte is padded with zero bits.
* Codes are *canonical* (as in DEFLATE): only the code length of each symbol is stored; codes
  are assigned in order of (length, symbol), each code one more than the previous one,
  shifted left whenever the length grows.
* Code lengths are limited to :data:`MAX_CODE_LENGTH` bits so that the decoder's lookup table
  has at most ``2 ** MAX_CODE_LENGTH`` entries. When the unconstrained Huffman code is longer,
  the optimal length-limited code is computed with the package-merge algorithm.
* Every used symbol costs at least one bit. In particular a stream with a single distinct
  symbol uses a one-bit code (``0``) and its payload is ``n`` zero bits; this keeps the rule
  "symbols <= payload bits" true for every stream, which the file reader relies on to reject
  hostile lengths before allocating anything.

Vectorised decoding
-------------------
Huffman decoding is sequential within a stream. The encoder therefore cuts the stream into
blocks of ``block_size`` symbols and records the bit offset at which each block starts
(:attr:`HuffmanStream.block_starts`). The decoder runs one *lane* per block and advances all
lanes in lock-step, one symbol per lane per numpy step: it gathers the next
``max_length`` bits at every lane's bit position, looks the symbol and its length up in a
table of ``2 ** max_length`` entries, and moves every lane forward. The number of numpy steps
is ``block_size``, independent of the stream length. :func:`choose_block_size` picks
``block_size`` near ``sqrt(n) / 2`` and large enough that storing the offsets costs about
0.3 % of the payload or less.

A numpy step costs several microseconds whatever the number of lanes, so a stream with few
lanes (a small stream, or a hostile block size) is decoded block by block in a plain Python
loop instead, at a fraction of a microsecond per symbol. Either way the work is linear in
the number of symbols, whatever the block size. :func:`block_size_range` gives the block
sizes the encoder can choose; the file reader refuses others (they only cost memory: one
block offset and one lane of bookkeeping per block).

The encoder has no per-symbol Python loop either: it looks codes and lengths up in a table
(for small alphabets, of *tuples* of 2 to 4 consecutive symbols at once), takes a cumulative
sum of lengths to get each code's end bit, and ORs the codes into 64-bit big-endian words with
``np.bitwise_or.reduceat``.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np

from netsqueeze.errors import FormatError

__all__ = [
    "MAX_ALPHABET",
    "MAX_BLOCK_SIZE",
    "MAX_CODE_LENGTH",
    "HuffmanStream",
    "block_size_range",
    "canonical_codes",
    "choose_block_size",
    "entropy_bits",
    "fixed_width",
    "huffman_code_lengths",
    "huffman_decode",
    "huffman_encode",
    "huffman_payload_bits",
    "kraft_sum",
    "pack_fixed",
    "reference_huffman_lengths",
    "symbol_counts",
    "unpack_fixed",
]

#: Longest code length the encoder produces and the decoder accepts. The decoder's table has
#: ``2 ** max(code_lengths)`` entries (at most 65,536 symbols + lengths: ~200 KB).
MAX_CODE_LENGTH = 16
#: Largest alphabet: symbols are in ``[0, 65536)``.
MAX_ALPHABET = 1 << 16
#: Largest block of symbols per decoding lane (bounds the decoder's read-ahead padding).
MAX_BLOCK_SIZE = 1 << 16

# Symbols per encoder chunk: bounds the encoder's temporary memory to a few tens of MB.
_CHUNK = 1 << 18
# Target cost of the block-offset index, as a fraction of the payload.
_INDEX_FRACTION = 0.003
# Guess of the bits stored per block offset (the real width is chosen at write time).
_INDEX_BITS_GUESS = 10
# Below this many lanes the decoder loops in Python over the symbols of each block (about
# 0.3-0.5 us a symbol) instead of taking one numpy step per symbol of a block for all lanes at
# once (about 5-15 us a step): the crossover measured on a loaded 2-core machine is ~30 lanes.
_SERIAL_LANES = 32


# --------------------------------------------------------------------------------------------
# counts, entropy, code lengths
# --------------------------------------------------------------------------------------------


def _as_counts(counts) -> np.ndarray:
    c = np.asarray(counts)
    if c.ndim != 1:
        raise ValueError(f"counts must be 1-D (one count per symbol), got shape {c.shape}")
    if (
        c.size
        and not (np.issubdtype(c.dtype, np.integer) or c.dtype == bool)
        and (not np.all(np.isfinite(c)) or np.any(c != np.floor(c)))
    ):
        raise ValueError("counts must be non-negative integers (occurrences per symbol)")
    c = c.astype(np.int64)
    if c.size and c.min() < 0:
        raise ValueError("counts must be non-negative integers (occurrences per symbol)")
    return c


def entropy_bits(counts) -> float:
    """Shannon bound, in bits, for a stream with these symbol counts.

    Parameters
    ----------
    counts : array_like of shape (alphabet_size,)
        Occurrences of each symbol (non-negative).

    Returns
    -------
    float
        ``sum(-c * log2(c / N))`` over the non-zero counts, ``N = sum(counts)``: no code that
        codes symbols independently with a fixed model can use fewer bits. 0 for an empty
        stream or a stream of a single distinct symbol.
    """
    c = np.asarray(counts, dtype=np.float64).ravel()
    if c.size and (not np.all(np.isfinite(c)) or c.min() < 0):
        raise ValueError("counts must be finite and non-negative")
    c = c[c > 0]
    total = c.sum()
    if c.size <= 1:
        return 0.0
    return max(0.0, float(-(c * np.log2(c / total)).sum()))


def symbol_counts(symbols, alphabet_size: int | None = None) -> np.ndarray:
    """Occurrences of every symbol.

    Parameters
    ----------
    symbols : array_like of int
        The stream (any shape; flattened).
    alphabet_size : int, optional
        Length of the result; default ``max(symbols) + 1``.

    Returns
    -------
    ndarray of shape (alphabet_size,), int64
    """
    s, a = _as_symbols(symbols, alphabet_size)
    if s.size == 0:
        return np.zeros(a, np.int64)
    return _bincount(s, a)


def _two_queue_huffman(weights: list[int]) -> np.ndarray:
    """Huffman code lengths for ``weights`` sorted ascending (two-queue method, O(m))."""
    m = len(weights)
    parent = [0] * (2 * m - 1)
    node_w: list[int] = []
    i = j = 0
    for k in range(m - 1):
        picked = []
        for _ in range(2):
            # prefer a leaf on ties: gives the code of least maximum length among optimal ones
            if i < m and (j >= len(node_w) or weights[i] <= node_w[j]):
                picked.append((weights[i], i))
                i += 1
            else:
                picked.append((node_w[j], m + j))
                j += 1
        node_w.append(picked[0][0] + picked[1][0])
        parent[picked[0][1]] = m + k
        parent[picked[1][1]] = m + k
    depth = [0] * (2 * m - 1)
    for x in range(2 * m - 3, m - 1, -1):  # internal nodes, root (2m-2) has depth 0
        depth[x] = depth[parent[x]] + 1
    par = np.asarray(parent[:m], dtype=np.int64)
    return np.asarray(depth, dtype=np.int64)[par] + 1


def _package_merge(weights: np.ndarray, max_length: int) -> np.ndarray:
    """Optimal length-limited code lengths (package-merge) for ``weights`` sorted ascending.

    Parameters
    ----------
    weights : ndarray of shape (m,), int64, ascending, ``2 <= m <= 2 ** max_length``
    max_length : int

    Returns
    -------
    ndarray of shape (m,), int64
        Code lengths (non-increasing), ``sum(2 ** -lengths) == 1``.
    """
    m = weights.size
    levels = []  # per level: (is_leaf mask, leaf ids) of the merged list, in merged order
    prev = None
    for _ in range(max_length):
        if prev is None:
            items = weights
            is_leaf = np.ones(m, bool)
            ids = np.arange(m)
        else:
            npk = prev.size // 2
            packages = prev[0 : 2 * npk : 2] + prev[1 : 2 * npk : 2]
            cat = np.concatenate([weights, packages])
            order = np.argsort(cat, kind="stable")  # leaves before packages on ties
            items = cat[order]
            is_leaf = order < m
            ids = order
        levels.append((is_leaf, ids))
        prev = items
    lengths = np.zeros(m, np.int64)
    take = 2 * m - 2
    for is_leaf, ids in reversed(levels):
        leaf = is_leaf[:take]
        np.add.at(lengths, ids[:take][leaf], 1)
        take = 2 * int(take - np.count_nonzero(leaf))
        if take == 0:
            break
    return lengths


def huffman_code_lengths(counts, *, max_length: int = MAX_CODE_LENGTH) -> np.ndarray:
    """Optimal prefix-code lengths for these counts, limited to ``max_length`` bits.

    Parameters
    ----------
    counts : array_like of shape (alphabet_size,)
        Occurrences of each symbol (non-negative integers).
    max_length : int, default MAX_CODE_LENGTH
        Longest allowed code, ``1 <= max_length <= MAX_CODE_LENGTH``. The number of used
        symbols must be at most ``2 ** max_length``.

    Returns
    -------
    ndarray of shape (alphabet_size,), uint8
        0 for unused symbols. With two or more used symbols the lengths satisfy Kraft's
        equality ``sum(2 ** -l) == 1``; a single used symbol gets length 1 (code ``0``).
        Plain Huffman lengths when they fit in ``max_length``; otherwise the optimal
        length-limited lengths (package-merge).
    """
    c = _as_counts(counts)
    if not 1 <= int(max_length) <= MAX_CODE_LENGTH:
        raise ValueError(f"max_length must be in 1..{MAX_CODE_LENGTH}, got {max_length}")
    if c.size > MAX_ALPHABET:
        raise ValueError(f"alphabet of {c.size} symbols is larger than {MAX_ALPHABET}")
    lengths = np.zeros(c.size, np.uint8)
    used = np.flatnonzero(c)
    if used.size == 0:
        return lengths
    if used.size == 1:
        lengths[used] = 1
        return lengths
    if used.size > (1 << max_length):
        raise ValueError(
            f"{used.size} used symbols cannot be coded with codes of at most {max_length} bits; "
            f"raise max_length to at least {math.ceil(math.log2(used.size))}"
        )
    order = np.argsort(c[used], kind="stable")
    w = c[used][order]
    lens = _two_queue_huffman(w.tolist())
    if lens.max() > max_length:
        lens = _package_merge(w, max_length)
    lengths[used[order]] = lens
    return lengths


def reference_huffman_lengths(counts) -> np.ndarray:
    """Textbook Huffman code lengths (heapq, no length limit), for testing.

    Parameters
    ----------
    counts : array_like of shape (alphabet_size,)

    Returns
    -------
    ndarray of shape (alphabet_size,), int64
        0 for unused symbols; 1 for a single used symbol.
    """
    c = _as_counts(counts)
    lengths = np.zeros(c.size, np.int64)
    used = np.flatnonzero(c)
    if used.size == 1:
        lengths[used] = 1
    if used.size <= 1:
        return lengths
    heap = [(int(c[s]), k, [int(s)]) for k, s in enumerate(used)]
    heapq.heapify(heap)
    tie = len(heap)
    while len(heap) > 1:
        wa, _, sa = heapq.heappop(heap)
        wb, _, sb = heapq.heappop(heap)
        for s in sa + sb:
            lengths[s] += 1
        heapq.heappush(heap, (wa + wb, tie, sa + sb))
        tie += 1
    return lengths


def _check_lengths(code_lengths, *, error=ValueError) -> np.ndarray:
    lengths = np.asarray(code_lengths)
    if lengths.ndim != 1 or lengths.size > MAX_ALPHABET:
        raise error(f"code lengths must be 1-D with at most {MAX_ALPHABET} entries")
    if lengths.size and not np.issubdtype(lengths.dtype, np.integer):
        raise error("code lengths must be integers")
    if lengths.size and (lengths.min() < 0 or lengths.max() > MAX_CODE_LENGTH):
        raise error(f"code lengths must be in 0..{MAX_CODE_LENGTH}")
    return lengths.astype(np.uint8)


def kraft_sum(code_lengths) -> float:
    """``sum(2 ** -l)`` over the non-zero code lengths: 1 for a complete prefix code.

    Parameters
    ----------
    code_lengths : array_like of shape (alphabet_size,)

    Returns
    -------
    float
        Exact for lengths up to 52 bits. A prefix code exists iff the sum is at most 1.
    """
    lengths = np.asarray(code_lengths, dtype=np.int64)
    used = lengths[lengths > 0]
    return float(np.ldexp(1.0, -used).sum()) if used.size else 0.0


def _kraft_units(lengths: np.ndarray) -> int:
    """Kraft sum scaled by ``2 ** MAX_CODE_LENGTH`` (exact integer)."""
    used = lengths[lengths > 0].astype(np.int64)
    return int((np.int64(1) << (MAX_CODE_LENGTH - used)).sum())


def canonical_codes(code_lengths) -> np.ndarray:
    """Canonical codes (DEFLATE convention) for these code lengths.

    Parameters
    ----------
    code_lengths : array_like of shape (alphabet_size,)
        0 for unused symbols; at most :data:`MAX_CODE_LENGTH`; Kraft sum at most 1.

    Returns
    -------
    ndarray of shape (alphabet_size,), uint32
        ``codes[s]`` holds the ``code_lengths[s]`` low bits of symbol ``s``'s code (MSB
        first); 0 for unused symbols. Within one length, codes increase with the symbol;
        every code of length ``l`` is smaller, as a bit string, than every longer code.
    """
    lengths = _check_lengths(code_lengths)
    if _kraft_units(lengths) > (1 << MAX_CODE_LENGTH):
        raise ValueError("code lengths violate Kraft's inequality: no prefix code exists")
    codes = np.zeros(lengths.size, np.uint32)
    if not lengths.any():
        return codes
    bl_count = np.bincount(lengths, minlength=MAX_CODE_LENGTH + 1)
    bl_count[0] = 0
    next_code = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    code = 0
    for bits in range(1, MAX_CODE_LENGTH + 1):
        code = (code + int(bl_count[bits - 1])) << 1
        next_code[bits] = code
    used = np.flatnonzero(lengths)
    order = used[np.argsort(lengths[used], kind="stable")]  # by (length, symbol)
    lo = lengths[order].astype(np.int64)
    first = np.searchsorted(lo, lo, side="left")  # index of the first code of its length
    rank = np.arange(order.size) - first
    codes[order] = (next_code[lo] + rank).astype(np.uint32)
    return codes


def huffman_payload_bits(counts, code_lengths) -> int:
    """Exact payload size in bits, ``sum(counts * code_lengths)``.

    Parameters
    ----------
    counts, code_lengths : array_like of shape (alphabet_size,)
    """
    c = _as_counts(counts)
    lengths = np.asarray(code_lengths, dtype=np.int64)
    if lengths.shape != c.shape:
        raise ValueError("counts and code_lengths must have the same shape")
    return int((c * lengths).sum())


def fixed_width(alphabet_size: int) -> int:
    """Bits per symbol of the fixed-width code for this alphabet: ``max(1, ceil(log2 a))``."""
    a = int(alphabet_size)
    if not 1 <= a <= MAX_ALPHABET:
        raise ValueError(f"alphabet_size must be in 1..{MAX_ALPHABET}, got {a}")
    return max(1, (a - 1).bit_length())


def choose_block_size(n_symbols: int, payload_bits: int) -> int:
    """Symbols per decoding lane for a Huffman stream.

    The decoder runs ``block_size`` numpy steps over ``n / block_size`` lanes, so its time is
    about ``block_size * (per-call overhead) + n * (per-element cost)``: about
    ``sqrt(n) / 2`` balances the two on large streams. The block-offset index costs about 10
    bits a block; the block size is raised until that is at most ~0.3 % of the payload.

    Parameters
    ----------
    n_symbols : int
    payload_bits : int

    Returns
    -------
    int
        ``1 <= block_size <= min(max(1, n_symbols), MAX_BLOCK_SIZE)``.
    """
    n = int(n_symbols)
    if n <= 0:
        return 1
    avg = max(1.0, payload_bits / n)
    for_index = _for_index(avg)
    for_speed = math.ceil(0.5 * math.sqrt(n))
    return max(1, min(max(for_index, for_speed), n, MAX_BLOCK_SIZE))


def _for_index(avg_bits: float) -> int:
    """Smallest block size whose offsets cost ~_INDEX_FRACTION of the payload."""
    return math.ceil(_INDEX_BITS_GUESS / (_INDEX_FRACTION * avg_bits))


def _round_block_size(block_size: int, n_symbols: int, group: int) -> int:
    """The block size rounded up to a multiple of the encoder's group of symbols."""
    if block_size < n_symbols and block_size % group:
        block_size += group - block_size % group
        if block_size > MAX_BLOCK_SIZE:
            block_size -= group
    return block_size


def block_size_range(n_symbols: int) -> tuple[int, int]:
    """Block sizes the encoder can choose for a stream of ``n_symbols`` symbols.

    :func:`choose_block_size` over every payload length the stream can have (1 to
    :data:`MAX_CODE_LENGTH` bits a symbol), rounded as :func:`huffman_encode` rounds it (up to
    a multiple of 2, 3 or 4 symbols). The ``.nsq`` reader refuses a block size outside this
    range: a tiny block size costs one block offset and one decoding lane of bookkeeping per
    block (one per symbol at block size 1), which a file does not pay for in bytes.

    Parameters
    ----------
    n_symbols : int

    Returns
    -------
    (lo, hi) : tuple of int
        ``lo = min(n, max(209, ceil(sqrt(n) / 2)), MAX_BLOCK_SIZE - 3)`` and
        ``hi = min(max(3334, ceil(sqrt(n) / 2)) + 3, n + 3, MAX_BLOCK_SIZE)``; 209 and 3334
        are the block sizes whose offsets cost ~0.3 % of a payload of 16 and of 1 bit a
        symbol. ``(1, MAX_BLOCK_SIZE)`` for an empty stream (no block is decoded).
    """
    n = int(n_symbols)
    if n <= 0:
        return 1, MAX_BLOCK_SIZE
    speed = math.ceil(0.5 * math.sqrt(n))
    lo = min(max(_for_index(float(MAX_CODE_LENGTH)), speed), n, MAX_BLOCK_SIZE - 3)
    hi = min(max(_for_index(1.0), speed) + 3, n + 3, MAX_BLOCK_SIZE)
    return max(1, lo), hi


# --------------------------------------------------------------------------------------------
# bit packing
# --------------------------------------------------------------------------------------------


def _as_symbols(symbols, alphabet_size: int | None) -> tuple[np.ndarray, int]:
    """Validate a symbol stream; return it flattened as uint8/uint16 and the alphabet size."""
    s = np.asarray(symbols)
    if s.size and not (np.issubdtype(s.dtype, np.integer) or s.dtype == bool):
        raise ValueError(f"symbols must be integers, got dtype {s.dtype}")
    s = s.reshape(-1)
    if alphabet_size is not None:
        a = int(alphabet_size)
        if not 1 <= a <= MAX_ALPHABET:
            raise ValueError(f"alphabet_size must be in 1..{MAX_ALPHABET}, got {a}")
    if s.size:
        lo, hi = int(s.min()), int(s.max())
        if lo < 0:
            raise ValueError(f"symbols must be non-negative, found {lo}")
        if alphabet_size is None:
            a = hi + 1
            if a > MAX_ALPHABET:
                raise ValueError(f"symbol {hi} is outside the largest alphabet ({MAX_ALPHABET})")
        elif hi >= a:
            raise ValueError(f"symbol {hi} is outside the alphabet [0, {a}); raise alphabet_size")
    elif alphabet_size is None:
        a = 1
    dt = np.uint8 if a <= 256 else np.uint16
    if s.dtype != dt:
        s = s.astype(dt)
    return s, a


def _group_size(alphabet_size: int) -> int:
    """How many consecutive symbols the encoder codes with one table lookup.

    At most 4, so that a tuple's code (4 x 16 bits) fits in a 64-bit word, and the tuple
    table has at most 65,536 entries.
    """
    k = 1
    while k < 4 and alphabet_size ** (k + 1) <= (1 << 16):
        k += 1
    return k


def _group_tables(codes: np.ndarray, lengths: np.ndarray, k: int):
    """Code and length tables for k-tuples of symbols (index = base-a digits, first = high)."""
    c = codes.astype(np.uint64)
    ln = lengths.astype(np.uint64)
    gc, gl = c, ln
    for _ in range(k - 1):
        gc = ((gc[:, None] << ln[None, :]) | c[None, :]).ravel()
        gl = (gl[:, None] + ln[None, :]).ravel()
    return gc, gl.astype(np.uint8)  # small length table: fewer cache misses


def _group_index(s: np.ndarray, a: int, k: int) -> np.ndarray:
    m = s.size // k
    if k == 1:
        return s
    gi = s[0 : m * k : k].astype(np.uint32 if a**k > (1 << 16) else np.uint16)
    for j in range(1, k):
        gi *= a
        gi += s[j : m * k : k]
    return gi


def _pack_into(words, gi, gcode, glen, base: int, want=None):
    """OR the codes of ``gi`` into ``words`` starting at bit ``base``.

    Parameters
    ----------
    words : ndarray of uint64 (native values; the first bit is the MSB of words[0])
    gi : ndarray of shape (m,)
        Table indices.
    gcode : ndarray of uint64
        Code table.
    glen : ndarray of uint8
        Length table; every length is in 1..64.
    base : int
        Bit offset of the first code.
    want : ndarray of int64, optional
        Sorted indices into ``gi`` whose end bit is wanted.

    Returns
    -------
    end : int
        Bit offset after the last code.
    ends : ndarray of int64
        End bits at ``want``.
    """
    got = []
    u63 = np.uint64(63)
    u1 = np.uint64(1)
    u6 = np.uint64(6)
    for lo_i in range(0, gi.size, _CHUNK):
        g = gi[lo_i : lo_i + _CHUNK].astype(np.intp)  # one conversion for both lookups
        e = np.cumsum(glen.take(g, mode="wrap"), dtype=np.uint64)
        e += np.uint64(base)
        c = gcode.take(g, mode="wrap")  # indices are in range: "wrap" skips out= buffering
        r = np.negative(e)
        r &= u63  # bits left free in the word where the code ends
        lo_part = c << r
        we0 = int((e[0] - u1) >> u6)
        we1 = int((e[-1] - u1) >> u6)
        q = np.arange(we0, we1 + 1, dtype=np.uint64)
        q <<= u6
        q += u1
        starts = np.searchsorted(e, q)  # first code ending in each word
        words[we0 : we1 + 1] |= np.bitwise_or.reduceat(lo_part, starts)
        hi = (c[starts] >> u1) >> (u63 - r[starts])  # spill of that code into the word before
        if we0 == 0:
            words[0:we1] |= hi[1:]
        else:
            words[we0 - 1 : we1] |= hi
        if want is not None:
            sel = want[(want >= lo_i) & (want < lo_i + g.size)] - lo_i
            got.append(e[sel].astype(np.int64))
        base = int(e[-1])
    ends = np.concatenate(got) if got else np.zeros(0, np.int64)
    return base, ends


def _bincount(x: np.ndarray, size: int) -> np.ndarray:
    """np.bincount in cache-sized chunks (its conversion to intp stays in cache)."""
    if x.size <= _CHUNK:
        return np.bincount(x, minlength=size).astype(np.int64)
    counts = np.zeros(size, np.int64)
    for lo in range(0, x.size, _CHUNK):
        counts += np.bincount(x[lo : lo + _CHUNK], minlength=size)
    return counts


def _counts_and_groups(s: np.ndarray, a: int):
    """Symbol counts and the tuple indices of ``s`` (one pass of bincount over the tuples)."""
    k = _group_size(a)
    m = s.size // k
    gi = _group_index(s, a, k)
    if k == 1:
        counts = _bincount(gi, a)
    else:
        joint = _bincount(gi, a**k).reshape((a,) * k)
        counts = np.zeros(a, np.int64)
        for ax in range(k):
            counts += joint.sum(axis=tuple(x for x in range(k) if x != ax))
        if s.size > m * k:
            counts += np.bincount(s[m * k :], minlength=a)
    return counts, gi, k


def _pack_symbols(s, gi, k, a, codes, lengths, total_bits: int, want_symbol_ends=None):
    """Pack a whole stream; return (payload bytes, end bits at symbol indices ``want``)."""
    nwords = (total_bits + 63) // 64
    words = np.zeros(nwords + 1, np.uint64)
    m = s.size // k
    want_g = None
    if want_symbol_ends is not None:
        if k > 1 and np.any(want_symbol_ends % k):  # pragma: no cover - internal consistency
            raise AssertionError("block boundaries must fall on group boundaries")
        want_g = want_symbol_ends // k - 1
    ends = np.zeros(0, np.int64)
    end = 0
    if m:
        gcode, glen = _group_tables(codes, lengths, k)
        end, ends = _pack_into(words, gi, gcode, glen, 0, want_g)
    if s.size > m * k:
        end, _ = _pack_into(
            words, s[m * k :], codes.astype(np.uint64), lengths.astype(np.uint8), end
        )
    if end != total_bits:  # pragma: no cover - internal consistency
        raise AssertionError("bit count mismatch while packing")
    nbytes = (total_bits + 7) // 8
    payload = words[:nwords].astype(">u8").tobytes()[:nbytes]
    return payload, ends


def pack_fixed(symbols, width: int) -> bytes:
    """Pack symbols into ``width`` bits each, MSB first.

    Parameters
    ----------
    symbols : array_like of int, values in ``[0, 2 ** width)``
    width : int, 1..16

    Returns
    -------
    bytes
        ``ceil(n * width / 8)`` bytes; the last byte is padded with zero bits.
    """
    width = int(width)
    if not 1 <= width <= 16:
        raise ValueError(f"width must be in 1..16 bits, got {width}")
    s, a = _as_symbols(symbols, 1 << width)
    if s.size == 0:
        return b""
    if width == 8:
        return s.astype(np.uint8).tobytes()
    if width == 16:
        return s.astype(">u2").tobytes()
    codes = np.arange(a, dtype=np.uint32)
    lengths = np.full(a, width, np.uint8)
    k = _group_size(a)
    payload, _ = _pack_symbols(s, _group_index(s, a, k), k, a, codes, lengths, s.size * width)
    return payload


def _windows(payload, pad: int) -> np.ndarray:
    """Big-endian 32-bit window starting at every byte of ``payload`` (zero padded).

    Returns
    -------
    ndarray of shape (len(payload) + pad + 1,), uint32
    """
    buf = np.zeros(len(payload) + pad + 4, np.uint8)
    buf[: len(payload)] = np.frombuffer(payload, np.uint8)
    # overlapping unaligned big-endian view (stride 1 byte), converted in one pass
    view = np.ndarray(shape=(len(payload) + pad + 1,), dtype=">u4", buffer=buf, strides=(1,))
    return view.astype(np.uint32)


def _check_padding(payload, n_bits: int, what: str) -> None:
    if len(payload) != (n_bits + 7) // 8:
        raise FormatError(
            f"{what}: payload has {len(payload)} bytes but {n_bits} bits need {(n_bits + 7) // 8}"
        )
    spare = -n_bits % 8
    if spare and payload[-1] & ((1 << spare) - 1):
        raise FormatError(f"{what}: padding bits after the last symbol are not zero")


def unpack_fixed(payload, width: int, n_symbols: int) -> np.ndarray:
    """Inverse of :func:`pack_fixed`.

    Parameters
    ----------
    payload : bytes-like of exactly ``ceil(n_symbols * width / 8)`` bytes
    width : int, 1..16
    n_symbols : int

    Returns
    -------
    ndarray of shape (n_symbols,), uint8 if ``width <= 8`` else uint16

    Raises
    ------
    FormatError
        When the payload length does not match or padding bits are not zero.
    """
    width = int(width)
    n = int(n_symbols)
    if not 1 <= width <= 16:
        raise FormatError(f"fixed-width stream: width {width} is outside 1..16 bits")
    if n < 0:
        raise FormatError(f"fixed-width stream: negative symbol count {n}")
    _check_padding(payload, n * width, "fixed-width stream")
    dt = np.uint8 if width <= 8 else np.uint16
    if n == 0:
        return np.zeros(0, dt)
    if width == 8:
        return np.frombuffer(payload, np.uint8).copy()
    if width == 16:
        return np.frombuffer(payload, ">u2").astype(np.uint16)
    win = _windows(payload, 0)
    out = np.empty(n, dt)
    shift = np.uint32(32 - width)
    for lo in range(0, n, _CHUNK):
        pos = np.arange(lo, min(n, lo + _CHUNK), dtype=np.int64) * width
        v = win[pos >> 3]
        v <<= (pos & 7).astype(np.uint32)
        v >>= shift
        out[lo : lo + pos.size] = v
    return out


# --------------------------------------------------------------------------------------------
# Huffman streams
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class HuffmanStream:
    """A canonical-Huffman-coded stream and everything its decoder needs.

    Attributes
    ----------
    n_symbols : int
        Number of coded symbols.
    code_lengths : ndarray of shape (alphabet_size,), uint8
        Code length of every symbol, 0 for unused ones. The codes are canonical.
    block_size : int
        Symbols per decoding lane (the last block may be shorter).
    block_starts : ndarray of shape (n_blocks,), int64
        Bit offset at which each block starts; ``block_starts[0] == 0``;
        ``n_blocks = ceil(n_symbols / block_size)`` (0 for an empty stream).
    n_bits : int
        Payload length in bits.
    payload : bytes
        ``ceil(n_bits / 8)`` bytes, MSB first, zero padded.
    """

    n_symbols: int
    code_lengths: np.ndarray
    block_size: int
    block_starts: np.ndarray
    n_bits: int
    payload: bytes

    @property
    def alphabet_size(self) -> int:
        """Number of entries in :attr:`code_lengths`."""
        return int(self.code_lengths.size)

    @property
    def n_blocks(self) -> int:
        """Number of decoding lanes."""
        return int(self.block_starts.size)


def huffman_encode(
    symbols,
    alphabet_size: int | None = None,
    *,
    code_lengths=None,
    block_size: int | None = None,
    max_length: int = MAX_CODE_LENGTH,
) -> HuffmanStream:
    """Canonical-Huffman-code a symbol stream.

    Parameters
    ----------
    symbols : array_like of int, any shape (flattened)
        Values in ``[0, alphabet_size)``.
    alphabet_size : int, optional
        Default ``max(symbols) + 1`` (1 for an empty stream).
    code_lengths : array_like of shape (alphabet_size,), optional
        Code lengths to use (e.g. shared between streams); default: Huffman lengths of this
        stream's counts (:func:`huffman_code_lengths`). Every occurring symbol needs a
        non-zero length, and the code must be complete (Kraft sum 1) or a single 1-bit code.
    block_size : int, optional
        Symbols per decoding lane; default :func:`choose_block_size`. For small alphabets the
        encoder rounds it up to a multiple of 2, 3 or 4 (symbols coded per table lookup).
    max_length : int, default MAX_CODE_LENGTH
        Longest code when lengths are computed here.

    Returns
    -------
    HuffmanStream
    """
    s, a = _as_symbols(symbols, alphabet_size)
    n = int(s.size)
    counts, gi, k = _counts_and_groups(s, a)
    if code_lengths is None:
        lengths = huffman_code_lengths(counts, max_length=max_length)
    else:
        lengths = _check_lengths(code_lengths)
        if lengths.size != a:
            raise ValueError(
                f"code_lengths has {lengths.size} entries but the alphabet has {a} symbols"
            )
        if np.any((counts > 0) & (lengths == 0)):
            bad = int(np.flatnonzero((counts > 0) & (lengths == 0))[0])
            raise ValueError(f"symbol {bad} occurs but has code length 0")
        kraft = _kraft_units(lengths)
        single = np.count_nonzero(lengths) == 1 and lengths.max() == 1
        if kraft != (1 << MAX_CODE_LENGTH) and not single:
            raise ValueError(
                "code lengths must form a complete prefix code (Kraft sum exactly 1), or be a "
                "single length-1 code; use huffman_code_lengths()"
            )
    total = int((counts * lengths.astype(np.int64)).sum())
    if n == 0:
        return HuffmanStream(0, lengths, 1, np.zeros(0, np.int64), 0, b"")
    codes = canonical_codes(lengths)
    if block_size is None:
        block_size = choose_block_size(n, total)
    block_size = int(block_size)
    if not 1 <= block_size <= MAX_BLOCK_SIZE:
        raise ValueError(f"block_size must be in 1..{MAX_BLOCK_SIZE}, got {block_size}")
    block_size = _round_block_size(block_size, n, k)
    n_blocks = -(-n // block_size)
    want = np.arange(1, n_blocks, dtype=np.int64) * block_size
    payload, ends = _pack_symbols(s, gi, k, a, codes, lengths, total, want)
    starts = np.concatenate([np.zeros(1, np.int64), ends])
    return HuffmanStream(n, lengths, block_size, starts, total, payload)


def _decode_table(lengths: np.ndarray):
    """(symbol table, length table, table bits) for a complete canonical code."""
    max_len = int(lengths.max())
    used = np.flatnonzero(lengths)
    order = used[np.argsort(lengths[used], kind="stable")]
    reps = np.int64(1) << (max_len - lengths[order].astype(np.int64))
    sym_dt = np.uint8 if lengths.size <= 256 else np.uint16
    sym_tab = np.repeat(order.astype(sym_dt), reps)
    len_tab = np.repeat(lengths[order], reps)
    return sym_tab, len_tab, max_len


def huffman_decode(stream: HuffmanStream) -> np.ndarray:
    """Decode a :class:`HuffmanStream`.

    Parameters
    ----------
    stream : HuffmanStream

    Returns
    -------
    ndarray of shape (n_symbols,), uint8 if ``alphabet_size <= 256`` else uint16

    Raises
    ------
    FormatError
        When the stream is inconsistent: invalid code lengths (over- or under-subscribed),
        payload length or block offsets that do not match the symbol count, non-zero padding,
        or a block that does not end exactly where the next one starts.
    """
    what = "Huffman stream"
    lengths = _check_lengths(stream.code_lengths, error=FormatError)
    n = int(stream.n_symbols)
    n_bits = int(stream.n_bits)
    payload = stream.payload
    a = lengths.size
    sym_dt = np.uint8 if a <= 256 else np.uint16
    if n < 0 or n_bits < 0:
        raise FormatError(f"{what}: negative symbol or bit count")
    _check_padding(payload, n_bits, what)
    starts = np.asarray(stream.block_starts, dtype=np.int64)
    if n == 0:
        if n_bits or starts.size:
            raise FormatError(f"{what}: an empty stream has a payload or blocks")
        return np.zeros(0, sym_dt)
    used = np.flatnonzero(lengths)
    if used.size == 0:
        raise FormatError(f"{what}: {n} symbols but no symbol has a code")
    min_len = int(lengths[used].min())
    max_len = int(lengths[used].max())
    if not n * min_len <= n_bits <= n * max_len:
        raise FormatError(
            f"{what}: {n} symbols of {min_len}..{max_len} bits cannot fill {n_bits} bits"
        )
    kraft = _kraft_units(lengths)
    if kraft > (1 << MAX_CODE_LENGTH):
        raise FormatError(f"{what}: code lengths are over-subscribed (Kraft sum > 1)")
    if kraft < (1 << MAX_CODE_LENGTH):
        if used.size == 1 and max_len == 1:
            if n_bits != n or any(payload):
                raise FormatError(f"{what}: a one-symbol code must have n zero bits of payload")
            return np.full(n, used[0], sym_dt)
        raise FormatError(f"{what}: code lengths are incomplete (Kraft sum < 1)")
    bs = int(stream.block_size)
    if not 1 <= bs <= MAX_BLOCK_SIZE:
        raise FormatError(f"{what}: block size {bs} is outside 1..{MAX_BLOCK_SIZE}")
    n_blocks = -(-n // bs)
    if starts.shape != (n_blocks,) or starts[0] != 0:
        raise FormatError(f"{what}: expected {n_blocks} block offsets starting at 0")
    ends = np.append(starts[1:], n_bits)
    sizes = ends - starts
    last = n - (n_blocks - 1) * bs
    if np.any(sizes[:-1] < bs * min_len) or np.any(sizes[:-1] > bs * max_len):
        raise FormatError(f"{what}: a block offset is inconsistent with the code lengths")
    if not last * min_len <= sizes[-1] <= last * max_len:
        raise FormatError(f"{what}: the last block offset is inconsistent with the code lengths")
    sym_tab, len_tab, tbits = _decode_table(lengths)
    win = _windows(payload, (bs * tbits) // 8 + 8)
    if n_blocks < _SERIAL_LANES:
        return _decode_serial(win, sym_tab, len_tab, tbits, starts, ends, bs, n, what)
    len_tab = len_tab.astype(np.int64)
    shift = np.uint32(32 - tbits)
    lanes = n_blocks
    pos = starts.copy()
    # work arrays; table indices are intp so that take() needs no conversion
    byte = np.empty(lanes, np.int64)
    sh = np.empty(lanes, np.uint32)
    v = np.empty(lanes, np.uint32)
    vi = np.empty(lanes, np.int64)
    step_len = np.empty(lanes, np.int64)
    out = np.empty((bs, lanes), sym_dt)
    for t in range(bs if lanes > 1 else last):
        k = lanes if t < last else lanes - 1  # the last block may be shorter
        if k < lanes:
            pos_k, byte_k, sh_k, v_k, vi_k, l_k = (
                pos[:k],
                byte[:k],
                sh[:k],
                v[:k],
                vi[:k],
                step_len[:k],
            )
        else:
            pos_k, byte_k, sh_k, v_k, vi_k, l_k = pos, byte, sh, v, vi, step_len
        np.right_shift(pos_k, 3, out=byte_k)
        np.bitwise_and(pos_k, 7, out=sh_k, casting="unsafe")
        win.take(byte_k, out=v_k, mode="wrap")  # in range (padded): no out= buffering
        np.left_shift(v_k, sh_k, out=v_k)  # uint32: drops the bits before the position
        np.right_shift(v_k, shift, out=vi_k)  # the next tbits bits
        sym_tab.take(vi_k, out=out[t, :k], mode="wrap")
        len_tab.take(vi_k, out=l_k, mode="wrap")
        np.add(pos_k, l_k, out=pos_k)
    if not np.array_equal(pos, ends):
        raise FormatError(f"{what}: decoded blocks do not end at the recorded offsets")
    return out.T.ravel()[:n]


def _decode_serial(win, sym_tab, len_tab, tbits, starts, ends, bs, n, what) -> np.ndarray:
    """Decode block by block with a Python loop over symbols (few lanes: cheaper than numpy).

    Reads the same padded windows as the lock-step decoder: a block that runs past its end
    (a corrupt stream) reads zero padding, never outside ``win``.
    """
    syms = sym_tab.tolist()
    lens = len_tab.tolist()
    shift = 32 - tbits
    mask = 0xFFFFFFFF
    out = np.empty(n, sym_tab.dtype)
    for b in range(starts.size):
        lo = b * bs
        count = min(bs, n - lo)
        start = int(starts[b])
        base = start >> 3
        w = win[base : base + ((start & 7) + count * tbits) // 8 + 1].tolist()
        pos = start & 7
        block = [0] * count
        for i in range(count):
            v = ((w[pos >> 3] << (pos & 7)) & mask) >> shift
            block[i] = syms[v]
            pos += lens[v]
        if (base << 3) + pos != int(ends[b]):
            raise FormatError(f"{what}: decoded blocks do not end at the recorded offsets")
        out[lo : lo + count] = block
    return out
