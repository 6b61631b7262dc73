import copy
import io
import json
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze.nn import prune as P
from netsqueeze.nn.prune import PruneConfig, is_pruned, masks, prune_, pruning_report
from netsqueeze.nn.share import (
    CENTROIDS,
    INDEX,
    LayerCodebook,
    ShareConfig,
    apply_codebooks_,
    codebooks,
    is_shared,
    share_layer_,
    share_report,
    share_weights_,
    strip_,
)


class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3)
        self.c2 = nn.Conv2d(3, 8, 3)
        self.c3 = nn.Conv3d(2, 3, 2)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Sequential(nn.Linear(16 + 32 + 24, 24), nn.ReLU(), nn.Linear(24, 3))

    def forward(self, x1, x2, x3):
        a = self.c1(x1).flatten(1)
        b = self.bn(self.c2(x2)).flatten(1)
        c = self.c3(x3).flatten(1)
        return self.head(torch.cat([a, b, c], 1))


LAYERS = ["c1", "c2", "c3", "head.0", "head.2"]
SMALL = ShareConfig(conv_bits=3, fc_bits=2)  # real clustering even on tiny layers


def make(seed=0):
    torch.manual_seed(seed)
    return Mixed()


def inputs(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 2, 6, generator=g),
        torch.randn(n, 3, 4, 4, generator=g),
        torch.randn(n, 2, 3, 3, 3, generator=g),
    )


def loss_of(model, seed=1):
    return model(*inputs(seed)).pow(2).mean()


def layer(model, name):
    return model.get_submodule(name)


def distinct_nonzero(w: torch.Tensor) -> int:
    w = w.detach()
    return int(torch.unique(w[w != 0]).numel())


def bits_equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype == np.float32 and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# --------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"conv_bits": 17}, r"conv_bits must be an integer in \[0, 16\]"),
        ({"fc_bits": -1}, r"fc_bits must be an integer in \[0, 16\]"),
        ({"fc_bits": 2.0}, "fc_bits must be an integer"),
        ({"bits": True}, "bits must be an integer"),
        ({"bits": {}}, "bits is an empty dict"),
        ({"bits": {"head.*": 40}}, r"bits\['head.\*'\] must be an integer in \[0, 16\]"),
        ({"init": "kmeans++"}, "init must be one of linear, density, random, k-means.."),
        ({"method": "dp"}, "method must be one of lloyd, exact, auto, ecsq; got 'dp'"),
        ({"random_state": -3}, "random_state must be None or an integer >= 0"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
        ({"tol": float("inf")}, "tol must be a finite number >= 0"),
    ],
)
def test_config_validation_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ShareConfig(**kwargs).validate()


def test_config_defaults_bits_for_and_round_trip():
    cfg = ShareConfig()
    assert (cfg.conv_bits, cfg.fc_bits, cfg.init) == (8, 5, "linear")
    assert cfg.bits_for("c2", "conv") == 8 and cfg.bits_for("head.0", "fc") == 5
    per = ShareConfig(bits={"head.2": 3, "head.*": 4})
    assert per.bits_for("head.2", "fc") == 3
    assert per.bits_for("head.0", "fc") == 4
    assert per.bits_for("c1", "conv") == 8
    assert ShareConfig(bits=2).bits_for("c1", "conv") == 2
    back = ShareConfig.from_dict(json.loads(json.dumps(per.to_dict())))
    assert back == per
    with pytest.raises(ValueError, match=r"unknown ShareConfig field\(s\) \['k'\]"):
        ShareConfig.from_dict({"k": 4})
    with pytest.raises(TypeError, match="ShareConfig, a dict or bits"):
        share_weights_(make(), "5")
    with pytest.raises(ValueError, match="bits must be an integer"):
        share_weights_(make(), 17)
    # an int is bits for every layer: ShareConfig(bits=3)
    assert [r.k for r in share_report(share_weights_(make(), 3))] == [8] * len(
        share_report(share_weights_(make(), ShareConfig(bits=3))))


