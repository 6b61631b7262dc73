"""Data-parallel retraining of a tiny network on the MNIST sample, for tests/nn/test_distributed.py.

``python ddp_helpers.py OUT NPROC`` starts NPROC processes (gloo, 127.0.0.1, a free port); each
runs :func:`run` for every scenario, checks that the ranks hold bit-identical tensors, and saves
its tensors to ``OUT/{scenario}-rank{R}.pt``. The test runs the same :func:`run` in its own
process, without a process group, as the single-process reference.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from netsqueeze.data.sample import load_sample_arrays
from netsqueeze.nn import distributed as ddp
from netsqueeze.nn.prune import PruneConfig, prune_
from netsqueeze.nn.share import ShareConfig, share_weights_
from netsqueeze.nn.train import TrainConfig, train

# 1,175 of the sample's 4,000 training images in batches of 50: the 24th (last) batch of an
# epoch holds 25 images, split 13 / 12 over two ranks
N_IMAGES = 1175
SCENARIOS = ("pruned", "shared")
RETRAIN = TrainConfig(iterations=24, batch_size=50, lr=2e-3, seed=3, schedule="constant")
FINETUNE = TrainConfig(iterations=24, batch_size=50, lr=1e-3, seed=4, schedule="constant",
                       optimizer="sgd")


class TinyCNN(nn.Module):
    """A convolution and two linear layers: both kinds of compressible weight."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 5, stride=2)
        self.fc1 = nn.Linear(4 * 12 * 12, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x):
        x = torch.relu(self.conv(x))
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def data():
    x, y, _, _, _ = load_sample_arrays()
    return x[:N_IMAGES], y[:N_IMAGES]


def start(scenario: str) -> nn.Module:
    """The model before retraining: pruned 70 % (and shared, 3 bits)."""
    torch.manual_seed(0)
    model = TinyCNN()
    prune_(model, PruneConfig(sparsity=0.7))
    if scenario == "shared":
        share_weights_(model, ShareConfig(conv_bits=3, fc_bits=3))
    return model


def run(scenario: str) -> nn.Module:
    """Retrain the pruned model (Adam) or fine-tune the shared one's centroids (SGD); the same
    call in one process and on every rank."""
    x, y = data()
    model = start(scenario)
    cfg = RETRAIN if scenario == "pruned" else FINETUNE
    train(model, x, y, cfg, device="cpu", progress=False)
    return model


def _rank_main(out: str) -> None:
    ddp.init("cpu", timeout_s=120)
    try:
        for scenario in SCENARIOS:
            model = run(scenario)
            ddp.check_identical(model, scenario)
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            torch.save(state, Path(out) / f"{scenario}-rank{ddp.rank()}.pt")
        ddp.barrier()  # as the CLI does: no rank leaves while another still communicates
    finally:
        ddp.teardown()


if __name__ == "__main__":
    ddp.spawn(_rank_main, (sys.argv[1],), int(sys.argv[2]))
