"""Tables and summaries rendered from results dicts (never from live objects).

Everything here takes the JSON-serialisable dict an experiment returned (or ``results.json``
read back), so a report can be redrawn without re-running anything.
"""

from __future__ import annotations

__all__ = ["markdown_table", "one_line_summary", "ratio_words", "zero_weights_summary"]


def markdown_table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of ``l``/``r`` per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def ratio_words(ratio: float, digits: int = 1) -> str:
    """``ratio`` = reference size / this size, in words: ``"41.3x smaller"``, or ``"1.08x
    larger"`` when this is the bigger one (never "0.93x smaller")."""
    if ratio >= 1:
        return f"{ratio:.{digits}f}x smaller"
    if ratio <= 0:
        return "larger (the reference is empty)"
    return f"{1 / ratio:.{max(digits, 2)}f}x larger"


def _distinct_words(c: dict, n_weights: int) -> str:
    """``61 distinct weight values instead of 48,895 (...)``: what the cluster answer compares."""
    base = c.get("baseline_distinct_weights")
    if base is None:  # results written before the baseline was recorded
        return f"{c['distinct_weights']} distinct values for {n_weights:,} weights"
    return (f"{c['distinct_weights']} distinct weight values instead of {base:,} (the trained "
            f"model's {n_weights:,} weights hold {base:,} distinct values; "
            f"{c['reduction']:.0f}x fewer)")


def _pct(x: float, digits: int = 1) -> str:
    return f"{100.0 * x:.{digits}f} %"


def _vs_trained(drop_pp: float) -> str:
    if abs(drop_pp) < 0.005:
        return "equal to the trained model"
    side = "below" if drop_pp > 0 else "above"
    return f"{abs(drop_pp):.2f} pp {side} the trained model"


def one_line_summary(results: dict) -> str:
    """The one line printed at the end of a zero-weights run."""
    a = results["answers"]
    acc = results["train"]["accuracy"]
    parts = [f"accuracy {acc:.4f} on {results['n_test_images']:,} test images"]
    z = a.get("zero")
    if z:
        parts.append(
            f"{_pct(z['zero_fraction'])} of weights zeroable for <= {a['tolerance_pp']:g} pp "
            f"(t={z['threshold']:.4f}, {-z['drop_pp']:+.2f} pp)"
        )
    c = a.get("clusters_within_tolerance")
    if c:
        base = c.get("baseline_distinct_weights")
        n_w = results["model"]["weights"]
        parts.append(
            f"{c['distinct_weights']} distinct weight values instead of the {base:,} of the "
            f"trained model's {n_w:,} weights ({c['reduction']:.0f}x fewer, "
            f"{-c['drop_pp']:+.2f} pp)" if base is not None else
            f"{c['distinct_weights']} distinct weight values for {n_w:,} weights "
            f"({-c['drop_pp']:+.2f} pp)"
        )
    for w in results.get("warnings") or []:
        parts.append(f"WARNING: {w}")
    return "; ".join(parts)


def per_layer_answer(answers: dict) -> str | None:
    """The zero-weights answer per layer pruned alone, in words (None when not measured)."""
    pl = answers.get("zero_per_layer")
    if not pl or not pl.get("layers"):
        return None
    key = f"{pl['tolerance_pp']:g}"
    per = [f"{la['name']} {_pct(la['zeroable'][key])} of {la['weights']:,}"
           for la in pl["layers"] if key in la["zeroable"]]
    return (f"**Per layer, pruned alone** (by magnitude, the other layers untouched), this "
            f"many of its weights can be zeroed for <= {pl['tolerance_pp']:g} pp: "
            + ", ".join(per) + ". Layers do not add up: pruning them together costs more.")