def test_pattern_matching_no_layer_lists_the_layers():
    model = make()
    with pytest.raises(ValueError, match=r"ShareConfig.bits: pattern 'fc\*' matches no layer.*'c1'"):
        share_weights_(model, ShareConfig(bits={"fc*": 3}))
    assert not any(is_shared(m) for m in model.modules())


# --------------------------------------------------------------------------------------------
# sharing
# --------------------------------------------------------------------------------------------


def test_share_rewrites_every_layer_with_sensible_names():
    model = make()
    n_params_before = {n: p.numel() for n, p in model.named_parameters()}
    out = share_weights_(model, SMALL)
    assert out is model
    names = [n for n, _ in model.named_parameters()]
    for n in LAYERS:
        m = layer(model, n)
        assert is_shared(m) and type(m).__name__ == "Shared" + type(m).__mro__[2].__name__
        assert f"{n}.{CENTROIDS}" in names and f"{n}.weight" not in names
        # the centroids sit where the weight was: parameter order kept
        assert names.index(f"{n}.{CENTROIDS}") == names.index(f"{n}.bias") - 1
        c, idx = getattr(m, CENTROIDS), getattr(m, INDEX)
        assert isinstance(c, nn.Parameter) and c.dtype == torch.float32 and c.ndim == 1
        assert idx.dtype == torch.int32 and idx.shape == m.weight.shape
        assert c.device == idx.device == torch.device("cpu")
        bits = 3 if n.startswith("c") else 2
        assert c.numel() == 2**bits
        assert torch.all(c[1:] >= c[:-1])  # sorted
        assert distinct_nonzero(m.weight) <= 2**bits
        assert not isinstance(m.weight, nn.Parameter)
    assert isinstance(model.c2, nn.Conv2d) and isinstance(model.head[0], nn.Linear)
    assert "bn.weight" in names and not is_shared(model.bn)
    assert n_params_before["bn.weight"] == model.bn.weight.numel()
    sd = model.state_dict()
    assert {f"{n}.{CENTROIDS}" for n in LAYERS} | {f"{n}.{INDEX}" for n in LAYERS} <= set(sd)
    assert not any(k.endswith(".weight") and k.split(".weight")[0] in LAYERS for k in sd)
    assert model(*inputs()).shape == (6, 3)


def test_few_distinct_values_give_fewer_clusters_and_exact_weights():
    lin = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.25, 0.5, 0.0], [1.0, -0.25, 1.0, 0.5]]))
    share_weights_(lin, ShareConfig(fc_bits=5))
    assert lin.weight_centroids.tolist() == [-0.25, 0.5, 1.0]
    assert lin.weight_index.tolist() == [[1, 0, 1, 3], [2, 0, 2, 1]]  # 3: the zero sentinel
    assert lin.weight.tolist() == [[0.5, -0.25, 0.5, 0.0], [1.0, -0.25, 1.0, 0.5]]


def test_clustering_by_hand():
    lin = nn.Linear(6, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 2.0, 3.0, 10.0, 11.0, 12.0]]))
    share_weights_(lin, ShareConfig(fc_bits=1))
    assert lin.weight_centroids.tolist() == [2.0, 11.0]
    assert lin.weight.tolist() == [[2.0, 2.0, 2.0, 11.0, 11.0, 11.0]]


@pytest.mark.parametrize("init", ["linear", "density", "random", "k-means++"])
@pytest.mark.parametrize("method", ["lloyd", "exact"])
def test_every_init_and_method_is_deterministic(init, method):
    cfg = ShareConfig(conv_bits=3, fc_bits=2, init=init, method=method, random_state=7)
    a = codebooks(share_weights_(make(), cfg))
    b = codebooks(share_weights_(make(), cfg))
    for n in LAYERS:
        assert bits_equal(a[n].centroids, b[n].centroids)
        assert np.array_equal(a[n].index, b[n].index)


