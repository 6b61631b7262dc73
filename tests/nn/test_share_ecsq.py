"""share_weights_ with method="ecsq" and per-weight importance."""

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze.core.ecsq import label_entropy
from netsqueeze.nn.prune import PruneConfig, prune_, strip_
from netsqueeze.nn.share import ShareConfig, codebooks, share_weights_


def _model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))
    prune_(m, PruneConfig(sparsity=0.7))
    return m


def test_ecsq_meets_the_rate_and_keeps_pruned_weights_zero():
    m = _model()
    zeros = m[0].weight.detach() == 0
    share_weights_(m, ShareConfig(bits=5, method="ecsq", target_bits=2.0))
    for name, cb in codebooks(m).items():
        kept = cb.index != cb.centroids.size
        assert label_entropy(cb.index[kept]) <= 2.0 + 1e-9, name
        assert cb.centroids.size <= 32
    assert torch.all(m[0].weight[zeros] == 0)
    # centroids are trainable parameters, as for k-means sharing
    loss = m(torch.randn(8, 64)).square().sum()
    loss.backward()
    assert m[0].weight_centroids.grad is not None


def test_importance_changes_the_codebook():
    a, b = _model(), _model()
    w = a[0].weight.detach()
    imp = torch.where(w > 0, 100.0, 1.0)
    share_weights_(a, ShareConfig(bits=3))
    share_weights_(b, ShareConfig(bits=3), importance={"0": imp})
    ca, cb = codebooks(a)["0"], codebooks(b)["0"]
    assert not np.allclose(ca.centroids, cb.centroids)
    err = lambda c: float((imp.numpy() * (c.decode() - w.numpy()) ** 2).sum())
    assert err(cb) < err(ca)


def test_config_checks_and_round_trip():
    with pytest.raises(ValueError, match="method='ecsq'"):
        ShareConfig(target_bits=2.0).validate()
    with pytest.raises(ValueError, match="not both"):
        ShareConfig(method="ecsq", target_bits=2.0, ecsq_lambda=0.1).validate()
    c = ShareConfig(method="ecsq", target_bits=2.5)
    assert ShareConfig.from_dict(c.to_dict()) == c


def test_save_compressed_entropy_option(tmp_path):
    from netsqueeze.core.container import read_nsq
    from netsqueeze.nn.export import load_compressed, save_compressed

    m = _model()
    share_weights_(m, ShareConfig(bits=4, method="ecsq", target_bits=2.5))
    classic = save_compressed(m, tmp_path / "c.nsq", entropy="classic")
    auto = save_compressed(m, tmp_path / "a.nsq")
    assert auto["bytes"] <= classic["bytes"]
    codings = {s.coding for r in read_nsq(tmp_path / "c.nsq").records
               for s in (r.gaps, r.indices) if s is not None}
    assert "rans" not in codings
    a = load_compressed(tmp_path / "a.nsq", model=strip_(_model()))
    c = load_compressed(tmp_path / "c.nsq", model=strip_(_model()))
    for (ka, va), (kc, vc) in zip(a.state_dict().items(), c.state_dict().items()):
        assert ka == kc and torch.equal(va, vc)


def test_report_and_inspect_show_the_information_floor(tmp_path):
    from netsqueeze.cli.inspect import render
    from netsqueeze.nn.export import compressed_report, save_compressed

    m = _model()
    share_weights_(m, ShareConfig(bits=4))
    save_compressed(m, tmp_path / "m.nsq")
    rep = compressed_report(tmp_path / "m.nsq", baseline=False)
    t = rep["totals"]
    assert t["floor_bytes"] == pytest.approx(sum(x["floor_bytes"] for x in rep["layers"]))
    assert t["above_floor"] == pytest.approx(t["records_bytes"] / t["floor_bytes"] - 1)
    for layer in rep["layers"]:
        assert layer["floor_bytes"] > 0
    line = next(x for x in render(rep).splitlines() if x.startswith("information floor"))
    assert f"{t['floor_bytes']:,.0f} bytes" in line


