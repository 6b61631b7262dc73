"""LeNet-300-100 and LeNet-5 as in Deep Compression's MNIST experiments (Caffe forms)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class LeNet300100(nn.Module):
    """Fully connected 784-300-100-10 with ReLU: 266,200 weights, 410 biases."""

    input_shape = (1, 28, 28)

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe's LeNet: conv 5x5 20, max-pool 2, conv 5x5 50, max-pool 2, fc 800->500, 500->10.

    430,500 weights and 580 biases (431K parameters). ReLU after fc1 only, as in Caffe's
    ``lenet_train_test.prototxt``.
    """

    input_shape = (1, 28, 28)

    def __init__(self, n_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, kernel_size=5)
        self.conv2 = nn.Conv2d(20, 50, kernel_size=5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.max_pool2d(self.conv2(x), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc2(x)
