"""``netsqueeze unpack``: decode a .nsq file into a PyTorch checkpoint, safetensors or ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from netsqueeze.cli import common, modelspec, nsqfile

NAME = "unpack"

SUFFIXES = {"pt": ".pt", "safetensors": ".safetensors", "onnx": ".onnx"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="decode a .nsq file into a PyTorch checkpoint, a safetensors file or an ONNX model",
        description="Decode every tensor of a .nsq file, bit for bit, and write it as: pt, a "
        "netsqueeze checkpoint (torch.save({'format', 'arch', 'state_dict', 'meta'}); load it "
        "with netsqueeze.models.checkpoint.load_checkpoint, or with "
        "model.load_state_dict(torch.load(path)['state_dict'])); safetensors, the state_dict "
        "with the architecture in the metadata; onnx, the network itself (built-in "
        "architectures only), runnable with onnxruntime. safetensors and onnx need "
        "pip install 'netsqueeze[export]'.",
    )
    p.add_argument("file", metavar="FILE.nsq", help="compressed model")
    p.add_argument("-o", "--out", default=None, metavar="OUT",
                   help="file to write (default: FILE with the format's suffix)")
    p.add_argument("--format", choices=tuple(SUFFIXES), default="pt",
                   help="pt, safetensors or onnx [%(default)s]")
    p.add_argument("--check", action="store_true",
                   help="read the written file back and compare with the decoded model: "
                   "safetensors tensor by tensor; onnx with onnxruntime on every test image "
                   "(top-1 agreement, largest logit difference)")
    common.add_data_args(p, default="mnist")
    modelspec.add_model_args(p, help_extra="; checks the file against it (custom models)")
    p.set_defaults(run=run)
    return p


def _write_pt(nsq, src: Path, out: Path, meta: dict, args) -> str:
    from netsqueeze.models import MODELS
    from netsqueeze.models.checkpoint import FORMAT, save_checkpoint
    from netsqueeze.nn.export import decoded_state, load_compressed
    from netsqueeze.nn.train import save_state

    arch = nsq.header.get("arch")
    if args.model:
        fargs = modelspec.model_args(args)
        model = load_compressed(src, factory=args.model, factory_args=fargs)
        meta["factory"] = args.model
        if fargs:
            meta["factory_args"] = fargs
        save_checkpoint(model, out, arch=args.model if args.model in MODELS else None, meta=meta)
        return f"{args.model}, {len(model.state_dict())} tensors"
    if isinstance(arch, str) and arch in MODELS:
        model = load_compressed(src)  # checks every name and shape against the architecture
        save_checkpoint(model, out, arch=arch, meta=meta)
        return f"{arch}, {len(nsq)} tensors"
    state = dict(decoded_state(nsq))
    save_state({"format": FORMAT, "arch": arch if isinstance(arch, str) else None,
                "state_dict": state, "meta": meta}, out)
    return (f"{len(nsq)} tensors of architecture {arch!r}, which netsqueeze cannot build: "
            "load it with load_checkpoint(path, model=an_instance), or unpack with --model")


def _write_safetensors(nsq, src: Path, out: Path, check: bool) -> str:
    import json

    import torch

    from netsqueeze.nn.formats import load_safetensors, save_safetensors

    arch = nsq.header.get("arch")
    from netsqueeze.nn.export import decoded_state

    state = dict(decoded_state(nsq))
    meta = {"format": "netsqueeze-state-dict", "arch": arch if isinstance(arch, str) else "",
            "source": src.name}
    if isinstance(nsq.header.get("meta"), dict):
        meta["nsq_meta"] = json.dumps(nsq.header["meta"], sort_keys=True)
    save_safetensors(state, out, meta)
    note = f"{len(state)} tensors of architecture {arch!r}"
    if check:
        back, _ = load_safetensors(out)
        same = back.keys() == state.keys() and all(
            back[k].dtype == v.dtype and torch.equal(back[k], v) for k, v in state.items())
        if not same:
            raise ValueError(f"{out}: the tensors read back differ from {src}")
        note += "; read back: every tensor equal"
    return note


def _write_onnx(nsq, src: Path, out: Path, args) -> tuple[str, list[str]]:
    from netsqueeze.nn.export import load_compressed
    from netsqueeze.nn.formats import compare_onnx, export_onnx

    if args.model:
        arch = args.model
        model = load_compressed(src, factory=args.model, factory_args=modelspec.model_args(args))
    else:
        arch = nsqfile.buildable_arch(nsq.header, src, f"{NAME} --format onnx")
        model = load_compressed(src)
    info = export_onnx(model, out)
    lines = []
    if args.check:
        from netsqueeze.data import load

        ds = load(args.dataset, data_dir=args.data_dir, download=args.download, progress=True)
        c = compare_onnx(model, out, ds.x_test)
        lines.append(
            f"onnxruntime vs PyTorch on {c['n']:,} test images of {ds.name}: top-1 identical on "
            f"{c['top1_agree']:,} of {c['n']:,}; max abs logit difference "
            f"{c['max_abs_diff']:.3g}")
        if c["top1_agree"] != c["n"]:
            raise ValueError(f"{out}: onnxruntime's top-1 differs from PyTorch's on "
                             f"{c['n'] - c['top1_agree']} of {c['n']} test images")
    return (f"{arch}, ONNX opset {info['opset']} by {info['exporter']}, input "
            f"[batch, {', '.join(map(str, info['input_shape']))}]"), lines


def run(args: argparse.Namespace) -> int:
    from netsqueeze.core.container import read_nsq

    src = Path(args.file)
    out = Path(args.out) if args.out else src.with_suffix(SUFFIXES[args.format])
    if out.resolve() == src.resolve():
        raise ValueError(f"-o {out} would overwrite the .nsq file; give another name")
    common.check_out_file(out)
    nsq = read_nsq(src)
    extra: list[str] = []
    if args.format == "pt":
        meta = {"source": src.name}
        if isinstance(nsq.header.get("meta"), dict):
            meta["nsq_meta"] = nsq.header["meta"]
        note = _write_pt(nsq, src, out, meta, args)
    elif args.format == "safetensors":
        note = _write_safetensors(nsq, src, out, args.check)
    else:
        note, extra = _write_onnx(nsq, src, out, args)
    print(f"wrote {out} ({nsqfile.human_bytes(out.stat().st_size)}) from {src} "
          f"({nsqfile.human_bytes(nsq.nbytes)}): {note}")
    for line in extra:
        print(line)
    return 0
