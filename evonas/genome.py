"""DEAP individual types, created at import time so worker processes can unpickle them.

A :class:`Genome` is a ``list`` of ints (the space's encoding) carrying a DEAP fitness. The fitness
weights are per instance, because one process may run searches with different objectives; DEAP's
selection operators (``selNSGA2``) read them through ``fitness.wvalues`` as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from deap import base, creator


class Fitness(base.Fitness):
    """DEAP fitness whose weights are set per instance (default: one maximised objective)."""

    weights = (1.0,)

    def __init__(self, values: Sequence[float] = (), weights: Sequence[float] | None = None):
        if weights is not None:
            self.weights = tuple(float(w) for w in weights)
        super().__init__(values)

    def __deepcopy__(self, memo: dict) -> "Fitness":
        copy_ = Fitness(weights=self.weights)
        copy_.wvalues = self.wvalues
        return copy_

    def __reduce__(self):
        return (_restore_fitness, (self.weights, self.wvalues))


def _restore_fitness(weights: tuple[float, ...], wvalues: tuple[float, ...]) -> Fitness:
    fit = Fitness(weights=weights)
    fit.wvalues = wvalues
    return fit


if not hasattr(creator, "Genome"):
    creator.create("Genome", list, fitness=Fitness)

#: the DEAP individual class: ``Genome([3, 1, 0, ...])``
Genome = creator.Genome


def make_genome(genes: Iterable[int]) -> Genome:
    """A fresh :class:`Genome` (no fitness) holding ``genes`` as Python ints."""
    return Genome(int(g) for g in genes)
