"""Read and write IDX files, the format MNIST and Fashion-MNIST are distributed in.

An IDX file is a 4-byte magic number ``00 00 <type> <ndim>``, then ``ndim`` big-endian
32-bit dimension sizes, then the array's values in C order, big-endian. The files are
usually gzip-compressed; :func:`read_idx` tells the two apart by their first bytes, never by
the file name, so ``train-images-idx3-ubyte`` holding gzip data still reads.

Every way a file can be wrong (too short, trailing bytes, wrong magic, unknown type code,
corrupt gzip stream) raises :class:`netsqueeze.FormatError` with a message naming the file,
the problem and the fix.
"""

from __future__ import annotations

import gzip
import os
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np

from netsqueeze.errors import FormatError

__all__ = ["IDX_DTYPES", "is_gzip", "read_idx", "write_idx"]

#: IDX type code -> dtype of the values as stored (big-endian for multi-byte types).
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODE_OF_KIND = {(dt.kind, dt.itemsize): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
# No real IDX data set comes near this; a header claiming more is corrupt, and refusing it
# early avoids trying to allocate terabytes.
_MAX_DATA_BYTES = 1 << 40
_FIX = "delete the file and get it again (download it again or copy a good one)"


def is_gzip(path: str | os.PathLike) -> bool:
    """Return True when the file starts with the gzip magic bytes ``1f 8b``."""
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def _fail(path: Path, problem: str, fix: str = _FIX) -> FormatError:
    return FormatError(f"{path}: {problem}; {fix}")


def _read_full(f, n: int) -> bytes:
    chunks = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _readinto_full(f, buf: np.ndarray) -> int:
    view = memoryview(buf).cast("B")
    got = 0
    while got < len(view):
        n = f.readinto(view[got:])
        if not n:
            break
        got += n
    return got


def _count_rest(f) -> int:
    extra = 0
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            return extra
        extra += len(chunk)


def _parse_header(f, path: Path, what: str) -> tuple[np.dtype, tuple[int, ...], int]:
    magic = _read_full(f, 4)
    if len(magic) < 4:
        raise _fail(path, f"{what} is too short to be an IDX file ({len(magic)} bytes)")
    if magic[0] != 0 or magic[1] != 0:
        raise _fail(
            path,
            f"{what} is not an IDX file: it starts with {magic.hex(' ')}, "
            "an IDX file starts with 00 00 <type> <ndim>",
        )
    code, ndim = magic[2], magic[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({IDX_DTYPES[c].name})" for c in IDX_DTYPES)
        raise _fail(path, f"{what} has unknown IDX data type code 0x{code:02X} (known: {known})")
    if ndim == 0:
        raise _fail(path, f"{what} has an IDX header with 0 dimensions")
    raw_dims = _read_full(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        raise _fail(
            path,
            f"{what} is truncated inside its header: {ndim} dimensions need {4 * ndim} bytes, "
            f"only {len(raw_dims)} are there",
        )
    dims = struct.unpack(f">{ndim}I", raw_dims)
    dtype = IDX_DTYPES[code]
    nbytes = int(np.prod(dims, dtype=object)) * dtype.itemsize
    if nbytes > _MAX_DATA_BYTES:
        raise _fail(path, f"{what} has a corrupt IDX header: shape {dims} is implausibly large")
    return dtype, dims, nbytes


def _native(arr: np.ndarray) -> np.ndarray:
    if arr.dtype.itemsize > 1 and not arr.dtype.isnative:
        return arr.astype(arr.dtype.newbyteorder("="))
    return arr


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, gzip-compressed or not, into a numpy array.

    Parameters
    ----------
    path : str or path-like
        The file. Compression is detected from its first two bytes (``1f 8b`` is gzip),
        not from its name.

    Returns
    -------
    ndarray of the shape in the header
        A fresh, writable array in native byte order (``uint8`` for MNIST images and labels).

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    netsqueeze.FormatError
        The file is not a valid IDX file: too short, wrong magic, unknown type code,
        data shorter or longer than the header says, or a corrupt gzip stream.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            size = os.fstat(raw.fileno()).st_size
            dtype, dims, nbytes = _parse_header(raw, path, "the file")
            header = raw.tell()
            have = size - header
            if have != nbytes:
                raise _length_error(path, "the file", dims, dtype, nbytes, have)
            buf = np.empty(nbytes, dtype=np.uint8)
            got = _readinto_full(raw, buf)
            if got != nbytes:  # the file shrank while being read
                raise _length_error(path, "the file", dims, dtype, nbytes, got)
            return _native(buf.view(dtype).reshape(dims))
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                what = "the decompressed data"
                dtype, dims, nbytes = _parse_header(f, path, what)
                try:
                    buf = np.empty(nbytes, dtype=np.uint8)
                except MemoryError as e:  # pragma: no cover - depends on the machine
                    raise _fail(
                        path,
                        f"{what} claims an IDX array of shape {dims} ({nbytes:,} bytes), more "
                        "than this machine can hold: the header is probably corrupt",
                    ) from e
                got = _readinto_full(f, buf)
                if got < nbytes:
                    raise _length_error(path, what, dims, dtype, nbytes, got)
                extra = _count_rest(f)
                if extra:
                    raise _length_error(path, what, dims, dtype, nbytes, nbytes + extra)
        except (OSError, EOFError, zlib.error) as e:
            raise _fail(path, f"corrupt or truncated gzip data ({e})") from e
        return _native(buf.view(dtype).reshape(dims))


def _length_error(
    path: Path, what: str, dims: tuple[int, ...], dtype: np.dtype, expected: int, have: int
) -> FormatError:
    shape = "x".join(str(d) for d in dims)
    if have < expected:
        problem = (
            f"{what} is truncated: its IDX header promises a {shape} array of {dtype.name} "
            f"({expected:,} bytes of data) but only {have:,} bytes are there"
        )
    else:
        problem = (
            f"{what} has {have - expected:,} unexpected trailing bytes after the {shape} array "
            f"of {dtype.name} ({expected:,} bytes of data) its IDX header describes"
        )
    return _fail(path, problem)


def _idx_code(dtype: np.dtype) -> int:
    key = (dtype.kind, dtype.itemsize)
    if key not in _CODE_OF_KIND:
        known = ", ".join(IDX_DTYPES[c].newbyteorder("=").name for c in IDX_DTYPES)
        raise ValueError(f"IDX cannot store dtype {dtype}; convert the array to one of: {known}")
    return _CODE_OF_KIND[key]


def write_idx(
    path: str | os.PathLike,
    array: np.ndarray,
    *,
    compress: bool | None = None,
    compresslevel: int = 6,
) -> Path:
    """Write an array as an IDX file, atomically (a temporary file renamed into place).

    Parameters
    ----------
    path : str or path-like
        Where to write. The parent folder must exist.
    array : array_like
        uint8, int8, int16, int32, float32 or float64 values with 1 to 255 dimensions.
    compress : bool, optional
        gzip the file. By default, gzip exactly when ``path`` ends in ``.gz``.
    compresslevel : int, default 6
        gzip level, 1 (fast) to 9 (small).

    Returns
    -------
    Path
        ``path``. The gzip header has no timestamp, so equal arrays give equal files.
    """
    path = Path(path)
    arr = np.asarray(array)
    code = _idx_code(arr.dtype)
    if not 1 <= arr.ndim <= 255:
        raise ValueError(f"IDX stores arrays with 1 to 255 dimensions, got {arr.ndim}")
    if any(d >= 1 << 32 for d in arr.shape):
        raise ValueError(f"IDX dimensions must be below 2**32, got shape {arr.shape}")
    if compress is None:
        compress = path.name.endswith(".gz")
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = np.ascontiguousarray(arr, dtype=IDX_DTYPES[code]).tobytes()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            if compress:
                with gzip.GzipFile(
                    filename="", mode="wb", fileobj=out, compresslevel=compresslevel, mtime=0
                ) as gz:
                    gz.write(header)
                    gz.write(data)
            else:
                out.write(header)
                out.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
