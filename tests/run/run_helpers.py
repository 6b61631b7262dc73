"""Task functions the worker processes import by name (test modules are not importable there)."""

import os
from pathlib import Path

import torch


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
