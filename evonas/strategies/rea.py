"""Regularized (aging) evolution, Real et al. 2019."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

from evonas.genome import Genome
from evonas.strategies.base import Strategy, check_min, check_sample, genome_state, genomes_from_state
from evonas.trial import Trial


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
        self.n_asked = 0

    def _child(self) -> Genome:
        idx = self.rng.choice(len(self.population), size=self.sample_size, replace=False)
        parent = max((self.population[i] for i in sorted(idx)), key=lambda g: g.fitness.wvalues[0])
        return self.toolbox.mutate(parent)

    def ask(self, n: int) -> list[Genome]:
        pending: set[str] = set()
        out = []
        for _ in range(n):
            if self.n_asked < self.population_size or not self.population:
                out.append(self.fresh(self.toolbox.individual, pending))
            else:
                out.append(self.fresh(self._child, pending))
            self.n_asked += 1
        return out

    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        for genome in genomes:
            self.population.append(genome)
            while len(self.population) > self.population_size:
                self.population.popleft()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": genome_state(self.population), "n_asked": self.n_asked}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = deque(genomes_from_state(state["population"], self.weights))
        self.n_asked = int(state["n_asked"])
