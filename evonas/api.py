"""One-call entry points: :func:`search` from Python objects, :func:`run_config` from a genome config."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from evonas.config import ConfigError, RunConfig
from evonas.evaluator import Evaluator, cap_workers
from evonas.fitness.base import Fitness, as_fitness
from evonas.results import metric_names, summary, write_history, write_summary
from evonas.search import ResumeError, Search, SearchResult
from evonas.spaces import SearchSpace, make_space
from evonas.store import Store
from evonas.strategies import Strategy, make_strategy
from evonas.trial import Objective


def search(space: SearchSpace | str, fitness: Fitness | Callable[..., Any], objectives: Sequence[str | Objective],
           *, strategy: str | Strategy = "rea", budget: int = 100, seed: int = 0, jobs: int = 1,
           batch_size: int = 1, report: Sequence[str] = (), backend: str = "loky", store: Store | None = None,
           progress: bool = False, address: str | None = None, mode: str = "batch", time_limit: float = 0.0,
           retries: int = 0, isolate: bool | None = None, max_consecutive_failures: int = 0,
           **strategy_params: Any) -> SearchResult:
    """Search ``space`` for architectures that score well under ``fitness``.

    ``fitness(arch, ctx)`` returns a dict of metrics (see :mod:`evonas.fitness.base`); ``objectives`` name
    the metrics to maximise (``"min:metric"`` to minimise). Extra keyword arguments configure the strategy
    (e.g. ``population=10, sample=3`` for ``"rea"``).

    ``backend``/``address``/``jobs`` say where evaluations run (:mod:`evonas.backends`); ``mode="async"``
    is the steady-state mode (not reproducible); ``time_limit``, ``retries``, ``isolate`` and
    ``max_consecutive_failures`` control failure handling (:mod:`evonas.evaluator`). A
    :class:`evonas.store.SQLiteStore` as ``store`` makes the run durable and resumable.
    """
    space = make_space(space) if isinstance(space, str) else space
    objectives = [Objective.parse(o) for o in objectives]
    if isinstance(strategy, str):
        strategy = make_strategy(strategy, space, objectives, seed, **strategy_params)
    required = list(dict.fromkeys([o.metric for o in objectives] + list(report)))
    fitness = as_fitness(fitness)
    if isolate is None and jobs != 1:  # what the asked-for workers imply, also when fewer are started
        from evonas.backends import PROCESS_BACKENDS

        isolate = backend in PROCESS_BACKENDS and not fitness.inline
    jobs = _workers(jobs, batch_size, budget, mode)
    evaluator = Evaluator(fitness, space, seed=seed, jobs=jobs, backend=backend, required=required,
                          address=address, time_limit=time_limit, retries=retries, isolate=isolate)
    return Search(space, strategy, evaluator, objectives, budget=budget, batch_size=batch_size, report=report,
                  store=store, seed=seed, progress=progress, mode=mode,
                  max_consecutive_failures=max_consecutive_failures).run()


def _workers(jobs: int, batch_size: int, budget: int, mode: str) -> int:
    """At most as many workers as evaluations run at once: a batch (batch mode), the budget (async)."""
    if jobs == 0 or jobs < -1 or batch_size < 1 or budget < 1:
        return jobs  # invalid: the evaluator or the search says why
    if mode == "batch":
        return cap_workers(jobs, min(batch_size, budget), "the batch size")
    return cap_workers(jobs, budget, "the budget")


def build_search(cfg: RunConfig, *, store: Store | None = None, progress: bool = False) -> Search:
    """The :class:`Search` a validated config describes (building the fitness checks its files)."""
    space = cfg.build_space()
    fitness = cfg.build_fitness(space)
    strategy = cfg.build_strategy(space)
    s = cfg.search
    jobs = _workers(s["jobs"], s["batch_size"], s["budget"], s.get("mode", "batch"))
    evaluator = Evaluator(fitness, space, seed=s["seed"], jobs=jobs, backend=s["backend"],
                          required=cfg.metric_columns(), address=s.get("address") or None,
                          time_limit=s.get("time_limit", 0), retries=s.get("retries", 0),
                          isolate=s.get("isolate", True))
    return Search(space, strategy, evaluator, cfg.objectives, budget=s["budget"], batch_size=s["batch_size"],
                  report=cfg.report, store=store, seed=s["seed"], progress=progress, mode=s.get("mode", "batch"),
                  max_consecutive_failures=s.get("max_consecutive_failures", 0))


def run_config(cfg: RunConfig, out: str | Path, *, progress: bool = False, resume: bool = False,
               force: bool = False) -> SearchResult:
    """Run the search of ``cfg`` in the run directory ``out``.

    ``out/run.db`` (SQLite) records every evaluation as it completes and the search state after each
    batch; ``out/history.csv`` and ``out/summary.json`` are exported from it at the end, also when the run
    is interrupted (SIGINT) or stopped by failures (``result.status``). ``resume`` continues the run stored
    in ``out`` (refused if the config changed, unless ``force``); without ``resume`` a directory holding a
    run is refused unless ``force`` (which starts over). Config problems raise ``ConfigError`` before
    anything is written.
    """
    from evonas.backends import BackendError
    from evonas.rundir import open_run

    out = Path(out)
    search_ = build_search(cfg, progress=progress)
    try:
        search_.evaluator.open()  # a backend that cannot start fails before anything is written
    except BackendError as err:
        key = "address" if cfg.search.get("address") else "backend"
        raise cfg.error("search", key, cfg.search[key], str(err)) from None
    try:
        run = open_run(cfg, out, resume=resume, force=force, fitness=search_.evaluator.fitness)
    except BaseException:
        search_.evaluator.close()
        raise
    search_.store, search_.cache, search_.fitness_id = run.store, run.cache, run.fitness_id
    search_.evaluator.fitness.use_run_dir(out)  # e.g. the online warm start's files, which checkpoints reference
    try:
        search_.restore()  # a resumed run's state must fit this search before anything is written
    except ResumeError as err:
        run.close()
        search_.evaluator.close()
        raise ConfigError(f"{cfg.where()}: {out}: {err}") from None
    run.begin()
    result = None
    try:
        from evonas.export import keep_best_weights

        keep_best_weights(search_, out)  # a training fitness keeps the best network's weights for `evonas export`
        result = search_.run()
    finally:
        if result is None:  # an unexpected error: still export what the store holds
            result = SearchResult(run.store.trials(), search_.objectives, search_.report, search_.seed,
                                  status="error", message="the search stopped on an unexpected error")
        try:  # exports of the store (each written to a temporary file and renamed: never torn)
            write_history(out / "history.csv", result.trials, metric_names(result))
            write_summary(out / "summary.json", summary(result, config=str(cfg.path) if cfg.path else None,
                                                        space=search_.space.describe(),
                                                        strategy=cfg.strategy, status=result.status,
                                                        message=result.message, resumed_from=result.resumed_from,
                                                        cache_hits=result.cache_hits, store=str(run.db)))
        finally:
            run.close(status=result.status)
    return result