def test_sharing_twice_or_setting_the_weight_is_refused():
    model = share_weights_(make(), SMALL)
    with pytest.raises(ValueError, match="share weights already"):
        share_weights_(model, SMALL)
    with pytest.raises(AttributeError, match="computed from weight_centroids and weight_index"):
        model.c1.weight = torch.zeros_like(model.c1.weight)
    with pytest.raises(ValueError, match="no layer to prune.*share weights already"):
        prune_(model, PruneConfig(sparsity=0.5))


def test_filter_fn_and_per_layer_bits():
    model = share_weights_(
        make(), ShareConfig(bits={"head.0": 1}), filter_fn=lambda m, n: n.startswith("head")
    )
    assert [n for n in LAYERS if is_shared(layer(model, n))] == ["head.0", "head.2"]
    rep = {r.name: r for r in share_report(model)}
    assert rep["head.0"].bits == 1 and rep["head.0"].k == 2 and rep["head.0"].distinct == 2
    assert rep["head.2"].bits == 5 and rep["head.2"].k == 32
    assert rep["head.0"].weights == 72 * 24 and rep["head.0"].kept == 72 * 24
    assert json.loads(json.dumps(rep["head.2"].to_dict()))["k"] == 32


# --------------------------------------------------------------------------------------------
# gradients: the paper's Fig. 3
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, x_shape",
    [(lambda: nn.Linear(20, 6), (8, 20)), (lambda: nn.Conv2d(3, 4, 3), (5, 3, 6, 6))],
)
def test_centroid_gradient_is_the_sum_of_member_gradients(build, x_shape):
    torch.manual_seed(0)
    shared = build()
    prune_(shared, PruneConfig(sparsity=0.3))
    dense = copy.deepcopy(shared)
    share_weights_(shared, ShareConfig(conv_bits=2, fc_bits=2))
    strip_(dense)
    with torch.no_grad():  # the dense copy holds exactly the shared weights
        dense.weight.copy_(shared.weight)
    x = torch.randn(*x_shape, generator=torch.Generator().manual_seed(1))
    target = torch.randn_like(shared(x))

    def loss(m):
        return (m(x) - target).pow(2).sum()

    loss(shared).backward()
    loss(dense).backward()
    book = codebooks(shared)[""]
    k = book.centroids.size
    dw = dense.weight.grad.numpy().astype(np.float64)
    by_hand = np.array([dw[book.index == j].sum() for j in range(k)])
    g = shared.weight_centroids.grad
    assert g.shape == (k,)
    np.testing.assert_allclose(g.numpy(), by_hand, rtol=1e-5, atol=1e-6)
    assert np.abs(dw[~book.mask]).sum() > 0  # pruned positions have gradient in the dense copy
    before = shared.weight_centroids.detach().clone()
    lr = 0.01
    torch.optim.SGD(shared.parameters(), lr=lr).step()
    np.testing.assert_allclose(
        shared.weight_centroids.detach().numpy(), before.numpy() - lr * by_hand,
        rtol=1e-6, atol=1e-7,
    )
    # pruned positions are still exactly zero, assignments unchanged
    assert np.array_equal(codebooks(shared)[""].index, book.index)
    assert torch.equal(shared.weight[~torch.from_numpy(book.mask)], torch.zeros(int((~book.mask).sum())))


