"""The notebook's small CNN for 28x28 grey images."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class NotebookCNN(nn.Module):
    """conv 7x7 1->16, conv 5x5 16->32, dense 128->256, dense 256->10, with biases.

    48,912 weights and 314 biases. Shapes for a 28x28 input: conv1 (valid) 22x22x16, max-pool 2
    -> 11x11, conv2 (valid) 7x7x32, max-pool 3 -> 2x2x32 = 128 features, dense 256, dense 10.
    ReLU after every layer but the last, which gives logits.
    """

    input_shape = (1, 28, 28)

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, kernel_size=7)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=5)
        self.fc1 = nn.Linear(128, 256)
        self.fc2 = nn.Linear(256, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)