def zero_weights_summary(results: dict) -> str:
    """``summary.md`` of a zero-weights run: the answers in words, then the details."""
    a = results["answers"]
    n_w = results["model"]["weights"]
    tol = a["tolerance_pp"]
    ds = results["dataset"]
    thr = results["threshold_sweep"]
    clu = results["cluster_sweep"]
    lines = [f"# How many weights can we zero? — {results['model']['name']} on {ds['name']}", ""]
    lines.append(
        f"Trained test accuracy: **{results['train']['accuracy']:.4f}** on the whole test set "
        f"({results['n_test_images']:,} images), seed {results['seed']}, "
        f"{results['train']['log'].get('iterations', 0)} iterations."
    )
    if ds.get("note"):
        lines.append(f"Data note: {ds['note']}")
    for w in results.get("warnings") or []:
        lines.append(f"**Warning: {w}.**")
    lines += ["", "## Answers", ""]
    first_crossing = "zero_rule" in a
    z = a.get("zero")
    if z:
        lines.append(
            f"- **{_pct(z['zero_fraction'])} of the weights can be zeroed for <= {tol:g} pp "
            f"accuracy** (threshold {z['threshold']:.4f}: accuracy {z['accuracy']:.4f}, "
            f"{_vs_trained(z['drop_pp'])}"
            + ("; every smaller threshold of the sweep stays within the tolerance too"
               if first_crossing else "") + ")."
        )
    else:
        lines.append(f"- No threshold keeps accuracy within {tol:g} pp of the trained model"
                     + (" (the smallest already loses more)." if first_crossing else "."))
    zm = a.get("zero_max_anywhere")
    if zm and (not z or zm["index"] != z["index"]):
        lines.append(
            f"- Counting thresholds past the first one that loses more than {tol:g} pp: "
            f"{_pct(zm['zero_fraction'])} at threshold {zm['threshold']:.4f} (accuracy "
            f"{zm['accuracy']:.4f}, {_vs_trained(zm['drop_pp'])}), though a smaller threshold "
            "falls outside the tolerance: not the answer above, shown for comparison."
        )
    zl = a.get("zero_lossless")
    if zl is None:
        lines.append(
            f"- No threshold keeps the trained accuracy exactly (the smallest, "
            f"{thr['thresholds'][0]:.4f}, gives {thr['accuracy'][0]:.4f})."
        )
    else:
        lines.append(
            f"- Without any loss of accuracy: {_pct(zl['zero_fraction'])} "
            f"(threshold {zl['threshold']:.4f})."
        )
    per_layer = per_layer_answer(a)
    if per_layer:
        lines.append(f"- {per_layer}")
    c = a.get("clusters_within_tolerance")
    if c:
        lines.append(
            f"- **{_distinct_words(c, n_w)}** for <= {tol:g} pp: clusters per layer "
            f"{c['clusters']} (step {c['step']}), accuracy {c['accuracy']:.4f} "
            f"({_vs_trained(c['drop_pp'])})."
        )
    else:
        lines.append(f"- No cluster step keeps accuracy within {tol:g} pp of the trained model.")
    nb = a.get("clusters_notebook_rule")
    if nb:
        lines.append(
            f"- The notebook's rule (last step before a drop of more than {nb['max_drop']:g}) "
            f"picks step {nb['step']}: clusters {nb['clusters']}, {nb['distinct_weights']} "
            f"distinct weight values ({nb['reduction']:.0f}x fewer), accuracy "
            f"{nb['accuracy']:.4f} ({_vs_trained(nb['drop_pp'])})."
        )
    if first_crossing:
        lines += ["", "Rule: the zeroable fraction is read at the largest threshold such that "  # noqa: ISC004
                  "it and every smaller threshold of the sweep lose no more than the tolerance "
                  "(the first crossing of the tolerance line); the cluster answer is the step "
                  "with the fewest distinct values within the tolerance."]
    by_tol = a.get("zero_by_tolerance") or []
    if by_tol:
        lines += ["", "## How much can be zeroed for a given loss", "",
                  "Each row: the largest threshold such that it and every smaller one lose no "  # noqa: ISC004
                  "more than the loss.", ""]
        rows = [
            [f"<= {r['tolerance_pp']:g} pp",
             "none" if r["zero_fraction"] is None else _pct(r["zero_fraction"]),
             "" if r["threshold"] is None else f"{r['threshold']:.4f}",
             "" if r["accuracy"] is None else f"{r['accuracy']:.4f}"]
            for r in by_tol
        ]
        lines.append(markdown_table(["accuracy loss", "weights zeroed", "threshold",
                                     "accuracy"], rows))
        lines.append(
            f"One test image is {100 / results['n_test_images']:g} pp of accuracy; "
            "differences of a few images are within the noise of the measurement."
        )
    lines += ["", "## Zero fraction per layer at the chosen threshold", ""]
    if z:
        rows = [
            [name, f"{w:,}", _pct(z["zero_fraction_per_layer"][name])]
            for name, w in zip(thr["layers"], thr["layer_weights"], strict=True)
        ]
        rows.append(["all", f"{n_w:,}", _pct(z["zero_fraction"])])
        lines.append(markdown_table(["layer", "weights", "zeroed"], rows))
    lines += ["## Cluster sweep", ""]
    rows = []
    for i, (ks, d, acc) in enumerate(
        zip(clu["clusters"], clu["distinct_weights"], clu["accuracy"], strict=True)
    ):
        mark = []
        if nb and nb["index"] == i:
            mark.append("notebook rule")
        if c and c["index"] == i:
            mark.append(f"within {tol:g} pp")
        rows.append([i + 1, ks, d, f"{acc:.4f}", ", ".join(mark)])
    lines.append(markdown_table(["step", "clusters", "distinct", "accuracy", "chosen"], rows,
                                "rlrrl"))
    wt = results.get("wall_times", {})
    if wt:
        lines += ["## Wall times", ""]
        lines.append(markdown_table(["stage", "seconds"],
                                    [[k, f"{v:.1f}"] for k, v in wt.items()]))
    lines.append(
        "Figures: zero_fraction.png, threshold_accuracy.png, cluster_accuracy.png "
        "(redraw with `netsqueeze plot results.json`)."
    )
    return "\n".join(lines) + "\n"


