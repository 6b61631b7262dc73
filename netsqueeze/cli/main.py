"""Entry point of the ``netsqueeze`` command: one module per sub-command.

Each command module has ``add_parser(subparsers)`` and ``run(args) -> int``, so parsing can be
tested without running anything.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from netsqueeze import __version__
from netsqueeze.cli import (
    compress,
    evaluate,
    inspect,
    pack,
    plot,
    report,
    sensitivity,
    unpack,
    zero_weights,
)
from netsqueeze.cli import recipe as recipe_cmd
from netsqueeze.errors import FormatError

COMMANDS = (zero_weights, compress, pack, unpack, inspect, evaluate, plot, report, recipe_cmd,
            sensitivity)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netsqueeze",
        description="How many weights of a network can be zeroed, and how few distinct values "
        "does it need? Pruning, k-means weight sharing and Huffman coding, with the evidence.",
    )
    parser.add_argument("--version", action="version", version=f"netsqueeze {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for mod in COMMANDS:
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:
        # the reader of our output went away (``netsqueeze inspect f.nsq | head``): not an error
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        hint = getattr(args, "resume_hint", None)
        print(f"\nnetsqueeze: interrupted{'; ' + hint if hint else ''}", file=sys.stderr)
        return 130
    except (ValueError, FormatError) as exc:
        print(f"netsqueeze {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        from netsqueeze.cli.common import os_error_line

        # our own FileNotFoundErrors carry a full sentence; the OS's carry errno and names
        text = str(exc) if exc.errno is None else os_error_line(exc)
        print(f"netsqueeze {args.command}: error: {text}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
