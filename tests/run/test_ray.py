"""The Ray backend: a local Ray started by the test gives the in-process results exactly."""

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'netsqueeze[ray]')")

import run_helpers  # on sys.path by tests/run/conftest.py

from netsqueeze.experiments import sweeps
from netsqueeze.run import RayExecutor


@pytest.fixture(scope="module")
def local_ray():
    # the workers import run_helpers by value (it is not installed); netsqueeze by name
    ray.cloudpickle.register_pickle_by_value(run_helpers)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    ray.cloudpickle.unregister_pickle_by_value(run_helpers)


def test_ray_sweeps_equal_in_process(local_ray):
    model, x, y = run_helpers.tiny()
    ts = list(np.linspace(0.0, 0.3, 6))
    schedule = [[8, 4], [3, 2]]
    ref_t = sweeps.threshold_sweep(model, x, y, ts, progress=False)
    ref_c = sweeps.cluster_sweep(model, x, y, schedule, progress=False)
    assert len(set(ref_t.accuracy)) > 1
    ex = RayExecutor()  # uses the Ray this test started
    assert ex.workers == 2
    ticks = []
    got_t = sweeps.threshold_sweep(model, x, y, ts, progress=False, executor=ex)
    got_c = sweeps.cluster_sweep(model, x, y, schedule, progress=False, executor=ex)
    assert got_t.accuracy == ref_t.accuracy
    assert got_c.accuracy == ref_c.accuracy and got_c.clusters == ref_c.clusters
    assert got_c.inertia == ref_c.inertia
    noise = ex.map(run_helpers.square_plus_noise, [1, 2, 3], shared={"offset": 1},
                   progress=ticks.append)
    from netsqueeze.run import InProcess

    assert noise == InProcess().map(run_helpers.square_plus_noise, [1, 2, 3],
                                    shared={"offset": 1})
    assert ticks == [1, 1, 1]
    ex.close()  # did not start Ray: leaves it running
    assert ray.is_initialized()


def test_ray_retries_a_task_whose_worker_died(local_ray, tmp_path):
    model, x, y = run_helpers.tiny()
    ts = [0.0, 0.1, 0.2, 0.3]
    ref = sweeps.threshold_sweep(model, x, y, ts, progress=False)
    inner = {"model": model, "x": x, "y": y, "include_bias": True,
             "originals": [p.detach().clone() for p in sweeps._threshold_targets(model, True)]}
    shared = {"marker": str(tmp_path / "died"), "die_at": 0.2, "fn": sweeps._threshold_point,
              "inner": inner}
    got = RayExecutor(max_retries=2).map(run_helpers.die_once, ts, shared=shared)
    assert (tmp_path / "died").exists()  # a worker did die
    assert got == ref.accuracy
