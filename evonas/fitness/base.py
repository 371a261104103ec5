"""The fitness protocol: architecture and context in, a dict of metrics with a status out."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import networkx as nx

OK = "ok"
FAILED = "failed"


@dataclass(frozen=True)
class Architecture:
    """What a fitness function sees of an individual: its string, its graph and its space's name."""

    string: str
    graph: nx.DiGraph
    space: str = ""


@dataclass(frozen=True)
class EvalContext:
    """Where and how to evaluate: ``seed`` derives only from (run seed, evaluation ``key``)."""

    seed: int
    key: int
    budget: Mapping[str, Any] = field(default_factory=dict)
    device: str | None = None


@dataclass
class EvalResult:
    """Metrics of one evaluation. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why)."""

    metrics: dict[str, float]
    status: str = OK
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> "EvalResult":
        return cls(metrics={}, status=FAILED, error=error)


@runtime_checkable
class Fitness(Protocol):
    """Any callable ``(arch, ctx) -> EvalResult | Mapping[str, float]``.

    A fitness may set ``inline = True`` when an evaluation is cheaper than sending it to a worker
    (table lookups); the evaluator then runs it in the main process.
    """

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult | Mapping[str, float]: ...


def as_result(value: Any, required: list[str] | tuple[str, ...] = ()) -> EvalResult:
    """Normalise what a fitness returned; missing or non-finite ``required`` metrics fail the evaluation."""
    if isinstance(value, EvalResult):
        result = value
    elif isinstance(value, Mapping):
        metrics = dict(value)
        status = str(metrics.pop("status", OK))
        error = metrics.pop("error", None)
        result = EvalResult(metrics=metrics, status=status, error=error)
    else:
        return EvalResult.failed(f"fitness returned {type(value).__name__}, expected a dict of metrics")
    if result.status != OK:
        result.status = FAILED
        return result
    try:
        result.metrics = {str(k): float(v) for k, v in result.metrics.items()}
    except (TypeError, ValueError) as err:
        return EvalResult.failed(f"non-numeric metric: {err}")
    for name in required:
        if name not in result.metrics:
            return EvalResult(result.metrics, FAILED, f"metric {name!r} missing from fitness result")
        if not math.isfinite(result.metrics[name]):
            return EvalResult(result.metrics, FAILED, f"metric {name!r} is {result.metrics[name]}")
    return result
