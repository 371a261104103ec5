"""Search strategies: ``random``, ``rea`` (regularized evolution), ``nsga2``, ``meta`` (meta-learned prior
and a GP of the task, mixed as far as each predicts), ``gp`` (Bayesian optimisation), ``optuna``/``tpe``
(Optuna samplers), ``replay`` (another task's leaderboard), ``reinforce``, or ``"module:Class"``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evonas.plugins import load_object
from evonas.registry import import_submodules
from evonas.spaces.base import SearchSpace
from evonas.strategies.base import STRATEGIES, Strategy, register_strategy
from evonas.strategies.meta import MetaEvolution
from evonas.strategies.nsga2 import NSGA2
from evonas.strategies.random_search import RandomSearch
from evonas.strategies.rea import RegularizedEvolution
from evonas.trial import Objective

import_submodules(__name__, __path__)  # every module here registers its strategies (@register_strategy)


def strategy_class(name: str) -> type[Strategy]:
    """The strategy class of a registry name or ``"module:Class"`` path (``ValueError`` if none)."""
    cls = STRATEGIES.get(name) or load_object(name, kind="strategy")
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise ValueError(f"{name!r} is not a Strategy subclass")
    return cls


def make_strategy(name: str, space: SearchSpace, objectives: Sequence[Objective], random_state: int | None,
                  **params: Any) -> Strategy:
    """Build a strategy by registry name or ``"module:Class"`` path."""
    return strategy_class(name)(space, objectives, random_state, **params)


__all__ = ["Strategy", "RandomSearch", "RegularizedEvolution", "NSGA2", "STRATEGIES", "make_strategy", "strategy_class",
           "register_strategy"]
