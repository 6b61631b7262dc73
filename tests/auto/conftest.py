"""A tiny real problem for the automatic search: four Gaussian classes in 12 dimensions and a
three-layer MLP, trained in a second with a plain loop (not netsqueeze's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(12, 48)
        self.fc2 = nn.Linear(48, 24)
        self.fc3 = nn.Linear(24, 4)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def make_blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.RandomState(seed)
    centers = np.random.RandomState(99).randn(4, 12) * 1.2
    y = rng.randint(0, 4, n)
    x = centers[y] + rng.randn(n, 12)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.long)


def sgd_loop(model: nn.Module, x, y, iterations: int, *, lr: float = 0.05, seed: int = 0):
    """The user's own training loop: plain SGD with momentum on mini-batches of 64."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr,
                          momentum=0.9)
    model.train()
    for _ in range(iterations):
        idx = torch.randint(0, x.shape[0], (64,), generator=gen)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def accuracy(model: nn.Module, x, y) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def problem():
    torch.set_num_threads(1)  # tiny tensors: one thread, no contention with other work
    torch.manual_seed(0)
    x_tr, y_tr = make_blobs(1200, 1)
    x_va, y_va = make_blobs(800, 2)
    model = TinyMLP()
    sgd_loop(model, x_tr, y_tr, 400)
    return model, (x_tr, y_tr), (x_va, y_va)


@pytest.fixture(scope="module")
def tiny():
    """The helpers above, for tests (pytest's importlib mode cannot import conftest)."""
    from types import SimpleNamespace

    return SimpleNamespace(TinyMLP=TinyMLP, make_blobs=make_blobs, sgd_loop=sgd_loop,
                           accuracy=accuracy)
