"""``netsqueeze pack``: write a checkpoint (or a compress run's model) as a compressed .nsq file."""

from __future__ import annotations

import argparse
import math

from netsqueeze.cli import common, nsqfile

NAME = "pack"


def _gap_bits(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..16, got {text!r}") from None
    if not 1 <= v <= 16:
        raise argparse.ArgumentTypeError(f"expected an integer in 1..16, got {v}")
    return v


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="encode a model as a compressed .nsq file (sparse positions, shared values, "
        "Huffman coding)",
        description="Encode every tensor of a model into one .nsq file: conv and linear weights "
        "with relative-index (gap) positions and codebooks with Huffman-coded indices where "
        "smaller, everything else dense. SRC is a checkpoint (a netsqueeze checkpoint, or a "
        "plain state_dict with --model) or the output folder of a compress run, whose "
        f"{nsqfile.RUN_CHECKPOINT} gives the gap bits it was compressed for.",
    )
    p.add_argument("src", metavar="SRC", help="checkpoint file or compress run folder")
    p.add_argument("-o", "--out", required=True, metavar="FILE.nsq", help="file to write")
    p.add_argument("--model", default=None,
                   help="architecture of SRC: notebook-cnn, lenet-300-100 or lenet5 (default: "
                   "the one the checkpoint names)")
    p.add_argument("--conv-gap-bits", type=_gap_bits, default=None,
                   help="bits of a relative index in convolution weights (default: the run's "
                   "storage setting, else 8)")
    p.add_argument("--fc-gap-bits", type=_gap_bits, default=None,
                   help="bits of a relative index in linear weights (default: the run's storage "
                   "setting, else 5)")
    p.add_argument("--codebook-dtype", choices=("float16", "float32"), default=None,
                   help="store the shared values of conv/linear weights in this dtype (float16 "
                   "rounds them; default: the weights' own dtype, exact)")
    p.set_defaults(run=run)
    return p


def gap_bits_from(args: argparse.Namespace, meta: dict) -> dict[str, int]:
    """Gap bits by layer kind: the flags, else the checkpoint's ``meta["storage"]``, else 8/5."""
    from netsqueeze.nn.export import DEFAULT_GAP_BITS

    storage = meta.get("storage") if isinstance(meta.get("storage"), dict) else {}
    out = {}
    for kind in ("conv", "fc"):
        flag = getattr(args, f"{kind}_gap_bits")
        stored = storage.get(f"{kind}_gap_bits")
        if flag is not None:
            out[kind] = flag
        elif stored is not None:
            if isinstance(stored, bool) or not isinstance(stored, int) or not 1 <= stored <= 16:
                raise ValueError(
                    f"the checkpoint's storage setting {kind}_gap_bits={stored!r} is not an "
                    f"integer in 1..16; give --{kind}-gap-bits"
                )
            out[kind] = stored
        else:
            out[kind] = DEFAULT_GAP_BITS[kind]
    return out


#: Entries of a checkpoint's meta carried into the file's header when they are plain values
#: (the header is part of the file size, so long logs stay out).
CARRIED_META = ("arch", "seed", "dataset", "accuracy", "test_accuracy", "n_test_images", "recipe")


def header_meta(meta: dict, source: str, gap_bits: dict[str, int]) -> dict:
    """Header metadata: the source file name, the gap bits used, and small checkpoint entries."""
    out = {}
    for key in CARRIED_META:
        v = meta.get(key)
        if isinstance(v, str | int | bool) or (isinstance(v, float) and math.isfinite(v)):
            out[key] = v
    out["source"] = source
    out["storage"] = {f"{k}_gap_bits": v for k, v in gap_bits.items()}
    return out


def run(args: argparse.Namespace) -> int:
    from netsqueeze.experiments.report import ratio_words
    from netsqueeze.nn.export import save_compressed

    common.check_out_file(args.out)
    model, arch, meta, path = nsqfile.load_source(args.src, args.model)
    gap_bits = gap_bits_from(args, meta)
    summary = save_compressed(model, args.out, arch=arch, gap_bits=gap_bits,
                              codebook_dtype=args.codebook_dtype,
                              meta=header_meta(meta, path.name, gap_bits))
    print(f"wrote {args.out}: {nsqfile.human_bytes(summary['bytes'])}, "
          f"{ratio_words(summary['ratio'])} than dense ({arch}, {summary['tensors']} tensors)")
    print(f"dense: {nsqfile.human_bytes(summary['dense_bytes'])}, every tensor at its dtype's "
          "size (4 bytes per float32)")
    books = args.codebook_dtype or "exact, in the weights' dtype"
    print(f"gap bits: conv {gap_bits['conv']}, fc {gap_bits['fc']}; codebooks: {books}")
    return 0
