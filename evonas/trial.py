"""The record of one evaluation, and the objectives that score it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from evonas.fitness.base import OK

GOALS = ("max", "min")


@dataclass(frozen=True)
class Objective:
    """A metric to maximise (``goal="max"``) or minimise (``goal="min"``)."""

    metric: str
    goal: str = "max"

    def __post_init__(self):
        if self.goal not in GOALS:
            raise ValueError(f"objective {self.metric!r}: goal must be 'max' or 'min', got {self.goal!r}")

    @property
    def weight(self) -> float:
        """DEAP weight: +1 for max, -1 for min."""
        return 1.0 if self.goal == "max" else -1.0

    @property
    def worst(self) -> float:
        """The value a failed evaluation gets."""
        return -math.inf if self.goal == "max" else math.inf

    def value(self, trial: "Trial") -> float:
        """This objective's value for ``trial`` (the worst value if it failed)."""
        if trial.status != OK or self.metric not in trial.metrics:
            return self.worst
        return trial.metrics[self.metric]

    def better(self, a: float, b: float) -> bool:
        """Whether ``a`` is strictly better than ``b``."""
        return a > b if self.goal == "max" else a < b

    @classmethod
    def parse(cls, spec: "str | dict | Objective") -> "Objective":
        """From ``"metric"`` (maximised), ``"min:metric"``/``"max:metric"`` or ``{metric=..., goal=...}``."""
        if isinstance(spec, Objective):
            return spec
        if isinstance(spec, dict):
            return cls(str(spec["metric"]), str(spec.get("goal", "max")))
        goal, sep, metric = str(spec).partition(":")
        return cls(metric, goal) if sep else cls(goal)


@dataclass
class Trial:
    """One evaluation: ``step`` counts evaluations from 0 in the order the search asked for them."""

    step: int
    arch: str
    canonical_hash: str
    metrics: dict[str, float] = field(default_factory=dict)
    status: str = OK
    error: str | None = None
    seed: int = 0
    elapsed_s: float = 0.0
    worker: str = ""
    attempts: int = 1  # evaluations run for it (retries included)
    cached: bool = False  # result reused from the cache (same canonical hash and fitness identity)
    cache_source: str = ""  # with ``cached``: the store of the run whose result was reused

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict:
        return asdict(self)


def scores(trial: Trial, objectives: Sequence[Objective]) -> tuple[float, ...]:
    """The objective values of ``trial``, in order."""
    return tuple(o.value(trial) for o in objectives)


def best_trial(trials: Sequence[Trial], objective: Objective) -> Trial | None:
    """The first successful trial with the best value of ``objective`` (ties keep the earliest)."""
    best = None
    for t in trials:
        if t.ok and objective.metric in t.metrics and (best is None or objective.better(
                objective.value(t), objective.value(best))):
            best = t
    return best


def pareto_front(trials: Sequence[Trial], objectives: Sequence[Objective]) -> list[Trial]:
    """Successful trials not dominated by another (first of equal-score duplicates kept)."""
    ok = [t for t in trials if t.ok]
    w = [[o.weight * v for o, v in zip(objectives, scores(t, objectives))] for t in ok]
    front, seen = [], set()
    for i, t in enumerate(ok):
        dominated = any(
            all(b >= a for a, b in zip(w[i], w[j])) and any(b > a for a, b in zip(w[i], w[j]))
            for j in range(len(ok)) if j != i)
        key = tuple(w[i])
        if not dominated and key not in seen:
            seen.add(key)
            front.append(t)
    return front
