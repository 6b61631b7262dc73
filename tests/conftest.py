"""Shared test fixtures.

Full MNIST is looked for in ``$NETSQUEEZE_TEST_MNIST`` or ``../shared/data/mnist`` beside the
project root. Tests that need it skip with a reason on a fresh clone, and fail instead when
``NETSQUEEZE_REQUIRE_MNIST=1`` (CI sets it), so a missing data set can never hide a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ENV = (
    "NETSQUEEZE_DATA",
    "NETSQUEEZE_CACHE",
    "NETSQUEEZE_OFFLINE",
    "NETSQUEEZE_DOWNLOAD_TIMEOUT",
    "NETSQUEEZE_MNIST_MIRRORS",
    "NETSQUEEZE_FASHION_MNIST_MIRRORS",
    "XDG_CACHE_HOME",
)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the user's cache or data, or reaches the real mirrors."""
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("NETSQUEEZE_CACHE", str(cache))
    # Anything that would still try the public mirrors fails at once.
    monkeypatch.setenv("NETSQUEEZE_MNIST_MIRRORS", "http://127.0.0.1:9/")
    monkeypatch.setenv("NETSQUEEZE_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")
    return cache


ROOT = Path(__file__).resolve().parents[1]
MNIST_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _find_full_mnist() -> Path | None:
    candidates = []
    if os.environ.get("NETSQUEEZE_TEST_MNIST"):
        candidates.append(Path(os.environ["NETSQUEEZE_TEST_MNIST"]))
    candidates.append(ROOT.parent / "shared" / "data" / "mnist")
    for c in candidates:
        if all((c / f).is_file() for f in MNIST_FILES):
            return c
    return None


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding the four full-MNIST IDX files (skip, or fail in CI, when absent)."""
    found = _find_full_mnist()
    if found is None:
        msg = (
            "full MNIST not found: set NETSQUEEZE_TEST_MNIST to a folder with the four "
            "IDX files, or place them in ../shared/data/mnist"
        )
        if os.environ.get("NETSQUEEZE_REQUIRE_MNIST") == "1":
            pytest.fail(msg + " (NETSQUEEZE_REQUIRE_MNIST=1)")
        pytest.skip(msg)
    return found
