import copy
import gc
import io
import json
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from netsqueeze.nn import prune as P
from netsqueeze.nn.prune import (
    PruneConfig,
    SparsitySchedule,
    apply_masks_,
    is_pruned,
    masks,
    prune_,
    pruning_report,
    strip_,
)


class Mixed(nn.Module):
    """Conv1d, Conv2d, Conv3d, Linear and a BatchNorm, on a small input of each kind."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(2, 4, 3)
        self.c2 = nn.Conv2d(2, 4, 3)
        self.c3 = nn.Conv3d(2, 3, 2)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Linear(4 * 4 + 4 * 4 + 3 * 8, 12), nn.ReLU(), nn.Linear(12, 3))

    def forward(self, x1, x2, x3):
        a = self.c1(x1).flatten(1)
        b = self.bn(self.c2(x2)).flatten(1)
        c = self.c3(x3).flatten(1)
        return self.head(torch.cat([a, b, c], 1))


LAYERS = ["c1", "c2", "c3", "head.0", "head.2"]


def make(seed=0):
    torch.manual_seed(seed)
    return Mixed()


def inputs(seed=1, n=6):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n, 2, 6, generator=g),
        torch.randn(n, 2, 4, 4, generator=g),
        torch.randn(n, 2, 3, 3, 3, generator=g),
    )


def loss_of(model, seed=1):
    return model(*inputs(seed)).pow(2).mean()


def layer(model, name):
    return model.get_submodule(name)


def zeros_where_pruned(model):
    for name, m in masks(model).items():
        w = layer(model, name).weight.detach()
        assert torch.equal(w[~m], torch.zeros_like(w[~m])), name
        # +0.0 bit for bit, never -0.0
        assert not torch.signbit(w[~m]).any(), name


# --------------------------------------------------------------------------------------------
# config validation and serialisation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of sparsity, quality, threshold; got none"),
        ({"sparsity": 0.5, "threshold": 0.1}, "exactly one.*got sparsity, threshold"),
        ({"sparsity": 1.5}, r"sparsity must lie in \[0, 1\]"),
        ({"sparsity": True}, "sparsity must be a finite number"),
        ({"quality": -1.0}, "quality must be >= 0"),
        ({"threshold": float("nan")}, "threshold must be a finite number"),
        ({"threshold": {}}, "threshold is an empty dict"),
        ({"sparsity": {"fc*": 2.0}}, r"sparsity\['fc\*'\] must lie in \[0, 1\]"),
        ({"sparsity": {"": 0.5}}, "patterns must be non-empty strings"),
        ({"sparsity": 0.5, "scope": "net"}, "scope must be one of layer, global; got 'net'"),
        ({"threshold": 0.1, "scope": "global"}, "needs sparsity as a single number"),
        ({"sparsity": {"*": 0.5}, "scope": "global"}, "needs sparsity as a single number"),
    ],
)
def test_config_validation_names_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PruneConfig(**kwargs).validate()


def test_pattern_matching_no_layer_lists_the_layers():
    model = make()
    with pytest.raises(ValueError, match=r"pattern 'fc\*' matches no layer.*'c1'.*'head.2'"):
        prune_(model, PruneConfig(sparsity={"c*": 0.5, "fc*": 0.9}))
    assert not any(is_pruned(m) for m in model.modules())  # nothing done


def test_config_round_trips_through_json_and_copies_dicts():
    spec = {"c*": 0.5, "head.*": 0.9}
    cfg = PruneConfig(sparsity=spec)
    spec["c*"] = 0.0  # the config holds its own copy
    assert cfg.sparsity == {"c*": 0.5, "head.*": 0.9}
    back = PruneConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert PruneConfig.from_dict({"quality": 1.0}).criterion == "quality"
    with pytest.raises(ValueError, match=r"unknown PruneConfig field\(s\) \['sparsiti'\]"):
        PruneConfig.from_dict({"sparsiti": 0.5})
    with pytest.raises(TypeError, match="PruneConfig, a dict or a sparsity"):
        prune_(make(), "0.5")
    # a float is a sparsity: the same masks as PruneConfig(sparsity=0.5)
    a, b = make(), make()
    prune_(a, 0.5)
    prune_(b, PruneConfig(sparsity=0.5))
    assert all(torch.equal(x, y) for x, y in zip(masks(a).values(), masks(b).values()))


def test_exact_name_beats_patterns_then_first_pattern_wins():
    cfg = PruneConfig(sparsity={"*": 0.5, "head.2": 0.25, "head.*": 0.75})
    assert cfg.value_for("head.2") == 0.25
    assert cfg.value_for("head.0") == 0.5
    assert PruneConfig(sparsity={"c?": 0.1}).value_for("head.0") is None


# --------------------------------------------------------------------------------------------
# pruning itself
# --------------------------------------------------------------------------------------------


def test_prune_every_kind_of_layer_and_leave_the_rest_alone():
    model = make()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    ids = {n: id(p) for n, p in model.named_parameters()}
    out = prune_(model, PruneConfig(sparsity=0.5))
    assert out is model
    assert {n: id(p) for n, p in model.named_parameters()} == ids  # parameters kept
    assert sorted(masks(model)) == sorted(LAYERS)
    for name in LAYERS:
        m = layer(model, name)
        assert is_pruned(m)
        assert m.weight_mask.dtype == torch.bool and m.weight_mask.shape == m.weight.shape
        assert P.core_prune.sparsity(m.weight_mask.numpy()) == pytest.approx(0.5, abs=0.05)
        # survivors unchanged, the pruned ones are the smallest
        w0, keep = before[f"{name}.weight"], m.weight_mask
        assert torch.equal(m.weight.detach()[keep], w0[keep])
        assert w0[~keep].abs().max() <= w0[keep].abs().min()
    for name, p in model.named_parameters():
        if not any(name == f"{n}.weight" for n in LAYERS):
            assert torch.equal(p.detach(), before[name]), name
    assert not is_pruned(model.bn)
    zeros_where_pruned(model)
    sd = model.state_dict()
    assert {f"{n}.weight_mask" for n in LAYERS} <= set(sd)
    assert not any(k.startswith("bn.") and k.endswith("_mask") for k in sd)


def test_report_lists_layers_and_parameters_left_alone():
    model = prune_(make(), PruneConfig(sparsity={"c*": 0.5}))
    rep = pruning_report(model)
    assert [layer.name for layer in rep.layers] == LAYERS
    by = {layer.name: layer for layer in rep.layers}
    assert by["c2"].pruned and not by["head.0"].pruned
    assert by["c2"].kind == "conv" and by["head.0"].kind == "fc"
    assert by["c2"].weights == 4 * 2 * 3 * 3 and by["c2"].kept == by["c2"].weights // 2
    assert by["c2"].sparsity == pytest.approx(0.5)
    assert by["head.0"].sparsity == 0.0
    assert rep.weights == sum(layer.weights for layer in rep.layers)
    assert rep.left_alone == [
        "c1.bias", "c2.bias", "c3.bias", "bn.weight", "bn.bias", "head.0.bias", "head.2.bias"
    ]
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["layers"][1]["sparsity"] == pytest.approx(0.5)


def test_threshold_and_quality_by_hand():
    lin = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -0.05, 0.2, -0.3]]))
    prune_(lin, PruneConfig(threshold=0.2))
    assert lin.weight_mask.tolist() == [[True, False, True, True]]
    assert lin.weight.detach()[0].tolist() == pytest.approx([0.5, 0.0, 0.2, -0.3])
    lin2 = nn.Linear(4, 1, bias=False)
    with torch.no_grad():
        lin2.weight.copy_(torch.tensor([[1.0, -1.0, 0.1, 3.0]]))
    std = np.std([1.0, -1.0, 0.1, 3.0])
    prune_(lin2, PruneConfig(quality=1.0 / std))  # threshold 1.0: |w| < 1 goes
    assert lin2.weight_mask.tolist() == [[True, True, False, True]]


def test_global_scope_is_one_cut_over_all_layers():
    model = make()
    weights = {n: layer(model, n).weight.detach().numpy().copy() for n in LAYERS}
    prune_(model, PruneConfig(sparsity=0.7, scope="global"))
    all_w = np.concatenate([w.ravel() for w in weights.values()])
    keep = np.concatenate([layer(model, n).weight_mask.numpy().ravel() for n in LAYERS])
    assert 1 - keep.mean() == pytest.approx(0.7, abs=1 / all_w.size)
    assert np.abs(all_w[~keep]).max() <= np.abs(all_w[keep]).min()
    sparsities = [1 - layer(model, n).weight_mask.float().mean().item() for n in LAYERS]
    assert max(sparsities) - min(sparsities) > 0.05  # layers differ


def test_filter_fn_narrows_the_layers():
    model = prune_(make(), PruneConfig(sparsity=0.5), filter_fn=lambda m, n: n.startswith("head"))
    assert sorted(masks(model)) == ["head.0", "head.2"]
    with pytest.raises(ValueError, match="no layer to prune"):
        prune_(make(), PruneConfig(sparsity=0.5), filter_fn=lambda m, n: False)


def test_repeated_pruning_is_monotone_and_never_resurrects():
    model = prune_(make(), PruneConfig(sparsity=0.6))
    first = masks(model)
    w_first = {n: layer(model, n).weight.detach().clone() for n in LAYERS}
    prune_(model, PruneConfig(sparsity=0.3))  # lower target: nothing changes
    for n in LAYERS:
        assert torch.equal(masks(model)[n], first[n])
        assert torch.equal(layer(model, n).weight.detach(), w_first[n])
    # weights pruned before are larger than some survivors now: still not resurrected
    with torch.no_grad():
        for n in LAYERS:
            layer(model, n).weight.mul_(0.01)
    prune_(model, PruneConfig(sparsity=0.8))
    for n in LAYERS:
        now = masks(model)[n]
        assert not (now & ~first[n]).any()
        assert 1 - now.float().mean().item() == pytest.approx(0.8, abs=0.05)
    zeros_where_pruned(model)
    # a threshold on top of a sparsity mask keeps the old zeros too
    before = masks(model)
    prune_(model, PruneConfig(threshold=0.0))
    assert all(torch.equal(masks(model)[n], before[n]) for n in LAYERS)


def test_sparsity_counts_the_weights_pruned_before():
    model = prune_(make(), PruneConfig(sparsity={"head.0": 0.5}))
    prune_(model, PruneConfig(sparsity={"head.0": 0.75}))
    m = layer(model, "head.0").weight_mask
    assert 1 - m.float().mean().item() == pytest.approx(0.75, abs=1 / m.numel())


# --------------------------------------------------------------------------------------------
# zeros survive training
# --------------------------------------------------------------------------------------------

OPTIMIZERS = {
    "adam-wd": lambda ps: torch.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=1e-3),
    "adam-foreach": lambda ps: torch.optim.Adam(ps, lr=1e-2, foreach=True, amsgrad=True),
}


def steps(model, opt, n, seed=1):
    for i in range(n):
        opt.zero_grad()
        loss_of(model, seed + i).backward()
        opt.step()


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_pruned_weights_stay_zero_with_state_built_before_pruning(opt_name):
    model = make()
    opt = OPTIMIZERS[opt_name](model.parameters())
    steps(model, opt, 3)  # momentum / moments are non-zero everywhere now
    prune_(model, PruneConfig(sparsity=0.6))
    zeros_before = {n: (layer(model, n).weight == 0).sum().item() for n in LAYERS}
    steps(model, opt, 4, seed=10)
    zeros_where_pruned(model)
    for n in LAYERS:
        m = layer(model, n)
        assert torch.equal(m.weight.grad[~m.weight_mask], torch.zeros_like(m.weight.grad[~m.weight_mask]))
        assert (m.weight == 0).sum().item() == zeros_before[n]
    # the survivors did train
    assert loss_of(model) is not None


def test_pruned_weights_stay_zero_with_optimizer_built_after_pruning():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-2)
    w0 = layer(model, "head.0").weight.detach().clone()
    steps(model, opt, 3)
    zeros_where_pruned(model)
    keep = layer(model, "head.0").weight_mask
    assert not torch.equal(layer(model, "head.0").weight.detach()[keep], w0[keep])


def test_hand_written_update_sees_zero_gradients():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    loss_of(model).backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
    zeros_where_pruned(model)


def test_gradient_accumulation_over_several_forwards():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loss = loss_of(model, 1) + loss_of(model, 2)
    loss.backward()
    opt.step()
    zeros_where_pruned(model)


def test_deepcopy_and_pickle_of_a_pruned_model_stay_guarded():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert sorted(masks(clone)) == sorted(LAYERS)
        opt = torch.optim.SGD(clone.parameters(), lr=0.5, momentum=0.9)
        # stale momentum at pruned positions: fake it, as if built before pruning
        steps(clone, opt, 1)
        for p in clone.parameters():
            opt.state[p]["momentum_buffer"] = torch.ones_like(p)
        steps(clone, opt, 2)
        zeros_where_pruned(clone)
        for name, m in masks(clone).items():
            g = layer(clone, name).weight.grad
            assert torch.equal(g[~m], torch.zeros_like(g[~m])), name


def test_load_state_dict_reapplies_the_mask_and_masks_round_trip():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    sd = model.state_dict()
    other = make(seed=5)
    apply_masks_(other, {k.removesuffix(".weight_mask"): v for k, v in sd.items()
                         if k.endswith(".weight_mask")})
    other.load_state_dict(sd, strict=True)
    for n in LAYERS:
        assert torch.equal(layer(other, n).weight, layer(model, n).weight)
    # a dense state_dict loaded into a pruned model is masked on arrival
    dense = make(seed=3).state_dict()
    missing, unexpected = model.load_state_dict(dense, strict=False)
    assert sorted(missing) == sorted(f"{n}.weight_mask" for n in LAYERS) and not unexpected
    zeros_where_pruned(model)


def test_apply_masks_validates():
    model = make()
    with pytest.raises(ValueError, match=r"'nope' is not a layer with a weight Parameter.*'c1'"):
        apply_masks_(model, {"nope": torch.ones(1, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"mask of 'c1' has shape \(3,\)"):
        apply_masks_(model, {"c1": torch.ones(3, dtype=torch.bool)})


# --------------------------------------------------------------------------------------------
# strip
# --------------------------------------------------------------------------------------------


def test_strip_leaves_a_plain_model_that_loads_into_a_fresh_one():
    model = make()
    ids = {n: id(p) for n, p in model.named_parameters()}
    prune_(model, PruneConfig(sparsity=0.5))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    steps(model, opt, 2)
    expected = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = strip_(model)
    assert out is model
    assert {n: id(p) for n, p in model.named_parameters()} == ids
    assert masks(model) == {} and not any(is_pruned(m) for m in model.modules())
    for m in model.modules():
        assert not m._forward_pre_hooks and not m._load_state_dict_post_hooks
        assert "weight_mask" not in m._buffers
        w = m._parameters.get("weight")
        if w is not None:
            assert not w._backward_hooks
    fresh = make(seed=9)
    fresh.load_state_dict(model.state_dict(), strict=True)
    for n, p in fresh.named_parameters():
        assert torch.equal(p.detach(), expected[n])
    # the stripped model trains like any model: its zeros are no longer held
    zeros = (layer(model, "head.2").weight == 0).sum().item()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    steps(model, opt, 1)
    assert (layer(model, "head.2").weight == 0).sum().item() < zeros


def test_step_hook_released_when_nothing_is_pruned():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    assert P._step_hook_handle is not None
    strip_(model)
    assert not any(m in P._PRUNED for m in model.modules())
    gc.collect()
    if not P._PRUNED:  # no other pruned model alive
        assert P._step_hook_handle is None
    # pruning again brings the hook back
    prune_(model, PruneConfig(sparsity=0.5))
    assert P._step_hook_handle is not None


def test_registry_does_not_keep_modules_alive():
    import weakref

    model = prune_(make(), PruneConfig(sparsity=0.5))
    loss_of(model).backward()
    ref = weakref.ref(model)
    del model
    gc.collect()
    assert ref() is None


# --------------------------------------------------------------------------------------------
# schedule
# --------------------------------------------------------------------------------------------


def test_linear_and_cubic_schedules_by_hand():
    lin = SparsitySchedule(0.8, steps=4, initial=0.2)
    assert [lin(k) for k in range(6)] == pytest.approx([0.2, 0.35, 0.5, 0.65, 0.8, 0.8])
    assert lin(4) == 0.8  # exactly the final value
    cub = SparsitySchedule(0.9, steps=2, kind="cubic")
    assert cub(1) == pytest.approx(0.9 * (1 - 0.5**3))
    assert cub(2) == 0.9
    per_layer = SparsitySchedule({"c*": 0.5, "*": 0.9}, steps=2)
    assert per_layer(1) == pytest.approx({"c*": 0.25, "*": 0.45})
    assert per_layer.config(2) == PruneConfig(sparsity={"c*": 0.5, "*": 0.9})


def test_schedule_validation_and_round_trip():
    for kwargs, match in [
        ({"final": 0.5, "steps": 0}, "steps must be an integer >= 1"),
        ({"final": 1.5, "steps": 2}, r"final must lie in \[0, 1\]"),
        ({"final": 0.5, "steps": 2, "initial": 0.7}, "below initial"),
        ({"final": 0.5, "steps": 2, "kind": "exp"}, "kind must be one of linear, cubic"),
        ({"final": {"*": 0.5}, "steps": 2, "scope": "global"}, "single number"),
    ]:
        with pytest.raises(ValueError, match=match):
            SparsitySchedule(**kwargs)(1)
    with pytest.raises(ValueError, match="step must be an integer >= 0"):
        SparsitySchedule(0.5, 2)(-1)
    s = SparsitySchedule({"a": 0.5}, steps=3, initial=0.1, kind="cubic")
    back = SparsitySchedule.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s and back is not s
    with pytest.raises(ValueError, match="unknown SparsitySchedule field"):
        SparsitySchedule.from_dict({"final": 0.5, "steps": 2, "power": 3})
    # no shared mutable state between instances
    a, b = SparsitySchedule(0.5, 2), SparsitySchedule(0.5, 2)
    assert a.to_dict() == b.to_dict() and a.to_dict() is not b.to_dict()


def test_iterative_pruning_with_a_schedule():
    model = make()
    sched = SparsitySchedule(0.8, steps=4, kind="cubic")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    previous = None
    for k in range(1, sched.steps + 1):
        prune_(model, sched.config(k))
        steps(model, opt, 2, seed=k)
        current = masks(model)
        if previous is not None:
            assert all(not (current[n] & ~previous[n]).any() for n in LAYERS)
        previous = current
    rep = pruning_report(model)
    assert rep.sparsity == pytest.approx(0.8, abs=0.03)
    zeros_where_pruned(model)


def test_torch_save_round_trip_of_a_pruned_model():
    model = prune_(make(), PruneConfig(sparsity=0.5))
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert sorted(masks(back)) == sorted(LAYERS)
    opt = torch.optim.AdamW(back.parameters(), lr=0.1)
    steps(back, opt, 2)
    zeros_where_pruned(back)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_prune_on_cuda():
    model = make().cuda()
    prune_(model, PruneConfig(sparsity=0.5))
    assert all(m.device.type == "cuda" for m in masks(model).values())
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for i in range(3):
        opt.zero_grad()
        model(*(x.cuda() for x in inputs(i))).pow(2).mean().backward()
        opt.step()
    zeros_where_pruned(model)
    strip_(model)
    assert masks(model) == {}


def test_zeros_hold_through_the_project_training_loop():
    from netsqueeze.nn.train import TrainConfig, train

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    prune_(model, PruneConfig(sparsity=0.7))
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(40, 1, 8, 8, generator=g), torch.randint(0, 3, (40,), generator=g)
    for opt in ("adam", "adamw", "sgd"):
        cfg = TrainConfig(iterations=4, batch_size=10, optimizer=opt, weight_decay=1e-2, lr=0.05)
        train(model, x, y, cfg, device="cpu", progress=False)
        zeros_where_pruned(model)
    assert pruning_report(model).sparsity == pytest.approx(0.7, abs=0.01)


@settings(max_examples=30, deadline=None)
@given(
    targets=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_any_sequence_of_prunes_is_monotone(targets, seed):
    torch.manual_seed(seed)
    lin = nn.Linear(7, 5)
    prev_keep = torch.ones(5, 7, dtype=torch.bool)
    best = 0.0
    for t in targets:
        prune_(lin, PruneConfig(sparsity=t))
        keep = lin.weight_mask
        assert not (keep & ~prev_keep).any()
        best = max(best, t)
        assert (~keep).sum().item() == max(round(best * 35), (~prev_keep).sum().item())
        assert (lin.weight.detach()[~keep] == 0).all()
        prev_keep = keep.clone()
