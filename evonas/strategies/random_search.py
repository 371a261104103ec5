"""Random search: the floor every strategy must beat."""

from __future__ import annotations

from evonas.genome import Genome
from evonas.strategies.base import Strategy, register_strategy


@register_strategy
class RandomSearch(Strategy):
    """Uniform samples from the space (distinct architectures when ``dedupe``)."""

    name = "random"

    def ask(self, n: int) -> list[Genome]:
        pending: set[str] = set()
        return [self.fresh(self.toolbox.individual, pending) for _ in range(n)]
