"""One-dimensional k-means for weight sharing, in numpy.

Weight sharing replaces every weight of a layer by the nearest of ``k`` shared values (the
*centroids*); the layer then stores one small index per weight plus a codebook of ``k`` floats.
Finding the centroids is k-means on a 1-D sample, which is far easier than general k-means:

* the clusters of any Lloyd fixed point, and of the optimum, are *intervals* of the sorted values,
  separated by the midpoints between consecutive sorted centroids;
* so after one sort, a Lloyd iteration is ``k`` binary searches plus prefix-sum look-ups,
  ``O(k log n)`` whatever ``n`` is (:class:`KMeans1D` with ``method="lloyd"``);
* and the global optimum is a shortest-path problem over the sorted distinct values, solved by
  dynamic programming (Wang and Song's Ckmeans.1d.dp) whose rows are minimised by divide and
  conquer over the monotone split point (``method="exact"``). With too many distinct values for
  that, ``method="exact"`` proves where the cuts of an optimal partition can lie by branch and
  bound over nested histograms (lower bounds from a programme on each histogram, an upper bound
  from a real partition) and runs the exact programme only there; or, when asked for a histogram
  (``n_bins``) or beyond ``MAX_CERTIFIED_N`` values, the programme runs on a histogram whose cuts
  are then carried back to full resolution by a banded programme (``method_ == "histogram"``,
  not certified). ``method="auto"``, the choice for users, runs the programme on the distinct
  values or the histogram path, at a size that keeps it fast.

The estimator follows scikit-learn's conventions: arguments are stored by ``__init__`` and checked
by :meth:`KMeans1D.fit`, which returns ``self``; learned state ends in ``_``.

Examples
--------
>>> import numpy as np
>>> km = KMeans1D(2).fit(np.array([1.0, 2.0, 3.0, 10.0, 11.0, 12.0]))
>>> km.centroids_.tolist(), km.labels_.tolist(), km.inertia_
([2.0, 11.0], [0, 0, 0, 1, 1, 1], 4.0)
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["DEFAULT_N_BINS", "MAX_CERTIFIED_N", "MAX_EXACT_UNIQUE", "KMeans1D", "kmeans1d"]

#: ``method="exact"`` with ``n_bins=None`` runs the programme on the distinct values when there
#: are at most this many of them, and the certified branch and bound otherwise.
MAX_EXACT_UNIQUE = 1 << 16
#: Histogram bins used by ``method="exact"`` beyond ``MAX_CERTIFIED_N`` values (``n_bins=None``).
DEFAULT_N_BINS = 1 << 14
#: ``method="exact"`` with ``n_bins=None`` certifies the global optimum at full resolution (by
#: branch and bound) for up to this many values; beyond, it runs on a histogram.
MAX_CERTIFIED_N = 1 << 24
# method="auto" runs the dynamic programme on the m distinct values when k * m * log2(m) is at
# most this; otherwise on a histogram of about _AUTO_BINS_PER_CLUSTER * k bins (at least
# _AUTO_MIN_BINS), and Lloyd only when k * bins exceeds _AUTO_MAX_CELLS.
_AUTO_DP_BUDGET = 1 << 25
_AUTO_BINS_PER_CLUSTER = 32
_AUTO_MIN_BINS = 1 << 10
_AUTO_MAX_CELLS = 1 << 26
# Largest backtracking table (k x m int32 entries) the dynamic programme may allocate (1 GiB).
_MAX_DP_CELLS = 1 << 28

_BLOCK = 64  # values per block of the prefix sums over the sorted data
_BUILD_CHUNK = _BLOCK << 12  # values per pass when building block sums (a multiple of _BLOCK)
_QUERY_CHUNK = 1 << 14  # queries gathered at once (each gathers one block)
_LABEL_CHUNK = 1 << 16  # values labelled per pass
_BAND_BINS = 4  # histogram bins on either side of a cut searched at full resolution
_BAND_POINTS = 8  # and at least this many values on either side
_REFINE_FACTOR = 16  # each refinement level's grid is this many times finer
_DENSE_CELLS = 1 << 15  # band pairs up to this size are solved by evaluating every pair
# The certified full-resolution optimum (method="exact" beyond MAX_EXACT_UNIQUE distinct values):
_CERT_BINS = 1 << 12  # bins of its first histogram (at least 16 per cluster)
_CERT_FACTOR = 4  # each later histogram splits every bin into this many
_CERT_LLOYD_ITER = 30  # Lloyd iterations that improve each level's upper bound
_EPS = float(np.finfo(np.float64).eps)

_INITS = ("linear", "density", "random", "k-means++")
_METHODS = ("lloyd", "exact", "auto")


# --------------------------------------------------------------------------------------------
# helpers: validation and dtypes
# --------------------------------------------------------------------------------------------


def _label_dtype(n_clusters: int) -> np.dtype:
    """Smallest unsigned integer dtype that holds ``n_clusters - 1``."""
    for dt in (np.uint8, np.uint16, np.uint32):
        if n_clusters - 1 <= np.iinfo(dt).max:
            return np.dtype(dt)
    return np.dtype(np.uint64)


def _as_float_1d(X, name: str = "X", *, allow_empty: bool = False) -> np.ndarray:
    """Flatten ``X`` to a 1-D float32 or float64 array (a view when possible) and check it."""
    try:
        a = np.asarray(X)
    except Exception as exc:  # pragma: no cover - exotic array-likes
        raise ValueError(f"{name} must be an array of numbers: {exc}") from exc
    kind = a.dtype.kind
    if kind == "c":
        raise ValueError(f"{name} is complex ({a.dtype}); pass the real part, e.g. {name}.real")
    if kind == "O":
        try:
            a = a.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{name} must be an array of numbers, got dtype object") from exc
        kind = "f"
    if kind not in "biuf":
        raise ValueError(f"{name} must be an array of numbers, got dtype {a.dtype}")
    if a.dtype == np.float16:
        a = a.astype(np.float32)
    elif kind != "f" or a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float64)
    a = np.ravel(a)
    if a.size == 0:
        if allow_empty:
            return a
        raise ValueError(f"{name} is empty; k-means needs at least one value")
    lo, hi = a.min(), a.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        n_nan = int(np.count_nonzero(np.isnan(a)))
        n_inf = int(np.count_nonzero(np.isinf(a)))
        problems = []
        if n_nan:
            problems.append(f"{n_nan} NaN")
        if n_inf:
            problems.append(f"{n_inf} infinite")
        raise ValueError(
            f"{name} contains {' and '.join(problems)} value(s); k-means needs finite values: "
            f"remove or replace them first (e.g. with np.nan_to_num)"
        )
    return a


def _check_sample_weight(sample_weight, X_shape, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    try:
        w = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be an array of numbers: {exc}") from exc
    if w.ndim == 0:
        w = np.full(n, float(w))
    elif w.shape != tuple(X_shape) and not (w.ndim == 1 and w.size == n):
        raise ValueError(
            f"sample_weight has shape {w.shape} but X has shape {tuple(X_shape)}; pass one "
            f"weight per value of X (same shape as X, or a flat array of {n} weights)"
        )
    w = np.ravel(w)
    if not np.all(np.isfinite(w)):
        raise ValueError("sample_weight contains NaN or infinite values; pass finite weights")
    if np.any(w < 0):
        raise ValueError(
            f"sample_weight contains {int(np.count_nonzero(w < 0))} negative value(s); "
            f"weights must be >= 0"
        )
    if not w.sum() > 0:
        raise ValueError("sample_weight sums to 0; at least one weight must be positive")
    return w


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _check_random_state(random_state) -> np.random.Generator:
    if random_state is None or _is_int(random_state):
        if random_state is not None and random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return np.random.default_rng(random_state)
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise ValueError(
        f"random_state must be None, an int, or a numpy Generator, got {random_state!r}"
    )


def _ceil_cast(v: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round float64 thresholds *up* to ``dtype``.

    For a value ``x`` of that dtype, ``x >= v`` holds exactly when ``x >= _ceil_cast(v)``, so
    comparisons against float32 data can be done in float32 without changing any answer.
    """
    v = np.asarray(v, dtype=np.float64)
    if dtype == np.float64:
        return v
    out = v.astype(dtype)
    low = out.astype(np.float64) < v
    if np.any(low):
        out[low] = np.nextafter(out[low], np.array(np.inf, dtype=dtype))
    return out


# --------------------------------------------------------------------------------------------
# sorted data with block prefix sums
# --------------------------------------------------------------------------------------------


