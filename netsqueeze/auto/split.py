"""The validation split: every automatic decision is made on it, never on the test set."""

from __future__ import annotations

import numpy as np

__all__ = ["validation_split"]


def validation_split(
    labels: np.ndarray, fraction: float = 0.1, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified train / validation split of a training set.

    Each class gives ``round(fraction * its size)`` items (at least one, and at least one stays
    in training) to validation, so the class proportions of both parts match the whole.

    Parameters
    ----------
    labels : ndarray of shape (n,)
        Integer class labels of the *training* set (the test set is never split).
    fraction : float in (0, 1)
        Share of each class held out for validation.
    seed : int
        Seed of the permutations (``np.random.RandomState``, stable across NumPy versions): the
        same labels and seed always give the same split.

    Returns
    -------
    train_idx, val_idx : ndarray of int64
        Disjoint, sorted indices covering ``range(n)``.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be a 1-D array, got shape {labels.shape}")
    f = float(fraction)
    if not 0.0 < f < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction!r}")
    rng = np.random.RandomState(int(seed))
    val = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if members.size < 2:
            raise ValueError(
                f"class {c} has {members.size} training item(s); a validation split needs at "
                "least 2 per class (use a larger training set or give x_val / y_val)"
            )
        k = min(max(1, int(round(f * members.size))), members.size - 1)  # noqa: RUF046
        val.append(members[rng.permutation(members.size)[:k]])
    val_idx = np.sort(np.concatenate(val)).astype(np.int64)
    keep = np.ones(labels.size, bool)
    keep[val_idx] = False
    return np.flatnonzero(keep).astype(np.int64), val_idx
