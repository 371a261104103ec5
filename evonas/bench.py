"""Benchmarking strategies on a NAS-Bench table: many seeded searches through the ordinary :class:`Search`
loop on the ``simulated`` backend (a virtual clock), and their anytime statistics."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evonas.evaluator import Evaluator
from evonas.fitness.table import TableFitness
from evonas.search import Search
from evonas.spaces import SearchSpace, make_space
from evonas.strategies import make_strategy
from evonas.trial import Objective

CHECKPOINTS = (10, 25, 50, 100, 300)
BENCH_FIELDS = ("algo", "seed", "query", "arch", "fitness", "report")
#: strategy parameters used by ``evonas bench`` unless overridden
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"rea": {"population": 10, "sample": 3}}


@dataclass(frozen=True)
class BenchRow:
    algo: str
    seed: int
    query: int
    arch: str
    fitness: float
    report: float


@dataclass
class BenchRun:
    """One seeded search of a benchmark: its rows, and its time on the ``simulated`` backend's clock."""

    algo: str
    seed: int
    rows: list[BenchRow]
    simulated_s: float

    @property
    def queries(self) -> int:
        return len(self.rows)


def replay(table: str | Path, fitness: str, report: str, algos: Sequence[str], budget: int, seeds: int,
           *, space: SearchSpace | str = "nb201", goal: str = "max", first_seed: int = 0,
           params: dict[str, dict[str, Any]] | None = None, make: Callable[..., Any] | None = None,
           cost: str | float | None = None, jobs: int = 1, mode: str = "batch",
           batch_size: int = 1) -> list[BenchRun]:
    """Run each algorithm with seeds ``first_seed .. first_seed + seeds - 1`` through :class:`Search` on the
    ``simulated`` backend: ``jobs`` virtual workers, each lookup taking ``cost`` seconds of virtual time (a
    column of the table, or a number; ``None``: 1 s), ``mode`` ``"batch"`` (``batch_size`` proposals per
    strategy update) or ``"async"`` (a new proposal whenever a virtual worker is free). Deterministic.

    ``make(algo, space, objectives, seed, **params)`` builds a strategy (default: the registry).
    """
    space = make_space(space) if isinstance(space, str) else space
    objective = Objective(fitness, goal)
    table_fitness = TableFitness(table, [fitness, report], cost=1.0 if cost is None else cost)
    make = make or make_strategy
    runs: list[BenchRun] = []
    for algo in algos:
        algo_params = {**DEFAULT_PARAMS.get(algo, {}), **(params or {}).get(algo, {})}
        for seed in range(first_seed, first_seed + seeds):
            strategy = make(algo, space, [objective], seed, **algo_params)
            evaluator = Evaluator(table_fitness, space, seed=seed, jobs=jobs, backend="simulated",
                                  required=[fitness, report])
            result = Search(space, strategy, evaluator, [objective], budget=budget, seed=seed, mode=mode,
                            batch_size=batch_size).run()
            rows = [BenchRow(algo, seed, t.step + 1, t.arch, objective.value(t), t.metrics.get(report, math.nan))
                    for t in result.trials]
            runs.append(BenchRun(algo, seed, rows, float(result.simulated_s or 0.0)))
    return runs


def bench_rows(runs: Sequence[BenchRun]) -> list[BenchRow]:
    """The rows of every run, in run order."""
    return [r for run in runs for r in run.rows]


def clock_stats(runs: Sequence[BenchRun]) -> dict[str, dict[str, float]]:
    """Per algorithm: median queries and median simulated seconds of a whole search (over seeds)."""
    out: dict[str, dict[str, float]] = {}
    for algo in dict.fromkeys(r.algo for r in runs):
        mine = [r for r in runs if r.algo == algo]
        out[algo] = {"queries": float(np.median([r.queries for r in mine])),
                     "simulated_s": float(np.median([r.simulated_s for r in mine]))}
    return out


def write_bench_csv(path: str | Path, rows: Sequence[BenchRow]) -> Path:
    from evonas.atomic import atomic_open

    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(BENCH_FIELDS)
        for r in rows:
            writer.writerow([r.algo, r.seed, r.query, r.arch, repr(r.fitness), repr(r.report)])
    return path


