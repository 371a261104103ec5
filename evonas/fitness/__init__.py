"""Pluggable fitness: table lookup, a user's callable, or (see :mod:`evonas.training`) real training."""

from evonas.fitness.base import FAILED, OK, Architecture, EvalContext, EvalResult, Fitness, as_result
from evonas.fitness.custom import CallableFitness
from evonas.fitness.table import Table, TableError, TableFitness, load_table

__all__ = ["Architecture", "EvalContext", "EvalResult", "Fitness", "as_result", "OK", "FAILED",
           "CallableFitness", "Table", "TableError", "TableFitness", "load_table"]
