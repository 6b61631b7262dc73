"""Sparse position coding: relative indices with fillers, and CSR for comparison.

Positions are indices into a flattened (C-order) tensor of ``size`` elements.

Relative indices (Han et al., Deep Compression, Sec. 3)
--------------------------------------------------------
The paper stores, for every non-zero weight, the *difference* between its position and the
previous non-zero's position in a ``b``-bit field. A field spans differences 1..``2**b``; when
a difference is larger, a *filler* entry is inserted that advances ``2**b`` positions and
carries a zero weight. Every filler therefore costs a gap field **and** a weight index.

Our variant, used by the ``.nsq`` format, reserves one of the ``2**b`` field values:

* symbol ``s`` in ``1 .. 2**b - 1`` means "the next non-zero is ``s`` positions after the
  previous one" (the first one is relative to position -1);
* symbol ``0`` is a filler meaning "advance ``M = 2**b - 1`` positions, no weight here".

So a filler costs only its gap field: the weight stream has exactly one entry per non-zero.
A difference ``d >= 1`` becomes ``(d - 1) // M`` fillers followed by the symbol
``d - M * ((d - 1) // M)``. When the tensor size is given, fillers are also appended after the
last non-zero until fewer than ``M`` positions remain, so that the stream itself bounds the
tensor size (a reader can reject a shape that the stream cannot produce).

:func:`paper_gap_counts` counts the paper's entries for comparison.

CSR
---
:func:`csr_from_positions` views the tensor as ``(shape[0], prod(shape[1:]))`` rows and stores
a row pointer per row plus a column index per non-zero; :func:`csr_bits` gives its size with
minimal fixed-width fields.
"""

from __future__ import annotations

import math

import numpy as np

from netsqueeze.errors import FormatError

__all__ = [
    "MAX_GAP_BITS",
    "csr_bits",
    "csr_from_positions",
    "csr_to_positions",
    "gap_counts",
    "gap_positions",
    "gap_symbols",
    "max_step",
    "paper_gap_counts",
    "positions_from_mask",
]

#: Widest gap field: symbols stay below 2 ** 16.
MAX_GAP_BITS = 16


def max_step(gap_bits: int) -> int:
    """``M = 2 ** gap_bits - 1``: the largest difference one symbol can express.

    Parameters
    ----------
    gap_bits : int, 1..MAX_GAP_BITS
    """
    b = _check_bits(gap_bits)
    return (1 << b) - 1


def _check_bits(gap_bits) -> int:
    if isinstance(gap_bits, bool) or not isinstance(gap_bits, (int, np.integer)):
        raise TypeError(f"gap_bits must be an integer in 1..{MAX_GAP_BITS}, got {gap_bits!r}")
    b = int(gap_bits)
    if not 1 <= b <= MAX_GAP_BITS:
        raise ValueError(f"gap_bits must be in 1..{MAX_GAP_BITS}, got {b}")
    return b


def positions_from_mask(mask) -> np.ndarray:
    """Flat (C-order) indices of the non-zero entries of ``mask``.

    Parameters
    ----------
    mask : array_like of any shape

    Returns
    -------
    ndarray of shape (nnz,), int64, strictly increasing
    """
    return np.flatnonzero(np.asarray(mask)).astype(np.int64)


def _check_positions(positions, size: int | None) -> np.ndarray:
    p = np.asarray(positions)
    if p.ndim != 1:
        raise ValueError(f"positions must be 1-D flat indices, got shape {p.shape}")
    if p.size and not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"positions must be integers, got dtype {p.dtype}")
    p = p.astype(np.int64)
    if p.size:
        if p[0] < 0:
            raise ValueError(f"positions must be non-negative, found {int(p[0])}")
        if p.size > 1 and np.any(p[1:] <= p[:-1]):
            raise ValueError("positions must be strictly increasing (sorted, no duplicates)")
        if size is not None and p[-1] >= size:
            raise ValueError(f"position {int(p[-1])} is outside a tensor of {size} elements")
    return p


def _check_size(size) -> int | None:
    if size is None:
        return None
    s = int(size)
    if s < 0:
        raise ValueError(f"size must be non-negative, got {s}")
    return s


