"""Reading what a run or a bench wrote (``history.csv``, ``bench.csv``, ``summary.json``) into arrays."""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from evonas.trial import Objective

#: history columns that are not metrics (older and newer writers; unknown text columns are skipped too)
NON_METRIC = {"step", "arch", "canonical_hash", "status", "error", "seed", "elapsed_s", "worker",
              "started_at", "dispatched_at", "finished_at", "timestamp", "start_time", "end_time", "key",
              "run_id", "attempts", "cached", "cache_source", "genes", "reason"}
#: columns holding the time an evaluation finished (epoch seconds or ISO 8601), first match wins
FINISH_COLUMNS = ("finished_at", "end_time", "timestamp")
START_COLUMNS = ("dispatched_at", "started_at", "start_time")
#: the SQLite store of a run directory (evonas.store), read for timestamps when history.csv has none
STORE_FILE = "run.db"


class ReportError(ValueError):
    """A directory that cannot be reported on or exported from (message names the file)."""


def read_summary(directory: Path) -> dict[str, Any]:
    path = directory / "summary.json"
    if not path.is_file():
        raise ReportError(f"{path}: not found (is {directory} a run or bench directory?)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}: not valid JSON ({err})") from None


def kind_of(directory: str | Path) -> str:
    """``"run"`` (history.csv) or ``"bench"`` (bench.csv); raises :class:`ReportError` otherwise."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"{directory}: no such directory")
    if (directory / "bench.csv").is_file():
        return "bench"
    if (directory / "history.csv").is_file():
        return "run"
    raise ReportError(f"{directory}: neither history.csv (a run) nor bench.csv (a bench) found")


def space_for(summary: dict[str, Any], arch: str | None = None):
    """The search space a summary describes (``None`` when it cannot be rebuilt here)."""
    from evonas.plugins import UntrustedCode
    from evonas.spaces import make_space

    desc = dict(summary.get("space") or {})
    name = desc.pop("name", None)
    if name is None and arch:  # older summaries: guess from the string format
        name = "nb201" if "~" in arch else "dag"
    if name is None:
        return None
    try:
        space = make_space(name, **desc)
        if arch is not None:
            space.from_string(arch)
        return space
    except UntrustedCode:
        raise
    except Exception as err:  # noqa: BLE001 - a plugin space that is not importable here
        logging.getLogger(__name__).warning("cannot rebuild space %r: %s", name, err)
        return None


# --- runs ----------------------------------------------------------------------------------------------
@dataclass
class RunData:
    """A run's evaluations in step order, as arrays, with its summary."""

    directory: Path
    summary: dict[str, Any]
    steps: np.ndarray
    archs: list[str]
    hashes: list[str]
    ok: np.ndarray
    seeds: list[int]
    metrics: dict[str, np.ndarray]
    #: seconds since the run started at which each evaluation finished
    time_s: np.ndarray
    #: True when ``time_s`` comes from recorded timestamps, False when summed from ``elapsed_s``
    wall_clock: bool
    errors: list[str] = field(default_factory=list)

    @property
    def objectives(self) -> list[Objective]:
        objs = [Objective.parse(o) for o in self.summary.get("objectives", [])]
        if not objs:  # summaries always name them; fall back to the first metric column
            objs = [Objective(next(iter(self.metrics)))] if self.metrics else []
        return objs

    @property
    def report_metrics(self) -> list[str]:
        return [m for m in self.summary.get("report", []) if m in self.metrics]

    def __len__(self) -> int:
        return len(self.steps)

    def values(self, objective: Objective) -> np.ndarray:
        """The objective's values, NaN where an evaluation failed or lacks the metric."""
        v = self.metrics.get(objective.metric, np.full(len(self), np.nan)).copy()
        v[~self.ok] = np.nan
        return v


def _float(text: str | None) -> float:
    if text is None or text == "":
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _timestamp(text: str | None) -> float:
    """Epoch seconds from a number or an ISO 8601 string (NaN if neither)."""
    value = _float(text)
    if math.isfinite(value) or not text:
        return value
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return math.nan


