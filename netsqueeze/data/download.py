"""Verified, atomic downloads of data set files from a list of mirrors.

Each file is fetched from the first mirror that serves it, streamed into a temporary file
beside its destination while its MD5 is computed, checked against the expected checksum,
and only then renamed into place: an interrupted or corrupt download never leaves a file
under the final name.

Without a network this fails within seconds: every connection attempt is bounded by a
short timeout (name resolution included), and a mirror that cannot be reached is not tried
again for the remaining files.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from netsqueeze import __version__
from netsqueeze.errors import FormatError

__all__ = [
    "DEFAULT_TIMEOUT",
    "DownloadError",
    "download_files",
    "env_mirrors",
    "env_timeout",
    "md5_file",
]

#: Seconds allowed for connecting to a mirror and for each read once connected
#: (override with ``$NETSQUEEZE_DOWNLOAD_TIMEOUT``).
DEFAULT_TIMEOUT = 5.0
_CHUNK = 1 << 16


class DownloadError(OSError):
    """No mirror could deliver a file (no network, mirrors down, files missing there)."""


def env_timeout() -> float:
    """The download timeout in seconds: ``$NETSQUEEZE_DOWNLOAD_TIMEOUT`` or the default."""
    value = os.environ.get("NETSQUEEZE_DOWNLOAD_TIMEOUT", "").strip()
    if not value:
        return DEFAULT_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(
            f"NETSQUEEZE_DOWNLOAD_TIMEOUT={value!r} is not a positive number of seconds"
        )
    return seconds


def env_mirrors(variable: str) -> tuple[str, ...] | None:
    """Mirror URLs from an environment variable (separated by commas or spaces), if set."""
    value = os.environ.get(variable, "")
    urls = tuple(u for u in value.replace(",", " ").split() if u)
    return urls or None


def md5_file(path: str | os.PathLike) -> str:
    """Hex MD5 digest of a file's bytes."""
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _join(mirror: str, name: str) -> str:
    return mirror if mirror.endswith(name) else mirror.rstrip("/") + "/" + name


def _open_bounded(url: str, timeout: float):
    """``urlopen`` with a hard deadline that also covers name resolution.

    A socket timeout does not bound ``getaddrinfo``, which can hang for long on a machine
    without network; running the connection in a daemon thread does.
    """
    request = urllib.request.Request(url, headers={"User-Agent": f"netsqueeze/{__version__}"})
    box: dict = {}

    def target() -> None:
        try:
            box["response"] = urllib.request.urlopen(request, timeout=timeout)
        except BaseException as e:  # noqa: BLE001 - handed back to the caller's thread
            box["error"] = e

    worker = threading.Thread(target=target, daemon=True, name="netsqueeze-connect")
    worker.start()
    worker.join(timeout + 1.0)
    if worker.is_alive():
        raise TimeoutError(f"no answer within {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["response"]


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__


def _fetch(
    url: str,
    dest: Path,
    expected_md5: str | None,
    *,
    timeout: float,
    progress: bool,
) -> None:
    """Download ``url`` to ``dest`` atomically; raise FormatError on a checksum mismatch."""
    from tqdm import tqdm

    response = _open_bounded(url, timeout)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        h = hashlib.md5(usedforsecurity=False)
        with response, os.fdopen(fd, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=dest.name,
                disable=not progress,
                leave=False,
            ) as bar:
                while True:
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise DownloadError(
                    f"connection closed after {out.tell():,} of {total:,} bytes"
                )
        digest = h.hexdigest()
        if expected_md5 is not None and digest != expected_md5.lower():
            raise FormatError(
                f"{url}: checksum mismatch, MD5 {digest} where {expected_md5} was expected; "
                "the file was discarded (the mirror serves a different or damaged file: "
                "try another mirror)"
            )
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def download_files(
    names: Iterable[str],
    dest: str | os.PathLike,
    *,
    mirrors: Sequence[str],
    checksums: Mapping[str, str] | None,
    timeout: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download files that are not yet in ``dest``, verifying each one's MD5.

    Parameters
    ----------
    names : iterable of str
        File names, appended to each mirror URL.
    dest : path-like
        Folder to download into (created if needed). Files already there are kept.
    mirrors : sequence of str
        Base URLs, tried in order for each file.
    checksums : mapping of str to str or None
        Expected hex MD5 for each name. A name missing from it is refused: nothing is
        downloaded unverified. ``None`` downloads without checking (tests only).
    timeout : float, optional
        Seconds for connecting and for each read; default :func:`env_timeout`.
    progress : bool, default True
        Show a tqdm progress bar per file (on stderr).
    log : callable, optional
        Called with a one-line message before each file is fetched.

    Returns
    -------
    list of Path
        The paths of all ``names`` in ``dest``.

    Raises
    ------
    DownloadError
        No mirror could deliver some file (unreachable, HTTP error, timeout).
    netsqueeze.FormatError
        Every mirror that answered served a file with the wrong checksum.
    """
    dest = Path(dest)
    names = list(names)
    if not mirrors:
        raise DownloadError("no mirror to download from")
    timeout = env_timeout() if timeout is None else float(timeout)
    if checksums is not None:
        unknown = [n for n in names if n not in checksums]
        if unknown:
            raise ValueError(f"no checksum known for {', '.join(unknown)}; refusing to download")
    dest.mkdir(parents=True, exist_ok=True)
    dead: dict[str, str] = {}  # mirror -> why it cannot be reached
    paths = []
    for name in names:
        target = dest / name
        paths.append(target)
        if target.is_file():
            continue
        failures: list[str] = []
        bad_checksum: FormatError | None = None
        for mirror in mirrors:
            if mirror in dead:
                failures.append(f"{mirror}: {dead[mirror]}")
                continue
            url = _join(mirror, name)
            if log is not None:
                log(f"downloading {url}")
            try:
                _fetch(url, target, None if checksums is None else checksums[name],
                       timeout=timeout, progress=progress)
                break
            except FormatError as e:
                bad_checksum = e
                failures.append(str(e))
            except urllib.error.HTTPError as e:  # the server answered: try the next file there
                failures.append(f"{url}: {_describe(e)}")
            except (OSError, ValueError, http.client.HTTPException) as e:
                # URLError, timeouts, refused, reset, cut short, bad URL: give up on the mirror
                why = _describe(e)
                dead[mirror] = why
                failures.append(f"{url}: {why}")
        else:
            detail = "; ".join(failures)
            if bad_checksum is not None and len(failures) == 1:
                raise bad_checksum
            if bad_checksum is not None:
                raise FormatError(f"could not get a good copy of {name}: {detail}")
            raise DownloadError(f"could not download {name}: {detail}")
    return paths
