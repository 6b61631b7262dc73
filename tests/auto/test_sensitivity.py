import copy
import json

import numpy as np
import pytest
import torch

from netsqueeze.auto import SensitivityResult, cost_model, sensitivity
from netsqueeze.nn.export import save_compressed
from netsqueeze.nn.prune import PruneConfig, prune_
from netsqueeze.nn.share import ShareConfig, share_weights_


def test_curves_restore_model_and_roundtrip(problem, tiny):
    model, _, (x_va, y_va) = problem
    before = copy.deepcopy(model.state_dict())
    res = sensitivity(model, (x_va, y_va), progress=False)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert res.baseline_accuracy == pytest.approx(tiny.accuracy(model, x_va, y_va))
    assert [ls.name for ls in res.layers] == ["fc1", "fc2", "fc3"]
    for ls in res.layers:
        assert ls.prune_accuracy[0] == pytest.approx(res.baseline_accuracy)  # sparsity 0
        assert ls.prune_accuracy[-1] < res.baseline_accuracy  # 99.5 % zeroed hurts
        assert ls.share_accuracy[-1] >= res.baseline_accuracy - 0.02  # 8 bits barely
        assert len(ls.prune_loss) == len(ls.sparsities)
        d = res.prune_drop(ls.name)
        assert np.all(np.diff(d) >= 0) and d[0] == 0
        assert np.all(np.diff(res.share_drop(ls.name)) <= 0)  # more bits, less drop
    back = SensitivityResult.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.to_dict() == res.to_dict()
    assert "fc1" in res.table_markdown()


def test_one_point_matches_pruning_the_layer_for_real(problem, tiny):
    model, _, (x_va, y_va) = problem
    res = sensitivity(model, (x_va, y_va), sparsities=(0.0, 0.9), bits=(3,), progress=False)
    m = prune_(copy.deepcopy(model), PruneConfig(sparsity={"fc2": 0.9}))
    assert res.layer("fc2").prune_accuracy[1] == pytest.approx(tiny.accuracy(m, x_va, y_va))
    m = share_weights_(copy.deepcopy(model), ShareConfig(bits={"fc1": 3}),
                       filter_fn=lambda _m, n: n == "fc1")
    assert res.layer("fc1").share_accuracy[0] == pytest.approx(tiny.accuracy(m, x_va, y_va))


def test_eval_fn_and_retraining(problem, tiny):
    model, (x_tr, y_tr), (x_va, y_va) = problem
    calls = []

    def retrain(m, n):
        calls.append(n)
        tiny.sgd_loop(m, x_tr, y_tr, n, lr=0.01)

    res = sensitivity(model, eval_fn=lambda m: tiny.accuracy(m, x_va, y_va),
                      sparsities=(0.0, 0.98), bits=(1,), retrain_fn=retrain,
                      retrain_iterations=30, progress=False)
    assert res.layers[0].prune_loss is None and res.retrain_iterations == 30
    assert len(calls) == 3 * 3
    one_shot = sensitivity(model, (x_va, y_va), sparsities=(0.0, 0.98), bits=(1,),
                           progress=False)
    # retraining recovers some of what pruning 98 % of fc1 lost
    assert res.layer("fc1").prune_accuracy[1] > one_shot.layer("fc1").prune_accuracy[1]


def test_bad_arguments(problem):
    model, _, (x_va, y_va) = problem
    with pytest.raises(ValueError, match="exactly one"):
        sensitivity(model, progress=False)
    with pytest.raises(ValueError, match="sparsities"):
        sensitivity(model, (x_va, y_va), sparsities=(0.5, 0.1), progress=False)
    with pytest.raises(ValueError, match="retrain_fn"):
        sensitivity(model, (x_va, y_va), retrain_iterations=5, progress=False)


def test_cost_model_prices_the_real_file(problem, tmp_path):
    model, _, _ = problem
    cm = cost_model(model, [0.0, 0.5, 0.9], [2, 5])
    m = prune_(copy.deepcopy(model), PruneConfig(sparsity={"fc1": 0.9, "fc2": 0.5, "fc3": 0.0}))
    share_weights_(m, ShareConfig(bits={"fc1": 2, "fc2": 5, "fc3": 5}))
    real = save_compressed(m, tmp_path / "m.nsq")["bytes"]
    pred = cm.predict({"fc1": 0.9, "fc2": 0.5, "fc3": 0.0}, {"fc1": 2, "fc2": 5, "fc3": 5})
    assert abs(pred - real) <= 0.02 * real
    assert cm.layers["fc1"][2, 0] < cm.layers["fc1"][0, 1]  # sparser and fewer bits: smaller
