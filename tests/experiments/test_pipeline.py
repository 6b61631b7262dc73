"""The Deep Compression pipeline end to end on the offline MNIST sample (small budgets)."""

import json

import numpy as np
import pytest
import torch

from netsqueeze.experiments import pipeline
from netsqueeze.experiments.pipeline import CompressSpec, run_compress
from netsqueeze.experiments.recipe import parse_recipe
from netsqueeze.models.checkpoint import load_checkpoint

RECIPE = {
    "train": {"iterations": 80, "seed": 0},  # 2 epochs of the 4,000-image sample
    "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.85, "fc3": 0.5}, "steps": 2,
              "retrain": {"iterations": 80}},
    "share": {"bits": 3},
    "finetune": {"iterations": 40},
}


def _run(out, **kw):
    spec = CompressSpec(model="lenet-300-100", dataset="mnist-sample", device="cpu")
    return run_compress(spec, parse_recipe(RECIPE), out, progress=False, log=lambda s: None,
                        **kw)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref")
    return out, _run(out)


def test_every_stage_is_measured_and_limits_hold(reference):
    out, res = reference
    names = [s["stage"] for s in res["stages"]]
    assert names == ["train", "prune 1/2", "prune 2/2", "share", "finetune"]
    for s in res["stages"]:
        assert 0.0 <= s["accuracy"] <= 1.0
    assert res["n_test_images"] == 1000
    assert res["stages"][0]["accuracy"] > 0.5
    # sparsity targets reached exactly at the last pruning step, and kept afterwards
    final = {r["layer"]: r for r in res["table"]}
    assert final["fc1"]["kept"] == round(0.1 * 235_200)
    assert final["fc2"]["kept"] == round(0.15 * 30_000)
    assert final["fc3"]["kept"] == 500
    for s in res["stages"][2:]:
        assert s["layers"]["fc1"]["nonzero"] == final["fc1"]["kept"]
    # at most 2**bits distinct non-zero values per layer after sharing and fine-tuning
    for s in res["stages"][3:]:
        for layer in s["layers"].values():
            assert layer["distinct_nonzero"] <= 8
    assert "accuracy_before_retrain" in res["stages"][1]
    assert set(res["distributions"]) == {"trained", "pruned + retrained", "shared + fine-tuned"}
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["summary"]["final_accuracy"] == res["stages"][-1]["accuracy"]
    assert (out / "table.md").read_text().count("| fc") == 3
    for f in ("accuracy_stages.png", "weight_distribution.png"):
        assert (out / f).read_bytes()[:4] == b"\x89PNG"


def test_compressed_checkpoint_is_a_plain_model_with_the_same_accuracy(reference):
    out, res = reference
    model, meta = load_checkpoint(out / "compressed.pt")
    assert meta["storage"] == {"conv_gap_bits": 8, "fc_gap_bits": 5}
    assert {n for n, _ in model.named_parameters()} == {
        f"fc{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias")}
    from netsqueeze.data import load
    from netsqueeze.nn.train import evaluate

    ds = load("mnist-sample")
    assert evaluate(model, ds.x_test, ds.y_test) == res["stages"][-1]["accuracy"]
    w = model.fc1.weight.detach().numpy()
    assert np.unique(w[w != 0]).size <= 8


def test_the_run_writes_a_real_compressed_file(reference):
    from netsqueeze.nn.export import load_compressed

    out, res = reference
    f = res["file"]
    assert f["bytes"] == (out / "model.nsq").stat().st_size
    assert f["totals"]["ratio_to_dense"] > 10  # 90 % pruned, 3-bit weights
    model, _ = load_checkpoint(out / "compressed.pt")
    loaded = load_compressed(out / "model.nsq")
    for (n, a), (m, b) in zip(model.state_dict().items(), loaded.state_dict().items(),
                              strict=True):
        assert n == m and torch.equal(a, b)
    assert sum(r["file_bytes"] for r in res["table"]) < f["bytes"]
    assert "model.nsq:" in (out / "table.md").read_text()