class _SortedData:
    """The sorted sample with prefix sums kept per block of ``_BLOCK`` values.

    Only one sorted copy of the data is kept (in its own float dtype); prefix sums of the weight,
    of ``w (x - shift)`` and of ``w (x - shift)**2`` (float64, centred on the median to limit
    cancellation) are stored at block boundaries, so any prefix sum costs one stored value plus a
    sum over at most ``_BLOCK`` values. Memory: ``n * itemsize`` plus ``24 n / _BLOCK`` bytes.
    Points of zero weight are dropped.
    """

    def __init__(self, x: np.ndarray, w: np.ndarray | None):
        if w is None:
            s = np.sort(x)
        else:
            keep = w > 0
            if not keep.all():
                x, w = x[keep], w[keep]
            order = np.argsort(x, kind="stable")
            s, w = x[order], w[order]
            del order
        n = s.size
        B = _BLOCK
        self.s, self.w, self.n, self.dtype = s, w, n, s.dtype
        self.lo, self.hi = float(s[0]), float(s[-1])
        self.shift = float(s[n // 2])
        nb = -(-n // B)
        sums0 = np.empty(nb) if w is not None else None
        sums1, sums2 = np.empty(nb), np.empty(nb)
        for lo in range(0, n, _BUILD_CHUNK):
            hi = min(lo + _BUILD_CHUNK, n)
            d = s[lo:hi].astype(np.float64)
            d -= self.shift
            starts = np.arange(0, hi - lo, B)
            q = slice(lo // B, lo // B + starts.size)
            if w is None:
                sums1[q] = np.add.reduceat(d, starts)
                d *= d
                sums2[q] = np.add.reduceat(d, starts)
            else:
                wc = w[lo:hi]
                sums0[q] = np.add.reduceat(wc, starts)
                wd = wc * d
                sums1[q] = np.add.reduceat(wd, starts)
                wd *= d
                sums2[q] = np.add.reduceat(wd, starts)
        if w is None:
            self.P0 = np.minimum(np.arange(nb + 1, dtype=np.int64) * B, n).astype(np.float64)
        else:
            self.P0 = np.concatenate(([0.0], np.cumsum(sums0)))
        self.P1 = np.concatenate(([0.0], np.cumsum(sums1)))
        self.P2 = np.concatenate(([0.0], np.cumsum(sums2)))
        self.total_weight = float(self.P0[-1])

    # -- counting distinct values ------------------------------------------------------------
    def count_distinct(self) -> int:
        s, count = self.s, 1
        for lo in range(0, self.n - 1, _BUILD_CHUNK):
            hi = min(lo + _BUILD_CHUNK, self.n - 1)
            count += int(np.count_nonzero(s[lo + 1 : hi + 1] != s[lo:hi]))
        return count

    def distinct_starts(self) -> np.ndarray:
        """Index of the first occurrence of every distinct value, shape ``(m,)``."""
        s, parts = self.s, [np.zeros(1, np.int64)]
        for lo in range(0, self.n - 1, _BUILD_CHUNK):
            hi = min(lo + _BUILD_CHUNK, self.n - 1)
            parts.append(np.flatnonzero(s[lo + 1 : hi + 1] != s[lo:hi]) + (lo + 1))
        return np.concatenate(parts)

    # -- range statistics ----------------------------------------------------------------------
    def prefix(self, pos) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Prefix sums (weight, centred sum, centred sum of squares) of the first ``pos`` values.

        Parameters
        ----------
        pos : array-like of int, shape (q,)
            Positions in ``[0, n]``.

        Returns
        -------
        p0, p1, p2 : ndarray of shape (q,), float64
        """
        pos = np.asarray(pos, dtype=np.int64).reshape(-1)
        B, s, w = _BLOCK, self.s, self.w
        if pos.size * B > self.n:  # many queries: one pass over the data is cheaper
            return self._prefix_by_pass(pos)
        blk = pos // B
        r = pos - blk * B
        p0, p1, p2 = self.P0[blk], self.P1[blk], self.P2[blk]  # copies (fancy indexing)
        todo = np.flatnonzero(r > 0)
        cols = np.arange(B)
        for c0 in range(0, todo.size, _QUERY_CHUNK):
            sel = todo[c0 : c0 + _QUERY_CHUNK]
            g = blk[sel, None] * B + cols
            mask = cols < r[sel, None]
            np.minimum(g, self.n - 1, out=g)
            d = s[g].astype(np.float64)
            d -= self.shift
            d *= mask
            if w is None:
                p0[sel] += r[sel]
                p1[sel] += d.sum(axis=1)
                d *= d
                p2[sel] += d.sum(axis=1)
            else:
                wg = w[g] * mask
                p0[sel] += wg.sum(axis=1)
                wg *= d
                p1[sel] += wg.sum(axis=1)
                wg *= d
                p2[sel] += wg.sum(axis=1)
        return p0, p1, p2

    def _prefix_by_pass(self, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`prefix` by running sums over the whole data, ``O(n + q log q)``."""
        order = np.argsort(pos, kind="stable")
        ps = pos[order]
        out = np.zeros((3, pos.size))
        run = np.zeros(3)
        s, w = self.s, self.w
        for lo in range(0, self.n, _BUILD_CHUNK):
            hi = min(lo + _BUILD_CHUNK, self.n)
            d = s[lo:hi].astype(np.float64)
            d -= self.shift
            wd = d if w is None else w[lo:hi] * d
            c0 = np.arange(1, hi - lo + 1, dtype=np.float64) if w is None else np.cumsum(w[lo:hi])
            c1 = np.cumsum(wd)
            c2 = np.cumsum(wd * d)
            a, b = np.searchsorted(ps, [lo, hi], side="right")  # positions in (lo, hi]
            at, dst = ps[a:b] - lo - 1, order[a:b]
            for row, c in enumerate((c0, c1, c2)):
                out[row, dst] = run[row] + c[at]
                run[row] += c[-1]
        return out[0], out[1], out[2]

    def locate(self, v) -> np.ndarray:
        """Number of sorted values strictly below each threshold (``searchsorted(..., 'left')``).

        Parameters
        ----------
        v : ndarray of shape (q,), float64
            Thresholds; rounded up to the data dtype first, which keeps every answer exact.
        """
        v = _ceil_cast(np.asarray(v, dtype=np.float64).reshape(-1), self.dtype)
        return np.searchsorted(self.s, v, side="left").astype(np.int64)

    def partition(self, c: np.ndarray) -> np.ndarray:
        """Cluster ranges of the sorted data for sorted centroids ``c``: ``(len(c) + 1,)`` ints.

        Cluster ``j`` is ``s[pos[j]:pos[j + 1]]``: the values nearest to ``c[j]`` (a value on a
        midpoint goes to the upper centroid, as in :func:`_assign`).
        """
        mid = 0.5 * (c[:-1] + c[1:])
        return np.concatenate(([0], self.locate(mid), [self.n])).astype(np.int64)

    def sse(self, pos: np.ndarray, centres: np.ndarray) -> float:
        """``sum(w * (x - centres[j])**2)`` over clusters ``s[pos[j]:pos[j+1]]``, directly."""
        total = 0.0
        s, w = self.s, self.w
        starts, ends = pos[:-1], pos[1:]
        for lo in range(0, self.n, _BUILD_CHUNK):
            hi = min(lo + _BUILD_CHUNK, self.n)
            cnt = np.clip(ends, lo, hi) - np.clip(starts, lo, hi)
            d = s[lo:hi] - np.repeat(centres, cnt)
            # einsum, not BLAS: a threaded dot is far slower on chunks this size
            if w is None:
                total += float(np.einsum("i,i->", d, d))
            else:
                total += float(np.einsum("i,i,i->", w[lo:hi], d, d))
        return total

    # -- sampling ------------------------------------------------------------------------------
    def position_of_weight(self, targets) -> np.ndarray:
        """Index ``p`` of the value where the cumulative weight first exceeds each target."""
        targets = np.asarray(targets, dtype=np.float64).reshape(-1)
        if self.w is None:
            return np.clip(np.floor(targets), 0, self.n - 1).astype(np.int64)
        B = _BLOCK
        nb = self.P0.size - 1
        blk = np.clip(np.searchsorted(self.P0, targets, side="right") - 1, 0, nb - 1)
        rest = targets - self.P0[blk]
        g = blk[:, None] * B + np.arange(B)
        inside = g < self.n
        np.minimum(g, self.n - 1, out=g)
        cum = np.cumsum(self.w[g] * inside, axis=1)
        p = blk * B + np.count_nonzero(cum <= rest[:, None], axis=1)
        return np.minimum(p, self.n - 1)

    def position_of_sq_mass(self, a: int, b: int, c: float, target: float) -> int:
        """Index ``p`` in ``[a, b)`` where ``sum(w (x - c)**2)`` from ``a`` first exceeds target."""
        B, P0, P1, P2 = _BLOCK, self.P0, self.P1, self.P2
        cc = c - self.shift

        def g_block(q: int) -> float:
            return P2[q] - 2.0 * cc * P1[q] + cc * cc * P0[q]

        q0, q1, q2 = self.prefix([a])
        ga = float(q2[0] - 2.0 * cc * q1[0] + cc * cc * q0[0])
        lo_q, hi_q, best = -(-a // B), b // B, -1
        while lo_q <= hi_q:  # largest block boundary in [a, b] whose mass is <= target
            mid = (lo_q + hi_q) // 2
            if g_block(mid) - ga <= target:
                best, lo_q = mid, mid + 1
            else:
                hi_q = mid - 1
        start, base = (a, 0.0) if best < 0 else (max(a, best * B), g_block(best) - ga)
        stop = min(start + B, b)
        d = self.s[start:stop].astype(np.float64) - c
        m = d * d if self.w is None else self.w[start:stop] * d * d
        j = int(np.searchsorted(np.cumsum(m), target - base, side="right"))
        return min(start + j, b - 1)


# --------------------------------------------------------------------------------------------
# Lloyd iterations on the sorted data
# --------------------------------------------------------------------------------------------


def _m_step(data: _SortedData, pos: np.ndarray, k: int) -> tuple[np.ndarray, int]:
    """Means of the non-empty clusters, after refilling empty ones by splitting.

    While fewer than ``k`` clusters hold points, the cluster with the largest SSE is split at its
    mean into the values below and the values at or above it; both halves become clusters. Each
    split lowers the SSE (a cluster's two halves cost less about their own means than about the
    shared one), so Lloyd's SSE stays monotone. A cluster of equal values cannot be split.

    Returns
    -------
    centroids : ndarray of shape (k',), float64, sorted; ``k' < k`` only when no cluster can be
        split any more
    n_relocated : int
    """
    p0, p1, p2 = data.prefix(pos)
    keep = np.diff(pos) > 0
    starts, ends = pos[:-1][keep], pos[1:][keep]
    W, S1, S2 = np.diff(p0)[keep], np.diff(p1)[keep], np.diff(p2)[keep]
    relocated = 0
    if starts.size < k:
        blocked = np.zeros(starts.size, dtype=bool)
        while starts.size < k:
            sse = S2 - S1 * S1 / W
            sse[blocked] = -np.inf
            j = int(np.argmax(sse))
            if not sse[j] > 0:
                break
            a, b = int(starts[j]), int(ends[j])
            p = int(data.locate([data.shift + S1[j] / W[j]])[0])
            if p <= a or p >= b:  # rounding: the cluster holds a single value
                blocked[j] = True
                continue
            q0, q1, q2 = data.prefix([a, p, b])
            starts = np.insert(starts, j + 1, p)
            ends = np.insert(ends, j, p)
            W = np.insert(W, j + 1, q0[2] - q0[1])
            S1 = np.insert(S1, j + 1, q1[2] - q1[1])
            S2 = np.insert(S2, j + 1, q2[2] - q2[1])
            W[j], S1[j], S2[j] = q0[1] - q0[0], q1[1] - q1[0], q2[1] - q2[0]
            blocked = np.insert(blocked, j + 1, False)
            relocated += 1
    return data.shift + S1 / W, relocated


def _lloyd(data: _SortedData, c0, k: int, max_iter: int, tol: float):
    """Lloyd iterations from ``c0`` (any length <= k, duplicates allowed).

    Returns
    -------
    centroids : ndarray of shape (k_eff,), sorted, every cluster non-empty
    pos : ndarray of shape (k_eff + 1,), the nearest-centroid ranges of the sorted data
    n_iter : int
    converged : bool
    """
    c = np.sort(np.asarray(c0, dtype=np.float64))
    thresh = tol * (data.hi - data.lo)
    pos = data.partition(c)
    n_iter, converged = 0, False
    while n_iter < max_iter:
        n_iter += 1
        new_c, relocated = _m_step(data, pos, k)
        moved = np.inf if new_c.size != c.size else float(np.max(np.abs(new_c - c)))
        new_pos = data.partition(new_c)
        c = new_c
        if not relocated and np.array_equal(new_pos, pos):
            converged = True  # exact fixed point: c are the means of pos, pos is nearest to c
            break
        pos = new_pos
        if not relocated and moved <= thresh:
            converged = True
            break
    keep = np.diff(pos) > 0
    if not keep.all():  # only possible when max_iter stopped right after a relocation
        c = c[keep]
        pos = data.partition(c)
    return c, pos, n_iter, converged


# --------------------------------------------------------------------------------------------
# exact dynamic programme
# --------------------------------------------------------------------------------------------


def _row_min(A, Wt, S1t, Wi, S1i, S2i, t_first, t_last):
    """Row minimisation of a staircase Monge matrix by divide and conquer, vectorised.

    Computes, for every row ``i``,
    ``D[i] = S2i[i] + min_t (A[t] - (S1i[i] - S1t[t])**2 / (Wi[i] - Wt[t]))`` over the columns
    ``t`` in ``[t_first[i], t_last[i]]`` (both non-decreasing in ``i``; an empty range gives
    ``inf``). ``A[t] - S2t[t]`` plus the cost of the run from ``t`` to ``i`` satisfies the
    quadrangle inequality, so some optimal ``t`` is non-decreasing in ``i``: each level of the
    recursion evaluates the middle rows of all its pieces together, ``O(I + T)`` candidate pairs
    per level, ``O((I + T) log I)`` in all.

    Returns
    -------
    D : ndarray of shape (I,), float64
    opt : ndarray of shape (I,), int64, an optimal column of every row
    """
    n_rows, n_cols = Wi.size, A.size
    D = np.full(n_rows, np.inf)
    opt = np.zeros(n_rows, dtype=np.int64)
    if n_rows == 0 or n_cols == 0:
        return D, opt
    t_first = np.maximum.accumulate(np.asarray(t_first, dtype=np.int64))
    t_last = np.minimum.accumulate(np.asarray(t_last, dtype=np.int64)[::-1])[::-1]
    ilo, ihi = np.array([0]), np.array([n_rows - 1])
    tlo, thi = np.array([0]), np.array([n_cols - 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        while ilo.size:
            mid = (ilo + ihi) >> 1
            first = np.maximum(tlo, t_first[mid])
            last = np.minimum(thi, t_last[mid])
            empty = last < first
            any_empty = bool(empty.any())
            L = np.where(empty, 1, last - first + 1) if any_empty else last - first + 1
            ends = np.cumsum(L)
            offs = ends - L
            t = np.arange(int(ends[-1])) + np.repeat(first - offs, L)
            if any_empty:
                np.clip(t, 0, n_cols - 1, out=t)
            dW = np.repeat(Wi[mid], L) - Wt[t]
            dS = np.repeat(S1i[mid], L) - S1t[t]
            val = A[t] - dS * dS / dW
            if any_empty:
                val[offs[empty]] = np.inf
            mins = np.minimum.reduceat(val, offs)
            # leftmost column reaching the minimum of each piece (n_cols if none: NaN)
            best = np.minimum.reduceat(np.where(val == np.repeat(mins, L), t, n_cols), offs)
            np.minimum(best, np.minimum(first, n_cols - 1), out=best, where=best == n_cols)
            D[mid] = mins + S2i[mid]
            opt[mid] = best
            lm, rm = ilo <= mid - 1, mid + 1 <= ihi
            ilo, ihi, tlo, thi = (
                np.concatenate((ilo[lm], mid[rm] + 1)),
                np.concatenate((mid[lm] - 1, ihi[rm])),
                np.concatenate((tlo[lm], best[rm])),
                np.concatenate((best[lm], thi[rm])),
            )
    return D, opt


def _dp_row(A, S1, W, S2, i_lo: int, i_hi: int, t_lo: int, low: np.ndarray):
    """One row of the programme over all points: ``D[i]`` for ``i`` in ``[i_lo, i_hi]``.

    ``D[i] = S2[i] + min_t (A[t] - (S1[i] - S1[t])**2 / (W[i] - W[t]))`` over
    ``t`` in ``[max(t_lo, low[i]), i - 1]``, by :func:`_row_min`. ``low`` is the previous row's
    optimum, a lower bound on this row's (the last of ``j`` runs starts no earlier than the last
    of ``j - 1``), which roughly halves the work for large ``k``.
    """
    ii = np.arange(i_lo, i_hi + 1)
    t_first = np.minimum(np.maximum(t_lo, low[ii]), ii - 1)
    Di, oi = _row_min(A, W, S1, W[ii], S1[ii], S2[ii], t_first, ii - 1)
    D = np.full(A.size, np.inf)
    opt = np.zeros(A.size, dtype=np.int32)
    D[ii] = Di
    opt[ii] = oi
    return D, opt


def _optimal_partition(y: np.ndarray, w: np.ndarray, k: int) -> np.ndarray:
    """Globally optimal partition of sorted distinct points ``y`` (weights ``w``) into ``k`` runs.

    Returns
    -------
    cuts : ndarray of shape (k + 1,), int64
        Run ``j`` is ``y[cuts[j]:cuts[j + 1]]``; ``cuts[0] = 0`` and ``cuts[k] = m``.
    """
    m = y.size
    if k >= m:
        return np.arange(m + 1, dtype=np.int64)
    if k == 1:
        return np.array([0, m], dtype=np.int64)
    d = y - y[m // 2]
    W = np.concatenate(([0.0], np.cumsum(w)))
    S1 = np.concatenate(([0.0], np.cumsum(w * d)))
    S2 = np.concatenate(([0.0], np.cumsum(w * d * d)))
    with np.errstate(divide="ignore", invalid="ignore"):
        D = S2 - S1 * S1 / W  # one run: cost of the first i points
    D[0] = 0.0
    opts = np.zeros((k + 1, m + 1), dtype=np.int32)
    for j in range(2, k):  # D[i]: best cost of the first i points in j runs
        D, opts[j] = _dp_row(D - S2, S1, W, S2, j, m - (k - j), j - 1, opts[j - 1])
    t = np.arange(max(k - 1, int(opts[k - 1, m - 1])), m)  # last row: only i = m is needed
    val = (D - S2)[t] - (S1[m] - S1[t]) ** 2 / (W[m] - W[t])
    opts[k, m] = t[int(np.argmin(val))]
    cuts = np.empty(k + 1, dtype=np.int64)
    cuts[k], i = m, m
    for j in range(k, 1, -1):
        i = int(opts[j, i])
        cuts[j - 1] = i
    cuts[0] = 0
    return cuts


def _run_means(y: np.ndarray, w: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted means of the runs ``y[cuts[j]:cuts[j+1]]`` and their SSE, computed directly."""
    sizes = np.diff(cuts)
    seg = np.repeat(np.arange(sizes.size), sizes)
    wsum = np.bincount(seg, weights=w, minlength=sizes.size)
    centres = np.bincount(seg, weights=w * y, minlength=sizes.size) / wsum
    d = y - centres[seg]
    return centres, float(np.sum(w * d * d))


def _bin_cuts(data: _SortedData, bins: int) -> np.ndarray:
    """Cut positions of a histogram of at most ``bins`` non-empty bins over the sorted data.

    The bins are equal in the measure ``p**(1/3) dx`` (``p`` the data's density, estimated
    from ``4 * bins`` quantiles), the density of the centroids of an optimal quantiser for
    large ``k`` (Panter and Dite): every cluster of the optimum spans about the same number of
    bins, wherever it lies. Every edge sits at the first occurrence of a value, so equal values
    never straddle two bins.

    Returns
    -------
    pos : ndarray of shape (m + 1,), int64, strictly increasing, ``pos[0] = 0``, ``pos[m] = n``
        Bin ``b`` is ``s[pos[b]:pos[b + 1]]``.
    """
    n_q = int(min(4 * bins, data.n, 1 << 16))
    q = data.position_of_weight(np.arange(1, n_q) / n_q * data.total_weight)
    v = np.concatenate(([data.lo], data.s[q].astype(np.float64), [data.hi]))
    g = np.concatenate(([0.0], np.cumsum(np.diff(v) ** (2.0 / 3.0))))
    edges = np.interp(np.arange(1, bins) / bins * g[-1], g, v)
    pos = np.concatenate(([0], data.locate(edges), [data.n]))
    keep = np.empty(pos.size, dtype=bool)
    keep[0] = True
    np.not_equal(pos[1:], pos[:-1], out=keep[1:])
    return pos[keep]


def _band_dp(data: _SortedData, grid, lo: np.ndarray, hi: np.ndarray):
    """Best partition of the sorted data into ``k`` runs whose ``j``-th cut lies in a band.

    Cut ``j`` (``j = 1 .. k - 1``; run ``j`` ends before position ``cut[j]``) may be any first
    occurrence of a value in ``[lo[j - 1], hi[j - 1]]``. The programme runs row by row over the
    bands only: row ``j`` is the band of cut ``j``, its columns the band of cut ``j - 1``, each
    solved by :func:`_row_min`, ``O(w log w)`` for bands of ``w`` positions, with exact range
    sums from the block prefix sums.

    Returns
    -------
    cuts : ndarray of shape (k + 1,), int64, or None if no partition fits the bands
    """
    n_cuts = lo.size
    lo = np.maximum(lo, 1)
    hi = np.minimum(hi, data.n - 1)
    if grid is None:  # every first occurrence of a value
        lens = np.maximum(hi - lo + 1, 0)
        ends = np.cumsum(lens)
        idx = np.arange(int(ends[-1])) + np.repeat(lo - (ends - lens), lens)
        s = data.s
        ok = s[idx] != s[idx - 1]
        band = np.repeat(np.arange(n_cuts), lens)[ok]
        idx = idx[ok]
    else:  # the positions of ``grid`` in each band
        a = np.searchsorted(grid, lo, side="left")
        lens = np.maximum(np.searchsorted(grid, hi, side="right") - a, 0)
        ends = np.cumsum(lens)
        idx = grid[np.arange(int(ends[-1])) + np.repeat(a - (ends - lens), lens)]
        band = np.repeat(np.arange(n_cuts), lens)
    bounds = np.searchsorted(band, np.arange(n_cuts + 1))
    if np.any(np.diff(bounds) == 0):
        return None
    p0, p1, p2 = data.prefix(np.concatenate((idx, [data.n])))
    W, S1, S2 = p0[:-1], p1[:-1], p2[:-1]
    Wn, S1n = p0[-1], p1[-1]
    opts = []
    a, b = bounds[0], bounds[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        D = S2[a:b] - S1[a:b] ** 2 / W[a:b]  # one run from position 0
    for j in range(1, n_cuts):
        c, d = bounds[j], bounds[j + 1]
        if (b - a) * (d - c) <= _DENSE_CELLS:  # small bands: every pair at once
            with np.errstate(divide="ignore", invalid="ignore"):
                dS = S1[c:d, None] - S1[None, a:b]
                val = (D - S2[a:b])[None, :] - dS * dS / (W[c:d, None] - W[None, a:b])
            val[idx[c:d, None] <= idx[None, a:b]] = np.inf
            o = np.argmin(val, axis=1)
            D = val[np.arange(d - c), o] + S2[c:d]
        else:
            t_last = np.searchsorted(idx[a:b], idx[c:d], side="left") - 1
            D, o = _row_min(
                D - S2[a:b], W[a:b], S1[a:b], W[c:d], S1[c:d], S2[c:d],
                np.zeros(d - c, dtype=np.int64), t_last,
            )
        opts.append(o)
        a, b = c, d
    with np.errstate(divide="ignore", invalid="ignore"):
        val = D - S2[a:b] - (S1n - S1[a:b]) ** 2 / (Wn - W[a:b])
    if not np.isfinite(val).any():
        return None
    t = int(np.argmin(val))
    cuts = np.empty(n_cuts + 2, dtype=np.int64)
    cuts[0], cuts[-1] = 0, data.n
    for j in range(n_cuts - 1, -1, -1):
        cuts[j + 1] = idx[bounds[j] + t]
        if j:
            t = int(opts[j - 1][t])
    return cuts


def _refine(data: _SortedData, cuts: np.ndarray, pos: np.ndarray, max_rounds: int = 32):
    """Carry the cuts of a histogram optimum to full resolution, ``_REFINE_FACTOR`` x at a time.

    At each level the grid of allowed cut positions is ``_REFINE_FACTOR`` times finer (a finer
    histogram, last of all every value); band ``j`` is the part of the new grid within
    ``_BAND_BINS`` bins of the previous grid (and at least ``_BAND_POINTS`` values) on either
    side of cut ``j``, and :func:`_band_dp` finds the best partition with every cut in its band.
    All cuts move together, so shifts of many boundaries at once (the flat directions where
    Lloyd crawls) are found. A cut that lands in the outer bin of its band has its band
    re-centred and the level repeats. Never worse than ``cuts``, which lie in the first bands.
    """
    n = data.n
    coarse = pos
    bins = pos.size - 1
    while True:
        bins *= _REFINE_FACTOR
        last = bins * 8 >= data.n
        grid = None if last else _bin_cuts(data, bins)
        m = coarse.size - 1
        c = cuts[1:-1]
        for _ in range(max_rounds):
            b = np.searchsorted(coarse, c, side="right") - 1
            blo, bhi = np.clip(b - _BAND_BINS, 0, m), np.clip(b + 1 + _BAND_BINS, 0, m)
            lo = np.minimum(coarse[blo], c - _BAND_POINTS)
            hi = np.maximum(coarse[bhi], c + _BAND_POINTS)
            new = _band_dp(data, grid, lo, hi)
            if new is None:
                break
            cuts = new
            nc = cuts[1:-1]
            nb = np.searchsorted(coarse, nc, side="right") - 1
            edge = ((nb <= blo) & (lo > 1)) | ((nb >= bhi - 1) & (hi < n - 1))
            if not edge.any():
                break
            c = nc
        if last:
            return cuts
        coarse = grid


# --------------------------------------------------------------------------------------------
# certified exact optimum at full resolution: branch and bound over nested histograms
# --------------------------------------------------------------------------------------------


class _Chain:
    """One direction of the penalised chain programme of :func:`_certified_partition`.

    State ``(r, beta)``: boundary ``r`` (the end of run ``r``) placed at boundary ``beta`` of the
    current histogram. ``rows[r]`` holds, for ``beta`` in ``[rlo[r], rhi[r]]``, the least value of
    ``sum(c'(run))`` over runs ``1 .. r``, where a run of bins ``[alpha, beta)`` costs

    ``c'(alpha, beta) = cost(alpha, beta) - 2 T[r - 1] hi_ext[beta] [run not first]
    + 2 T[r] lo_ext[alpha] [run not last]``

    for run ``r`` (``cost`` the exact SSE of the values of those bins), and an empty run
    (``alpha == beta``) costs ``2 (T[r] - T[r - 1]) v[beta]``, ``v[beta]`` the first value after
    the boundary. For a fixed ``r`` the ``T`` terms are separable, so ``c'`` keeps the
    quadrangle inequality and :func:`_row_min` applies.
    """

    def __init__(self, Wc, S1c, S2c, lo_ext, hi_ext, v, T, rlo, rhi, k, local=None):
        self.Wc, self.S1c, self.S2c, self.lo_ext, self.hi_ext = Wc, S1c, S2c, lo_ext, hi_ext
        self.v, self.T2, self.rlo, self.rhi = v, 2.0 * T, rlo, rhi
        self.local = local  # (data, pos): sums of each step about a local value, for precision
        self.rows = [None] * k
        self.opts = [None] * k
        a, e = rlo[1], rhi[1]
        W, S1, S2 = self.sums(0, 0, a, e)[3:]
        with np.errstate(divide="ignore", invalid="ignore"):
            c = S2 - S1**2 / W
        c[W <= 0] = 0.0
        self.rows[1] = c + self.T2[1] * lo_ext[0]

    def sums(self, pa, pe, a, e):
        """Prefix sums at the boundaries ``pa..pe`` (columns) and ``a..e`` (rows).

        Global ones, or (``local``) sums of the values from the first of these boundaries on,
        about the value in the middle of that span: small numbers, so the run costs keep their
        relative precision instead of that of sums over the whole data.
        """
        cols, rows = slice(pa, pe + 1), slice(a, e + 1)
        if self.local is None:
            return (self.Wc[cols], self.S1c[cols], self.S2c[cols],
                    self.Wc[rows], self.S1c[rows], self.S2c[rows])
        data, pos = self.local
        p0, p1 = pos[min(pa, a)], pos[max(pe, e)]
        x = data.s[p0:p1].astype(np.float64)
        x -= x[x.size // 2] if x.size else 0.0
        w = np.ones(x.size) if data.w is None else data.w[p0:p1]
        c0 = np.concatenate(([0.0], np.cumsum(w)))
        wx = w * x
        c1 = np.concatenate(([0.0], np.cumsum(wx)))
        c2 = np.concatenate(([0.0], np.cumsum(wx * x)))
        ic, ir = pos[cols] - p0, pos[rows] - p0
        return c0[ic], c1[ic], c2[ic], c0[ir], c1[ir], c2[ir]

    def step_input(self, r: int):
        pa, pe, a, e = self.rlo[r - 1], self.rhi[r - 1], self.rlo[r], self.rhi[r]
        Wt, S1t, S2t, Wi, S1i, S2i = self.sums(pa, pe, a, e)
        A = self.rows[r - 1] + self.T2[r] * self.lo_ext[pa : pe + 1] - S2t
        t_last = np.minimum(np.arange(a, e + 1) - 1, pe) - pa  # non-empty runs: alpha < beta
        return A, Wt, S1t, Wi, S1i, S2i, t_last

    def step_output(self, r: int, D: np.ndarray, o: np.ndarray):
        pa, pe, a, e = self.rlo[r - 1], self.rhi[r - 1], self.rlo[r], self.rhi[r]
        D = D - self.T2[r - 1] * self.hi_ext[a : e + 1]
        lo_c, hi_c = max(a, pa), min(e, pe)
        if lo_c <= hi_c:  # an empty run (alpha == beta)
            emp = self.rows[r - 1][lo_c - pa : hi_c - pa + 1]
            emp = emp + (self.T2[r] - self.T2[r - 1]) * self.v[lo_c : hi_c + 1]
            cur = D[lo_c - a : hi_c - a + 1]
            better = emp < cur
            cur[better] = emp[better]
            o[lo_c - a : hi_c - a + 1][better] = np.arange(lo_c, hi_c + 1)[better] - pa
        self.rows[r] = D
        self.opts[r] = o


def _run_chains(chains, k: int) -> None:
    """Advance independent chains ``r = 2 .. k - 1`` together, one :func:`_row_min` per step.

    The problems are laid side by side (columns and rows concatenated); each one's columns come
    after the previous one's, so the optimal columns stay non-decreasing across the whole set.
    """
    for r in range(2, k):
        parts = [c.step_input(r) for c in chains]
        offs = np.cumsum([0] + [p[0].size for p in parts[:-1]])
        cat = [np.concatenate([p[i] for p in parts]) for i in range(6)]
        t_last = np.concatenate([p[6] + off for p, off in zip(parts, offs)])
        t_first = np.repeat(offs, [p[6].size for p in parts])
        D, o = _row_min(*cat, t_first, t_last)
        D[t_last < t_first] = np.inf
        at = 0
        for c, p, off in zip(chains, parts, offs):
            m = p[6].size
            c.step_output(r, D[at : at + m], o[at : at + m] - off)
            at += m


def _snap_slack(data: _SortedData, pos: np.ndarray, bins: np.ndarray) -> np.ndarray:
    """For each bin of ``bins``, ``max_c min(L(c), R(c))`` over the positions ``c`` inside it.

    ``L(c) = sum_{pos[b] <= i < c} w_i (x_c - x_i)`` and
    ``R(c) = sum_{c <= i < pos[b+1]} w_i (x_i - x_{c-1})``: the weighted distances that moving
    a cut at ``c`` to the bin's lower or upper edge carries across the cut's midpoint. Work is
    proportional to the values in ``bins``, a chunk of bins at a time.
    """
    out = np.zeros(bins.size)
    st, en = pos[bins], pos[bins + 1]
    size = en - st
    ends = np.cumsum(size)
    first = 0
    while first < bins.size:
        last = max(int(np.searchsorted(ends, ends[first] - size[first] + _BUILD_CHUNK)), first + 1)
        sl = slice(first, last)
        sz, base = size[sl], st[sl]
        tot = int(sz.sum())
        off = np.cumsum(sz) - sz
        idx = np.arange(tot) + np.repeat(base - off, sz)
        x = data.s[idx].astype(np.float64)
        x -= data.shift
        w = np.ones(tot) if data.w is None else data.w[idx]
        c0 = np.cumsum(w)
        c1 = np.cumsum(w * x)
        # exclusive within-bin prefix sums at every position, and the bin totals
        seg = np.repeat(np.arange(sz.size), sz)
        b0 = (c0[off + sz - 1] - c0[off] + w[off])
        b1 = (c1[off + sz - 1] - c1[off] + (w * x)[off])
        e0 = c0 - w - (c0[off] - w[off])[seg]
        e1 = c1 - w * x - (c1[off] - (w * x)[off])[seg]
        prev = np.concatenate(([0.0], x[:-1]))
        left = x * e0 - e1
        right = (b1[seg] - e1) - prev * (b0[seg] - e0)
        v = np.minimum(left, right)
        v[off] = 0.0  # the bin's first position is its lower edge: nothing moves
        out[sl] = np.maximum.reduceat(v, off)
        first = last
    return np.maximum(out, 0.0)


def _certified_partition(data: _SortedData, k: int, starts: np.ndarray):
    """Globally optimal partition at full resolution, or None if a size limit stops it.

    Branch and bound over nested histograms, finest last (every distinct value its own bin).

    **Lower bound.** Let ``P`` be an optimal partition of the sorted values into ``k`` runs
    (each value is then nearest to its own run's mean: ``x_{c-1} <= m <= x_c`` at each cut
    ``c``, ``m`` the midpoint of the two means). Move every cut that falls strictly inside a
    bin ``b`` to an edge of the bin (several cuts in one bin: those with ``L(c) <= R(c)`` to the
    lower edge, the rest to the upper one; see :func:`_snap_slack`), giving a partition ``P'``
    of whole bins, with empty runs where cuts meet. A moved value ``x`` leaves its run ``r``
    for a run ``r'`` with means ``mu_r < mu_r'`` (or the reverse), changing the cost about the
    *old* means by ``2 (mu_r' - mu_r) |x - m_{r r'}|``; with ``|x - m| <= |x - x_{c-1}|`` (or
    ``x_c``) the bin's total is at most ``2 G tau_b``, ``tau_b`` from :func:`_snap_slack` and
    ``G = hi(end of the run after) - lo(start of the run before)`` (the two means lie in the
    neighbouring runs, one bin beyond their edges at most). Re-centring on ``P'``'s own means
    only lowers the cost, so ``cost(P) >= sum over runs of P' of cost(run) - 2 T_j G_j``,
    summed over ``P'``'s boundaries ``j``, where ``T_j >= tau_b`` for every bin ``b`` in the range
    of cut ``j``. Splitting ``T_j G_j`` between the two runs it touches gives the separable run
    cost of :class:`_Chain`. Where cuts ``j .. j + q`` meet in one bin, the empty runs between
    them add ``2 (T_{i+1} - T_i) v`` (``v`` the first value after the boundary, between the two
    ends of ``G``), so the group's total is
    ``-2 T_j (v - lo) - 2 T_{j+q} (hi - v) <= -2 min(T_j, T_{j+q}) G``, which covers it, however
    the group is split between the forward and the backward programme. Its minimum over all chains of
    ``k`` runs with boundary ``j`` at ``beta`` (a forward programme to ``beta`` plus a backward
    one from it) is a lower bound ``LB_j(beta)`` on every optimal partition whose cut ``j`` snaps
    to ``beta``. Cut ``j`` inside bin ``b`` snaps to ``b`` or ``b + 1``.

    **Pruning.** ``UB`` is the SSE of a real partition (the best chain's, after a few Lloyd
    iterations). If ``min(LB_j(b), LB_j(b + 1)) > UB`` (plus a rounding allowance), no optimal
    partition has cut ``j`` in bin ``b``: the cell is dead. Cut ``j`` keeps the range from its
    first to its last live bin. The next histogram splits every bin into ``_CERT_FACTOR`` and
    its programmes run only over the live ranges: an optimal partition has every cut in a live
    cell, so it is still among the chains searched, and the bound stays valid for it.

    **Exactness.** The last histogram has one bin per distinct value: no cut is inside a bin,
    ``tau = 0``, ``c'`` is the exact run cost and the forward programme over the live ranges is
    the exact dynamic programme restricted to ranges that contain every cut of an optimal
    partition. Its best chain is therefore a global optimum (up to the rounding of the prefix
    sums, as for the programme on distinct values).

    **Cost.** Each level is ``k`` row minimisations by divide and conquer over the live ranges,
    forward and backward (forward only at the last level); the first level (``max(4096, 16 k)``
    bins) is the only one over all bins, and later ones touch only the values of bins in some
    cut's range. On 10**6 normal values (993,208 distinct), ``k = 256``, the range searched for
    a cut was on average all 4054 bins of the first histogram, then 1758, 1773, 1409 and 713
    bins of histograms of 16080, 62816, 235760 and 752253 bins, and 289 values at full
    resolution (a cluster holds 3906 on average). Memory: the histograms'
    boundaries and prefix sums (``O(M)`` per level) and ``16 k w`` bytes for ranges of ``w``.

    Returns
    -------
    cuts : ndarray of shape (k + 1,), int64, positions in the sorted data, or None
    optimum : float, the programme's optimal SSE
    """
    n = data.n
    if n > MAX_CERTIFIED_N:
        return None
    m0 = int(min(max(_CERT_BINS, 16 * k), starts.size))
    if k * m0 > _MAX_DP_CELLS // 8:
        return None
    all_starts = np.concatenate((starts, [n]))
    pos = _bin_cuts(data, m0)
    M = pos.size - 1
    rlo = np.zeros(k, dtype=np.int64)
    rhi = np.full(k, M, dtype=np.int64)
    ub = np.inf
    while True:
        M = pos.size - 1
        mark = np.zeros(M + 1, dtype=np.int64)
        np.add.at(mark, rlo[1:], 1)
        np.add.at(mark, rhi[1:], -1)
        live = np.flatnonzero(np.cumsum(mark)[:M] > 0)  # bins in the range of some cut
        i0 = np.searchsorted(all_starts, pos[live])
        n_vals = np.searchsorted(all_starts, pos[live + 1]) - i0  # distinct values per bin
        final = bool(np.all(n_vals == 1))
        need = np.zeros(M + 1, dtype=bool)
        need[live] = need[live + 1] = True
        need[0] = need[M] = True
        at = np.flatnonzero(need)
        Wc, S1c, S2c = (np.full(M + 1, np.nan) for _ in range(3))
        Wc[at], S1c[at], S2c[at] = data.prefix(pos[at])
        lo = data.s[pos[:-1]].astype(np.float64) - data.shift
        hi = data.s[pos[1:] - 1].astype(np.float64) - data.shift
        lo_ext = np.concatenate((lo[:1], lo))  # lo of the bin before boundary alpha
        hi_ext = np.concatenate((hi, hi[-1:]))  # hi of the bin after boundary beta
        v = np.concatenate((lo, hi[-1:]))  # the first value after each boundary
        T = np.zeros(k + 1)  # T[j] >= tau of every bin in the range of cut j
        if not final:
            tau = np.zeros(M)
            tau[live] = _snap_slack(data, pos, live)
            for j in range(1, k):
                T[j] = tau[rlo[j] : max(rhi[j], rlo[j] + 1)].max()
        local = None
        if final:  # local sums cost the values each step spans: use them while that is O(n)
            top = np.maximum(rhi[1:], np.concatenate(([0], rhi[1:-1])))
            bottom = np.minimum(rlo[1:], np.concatenate(([0], rlo[1:-1])))
            if int(np.sum(pos[top] - pos[bottom])) <= 4 * n:
                local = (data, pos)
        fwd = _Chain(Wc, S1c, S2c, lo_ext, hi_ext, v, T, rlo, rhi, k, local)
        chains = [fwd]
        if not final:  # the backward programme: the same on the mirrored histogram
            rlo_b = np.zeros(k, dtype=np.int64)
            rhi_b = np.zeros(k, dtype=np.int64)
            rlo_b[1:] = M - rhi[1:][::-1]
            rhi_b[1:] = M - rlo[1:][::-1]
            bwd = _Chain(
                Wc[-1] - Wc[::-1], S1c[::-1] - S1c[-1], S2c[-1] - S2c[::-1],
                -hi_ext[::-1], -lo_ext[::-1], -v[::-1], T[::-1].copy(), rlo_b, rhi_b, k,
            )
            chains.append(bwd)
        _run_chains(chains, k)
        a, e = rlo[k - 1], rhi[k - 1]
        Wt, S1t, S2t, Wn, S1n, S2n = fwd.sums(a, e, M, M)
        dW = Wn - Wt
        with np.errstate(divide="ignore", invalid="ignore"):
            last = (S2n - S2t) - (S1n - S1t) ** 2 / dW
        last[dW <= 0] = 0.0
        total = fwd.rows[k - 1] + last - 2.0 * T[k - 1] * hi_ext[M]
        best = int(np.argmin(total))
        if not np.isfinite(total[best]):
            return None
        beta = best + a
        bnd = np.empty(k + 1, dtype=np.int64)
        bnd[0], bnd[k], bnd[k - 1] = 0, M, beta
        for r in range(k - 1, 1, -1):
            beta = int(fwd.opts[r][beta - rlo[r]]) + rlo[r - 1]
            bnd[r - 1] = beta
        cuts = pos[bnd]
        if final:
            return cuts, float(total[best])
        # upper bound: the best chain as a partition, improved by a few Lloyd iterations
        cu = np.unique(cuts)
        q0, q1, q2 = data.prefix(cu)
        ub = min(ub, float(np.sum(np.diff(q2) - np.diff(q1) ** 2 / np.diff(q0))))
        _, p_l, _, _ = _lloyd(data, data.shift + np.diff(q1) / np.diff(q0), k, _CERT_LLOYD_ITER, 0.0)
        q0, q1, q2 = data.prefix(p_l)
        ub = min(ub, float(np.sum(np.diff(q2) - np.diff(q1) ** 2 / np.diff(q0))))
        thr = ub + 16 * k * _EPS * (np.nanmax(np.abs(S2c)) + np.nanmax(np.abs(S1c))) + 1e-12 * ub
        new_lo = np.zeros(k, dtype=np.int64)
        new_hi = np.zeros(k, dtype=np.int64)
        for j in range(1, k):
            a, e = rlo[j], rhi[j]
            back = bwd.rows[k - j][(M - e) - rlo_b[k - j] : (M - a) - rlo_b[k - j] + 1][::-1]
            lb = fwd.rows[j] + back
            alive = np.flatnonzero(np.minimum(lb[:-1], lb[1:]) <= thr)
            if alive.size == 0:  # rounding trouble: give up rather than guess
                return None
            new_lo[j], new_hi[j] = a + alive[0], a + alive[-1] + 1
        # split every bin in a cut's range into _CERT_FACTOR runs of its distinct values
        many = n_vals > 1
        sub = i0[many, None] + n_vals[many, None] * np.arange(1, _CERT_FACTOR) // _CERT_FACTOR
        fine = np.concatenate((pos, all_starts[sub.ravel()]))
        fine.sort()
        keep = np.empty(fine.size, dtype=bool)
        keep[0] = True
        np.not_equal(fine[1:], fine[:-1], out=keep[1:])
        fine = fine[keep]
        to_fine = np.searchsorted(fine, pos)
        rlo, rhi = to_fine[new_lo], to_fine[new_hi]
        pos = fine


def _dp_init(
    data: _SortedData, k: int, n_distinct: int, limit: int, bins: int, certify: bool = False
):
    """Centroids from the dynamic programme, on the distinct values or on a histogram.

    Returns
    -------
    centroids : ndarray of shape (<= k,)
    method : {"exact", "histogram"}
    n_bins : int or None
    lower_bound : float
        The optimum itself (``"exact"``), or the certified bound of :class:`KMeans1D`'s Notes.
    """
    if certify and n_distinct > limit and k > 1:
        starts = data.distinct_starts()
        found = _certified_partition(data, k, starts)
        if found is not None:
            cuts, opt = found
            p0, p1, _ = data.prefix(cuts)
            return data.shift + np.diff(p1) / np.diff(p0), "exact", None, opt
    if n_distinct <= limit:
        starts = data.distinct_starts()
        pos = np.concatenate((starts, [data.n]))
        y = data.s[starts].astype(np.float64)
        wy = np.diff(pos).astype(np.float64) if data.w is None else np.diff(data.prefix(pos)[0])
        method, n_bins = "exact", None
    else:
        pos = _bin_cuts(data, bins)
        p0, p1, _ = data.prefix(pos)
        wy = np.diff(p0)
        y = data.shift + np.diff(p1) / wy
        method, n_bins = "histogram", int(bins)
    kk = min(k, y.size)
    if kk * (y.size + 1) > _MAX_DP_CELLS:
        raise ValueError(
            f"method='exact' would need a {kk} x {y.size} table (over 1 GiB); pass a smaller "
            f"n_bins, fewer n_clusters, or method='lloyd'"
        )
    cuts = _optimal_partition(y, wy, kk)
    if method == "exact":
        centres, opt_y = _run_means(y, wy, cuts)
        return centres, method, n_bins, opt_y
    _, opt_y = _run_means(y, wy, cuts)
    delta = math.sqrt(max(data.sse(pos, y), 0.0))  # distance of the data to the bin means
    bound = max(0.0, math.sqrt(opt_y) - delta) ** 2
    if kk > 1:
        cuts = _refine(data, pos[cuts], pos)
        p0, p1, _ = data.prefix(cuts)
        return data.shift + np.diff(p1) / np.diff(p0), method, n_bins, bound
    return _run_means(y, wy, cuts)[0], method, n_bins, bound


def _auto_choice(k: int, n_distinct: int, n_bins: int | None) -> tuple[str, int, int]:
    """What ``method="auto"`` runs: ``(method, limit, bins)`` as :meth:`KMeans1D.fit` uses them.

    The programme on the distinct values when it is cheap (``k m log2 m <= 2**25``, about a
    quarter of a second); else on a histogram of about ``32 k`` bins (at least ``_AUTO_MIN_BINS``,
    at most ``DEFAULT_N_BINS``, or ``n_bins`` when given), refined to full resolution; Lloyd only
    when even that table would be too large (``k > 4096`` with the default bins).
    """
    m = n_distinct
    limit = MAX_EXACT_UNIQUE if n_bins is None else n_bins
    if m <= limit and min(k, m) * m * max(1.0, math.log2(m)) <= _AUTO_DP_BUDGET:
        return "exact", limit, m
    if n_bins is None:
        bins = 1 << max(0, (_AUTO_BINS_PER_CLUSTER * k - 1).bit_length())
        bins = int(min(max(bins, _AUTO_MIN_BINS), DEFAULT_N_BINS))
    else:
        bins = n_bins
    if k * bins > _AUTO_MAX_CELLS:
        return "lloyd", limit, bins
    return "exact", min(limit, bins), bins


# --------------------------------------------------------------------------------------------
# labelling
# --------------------------------------------------------------------------------------------


def _assign(x: np.ndarray, c: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Index of the nearest centroid for every value of ``x`` (ties go to the upper one).

    ``label = #{boundaries <= x}`` with boundaries at the midpoints of ``c``, computed exactly but
    without a binary search per value: a uniform grid over the boundaries' range maps each value
    to a cell; a table gives the count of boundaries below the cell and the (at most a few)
    boundaries inside it, which are compared directly. Work dtype is the data's own (float32
    stays float32); memory is ``O(chunk)`` besides the output.
    """
    n = x.size
    out = np.zeros(n, dtype=dtype)
    k = c.size
    if k == 1 or n == 0:
        return out
    work = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    b = _ceil_cast(0.5 * (c[:-1] + c[1:]), work)
    bf = b.astype(np.float64)
    lo, span = bf[0], bf[-1] - bf[0]
    table = None
    if k > 2 and span > 0:
        G = int(min(1 << 20, max(1024, 1 << int(16 * (k - 1) - 1).bit_length())))
        while True:
            width = span / G
            cells = np.arange(G, dtype=np.float64)
            base = np.searchsorted(bf, lo + (cells - 0.5) * width, side="right")
            cnt = np.searchsorted(bf, lo + (cells + 1.5) * width, side="right") - base
            r = int(cnt.max())
            if r <= 4 or G >= 1 << 20:
                break
            G = min(G * 4, 1 << 20)
        if r <= 8 and G / span < np.finfo(work).max:
            inner = np.full((r, G), np.inf, dtype=work)
            for q in range(r):
                ok = cnt > q
                inner[q, ok] = b[base[ok] + q]
            table = (G, base.astype(dtype), inner, work.type(lo), work.type(G / span))
    for s0 in range(0, n, _LABEL_CHUNK):
        xc = x[s0 : s0 + _LABEL_CHUNK]
        if xc.dtype != work:
            xc = xc.astype(work)
        if table is None:
            out[s0 : s0 + xc.size] = np.searchsorted(b, xc, side="right")
            continue
        G, base, inner, lo_w, scale = table
        t = xc - lo_w
        t *= scale
        np.clip(t, 0, G - 1, out=t)
        cell = t.astype(np.intp)
        o = base[cell]
        for q in range(inner.shape[0]):
            o += xc >= inner[q][cell]
        out[s0 : s0 + xc.size] = o
    return out


# --------------------------------------------------------------------------------------------
# the estimator
# --------------------------------------------------------------------------------------------


def check_iteration_params(max_iter, tol) -> None:
    """Raise ``ValueError`` unless ``max_iter`` is an integer >= 1 and ``tol`` a finite number
    >= 0 (Lloyd's stopping rule; shared with the configs that build :class:`KMeans1D`)."""
    if not _is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if (
        not isinstance(tol, numbers.Real)
        or isinstance(tol, bool)
        or not math.isfinite(tol)
        or tol < 0
    ):
        raise ValueError(f"tol must be a finite number >= 0, got {tol!r}")


class KMeans1D:
    """k-means clustering of scalar values (for example the weights of one layer).

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters ``k`` (the codebook size; ``2**bits``). At most the number of distinct
        values is used (see ``n_clusters_``).
    init : {"linear", "density", "random", "k-means++"} or array-like of shape (n_clusters,), \
default="linear"
        Initial centroids for ``method="lloyd"`` (ignored by ``"exact"``):

        - ``"linear"``: evenly spaced between the minimum and maximum value, which the Deep
          Compression paper found best for accuracy (large weights keep their own centroids);
        - ``"density"``: evenly spaced on the (weighted) empirical CDF, i.e. the quantiles
          ``(i + 1/2) / k``;
        - ``"random"``: Forgy, ``k`` distinct data values drawn at random (with probability
          proportional to ``sample_weight``), seeded by ``random_state``;
        - ``"k-means++"``: Arthur and Vassilvitskii's D² sampling, exact, seeded by
          ``random_state``; on sorted data each draw costs ``O(k + log n)`` block look-ups;
        - an array: the initial centroids themselves.
    method : {"lloyd", "exact", "auto"}, default="lloyd"
        - ``"lloyd"``: Lloyd iterations on the sorted values. The data are sorted once (one
          copy, ``O(n log n)``); every iteration then costs ``O(k log n)``: the cluster
          boundaries are the midpoints of consecutive centroids, binary searches find them in the
          sorted data and block prefix sums give each cluster's weight and mean. Converges to a
          local optimum.
        - ``"exact"``: the globally optimal clustering by dynamic programming over the ``m``
          distinct values with their counts (weights folded in), as in Ckmeans.1d.dp. The split
          point is monotone (the run cost satisfies the quadrangle inequality), so each of the
          ``k`` rows is minimised by divide and conquer: ``O(k m log m)`` time in vectorised
          numpy, ``O(k m)`` int32 memory for backtracking, plus ``O(n log n)`` for the sort.
          The result is exact when ``m <= n_bins`` (``MAX_EXACT_UNIQUE = 65536`` when ``n_bins``
          is None), up to floating-point rounding of the prefix-sum costs (ties that differ in the
          last few bits may be broken either way). With more distinct values and ``n_bins=None``
          (and at most ``MAX_CERTIFIED_N`` values) the result is still the global optimum, found
          by branch and bound (``method_ == "exact"``): a programme on a histogram of
          ``max(4096, 16 k)`` bins, with each run's cost lowered by a proven allowance for cuts
          that fall inside bins, gives lower bounds on the cost of any partition with cut ``j``
          in bin ``b``; every cell whose bound exceeds the SSE of a real partition is dropped;
          the next histogram is 4 times finer and searched only over the surviving ranges,
          down to one bin per distinct value, where the programme is exact (proof in
          ``_certified_partition``). On 10**6 normal values with ``k = 256``, 289 values per
          cut survive at full resolution on average (a cluster holds 3906); times are in
          docs/PERFORMANCE.md. Otherwise (``n_bins`` given, more than ``MAX_CERTIFIED_N``
          values, more than 1448 clusters, or a level where rounding left a cut no live bin,
          not seen in the tests) the programme runs on
          a histogram of ``b`` bins (see ``n_bins``), ``O(k b log b)``, and its cuts are then
          carried to full resolution, 16 times finer per level: at each level a banded
          programme moves all cuts together, each within 4 bins of the previous level on either
          side, ``O(k w log w)`` for bands of ``w`` values. This path (``method_ ==
          "histogram"``) is *not* guaranteed optimal: it is the best partition near the
          histogram's optimum, and the certified bracket of the Notes says how far from the
          optimum it can be. In all cases Lloyd iterations on the real data (``tol`` ignored:
          up to ``max_iter`` iterations, until the partition stops changing) finish the job;
          they never increase the SSE.
        - ``"auto"``: the choice for users, as good as ``"exact"`` at a size that stays fast:
          the programme on the distinct values when ``k * m * log2(m) <= 2**25`` (about a
          quarter of a second); else the histogram path with about 32 bins per cluster (a power
          of two from 1024 to ``DEFAULT_N_BINS``; ``n_bins`` when given); Lloyd (with ``init``)
          only when ``k * bins > 2**26`` (``k > 4096``). ``method_`` tells which ran.
    max_iter : int, default=300
        Maximum number of Lloyd iterations.
    tol : float, default=1e-6
        For ``method="lloyd"``: Lloyd stops when no centroid moved by more than
        ``tol * (max(X) - min(X))``, or earlier when the partition no longer changes (an exact
        fixed point). ``tol=0`` asks for the exact fixed point (or ``max_iter``).
    random_state : None, int or numpy.random.Generator, default=None
        Seed for the ``"random"`` and ``"k-means++"`` initialisations.
    n_bins : int or None, default=None
        For ``method="exact"`` / ``"auto"``: run the programme on the distinct values when there
        are at most ``n_bins`` of them, else on a histogram of at most ``n_bins`` bins (each
        non-empty bin is one point at its mean with its total weight). The bins are equal in
        ``p**(1/3) dx``, ``p`` the data's density estimated from quantiles: the density of an
        optimal quantiser's centroids, so every cluster spans about the same number of bins.
        None means ``MAX_EXACT_UNIQUE`` distinct values, else the certified optimum at full
        resolution (``"exact"``, up to ``MAX_CERTIFIED_N`` values; ``DEFAULT_N_BINS = 16384``
        bins beyond) or about ``32 k`` bins (``"auto"``). Ignored by ``method="lloyd"``.

    Attributes
    ----------
    centroids_ : ndarray of shape (n_clusters_,), float64
        Sorted ascending, distinct.
    labels_ : ndarray of shape (n,), smallest unsigned integer dtype holding ``n_clusters - 1``
        Index of the nearest centroid of every value of the flattened ``X`` (uint8 up to 256
        clusters). ``labels_`` always equals ``predict(X)``.
    inertia_ : float
        Sum of squared distances of the values to their centroids (weighted by
        ``sample_weight``), computed directly in float64, not from prefix sums.
    n_iter_ : int
        Lloyd iterations run (for ``"exact"``: the polishing iterations, usually 1).
    n_clusters_ : int
        Clusters found: ``min(n_clusters, number of distinct values of X)`` (values of zero
        weight do not count).
    converged_ : bool
        Whether Lloyd stopped by ``tol`` or at an exact fixed point rather than at ``max_iter``.
    method_ : {"lloyd", "exact", "histogram"}
        What ran: ``"exact"`` is the global optimum (on the distinct values, or certified at full
        resolution); ``"histogram"`` is the programme on a histogram, refined, not certified.
    n_bins_ : int or None
        Histogram bins used by ``method_ == "histogram"``.
    inertia_lower_bound_ : float or None
        A certified lower bound on the optimal SSE, from the dynamic programme: equal to it (up
        to the rounding of prefix sums) when exact (``method_ == "exact"``), the bound of the
        Notes for ``"histogram"``, None for ``"lloyd"``.

    Notes
    -----
    **Fixed point.** On return every value is assigned to its nearest centroid (a value exactly
    on a midpoint goes to the upper centroid). When the partition stopped changing, each centroid
    is also exactly the (weighted) mean of its cluster, a true Lloyd fixed point; when Lloyd
    stopped by ``tol`` the centroids are the means of the previous iteration's clusters, so they
    differ from their cluster means by about ``tol * (max - min)`` at most.

    **Empty clusters.** A cluster can run empty (two centroids with no value between their
    midpoints, a heavy tail under ``"linear"``, repeated initial centroids). It is never left
    dead: in the update step, while fewer than ``k`` clusters hold values, the cluster with the
    largest SSE is split at its mean into two clusters (the values below it, and the rest). This
    is the 1-D counterpart of scikit-learn's relocation to far points; each split lowers the SSE,
    so the SSE never increases along the iterations. Only when fewer than ``k`` distinct values
    exist do fewer clusters remain, and ``n_clusters_`` says so.

    **Histogram bound.** Let ``y_i`` be the mean of the bin of ``x_i`` and
    ``delta**2 = sum w_i (x_i - y_i)**2`` (measured; at most ``n h**2 / 4`` for bins at most
    ``h`` wide, as a bin's variance is at most a quarter of its squared width). A partition
    into runs of whole bins costs exactly its cost on the binned data plus ``delta**2`` on the
    real data (inside a bin the cross terms sum to zero), so the histogram's optimal partition
    costs ``OPT_y + delta**2``, and refinement and Lloyd only lower that. For any centroids ``C``
    the root SSE ``sqrt(F(C))`` is the weighted distance from the data vector to the set
    ``C**n``, which is 1-Lipschitz in the data, so ``sqrt(OPT_y) <= sqrt(OPT_x) + delta`` and
    ``sqrt(OPT_x) <= sqrt(OPT_y) + delta``. Hence::

        OPT_x <= inertia_ <= OPT_y + delta**2 <= (sqrt(OPT_x) + delta)**2 + delta**2

    and ``OPT_x >= (sqrt(OPT_y) - delta)**2``, which is stored as ``inertia_lower_bound_``.
    The bound is loose (``delta`` is a few per mille of ``sqrt(OPT_x)`` for 16384 bins); the
    refinement does far better in practice, without a guarantee: against the exact
    ``kmeans1d`` package it is within 1e-3 in the tests (16 bins per cluster), and on the
    benchmark's 10**6 normal weights ``"auto"`` matched the optimum to 1e-12 for k = 16 to 256
    while the 16384-bin histogram path (now ``method="exact", n_bins=16384``) was 4e-7 above it
    at k = 256 (docs/PERFORMANCE.md); ``method="exact"`` with ``n_bins=None`` is certified
    instead.

    **Cost and memory.** ``X`` is flattened (a view when contiguous) and not copied to float64;
    float32 data stay float32. Besides the input, fitting holds one sorted copy
    (``n * itemsize`` bytes), the labels (``n`` bytes for ``k <= 256``), block prefix sums
    (``24 n / 64`` bytes) and chunk-sized temporaries; with ``sample_weight`` it also needs a
    sort permutation (``8 n`` bytes, transient) and the sorted weights. Labels are computed
    without a binary search per value, by a lookup table over a grid of the boundaries.
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init="linear",
        method: str = "lloyd",
        max_iter: int = 300,
        tol: float = 1e-6,
        random_state=None,
        n_bins: int | None = None,
    ):
        self.n_clusters = n_clusters
        self.init = init
        self.method = method
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.n_bins = n_bins

    def __repr__(self) -> str:
        defaults = {
            "init": "linear",
            "method": "lloyd",
            "max_iter": 300,
            "tol": 1e-6,
            "random_state": None,
            "n_bins": None,
        }
        parts = [repr(self.n_clusters)]
        for name, default in defaults.items():
            value = getattr(self, name)
            if isinstance(value, np.ndarray) or value != default:
                parts.append(f"{name}={value!r}")
        return f"KMeans1D({', '.join(parts)})"

    # -- parameter checks ------------------------------------------------------------------
    def _check_params(self):
        k = self.n_clusters
        if not _is_int(k) or k < 1:
            raise ValueError(
                f"n_clusters must be an integer >= 1, got {k!r}; pass n_clusters=1 or more"
            )
        if isinstance(self.method, str) and self.method in _METHODS:
            method = self.method
        else:
            raise ValueError(f"method must be one of {_METHODS}, got {self.method!r}")
        check_iteration_params(self.max_iter, self.tol)
        if self.n_bins is not None and (not _is_int(self.n_bins) or self.n_bins < 2):
            raise ValueError(
                f"n_bins must be None or an integer >= 2, got {self.n_bins!r}; "
                f"pass n_bins=None for the automatic choice"
            )
        init = self.init
        if isinstance(init, str):
            if init not in _INITS:
                raise ValueError(
                    f"init must be one of {_INITS} or an array of {k} initial centroids, "
                    f"got {init!r}"
                )
            init_array = None
        else:
            try:
                init_array = np.asarray(init, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"init must be one of {_INITS} or an array of {k} initial centroids: {exc}"
                ) from exc
            if init_array.shape != (k,):
                raise ValueError(
                    f"init array has shape {init_array.shape} but n_clusters={k}; pass an array "
                    f"of shape ({k},) or change n_clusters"
                )
            if not np.all(np.isfinite(init_array)):
                raise ValueError(
                    "init array contains NaN or infinite values; pass finite centroids"
                )
        return k, method, init_array

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, X, sample_weight=None) -> KMeans1D:
        """Cluster the values of ``X``.

        Parameters
        ----------
        X : array-like of any shape, n values in all
            Values to cluster; flattened in C order. float32 and float64 are used as they are,
            other numeric dtypes are converted to float64.
        sample_weight : array-like of shape X.shape or (n,), or None
            Non-negative weight of every value (None: all 1). Fitting with integer weights is the
            same as fitting each value repeated that many times.

        Returns
        -------
        self : KMeans1D
        """
        k, method, init_array = self._check_params()
        x = _as_float_1d(X)
        w = _check_sample_weight(sample_weight, np.shape(X), x.size)
        rng = _check_random_state(self.random_state)
        label_dtype = _label_dtype(k)

        data = _SortedData(x, w)
        n_distinct = data.count_distinct()
        n_bins = self.n_bins
        limit = MAX_EXACT_UNIQUE if n_bins is None else n_bins
        bins = DEFAULT_N_BINS if n_bins is None else n_bins
        bins_used, lower_bound = None, None

        if n_distinct <= k:  # every distinct value its own centroid: optimal, SSE 0
            starts = data.distinct_starts()
            c = data.s[starts].astype(np.float64)
            pos = np.concatenate((starts, [data.n]))
            n_iter, converged = 0, True
            method_used = "lloyd" if method == "lloyd" else "exact"
            if method != "lloyd":
                lower_bound = 0.0
        else:
            if method == "auto":
                method, limit, bins = _auto_choice(k, n_distinct, self.n_bins)
            if method == "lloyd":
                c0 = init_array if init_array is not None else self._init(data, k, rng)
                method_used = "lloyd"
                tol = float(self.tol)
            else:  # polish the programme's answer to an exact Lloyd fixed point
                certify = self.method == "exact" and n_bins is None
                c0, method_used, bins_used, lower_bound = _dp_init(
                    data, k, n_distinct, limit, bins, certify
                )
                tol = 0.0
            c, pos, n_iter, converged = _lloyd(data, c0, k, self.max_iter, tol)

        inertia = 0.0 if c.size == n_distinct else data.sse(pos, c)
        if method_used == "exact" and lower_bound is not None:
            lower_bound = min(lower_bound, inertia)  # equal up to rounding
        del data  # free the sorted copy before the labels are allocated
        self.labels_ = _assign(x, c, label_dtype)
        self.centroids_ = c
        self.n_clusters_ = int(c.size)
        self.inertia_ = inertia
        self.inertia_lower_bound_ = lower_bound
        self.method_ = method_used
        self.n_bins_ = bins_used
        self.n_iter_ = n_iter
        self.converged_ = converged
        self._label_dtype = label_dtype
        return self

    def _init(self, data: _SortedData, k: int, rng: np.random.Generator) -> np.ndarray:
        init = self.init
        if init == "linear":
            return np.linspace(data.lo, data.hi, k)
        if init == "density":
            targets = (np.arange(k) + 0.5) / k * data.total_weight
            return data.s[data.position_of_weight(targets)].astype(np.float64)
        if init == "random":
            found = np.empty(0)
            for _ in range(16):
                need = k - found.size
                if data.w is None and need <= data.n:
                    idx = rng.choice(data.n, size=need, replace=False)
                else:
                    idx = data.position_of_weight(rng.random(need) * data.total_weight)
                cand = np.concatenate((found, data.s[idx].astype(np.float64)))
                _, first = np.unique(cand, return_index=True)
                found = cand[np.sort(first)]
                if found.size >= k:
                    break
            return found[:k]  # fewer only if unlucky: Lloyd refills empty clusters
        # k-means++
        first = data.position_of_weight([rng.random() * data.total_weight])[0]
        centres = [float(data.s[first])]
        for _ in range(k - 1):
            c = np.sort(np.asarray(centres))
            pos = data.partition(c)
            p0, p1, p2 = data.prefix(pos)
            cc = c - data.shift
            mass = np.diff(p2) - 2.0 * cc * np.diff(p1) + cc * cc * np.diff(p0)
            np.maximum(mass, 0.0, out=mass)
            mass[np.diff(pos) == 0] = 0.0
            cum = np.cumsum(mass)
            if not cum[-1] > 0:
                break
            u = rng.random() * cum[-1]
            j = min(int(np.searchsorted(cum, u, side="right")), c.size - 1)
            while mass[j] == 0 and j > 0:  # u fell on an empty segment through rounding
                j -= 1
            p = data.position_of_sq_mass(int(pos[j]), int(pos[j + 1]), c[j], u - (cum[j] - mass[j]))
            centres.append(float(data.s[p]))
        return np.asarray(centres)

    # -- prediction ------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "centroids_"):
            raise ValueError(
                "this KMeans1D instance is not fitted yet; call fit(X) before predict(X)"
            )

    def predict(self, X) -> np.ndarray:
        """Index of the nearest centroid of every value.

        Parameters
        ----------
        X : array-like of any shape, n values in all

        Returns
        -------
        labels : ndarray of shape (n,), the dtype of ``labels_``
            A value exactly halfway between two centroids gets the upper one.
        """
        self._check_fitted()
        x = _as_float_1d(X, allow_empty=True)
        return _assign(x, self.centroids_, self._label_dtype)

    def fit_predict(self, X, sample_weight=None) -> np.ndarray:
        """Fit, then return ``labels_``.

        Parameters
        ----------
        X : array-like of any shape, n values in all
        sample_weight : array-like of shape X.shape or (n,), or None

        Returns
        -------
        labels : ndarray of shape (n,)
        """
        return self.fit(X, sample_weight=sample_weight).labels_


def kmeans1d(x, n_clusters: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the values of ``x``; shorthand for ``KMeans1D(n_clusters, **kwargs).fit(x)``.

    Parameters
    ----------
    x : array-like of any shape, n values in all
    n_clusters : int
    **kwargs
        Keyword options of :class:`KMeans1D` (``init``, ``method``, ``sample_weight`` is passed to
        ``fit``).

    Returns
    -------
    centroids : ndarray of shape (n_clusters_,), float64, sorted
    labels : ndarray of shape (n,), unsigned integers
    """
    sample_weight = kwargs.pop("sample_weight", None)
    km = KMeans1D(n_clusters, **kwargs).fit(x, sample_weight=sample_weight)
    return km.centroids_, km.labels_
