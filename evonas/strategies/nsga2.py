"""NSGA-II (Deb et al. 2002) for any number of objectives, each maximised or minimised."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deap import tools

from evonas.genome import Genome
from evonas.strategies.base import (Strategy, check_min, check_within, genome_state, genomes_from_state,
                                    register_strategy)
from evonas.trial import Trial


@register_strategy
class NSGA2(Strategy):
    """Generational NSGA-II: binary tournaments on (rank, crowding), crossover with probability ``cxpb``,
    then mutation with probability ``mutpb``; survivors by DEAP's ``selNSGA2``. The first ``population``
    proposals are random. Batches of any size work; a batch of ``population`` is one generation.
    """

    name = "nsga2"

    def __init__(self, space, objectives, random_state=None, population: int = 20, cxpb: float = 0.5,
                 mutpb: float = 1.0, **kwargs: Any):
        super().__init__(space, objectives, random_state, **kwargs)
        check_min("population", population, 2)
        check_within("cxpb", cxpb, 0, 1)
        check_within("mutpb", mutpb, 0, 1)
        self.population_size = int(population)
        self.cxpb, self.mutpb = float(cxpb), float(mutpb)
        self.population: list[Genome] = []
        self.offspring: list[Genome] = []
        self.n_children = 0  # children told since the last survivor selection
        self.toolbox.register("select", tools.selNSGA2)

    def _tournament(self) -> Genome:
        a, b = (self.population[i] for i in self.rng.choice(len(self.population), size=2, replace=False))
        ra, rb = a.fitness.rank, b.fitness.rank
        if ra != rb:
            return a if ra < rb else b
        if a.fitness.crowding_dist != b.fitness.crowding_dist:
            return a if a.fitness.crowding_dist > b.fitness.crowding_dist else b
        return a if self.rng.random() < 0.5 else b

    def _child(self) -> Genome:
        child = self._tournament()
        if self.rng.random() < self.cxpb:
            child = self.toolbox.mate(child, self._tournament())[0]
        if self.rng.random() < self.mutpb:
            child = self.toolbox.mutate(child)
        return child

    def _rank(self) -> None:
        """Store each member's front index and crowding distance on its fitness (DEAP attributes)."""
        for rank, front in enumerate(tools.sortNondominated(self.population, len(self.population))):
            tools.emo.assignCrowdingDist(front)
            for g in front:
                g.fitness.rank = rank

    def ask(self, n: int) -> list[Genome]:
        return self.breed(n, self._child, warmup=self.population_size, parents=len(self.population),
                          min_parents=2)

    def tell(self, genomes: Sequence[Genome], trials: Sequence[Trial]) -> None:
        super().tell(genomes, trials)
        for genome, trial in zip(genomes, trials):
            if len(self.population) < self.population_size:
                if trial.ok:  # failed individuals (worst values) never enter the population
                    self.population.append(genome)
                continue
            self.n_children += 1
            if trial.ok:
                self.offspring.append(genome)
            if self.n_children >= self.population_size:  # a generation is complete
                self.population = self.toolbox.select(self.population + self.offspring, self.population_size)
                self.offspring, self.n_children = [], 0
        if len(self.population) >= 2:
            self._rank()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "population": genome_state(self.population),
                "offspring": genome_state(self.offspring), "n_asked": self.n_asked,
                "n_children": self.n_children}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.population = genomes_from_state(state["population"], self.weights)
        self.offspring = genomes_from_state(state["offspring"], self.weights)
        self.n_asked = int(state["n_asked"])
        self.n_children = int(state["n_children"])
        if len(self.population) >= 2:
            self._rank()
