"""The command line: parsing without running, errors without tracebacks, the main job."""

import itertools
import json
import subprocess
import sys

import pytest

from netsqueeze.cli.main import build_parser, main
from netsqueeze.cli.zero_weights import spec_from_args


def test_zero_weights_defaults_are_the_notebook_experiment():
    args = build_parser().parse_args(["zero-weights"])
    spec = spec_from_args(args)
    assert spec.model == "notebook-cnn"
    assert len(spec.thresholds()) == 50
    assert spec.thresholds()[0] == pytest.approx(0.01)
    assert spec.thresholds()[-1] == pytest.approx(0.09)
    assert spec.schedule()[11] == [9, 24, 110, 13]
    assert spec.bias_clusters == 2
    assert spec.train.batch_size == 100
    assert spec.train.optimizer == "adam"
    assert spec.train.loss == "cross-entropy"


def test_flags_reach_the_spec():
    args = build_parser().parse_args([
        "zero-weights", "--iterations", "600", "--loss", "mse", "--seed", "3",
        "--cluster-starts", "8,8,8,8", "--tolerance", "1", "--dataset", "mnist-sample",
        "--schedule", "constant", "--lr", "0.001",
    ])
    spec = spec_from_args(args)
    assert spec.train.iterations == 600 and spec.train.loss == "mse" and spec.train.seed == 3
    assert spec.cluster_starts == (8, 8, 8, 8)
    assert spec.tolerance_pp == 1.0
    assert spec.dataset == "mnist-sample"


def test_bad_flag_values_exit_with_a_message(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["zero-weights", "--cluster-starts", "a,b"])
    assert "expected integers" in capsys.readouterr().err
    assert main(["zero-weights", "--iterations", "-5"]) == 2
    assert "iterations must be >= 0" in capsys.readouterr().err


def test_unknown_dataset_is_a_one_line_error(capsys, tmp_path):
    assert main(["zero-weights", "--dataset", "cifar10", "-o", str(tmp_path), "-q"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'cifar10'" in err
    assert "Traceback" not in err


def test_plot_redraws_from_json_and_rejects_bad_files(tmp_path, capsys):
    assert main(["plot", str(tmp_path / "missing.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["plot", str(bad)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_offline_default_runs_on_the_sample_and_says_so(tmp_path):
    """No data dir, no network: the main job runs on the bundled sample with a notice."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "netsqueeze", "zero-weights", "--iterations", "30",
         "--thresholds", "0.01", "0.09", "4", "--cluster-steps", "2", "-q", "-o", str(out)],
        check=False, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "sample" in proc.stdout and "full MNIST" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["name"] == "mnist-sample"
    assert results["n_test_images"] == 1000
    assert "--data-dir" in results["dataset"]["note"]
    # the figures can be redrawn from the JSON alone
    for f in out.glob("*.png"):
        f.unlink()
    assert main(["plot", str(out / "results.json")]) == 0
    assert len(list(out.glob("*.png"))) == 3


@pytest.mark.slow
@pytest.mark.mnist
def test_main_job_on_full_mnist(tmp_path, mnist_dir):
    out = tmp_path / "run"
    code = main(["zero-weights", "--data-dir", str(mnist_dir), "--iterations", "200", "-q",
                 "-o", str(out)])
    assert code == 0
    r = json.loads((out / "results.json").read_text())
    assert r["dataset"]["name"] == "mnist"
    assert r["n_test_images"] == 10_000
    thr = r["threshold_sweep"]
    assert len(thr["thresholds"]) == 50 and len(thr["accuracy"]) == 50
    for name in thr["layers"]:
        z = thr["zero_fraction"][name]
        assert all(b >= a for a, b in itertools.pairwise(z)), f"{name} not monotone"
    clu = r["cluster_sweep"]
    assert len(clu["accuracy"]) == 15 and clu["clusters"][11] == [9, 24, 110, 13]
    assert r["train"]["accuracy"] > 0.9  # 200 iterations already learn MNIST
    for f in ("zero_fraction.png", "threshold_accuracy.png", "cluster_accuracy.png"):
        assert (out / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
