"""--model SPEC, --model-args, --checkpoint/--trust-checkpoint on every command, on a user's
model file and an npz data set; every wrong input is one line, exit 2, nothing written."""

import json
import textwrap

import numpy as np
import pytest
import torch

from netsqueeze.models.factory import build_model, resolve_factory
from netsqueeze.nn.export import load_compressed, save_compressed
from netsqueeze.nn.prune import prune_
from netsqueeze.nn.share import share_weights_
from tests.cli.clitools import cli

USER_FILE = textwrap.dedent('''
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, features=20, classes=3, hidden=16):
            super().__init__()
            self.embed = nn.Parameter(torch.randn(features, hidden) * 0.3)
            self.gru = nn.GRU(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, classes)

        def forward(self, x):
            h = torch.tanh(x @ self.embed).unsqueeze(1)
            return self.out(self.gru(h)[0][:, -1])

    def make(**kw):
        return Net(**kw)

    def broken():
        raise RuntimeError("no GPU here")

    NOT_CALLABLE = 3
''')


def one_line_error(code, err, command, text):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"netsqueeze {command}: error: ")
    assert text in lines[0], lines[0]


@pytest.fixture
def user(tmp_path):
    src = tmp_path / "usernet.py"
    src.write_text(USER_FILE)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 20)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    np.savez(tmp_path / "d.npz", x_train=x[:40], y_train=y[:40], x_test=x[40:], y_test=y[40:])
    torch.manual_seed(0)
    model = build_model(f"{src}:Net")
    prune_(model, 0.8)
    share_weights_(model, 4)
    path = tmp_path / "m.nsq"
    save_compressed(model, path, factory=f"{src}:Net")
    return tmp_path, src, model.eval(), path, torch.from_numpy(x[40:])


def test_specs_resolve_every_form(user):
    tmp, src, *_ = user
    assert resolve_factory("lenet5").__name__ == "LeNet5"
    assert build_model("tests.nn.zoo:RawParams", {"features": 7}).w1.shape == (7, 32)
    assert build_model(f"{src}:make", {"classes": 5}).out.out_features == 5
    for spec, text in [
        ("nope", "unknown model 'nope'"),
        ("no_such_pkg_xyz:Net", "cannot import module"),
        (f"{src}:Missing", "has no attribute 'Missing'"),
        (f"{src}:NOT_CALLABLE", "not a class or function"),
        (f"{src}:broken", "RuntimeError: no GPU here"),
        (f"{tmp}/absent.py:Net", "no such file"),
    ]:
        with pytest.raises((ValueError, FileNotFoundError), match=text):
            build_model(spec)


def test_evaluate_unpack_inspect_with_model(user, capsys):
    tmp, src, model, path, x_test = user
    code, out, err = cli(capsys, "evaluate", path, "--model", f"{src}:Net", "--dataset",
                         f"npz:{tmp / 'd.npz'}")
    assert code == 0, err
    assert "top-1 accuracy" in out and "of 20 test images" in out
    code, out, err = cli(capsys, "unpack", path, "-o", tmp / "m.pt", "--model", f"{src}:Net")
    assert code == 0, err
    state = torch.load(tmp / "m.pt", weights_only=True)["state_dict"]
    fresh = build_model(f"{src}:Net")
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(fresh.eval()(x_test), model(x_test))
    code, out, err = cli(capsys, "inspect", path, "--model", f"{src}:Net", "--no-baseline")
    assert code == 0, err
    assert "gru.weight_ih_l0" in out and "compressed" in out
    assert "out.bias" in out and "1-D" in out
    # without --model a file of a custom model says which factory it records
    code, out, err = cli(capsys, "evaluate", path, "--dataset", f"npz:{tmp / 'd.npz'}")
    one_line_error(code, err, "evaluate", "give --model")
    assert f"{src}:Net" in err


