"""``netsqueeze inspect``: where the bytes of a .nsq file go, layer by layer."""

from __future__ import annotations

import argparse
import json

from netsqueeze.cli import modelspec, nsqfile

NAME = "inspect"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        NAME,
        help="per-layer size table of a .nsq file, against dense storage, gzip and the "
        "entropy bound",
        description="Print, per layer, the weights kept, the bits per cluster index and per "
        "relative index actually written, what Huffman coding saved over fixed-width codes, "
        "and the bytes; then the totals, the ratio to dense storage and to torch.save + gzip "
        "-9 of the same decoded model (measured), the distance to the entropy bound and the "
        "paper's size formula.",
    )
    p.add_argument("file", metavar="FILE.nsq", help="compressed model")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the torch.save + gzip -9 measurement")
    modelspec.add_model_args(p, help_extra="; also decode the file into it and list the "
                             "coverage of every parameter")
    p.set_defaults(run=run)
    return p


def _pct(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{100 * v:.{digits}f}"


def _num(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], left: int = 2) -> list[str]:
    """Aligned rows: the first ``left`` columns left-aligned, the others right-aligned."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(w) if i < left else c.rjust(w)
                 for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
        return "  ".join(parts).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out.extend(line(r) for r in rows[:-1])
    if rows:
        out.append(line(["-" * w for w in widths]))
        out.append(line(rows[-1]))
    return out


def _model(report: dict) -> str:
    """``architecture NAME``, with the model's class when the header records one."""
    arch, cls = report.get("arch"), report.get("model_class")
    pr = nsqfile.printable
    if arch is None and cls:
        return f"model class {pr(cls)} (no architecture name)"
    return f"architecture {pr(arch)}" + (f" (class {pr(cls)})" if cls else "")


def render(report: dict) -> str:
    """The report as aligned plain text: header line, layer table, totals and comparisons.

    Text from the file (header strings, tensor names) is printed with control characters
    escaped (:func:`netsqueeze.cli.nsqfile.printable`).
    """
    t = report["totals"]
    hb = nsqfile.human_bytes
    pr = nsqfile.printable
    lines = [
        (f"{pr(report['file'] or 'nsq data')}: {hb(report['file_bytes'])}, {_model(report)}, "
         f"written by netsqueeze {pr(report['netsqueeze_version'])} "
         f"(format {report['format_version']})"),
        "",
    ]
    headers = ["layer", "kind", "weights", "kept %", "k", "bits/index", "bits/gap",
               "Huffman %", "bytes", "ratio"]
    rows = []
    for x in report["layers"]:
        k = str(x["codebook_size"]) if x["values"] == "codebook" else "raw"
        rows.append([
            pr(x["name"]) or "(model)",
            pr(x["kind"] or "-"),
            f"{x['weights']:,}",
            _pct(x["kept"]),
            k,
            _num(x["index_bits"]),
            _num(x["gap_bits"]),
            _pct(x["huffman_saving"]),
            f"{x['bytes']:,}",
            f"{x['ratio']:.1f}x" if x["ratio"] else "-",
        ])
    rows.append([
        "total", "", f"{t['weights']:,}", _pct(t["kept"]), "", "", "",
        _pct(t["huffman_saving"]), f"{t['records_bytes']:,}",
        f"{t['dense_bytes'] / t['records_bytes']:.1f}x" if t["records_bytes"] else "-",
    ])
    lines += _table(headers, rows)
    lines += [
        "",
        "weights: elements of the layer's weight (total: conv and linear layers); kept: its",
        "non-zeros; k: shared values (raw: values stored as they are); bits/index, bits/gap:",
        "bits written per stored weight, descriptors included; Huffman: saving over fixed-width",
        "codes; bytes: all tensors of the layer (weight, bias, buffers).",
        "",
    ]
    lines.append(f"file              {hb(t['file_bytes'])}: records {t['records_bytes']:,} "
                 f"+ header and framing {t['overhead_bytes']:,}")
    from netsqueeze.experiments.report import ratio_words

    lines.append(f"vs dense          {ratio_words(t['ratio_to_dense'])} than "
                 f"{hb(t['dense_bytes'])} ({report['dense_counts']})")
    b = report.get("baseline")
    if b:
        lines.append(f"vs gzip           {ratio_words(b['ratio'], 2)} than torch.save + gzip -9: "
                     f"{hb(b['gzip_bytes'])} (measured)")
    if t["bits_per_weight"]:
        lines.append(f"bits per weight   {t['bits_per_weight']:.2f} (file bits per stored conv/"
                     "linear weight)")
    if t["entropy_bytes"]:
        lines.append(f"entropy bound     symbol streams {t['stream_bytes']:,} bytes, bound "
                     f"{t['entropy_bytes']:,.0f} ({100 * t['entropy_overhead']:+.1f} %); records "
                     f"at the bound {t['entropy_bound_bytes']:,.0f}")
    if t.get("floor_bytes"):
        per = ", ".join(f"{nsqfile.printable(x['name']) or '(model)'} {x['above_floor']:+.1%}"
                        for x in report["layers"] if x.get("above_floor") is not None)
        lines.append(f"information floor {t['floor_bytes']:,.0f} bytes (positions log2 C(N,k) + "
                     f"k x H0(values) + codebooks): records {t['above_floor']:+.1%} ({per})")
    if t["paper_bytes"]:
        lines.append(f"paper's formula   {t['paper_bytes']:,.0f} bytes estimated vs "
                     f"{t['records_bytes']:,} written ({t['paper_vs_actual']:.2f}x)")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from netsqueeze.nn.export import compressed_report

    report = compressed_report(args.file, baseline=args.baseline)
    if not args.baseline:
        # the baseline decodes every tensor; without it, decode them anyway so that a file
        # whose tensors cannot be decoded is an error here too
        nsqfile.check_decodes(args.file)
    if args.model:
        report["coverage"] = coverage(args)
    if args.json:
        print(json.dumps(report, indent=2, allow_nan=False))
    else:
        print(render(report))
        if args.model:
            print(render_coverage(report["coverage"], args.model))
    return 0


def coverage(args: argparse.Namespace) -> list[dict]:
    """Decode the file into ``--model`` (checking it fits) and say how each parameter of the
    model is stored: compressed, dense (why) or tied to another name."""
    from netsqueeze.nn.export import load_compressed
    from netsqueeze.nn.modules import param_coverage

    model = load_compressed(args.file, factory=args.model,
                            factory_args=modelspec.model_args(args))
    return param_coverage(model)


def render_coverage(rows: list[dict], spec: str) -> str:
    lines = ["", f"parameters of {spec}, as stored:"]
    table = [[r["name"], "x".join(map(str, r["shape"])) or "scalar", r["coverage"],
              r["reason"] or ""] for r in rows]
    widths = [max([len(t[i]) for t in table] + [4]) for i in range(3)]
    for t in table:
        lines.append("  ".join(c.ljust(w) for c, w in zip(t[:3], widths, strict=True)) +
                     ("  " + t[3] if t[3] else ""))
    return "\n".join(lines)
