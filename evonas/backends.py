"""Where evaluations run: local processes (loky), a Dask cluster, a Ray cluster, or threads.

Every backend is an existing engine that joblib knows: ``loky`` is joblib's own process pool, ``dask``
and ``ray`` are joblib's external backends (:func:`register_joblib_backends` / :func:`joblib_backend`
connect them for code that calls ``joblib.Parallel``). The evaluator talks to the same engines through
their ``concurrent.futures`` interface (:func:`open_pool`), because it needs what ``Parallel`` does not
give: one future per evaluation, so that each result is recorded the moment it completes, a dead worker
or a time-out is pinned on its own evaluation and retried, and (asynchronous mode) a new child is
dispatched as soon as a worker is free.

=========== ============================================================ ==========================
backend     workers                                                      ``address``
=========== ============================================================ ==========================
``loky``    ``jobs`` local processes (joblib's reusable loky executor)   —
``dask``    a ``dask.distributed`` ``LocalCluster`` of ``jobs`` processes ``tcp://host:port`` of a
                                                                         running scheduler
``ray``     a local Ray instance                                         ``ray://`` or ``host:port``
``threading`` ``jobs`` threads of the main process (GIL-releasing code)  —
``simulated`` ``jobs`` virtual workers on a virtual clock (table replays)    —
=========== ============================================================ ==========================

One :class:`Pool` subclass per backend, registered in :data:`POOLS`: a new backend is one class here.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import heapq
import logging
import os
from collections.abc import Callable, Collection, Iterator
from typing import Any

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS",
                "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class BackendError(RuntimeError):
    """A backend that cannot start (missing package, unreachable scheduler)."""


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


class Pool:
    """Runs ``fn(*args)`` somewhere and returns a :class:`concurrent.futures.Future`.

    ``capacity`` is how many evaluations may be in flight at once (the number of worker slots). Every
    backend's pool is built as ``cls(jobs, address, fresh=...)``.
    """

    name = ""
    capacity = 1
    #: whether tasks run in worker processes (not the main process)
    processes = True
    #: whether ``address`` may name a running cluster
    remote = False
    #: whether time is virtual (:attr:`clock`): tasks run in the main process, inline fitness included
    simulated = False
    #: seconds on the virtual clock (``None``: real time)
    clock: float | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> cf.Future:
        raise NotImplementedError

    def wait(self, futures: Collection[cf.Future], timeout: float | None = None) -> set[cf.Future]:
        """Block until at least one of ``futures`` is done (or ``timeout``); returns the done ones."""
        done, _ = cf.wait(list(futures), timeout=timeout, return_when=cf.FIRST_COMPLETED)
        return done

    def close(self, abandon: bool = False) -> None:
        """Release the workers; ``abandon`` drops work in flight (interrupted runs)."""

    def describe(self) -> str:
        return f"{self.name} ({self.capacity} workers)"


class InlinePool(Pool):
    """Runs each task at once in the main process (fitness with ``inline = True``, or ``jobs = 1``
    without isolation)."""

    name = "inline"
    processes = False

    def submit(self, fn, *args):
        future: cf.Future = cf.Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # noqa: BLE001 - reported through the future like a worker's error
            future.set_exception(err)
        return future


class ThreadPool(Pool):
    """``jobs`` threads of the main process."""

    name = "threading"
    processes = False

    def __init__(self, jobs: int, address: str | None = None, *, fresh: bool = False):
        self.capacity = cpu_count() if jobs < 0 else max(1, jobs)
        self._executor = cf.ThreadPoolExecutor(max_workers=self.capacity, thread_name_prefix="evonas")

    def submit(self, fn, *args):
        return self._executor.submit(fn, *args)

    def close(self, abandon: bool = False) -> None:
        self._executor.shutdown(wait=not abandon, cancel_futures=abandon)


class LokyPool(Pool):
    """joblib's reusable loky process pool (the workers ``joblib.Parallel(backend="loky")`` uses).

    Like joblib, each worker's BLAS/OpenMP thread count is capped at cores / workers unless the
    environment sets it. ``fresh=True`` starts new workers instead of reusing warm ones.
    """

    name = "loky"

    def __init__(self, jobs: int, address: str | None = None, *, fresh: bool = False):
        self.capacity = cpu_count() if jobs < 0 else max(1, jobs)
        threads = str(max(1, cpu_count() // self.capacity))
        self._env = {v: os.environ.get(v, threads) for v in _THREAD_VARS}
        self._executor = self._get(reuse=not fresh)

    def _get(self, reuse: bool = True):
        from joblib.externals.loky import get_reusable_executor

        return get_reusable_executor(max_workers=self.capacity, timeout=300, env=self._env,
                                     reuse="auto" if reuse else False, kill_workers=not reuse)

    def submit(self, fn, *args):
        from joblib.externals.loky.process_executor import ShutdownExecutorError

        try:
            return self._executor.submit(fn, *args)
        except (ShutdownExecutorError, RuntimeError, cf.BrokenExecutor):
            # a worker died and broke the pool: start a new one (the lost evaluations were reported)
            self._executor = self._get()
            return self._executor.submit(fn, *args)

    def close(self, abandon: bool = False) -> None:
        if abandon:
            with contextlib.suppress(Exception):
                self._executor.shutdown(wait=False, kill_workers=True)


class DaskPool(Pool):
    """Evaluations as ``dask.distributed`` tasks: on a LocalCluster of ``jobs`` single-threaded worker
    processes that this pool starts (on loopback), or on the running scheduler at ``address``.

    On the LocalCluster a worker that dies fails its task at once (``allowed-failures = 0``): the
    evaluator records it and applies its own retries.
    """

    name = "dask"
    remote = True

    def __init__(self, jobs: int, address: str | None = None, *, fresh: bool = False, timeout: float = 30.0):
        try:
            import dask
            from distributed import Client, LocalCluster
        except ImportError:
            raise BackendError("backend 'dask' needs dask[distributed]: pip install 'evonas[dask]'") from None
        self.address = address
        self._cluster = None
        try:
            if address:
                self._client = Client(address, timeout=timeout)
            else:
                n = cpu_count() if jobs < 0 else max(1, jobs)
                with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
                    self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                                 host="127.0.0.1", dashboard_address=None,
                                                 silence_logs=logging.ERROR)
                self._client = Client(self._cluster)
        except (OSError, TimeoutError) as err:
            if self._cluster is not None:
                self._cluster.close()
            raise BackendError(f"backend 'dask': cannot connect to {address or 'a LocalCluster'} ({err})") from None
        slots = sum(self._client.nthreads().values()) or 1
        self.capacity = slots if jobs < 0 else max(1, jobs)
        self._executor = self._client.get_executor(pure=False)

    @property
    def client(self):
        return self._client

    def submit(self, fn, *args):
        return self._executor.submit(fn, *args)

    def describe(self) -> str:
        where = self.address or "LocalCluster"
        return f"dask {where} ({self.capacity} in flight, {sum(self._client.nthreads().values())} worker threads)"

    def close(self, abandon: bool = False) -> None:
        with contextlib.suppress(Exception):
            self._executor.shutdown(wait=False)
        with contextlib.suppress(Exception):
            self._client.close()
        if self._cluster is not None:
            with contextlib.suppress(Exception):
                self._cluster.close()


def _ray_call(fn, *args):
    return fn(*args)


class RayPool(Pool):
    """Evaluations as Ray tasks (one CPU each) on a local Ray instance or the cluster at ``address``."""

    name = "ray"
    remote = True

    def __init__(self, jobs: int, address: str | None = None, *, fresh: bool = False):
        try:
            import ray
        except ImportError:
            raise BackendError("backend 'ray' needs ray: pip install 'evonas[ray]'") from None
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            kwargs: dict[str, Any] = {"address": address or None, "include_dashboard": False,
                                      "logging_level": logging.ERROR}
            if not address and jobs > 0:
                kwargs["num_cpus"] = jobs
            ray.init(**kwargs)
        slots = int(ray.cluster_resources().get("CPU", 1))
        self.capacity = slots if jobs < 0 else max(1, jobs)
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)

    def submit(self, fn, *args):
        return self._remote.remote(fn, *args).future()

    def close(self, abandon: bool = False) -> None:
        if self._owned:
            with contextlib.suppress(Exception):
                self._ray.shutdown()


class SimulatedPool(Pool):
    """``jobs`` virtual workers on a virtual clock: each task runs at once in the main process and is done
    when its trial's ``elapsed_s`` (a table's training-time ``cost``) has passed on :attr:`clock`.

    :meth:`wait` completes tasks in simulated-time order (ties: submission order), so an asynchronous search
    over a table replays deterministically as if ``jobs`` workers trained the networks.
    """

    name = "simulated"
    processes = False
    simulated = True

    def __init__(self, jobs: int, address: str | None = None, *, fresh: bool = False):
        self.capacity = cpu_count() if jobs < 0 else max(1, jobs)
        self.clock = 0.0
        self._running: list[tuple[float, int, cf.Future, Any, BaseException | None]] = []
        self._seq = 0

    def submit(self, fn, *args):
        if len(self._running) >= self.capacity:
            raise RuntimeError("simulated pool: all virtual workers are busy")
        result, error = None, None
        try:
            result = fn(*args)
        except Exception as err:  # noqa: BLE001 - reported through the future like a worker's error
            error = err
        duration = float(result.elapsed_s) if error is None else 0.0
        future: cf.Future = cf.Future()
        heapq.heappush(self._running, (self.clock + max(0.0, duration), self._seq, future, result, error))
        self._seq += 1
        return future

    def wait(self, futures, timeout=None):
        if not self._running:
            return set()
        finish, _, future, result, error = heapq.heappop(self._running)
        self.clock = max(self.clock, finish)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
        return {future}

    def describe(self) -> str:
        return f"simulated ({self.capacity} virtual workers)"


#: backend name -> its pool class
POOLS: dict[str, type[Pool]] = {"loky": LokyPool, "dask": DaskPool, "ray": RayPool, "threading": ThreadPool,
                                "simulated": SimulatedPool}
BACKENDS = tuple(POOLS)
#: backends whose tasks run outside the main process (safe to fork an evaluation process from)
PROCESS_BACKENDS = tuple(name for name, cls in POOLS.items() if cls.processes)


def open_pool(backend: str, jobs: int, address: str | None = None, *, fresh: bool = False) -> Pool:
    """A :class:`Pool` for ``backend`` with ``jobs`` workers (-1: all cores / all cluster slots)."""
    if backend not in POOLS:
        raise BackendError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    return POOLS[backend](jobs, address, fresh=fresh)


def is_worker_death(err: BaseException) -> bool:
    """Whether a future's exception means the worker process died (not an error of the fitness)."""
    names = {c.__name__ for c in type(err).__mro__}
    return bool(names & {"TerminatedWorkerError", "BrokenProcessPool", "BrokenExecutor", "KilledWorker",
                         "ShutdownExecutorError", "WorkerCrashedError", "RayActorError", "NodeDiedError",
                         "CommClosedError", "CancelledError"})