def test_fine_tuning_keeps_the_codebook_structure():
    model = prune_(make(), PruneConfig(sparsity={"c*": 0.4, "head.*": 0.7}))
    pruned = masks(model)
    zeros_before = {n: int((layer(model, n).weight == 0).sum()) for n in LAYERS}
    share_weights_(model, SMALL)
    index_before = {n: book.index.copy() for n, book in codebooks(model).items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    centroids_before = [layer(model, n).weight_centroids.detach().clone() for n in LAYERS]
    for i in range(5):
        opt.zero_grad()
        loss_of(model, i).backward()
        opt.step()
    for j, n in enumerate(LAYERS):
        m = layer(model, n)
        bits = 3 if n.startswith("c") else 2
        assert distinct_nonzero(m.weight) <= 2**bits
        assert torch.equal(m.weight.detach()[~pruned[n]], torch.zeros(int((~pruned[n]).sum())))
        assert int((m.weight == 0).sum()) == zeros_before[n]
        assert np.array_equal(codebooks(model)[n].index, index_before[n])
        assert not torch.equal(m.weight_centroids.detach(), centroids_before[j])  # it trained


# --------------------------------------------------------------------------------------------
# pruning and sharing together
# --------------------------------------------------------------------------------------------


def test_sharing_subsumes_the_pruning_mask():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    before = masks(model)
    share_weights_(model, SMALL)
    for n in LAYERS:
        m = layer(model, n)
        assert not is_pruned(m)
        assert "weight_mask" not in m._buffers
        assert not m._forward_pre_hooks and not m._load_state_dict_post_hooks
        book = codebooks(model)[n]
        assert np.array_equal(book.mask, before[n].numpy())
        assert (book.index[~book.mask] == book.centroids.size).all()
    assert not any(m in P._PRUNED for m in model.modules())
    after = masks(model)  # still reported, from the index
    assert all(torch.equal(after[n], before[n]) for n in LAYERS)
    rep = pruning_report(model)
    assert [r.name for r in rep.layers] == LAYERS
    assert rep.sparsity == pytest.approx(0.5, abs=0.02)
    assert f"c1.{CENTROIDS}" not in rep.left_alone and "bn.weight" in rep.left_alone


def test_fully_pruned_layer_has_an_empty_codebook():
    lin = nn.Linear(3, 2)
    prune_(lin, PruneConfig(sparsity=1.0))
    share_weights_(lin)
    assert lin.weight_centroids.shape == (0,)
    assert torch.equal(lin.weight, torch.zeros(2, 3))
    assert lin(torch.ones(1, 3)).shape == (1, 2)
    strip_(lin)
    assert torch.equal(lin.weight.detach(), torch.zeros(2, 3))


# --------------------------------------------------------------------------------------------
# strip, state_dict, copies
# --------------------------------------------------------------------------------------------


def test_strip_gives_exact_centroid_values_and_a_fresh_loadable_state_dict():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    share_weights_(model, SMALL)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(2):
        opt.zero_grad()
        loss_of(model, i).backward()
        opt.step()
    books = codebooks(model)
    out_before = model(*inputs(3)).detach()
    assert strip_(model) is model
    fresh = make(seed=4)
    assert [n for n, _ in model.named_parameters()] == [n for n, _ in fresh.named_parameters()]
    for n in LAYERS:
        m = layer(model, n)
        assert type(m) in (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
        assert isinstance(m.weight, nn.Parameter) and m.weight.requires_grad
        assert set(m._buffers) == set() and not m._forward_pre_hooks
        w = m.weight.detach().numpy()
        assert bits_equal(w, books[n].decode())
        allowed = set(books[n].centroids.view(np.uint32).tolist()) | {0}
        assert set(w.view(np.uint32).ravel().tolist()) <= allowed  # +0.0 or a centroid, bit for bit
    fresh.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(fresh(*inputs(3)), out_before)
    assert codebooks(model) == {} and masks(model) == {}


def test_state_dict_round_trip_between_shared_models():
    a = share_weights_(prune_(make(0), PruneConfig(sparsity=0.5)), SMALL)
    b = share_weights_(make(1), SMALL)
    b.load_state_dict(a.state_dict(), strict=True)
    for n in LAYERS:
        assert torch.equal(layer(a, n).weight, layer(b, n).weight)
    assert all(torch.equal(masks(a)[n], masks(b)[n]) for n in LAYERS)
    # a codebook of another size is taken as stored
    c = share_weights_(make(2), ShareConfig(conv_bits=1, fc_bits=1))
    c.load_state_dict(a.state_dict(), strict=True)
    assert torch.equal(c.head[0].weight, a.head[0].weight)
    assert c.head[0].weight_centroids.shape == a.head[0].weight_centroids.shape
    bad = a.state_dict()
    bad["head.0.weight_index"] = bad["head.0.weight_index"] + 100
    with pytest.raises(RuntimeError, match="head.0.weight_index holds indices in"):
        c.load_state_dict(bad)


def test_copies_and_dtype_moves_after_a_training_forward():
    model = share_weights_(make(), SMALL)
    loss_of(model).backward()  # graph built: nothing graph-attached is stored on the module
    ref = model(*inputs(2)).detach()
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert all(is_shared(layer(clone, n)) for n in LAYERS)
        assert torch.equal(clone(*inputs(2)), ref)
        clone.c2.weight_centroids.data.add_(1.0)
        assert not torch.equal(clone.c2.weight, model.c2.weight)  # really a copy
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert torch.equal(back(*inputs(2)), ref)
    model.double()
    assert model.c2.weight.dtype == torch.float64 and model.c2.weight_index.dtype == torch.int32


def test_codebooks_decode_and_apply_to_a_fresh_model():
    model = share_weights_(prune_(make(), PruneConfig(sparsity=0.6)), SMALL)
    books = codebooks(model)
    assert set(books) == set(LAYERS)
    for n, book in books.items():
        assert isinstance(book, LayerCodebook)
        assert book.centroids.dtype == np.float32 and book.index.dtype == np.int32
        assert book.mask.dtype == bool and book.mask.shape == book.index.shape
        assert bits_equal(book.decode(), layer(model, n).weight.detach().numpy())
    fresh = make(seed=8)
    apply_codebooks_(fresh, books)
    for n in LAYERS:
        assert torch.equal(layer(fresh, n).weight, layer(model, n).weight)
    # a (centroids, index, mask) triple: the mask wins at pruned positions
    c, idx, mask = books["head.2"]
    apply_codebooks_(fresh, {"head.2": (c, np.zeros_like(idx), mask)})
    w = fresh.head[2].weight.detach().numpy()
    assert (w[~mask] == 0).all() and (w[mask] == c[0]).all()
    with pytest.raises(ValueError, match=r"index values must lie in \[0, 4\]"):
        apply_codebooks_(fresh, {"head.2": (c, idx + 5)})
    with pytest.raises(ValueError, match="'nope' is not a layer with a weight"):
        apply_codebooks_(fresh, {"nope": (c, idx)})
    with pytest.raises(ValueError, match="index has shape"):
        share_layer_(nn.Linear(2, 2), c, idx)
    # on a pruned layer the given index cannot resurrect a pruned weight
    lin = prune_(nn.Linear(4, 2), PruneConfig(sparsity=0.5))
    keep = lin.weight_mask.clone()
    share_layer_(lin, [1.0, 2.0], np.zeros((2, 4), np.int64))
    assert torch.equal(lin.weight != 0, keep) and set(lin.weight[keep].tolist()) == {1.0}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_share_on_cuda():
    model = prune_(make().cuda(), PruneConfig(sparsity=0.5))
    share_weights_(model, SMALL)
    for n in LAYERS:
        m = layer(model, n)
        assert m.weight_centroids.is_cuda and m.weight_index.is_cuda and m.weight.is_cuda
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(3):
        opt.zero_grad()
        model(*(x.cuda() for x in inputs(i))).pow(2).mean().backward()
        opt.step()
    books = codebooks(model)
    strip_(model)
    for n in LAYERS:
        assert bits_equal(layer(model, n).weight.detach().cpu().numpy(), books[n].decode())


def test_fine_tuning_with_the_project_training_loop():
    from netsqueeze.nn.train import TrainConfig, train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    share_weights_(prune_(model, PruneConfig(sparsity=0.5)), SMALL)
    zeros = {n: int((layer(model, n).weight == 0).sum()) for n in ("0", "3")}
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    cfg = TrainConfig(iterations=6, batch_size=10, optimizer="adam", lr=0.05)
    train(model, x, y, cfg, device="cpu", progress=False)
    for n, bits in (("0", 3), ("3", 2)):
        w = layer(model, n).weight
        assert distinct_nonzero(w) <= 2**bits and int((w == 0).sum()) == zeros[n]
