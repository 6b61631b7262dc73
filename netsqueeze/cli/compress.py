"""``netsqueeze compress``: the Deep Compression pipeline on a reference network."""

from __future__ import annotations

import argparse

from netsqueeze.cli import common, modelspec

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
    modelspec.add_model_args(p, default="lenet5", checkpoint=True)
    p.add_argument("--recipe", default=None,
                   help="TOML recipe file, or a built-in name (default, lenet5, lenet-300-100, "
                   "notebook-cnn) [the model's built-in recipe; 'default' for other models]")
    common.add_data_args(p)
    common.add_run_args(p, out_default="runs/compress")
    p.set_defaults(run=run, resume_hint="run the same command with --resume to continue")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netsqueeze.experiments.pipeline import CompressSpec, run_compress
    from netsqueeze.experiments.recipe import load_recipe
    from netsqueeze.models.factory import resolve_factory

    resolve_factory(args.model)  # a wrong spec fails here, before anything is written
    recipe = load_recipe(args.recipe or (args.model if modelspec.is_builtin(args.model)
                                         else "default"))
    spec = CompressSpec(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                        download=args.download, checkpoint=args.checkpoint, device=args.device,
                        model_args=modelspec.model_args(args) or None,
                        trust_checkpoint=args.trust_checkpoint)
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
