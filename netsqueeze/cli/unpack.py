"""``netsqueeze unpack``: decode a .nsq file into a PyTorch checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from netsqueeze.cli import modelspec, nsqfile

NAME = "unpack"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="decode a .nsq file into a PyTorch checkpoint (state_dict + architecture)",
        description="Decode every tensor of a .nsq file, bit for bit, and write a netsqueeze "
        "checkpoint: torch.save({'format', 'arch', 'state_dict', 'meta'}). Load it with "
        "netsqueeze.models.checkpoint.load_checkpoint, or with "
        "model.load_state_dict(torch.load(path)['state_dict']).",
    )
    p.add_argument("file", metavar="FILE.nsq", help="compressed model")
    p.add_argument("-o", "--out", default=None, metavar="MODEL.pt",
                   help="checkpoint to write (default: FILE with the suffix .pt)")
    modelspec.add_model_args(p, help_extra="; checks the file against it (custom models)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from netsqueeze.core.container import read_nsq
    from netsqueeze.models import MODELS
    from netsqueeze.models.checkpoint import FORMAT, save_checkpoint
    from netsqueeze.nn.export import decoded_state, load_compressed
    from netsqueeze.nn.train import save_state

    src = Path(args.file)
    out = Path(args.out) if args.out else src.with_suffix(".pt")
    if out.resolve() == src.resolve():
        raise ValueError(f"-o {out} would overwrite the .nsq file; give another name")
    nsq = read_nsq(src)
    arch = nsq.header.get("arch")
    meta = {"source": src.name}
    if isinstance(nsq.header.get("meta"), dict):
        meta["nsq_meta"] = nsq.header["meta"]
    if args.model:
        model = load_compressed(args.file, factory=args.model,
                                factory_args=modelspec.model_args(args))
        meta["factory"] = args.model
        if modelspec.model_args(args):
            meta["factory_args"] = modelspec.model_args(args)
        save_checkpoint(model, out, arch=args.model if args.model in MODELS else None,
                        meta=meta)
        note = f"{args.model}, {len(model.state_dict())} tensors"
    elif isinstance(arch, str) and arch in MODELS:
        model = load_compressed(src)  # checks every name and shape against the architecture
        save_checkpoint(model, out, arch=arch, meta=meta)
        note = f"{arch}, {len(nsq)} tensors"
    else:
        state = dict(decoded_state(nsq))
        save_state({"format": FORMAT, "arch": arch if isinstance(arch, str) else None,
                    "state_dict": state, "meta": meta}, out)
        note = (f"{len(nsq)} tensors of architecture {arch!r}, which netsqueeze cannot build: "
                "load it with load_checkpoint(path, model=an_instance), or unpack with --model")
    print(f"wrote {out} ({nsqfile.human_bytes(out.stat().st_size)}) from {src} "
          f"({nsqfile.human_bytes(nsq.nbytes)}): {note}")
    return 0