def read_bench_csv(path: str | Path) -> list[BenchRow]:
    with Path(path).open(newline="") as fh:
        return [BenchRow(r["algo"], int(r["seed"]), int(r["query"]), r["arch"], float(r["fitness"]),
                         float(r["report"])) for r in csv.DictReader(fh)]


def top_set(archs: Sequence[str], values: np.ndarray, fraction: float = 0.001, goal: str = "max") -> set[str]:
    """Architectures within the best ``fraction`` of the table by ``values`` (ties included)."""
    finite = np.where(np.isfinite(values), values, -np.inf if goal == "max" else np.inf)
    k = max(1, math.ceil(fraction * len(values)))
    order = np.sort(finite)[::-1] if goal == "max" else np.sort(finite)
    threshold = order[k - 1]
    mask = finite >= threshold if goal == "max" else finite <= threshold
    return {a for a, m in zip(archs, mask) if m}


def queries_to_hit(rows: Sequence[BenchRow], targets: set[str]) -> float:
    """1-based query at which one of ``targets`` was first evaluated (``inf`` if never)."""
    return next((float(r.query) for r in rows if r.arch in targets), math.inf)


def best_report_at(rows: Sequence[BenchRow], q: int, goal: str = "max") -> float:
    """Report value of the best-by-fitness architecture among the first ``q`` queries."""
    best = None
    for r in rows[:q]:
        if math.isfinite(r.fitness) and (best is None or (r.fitness > best.fitness if goal == "max"
                                                          else r.fitness < best.fitness)):
            best = r
    return best.report if best else math.nan


def group(rows: Sequence[BenchRow]) -> dict[str, dict[int, list[BenchRow]]]:
    """rows[algo][seed] in query order."""
    out: dict[str, dict[int, list[BenchRow]]] = {}
    for r in rows:
        out.setdefault(r.algo, {}).setdefault(r.seed, []).append(r)
    for seeds in out.values():
        for runs in seeds.values():
            runs.sort(key=lambda r: r.query)
    return out


def bench_stats(rows: Sequence[BenchRow], targets: set[str], checkpoints: Sequence[int] = CHECKPOINTS,
                goal: str = "max") -> dict[str, dict[str, Any]]:
    """Per algorithm: mean/std of the best-by-fitness report value at each checkpoint, and the queries
    until a target (e.g. top-0.1%) architecture was evaluated (median over seeds, ``inf`` if not reached
    by most)."""
    stats: dict[str, dict[str, Any]] = {}
    for algo, seeds in group(rows).items():
        budget = max(len(r) for r in seeds.values())
        at = {}
        for q in checkpoints:
            if q <= budget:
                vals = np.array([best_report_at(r, q, goal) for r in seeds.values()])
                at[q] = (float(np.nanmean(vals)), float(np.nanstd(vals)))
        hits = [queries_to_hit(r, targets) for r in seeds.values()]
        stats[algo] = {"seeds": len(seeds), "budget": budget, "report_at": at, "queries_to_target": hits,
                       "median_queries": float(np.median(hits)),
                       "found": sum(math.isfinite(h) for h in hits)}
    return stats


def format_stats(stats: dict[str, dict[str, Any]], report: str, target_label: str = "top-0.1%") -> str:
    """A plain-text table of :func:`bench_stats`."""
    qs = sorted({q for s in stats.values() for q in s["report_at"]})
    head = f"{'algo':<10}" + "".join(f"{'q=' + str(q):>16}" for q in qs) + f"  queries to {target_label}"
    lines = [f"best-by-fitness {report} (mean ± std over seeds)", head]
    for algo, s in stats.items():
        cells = "".join(f"{s['report_at'][q][0]:>9.2f} ± {s['report_at'][q][1]:<4.2f}" if q in s["report_at"]
                        else f"{'':>16}" for q in qs)
        med = s["median_queries"]
        lines.append(f"{algo:<10}{cells}  median {med:.0f} ({s['found']}/{s['seeds']} found)"
                     if math.isfinite(med) else
                     f"{algo:<10}{cells}  median > {s['budget']} ({s['found']}/{s['seeds']} found)")
    return "\n".join(lines)
