"""Pluggable fitness, one module per kind: ``table`` lookup, a user's ``callable``, real short training (``train``).

Importing this package registers every kind (and the config sections they own) in :mod:`evonas.registry`.
"""

from evonas.fitness.base import (FAILED, OK, Architecture, EvalContext, EvalResult, Fitness, FunctionFitness,
                                 as_fitness, as_result)
from evonas.fitness.custom import CallableFitness
from evonas.fitness.table import Table, TableError, TableFitness, load_table
from evonas.fitness.train import TrainingFitness
from evonas.registry import import_submodules

import_submodules(__name__, __path__)  # every module here registers its kinds (@fitness_kind)

__all__ = ["Architecture", "EvalContext", "EvalResult", "Fitness", "FunctionFitness", "as_fitness", "as_result",
           "OK", "FAILED", "CallableFitness", "Table", "TableError", "TableFitness", "load_table",
           "TrainingFitness"]
