"""Evaluating architectures: in the main process, or in worker processes of a backend, one future each.

Failure isolation. Any exception, a missing or non-finite metric, CUDA out-of-memory, a per-evaluation
wall-time limit or a process that dies makes a *failed* trial carrying the reason, never a crash of the
search. With ``isolate`` (the default whenever evaluations run in workers), each evaluation runs in its own
process forked from the worker: the worker enforces ``time_limit`` by killing that process (``SIGKILL``,
not a thread that cannot be stopped), a fitness that kills or crashes its process takes only itself down,
and all its memory (GPU memory included) is released when it exits. Without isolation a dead worker
fails the evaluations it was running, and ``torch.cuda.empty_cache()`` runs after each evaluation.
Failed evaluations are retried up to ``retries`` times (same seed).
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import logging
import math
import os
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evonas import interrupts
from evonas.backends import BACKENDS, POOLS, PROCESS_BACKENDS, InlinePool, Pool, is_worker_death, open_pool
from evonas.fitness.base import Architecture, EvalContext, EvalResult, Fitness, as_fitness, as_result
from evonas.spaces.base import SearchSpace
from evonas.trial import Trial

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    """An architecture to evaluate; ``key`` is its evaluation step, which fixes its seed."""

    key: int
    arch: str
    canonical_hash: str


#: the largest per-evaluation time limit accepted (seconds: 30 days)
MAX_TIME_LIMIT = 30 * 86400.0


def check_time_limit(value: float) -> float:
    """``value`` as a time limit in seconds (0: none); raises ``ValueError`` unless finite, >= 0 and at most
    :data:`MAX_TIME_LIMIT`."""
    value = float(value)
    if not math.isfinite(value) or value < 0 or value > MAX_TIME_LIMIT:
        raise ValueError(f"time_limit: must be between 0 (no limit) and {MAX_TIME_LIMIT:g} seconds, got {value:g}")
    return value


def cap_workers(jobs: int, most: int, why: str = "the batch size") -> int:
    """``jobs`` workers (``-1``: one per core), but never more than ``most`` evaluations can use at once;
    says so (a warning) when an explicit ``jobs`` is cut."""
    from evonas.backends import cpu_count

    wanted = cpu_count() if jobs < 0 else int(jobs)
    if wanted <= most:
        return jobs
    if jobs > 0:
        log.warning("jobs = %d: using %d workers (%s); more would only idle", jobs, most, why)
    return int(most)


def evaluation_seed(run_seed: int, key: int) -> int:
    """The seed of evaluation ``key``: a function of (run seed, key) only, never of workers or order."""
    return int(np.random.SeedSequence(int(run_seed), spawn_key=(int(key),)).generate_state(1)[0])


def worker_id() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def is_out_of_memory(err: BaseException) -> bool:
    """CUDA (or other accelerator / host) out-of-memory errors."""
    return type(err).__name__ == "OutOfMemoryError" or isinstance(err, MemoryError) or \
        "out of memory" in str(err).lower()


def error_text(err: BaseException) -> str:
    """``"Type: message"`` (first 2000 characters); out-of-memory errors start with ``"out of memory: "``."""
    text = f"{type(err).__name__}: {err}"[:2000]
    return f"out of memory: {text}" if is_out_of_memory(err) else text


def evaluate_one(fitness: Fitness, space: SearchSpace, cand: Candidate, ctx: EvalContext,
                 required: Sequence[str] = ()) -> Trial:
    """Evaluate one candidate in this process; any exception becomes a failed trial carrying its message."""
    start = time.perf_counter()
    seen = interrupts.received()
    try:
        graph = space.to_graph(space.from_string(cand.arch))
        result = as_result(fitness(Architecture(cand.arch, graph, space.name), ctx), required)
    except KeyboardInterrupt as err:
        if interrupts.is_real(seen):  # Ctrl-C / SIGTERM of the run: stop it (resumable)
            raise
        result = EvalResult.failed("KeyboardInterrupt raised by the fitness (not an interrupt of the run)"
                                   + (f": {err}" if str(err) else ""))
    except (Exception, SystemExit) as err:  # noqa: BLE001 - a bad individual must not stop the search
        result = EvalResult.failed(error_text(err))
    return _trial(cand, ctx, result, time.perf_counter() - start)


def _trial(cand: Candidate, ctx: EvalContext, result: EvalResult, measured: float) -> Trial:
    """The trial of ``result``; its elapsed time is what the fitness stated, else ``measured``."""
    elapsed = result.elapsed_s if result.elapsed_s is not None else measured
    return Trial(step=cand.key, arch=cand.arch, canonical_hash=cand.canonical_hash, metrics=result.metrics,
                 status=result.status, error=result.error, seed=ctx.seed, elapsed_s=elapsed, worker=worker_id())


def run_group(fitness: Fitness, space: SearchSpace, cands: Sequence[Candidate], ctxs: Sequence[EvalContext],
              required: Sequence[str] = (), main_pid: int = 0) -> list[Trial]:
    """What a worker runs for a group of candidates that the fitness evaluates together, in this process
    (``fitness.evaluate_group(archs, ctxs)``, e.g. ``[training] group``). A candidate whose string does
    not parse fails alone; an exception of the fitness fails the whole group."""
    if main_pid:
        _watch_parent(main_pid)
        if os.getpid() != main_pid:  # a local worker: a KeyboardInterrupt here can only be the fitness's
            interrupts.ignore_sigint()
    start = time.perf_counter()
    seen = interrupts.received()
    results: list[EvalResult | None] = [None] * len(cands)
    archs, todo = [], []
    for i, cand in enumerate(cands):
        try:
            archs.append(Architecture(cand.arch, space.to_graph(space.from_string(cand.arch)), space.name))
            todo.append(i)
        except Exception as err:  # noqa: BLE001 - a bad individual must not stop the search
            results[i] = EvalResult.failed(error_text(err))
    try:
        if todo:
            for i, value in zip(todo, fitness.evaluate_group(archs, [ctxs[i] for i in todo]), strict=True):
                results[i] = as_result(value, required)
    except KeyboardInterrupt:
        if interrupts.is_real(seen):  # Ctrl-C / SIGTERM of the run: stop it (resumable)
            raise
        for i in todo:
            results[i] = EvalResult.failed("KeyboardInterrupt raised by the fitness (not an interrupt of the run)")
    except (Exception, SystemExit) as err:  # noqa: BLE001 - SystemExit from user code is a failure too
        for i in todo:
            results[i] = EvalResult.failed(error_text(err))
    finally:
        release_gpu_memory()
    elapsed = (time.perf_counter() - start) / max(1, len(todo))  # the group's time, shared out
    return [_trial(c, ctx, r, elapsed) for c, ctx, r in zip(cands, ctxs, results)]


def release_gpu_memory() -> None:
    """Free cached GPU memory of this process (when torch has initialised CUDA)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    try:
        if torch.cuda.is_initialized():
            gc.collect()
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - best effort
        pass


