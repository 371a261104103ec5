"""The search loop: ask the strategy, evaluate, tell, record. Strategy, evaluator and store are plugged in."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from evonas.evaluator import Candidate, Evaluator
from evonas.spaces.base import SearchSpace
from evonas.store import MemoryStore, Store
from evonas.strategies.base import Strategy
from evonas.trial import Objective, Trial, best_trial, pareto_front


@dataclass
class SearchResult:
    """What a finished search found."""

    trials: list[Trial]
    objectives: list[Objective]
    report: list[str] = field(default_factory=list)
    seed: int = 0
    elapsed_s: float = 0.0

    @property
    def best(self) -> Trial | None:
        """Best successful trial by the first objective."""
        return best_trial(self.trials, self.objectives[0])

    @property
    def pareto(self) -> list[Trial]:
        """Non-dominated successful trials over all objectives."""
        return pareto_front(self.trials, self.objectives)


class Search:
    """Runs ``strategy`` on ``space`` for ``budget`` evaluations, ``batch_size`` at a time.

    The same loop serves table benchmarks and real training: only the evaluator's fitness differs.
    Results depend on ``batch_size`` (how many proposals precede each update) but not on how many
    workers evaluate a batch. ``callbacks`` are called after each batch with the new trials.
    """

    def __init__(self, space: SearchSpace, strategy: Strategy, evaluator: Evaluator,
                 objectives: Sequence[Objective], *, budget: int, batch_size: int = 1,
                 report: Sequence[str] = (), store: Store | None = None, seed: int = 0,
                 progress: bool = False, callbacks: Sequence[Callable[[list[Trial]], None]] = ()):
        if budget < 1:
            raise ValueError(f"budget: must be >= 1, got {budget}")
        if batch_size < 1:
            raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
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

    def run(self) -> SearchResult:
        """Run until the budget is spent; returns all trials of the run."""
        start = time.perf_counter()
        done = len(self.store.trials())
        bar = _progress_bar(self.budget, done) if self.progress else None
        best = None
        try:
            while done < self.budget:
                genomes = self.strategy.ask(min(self.batch_size, self.budget - done))
                candidates = [Candidate(done + i, self.space.to_string(g), self.space.canonical_hash(g))
                              for i, g in enumerate(genomes)]
                trials = self.evaluator.evaluate(candidates)
                self.strategy.tell(genomes, trials)
                self.store.add_trials(trials)
                done += len(trials)
                if self.store.durable:
                    self.store.save_state(done, self.strategy.state_dict())
                for callback in self.callbacks:
                    callback(trials)
                if bar is not None:
                    best = _update_bar(bar, trials, self.objectives[0], best)
        finally:
            if bar is not None:
                bar.close()
        return SearchResult(self.store.trials(), self.objectives, self.report, self.seed,
                            time.perf_counter() - start)


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
