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
        "test set after every stage. Writes into the output folder model.nsq (the compressed "
        "file: sparse indices and Huffman codes; see netsqueeze inspect / evaluate), "
        "results.json, table.md, accuracy_stages.png, weight_distribution.png, trained.pt and "
        "compressed.pt (the compressed network as a plain checkpoint, for netsqueeze pack).",
    )
    p.add_argument("--model", default="lenet5",
                   help="lenet5, lenet-300-100 or notebook-cnn [%(default)s]")
    p.add_argument("--recipe", default=None,
                   help="TOML recipe file, or a built-in name (lenet5, lenet-300-100, "
                   "notebook-cnn) [the model's built-in recipe]")
    p.add_argument("--checkpoint", default=None,
                   help="start from this trained checkpoint instead of training")
    common.add_data_args(p)
    common.add_run_args(p, out_default="runs/compress")
    p.set_defaults(run=run, resume_hint="run the same command with --resume to continue")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netsqueeze.experiments.pipeline import CompressSpec, run_compress
    from netsqueeze.experiments.report import ratio_words

    recipe = check_before_work(args)
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
          f"bytes, {ratio_words(f['ratio_to_dense'])} than dense float32")
    from netsqueeze.experiments.zero_weights import near_chance

    n_classes = int(results["dataset"].get("n_classes") or 0)
    near = near_chance(s["trained_accuracy"], n_classes)
    if near:
        print(f"warning: {near.replace('(--iterations)', '(the recipe train.iterations)')}")
    return 0


def check_before_work(args: argparse.Namespace):
    """Everything checkable before loading data or training: the model name, the recipe and
    its layer patterns against the network, the checkpoint, the device, the output folder.
    Returns the recipe."""
    from netsqueeze.experiments.recipe import load_recipe
    from netsqueeze.models import MODELS, build
    from netsqueeze.nn.train import resolve_device

    if args.model not in MODELS:
        raise ValueError(f"unknown model {args.model!r}; choose one of: {', '.join(MODELS)}")
    common.check_out_dir(args.out)
    resolve_device(args.device)
    recipe = load_recipe(args.recipe or args.model)
    if args.checkpoint:
        from netsqueeze.models.checkpoint import load_checkpoint

        model, _ = load_checkpoint(args.checkpoint, arch=args.model)
    else:
        model = build(args.model)
    from torch import nn

    recipe.validate([n for n, m in model.named_modules()
                     if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)])
    return recipe
