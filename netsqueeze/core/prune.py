"""Magnitude pruning masks, in numpy.

A *mask* is a boolean array of the weight's shape: ``True`` keeps the weight, ``False`` zeroes
it. Every function takes an optional ``mask`` holding an earlier mask; the new mask keeps every
zero of the old one (a pruned weight is never resurrected), so iterative pruning is repeated
calls, as in ``torch.nn.utils.prune``.

Sparsity is always the fraction of *zeroed* entries of the whole tensor (old zeros included), so
``sparsity_mask(w, 0.9, mask=m)`` gives a tensor that is 90 % zero whatever ``m`` zeroed before.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

__all__ = [
    "MagnitudeIndex",
    "global_sparsity_masks",
    "sparsity",
    "sparsity_mask",
    "std_mask",
    "threshold_mask",
]


def _as_float_array(w, name: str = "w") -> np.ndarray:
    a = np.asarray(w)
    if a.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or inf values; prune a finite tensor")
    return a


def _check_old_mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask has shape {m.shape} but the weights have shape {tuple(shape)}")
    return m.astype(bool, copy=False)


def _check_fraction(value: float, name: str) -> float:
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {value}")
    return v


def sparsity(mask_or_weights) -> float:
    """Fraction of zero entries.

    Parameters
    ----------
    mask_or_weights : ndarray of any shape
        A boolean keep-mask (``False`` counts as zero) or a weight array (``0`` counts as zero).

    Returns
    -------
    float
        ``0.0`` for an empty array.
    """
    a = np.asarray(mask_or_weights)
    if a.size == 0:
        return 0.0
    return float(np.count_nonzero(a == 0) / a.size)


def threshold_mask(w, threshold: float, *, mask=None) -> np.ndarray:
    """Keep the entries whose magnitude is at least ``threshold``.

    Parameters
    ----------
    w : ndarray of any shape
        Weights.
    threshold : float
        Entries with ``|w| < threshold`` are zeroed (the notebook's rule).
    mask : ndarray of bool, same shape as ``w``, optional
        An earlier mask; its zeros stay zero.

    Returns
    -------
    ndarray of bool, same shape as ``w``

    Examples
    --------
    >>> threshold_mask(np.array([0.5, -0.05, 0.2, -0.3]), 0.2)
    array([ True, False,  True,  True])
    """
    a = _as_float_array(w)
    t = float(threshold)
    if not np.isfinite(t) or t < 0:
        raise ValueError(f"threshold must be a finite number >= 0, got {threshold}")
    keep = np.abs(a) >= t
    old = _check_old_mask(mask, a.shape)
    return keep if old is None else keep & old


def std_mask(w, quality: float, *, mask=None) -> np.ndarray:
    """Han et al. (2015): zero weights below ``quality`` times the standard deviation.

    The standard deviation is taken over the weights the old mask keeps (all weights when there
    is no old mask), so repeated calls tighten the threshold as the layer shrinks.

    Parameters
    ----------
    w : ndarray of any shape
    quality : float
        Multiplier of the standard deviation, ``>= 0``.
    mask : ndarray of bool, optional
        An earlier mask; its zeros stay zero.

    Returns
    -------
    ndarray of bool, same shape as ``w``
    """
    a = _as_float_array(w)
    q = float(quality)
    if not np.isfinite(q) or q < 0:
        raise ValueError(f"quality must be a finite number >= 0, got {quality}")
    old = _check_old_mask(mask, a.shape)
    alive = a if old is None else a[old]
    std = float(np.std(alive, dtype=np.float64)) if alive.size else 0.0
    return threshold_mask(a, q * std, mask=old)


def _magnitudes(a: np.ndarray) -> np.ndarray:
    """``|a|`` as a new array whose order is that of the exact magnitudes.

    Floats keep their own dtype (``abs`` is exact in it, and a float64 copy of a large float32
    tensor would double the memory); integers become float64 first, so ``abs`` cannot overflow.
    """
    if a.dtype.kind == "f":
        return np.abs(a)
    return np.abs(a.astype(np.float64))


def _keep_top(scores: np.ndarray, n_keep: int) -> np.ndarray:
    """Boolean mask keeping the ``n_keep`` largest scores; ties at the cut keep the lower index.

    The same mask as a stable descending sort, found by selection (``np.partition``, linear
    time) instead of sorting every score: the ``n_keep``-th largest score is the cut, everything
    above it is kept, and the first positions holding the cut value fill up to ``n_keep``.
    """
    flat = scores.reshape(-1)
    if n_keep >= flat.size:
        return np.ones(scores.shape, dtype=bool)
    if n_keep <= 0:
        return np.zeros(scores.shape, dtype=bool)
    kth = flat.size - n_keep
    cut = np.partition(flat, kth)[kth]
    keep = flat > cut
    short = n_keep - int(np.count_nonzero(keep))
    if short > 0:
        keep[np.flatnonzero(flat == cut)[:short]] = True
    return keep.reshape(scores.shape)


def sparsity_mask(w, sparsity: float, *, mask=None) -> np.ndarray:
    """Zero the smallest-magnitude entries until ``sparsity`` of the tensor is zero.

    Parameters
    ----------
    w : ndarray of any shape
    sparsity : float in [0, 1]
        Target fraction of zeroed entries, counted over the whole tensor. The number zeroed is
        ``round(sparsity * w.size)``.
    mask : ndarray of bool, optional
        An earlier mask. Its zeros stay zero and count towards the target; if it is already
        sparser than the target, it is returned unchanged.

    Returns
    -------
    ndarray of bool, same shape as ``w``
        Ties at the cut are broken by position, so the result is deterministic.

    Examples
    --------
    >>> sparsity_mask(np.array([0.1, -0.4, 0.3, 0.2]), 0.5)
    array([False,  True,  True, False])
    """
    a = _as_float_array(w)
    s = _check_fraction(sparsity, "sparsity")
    old = _check_old_mask(mask, a.shape)
    scores = _magnitudes(a)
    if old is not None:
        scores[~old] = -1.0  # already pruned: below every live weight
    n_keep = a.size - round(s * a.size)
    if old is not None:
        n_keep = min(n_keep, int(np.count_nonzero(old)))
    return _keep_top(scores, n_keep)


def global_sparsity_masks(
    weights: Mapping[str, np.ndarray],
    sparsity: float,
    *,
    masks: Mapping[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """One magnitude cut over several tensors together (global pruning).

    Parameters
    ----------
    weights : mapping of name to ndarray
    sparsity : float in [0, 1]
        Target fraction of zeroed entries over all tensors together.
    masks : mapping of name to ndarray of bool, optional
        Earlier masks; their zeros stay zero and count towards the target.

    Returns
    -------
    dict of name to ndarray of bool
    """
    s = _check_fraction(sparsity, "sparsity")
    names = list(weights)
    if not names:
        return {}
    masks = dict(masks or {})
    unknown = set(masks) - set(names)
    if unknown:
        raise ValueError(f"masks given for unknown tensors: {sorted(unknown)}")
    arrays = [_as_float_array(weights[n], name=n) for n in names]
    olds = [_check_old_mask(masks.get(n), a.shape) for n, a in zip(names, arrays, strict=True)]
    scores = [_magnitudes(a).reshape(-1) for a in arrays]
    flat = np.concatenate(scores, dtype=np.result_type(*scores))  # exact in the widest dtype
    del scores
    start = 0
    for a, old in zip(arrays, olds, strict=True):
        if old is not None:
            flat[start : start + a.size][~old.reshape(-1)] = -1.0
        start += a.size
    n_keep = flat.size - round(s * flat.size)
    n_keep = min(n_keep, int(np.count_nonzero(flat >= 0)))
    keep = _keep_top(flat, n_keep)
    out, start = {}, 0
    for n, a in zip(names, arrays, strict=True):
        out[n] = keep[start : start + a.size].reshape(a.shape)
        start += a.size
    return out


class MagnitudeIndex:
    """The magnitudes of one tensor, sorted once, answering threshold questions in O(log n).

    A threshold sweep asks, for many thresholds, how much of a layer would be zeroed; sorting
    the layer once makes each answer a binary search instead of a pass over the weights.

    Parameters
    ----------
    w : ndarray of any shape

    Attributes
    ----------
    sorted_abs_ : ndarray of shape (n,)
        ``|w|`` sorted ascending.
    """

    def __init__(self, w):
        a = _as_float_array(w)
        self.size = int(a.size)
        self.sorted_abs_ = np.sort(np.abs(a).reshape(-1))

    def zero_fraction(self, thresholds) -> np.ndarray:
        """Fraction zeroed by the rule ``|w| < t``, for each threshold.

        Parameters
        ----------
        thresholds : float or ndarray of shape (m,)

        Returns
        -------
        ndarray of shape (m,) (a 0-d array for a scalar)
        """
        t = np.asarray(thresholds, dtype=np.float64)
        if self.size == 0:
            return np.zeros_like(t)
        return np.searchsorted(self.sorted_abs_, t, side="left") / self.size

    def threshold_for(self, sparsity: float) -> float:
        """Smallest threshold ``t`` such that ``|w| < t`` zeroes at least ``sparsity`` of entries.

        Ties can make the zeroed fraction larger than asked; use :func:`sparsity_mask` for an
        exact count.
        """
        s = _check_fraction(sparsity, "sparsity")
        n_zero = round(s * self.size)
        if n_zero == 0 or self.size == 0:
            return 0.0
        return float(np.nextafter(self.sorted_abs_[n_zero - 1], np.inf))
