"""pack / unpack / inspect / evaluate on real files, through the command line's error handling."""

import copy
import json
import re

import pytest
import torch

from netsqueeze.cli import evaluate, inspect, main, pack, unpack
from netsqueeze.core.container import read_nsq
from netsqueeze.data import load
from netsqueeze.models import build
from netsqueeze.models.checkpoint import load_checkpoint, save_checkpoint
from netsqueeze.nn.export import load_compressed, save_compressed
from netsqueeze.nn.prune import PruneConfig, prune_
from netsqueeze.nn.share import ShareConfig, share_weights_, strip_
from netsqueeze.nn.train import evaluate as accuracy
from tests.cli.clitools import assert_one_line_error, cli

OURS = (pack, unpack, inspect, evaluate)


@pytest.fixture(autouse=True)
def commands(monkeypatch):
    """Register the file commands (once, whether or not main already lists them)."""
    extra = tuple(m for m in OURS if m not in main.COMMANDS)
    monkeypatch.setattr(main, "COMMANDS", main.COMMANDS + extra)


def compressed_lenet(seed=0):
    torch.manual_seed(seed)
    model = build("lenet-300-100")
    prune_(model, PruneConfig(sparsity=0.9))
    share_weights_(model, ShareConfig(fc_bits=5))
    return model


@pytest.fixture
def checkpoint(tmp_path):
    """A netsqueeze checkpoint of a stripped pruned + shared LeNet-300-100."""
    model = strip_(compressed_lenet())
    path = tmp_path / "model.pt"
    save_checkpoint(model, path, arch="lenet-300-100", meta={"seed": 0, "log": [1.0] * 50})
    return path, model


@pytest.fixture
def nsq(tmp_path):
    model = compressed_lenet()
    path = tmp_path / "lenet.nsq"
    save_compressed(model, path)
    return path, strip_(copy.deepcopy(model))


def test_pack_a_checkpoint(checkpoint, tmp_path, capsys):
    src, model = checkpoint
    out = tmp_path / "out.nsq"
    code, stdout, _ = cli(capsys, "pack", src, "-o", out)
    assert code == 0
    size = out.stat().st_size
    assert f"{size:,} bytes" in stdout
    ratio = 266_610 * 4 / size
    assert ratio > 20
    assert f"{ratio:.1f}x smaller than dense" in stdout
    loaded = load_compressed(out)
    for k, t in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], t), k
    header = read_nsq(out).header
    assert header["arch"] == "lenet-300-100"
    assert header["meta"]["seed"] == 0 and "log" not in header["meta"]  # small entries only
    assert header["meta"]["storage"] == {"conv_gap_bits": 8, "fc_gap_bits": 5}


