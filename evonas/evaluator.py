"""Evaluating a batch of architectures, in parallel through joblib when the fitness is not inline."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from evonas.fitness.base import Architecture, EvalContext, EvalResult, Fitness, as_result
from evonas.spaces.base import SearchSpace
from evonas.trial import Trial


@dataclass(frozen=True)
class Candidate:
    """An architecture to evaluate; ``key`` is its evaluation step, which fixes its seed."""

    key: int
    arch: str
    canonical_hash: str


def evaluation_seed(run_seed: int, key: int) -> int:
    """The seed of evaluation ``key``: a function of (run seed, key) only, never of workers or order."""
    return int(np.random.SeedSequence(int(run_seed), spawn_key=(int(key),)).generate_state(1)[0])


def evaluate_one(fitness: Fitness, space: SearchSpace, cand: Candidate, ctx: EvalContext,
                 required: Sequence[str] = ()) -> Trial:
    """Evaluate one candidate; any exception becomes a failed trial carrying its message."""
    start = time.perf_counter()
    try:
        graph = space.to_graph(space.from_string(cand.arch))
        result = as_result(fitness(Architecture(cand.arch, graph, space.name), ctx), required)
    except Exception as err:  # noqa: BLE001 - a bad individual must not stop the search
        result = EvalResult.failed(f"{type(err).__name__}: {err}")
    return Trial(step=cand.key, arch=cand.arch, canonical_hash=cand.canonical_hash, metrics=result.metrics,
                 status=result.status, error=result.error, seed=ctx.seed,
                 elapsed_s=time.perf_counter() - start, worker=f"{socket.gethostname()}:{os.getpid()}")


class Evaluator:
    """Turns candidates into trials.

    ``jobs`` workers on the joblib ``backend`` (``"loky"`` processes by default; ``"dask"`` or ``"ray"``
    once registered with joblib). A fitness with ``inline = True`` runs in the main process. Results do
    not depend on ``jobs``: each evaluation's seed comes from (``seed``, candidate key).
    """

    def __init__(self, fitness: Fitness, space: SearchSpace, *, seed: int = 0, jobs: int = 1,
                 backend: str = "loky", budget: Mapping[str, Any] | None = None, device: str | None = None,
                 required: Sequence[str] = ()):
        if jobs == 0 or jobs < -1:
            raise ValueError(f"jobs: must be >= 1 (or -1 for all cores), got {jobs}")
        self.fitness = fitness
        self.space = space
        self.seed = int(seed)
        self.jobs = int(jobs)
        self.backend = backend
        self.budget = dict(budget or {})
        self.device = device
        self.required = tuple(required)

    def context(self, cand: Candidate) -> EvalContext:
        """The evaluation context of ``cand``."""
        return EvalContext(seed=evaluation_seed(self.seed, cand.key), key=cand.key, budget=self.budget,
                           device=self.device)

    def evaluate(self, candidates: Sequence[Candidate]) -> list[Trial]:
        """Trials for ``candidates``, in the same order."""
        tasks = [(self.fitness, self.space, c, self.context(c), self.required) for c in candidates]
        if getattr(self.fitness, "inline", False) or self.jobs == 1 or len(tasks) <= 1:
            return [evaluate_one(*t) for t in tasks]
        parallel = Parallel(n_jobs=min(self.jobs, len(tasks)) if self.jobs > 0 else -1, backend=self.backend)
        return list(parallel(delayed(evaluate_one)(*t) for t in tasks))
