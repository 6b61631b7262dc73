"""``netsqueeze evaluate``: top-1 accuracy of the model decoded from a .nsq file."""

from __future__ import annotations

import argparse

from netsqueeze.cli import common, modelspec, nsqfile

NAME = "evaluate"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="decode a .nsq file into its model and measure top-1 accuracy on the whole test set",
        description="Decode the model stored in a .nsq file (bit for bit) and measure its top-1 "
        "accuracy on every image of the test set.",
    )
    p.add_argument("file", metavar="FILE.nsq", help="compressed model")
    common.add_data_args(p, default="mnist")
    modelspec.add_model_args(p, help_extra="; needed for a file of a custom model")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from netsqueeze.core.container import read_nsq
    from netsqueeze.data import load
    from netsqueeze.nn.export import load_compressed
    from netsqueeze.nn.train import evaluate

    nsq = read_nsq(args.file)
    if args.model:
        model = load_compressed(args.file, factory=args.model,
                                factory_args=modelspec.model_args(args))
        arch = args.model
    else:
        arch = nsqfile.buildable_arch(nsq.header, args.file, NAME)
        model = load_compressed(nsq)
    ds = load(args.dataset, data_dir=args.data_dir, download=args.download, progress=True)
    n = int(ds.y_test.shape[0])
    try:
        acc = evaluate(model, ds.x_test, ds.y_test)
    except RuntimeError as exc:
        raise ValueError(
            f"the test data of {ds.name} (samples of shape {tuple(ds.x_test.shape[1:])}) does not "
            f"fit the model: {str(exc).splitlines()[0][:200]}"
        ) from None
    correct = round(acc * n)
    print(f"{arch} from {args.file} ({nsqfile.human_bytes(nsq.nbytes)}): top-1 accuracy "
          f"{100 * acc:.2f} % ({correct:,} of {n:,} test images of {ds.name})")
    if ds.note:
        print(ds.note)
    return 0
