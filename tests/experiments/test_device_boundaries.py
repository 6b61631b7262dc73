"""Every numpy/torch boundary works when the model and the data sit on a GPU.

No GPU is needed: :mod:`fake_cuda` makes tensors put on ``"cuda"`` refuse numpy conversion and
mixing with CPU tensors, as real CUDA tensors do. Each test runs a piece of the product with
``device="cuda"`` under it; ``bench/gpu_check.sh`` runs the same on a real GPU.
"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from netsqueeze.data import load
from netsqueeze.experiments import sweeps
from netsqueeze.models import build
from netsqueeze.nn.train import TrainConfig, evaluate, labels_tensor, to_tensor, train

_spec = importlib.util.spec_from_file_location("fake_cuda", Path(__file__).with_name("fake_cuda.py"))
_fake = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fake)
fake_cuda, on_cuda = _fake.fake_cuda, _fake.on_cuda


@pytest.fixture(scope="module")
def sample():
    return load("mnist-sample")


@pytest.fixture
def gpu(monkeypatch):
    with fake_cuda(monkeypatch):
        yield


def test_the_guard_catches_numpy_on_a_gpu_tensor_and_device_mixing(gpu):
    y = torch.as_tensor(np.arange(6), device="cuda")
    assert on_cuda(y) and y.device.type == "cuda"
    with pytest.raises(TypeError, match="cuda:0 device type tensor to numpy"):
        np.asarray(y)  # what sweeps._test_tensors did with labels already on the GPU
    with pytest.raises(TypeError, match="to numpy"):
        y.numpy()
    assert np.asarray(y.cpu()).tolist() == list(range(6))
    model = torch.nn.Linear(3, 2).to("cuda")
    assert model.weight.device.type == "cuda"
    with pytest.raises(RuntimeError, match="same device"):
        model(torch.zeros(4, 3))
    assert model(torch.zeros(4, 3, device="cuda")).device.type == "cuda"


def test_labels_and_images_move_without_numpy(gpu, sample):
    y = labels_tensor(torch.as_tensor(sample.y_test[:50], device="cuda"), "cuda")
    assert y.dtype == torch.long and y.device.type == "cuda"
    y_cpu = labels_tensor(torch.as_tensor(sample.y_test[:50], device="cuda"), "cpu")
    assert not on_cuda(y_cpu) and y_cpu.tolist() == sample.y_test[:50].tolist()
    assert labels_tensor(sample.y_test[:5], "cuda").device.type == "cuda"
    assert to_tensor(sample.x_test[:5], "cuda").device.type == "cuda"


def test_train_evaluate_and_both_sweeps_take_tensors_already_on_the_gpu(gpu, sample):
    torch.manual_seed(0)
    model = build("notebook-cnn")
    train(model, sample.x_train[:400], sample.y_train[:400],
          TrainConfig(iterations=8, batch_size=50, shift=1), device="cuda", progress=False)
    assert next(model.parameters()).device.type == "cuda"
    x = to_tensor(sample.x_test[:200], "cuda")
    y = torch.as_tensor(sample.y_test[:200], device="cuda")  # labels on the GPU, as a run has
    acc = evaluate(model, x, y)
    assert acc == evaluate(model, sample.x_test[:200], sample.y_test[:200])  # arrays too
    thr = sweeps.threshold_sweep(model, x, y, [0.0, 0.05, 0.5], progress=False)
    assert thr.accuracy[0] == acc and thr.n_test == 200
    assert thr.overall_zero_fraction == sorted(thr.overall_zero_fraction)
    clu = sweeps.cluster_sweep(model, x, y, [[8, 8, 8, 8], [2, 2, 2, 2]], progress=False)
    assert clu.distinct_weights[-1] <= 8 and len(clu.accuracy) == 2
    assert next(model.parameters()).device.type == "cuda"  # the sweeps leave the model there


def test_prune_share_and_codebooks_given_as_gpu_tensors(gpu):
    from netsqueeze.nn.prune import PruneConfig, apply_masks_, prune_
    from netsqueeze.nn.share import apply_codebooks_, codebooks, share_weights_

    torch.manual_seed(0)
    model = build("lenet-300-100").to("cuda")
    prune_(model, PruneConfig(sparsity=0.8))
    share_weights_(model, {"bits": 3})
    books = codebooks(model)
    assert model.fc1.weight.device.type == "cuda"
    other = build("lenet-300-100").to("cuda")
    gpu_books = {n: (torch.as_tensor(b.centroids, device="cuda"),
                     torch.as_tensor(b.index, device="cuda"),
                     torch.as_tensor(b.mask, device="cuda")) for n, b in books.items()}
    apply_codebooks_(other, gpu_books)
    assert torch.equal(other.fc1.weight.cpu(), model.fc1.weight.cpu())
    masks = {n: torch.as_tensor(b.mask, device="cuda") for n, b in books.items()}
    third = apply_masks_(build("lenet-300-100").to("cuda"), masks)
    assert int((third.fc1.weight != 0).sum()) == int(books["fc1"].mask.sum())


@pytest.mark.slow
def test_zero_weights_end_to_end_on_the_gpu(gpu, tmp_path):
    from netsqueeze.experiments import zero_weights as zw
    from netsqueeze.models.checkpoint import read_checkpoint

    spec = zw.ZeroWeightsSpec(dataset="mnist-sample", train=TrainConfig(iterations=10, seed=0),
                              threshold_num=3, cluster_steps=2, device="cuda")
    res = zw.run_zero_weights(spec, tmp_path, progress=False, plots=False, log=lambda s: None)
    assert res["device"].startswith("cuda")
    assert len(res["threshold_sweep"]["accuracy"]) == 3
    assert len(res["cluster_sweep"]["accuracy"]) == 2
    json.loads((tmp_path / "results.json").read_text())
    state, arch, _ = read_checkpoint(tmp_path / "model.pt")
    assert arch == "notebook-cnn"
    assert not any(on_cuda(t) for t in state.values())  # saved from the CPU: loads anywhere


@pytest.mark.slow
def test_compress_and_the_file_commands_on_the_gpu(gpu, tmp_path, capsys):
    from netsqueeze.cli.main import main
    from netsqueeze.experiments.pipeline import CompressSpec, run_compress
    from netsqueeze.experiments.recipe import parse_recipe

    recipe = parse_recipe({
        "train": {"iterations": 10, "seed": 0},
        "prune": {"sparsity": {"fc1": 0.9, "fc2": 0.8, "fc3": 0.5}, "steps": 1,
                  "retrain": {"iterations": 4}},
        "share": {"bits": 3},
        "finetune": {"iterations": 4},
    })
    spec = CompressSpec(model="lenet-300-100", dataset="mnist-sample", device="cuda")
    res = run_compress(spec, recipe, tmp_path, progress=False, plots=False, log=lambda s: None)
    assert res["device"].startswith("cuda")
    assert [s["stage"] for s in res["stages"]] == ["train", "prune 1/1", "share", "finetune"]
    nsq = tmp_path / "model.nsq"
    # no --dataset: the one recorded in the file (mnist-sample) is measured
    assert main(["evaluate", str(nsq), "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    assert f"{100 * res['stages'][-1]['accuracy']:.2f} %" in out
    assert "of 1,000 test images of mnist-sample" in out
    assert main(["pack", str(tmp_path), "-o", str(tmp_path / "again.nsq")]) == 0
    assert main(["unpack", str(nsq), "-o", str(tmp_path / "back.pt")]) == 0
