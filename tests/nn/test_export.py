"""save_compressed / load_compressed round trips, sizes, and the size report."""

import copy
import gzip
import io

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze import FormatError
from netsqueeze.core.container import read_nsq
from netsqueeze.models import MODELS, build
from netsqueeze.nn.export import (
    compressed_report,
    infer_arch,
    load_compressed,
    plain_state_dict,
    save_compressed,
)
from netsqueeze.nn.prune import MASK_BUFFER, PruneConfig, is_pruned, prune_
from netsqueeze.nn.share import ShareConfig, is_shared, share_weights_, strip_

STATES = ("plain", "pruned", "shared", "pruned+shared")


def make(arch, state, seed=0):
    torch.manual_seed(seed)
    model = build(arch)
    if "pruned" in state:
        prune_(model, PruneConfig(sparsity=0.9))
    if "shared" in state:
        share_weights_(model, ShareConfig(conv_bits=6, fc_bits=5))
    return model


def images(n=8, seed=1):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def assert_same_tensors(expected: dict, got: dict):
    assert list(expected) == list(got)
    for k, t in expected.items():
        assert t.dtype == got[k].dtype, k
        assert torch.equal(t, got[k]), k


def effective_state(model):
    return strip_(copy.deepcopy(model)).state_dict()


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize("arch", list(MODELS))
def test_round_trip_is_bit_exact(arch, state, tmp_path):
    model = make(arch, state).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = tmp_path / "m.nsq"
    summary = save_compressed(model, path)
    assert summary["bytes"] == path.stat().st_size
    assert summary["arch"] == arch
    # the caller's model is untouched, machinery included
    assert_same_tensors(before, model.state_dict())
    if "shared" in state:
        assert any(is_shared(m) for m in model.modules())
    elif "pruned" in state:
        assert any(is_pruned(m) for m in model.modules())
    loaded = load_compressed(path)
    assert type(loaded) is MODELS[arch]
    assert not loaded.training
    assert_same_tensors(effective_state(model), loaded.state_dict())
    x = images()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_stripped_and_live_models_give_the_same_file(tmp_path):
    model = make("lenet5", "pruned+shared")
    save_compressed(model, tmp_path / "live.nsq")
    save_compressed(strip_(copy.deepcopy(model)), tmp_path / "stripped.nsq")
    assert (tmp_path / "live.nsq").read_bytes() == (tmp_path / "stripped.nsq").read_bytes()


