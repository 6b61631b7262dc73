"""unpack --format safetensors / onnx: round trips on the built-in networks and a custom one."""

import json
import re
import sys

import pytest
import torch
from torch import nn

from netsqueeze.core.container import read_nsq
from netsqueeze.data import load
from netsqueeze.models import MODELS, build
from netsqueeze.nn.export import load_compressed, save_compressed
from netsqueeze.nn.formats import compare_onnx, export_onnx, load_safetensors
from netsqueeze.nn.prune import PruneConfig, prune_
from netsqueeze.nn.share import ShareConfig, share_weights_
from netsqueeze.nn.train import TrainConfig, train
from tests.cli.clitools import assert_one_line_error, cli

pytest.importorskip("safetensors")
pytest.importorskip("onnxruntime")


def compressed_file(arch, path, ds=None, iterations=0, seed=0):
    """A pruned + shared built-in network (trained a little when ``ds`` is given) as .nsq."""
    torch.manual_seed(seed)
    model = build(arch)
    if ds is not None and iterations:
        train(model, ds.x_train, ds.y_train, TrainConfig(iterations=iterations, seed=seed),
              device="cpu", progress=False)
    prune_(model, PruneConfig(sparsity=0.8))
    share_weights_(model, ShareConfig(conv_bits=4, fc_bits=3))
    save_compressed(model, path, arch=arch)
    return path


class Custom(nn.Module):
    """Not a built-in: batch norm, a residual add, GELU, average pooling, two heads summed."""

    input_shape = (1, 28, 28)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.pool = nn.AvgPool2d(4)
        self.fc = nn.Linear(6 * 7 * 7, 10)
        self.skip = nn.Linear(28 * 28, 10, bias=False)

    def forward(self, x):
        h = nn.functional.gelu(self.bn(self.conv(x)))
        h = h + self.conv2(h)
        return self.fc(self.pool(h).flatten(1)) + self.skip(x.flatten(1))


@pytest.mark.parametrize("arch", list(MODELS))
def test_safetensors_round_trip_on_builtins(arch, tmp_path, capsys):
    src = compressed_file(arch, tmp_path / f"{arch}.nsq")
    code, out, err = cli(capsys, "unpack", src, "--format", "safetensors", "--check")
    assert code == 0, err
    dest = tmp_path / f"{arch}.safetensors"
    assert f"wrote {dest}" in out and "every tensor equal" in out
    tensors, meta = load_safetensors(dest)
    decoded = load_compressed(src).state_dict()
    assert tensors.keys() == decoded.keys()
    for k, v in decoded.items():
        assert tensors[k].dtype == v.dtype and torch.equal(tensors[k], v), k
    assert meta["arch"] == arch and meta["format"] == "netsqueeze-state-dict"
    model = build(arch)
    model.load_state_dict(tensors)  # the file is a plain state_dict of the architecture


def test_onnx_round_trip_on_the_sample(tmp_path, capsys):
    ds = load("mnist-sample")
    src = compressed_file("lenet-300-100", tmp_path / "lenet.nsq", ds, iterations=60)
    code, out, err = cli(capsys, "unpack", src, "--format", "onnx", "--check",
                         "--dataset", "mnist-sample")
    assert code == 0, err
    m = re.search(r"top-1 identical on ([\d,]+) of ([\d,]+); max abs logit difference (\S+)",
                  out)
    assert m, out
    assert m.group(1) == m.group(2) == "1,000"
    assert float(m.group(3)) < 1e-4
    assert "ONNX opset" in out


def test_custom_model_round_trips(tmp_path, capsys):
    torch.manual_seed(0)
    model = Custom()
    ds = load("mnist-sample")
    train(model, ds.x_train, ds.y_train, TrainConfig(iterations=20, seed=0), device="cpu",
          progress=False)
    prune_(model, PruneConfig(sparsity=0.5))
    src = tmp_path / "custom.nsq"
    save_compressed(model, src)
    assert read_nsq(src).header.get("arch") not in MODELS
    # safetensors needs no architecture
    code, _out, err = cli(capsys, "unpack", src, "--format", "safetensors", "--check")
    assert code == 0, err
    tensors, _ = load_safetensors(tmp_path / "custom.safetensors")
    decoded = load_compressed(src, model=Custom())
    for k, v in decoded.state_dict().items():
        assert torch.equal(tensors[k], v), k
    # the command cannot build the network, and says so in one line
    code, _, err = cli(capsys, "unpack", src, "--format", "onnx")
    assert_one_line_error(code, err, "unpack", "cannot build")
    assert not (tmp_path / "custom.onnx").exists()
    # in Python, with an instance, it exports and matches on every test image
    info = export_onnx(decoded, tmp_path / "custom.onnx")
    c = compare_onnx(decoded, tmp_path / "custom.onnx", ds.x_test)
    assert c["n"] == 1000 and c["top1_agree"] == 1000, c
    assert c["max_abs_diff"] < 1e-4
    assert info["bytes"] == (tmp_path / "custom.onnx").stat().st_size


class Branchy(nn.Module):
    """Control flow on the data: torch.export cannot capture it."""

    input_shape = (4,)

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum().item() > 0:
            return self.fc(x)
        return -self.fc(x)


def test_unexportable_model_is_one_clear_line(tmp_path):
    with pytest.raises(ValueError) as info:
        export_onnx(Branchy(), tmp_path / "b.onnx")
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert msg.startswith("cannot export Branchy to ONNX")
    assert not (tmp_path / "b.onnx").exists()
    with pytest.raises(ValueError, match="no input_shape"):
        export_onnx(nn.Linear(3, 2), tmp_path / "l.onnx")


def test_missing_package_names_the_extra(tmp_path, monkeypatch, capsys):
    src = compressed_file("lenet-300-100", tmp_path / "m.nsq")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    code, _, err = cli(capsys, "unpack", src, "--format", "safetensors")
    assert_one_line_error(code, err, "unpack", "netsqueeze[export]")


def test_pt_stays_the_default(tmp_path, capsys):
    src = compressed_file("lenet5", tmp_path / "l5.nsq")
    code, _out, _ = cli(capsys, "unpack", src)
    assert code == 0 and (tmp_path / "l5.pt").is_file()
    ckpt = torch.load(tmp_path / "l5.pt", weights_only=True)
    assert ckpt["arch"] == "lenet5"
    assert json.dumps(ckpt["meta"])  # plain data


@pytest.fixture(scope="module")
def mnist(mnist_dir):
    return load("mnist", data_dir=mnist_dir, download=False)


@pytest.mark.slow
@pytest.mark.mnist
@pytest.mark.parametrize("arch", list(MODELS))
def test_onnx_matches_pytorch_on_all_of_mnist(arch, tmp_path, capsys, mnist, mnist_dir):
    """Trained a little on full MNIST, compressed, exported: same top-1 on all 10,000 images."""
    src = compressed_file(arch, tmp_path / f"{arch}.nsq", mnist, iterations=60)
    code, out, err = cli(capsys, "unpack", src, "--format", "onnx", "--check",
                         "--dataset", "mnist", "--data-dir", mnist_dir, "--no-download")
    assert code == 0, err
    assert "top-1 identical on 10,000 of 10,000" in out, out
    diff = float(re.search(r"max abs logit difference (\S+)", out).group(1))
    assert diff < 1e-4
    print(out)
