"""Entropy-constrained scalar quantisation (ECSQ) of weights, in numpy.

k-means chooses shared values for distortion alone. When the cluster indices are then entropy
coded, what a layer costs is not ``log2 k`` bits per weight but about the entropy of its
indices, so a better codebook trades distortion against *rate*: it minimises ::

    J = sum_i h_i (x_i - c[a_i])**2  +  lambda * sum_i l[a_i],      l[j] = -log2 p[j]

where ``p[j]`` is the fraction of values in cluster ``j`` (so the second sum is the ideal code
length of the indices) and ``h_i >= 0`` an optional importance per value (squared gradients, a
diagonal Fisher estimate: sensitive weights move less). This is Chou, Lookabaugh and Gray's
entropy-constrained vector quantiser (IEEE Trans. ASSP 1989) in one dimension; with
``lambda = 0`` it is (weighted) Lloyd. Each iteration

1. assigns every value to the cluster of least cost ``h_i (x_i - c_j)**2 + lambda * l_j``;
2. moves every centroid to the (``h``-weighted) mean of its members and sets
   ``l_j = -log2(count_j / n)``; a cluster left empty dies (its code length is infinite).

Neither step increases ``J``, so the iteration converges (to a local optimum). Clusters die as
``lambda`` grows: ``n_clusters`` is an upper bound. :class:`ECSQ1D` picks ``lambda`` by
bisection when a target rate (bits per value, the zero-order entropy of the labels) is given.

Examples
--------
>>> import numpy as np
>>> x = np.array([-2.0, -1.9, 0.0, 0.1, 0.0, -0.1, 0.05, 2.0])
>>> q = ECSQ1D(3, lam=0.0).fit(x)
>>> q.centroids_.round(2).tolist()
[-1.95, 0.01, 2.0]
>>> ECSQ1D(3, lam=10.0).fit(x).n_clusters_   # a large lambda: a single value is cheapest
1
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from netsqueeze.core.kmeans1d import KMeans1D, _as_float_1d, _check_sample_weight, _label_dtype

__all__ = ["ECSQ1D", "label_entropy"]

_CHUNK = 1 << 15  # values labelled per pass (chunk x alive clusters float64 temporaries)


def label_entropy(labels, n_clusters: int | None = None) -> float:
    """Zero-order entropy of integer labels, in bits per label (0.0 for no labels).

    Parameters
    ----------
    labels : array_like of int, shape (n,)
    n_clusters : int, optional
        Alphabet size (only the counts matter; kept for symmetry with ``bincount``).

    Returns
    -------
    float
    """
    a = np.asarray(labels).reshape(-1)
    if a.size == 0:
        return 0.0
    cnt = np.bincount(a.astype(np.int64), minlength=n_clusters or 0)
    p = cnt[cnt > 0] / a.size
    return float(-(p * np.log2(p)).sum())


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def _assign(x, h, c, l, lam):
    """Cluster of least cost for every value (ties: the lower index)."""
    n = x.size
    out = np.empty(n, np.int64)
    pen = lam * l
    for s in range(0, n, _CHUNK):
        xc = x[s : s + _CHUNK, None]
        d = (xc - c[None, :]) ** 2
        if h is not None:
            d *= h[s : s + _CHUNK, None]
        d += pen[None, :]
        out[s : s + xc.shape[0]] = np.argmin(d, axis=1)
    return out


def _update(x, h, labels, c_old, k):
    cnt = np.bincount(labels, minlength=k)
    if h is None:
        wsum = cnt.astype(np.float64)
        sx = np.bincount(labels, weights=x, minlength=k)
    else:
        wsum = np.bincount(labels, weights=h, minlength=k)
        sx = np.bincount(labels, weights=h * x, minlength=k)
        # members of zero importance only: their plain mean
        plain = (cnt > 0) & (wsum <= 0)
        if plain.any():
            wsum = np.where(plain, cnt, wsum)
            sx = np.where(plain, np.bincount(labels, weights=x, minlength=k), sx)
    c = np.where(cnt > 0, sx / np.maximum(wsum, 1e-300), c_old)
    return c, cnt


def _clg(x, h, c0, lam, max_iter, tol):
    """Chou-Lookabaugh-Gray iterations from centroids ``c0`` (first partition: nearest
    centroid). Returns (sorted centroids, labels, iterations)."""
    n = x.size
    c = np.asarray(c0, np.float64).copy()
    k = c.size
    labels = _assign(x, h, c, np.zeros(k), 0.0)
    c, cnt = _update(x, h, labels, c, k)
    alive = cnt > 0
    c, cnt = c[alive], cnt[alive]
    remap = np.cumsum(alive) - 1
    labels = remap[labels]
    prev_j = math.inf
    it = 0
    for it in range(1, max_iter + 1):
        l = -np.log2(cnt / n)
        new = _assign(x, h, c, l, lam)
        c, cnt = _update(x, h, new, c, c.size)
        alive = cnt > 0
        if not alive.all():
            c, cnt = c[alive], cnt[alive]
            new = (np.cumsum(alive) - 1)[new]
        d = (x - c[new]) ** 2
        dist = float(d.sum() if h is None else (h * d).sum())
        j = dist + lam * float(-(cnt * np.log2(cnt / n)).sum())
        same = new.size == labels.size and np.array_equal(new, labels)
        labels = new
        if same or prev_j - j <= tol * abs(j):
            break
        prev_j = j
    order = np.argsort(c, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return c[order], rank[labels], it


class ECSQ1D:
    """Entropy-constrained quantisation of scalar values (for example one layer's weights).

    Parameters
    ----------
    n_clusters : int, default=16
        Largest number of shared values ``k``. Clusters die when ``lambda`` makes them too
        expensive; ``n_clusters_`` tells how many remain.
    lam : float >= 0, optional
        The Lagrange multiplier, in units of (importance x value**2) per bit. Exclusive with
        ``target_bits``; with neither, ``lam=0`` (weighted k-means).
    target_bits : float >= 0, optional
        Rate to meet: the zero-order entropy of the labels, bits per value. ``lambda`` is found by
        bisection: the smallest distortion found whose rate is at most the target.
    max_iter : int, default=100
        Chou-Lookabaugh-Gray iterations per ``lambda``.
    tol : float, default=1e-7
        Stop when the objective falls by less than ``tol`` times itself (or the partition stops
        changing).
    n_bisect : int, default=24
        Bisection steps on ``lambda`` for ``target_bits``.

    Attributes
    ----------
    centroids_ : ndarray of shape (n_clusters_,), float64
        Sorted ascending.
    labels_ : ndarray of shape (n,), smallest unsigned integer dtype
        Cluster of every value of the flattened ``X``.
    n_clusters_ : int
    lambda_ : float
        The multiplier used.
    rate_ : float
        Zero-order entropy of ``labels_``, bits per value.
    distortion_ : float
        ``sum h_i (x_i - centroids_[labels_])**2`` (``h = 1`` without ``sample_weight``).
    n_iter_ : int
        Iterations of the last run.
    n_evals_ : int
        Runs (values of ``lambda`` tried).

    Notes
    -----
    The start is 1-D k-means with linear initialisation (the paper's choice,
    :class:`~netsqueeze.core.kmeans1d.KMeans1D`), so ``lam=0`` returns a (weighted) Lloyd fixed
    point near what plain weight sharing gives. Labelling costs ``O(n k)`` per iteration
    (the importance makes clusters non-contiguous in ``x``); memory is ``O(n)`` plus a chunk.
    Every run starts from the same k-means solution, so results do not depend on the bisection
    path and are deterministic.
    """

    def __init__(
        self,
        n_clusters: int = 16,
        *,
        lam: float | None = None,
        target_bits: float | None = None,
        max_iter: int = 100,
        tol: float = 1e-7,
        n_bisect: int = 24,
    ):
        self.n_clusters = n_clusters
        self.lam = lam
        self.target_bits = target_bits
        self.max_iter = max_iter
        self.tol = tol
        self.n_bisect = n_bisect

    def __repr__(self) -> str:
        args = [repr(self.n_clusters)]
        for key in ("lam", "target_bits"):
            v = getattr(self, key)
            if v is not None:
                args.append(f"{key}={v!r}")
        return f"ECSQ1D({', '.join(args)})"

    def _check_params(self):
        k = self.n_clusters
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 1 <= k <= 65536:
            raise ValueError(f"n_clusters must be an integer in 1..65536, got {k!r}")
        if self.lam is not None and self.target_bits is not None:
            raise ValueError("give lam or target_bits, not both")
        if self.lam is not None and not (_is_real(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam!r}")
        if self.target_bits is not None and not (
            _is_real(self.target_bits) and self.target_bits >= 0
        ):
            raise ValueError(f"target_bits must be a finite number >= 0, got {self.target_bits!r}")
        if not isinstance(self.max_iter, numbers.Integral) or self.max_iter < 1:
            raise ValueError(f"max_iter must be an integer >= 1, got {self.max_iter!r}")
        if not (_is_real(self.tol) and self.tol >= 0):
            raise ValueError(f"tol must be a finite number >= 0, got {self.tol!r}")
        if not isinstance(self.n_bisect, numbers.Integral) or self.n_bisect < 0:
            raise ValueError(f"n_bisect must be an integer >= 0, got {self.n_bisect!r}")

    def fit(self, X, sample_weight=None) -> ECSQ1D:
        """Quantise ``X``.

        Parameters
        ----------
        X : array_like of shape (n,) or any shape (flattened)
            Finite values.
        sample_weight : array_like, optional
            Importance ``h_i >= 0`` of every value (same shape as ``X`` or flat); it weighs the
            distortion only (the rate counts every value once).

        Returns
        -------
        self
        """
        self._check_params()
        x = _as_float_1d(X).astype(np.float64)
        h = _check_sample_weight(sample_weight, np.shape(X), x.size)
        if h is not None:
            h = h / h.mean()  # lambda in units of the mean importance
        k = int(min(self.n_clusters, np.unique(x).size))
        km = KMeans1D(k, init="linear", max_iter=300, tol=1e-6).fit(x, sample_weight=h)
        c0 = km.centroids_
        runs = {}

        def run(lam):
            if lam not in runs:
                c, lab, it = _clg(x, h, c0, lam, self.max_iter, self.tol)
                d = (x - c[lab]) ** 2
                dist = float(d.sum() if h is None else (h * d).sum())
                runs[lam] = (c, lab, it, label_entropy(lab), dist)
            return runs[lam]

        if self.target_bits is None:
            lam = float(self.lam or 0.0)
        else:
            target = float(self.target_bits)
            lam = 0.0
            if run(0.0)[3] > target:
                var = float(np.average((x - np.average(x, weights=h)) ** 2, weights=h))
                hi = max(var, 1e-30)
                for _ in range(200):
                    if run(hi)[3] <= target:
                        break
                    hi *= 2.0
                lo = 0.0
                for _ in range(int(self.n_bisect)):
                    mid = 0.5 * (lo + hi)
                    if run(mid)[3] <= target:
                        hi = mid
                    else:
                        lo = mid
                # the least distortion among the feasible runs
                feasible = [v for v in runs if runs[v][3] <= target]
                lam = min(feasible, key=lambda v: (runs[v][4], v))
        c, lab, it, rate, dist = run(lam)
        self.centroids_ = c
        self.labels_ = lab.astype(_label_dtype(max(c.size, 1)))
        self.n_clusters_ = int(c.size)
        self.lambda_ = float(lam)
        self.rate_ = float(rate)
        self.distortion_ = float(dist)
        self.n_iter_ = int(it)
        self.n_evals_ = len(runs)
        return self

    def fit_predict(self, X, sample_weight=None) -> np.ndarray:
        """``fit(X, sample_weight).labels_``."""
        return self.fit(X, sample_weight).labels_
