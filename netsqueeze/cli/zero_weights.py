"""``netsqueeze zero-weights``: the notebook experiment (train, threshold sweep, cluster sweep)."""

from __future__ import annotations

import argparse

from netsqueeze.cli import common

NAME = "zero-weights"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="train the notebook CNN, sweep thresholds and cluster counts, answer how many "
        "weights can be zeroed and how few distinct values they need",
        description="Train a network, zero weights below 50 thresholds, replace weights by "
        "k-means centres over a 15-step schedule, and write results.json, three figures, "
        "summary.md and report.html (one self-contained page). Accuracy is measured on the "
        "whole test set.",
    )
    common.add_data_args(p)
    p.add_argument("--model", default="notebook-cnn",
                   help="notebook-cnn, lenet-300-100 or lenet5 [%(default)s]")
    common.add_train_args(p)
    g = p.add_argument_group("sweeps")
    g.add_argument("--thresholds", type=float, nargs=3, metavar=("START", "STOP", "NUM"),
                   default=(0.01, 0.09, 50), help="threshold sweep [0.01 0.09 50]")
    g.add_argument("--keep-biases", dest="include_bias", action="store_false",
                   help="do not zero small biases (the notebook zeroes them)")
    g.add_argument("--cluster-starts", type=common.int_list, default=(30, 100, 500, 50),
                   help="first cluster count per layer [30,100,500,50]")
    g.add_argument("--cluster-end", type=int, default=4, help="last cluster count [%(default)s]")
    g.add_argument("--cluster-steps", type=int, default=15, help="[%(default)s]")
    g.add_argument("--bias-clusters", type=int, default=2,
                   help="clusters for each layer's biases; 0 leaves biases alone [%(default)s]")
    g.add_argument("--kmeans-init", default="linear",
                   help="linear, density, random or k-means++ [%(default)s]")
    g.add_argument("--kmeans-method", default="lloyd", help="lloyd or exact [%(default)s]")
    g.add_argument("--tolerance", type=float, default=0.5,
                   help="accuracy loss allowed when choosing, in percentage points "
                   "[%(default)s]")
    g.add_argument("--notebook-drop", type=float, default=0.05,
                   help="the notebook's rule: stop before a step-to-step drop larger than this "
                   "[%(default)s]")
    p.add_argument("--save-chosen", action="store_true",
                   help="also write threshold.nsq and clusters.nsq: the model at the chosen "
                   "threshold and at the chosen cluster step, with their measured sizes and "
                   "accuracies in summary.md")
    common.add_executor_args(p)
    common.add_run_args(p, out_default="runs/zero-weights")
    p.set_defaults(run=run, resume_hint="run the same command with --resume to continue")
    return p


def spec_from_args(args: argparse.Namespace):
    from netsqueeze.experiments.zero_weights import ZeroWeightsSpec

    start, stop, num = args.thresholds
    if num != int(num) or num < 1:
        raise ValueError(f"--thresholds NUM must be a positive integer, got {num}")
    return ZeroWeightsSpec(
        dataset=args.dataset, data_dir=args.data_dir, download=args.download, model=args.model,
        train=common.train_config(args), threshold_start=start, threshold_stop=stop,
        threshold_num=int(num), include_bias=args.include_bias,
        cluster_starts=tuple(args.cluster_starts), cluster_end=args.cluster_end,
        cluster_steps=args.cluster_steps,
        bias_clusters=args.bias_clusters if args.bias_clusters > 0 else None,
        kmeans_init=args.kmeans_init, kmeans_method=args.kmeans_method,
        tolerance_pp=args.tolerance, notebook_max_drop=args.notebook_drop, device=args.device,
        save_chosen=args.save_chosen,
    ).validate()


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from netsqueeze.experiments.report import one_line_summary
    from netsqueeze.experiments.zero_weights import run_zero_weights

    spec = spec_from_args(args)  # checks the model, cluster counts and device before any work
    common.check_out_dir(args.out)
    with common.make_executor(args) as executor:
        results = run_zero_weights(spec, args.out, progress=not args.quiet, resume=args.resume,
                                   executor=executor)
    out = Path(args.out)
    from netsqueeze.experiments.html_report import write_report

    report = write_report(out)
    print(f"wrote {out / 'results.json'}, {out / 'summary.md'}, {report.name} and 3 figures in "
          f"{results['wall_times']['total']:.0f} s")
    print(one_line_summary(results))
    for w in results.get("warnings") or []:
        print(f"warning: {w}")
    return 0
