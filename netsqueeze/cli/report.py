"""``netsqueeze report RUN_DIR``: one self-contained report.html from a run's results.json."""

from __future__ import annotations

import argparse

NAME = "report"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="write one self-contained report.html (answers, tables, figures, settings) from "
        "a run's results.json",
        description="Render the results.json of a zero-weights or compress run as one HTML page "
        "that needs no network: the answers in words, every table, every figure (inline SVG; "
        "hover a point for its values, click a column head to sort), the per-layer file "
        "breakdown, the settings, the data fingerprint and the versions. Nothing is re-run.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR",
                   help="output folder of a zero-weights or compress run (or its results.json)")
    p.add_argument("-o", "--out", default=None, metavar="FILE.html",
                   help="page to write [RUN_DIR/report.html]")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from netsqueeze.experiments.html_report import write_report

    path = write_report(args.run_dir, args.out)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    return 0
