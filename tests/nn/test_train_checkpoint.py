"""Training checkpoints are read without unpickling code, and bad ones are one-line errors."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze import FormatError
from netsqueeze.nn.train import TrainConfig, load_state, train

CFG = TrainConfig(iterations=12, batch_size=20, lr=1e-2, seed=1)


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 6, 6), dtype=np.uint8)
    y = (x[:, :3].mean(axis=(1, 2)) > x[:, 3:].mean(axis=(1, 2))).astype(np.int64)
    return x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 8), nn.ReLU(), nn.Linear(8, 2))


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_planted_checkpoint_is_refused_and_its_code_never_runs(tmp_path):
    x, y = _data()
    marker = tmp_path / "payload-ran"
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"config": CFG.to_dict(), "model": _Payload(marker)}, ckpt)
    with pytest.raises(FormatError) as info:
        train(_model(), x, y, CFG, progress=False, device="cpu", checkpoint=ckpt)
    msg = str(info.value)
    assert msg.startswith(str(ckpt)) and "delete it" in msg and "\n" not in msg
    assert not marker.exists()
    ckpt.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    with pytest.raises(FormatError):
        load_state(ckpt)
    assert not marker.exists()


def test_truncated_or_foreign_checkpoints_are_clear_errors(tmp_path):
    x, y = _data()
    ckpt = tmp_path / "ckpt.pt"
    train(_model(), x, y, CFG, progress=False, device="cpu", checkpoint=ckpt,
          keep_checkpoint=True)
    good = ckpt.read_bytes()
    ckpt.write_bytes(good[: len(good) // 2])
    with pytest.raises(FormatError, match="not a readable training checkpoint") as info:
        train(_model(), x, y, CFG, progress=False, device="cpu", checkpoint=ckpt)
    assert str(ckpt) in str(info.value) and "\n" not in str(info.value)
    torch.save({"weights": torch.zeros(3)}, ckpt)  # readable, but not a training checkpoint
    with pytest.raises(FormatError, match="not a training checkpoint"):
        train(_model(), x, y, CFG, progress=False, device="cpu", checkpoint=ckpt)
    ckpt.write_bytes(good)  # a checkpoint of another network
    other = nn.Sequential(nn.Flatten(), nn.Linear(36, 4), nn.ReLU(), nn.Linear(4, 2))
    with pytest.raises(FormatError, match="does not fit"):
        train(other, x, y, CFG, progress=False, device="cpu", checkpoint=ckpt)


def test_a_kept_checkpoint_of_finished_training_gives_the_trained_model(tmp_path):
    x, y = _data()
    ckpt = tmp_path / "ckpt.pt"
    ref = _model()
    train(ref, x, y, CFG, progress=False, device="cpu", checkpoint=ckpt, keep_checkpoint=True)
    assert ckpt.is_file()  # kept for the caller to remove once it saved the model
    again = _model()
    log = train(again, x, y, CFG, progress=False, device="cpu", checkpoint=ckpt)
    assert log.resumed_from == CFG.iterations and log.iterations == CFG.iterations
    for p, q in zip(ref.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)
    assert not ckpt.exists()  # without keep_checkpoint it goes once training is done