class Custom(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv1d(3, width, 3)
        self.bn = nn.BatchNorm1d(width)
        self.head = nn.Sequential(nn.Linear(width * 6, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1))


def trained_custom():
    torch.manual_seed(3)
    model = Custom()
    with torch.no_grad():
        for _ in range(3):  # moves the BatchNorm running statistics and the batch counter
            model(torch.randn(16, 3, 8))
    prune_(model, PruneConfig(sparsity=0.5))
    share_weights_(model, ShareConfig(conv_bits=3, fc_bits=2))
    return model.eval()


def test_custom_module_with_batchnorm_needs_a_skeleton(tmp_path):
    model = trained_custom()
    path = tmp_path / "custom.nsq"
    summary = save_compressed(model, path, meta={"note": "tiny"})
    assert summary["arch"] is None
    header = read_nsq(path).header
    assert header["layers"] == {"conv": "conv", "head.0": "fc", "head.2": "fc"}
    assert header["model_class"].endswith("Custom")
    assert header["meta"] == {"note": "tiny"}
    with pytest.raises(ValueError, match="pass model="):
        load_compressed(path)
    skeleton = Custom()
    loaded = load_compressed(path, model=skeleton)
    assert loaded is skeleton
    state = loaded.state_dict()
    assert int(state["bn.num_batches_tracked"]) == 3
    assert_same_tensors(effective_state(model), state)
    x = torch.randn(5, 3, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_mismatched_skeleton_names_the_tensor(tmp_path):
    path = tmp_path / "custom.nsq"
    save_compressed(trained_custom(), path)
    with pytest.raises(FormatError, match=r"'conv\.weight' has shape \(8, 3, 3\)"):
        load_compressed(path, model=Custom(width=6))
    with pytest.raises(FormatError, match="strip_ the skeleton"):
        load_compressed(path, model=prune_(Custom(), PruneConfig(sparsity=0.5)))
    save_compressed(build("lenet5"), tmp_path / "l5.nsq")
    with pytest.raises(FormatError, match="the file has no tensor 'conv.weight'"):
        load_compressed(tmp_path / "l5.nsq", model=Custom())
    with pytest.raises(FormatError, match="the file has a tensor 'conv.weight'"):
        load_compressed(path, model=nn.Module())
    with pytest.raises(FormatError, match=r"float32 in the file but torch\.float64"):
        load_compressed(path, model=Custom().double())


def test_arch_is_inferred_checked_or_recorded(tmp_path):
    assert infer_arch(build("lenet5")) == "lenet5"
    assert infer_arch(Custom()) is None
    with pytest.raises(ValueError, match="architecture 'lenet5'"):
        save_compressed(build("lenet-300-100"), tmp_path / "x.nsq", arch="lenet5")
    save_compressed(Custom(), tmp_path / "c.nsq", arch="my-net")
    header = read_nsq(tmp_path / "c.nsq").header
    assert header["arch"] == "my-net"
    with pytest.raises(ValueError, match="'my-net'.*pass model="):
        load_compressed(tmp_path / "c.nsq")


def test_pruned_and_shared_lenet_300_100_is_over_20x_smaller(tmp_path):
    model = make("lenet-300-100", "pruned+shared")
    path = tmp_path / "lenet.nsq"
    save_compressed(model, path)
    size = path.stat().st_size
    dense = sum(t.numel() * 4 for t in effective_state(model).values())
    assert dense / size > 20
    buf = io.BytesIO()
    torch.save(effective_state(model), buf)
    assert len(gzip.compress(buf.getvalue(), 9)) > 1.5 * size


def test_a_plain_model_costs_little_more_than_its_floats(tmp_path):
    model = make("lenet-300-100", "plain")
    summary = save_compressed(model, tmp_path / "plain.nsq")
    assert 0.99 < summary["ratio"] <= 1.0
    assert summary["dense_bytes"] == summary["dense_float32_bytes"] == 266_610 * 4


def test_gap_bits_int_dict_and_dense(tmp_path):
    model = make("lenet5", "pruned+shared")

    def gaps(**kw):
        save_compressed(model, tmp_path / "g.nsq", **kw)
        return {r.name: r.gap_bits for r in read_nsq(tmp_path / "g.nsq").records}

    default = gaps()
    assert default["conv2.weight"] == 8 and default["fc1.weight"] == 5
    # everything but >= 2-D weights is dense: the biases are packed into one dense record
    # (possibly as byte planes ~packed.float32#i) when that is smaller than one record each
    header = read_nsq(tmp_path / "g.nsq").header
    listed = [k for k, _ in header.get("packed", {}).get("~packed.float32", [])]
    assert listed == ["conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"]
    assert all(v is None for k, v in default.items() if k.startswith("~packed."))
    assert gaps(gap_bits=4)["conv2.weight"] == 4
    per = gaps(gap_bits={"fc": 6, "fc1": 3, "conv*": None})
    # fc2 (19 % kept) may be stored dense when its context-coded indices are smaller
    assert per["fc1.weight"] == 3 and per["fc2.weight"] in (6, None)
    assert per["conv1.weight"] is None and per["conv2.weight"] is None
    header = read_nsq(tmp_path / "g.nsq").header
    assert header["layer_gap_bits"] == {"conv1": None, "conv2": None, "fc1": 3, "fc2": 6}
    gaps(gap_bits={"conv": 7})
    assert read_nsq(tmp_path / "g.nsq").header["gap_bits"] == {"conv": 7, "fc": 5}
    for bad in (0, 17, 2.5, True, {"fc": 0}):
        with pytest.raises(ValueError, match="1..16"):
            save_compressed(model, tmp_path / "b.nsq", gap_bits=bad)
    with pytest.raises(ValueError, match="'fc9' matches no"):
        save_compressed(model, tmp_path / "b.nsq", gap_bits={"fc9": 4})


def test_float16_codebooks_round_only_the_weights(tmp_path):
    model = make("lenet-300-100", "pruned+shared")
    exact = save_compressed(model, tmp_path / "a.nsq")["bytes"]
    half = save_compressed(model, tmp_path / "h.nsq", codebook_dtype="float16")["bytes"]
    assert half < exact
    loaded = load_compressed(tmp_path / "h.nsq").state_dict()
    for k, t in effective_state(model).items():
        if k.endswith("weight"):
            assert torch.equal(loaded[k], t.half().float()), k
        else:
            assert torch.equal(loaded[k], t), k
    with pytest.raises(ValueError, match="codebook_dtype"):
        save_compressed(model, tmp_path / "x.nsq", codebook_dtype="int8")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_models_round_trip_bit_exactly(dtype, tmp_path):
    model = make("lenet5", "pruned+shared").to(dtype)
    save_compressed(model, tmp_path / "h.nsq")
    back = load_compressed(tmp_path / "h.nsq", model=build("lenet5").to(dtype))
    expected = effective_state(model)
    for k, v in back.state_dict().items():
        assert v.dtype == dtype or not v.is_floating_point()
        assert torch.equal(v.view(torch.int16) if v.dtype == dtype else v,
                           expected[k].view(torch.int16) if v.dtype == dtype else expected[k])
    x = torch.randn(2, 1, 28, 28).to(dtype)
    assert torch.equal(back(x), strip_(copy.deepcopy(model)).eval()(x))


def test_unsupported_dtype_and_bad_meta_name_the_problem(tmp_path):
    model = build("lenet-300-100")
    model.register_buffer("phase", torch.zeros(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="'phase'"):
        save_compressed(model, tmp_path / "x.nsq")
    with pytest.raises(ValueError, match="JSON"):
        save_compressed(build("lenet-300-100"), tmp_path / "x.nsq", meta={"f": object()})


def test_plain_state_dict_of_live_machinery_loads_into_a_fresh_model():
    model = make("lenet5", "pruned+shared")
    prune_(model2 := make("lenet5", "plain", seed=1), PruneConfig(sparsity=0.5))
    for m in (model, model2):
        sd = m.state_dict()
        assert any(k.endswith(("weight_index", MASK_BUFFER)) for k in sd)
        plain = plain_state_dict(sd)
        fresh = build("lenet5")
        fresh.load_state_dict(plain, strict=True)
        assert_same_tensors(effective_state(m), fresh.state_dict())


def test_load_from_bytes_and_corrupt_bytes(tmp_path):
    path = tmp_path / "m.nsq"
    save_compressed(make("notebook-cnn", "pruned"), path)
    data = path.read_bytes()
    assert_same_tensors(load_compressed(path).state_dict(), load_compressed(data).state_dict())
    with pytest.raises(FormatError):
        load_compressed(data[:-10])
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    with pytest.raises(FormatError):
        load_compressed(bytes(flipped))
    with pytest.raises(FileNotFoundError):
        load_compressed(tmp_path / "missing.nsq")


def test_report_accounts_for_every_byte(tmp_path):
    model = make("lenet5", "pruned+shared")
    path = tmp_path / "m.nsq"
    save_compressed(model, path)
    size = path.stat().st_size
    rep = compressed_report(path)
    t = rep["totals"]
    assert rep["file_bytes"] == t["file_bytes"] == size
    assert sum(x["bytes"] for x in rep["layers"]) + t["overhead_bytes"] == size
    assert [x["name"] for x in rep["layers"]] == [
        "conv1", "(dense tensors, packed)", "conv2", "fc1", "fc2"]
    assert rep["layers"][1]["tensors"] == ["conv1.bias", "conv2.bias", "fc1.bias", "fc2.bias"]
    fc1 = rep["layers"][3]
    assert fc1["kind"] == "fc" and fc1["tensors"] == ["fc1.weight"]
    assert fc1["weights"] == 400_000 and fc1["kept"] == pytest.approx(0.1, abs=1e-3)
    assert fc1["codebook_size"] == 32 and fc1["requested_gap_bits"] == 5
    assert 4.5 < fc1["index_bits"] < 5.5 and fc1["gap_field_bits"] == 5
    assert t["weights"] == 430_500
    assert t["dense_bytes"] == t["dense_float32_bytes"] == 431_080 * 4
    assert t["ratio_to_dense"] == pytest.approx(t["dense_bytes"] / size)
    assert t["entropy_bytes"] <= t["stream_bytes"]
    assert t["entropy_bound_bytes"] <= t["records_bytes"]
    assert 0.5 < t["paper_vs_actual"] < 1.5
    # the gzip baseline is measured on the decoded model
    buf = io.BytesIO()
    torch.save(load_compressed(path).state_dict(), buf)
    gz = len(gzip.compress(buf.getvalue(), 9))
    assert rep["baseline"]["gzip_bytes"] == pytest.approx(gz, rel=0.01)
    assert rep["baseline"]["ratio"] == pytest.approx(rep["baseline"]["gzip_bytes"] / size)
    assert compressed_report(path, baseline=False)["baseline"] is None


def test_report_of_a_model_with_buffers_groups_by_module(tmp_path):
    path = tmp_path / "c.nsq"
    save_compressed(trained_custom(), path)
    rep = compressed_report(path, baseline=False)
    dense = next(x for x in rep["layers"] if x["name"] == "(dense tensors, packed)")
    assert dense["kind"] is None
    assert {"bn.weight", "bn.running_var"} <= set(dense["tensors"])
    bn = next(x for x in rep["layers"] if x["name"] == "bn")
    assert bn["tensors"] == ["bn.num_batches_tracked"]  # the only int64 tensor: alone
    t = rep["totals"]
    assert t["dense_bytes"] == t["dense_float32_bytes"] + 8  # the int64 batch counter
    assert sum(x["bytes"] for x in rep["layers"]) + t["overhead_bytes"] == path.stat().st_size
    assert np.isclose(t["kept"], (t["nonzeros"] / t["weights"]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_models_save_and_load(tmp_path):
    model = make("lenet5", "pruned+shared").cuda()
    save_compressed(model, tmp_path / "g.nsq")
    loaded = load_compressed(tmp_path / "g.nsq", map_location="cuda")
    assert next(loaded.parameters()).is_cuda
    skeleton = load_compressed(tmp_path / "g.nsq", model=build("lenet5").cuda())
    assert next(skeleton.parameters()).is_cuda
    assert_same_tensors(effective_state(model), loaded.state_dict())
    x = images().cuda()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
