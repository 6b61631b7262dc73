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
    common.add_data_args(p, default=None,
                         default_help="the dataset recorded in the file, else default")
    common.add_device_arg(p)
    modelspec.add_model_args(p, help_extra="; needed for a file of a custom model")
    p.set_defaults(run=run)
    return p


def dataset_for(header: dict, asked: str | None) -> tuple[str, str | None]:
    """The dataset to measure on: the one asked for, else the one the file records, else
    ``"default"``; and a note saying which when it was not asked for."""
    if asked is not None:
        return asked, None
    meta = header.get("meta") if isinstance(header.get("meta"), dict) else {}
    recorded = meta.get("dataset")
    if isinstance(recorded, str) and recorded.strip():
        return recorded, None
    return "default", ("note: the file records no dataset; measuring on the default (full "
                       "MNIST when found, else the sample): give --dataset to choose")


def run(args: argparse.Namespace) -> int:
    from netsqueeze.core.container import read_nsq
    from netsqueeze.data import load
    from netsqueeze.nn.export import load_compressed
    from netsqueeze.nn.train import evaluate, resolve_device, to_tensor

    nsq = read_nsq(args.file)
    device = resolve_device(args.device)
    if args.model:
        model = load_compressed(args.file, factory=args.model,
                                factory_args=modelspec.model_args(args))
        arch = args.model
    else:
        arch = nsqfile.buildable_arch(nsq.header, args.file, NAME)
        model = load_compressed(nsq)
    model = model.to(device)
    name, note = dataset_for(nsq.header, args.dataset)
    if note:
        print(note)
    ds = load(name, data_dir=args.data_dir, download=args.download, progress=True)
    n = int(ds.y_test.shape[0])
    try:
        acc = evaluate(model, to_tensor(ds.x_test, device), ds.y_test)
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
