"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

A write goes to a temporary file ``.NAME.XXXXXXXX.tmp`` beside its target and is renamed over
it. A process killed before the rename leaves that temporary file behind;
:func:`remove_stray_temps` removes such leftovers from a folder (only names of this pattern).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

__all__ = [
    "TEMP_PATTERN",
    "atomic_write_bytes",
    "atomic_write_chunks",
    "atomic_write_json",
    "atomic_write_text",
    "remove_stray_temps",
]

#: Names of the temporary files :func:`atomic_write_bytes` creates: ``.`` + target name + ``.``
#: + the 8 random characters of :func:`tempfile.mkstemp` + ``.tmp``.
TEMP_PATTERN = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> int:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it over ``path``.

    Returns the number of bytes written. The folder is created when missing.
    """
    return atomic_write_chunks(path, (data,))


def atomic_write_chunks(path: str | os.PathLike, chunks: Iterable[bytes]) -> int:
    """:func:`atomic_write_bytes` of the concatenation of ``chunks``, written one at a time.

    Only one chunk is held at a time, so a large file never sits in memory whole. When the
    iterable raises, the temporary file is removed and ``path`` is left as it was.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.", suffix=".tmp")
    n = 0
    try:
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                n += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(p.parent)
    return n


def atomic_write_text(path: str | os.PathLike, text: str) -> int:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> int:
    """Write ``obj`` as indented JSON, atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def remove_stray_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files an interrupted :func:`atomic_write_bytes` left in ``folder``.

    Only regular files directly in ``folder`` whose names match :data:`TEMP_PATTERN` are
    removed; returns them. A missing folder is not an error.
    """
    d = Path(folder)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(d))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if TEMP_PATTERN.match(entry.name) and entry.is_file(follow_symlinks=False):
            p = d / entry.name
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed
