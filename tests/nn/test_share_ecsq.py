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
