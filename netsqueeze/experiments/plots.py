"""Figures drawn from results dicts with matplotlib (imported lazily, headless backend)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["plot_zero_weights"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    import io

    from netsqueeze.core.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())
    return path


def plot_zero_weights(results: dict, out_dir: str | Path) -> list[Path]:
    """The notebook's three figures from a zero-weights ``results`` dict.

    Writes ``zero_fraction.png`` (fraction of zero weights per layer vs threshold),
    ``threshold_accuracy.png`` (accuracy vs threshold) and ``cluster_accuracy.png`` (accuracy vs
    cluster step), each with the chosen point marked. Returns the paths.
    """
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    thr = results["threshold_sweep"]
    clu = results["cluster_sweep"]
    ans = results["answers"]
    tol = ans["tolerance_pp"]
    title = f"{results['model']['name']} on {results['dataset']['name']}"
    n_test = results["n_test_images"]
    z = ans.get("zero")
    paths = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ts = thr["thresholds"]
    for name in thr["layers"]:
        ax.plot(ts, thr["zero_fraction"][name], label=name)
    ax.plot(ts, thr["overall_zero_fraction"], "k--", lw=2, label="all weights")
    if z:
        ax.axvline(z["threshold"], color="tab:red", ls=":", lw=1)
        ax.plot([z["threshold"]], [z["zero_fraction"]], "o", color="tab:red",
                label=f"chosen: {100 * z['zero_fraction']:.1f} % zero (<= {tol:g} pp)")
    ax.set_xlabel("threshold t (|w| < t set to 0)")
    ax.set_ylabel("fraction of weights that are zero")
    ax.set_ylim(0, 1)
    ax.set_title(f"Zero weights per layer — {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "zero_fraction.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ts, thr["accuracy"], "-o", ms=3, label="pruned model")
    base = thr["baseline_accuracy"]
    ax.axhline(base, color="gray", ls="--", lw=1, label=f"trained: {base:.4f}")
    ax.axhline(base - tol / 100, color="gray", ls=":", lw=1, label=f"trained - {tol:g} pp")
    if z:
        ax.plot([z["threshold"]], [z["accuracy"]], "o", color="tab:red", ms=8,
                label=f"chosen: t={z['threshold']:.4f}, {100 * z['zero_fraction']:.1f} % zero")
    ax.set_xlabel("threshold t")
    ax.set_ylabel(f"test accuracy ({n_test:,} images)")
    ax.set_title(f"Accuracy vs threshold — {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "threshold_accuracy.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    steps = list(range(1, len(clu["accuracy"]) + 1))
    ax.plot(steps, clu["accuracy"], "-o", ms=4, label="clustered model")
    base = clu["baseline_accuracy"]
    ax.axhline(base, color="gray", ls="--", lw=1, label=f"trained: {base:.4f}")
    ax.axhline(base - tol / 100, color="gray", ls=":", lw=1, label=f"trained - {tol:g} pp")
    for key, color, marker, label in (
        ("clusters_notebook_rule", "tab:orange", "s", "notebook rule"),
        ("clusters_within_tolerance", "tab:red", "o", f"fewest values within {tol:g} pp"),
    ):
        c = ans.get(key)
        if c:
            ax.plot([c["step"]], [c["accuracy"]], marker, color=color, ms=10, mfc="none", mew=2,
                    label=f"{label}: {c['distinct_weights']} values {c['clusters']}")
    ax.set_xticks(steps)
    ax.set_xticklabels([str(d) for d in clu["distinct_weights"]], rotation=60, fontsize=7)
    ax.set_xlabel("cluster step (tick: distinct weight values, summed over layers)")
    ax.set_ylabel(f"test accuracy ({n_test:,} images)")
    ax.set_title(f"Accuracy vs number of clusters — {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "cluster_accuracy.png"))
    plt.close(fig)
    return paths


def plot_compress(results: dict, out_dir: str | Path) -> list[Path]:
    """Figures of a compress run: accuracy per stage, and each layer's weight distribution.

    Writes ``accuracy_stages.png`` and ``weight_distribution.png`` (one row per layer, one column
    per snapshot: trained, pruned + retrained, shared), as in the paper's weight-distribution
    figure. Returns the paths.
    """
    import numpy as np

    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = results["stages"]
    title = f"{results['spec']['model']} on {results['dataset']['name']}"
    paths = []

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(stages) + 2), 4.5))
    x = np.arange(len(stages))
    err = [100 * (1 - s["accuracy"]) for s in stages]
    ax.plot(x, err, "-o", label="after the stage")
    before = [(i, 100 * (1 - s["accuracy_before_retrain"])) for i, s in enumerate(stages)
              if s.get("accuracy_before_retrain") is not None]
    if before:
        ax.plot([b[0] for b in before], [b[1] for b in before], "x", color="tab:red", ms=8,
                label="pruned, before retraining")
    for i, s in enumerate(stages):
        ax.annotate(f"{100 * s['kept']:.0f} % kept", (i, err[i]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([s["stage"] for s in stages], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(f"top-1 error, % ({results['n_test_images']:,} test images)")
    ax.set_title(f"Error through the pipeline — {title}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(_save(fig, out / "accuracy_stages.png"))
    plt.close(fig)

    dists = results["distributions"]
    snaps = list(dists)
    layers = list(dists[snaps[0]]) if snaps else []
    if layers:
        fig, axes = plt.subplots(len(layers), len(snaps), squeeze=False,
                                 figsize=(3.6 * len(snaps), 2.2 * len(layers)))
        for r, layer in enumerate(layers):
            for c, snap in enumerate(snaps):
                ax = axes[r][c]
                d = dists[snap].get(layer)
                if d is None:
                    ax.set_axis_off()
                    continue
                if "values" in d and len(d["values"]) <= 256 and snap.startswith("shared"):
                    ax.vlines(d["values"], 0, d["counts"], lw=1)
                else:
                    lo, hi = d["edges"]
                    edges = np.linspace(lo, hi, len(d["hist"]) + 1)
                    ax.stairs(d["hist"], edges, fill=True, alpha=0.7)
                ax.tick_params(labelsize=6)
                if r == 0:
                    ax.set_title(snap, fontsize=9)
                if c == 0:
                    ax.set_ylabel(layer, fontsize=8)
                ax.text(0.98, 0.95, f"{d['nonzero']:,} non-zero", transform=ax.transAxes,
                        ha="right", va="top", fontsize=6)
        fig.suptitle(f"Weight distribution per layer (zeros not drawn) — {title}", fontsize=10)
        fig.tight_layout()
        paths.append(_save(fig, out / "weight_distribution.png"))
        plt.close(fig)
    return paths
