"""VGG-16 (Simonyan and Zisserman, 2015, configuration D) for ImageNet-sized inputs.

The network of Deep Compression's largest experiment (Han, Mao, Dally 2016, Table 5): thirteen
3x3 convolutions ``64-64-M-128-128-M-256-256-256-M-512-512-512-M-512-512-512-M`` and three fully
connected layers ``25088 -> 4096 -> 4096 -> 1000``, with biases: 138,357,544 parameters, of which
138,344,128 are conv/linear weights.

Module names follow the usual layout (``features.N`` for the convolutions, ``classifier.0/3/6``
for the linear layers), so a state_dict with those names loads into it. No pretrained weights are
shipped or downloaded: the weights are random, drawn from a seeded generator.

``width_divisor`` divides every channel count and the hidden width, for quick runs and tests
(``VGG16(width_divisor=16)`` has about 0.8 M parameters).

Examples
--------
>>> import torch
>>> with torch.device("meta"):
...     full = VGG16(init=False)
>>> sum(p.numel() for p in full.parameters())
138357544
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["VGG16", "VGG16_CONFIG", "VGG16_PARAMETERS", "vgg16_parameter_count"]

#: Configuration D: output channels of each 3x3 convolution, ``"M"`` for a 2x2 max-pool.
VGG16_CONFIG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
#: Parameters of the full-size network (1000 classes), weights and biases.
VGG16_PARAMETERS = 138_357_544

_POOLED = 7  # spatial size of the last feature map for 224x224 inputs (adaptive pool target)


def _check_divisor(width_divisor) -> int:
    if isinstance(width_divisor, bool) or not isinstance(width_divisor, int) or not (
        1 <= width_divisor <= 64
    ):
        raise ValueError(f"width_divisor must be an integer in 1..64, got {width_divisor!r}")
    return width_divisor


def _layer_shapes(n_classes: int, width_divisor: int, in_channels: int):
    """``(kind, out, in, kernel)`` of every conv / linear layer, in order."""
    d = _check_divisor(width_divisor)
    shapes = []
    c_in = in_channels
    for v in VGG16_CONFIG:
        if v == "M":
            continue
        c_out = max(1, int(v) // d)
        shapes.append(("conv", c_out, c_in, 3))
        c_in = c_out
    hidden = max(1, 4096 // d)
    shapes.append(("fc", hidden, c_in * _POOLED * _POOLED, 1))
    shapes.append(("fc", hidden, hidden, 1))
    shapes.append(("fc", n_classes, hidden, 1))
    return shapes


def vgg16_parameter_count(
    n_classes: int = 1000, *, width_divisor: int = 1, in_channels: int = 3
) -> int:
    """Parameters (weights and biases) of :class:`VGG16`, counted from the layer shapes.

    Nothing is allocated: ``vgg16_parameter_count() == 138_357_544``.
    """
    total = 0
    for _, c_out, c_in, k in _layer_shapes(n_classes, width_divisor, in_channels):
        total += c_out * c_in * k * k + c_out
    return total


class VGG16(nn.Module):
    """VGG-16 (configuration D) with random weights.

    Parameters
    ----------
    n_classes : int, default 1000
    width_divisor : int, default 1
        Divides every channel count and the hidden width of the classifier (1: the full
        138 M-parameter network).
    in_channels : int, default 3
    seed : int, default 0
        Seed of the generator that draws the weights.
    init : bool, default True
        Draw the weights. ``False`` sets every parameter to zero instead: a cheap skeleton to
        load a state_dict into. Under ``with torch.device("meta")`` nothing is allocated at all
        (to inspect shapes and count parameters).

    Notes
    -----
    The weights are drawn as in common VGG implementations: convolutions from
    ``N(0, 2 / fan_out)`` (He initialisation, fan-out mode), linear layers from
    ``N(0, 0.01 ** 2)``, biases zero. The layers are first built on the meta device and then
    allocated once, so the constructors' default initialisation (about as costly as this one
    for 138 M weights) is not paid and thrown away.

    Inputs of any size from 32x32 up work: an adaptive average pool brings the last feature map
    to 7x7 before the classifier, as for 224x224 inputs.
    """

    def __init__(
        self,
        n_classes: int = 1000,
        *,
        width_divisor: int = 1,
        in_channels: int = 3,
        seed: int = 0,
        init: bool = True,
    ):
        super().__init__()
        shapes = _layer_shapes(n_classes, width_divisor, in_channels)
        target = torch.empty(0).device  # honours an enclosing ``with torch.device(...)``
        with torch.device("meta"):
            features: list[nn.Module] = []
            convs = iter(s for s in shapes if s[0] == "conv")
            for v in VGG16_CONFIG:
                if v == "M":
                    features.append(nn.MaxPool2d(kernel_size=2, stride=2))
                else:
                    _, c_out, c_in, _ = next(convs)
                    features += [nn.Conv2d(c_in, c_out, kernel_size=3, padding=1),
                                 nn.ReLU(inplace=True)]
            self.features = nn.Sequential(*features)
            self.avgpool = nn.AdaptiveAvgPool2d((_POOLED, _POOLED))
            (_, h1, f_in, _), (_, h2, _, _), (_, n_out, _, _) = shapes[-3:]
            self.classifier = nn.Sequential(
                nn.Linear(f_in, h1),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(h1, h2),
                nn.ReLU(inplace=True),
                nn.Dropout(p=0.5),
                nn.Linear(h2, n_out),
            )
        if target.type != "meta":
            self.to_empty(device=target)
            if init:
                self.reset_parameters(seed)
            else:  # defined values all the same: allocation alone leaves garbage
                for p in self.parameters():
                    nn.init.zeros_(p)

    @torch.no_grad()
    def reset_parameters(self, seed: int = 0) -> VGG16:
        """Draw every weight again from a generator seeded with ``seed``; return self."""
        gen = torch.Generator(device=next(self.parameters()).device).manual_seed(int(seed))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * math.prod(m.kernel_size)
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_out), generator=gen)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.01, generator=gen)
            else:
                continue
            if m.bias is not None:
                m.bias.zero_()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        return self.classifier(torch.flatten(x, 1))
