"""Executors: same results in the same order on every backend; dying workers are replaced."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import run_helpers  # on sys.path by tests/run/conftest.py
import torch

import netsqueeze
from netsqueeze.experiments import sweeps
from netsqueeze.run import InProcess, LocalProcesses, WorkerLost, make_executor

RUN = Path(netsqueeze.__file__).parent / "run"


def test_run_imports_nothing_above_it():
    modules = sorted(p.stem for p in RUN.glob("*.py") if p.stem != "__init__")
    assert modules
    code = (
        "import sys\nimport netsqueeze.run\n"
        + "".join(f"import netsqueeze.run.{m}\n" for m in modules)
        + "bad = sorted(m for m in sys.modules if m.split('.')[:2] in (['netsqueeze', "
        "'experiments'], ['netsqueeze', 'auto'], ['netsqueeze', 'cli']) or m == 'ray')\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"netsqueeze.run imported: {out.stdout.strip()}"


def test_in_process_order_callbacks_and_seeds():
    seen, ticks = [], []
    before = torch.random.get_rng_state()
    res = InProcess().map(run_helpers.square_plus_noise, [3, 1, 2], shared={"offset": 10},
                          on_result=lambda i, r: seen.append((i, r)), progress=ticks.append,
                          first=5)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's stream untouched
    expected = []
    for j, item in enumerate([3, 1, 2]):
        torch.manual_seed(5 + j)
        expected.append(item * item + 10 + float(torch.rand(1)))
    assert res == expected
    assert seen == list(zip([5, 6, 7], expected))
    assert ticks == [1, 1, 1]
    assert InProcess().map(run_helpers.square_plus_noise, [], shared={"offset": 0}) == []


def test_make_executor_choices():
    assert isinstance(make_executor(), InProcess)
    assert isinstance(make_executor(workers=1), InProcess)
    ex = make_executor(workers=3)
    assert isinstance(ex, LocalProcesses) and ex.workers == 3
    for bad in (0, -2, 1.5):
        with pytest.raises(ValueError, match="--workers"):
            make_executor(workers=bad)
    with pytest.raises(ValueError, match="--ray"):
        make_executor(ray=" ")


def test_local_processes_match_in_process_exactly():
    model, x, y = run_helpers.tiny()
    ts = list(np.linspace(0.0, 0.3, 6))
    schedule = [[8, 4], [3, 2]]
    ref_t = sweeps.threshold_sweep(model, x, y, ts, progress=False)
    ref_c = sweeps.cluster_sweep(model, x, y, schedule, progress=False)
    assert len(set(ref_t.accuracy)) > 1  # the points differ: order matters
    points = []
    with LocalProcesses(2) as ex:
        # also a resumed sweep: two points done, the rest on the workers
        got_t = sweeps.threshold_sweep(
            model, x, y, ts, progress=False, executor=ex,
            done=[{"accuracy": a} for a in ref_t.accuracy[:2]],
            on_point=lambda i, p: points.append((i, p["accuracy"])))
        got_c = sweeps.cluster_sweep(model, x, y, schedule, progress=False, executor=ex)
    assert got_t.accuracy == ref_t.accuracy
    assert points == [(i, ref_t.accuracy[i]) for i in range(2, 6)]  # recorded in order
    assert {k: v for k, v in got_c.to_dict().items() if k != "seconds"} == \
        {k: v for k, v in ref_c.to_dict().items() if k != "seconds"}
    # seeds are per task, so random draws agree too
    noise = LocalProcesses(2).map(run_helpers.square_plus_noise, [1, 2, 3],
                                  shared={"offset": 1})
    assert noise == InProcess().map(run_helpers.square_plus_noise, [1, 2, 3],
                                    shared={"offset": 1})


def test_dying_worker_is_replaced_and_result_identical(tmp_path):
    model, x, y = run_helpers.tiny()
    ts = [0.0, 0.1, 0.2, 0.3]
    ref = sweeps.threshold_sweep(model, x, y, ts, progress=False)
    inner = {"model": model, "x": x, "y": y, "include_bias": True,
             "originals": [p.detach().clone() for p in sweeps._threshold_targets(model, True)]}
    shared = {"marker": str(tmp_path / "died"), "die_at": 0.2, "fn": sweeps._threshold_point,
              "inner": inner}
    ex = LocalProcesses(2)
    ticks = []
    got = ex.map(run_helpers.die_once, ts, shared=shared, progress=ticks.append)
    assert (tmp_path / "died").exists()  # a worker did die
    assert ex.restarts == 1
    assert got == ref.accuracy
    assert len(ticks) == len(ts)  # each task counted once


def test_worker_that_always_dies_gives_up():
    ex = LocalProcesses(2, max_restarts=1)
    with pytest.raises(WorkerLost, match="fewer --workers"):
        ex.map(run_helpers.die_always, [0, 1, 2], shared=None)
    assert ex.restarts == 1


def test_sensitivity_on_local_processes_equals_in_process():
    from netsqueeze.auto.sensitivity import sensitivity

    model, x, y = run_helpers.tiny()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    kw = {"sparsities": (0.0, 0.5, 0.9), "bits": (1, 3), "progress": False}
    ref = sensitivity(model, (x, y), **kw)
    got = sensitivity(model, (x, y), executor=LocalProcesses(2), **kw)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])
    a, b = ref.to_dict(), got.to_dict()
    a.pop("seconds"), b.pop("seconds")
    assert a == b
    assert len({acc for ls in ref.layers for acc in ls.prune_accuracy}) > 1
    with pytest.raises(ValueError, match="retraining per point"):
        sensitivity(model, (x, y), executor=LocalProcesses(2), retrain_iterations=1,
                    retrain_fn=lambda m, n: None, **kw)
