"""Choosing for the user: a validation split, per-layer sensitivity, and an allocation of
per-layer sparsity and bits under an accuracy budget, priced by the real coder.

>>> from netsqueeze.auto import compress, sensitivity, validation_split  # doctest: +SKIP

Above :mod:`netsqueeze.nn`, :mod:`netsqueeze.models` and :mod:`netsqueeze.data`; below
:mod:`netsqueeze.experiments` and :mod:`netsqueeze.cli`, which it never imports.
"""

from netsqueeze.auto.allocate import Allocation, allocate
from netsqueeze.auto.cost import CostModel, cost_model, layer_bytes
from netsqueeze.auto.journal import Journal
from netsqueeze.auto.search import AutoReport, Round, compress, file_bytes
from netsqueeze.auto.sensitivity import (
    DEFAULT_BITS,
    DEFAULT_SPARSITIES,
    LayerSensitivity,
    SensitivityResult,
    sensitivity,
)
from netsqueeze.auto.split import validation_split

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_SPARSITIES",
    "Allocation",
    "AutoReport",
    "CostModel",
    "Journal",
    "LayerSensitivity",
    "Round",
    "SensitivityResult",
    "allocate",
    "compress",
    "cost_model",
    "file_bytes",
    "layer_bytes",
    "sensitivity",
    "validation_split",
]
