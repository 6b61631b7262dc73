import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze.experiments.sweeps import (
    cluster_schedule,
    cluster_sweep,
    select_max_zeroed_within_tolerance,
    select_notebook_rule,
    select_within_tolerance,
    threshold_sweep,
)


def test_notebook_schedule_exact_values():
    s = cluster_schedule()
    assert len(s) == 15
    assert s[0] == [30, 100, 500, 50]
    assert s[-1] == [4, 4, 4, 4]
    assert s[11] == [9, 24, 110, 13]  # the notebook's answer: 156 distinct values
    assert sum(s[11]) == 156
    assert [row[0] for row in s] == [30, 28, 26, 24, 22, 20, 18, 17, 15, 13, 11, 9, 7, 5, 4]
    assert [row[2] for row in s] == [
        500, 464, 429, 393, 358, 322, 287, 252, 216, 181, 145, 110, 74, 39, 4]


def test_schedule_validation():
    with pytest.raises(ValueError, match="steps"):
        cluster_schedule(steps=0)
    with pytest.raises(ValueError, match=">= 1"):
        cluster_schedule(starts=(0, 3))


def test_notebook_rule_on_hand_made_curves():
    # drop of 0.06 between step 3 and 4 -> choose step 3 (index 2)
    assert select_notebook_rule([0.99, 0.985, 0.98, 0.92, 0.5]) == 2
    # gradual decline never drops by more than 0.05 in one step -> the last step
    assert select_notebook_rule([0.99, 0.95, 0.91, 0.87, 0.83]) == 4
    # a drop of exactly 0.05 is not "more than"
    assert select_notebook_rule([0.5, 0.45, 0.1], max_drop=0.05 + 1e-12) == 1
    # the first big drop counts, even if accuracy recovers afterwards
    assert select_notebook_rule([0.99, 0.90, 0.99, 0.99]) == 0
    with pytest.raises(ValueError):
        select_notebook_rule([])


def test_tolerance_rule_on_hand_made_curves():
    acc = [0.990, 0.989, 0.986, 0.984, 0.95]
    distinct = [684, 600, 400, 200, 16]
    # within 0.5 pp of 0.99 -> >= 0.985 -> index 2 (400 values)
    assert select_within_tolerance(acc, distinct, 0.99, 0.005) == 2
    assert select_within_tolerance(acc, distinct, 0.99, 0.0) == 0
    assert select_within_tolerance(acc, distinct, 0.99, 0.1) == 4
    # a non-monotone curve: a later, cheaper step that is back within tolerance wins
    assert select_within_tolerance([0.99, 0.97, 0.988], [300, 200, 100], 0.99, 0.005) == 2
    assert select_within_tolerance([0.5], [3], 0.99, 0.005) is None
    with pytest.raises(ValueError):
        select_within_tolerance([0.9], [1, 2], 0.9)


def test_max_zeroed_rule():
    acc = [0.99, 0.99, 0.987, 0.97]
    zero = [0.1, 0.2, 0.4, 0.8]
    assert select_max_zeroed_within_tolerance(acc, zero, 0.99, 0.005) == 2
    assert select_max_zeroed_within_tolerance(acc, zero, 0.99, 0.0) == 1


class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(16, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    model = _Tiny()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(300, 1, 4, 4, generator=g)
    y = model(x).argmax(1)  # labels the untouched model gets 100 % right
    return model, x, y


def test_threshold_sweep_zero_fractions_and_restores_model(tiny):
    model, x, y = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ts = np.linspace(0.0, 0.3, 7)
    res = threshold_sweep(model, x, y, ts, progress=False)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n]), f"{n} changed by the sweep"
    assert res.baseline_accuracy == 1.0
    assert res.accuracy[0] == 1.0  # t = 0 zeroes nothing
    w1 = before["fc1.weight"].numpy()
    for i, t in enumerate(ts):
        assert res.zero_fraction["fc1"][i] == pytest.approx(np.mean(np.abs(w1) < t))
    assert np.all(np.diff(res.overall_zero_fraction) >= 0)
    assert res.n_test == 300 and len(res.accuracy) == 7
    assert res.to_dict()["layers"] == ["fc1", "fc2"]


def test_threshold_sweep_resumes_from_done_points(tiny):
    model, x, y = tiny
    ts = [0.0, 0.1, 0.2]
    seen = []
    full = threshold_sweep(model, x, y, ts, progress=False, on_point=lambda i, p: seen.append(p))
    assert [p["accuracy"] for p in seen] == full.accuracy
    resumed = threshold_sweep(model, x, y, ts, progress=False, done=seen[:2])
    assert resumed.accuracy == full.accuracy


def test_cluster_sweep_distinct_values(tiny):
    model, x, y = tiny
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    schedule = [[16, 8], [4, 3], [1, 1]]
    res = cluster_sweep(model, x, y, schedule, bias_clusters=2, progress=False)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    assert res.clusters == schedule
    assert res.distinct_weights == [24, 7, 2]
    assert res.distinct_biases == [4, 4, 4]
    assert res.baseline_distinct_weights == 16 * 8 + 8 * 3
    assert res.accuracy[0] >= res.accuracy[-1]
    assert len(res.inertia) == 3


def test_cluster_sweep_schedule_must_match_layers(tiny):
    model, x, y = tiny
    with pytest.raises(ValueError, match="one count per layer"):
        cluster_sweep(model, x, y, [[4, 4, 4]], progress=False)
