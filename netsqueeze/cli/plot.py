"""``netsqueeze plot results.json``: redraw a run's figures from its JSON, without re-running."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from netsqueeze.errors import FormatError

NAME = "plot"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(NAME, help="redraw the figures of a run from its results.json",
                       description="Redraw the figures of a run from its results.json.")
    p.add_argument("results", help="a results.json written by netsqueeze")
    p.add_argument("-o", "--out", default=None,
                   help="folder for the PNG files [the folder of results.json]")
    p.set_defaults(run=run)
    return p


def load_results(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: no such file; give the results.json of a netsqueeze run")
    try:
        results = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FormatError(f"{p}: not valid JSON ({exc}); was the run interrupted?") from None
    if not isinstance(results, dict) or "kind" not in results:
        raise FormatError(f"{p}: not a netsqueeze results file (no 'kind' field)")
    return results


def run(args: argparse.Namespace) -> int:
    results = load_results(args.results)
    out = Path(args.out) if args.out else Path(args.results).parent
    kind = results["kind"]
    from netsqueeze.experiments import plots

    drawers = {"zero-weights": plots.plot_zero_weights, "compress": plots.plot_compress}
    if kind in drawers:
        try:
            paths = drawers[kind](results, out)
        except (KeyError, TypeError, IndexError) as exc:
            raise FormatError(
                f"{args.results}: results of kind {kind!r} lack a field the figures need "
                f"({exc!r}); re-run the experiment with this version"
            ) from None
    else:
        raise FormatError(f"{args.results}: no figures for results of kind {kind!r}")
    for path in paths:
        print(path)
    return 0