def _fmt_bytes(n: float) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):.2f} MiB"
    if n >= 1 << 10:
        return f"{n / 1024:.1f} KiB"
    return f"{n:.0f} B"


def compress_table_markdown(results: dict) -> str:
    """``table.md`` of a compress run: stages, then the paper's per-layer table."""
    s = results["summary"]
    recipe = results["recipe"]
    lines = [
        f"# Deep Compression of {results['spec']['model']} on {results['dataset']['name']}",
        "",
        (f"Recipe `{recipe['name']}`; accuracy on the whole test set "
        f"({results['n_test_images']:,} images), seed {results['seed']}."),
        "",
        "## Stages",
        "",
    ]
    rows = []
    for st in results["stages"]:
        before = st.get("accuracy_before_retrain")
        rows.append([
            st["stage"],
            f"{st['accuracy']:.4f}",
            f"{100 * (1 - st['accuracy']):.2f} %",
            "" if before is None else f"{before:.4f}",
            f"{100 * st['kept']:.1f} %",
            f"{st['distinct_nonzero']:,}",
            f"{st['seconds']:.0f}",
        ])
    lines.append(markdown_table(
        ["stage", "accuracy", "top-1 error", "before retraining", "weights kept",
         "distinct non-zero", "seconds"], rows))
    lines += ["## Per layer (the paper's format)", ""]
    f = results.get("file")
    rows = []
    for r in results["table"]:
        row = [
            r["layer"], f"{r['weights']:,}", f"{100 * r['kept_fraction']:.1f} %",
            r["bits"], r["gap_bits"], f"{r['fillers']:,}", _fmt_bytes(r["estimated_bytes"]),
            f"{r['ratio']:.1f}x",
        ]
        if f:
            fb = r.get("file_bytes")
            row += ["" if fb is None else _fmt_bytes(fb),
                    "" if fb is None else f"{r['file_ratio']:.1f}x"]
        rows.append(row)
    total = [
        "total", f"{s['weights']:,}", f"{100 * s['kept_fraction']:.1f} %", "", "", "",
        _fmt_bytes(s["estimated_bytes"]), f"{s['estimated_ratio']:.1f}x",
    ]
    headers = ["layer", "weights", "weights kept (P)", "weight bits (P+Q)", "index bits",
               "filler zeros", "paper formula", "vs dense"]
    if f:
        rows_bytes = sum(r.get("file_bytes", 0) for r in results["table"])
        total += [_fmt_bytes(rows_bytes), f"{s['dense_bytes'] / rows_bytes:.1f}x"]
        headers += ["in the file (P+Q+H)", "vs dense"]
    rows.append(total)
    lines.append(markdown_table(headers, rows))
    lines.append(
        "Paper formula: each stored entry (kept weights and filler zeros) costs weight bits + "
        "index bits, plus a 32-bit codebook entry per shared value; weight bits are 32 for "
        "layers that are not shared; biases are not counted (as in `netsqueeze inspect`, "
        "which applies the formula to the layout the file really uses). 'In the file' is what "
        "model.nsq spends on the layer's weight and bias records, with Huffman coding."
    )
    if f:
        t = f["totals"]
        b = f["baseline"] or {}
        lines += [
            "",
            (f"**model.nsq: {t['file_bytes']:,} bytes, {ratio_words(t['ratio_to_dense'])} than "
            f"the dense float32 model ({t['dense_bytes']:,} bytes)**; "
            f"{t['bits_per_weight']:.2f} bits per weight stored; Huffman saves "
            f"{100 * (t['huffman_saving'] or 0):.1f} % over fixed-width codes and the coded "
            f"streams are {100 * (t['entropy_overhead'] or 0):.2f} % above their entropy bound."),
        ]
        if b.get("gzip_bytes"):
            lines.append(
                f"torch.save + gzip -9 of the same compressed model: {b['gzip_bytes']:,} bytes "
                f"(model.nsq is {ratio_words(b['gzip_bytes'] / t['file_bytes'])})."
            )
    lines += [
        "",
        (f"Trained: {100 * (1 - s['trained_accuracy']):.2f} % top-1 error; compressed: "
        f"{100 * (1 - s['final_accuracy']):.2f} % ({s['drop_pp']:+.2f} pp); "
        f"{100 * s['kept_fraction']:.1f} % of weights kept."),
    ]
    return "\n".join(lines) + "\n"
