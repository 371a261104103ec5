"""Search strategies: ``random``, ``rea`` (regularized evolution), ``nsga2``, or ``"module:Class"``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evonas.plugins import load_object
from evonas.spaces.base import SearchSpace
from evonas.strategies.base import Strategy
from evonas.strategies.meta import MetaEvolution
from evonas.strategies.nsga2 import NSGA2
from evonas.strategies.random_search import RandomSearch
from evonas.strategies.rea import RegularizedEvolution
from evonas.trial import Objective

STRATEGIES: dict[str, type[Strategy]] = {"random": RandomSearch, "rea": RegularizedEvolution, "nsga2": NSGA2,
                                         "meta": MetaEvolution}


def make_strategy(name: str, space: SearchSpace, objectives: Sequence[Objective], random_state: int | None,
                  **params: Any) -> Strategy:
    """Build a strategy by registry name or ``"module:Class"`` path."""
    cls = STRATEGIES.get(name) or load_object(name, kind="strategy")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"{name!r} is not a Strategy subclass")
    return cls(space, objectives, random_state, **params)


__all__ = ["Strategy", "RandomSearch", "RegularizedEvolution", "NSGA2", "STRATEGIES", "make_strategy"]