def load_run(directory: str | Path) -> RunData:
    """Read ``DIR/history.csv`` and ``DIR/summary.json``."""
    directory = Path(directory)
    summary = read_summary(directory)
    path = directory / "history.csv"
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if "arch" not in header:
            raise ReportError(f"{path}: no 'arch' column (header: {', '.join(header)})")
        rows = list(reader)
    rows.sort(key=lambda r: int(r.get("step") or 0))
    metric_cols = [c for c in header if c not in NON_METRIC]
    metrics = {c: np.array([_float(r.get(c)) for r in rows]) for c in metric_cols}
    # a column of text (no number anywhere) is not a metric
    metrics = {c: v for c, v in metrics.items() if np.isfinite(v).any() or c in
               {o["metric"] for o in summary.get("objectives", [])}}
    n = len(rows)
    ok = np.array([(r.get("status") or "ok") == "ok" for r in rows], dtype=bool)
    time_s, wall = None, False
    finish = next((c for c in FINISH_COLUMNS if c in header), None)
    if finish is not None:
        t = np.array([_timestamp(r.get(finish)) for r in rows])
        start = next((c for c in START_COLUMNS if c in header), None)
        t0 = np.array([_timestamp(r.get(start)) for r in rows]) if start else t
        if n and np.isfinite(t).all():
            time_s, wall = t - np.nanmin(t0), True
    if time_s is None and (directory / STORE_FILE).is_file():
        times = _store_times(directory / STORE_FILE)
        steps = [int(r.get("step") or 0) for r in rows]
        if times and all(s in times for s in steps):
            t = np.array([times[s][1] for s in steps])
            t0 = np.array([times[s][0] for s in steps])
            if np.isfinite(t).all():
                time_s, wall = t - np.nanmin(np.where(np.isfinite(t0), t0, t)), True
    if time_s is None:
        time_s = np.cumsum([max(_float(r.get("elapsed_s")), 0.0) if math.isfinite(_float(r.get("elapsed_s")))
                            else 0.0 for r in rows])
    return RunData(directory=directory, summary=summary,
                   steps=np.array([int(r.get("step") or i) for i, r in enumerate(rows)], dtype=int),
                   archs=[r["arch"] for r in rows], hashes=[r.get("canonical_hash", "") for r in rows],
                   ok=ok, seeds=[int(_float(r.get("seed")) if math.isfinite(_float(r.get("seed"))) else 0)
                                 for r in rows],
                   metrics=metrics, time_s=np.asarray(time_s, dtype=float), wall_clock=wall,
                   errors=[r.get("error", "") for r in rows])


def _store_times(path: Path) -> dict[int, tuple[float, float]]:
    """``{step: (dispatched_at, finished_at)}`` from a run's SQLite store ({} when it cannot be read)."""
    import sqlite3

    from evonas.store import query_read_only

    try:
        rows = query_read_only(path, "SELECT key, dispatched_at, finished_at FROM evaluations")
    except sqlite3.Error:
        return {}
    return {int(k): (math.nan if d is None else float(d), math.nan if f is None else float(f))
            for k, d, f in rows}


