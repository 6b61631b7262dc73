"""Choosing per-layer sparsity and bits: the smallest predicted file within a predicted drop.

The prediction is additive: a layer pruned to sparsity ``s`` and shared at ``b`` bits adds its
measured one-layer drops ``prune_drop[s] + share_drop[b]`` (from
:class:`~netsqueeze.auto.sensitivity.SensitivityResult`) and costs ``cost[s, b]`` bytes (from
:class:`~netsqueeze.auto.cost.CostModel`). :func:`allocate` solves

    minimise    sum cost_l[s_l, b_l]
    subject to  sum (prune_drop_l[s_l] + share_drop_l[b_l]) <= budget

with a Lagrangian relaxation (per layer, minimise ``cost + lam * drop``; bisect ``lam`` to the
smallest value that fits) followed by a greedy pass that spends what the relaxation left of the
budget on the moves that save the most bytes per point of predicted drop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np

__all__ = ["Allocation", "allocate"]


@dataclass
class Allocation:
    """Per-layer choice: ``sparsity[name]``, ``bits[name]``, and what it is predicted to do."""

    sparsity: dict[str, float]
    bits: dict[str, int]
    predicted_drop_pp: float
    predicted_bytes: int
    budget_pp: float

    def to_dict(self) -> dict:
        return asdict(self)


def _choice(costs, drops_p, drops_s, lam):
    picks = {}
    for name, table in costs.items():
        obj = table + lam * (drops_p[name][:, None] + drops_s[name][None, :])
        i, j = np.unravel_index(int(np.argmin(obj)), obj.shape)
        picks[name] = (int(i), int(j))
    return picks


def _drop(picks, drops_p, drops_s) -> float:
    return float(sum(drops_p[n][i] + drops_s[n][j] for n, (i, j) in picks.items()))


def _bytes(picks, costs) -> int:
    return int(sum(costs[n][i, j] for n, (i, j) in picks.items()))


def allocate(
    costs: Mapping[str, np.ndarray],
    prune_drop: Mapping[str, Sequence[float]],
    share_drop: Mapping[str, Sequence[float]],
    sparsities: Sequence[float],
    bits: Sequence[int],
    budget_pp: float,
    *,
    fixed_bytes: int = 0,
    max_sparsity: Mapping[str, float] | None = None,
    min_sparsity: Mapping[str, float] | None = None,
) -> Allocation:
    """Per-layer sparsity and bits minimising predicted bytes within ``budget_pp``.

    Parameters
    ----------
    costs : dict {layer: ndarray of shape (len(sparsities), len(bits))}
        Bytes of the layer's record at each grid point.
    prune_drop, share_drop : dict {layer: sequence}
        Predicted accuracy drop (percentage points) at each sparsity / bit width.
    sparsities, bits : sequences
        The grid.
    budget_pp : float >= 0
        The largest total predicted drop allowed.
    fixed_bytes : int
        Added to the predicted size (the rest of the file).
    max_sparsity, min_sparsity : dict {layer: float}, optional
        Bounds per layer (a back-off caps a layer; a pruned layer cannot get denser).

    Returns
    -------
    Allocation
        When even the least damaging choice exceeds the budget, that choice is returned (its
        ``predicted_drop_pp`` says so).
    """
    if not np.isfinite(budget_pp) or budget_pp < 0:
        raise ValueError(f"budget must be a finite number of percentage points >= 0, got "
                         f"{budget_pp!r}")
    names = list(costs)
    sp = np.asarray(sparsities, float)
    big = 1e9
    c, dp, ds = {}, {}, {}
    for n in names:
        table = np.asarray(costs[n], float).copy()
        if table.shape != (len(sparsities), len(bits)):
            raise ValueError(f"cost table of {n!r} has shape {table.shape}, expected "
                             f"({len(sparsities)}, {len(bits)})")
        p = np.asarray(prune_drop[n], float).copy()
        allowed = np.ones(len(sp), bool)
        if max_sparsity and n in max_sparsity:
            allowed &= sp <= float(max_sparsity[n]) + 1e-12
        if min_sparsity and n in min_sparsity:
            allowed &= sp >= float(min_sparsity[n]) - 1e-12
        if not allowed.any():  # bounds between grid points: the nearest point below the cap
            allowed[max(0, int(np.searchsorted(sp, float(max_sparsity[n]), "right")) - 1)] = True
        p[~allowed] = big
        table[~allowed, :] = big
        c[n], dp[n], ds[n] = table, p, np.asarray(share_drop[n], float)
    lo, hi = 0.0, 1.0
    picks = _choice(c, dp, ds, hi)
    while _drop(picks, dp, ds) > budget_pp and hi < 1e15:
        lo, hi = hi, hi * 10
        picks = _choice(c, dp, ds, hi)
    if _drop(picks, dp, ds) <= budget_pp:
        for _ in range(60):  # bisect to the smallest lam that fits
            mid = (lo + hi) / 2
            trial = _choice(c, dp, ds, mid)
            if _drop(trial, dp, ds) <= budget_pp:
                hi, picks = mid, trial
            else:
                lo = mid
        # greedy: spend the slack on the moves with the best bytes saved per pp added
        while True:
            cur_drop, best, best_gain = _drop(picks, dp, ds), None, 0.0
            for n in names:
                i0, j0 = picks[n]
                here = c[n][i0, j0]
                d0 = dp[n][i0] + ds[n][j0]
                saved = here - c[n]
                added = (dp[n][:, None] + ds[n][None, :]) - d0
                ok = (saved > 0) & (cur_drop + added <= budget_pp + 1e-12)
                if not ok.any():
                    continue
                gain = np.where(ok, saved / np.maximum(added, 1e-9), -np.inf)
                i, j = np.unravel_index(int(np.argmax(gain)), gain.shape)
                if gain[i, j] > best_gain:
                    best, best_gain = (n, (int(i), int(j))), float(gain[i, j])
            if best is None:
                break
            picks[best[0]] = best[1]
    else:  # nothing fits: the least damaging choice
        picks = {}
        for n in names:
            obj = (dp[n][:, None] + ds[n][None, :]) * 1e6 + c[n] / 1e6
            i, j = np.unravel_index(int(np.argmin(obj)), obj.shape)
            picks[n] = (int(i), int(j))
    return Allocation(
        sparsity={n: float(sparsities[i]) for n, (i, _) in picks.items()},
        bits={n: int(bits[j]) for n, (_, j) in picks.items()},
        predicted_drop_pp=_drop(picks, dp, ds),
        predicted_bytes=int(fixed_bytes + _bytes(picks, c)),
        budget_pp=float(budget_pp),
    )
