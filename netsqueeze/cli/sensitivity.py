"""``netsqueeze sensitivity``: how much each layer, alone, can be pruned or shared."""

from __future__ import annotations

import argparse

from netsqueeze.cli import common, modelspec

NAME = "sensitivity"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="per layer: validation accuracy when only that layer is pruned (0 to 99.5 %%) or "
        "weight-shared (1 to 8 bits)",
        description="Train (or load --checkpoint) on the training part of a stratified split, "
        "then measure, for each layer alone, validation accuracy and loss at a grid of "
        "sparsities and bit widths. Writes sensitivity.json, sensitivity.md (the table) and "
        "sensitivity.png. The test set is not used.",
    )
    modelspec.add_model_args(p, default="lenet5", checkpoint=True,
                             help_extra=" (trained here unless --checkpoint is given)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for validation [%(default)s]")
    p.add_argument("--seed", type=int, default=0, help="seed of the split [%(default)s]")
    p.add_argument("--retrain-iterations", type=int, default=0,
                   help="retrain this many iterations before measuring each point (slow) "
                   "[%(default)s]")
    common.add_data_args(p)
    common.add_executor_args(p)
    g = p.add_argument_group("run")
    g.add_argument("-o", "--out", default="runs/sensitivity", help="output folder [%(default)s]")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in the same output folder (without it, "
                   "a run there starts over and removes the earlier run's outputs)")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda [%(default)s]")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(run=run, resume_hint="run the same command with --resume to continue")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netsqueeze.experiments.auto_compress import AutoSpec, run_sensitivity
    from netsqueeze.models.factory import resolve_factory

    resolve_factory(args.model)  # a wrong spec fails here, before any data is loaded
    if args.retrain_iterations < 0:
        raise ValueError(f"--retrain-iterations must be >= 0, got {args.retrain_iterations}")
    if args.retrain_iterations and ((args.workers or 1) > 1 or args.ray):
        raise ValueError("--retrain-iterations runs in this process only; drop --workers/--ray")
    spec = AutoSpec(model=args.model, dataset=args.dataset, data_dir=args.data_dir,
                    download=args.download, checkpoint=args.checkpoint, device=args.device,
                    val_fraction=args.val_fraction, seed=args.seed,
                    model_args=modelspec.model_args(args) or None,
                    trust_checkpoint=args.trust_checkpoint)
    if not 0 < spec.val_fraction < 1:
        raise ValueError(f"--val-fraction must be in (0, 1), got {spec.val_fraction}")
    with common.make_executor(args) as executor:
        run_sensitivity(spec, args.out, retrain_iterations=args.retrain_iterations,
                        progress=not args.quiet, log=print if not args.quiet else (lambda s: None),
                        executor=executor, resume=args.resume)
    out = Path(args.out)
    print(f"wrote {out / 'sensitivity.json'}, {out / 'sensitivity.md'} and "
          f"{out / 'sensitivity.png'}")
    return 0