def best_so_far(values: np.ndarray, goal: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """Running best of ``values`` (NaN = failed, skipped) and the index of the trial holding it (-1 before
    the first success). Ties keep the earlier trial, as :func:`evonas.trial.best_trial` does."""
    best = np.full(len(values), np.nan)
    where = np.full(len(values), -1, dtype=int)
    cur, at = math.nan, -1
    for i, v in enumerate(values):
        if math.isfinite(v) and (at < 0 or (v > cur if goal == "max" else v < cur)):
            cur, at = float(v), i
        best[i], where[i] = cur, at
    return best, where


def top_trials(run: RunData, k: int = 10) -> list[int]:
    """Indices of the ``k`` best successful trials by the first objective, one per canonical hash
    (the earliest evaluation of each architecture)."""
    obj = run.objectives[0]
    v = run.values(obj)
    order = [i for i in np.argsort(-v if obj.goal == "max" else v, kind="stable") if math.isfinite(v[i])]
    seen, out = set(), []
    for i in order:
        if run.hashes[i] not in seen:
            seen.add(run.hashes[i])
            out.append(int(i))
        if len(out) == k:
            break
    return out


def pareto_indices(run: RunData) -> list[int]:
    """Indices of the non-dominated successful trials over all objectives (one per score vector), sorted
    by the first objective."""
    objs = run.objectives
    w = np.column_stack([o.weight * run.values(o) for o in objs])  # larger is better everywhere
    good = np.flatnonzero(np.isfinite(w).all(axis=1))
    front, seen = [], set()
    for i in good:
        better_eq = (w[good] >= w[i]).all(axis=1)
        strictly = (w[good] > w[i]).any(axis=1)
        if not (better_eq & strictly).any() and tuple(w[i]) not in seen:
            seen.add(tuple(w[i]))
            front.append(int(i))
    return sorted(front, key=lambda i: -w[i, 0])


def hypervolume_2d(points: np.ndarray) -> float:
    """Area dominated by ``points`` (n x 2, larger is better on both) above the reference point (0, 0)."""
    pts = points[(points > 0).all(axis=1)]
    area, top = 0.0, 0.0
    for x, y in sorted(map(tuple, pts), reverse=True):  # by the first coordinate, descending
        if y > top:
            area += x * (y - top)
            top = y
    return area


def hypervolume_curve(run: RunData) -> np.ndarray | None:
    """Normalised hypervolume of the first two objectives' front after each evaluation (1.0 would be one
    architecture best on both); ``None`` unless the run has exactly two objectives. Each objective is
    scaled to [0, 1] by the worst and best values the run saw, the reference point being the worst."""
    if len(run.objectives) != 2:
        return None
    w = np.column_stack([o.weight * run.values(o) for o in run.objectives])
    good = np.isfinite(w).all(axis=1)
    if good.sum() < 2:
        return None
    lo, hi = w[good].min(axis=0), w[good].max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    scaled = (w - lo) / span + 1e-9  # the worst point still counts a little
    out = np.zeros(len(run))
    front = np.empty((0, 2))
    hv = 0.0
    for i in range(len(run)):
        if good[i]:
            p = scaled[i]
            if not ((front >= p).all(axis=1)).any():  # not weakly dominated: the front changes
                front = np.vstack([front[~(front <= p).all(axis=1)], p])
                hv = hypervolume_2d(front)
        out[i] = hv
    return out


def generation_size(run: RunData, target_windows: int = 25) -> tuple[int, str]:
    """How many consecutive evaluations form one box of the per-generation plot, and what to call it."""
    n = max(len(run), 1)
    pop = run.summary.get("strategy", {}).get("population") if isinstance(run.summary.get("strategy"),
                                                                           dict) else None
    if isinstance(pop, int) and pop > 0 and n / pop <= 40:
        return pop, f"generation ({pop} evaluations = one population)"
    size = max(1, math.ceil(n / target_windows))
    return size, f"window of {size} evaluations"


# --- benches -------------------------------------------------------------------------------------------
@dataclass
class BenchData:
    """Per algorithm, per seed: the best-by-fitness report value after each query."""

    directory: Path
    summary: dict[str, Any]
    #: algo -> seeds (in file order)
    seeds: dict[str, list[int]]
    #: algo -> array (n_seeds, budget) of the report value of the best-by-fitness pick after q queries
    curves: dict[str, np.ndarray]
    #: algo -> queries until a target architecture was evaluated (inf: never), one per seed
    queries_to_target: dict[str, np.ndarray]
    target: str
    report: str
    goal: str
    #: the best report value in the table (None when the table cannot be read)
    optimum: float | None


def anytime_curve(fitness: np.ndarray, report: np.ndarray, goal: str = "max") -> np.ndarray:
    """Report value of the best-by-fitness query among the first q, for q = 1..len (NaN before any)."""
    _, where = best_so_far(fitness, goal)
    out = np.where(where >= 0, report[np.maximum(where, 0)], np.nan)
    return out


def load_bench(directory: str | Path) -> BenchData:
    """Read ``DIR/bench.csv`` and ``DIR/summary.json`` (and the table it names, when it is there)."""
    directory = Path(directory)
    summary = read_summary(directory)
    goal = summary.get("goal", "max")
    runs: dict[str, dict[int, list[tuple[int, str, float, float]]]] = {}
    path = directory / "bench.csv"
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"algo", "seed", "query", "arch", "fitness", "report"} - set(reader.fieldnames or [])
        if missing:
            raise ReportError(f"{path}: missing columns {sorted(missing)}")
        for r in reader:
            runs.setdefault(r["algo"], {}).setdefault(int(r["seed"]), []).append(
                (int(r["query"]), r["arch"], _float(r["fitness"]), _float(r["report"])))
    if not runs:
        raise ReportError(f"{path}: no rows")
    curves, seeds, archs = {}, {}, {}
    for algo, by_seed in runs.items():
        seeds[algo] = list(by_seed)
        budget = max(len(v) for v in by_seed.values())
        mat = np.full((len(by_seed), budget), np.nan)
        archs[algo] = []
        for k, rows in enumerate(by_seed.values()):
            rows.sort()
            f = np.array([r[2] for r in rows])
            rep = np.array([r[3] for r in rows])
            c = anytime_curve(f, rep, goal)
            mat[k, :len(c)] = c
            if len(c) < budget and len(c):  # shorter runs keep their last pick
                mat[k, len(c):] = c[-1]
            archs[algo].append([r[1] for r in rows])
        curves[algo] = mat
    table = _bench_table(summary)
    optimum = None
    if table is not None and summary.get("report") in table.columns:
        col = table.column(summary["report"])
        col = col[np.isfinite(col)]
        optimum = float(col.max() if goal == "max" else col.min()) if len(col) else None
    queries = {}
    for algo in runs:
        stored = summary.get("algos", {}).get(algo, {}).get("queries_to_target")
        if stored is not None and len(stored) == len(seeds[algo]):
            queries[algo] = np.array([math.inf if q is None else float(q) for q in stored])
        elif table is not None:
            from evonas.bench import top_set

            targets = top_set(table.archs, table.column(summary["report"]), _fraction(summary.get("target")), goal)
            queries[algo] = np.array([next((q + 1.0 for q, a in enumerate(seq) if a in targets), math.inf)
                                      for seq in archs[algo]])
    return BenchData(directory=directory, summary=summary, seeds=seeds, curves=curves,
                     queries_to_target=queries, target=str(summary.get("target", "top-0.1%")),
                     report=str(summary.get("report", "report")), goal=goal, optimum=optimum)


def _fraction(label: Any) -> float:
    """0.001 from ``"top-0.1%"``."""
    try:
        return float(str(label).removeprefix("top-").removesuffix("%")) / 100
    except ValueError:
        return 0.001


def _bench_table(summary: dict[str, Any]):
    from evonas.fitness.table import TableError, load_table

    path = summary.get("table")
    if not path or not Path(path).is_file():
        return None
    try:
        return load_table(path)
    except TableError:
        return None
