"""Data-parallel retraining (netsqueeze.nn.distributed + train()) on two CPU processes with gloo.

The two ranks are started by ``tests/nn/ddp_helpers.py`` (``torch.multiprocessing`` on
127.0.0.1 and a free port) in a subprocess bounded by a timeout; the single-process reference
runs here. What is asserted is what docs/SCALING.md states: the ranks end bit-identical, pruned
weights stay exactly zero and the masks / cluster indices are untouched on every rank, and the
weights agree with a single process on the same global batches within a float32 tolerance (not
bit for bit: the halves of a batch are summed separately, then added).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from netsqueeze.nn import distributed as ddp
from netsqueeze.nn.train import TrainConfig, _loss, train

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("ddp_helpers", HERE / "ddp_helpers.py")
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)

#: Largest difference from the single process, relative to the layer's largest magnitude
#: (measured: at most 3e-7 after 24 steps; wrong sharding or scaling gives 1e-2 and more).
REL_TOL = 1e-5


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop(ddp.FAULT_ENV, None)
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """Both scenarios retrained by 2 gloo ranks: {scenario: [rank 0 state, rank 1 state]}."""
    out = tmp_path_factory.mktemp("ddp")
    proc = subprocess.run([sys.executable, str(HERE / "ddp_helpers.py"), str(out), "2"],
                          check=False, env=_env(), capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {s: [torch.load(out / f"{s}-rank{r}.pt", weights_only=True) for r in (0, 1)]
            for s in helpers.SCENARIOS}


@pytest.fixture
def one_thread():
    """The single-process reference with one torch thread, as each rank uses on 2 cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _close(ref: torch.Tensor, got: torch.Tensor) -> None:
    scale = float(ref.abs().max())
    assert float((ref - got).abs().max()) <= REL_TOL * scale


@pytest.mark.slow
@pytest.mark.parametrize("scenario", helpers.SCENARIOS)
def test_ranks_end_bit_identical(two_ranks, scenario):
    r0, r1 = two_ranks[scenario]
    assert r0.keys() == r1.keys()
    for name in r0:
        assert torch.equal(r0[name], r1[name]), name
        if r0[name].is_floating_point():  # -0.0 vs +0.0 would pass torch.equal
            assert torch.equal(torch.signbit(r0[name]), torch.signbit(r1[name])), name


@pytest.mark.slow
def test_pruned_retraining_keeps_zeros_on_every_rank_and_matches_one_process(two_ranks,
                                                                           one_thread):
    before = helpers.start("pruned").state_dict()
    single = helpers.run("pruned").state_dict()
    for state in two_ranks["pruned"]:
        for layer in ("conv", "fc1", "fc2"):
            w, mask = state[f"{layer}.weight"], state[f"{layer}.weight_mask"]
            assert torch.equal(mask, before[f"{layer}.weight_mask"])  # retraining keeps masks
            assert torch.equal(mask, single[f"{layer}.weight_mask"])
            assert 0.6 < float((~mask).float().mean()) < 0.8
            dead = w[~mask]
            assert bool((dead == 0).all()) and not bool(torch.signbit(dead).any())
            # the weights really moved, far more than the tolerance allowed below
            moved = float((w - before[f"{layer}.weight"]).abs().max())
            assert moved > 100 * REL_TOL * float(w.abs().max())
        for name, ref in single.items():
            if ref.is_floating_point():
                _close(ref, state[name])


@pytest.mark.slow
def test_shared_finetuning_keeps_indices_and_matches_one_process(two_ranks, one_thread):
    before = helpers.start("shared").state_dict()
    single = helpers.run("shared").state_dict()
    for state in two_ranks["shared"]:
        for layer in ("conv", "fc1", "fc2"):
            index, cents = state[f"{layer}.weight_index"], state[f"{layer}.weight_centroids"]
            assert torch.equal(index, before[f"{layer}.weight_index"])
            assert len(cents) == len(before[f"{layer}.weight_centroids"]) <= 8
            # pruned positions hold the sentinel, so the layer's weight is exactly 0 there
            weight = torch.cat([cents, cents.new_zeros(1)])[index.long()]
            assert int((index == len(cents)).sum()) > 0.6 * index.numel()
            assert bool((weight[index == len(cents)] == 0).all())
            assert not torch.equal(cents, before[f"{layer}.weight_centroids"])  # fine-tuned
        for name, ref in single.items():
            if ref.is_floating_point():
                _close(ref, state[name])
            else:
                assert torch.equal(ref, state[name]), name


# ------------------------------------------------------------------------------------------
# without a process group: every helper is a no-op and train() is the one-process loop
# ------------------------------------------------------------------------------------------


def test_helpers_do_nothing_without_a_process_group():
    assert not ddp.active() and ddp.rank() == 0 and ddp.world_size() == 1 and ddp.is_main()
    idx = torch.arange(7)
    assert torch.equal(ddp.shard(idx), idx)
    assert ddp.broadcast_json({"a": [1, 2]}) == {"a": [1, 2]}
    model = helpers.start("pruned")
    ddp.check_identical(model)
    ddp.broadcast_module(model)
    ddp.barrier()


def test_distributed_training_without_a_group_is_a_clear_error():
    x, y = helpers.data()
    with pytest.raises(ValueError, match="process group"):
        train(helpers.TinyCNN(), x[:50], y[:50], TrainConfig(iterations=1), device="cpu",
              progress=False, distributed=True)


@pytest.mark.parametrize("kind", ["cross-entropy", "mse"])
def test_slice_shares_add_up_to_the_batch_mean(kind):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(25, 10, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (25,), generator=g)
    parts = torch.tensor_split(torch.arange(25), 2)  # 13 and 12, as on two ranks
    total = sum(_loss(logits[p], y[p], kind, global_count=25) for p in parts)
    assert float(total) == pytest.approx(float(_loss(logits, y, kind)), rel=1e-12)


def test_env_world_size_reads_torchrun_variables(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert ddp.env_world_size() is None
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert ddp.env_world_size() == 4
    monkeypatch.setenv("WORLD_SIZE", "four")
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        ddp.env_world_size()


def test_free_port_is_a_port():
    assert 0 < ddp.free_port() < 65536
    assert np.issubdtype(type(ddp.free_port()), np.integer)