def test_interrupted_run_resumes_and_loses_at_most_an_epoch(tmp_path, monkeypatch, reference):
    _, ref = reference
    real_train = pipeline.train
    calls = {"n": 0}

    def train_then_interrupt(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 3:  # the second retraining: stop after its first epoch
            def stop(log):
                raise KeyboardInterrupt

            kw["on_epoch"] = stop
        return real_train(*args, **kw)

    monkeypatch.setattr(pipeline, "train", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    assert not (tmp_path / "results.json").exists()
    progress = json.loads((tmp_path / ".state" / "progress.json").read_text())
    assert [s["stage"] for s in progress["stages"]] == ["train", "prune 1/2"]
    ckpt = torch.load(tmp_path / ".state" / "train-2.pt", weights_only=True)
    assert ckpt["step"] == 40  # one epoch of the second retraining kept
    monkeypatch.setattr(pipeline, "train", real_train)

    res = _run(tmp_path, resume=True)
    assert res["stages"][2]["train"]["resumed_from"] == 40
    assert [s["accuracy"] for s in res["stages"]] == [s["accuracy"] for s in ref["stages"]]


def test_resume_with_another_recipe_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "share_weights_", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path)
    spec = CompressSpec(model="lenet-300-100", dataset="mnist-sample", device="cpu")
    other = parse_recipe({**RECIPE, "share": {"bits": 4}})
    with pytest.raises(ValueError, match="other settings"):
        run_compress(spec, other, tmp_path, progress=False, resume=True, log=lambda s: None)


def test_only_pruning_or_only_sharing(tmp_path):
    spec = CompressSpec(model="lenet-300-100", dataset="mnist-sample", device="cpu")
    pruned = run_compress(spec, parse_recipe({"train": {"iterations": 40},
                                              "prune": {"sparsity": 0.5,
                                                        "retrain": {"iterations": 0}}}),
                          tmp_path / "p", progress=False, plots=False, log=lambda s: None)
    assert [s["stage"] for s in pruned["stages"]] == ["train", "prune 1/1"]
    assert all(r["bits"] == 32 for r in pruned["table"])
    shared = run_compress(spec, parse_recipe({"train": {"iterations": 40},
                                              "share": {"bits": 2}}),
                          tmp_path / "s", progress=False, plots=False, log=lambda s: None)
    assert [s["stage"] for s in shared["stages"]] == ["train", "share"]
    assert shared["summary"]["kept_fraction"] == 1.0
    assert all(layer["distinct_nonzero"] <= 4 for layer in shared["stages"][-1]["layers"].values())


def test_share_bias_bits_shares_the_biases_after_the_last_stage(tmp_path):
    from netsqueeze.nn.export import load_compressed

    spec = CompressSpec(model="lenet-300-100", dataset="mnist-sample", device="cpu")
    res = run_compress(spec, parse_recipe({"train": {"iterations": 40},
                                           "share": {"bits": 2, "bias_bits": 2}}),
                       tmp_path, progress=False, plots=False, log=lambda s: None)
    last = res["stages"][-1]
    assert last["stage"] == "share" and last["bias_bits"] == 2 and last["biases_shared"] == 3
    back = load_compressed(tmp_path / "model.nsq")
    for layer in (back.fc1, back.fc2, back.fc3):  # fc3 has 10 biases > 2**2
        assert layer.bias.unique().numel() <= 4


def test_checkpoint_of_another_network_is_a_clear_error(tmp_path, reference):
    out, _ = reference
    spec = CompressSpec(model="lenet5", dataset="mnist-sample", device="cpu",
                        checkpoint=str(out / "trained.pt"))
    with pytest.raises(Exception, match="do not fit") as info:
        run_compress(spec, parse_recipe(RECIPE), tmp_path, progress=False, log=lambda s: None)
    assert isinstance(info.value, ValueError)


def test_recipe_with_ecsq_and_fisher_importance_shares_below_k_means_rate(tmp_path):
    from netsqueeze.core.ecsq import label_entropy
    from netsqueeze.nn.export import load_compressed

    spec = CompressSpec(model="lenet-300-100", dataset="mnist-sample", device="cpu")
    base = {"train": {"iterations": 40}, "prune": {"sparsity": 0.8, "retrain": {"iterations": 0}}}
    rates = {}
    for name, share in (("kmeans", {"bits": 4}),
                        ("ecsq", {"bits": 4, "method": "ecsq", "rate_delta": 1.0,
                                  "importance": "fisher"})):
        res = run_compress(spec, parse_recipe({**base, "share": share}), tmp_path / name,
                           progress=False, plots=False, log=lambda s: None)
        stage = res["stages"][-1]
        assert ("importance" in stage) == (name == "ecsq")
        back = load_compressed(tmp_path / name / "model.nsq")
        rates[name] = {}
        for layer in ("fc1", "fc2", "fc3"):
            w = getattr(back, layer).weight.detach().numpy()
            kept = w[w != 0]
            assert np.unique(kept).size <= 16
            rates[name][layer] = label_entropy(np.unique(kept, return_inverse=True)[1])
    assert res["recipe"]["share"]["rate_delta"] == 1.0
    for layer in ("fc1", "fc2", "fc3"):
        assert rates["ecsq"][layer] == pytest.approx(rates["kmeans"][layer] - 1.0, abs=0.1)
