"""Search spaces: the built-in ``nb201``, ``cell`` and ``dag`` spaces, or ``"package.module:Class"``."""

from __future__ import annotations

from typing import Any

from evonas.plugins import load_object
from evonas.registry import import_submodules
from evonas.spaces.base import SPACES, SearchSpace, register_space
from evonas.spaces.cell import NB201_OPS, CellSpace, NB201Space
from evonas.spaces.dag import NB101_OPS, DAGSpace

import_submodules(__name__, __path__)  # every module here registers its spaces (@register_space)


def make_space(name: str, **params: Any) -> SearchSpace:
    """Build a space by registry name or ``"module:Class"`` path; ``params`` go to its constructor."""
    cls = SPACES.get(name) or load_object(name, kind="space")
    if not (isinstance(cls, type) and issubclass(cls, SearchSpace)):
        raise ValueError(f"{name!r} is not a SearchSpace subclass")
    return cls(**params)


__all__ = ["SearchSpace", "CellSpace", "NB201Space", "DAGSpace", "NB201_OPS", "NB101_OPS", "SPACES",
           "make_space", "register_space"]