def gap_counts(positions, *, gap_bits: int, size: int | None = None) -> dict:
    """Counts of our relative-index coding, without building the stream.

    Parameters
    ----------
    positions : array_like of shape (nnz,), strictly increasing flat indices
    gap_bits : int, 1..16
    size : int, optional
        Tensor size; when given, trailing fillers are counted.

    Returns
    -------
    dict
        ``n_nonzero``, ``n_fillers`` (including trailing), ``n_trailing_fillers``,
        ``n_symbols`` (= non-zeros + fillers), ``bits`` (= ``n_symbols * gap_bits``,
        fixed-width), ``max_step``.
    """
    m = max_step(gap_bits)
    size = _check_size(size)
    p = _check_positions(positions, size)
    d = np.diff(p, prepend=-1)
    fillers = int(((d - 1) // m).sum()) if p.size else 0
    last = int(p[-1]) if p.size else -1
    trailing = (size - 1 - last) // m if size is not None else 0
    n_sym = int(p.size) + fillers + trailing
    return {
        "n_nonzero": int(p.size),
        "n_fillers": fillers + trailing,
        "n_trailing_fillers": trailing,
        "n_symbols": n_sym,
        "bits": n_sym * int(gap_bits),
        "max_step": m,
    }


def paper_gap_counts(positions, *, gap_bits: int, index_bits: int = 0) -> dict:
    """Counts of the paper's relative-index scheme (fillers carry a zero weight).

    A ``b``-bit field expresses differences 1..``2**b``; a difference ``d`` needs
    ``(d - 1) // 2**b`` filler entries. Trailing zeros are not represented.

    Parameters
    ----------
    positions : array_like of shape (nnz,), strictly increasing flat indices
    gap_bits : int, 1..16
    index_bits : int, default 0
        Bits of the weight (cluster index) field of each entry.

    Returns
    -------
    dict
        ``n_nonzero``, ``n_fillers``, ``n_entries`` (= non-zeros + fillers),
        ``gap_field_bits`` (= entries * gap_bits), ``index_field_bits``
        (= entries * index_bits), ``bits`` (their sum).
    """
    b = _check_bits(gap_bits)
    if int(index_bits) < 0:
        raise ValueError(f"index_bits must be non-negative, got {index_bits}")
    p = _check_positions(positions, None)
    span = 1 << b
    d = np.diff(p, prepend=-1)
    fillers = int(((d - 1) // span).sum()) if p.size else 0
    entries = int(p.size) + fillers
    return {
        "n_nonzero": int(p.size),
        "n_fillers": fillers,
        "n_entries": entries,
        "gap_field_bits": entries * b,
        "index_field_bits": entries * int(index_bits),
        "bits": entries * (b + int(index_bits)),
    }


def gap_symbols(positions, *, gap_bits: int, size: int | None = None) -> np.ndarray:
    """Positions -> gap symbols (our variant; 0 = filler).

    Parameters
    ----------
    positions : array_like of shape (nnz,), strictly increasing flat indices
    gap_bits : int, 1..16
    size : int, optional
        Tensor size. When given, positions must be below it and trailing fillers are appended
        until fewer than ``2**gap_bits - 1`` positions remain after the last symbol.

    Returns
    -------
    ndarray of shape (n_symbols,), uint8 if ``gap_bits <= 8`` else uint16
        Values in ``[0, 2**gap_bits)``; exactly ``nnz`` of them are non-zero.

    Examples
    --------
    >>> gap_symbols([0, 2, 12], gap_bits=2, size=16)   # M = 3
    array([1, 2, 0, 0, 0, 1, 0], dtype=uint8)
    """
    b = _check_bits(gap_bits)
    m = (1 << b) - 1
    size = _check_size(size)
    p = _check_positions(positions, size)
    dt = np.uint8 if b <= 8 else np.uint16
    d = np.diff(p, prepend=-1)
    f = (d - 1) // m
    last = int(p[-1]) if p.size else -1
    trailing = (size - 1 - last) // m if size is not None else 0
    total = int(p.size) + int(f.sum()) + trailing
    out = np.zeros(total, dt)
    if p.size:
        idx = np.cumsum(f + 1) - 1
        out[idx] = (d - f * m).astype(dt)
    return out


def gap_positions(symbols, *, gap_bits: int, size: int | None = None) -> np.ndarray:
    """Gap symbols -> positions (inverse of :func:`gap_symbols`).

    Parameters
    ----------
    symbols : array_like of shape (n_symbols,), values in ``[0, 2**gap_bits)``
    gap_bits : int, 1..16
    size : int, optional
        Tensor size. When given, the stream must match it exactly as :func:`gap_symbols`
        writes it: every position below ``size`` and fewer than ``2**gap_bits - 1`` positions
        left after the last symbol.

    Returns
    -------
    ndarray of shape (nnz,), int64, strictly increasing

    Raises
    ------
    FormatError
        When a symbol is out of range or the stream does not fit ``size``.
    """
    b = _check_bits(gap_bits)
    m = (1 << b) - 1
    size = _check_size(size)
    s = np.asarray(symbols).reshape(-1)
    if s.size and not np.issubdtype(s.dtype, np.integer):
        raise ValueError(f"symbols must be integers, got dtype {s.dtype}")
    if s.size and (int(s.min()) < 0 or int(s.max()) > m):
        raise FormatError(f"gap stream: a symbol is outside [0, {m}] for {b}-bit gaps")
    fill = s == 0
    cursor = s.astype(np.int64)
    cursor[fill] = m
    np.cumsum(cursor, out=cursor)  # in place: 9 bytes a symbol, not 17
    cursor -= 1
    end = int(cursor[-1]) if s.size else -1
    if size is not None:
        if end >= size:
            raise FormatError(
                f"gap stream reaches position {end} but the tensor has {size} elements"
            )
        if size - 1 - end >= m:
            raise FormatError(
                f"gap stream ends at position {end}, too far before the end of a tensor of "
                f"{size} elements (trailing fillers missing): shape and stream disagree"
            )
    return cursor[~fill]


def _rows_cols(shape) -> tuple[int, int]:
    shape = tuple(int(x) for x in shape)
    if any(x < 0 for x in shape):
        raise ValueError(f"shape must be non-negative, got {shape}")
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return 1, shape[0]
    return shape[0], math.prod(shape[1:])


def csr_from_positions(positions, shape) -> tuple[np.ndarray, np.ndarray]:
    """Compressed sparse rows of a tensor viewed as ``(shape[0], prod(shape[1:]))``.

    Parameters
    ----------
    positions : array_like of shape (nnz,), strictly increasing flat indices
    shape : tuple of int
        Tensor shape (a 0-d or 1-d tensor is one row).

    Returns
    -------
    indptr : ndarray of shape (rows + 1,), int64
        Row ``r`` holds entries ``indptr[r]:indptr[r + 1]``.
    indices : ndarray of shape (nnz,), int64
        Column of each non-zero.
    """
    rows, cols = _rows_cols(shape)
    p = _check_positions(positions, rows * cols)
    r = p // max(cols, 1)
    indptr = np.zeros(rows + 1, np.int64)
    if p.size:
        np.cumsum(np.bincount(r, minlength=rows), out=indptr[1:])
    return indptr, p - r * cols


def csr_to_positions(indptr, indices, shape) -> np.ndarray:
    """Inverse of :func:`csr_from_positions`.

    Parameters
    ----------
    indptr : array_like of shape (rows + 1,)
    indices : array_like of shape (nnz,)
    shape : tuple of int

    Returns
    -------
    ndarray of shape (nnz,), int64
    """
    rows, cols = _rows_cols(shape)
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices, dtype=np.int64)
    if indptr.shape != (rows + 1,) or indptr[0] != 0 or indptr[-1] != indices.size:
        raise ValueError("indptr must have rows + 1 entries from 0 to len(indices)")
    if np.any(np.diff(indptr) < 0) or (
        indices.size and (indices.min() < 0 or indices.max() >= cols)
    ):
        raise ValueError("indptr must be non-decreasing and indices within [0, cols)")
    r = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
    return r * cols + indices


def csr_bits(shape, nnz: int) -> int:
    """Size of CSR with minimal fixed-width fields, in bits.

    ``(rows + 1) * bits(nnz) + nnz * bits(cols - 1)``, where ``bits(x)`` is
    ``max(1, x.bit_length())``, for the tensor viewed as ``(shape[0], prod(shape[1:]))``.

    Parameters
    ----------
    shape : tuple of int
    nnz : int
    """
    rows, cols = _rows_cols(shape)
    nnz = int(nnz)
    if not 0 <= nnz <= rows * cols:
        raise ValueError(f"nnz must be in 0..{rows * cols}, got {nnz}")
    ptr_bits = max(1, nnz.bit_length())
    col_bits = max(1, (cols - 1).bit_length())
    return (rows + 1) * ptr_bits + nnz * col_bits