_watching: int | None = None


def _watch_parent(main_pid: int) -> None:
    """In a local worker process: exit when the main process ``main_pid`` dies (SIGKILL leaves no chance to
    shut the pool down), so killed runs leave no orphaned workers."""
    global _watching
    if _watching == main_pid or os.getpid() == main_pid or os.getppid() != main_pid:
        return
    _watching = main_pid

    def watch() -> None:
        while os.getppid() == main_pid:
            time.sleep(0.5)
        os._exit(0)

    import threading

    threading.Thread(target=watch, name="evonas-parent-watch", daemon=True).start()


def run_task(fitness: Fitness, space: SearchSpace, cand: Candidate, ctx: EvalContext, required: Sequence[str],
             time_limit: float = 0.0, isolate: bool = False, main_pid: int = 0) -> Trial:
    """What a worker runs for one evaluation: in its own forked process when ``isolate``. ``main_pid``
    (local pools): the worker exits when that process dies."""
    if main_pid:
        _watch_parent(main_pid)
        if os.getpid() != main_pid:  # a local worker: a KeyboardInterrupt here can only be the fitness's
            interrupts.ignore_sigint()
    if isolate and hasattr(os, "fork"):
        return run_forked(fitness, space, cand, ctx, required, time_limit)
    try:
        return evaluate_one(fitness, space, cand, ctx, required)
    finally:
        release_gpu_memory()


