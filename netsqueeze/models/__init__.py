"""Reference networks: the notebook's CNN, LeNet-300-100 and LeNet-5 (Caffe form).

``build(name)`` makes a fresh, seeded-by-the-caller instance; ``MODELS`` lists the names.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from netsqueeze.models.lenet import LeNet5, LeNet300100
from netsqueeze.models.notebook_cnn import NotebookCNN

MODELS: dict[str, Callable[[], nn.Module]] = {
    "notebook-cnn": NotebookCNN,
    "lenet-300-100": LeNet300100,
    "lenet5": LeNet5,
}


def build(name: str) -> nn.Module:
    """A fresh instance of a reference network by name (see ``MODELS``)."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of: {', '.join(MODELS)}"
        ) from None
    return factory()


def count_weights(model: nn.Module) -> int:
    """Number of entries in the weights of conv and linear layers (biases not counted)."""
    return sum(
        m.weight.numel()
        for m in model.modules()
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d | nn.Linear)
    )


__all__ = ["MODELS", "LeNet5", "LeNet300100", "NotebookCNN", "build", "count_weights"]