def test_pack_a_run_folder_uses_its_gap_bits_unless_overridden(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    save_checkpoint(strip_(compressed_lenet()), run / "compressed.pt", arch="lenet-300-100",
                    meta={"storage": {"conv_gap_bits": 6, "fc_gap_bits": 3}})
    out = tmp_path / "run.nsq"
    assert cli(capsys, "pack", run, "-o", out)[0] == 0
    assert read_nsq(out)["fc1.weight"].gap_bits == 3
    assert cli(capsys, "pack", run, "-o", out, "--fc-gap-bits", "4")[0] == 0
    assert read_nsq(out)["fc1.weight"].gap_bits == 4
    assert read_nsq(out).header["meta"]["storage"] == {"conv_gap_bits": 6, "fc_gap_bits": 4}


def test_pack_float16_codebooks_is_smaller(checkpoint, tmp_path, capsys):
    src, _ = checkpoint
    assert cli(capsys, "pack", src, "-o", tmp_path / "a.nsq")[0] == 0
    assert cli(capsys, "pack", src, "-o", tmp_path / "h.nsq", "--codebook-dtype", "float16")[0] == 0
    assert (tmp_path / "h.nsq").stat().st_size < (tmp_path / "a.nsq").stat().st_size


def test_pack_plain_state_dicts_and_unstripped_checkpoints(tmp_path, capsys):
    live = compressed_lenet()  # pruning and sharing machinery still attached
    plain = tmp_path / "plain.pt"
    torch.save(live.state_dict(), plain)
    code, _, err = cli(capsys, "pack", plain, "-o", tmp_path / "x.nsq")
    assert_one_line_error(code, err, "pack", "give --model")
    assert cli(capsys, "pack", plain, "-o", tmp_path / "x.nsq", "--model", "lenet-300-100")[0] == 0
    loaded = load_compressed(tmp_path / "x.nsq")
    expected = strip_(copy.deepcopy(live)).state_dict()
    for k, t in expected.items():
        assert torch.equal(loaded.state_dict()[k], t), k


def test_pack_bad_sources_are_one_line_errors(checkpoint, tmp_path, capsys):
    src, _ = checkpoint
    out = tmp_path / "x.nsq"
    code, _, err = cli(capsys, "pack", src, "-o", out, "--model", "lenet5")
    assert_one_line_error(code, err, "pack", "do not fit the lenet5 network")
    code, _, err = cli(capsys, "pack", src, "-o", out, "--model", "resnet")
    assert_one_line_error(code, err, "pack", "unknown model 'resnet'")
    code, _, err = cli(capsys, "pack", tmp_path / "missing.pt", "-o", out)
    assert_one_line_error(code, err, "pack", "no such checkpoint file")
    code, _, err = cli(capsys, "pack", tmp_path, "-o", out)  # a folder without compressed.pt
    assert_one_line_error(code, err, "pack", "compressed.pt")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    code, _, err = cli(capsys, "pack", junk, "-o", out)
    assert_one_line_error(code, err, "pack", "not a PyTorch checkpoint")
    assert not out.exists()


def test_unpack_writes_a_loadable_checkpoint(nsq, tmp_path, capsys):
    path, model = nsq
    out = tmp_path / "back.pt"
    code, stdout, _ = cli(capsys, "unpack", path, "-o", out)
    assert code == 0 and str(out) in stdout
    restored, meta = load_checkpoint(out)
    assert meta["arch"] == "lenet-300-100"
    fresh = build("lenet-300-100")
    fresh.load_state_dict(torch.load(out)["state_dict"])
    for k, t in model.state_dict().items():
        assert torch.equal(restored.state_dict()[k], t), k
        assert torch.equal(fresh.state_dict()[k], t), k
    # default output name: the .nsq file with the suffix .pt
    assert cli(capsys, "unpack", path)[0] == 0
    assert path.with_suffix(".pt").is_file()


def test_unpack_a_custom_architecture_keeps_the_tensors(tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    save_compressed(model, tmp_path / "c.nsq")
    code, stdout, _ = cli(capsys, "unpack", tmp_path / "c.nsq", "-o", tmp_path / "c.pt")
    assert code == 0 and "model=" in stdout
    skeleton = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    restored, _ = load_checkpoint(tmp_path / "c.pt", model=skeleton)
    for k, t in model.state_dict().items():
        assert torch.equal(restored.state_dict()[k], t), k


def test_inspect_table_and_json(nsq, capsys):
    path, _ = nsq
    size = path.stat().st_size
    code, text, _ = cli(capsys, "inspect", path)
    assert code == 0
    for needle in ("fc1", "fc2", "fc3", "total", "kept %", "bits/gap", "Huffman %",
                   f"{size:,} bytes", "vs dense", "vs gzip", "entropy bound", "paper's formula"):
        assert needle in text, needle
    header = next(line for line in text.splitlines() if line.startswith("layer"))
    fc1 = next(line for line in text.splitlines() if line.startswith("fc1 "))
    assert len(fc1) <= len(header) + 10  # aligned columns
    code, text, _ = cli(capsys, "inspect", path, "--no-baseline")
    assert code == 0 and "vs gzip" not in text
    code, text, _ = cli(capsys, "inspect", path, "--json")
    assert code == 0
    report = json.loads(text)
    t = report["totals"]
    assert report["file_bytes"] == t["file_bytes"] == size
    assert sum(x["bytes"] for x in report["layers"]) + t["overhead_bytes"] == size
    assert t["ratio_to_dense"] > 20
    assert report["baseline"]["gzip_bytes"] > size


def test_evaluate_on_the_offline_sample(nsq, capsys):
    path, model = nsq
    code, text, _ = cli(capsys, "evaluate", path, "--dataset", "mnist-sample")
    assert code == 0
    ds = load("mnist-sample")
    acc = accuracy(model, ds.x_test, ds.y_test)
    assert f"{100 * acc:.2f} %" in text
    assert "of 1,000 test images of mnist-sample" in text
    assert ds.note in text


def test_evaluate_without_dataset_uses_the_default_and_says_so(nsq, capsys):
    path, _ = nsq  # a file that records no dataset
    code, text, _ = cli(capsys, "evaluate", path)
    assert code == 0
    assert "the file records no dataset" in text and "--dataset" in text
    assert "test images of mnist-sample" in text  # no full MNIST here: the sample, with its note


def test_evaluate_rejects_an_unknown_device(nsq, capsys):
    path, _ = nsq
    code, _, err = cli(capsys, "evaluate", path, "--device", "gpu0")
    assert_one_line_error(code, err, "evaluate", "unknown device 'gpu0'")


def test_evaluate_needs_a_known_architecture(tmp_path, capsys):
    save_compressed(torch.nn.Linear(784, 10), tmp_path / "c.nsq")
    code, _, err = cli(capsys, "evaluate", tmp_path / "c.nsq", "--dataset", "mnist-sample")
    assert_one_line_error(code, err, "evaluate", "load_compressed(path, model=")


@pytest.mark.parametrize("command", ["inspect", "evaluate", "unpack"])
def test_bad_files_are_one_line_errors(command, nsq, tmp_path, capsys):
    path, _ = nsq
    data = path.read_bytes()
    extra = ["--dataset", "mnist-sample"] if command == "evaluate" else []
    cases = {
        "missing.nsq": (None, "no .nsq file"),
        "text.nsq": (b"hello, this is not a compressed model\n", "not an .nsq file"),
        "truncated.nsq": (data[: len(data) // 2], "truncated"),
        "tiny.nsq": (data[:12], "truncated"),
        "flipped.nsq": (data[:100] + bytes([data[100] ^ 1]) + data[101:], "checksum"),
    }
    for name, (content, text) in cases.items():
        bad = tmp_path / name
        if content is not None:
            bad.write_bytes(content)
        code, _, err = cli(capsys, command, bad, *extra)
        assert_one_line_error(code, err, command, text)


def test_parsers_are_testable_without_running(tmp_path):
    import argparse

    parser = argparse.ArgumentParser(prog="netsqueeze")
    sub = parser.add_subparsers(dest="command", required=True)
    for mod in OURS:
        mod.add_parser(sub)
    args = parser.parse_args(["pack", "src", "-o", "x.nsq", "--conv-gap-bits", "7"])
    assert args.conv_gap_bits == 7 and args.fc_gap_bits is None and args.model is None
    assert pack.gap_bits_from(args, {"storage": {"fc_gap_bits": 2}}) == {"conv": 7, "fc": 2}
    assert pack.gap_bits_from(args, {}) == {"conv": 7, "fc": 5}
    with pytest.raises(SystemExit):
        parser.parse_args(["pack", "src", "-o", "x.nsq", "--fc-gap-bits", "17"])
    args = parser.parse_args(["evaluate", "f.nsq"])
    assert args.dataset is None and args.download and args.device == "auto"
    args = parser.parse_args(["inspect", "f.nsq", "--json", "--no-baseline"])
    assert args.json and not args.baseline


def test_inspect_names_the_class_of_a_custom_model(tmp_path, capsys):
    save_compressed(torch.nn.Sequential(torch.nn.Linear(8, 4)), tmp_path / "c.nsq")
    code, text, _ = cli(capsys, "inspect", tmp_path / "c.nsq", "--no-baseline")
    assert code == 0
    first = text.splitlines()[0]
    assert "architecture None" not in first
    assert "model class torch.nn.modules.container.Sequential (no architecture name)" in first
    save_compressed(torch.nn.Sequential(torch.nn.Linear(8, 4)), tmp_path / "n.nsq", arch="mine")
    first = cli(capsys, "inspect", tmp_path / "n.nsq", "--no-baseline")[1].splitlines()[0]
    assert "architecture mine (class torch.nn.modules.container.Sequential)" in first


def _write_nsq(path, records, header):
    from netsqueeze.core.container import write_nsq

    write_nsq(path, records, header=header)
    return path


def test_inspect_escapes_control_characters_from_the_file(tmp_path, capsys):
    import numpy as np

    from netsqueeze.core.container import encode_tensor

    esc = "\x1b[2J\x1b]0;owned\x07"
    path = _write_nsq(
        tmp_path / "esc.nsq",
        [encode_tensor(f"{esc}fc.weight", np.arange(12, dtype=np.float32).reshape(3, 4))],
        {"format": "netsqueeze-model", "arch": f"net{esc}", "model_class": f"x.{esc}",
         "netsqueeze_version": f"1{esc}\u202e", "layers": {f"{esc}fc": "fc"}},
    )
    for extra in ([], ["--json"]):
        code, text, err = cli(capsys, "inspect", path, "--no-baseline", *extra)
        assert code == 0, err
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "\\x1b[2J" in text or "\\u001b[2J" in text  # shown, escaped
    code, text, _ = cli(capsys, "inspect", path, "--no-baseline")
    assert "architecture net\\x1b[2J\\x1b]0;owned\\x07 (class x.\\x1b" in text
    assert "\\x1b[2J\\x1b]0;owned\\x07fc" in text  # the layer's row
    code, _, err = cli(capsys, "evaluate", path, "--dataset", "mnist-sample")
    assert_one_line_error(code, err, "evaluate", "cannot build")
    assert "\x1b" not in err


def undecodable_nsq(path):
    """A model file whose stats can be read but whose one tensor cannot be decoded: its gap
    stream places 4 values in the first 4 of 10 elements and stops, without the trailing
    fillers that would reach the end of the tensor."""
    import numpy as np

    from netsqueeze.core import container as C
    from netsqueeze.core import entropy as E

    gaps = C.StreamRecord("fixed", 4, 4, 8, E.pack_fixed([1, 1, 1, 1], 2), width=2)
    idx = C.StreamRecord("fixed", 4, 1, 4, E.pack_fixed([0, 0, 0, 0], 1), width=1)
    rec = C.TensorRecord("fc.weight", (10,), np.dtype("float32"), 2,
                         np.array([0.5], np.float32), gaps, idx, None)
    return _write_nsq(path, [rec], {"format": "netsqueeze-model", "arch": None,
                                    "layers": {"fc": "fc"}})


def test_inspect_fails_on_tensors_that_do_not_decode(tmp_path, capsys):
    from netsqueeze.core.container import read_nsq

    path = undecodable_nsq(tmp_path / "bad.nsq")
    read_nsq(path).stats()  # the size report alone does not notice
    for extra in ([], ["--no-baseline"], ["--no-baseline", "--json"]):
        code, out, err = cli(capsys, "inspect", path, *extra)
        assert_one_line_error(code, err, "inspect", f"{path}: tensor 'fc.weight': gap stream")
        assert out == ""
    code, _, err = cli(capsys, "unpack", path, "-o", tmp_path / "bad.pt")
    assert_one_line_error(code, err, "unpack", f"{path}: tensor 'fc.weight': gap stream")
    assert not (tmp_path / "bad.pt").exists()


def test_saving_text_that_utf8_cannot_encode_names_the_file_and_field(tmp_path):
    path = tmp_path / "m.nsq"
    message = rf"^cannot write {re.escape(str(path))}: header\['arch'\] = 'net\\udc80'"
    with pytest.raises(ValueError, match=message):
        save_compressed(torch.nn.Linear(3, 2), path, arch="net\udc80")
    assert not path.exists()


def test_output_paths_of_the_wrong_kind_are_one_clear_line(nsq, checkpoint, tmp_path, capsys):
    path, _ = nsq
    src, _ = checkpoint
    folder = tmp_path / "existing_dir"
    folder.mkdir()
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    cases = [
        (("unpack", path, "-o", folder), "unpack", "that is a folder"),
        (("pack", src, "-o", folder), "pack", "that is a folder"),
        (("unpack", path, "-o", a_file / "m.pt"), "unpack", "is a file, not a folder"),
        (("compress", "-o", a_file), "compress", "a file of that name exists"),
        (("zero-weights", "-o", a_file), "zero-weights", "a file of that name exists"),
        (("compress", "-o", a_file / "sub"), "compress", "is a file, not a folder"),
    ]
    for argv, command, text in cases:
        code, _, err = cli(capsys, *argv)
        assert_one_line_error(code, err, command, text)
        assert ".tmp" not in err and "Errno" not in err
    assert sorted(p.name for p in folder.iterdir()) == []  # nothing written, no temp file left
    code, _, _ = cli(capsys, "unpack", path, "-o", tmp_path / "new" / "sub" / "m.pt")
    assert code == 0 and (tmp_path / "new" / "sub" / "m.pt").is_file()  # folders are created


def test_os_errors_name_the_users_file_not_a_temporary_one():
    from netsqueeze.cli.common import os_error_line

    exc = IsADirectoryError(21, "Is a directory", "out/.model.pt.x1y2.tmp", None, "out/model.pt")
    assert os_error_line(exc) == "out/model.pt: Is a directory"
    assert os_error_line(FileExistsError(17, "File exists", "afile")) == "afile: File exists"
    assert os_error_line(PermissionError(13, "Permission denied", "d/.x.abc.tmp")) == (
        "d: Permission denied")
