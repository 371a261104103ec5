"""Writing a search's results: ``history.csv`` (one row per evaluation) and ``summary.json``."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evonas.atomic import atomic_open, write_text
from evonas.search import SearchResult
from evonas.trial import Trial, scores

HISTORY_FIELDS = ("step", "arch", "canonical_hash")


def metric_names(result: SearchResult) -> list[str]:
    """Objective metrics, then report metrics, then any other metric a trial returned."""
    names = [o.metric for o in result.objectives] + list(result.report)
    for t in result.trials:
        names.extend(t.metrics)
    return list(dict.fromkeys(names))


def write_history(path: str | Path, trials: Sequence[Trial], metrics: Sequence[str]) -> Path:
    """One row per trial in step order: step, arch, canonical_hash, metrics, status, error, seed, cached (1:
    the result was reused from the cache), cache_source (the store that computed it), elapsed_s."""
    path = Path(path)
    with atomic_open(path, "w", newline="") as fh:  # a kill or a full disk never leaves a torn file
        writer = csv.writer(fh)
        writer.writerow([*HISTORY_FIELDS, *metrics, "status", "error", "seed", "cached", "cache_source",
                         "elapsed_s"])
        for t in sorted(trials, key=lambda t: t.step):
            writer.writerow([t.step, t.arch, t.canonical_hash, *(_cell(t.metrics.get(m)) for m in metrics),
                             t.status, t.error or "", t.seed, int(t.cached), t.cache_source if t.cached else "",
                             f"{t.elapsed_s:.6f}"])
    return path


def _cell(value: float | None) -> str:
    return "" if value is None else repr(value)


def _trial_summary(result: SearchResult, t: Trial) -> dict[str, Any]:
    values = scores(t, result.objectives)
    return {"arch": t.arch, "canonical_hash": t.canonical_hash, "step": t.step,
            "fitness": values[0] if len(values) == 1 else list(values), "metrics": dict(t.metrics)}


def summary(result: SearchResult, **extra: Any) -> dict[str, Any]:
    """The summary of a run: best trial, evaluation counts, seed, time (and the Pareto front if several
    objectives)."""
    best = result.best
    out: dict[str, Any] = {
        "best": _trial_summary(result, best) if best else None,
        "evaluations": len(result.trials),
        "failed": sum(not t.ok for t in result.trials),
        "unique_architectures": len({t.canonical_hash for t in result.trials}),
        "seed": result.seed,
        "elapsed_s": round(result.elapsed_s, 3),
        "objectives": [{"metric": o.metric, "goal": o.goal} for o in result.objectives],
        "report": list(result.report),
    }
    if len(result.objectives) > 1:
        out["pareto_front"] = [_trial_summary(result, t) for t in result.pareto]
    out.update(extra)
    return out


def write_summary(path: str | Path, data: dict[str, Any]) -> Path:
    """Write ``data`` as indented JSON (infinities as null)."""
    return write_text(path, json.dumps(_finite(data), indent=2) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
