"""``netsqueeze compress``: the Deep Compression pipeline on a reference network."""

from __future__ import annotations

import argparse

from netsqueeze.cli import common

NAME = "compress"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="prune with retraining, share weights with k-means, fine-tune the centroids; "
        "evaluate every stage",
        description="Train (or load --checkpoint), prune and retrain step by step, share "
        "weights with k-means and fine-tune the centroids, measuring accuracy on the whole "
        "test set after every stage. Writes results.json, table.md, figures and "
        "compressed.pt (for netsqueeze pack).",
    )
    p.add_argument("--model", default="lenet5",
                   help="lenet5, lenet-300-100 or notebook-cnn [%(default)s]")
    p.add_argument("--recipe", default=None,
                   help="TOML recipe file, or a built-in name (lenet5, lenet-300-100, "
                   "notebook-cnn) [the model's built-in recipe]")
    p.add_argument("--checkpoint", default=None,
                   help="start from this trained checkpoint instead of training")
    g = p.add_argument_group("automatic (no recipe): per-layer sparsity and bits under a budget")
    g.add_argument("--max-drop", type=float, default=None, metavar="PP",
                   help="largest validation-accuracy drop from the trained model, in "
                   "percentage points")
    g.add_argument("--max-error", type=float, default=None, metavar="PCT",
                   help="largest validation top-1 error, in percent")
    g.add_argument("--time-budget", type=float, default=None, metavar="SECONDS",
                   help="stop starting search rounds after this long; keep the best so far")
    g.add_argument("--max-rounds", type=int, default=24,
                   help="most prune + retrain rounds of the search [%(default)s]")
    g.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for validation [%(default)s]")
    common.add_data_args(p)
    common.add_run_args(p, out_default="runs/compress")
    p.set_defaults(run=run, resume_hint="run the same command with --resume to continue")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netsqueeze.experiments.pipeline import CompressSpec, run_compress
    from netsqueeze.experiments.recipe import load_recipe
    from netsqueeze.models import MODELS

    if args.model not in MODELS:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(MODELS)}")
    if args.max_drop is not None or args.max_error is not None or args.time_budget is not None:
        from netsqueeze.experiments.auto_compress import run_auto_cli

        return run_auto_cli(args)
    recipe = load_recipe(args.recipe or args.model)
    spec = CompressSpec(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                        download=args.download, checkpoint=args.checkpoint, device=args.device)
    results = run_compress(spec, recipe, args.out, progress=not args.quiet, resume=args.resume)
    s = results["summary"]
    out = Path(args.out)
    f = results["file"]["totals"]
    print(f"wrote {out / 'results.json'}, {out / 'table.md'}, {out / 'model.nsq'} and figures "
          f"in {results['wall_times']['total']:.0f} s")
    print(f"{args.model}: top-1 error {s['trained_error_pct']:.2f} % -> {s['final_error_pct']:.2f} % "
          f"with {100 * s['kept_fraction']:.1f} % of weights kept; model.nsq {f['file_bytes']:,} "
          f"bytes, {f['ratio_to_dense']:.1f}x smaller than dense float32")
    return 0
