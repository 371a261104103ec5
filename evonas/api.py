"""One-call entry points: :func:`search` from Python objects, :func:`run_config` from a genome config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evonas.config import RunConfig
from evonas.evaluator import Evaluator
from evonas.fitness.base import Fitness
from evonas.results import metric_names, summary, write_history, write_summary
from evonas.search import Search, SearchResult
from evonas.spaces import SearchSpace, make_space
from evonas.store import Store
from evonas.strategies import Strategy, make_strategy
from evonas.trial import Objective


def search(space: SearchSpace | str, fitness: Fitness | Callable[..., Any], objectives: Sequence[str | Objective],
           *, strategy: str | Strategy = "rea", budget: int = 100, seed: int = 0, jobs: int = 1,
           batch_size: int = 1, report: Sequence[str] = (), backend: str = "loky", store: Store | None = None,
           progress: bool = False, **strategy_params: Any) -> SearchResult:
    """Search ``space`` for architectures that score well under ``fitness``.

    ``fitness(arch, ctx)`` returns a dict of metrics (see :mod:`evonas.fitness.base`); ``objectives`` name
    the metrics to maximise (``"min:metric"`` to minimise). Extra keyword arguments configure the strategy
    (e.g. ``population=10, sample=3`` for ``"rea"``).
    """
    space = make_space(space) if isinstance(space, str) else space
    objectives = [Objective.parse(o) for o in objectives]
    if isinstance(strategy, str):
        strategy = make_strategy(strategy, space, objectives, seed, **strategy_params)
    required = list(dict.fromkeys([o.metric for o in objectives] + list(report)))
    evaluator = Evaluator(fitness, space, seed=seed, jobs=jobs, backend=backend, required=required)
    return Search(space, strategy, evaluator, objectives, budget=budget, batch_size=batch_size, report=report,
                  store=store, seed=seed, progress=progress).run()


def build_search(cfg: RunConfig, *, store: Store | None = None, progress: bool = False) -> Search:
    """The :class:`Search` a validated config describes (building the fitness checks its files)."""
    space = cfg.build_space()
    fitness = cfg.build_fitness(space)
    strategy = cfg.build_strategy(space)
    s = cfg.search
    evaluator = Evaluator(fitness, space, seed=s["seed"], jobs=s["jobs"], backend=s["backend"],
                          required=cfg.metric_columns())
    return Search(space, strategy, evaluator, cfg.objectives, budget=s["budget"], batch_size=s["batch_size"],
                  report=cfg.report, store=store, seed=s["seed"], progress=progress)


def run_config(cfg: RunConfig, out: str | Path, *, progress: bool = False) -> SearchResult:
    """Run the search of ``cfg`` and write ``out/history.csv`` and ``out/summary.json``."""
    search_ = build_search(cfg, progress=progress)
    result = search_.run()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_history(out / "history.csv", result.trials, metric_names(result))
    write_summary(out / "summary.json", summary(result, config=str(cfg.path) if cfg.path else None,
                                                space=search_.space.describe(),
                                                strategy=cfg.strategy))
    return result
