"""Phenotype graphs as PyTorch networks, and the op registry users extend (imports torch)."""

from evonas.models.networks import GraphCell, GraphNetwork, build_model, covering_graphs
from evonas.models.ops import OPS, make_op, register_op

__all__ = ["OPS", "register_op", "make_op", "build_model", "covering_graphs", "GraphNetwork", "GraphCell"]
