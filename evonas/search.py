"""The search loop: ask the strategy, evaluate, tell, record. Strategy, evaluator and store are plugged in.

Two modes:

* ``"batch"`` (default): ask ``batch_size`` proposals, evaluate them in parallel, tell the strategy the
  results in evaluation order. Results depend on ``batch_size`` but not on the number of workers, the
  backend, or a crash and resume: the same seed gives the same evaluations in the same order.
* ``"async"`` (steady state, for long real-training runs): keep every worker busy; as soon as one
  evaluation completes, the strategy is told and one new child is dispatched. No generation barrier, so
  no idle GPUs, but the order in which results arrive decides what is bred next: **not reproducible**
  from the seed alone (a resumed asynchronous run loses and duplicates nothing, but may differ from an
  uninterrupted one).

Durability. With a durable store (:class:`evonas.store.SQLiteStore`) the search checkpoints its state
(strategy state, evaluations in flight, next key) in the same transaction that records a dispatch, and
records each evaluation the moment it completes. :meth:`Search.run` on a store that holds a checkpoint
continues from it: completed evaluations are never redone, the ones in flight at a crash are redone.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from evonas import interrupts
from evonas.evaluator import Candidate, Evaluator
from evonas.fitness.base import OK
from evonas.genome import Genome, make_genome
from evonas.spaces.base import SearchSpace
from evonas.store import Dispatch, MemoryStore, Store
from evonas.strategies.base import Strategy
from evonas.trial import Objective, Trial, best_trial, pareto_front

MODES = ("batch", "async")
STATE_VERSION = 1


@dataclass
class SearchResult:
    """What a search found. ``status``: ``"finished"``, ``"interrupted"`` (SIGINT; resumable) or
    ``"aborted"`` (too many consecutive failures; ``message`` says why)."""

    trials: list[Trial]
    objectives: list[Objective]
    report: list[str] = field(default_factory=list)
    seed: int = 0
    elapsed_s: float = 0.0
    status: str = "finished"
    message: str = ""
    resumed_from: int = 0
    cache_hits: int = 0
    #: seconds on the virtual clock of the ``simulated`` backend (``None``: evaluations ran in real time)
    simulated_s: float | None = None

    @property
    def best(self) -> Trial | None:
        """Best successful trial by the first objective."""
        return best_trial(self.trials, self.objectives[0])

    @property
    def pareto(self) -> list[Trial]:
        """Non-dominated successful trials over all objectives."""
        return pareto_front(self.trials, self.objectives)


class _Abort(Exception):
    pass


class ResumeError(ValueError):
    """A stored search state that this search cannot continue (e.g. another strategy after ``--force``)."""


class Search:
    """Runs ``strategy`` on ``space`` for ``budget`` evaluations, ``batch_size`` at a time.

    The same loop serves table benchmarks and real training: only the evaluator's fitness differs.
    ``callbacks`` are called with the new trials after each batch (each completion in ``"async"`` mode).
    ``max_consecutive_failures`` (0: no limit) stops the search when that many evaluations in a row
    failed. ``cache`` (a :class:`Store`, e.g. a :class:`SQLiteStore` shared across runs) with a
    ``fitness_id`` reuses results of architectures with the same canonical hash under the same fitness.
    """

    def __init__(self, space: SearchSpace, strategy: Strategy, evaluator: Evaluator,
                 objectives: Sequence[Objective], *, budget: int, batch_size: int = 1,
                 report: Sequence[str] = (), store: Store | None = None, seed: int = 0,
                 progress: bool = False, callbacks: Sequence[Callable[[list[Trial]], None]] = (),
                 mode: str = "batch", max_consecutive_failures: int = 0, cache: Store | None = None,
                 fitness_id: str = ""):
        if budget < 1:
            raise ValueError(f"budget: must be >= 1, got {budget}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
        if mode not in MODES:
            raise ValueError(f"mode: must be one of {', '.join(MODES)}, got {mode!r}")
        if max_consecutive_failures < 0:
            raise ValueError(f"max_consecutive_failures: must be >= 0 (0: no limit), got {max_consecutive_failures}")
        if cache is not None and not fitness_id:
            raise ValueError("cache: needs a fitness_id (the identity of the fitness results are reused for)")
        self.space = space
        self.strategy = strategy
        self.evaluator = evaluator
        self.objectives = [Objective.parse(o) for o in objectives]
        self.budget = int(budget)
        self.batch_size = int(batch_size)
        self.report = list(report)
        self.store = store if store is not None else MemoryStore()
        self.seed = int(seed)
        self.progress = progress
        self.callbacks = list(callbacks)
        self.mode = mode
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.cache = cache
        self.fitness_id = fitness_id
        # loop state (restored from the store's checkpoint by run())
        self.n_told = 0
        self.next_key = 0
        self.consecutive_failures = 0
        self.cache_hits = 0
        self.pending: dict[int, tuple[Dispatch, Genome]] = {}  # asked, not yet told (key order)
        self.done: dict[int, Trial] = {}  # completed among pending
        self._bar = None
        self._best: float | None = None
        self._restored = False

    # --- state ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The search state: strategy state, evaluations asked but not told, next key."""
        state = {"version": STATE_VERSION, "mode": self.mode, "strategy": self.strategy.state_dict(),
                 "pending": [d.to_dict() for d, _ in self.pending.values()], "next_key": self.next_key,
                 "consecutive_failures": self.consecutive_failures, "cache_hits": self.cache_hits}
        fitness_state = self.evaluator.fitness.state_dict()
        if fitness_state:
            state["fitness"] = fitness_state
        return state

    def _checkpoint(self, dispatches: Sequence[Dispatch] = ()) -> None:
        if self.store.durable:
            seeds = [self.evaluator.context(Candidate(d.key, d.arch, d.canonical_hash)).seed for d in dispatches]
            self.store.checkpoint(self.n_told, self.state_dict(), dispatches, seeds)

    def restore(self) -> None:
        """Continue from the store's checkpoint, if it holds one (:meth:`run` does it first); raises
        :class:`ResumeError` when the state does not fit this search."""
        if self._restored:
            return
        try:
            self._restore()
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ResumeError(f"cannot continue the stored search with this strategy/space "
                              f"({type(err).__name__}: {err})") from None
        self._restored = True

    def _restore(self) -> None:
        loaded = self.store.load_state() if self.store.durable else None
        if loaded is None:
            self.n_told = self.next_key = len(self.store.trials())
            return
        self.n_told, state = loaded
        if "strategy" not in state:  # a bare strategy state (older stores)
            self.strategy.load_state_dict(state)
            self.next_key = self.n_told
            return
        self.strategy.load_state_dict(state["strategy"])
        if "fitness" in state:
            self.evaluator.fitness.load_state_dict(state["fitness"])
        self.next_key = int(state["next_key"])
        self.consecutive_failures = int(state.get("consecutive_failures", 0))
        self.cache_hits = int(state.get("cache_hits", 0))
        for item in state["pending"]:
            d = Dispatch.from_dict(item)
            self.pending[d.key] = (d, make_genome(d.genes))
        for key in self.pending:
            t = self.store.trial(key)
            if t is not None:
                self.done[key] = t
        self.store.discard_from(self.next_key)  # nothing beyond the checkpoint can be valid (defensive)

    # --- the loop ---------------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run until the budget is spent (or SIGINT, or too many failures); returns all trials of the run."""
        start = time.perf_counter()
        self.restore()
        resumed_from = self.n_told + len(self.done)
        status, message = "finished", ""
        if self.progress:
            self._bar = _progress_bar(self.budget, self.n_told)
        abandon = False
        try:
            self.evaluator.open()
            with interrupts.handled():  # a fitness's own KeyboardInterrupt is a failed evaluation
                if self.mode == "batch":
                    self._run_batches()
                else:
                    self._run_async()
        except KeyboardInterrupt:
            status, message, abandon = "interrupted", "interrupted (SIGINT): evaluations in flight abandoned", True
        except _Abort as err:
            status, message, abandon = "aborted", str(err), True
        finally:
            try:
                self.evaluator.close(abandon=abandon)
            finally:
                if self._bar is not None:
                    self._bar.close()
                    self._bar = None
        return SearchResult(self.store.trials(), self.objectives, self.report, self.seed,
                            time.perf_counter() - start, status=status, message=message,
                            resumed_from=resumed_from, cache_hits=self.cache_hits,
                            simulated_s=self.evaluator.simulated_s)

    def _ask(self, n: int) -> list[Dispatch]:
        genomes = self.strategy.ask(n)
        out = []
        for i, g in enumerate(genomes):
            d = Dispatch(self.next_key + i, tuple(int(x) for x in g), self.space.to_string(g),
                         self.space.canonical_hash(g))
            self.pending[d.key] = (d, g)
            out.append(d)
        self.next_key += len(genomes)
        return out

    def _run_batches(self) -> None:
        while True:
            if not self.pending:
                if self.next_key >= self.budget:
                    break
                self._checkpoint(self._ask(min(self.batch_size, self.budget - self.next_key)))
            self._finish_batch()
        self._checkpoint()  # final state (a resumed run with a larger budget continues from here)

    def _finish_batch(self) -> None:
        cands = [_candidate(d) for d, _ in self.pending.values()]
        todo = [c for c in cands if c.key not in self.done]
        for c in list(todo):
            hit = self._cached(c)
            if hit is not None:
                self._record(hit)
                todo.remove(c)
        if todo:
            self.evaluator.before(cands)
            for trial in self.evaluator.evaluate_iter(todo):
                self._record(trial)
        trials = [self.done[c.key] for c in cands]
        self.evaluator.after(cands, trials)
        self._tell([g for _, g in self.pending.values()], trials)

    def _run_async(self) -> None:
        capacity = self.evaluator.capacity
        for key in sorted(self.done):  # completed before a crash: tell them first
            self._tell([self.pending[key][1]], [self.done[key]])
        for d, _ in list(self.pending.values()):  # in flight at a crash: redo
            self.evaluator.before([_candidate(d)])
            self.evaluator.submit(_candidate(d))
        while True:
            while self.evaluator.in_flight < capacity and self.next_key < self.budget:
                (d,) = self._ask(1)
                cand = _candidate(d)
                hit = self._cached(cand)
                if hit is not None:
                    self._record(hit)
                    self._tell([self.pending[d.key][1]], [hit])
                    self._checkpoint()
                    continue
                self.evaluator.before([cand])
                self._checkpoint([d])
                self.evaluator.submit(cand)
            if self.evaluator.in_flight == 0:
                break
            for trial in self.evaluator.wait():
                self._record(trial)
                cand = _candidate(self.pending[trial.step][0])
                self.evaluator.after([cand], [trial])
                self._tell([self.pending[trial.step][1]], [trial])
            if self.next_key >= self.budget:
                self._checkpoint()
        self._checkpoint()

    # --- recording --------------------------------------------------------------------------------------
    def _record(self, trial: Trial) -> None:
        self.store.add_trials([trial])
        self.done[trial.step] = trial
        if self.mode == "async" and self.cache is not None:
            self.cache.cache_put(self.fitness_id, [trial], source=self._source())

    def _tell(self, genomes: list[Genome], trials: list[Trial]) -> None:
        self.strategy.tell(genomes, trials)
        for t in trials:
            self.pending.pop(t.step, None)
            self.done.pop(t.step, None)
        self.n_told += len(trials)
        if self.mode == "batch" and self.cache is not None:  # after the batch: reproducible lookups
            self.cache.cache_put(self.fitness_id, trials, source=self._source())
        for callback in self.callbacks:
            callback(trials)
        if self._bar is not None:
            self._best = _update_bar(self._bar, trials, self.objectives[0], self._best)
        for t in trials:
            self.consecutive_failures = 0 if t.ok else self.consecutive_failures + 1
            if self.max_consecutive_failures and self.consecutive_failures >= self.max_consecutive_failures:
                self._checkpoint()
                raise _Abort(f"stopped after {self.consecutive_failures} consecutive failed evaluations "
                             f"(max_consecutive_failures = {self.max_consecutive_failures}); last error: "
                             f"{t.error}")

    def _source(self) -> str:
        return str(self.store.path) if self.store.path is not None else ""

    def _cached(self, cand: Candidate) -> Trial | None:
        if self.cache is None:
            return None
        hit = self.cache.cache_entry(self.fitness_id, cand.canonical_hash)
        if hit is None:
            return None
        metrics, _, source = hit
        if any(m not in metrics or not math.isfinite(metrics[m]) for m in self.evaluator.required):
            return None
        self.cache_hits += 1
        return Trial(step=cand.key, arch=cand.arch, canonical_hash=cand.canonical_hash, metrics=dict(metrics),
                     status=OK, seed=self.evaluator.context(cand).seed, elapsed_s=0.0, worker="cache",
                     cached=True, cache_source=source)


def _candidate(d: Dispatch) -> Candidate:
    return Candidate(d.key, d.arch, d.canonical_hash)


def _progress_bar(total: int, initial: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, file=sys.stderr, unit="eval", dynamic_ncols=True)


def _update_bar(bar, trials: list[Trial], objective: Objective, best: float | None) -> float | None:
    for t in trials:
        if t.ok and objective.metric in t.metrics:
            v = objective.value(t)
            if best is None or objective.better(v, best):
                best = v
    bar.update(len(trials))
    if best is not None:
        bar.set_postfix_str(f"best {objective.metric}={best:.4g}", refresh=False)
    return best
