import numpy as np
import pytest

from netsqueeze.core.prune import (
    MagnitudeIndex,
    global_sparsity_masks,
    sparsity,
    sparsity_mask,
    std_mask,
    threshold_mask,
)


def test_threshold_mask_by_hand():
    w = np.array([[0.5, -0.05], [0.2, -0.3]])
    np.testing.assert_array_equal(threshold_mask(w, 0.2), [[True, False], [True, True]])
    # |w| < t is zeroed: exactly t survives
    np.testing.assert_array_equal(threshold_mask(w, 0.3), [[True, False], [False, True]])
    np.testing.assert_array_equal(threshold_mask(w, 0.0), np.ones((2, 2), bool))


def test_threshold_mask_keeps_old_zeros():
    w = np.array([0.5, -0.05, 0.2, -0.3])
    old = np.array([False, True, True, True])
    np.testing.assert_array_equal(threshold_mask(w, 0.1, mask=old), [False, False, True, True])


def test_sparsity_mask_by_hand():
    w = np.array([0.1, -0.4, 0.3, 0.2])
    np.testing.assert_array_equal(sparsity_mask(w, 0.5), [False, True, True, False])
    np.testing.assert_array_equal(sparsity_mask(w, 0.0), [True] * 4)
    np.testing.assert_array_equal(sparsity_mask(w, 1.0), [False] * 4)


def test_sparsity_mask_counts_old_zeros_and_never_resurrects():
    w = np.array([0.9, 0.1, 0.5, 0.4, 0.3, 0.2])
    old = np.array([False, True, True, True, True, True])  # the largest was pruned before
    m = sparsity_mask(w, 0.5, mask=old)
    assert not m[0]
    assert sparsity(m) == 0.5
    np.testing.assert_array_equal(m, [False, False, True, True, True, False])
    # an old mask sparser than the target stays as it is
    sparse_old = np.array([False, False, False, False, True, True])
    np.testing.assert_array_equal(sparsity_mask(w, 0.5, mask=sparse_old), sparse_old)


def test_sparsity_mask_ties_are_deterministic():
    w = np.ones(10)
    m = sparsity_mask(w, 0.3)
    assert m.sum() == 7
    np.testing.assert_array_equal(m, sparsity_mask(w, 0.3))
    np.testing.assert_array_equal(m, [True] * 7 + [False] * 3)  # lower positions kept


def test_iterative_equals_monotone():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(20, 30))
    m = None
    for s in (0.2, 0.5, 0.8, 0.9):
        new = sparsity_mask(w, s, mask=m)
        if m is not None:
            assert not np.any(new & ~m)  # no resurrection
        assert sparsity(new) == pytest.approx(s, abs=1 / w.size)
        m = new
    # pruning by magnitude iteratively on fixed weights equals one-shot pruning
    np.testing.assert_array_equal(m, sparsity_mask(w, 0.9))


def test_std_mask_uses_surviving_weights():
    w = np.array([1.0, -1.0, 3.0, -3.0])
    # std of all = sqrt(5) ~ 2.236; quality 1 zeroes |w| < 2.236
    np.testing.assert_array_equal(std_mask(w, 1.0), [False, False, True, True])
    old = np.array([False, False, True, True])
    # survivors {3, -3}: std 3 -> quality 1 keeps |w| >= 3
    np.testing.assert_array_equal(std_mask(w, 1.0, mask=old), [False, False, True, True])
    np.testing.assert_array_equal(std_mask(w, 1.01, mask=old), [False] * 4)


def test_global_sparsity_masks_cut_across_layers():
    a = np.array([0.1, 0.2, 0.3])
    b = np.array([1.0, 2.0, 0.15])
    masks = global_sparsity_masks({"a": a, "b": b}, 0.5)
    np.testing.assert_array_equal(masks["a"], [False, False, True])
    np.testing.assert_array_equal(masks["b"], [True, True, False])
    again = global_sparsity_masks({"a": a, "b": b}, 0.5, masks={"b": [False, True, True]})
    np.testing.assert_array_equal(again["b"], [False, True, False])
    np.testing.assert_array_equal(again["a"], [False, True, True])


def test_magnitude_index_matches_direct_count():
    rng = np.random.default_rng(1)
    w = rng.laplace(scale=0.05, size=1000).astype(np.float32)
    idx = MagnitudeIndex(w)
    ts = np.linspace(0.0, 0.2, 17)
    direct = [np.mean(np.abs(w) < t) for t in ts]
    np.testing.assert_allclose(idx.zero_fraction(ts), direct)
    for s in (0.0, 0.1, 0.5, 0.99):
        t = idx.threshold_for(s)
        assert np.mean(np.abs(w) < t) == pytest.approx(s, abs=1e-3)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: threshold_mask([1.0, 2.0], -1), "threshold"),
        (lambda: sparsity_mask([1.0, 2.0], 1.5), "sparsity must lie in"),
        (lambda: sparsity_mask([1.0, np.nan], 0.5), "NaN"),
        (lambda: threshold_mask([1.0, 2.0], 0.1, mask=[True]), "mask has shape"),
        (lambda: global_sparsity_masks({"a": [1.0]}, 0.5, masks={"b": [True]}), "unknown"),
        (lambda: std_mask(["x"], 1.0), "numeric"),
    ],
)
def test_bad_input_is_a_clear_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