# --- joblib -----------------------------------------------------------------------------------------------
def register_joblib_backends() -> list[str]:
    """Make ``joblib.parallel_config(backend=...)`` accept ``dask`` and ``ray`` where installed; returns
    the backends joblib can use."""
    from joblib.parallel import BACKENDS as JOBLIB_BACKENDS, EXTERNAL_BACKENDS

    names = [n for n in ("loky", "threading") if n in JOBLIB_BACKENDS]
    with contextlib.suppress(ImportError):
        import distributed  # noqa: F401

        if "dask" not in JOBLIB_BACKENDS and "dask" in EXTERNAL_BACKENDS:
            EXTERNAL_BACKENDS["dask"]()
        names.append("dask")
    with contextlib.suppress(ImportError):
        from ray.util.joblib import register_ray

        register_ray()
        names.append("ray")
    return names


@contextlib.contextmanager
def joblib_backend(backend: str, jobs: int = -1, address: str | None = None) -> Iterator[None]:
    """Run the ``joblib.Parallel`` calls inside on ``backend``: a Dask client (LocalCluster or
    ``address``) or a Ray instance is started and closed around the block.

    >>> with joblib_backend("dask", jobs=2):            # doctest: +SKIP
    ...     Parallel()(delayed(f)(x) for x in xs)
    """
    import joblib

    register_joblib_backends()
    pool: Pool | None = None
    try:
        if backend in POOLS and POOLS[backend].remote:
            pool = open_pool(backend, jobs, address)
        elif backend not in ("loky", "threading"):
            raise BackendError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
        n_jobs = pool.capacity if pool is not None else jobs
        with joblib.parallel_config(backend=backend, n_jobs=n_jobs):
            yield
    finally:
        if pool is not None:
            pool.close()