def test_rate_delta_asks_for_that_many_bits_below_k_means():
    from netsqueeze.core.kmeans1d import KMeans1D

    km, ec = _model(), _model()
    share_weights_(km, ShareConfig(bits=5))
    share_weights_(ec, ShareConfig(bits=5, method="ecsq", rate_delta=1.0))
    for name, cb in codebooks(ec).items():
        kept = cb.index != cb.centroids.size
        ref = codebooks(km)[name]
        w = ref.decode()[kept]
        r_km = label_entropy(KMeans1D(32, init="linear").fit(
            _model_weights()[name][kept]).labels_)
        assert np.unique(w).size <= 32
        # the rate lands on the target (bisection tolerance), a bit below k-means's
        assert label_entropy(cb.index[kept]) == pytest.approx(r_km - 1.0, abs=0.05), name
        assert cb.centroids.size <= 32


def _model_weights():
    m = _model()
    return {"0": m[0].weight.detach().numpy(), "2": m[2].weight.detach().numpy()}


def test_rate_delta_and_importance_checks():
    for bad, msg in (({"method": "ecsq", "rate_delta": -1.0}, "rate_delta must be"),
                     ({"method": "ecsq", "rate_delta": float("nan")}, "rate_delta must be"),
                     ({"method": "ecsq", "rate_delta": 1.0, "target_bits": 2.0}, "one of"),
                     ({"rate_delta": 1.0}, "need method='ecsq'"),
                     ({"importance": "hessian"}, "importance must be")):
        with pytest.raises(ValueError, match=msg):
            ShareConfig(**bad).validate()
    c = ShareConfig(method="ecsq", rate_delta=1.5, importance="fisher")
    assert ShareConfig.from_dict(c.to_dict()) == c


def test_fisher_importance_is_squared_gradients_and_deterministic():
    from netsqueeze.nn.share import fisher_importance

    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))
    rng = np.random.RandomState(0)
    x = rng.randint(0, 256, (50, 4, 4)).astype(np.uint8)
    y = rng.randint(0, 3, 50)
    a = fisher_importance(m, x, y, batches=3, batch_size=16)
    b = fisher_importance(m, x, y, batches=3, batch_size=16)
    assert set(a) == {"1", "3"}
    for k in a:
        assert a[k].shape == dict(m.named_modules())[k].weight.shape
        assert torch.equal(a[k], b[k]) and bool((a[k] >= 0).all()) and float(a[k].sum()) > 0
    # tensors give the same estimate as arrays (uint8 images scaled to [0, 1])
    xt = torch.from_numpy(x).float().div(255).unsqueeze(1)
    c = fisher_importance(m, xt, torch.from_numpy(y), batches=3, batch_size=16)
    assert all(torch.allclose(a[k], c[k]) for k in a)
    # one batch by hand: the sum of squared gradients
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 50, (16,), generator=g)
    m.zero_grad()
    m.eval()
    nn.functional.cross_entropy(m(xt[idx]), torch.from_numpy(y)[idx]).backward()
    by_hand = m[1].weight.grad ** 2
    one = fisher_importance(m, x, y, batches=1, batch_size=16)
    assert torch.allclose(one["1"], by_hand)
    assert m[1].weight.grad is None  # its own gradients cleared
    with pytest.raises(ValueError, match="batches"):
        fisher_importance(m, x, y, batches=0)


def test_rate_delta_leaves_layers_of_few_bits_their_rate():
    """A two- or four-value layer has at most 1 or 2 bits per weight: rate_delta does not push
    it below 2 bits (nor any layer below half of k-means's rate)."""
    from netsqueeze.core.kmeans1d import KMeans1D

    ec = _model()
    share_weights_(ec, ShareConfig(bits=1, method="ecsq", rate_delta=1.0))
    for name, cb in codebooks(ec).items():
        kept = cb.index != cb.centroids.size
        r_km = label_entropy(KMeans1D(2, init="linear").fit(
            _model_weights()[name][kept]).labels_)
        assert label_entropy(cb.index[kept]) == pytest.approx(r_km, abs=0.05), name
