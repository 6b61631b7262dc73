"""``netsqueeze pack``: write a checkpoint (or a compress run's model) as a compressed .nsq file."""

from __future__ import annotations

import argparse
import math

from netsqueeze.cli import common, modelspec, nsqfile

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
    modelspec.add_model_args(p, help_extra=" (default: the built-in one the checkpoint "
                             "names)")
    modelspec.add_trust_arg(p)
    p.add_argument("--conv-gap-bits", type=_gap_bits, default=None,
                   help="bits of a relative index in convolution weights (default: the run's "
                   "storage setting, else 8)")
    p.add_argument("--fc-gap-bits", type=_gap_bits, default=None,
                   help="bits of a relative index in linear weights (default: the run's storage "
                   "setting, else 5)")
    p.add_argument("--codebook-dtype", choices=("float16", "float32"), default=None,
                   help="store the shared values of conv/linear weights in this dtype (float16 "
                   "rounds them; default: the weights' own dtype, exact)")
    g = p.add_argument_group(
        "zeroing or sharing first (the two answers of zero-weights, for any checkpoint)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--threshold", type=float, default=None, metavar="T",
                   help="zero every conv / linear weight and bias with |w| < T before encoding")
    x.add_argument("--clusters", type=_cluster_list, default=None, metavar="K1,K2,...",
                   help="replace each conv / linear layer's weights by K k-means centres (one "
                   "count per layer, in the model's order) before encoding")
    g.add_argument("--keep-biases", dest="include_bias", action="store_false",
                   help="--threshold: leave biases as they are")
    g.add_argument("--bias-clusters", type=int, default=2,
                   help="--clusters: shared values of each layer's biases; 0 leaves them "
                   "[%(default)s]")
    p.set_defaults(run=run)
    return p


def _cluster_list(text: str) -> tuple[int, ...]:
    from netsqueeze.cli.common import int_list

    vals = int_list(text)
    if any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"cluster counts must be >= 1, got {text!r}")
    return vals


def apply_answers(model, args: argparse.Namespace) -> str | None:
    """Apply --threshold or --clusters to ``model`` in place; say what was done (or None)."""
    from netsqueeze.experiments.zero_weights import apply_clusters_, apply_threshold_
    from netsqueeze.nn.modules import compressible_layers

    threshold = getattr(args, "threshold", None)
    clusters = getattr(args, "clusters", None)
    if threshold is not None:
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"--threshold must be a finite number >= 0, got {threshold}")
        apply_threshold_(model, threshold, include_bias=args.include_bias)
        return (f"zeroed |w| < {threshold:g} in conv / linear weights"
                + (" and biases" if args.include_bias else ""))
    if clusters is not None:
        names = [r.name for r in compressible_layers(model)]
        if len(clusters) != len(names):
            raise ValueError(f"--clusters has {len(clusters)} counts but the model has "
                             f"{len(names)} conv / linear layers ({', '.join(names)}); give "
                             "one count per layer")
        if args.bias_clusters < 0:
            raise ValueError(f"--bias-clusters must be >= 0, got {args.bias_clusters}")
        apply_clusters_(model, clusters, bias_clusters=args.bias_clusters or None)
        return ("shared weights: " + ", ".join(f"{n} {k}" for n, k in zip(names, clusters,
                                                                          strict=True))
                + (f"; biases {args.bias_clusters} per layer" if args.bias_clusters else ""))
    return None


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
    model, arch, meta, path = nsqfile.load_source(args.src, args.model,
                                                  modelspec.model_args(args),
                                                  trust=args.trust_checkpoint)
    gap_bits = gap_bits_from(args, meta)
    applied = apply_answers(model, args)
    hmeta = header_meta(meta, path.name, gap_bits)
    if applied:
        hmeta["applied"] = applied
        hmeta.pop("accuracy", None)  # the checkpoint's accuracy is not this model's
        hmeta.pop("test_accuracy", None)
    custom = arch is not None and not modelspec.is_builtin(arch)
    summary = save_compressed(model, args.out, arch=None if custom else arch, gap_bits=gap_bits,
                              codebook_dtype=args.codebook_dtype, meta=hmeta,
                              factory=arch if custom else None,
                              factory_args=modelspec.model_args(args) if custom else None)
    print(f"wrote {args.out}: {nsqfile.human_bytes(summary['bytes'])}, "
          f"{ratio_words(summary['ratio'])} than dense ({arch}, {summary['tensors']} tensors)")
    print(f"dense: {nsqfile.human_bytes(summary['dense_bytes'])}, every tensor at its dtype's "
          "size (4 bytes per float32)")
    if applied:
        print(f"before encoding: {applied}")
    books = args.codebook_dtype or "exact, in the weights' dtype"
    print(f"gap bits: conv {gap_bits['conv']}, fc {gap_bits['fc']}; codebooks: {books}")
    return 0
