"""VGG-16: sizes counted without allocating the full network, and tiny-width runs."""

import pytest
import torch
from torch import nn

from netsqueeze.models import count_weights
from netsqueeze.models.vgg import VGG16, VGG16_PARAMETERS, vgg16_parameter_count

# configuration D: 13 convolutions 3x3 and 3 linear layers, with biases
CONV_WIDTHS = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
FC = [(25088, 4096), (4096, 4096), (4096, 1000)]


def _by_hand() -> tuple[int, int]:
    weights, biases, c_in = 0, 0, 3
    for c in CONV_WIDTHS:
        weights += c * c_in * 9
        biases += c
        c_in = c
    for fan_in, fan_out in FC:
        weights += fan_in * fan_out
        biases += fan_out
    return weights, biases


def _meta_vgg16(**kwargs) -> nn.Module:
    with torch.device("meta"):
        return VGG16(init=False, **kwargs)


def test_full_size_parameter_count_on_the_meta_device():
    weights, biases = _by_hand()
    assert weights + biases == VGG16_PARAMETERS == 138_357_544
    model = _meta_vgg16()
    assert all(p.device.type == "meta" for p in model.parameters())  # nothing allocated
    assert sum(p.numel() for p in model.parameters()) == VGG16_PARAMETERS
    assert count_weights(model) == weights == 138_344_128
    assert vgg16_parameter_count() == VGG16_PARAMETERS


def test_layer_names_and_shapes_follow_the_usual_layout():
    model = _meta_vgg16()
    shapes = {n: tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")}
    convs = [n for n in shapes if n.startswith("features.")]
    assert convs == [
        f"features.{i}.weight"
        for i in (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
    ]
    assert [shapes[n][0] for n in convs] == CONV_WIDTHS
    assert shapes["features.0.weight"] == (64, 3, 3, 3)
    assert [shapes[f"classifier.{i}.weight"] for i in (0, 3, 6)] == [
        (o, i) for i, o in FC
    ]
    pools = [n for n, m in model.named_modules() if isinstance(m, nn.MaxPool2d)]
    assert pools == ["features.4", "features.9", "features.16", "features.23", "features.30"]


@pytest.mark.parametrize("divisor, n_classes", [(1, 10), (8, 1000), (32, 10), (64, 3)])
def test_counted_size_matches_the_built_model(divisor, n_classes):
    model = _meta_vgg16(width_divisor=divisor, n_classes=n_classes)
    assert sum(p.numel() for p in model.parameters()) == vgg16_parameter_count(
        n_classes, width_divisor=divisor
    )


def test_tiny_width_forward_pass():
    model = VGG16(n_classes=10, width_divisor=32, seed=0).eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, 10)
    assert torch.isfinite(y).all()
    assert y.abs().max() > 0


def test_weights_are_drawn_from_the_seed():
    a = VGG16(n_classes=10, width_divisor=32, seed=1)
    b = VGG16(n_classes=10, width_divisor=32, seed=1)
    c = VGG16(n_classes=10, width_divisor=32, seed=2)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["features.0.weight"], sc["features.0.weight"])
    assert all(torch.count_nonzero(sa[k]) == 0 for k in sa if k.endswith("bias"))
    # convolutions: He init in fan-out mode; linear layers: N(0, 0.01^2)
    w = sa["features.28.weight"]
    assert abs(w.std().item() - (2 / (16 * 9)) ** 0.5) < 0.02
    assert abs(sa["classifier.0.weight"].std().item() - 0.01) < 0.001


def test_skeleton_is_zero_and_loads_a_state_dict():
    src = VGG16(n_classes=10, width_divisor=32, seed=3)
    skeleton = VGG16(n_classes=10, width_divisor=32, init=False)
    assert all(torch.count_nonzero(p) == 0 for p in skeleton.parameters())
    skeleton.load_state_dict(src.state_dict())
    assert all(torch.equal(p, q) for p, q in zip(src.parameters(), skeleton.parameters(),
                                                  strict=True))


@pytest.mark.parametrize("bad", [0, -1, 65, 2.0, True])
def test_bad_width_divisor(bad):
    with pytest.raises(ValueError, match="width_divisor"):
        vgg16_parameter_count(width_divisor=bad)
    with pytest.raises(ValueError, match="width_divisor"):
        _meta_vgg16(width_divisor=bad)


def test_tiny_width_round_trip_through_the_pipeline(tmp_path):
    from netsqueeze.nn.export import load_compressed, save_compressed
    from netsqueeze.nn.prune import PruneConfig, prune_, strip_
    from netsqueeze.nn.share import ShareConfig, share_weights_

    model = VGG16(n_classes=10, width_divisor=32, seed=0)
    prune_(model, PruneConfig(sparsity=0.9))
    share_weights_(model, ShareConfig(conv_bits=8, fc_bits=5))
    save_compressed(model, tmp_path / "vgg.nsq")
    loaded = load_compressed(tmp_path / "vgg.nsq",
                             model=VGG16(n_classes=10, width_divisor=32, init=False))
    strip_(model).eval()
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