@pytest.mark.parametrize("args, text", [
    (["--model", "nope"], "unknown model 'nope'"),
    (["--model", "{src}:Missing"], "no attribute 'Missing'"),
    (["--model", "{src}:Net", "--model-args", "{bad json"], "not valid JSON"),
    (["--model", "{src}:Net", "--model-args", '{"hidden": 8}'], "shape"),
    (["--model", "{src}:broken"], "no GPU here"),
    (["--model", "lenet5"], "no tensor 'conv1.weight'"),
])
def test_wrong_model_is_one_line_and_writes_nothing(user, capsys, args, text):
    tmp, src, _, path, _ = user
    args = [a.replace("{src}", str(src)) for a in args]
    out = tmp / "out.pt"
    code, _, err = cli(capsys, "unpack", path, "-o", out, *args)
    one_line_error(code, err, "unpack", text)
    assert not out.exists()


def test_pack_checkpoints_plain_netsqueeze_and_trusted_pickle(user, capsys):
    tmp, src, model, _, x_test = user
    plain = build_model(f"{src}:Net")
    torch.save(plain.state_dict(), tmp / "plain.pt")
    torch.save(model, tmp / "whole.pt")  # a whole pickled model (shared machinery included)
    code, _out, err = cli(capsys, "pack", tmp / "plain.pt", "-o", tmp / "p.nsq", "--model",
                         f"{src}:Net")
    assert code == 0, err
    back = load_compressed(tmp / "p.nsq", factory=f"{src}:Net")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(),
                                                 plain.state_dict().values(), strict=True))
    code, _, err = cli(capsys, "pack", tmp / "whole.pt", "-o", tmp / "w.nsq", "--model",
                       f"{src}:Net")
    one_line_error(code, err, "pack", "--trust-checkpoint")
    assert not (tmp / "w.nsq").exists()
    code, _, err = cli(capsys, "pack", tmp / "whole.pt", "-o", tmp / "w.nsq", "--model",
                       f"{src}:Net", "--trust-checkpoint")
    assert code == 0, err
    with torch.no_grad():
        assert torch.equal(load_compressed(tmp / "w.nsq", factory=f"{src}:Net")(x_test),
                           model(x_test))
    # a checkpoint of another network: names the tensor, nothing written
    torch.save(build_model("lenet5").state_dict(), tmp / "other.pt")
    code, _, err = cli(capsys, "pack", tmp / "other.pt", "-o", tmp / "o.nsq", "--model",
                       f"{src}:Net")
    one_line_error(code, err, "pack", "do not fit")
    assert not (tmp / "o.nsq").exists()


@pytest.mark.slow
def test_compress_a_user_model_on_npz_features(user, capsys):
    tmp, src, *_ = user
    recipe = tmp / "r.toml"
    recipe.write_text(textwrap.dedent('''
        [train]
        iterations = 30
        [prune]
        sparsity = { "gru.*" = 0.5, "*" = 0.7 }
        steps = 1
        [prune.retrain]
        iterations = 10
        [share]
        fc_bits = 4
        [finetune]
        iterations = 10
    '''))
    out = tmp / "run"
    code, text, err = cli(capsys, "compress", "--model", f"{src}:Net", "--model-args",
                          '{"hidden": 12}', "--dataset", f"npz:{tmp / 'd.npz'}", "--recipe",
                          recipe, "-o", out, "-q")
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["normalization"].startswith("float32 as stored")
    assert results["dataset"]["image_shape"] == [20]
    layers = {r["name"]: r for r in results["pruning"]["layers"]}
    assert layers["gru.weight_hh_l0"]["sparsity"] == pytest.approx(0.5, abs=0.01)
    assert layers["embed"]["sparsity"] == pytest.approx(0.7, abs=0.01)
    code, text, err = cli(capsys, "evaluate", out / "model.nsq", "--model", f"{src}:Net",
                          "--model-args", '{"hidden": 12}', "--dataset", f"npz:{tmp / 'd.npz'}")
    assert code == 0, err
    acc = float(text.split("top-1 accuracy ")[1].split(" %")[0]) / 100
    assert acc == pytest.approx(results["summary"]["final_accuracy"], abs=1e-9)
