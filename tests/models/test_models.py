import pytest
import torch

from netsqueeze.models import MODELS, build, count_weights


@pytest.mark.parametrize(
    "name, weights, params",
    [
        ("notebook-cnn", 48_912, 48_912 + 16 + 32 + 256 + 10),
        ("lenet-300-100", 784 * 300 + 300 * 100 + 100 * 10, 266_610),
        ("lenet5", 500 + 25_000 + 400_000 + 5_000, 431_080),
    ],
)
def test_parameter_counts(name, weights, params):
    m = build(name)
    assert count_weights(m) == weights
    assert sum(p.numel() for p in m.parameters()) == params


def test_notebook_cnn_layer_shapes():
    m = build("notebook-cnn")
    shapes = [tuple(p.shape) for n, p in m.named_parameters() if n.endswith("weight")]
    assert shapes == [(16, 1, 7, 7), (32, 16, 5, 5), (256, 128), (10, 256)]


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_gives_logits_for_mnist_images(name):
    torch.manual_seed(0)
    m = build(name)
    out = m(torch.rand(3, 1, 28, 28))
    assert out.shape == (3, 10)
    assert torch.isfinite(out).all()


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="notebook-cnn"):
        build("alexnet")
