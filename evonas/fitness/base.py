"""The fitness contract: architecture and context in, a dict of metrics with a status out; lifecycle hooks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    """Metrics of one evaluation. ``status`` is ``"ok"`` or ``"failed"`` (then ``error`` says why).
    ``elapsed_s``: the seconds the evaluation stands for when not its wall time (a table's training-time
    cost, replayed by the ``simulated`` backend); ``None``: the evaluator measures it."""

    metrics: dict[str, float]
    status: str = OK
    error: str | None = None
    elapsed_s: float | None = None

    @classmethod
    def failed(cls, error: str) -> "EvalResult":
        return cls(metrics={}, status=FAILED, error=error)


class Fitness:
    """Base class of every fitness: ``fitness(arch, ctx) -> EvalResult | Mapping[str, float]``.

    Besides :meth:`__call__` (which runs in a worker, or in the main process when ``inline``), the
    evaluator, the search loop, the run directory and ``evonas export`` call the lifecycle hooks below, all in
    the main process. Each is a documented no-op here, so a fitness overrides only what it needs. A plain
    function used as a fitness is wrapped by :func:`as_fitness` and gets these defaults.
    """

    #: evaluations are cheaper than sending them to a worker (table lookups): run them in the main process
    inline: bool = False
    #: warm-start settings (:class:`evonas.warmstart.WarmStartSettings`) of a training fitness; ``None``: none
    warm: Any = None
    #: candidates a worker task evaluates together through :meth:`evaluate_group` (1: one at a time)
    group: int = 1

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult | Mapping[str, float]:
        raise NotImplementedError

    def evaluate_group(self, archs: Sequence[Architecture],
                       ctxs: Sequence[EvalContext]) -> list[EvalResult | Mapping[str, float]]:
        """In a worker, when ``group > 1``: evaluate ``archs`` together (their results in order); here one
        after another. An exception fails the whole group."""
        return [self(arch, ctx) for arch, ctx in zip(archs, ctxs)]

    def before_batch(self, candidates: Sequence[Any] = ()) -> None:
        """Main process, before the batch ``candidates`` (:class:`evonas.evaluator.Candidate`) is dispatched."""

    def after_batch(self, candidates: Sequence[Any], trials: Sequence[Any]) -> None:
        """Main process, after the batch completed (``trials`` in the order of ``candidates``)."""

    def state_dict(self) -> dict[str, Any]:
        """Fitness state a checkpoint covers (stored with the search state; JSON-serialisable)."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a checkpoint's :meth:`state_dict` (a resumed run)."""

    def use_run_dir(self, out: str | Path) -> None:
        """The run directory ``out`` (``evonas run``, before a resume): a place for files checkpoints name."""

    def identity(self) -> Any:
        """What cached results depend on beyond the config (JSON-serialisable); ``None``: nothing."""
        return None

    def keep_weights(self, directory: str | Path) -> bool:
        """Save each evaluation's trained weights in ``directory`` (``step-KEY.pt``) for ``evonas export``;
        returns whether this fitness trains networks at all (``False``: nothing to keep)."""
        return False

    def initializer(self) -> Any:
        """The weight initializer evaluations start from (``None``: PyTorch's default init)."""
        return None


#: the hooks of :class:`Fitness` (a plain callable defining one of them must subclass :class:`Fitness`)
HOOKS = ("before_batch", "after_batch", "state_dict", "load_state_dict", "use_run_dir", "identity",
         "keep_weights", "initializer", "evaluate_group")


class FunctionFitness(Fitness):
    """A plain callable ``fn(arch, ctx)`` as a :class:`Fitness` (every hook a no-op)."""

    def __init__(self, fn: Callable[[Architecture, EvalContext], Any]):
        self.fn = fn

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult | Mapping[str, float]:
        return self.fn(arch, ctx)


def as_fitness(fitness: Fitness | Callable[..., Any]) -> Fitness:
    """``fitness`` itself when it is a :class:`Fitness`, else a plain callable wrapped so that the hooks hold.

    A callable that defines hooks (or ``inline``) without subclassing :class:`Fitness` is refused: they would
    never be called."""
    if isinstance(fitness, Fitness):
        return fitness
    if not callable(fitness):
        raise TypeError(f"fitness: expected a callable (arch, ctx) -> metrics, got {type(fitness).__name__}")
    defined = [h for h in (*HOOKS, "inline", "group") if hasattr(fitness, h)]
    if defined:
        raise TypeError(f"fitness: {type(fitness).__name__} defines {', '.join(defined)} but is not an "
                        "evonas.fitness.Fitness; subclass it so that these hooks are called")
    return FunctionFitness(fitness)


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
            return EvalResult(result.metrics, FAILED, f"metric {name!r} missing from fitness result",
                              result.elapsed_s)
        if not math.isfinite(result.metrics[name]):
            return EvalResult(result.metrics, FAILED, f"metric {name!r} is {result.metrics[name]}",
                              result.elapsed_s)
    return result
