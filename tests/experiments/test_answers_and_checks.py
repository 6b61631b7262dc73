"""How the answers are chosen and worded, and what is checked before any expensive work."""

import numpy as np
import pytest
import torch

from netsqueeze.experiments import pipeline, sweeps
from netsqueeze.experiments import zero_weights as zw
from netsqueeze.experiments.report import ratio_words
from netsqueeze.nn.train import TrainConfig


def _thr(accuracy, thresholds=None, baseline=0.99):
    n = len(accuracy)
    ts = thresholds or [0.01 * (i + 1) for i in range(n)]
    zf = [0.1 * (i + 1) for i in range(n)]
    return sweeps.ThresholdSweepResult(
        thresholds=ts, layers=["a"], layer_weights=[10], zero_fraction={"a": zf},
        overall_zero_fraction=zf, bias_zero_fraction=[0.0] * n, accuracy=list(accuracy),
        baseline_accuracy=baseline, n_test=1000)


def _clu(baseline=0.99):
    return sweeps.ClusterSweepResult(
        layers=["a"], schedule=[[8], [4]], clusters=[[8], [4]], distinct_weights=[8, 4],
        distinct_biases=[2, 2], accuracy=[0.99, 0.97], inertia=[[0.1], [0.2]],
        baseline_accuracy=baseline, baseline_distinct_weights=9_990, n_test=1000)


def test_first_crossing_stops_at_the_first_threshold_outside_the_tolerance():
    acc = [0.990, 0.988, 0.984, 0.986, 0.970]  # 0.984 is 0.6 pp below 0.99; 0.986 is back in
    ts = [0.01, 0.02, 0.03, 0.04, 0.05]
    assert sweeps.select_first_crossing(acc, ts, 0.99, 0.005) == 1
    assert sweeps.select_max_zeroed_within_tolerance(acc, [1, 2, 3, 4, 5], 0.99, 0.005) == 3
    assert sweeps.select_first_crossing(acc, ts, 0.99, 0.0) == 0
    assert sweeps.select_first_crossing(acc, ts, 0.99, 0.1) == 4
    assert sweeps.select_first_crossing([0.9, 0.99], ts[:2], 0.99, 0.005) is None
    # the thresholds' order decides, not the list's
    assert sweeps.select_first_crossing(acc[::-1], ts[::-1], 0.99, 0.005) == 3
    with pytest.raises(ValueError):
        sweeps.select_first_crossing([0.9], [0.1, 0.2], 0.9)


def test_answers_use_the_first_crossing_and_keep_the_other_figure():
    spec = zw.ZeroWeightsSpec(tolerance_pp=0.5)
    a = zw._answers(_thr([0.990, 0.988, 0.984, 0.986, 0.970]), _clu(), spec, 10)
    assert a["zero"]["index"] == 1 and a["zero"]["threshold"] == 0.02
    assert a["zero_max_anywhere"]["index"] == 3
    by_tol = {r["tolerance_pp"]: r["threshold"] for r in a["zero_by_tolerance"]}
    assert by_tol[0.5] == 0.02 and by_tol[0.0] == 0.01 and by_tol[1.0] == 0.04
    c = a["clusters_within_tolerance"]
    assert c["baseline_distinct_weights"] == 9_990 and c["reduction"] == 9_990 / 8


def test_ratios_are_worded_the_right_way_round():
    assert ratio_words(41.33) == "41.3x smaller"
    assert ratio_words(1 / 1.08) == "1.08x larger"
    assert ratio_words(1.0) == "1.0x smaller"
    assert ratio_words(2.0, 2) == "2.00x smaller"


def test_a_model_near_chance_is_flagged():
    assert zw.near_chance(0.05, 10) and "near chance" in zw.near_chance(0.05, 10)
    assert zw.near_chance(0.19, 10)
    assert zw.near_chance(0.95, 10) is None
    assert zw.near_chance(0.6, 2) and zw.near_chance(0.9, 2) is None  # binary: below 75 %


