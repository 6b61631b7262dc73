"""npz:PATH and folder:PATH data sets: shapes, layouts, normalisation and clear errors."""

import numpy as np
import pytest

from netsqueeze.data import load
from netsqueeze.data.arrays import load_image_folder, load_npz


def arrays(n=12, shape=(3, 8, 8), dtype=np.uint8, classes=3, seed=0, val=False):
    rng = np.random.default_rng(seed)

    def x(k):
        if dtype == np.uint8:
            return rng.integers(0, 256, (k, *shape)).astype(np.uint8)
        return rng.normal(size=(k, *shape)).astype(dtype)

    out = {"x_train": x(n), "y_train": np.arange(n) % classes,
           "x_test": x(n // 2), "y_test": np.arange(n // 2) % classes}
    if val:
        out["x_val"], out["y_val"] = x(4), np.arange(4) % classes
    return out


def save(tmp_path, **a):
    path = tmp_path / "d.npz"
    np.savez(path, **a)
    return path


@pytest.mark.parametrize("shape", [(3, 8, 8), (1, 16, 16), (8, 8), (20,)])
def test_npz_of_any_shape_loads_as_is(tmp_path, shape):
    a = arrays(shape=shape, val=True)
    ds = load(f"npz:{save(tmp_path, **a)}")
    assert ds.name.startswith("npz:")
    assert ds.x_train.shape == (12, *shape) and np.array_equal(ds.x_train, a["x_train"])
    assert np.array_equal(ds.y_test, a["y_test"]) and ds.y_train.dtype == np.int64
    assert ds.x_val.shape == (4, *shape) and ds.n_classes == 3
    assert ds.normalization.startswith("uint8 / 255")
    d = ds.to_dict()
    assert d["normalization"] == ds.normalization and d["n_val"] == 4
    assert "x".join(map(str, shape)) in ds.describe()


def test_nhwc_becomes_nchw_and_floats_stay_floats(tmp_path):
    a = arrays(shape=(8, 8, 3), dtype=np.float64)
    ds = load_npz(save(tmp_path, **a))
    assert ds.x_train.shape == (12, 3, 8, 8) and ds.x_train.dtype == np.float32
    assert np.allclose(ds.x_train[:, 1], a["x_train"][..., 1])
    assert "as stored" in ds.normalization


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda a: a.pop("y_test"), "missing array.*y_test"),
        (lambda a: a.update(extra=np.zeros(3)), "unexpected array.*extra"),
        (lambda a: a.update(y_train=a["y_train"][:-1]), "12 samples but y_train has 11"),
        (lambda a: a.update(y_test=a["y_test"] + 5), "label 7 .* 0..2"),
        (lambda a: a.update(y_train=-a["y_train"]), "negative label"),
        (lambda a: a.update(y_train=np.eye(3)[a["y_train"]]), "one-hot"),
        (lambda a: a.update(x_test=a["x_test"][:, :, :4]), r"shape \(3, 4, 8\) but x_train"),
        (lambda a: a.update(x_train=a["x_train"].astype(np.float32) * np.nan), "NaN"),
        (lambda a: a.update(x_val=a["x_test"]), "both x_val and y_val"),
        (lambda a: a.update(x_train=a["x_train"][:, :, :, :, None, None]), "give images"),
    ],
)
def test_malformed_npz_is_one_clear_error(tmp_path, change, message):
    a = arrays()
    change(a)
    with pytest.raises(ValueError, match=message):
        load(f"npz:{save(tmp_path, **a)}")


def test_npz_missing_or_pickled_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such .npz"):
        load(f"npz:{tmp_path / 'none.npz'}")
    np.savez(tmp_path / "p.npz", x_train=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a numeric .npz"):
        load(f"npz:{tmp_path / 'p.npz'}")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="npz"):
        load(f"npz:{tmp_path / 'bad.npz'}")
    with pytest.raises(ValueError, match="needs a path"):
        load("npz:")


def test_image_folder(tmp_path):
    pil = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    for split, n in (("train", 3), ("test", 2)):
        for cls in ("cat", "dog"):
            d = tmp_path / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 256, (6, 5, 3)).astype(np.uint8)
                pil.fromarray(img).save(d / f"{i}.png")
    ds = load(f"folder:{tmp_path}")
    assert ds.classes == ("cat", "dog")
    assert ds.x_train.shape == (6, 3, 6, 5) and ds.x_test.shape == (4, 3, 6, 5)
    assert list(ds.y_train) == [0, 0, 0, 1, 1, 1]
    first = np.asarray(pil.open(tmp_path / "train" / "cat" / "0.png"))
    assert np.array_equal(ds.x_train[0], np.moveaxis(first, -1, 0))
    (tmp_path / "test" / "bird").mkdir()
    with pytest.raises(ValueError, match="'bird' is not among the training classes"):
        load_image_folder(tmp_path)
    with pytest.raises(ValueError, match="no train/ folder"):
        load_image_folder(tmp_path / "train")
