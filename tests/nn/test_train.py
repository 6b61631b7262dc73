"""The training loop: shift augmentation, validation, resumable checkpoints."""

import numpy as np
import pytest
import torch
from torch import nn

from netsqueeze.nn.train import TrainConfig, evaluate, random_shift, to_tensor, train


def test_random_shift_moves_each_image_by_its_own_offset():
    x = torch.zeros(64, 1, 7, 7)
    x[:, 0, 3, 3] = 1.0
    y = random_shift(x, 2, torch.Generator().manual_seed(0))
    pos = torch.nonzero(y)[:, 2:]
    assert pos.shape == (64, 2)  # one lit pixel per image: nothing lost, nothing added
    offsets = pos - 3
    assert offsets.abs().max() <= 2
    assert len({tuple(o.tolist()) for o in offsets}) > 10  # not one offset for the whole batch


def test_random_shift_fills_with_zeros_at_the_border():
    x = torch.ones(8, 1, 4, 4)
    y = random_shift(x, 1, torch.Generator().manual_seed(3))
    assert y.shape == x.shape
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    assert (y.sum(dim=(1, 2, 3)) >= 9).all()  # at most one row and one column shifted out


@pytest.mark.parametrize(
    "cfg, match",
    [
        (TrainConfig(shift=-1), "shift"),
        (TrainConfig(batch_size=0), "batch_size"),
        (TrainConfig(lr=0), "lr"),
        (TrainConfig(optimizer="lbfgs"), "optimizer"),
    ],
)
def test_bad_settings_name_the_field(cfg, match):
    with pytest.raises(ValueError, match=match):
        cfg.validate()


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 6, 6), dtype=np.uint8)
    y = (x[:, :3].mean(axis=(1, 2)) > x[:, 3:].mean(axis=(1, 2))).astype(np.int64)
    return x, y


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 2))


def test_training_with_shifts_learns_and_is_deterministic():
    x, y = _data()
    a, b = _model(), _model()
    cfg = TrainConfig(iterations=60, batch_size=20, lr=1e-2, shift=1, seed=4)
    train(a, x, y, cfg, progress=False, device="cpu")
    train(b, x, y, cfg, progress=False, device="cpu")
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)
    assert evaluate(a, to_tensor(x), y) > 0.6


def test_resuming_from_an_epoch_checkpoint_gives_the_same_model(tmp_path):
    x, y = _data()
    cfg = TrainConfig(iterations=30, batch_size=20, lr=1e-2, shift=1, seed=1)  # 6 per epoch
    ref = _model()
    train(ref, x, y, cfg, progress=False, device="cpu")

    ckpt = tmp_path / "ckpt.pt"
    model = _model()

    def stop_after_two_epochs(log):
        if log.epochs == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(model, x, y, cfg, progress=False, device="cpu", checkpoint=ckpt,
              on_epoch=stop_after_two_epochs)
    assert ckpt.exists()
    other = TrainConfig(iterations=30, batch_size=20, lr=2e-2, shift=1, seed=1)
    with pytest.raises(ValueError, match="other training settings"):
        train(_model(), x, y, other, progress=False, device="cpu", checkpoint=ckpt)
    resumed = _model()
    log = train(resumed, x, y, cfg, progress=False, device="cpu", checkpoint=ckpt)
    assert log.resumed_from == 12 and log.iterations == 30
    assert not ckpt.exists()
    for p, q in zip(ref.parameters(), resumed.parameters(), strict=True):
        assert torch.equal(p, q)
