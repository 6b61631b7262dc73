"""Arguments shared by several commands."""

from __future__ import annotations

import argparse

from netsqueeze.nn.train import LOSSES, OPTIMIZERS, SCHEDULES, TrainConfig


def add_data_args(p: argparse.ArgumentParser, default: str | None = "default",
                  default_help: str = "%(default)s") -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--dataset", default=default,
        help="mnist, fashion-mnist, mnist-sample (5,000 images, offline), idx:PATH, npz:PATH "
        "(your arrays: x_train, y_train, x_test, y_test), folder:PATH (train/ and test/ trees "
        "of class folders of images), or default "
        f"(full MNIST when found or downloadable, else the sample) [{default_help}]",
    )
    g.add_argument("--data-dir", default=None,
                   help="folder holding the dataset's IDX files (else $NETSQUEEZE_DATA, the cache)")
    g.add_argument("--no-download", dest="download", action="store_false",
                   help="never download; fail (or fall back to the sample) when not found")


def add_train_args(p: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    d = defaults or TrainConfig()
    g = p.add_argument_group("training")
    g.add_argument("--iterations", type=int, default=d.iterations,
                   help="optimizer steps (600 = the notebook's budget) [%(default)s]")
    g.add_argument("--lr", type=float, default=d.lr, help="peak learning rate [%(default)s]")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="[%(default)s]")
    g.add_argument("--seed", type=int, default=d.seed,
                   help="seeds the initial weights and the batch order [%(default)s]")
    g.add_argument("--loss", choices=LOSSES, default=d.loss,
                   help="mse = squared error on one-hot labels (the notebook's option) "
                   "[%(default)s]")
    g.add_argument("--schedule", choices=SCHEDULES, default=d.schedule,
                   help="learning-rate schedule (constant = the notebook's plain Adam) "
                   "[%(default)s]")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="[%(default)s]")
    g.add_argument("--weight-decay", type=float, default=d.weight_decay, help="[%(default)s]")
    g.add_argument("--shift", type=int, default=d.shift,
                   help="augment: move training images by up to this many pixels [%(default)s]")


def train_config(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        iterations=args.iterations, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
        loss=args.loss, schedule=args.schedule, optimizer=args.optimizer,
        weight_decay=args.weight_decay, shift=args.shift,
    ).validate()


def add_run_args(p: argparse.ArgumentParser, out_default: str) -> None:
    g = p.add_argument_group("run")
    g.add_argument("-o", "--out", default=out_default, help="output folder [%(default)s]")
    g.add_argument("--resume", action="store_true",
                   help="continue an interrupted run in the same output folder (without it, "
                   "a run there starts over and removes the earlier run's outputs)")
    add_device_arg(g)
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_device_arg(g) -> None:
    g.add_argument("--device", default="auto",
                   help="auto (CUDA when available, else the CPU), cpu, cuda or cuda:N "
                   "[%(default)s]")


def add_executor_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where the independent points run")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="evaluate the points on N local worker processes (the same results as "
                   "in this process) [in this process]")
    g.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                   help="evaluate the points on Ray: auto (the cluster `ray start` runs on this "
                   "machine), local (a Ray started for this run, --workers CPUs) or host:port "
                   "(pip install 'netsqueeze[ray]')")


def make_executor(args: argparse.Namespace):
    """The executor ``--workers`` / ``--ray`` ask for (close it when done)."""
    from netsqueeze.run import make_executor as make

    return make(workers=getattr(args, "workers", None), ray=getattr(args, "ray", None))


def int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}")
    if not vals:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return vals


def check_out_dir(path, flag: str = "-o") -> None:
    """Refuse an output folder that is an existing file (before any work is done)."""
    from pathlib import Path

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{flag} {p}: a file of that name exists; give a folder for the "
                         "run's outputs")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {p}: {parent} is a file, not a folder")
            break


def check_out_file(path, flag: str = "-o") -> None:
    """Refuse an output file name that is an existing folder, or below a file (missing folders
    are created by the write)."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{flag} {p}: that is a folder; give a file name (e.g. "
                         f"{p / 'model'}{p.suffix or '.pt'})")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{flag} {p}: {parent} is a file, not a folder")
            break


def os_error_line(exc: OSError) -> str:
    """One line for an OS error, naming the file the user gave (never a temporary name)."""
    name = getattr(exc, "filename2", None) or getattr(exc, "filename", None)
    reason = exc.strerror or type(exc).__name__
    if name is None:
        return f"{reason}: {exc}" if str(exc) and exc.strerror is None else reason
    name = str(name)
    if ".tmp" in name and getattr(exc, "filename2", None) is None:
        from pathlib import Path

        name = str(Path(name).parent)  # a temporary file of an atomic write: name its folder
    return f"{name}: {reason}"
