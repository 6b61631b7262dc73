"""Your own data: ``npz:PATH`` (numpy arrays) and ``folder:PATH`` (a tree of images).

``npz:PATH`` is a ``.npz`` file (``numpy.savez``) with arrays ``x_train``, ``y_train``,
``x_test``, ``y_test`` (and optionally ``x_val``, ``y_val``):

* ``x_*``: images ``(n, channels, height, width)`` (NCHW) or ``(n, height, width, channels)``
  (NHWC, recognised when the last axis has 1, 3 or 4 entries and the second does not; turned
  into NCHW), grey images ``(n, height, width)``, or flat feature vectors ``(n, features)``;
  ``uint8`` (grey levels 0..255) or floating point (finite);
* ``y_*``: integer class labels ``(n,)`` in ``0..classes-1``.

``folder:PATH`` is an ImageFolder-style tree ``PATH/train/<class>/*.png|jpg`` and
``PATH/test/<class>/*.png|jpg`` (optionally ``PATH/val/...``), read with Pillow when it is
installed; class names are the sorted sub-folder names of ``train``. Images of one data set must
share one size; grey images stay one channel, others become RGB.

Normalisation is part of the data set: ``uint8`` inputs are divided by 255 (to ``[0, 1]``),
floating-point inputs are used as stored; :attr:`Dataset.normalization` says which, and the
results file records it. The file is read with ``allow_pickle=False``: an ``.npz`` is data, never
code. Malformed input raises ``ValueError`` naming the array and the fix.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["load_image_folder", "load_npz", "normalization_of"]

_REQUIRED = ("x_train", "y_train", "x_test", "y_test")
_OPTIONAL = ("x_val", "y_val")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def normalization_of(x: np.ndarray) -> str:
    """How inputs of this dtype are normalised before they reach the model."""
    if x.dtype == np.uint8:
        return "uint8 / 255 -> float32 in [0, 1]"
    return f"{x.dtype} as stored -> float32"


def _to_nchw(x: np.ndarray, name: str, where: str) -> np.ndarray:
    if x.ndim == 4 and x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
        x = np.ascontiguousarray(np.moveaxis(x, -1, 1))  # NHWC -> NCHW
    if x.ndim not in (2, 3, 4):
        raise ValueError(
            f"{where}: {name} has shape {x.shape}; give images (n, c, h, w), (n, h, w, c), "
            "(n, h, w) or feature vectors (n, features)"
        )
    return x


def _check_split(x, y, split: str, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(x, np.ndarray) or not isinstance(y, np.ndarray):
        raise ValueError(f"{where}: x_{split} and y_{split} must be arrays")  # noqa: TRY004
    if x.dtype.kind not in "uif":
        raise ValueError(f"{where}: x_{split} has dtype {x.dtype}; give uint8 or floats")
    if x.dtype.kind in "iu" and x.dtype != np.uint8:
        if x.size and (x.min() < 0 or x.max() > 255):
            raise ValueError(
                f"{where}: x_{split} holds integers outside 0..255; give uint8 images or floats"
            )
        x = x.astype(np.uint8)
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            raise ValueError(f"{where}: x_{split} holds {bad} NaN or infinite values")
        x = x.astype(np.float32, copy=False)
    x = _to_nchw(x, f"x_{split}", where)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        hint = " (one-hot? give class indices: y.argmax(1))" if y.ndim == 2 else ""
        raise ValueError(
            f"{where}: y_{split} must be integer class labels of shape (n,), got {y.dtype} of "
            f"shape {y.shape}{hint}"
        )
    if len(x) != len(y):
        raise ValueError(
            f"{where}: x_{split} has {len(x)} samples but y_{split} has {len(y)} labels"
        )
    if y.size and y.min() < 0:
        raise ValueError(f"{where}: y_{split} holds a negative label ({int(y.min())})")
    return x, y.astype(np.int64)


def _check_labels(splits: dict, where: str, classes: int | None = None) -> None:
    if classes is None:
        classes = int(splits["train"][1].max()) + 1 if splits["train"][1].size else 0
    for split, (_, y) in splits.items():
        if y.size and int(y.max()) >= classes:
            raise ValueError(
                f"{where}: y_{split} holds label {int(y.max())} but the training labels are "
                f"0..{classes - 1}; every class must occur in y_train"
            )


def _check_shapes(splits: dict, where: str) -> None:
    shape = splits["train"][0].shape[1:]
    for split, (x, _) in splits.items():
        if x.shape[1:] != shape:
            raise ValueError(
                f"{where}: x_{split} has samples of shape {x.shape[1:]} but x_train has {shape}"
            )
        if x.dtype != splits["train"][0].dtype:
            raise ValueError(
                f"{where}: x_{split} is {x.dtype} but x_train is {splits['train'][0].dtype}; "
                "give every split the same dtype (the same normalisation)"
            )


def load_npz(path: str | os.PathLike, *, name: str | None = None):
    """Load ``npz:PATH`` (see the module docstring) into a :class:`Dataset`."""
    from netsqueeze.data.datasets import Dataset

    p = Path(path).expanduser()
    where = str(p)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such .npz file")
    try:
        with np.load(p, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as exc:
        raise ValueError(f"{where}: not a numeric .npz file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - zipfile/numpy raise many kinds for a bad file
        raise ValueError(f"{where}: not a readable .npz file ({type(exc).__name__}: {exc})"
                         ) from None
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ValueError(
            f"{where}: missing array(s) {', '.join(missing)}; an npz data set holds "
            f"{', '.join(_REQUIRED)} (and optionally x_val, y_val); it has "
            f"{', '.join(sorted(arrays)) or 'none'}"
        )
    unknown = [k for k in arrays if k not in _REQUIRED + _OPTIONAL]
    if unknown:
        raise ValueError(f"{where}: unexpected array(s) {', '.join(unknown)}; allowed: "
                         f"{', '.join(_REQUIRED + _OPTIONAL)}")
    if ("x_val" in arrays) != ("y_val" in arrays):
        raise ValueError(f"{where}: give both x_val and y_val, or neither")
    splits = {}
    for split in ("train", "test", "val"):
        if f"x_{split}" in arrays:
            splits[split] = _check_split(arrays[f"x_{split}"], arrays[f"y_{split}"], split, where)
    if len(splits["train"][0]) == 0:
        raise ValueError(f"{where}: x_train is empty")
    _check_shapes(splits, where)
    _check_labels(splits, where)
    val = splits.get("val")
    return Dataset(
        name=name or f"npz:{p.resolve()}",
        x_train=splits["train"][0], y_train=splits["train"][1],
        x_test=splits["test"][0], y_test=splits["test"][1],
        source=str(p.resolve()),
        x_val=None if val is None else val[0], y_val=None if val is None else val[1],
        normalization=normalization_of(splits["train"][0]),
    )


def _read_images(files: list[Path], where: str):
    try:
        from PIL import Image
    except ImportError:
        raise ValueError(
            f"{where}: reading an image folder needs Pillow (pip install pillow)"
        ) from None
    images = []
    mode = None
    for f in files:
        try:
            with Image.open(f) as im:
                im.load()
                m = "L" if im.mode in ("L", "1", "I;16", "I") else "RGB"
                mode = mode or m
                images.append(np.asarray(im.convert(mode), dtype=np.uint8))
        except OSError as exc:
            raise ValueError(f"{f}: not a readable image ({exc})") from None
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise ValueError(f"{where}: images differ in size ({sorted(shapes)[:3]} ...); resize "
                         "them to one size")
    x = np.stack(images)
    return x if x.ndim == 3 else np.ascontiguousarray(np.moveaxis(x, -1, 1))


def load_image_folder(path: str | os.PathLike, *, name: str | None = None):
    """Load ``folder:PATH`` (``train/<class>/*``, ``test/<class>/*``, optional ``val``)."""
    from netsqueeze.data.datasets import Dataset

    root = Path(path).expanduser()
    where = str(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise ValueError(f"{where}: no {split}/ folder; an image folder holds "
                             "train/<class>/*.png and test/<class>/*.png")
    classes = sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
    if not classes:
        raise ValueError(f"{where}/train has no class folders")
    splits = {}
    for split in ("train", "test", "val"):
        folder = root / split
        if not folder.is_dir():
            continue
        files, labels = [], []
        for d in sorted(x for x in folder.iterdir() if x.is_dir()):
            if d.name not in classes:
                raise ValueError(f"{d}: class {d.name!r} is not among the training classes")
            found = sorted(f for f in d.iterdir() if f.suffix.lower() in _IMAGE_SUFFIXES)
            files += found
            labels += [classes.index(d.name)] * len(found)
        if not files:
            raise ValueError(f"{folder}: no images (.png, .jpg, .jpeg, .bmp, .gif)")
        splits[split] = (_read_images(files, str(folder)), np.asarray(labels, np.int64))
    _check_shapes(splits, where)
    val = splits.get("val")
    return Dataset(
        name=name or f"folder:{root.resolve()}",
        x_train=splits["train"][0], y_train=splits["train"][1],
        x_test=splits["test"][0], y_test=splits["test"][1],
        source=str(root.resolve()), classes=tuple(classes),
        x_val=None if val is None else val[0], y_val=None if val is None else val[1],
        normalization=normalization_of(splits["train"][0]),
    )
