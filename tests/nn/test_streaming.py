"""Saving and loading stream tensor by tensor: same bytes and tensors as the in-memory path.

``save_compressed`` strips a meta-device skeleton and computes each tensor from the model when
it is encoded; ``write_nsq`` writes records one at a time; ``load_compressed`` decodes and
copies a batch of tensors at a time. The references here are the whole-model ways: a real
``strip_(copy.deepcopy(model))`` and ``nsq_bytes`` of all records at once.
"""

from __future__ import annotations

import copy
import json
import struct
import tracemalloc
import zlib

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze import FormatError
from netsqueeze.core.container import (
    FORMAT_VERSION,
    MAGIC,
    encode_tensor,
    nsq_bytes,
    read_nsq,
    write_nsq,
)
from netsqueeze.nn import export
from netsqueeze.nn.export import decoded_state, load_compressed, save_compressed
from netsqueeze.nn.prune import prune_, strip_
from netsqueeze.nn.share import share_weights_
from tests.nn.zoo import ZOO


def stack(layers=4, width=64, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(layers)])


def compressed(model, state):
    if "pruned" in state:
        prune_(model, 0.8)
    if "shared" in state:
        share_weights_(model, 4)
    return model


def save_in_memory(model, path, monkeypatch, **kw):
    """save_compressed the old way: a real stripped deep copy of the model."""
    with monkeypatch.context() as m:
        m.setattr(export, "_stripped_skeleton", lambda model: None)
        return save_compressed(model, path, **kw)


@pytest.mark.parametrize("state", ["plain", "pruned", "shared", "pruned+shared"])
def test_streamed_save_writes_the_bytes_of_the_copying_save(state, tmp_path, monkeypatch):
    model = compressed(stack(), state)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    a = save_compressed(model, tmp_path / "a.nsq")
    b = save_in_memory(model, tmp_path / "b.nsq", monkeypatch)
    assert (tmp_path / "a.nsq").read_bytes() == (tmp_path / "b.nsq").read_bytes()
    assert a["records"] == b["records"] and a["bytes"] == b["bytes"]
    after = model.state_dict()  # the caller's model is not changed
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("name", ["resnet", "tied_lstm_lm", "transformer", "raw_params"])
def test_streamed_save_matches_for_batchnorm_ties_attention_and_raw_parameters(
        name, tmp_path, monkeypatch):
    factory, _ = ZOO[name]
    torch.manual_seed(0)
    model = compressed(factory(), "pruned+shared")
    save_compressed(model, tmp_path / "a.nsq")
    save_in_memory(model, tmp_path / "b.nsq", monkeypatch)
    assert (tmp_path / "a.nsq").read_bytes() == (tmp_path / "b.nsq").read_bytes()


def test_the_skeleton_is_stripped_and_holds_no_data():
    model = compressed(stack(), "pruned+shared")
    plain, values = export._stripped(model)
    reference = strip_(copy.deepcopy(model)).state_dict()
    state = plain.state_dict()
    assert list(state) == list(reference) == list(values)
    assert all(t.is_meta for t in state.values())
    for key, ref in reference.items():
        got = values[key]()
        assert got.dtype == ref.dtype and torch.equal(got, ref)
        # bit for bit, signed zeros included
        assert np.array_equal(got.numpy().view(np.uint8), ref.numpy().view(np.uint8))


def test_write_nsq_streams_the_bytes_of_nsq_bytes(tmp_path):
    rng = np.random.default_rng(0)
    records = [encode_tensor(f"t{i}", rng.standard_normal((50, 40)).astype(np.float32))
               for i in range(5)]
    header = {"format": "x", "meta": {"k": [1, 2]}}
    n = write_nsq(tmp_path / "f.nsq", records, header=header)
    data = (tmp_path / "f.nsq").read_bytes()
    assert data == nsq_bytes(records, header=header) and n == len(data)
    # the layout of docs/FORMAT.md, joined by hand: head, JSON, records, end marker, CRC32
    js = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    body = (MAGIC + struct.pack("<HHII", FORMAT_VERSION, 0, len(js), len(records)) + js
            + b"".join(r.to_bytes() for r in records) + b"NSQE")
    assert data == body + struct.pack("<I", zlib.crc32(body))
    assert read_nsq(data).names() == [f"t{i}" for i in range(5)]
    with pytest.raises(ValueError, match="two records are named"):
        write_nsq(tmp_path / "g.nsq", records + records[:1], header=header)
    assert not (tmp_path / "g.nsq").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["f.nsq"]  # no temporary file left


@pytest.mark.parametrize("name", ["resnet", "tied_lstm_lm", "transformer"])
def test_loading_in_small_batches_gives_the_same_model(name, tmp_path, monkeypatch):
    factory, example = ZOO[name]
    torch.manual_seed(0)
    model = compressed(factory(), "pruned+shared")
    save_compressed(model, tmp_path / "m.nsq")
    whole = decoded_state(tmp_path / "m.nsq")
    monkeypatch.setattr(export, "_LOAD_BATCH_BYTES", 1)  # one tensor per batch
    loaded = load_compressed(tmp_path / "m.nsq", model=factory())
    state = loaded.state_dict()
    assert sorted(state) == sorted(whole)  # decoded_state puts packed tensors last
    assert all(torch.equal(state[k], whole[k]) and state[k].dtype == whole[k].dtype
               for k in whole)
    x = example()
    strip_(model).eval()
    with torch.no_grad():
        ya, yb = loaded(x), model(x)
    ya, yb = (ya[0], yb[0]) if isinstance(ya, tuple) else (ya, yb)
    assert torch.equal(ya, yb)
    if name == "tied_lstm_lm":  # ties come back as one Parameter
        params = dict(loaded.named_parameters(remove_duplicate=False))
        tied = export._ties(loaded)
        assert tied and all(params[a] is params[f] for a, f in tied.items() if a in params)


def test_a_file_of_another_architecture_leaves_the_model_untouched(tmp_path):
    save_compressed(compressed(stack(width=64), "pruned"), tmp_path / "m.nsq")
    target = stack(width=32, seed=1)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(FormatError, match="shape"):
        load_compressed(tmp_path / "m.nsq", model=target)
    assert all(torch.equal(target.state_dict()[k], v) for k, v in before.items())


def test_load_holds_about_one_tensor_of_decoded_data_at_a_time(tmp_path, monkeypatch):
    """tracemalloc sees numpy's buffers: decoding every tensor first (the old way) peaks above
    the whole model's float32 bytes; streaming holds one layer and its decoder's work."""
    layers, width = 16, 160
    model = compressed(stack(layers, width), "pruned+shared")
    save_compressed(model, tmp_path / "m.nsq")
    dense = layers * width * width * 4
    skeleton = stack(layers, width, seed=1)
    monkeypatch.setattr(export, "_LOAD_BATCH_BYTES", width * width * 4)
    tracemalloc.start()
    try:
        load_compressed(tmp_path / "m.nsq", model=skeleton)
        _, streamed = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        read_nsq(tmp_path / "m.nsq").arrays()
        _, whole = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert whole > dense  # the measure sees decoded tensors
    assert streamed < 0.4 * dense, (streamed, whole, dense)
