"""``--model`` / ``--model-args`` / ``--checkpoint`` / ``--trust-checkpoint``, shared by the
commands that build a network (see :mod:`netsqueeze.models.factory`)."""

from __future__ import annotations

import argparse

MODEL_HELP = (
    "the network: a built-in name (lenet5, lenet-300-100, notebook-cnn), pkg.module:callable "
    "or path/to/file.py:callable (a class or function returning an nn.Module)"
)


def add_model_args(p: argparse.ArgumentParser, *, default: str | None = None,
                   checkpoint: bool = False, help_extra: str = "") -> None:
    """Add ``--model`` and ``--model-args`` (and ``--checkpoint``, ``--trust-checkpoint``)."""
    g = p.add_argument_group("model")
    suffix = f" [{default}]" if default else ""
    g.add_argument("--model", default=default, help=MODEL_HELP + help_extra + suffix)
    g.add_argument("--model-args", default=None, metavar="JSON",
                   help="keyword arguments of the --model callable, as a JSON object")
    if checkpoint:
        g.add_argument("--checkpoint", default=None,
                       help="trained weights: a state_dict, a netsqueeze checkpoint, or (with "
                       "--trust-checkpoint) a whole pickled model")
        add_trust_arg(g)


def add_trust_arg(g) -> None:
    g.add_argument("--trust-checkpoint", action="store_true",
                   help="allow a checkpoint that is a whole pickled model (runs code from the "
                   "file: only for files you trust)")


def model_args(args: argparse.Namespace) -> dict:
    from netsqueeze.models.factory import parse_model_args

    return parse_model_args(getattr(args, "model_args", None))


def build(args: argparse.Namespace):
    """The network ``--model`` / ``--model-args`` name (ValueError in one line otherwise)."""
    from netsqueeze.models.factory import build_model

    return build_model(args.model, model_args(args))


def is_builtin(spec: str | None) -> bool:
    from netsqueeze.models import MODELS

    return spec in MODELS
