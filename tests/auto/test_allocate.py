"""The allocator on synthetic problems whose sensitivities and costs are known."""

import itertools

import numpy as np
import pytest

from netsqueeze.auto import allocate

SP = [0.0, 0.5, 0.8, 0.9, 0.95, 0.99]
BITS = [2, 4, 8]


def _problem():
    # cost: kept fraction x bits x weights, plus a per-record overhead
    sizes = {"a": 10000, "b": 2000, "c": 500}
    costs = {n: np.array([[20 + w * (1 - s) * b / 8 for b in BITS] for s in SP])
             for n, w in sizes.items()}
    prune = {"a": [0, 0, 0.1, 0.2, 0.5, 3.0],  # robust
             "b": [0, 0.2, 1.0, 2.0, 4.0, 20.0],  # sensitive
             "c": [0, 0, 0, 0.05, 0.1, 0.2]}
    share = {"a": [0.3, 0.05, 0], "b": [2.0, 0.1, 0], "c": [0.2, 0, 0]}
    return costs, prune, share


def _brute(costs, prune, share, budget):
    names = list(costs)
    best = None
    opts = list(itertools.product(range(len(SP)), range(len(BITS))))
    for picks in itertools.product(opts, repeat=len(names)):
        d = sum(prune[n][i] + share[n][j] for n, (i, j) in zip(names, picks, strict=True))
        if d > budget + 1e-12:
            continue
        c = sum(costs[n][i, j] for n, (i, j) in zip(names, picks, strict=True))
        if best is None or c < best:
            best = c
    return best


@pytest.mark.parametrize("budget", [0.0, 0.1, 0.3, 0.6, 1.0, 2.5, 10.0])
def test_respects_budget_and_is_near_optimal(budget):
    costs, prune, share = _problem()
    a = allocate(costs, prune, share, SP, BITS, budget, fixed_bytes=100)
    assert a.predicted_drop_pp <= budget + 1e-9
    drop = sum(prune[n][SP.index(a.sparsity[n])] + share[n][BITS.index(a.bits[n])]
               for n in costs)
    assert drop == pytest.approx(a.predicted_drop_pp)
    got = sum(costs[n][SP.index(a.sparsity[n]), BITS.index(a.bits[n])] for n in costs)
    assert a.predicted_bytes == int(100 + got)
    assert got <= 1.05 * _brute(costs, prune, share, budget)


def test_robust_layer_pruned_harder_than_sensitive_one():
    costs, prune, share = _problem()
    a = allocate(costs, prune, share, SP, BITS, 1.0)
    assert a.sparsity["a"] > a.sparsity["b"]
    assert a.bits["b"] >= a.bits["a"]


def test_larger_budget_never_costs_more():
    costs, prune, share = _problem()
    sizes = [allocate(costs, prune, share, SP, BITS, b).predicted_bytes
             for b in (0.1, 0.5, 1, 2, 5)]
    assert sizes == sorted(sizes, reverse=True)


def test_bounds_per_layer():
    costs, prune, share = _problem()
    a = allocate(costs, prune, share, SP, BITS, 100.0, max_sparsity={"a": 0.8},
                 min_sparsity={"b": 0.9})
    assert a.sparsity["a"] <= 0.8
    assert a.sparsity["b"] >= 0.9


def test_infeasible_budget_gives_least_damaging_choice():
    costs, prune, share = _problem()
    share = {n: [v + 1 for v in s] for n, s in share.items()}  # every choice costs >= 3 pp
    a = allocate(costs, prune, share, SP, BITS, 1.0)
    assert a.predicted_drop_pp == pytest.approx(3.0)
    assert a.predicted_drop_pp > a.budget_pp


def test_bad_budget():
    costs, prune, share = _problem()
    with pytest.raises(ValueError, match="budget"):
        allocate(costs, prune, share, SP, BITS, -1)