def _failed(cand: Candidate, ctx: EvalContext, error: str, elapsed: float) -> Trial:
    return Trial(step=cand.key, arch=cand.arch, canonical_hash=cand.canonical_hash, metrics={}, status="failed",
                 error=error, seed=ctx.seed, elapsed_s=elapsed, worker=worker_id())


def run_forked(fitness: Fitness, space: SearchSpace, cand: Candidate, ctx: EvalContext,
               required: Sequence[str] = (), time_limit: float = 0.0) -> Trial:
    """Evaluate in a process tree forked from this one (:func:`evonas.isolation.run_in_child`): the result
    comes back as a message, and the whole tree (background children included) is killed when the
    evaluation ends, or past ``time_limit`` seconds (0: none).

    Fork only from a process that has not run torch/OpenMP work itself (a worker that only supervises):
    OpenMP thread pools do not survive ``fork``.
    """
    from evonas.isolation import run_in_child

    start = time.monotonic()

    def evaluate() -> Trial:
        try:
            return evaluate_one(fitness, space, cand, ctx, required)
        except BaseException as err:  # noqa: BLE001 - SystemExit from user code is a failure too
            return _failed(cand, ctx, error_text(err), time.monotonic() - start)

    outcome = run_in_child(evaluate, time_limit)
    elapsed = time.monotonic() - start
    if outcome.returned:
        trial = outcome.value
        trial.worker = worker_id()
        return trial
    if outcome.timed_out:
        return _failed(cand, ctx, f"timeout: evaluation exceeded the time limit of {time_limit:g}s and its "
                                  "process was killed", elapsed)
    code = outcome.exit_code
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = " (killed from outside, or by the kernel's out-of-memory killer)" if -code == signal.SIGKILL else ""
        return _failed(cand, ctx, f"worker died: evaluation process killed by signal {name}{hint}", elapsed)
    return _failed(cand, ctx, f"worker died: evaluation process exited with code {code} before returning "
                              "a result", elapsed)


#: loky workers that ran a fitness themselves (not isolated): forking from them is unsafe afterwards
_loky_ran_fitness = False


