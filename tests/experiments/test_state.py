"""Model snapshots of run state: pruned and weight-shared layers restored exactly."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze import FormatError
from netsqueeze.experiments.state import RunState, load_model_snapshot, save_model_snapshot
from netsqueeze.nn.prune import PruneConfig, masks, prune_
from netsqueeze.nn.share import ShareConfig, codebooks, share_report, share_weights_
from netsqueeze.nn.train import TrainConfig, train


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 8),
                         nn.ReLU(), nn.Linear(8, 2))


def _data():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 6), dtype=np.uint8)
    return x, (x[:, :3].mean(axis=(1, 2)) > x[:, 3:].mean(axis=(1, 2))).astype(np.int64)


def test_snapshot_restores_masks_codebooks_and_bits(tmp_path):
    x, y = _data()
    model = _net()
    prune_(model, PruneConfig(sparsity={"1": 0.7, "3": 0.5, "5": 0.25}))
    # layers 1 and 3 share weights (1 with fewer survivors than 2**bits), layer 5 only pruned
    share_weights_(model, ShareConfig(bits=3), filter_fn=lambda m, n: n in ("1", "3"))
    path = tmp_path / "snap.pt"
    save_model_snapshot(model, path)
    restored = load_model_snapshot(path, _net())
    assert [r.to_dict() for r in share_report(restored)] == [
        r.to_dict() for r in share_report(model)]
    assert masks(restored).keys() == masks(model).keys()
    for k, m in masks(model).items():
        assert torch.equal(masks(restored)[k], m)
    for k, book in codebooks(model).items():
        assert np.array_equal(codebooks(restored)[k].index, book.index)
    for (n, a), (m, b) in zip(model.state_dict().items(), restored.state_dict().items(),
                              strict=True):
        assert n == m and torch.equal(a, b)
    # and it trains on exactly as the original: zeros stay zero, the same steps follow
    cfg = TrainConfig(iterations=6, batch_size=10, lr=1e-2)
    original = copy.deepcopy(model)
    train(original, x, y, cfg, progress=False, device="cpu")
    train(restored, x, y, cfg, progress=False, device="cpu")
    for a, b in zip(original.state_dict().values(), restored.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    assert (restored[5].weight[~masks(restored)["5"]] == 0).all()


def test_snapshot_of_another_network_is_a_clear_error(tmp_path):
    path = tmp_path / "snap.pt"
    save_model_snapshot(_net(), path)
    with pytest.raises(FormatError, match="does not fit") as info:
        load_model_snapshot(path, nn.Sequential(nn.Flatten(), nn.Linear(36, 2)))
    assert str(path) in str(info.value) and "rerun without --resume" in str(info.value)


def test_progress_record_with_a_bad_snapshot_name_is_refused(tmp_path):
    state = RunState(tmp_path, {"a": 1}, False, {"stages": []}, log=lambda s: None)
    state.data["snapshot"] = "../../outside.pt"
    state.save()
    again = RunState(tmp_path, {"a": 1}, True, {"stages": []}, log=lambda s: None)
    assert again.resumed
    with pytest.raises(FormatError, match="not a state file name"):
        again.named("snapshot")
    # a record missing what a fresh one holds is corrupt, not a crash later on
    (tmp_path / ".state" / "progress.json").write_text('{"version": 2, "fingerprint": {"a": 1}}')
    with pytest.raises(FormatError, match="stages"):
        RunState(tmp_path, {"a": 1}, True, {"stages": []}, log=lambda s: None)


@pytest.mark.parametrize("name", ["tied_lstm_lm", "recurrent", "raw_params", "transformer"])
def test_snapshot_of_every_layer_kind_restores_ties_and_outputs(tmp_path, name):
    """Run state holds models whose shared parameters are not a layer's ``weight``: RNN weights
    (several per module), raw Parameters of the root module, attention and tied embeddings."""
    from tests.nn.zoo import ZOO

    factory, inputs = ZOO[name]
    torch.manual_seed(0)
    model = factory()
    prune_(model, 0.8)
    share_weights_(model, 4)
    x = inputs()
    model.eval()
    with torch.no_grad():
        want = model(x)
    save_model_snapshot(model, tmp_path / "s.pt")
    torch.manual_seed(1)
    fresh = load_model_snapshot(tmp_path / "s.pt", factory())
    fresh.eval()
    with torch.no_grad():
        got = fresh(x)
    flat = [t for t in (want if isinstance(want, tuple) else (want,))]
    again = [t for t in (got if isinstance(got, tuple) else (got,))]
    for a, b in zip(flat, again, strict=True):
        assert torch.equal(a, b)
    assert {k: v.tolist() for k, v in masks(fresh).items()} == \
        {k: v.tolist() for k, v in masks(model).items()}
    assert [(r.name, r.bits) for r in share_report(fresh)] == \
        [(r.name, r.bits) for r in share_report(model)]
    if name == "tied_lstm_lm":
        # still tied: one set of centroids serves both names
        assert fresh.decoder._parameters["weight_centroids"] is \
            fresh.embedding._parameters["weight_centroids"]
