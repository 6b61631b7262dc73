"""The notebook experiment end to end (small budgets; the full MNIST run is marked slow)."""

import json

import numpy as np
import pytest

from netsqueeze.experiments import zero_weights as zw
from netsqueeze.nn.train import TrainConfig

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("zero_fraction.png", "threshold_accuracy.png", "cluster_accuracy.png")


def small_spec(**kw):
    base = {
        "dataset": "mnist-sample",
        "train": TrainConfig(iterations=60, seed=0),
        "threshold_num": 5,
        "cluster_steps": 3,
        "device": "cpu",
    }
    base.update(kw)
    return zw.ZeroWeightsSpec(**base)


def _check_png(path):
    import matplotlib.image as mpimg

    assert path.read_bytes()[:8] == PNG_MAGIC
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100


def test_small_run_writes_everything(tmp_path):
    lines = []
    res = zw.run_zero_weights(small_spec(), tmp_path, progress=False, log=lines.append)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["answers"] == json.loads(json.dumps(res["answers"]))
    assert on_disk["dataset"]["name"] == "mnist-sample"
    assert on_disk["n_test_images"] == 1000
    assert on_disk["model"]["weights"] == 48_912
    assert len(on_disk["threshold_sweep"]["accuracy"]) == 5
    assert len(on_disk["cluster_sweep"]["accuracy"]) == 3
    for key in ("train", "threshold_sweep", "cluster_sweep", "total"):
        assert on_disk["wall_times"][key] > 0
    assert {"numpy", "torch", "python"} <= set(on_disk["versions"])
    for f in FIGURES:
        _check_png(tmp_path / f)
    summary = (tmp_path / "summary.md").read_text()
    base = on_disk["cluster_sweep"]["baseline_distinct_weights"]
    assert 1 < base <= 48_912
    c = on_disk["answers"]["clusters_within_tolerance"]
    assert c is None or (
        f"distinct weight values instead of {base:,} (the trained model's 48,912 weights hold "
        f"{base:,} distinct values" in summary and c["reduction"] == base / c["distinct_weights"])
    assert c is not None or "No cluster step" in summary
    assert "every smaller threshold" in summary and "Rule:" in summary
    zs = [r["zero_fraction"] or 0.0 for r in on_disk["answers"]["zero_by_tolerance"]]
    assert len(zs) == 6 and zs == sorted(zs)  # more loss allowed never zeroes less
    assert "How much can be zeroed for a given loss" in summary
    assert not (tmp_path / ".state").exists()
    assert any("mnist-sample" in line for line in lines)
    # per layer, pruned alone: a larger tolerance never zeroes less, and the line is written
    pl = on_disk["answers"]["zero_per_layer"]
    assert [la["name"] for la in pl["layers"]] == [la["name"] for la in on_disk["model"]["layers"]]
    for la in pl["layers"]:
        z = [la["zeroable"][k] for k in ("0.1", "0.5", "1")]
        assert z == sorted(z) and all(0.0 <= v < 1.0 for v in z)
        # first crossing: every grid sparsity up to the answer stays within 0.5 pp
        ok = [s for s, a in zip(pl["grid"], la["accuracy"], strict=False)
              if s <= la["zeroable"]["0.5"]]
        accs = la["accuracy"][:len(ok)]
        assert all(100 * (pl["baseline_accuracy"] - a) <= 0.5 + 1e-9 for a in accs)
        # the walk stops at the first point past the largest tolerance (1 pp), or at the end
        drops = [100 * (pl["baseline_accuracy"] - a) for a in la["accuracy"]]
        assert all(d <= 1 + 1e-9 for d in drops[:-1])
        assert len(drops) == len(pl["grid"]) or drops[-1] > 1
    assert "Per layer, pruned alone" in summary
    assert f"{pl['layers'][0]['name']} {100 * pl['layers'][0]['zeroable']['0.5']:.1f} %" in summary


def test_interrupted_run_resumes_without_redoing_work(tmp_path, monkeypatch):
    spec = small_spec()
    reference = zw.run_zero_weights(spec, tmp_path / "ref", progress=False, plots=False,
                                    log=lambda s: None)

    calls = {"n": 0}
    real = zw.sweeps.evaluate

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 4:  # baseline + 2 threshold points done, then interrupted
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(zw.sweeps, "evaluate", flaky)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        zw.run_zero_weights(spec, out, progress=False, plots=False, log=lambda s: None)
    assert not (out / "results.json").exists()  # nothing half-written
    progress = json.loads((out / ".state" / "progress.json").read_text())
    assert len(progress["threshold"]) == 2
    monkeypatch.setattr(zw.sweeps, "evaluate", real)

    lines = []
    resumed = zw.run_zero_weights(spec, out, progress=False, plots=False, resume=True,
                                  log=lines.append)
    assert any("reusing the model" in line for line in lines)
    assert resumed["threshold_sweep"]["accuracy"] == reference["threshold_sweep"]["accuracy"]
    assert resumed["cluster_sweep"]["accuracy"] == reference["cluster_sweep"]["accuracy"]
    assert resumed["train"]["accuracy"] == reference["train"]["accuracy"]


def test_resume_refuses_other_settings(tmp_path, monkeypatch):
    spec = small_spec()
    monkeypatch.setattr(zw.sweeps, "threshold_sweep",
                        lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        zw.run_zero_weights(spec, tmp_path, progress=False, log=lambda s: None)
    other = small_spec(threshold_num=7)
    with pytest.raises(ValueError, match="other settings"):
        zw.run_zero_weights(other, tmp_path, progress=False, resume=True, log=lambda s: None)


def test_spec_validation_names_the_field():
    with pytest.raises(ValueError, match="threshold_num"):
        small_spec(threshold_num=0).validate()
    with pytest.raises(ValueError, match="iterations"):
        small_spec(train=TrainConfig(iterations=-1)).validate()
    with pytest.raises(ValueError, match="loss"):
        small_spec(train=TrainConfig(loss="hinge")).validate()


def test_wrong_image_size_for_the_model_is_a_clear_error(tmp_path):
    from netsqueeze.data import write_idx

    rng = np.random.default_rng(0)
    folder = tmp_path / "small"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", rng.integers(0, 255, (20, 8, 8), np.uint8))
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, 10, 20).astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 255, (10, 8, 8), np.uint8))
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, 10).astype(np.uint8))
    with pytest.raises(Exception, match="28") as info:
        zw.run_zero_weights(small_spec(dataset=f"idx:{folder}"), tmp_path / "o",
                            progress=False, log=lambda s: None)
    assert isinstance(info.value, ValueError)
