"""A user's fitness function named in a config as ``"package.module:function"`` or ``"file.py:function"``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from evonas.fitness.base import Architecture, EvalContext, EvalResult, Fitness
from evonas.plugins import load_object
from evonas.registry import REQUIRED, fitness_kind


class CallableFitness(Fitness):
    """Calls ``function(arch, ctx, **params)``; the function is imported lazily, so this pickles to workers."""

    def __init__(self, function: str, params: Mapping[str, Any] | None = None, base_dir: Path | None = None):
        self.function = function
        self.params = dict(params or {})
        self.base_dir = base_dir
        self._fn = None
        if not callable(self._load()):
            raise ValueError(f"function {function!r} is not callable")

    def _load(self):
        if self._fn is None:
            self._fn = load_object(self.function, kind="function", base_dir=self.base_dir)
        return self._fn

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_fn": None}

    def __call__(self, arch: Architecture, ctx: EvalContext) -> EvalResult | Mapping[str, float]:
        return self._load()(arch, ctx, **self.params)


@fitness_kind("callable", {"function": ((str,), REQUIRED), "params": ((dict,), {})})
def build_callable_fitness(cfg, section: Mapping[str, Any], space) -> CallableFitness:
    """The ``callable`` kind: ``function`` (``"module:name"`` or ``"file.py:name"``) and its ``params``."""
    try:
        return CallableFitness(section["function"], section.get("params", {}), base_dir=cfg.base_dir)
    except ValueError as err:
        raise cfg.error("fitness", "function", section["function"], str(err)) from None
