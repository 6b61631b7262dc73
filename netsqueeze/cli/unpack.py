"""``netsqueeze unpack``: decode a .nsq file into a PyTorch checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from netsqueeze.cli import common, nsqfile

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
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from netsqueeze.core.container import read_nsq
    from netsqueeze.models import MODELS
    from netsqueeze.models.checkpoint import FORMAT, save_checkpoint
    from netsqueeze.nn.export import load_compressed
    from netsqueeze.nn.train import save_state

    src = Path(args.file)
    out = Path(args.out) if args.out else src.with_suffix(".pt")
    if out.resolve() == src.resolve():
        raise ValueError(f"-o {out} would overwrite the .nsq file; give another name")
    common.check_out_file(out)
    nsq = read_nsq(src)
    arch = nsq.header.get("arch")
    meta = {"source": src.name}
    if isinstance(nsq.header.get("meta"), dict):
        meta["nsq_meta"] = nsq.header["meta"]
    if isinstance(arch, str) and arch in MODELS:
        model = load_compressed(src)  # checks every name and shape against the architecture
        save_checkpoint(model, out, arch=arch, meta=meta)
        note = f"{arch}, {len(nsq)} tensors"
    else:
        import torch

        state = {name: torch.from_numpy(a.copy()) for name, a in nsq.arrays().items()}
        save_state({"format": FORMAT, "arch": arch if isinstance(arch, str) else None,
                    "state_dict": state, "meta": meta}, out)
        note = (f"{len(nsq)} tensors of architecture {arch!r}, which netsqueeze cannot build: "
                "load it with load_checkpoint(path, model=an_instance)")
    print(f"wrote {out} ({nsqfile.human_bytes(out.stat().st_size)}) from {src} "
          f"({nsqfile.human_bytes(nsq.nbytes)}): {note}")
    return 0
