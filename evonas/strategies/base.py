"""The strategy interface: propose genomes (``ask``), learn from their results (``tell``)."""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from deap import base

from evonas.genome import Genome, make_genome
from evonas.spaces.base import SearchSpace
from evonas.trial import Objective, Trial, scores


#: registry name -> strategy class (filled by :func:`register_strategy`)
STRATEGIES: dict[str, type["Strategy"]] = {}


def register_strategy(cls: type["Strategy"]) -> type["Strategy"]:
    """Class decorator: ``--algo NAME`` / ``[strategy] name = NAME`` for ``cls.name``."""
    STRATEGIES[cls.name] = cls
    return cls


def check_min(name: str, value: float, low: float) -> None:
    """Raise ``ValueError("name: must be >= low, got value")`` unless ``value >= low``."""
    if not value >= low:
        raise ValueError(f"{name}: must be >= {low}, got {value}")


def check_within(name: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError("name: must be within [low, high], got value")`` unless ``low <= value <= high``."""
    if not low <= value <= high:
        raise ValueError(f"{name}: must be within [{low}, {high}], got {value}")


def check_sample(sample: int, population: int) -> None:
    """A tournament of ``sample`` members must fit in the population."""
    if not 1 <= sample <= population:
        raise ValueError(f"sample: must be between 1 and population ({population}), got {sample}")


class Strategy(ABC):
    """Ask/tell search strategy over a :class:`SearchSpace`.

    The search loop calls ``ask(n)`` for a batch of genomes, evaluates them, then ``tell(genomes,
    trials)``. All randomness comes from ``self.rng``, a numpy ``Generator`` seeded by ``random_state``.
    With ``dedupe`` the strategy avoids proposing an architecture whose canonical hash was already
    proposed (it retries up to ``max_tries`` times, then accepts a duplicate).

    Variation operators live on ``self.toolbox`` (DEAP): ``individual``, ``mutate`` and ``mate``; strategies
    register their own (REA: ``select``, ``age``; NSGA-II: ``select``).
    """

    name: str = ""
    #: constructor parameters that name files (a config resolves them against its own folder; the CLI
    #: accepts them as ``--param PATH`` options of ``evonas bench``)
    path_params: tuple[str, ...] = ()

    def __init__(self, space: SearchSpace, objectives: Sequence[Objective], random_state: int | None = None,
                 dedupe: bool = True, max_tries: int = 50):
        if not objectives:
            raise ValueError("a strategy needs at least one objective")
        self.space = space
        self.objectives = [Objective.parse(o) for o in objectives]
        self.weights = tuple(o.weight for o in self.objectives)
        self.rng = np.random.default_rng(random_state)
        self.dedupe = bool(dedupe)
        self.max_tries = int(max_tries)
        self.seen: set[str] = set()
        #: proposals made so far (for strategies that start with random proposals)
        self.n_asked = 0
        self.toolbox = base.Toolbox()
        self.toolbox.register("individual", space.sample, rng=self.rng)
        self.toolbox.register("mutate", space.mutate, rng=self.rng)
        self.toolbox.register("mate", space.crossover, rng=self.rng)

    @abstractmethod
    def ask(self, n: int) -> list[Genome]:
        """Propose ``n`` genomes to evaluate next."""

    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        """Record results; subclasses extend this to update their population."""
        for genome, trial in zip(genomes, trials):
            self.assign_fitness(genome, trial)
            self.seen.add(trial.canonical_hash)

    # --- helpers for subclasses -------------------------------------------------------------------------
    def assign_fitness(self, genome: Genome, trial: Trial) -> None:
        """Set the DEAP fitness of ``genome`` from ``trial`` (worst values when it failed)."""
        genome.fitness.weights = self.weights
        genome.fitness.values = scores(trial, self.objectives)

    def fresh(self, make: Callable[[], Genome], pending: set[str]) -> Genome:
        """Call ``make`` until it yields an architecture not yet seen nor ``pending`` (when deduping)."""
        genome = make()
        if not self.dedupe:
            return genome
        for _ in range(self.max_tries):
            h = self.space.canonical_hash(genome)
            if h not in self.seen and h not in pending:
                pending.add(h)
                return genome
            genome = make()
        pending.add(self.space.canonical_hash(genome))
        return genome

    def breed(self, n: int, child: Callable[[], Genome], *, warmup: int, parents: int,
              min_parents: int = 1) -> list[Genome]:
        """``n`` deduplicated proposals of a population strategy: random ones (``toolbox.individual``) for the
        first ``warmup`` proposals or while fewer than ``min_parents`` of the ``parents`` members exist, then
        ``child()``; counts :attr:`n_asked`."""
        pending: set[str] = set()
        out = []
        for _ in range(n):
            random_phase = self.n_asked < warmup or parents < min_parents
            out.append(self.fresh(self.toolbox.individual if random_phase else child, pending))
            self.n_asked += 1
        return out

    # --- state, for resuming ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this strategy exactly (JSON-serialisable)."""
        return {"rng": copy.deepcopy(self.rng.bit_generator.state), "seen": sorted(self.seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.seen = set(state["seen"])


def genome_state(genomes: Sequence[Genome]) -> list[dict]:
    """Serialise genomes with their fitness values."""
    return [{"genes": list(g), "values": list(g.fitness.values)} for g in genomes]


def genomes_from_state(items: Sequence[dict], weights: tuple[float, ...]) -> list[Genome]:
    """Inverse of :func:`genome_state`."""
    out = []
    for item in items:
        g = make_genome(item["genes"])
        g.fitness.weights = weights
        if item["values"]:
            g.fitness.values = tuple(item["values"])
        out.append(g)
    return out
