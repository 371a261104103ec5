"""Regularized (aging) evolution, Real et al. 2019: tournament selection and aging as toolbox operators."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from deap import base

from evonas.genome import Genome
from evonas.strategies.base import (Strategy, check_min, check_sample, genome_state, genomes_from_state,
                                    register_strategy)
from evonas.trial import Trial


def tournament(population: Sequence[Genome], sample: int, rng: np.random.Generator) -> Genome:
    """The best (first objective) of ``sample`` distinct random members of ``population``."""
    idx = rng.choice(len(population), size=min(sample, len(population)), replace=False)
    return max((population[i] for i in sorted(idx)), key=lambda g: g.fitness.wvalues[0])


def age(population: deque, genome: Genome, size: int) -> None:
    """``genome`` joins ``population``; the oldest members die beyond ``size``."""
    population.append(genome)
    while len(population) > size:
        population.popleft()


def register_aging(toolbox: base.Toolbox, population: int, sample: int, rng: np.random.Generator) -> None:
    """Register REA's operators: ``toolbox.select(pop)`` (a tournament of ``sample``) and
    ``toolbox.age(pop, genome)`` (keep the ``population`` most recent)."""
    toolbox.register("select", tournament, sample=sample, rng=rng)
    toolbox.register("age", age, size=population)


@register_strategy
class RegularizedEvolution(Strategy):
    """Keep the ``population`` most recent individuals; each child mutates the best of ``sample`` random
    members; the oldest member dies when a child joins. The first ``population`` proposals are random.

    Ranking uses the first objective; the others are recorded but not optimised (use NSGA-II for that).
    """

    name = "rea"

    def __init__(self, space, objectives, random_state=None, population: int = 10, sample: int = 3,
                 **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        check_min("population", population, 1)
        check_sample(sample, population)
        self.population_size = int(population)
        self.sample_size = int(sample)
        self.population: deque[Genome] = deque()
        register_aging(self.toolbox, self.population_size, self.sample_size, self.rng)

    def _child(self) -> Genome:
        return self.toolbox.mutate(self.toolbox.select(self.population))

    def ask(self, n: int) -> list[Genome]:
        return self.breed(n, self._child, warmup=self.population_size, parents=len(self.population))

    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        for genome in genomes:
            self.toolbox.age(self.population, genome)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": genome_state(self.population), "n_asked": self.n_asked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = deque(genomes_from_state(state["population"], self.weights))
        self.n_asked = int(state["n_asked"])
