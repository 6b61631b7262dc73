import numpy as np
import pytest

from netsqueeze.auto import validation_split
from netsqueeze.data import load


def test_split_is_stratified_disjoint_and_covering():
    y = np.repeat(np.arange(10), [100, 200, 50, 80, 120, 90, 60, 70, 110, 120])
    tr, va = validation_split(y, 0.1, seed=3)
    assert np.intersect1d(tr, va).size == 0
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(y.size))
    for c in range(10):
        assert (y[va] == c).sum() == round(0.1 * (y == c).sum())


def test_split_is_fixed_by_seed():
    y = np.random.RandomState(0).randint(0, 5, 1000)
    a = validation_split(y, 0.2, seed=1)
    b = validation_split(y, 0.2, seed=1)
    c = validation_split(y, 0.2, seed=2)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_validation_never_overlaps_test():
    ds = load("mnist-sample")
    tr, va = validation_split(ds.y_train, 0.1, seed=0)
    assert va.size == pytest.approx(0.1 * ds.n_train, abs=10)
    test_rows = {row.tobytes() for row in ds.x_test.reshape(ds.n_test, -1)}
    val_rows = {row.tobytes() for row in ds.x_train[va].reshape(va.size, -1)}
    train_rows = {row.tobytes() for row in ds.x_train[tr].reshape(tr.size, -1)}
    assert not val_rows & test_rows
    assert not val_rows & train_rows


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(ValueError, match="fraction"):
        validation_split(np.arange(10) % 2, fraction)


def test_class_too_small():
    with pytest.raises(ValueError, match="class 2 has 1"):
        validation_split(np.array([0, 0, 1, 1, 2]), 0.5)
