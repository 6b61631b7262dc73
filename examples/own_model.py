"""A network of your own, compressed from the command line (README: "Compress your own model").

Run it as a script to write a small data set::

    python examples/own_model.py shapes.npz

``shapes.npz`` holds 3x16x16 colour images of four classes (a bright horizontal bar, vertical
bar, square or diagonal, at random places, in random colours, with noise) as uint8 NCHW arrays
``x_train``/``y_train`` (2,000), ``x_val``/``y_val`` (400) and ``x_test``/``y_test`` (1,000).
Then compress :class:`SmallNet` (convolutions, a depthwise convolution, BatchNorm, two linear
layers) with::

    netsqueeze compress --model examples/own_model.py:SmallNet --dataset npz:shapes.npz \\
        --recipe examples/own_model.toml -o runs/own
"""

from __future__ import annotations

import sys

import numpy as np
import torch
from torch import nn


class SmallNet(nn.Module):
    """3x16x16 images -> 4 classes: conv, depthwise conv, BatchNorm, two linear layers."""

    def __init__(self, classes: int = 4, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, groups=width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 8 * 8, 64), nn.ReLU(),
                                  nn.Linear(64, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def make_shapes(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` noisy 3x16x16 uint8 images of 4 shape classes, and their labels."""
    y = rng.integers(0, 4, n)
    x = rng.normal(40, 20, (n, 3, 16, 16))
    for i, label in enumerate(y):
        r, c = rng.integers(2, 12, 2)
        colour = rng.uniform(120, 255, 3)[:, None]
        if label == 0:
            rows, cols = np.full(6, r), np.arange(c - 2, c + 4)
        elif label == 1:
            rows, cols = np.arange(r - 2, r + 4), np.full(6, c)
        elif label == 2:
            rows, cols = np.repeat(np.arange(r, r + 3), 3), np.tile(np.arange(c, c + 3), 3)
        else:
            rows, cols = np.arange(r - 2, r + 4), np.arange(c - 2, c + 4)
        x[i][:, rows, cols] = colour
    return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)


def main(path: str) -> None:
    rng = np.random.default_rng(0)
    splits = {name: make_shapes(n, rng) for name, n in (("train", 2000), ("val", 400),
                                                        ("test", 1000))}
    np.savez_compressed(path, **{f"{a}_{s}": v for s, (x, y) in splits.items()
                                 for a, v in (("x", x), ("y", y))})
    print(f"wrote {path}: " + ", ".join(f"{len(y)} {s}" for s, (_, y) in splits.items())
          + " images of shape 3x16x16, 4 classes")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "shapes.npz")