@pytest.fixture
def no_data(monkeypatch):
    """Loading data (the first expensive step) fails the test."""
    def boom(*a, **k):
        raise AssertionError("data was loaded before the settings were checked")

    monkeypatch.setattr(zw, "load_data", boom)
    monkeypatch.setattr(pipeline, "load_data", boom)


def test_zero_weights_settings_are_checked_before_loading_data(no_data, tmp_path):
    cases = [
        ({"cluster_starts": (30, 100, 500)}, "3 counts but notebook-cnn has 4 layers"),
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"train": TrainConfig(iterations=0)}, "iterations must be >= 1"),
        ({"cluster_starts": (30, 0, 500, 50)}, "cluster_starts must all be >= 1"),
        ({"device": "tpu"}, "unknown device"),
    ]
    for kw, text in cases:
        with pytest.raises(ValueError, match=text):
            zw.run_zero_weights(zw.ZeroWeightsSpec(**kw), tmp_path, progress=False)


def test_cli_checks_cluster_starts_and_recipes_before_loading_data(no_data, tmp_path, capsys):
    from netsqueeze.cli.main import main

    assert main(["zero-weights", "--cluster-starts", "5,5", "-o", str(tmp_path / "z")]) == 2
    assert "2 counts but notebook-cnn has 4 layers" in capsys.readouterr().err
    assert main(["zero-weights", "--iterations", "0", "-o", str(tmp_path / "z")]) == 2
    assert "iterations must be >= 1" in capsys.readouterr().err
    recipe = tmp_path / "r.toml"
    recipe.write_text("[prune]\nsparsity = { fc9 = 0.5 }\n")
    assert main(["compress", "--model", "lenet-300-100", "--recipe", str(recipe),
                 "-o", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "fc9" in err and len(err.strip().splitlines()) == 1
    assert main(["compress", "--model", "vgg99", "-o", str(tmp_path / "c")]) == 2
    assert "unknown model 'vgg99'" in capsys.readouterr().err


def test_weight_histograms_hold_every_weight_outside_the_trained_range():
    w = np.array([[0.0, 0.5, -0.2], [1.7, -2.5, 0.1]], np.float32)  # beyond the trained +-1
    d = pipeline._distribution({"fc": ("fc", w)}, {"fc": [-1.0, 1.0]})["fc"]
    assert sum(d["hist"]) == d["nonzero"] == 5
    assert d["edges"][0] <= -2.5 and d["edges"][1] >= 1.7
    inside = pipeline._distribution({"fc": ("fc", w / 10)}, {"fc": [-1.0, 1.0]})["fc"]
    assert inside["edges"] == [-1.0, 1.0] and sum(inside["hist"]) == 5  # common bins kept


def test_table_and_inspect_apply_the_paper_formula_to_the_same_weights(tmp_path):
    import copy

    from netsqueeze.experiments.recipe import parse_recipe
    from netsqueeze.models import build
    from netsqueeze.nn.export import compressed_report, save_compressed
    from netsqueeze.nn.prune import PruneConfig, prune_
    from netsqueeze.nn.share import ShareConfig, share_weights_, strip_

    torch.manual_seed(0)
    model = build("lenet-300-100")
    prune_(model, PruneConfig(sparsity={"fc1": 0.92, "fc2": 0.9}))
    share_weights_(model, ShareConfig(bits=4))
    recipe = parse_recipe({"share": {"bits": 4}, "storage": {"fc_gap_bits": 5}})
    table = {r["layer"]: r for r in pipeline.layer_table(model, recipe)}
    save_compressed(strip_(copy.deepcopy(model)), tmp_path / "m.nsq", gap_bits={"fc": 5})
    report = compressed_report(tmp_path / "m.nsq", baseline=False)
    file_layers = {x["name"]: x for x in report["layers"]}
    for name in ("fc1", "fc2"):  # sparse with a codebook in the file, as the paper assumes
        assert file_layers[name]["positions"] == "sparse"
        assert file_layers[name]["paper_bytes"] == table[name]["estimated_bytes"]
    # biases are counted in neither
    assert report["totals"]["paper_bytes"] == sum(x["paper_bytes"] for x in report["layers"])
