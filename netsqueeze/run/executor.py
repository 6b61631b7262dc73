"""One interface for independent work: ``executor.map(fn, items, shared=...)``.

Each task calls ``fn(shared, item)`` and returns a picklable result; :meth:`Executor.map` returns
the results in submission order whichever backend ran them:

* :class:`InProcess` (the default) runs the tasks one after another in this process;
* :class:`LocalProcesses` runs them on ``n`` worker processes started with ``spawn``; ``shared``
  (the trained model, the test set) is pickled once and unpickled once per worker by the pool's
  initializer, never sent per task. A worker that dies breaks the pool: the pool is rebuilt and
  the unfinished tasks run again, a bounded number of times;
* :class:`RayExecutor` runs them as Ray tasks; ``shared`` goes to the object store once
  (``ray.put``) and each worker process unpickles it once; a task whose worker dies is retried
  by Ray itself (``max_retries``).

Every task runs with ``torch.manual_seed(index)`` (``index`` = its position in ``items``) and,
on workers, one torch thread, so a task gives the same result on every backend. ``on_result``
receives ``(index, result)`` in submission order (so a driver can record finished points one by
one and resume after an interruption); ``progress`` is called with 1 for each finished task, in
the order they finish.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "Executor",
    "InProcess",
    "LocalProcesses",
    "RayExecutor",
    "WorkerLost",
    "make_executor",
]

ResultCallback = Callable[[int, Any], None]
ProgressCallback = Callable[[int], None]


class WorkerLost(ChildProcessError):
    """Worker processes kept dying: the tasks could not be finished."""


def _run_task(fn, shared, index: int, item):
    """One task, seeded by its index (the same on every backend)."""
    import torch

    torch.manual_seed(index)
    return fn(shared, item)


class _InOrder:
    """Hands results to ``on_result`` in submission order as the prefix completes."""

    def __init__(self, n: int, on_result: ResultCallback | None,
                 progress: ProgressCallback | None, first: int = 0):
        self.first = first
        self.results: list[Any] = [None] * n
        self.done = [False] * n
        self.next = 0
        self.on_result = on_result
        self.progress = progress

    def add(self, i: int, result) -> None:
        if self.done[i]:
            return
        self.results[i] = result
        self.done[i] = True
        if self.progress is not None:
            self.progress(1)
        while self.next < len(self.done) and self.done[self.next]:
            if self.on_result is not None:
                self.on_result(self.first + self.next, self.results[self.next])
            self.next += 1

    def pending(self) -> list[int]:
        return [i for i, d in enumerate(self.done) if not d]


class Executor:
    """Where independent tasks run. Subclasses implement :meth:`_map`."""

    #: a short name for logs ("in-process", "2 local processes", "ray")
    name = "executor"
    #: how many tasks may run at once
    workers = 1

    def map(
        self,
        fn: Callable[[Any, Any], Any],
        items: Iterable,
        *,
        shared: Any = None,
        on_result: ResultCallback | None = None,
        progress: ProgressCallback | None = None,
        first: int = 0,
    ) -> list:
        """``[fn(shared, item) for item in items]``, wherever the backend runs it.

        Parameters
        ----------
        fn : callable ``(shared, item) -> result``
            A module-level function (other processes import it by name).
        items : iterable
            One task per item.
        shared : object, optional
            Read-only data every task needs (the model, the test set), sent once per worker.
        on_result : callable ``(index, result) -> None``, optional
            Called in submission order as results become available.
        progress : callable ``(n) -> None``, optional
            Called with 1 each time a task finishes (in completion order).
        first : int
            The index of ``items[0]``: task ``j`` is seeded with ``first + j`` and reported to
            ``on_result`` as ``first + j`` (a resumed sweep passes its remaining points).

        Returns
        -------
        list of results, in the order of ``items``.
        """
        items = list(items)
        order = _InOrder(len(items), on_result, progress, int(first))
        if items:
            self._map(fn, items, shared, order)
        missing = order.pending()
        if missing:  # a backend bug, never a user error
            raise RuntimeError(f"{len(missing)} tasks returned no result")
        return order.results

    def _map(self, fn, items: Sequence, shared, order: _InOrder) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release the workers (nothing for the in-process backend)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class InProcess(Executor):
    """Run the tasks here, one after another (no extra processes, no extra dependencies).

    The global torch random state is saved and restored around each task, so seeding a task
    leaves the caller's random stream untouched.
    """

    name = "in-process"

    def _map(self, fn, items, shared, order):
        import torch

        for i, item in enumerate(items):
            with torch.random.fork_rng(devices=[]):
                result = _run_task(fn, shared, order.first + i, item)
            order.add(i, result)


# --- local processes --------------------------------------------------------------------------

_WORKER_SHARED: Any = None


def _worker_init(blob: bytes, threads: int) -> None:
    """Pool initializer: one torch thread, and ``shared`` unpickled once for this worker."""
    global _WORKER_SHARED
    import torch

    torch.set_num_threads(threads)
    _WORKER_SHARED = pickle.loads(blob)


def _worker_task(fn, index: int, item):
    return _run_task(fn, _WORKER_SHARED, index, item)


class LocalProcesses(Executor):
    """Run the tasks on ``n`` local worker processes (``spawn``; one torch thread each).

    Parameters
    ----------
    n : int
        Worker processes (>= 1).
    max_restarts : int
        How many times a pool broken by a dying worker is rebuilt to run the unfinished tasks
        again before :class:`WorkerLost` is raised.
    threads : int
        torch threads per worker.
    """

    def __init__(self, n: int, *, max_restarts: int = 1, threads: int = 1):
        if int(n) != n or n < 1:
            raise ValueError(f"workers must be an integer >= 1, got {n}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self.workers = int(n)
        self.max_restarts = int(max_restarts)
        self.threads = int(threads)
        self.name = f"{self.workers} local process{'es' if self.workers != 1 else ''}"
        self.restarts = 0  # pools rebuilt during the last map (for tests and logs)

    def _pool(self, blob: bytes, n_tasks: int):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(
            max_workers=max(1, min(self.workers, n_tasks)),
            mp_context=mp.get_context("spawn"),
            initializer=_worker_init,
            initargs=(blob, self.threads),
        )

    def _map(self, fn, items, shared, order):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        blob = pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL)
        self.restarts = 0
        while True:
            todo = order.pending()
            if not todo:
                return
            pool = self._pool(blob, len(todo))
            broken = False
            try:
                futures = {pool.submit(_worker_task, fn, order.first + i, items[i]): i
                           for i in todo}
                waiting = set(futures)
                while waiting:
                    finished, waiting = wait(waiting, return_when=FIRST_COMPLETED)
                    for f in sorted(finished, key=futures.__getitem__):
                        try:
                            result = f.result()
                        except BrokenProcessPool:
                            broken = True
                            continue
                        order.add(futures[f], result)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
            if not broken:
                continue  # everything finished: the loop returns
            if self.restarts >= self.max_restarts:
                raise WorkerLost(
                    f"a worker process died and the pool was rebuilt {self.restarts} time(s); "
                    f"{len(order.pending())} of {len(items)} tasks are unfinished (out of "
                    "memory? try fewer --workers)"
                )
            self.restarts += 1


# --- Ray --------------------------------------------------------------------------------------

_RAY_CACHE: dict[str, Any] = {}


def _ray_task(fn, shared_ref: list, index: int, item, threads: int):
    """A Ray task: ``shared`` is fetched from the object store once per worker process."""
    import ray
    import torch

    ref = shared_ref[0]
    key = ref.hex()
    if key not in _RAY_CACHE:
        _RAY_CACHE.clear()  # one sweep's data at a time
        _RAY_CACHE[key] = ray.get(ref)
    torch.set_num_threads(threads)
    return _run_task(fn, _RAY_CACHE[key], index, item)


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ValueError(
            "--ray needs Ray: pip install 'netsqueeze[ray]' (or pip install ray)"
        ) from None
    return ray


class RayExecutor(Executor):
    """Run the tasks on a Ray cluster.

    Parameters
    ----------
    address : str or None
        ``"auto"`` joins the cluster started by ``ray start`` on this machine, ``"host:port"``
        (or ``ray://host:port``) a remote one; ``None`` starts a local Ray for this process
        (or uses the one already initialized).
    max_retries : int
        Ray re-runs a task whose worker died up to this many times.
    num_cpus : int or None
        CPUs of the local Ray started when ``address`` is ``None``.
    threads : int
        torch threads per task.
    """

    def __init__(self, address: str | None = None, *, max_retries: int = 3,
                 num_cpus: int | None = None, threads: int = 1):
        self.ray = _import_ray()
        self.address = address
        self.max_retries = int(max_retries)
        self.threads = int(threads)
        self.num_cpus = num_cpus
        self._started = False
        self._workers: int | None = None

    def _connect(self):
        """Join (or start) Ray on first use, so nothing runs before the work needs it."""
        if not self.ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if self.address is None:
                if self.num_cpus is not None:
                    kwargs["num_cpus"] = int(self.num_cpus)
            else:
                kwargs["address"] = self.address
            try:
                self.ray.init(**kwargs)
            except ConnectionError as exc:
                raise ValueError(
                    f"--ray {self.address}: no Ray cluster found there ({exc}); start one with "
                    "`ray start --head` or give its address"
                ) from None
            self._started = True
        if self._workers is None:
            self._workers = max(1, int(self.ray.cluster_resources().get("CPU", 1)))
        return self.ray

    @property
    def workers(self) -> int:  # type: ignore[override]
        self._connect()
        return self._workers

    @property
    def name(self) -> str:  # type: ignore[override]
        return f"ray ({self._workers} CPUs)" if self._workers else "ray"

    def _map(self, fn, items, shared, order):
        ray = self._connect()
        remote = ray.remote(max_retries=self.max_retries, num_cpus=1)(_ray_task)
        ref = ray.put(shared)
        refs = [remote.remote(fn, [ref], order.first + i, item, self.threads)
                for i, item in enumerate(items)]
        index = {r.hex(): i for i, r in enumerate(refs)}
        waiting = list(refs)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            for r in ready:
                order.add(index[r.hex()], ray.get(r))
        del ref

    def close(self) -> None:
        if self._started and self.ray.is_initialized():
            self.ray.shutdown()
        self._started = False


def make_executor(workers: int | None = None, ray: str | None = None) -> Executor:
    """The executor the options ask for.

    Parameters
    ----------
    workers : int or None
        ``None`` or 1: in this process; ``N > 1``: ``N`` local worker processes. With ``ray``,
        the CPUs of the local Ray this starts (``ray="local"``).
    ray : str or None
        ``None``: no Ray. ``"auto"``: the Ray cluster on this machine (``ray start --head``);
        ``"local"``: a Ray started for this run; ``"host:port"`` / ``"ray://host:port"``: that
        cluster.
    """
    if workers is not None and (int(workers) != workers or workers < 1):
        raise ValueError(f"--workers must be an integer >= 1, got {workers}")
    if ray is not None:
        ray = str(ray).strip()
        if not ray:
            raise ValueError("--ray needs auto, local or a cluster address (host:port)")
        if ray == "local":
            return RayExecutor(None, num_cpus=workers)
        return RayExecutor(ray)
    if workers is None or workers == 1:
        return InProcess()
    return LocalProcesses(int(workers))


def default_workers() -> int:
    """CPUs this process may use (a hint for ``--workers``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