class Evaluator:
    """Turns candidates into trials, as each completes.

    ``jobs`` workers on ``backend`` (``"loky"`` local processes, ``"dask"``, ``"ray"``, ``"threading"``;
    ``address`` connects to a running Dask scheduler or Ray cluster). A fitness with ``inline = True``
    runs in the main process. Results do not depend on ``jobs`` or the backend: each evaluation's seed
    comes from (``seed``, candidate key).

    ``isolate``: each evaluation in its own process forked from the worker (``None``: whenever evaluations
    run in worker processes, i.e. ``jobs != 1``, a cluster backend, or a ``time_limit``; never for a
    fitness that evaluates groups). A fitness whose ``group`` is above 1 gets the candidates in groups of
    that size, one :meth:`~evonas.fitness.Fitness.evaluate_group` call per worker task (:func:`run_group`;
    the ``train`` kind's ``[training] group`` trains a group on one GPU at once). ``time_limit``:
    seconds per evaluation (0: none; needs isolation; not applied to ``inline`` fitness, which never
    leaves the main process). ``retries``: extra attempts for a failed evaluation.

    Use as a context manager (or call :meth:`close`) to release the workers.
    """

    def __init__(self, fitness: Fitness | Callable[..., Any], space: SearchSpace, *, seed: int = 0, jobs: int = 1,
                 backend: str = "loky", budget: Mapping[str, Any] | None = None, device: str | None = None,
                 required: Sequence[str] = (), address: str | None = None, time_limit: float = 0.0,
                 retries: int = 0, isolate: bool | None = None):
        if jobs == 0 or jobs < -1:
            raise ValueError(f"jobs: must be >= 1 (or -1 for all cores), got {jobs}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
        if retries < 0:
            raise ValueError(f"retries: must be >= 0, got {retries}")
        time_limit = check_time_limit(time_limit)
        self.fitness = as_fitness(fitness)
        self.space = space
        self.seed = int(seed)
        self.jobs = int(jobs)
        self.backend = backend
        self.address = address or None
        self.budget = dict(budget or {})
        self.device = device
        self.required = tuple(required)
        self.time_limit = float(time_limit)
        self.retries = int(retries)
        self.inline = bool(self.fitness.inline)
        self.group = max(1, int(self.fitness.group or 1))
        if self.group > 1 and isolate:
            raise ValueError(f"isolate: a fitness that evaluates groups ({self.group} candidates per worker task) "
                             "trains them in one process, not one forked process each; set isolate = false")
        if self.inline or self.group > 1:
            isolate = False
        elif isolate is None:
            isolate = backend in PROCESS_BACKENDS and (bool(self.time_limit) or self.jobs != 1
                                                       or POOLS[backend].remote)
        if isolate and backend not in PROCESS_BACKENDS:
            raise ValueError(f"isolate: backend {backend!r} runs evaluations in the main process; isolation "
                             f"needs worker processes ({', '.join(PROCESS_BACKENDS)})")
        if self.time_limit and not isolate and not self.inline:
            raise ValueError(f"time_limit: = {time_limit:g} needs isolate = true (a limit is enforced by "
                             "killing the evaluation's process)")
        if isolate and not hasattr(os, "fork"):
            raise ValueError("isolate: needs os.fork (Linux, macOS); set isolate = false on this platform")
        self.isolate = bool(isolate)
        self._pool: Pool | None = None
        self._main_pid = 0
        self._futures: dict[cf.Future, tuple[Candidate, int]] = {}
        self._queue: deque[tuple[Candidate, int]] = deque()
        self._ready: deque[Trial] = deque()
        #: seconds on the virtual clock of the ``simulated`` backend when it last closed (``None``: real time)
        self.simulated_s: float | None = None

    def context(self, cand: Candidate) -> EvalContext:
        """The evaluation context of ``cand``."""
        return EvalContext(seed=evaluation_seed(self.seed, cand.key), key=cand.key, budget=self.budget,
                           device=self.device)

    # --- workers ----------------------------------------------------------------------------------------
    def open(self) -> "Evaluator":
        """Start the workers (a no-op when they run)."""
        global _loky_ran_fitness
        if self._pool is None:
            if POOLS[self.backend].simulated:
                self._pool = open_pool(self.backend, self.jobs)
            elif self.inline or (self.jobs == 1 and not self.isolate and self.backend in ("loky", "threading")):
                self._pool = InlinePool()
            else:
                fresh = self.backend == "loky" and self.isolate and _loky_ran_fitness
                self._pool = open_pool(self.backend, self.jobs, self.address, fresh=fresh)
                self._main_pid = os.getpid() if self.backend == "loky" else 0
                if self.backend == "loky":
                    _loky_ran_fitness = (_loky_ran_fitness and not fresh) or not self.isolate
        return self

    def close(self, abandon: bool = False) -> None:
        """Release the workers; ``abandon`` drops evaluations in flight."""
        if self._pool is not None:
            self.simulated_s = self._pool.clock
            for fut in self._futures:
                fut.cancel()
            self._pool.close(abandon=abandon or bool(self._futures))
            self._pool = None
        self._futures.clear()
        self._queue.clear()
        self._ready.clear()

    def __enter__(self) -> "Evaluator":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abandon=exc_type is not None)

    @property
    def capacity(self) -> int:
        """How many evaluations run at once."""
        self.open()
        return self._pool.capacity

    @property
    def pool(self) -> Pool | None:
        return self._pool

    def describe(self) -> str:
        self.open()
        iso = ", isolated" if self.isolate else ""
        limit = f", time limit {self.time_limit:g}s" if self.time_limit else ""
        group = f", groups of {self.group}" if self.group > 1 else ""
        return f"{self._pool.describe()}{iso}{limit}{group}"

    # --- fitness hooks (main process) -------------------------------------------------------------------
    def before(self, candidates: Sequence[Candidate]) -> None:
        """The fitness's :meth:`~evonas.fitness.Fitness.before_batch` hook (main process, before dispatch)."""
        self.fitness.before_batch(candidates)

    def after(self, candidates: Sequence[Candidate], trials: Sequence[Trial]) -> None:
        """The fitness's :meth:`~evonas.fitness.Fitness.after_batch` hook (main process)."""
        self.fitness.after_batch(candidates, trials)

    # --- one at a time (asynchronous use) ---------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        """Evaluations submitted and not yet returned by :meth:`wait`."""
        return sum(map(len, self._futures.values())) + len(self._queue) + len(self._ready)

    def submit(self, cand: Candidate) -> None:
        """Start evaluating ``cand`` (queued while all workers are busy)."""
        self.submit_many([cand])

    def submit_many(self, cands: Sequence[Candidate]) -> None:
        """Start evaluating ``cands``, in order (queued while all workers are busy; grouped for a fitness
        that evaluates groups)."""
        self.open()
        if isinstance(self._pool, InlinePool) and self.group == 1:
            self._ready.extend(self._inline(cand, 1) for cand in cands)
            return
        self._queue.extend((cand, 1) for cand in cands)
        self._fill()

    def _inline(self, cand: Candidate, attempt: int) -> Trial:
        while True:
            trial = run_task(self.fitness, self.space, cand, self.context(cand), self.required)
            trial.attempts = attempt
            if trial.ok or attempt > self.retries:
                return trial
            attempt += 1

    def _fill(self) -> None:
        while self._queue and len(self._futures) < self._pool.capacity:
            items = [self._queue.popleft() for _ in range(min(self.group, len(self._queue)))]
            cands = [cand for cand, _ in items]
            if self.group > 1:
                fut = self._pool.submit(run_group, self.fitness, self.space, cands,
                                        [self.context(c) for c in cands], self.required, self._main_pid)
            else:
                fut = self._pool.submit(run_task, self.fitness, self.space, cands[0], self.context(cands[0]),
                                        self.required, self.time_limit, self.isolate, self._main_pid)
            self._futures[fut] = items

    def wait(self, timeout: float | None = None) -> list[Trial]:
        """Block until at least one evaluation is final (retries done); returns the final trials (empty
        when nothing is in flight or ``timeout`` passed)."""
        out: list[Trial] = []
        deadline = None if timeout is None else time.monotonic() + timeout
        while not out:
            if self._ready:
                out.extend(self._ready)
                self._ready.clear()
                break
            if not self._futures:
                break
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done = self._pool.wait(list(self._futures), timeout=left)
            if not done:
                break
            for fut in sorted(done, key=lambda f: self._futures[f][0][0].key):
                items = self._futures.pop(fut)
                for trial, (cand, attempt) in zip(self._results(fut, items), items):
                    if not trial.ok and attempt <= self.retries:
                        self._queue.append((cand, attempt + 1))
                    else:
                        out.append(trial)
            self._fill()
        return out

    def _results(self, fut: cf.Future, items: Sequence[tuple[Candidate, int]]) -> list[Trial]:
        try:
            value = fut.result()
            trials = value if isinstance(value, list) else [value]
        except Exception as err:  # noqa: BLE001 - the worker, not the fitness, failed
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            kind = "worker died: " if is_worker_death(err) else ""
            trials = [_failed(cand, self.context(cand), f"{kind}{type(err).__name__}: {first}"[:2000], 0.0)
                      for cand, _ in items]
            for trial in trials:
                trial.worker = ""
        for trial, (_, attempt) in zip(trials, items):
            trial.attempts = attempt
        return trials

    # --- batches ----------------------------------------------------------------------------------------
    def evaluate_iter(self, candidates: Sequence[Candidate]) -> Iterator[Trial]:
        """Trials for ``candidates`` in completion order (no fitness hooks)."""
        self.submit_many(candidates)
        remaining = len(candidates)
        while remaining:
            trials = self.wait()
            if not trials:
                raise RuntimeError("evaluator lost track of evaluations in flight")
            remaining -= len(trials)
            yield from trials

    def evaluate(self, candidates: Sequence[Candidate]) -> list[Trial]:
        """Trials for ``candidates``, in the same order.

        The fitness's ``before_batch(candidates)`` and ``after_batch(candidates, trials)`` hooks run in this
        (main) process, around the batch (the warm-start initializer of :mod:`evonas.fitness.train`).
        """
        opened = self._pool is None
        try:
            self.before(candidates)
            by_key = {t.step: t for t in self.evaluate_iter(candidates)}
            trials = [by_key[c.key] for c in candidates]
            self.after(candidates, trials)
            return trials
        finally:
            if opened and POOLS[self.backend].remote:
                self.close()
