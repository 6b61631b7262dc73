"""The model header entries (byte planes, dtypes, ties, factory) read from untrusted files."""

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze import FormatError
from netsqueeze.core.container import encode_tensor, read_nsq, write_nsq
from netsqueeze.nn.export import decoded_state, load_compressed, save_compressed


def planes_file(tmp_path, header_extra, names=("b#0", "b#1", "b#2", "b#3")):
    a = np.random.default_rng(0).normal(size=40).astype(np.float32)
    planes = a.view(np.uint8).reshape(-1, 4)
    recs = [encode_tensor(n, np.ascontiguousarray(planes[:, int(n[-1])]), gap_bits=None)
            for n in names]
    path = tmp_path / "h.nsq"
    write_nsq(path, recs, header={"format": "netsqueeze-model", **header_extra})
    return path, a


def test_byte_planes_join_bit_exactly(tmp_path):
    path, a = planes_file(tmp_path, {"byte_planes": {"b": "float32"}})
    state = decoded_state(path)
    assert list(state) == ["b"] and np.array_equal(state["b"].numpy(), a)


@pytest.mark.parametrize("extra, names, message", [
    ({"byte_planes": {"b": "float32"}}, ("b#0", "b#1", "b#2"), "missing"),
    ({"byte_planes": {"b": "float64"}}, ("b#0", "b#1", "b#2", "b#3"), "missing"),
    ({"byte_planes": {"b": "int8"}}, ("b#0",), "missing"),
    ({"byte_planes": {"c": "float32"}}, ("b#0",), "lacks"),
    ({"byte_planes": ["b"]}, ("b#0",), "not a map"),
    ({"tied": {"x": "nope"}}, ("b#0",), "does not fit"),
    ({"dtypes": {"b#0": "bfloat16"}}, ("b#0",), "header says bfloat16"),
])
def test_inconsistent_header_entries_are_format_errors(tmp_path, extra, names, message):
    path, _ = planes_file(tmp_path, extra, names)
    with pytest.raises(FormatError, match=message):
        decoded_state(path)


def test_factory_is_validated_and_never_run_from_the_file(tmp_path):
    model = nn.Linear(3, 2)
    with pytest.raises(ValueError, match="pkg.module:callable"):
        save_compressed(model, tmp_path / "x.nsq", factory="os.system")
    save_compressed(model, tmp_path / "m.nsq", factory="os:system", factory_args={"command": "x"})
    header = read_nsq(tmp_path / "m.nsq").header
    assert header["factory"] == "os:system" and header["factory_args"] == {"command": "x"}
    with pytest.raises(ValueError, match="never imports what a file names"):
        load_compressed(tmp_path / "m.nsq")
    back = load_compressed(tmp_path / "m.nsq", model=nn.Linear(3, 2))
    assert torch.equal(back.weight, model.weight)
    with pytest.raises(ValueError, match="not both"):
        load_compressed(tmp_path / "m.nsq", model=nn.Linear(3, 2), factory="lenet5")
