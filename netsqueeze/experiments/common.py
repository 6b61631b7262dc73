"""Steps every experiment starts with: loading its data and checking it fits the model."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from netsqueeze.data import Dataset

__all__ = ["check_images_fit", "load_data"]


def load_data(name: str, *, data_dir: str | None, download: bool, progress: bool,
              log: Callable[[str], None]) -> Dataset:
    """Load a dataset and say which one it is (and any notice, such as a fallback)."""
    from netsqueeze import data as nsdata

    ds = nsdata.load(name, data_dir=data_dir, download=download, progress=progress)
    log(f"data: {ds.describe()}")
    if ds.note:
        log(f"note: {ds.note}")
    return ds


def check_images_fit(ds: Dataset, model: nn.Module, model_name: str) -> None:
    """Raise ``ValueError`` when the images are not the size the model takes."""
    expected = tuple(getattr(model, "input_shape", ()))[-2:]
    got = tuple(ds.x_test.shape[1:])
    if expected and got != expected:
        raise ValueError(
            f"dataset {ds.name!r} has images of shape {got} but model {model_name!r} expects "
            f"{expected}; use a dataset of {expected[0]}x{expected[1]} images"
        )
