"""Tests of netsqueeze.core.kmeans1d: hand-worked cases, brute force, scikit-learn as reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netsqueeze.core.kmeans1d import KMeans1D, kmeans1d

INITS = ["linear", "density", "random", "k-means++"]
METHODS = ["lloyd", "exact", "auto"]


def direct_sse(x, centroids, labels, w=None):
    d = np.ravel(x).astype(np.float64) - centroids[labels]
    return float(np.sum(d * d if w is None else np.ravel(w) * d * d))


def brute_force_optimum(x, k):
    """Smallest SSE over every split of the sorted values into k non-empty runs."""
    s = np.sort(np.asarray(x, dtype=np.float64))
    n = s.size
    best = np.inf
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = (0, *cuts, n)
        sse = sum(
            float(np.sum((s[a:b] - s[a:b].mean()) ** 2)) for a, b in itertools.pairwise(bounds)
        )
        best = min(best, sse)
    return best


def assert_nearest(x, km, atol=1e-9):
    """Every value sits with its nearest centroid (ties either way)."""
    x = np.ravel(x).astype(np.float64)
    d = np.abs(x[:, None] - km.centroids_[None, :])
    own = d[np.arange(x.size), km.labels_.astype(np.int64)]
    assert np.all(own <= d.min(axis=1) + atol)


# ---- hand-worked ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("init", [*INITS, "array"])
def test_hand_worked_two_clusters(method, init):
    x = np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0])
    init = np.array([0.0, 5.0]) if init == "array" else init
    km = KMeans1D(2, init=init, method=method, random_state=0).fit(x)
    assert km.centroids_.tolist() == [2.0, 11.0]
    assert km.labels_.tolist() == [0, 0, 0, 1, 1, 1]
    assert km.labels_.dtype == np.uint8
    assert km.inertia_ == pytest.approx(4.0)  # (1 + 0 + 1) * 2
    assert km.n_clusters_ == 2
    assert km.converged_


def test_hand_worked_empty_cluster_is_split():
    # linear init [0, 5, 10] has midpoints 2.5 and 7.5: the middle cluster is empty. The cluster
    # with the largest SSE, {0, 1, 2} (SSE 2), is split at its mean 1 into {0} and {1, 2}, giving
    # centroids [0, 1.5, 9.5], a fixed point with SSE 0 + 0.5 + 0.5 = 1, which is optimal (tied
    # with {0, 1}, {2}, {9, 10}).
    x = np.array([0.0, 1.0, 2.0, 9.0, 10.0])
    lloyd = KMeans1D(3).fit(x)
    assert lloyd.centroids_.tolist() == [0.0, 1.5, 9.5]
    assert lloyd.labels_.tolist() == [0, 1, 1, 2, 2]
    assert lloyd.inertia_ == pytest.approx(1.0)
    exact = KMeans1D(3, method="exact").fit(x)
    assert exact.inertia_ == pytest.approx(1.0)


def test_k1_is_the_mean():
    x = np.array([1.0, 4.0, 4.0, 7.0])
    for method in METHODS:
        km = KMeans1D(1, method=method).fit(x)
        assert km.centroids_.tolist() == [4.0]
        assert km.inertia_ == pytest.approx(18.0)
        assert km.labels_.tolist() == [0, 0, 0, 0]


# ---- exactness ------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_exact_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 11))
    x = rng.normal(size=n).round(1)  # rounding makes repeated values
    n_distinct = np.unique(x).size
    for k in range(1, 5):
        km = KMeans1D(k, method="exact").fit(x)
        assert km.n_clusters_ == min(k, n_distinct)
        if k >= n_distinct:
            assert km.inertia_ == 0.0
            continue
        best = brute_force_optimum(x, k)
        assert km.inertia_ == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert km.inertia_lower_bound_ == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert direct_sse(x, km.centroids_, km.labels_) == pytest.approx(km.inertia_, abs=1e-12)
        lloyd = KMeans1D(k).fit(x)
        assert lloyd.inertia_ >= best - 1e-12


@pytest.mark.parametrize("dist", ["normal", "laplace"])
@pytest.mark.parametrize("k", [3, 8, 32])
def test_against_scikit_learn(dist, k):
    import sklearn.cluster as sklearn_cluster
    rng = np.random.default_rng(k)
    x = (rng.normal(size=3000) if dist == "normal" else rng.laplace(size=3000)).astype(np.float32)
    ref = sklearn_cluster.KMeans(k, n_init=4, random_state=0).fit(x.reshape(-1, 1).astype(float))

    exact = KMeans1D(k, method="exact").fit(x)
    assert exact.method_ == "exact"
    assert exact.inertia_ <= ref.inertia_ * (1 + 1e-9)
    assert_nearest(x, exact)

    lloyd = KMeans1D(k, init="linear").fit(x)
    assert lloyd.inertia_ <= 2.5 * ref.inertia_
    assert_nearest(x, lloyd)
    assert np.array_equal(lloyd.predict(x), lloyd.labels_)
    for init in ("k-means++", "random", "density"):
        km = KMeans1D(k, init=init, random_state=1).fit(x)
        assert km.inertia_ <= 2.5 * ref.inertia_
        assert_nearest(x, km)


def test_histogram_bound_brackets_the_optimum():
    x = np.random.default_rng(5).laplace(size=4000)
    opt = KMeans1D(6, method="exact").fit(x)
    assert opt.method_ == "exact"
    hist = KMeans1D(6, method="exact", n_bins=64).fit(x)
    assert hist.method_ == "histogram"
    assert hist.n_bins_ == 64
    assert hist.inertia_lower_bound_ <= opt.inertia_ * (1 + 1e-12)
    assert opt.inertia_ <= hist.inertia_ * (1 + 1e-12)
    assert hist.inertia_ <= opt.inertia_ * 1.01
    assert_nearest(x, hist)


# ---- Lloyd ----------------------------------------------------------------------------------


def test_lloyd_fixed_point_when_converged():
    x = np.random.default_rng(2).normal(size=5000)
    km = KMeans1D(10, tol=0.0, max_iter=10_000).fit(x)
    assert km.converged_ and km.n_iter_ < 10_000
    means = np.bincount(km.labels_, weights=x) / np.bincount(km.labels_)
    np.testing.assert_allclose(km.centroids_, means, rtol=0, atol=1e-12)
    assert_nearest(x, km)


def test_empty_clusters_are_refilled():
    # linear init on [0, 100] leaves almost every centroid without a value
    x = np.concatenate([np.linspace(0.0, 1.0, 200), [100.0]])
    for init in ["linear", np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 100.0, 100.0])]:
        km = KMeans1D(8, init=init).fit(x)
        assert km.n_clusters_ == 8
        assert np.all(np.bincount(km.labels_, minlength=8) > 0)
        assert np.all(np.diff(km.centroids_) > 0)
        assert_nearest(x, km)


def test_seeded_inits_are_reproducible():
    x = np.random.default_rng(0).normal(size=2000)
    for init in ("random", "k-means++"):
        a = KMeans1D(7, init=init, random_state=3, max_iter=1).fit(x)
        b = KMeans1D(7, init=init, random_state=3, max_iter=1).fit(x)
        np.testing.assert_array_equal(a.centroids_, b.centroids_)


def test_tol_stops_early_and_labels_stay_nearest():
    x = np.random.default_rng(4).laplace(size=20000)
    loose = KMeans1D(32, tol=1e-2).fit(x)
    tight = KMeans1D(32, tol=0.0, max_iter=5000).fit(x)
    assert loose.n_iter_ < tight.n_iter_
    assert tight.inertia_ <= loose.inertia_ * (1 + 1e-12)
    assert_nearest(x, loose)


# ---- weights, dtypes, shapes ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["lloyd", "exact"])
@pytest.mark.parametrize("init", ["linear", "density"])
def test_weights_equal_repetition(method, init):
    rng = np.random.default_rng(1)
    x = rng.normal(size=400).round(2)
    w = rng.integers(0, 4, size=400)
    a = KMeans1D(6, method=method, init=init).fit(x, sample_weight=w)
    b = KMeans1D(6, method=method, init=init).fit(np.repeat(x, w))
    np.testing.assert_allclose(a.centroids_, b.centroids_, rtol=1e-12)
    assert a.inertia_ == pytest.approx(b.inertia_, rel=1e-10)
    assert a.inertia_ == pytest.approx(direct_sse(x, a.centroids_, a.labels_, w), rel=1e-10)
    assert a.labels_.shape == (400,)  # zero-weight values are labelled too


def test_inertia_is_accurate_with_a_large_offset():
    x = 1000.0 + 1e-3 * np.random.default_rng(0).normal(size=50_000)
    for method in ("lloyd", "exact"):
        km = KMeans1D(16, method=method).fit(x)
        ref = direct_sse(x, km.centroids_, km.labels_)
        assert km.inertia_ == pytest.approx(ref, rel=1e-9)
        assert_nearest(x, km, atol=1e-12)


def test_float32_any_shape_and_label_dtypes():
    x = np.random.default_rng(0).normal(size=(30, 40)).astype(np.float32)
    km = KMeans1D(300).fit(x)
    assert km.labels_.shape == (1200,)
    assert km.labels_.dtype == np.uint16
    assert KMeans1D(256).fit(x).labels_.dtype == np.uint8
    assert km.predict(x[:2]).dtype == np.uint16
    assert np.array_equal(km.predict(x), km.labels_)
    assert_nearest(x, km, atol=1e-6)
    w = np.ones_like(x)
    km_w = KMeans1D(5).fit(x, sample_weight=w)
    np.testing.assert_allclose(km_w.centroids_, KMeans1D(5).fit(x).centroids_, rtol=1e-12)


def test_predict_outside_the_range_and_many_clusters():
    rng = np.random.default_rng(8)
    x = rng.standard_normal(20_000).astype(np.float32)
    km = KMeans1D(1000).fit(x)
    y = np.concatenate([rng.standard_normal(5000) * 3, [-1e30, 1e30, 0.0]])
    labels = km.predict(y)
    assert labels[-3] == 0 and labels[-2] == km.n_clusters_ - 1
    d = np.abs(y[:, None] - km.centroids_[None, :])
    assert np.all(d[np.arange(y.size), labels] <= d.min(axis=1) + 1e-9)


def test_integer_input_and_convenience_function():
    centroids, labels = kmeans1d([1, 2, 3, 10, 11, 12], 2, method="exact")
    assert centroids.tolist() == [2.0, 11.0]
    assert labels.tolist() == [0, 0, 0, 1, 1, 1]
    c2, _ = kmeans1d([1, 2, 3, 10], 2, sample_weight=[1, 1, 1, 3])
    assert c2.tolist() == [2.0, 10.0]
    assert KMeans1D(2).fit_predict(np.array([5, 5, 6])).tolist() == [0, 0, 1]


# ---- edge cases -----------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_fewer_values_than_clusters(method):
    km = KMeans1D(8, method=method).fit([3.0, 1.0, 3.0, 2.0])
    assert km.centroids_.tolist() == [1.0, 2.0, 3.0]
    assert km.labels_.tolist() == [2, 0, 2, 1]
    assert km.n_clusters_ == 3
    assert km.inertia_ == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_all_equal(method):
    km = KMeans1D(4, method=method).fit(np.full(10, 0.5, dtype=np.float32))
    assert km.centroids_.tolist() == [0.5]
    assert km.n_clusters_ == 1
    assert km.inertia_ == 0.0
    assert np.all(km.labels_ == 0)


def test_zero_weights_do_not_count():
    km = KMeans1D(2).fit([0.0, 1.0, 100.0], sample_weight=[1.0, 1.0, 0.0])
    assert km.centroids_.tolist() == [0.0, 1.0]
    assert km.labels_.tolist() == [0, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_clusters": 0}, "n_clusters must be an integer >= 1"),
        ({"n_clusters": 2.5}, "n_clusters must be an integer >= 1"),
        ({"n_clusters": True}, "n_clusters must be an integer >= 1"),
        ({"method": "fast"}, "method must be one of"),
        ({"init": "kmeans"}, "init must be one of"),
        ({"init": [0.0, 1.0]}, r"init array has shape \(2,\) but n_clusters=3"),
        ({"init": [0.0, np.nan, 1.0]}, "init array contains NaN"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"tol": -1.0}, "tol must be a finite number >= 0"),
        ({"n_bins": 1}, "n_bins must be None or an integer >= 2"),
        ({"random_state": "seed"}, "random_state must be"),
    ],
)
def test_parameter_validation(kwargs, match):
    params = {"n_clusters": 3, **kwargs}
    k = params.pop("n_clusters")
    km = KMeans1D(k, **params)  # __init__ stores, never checks
    with pytest.raises(ValueError, match=match):
        km.fit([0.0, 1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("X", "sample_weight", "match"),
    [
        ([], None, "X is empty"),
        ([0.0, np.nan, 1.0], None, "X contains 1 NaN value"),
        ([0.0, np.inf, -np.inf], None, "X contains 2 infinite value"),
        ([1 + 2j], None, "complex"),
        (["a", "b"], None, "array of numbers"),
        ([0.0, 1.0], [1.0, -1.0], "negative"),
        ([0.0, 1.0], [1.0, 1.0, 1.0], r"sample_weight has shape \(3,\) but X has shape \(2,\)"),
        ([0.0, 1.0], [0.0, 0.0], "sums to 0"),
        ([0.0, 1.0], [1.0, np.nan], "sample_weight contains NaN"),
    ],
)
def test_input_validation(X, sample_weight, match):
    with pytest.raises(ValueError, match=match):
        KMeans1D(2).fit(X, sample_weight=sample_weight)


def test_predict_before_fit():
    with pytest.raises(ValueError, match="not fitted yet"):
        KMeans1D(2).predict([1.0])
    km = KMeans1D(2).fit([0.0, 1.0])
    with pytest.raises(ValueError, match="NaN"):
        km.predict([np.nan])
    assert km.predict(np.empty(0)).shape == (0,)


def test_auto_picks_by_cost():
    x = np.random.default_rng(0).normal(size=2000)
    assert KMeans1D(4, method="auto").fit(x).method_ == "exact"
    big = np.random.default_rng(0).normal(size=70_000)
    km = KMeans1D(40, method="auto").fit(big)  # 40 * 70,000 * log2(70,000) > 2**25
    assert km.method_ == "histogram"
    assert km.n_bins_ == 2048  # about 32 bins per cluster, a power of two
    assert KMeans1D(5000, method="auto", max_iter=3).fit(big).method_ == "lloyd"


def test_exact_refuses_a_huge_table():
    x = np.arange(60_000, dtype=np.float64)
    with pytest.raises(ValueError, match="pass a smaller n_bins, fewer n_clusters"):
        KMeans1D(5000, method="exact").fit(x)
    assert KMeans1D(5000).fit(x).inertia_lower_bound_ is None  # lloyd: no bound


def test_repr_shows_non_defaults():
    assert repr(KMeans1D(4, method="exact")) == "KMeans1D(4, method='exact')"


# ---- properties -----------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e3, 1e3, allow_nan=False, width=32), min_size=1, max_size=40),
    st.integers(1, 6),
)
def test_properties(values, k):
    x = np.asarray(values, dtype=np.float32)
    exact = KMeans1D(k, method="exact").fit(x)
    lloyd = KMeans1D(k).fit(x)
    for km in (exact, lloyd):
        assert km.n_clusters_ == min(k, np.unique(x).size)
        assert np.all(np.diff(km.centroids_) > 0)
        assert np.all(np.bincount(km.labels_, minlength=km.n_clusters_) > 0)
        assert np.array_equal(km.predict(x), km.labels_)
        ref = direct_sse(x, km.centroids_, km.labels_)
        assert km.inertia_ == pytest.approx(ref, rel=1e-9, abs=1e-9)
        assert_nearest(x, km, atol=1e-6)
    assert exact.inertia_ <= lloyd.inertia_ * (1 + 1e-9) + 1e-9


# ---- the programme's parts, against brute force ---------------------------------------------


def _run_cost(s, a, b):
    return float(np.sum((s[a:b] - s[a:b].mean()) ** 2))


def test_row_min_matches_brute_force():
    # D[i] = S2[i] + min over t in [t_first[i], t_last[i]] of A[t] - (S1[i]-S1[t])^2/(W[i]-W[t]):
    # the cost of the first i sorted values with the last run starting at t.
    from netsqueeze.core.kmeans1d import _row_min

    rng = np.random.default_rng(3)
    s = np.sort(rng.normal(size=40))
    W = np.arange(41, dtype=float)
    S1 = np.concatenate(([0.0], np.cumsum(s)))
    S2 = np.concatenate(([0.0], np.cumsum(s * s)))
    A = rng.uniform(0, 1, size=41) - S2  # any previous row works: A[t] = D_prev[t] - S2[t]
    rows = np.arange(5, 41)
    t_first = np.maximum(0, rows // 3)
    t_last = rows - 1
    D, opt = _row_min(A, W, S1, W[rows], S1[rows], S2[rows], t_first, t_last)
    for r, i in enumerate(rows):
        cand = {t: A[t] + S2[t] + _run_cost(s, t, i) for t in range(t_first[r], t_last[r] + 1)}
        best = min(cand.values())
        assert D[r] == pytest.approx(best, rel=1e-9, abs=1e-9)
        assert cand[int(opt[r])] == pytest.approx(best, rel=1e-9, abs=1e-9)
    # an empty range gives inf
    D, _ = _row_min(A, W, S1, W[rows], S1[rows], S2[rows], rows, rows - 1)
    assert np.all(np.isinf(D))


@pytest.mark.parametrize("seed", range(6))
def test_band_programme_is_the_best_partition_within_the_bands(seed):
    from netsqueeze.core.kmeans1d import _band_dp, _SortedData

    rng = np.random.default_rng(seed)
    x = rng.normal(size=14).round(1)  # repeated values: cuts only between distinct values
    data = _SortedData(x, None)
    s = data.s
    starts = [p for p in range(1, s.size) if s[p] != s[p - 1]]
    k = 3
    lo = np.sort(rng.integers(1, s.size, size=k - 1))
    hi = np.minimum(lo + rng.integers(0, 6, size=k - 1), s.size - 1)
    best, best_cuts = np.inf, None
    for c1, c2 in itertools.product(starts, starts):
        if c1 < c2 and lo[0] <= c1 <= hi[0] and lo[1] <= c2 <= hi[1]:
            cost = sum(_run_cost(s, a, b) for a, b in itertools.pairwise((0, c1, c2, s.size)))
            if cost < best - 1e-12:
                best, best_cuts = cost, (0, c1, c2, s.size)
    cuts = _band_dp(data, None, lo, hi)
    if best_cuts is None:
        assert cuts is None
        return
    cost = sum(_run_cost(s, a, b) for a, b in itertools.pairwise(cuts))
    assert cost == pytest.approx(best, rel=1e-9, abs=1e-12)


def test_histogram_path_hand_worked():
    # 2 bins cannot separate {0, 1, 2} from {9, 10} on their own; refining the cut at full
    # resolution finds the optimum: centroids 1 and 9.5, SSE 2 + 0.5.
    x = np.array([0.0, 1.0, 2.0, 9.0, 10.0])
    for n_bins in (2, 3):
        km = KMeans1D(2, method="exact", n_bins=n_bins).fit(x)
        assert km.method_ == "histogram"
        assert km.centroids_.tolist() == [1.0, 9.5]
        assert km.inertia_ == pytest.approx(2.5)
        assert km.inertia_lower_bound_ <= 2.5 + 1e-12


# ---- exactness against the kmeans1d package (an O(kn) exact C++ implementation) -------------


def _weights(dist, n, seed):
    rng = np.random.default_rng(seed)
    if dist == "normal":
        return (0.05 * rng.normal(size=n)).astype(np.float32)
    if dist == "laplace":
        return (0.02 * rng.laplace(size=n)).astype(np.float32)
    x = 0.05 * rng.normal(size=6 * n)  # pruned: the smallest magnitudes removed, two modes
    return x[np.abs(x) > 0.06][:n].astype(np.float32)


@pytest.mark.parametrize("dist", ["normal", "laplace", "pruned"])
def test_exact_equals_the_kmeans1d_package(dist):
    import kmeans1d
    x = _weights(dist, 6000, 7)
    for k in (4, 16, 64, 256):
        ref = kmeans1d.cluster(x.tolist(), k)
        opt = direct_sse(x, np.asarray(ref.centroids), np.asarray(ref.clusters))
        km = KMeans1D(k, method="exact").fit(x)
        assert km.method_ == "exact"  # 6000 distinct values: the programme runs on them all
        assert km.inertia_ == pytest.approx(opt, rel=1e-9)
        assert km.inertia_lower_bound_ == pytest.approx(opt, rel=1e-9)
        # the histogram path (forced by a small n_bins) is within its certified bracket and,
        # refined at full resolution, close to the optimum
        hist = KMeans1D(k, method="exact", n_bins=max(256, 16 * k)).fit(x)
        assert hist.method_ == "histogram"
        assert hist.inertia_lower_bound_ <= opt * (1 + 1e-9)
        assert opt * (1 - 1e-9) <= hist.inertia_ <= opt * (1 + 1e-3)


# ---- auto is never worse than scikit-learn's k-means++ ---------------------------------------


@pytest.mark.parametrize("dist", ["normal", "laplace", "pruned"])
def test_auto_not_worse_than_scikit_learn(dist):
    from sklearn.cluster import KMeans

    for n, ks in ((10_000, (4, 16, 64, 256)), (40_000, (32,))):
        x = _weights(dist, n, 11)
        for k in ks:
            auto = KMeans1D(k, method="auto").fit(x)
            assert x.size == n
            assert auto.method_ == ("exact" if k * n * np.log2(n) <= 2**25 else "histogram")
            assert_nearest(x, auto, atol=1e-7)
            sk = KMeans(k, n_init=1, random_state=k).fit(x.reshape(-1, 1))
            sk_sse = direct_sse(x, sk.cluster_centers_.ravel().astype(np.float64), sk.labels_)
            assert auto.inertia_ <= sk_sse * (1 + 1e-9), (n, k)


# ---- the certified full-resolution optimum (method="exact", more than 65,536 distinct values) -


def _kmeans1d_package_sse(x, k):
    import kmeans1d

    ref = kmeans1d.cluster(np.asarray(x, dtype=np.float64).tolist(), k)
    return direct_sse(x, np.asarray(ref.centroids), np.asarray(ref.clusters))


@pytest.mark.parametrize(
    "dist, seed, ks",
    [("normal", 1, (5, 40)), ("laplace", 2, (7, 33)), ("pruned", 3, (6, 48)), ("normal", 4, (64,))],
)
def test_exact_is_the_optimum_beyond_the_distinct_limit(dist, seed, ks):
    from netsqueeze.core.kmeans1d import MAX_EXACT_UNIQUE

    x = _weights(dist, 70_000, seed)
    assert np.unique(x).size > MAX_EXACT_UNIQUE  # the histogram regime of the old path
    for k in ks:
        opt = _kmeans1d_package_sse(x, k)
        km = KMeans1D(k, method="exact").fit(x)
        assert km.method_ == "exact" and km.n_bins_ is None
        assert km.inertia_ == pytest.approx(opt, rel=1e-12)
        # the programme's own value, from prefix sums: equal up to their rounding
        assert km.inertia_lower_bound_ == pytest.approx(opt, rel=1e-9)
        assert km.inertia_lower_bound_ <= km.inertia_
        assert_nearest(x, km, atol=1e-7)


def test_exact_is_the_optimum_at_two_hundred_thousand_values():
    x = _weights("normal", 200_000, 5)
    km = KMeans1D(16, method="exact").fit(x)
    assert km.method_ == "exact"
    assert km.inertia_ == pytest.approx(_kmeans1d_package_sse(x, 16), rel=1e-12)


def test_exact_with_weights_beyond_the_distinct_limit():
    # integer weights are repetitions: the package sees every value repeated
    rng = np.random.default_rng(6)
    x = _weights("laplace", 70_000, 6)
    w = rng.integers(0, 4, size=x.size)  # zeros too: those values do not count
    assert np.unique(x[w > 0]).size > 65_536 // 2
    km = KMeans1D(12, method="exact").fit(x, sample_weight=w)
    opt = _kmeans1d_package_sse(np.repeat(x, w), 12)
    assert km.inertia_ == pytest.approx(opt, rel=1e-12)
    assert km.inertia_ == pytest.approx(direct_sse(x, km.centroids_, km.labels_, w), rel=1e-12)


@pytest.mark.parametrize("seed", range(8))
def test_certified_partition_equals_the_exact_programme(seed, monkeypatch):
    # Small data with few first-level bins, so that several levels of histograms run, clusters
    # narrower than a bin (tight far-away groups, repeated values) occur, and pruning matters;
    # compared with the programme on the distinct values, which is exact by construction.
    from netsqueeze.core import kmeans1d as km1d

    monkeypatch.setattr(km1d, "_CERT_BINS", 16)
    monkeypatch.setattr(km1d, "_CERT_FACTOR", 2 + seed % 3)
    rng = np.random.default_rng(seed)
    parts = [rng.normal(0.0, 1.0, size=1500), rng.laplace(3.0, 0.3, size=500)]
    parts.append(rng.normal(9.0, 1e-3, size=rng.integers(2, 12)))  # a tight outlying group
    if seed % 2:
        parts.append(np.repeat(rng.normal(size=20).round(2), 5))  # repeated values
    x = np.concatenate(parts)
    w = rng.random(x.size) if seed % 4 == 3 else None
    data = km1d._SortedData(x, w)
    starts = data.distinct_starts()
    pos = np.concatenate((starts, [data.n]))
    y = data.s[starts]
    wy = np.diff(data.prefix(pos)[0])
    for k in (2, 3, 9, 24):
        if k * 16 > starts.size:
            continue
        found = km1d._certified_partition(data, k, starts)
        assert found is not None
        cuts, value = found
        assert np.all(np.diff(cuts) > 0) and cuts[0] == 0 and cuts[-1] == data.n
        _, sse = km1d._run_means(y, wy, np.searchsorted(pos, cuts))
        _, opt = km1d._run_means(y, wy, km1d._optimal_partition(y, wy, k))
        assert sse == pytest.approx(opt, rel=1e-10, abs=1e-12)
        assert value == pytest.approx(opt, rel=1e-9, abs=1e-12)
