"""Figures of the automatic search, drawn from its JSON (matplotlib is imported lazily)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_pareto", "plot_sensitivity"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    from netsqueeze.core.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    _pyplot().close(fig)
    return path


def plot_sensitivity(sens: dict, path: str | Path) -> Path:
    """Per layer: accuracy against sparsity (left) and against bits (right)."""
    plt = _pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    base = 100 * sens["baseline_accuracy"]
    for ls in sens["layers"]:
        a.plot([100 * s for s in ls["sparsities"]], [100 * v for v in ls["prune_accuracy"]],
               marker=".", label=f"{ls['name']} ({ls['weights']:,})")
        b.plot(ls["bits"], [100 * v for v in ls["share_accuracy"]], marker=".", label=ls["name"])
    for ax in (a, b):
        ax.axhline(base, color="grey", lw=0.8, ls="--")
        ax.set_ylabel(f"{sens['split']} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.set_ylim(max(0.0, base - 20), min(100.0, base + 2))
    a.set_xlabel("weights zeroed in this layer only (%)")
    a.set_title("pruning one layer")
    b.set_xlabel("bits per weight of this layer only (2**bits shared values)")
    b.set_title("sharing one layer")
    a.legend(fontsize=8)
    return _save(fig, Path(path))


def plot_pareto(report: dict, path: str | Path, references: list[dict] | None = None) -> Path:
    """File bytes against validation error of every model the search finished.

    ``references``: extra points ``{"label", "bytes", "error_pct"}`` (e.g. the paper's result and
    built-in recipes' runs, whose errors are on the test set -- the label should say so).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rounds = report["rounds"]
    for phase, marker in (("trained", "s"), ("prune", "o"), ("share", "^"), ("bias", "v")):
        pts = [r for r in rounds if r["phase"] == phase]
        ok = [r for r in pts if r["meets_budget"]]
        bad = [r for r in pts if not r["meets_budget"]]
        if ok:
            ax.scatter([r["file_bytes"] for r in ok], [100 * (1 - r["accuracy"]) for r in ok],
                       marker=marker, label=f"{phase} (meets budget)")
        if bad:
            ax.scatter([r["file_bytes"] for r in bad], [100 * (1 - r["accuracy"]) for r in bad],
                       marker=marker, facecolors="none", edgecolors="red",
                       label=f"{phase} (misses budget)")
    c = rounds[report["chosen"]]
    ax.scatter([c["file_bytes"]], [100 * (1 - c["accuracy"])], s=220, facecolors="none",
               edgecolors="black", linewidths=2, label="chosen")
    ax.axhline(100 * (1 - report["floor_accuracy"]), color="grey", ls="--", lw=0.8,
               label="budget (validation error)")
    for ref in references or []:
        ax.scatter([ref["bytes"]], [ref["error_pct"]], marker="*", s=120, label=ref["label"])
    ax.set_xscale("log")
    ax.set_xlabel("bytes of the .nsq file")
    ax.set_ylabel("top-1 error (%)")
    ax.set_title("every model the search finished (validation), references as labelled")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    return _save(fig, Path(path))
