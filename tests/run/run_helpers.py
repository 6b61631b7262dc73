"""Task functions the worker processes import by name (test modules are not importable there)."""

import os
from pathlib import Path

import torch
from torch import nn


def square_plus_noise(shared, item):
    """Uses the task's seed: equal results on every backend only if seeding is per task."""
    return item * item + shared["offset"] + float(torch.rand(1))


def die_once(shared, item):
    """Kill the worker on the first try of item ``shared['die_at']``; a marker file records it."""
    marker = Path(shared["marker"])
    if item == shared["die_at"] and not marker.exists():
        marker.write_text("died")
        os._exit(1)
    return shared["fn"](shared["inner"], item)


def die_always(shared, item):
    if item == 1:
        os._exit(1)
    return item


def tiny():
    """A small seeded classifier and data set for the sweeps: (model, x, y)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 3))
    g = torch.Generator().manual_seed(1)
    x = torch.rand(400, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :3].argmax(1) + (x.flatten(1).sum(1) > 8).long()) % 3
    return model, x, y
